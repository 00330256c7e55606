// The operator's console: login, presence, incoming offers (ring, beep, countdown), one tile per
// booth with the kiosk's video, timer, state and quality, and the call actions with keyboard
// shortcuts. Sound (the kiosk's audio and the operator's microphone) goes only to and from the
// selected booth. Below the tiles, the selected booth's case (console/incall.js): identification,
// certificates with their preview, printing. The login token is kept in sessionStorage (per tab,
// gone when the tab closes). Italian first with English beside it. Where the page stands is mirrored
// on <body data-…> (lib/reflect.js), each booth on its tile's data attributes.
import { connect, defaultWsUrl, CallMedia } from '../lib/sportello.js';
import { endStaffSession, keepFresh, storedToken, submitStaffLogin } from '../lib/staff.js';
import { Bilingual, loadCatalogue } from '../lib/i18n.js';
import { InCall } from './incall.js';
import { reflect } from '../lib/reflect.js';

const TOKEN_KEY = 'sportello.console.token';
/** The booths an operator may serve at once (the largest demo capacity). */
const SLOTS = 3;
/** Services a call can be transferred to. */
const SERVICES = ['anagrafe', 'stato_civile'];
/** The console's language and its companion. */
const LANG = 'it';
const OTHER = 'en';

const $ = (id) => document.getElementById(id);

/** @type {import('../lib/i18n.js').Catalogue} */
let cat;
/** @type {import('../lib/sportello.js').SportelloClient | null} */
let client = null;
/** @type {MediaStream | null} */
let localStream = null;
let audio = null;
let beepTimer = null;
/** The in-call panels (identification, certificates, printing) of every call. */
let incall = null;
/** The dispositions of `wrapup.done`, from `state.sync`: `{code, label, label_en}`. */
let dispositions = [];
/** Dispositions with a digit key (1–5) while the selected booth is in wrap-up. */
const DISPOSITION_KEYS = 5;

const state = reflect({
  /** login · console */
  screen: 'login',
  /** connecting · open · reconnecting · closed */
  connection: 'closed',
  operatorId: null,
  /** `{state, reason}` from operator.state / state.sync. */
  operator: { state: null, reason: null },
  /** Offers by call id: `{call_id, kiosk, service, language, waited_s, expiresAt, arrived}`. */
  offers: new Map(),
  /** Calls by call id: `{call_id, kiosk, service, state, since, slot, media, quality}`. */
  calls: new Map(),
  /** The call id in each booth slot (or null). */
  slots: Array(SLOTS).fill(null),
  /** The selected slot (0-based). */
  selected: 0,
  /** Offers seen, accepted, missed (for tests). */
  offered: 0,
  missed: 0,
  beeps: 0,
  ready: false,
}, {
  screen: true, connection: true, ready: true, operator: true, offered: true, missed: true, beeps: true,
});

function note(text) {
  console.log(`console: ${text}`);
}

// ---- Text ---------------------------------------------------------------------------------------

/** Bilingual text (Italian large, English small beside it): set when the catalogues load. */
let text;
const setText = (el, key, vars) => text.set(el, key, vars);
const textEl = (tag, key, vars, className) => text.el(tag, key, vars, className);
const t = (key, vars) => text.t(key, vars);
const serviceName = (id) => text.service(id);

function duration(s) {
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

// ---- Sound ----------------------------------------------------------------------------------------

/** A short two-tone beep through WebAudio (created on the first user gesture where required). */
function beep() {
  try {
    audio ??= new AudioContext();
    if (audio.state === 'suspended') audio.resume();
    const now = audio.currentTime;
    for (const [i, freq] of [880, 660].entries()) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.2);
      gain.gain.exponentialRampToValueAtTime(0.3, now + i * 0.2 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.2 + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.2);
      osc.stop(now + i * 0.2 + 0.2);
    }
    state.beeps += 1;
  } catch (e) {
    note(`no sound: ${e.message}`);
  }
}

/** Beeps now and every 3 s while an offer is pending. */
function ring() {
  if (state.offers.size === 0) {
    clearInterval(beepTimer);
    beepTimer = null;
    return;
  }
  if (!beepTimer) {
    beep();
    beepTimer = setInterval(() => (state.offers.size ? beep() : ring()), 3000);
  }
}

