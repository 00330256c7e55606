// The kiosk's touch screen: a citizen picks a language and a service, calls an operator, waits in
// the queue, talks on video, and is brought back to the start when the call ends. The device token
// comes once from the URL fragment (`#token=…`), is kept in localStorage and never shown.
// Optional fragment parameters: `services=anagrafe,stato_civile`, `languages=it,en`, `end_s=8`,
// `agent=http://127.0.0.1:7480` (the local kiosk agent that gets the PIN and the "scan now", kept
// in localStorage like the token; only a loopback address is taken). During a call the in-call
// prompts (kiosk/incall.js) ask for the card and PIN, the PEC code or the document, and tell about
// the certificate and the printing. Where the page stands (screen, connection, call, prompts) is
// mirrored on <body data-…> (lib/reflect.js).
import { connect, defaultWsUrl, CallMedia } from '../lib/sportello.js';
import { loadCatalogue, REFERENCE_LANGUAGE } from '../lib/i18n.js';
import { KioskInCall } from './incall.js';
import { waitMessage } from './wait.js';
import { reflect } from '../lib/reflect.js';

const TOKEN_KEY = 'sportello.kiosk.token';
const AGENT_KEY = 'sportello.kiosk.agent';
const params = new URLSearchParams(location.hash.slice(1));
if (params.has('token')) localStorage.setItem(TOKEN_KEY, params.get('token'));
if (params.has('agent')) {
  const agent = loopbackAgent(params.get('agent'));
  if (agent) localStorage.setItem(AGENT_KEY, agent);
  else console.warn('kiosk: #agent= ignored: the kiosk agent must be on loopback (127.0.0.0/8, [::1], localhost)');
}
// Remove the token (and everything else) from the visible URL and the history.
history.replaceState(null, '', location.pathname + location.search);
const token = localStorage.getItem(TOKEN_KEY);
// A stored address is checked again: one kept by an older page may point anywhere.
const AGENT_URL = loopbackAgent(localStorage.getItem(AGENT_KEY)) ?? 'http://127.0.0.1:7480';
const SERVICES = (params.get('services') ?? 'anagrafe,stato_civile').split(',').filter(Boolean);
const LANGUAGES = (params.get('languages') ?? 'it,en').split(',').filter(Boolean);
const END_S = Number(params.get('end_s') ?? 8);
/** Back to the start (and Italian) after this long untouched on the welcome screen. */
const IDLE_S = 90;
/** Back to the start this long after an answered call when the citizen neither rates nor skips. */
const FEEDBACK_S = Number(params.get('feedback_s') ?? 30);
/** The rating faces' mouths, 1 (very unhappy) to 5 (very happy): how far the smile bends. */
const SMILES = [-10, -5, 0, 5, 10];

const $ = (id) => document.getElementById(id);

/**
 * The kiosk agent's base URL if `text` is an http(s) URL on this machine's loopback (127.0.0.0/8,
 * [::1] or localhost) with no path, user or query; else null. The PIN goes there, so no other
 * address is ever taken from the fragment.
 * @param {string | null} text
 */
function loopbackAgent(text) {
  let url;
  try {
    url = new URL(text ?? '');
  } catch {
    return null;
  }
  const loopback = url.hostname === 'localhost' || url.hostname === '[::1]'
    || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(url.hostname);
  const bare = !url.username && !url.password && !url.search && !url.hash && (url.pathname === '/' || url.pathname === '');
  return (url.protocol === 'http:' || url.protocol === 'https:') && loopback && bare ? url.origin : null;
}

/** @type {import('../lib/i18n.js').Catalogue} */
let cat;
let lang = REFERENCE_LANGUAGE;
let service = SERVICES[0];
/** @type {import('../lib/sportello.js').SportelloClient | null} */
let client = null;
/** @type {CallMedia | null} */
let media = null;
/** @type {MediaStream | null} */
let localStream = null;
let endTimer = null;
let idleTimer = null;
/** The call an operator answered, which the citizen may rate once it ends. */
let answeredCall = null;
/** @type {KioskInCall | null} */
let incall = null;

