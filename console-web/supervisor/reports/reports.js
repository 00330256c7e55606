// The supervisor's reports page /supervisor/reports/: a period (from/to, with "this month", "last
// month" and "this year") and a grouping, then the calls report (GET /api/v1/reports/calls) and the
// certificates report (GET /api/v1/reports/certificates) as tables with their total row, three
// charts drawn here as inline SVG (calls and certificates per day; average rating per kiosk and per
// operator; kiosk certificates cumulated over the year against the pro-rata yearly target), each
// with its figures in a table too, and CSV downloads fetched with the bearer token and saved from a
// Blob (a plain link cannot carry the Authorization header).
// The login token is the wallboard's (sessionStorage, same key); without one the page shows the
// supervisor's login form. Italian first with English beside it. What the page shows is mirrored on
// <body data-…> (lib/reflect.js): screen, loads, the last period and grouping.
import { SportelloError } from '../../lib/sportello.js';
import { endStaffSession, keepFresh, storedToken, submitStaffLogin } from '../../lib/staff.js';
import { Bilingual, loadCatalogue } from '../../lib/i18n.js';
import { reflect } from '../../lib/reflect.js';

const TOKEN_KEY = 'sportello.supervisor.token';
const LANG = 'it';
const OTHER = 'en';
const SVG = 'http://www.w3.org/2000/svg';
const CALLS_BY = ['day', 'month', 'service', 'kiosk', 'operator', 'disposition'];
/** The certificates report's grouping that goes with the calls' grouping. */
const CERTS_BY = { day: 'day', month: 'month', kiosk: 'kiosk' };
const CHANNELS = ['kiosk', 'web', 'intermediary'];

const $ = (id) => document.getElementById(id);

/** @type {Bilingual} */
let text;
const setText = (el, key, vars) => text.set(el, key, vars);
const textEl = (tag, key, vars, className) => text.el(tag, key, vars, className);
const t = (key, vars) => text.t(key, vars);
/** `key` as "Italiano · English" (for <option>s, which hold text only). */
const both = (key, vars) => `${text.t(key, vars)} · ${text.cat.t(OTHER, key, vars)}`;

const state = reflect({
  /** login · reports */
  screen: 'login',
  ready: false,
  /** Reports loaded so far. */
  loads: 0,
  /** The period and grouping of the tables shown: `{from, to, by}`. */
  shown: null,
  /** The calls report shown (for the CSV file name and the tests' own comparison). */
  calls: null,
  busy: false,
}, { screen: true, ready: true, loads: true, shown: true, busy: true });

function note(line) {
  console.log(`reports: ${line}`);
}

// ---- Dates (Europe/Rome, the tenant's zone) --------------------------------------------------------

const ROME = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Rome' });

/** Today in Europe/Rome, `YYYY-MM-DD`. */
export const romeToday = () => ROME.format(new Date());

const pad = (n) => String(n).padStart(2, '0');
const iso = (y, m, d) => `${y}-${pad(m)}-${pad(d)}`;
const parts = (day) => day.split('-').map(Number);
/** Days in month `m` (1–12) of year `y`. */
const monthDays = (y, m) => new Date(Date.UTC(y, m, 0)).getUTCDate();
/** Days since 1970-01-01 of `YYYY-MM-DD`. */
const dayNumber = (day) => { const [y, m, d] = parts(day); return Date.UTC(y, m - 1, d) / 86400000; };

/** The `{from, to}` of a shortcut. */
function period(name) {
  const today = romeToday();
  const [y, m] = parts(today);
  if (name === 'last_month') {
    const [py, pm] = m === 1 ? [y - 1, 12] : [y, m - 1];
    return { from: iso(py, pm, 1), to: iso(py, pm, monthDays(py, pm)) };
  }
  if (name === 'this_year') return { from: iso(y, 1, 1), to: today };
  return { from: iso(y, m, 1), to: today };
}

// ---- Formatting ------------------------------------------------------------------------------------

const int = (n) => Number(n ?? 0).toLocaleString('it-IT');
const percent = (x) => `${Math.round((x ?? 0) * 100)}%`;
const rating = (x) => (x === null || x === undefined ? t('rep.na') : x.toLocaleString('it-IT', { minimumFractionDigits: 1, maximumFractionDigits: 1 }));