// ---- Login ----------------------------------------------------------------------------------------

function submitLogin(event) {
  // The gesture lets the beep play later.
  try { audio ??= new AudioContext(); } catch { /* no audio */ }
  return submitStaffLogin(event, {
    role: 'operator',
    prefix: 'console',
    notRoleKey: 'console.login.not_operator',
    tokenKey: TOKEN_KEY,
    setText,
    note,
    onToken: start,
  });
}

function showScreen(screen) {
  state.screen = screen;
  $('screen-login').hidden = screen !== 'login';
  $('screen-console').hidden = screen !== 'console';
  $('who').hidden = screen !== 'console';
  note(`screen ${screen}`);
}

function logout() {
  endStaffSession(TOKEN_KEY);
  client?.close();
  client = null;
  for (const c of state.calls.values()) {
    c.media?.close();
    incall.remove(c);
  }
  state.calls.clear();
  state.offers.clear();
  for (const id of [...prepared.keys()]) dropPrepared(id);
  state.slots.fill(null);
  localStream?.getTracks().forEach((tr) => tr.stop());
  localStream = null;
  renderAll();
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
      setText(err, 'console.login.failed');
      err.hidden = false;
      return;
    }
    throw e;
  }
  state.operatorId = client.principalId;
  state.connection = 'open';
  $('operator-name').textContent = client.principalId;
  showScreen('console');
  wire(client);
  renderAll();
  $('main').querySelector('[data-presence="available"]').focus();
}

function wire(c) {
  c.on('connection.open', () => { state.connection = 'open'; note('connection open'); renderConnection(); });
  c.on('connection.lost', (e) => { state.connection = 'reconnecting'; note(`connection lost ${e.code}`); renderConnection(); });
  c.on('connection.closed', (e) => {
    state.connection = 'closed';
    note(`connection closed ${e.code}`);
    renderConnection();
    if (e.code === 4401) logout();
  });
  c.on('state.sync', onSync);
  c.on('operator.state', (e) => { state.operator = { state: e.state, reason: e.reason ?? null }; renderPresence(); });
  c.on('call.offered', (e) => addOffer(e));
  c.on('call.offer_revoked', (e) => {
    const offer = state.offers.get(e.call_id);
    state.offers.delete(e.call_id);
    dropPrepared(e.call_id);
    if (offer && e.reason === 'expired') missed(offer);
    note(`offer ${e.call_id} revoked (${e.reason})`);
    renderOffers();
  });
  c.on('call.connected', (e) => {
    state.offers.delete(e.call_id);
    upsertCall({ call_id: e.call_id, kiosk: e.kiosk, state: 'connected' });
    renderOffers();
  });
  c.on('call.held', (e) => setCallState(e.call_id, 'on_hold'));
  c.on('call.resumed', (e) => setCallState(e.call_id, 'connected'));
  c.on('call.ended', (e) => {
    note(`call ${e.call_id} ended (${e.reason})`);
    if (e.reason === 'completed' || e.reason === 'kiosk_lost') setCallState(e.call_id, 'wrapup');
    else removeCall(e.call_id);
  });
  c.on('wrapup.ended', (e) => removeCall(e.call_id));
  c.on('media.stats', onStats);
  incall.wire(c);
}

/** `state.sync`: the calls and offers as they are now; anything else has ended. */
function onSync(e) {
  note(`state.sync: ${e.calls.length} call(s)`);
  if (Array.isArray(e.dispositions)) {
    dispositions = e.dispositions;
    for (let i = 0; i < SLOTS; i += 1) buildDispositions(i);
  }
  if (e.operator_state) state.operator = { state: e.operator_state.state, reason: e.operator_state.reason ?? null };
  const seen = new Set();
  for (const call of e.calls) {
    seen.add(call.call_id);
    if (call.state === 'offered') {
      if (!state.offers.has(call.call_id)) addOffer(call, false);
      else state.offers.get(call.call_id).expiresAt = Date.now() + call.expires_in_s * 1000;
    } else {
      state.offers.delete(call.call_id);
      upsertCall(call);
    }
  }
  for (const id of [...state.offers.keys()]) {
    if (!seen.has(id)) {
      state.offers.delete(id);
      dropPrepared(id);
    }
  }
  for (const id of [...state.calls.keys()]) if (!seen.has(id)) removeCall(id);
  renderAll();
}

