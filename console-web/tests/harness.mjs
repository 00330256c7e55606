// What the browser test scripts share: Chromium's flags, option parsing, login, pages with their
// console, the probe the tests inject (peer connections, sockets, CSP violations), polling,
// screenshots, failure reports, axe-core, and the error type for an expected failure (a timeout, a
// page error) as opposed to a bug in the script.
//
// The pages carry no test hook: the tests read the DOM (the pages mirror their state on
// `<body data-…>`, see lib/reflect.js) and what the probe below, injected by the tests only, sees.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** Chromium flags that work on these machines: headless, fake camera and microphone. */
export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** A failure the script reports (exit 1 with the pages' logs), not a crash. */
export class Failure extends Error {}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads `--name value` from the command line, else the environment variable, else the fallback.
 * @returns {(name: string, env: string, fallback?: string) => string | undefined}
 */
export function optionReader(args = process.argv.slice(2)) {
  return (name, env, fallback) => {
    const i = args.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < args.length) return args[i + 1];
    return process.env[env] ?? fallback;
  };
}

/** Logs an operator in over HTTP; returns the login token. */
export async function login(base, username, password) {
  const r = await fetch(`${base}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Failure(`login of ${username} failed: HTTP ${r.status} ${JSON.stringify(body)}`);
  return body.token;
}

/**
 * Injected by the tests into every page before its scripts run (never served): records the peer
 * connections and WebSockets the page opens and every Content-Security-Policy violation.
 * `window.__probe.framesDecoded(video?)` sums the video frames decoded, of the tracks shown by
 * `video` or of every open peer connection; `window.__probe.dropConnection()` cuts the page's
 * WebSocket as a network drop would.
 */
function probe() {
  const pcs = [];
  const sockets = [];
  const csp = [];
  const RealPc = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends RealPc {
    constructor(...args) { super(...args); pcs.push(this); }
  };
  const RealWs = window.WebSocket;
  window.WebSocket = class extends RealWs {
    constructor(...args) { super(...args); sockets.push(this); }
  };
  document.addEventListener('securitypolicyviolation', (e) => {
    const line = `${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`;
    csp.push(line);
    console.error(`CSP violation: ${line}`);
  });
  window.__probe = {
    csp,
    async framesDecoded(video) {
      const tracks = video ? video.srcObject?.getVideoTracks() ?? [] : null;
      let frames = 0;
      for (const pc of pcs) {
        if (pc.signalingState === 'closed') continue;
        for (const r of pc.getReceivers()) {
          if (r.track?.kind !== 'video' || (tracks && !tracks.includes(r.track))) continue;
          for (const s of (await r.getStats()).values()) {
            if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
          }
        }
      }
      return frames;
    },
    dropConnection() {
      sockets.filter((w) => w.readyState === RealWs.OPEN).forEach((w) => w.close());
    },
    /** The console's booth tiles, from their data attributes. */
    tiles: () => [...document.querySelectorAll('#tiles > .tile')].map((t, i) => ({
      slot: i + 1,
      callId: t.dataset.callId ?? null,
      kioskId: t.dataset.kioskId,
      state: t.dataset.state ?? 'free',
      selected: t.classList.contains('selected'),
    })),
    /** The console's ringing offers, in the order shown. */
    offers: () => [...document.querySelectorAll('#offer-list .offer')]
      .map((li) => ({ callId: li.dataset.callId, kioskId: li.dataset.kioskId })),
    /** The console's case of a call (its panel's `data-summary`). */
    incall: (callId) => {
      const summary = document.querySelector(`.casefile[data-call-id="${callId}"]`)?.dataset.summary;
      return summary ? JSON.parse(summary) : null;
    },
  };
}

/** CSP violations seen on every page of this run (console lines of the browser and the probe). */
export const cspViolations = [];

/** Throws if any page reported a Content-Security-Policy violation. */
export function assertNoCsp() {
  if (cspViolations.length) throw new Failure(`CSP violations: ${JSON.stringify(cspViolations)}`);
  return [];
}

/** A browser context with camera and microphone allowed and the probe injected. */
export async function newContext(browser, o, viewport = { width: 1280, height: 800 }, init = null) {
  const context = await browser.newContext({ viewport });
  await context.grantPermissions(['camera', 'microphone'], { origin: o.base });
  await context.addInitScript(probe);
  if (init) await context.addInitScript(init);
  return context;
}

/** A side (a page and its console lines); CSP complaints also go to `cspViolations`. */
export function watch(name, page) {
  const consoleLines = [];
  page.on('console', (m) => {
    consoleLines.push(`[${m.type()}] ${m.text()}`);
    if (/Content Security Policy|CSP violation/.test(m.text())) cspViolations.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  return { name, page, consoleLines };
}

/** A page in its own browser context with camera and microphone allowed, recording its console. */
export async function openPage(browser, o, name, url, viewport = { width: 1280, height: 800 }) {
  const context = await newContext(browser, o, viewport);
  const side = watch(name, await context.newPage());
  await side.page.goto(url);
  return side;
}

/** Polls `fn` in the page until it returns something truthy. */
export async function waitFor(side, o, what, fn, arg, timeoutMs = o.timeoutS * 1000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await side.page.evaluate(fn, arg).catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Failure(`timeout: ${side.name} ${what}`);
    await sleep(100);
  }
}

/** Waits until a kiosk page shows `screen`. */
export const kioskScreen = (kiosk, o, screen) => waitFor(kiosk, o, `did not show the ${screen} screen`,
  (s) => document.body.dataset.screen === s, screen);

/** With `o.screenshots`, saves the page as `o.shotDir/<file>.png` once transitions have settled. */
export async function shot(side, o, file) {
  if (!o.screenshots) return;
  mkdirSync(o.shotDir, { recursive: true });
  await sleep(300);
  await side.page.screenshot({ path: path.join(o.shotDir, `${file}.png`) });
}

/** A page's log (its console, where the pages write what they do), for a failure report. */
export async function report(side) {
  const out = [`--- ${side.name} ---`];
  try {
    const log = await side.page.evaluate(() => window.mediaTest?.log ?? []);
    if (log.length) out.push('log:', ...log.map((l) => `  ${l}`));
    out.push(`state: ${JSON.stringify(await side.page.evaluate(() => ({ ...document.body.dataset })))}`);
  } catch (e) {
    out.push(`(page not readable: ${e.message})`);
  }
  out.push('console:', ...side.consoleLines.map((l) => `  ${l}`));
  return out.join('\n');
}

let axeSource = null;

/** axe-core on the current page: the serious and critical violations. */
export async function axe(side) {
  // Evaluated, not added as an inline <script>: the pages' CSP refuses inline scripts.
  axeSource ??= readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  await side.page.evaluate(axeSource);
  const results = await side.page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  return {
    serious: bad.length,
    violations: results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    })),
  };
}

/**
 * The join figures of a 1:1 browser call from each page's `timings` (epoch milliseconds marked by
 * the page; `calling` on the kiosk is the start): to both pages decoding more than 10 frames, to
 * each page's peer connection connecting, to both showing a first frame, and every mark of each
 * page from the start on, in milliseconds and in order (`steps_ms`: where a join's time went).
 * Shared by media.mjs (through our server) and janus-media.mjs (through Janus).
 */
export function joinFigures(kiosk, operator) {
  const called = kiosk.timings.calling;
  const steps = (side) => Object.fromEntries(Object.entries(side.timings)
    .filter(([, at]) => at >= called)
    .sort((a, b) => a[1] - b[1])
    .map(([name, at]) => [name, at - called]));
  return {
    call_to_decoding_ms: Math.max(kiosk.timings.decoded, operator.timings.decoded) - called,
    call_to_connected_ms: {
      kiosk: (kiosk.timings.media_connected ?? NaN) - called,
      operator: (operator.timings.media_connected ?? NaN) - called,
    },
    call_to_first_frame_ms: Math.max(kiosk.timings.first_frame, operator.timings.first_frame) - called,
    steps_ms: { kiosk: steps(kiosk), operator: steps(operator) },
  };
}

/** A process's CPU seconds so far: utime + stime from /proc/PID/stat (clock ticks of 10 ms). */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Reads `snapshot(side)` every 100 ms until `check` passes (returns that snapshot), failing when
 * the page reports an error or at `deadline` (epoch ms), with `what` in the message.
 */
export async function pollUntil(side, snapshot, deadline, what, check) {
  for (;;) {
    const s = await snapshot(side);
    if (s?.state === 'error') throw new Failure(`${side.role} page error: ${s.error}`);
    if (s && check(s)) return s;
    if (Date.now() > deadline) throw new Failure(`timeout: ${side.role} ${what} (state ${s?.state ?? 'not loaded'})`);
    await sleep(100);
  }
}

/** What a media script reports of one page: its counters, frame, connection and pair, `extra` keys too. */
export function sideFigures(s, extra = []) {
  const st = s.stats;
  const out = {
    framesDecoded: st.framesDecoded,
    framesSent: st.framesSent,
    bytesReceived: st.bytesReceived,
    bytesSent: st.bytesSent,
    frameWidth: st.frameWidth,
    frameHeight: st.frameHeight,
    connectionState: st.connectionState,
    pair: st.pair,
  };
  for (const key of extra) out[key] = st[key];
  out.decoded_at_ms = s.timings.decoded;
  return out;
}