/** `m:ss` of seconds. */
function duration(s) {
  if (s === null || s === undefined) return t('rep.na');
  const m = Math.floor(s / 60);
  return `${m}:${pad(Math.floor(s % 60))}`;
}

/** A day `YYYY-MM-DD` as `dd/mm/yyyy`. */
function dayText(day) {
  const [y, m, d] = parts(day);
  return `${pad(d)}/${pad(m)}/${y}`;
}

/** A month `YYYY-MM` as "dicembre 2026". */
function monthText(month) {
  const [y, m] = parts(month);
  return new Date(Date.UTC(y, m - 1, 15)).toLocaleDateString('it-IT', { month: 'long', year: 'numeric', timeZone: 'UTC' });
}

/** A label from the catalogue, or `fallback` when it has none. */
function label(key, fallback) {
  const s = t(key);
  return s === key ? fallback : s;
}

/** What a row's key means for its grouping, in Italian. */
function keyText(by, key) {
  if (key === '') return by === 'disposition' ? t('rep.disposition.none') : t('rep.key.none');
  switch (by) {
    case 'day': return dayText(key);
    case 'month': return monthText(key);
    case 'service': return text.service(key);
    case 'disposition': return label(`rep.disposition.${key}`, key);
    case 'kind': return label(`cert.kind.${key}`, key);
    default: return key;
  }
}

/** A `{code: n}` map as a list "label n", largest first. */
function counts(map, labelOf) {
  const ul = document.createElement('ul');
  ul.className = 'counts';
  const entries = Object.entries(map ?? {}).sort((a, b) => b[1] - a[1]);
  for (const [code, n] of entries) {
    const li = document.createElement('li');
    li.textContent = `${labelOf(code)} ${int(n)}`;
    ul.append(li);
  }
  return ul;
}

// ---- API ---------------------------------------------------------------------------------------------

/** Thrown when the login has ended: the page shows the login form. */
class Expired extends Error {}

/** `GET path` with the bearer token; the Response, or a SportelloError with the server's code. */
async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Expired();
  let res;
  try {
    res = await fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
  } catch (e) {
    throw new SportelloError('unavailable', e.message);
  }
  if (res.status === 401) throw new Expired();
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new SportelloError(body.code ?? (res.status === 403 ? 'forbidden' : 'internal'), body.message ?? `HTTP ${res.status}`);
  }
  return res;
}

const query = (report, p) => `/api/v1/reports/${report}?${new URLSearchParams(p)}`;
const json = async (report, p) => (await api(query(report, p))).json();

/** Shows an API error in the alert region, in Italian with English beside it. */
function showError(e) {
  const el = $('error');
  if (!e) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  if (e instanceof Expired) {
    sessionStorage.removeItem(TOKEN_KEY);
    showScreen('login');
    const err = $('login-error');
    setText(err, 'rep.error.expired');
    err.hidden = false;
    return;
  }
  const code = e.code ?? 'internal';
  const key = { invalid: 'rep.error.invalid', forbidden: 'rep.error.forbidden', unavailable: 'rep.error.unavailable' }[code] ?? 'rep.error';
  setText(el, key, { message: e.message });
  el.hidden = false;
  note(`error ${code}: ${e.message}`);
}

// ---- Screens -----------------------------------------------------------------------------------------

function showScreen(screen) {
  state.screen = screen;
  $('screen-login').hidden = screen !== 'login';
  $('screen-reports').hidden = screen !== 'reports';
  $('logout').hidden = screen !== 'reports';
  if (screen === 'login') $('username').focus();
}

function submitLogin(event) {
  return submitStaffLogin(event, {
    role: 'supervisor',
    prefix: 'sup',
    notRoleKey: 'sup.login.not_supervisor',
    tokenKey: TOKEN_KEY,
    setText,
    note,
    onToken: async () => {
      keepFresh(TOKEN_KEY, () => {});
      showScreen('reports');
      await load();
    },
  });
}

async function logout() {
  await endStaffSession(TOKEN_KEY);
  showScreen('login');
}

// ---- Loading -----------------------------------------------------------------------------------------

/** The number of the latest load: an older load's answers are dropped. */
let latest = 0;