function addOffer(e, announce = true) {
  state.offers.set(e.call_id, {
    call_id: e.call_id,
    kiosk: e.kiosk,
    service: e.service,
    language: e.language,
    waited_s: e.waited_s ?? 0,
    expiresAt: Date.now() + (e.expires_in_s ?? 15) * 1000,
    arrived: Date.now() + state.offered * 0.001,
  });
  state.offered += 1;
  note(`offer ${e.call_id} from ${e.kiosk?.id}`);
  prepareMedia(e.call_id);
  if (announce) say(t('console.status.offer', { name: e.kiosk?.name ?? '' }));
  renderOffers();
}

function missed(offer) {
  state.missed += 1;
  const el = $('missed');
  setText(el, 'console.offer.missed', { name: offer.kiosk?.name ?? offer.call_id });
  el.hidden = false;
  beep();
}

function upsertCall(info) {
  let call = state.calls.get(info.call_id);
  if (!call) {
    let slot = state.slots.indexOf(null);
    if (slot < 0) slot = state.slots.length;
    state.slots[slot] = info.call_id;
    call = { call_id: info.call_id, kiosk: info.kiosk, service: info.service, state: info.state, since: Date.now(), slot, media: null, quality: 'unknown' };
    state.calls.set(info.call_id, call);
    incall.add(call);
    // A new booth becomes the selected one when the selected slot is free.
    if (!state.slots[state.selected]) state.selected = slot;
    note(`booth ${slot + 1}: call ${info.call_id} (${info.state})`);
    say(t('console.status.connected', { name: info.kiosk?.name ?? '' }));
  }
  call.kiosk = info.kiosk ?? call.kiosk;
  call.service = info.service ?? call.service;
  call.state = info.state;
  if ((call.state === 'connected' || call.state === 'on_hold') && !call.media && !call.mediaStarting) startMedia(call);
  renderTile(call.slot);
}

function setCallState(callId, s) {
  const call = state.calls.get(callId);
  if (!call) return;
  call.state = s;
  note(`call ${callId} ${s}`);
  if (s === 'wrapup') {
    call.media?.close();
    call.media = null;
    call.reconnecting = false;
    call.mic?.stop();
    call.mic = null;
    call.since = Date.now();
  }
  renderTile(call.slot);
  incall.render(call);
}

function removeCall(callId) {
  dropPrepared(callId);
  const call = state.calls.get(callId);
  if (!call) return;
  call.media?.close();
  call.mic?.stop();
  state.calls.delete(callId);
  incall.remove(call);
  state.slots[call.slot] = null;
  note(`booth ${call.slot + 1} free`);
  renderTile(call.slot);
}

// ---- Media ----------------------------------------------------------------------------------------

async function camera() {
  if (localStream) return localStream;
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  } catch (e) {
    note(`camera unavailable: ${e.name}`);
    showError(t('console.error.camera'));
    localStream = null;
  }
  return localStream;
}

/** Media made ready while a call is offered, by call id: a promise of `{media, mic}` or null. */
const prepared = new Map();

/** A call's media: its own stream (see `startMedia`) and a `CallMedia` for it, not started. */
async function createMedia(callId) {
  const cam = await camera();
  // Each booth gets its own microphone track, live only while the booth is selected, so a citizen
  // never hears the operator talking to another booth.
  let stream = null;
  let mic = null;
  if (cam) {
    mic = cam.getAudioTracks()[0]?.clone() ?? null;
    stream = new MediaStream([...cam.getVideoTracks(), ...(mic ? [mic] : [])]);
  }
  return { media: new CallMedia(client, callId, { stream }), mic };
}

/**
 * While a call rings: its peer connection and offer are made now (`CallMedia.prepare`), so that
 * once the operator accepts only the offer has to go.
 */
function prepareMedia(callId) {
  if (prepared.has(callId) || state.calls.has(callId)) return;
  prepared.set(callId, (async () => {
    const made = await createMedia(callId);
    try {
      await made.media.prepare();
    } catch (e) {
      made.media.close();
      made.mic?.stop();
      throw e;
    }
    return made;
  })().catch((e) => {
    note(`media of ${callId} not prepared: ${e.name ?? e.code ?? ''} ${e.message}`);
    return null;
  }));
}

