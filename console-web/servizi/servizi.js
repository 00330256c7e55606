// The citizens' portal, /servizi/ (`docs/web.md`, the web channel's contract): sign in with SPID or
// CIE, see one's data and family, the certificate kinds with their purpose, validity and cost,
// request a certificate (bollo with a marca da bollo, or an exemption), download it, list one's
// certificates, and links to the comune's other online services.
//
// The session is the server's HttpOnly cookie: this page never sees a token. `GET /api/v1/web/me`
// answering 401 means signed out. State-changing requests are same-origin fetches (the browser
// sends `Origin`), and signing out is a plain form POST to /servizi/logout.
//
// What the page shows is mirrored on <body data-…> (lib/reflect.js): `state` (loading,
// signed-out, signed-in, unavailable), `lang`, `inRegistry`, `result` (issued or an error code).

import { loadCatalogue, REFERENCE_LANGUAGE } from '../lib/i18n.js';
import { reflect } from '../lib/reflect.js';

const LANGUAGES = ['it', 'en'];
const LANG_KEY = 'sportello-servizi-lang';
const $ = (id) => document.getElementById(id);

/** @type {import('../lib/i18n.js').Catalogue} */
let cat;
let lang = REFERENCE_LANGUAGE;

const page = reflect(
  { state: 'loading', lang: REFERENCE_LANGUAGE, inRegistry: null, result: null },
  { state: true, lang: true, inRegistry: true, result: true },
);

/** What the server told us; re-rendered on a language change. */
const data = {
  /** @type {any} */ me: null,
  /** @type {any} */ services: null,
  /** @type {any[]} */ mine: [],
  /** The last request's outcome, shown in #request-result. */
  /** @type {any} */ outcome: null,
  /** The municipality's name from the server's index (`GET /`). */
  /** @type {string | null} */ municipality: null,
};

const t = (key, vars) => cat.t(lang, key, vars);

/** Fills `el` with `key` in the chosen language, and remembers it for re-rendering. */
function setText(el, key, vars = {}) {
  el.dataset.i18n = key;
  el.i18nVars = vars;
  el.textContent = t(key, vars);
  return el;
}

function make(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'i18n') setText(el, v[0], v[1]);
    else if (k === 'attrs') for (const [a, av] of Object.entries(v)) el.setAttribute(a, av);
    else el[k] = v;
  }
  el.append(...children);
  return el;
}

/** A text from the server in the chosen language: `x_en` in English when present. */
function localized(item, field) {
  if (lang !== REFERENCE_LANGUAGE && typeof item[`${field}_${lang}`] === 'string') return item[`${field}_${lang}`];
  return item[field] ?? '';
}

const locale = () => (lang === 'it' ? 'it-IT' : 'en-GB');
const euro = (amount) => new Intl.NumberFormat(locale(), { style: 'currency', currency: 'EUR' }).format(amount);

function day(value) {
  if (value === null || value === undefined || value === '') return '';
  const d = typeof value === 'number' ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleDateString(locale(), { timeZone: 'Europe/Rome' });
}

// ---- The server -------------------------------------------------------------------------------

/** A JSON request to this origin: `{status, body}` (body null when not JSON). */
async function api(path, options = {}) {
  const r = await fetch(path, {
    credentials: 'same-origin',
    cache: 'no-store',
    ...options,
    headers: { accept: 'application/json', ...(options.headers ?? {}) },
  });
  const body = await r.json().catch(() => null);
  return { status: r.status, body };
}

/** The error code and message of an error body: `{code,message}` or `{error:{code,message}}`. */
function errorOf(body) {
  const e = body?.error && typeof body.error === 'object' ? body.error : body;
  return { code: typeof e?.code === 'string' ? e.code : null, message: typeof e?.message === 'string' ? e.message : '' };
}

// ---- Rendering --------------------------------------------------------------------------------