/** Reads the form, fetches every report and draws the tables and charts. */
async function load() {
  const from = $('from').value;
  const to = $('to').value;
  const by = $('by').value;
  if (!from || !to || from > to) {
    setText($('error'), 'rep.error.period');
    $('error').hidden = false;
    $(from && to ? 'from' : (from ? 'to' : 'from')).focus();
    return;
  }
  const mine = ++latest;
  state.busy = true;
  say('rep.loading');
  try {
    const today = romeToday();
    const year = today.slice(0, 4);
    const p = { from, to };
    const [calls, daily, perKiosk, perOperator, certs, certsDaily, certsYear] = await Promise.all([
      json('calls', { ...p, by }),
      by === 'day' ? null : json('calls', { ...p, by: 'day' }),
      by === 'kiosk' ? null : json('calls', { ...p, by: 'kiosk' }),
      by === 'operator' ? null : json('calls', { ...p, by: 'operator' }),
      json('certificates', { ...p, by: CERTS_BY[by] ?? 'kind' }),
      CERTS_BY[by] === 'day' ? null : json('certificates', { ...p, by: 'day' }),
      json('certificates', { from: `${year}-01-01`, to: today, by: 'day' }),
    ]);
    if (mine !== latest) return;
    showError(null);
    state.calls = calls;
    renderCalls(calls);
    renderCertificates(certs);
    renderDaily(daily ?? calls, certsDaily ?? certs);
    renderRatings(by === 'kiosk' ? calls : perKiosk, by === 'operator' ? calls : perOperator);
    renderYear(certsYear, today);
    state.shown = { from: calls.from, to: calls.to, by: calls.by };
    state.loads += 1;
    say('rep.loaded', { from: dayText(calls.from), to: dayText(calls.to) });
    note(`loaded ${calls.from}..${calls.to} by ${calls.by}: ${calls.rows.length} row(s)`);
  } catch (e) {
    if (mine === latest) showError(e);
  } finally {
    if (mine === latest) state.busy = false;
  }
}

function say(key, vars) {
  $('status').textContent = t(key, vars);
}

// ---- Tables ------------------------------------------------------------------------------------------

/** One column of a report table: its heading key, its value and how it is shown. */
const CALL_COLUMNS = [
  { col: 'calls', value: (r) => r.calls, show: int },
  { col: 'answered', value: (r) => r.answered, show: int },
  { col: 'abandoned', value: (r) => r.abandoned, show: int },
  { col: 'service_level', value: (r) => r.service_level, show: percent },
  { col: 'asa', value: (r) => r.asa_s, show: duration },
  { col: 'aht', value: (r) => r.aht_s, show: duration },
  { col: 'ratings', value: (r) => r.ratings, show: int },
  { col: 'rating_avg', value: (r) => r.rating_avg, show: rating },
  { col: 'dispositions', list: (r) => counts(r.dispositions, (c) => keyText('disposition', c)) },
  { col: 'certificates', list: (r) => counts(r.certificates, (c) => keyText('kind', c)) },
];

const CERT_COLUMNS = [
  { col: 'issued', value: (r) => r.issued, show: int },
  ...CHANNELS.map((c) => ({ col: c, value: (r) => r.channels?.[c] ?? 0, show: int })),
  { col: 'bollo', value: (r) => r.bollo, show: int },
  { col: 'esente', value: (r) => r.esente, show: int },
];

/** A header row: the grouping, then each column. */
function headRow(byKey, columns) {
  const tr = document.createElement('tr');
  const first = textEl('th', byKey);
  first.scope = 'col';
  tr.append(first);
  for (const c of columns) {
    const th = textEl('th', `rep.col.${c.col}`);
    th.scope = 'col';
    th.dataset.col = c.col;
    tr.append(th);
  }
  return tr;
}

/**
 * A body or total row; each cell carries its column and raw value in data attributes. `head` is
 * the row's text, or `{key}` of the catalogue.
 */
function bodyRow(row, columns, head) {
  const tr = document.createElement('tr');
  tr.dataset.key = row.key;
  const th = document.createElement('th');
  th.scope = 'row';
  if (typeof head === 'string') th.textContent = head;
  else setText(th, head.key);
  tr.append(th);
  for (const c of columns) {
    const td = document.createElement('td');
    td.dataset.col = c.col;
    if (c.list) {
      td.append(c.list(row));
    } else {
      const v = c.value(row);
      td.dataset.value = v === null || v === undefined ? '' : String(v);
      td.textContent = c.show(v);
      td.className = 'num';
    }
    tr.append(td);
  }
  return tr;
}