/** Closes the media prepared for an offer that went away (revoked, expired, taken elsewhere). */
function dropPrepared(callId) {
  const p = prepared.get(callId);
  if (!p) return;
  prepared.delete(callId);
  p.then((made) => {
    made?.media.close();
    made?.mic?.stop();
  });
}

async function startMedia(call) {
  call.mediaStarting = true;
  const ready = prepared.get(call.call_id);
  prepared.delete(call.call_id);
  const { media, mic } = (await ready) ?? (await createMedia(call.call_id));
  call.mediaStarting = false;
  // The call may have ended while the camera opened.
  if (state.calls.get(call.call_id) !== call || call.state === 'wrapup') {
    media.close();
    mic?.stop();
    return;
  }
  call.mic = mic;
  call.media = media;
  // The server moved the call's media to another node (media.reconnect): the same call on a new
  // connection, whose streams the tile and the scan comparison show again.
  const current = () => state.calls.get(call.call_id) === call && call.media === media;
  media.on('reconnecting', (e) => {
    if (!current()) return;
    note(`media.reconnect of ${call.call_id} (${e.reason}): offering again`);
    call.reconnecting = true;
    call.reconnects = e.reconnects;
    renderTile(call.slot);
  });
  media.on('streams', () => {
    if (!current()) return;
    renderTile(call.slot);
    incall.render(call);
  });
  media.on('reconnected', () => {
    if (!current()) return;
    call.reconnecting = false;
    renderTile(call.slot);
  });
  try {
    await media.start();
    note(`media of ${call.call_id} negotiated`);
  } catch (e) {
    note(`media.offer of ${call.call_id} failed: ${e.code} ${e.message}`);
  }
  renderTile(call.slot);
}

/** `media.stats`: the quality of what reaches the operator, as a dot and a word. */
function onStats(e) {
  const call = state.calls.get(e.call_id);
  if (!call) return;
  const inbound = (e.directions ?? []).find((d) => d.to === 'operator');
  let q = 'unknown';
  if (e.held) q = call.quality;
  else if (!(e.connected ?? []).includes('kiosk') || !(e.connected ?? []).includes('operator')) {
    // Still connecting at the start of a call; a party missing later is a real problem.
    q = Date.now() - call.since < 10000 ? 'unknown' : 'poor';
  }
  else if (inbound) {
    const loss = Math.max(inbound.fraction_lost ?? 0, 0);
    const rtt = inbound.rtt_ms ?? 0;
    q = loss < 0.02 && rtt < 300 ? 'good' : loss < 0.1 && rtt < 800 ? 'fair' : 'poor';
  }
  if (q !== call.quality) {
    call.quality = q;
    renderTile(call.slot);
  }
}

// ---- Actions --------------------------------------------------------------------------------------

async function act(type, body) {
  try {
    showError('');
    await client.request(type, body);
    note(`${type} ok`);
  } catch (e) {
    note(`${type} failed: ${e.code} ${e.message}`);
    showError(t('console.error.request', { message: e.message }));
  }
}

const oldestOffer = () => [...state.offers.values()].sort((a, b) => a.arrived - b.arrived)[0];
const selectedCall = () => state.calls.get(state.slots[state.selected]);

function accept(callId) {
  if (callId) act('call.accept', { call_id: callId });
}
function reject(callId) {
  if (callId) act('call.reject', { call_id: callId });
}
function holdOrResume(call) {
  if (call?.state === 'connected') act('call.hold', { call_id: call.call_id });
  else if (call?.state === 'on_hold') act('call.resume', { call_id: call.call_id });
}
function end(call) {
  if (call && call.state !== 'wrapup') act('call.end', { call_id: call.call_id });
}
/** Closes the wrap-up with the chosen disposition and the notes typed in the booth's tile. */
function wrapupDone(call, code) {
  if (call?.state !== 'wrapup') return;
  const body = { call_id: call.call_id };
  if (code) body.disposition = code;
  const notes = $(`tile-${call.slot + 1}`)?.querySelector('.wrapup-notes')?.value.trim();
  if (notes) body.notes = notes;
  act('wrapup.done', body);
}