function render() {
  document.documentElement.lang = lang;
  page.lang = lang;
  document.title = `${t('servizi.title')} — ${comuneName() || t('servizi.brand_plain')}`;
  for (const el of document.querySelectorAll('[data-i18n]')) setText(el, el.dataset.i18n, el.i18nVars ?? {});
  for (const b of document.querySelectorAll('.lang')) b.setAttribute('aria-pressed', String(b.dataset.lang === lang));
  renderBrand();
  renderLogin();
  renderLinks();
  renderCatalogue();
  if (page.state === 'signed-in') {
    renderMe();
    renderForm();
    renderMine();
    renderOutcome();
  }
}

/** The municipality's full name ("Comune di Parma"): the services' or the server's index. */
function comuneName() {
  for (const name of [data.services?.municipality, data.municipality]) {
    if (typeof name === 'string' && name.trim()) return name.trim();
  }
  const c = data.services?.comune;
  if (typeof c === 'string' && c.trim()) return t('servizi.brand', { comune: c.trim() });
  if (c && typeof c.name === 'string') return t('servizi.brand', { comune: c.name });
  return '';
}

function renderBrand() {
  const name = comuneName();
  const brand = $('brand');
  if (name) {
    delete brand.dataset.i18n;
    brand.textContent = name;
  } else setText(brand, 'servizi.brand_plain');
}

