// The supervisor's wallboard: login, then a live board from `metrics.snapshot` (one a second): per
// service the big numbers (waiting, longest wait, estimated wait, service level against its target,
// ASA, AHT, abandonment) with a one-hour sparkline of "waiting" kept in memory; the operators with
// their state, load and calls; silent monitoring of a connected call (monitor.start + a CallMedia
// monitor: the kiosk's and the operator's video, muted by default); forcing an operator's state;
// today's certificates and average rating (the reports API, every 30 s) and a link to the reports.
// The login token is kept in sessionStorage. Italian first with English beside it.
// Where the page stands (screen, connection, last snapshot, monitored call) is mirrored on
// <body data-…> (lib/reflect.js).
import { connect, defaultWsUrl, CallMedia } from '../lib/sportello.js';
import { endStaffSession, keepFresh, storedToken, submitStaffLogin } from '../lib/staff.js';
import { Bilingual, loadCatalogue } from '../lib/i18n.js';
import { reflect } from '../lib/reflect.js';

const TOKEN_KEY = 'sportello.supervisor.token';
const LANG = 'it';
const OTHER = 'en';
/** The service-level target shown on the board: this share answered within SL_SECONDS. */
const SL_TARGET = 0.8;
const SL_SECONDS = 60;
/** Longest-wait thresholds (seconds) for the warning and critical levels. */
const WAIT_WARN_S = 60;
const WAIT_BAD_S = 180;
/** How long the trend keeps samples. */
const HOUR_MS = 3600 * 1000;

const $ = (id) => document.getElementById(id);

/** @type {import('../lib/i18n.js').Catalogue} */
let cat;
/** @type {import('../lib/sportello.js').SportelloClient | null} */
let client = null;

const state = reflect({
  /** login · board */
  screen: 'login',
  connection: 'closed',
  /** The last metrics.snapshot. */
  snapshot: null,
  snapshots: 0,
  /** When the page started receiving snapshots (for the "less than an hour" note). */
  since: null,
  /** Samples of the last hour: `{t, waiting: {service: n}}`. */
  history: [],
  /** The monitored call: `{callId, operatorId, kioskId, media}` or null. */
  monitor: null,
  /** The last media.stats of the monitored call. */
  monitorStats: null,
  ready: false,
}, {
  screen: true, connection: true, snapshot: true, snapshots: true, ready: true, monitor: (m) => m?.callId ?? null,
});

function note(text) {
  console.log(`supervisor: ${text}`);
}

// ---- Text ---------------------------------------------------------------------------------------

/** Bilingual text (Italian large, English small beside it): set when the catalogues load. */
let text;
const setText = (el, key, vars) => text.set(el, key, vars);
const textEl = (tag, key, vars, className) => text.el(tag, key, vars, className);
const t = (key, vars) => text.t(key, vars);
const serviceName = (id) => text.service(id);

/** `m:ss`, or "n.d." for null. */
function duration(s) {
  if (s === null || s === undefined) return t('sup.unknown');
  const m = Math.floor(s / 60);
  const r = Math.floor(s % 60);
  return `${m}:${String(r).padStart(2, '0')}`;
}

function say(text) {
  $('status').textContent = text;
}

function showError(text) {
  const el = $('error');
  el.textContent = text;
  el.hidden = !text;
}

// ---- Login ----------------------------------------------------------------------------------------

function submitLogin(event) {
  return submitStaffLogin(event, {
    role: 'supervisor',
    prefix: 'sup',
    notRoleKey: 'sup.login.not_supervisor',
    tokenKey: TOKEN_KEY,
    setText,
    note,
    onToken: start,
  });
}

function showScreen(screen) {
  state.screen = screen;
  $('screen-login').hidden = screen !== 'login';
  $('screen-board').hidden = screen !== 'board';
  $('who').hidden = screen !== 'board';
  note(`screen ${screen}`);
}

async function logout() {
  await stopMonitor();
  endStaffSession(TOKEN_KEY);
  clearInterval(todayTimer);
  client?.close();
  client = null;
  state.snapshot = null;
  showScreen('login');
  $('username').focus();
}