/** What the page shows, mirrored on <body data-…>. */
const ui = reflect({
  /** welcome · waiting · in_call · hold · ended · setup */
  screen: 'welcome',
  callId: null,
  /** Every screen shown, in order. */
  screens: [],
  /** connecting · open · reconnecting · closed */
  connection: 'connecting',
  /** How many times the socket was lost, and re-opened. */
  lost: 0,
  opened: 0,
  /** The warning banner shown: camera · network, or null. */
  banner: null,
  /** The camera problem shown, if any (`NotAllowedError`, …). */
  cameraError: null,
  /** The call's media is being moved to another media node (`media.reconnect`), and how often it was. */
  mediaReconnecting: false,
  mediaReconnects: 0,
  /** The rating after an answered call: asking · sent · skipped · failed, or null. */
  feedback: null,
  /** The rating sent (1–5), or null. */
  rating: null,
}, {
  feedback: true, rating: true,
  screen: true, callId: true, screens: true, connection: true, lost: true, opened: true, banner: true, cameraError: true,
  mediaReconnecting: true, mediaReconnects: true,
  prompt: true, prompts: true, identity: true, notices: true, agent: true,
});

function note(text) {
  console.log(`kiosk: ${text}`);
}

// ---- Text ---------------------------------------------------------------------------------------

/** Fills `el` with `key` in the chosen language, and the companion language small below. */
function setText(el, key, vars = {}, single = false) {
  el.dataset.i18n = key;
  el.i18nVars = vars;
  const main = document.createElement('span');
  main.lang = lang;
  main.textContent = cat.t(lang, key, vars);
  const parts = [main];
  const other = cat.companion(lang);
  if (other && !single && !('i18nSingle' in el.dataset)) {
    const sub = document.createElement('span');
    sub.className = 'sub';
    sub.lang = other;
    // Screen readers read the chosen language only.
    sub.setAttribute('aria-hidden', 'true');
    sub.textContent = cat.t(other, key, vars);
    parts.push(sub);
  }
  el.replaceChildren(...parts);
}

/** Re-renders every translated element in the chosen language. */
function render() {
  document.documentElement.lang = lang;
  document.title = `${cat.t(lang, 'app.title')}`;
  for (const el of document.querySelectorAll('[data-i18n]')) setText(el, el.dataset.i18n, el.i18nVars ?? {});
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', cat.t(lang, el.dataset.i18nLabel));
  for (const b of document.querySelectorAll('.lang')) b.setAttribute('aria-pressed', String(b.dataset.lang === lang));
  for (const b of document.querySelectorAll('.service')) b.setAttribute('aria-checked', String(b.dataset.service === service));
  incall?.render();
  announce();
}

function buildControls() {
  for (const code of cat.languages.filter((l) => LANGUAGES.includes(l))) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'lang';
    b.dataset.lang = code;
    b.lang = code;
    b.textContent = cat.name(code);
    b.addEventListener('click', () => {
      lang = code;
      note(`language ${code}`);
      render();
    });
    $('langs').append(b);
  }
  for (const id of SERVICES) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'service';
    b.id = `service-${id}`;
    b.dataset.service = id;
    b.setAttribute('role', 'radio');
    const check = document.createElement('span');
    check.className = 'check';
    check.setAttribute('aria-hidden', 'true');
    check.textContent = '✓';
    const text = document.createElement('span');
    const name = document.createElement('span');
    name.className = 'name';
    name.dataset.i18n = `service.${id}`;
    const hint = document.createElement('span');
    hint.className = 'hint';
    hint.dataset.i18n = `service.${id}.hint`;
    hint.dataset.i18nSingle = '';
    text.append(name, hint);
    b.append(check, text);
    b.addEventListener('click', () => {
      service = id;
      render();
    });
    $('services').append(b);
  }
}

// ---- Screens and messages -----------------------------------------------------------------------

const SCREEN_SECTION = { welcome: 'welcome', waiting: 'waiting', in_call: 'call', hold: 'hold', ended: 'ended', setup: 'setup' };