/** `W`: with no dispositions configured, closes the wrap-up; otherwise moves to its choices. */
function wrapupKey(call) {
  if (call?.state !== 'wrapup') return;
  if (dispositions.length === 0) wrapupDone(call);
  else $(`tile-${call.slot + 1}`)?.querySelector('.disposition')?.focus();
}

/** The disposition buttons of a tile (rebuilt when `state.sync` lists them). */
function buildDispositions(slot) {
  const tile = $(`tile-${slot + 1}`);
  const box = tile?.querySelector('.dispositions');
  if (!box) return;
  const buttons = dispositions.map((d, i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-primary disposition';
    b.dataset.code = d.code;
    const main = Object.assign(document.createElement('span'), { textContent: LANG === 'it' ? d.label : d.label_en });
    const sub = Object.assign(document.createElement('span'), { className: 'sub', textContent: LANG === 'it' ? d.label_en : d.label });
    sub.lang = OTHER;
    sub.setAttribute('aria-hidden', 'true');
    b.append(main, sub);
    if (i < DISPOSITION_KEYS) {
      b.setAttribute('aria-keyshortcuts', String(i + 1));
      b.append(' ', Object.assign(document.createElement('kbd'), { textContent: String(i + 1) }));
    }
    b.setAttribute('aria-describedby', `tile-${slot + 1}-kiosk`);
    b.addEventListener('click', () => { select(slot); wrapupDone(state.calls.get(state.slots[slot]), d.code); });
    return b;
  });
  box.querySelector('.disposition-list').replaceChildren(...buttons);
}
function transfer(call, service) {
  if (call && call.state !== 'wrapup') act('call.transfer', { call_id: call.call_id, service });
}
function select(slot) {
  state.selected = slot;
  for (let i = 0; i < SLOTS; i += 1) renderTile(i);
}

const SHORTCUTS = [
  ['A', 'console.shortcut.accept'],
  ['R', 'console.shortcut.reject'],
  ['H', 'console.shortcut.hold'],
  ['E', 'console.shortcut.end'],
  ['W', 'console.shortcut.wrapup'],
  ['1–3', 'console.shortcut.select'],
  ['1–5', 'console.shortcut.disposition'],
];

function onKey(event) {
  if (state.screen !== 'console' || event.ctrlKey || event.metaKey || event.altKey) return;
  const tag = event.target?.tagName;
  if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
  const key = event.key.toLowerCase();
  const handled = {
    a: () => accept(oldestOffer()?.call_id),
    r: () => reject(oldestOffer()?.call_id),
    h: () => holdOrResume(selectedCall()),
    e: () => end(selectedCall()),
    w: () => wrapupKey(selectedCall()),
    1: () => select(0),
    2: () => select(1),
    3: () => select(2),
  }[key];
  // While the selected booth is in wrap-up, digits choose its disposition instead of a booth.
  const digit = Number.parseInt(key, 10);
  const call = selectedCall();
  if (call?.state === 'wrapup' && digit >= 1 && digit <= Math.min(DISPOSITION_KEYS, dispositions.length)) {
    event.preventDefault();
    wrapupDone(call, dispositions[digit - 1].code);
    return;
  }
  if (handled) {
    event.preventDefault();
    note(`key ${key}`);
    handled();
  }
}

// ---- Rendering ------------------------------------------------------------------------------------

function renderConnection() {
  if (!cat) return;
  setText($('connection'), `console.connection.${state.connection}`);
}

function renderPresence() {
  const s = state.operator.state;
  for (const b of document.querySelectorAll('[data-presence]')) {
    const on = s === b.dataset.presence || (s === 'wrapup' && b.dataset.presence === 'available');
    b.setAttribute('aria-pressed', String(on));
  }
  const key = s ? `console.state.${s}` : 'console.state.unknown';
  setText($('op-state'), key, { reason: state.operator.reason ?? '' });
}