/** The comune's colour, when the server gives one that keeps white text readable (4.5:1). */
function applyColour() {
  const colour = data.services?.color ?? data.services?.comune?.color;
  if (typeof colour !== 'string' || !/^#[0-9a-fA-F]{6}$/.test(colour)) return;
  const channel = (i) => {
    const c = parseInt(colour.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
  if (1.05 / (luminance + 0.05) < 4.5) {
    console.warn(`servizi: colour ${colour} is too light for white text; the default is kept`);
    return;
  }
  document.documentElement.style.setProperty('--primary', colour);
}

function renderLogin() {
  const box = $('login-links');
  const providers = Array.isArray(data.services?.providers) ? data.services.providers : [];
  const links = providers
    .filter((p) => p && typeof p.name === 'string')
    .map((p) =>
      make('a', {
        className: 'btn btn-primary btn-login',
        href: `/servizi/login?provider=${encodeURIComponent(p.name)}`,
        i18n: ['servizi.signin.with', { provider: p.label || p.name }],
      }),
    );
  if (links.length === 0) {
    links.push(make('a', { className: 'btn btn-primary btn-login', href: '/servizi/login', i18n: ['servizi.signin.default'] }));
  }
  box.replaceChildren(...links);
}

function renderLinks() {
  const links = Array.isArray(data.services?.links) ? data.services.links : [];
  const safe = links.filter((l) => l && typeof l.url === 'string' && /^(https?:\/\/|\/)/.test(l.url));
  $('links-box').hidden = safe.length === 0;
  $('links').replaceChildren(
    ...safe.map((l) => make('li', {}, make('a', { href: l.url, textContent: localized(l, 'label') || l.url }))),
  );
}

function fullName(p) {
  return [p?.given_name, p?.family_name].filter(Boolean).join(' ');
}

function inRegistry() {
  return data.me?.in_registry !== false;
}

function renderMe() {
  const me = data.me;
  const name = fullName(me) || me.fiscal_code;
  setText($('me-title'), 'servizi.me.hello', { name });
  $('me-name').textContent = fullName(me);
  $('me-fiscal-code').textContent = me.fiscal_code ?? '';
  $('not-in-registry').hidden = inRegistry();
  const family = Array.isArray(me.family) ? me.family : [];
  $('family-box').hidden = !inRegistry();
  $('family-none').hidden = family.length > 0;
  $('family').replaceChildren(
    ...family.map((m) => make('li', {}, make('span', { textContent: m.name ?? '' }), ' ', make('span', { className: 'mono note', textContent: m.fiscal_code ?? '' }))),
  );
}

function kinds() {
  return Array.isArray(data.services?.certificates) ? data.services.certificates.filter((k) => k && typeof k.kind === 'string') : [];
}

function validityText(k) {
  if ('validity_months' in k) {
    return typeof k.validity_months === 'number' && k.validity_months > 0
      ? t('servizi.catalogue.validity_months', { months: k.validity_months })
      : t('servizi.catalogue.validity_unlimited');
  }
  const v = k.validity ?? k.validity_days;
  if (v === null || v === undefined || v === 'unlimited' || v === 0) return t('servizi.catalogue.validity_unlimited');
  if (typeof v === 'number') return t('servizi.catalogue.validity_days', { days: v });
  return localized(k, 'validity');
}

/** Whether the kind owes the bollo (civil-status certificates are exempt by law). */
const owesBollo = (k) => k.bollo !== false && k.cost?.bollo_cents !== 0;

function costText(k) {
  const c = k.cost && typeof k.cost === 'object' ? k.cost : {};
  const amount = typeof c.bollo_cents === 'number' && c.bollo_cents > 0 ? c.bollo_cents / 100 : 16;
  const parts = [owesBollo(k) ? t('servizi.catalogue.bollo_due', { amount: euro(amount) }) : t('servizi.catalogue.bollo_free')];
  if (typeof c.diritti_cents === 'number' && c.diritti_cents > 0) {
    parts.push(typeof c.diritti_exempt_cents === 'number' && c.diritti_exempt_cents !== c.diritti_cents
      ? t('servizi.catalogue.diritti_exempt', { amount: euro(c.diritti_cents / 100), exempt: euro(c.diritti_exempt_cents / 100) })
      : t('servizi.catalogue.diritti', { amount: euro(c.diritti_cents / 100) }));
  }
  return parts.join('. ');
}

function renderCatalogue() {
  const list = kinds();
  // Public: shown signed out too, so what is offered and what it costs is known before signing in.
  $('catalogue-box').hidden = !['signed-in', 'signed-out'].includes(page.state) || (list.length === 0 && page.state !== 'signed-in');
  if (list.length === 0) {
    $('catalogue').replaceChildren(make('li', { className: 'note', i18n: ['servizi.catalogue.none'] }));
    return;
  }
  $('catalogue').replaceChildren(
    ...list.map((k) => {
      const dl = make('dl', { className: 'facts' });
      const purpose = localized(k, 'purpose');
      if (purpose) dl.append(make('dt', { i18n: ['servizi.catalogue.purpose'] }), make('dd', { textContent: purpose }));
      dl.append(make('dt', { i18n: ['servizi.catalogue.validity'] }), make('dd', { textContent: validityText(k) }));
      dl.append(make('dt', { i18n: ['servizi.catalogue.cost'] }), make('dd', { textContent: costText(k) }));
      // A native disclosure per kind: 19 kinds stay short to scan, each opens to its details.
      const details = make('details', {}, make('summary', { textContent: localized(k, 'title') || k.kind }), dl);
      if (k.needs_reason) details.append(make('p', { className: 'note', i18n: ['servizi.catalogue.needs_reason'] }));
      if (page.state === 'signed-in' && inRegistry()) {
        const ask = make('button', { type: 'button', className: 'btn btn-outline', i18n: ['servizi.catalogue.request'] });
        ask.addEventListener('click', () => {
          $('kind').value = k.kind;
          updateForm();
          $('kind').focus();
        });
        details.append(ask);
      }
      // A language switch re-renders the list: what was open stays open.
      details.open = document.querySelector(`.kind[data-kind="${CSS.escape(k.kind)}"] details`)?.open ?? false;
      return make('li', { className: 'kind', attrs: { 'data-kind': k.kind } }, details);
    }),
  );
}

/** Replaces a select's options, keeping the chosen value when it is still offered. */
function fillSelect(select, options) {
  const before = select.value;
  select.replaceChildren(...options.map(([value, text]) => make('option', { value, textContent: text })));
  if (options.some(([value]) => value === before)) select.value = before;
}

const OTHER = '__other__';

function renderForm() {
  const offered = inRegistry();
  $('request').hidden = !offered;
  $('request-unavailable').hidden = offered;
  fillSelect($('kind'), [['', t('servizi.request.kind_choose')], ...kinds().map((k) => [k.kind, localized(k, 'title') || k.kind])]);
  const family = Array.isArray(data.me?.family) ? data.me.family : [];
  fillSelect($('subject'), [
    ['', t('servizi.request.for_self', { name: fullName(data.me) || data.me?.fiscal_code || '' })],
    ...family.map((m) => [m.fiscal_code, `${m.name} (${m.fiscal_code})`]),
    [OTHER, t('servizi.request.for_other')],
  ]);
  const exemptions = Array.isArray(data.services?.exemptions) ? data.services.exemptions.filter((e) => e && typeof e.code === 'string') : [];
  fillSelect($('exemption'), [['', t('servizi.request.exemption_choose')], ...exemptions.map((e) => [e.code, localized(e, 'label') || e.code])]);
  $('usage-exempt-choice').hidden = exemptions.length === 0;
  updateForm();
}

/** Shows the fields the chosen kind and usage need. */
function updateForm() {
  const k = kinds().find((x) => x.kind === $('kind').value);
  $('reason-field').hidden = !k?.needs_reason;
  $('as-of-field').hidden = !(k?.needs_date || k?.needs_as_of);
  $('kind-info').textContent = k ? [localized(k, 'purpose'), `${t('servizi.catalogue.validity')}: ${validityText(k)}`, costText(k)].filter(Boolean).join(' — ') : '';
  $('other-fc-field').hidden = $('subject').value !== OTHER;
  $('usage-field').hidden = Boolean(k) && !owesBollo(k);
  const exempt = $('usage-exempt').checked;
  $('bollo-fields').hidden = exempt;
  $('exemption-fields').hidden = !exempt;
}

function renderMine() {
  const list = data.mine;
  $('mine-none').hidden = list.length > 0;
  const titleOf = (kind) => {
    const k = kinds().find((x) => x.kind === kind);
    return k ? localized(k, 'title') : kind;
  };
  $('mine').replaceChildren(
    ...list.map((c) => {
      const dl = make('dl', { className: 'facts' });
      const row = (key, value, mono) => {
        if (value) dl.append(make('dt', { i18n: [key] }), make('dd', { textContent: value, className: mono ? 'mono' : '' }));
      };
      row('servizi.mine.document', c.document_id, true);
      row('servizi.mine.subject', c.subject_name ?? c.name ?? c.fiscal_code);
      row('servizi.mine.marca', c.bollo?.marca, true);
      row('servizi.mine.issued', day(c.issued_at));
      const until = c.valid_until ?? c.expires_at;
      row('servizi.mine.expires', until ? day(until) : '');
      const item = make('li', { className: 'doc' }, make('h3', { textContent: c.title ?? titleOf(c.kind) }), dl);
      if (typeof c.pdf_url === 'string') {
        // The visible words start the link's name; the document's number completes it for
        // screen readers, which list the links of the page out of context.
        item.append(
          make(
            'a',
            { className: 'btn btn-outline', href: c.pdf_url, download: `${c.document_id ?? 'certificato'}.pdf` },
            make('span', { i18n: ['servizi.mine.download'] }),
            make('span', { className: 'visually-hidden', textContent: ` — ${t('servizi.mine.document')} ${c.document_id ?? ''}` }),
          ),
        );
      }
      return item;
    }),
  );
}

const ERROR_KEYS = {
  conflict: 'servizi.error.conflict',
  forbidden: 'servizi.error.forbidden',
  invalid: 'servizi.error.invalid',
  unauthorized: 'servizi.error.unauthorized',
  rate_limited: 'servizi.error.rate_limited',
  not_found: 'servizi.error.not_found',
};

function renderOutcome() {
  const box = $('request-result');
  const o = data.outcome;
  box.hidden = !o;
  if (!o) return;
  if (o.ok) {
    box.className = 'result callout callout-success';
    box.setAttribute('role', 'status');
    box.dataset.documentId = o.document_id;
    const link = make('a', {
      id: 'download',
      className: 'btn btn-primary',
      href: o.pdf_url,
      download: `${o.document_id}.pdf`,
      i18n: ['servizi.request.download'],
    });
    box.replaceChildren(make('p', { i18n: ['servizi.request.done', { document: o.document_id }] }), link);
  } else {
    box.className = 'result callout callout-danger';
    box.setAttribute('role', 'alert');
    delete box.dataset.documentId;
    const children = [make('p', { className: 'result-title', i18n: ['servizi.error.title'] }), make('p', { id: 'error-message', i18n: [o.key, o.vars ?? {}] })];
    if (o.detail) children.push(make('p', { className: 'note', i18n: ['servizi.error.detail', { detail: o.detail }] }));
    if (o.code === 'unauthorized') {
      children.push(make('a', { className: 'btn btn-primary', href: '/servizi/login', i18n: ['servizi.signin.default'] }));
    }
    box.replaceChildren(...children);
  }
}

// ---- The request form -------------------------------------------------------------------------

function fieldError(id, key) {
  const input = $(id);
  const err = $(`${id}-error`);
  if (key) {
    input.setAttribute('aria-invalid', 'true');
    setText(err, key);
    err.hidden = false;
  } else {
    input.removeAttribute('aria-invalid');
    err.hidden = true;
    err.textContent = '';
  }
  return Boolean(key);
}

const today = () => new Date().toLocaleDateString('sv-SE', { timeZone: 'Europe/Rome' });

/** The request's body, or null after marking the fields that need fixing. */
function readForm() {
  const k = kinds().find((x) => x.kind === $('kind').value);
  const bad = [];
  if (fieldError('kind', k ? null : 'servizi.error.kind')) bad.push('kind');
  const reason = $('reason').value.trim();
  if (fieldError('reason', k?.needs_reason && !reason ? 'servizi.error.reason' : null)) bad.push('reason');
  const needsDate = Boolean(k?.needs_date || k?.needs_as_of);
  const asOf = $('as-of').value;
  if (fieldError('as-of', needsDate && (!asOf || asOf > today()) ? 'servizi.error.as_of' : null)) bad.push('as-of');
  const body = { kind: k?.kind };
  const subject = $('subject').value;
  if (subject === OTHER) {
    const fc = $('other-fc').value.trim().toUpperCase();
    if (fieldError('other-fc', /^[A-Z0-9]{16}$/.test(fc) ? null : 'servizi.error.other_fc')) bad.push('other-fc');
    body.fiscal_code = fc;
  } else {
    fieldError('other-fc', null);
    if (subject) body.fiscal_code = subject;
  }
  if (k?.needs_reason) body.reason = reason;
  else if (reason) body.reason = reason;
  if (needsDate) body.as_of = asOf;
  if (k && !owesBollo(k)) {
    // Exempt by law (civil status): no marca, no exemption to choose.
    for (const id of ['marca-id', 'marca-date', 'declaration', 'exemption']) fieldError(id, null);
    body.usage = { bollo: true };
  } else if ($('usage-exempt').checked) {
    for (const id of ['marca-id', 'marca-date', 'declaration']) fieldError(id, null);
    const code = $('exemption').value;
    if (fieldError('exemption', code ? null : 'servizi.error.exemption')) bad.push('exemption');
    body.usage = { exemption: code };
  } else {
    fieldError('exemption', null);
    const id = $('marca-id').value.replace(/\s+/g, '');
    const date = $('marca-date').value;
    if (fieldError('marca-id', /^[0-9]{14}$/.test(id) ? null : 'servizi.error.marca_id')) bad.push('marca-id');
    if (fieldError('marca-date', date && date <= today() ? null : 'servizi.error.marca_date')) bad.push('marca-date');
    if (fieldError('declaration', $('declaration').checked ? null : 'servizi.error.declaration')) bad.push('declaration');
    body.usage = { bollo: true, marca: { id, issued_at: date } };
  }
  if (bad.length) {
    $(bad[0]).focus();
    return null;
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  const body = readForm();
  if (!body) {
    page.result = 'invalid-form';
    return;
  }
  const button = $('submit');
  button.disabled = true;
  setText(button, 'servizi.request.working');
  let result;
  try {
    const { status, body: answer } = await api('/api/v1/web/certificates', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (status === 201 || status === 200) {
      data.outcome = { ok: true, document_id: answer?.document_id ?? '', pdf_url: answer?.pdf_url ?? '' };
      result = 'issued';
      if (body.usage.marca) {
        $('marca-id').value = '';
        $('declaration').checked = false;
      }
      await loadMine();
    } else {
      const { code, message } = errorOf(answer);
      const retry = Number(answer?.retry_after_s ?? answer?.error?.retry_after_s);
      const minutes = code === 'rate_limited' && retry > 0 ? Math.max(1, Math.ceil(retry / 60)) : 0;
      data.outcome = minutes
        ? { ok: false, code, key: 'servizi.error.rate_limited_for', vars: { minutes }, detail: message }
        : { ok: false, code, key: ERROR_KEYS[code] ?? 'servizi.error.other', detail: message };
      result = code ?? `http-${status}`;
    }
  } catch (e) {
    data.outcome = { ok: false, code: 'network', key: 'servizi.unavailable', detail: String(e?.message ?? e) };
    result = 'network';
  } finally {
    button.disabled = false;
    setText(button, 'servizi.request.submit');
  }
  renderMine();
  renderOutcome();
  $('request-result').focus();
  // Mirrored last, once the page shows the outcome.
  page.result = result;
}

// ---- Loading ----------------------------------------------------------------------------------

async function loadMine() {
  const { status, body } = await api('/api/v1/web/certificates');
  if (status === 200) data.mine = Array.isArray(body) ? body : Array.isArray(body?.certificates) ? body.certificates : [];
}

function buildLanguages() {
  for (const code of cat.languages.filter((l) => LANGUAGES.includes(l))) {
    const b = make('button', { type: 'button', className: 'lang', textContent: cat.name(code) });
    b.dataset.lang = code;
    b.lang = code;
    b.addEventListener('click', () => {
      lang = code;
      try {
        localStorage.setItem(LANG_KEY, code);
      } catch {
        // Storage may be off; the choice then lasts for this page only.
      }
      render();
    });
    $('langs').append(b);
  }
}

function show(state) {
  page.state = state;
  $('loading').hidden = true;
  $('unavailable').hidden = state !== 'unavailable';
  $('signed-out').hidden = state !== 'signed-out';
  $('signed-in').hidden = state !== 'signed-in';
  $('logout').hidden = state !== 'signed-in';
}

async function start() {
  cat = await loadCatalogue(LANGUAGES);
  const wanted = new URLSearchParams(location.search).get('lang') ?? (() => {
    try {
      return localStorage.getItem(LANG_KEY);
    } catch {
      return null;
    }
  })();
  if (wanted && cat.languages.includes(wanted)) lang = wanted;
  buildLanguages();
  $('kind').addEventListener('change', updateForm);
  $('subject').addEventListener('change', updateForm);
  $('usage-bollo').addEventListener('change', updateForm);
  $('usage-exempt').addEventListener('change', updateForm);
  $('request').addEventListener('submit', submit);
  $('marca-date').max = today();
  $('as-of').max = today();

  let state;
  try {
    const [me, services, index] = await Promise.all([api('/api/v1/web/me'), api('/api/v1/web/services'), api('/')]);
    if (services.status === 200) data.services = services.body;
    if (index.status === 200) data.municipality = index.body?.municipality;
    if (me.status === 200 && me.body) {
      data.me = me.body;
      page.inRegistry = inRegistry();
      await loadMine();
      state = 'signed-in';
    } else if (me.status === 401) {
      state = 'signed-out';
    } else {
      console.warn(`servizi: /api/v1/web/me answered ${me.status}`);
      state = 'unavailable';
    }
  } catch (e) {
    console.warn(`servizi: ${e?.message ?? e}`);
    state = 'unavailable';
  }
  applyColour();
  show(state);
  render();
}

start();