function show(screen) {
  if (ui.screen !== screen || ui.screens.length === 0) ui.screens = [...ui.screens, screen].slice(-32);
  ui.screen = screen;
  for (const [name, section] of Object.entries(SCREEN_SECTION)) $(`screen-${section}`).hidden = name !== screen;
  note(`screen ${screen}`);
  announce();
  // Move the focus to the screen's main action (not on the first screen after loading).
  const focus = { welcome: 'call', waiting: 'cancel', ended: 'back' }[screen];
  if (focus && ui.screens.length > 1) $(focus).focus({ preventScroll: true });
  armIdle();
}

/** Says the current screen in the live region. */
function announce() {
  if (cat) $('status').textContent = cat.t(lang, `status.${ui.screen}`);
}

/** Shows (or with `null`, hides) the warning banner. */
function banner(kind) {
  ui.banner = kind;
  $('banner').hidden = !kind;
  $('camera-retry').hidden = kind !== 'camera';
  if (!kind) return;
  setText($('banner-title'), `${kind === 'camera' ? 'camera.problem' : 'network.lost'}`);
  setText($('banner-hint'), kind === 'camera' ? 'camera.hint' : 'network.hint');
}

/** Shows the waiting screen with the position and the wait (an interval when the server sends one). */
function showWaiting(update = {}) {
  const { position, estimated_wait_s: wait } = update;
  if (position) setText($('waiting-position'), 'waiting.position', { position });
  else setText($('waiting-position'), 'waiting.position_unknown');
  setText($('waiting-estimate'), ...waitMessage(update));
  $('waiting-hint').hidden = !(wait === null || wait === undefined);
  if (ui.screen !== 'waiting') show('waiting');
}

function showEnded(reason) {
  stopMedia();
  banner(null);
  incall?.clear();
  const cancelled = reason === 'abandoned';
  setText($('ended-title'), cancelled ? 'ended.cancelled' : 'ended.title');
  setText($('ended-text'), reason === 'kiosk_lost' ? 'ended.lost' : 'ended.thanks');
  // An answered call that ended normally is rated once; anything else is not asked about.
  const rate = reason === 'completed' && answeredCall && answeredCall === ui.callId ? answeredCall : null;
  answeredCall = null;
  ui.callId = null;
  askFeedback(rate);
  show('ended');
  countdown(cancelled ? Math.min(3, END_S) : rate ? FEEDBACK_S : END_S);
  if (rate) $('faces').querySelector('button')?.focus({ preventScroll: true });
}

/** Shows the rating faces for `callId` (or hides them with null). */
function askFeedback(callId) {
  ui.feedback = callId ? 'asking' : null;
  ui.rating = null;
  $('feedback').hidden = !callId;
  $('feedback-thanks').hidden = true;
  // While asking, "skip" is the way back; the usual button returns once it is answered.
  $('back').hidden = Boolean(callId);
  $('feedback').dataset.callId = callId ?? '';
}

/** Sends the citizen's rating once; thanks them and goes back to the start shortly after. */
async function sendFeedback(rating) {
  const callId = $('feedback').dataset.callId;
  if (ui.feedback !== 'asking' || !callId) return;
  ui.feedback = 'sending';
  try {
    await client.request('feedback.submit', { call_id: callId, rating });
    ui.feedback = 'sent';
    ui.rating = rating;
  } catch (e) {
    note(`feedback failed: ${e.code} ${e.message}`);
    ui.feedback = 'failed';
  }
  $('feedback').hidden = true;
  $('feedback-thanks').hidden = false;
  $('back').hidden = false;
  countdown(Math.min(3, END_S));
}

/** A face drawn in SVG (the system may lack emoji): a circle, two eyes and a mouth bent by `smile`. */
function faceIcon(smile) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 64 64');
  svg.setAttribute('class', 'face-icon');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const part = (tag, attrs) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
  };
  const line = { fill: 'none', stroke: 'currentColor', 'stroke-width': 4, 'stroke-linecap': 'round' };
  part('circle', { cx: 32, cy: 32, r: 28, ...line });
  part('circle', { cx: 22, cy: 26, r: 3.5, fill: 'currentColor' });
  part('circle', { cx: 42, cy: 26, r: 3.5, fill: 'currentColor' });
  part('path', { d: `M20 ${44 - smile / 2} Q32 ${44 + smile * 1.5} 44 ${44 - smile / 2}`, ...line });
  return svg;
}