// ---- Connection -----------------------------------------------------------------------------------

async function start(token) {
  state.connection = 'connecting';
  renderConnection();
  try {
    client = await connect(defaultWsUrl(), token);
    keepFresh(TOKEN_KEY, (fresh) => { if (client) client.auth.token = fresh; });
  } catch (e) {
    note(`connect failed: ${e.code} ${e.message}`);
    if (e.code === 'unauthorized') {
      sessionStorage.removeItem(TOKEN_KEY);
      showScreen('login');
      const err = $('login-error');
      setText(err, 'sup.login.failed');
      err.hidden = false;
      return;
    }
    throw e;
  }
  state.connection = 'open';
  $('supervisor-name').textContent = client.principalId;
  showScreen('board');
  wire(client);
  renderConnection();
  startToday();
  await subscribe();
  $('board-title').setAttribute('tabindex', '-1');
  $('board-title').focus();
}

/** The subscription belongs to the socket: subscribe after every (re)connection. */
async function subscribe() {
  try {
    await client.request('metrics.subscribe');
    note('subscribed');
  } catch (e) {
    showError(t('sup.error.request', { message: e.message }));
  }
}

function wire(c) {
  // After a reconnection the subscription is gone with the old socket.
  c.on('connection.open', () => {
    state.connection = 'open';
    renderConnection();
    subscribe();
  });
  c.on('connection.lost', (e) => { state.connection = 'reconnecting'; note(`connection lost ${e.code}`); renderConnection(); });
  c.on('connection.closed', (e) => {
    state.connection = 'closed';
    renderConnection();
    if (e.code === 4401) logout();
  });
  c.on('metrics.snapshot', onSnapshot);
  c.on('media.stats', (e) => {
    if (e.call_id !== state.monitor?.callId) return;
    state.monitorStats = e;
    renderMonitorStats();
  });
}

function renderConnection() {
  const el = $('connection');
  setText(el, `sup.connection.${state.connection}`);
}

// ---- Snapshots ------------------------------------------------------------------------------------

function onSnapshot(snap) {
  const first = !state.snapshot;
  state.snapshot = snap;
  state.snapshots += 1;
  const now = Date.now();
  state.since ??= now;
  const waiting = {};
  for (const s of snap.services) waiting[s.service] = s.waiting;
  state.history.push({ t: now, waiting });
  while (state.history.length && state.history[0].t < now - HOUR_MS) state.history.shift();
  if (first) note(`first snapshot: ${snap.services.length} service(s), ${snap.operators.length} operator(s)`);
  // A monitored call that is no longer in conversation ends its monitor.
  if (state.monitor) {
    const call = snap.operators.flatMap((o) => o.calls).find((c) => c.call_id === state.monitor.callId);
    if (!call || (call.state !== 'connected' && call.state !== 'on_hold')) stopMonitor();
  }
  renderBoard();
}

/** `ok`, `warn` or `bad` for the service level against its target. */
function slLevel(sl) {
  if (sl >= SL_TARGET) return 'ok';
  if (sl >= SL_TARGET - 0.1) return 'warn';
  return 'bad';
}

function waitLevel(s) {
  if (s === null || s === undefined || s < WAIT_WARN_S) return 'ok';
  return s < WAIT_BAD_S ? 'warn' : 'bad';
}

/** One big figure: a label, a value, and optionally a level said in words. */
function figure(labelKey, value, level, big = false) {
  const box = document.createElement('div');
  box.className = big ? 'figure big' : 'figure';
  if (level) box.dataset.level = level;
  const dt = textEl('dt', labelKey);
  const dd = document.createElement('dd');
  dd.textContent = value;
  box.append(dt, dd);
  if (level) {
    // The level in words as well as colour.
    dd.append(textEl('span', `sup.level.${level}`, {}, 'level'));
  }
  return box;
}

function renderBoard() {
  const snap = state.snapshot;
  if (!snap) return;
  $('clock').textContent = new Date(snap.at).toLocaleTimeString('it-IT');
  setText($('sl-target'), 'sup.sl_target', { target: Math.round(SL_TARGET * 100), seconds: SL_SECONDS });
  renderServices(snap);
  renderTrendNote();
  renderOperators(snap);
  renderMediaNodes(snap);
}