function renderOffers() {
  const list = $('offer-list');
  const offers = [...state.offers.values()].sort((a, b) => a.arrived - b.arrived);
  list.replaceChildren(...offers.map((o, i) => {
    const li = document.createElement('li');
    li.className = 'offer';
    li.dataset.callId = o.call_id;
    li.dataset.kioskId = o.kiosk?.id ?? '';
    const icon = document.createElement('span');
    icon.className = 'ring-icon';
    icon.setAttribute('aria-hidden', 'true');
    icon.textContent = '☎';
    const text = document.createElement('div');
    text.className = 'offer-text';
    const name = o.kiosk?.name ?? o.kiosk?.id ?? '';
    text.append(
      Object.assign(textEl('p', 'console.offer.from', { name }, 'kiosk-name'), { id: `offer-${o.call_id}` }),
      Object.assign(document.createElement('p'), { className: 'hint', textContent: o.kiosk?.location ?? '' }),
      textEl('p', 'console.offer.details', { service: serviceName(o.service), language: o.language, waited: duration(o.waited_s) }),
    );
    const countdown = document.createElement('p');
    countdown.className = 'countdown';
    countdown.setAttribute('role', 'timer');
    const acceptBtn = document.createElement('button');
    acceptBtn.type = 'button';
    acceptBtn.className = 'btn btn-ok offer-accept';
    setText(acceptBtn, 'console.offer.accept');
    acceptBtn.addEventListener('click', () => accept(o.call_id));
    const rejectBtn = document.createElement('button');
    rejectBtn.type = 'button';
    rejectBtn.className = 'btn btn-danger offer-reject';
    setText(rejectBtn, 'console.offer.reject');
    rejectBtn.addEventListener('click', () => reject(o.call_id));
    if (i === 0) {
      acceptBtn.append(' ', Object.assign(document.createElement('kbd'), { textContent: 'A' }));
      rejectBtn.append(' ', Object.assign(document.createElement('kbd'), { textContent: 'R' }));
    }
    // The buttons' names are their visible words; the offer's kiosk describes them.
    for (const b of [acceptBtn, rejectBtn]) b.setAttribute('aria-describedby', `offer-${o.call_id}`);
    li.append(icon, text, countdown, acceptBtn, rejectBtn);
    return li;
  }));
  $('offers-empty').hidden = offers.length > 0;
  $('offers').classList.toggle('ringing', offers.length > 0);
  tickOffers();
  ring();
}

/** Updates the countdowns (every second). */
function tickOffers() {
  for (const li of $('offer-list').children) {
    const o = state.offers.get(li.dataset.callId);
    if (!o) continue;
    const left = Math.max(0, Math.ceil((o.expiresAt - Date.now()) / 1000));
    const el = li.querySelector('.countdown');
    el.textContent = t('console.offer.seconds', { seconds: left });
    el.setAttribute('aria-label', t('console.offer.countdown_label', { seconds: left }));
    el.classList.toggle('urgent', left <= 5);
  }
}