/** Skipping the rating is allowed: straight back to the start. */
function skipFeedback() {
  ui.feedback = 'skipped';
  reset();
}

/** Counts `seconds` down on the ended screen, then goes back to the start. */
function countdown(seconds) {
  let left = seconds;
  const tick = () => {
    setText($('ended-countdown'), 'ended.countdown', { seconds: left });
    if (left <= 0) reset();
    left -= 1;
  };
  clearInterval(endTimer);
  tick();
  endTimer = setInterval(tick, 1000);
}

/** Back to the start: forgets the call, the choices and the language (privacy at a public place). */
function reset() {
  clearInterval(endTimer);
  endTimer = null;
  $('feedback').hidden = true;
  $('feedback-thanks').hidden = true;
  $('back').hidden = false;
  stopMedia();
  incall?.clear();
  ui.callId = null;
  lang = REFERENCE_LANGUAGE;
  service = SERVICES[0];
  $('call').disabled = false;
  $('welcome-error').hidden = true;
  $('waiting-requeued').hidden = true;
  if (ui.banner === 'camera') banner(null);
  render();
  show('welcome');
}

/** On the welcome screen, nobody touching it for IDLE_S brings back the defaults. */
function armIdle() {
  clearTimeout(idleTimer);
  if (ui.screen !== 'welcome') return;
  idleTimer = setTimeout(() => {
    if (ui.screen === 'welcome' && (lang !== REFERENCE_LANGUAGE || service !== SERVICES[0])) reset();
  }, IDLE_S * 1000);
}
document.addEventListener('pointerdown', armIdle);

function welcomeError(key) {
  setText($('welcome-error'), key);
  $('welcome-error').hidden = false;
}

// ---- Calls --------------------------------------------------------------------------------------

async function call() {
  if (!client || ui.callId) return;
  $('call').disabled = true;
  $('welcome-error').hidden = true;
  try {
    const reply = await client.request('call.request', { service, language: lang });
    ui.callId = reply.call_id;
    note(`call ${reply.call_id} (${service}, ${lang})`);
    // While the citizen waits: the camera opens and the offer is made (see prepareMedia).
    prepareMedia(reply.call_id).catch((e) => note(`media not prepared: ${e.code ?? ''} ${e.message}`));
    // queue.update follows unless an operator got it at once (then call.assigned comes).
    if (ui.screen === 'welcome') showWaiting();
  } catch (e) {
    note(`call.request failed: ${e.code} ${e.message}`);
    welcomeError(e.code === 'conflict' ? 'error.busy' : 'error.call_failed');
  } finally {
    $('call').disabled = false;
  }
}

async function cancel() {
  const callId = ui.callId;
  if (!callId) {
    reset();
    return;
  }
  try {
    await client.request('call.cancel', { call_id: callId });
  } catch (e) {
    note(`call.cancel failed: ${e.code} ${e.message}`);
    if (e.code === 'not_found') showEnded('abandoned');
  }
}

/** The camera and microphone; on failure, the microphone alone; on failure, nothing. */
async function openDevices() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    ui.cameraError = null;
    if (ui.banner === 'camera') banner(null);
    return stream;
  } catch (e) {
    ui.cameraError = e.name || String(e);
    note(`camera unavailable: ${ui.cameraError}`);
    banner('camera');
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      return null;
    }
  }
}

/** The media being set up or running: `{callId, promise, started}` (the promise resolves to its
 *  `CallMedia`, or null). */
let mediaSetup = null;

/**
 * Opens the camera and microphone and prepares the call's peer connection and offer, once per
 * call: from the moment the citizen calls, so that when an operator answers only the offer has
 * to go (opening a camera can take longer than the whole negotiation). Nothing is sent before
 * `startMedia`.
 */
function prepareMedia(callId) {
  if (mediaSetup?.callId === callId) return mediaSetup.promise;
  stopMedia();
  const promise = createMedia(callId);
  mediaSetup = { callId, promise };
  return promise;
}