/** The media nodes and the load each advertises (only in a deployment with media nodes). */
function renderMediaNodes(snap) {
  const nodes = snap.media_nodes ?? [];
  $('media-nodes-section').hidden = nodes.length === 0;
  const body = $('media-nodes');
  body.replaceChildren();
  for (const n of nodes) {
    const tr = document.createElement('tr');
    tr.dataset.node = n.id;
    const cell = (value) => {
      const td = document.createElement('td');
      td.textContent = value;
      tr.append(td);
      return td;
    };
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = n.id;
    tr.append(th);
    cell(`${n.calls} / ${n.capacity}`);
    cell(`${Math.round((n.busy_ratio ?? 0) * 100)}%`);
    cell(Math.round(n.packets_per_s ?? 0).toLocaleString('it-IT'));
    const st = document.createElement('td');
    st.append(textEl('span', n.draining ? 'sup.media_nodes.draining' : 'sup.media_nodes.active'));
    tr.append(st);
    body.append(tr);
  }
}

function renderServices(snap) {
  const cards = snap.services.map((s) => {
    const card = document.createElement('article');
    card.className = 'service-card';
    card.dataset.service = s.service;
    const h = document.createElement('h3');
    h.id = `svc-${s.service}`;
    h.textContent = serviceName(s.service);
    card.setAttribute('aria-labelledby', h.id);
    const main = document.createElement('dl');
    main.className = 'figures figures-main';
    const waitingFig = figure('sup.waiting', String(s.waiting), null, true);
    waitingFig.classList.add('fig-waiting');
    main.append(
      waitingFig,
      figure('sup.longest', duration(s.longest_wait_s), waitLevel(s.longest_wait_s), true),
      figure('sup.estimated', s.estimated_wait_s === null ? t('sup.unknown') : duration(s.estimated_wait_s), null, true),
      figure('sup.service_level', `${Math.round(s.service_level * 100)}%`, slLevel(s.service_level), true),
    );
    const small = document.createElement('dl');
    small.className = 'figures figures-small';
    const handled = s.answered + s.abandoned;
    const rate = handled ? Math.round((s.abandoned / handled) * 100) : 0;
    small.append(
      figure('sup.asa', duration(s.asa_s)),
      figure('sup.aht', duration(s.aht_s)),
      figure('sup.abandoned', t('sup.abandoned_rate', { abandoned: s.abandoned, rate })),
    );
    const answered = textEl('p', 'sup.answered', { answered: s.answered, offered: s.offered }, 'hint');
    card.append(h, main, small, answered, sparkline(s.service));
    return card;
  });
  $('services').replaceChildren(...cards);
}