/** Builds the booth tiles once; `renderTile` fills them. */
function buildTiles() {
  const tiles = $('tiles');
  for (let slot = 0; slot < SLOTS; slot += 1) {
    const tile = document.createElement('section');
    tile.className = 'tile';
    tile.id = `tile-${slot + 1}`;
    tile.setAttribute('aria-labelledby', `tile-${slot + 1}-title`);
    tile.innerHTML = `
      <div class="tile-head">
        <h3 id="tile-${slot + 1}-title"><button type="button" class="btn tile-select"></button></h3>
        <span class="selected-label"></span>
      </div>
      <video class="remote" autoplay playsinline hidden></video>
      <p class="reconnecting" role="status" hidden></p>
      <p class="empty"></p>
      <div class="tile-info" hidden>
        <p class="kiosk-name" id="tile-${slot + 1}-kiosk"></p>
        <p class="location"></p>
        <div class="tile-facts">
          <span class="call-state"></span>
          <span><span class="label timer-label"></span> <span class="timer" role="timer"></span></span>
          <span class="quality"><span class="dot" aria-hidden="true"></span><span class="quality-text"></span></span>
          <span class="id-badge"></span>
        </div>
        <div class="tile-actions">
          <button type="button" class="btn act-hold" aria-describedby="tile-${slot + 1}-kiosk"></button>
          <button type="button" class="btn btn-danger act-end" aria-describedby="tile-${slot + 1}-kiosk"></button>
          <label class="visually-hidden" for="transfer-${slot + 1}"></label>
          <select id="transfer-${slot + 1}" class="transfer-service"></select>
          <button type="button" class="btn act-transfer" aria-describedby="tile-${slot + 1}-kiosk"></button>
          <button type="button" class="btn btn-primary act-wrapup" aria-describedby="tile-${slot + 1}-kiosk"></button>
        </div>
        <fieldset class="dispositions" hidden>
          <legend id="tile-${slot + 1}-disposition"></legend>
          <div class="disposition-list"></div>
          <label class="notes-label" for="notes-${slot + 1}"></label>
          <input id="notes-${slot + 1}" class="wrapup-notes" type="text" maxlength="500" autocomplete="off">
        </fieldset>
      </div>`;
    const call = () => state.calls.get(state.slots[slot]);
    tile.querySelector('.tile-select').addEventListener('click', () => select(slot));
    tile.querySelector('.act-hold').addEventListener('click', () => { select(slot); holdOrResume(call()); });
    tile.querySelector('.act-end').addEventListener('click', () => { select(slot); end(call()); });
    tile.querySelector('.act-wrapup').addEventListener('click', () => { select(slot); wrapupDone(call()); });
    tile.querySelector('.act-transfer').addEventListener('click', () => {
      select(slot);
      transfer(call(), tile.querySelector('.transfer-service').value);
    });
    for (const s of SERVICES) {
      const opt = document.createElement('option');
      opt.value = s;
      opt.textContent = serviceName(s);
      tile.querySelector('.transfer-service').append(opt);
    }
    tiles.append(tile);
  }
}

function renderTile(slot) {
  const tile = $(`tile-${slot + 1}`);
  if (!tile) return;
  const call = state.calls.get(state.slots[slot]);
  const q = (sel) => tile.querySelector(sel);
  const selected = slot === state.selected;
  tile.classList.toggle('selected', selected);
  tile.classList.toggle('attention', call?.state === 'on_hold' || call?.state === 'wrapup');
  const selectBtn = q('.tile-select');
  setText(selectBtn, 'console.booth', { n: slot + 1 });
  selectBtn.setAttribute('aria-pressed', String(selected));
  selectBtn.setAttribute('aria-keyshortcuts', String(slot + 1));
  if (selected) incall.select(state.slots[slot]);
  const selLabel = q('.selected-label');
  if (selected) setText(selLabel, 'console.booth.selected');
  else selLabel.replaceChildren();
  const video = q('.remote');
  tile.dataset.state = call?.state ?? 'free';
  if (call) Object.assign(tile.dataset, { callId: call.call_id, kioskId: call.kiosk?.id ?? '' });
  else for (const k of ['callId', 'kioskId']) delete tile.dataset[k];
  q('.empty').hidden = Boolean(call);
  q('.tile-info').hidden = !call;
  if (!call) {
    setText(q('.empty'), 'console.booth.free');
    video.hidden = true;
    video.srcObject = null;
    q('.reconnecting').hidden = true;
    delete tile.dataset.mediaReconnects;
    return;
  }
  const name = call.kiosk?.name ?? call.kiosk?.id ?? '';
  video.hidden = call.state === 'wrapup';
  video.setAttribute('aria-label', t('console.booth.video', { name }));
  const stream = call.media?.remoteStream ?? null;
  if (video.srcObject !== stream) video.srcObject = stream;
  const reconnecting = q('.reconnecting');
  reconnecting.hidden = !call.reconnecting || call.state === 'wrapup';
  if (!reconnecting.hidden) setText(reconnecting, 'console.media.reconnecting');
  tile.dataset.mediaReconnects = String(call.reconnects ?? 0);
  // Sound in both directions only with the selected booth.
  video.muted = !selected;
  if (call.mic) call.mic.enabled = selected;
  q('.kiosk-name').textContent = name;
  q('.location').textContent = call.kiosk?.location ?? '';
  const st = q('.call-state');
  st.dataset.state = call.state;
  setText(st, `console.call.${call.state}`);
  setText(q('.timer-label'), 'console.call.timer');
  const dot = q('.dot');
  dot.dataset.q = call.quality;
  setText(q('.quality-text'), `console.quality.${call.quality}`);
  q('.quality').setAttribute('title', `${t('console.quality')}: ${t(`console.quality.${call.quality}`)}`);
  const inCall = call.state === 'connected' || call.state === 'on_hold';
  const holdBtn = q('.act-hold');
  setText(holdBtn, call.state === 'on_hold' ? 'console.call.resume' : 'console.call.hold');
  if (selected) holdBtn.append(' ', Object.assign(document.createElement('kbd'), { textContent: 'H' }));
  holdBtn.hidden = !inCall;
  const endBtn = q('.act-end');
  setText(endBtn, 'console.call.end');
  if (selected) endBtn.append(' ', Object.assign(document.createElement('kbd'), { textContent: 'E' }));
  endBtn.hidden = !inCall;
  q('label').textContent = t('console.call.transfer_to');
  q('.transfer-service').hidden = !inCall;
  const trBtn = q('.act-transfer');
  setText(trBtn, 'console.call.transfer');
  trBtn.hidden = !inCall;
  const wrBtn = q('.act-wrapup');
  setText(wrBtn, 'console.call.wrapup_done');
  if (selected) wrBtn.append(' ', Object.assign(document.createElement('kbd'), { textContent: 'W' }));
  // With dispositions, the wrap-up closes by choosing one; without, with the plain button.
  wrBtn.hidden = call.state !== 'wrapup' || dispositions.length > 0;
  const disp = q('.dispositions');
  const wasHidden = disp.hidden;
  disp.hidden = call.state !== 'wrapup' || dispositions.length === 0;
  if (disp.hidden && !wasHidden) q('.wrapup-notes').value = '';
  setText(q('legend'), 'console.disposition.legend');
  setText(q('.notes-label'), 'console.disposition.notes');
  const badge = q('.id-badge');
  const identity = call.incall?.identity.status ?? 'none';
  badge.dataset.status = identity;
  setText(badge, `console.booth.identity.${identity}`);
  tickTile(slot);
}