async function createMedia(callId) {
  const stream = await openDevices();
  if (ui.callId !== callId || mediaSetup?.callId !== callId) {
    // The call ended (or another began) while the camera opened.
    stream?.getTracks().forEach((t) => t.stop());
    return null;
  }
  localStream = stream;
  $('local').srcObject = localStream;
  $('local').hidden = !localStream?.getVideoTracks().length;
  const m = new CallMedia(client, callId, { stream: localStream ?? undefined });
  media = m;
  m.on('state', (s) => {
    note(`peer connection ${s.connectionState}, ICE ${s.iceConnectionState}`);
    if (s.connectionState === 'connected' && !m.reconnecting) $('call-connecting').hidden = true;
    if (s.connectionState === 'failed') {
      m.restartIce().catch((e) => note(`ICE restart failed: ${e.code ?? ''} ${e.message}`));
    }
  });
  // The server moved the call's media to another node: a new connection, the same call.
  m.on('reconnecting', (e) => {
    note(`media.reconnect (${e.reason}): offering again`);
    ui.mediaReconnecting = true;
    ui.mediaReconnects = e.reconnects;
    setText($('call-connecting'), 'call.reconnecting');
    $('call-connecting').hidden = false;
  });
  m.on('streams', (e) => playRemote(e.remoteStream));
  m.on('reconnected', () => {
    ui.mediaReconnecting = false;
    $('call-connecting').hidden = true;
    setText($('call-connecting'), 'call.connecting');
  });
  await m.prepare();
  return media === m ? m : null;
}

/** Starts the call's media with the SFU (once per call; kept across hold and requeue). */
async function startMedia(callId) {
  const prepared = prepareMedia(callId);
  const setup = mediaSetup;
  if (setup.started) return;
  setup.started = true;
  $('call-connecting').hidden = false;
  setText($('call-connecting'), 'call.connecting');
  const m = await prepared;
  if (!m || media !== m) return;
  playRemote(m.remoteStream);
  await m.start();
  note('media answer applied');
}

/** Shows the other party's stream; the citizen pressed "call", so sound may play. */
function playRemote(stream) {
  const remote = $('remote');
  remote.srcObject = stream;
  remote.volume = Number($('volume').value);
  // Fall back to muted video if the browser refuses sound.
  remote.play().catch(() => {
    remote.muted = true;
    remote.play().catch(() => {});
  });
}

/** A second chance for a camera that was missing or denied, without renegotiating. */
async function retryCamera() {
  const stream = await openDevices();
  if (!stream || !media?.pc) return;
  // Also used by a connection made after media.reconnect.
  await media.replaceStream(stream);
  localStream?.getTracks().forEach((x) => x.stop());
  localStream = stream;
  $('local').srcObject = stream;
  $('local').hidden = !stream.getVideoTracks().length;
}

function stopMedia() {
  media?.close();
  media = null;
  mediaSetup = null;
  ui.mediaReconnecting = false;
  $('call-connecting').hidden = true;
  localStream?.getTracks().forEach((t) => t.stop());
  localStream = null;
  $('remote').srcObject = null;
  $('local').srcObject = null;
}

function inCall(callId, operator) {
  answeredCall = callId;
  ui.callId = callId;
  $('waiting-requeued').hidden = true;
  if (operator?.display_name) setText($('call-with'), 'call.with', { name: operator.display_name });
  show('in_call');
  startMedia(callId).catch((e) => note(`media failed: ${e.code ?? ''} ${e.message}`));
}

function onHold(callId, operator) {
  answeredCall = callId;
  ui.callId = callId;
  if (operator?.display_name) setText($('call-with'), 'call.with', { name: operator.display_name });
  show('hold');
  startMedia(callId).catch((e) => note(`media failed: ${e.code ?? ''} ${e.message}`));
}