/** An inline SVG of "waiting" over the last hour, from the snapshots kept in memory. */
function sparkline(service) {
  const W = 600;
  const H = 70;
  const now = Date.now();
  const points = state.history.filter((h) => h.t >= now - HOUR_MS);
  const values = points.map((p) => p.waiting[service] ?? 0);
  const max = Math.max(1, ...values);
  const coords = points.map((p, i) => {
    const x = ((p.t - (now - HOUR_MS)) / HOUR_MS) * W;
    const y = H - 4 - (values[i] / max) * (H - 8);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const wrap = document.createElement('figure');
  wrap.className = 'spark';
  wrap.style.margin = '0';
  const caption = textEl('figcaption', 'sup.trend', { max: Math.max(0, ...values) }, 'spark-caption');
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', t('sup.trend', { max: Math.max(0, ...values) }));
  const axis = document.createElementNS(ns, 'line');
  axis.setAttribute('class', 'axis');
  axis.setAttribute('x1', '0');
  axis.setAttribute('x2', String(W));
  axis.setAttribute('y1', String(H - 4));
  axis.setAttribute('y2', String(H - 4));
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', coords.join(' '));
  svg.append(axis, line);
  wrap.append(svg, caption);
  return wrap;
}

function renderTrendNote() {
  const open = Date.now() - (state.since ?? Date.now());
  if (open < HOUR_MS) setText($('trend-note'), 'sup.trend.partial', { minutes: Math.floor(open / 60000) });
  else setText($('trend-note'), 'sup.trend.full');
}

/** Operator rows are kept by id so that focus and typed reasons survive the snapshots. */
const rows = new Map();

function renderOperators(snap) {
  const list = $('operators');
  const seen = new Set();
  for (const op of snap.operators) {
    seen.add(op.id);
    let row = rows.get(op.id);
    if (!row) {
      row = buildOperatorRow(op);
      rows.set(op.id, row);
    }
    updateOperatorRow(row, op);
    list.append(row.el);
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.el.remove();
      rows.delete(id);
    }
  }
  $('operators-empty').hidden = snap.operators.length > 0;
}

function buildOperatorRow(op) {
  const el = document.createElement('li');
  el.className = 'operator';
  el.dataset.operator = op.id;
  const h = document.createElement('h3');
  h.textContent = op.display_name ?? op.id;
  const facts = document.createElement('p');
  facts.className = 'op-facts';
  const stateEl = document.createElement('span');
  stateEl.className = 'op-state';
  const load = document.createElement('span');
  load.className = 'op-load';
  const occ = document.createElement('span');
  occ.className = 'hint';
  facts.append(stateEl, load, occ);
  const calls = document.createElement('ul');
  calls.className = 'op-calls';
  calls.setAttribute('aria-label', `${op.display_name ?? op.id}`);

  // Forcing the state: a select, a reason (for paused) and Apply.
  const name = op.display_name ?? op.id;
  const form = document.createElement('form');
  form.className = 'force';
  const fs = document.createElement('fieldset');
  fs.className = 'force';
  const legend = textEl('legend', 'sup.force');
  const select = document.createElement('select');
  select.className = 'force-state';
  select.setAttribute('aria-label', t('sup.force.state', { operator: name }));
  for (const s of ['available', 'paused', 'offline']) {
    const opt = document.createElement('option');
    opt.value = s;
    opt.textContent = `${cat.t(LANG, `console.presence.${s}`)} · ${cat.t(OTHER, `console.presence.${s}`)}`;
    select.append(opt);
  }
  const reason = document.createElement('input');
  reason.className = 'force-reason';
  reason.maxLength = 200;
  reason.placeholder = `${t('sup.force.reason_placeholder')} · ${cat.t(OTHER, 'sup.force.reason_placeholder')}`;
  reason.setAttribute('aria-label', t('sup.force.reason', { operator: name }));
  const apply = textEl('button', 'sup.force.apply', {}, 'btn btn-primary force-apply');
  apply.type = 'submit';
  const syncReason = () => { reason.hidden = select.value !== 'paused'; };
  select.addEventListener('change', syncReason);
  fs.append(legend, select, reason, apply);
  form.append(fs);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { operator_id: op.id, state: select.value };
    if (select.value === 'paused' && reason.value.trim()) body.reason = reason.value.trim();
    try {
      await client.request('operator.set_state', body);
      note(`set ${op.id} ${select.value}`);
      showError('');
      say(t('sup.force.done', { operator: name, state: t(`sup.state.${select.value}`, { reason: body.reason ?? '' }) }));
    } catch (e) {
      showError(t('sup.error.request', { message: e.message }));
    }
  });
  el.append(h, facts, calls, form);
  const row = { el, stateEl, load, occ, calls, select, reason, callsKey: null, name, syncReason };
  return row;
}

