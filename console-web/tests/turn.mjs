// A call through TURN in real headless Chromium: the server's `[turn]` has `policy = "relay"`, so
// the kiosk page (/kiosk/) and the operator console (/console/) create their peer connections with
// the auth reply's `ice_servers` and `iceTransportPolicy: "relay"`. The operator logs in and goes
// available, the kiosk calls, the operator accepts, and each page must decode the other's video
// (more than 10 frames). Each page's selected candidate pair must have a local candidate of type
// "relay" (the media went through the TURN server). The test's server is stopped afterwards, so
// the call is not ended here.
//
// Usage:
//   node turn.mjs --base http://127.0.0.1:PORT --kiosk-token TOKEN --username USER --password PASS
//                 [--timeout-s 90] [--chromium PATH] [--insecure-tls]
// Every option may also come from the environment: SPORTELLO_BASE, KIOSK_TOKEN, OPERATOR_USERNAME,
// OPERATOR_PASSWORD, TURN_TIMEOUT_S, CHROMIUM. `--insecure-tls` starts Chromium with
// `--ignore-certificate-errors`, for a TURN server whose TLS certificate is self-signed.
//
// On success prints one JSON line and exits 0:
//   {"ok":true,"call_id","kiosk":{…},"console":{…}}
// where each side carries `config` (the RTCConfiguration of its peer connection: its
// iceTransportPolicy and the ICE servers' URLs and user name), `framesDecoded`, and `pair` (the
// selected candidate pair's local and remote candidate types, addresses and protocols). On failure
// prints the reason and both pages' logs on standard error and exits 1.
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, newContext, optionReader, report, sleep, waitFor, watch,
} from './harness.mjs';

function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    kioskToken: flag('kiosk-token', 'KIOSK_TOKEN'),
    username: flag('username', 'OPERATOR_USERNAME'),
    password: flag('password', 'OPERATOR_PASSWORD'),
    timeoutS: Number(flag('timeout-s', 'TURN_TIMEOUT_S', '90')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    // The TURN server's TLS certificate is self-signed (a test's private coturn): let Chromium
    // accept it.
    insecureTls: process.argv.includes('--insecure-tls'),
  };
  const missing = ['base', 'kioskToken', 'username', 'password'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`turn.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  o.base = o.base.replace(/\/$/, '');
  return o;
}

/**
 * Injected after the harness's probe: records the configuration of every peer connection the page
 * creates, and reads the selected candidate pair of the live one.
 */
function turnProbe() {
  const pcs = [];
  const Pc = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Pc {
    constructor(config, ...rest) {
      super(config, ...rest);
      pcs.push(this);
    }
  };
  window.__turn = {
    configs: () => pcs.map((pc) => {
      const c = pc.getConfiguration();
      return {
        iceTransportPolicy: c.iceTransportPolicy,
        iceServers: (c.iceServers ?? []).map((s) => ({ urls: s.urls, username: s.username })),
      };
    }),
    async pair() {
      const pc = pcs.filter((p) => p.connectionState === 'connected').at(-1);
      if (!pc) return null;
      const stats = await pc.getStats();
      let pairId = null;
      for (const s of stats.values()) {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      }
      const pair = pairId ? stats.get(pairId) : null;
      if (!pair) return null;
      const cand = (id) => {
        const c = stats.get(id);
        return c && {
          candidateType: c.candidateType,
          protocol: c.protocol,
          relayProtocol: c.relayProtocol,
          address: c.address,
          port: c.port,
          url: c.url,
        };
      };
      return { state: pair.state, local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) };
    },
  };
}

async function open(browser, o, name, url, viewport) {
  const context = await newContext(browser, o, viewport, turnProbe);
  const side = watch(name, await context.newPage());
  await side.page.goto(url);
  return side;
}

/** Waits until `side` decoded more than 10 video frames; returns the count. */
async function decoding(side, o) {
  const deadline = Date.now() + o.timeoutS * 1000;
  for (;;) {
    const frames = await side.page.evaluate(() => window.__probe.framesDecoded()).catch(() => 0);
    if (frames > 10) return frames;
    if (Date.now() > deadline) throw new Failure(`timeout: ${side.name} decoded only ${frames} frames through TURN`);
    await sleep(200);
  }
}

async function summary(side, o) {
  const pair = await waitFor(side, o, 'has no selected candidate pair', () => window.__turn.pair());
  return {
    config: await side.page.evaluate(() => window.__turn.configs()),
    framesDecoded: await side.page.evaluate(() => window.__probe.framesDecoded()),
    pair,
  };
}

async function main() {
  const o = options();
  const args = o.insecureTls ? [...FLAGS, '--ignore-certificate-errors'] : FLAGS;
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args, timeout: o.timeoutS * 1000 });
  const sides = [];
  const result = { ok: false };
  try {
    const op = await open(browser, o, 'console', `${o.base}/console/`, { width: 1280, height: 900 });
    sides.push(op);
    await waitFor(op, o, 'did not show the login form', () => document.body.dataset.ready === 'true' && document.body.dataset.screen === 'login');
    await op.page.fill('#username', o.username);
    await op.page.fill('#password', o.password);
    await op.page.click('#login-submit');
    await waitFor(op, o, 'did not open the console', () => document.body.dataset.screen === 'console' && document.body.dataset.connection === 'open');
    await op.page.click('[data-presence="available"]');
    await waitFor(op, o, 'did not become available', () => JSON.parse(document.body.dataset.operator).state === 'available');

    const kiosk = await open(browser, o, 'kiosk', `${o.base}/kiosk/#token=${encodeURIComponent(o.kioskToken)}`, { width: 1280, height: 800 });
    sides.push(kiosk);
    await waitFor(kiosk, o, 'did not connect', () => document.body.dataset.connection === 'open');
    await kiosk.page.click('#call');
    await waitFor(op, o, 'showed no offer', () => document.querySelector('.offer .offer-accept'));
    await op.page.click('.offer .offer-accept');
    const tile = await waitFor(op, o, 'has no connected booth', () => window.__probe.tiles().find((t) => t.state === 'connected'));
    result.call_id = tile.callId;

    await decoding(kiosk, o);
    await decoding(op, o);
    result.kiosk = await summary(kiosk, o);
    result.console = await summary(op, o);
    assertNoCsp();
    result.ok = true;
  } catch (e) {
    console.error(`turn.mjs: FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
  if (result.ok) console.log(JSON.stringify(result));
}

main().catch((e) => {
  console.error(`turn.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});