function listen() {
  const mine = (e) => e.call_id === ui.callId;
  // The identified citizen's data stays out of the log.
  client.on('*', (e) => note(`event ${e.type === 'identity.verified' ? `${e.type} ${e.call_id}` : JSON.stringify(e)}`));
  incall.wire(client);
  client.on('queue.update', (e) => {
    if (!ui.callId && ui.screen === 'welcome') return;
    if (!ui.callId) ui.callId = e.call_id;
    if (mine(e)) showWaiting(e);
  });
  client.on('call.assigned', (e) => {
    if (mine(e) || !ui.callId) inCall(e.call_id, e.operator);
  });
  client.on('call.held', (e) => mine(e) && show('hold'));
  client.on('call.resumed', (e) => mine(e) && show('in_call'));
  client.on('call.requeued', (e) => {
    if (!mine(e)) return;
    $('waiting-requeued').hidden = false;
    $('call-with').replaceChildren();
    incall.clear();
    showWaiting();
  });
  client.on('call.ended', (e) => mine(e) && showEnded(e.reason));
  // After every (re)authentication: the call as the server knows it now.
  client.on('state.sync', (e) => {
    const c = e.calls?.[0];
    if (!c) {
      if (ui.callId) showEnded('kiosk_lost');
      return;
    }
    ui.callId = c.call_id;
    if (c.state === 'waiting') showWaiting(c);
    else if (c.state === 'connected') {
      if (ui.screen !== 'in_call') inCall(c.call_id, c.operator);
      else startMedia(c.call_id).catch((err) => note(`media failed: ${err.message}`));
    } else if (c.state === 'on_hold') onHold(c.call_id, c.operator);
  });
  client.on('connection.lost', (e) => {
    ui.connection = 'reconnecting';
    ui.lost += 1;
    note(`connection lost (${e.code})`);
    banner('network');
  });
  client.on('connection.open', () => {
    ui.connection = 'open';
    ui.opened += 1;
    if (ui.banner === 'network') banner(null);
  });
  client.on('connection.closed', (e) => {
    ui.connection = 'closed';
    note(`connection closed (${e.code})`);
    if (e.code === 4409) {
      welcomeError('error.taken_over');
      return;
    }
    if (e.code === 4401) {
      show('setup');
      return;
    }
    banner('network');
    setTimeout(start, 3000);
  });
}

/** Connects (again, after a final close or a failed first attempt) and listens. */
async function start() {
  ui.connection = 'connecting';
  try {
    client = await connect(defaultWsUrl(), { token });
  } catch (e) {
    note(`connect failed: ${e.code} ${e.message}`);
    if (e.code === 'unauthorized') {
      show('setup');
      return;
    }
    banner('network');
    setTimeout(start, 3000);
    return;
  }
  ui.connection = 'open';
  ui.opened += 1;
  if (ui.banner === 'network') banner(null);
  listen();
}

async function main() {
  cat = await loadCatalogue(LANGUAGES);
  buildControls();
  incall = new KioskInCall({
    client: () => client,
    callId: () => ui.callId,
    agentUrl: AGENT_URL,
    setText,
    t: (key, vars) => cat.t(lang, key, vars),
    note,
    say: (text) => { $('status').textContent = text; },
    ui,
  });
  $('call').addEventListener('click', call);
  $('cancel').addEventListener('click', cancel);
  $('hang-up').addEventListener('click', cancel);
  $('back').addEventListener('click', reset);
  $('feedback-skip').addEventListener('click', skipFeedback);
  SMILES.forEach((smile, i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn face';
    b.dataset.rating = String(i + 1);
    const icon = faceIcon(smile);
    const label = document.createElement('span');
    label.className = 'face-label';
    label.dataset.i18n = `feedback.r${i + 1}`;
    b.append(icon, label);
    b.addEventListener('click', () => sendFeedback(i + 1));
    $('faces').append(b);
  });
  $('camera-retry').addEventListener('click', () => retryCamera().catch((e) => note(`camera retry failed: ${e.message}`)));
  $('volume').addEventListener('input', (e) => {
    $('remote').volume = Number(e.target.value);
  });
  render();
  if (!token) {
    show('setup');
    return;
  }
  show('welcome');
  await start();
}

main().catch((e) => note(`failed: ${e.stack ?? e}`));