function fillTable(table, report, by, columns, captionKey) {
  setText(table.querySelector('caption'), captionKey, {
    from: dayText(report.from), to: dayText(report.to), by: t(`rep.by.${by}`).toLowerCase(),
  });
  table.querySelector('thead').replaceChildren(headRow(`rep.by.${by}`, columns));
  const rows = report.rows.map((r) => bodyRow(r, columns, keyText(by, r.key)));
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = textEl('td', 'rep.empty');
    td.colSpan = columns.length + 1;
    tr.append(td);
    rows.push(tr);
  }
  table.querySelector('tbody').replaceChildren(...rows);
  const total = bodyRow(report.total, columns, { key: 'rep.total' });
  total.className = 'total';
  table.querySelector('tfoot').replaceChildren(total);
  table.dataset.by = by;
}

function renderCalls(r) {
  fillTable($('calls-table'), r, r.by, CALL_COLUMNS, 'rep.calls.caption');
}

function renderCertificates(r) {
  fillTable($('certs-table'), r, r.by, CERT_COLUMNS, 'rep.cert.caption');
}

/** A small data table under a chart: a heading row and rows of plain cells (first is a row head). */
function dataTable(table, heads, rows) {
  const thead = document.createElement('thead');
  const hr = document.createElement('tr');
  for (const h of heads) {
    const th = textEl('th', h);
    th.scope = 'col';
    hr.append(th);
  }
  thead.append(hr);
  const tbody = document.createElement('tbody');
  for (const cells of rows) {
    const tr = document.createElement('tr');
    cells.forEach((c, i) => {
      const cell = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) cell.scope = 'row';
      else cell.className = 'num';
      cell.textContent = c;
      tr.append(cell);
    });
    tbody.append(tr);
  }
  table.replaceChildren(thead, tbody);
}

// ---- Charts (inline SVG) -----------------------------------------------------------------------------

/** An SVG element with attributes. */
function svgEl(tag, attrs = {}, content) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (content !== undefined) el.textContent = content;
  return el;
}