function updateOperatorRow(row, op) {
  const shown = row.stateEl.dataset.state;
  const key = `${op.state}|${op.reason ?? ''}`;
  if (row.stateKey !== key) {
    row.stateKey = key;
    row.stateEl.dataset.state = op.state;
    setText(row.stateEl, `sup.state.${op.state}`, { reason: op.reason ?? '' });
    // The select follows the operator's state unless the user is about to change it.
    if (document.activeElement !== row.select) {
      row.select.value = op.state === 'wrapup' ? 'available' : op.state;
      row.syncReason();
    }
    if (shown === undefined) row.syncReason();
  }
  setText(row.load, 'sup.load', { load: op.load, capacity: op.capacity });
  if (op.occupancy === null || op.occupancy === undefined) row.occ.textContent = '';
  else setText(row.occ, 'sup.occupancy', { percent: Math.round(op.occupancy * 100) });

  // Calls: rebuilt only when their ids or states change; the timers are updated in place.
  const callsKey = `${op.calls.map((c) => `${c.call_id}:${c.state}`).join(',')}|${state.monitor?.callId ?? ''}`;
  if (row.callsKey !== callsKey) {
    row.callsKey = callsKey;
    const items = op.calls.map((c) => callItem(row, op, c));
    if (items.length === 0) items.push(textEl('li', 'sup.calls.none', {}, 'hint'));
    row.calls.replaceChildren(...items);
  }
  for (const c of op.calls) {
    const timer = row.calls.querySelector(`[data-call="${c.call_id}"] .timer`);
    if (timer) timer.textContent = duration((Date.now() - Date.parse(c.since)) / 1000);
  }
}

function callItem(row, op, c) {
  const li = document.createElement('li');
  li.className = 'op-call';
  li.dataset.call = c.call_id;
  li.dataset.state = c.state;
  if (state.monitor?.callId === c.call_id) li.classList.add('monitored');
  const kiosk = textEl('span', 'sup.call.kiosk', { kiosk: c.kiosk_id });
  const st = textEl('span', `sup.call.${c.state}`, {}, 'call-state');
  const timer = document.createElement('span');
  timer.className = 'timer';
  li.append(kiosk, st, timer);
  if ((c.state === 'connected' || c.state === 'on_hold') && state.monitor?.callId !== c.call_id) {
    const b = textEl('button', 'sup.call.monitor', {}, 'btn monitor-start');
    b.type = 'button';
    b.setAttribute('aria-label', t('sup.call.monitor_label', { operator: row.name, kiosk: c.kiosk_id }));
    b.addEventListener('click', () => startMonitor(c.call_id, op, c.kiosk_id));
    li.append(b);
  }
  return li;
}

// ---- Today (reports API) ----------------------------------------------------------------------------

/** How often the "today" tiles are refreshed. */
const TODAY_EVERY_MS = 30000;
let todayTimer = null;