/** Updates one tile's call timer. */
function tickTile(slot) {
  const call = state.calls.get(state.slots[slot]);
  const el = $(`tile-${slot + 1}`)?.querySelector('.timer');
  if (call && el) el.textContent = duration((Date.now() - call.since) / 1000);
}

function renderShortcuts() {
  $('shortcut-list').replaceChildren(...SHORTCUTS.map(([key, label]) => {
    const row = document.createElement('div');
    const dt = document.createElement('dt');
    dt.append(Object.assign(document.createElement('kbd'), { textContent: key }));
    row.append(dt, textEl('dd', label));
    return row;
  }));
}

function renderAll() {
  for (const el of document.querySelectorAll('[data-i18n]')) setText(el, el.dataset.i18n, el.i18nVars ?? {});
  document.title = `${t('console.title')} — ${t('app.title')}`;
  renderConnection();
  renderPresence();
  renderOffers();
  for (let i = 0; i < SLOTS; i += 1) renderTile(i);
  for (const call of state.calls.values()) incall.render(call);
}

// ---- Start ----------------------------------------------------------------------------------------

async function main() {
  cat = await loadCatalogue([LANG, OTHER]);
  text = new Bilingual(cat, LANG, OTHER);
  incall = new InCall({
    container: $('incall-panels'),
    empty: $('incall-empty'),
    text,
    client: () => client,
    note,
    say,
    changed: (call) => renderTile(call.slot),
  });
  buildTiles();
  renderShortcuts();
  for (const b of document.querySelectorAll('[data-presence]')) {
    b.addEventListener('click', () => {
      try { audio ??= new AudioContext(); } catch { /* no audio */ }
      act('presence.set', { state: b.dataset.presence });
    });
  }
  $('login-form').addEventListener('submit', submitLogin);
  $('logout').addEventListener('click', logout);
  document.addEventListener('keydown', onKey);
  setInterval(() => {
    tickOffers();
    for (let i = 0; i < SLOTS; i += 1) tickTile(i);
  }, 1000);
  renderAll();
  state.ready = true;
  const token = await storedToken(TOKEN_KEY);
  if (token) {
    await start(token).catch((e) => note(`start failed: ${e.message}`));
  } else {
    showScreen('login');
    $('username').focus();
  }
}

main().catch((e) => note(`console failed: ${e.stack ?? e}`));