/** An accessible chart: `role="img"`, a <title> and an aria-label saying its figures. */
function chartSvg(width, height, title, summary) {
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${title}. ${summary}`, class: 'chart-img' });
  svg.append(svgEl('title', {}, `${title}. ${summary}`));
  return svg;
}

/** A "nice" upper bound for an axis. */
function niceMax(v) {
  if (v <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Horizontal grid lines with their values at the left. */
function yAxis(svg, box, max) {
  const steps = max % 4 === 0 ? 4 : 5;
  for (let i = 0; i <= steps; i++) {
    const v = (max / steps) * i;
    const y = box.y + box.h - (v / max) * box.h;
    svg.append(svgEl('line', { x1: box.x, x2: box.x + box.w, y1: y, y2: y, class: i === 0 ? 'axis' : 'grid' }));
    svg.append(svgEl('text', { x: box.x - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, int(Math.round(v))));
  }
}

function legend(ul, items) {
  ul.replaceChildren(...items.map(([key, cls]) => {
    const li = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = `swatch ${cls}`;
    swatch.setAttribute('aria-hidden', 'true');
    li.append(swatch, textEl('span', key));
    return li;
  }));
}

/** (a) Answered and abandoned calls (stacked bars) and certificates (a line) per day. */
function renderDaily(calls, certs) {
  const fig = $('chart-daily');
  const byDay = new Map(certs.rows.map((r) => [r.key, r.issued]));
  const days = calls.rows.map((r) => ({
    day: r.key, answered: r.answered, abandoned: r.abandoned, certificates: byDay.get(r.key) ?? 0,
  }));
  const W = 900;
  const H = 260;
  const box = { x: 48, y: 12, w: W - 60, h: H - 48 };
  const max = niceMax(Math.max(1, ...days.map((d) => Math.max(d.answered + d.abandoned, d.certificates))));
  const title = t('rep.chart.daily.title');
  const summary = t('rep.chart.daily.label', {
    from: dayText(calls.from), to: dayText(calls.to),
    answered: calls.total.answered, abandoned: calls.total.abandoned, certificates: certs.total.issued,
    max: Math.max(0, ...days.map((d) => d.answered + d.abandoned)),
  });
  const svg = chartSvg(W, H, title, summary);
  // Abandoned calls are hatched as well as red.
  const defs = svgEl('defs');
  const hatch = svgEl('pattern', { id: 'hatch-abandoned', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  hatch.append(svgEl('rect', { width: 6, height: 6, class: 'hatch-bg' }), svgEl('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }));
  defs.append(hatch);
  svg.append(defs);
  yAxis(svg, box, max);
  const n = Math.max(1, days.length);
  const slot = box.w / n;
  const bar = Math.max(1, slot * 0.7);
  const yOf = (v) => box.y + box.h - (v / max) * box.h;
  const line = [];
  const labelEvery = Math.ceil(n / 16);
  days.forEach((d, i) => {
    const x = box.x + i * slot + (slot - bar) / 2;
    const ya = yOf(d.answered);
    svg.append(svgEl('rect', { x, y: ya, width: bar, height: box.y + box.h - ya, class: 'bar-answered' }));
    const yb = yOf(d.answered + d.abandoned);
    if (d.abandoned) svg.append(svgEl('rect', { x, y: yb, width: bar, height: ya - yb, class: 'bar-abandoned' }));
    const cx = box.x + i * slot + slot / 2;
    line.push(`${cx.toFixed(1)},${yOf(d.certificates).toFixed(1)}`);
    if (i % labelEvery === 0) {
      svg.append(svgEl('text', { x: cx, y: H - 18, class: 'tick', 'text-anchor': 'middle' }, d.day.slice(8, 10)));
    }
  });
  svg.append(svgEl('polyline', { points: line.join(' '), class: 'line-certificates' }));
  if (n <= 62) {
    line.forEach((p) => {
      const [cx, cy] = p.split(',');
      svg.append(svgEl('rect', { x: cx - 3.5, y: cy - 3.5, width: 7, height: 7, class: 'dot-certificates' }));
    });
  }
  svg.append(svgEl('text', { x: box.x + box.w / 2, y: H - 2, class: 'tick', 'text-anchor': 'middle' }, `${t('rep.chart.day')} (${dayText(calls.from)} – ${dayText(calls.to)})`));
  fig.querySelector('.chart-svg').replaceChildren(svg);
  legend(fig.querySelector('.legend'), [
    ['rep.chart.answered', 'answered'], ['rep.chart.abandoned', 'abandoned'], ['rep.chart.certificates', 'certificates'],
  ]);
  dataTable(fig.querySelector('table'), ['rep.chart.day', 'rep.chart.answered', 'rep.chart.abandoned', 'rep.chart.certificates'],
    days.map((d) => [dayText(d.day), int(d.answered), int(d.abandoned), int(d.certificates)]));
}

/** One horizontal bar chart of the average rating (1–5) of each row with ratings. */
function ratingChart(report, by, titleKey) {
  const rows = report.rows.filter((r) => r.ratings > 0 && r.rating_avg !== null)
    .sort((a, b) => b.rating_avg - a.rating_avg);
  const title = t(titleKey);
  const items = rows.map((r) => t('rep.chart.rating.item', { name: keyText(by, r.key), avg: rating(r.rating_avg), n: r.ratings }));
  const summary = rows.length ? t('rep.chart.rating.label', { items: items.join('; ') }) : t('rep.chart.rating.none');
  const W = 440;
  const rowH = 34;
  const box = { x: 130, y: 26, w: W - 190 };
  const H = box.y + Math.max(1, rows.length) * rowH + 24;
  const svg = chartSvg(W, H, title, summary);
  svg.append(svgEl('text', { x: 0, y: 16, class: 'chart-subtitle' }, title));
  const xOf = (v) => box.x + ((v - 1) / 4) * box.w;
  const bottom = box.y + Math.max(1, rows.length) * rowH;
  for (let v = 1; v <= 5; v++) {
    svg.append(svgEl('line', { x1: xOf(v), x2: xOf(v), y1: box.y, y2: bottom, class: v === 1 ? 'axis' : 'grid' }));
    svg.append(svgEl('text', { x: xOf(v), y: bottom + 16, class: 'tick', 'text-anchor': 'middle' }, String(v)));
  }
  if (!rows.length) {
    svg.append(svgEl('text', { x: box.x + box.w / 2, y: box.y + rowH / 2 + 4, class: 'tick', 'text-anchor': 'middle' }, t('rep.chart.rating.none')));
  }
  rows.forEach((r, i) => {
    const y = box.y + i * rowH + 6;
    const name = keyText(by, r.key);
    svg.append(svgEl('text', { x: box.x - 8, y: y + 15, class: 'tick', 'text-anchor': 'end' }, name.length > 18 ? `${name.slice(0, 17)}…` : name));
    svg.append(svgEl('rect', { x: box.x, y, width: Math.max(2, xOf(r.rating_avg) - box.x), height: rowH - 12, class: 'bar-rating' }));
    svg.append(svgEl('text', { x: xOf(r.rating_avg) + 6, y: y + 15, class: 'value' }, `${rating(r.rating_avg)} (${int(r.ratings)})`));
  });
  svg.dataset.facet = by;
  return { svg, rows };
}

/** (b) Satisfaction per kiosk and per operator. */
function renderRatings(perKiosk, perOperator) {
  const fig = $('chart-rating');
  const kiosk = ratingChart(perKiosk, 'kiosk', 'rep.chart.rating.kiosk');
  const operator = ratingChart(perOperator, 'operator', 'rep.chart.rating.operator');
  fig.querySelector('[data-facet="kiosk"]').replaceChildren(kiosk.svg);
  fig.querySelector('[data-facet="operator"]').replaceChildren(operator.svg);
  const rows = [
    ...kiosk.rows.map((r) => [`${t('rep.by.kiosk')} ${keyText('kiosk', r.key)}`, rating(r.rating_avg), int(r.ratings)]),
    ...operator.rows.map((r) => [`${t('rep.by.operator')} ${keyText('operator', r.key)}`, rating(r.rating_avg), int(r.ratings)]),
  ];
  dataTable(fig.querySelector('table'), ['rep.by', 'rep.col.rating_avg', 'rep.col.ratings'], rows);
}

/** (c) Kiosk certificates cumulated since 1 January against the pro-rata yearly target. */
function renderYear(report, today) {
  const fig = $('chart-year');
  const [y] = parts(today);
  const diy = monthDays(y, 2) === 29 ? 366 : 365;
  const jan1 = dayNumber(`${y}-01-01`);
  const doy = dayNumber(today) - jan1 + 1;
  const yearly = report.yearly_target ?? 0;
  const perDay = new Map(report.rows.map((r) => [r.key, r.channels?.kiosk ?? 0]));
  const cumulative = [];
  let sum = 0;
  for (let i = 0; i < doy; i++) {
    const d = new Date((jan1 + i) * 86400000).toISOString().slice(0, 10);
    sum += perDay.get(d) ?? 0;
    cumulative.push(sum);
  }
  const target = Math.round((yearly * doy) / diy);
  const pct = target ? Math.round((sum / target) * 100) : 0;
  setText(fig.querySelector('figcaption'), 'rep.chart.year.title', { year: y });
  const vars = { today: dayText(today), issued: int(sum), target: int(target), yearly: int(yearly), percent: pct };
  setText($('year-summary'), 'rep.chart.year.summary', vars);
  const W = 900;
  const H = 260;
  const box = { x: 64, y: 12, w: W - 80, h: H - 48 };
  const max = niceMax(Math.max(1, sum, target));
  const svg = chartSvg(W, H, t('rep.chart.year.title', { year: y }), t('rep.chart.year.label', vars));
  yAxis(svg, box, max);
  const xOf = (i) => box.x + (i / (diy - 1)) * box.w;
  const yOf = (v) => box.y + box.h - (v / max) * box.h;
  // Month ticks.
  for (let m = 1; m <= 12; m++) {
    const i = dayNumber(iso(y, m, 1)) - jan1;
    svg.append(svgEl('line', { x1: xOf(i), x2: xOf(i), y1: box.y + box.h, y2: box.y + box.h + 5, class: 'axis' }));
    const name = new Date(Date.UTC(y, m - 1, 15)).toLocaleDateString('it-IT', { month: 'short', timeZone: 'UTC' });
    svg.append(svgEl('text', { x: xOf(i) + 4, y: H - 18, class: 'tick' }, name));
  }
  // The pro-rata line over the whole year (dashed), and its point today.
  svg.append(svgEl('line', { x1: xOf(0), y1: yOf(0), x2: xOf(diy - 1), y2: yOf(yearly), class: 'line-target' }));
  svg.append(svgEl('polyline', {
    points: cumulative.map((v, i) => `${xOf(i).toFixed(1)},${yOf(v).toFixed(1)}`).join(' '),
    class: 'line-cumulative',
  }));
  svg.append(svgEl('circle', { cx: xOf(doy - 1), cy: yOf(sum), r: 5, class: 'dot-cumulative' }));
  svg.append(svgEl('text', { x: xOf(doy - 1) + (doy > diy / 2 ? -8 : 8), y: yOf(sum) - 8, class: 'value', 'text-anchor': doy > diy / 2 ? 'end' : 'start' }, int(sum)));
  fig.querySelector('.chart-svg').replaceChildren(svg);
  legend(fig.querySelector('.legend'), [['rep.chart.year.issued', 'cumulative'], ['rep.chart.year.target', 'target']]);
  // The figures by month: issued, cumulated, and the target at the month's end (or today).
  const rows = [];
  let running = 0;
  for (let m = 1; m <= parts(today)[1]; m++) {
    const first = dayNumber(iso(y, m, 1)) - jan1;
    const last = Math.min(doy, dayNumber(iso(y, m, monthDays(y, m))) - jan1 + 1);
    const issued = cumulative[last - 1] - (first > 0 ? cumulative[first - 1] : 0);
    running += issued;
    rows.push([monthText(iso(y, m, 1).slice(0, 7)), int(issued), int(running), int(Math.round((yearly * last) / diy))]);
  }
  dataTable(fig.querySelector('table'), ['rep.by.month', 'rep.col.issued', 'rep.chart.year.issued', 'rep.chart.year.target'], rows);
}

// ---- CSV ---------------------------------------------------------------------------------------------

/** Fetches a report as CSV with the token and saves it under the server's file name. */
async function downloadCsv(report) {
  const from = $('from').value;
  const to = $('to').value;
  const by = $('by').value;
  const grouping = report === 'calls' ? by : (CERTS_BY[by] ?? 'kind');
  try {
    const res = await api(query(report, { from, to, by: grouping, format: 'csv' }));
    const disposition = res.headers.get('content-disposition') ?? '';
    const file = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `sportello-${report}-${from}-${to}.csv`;
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = file;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    showError(null);
    say('rep.csv.done', { file });
    note(`downloaded ${file} (${blob.size} bytes)`);
  } catch (e) {
    showError(e);
  }
}

// ---- Start -------------------------------------------------------------------------------------------

function setPeriod(name) {
  const p = period(name);
  $('from').value = p.from;
  $('to').value = p.to;
}

async function main() {
  const cat = await loadCatalogue([LANG, OTHER]);
  text = new Bilingual(cat, LANG, OTHER);
  for (const el of document.querySelectorAll('[data-i18n]')) setText(el, el.dataset.i18n);
  for (const opt of $('by').options) opt.textContent = both(`rep.by.${opt.value}`);
  const wanted = new URLSearchParams(location.search).get('by');
  $('by').value = CALLS_BY.includes(wanted) ? wanted : 'day';
  setPeriod('this_month');
  $('login-form').addEventListener('submit', submitLogin);
  $('logout').addEventListener('click', logout);
  $('filters').addEventListener('submit', (e) => { e.preventDefault(); load(); });
  $('by').addEventListener('change', () => load());
  for (const b of document.querySelectorAll('.shortcut')) {
    b.addEventListener('click', () => { setPeriod(b.dataset.period); load(); });
  }
  $('csv-calls').addEventListener('click', () => downloadCsv('calls'));
  $('csv-certificates').addEventListener('click', () => downloadCsv('certificates'));
  state.ready = true;
  const token = await storedToken(TOKEN_KEY);
  if (!token) {
    showScreen('login');
    return;
  }
  keepFresh(TOKEN_KEY, () => {});
  showScreen('reports');
  await load();
}

main().catch((e) => note(`reports failed: ${e.stack ?? e}`));