/** Today's certificates and average rating, from the reports API (Europe/Rome day), every 30 s. */
async function refreshToday() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token || state.screen !== 'board') return;
  const today = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Rome' }).format(new Date());
  const get = async (report) => {
    const res = await fetch(`/api/v1/reports/${report}?from=${today}&to=${today}`, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
    if (!res.ok) throw new Error(`${report}: HTTP ${res.status}`);
    return res.json();
  };
  const certs = $('today-certificates').querySelector('dd');
  const rating = $('today-rating').querySelector('dd');
  try {
    const [c, r] = await Promise.all([get('certificates'), get('calls')]);
    certs.textContent = c.total.issued.toLocaleString('it-IT');
    const avg = r.total.rating_avg;
    rating.textContent = avg === null || avg === undefined
      ? t('sup.unknown') : avg.toLocaleString('it-IT', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
    rating.append(r.total.ratings
      ? textEl('span', 'sup.today.ratings', { n: r.total.ratings }, 'ratings')
      : textEl('span', 'sup.today.no_ratings', {}, 'ratings'));
  } catch (e) {
    note(`today: ${e.message}`);
    certs.textContent = t('sup.unknown');
    rating.textContent = t('sup.unknown');
  }
}

function startToday() {
  clearInterval(todayTimer);
  refreshToday();
  todayTimer = setInterval(refreshToday, TODAY_EVERY_MS);
}

// ---- Silent monitoring ----------------------------------------------------------------------------

async function startMonitor(callId, op, kioskId) {
  await stopMonitor();
  const name = op.display_name ?? op.id;
  try {
    await client.request('monitor.start', { call_id: callId });
    const media = new CallMedia(client, callId, { monitor: true });
    state.monitor = { callId, operatorId: op.id, kioskId, media };
    state.monitorStats = null;
    $('monitor-kiosk').srcObject = media.remoteStreams.kiosk;
    $('monitor-operator').srcObject = media.remoteStreams.operator;
    setMuted(true);
    setText($('monitor-call'), 'sup.monitor.call', { operator: name, kiosk: kioskId });
    $('monitor').hidden = false;
    media.on('state', (e) => note(`monitor ${e.connectionState}/${e.iceConnectionState}`));
    // The server moved the call's media to another node (media.reconnect): the monitor offers
    // again from a new connection, whose streams replace the old ones.
    const current = () => state.monitor?.media === media;
    media.on('reconnecting', (e) => {
      if (!current()) return;
      note(`media.reconnect of ${callId} (${e.reason}): monitoring again`);
      $('monitor-reconnecting').hidden = false;
      document.body.dataset.monitorReconnects = String(e.reconnects);
    });
    media.on('streams', (e) => {
      if (!current()) return;
      $('monitor-kiosk').srcObject = e.remoteStreams.kiosk;
      $('monitor-operator').srcObject = e.remoteStreams.operator;
      for (const v of [$('monitor-kiosk'), $('monitor-operator')]) v.play().catch(() => {});
    });
    media.on('reconnected', () => {
      if (current()) $('monitor-reconnecting').hidden = true;
    });
    await media.start();
    for (const v of [$('monitor-kiosk'), $('monitor-operator')]) v.play().catch(() => {});
    note(`monitoring ${callId}`);
    say(t('sup.monitor.started'));
    renderBoard();
    $('monitor-stop').focus();
  } catch (e) {
    note(`monitor failed: ${e.code} ${e.message}`);
    showError(t('sup.error.request', { message: e.message }));
    await stopMonitor();
  }
}

async function stopMonitor() {
  const m = state.monitor;
  if (!m) return;
  state.monitor = null;
  m.media?.close();
  $('monitor-reconnecting').hidden = true;
  delete document.body.dataset.monitorReconnects;
  $('monitor-kiosk').srcObject = null;
  $('monitor-operator').srcObject = null;
  $('monitor').hidden = true;
  try {
    await client?.request('monitor.stop', { call_id: m.callId });
  } catch (e) {
    note(`monitor.stop: ${e.code} ${e.message}`);
  }
  note(`stopped monitoring ${m.callId}`);
  say(t('sup.monitor.stopped'));
  renderBoard();
}

/** Both monitor videos are muted together; the button says what pressing it will do. */
function setMuted(muted) {
  for (const v of [$('monitor-kiosk'), $('monitor-operator')]) v.muted = muted;
  const b = $('monitor-unmute');
  b.setAttribute('aria-pressed', String(!muted));
  setText(b, muted ? 'sup.monitor.unmute' : 'sup.monitor.mute');
}

function renderMonitorStats() {
  const s = state.monitorStats;
  if (!s) return;
  const packets = (s.directions ?? []).reduce((n, d) => n + (d.packets ?? 0), 0);
  setText($('monitor-stats'), 'sup.monitor.stats', { connected: (s.connected ?? []).join(', ') || '—', packets });
}

// ---- Start ----------------------------------------------------------------------------------------

async function main() {
  cat = await loadCatalogue([LANG, OTHER]);
  text = new Bilingual(cat, LANG, OTHER);
  for (const el of document.querySelectorAll('[data-i18n]')) setText(el, el.dataset.i18n);
  $('login-form').addEventListener('submit', submitLogin);
  $('logout').addEventListener('click', logout);
  $('monitor-stop').addEventListener('click', () => stopMonitor());
  $('monitor-unmute').addEventListener('click', () => setMuted($('monitor-kiosk').muted === false));
  // Call timers and the trend note move between snapshots too.
  setInterval(() => { if (state.snapshot) renderTrendNote(); }, 10000);
  state.ready = true;
  const token = await storedToken(TOKEN_KEY);
  if (token) {
    await start(token).catch((e) => note(`start failed: ${e.message}`));
  } else {
    showScreen('login');
    $('username').focus();
  }
}

main().catch((e) => note(`wallboard failed: ${e.stack ?? e}`));
