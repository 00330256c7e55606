// End-to-end media check in real headless Chromium: an operator page and a kiosk page of
// /media-test/ place and take one call through the server and its SFU, and each must decode the
// other's video (framesDecoded > 10 in getStats inbound-rtp video).
//
// Usage:
//   node media.mjs --base http://127.0.0.1:PORT --kiosk-token TOKEN \
//                  --username USER --password PASS --mode udp|tcp [--timeout-s 60] [--chromium PATH]
//                  [--hold-s N --metrics http://ADMIN/metrics --server-pid PID]
//                  [--kiosk-base http://127.0.0.1:OTHER] [--signal-file FILE]
// Every option may instead come from the environment: SPORTELLO_BASE, KIOSK_TOKEN, OPERATOR_USERNAME,
// OPERATOR_PASSWORD, MEDIA_MODE, MEDIA_TIMEOUT_S, CHROMIUM.
//
// `--hold-s N` keeps the call up N seconds after both sides decode and adds a "hold" object: the
// bitrate each side received over that window (all RTP, and `*_video_kbps` video only) and, with
// `--metrics` (the server's admin /metrics) and `--server-pid` (same machine), the server's CPU
// share (utime + stime from /proc/PID/stat, 10 ms resolution) and media packets forwarded per
// second over the same window: what one 1:1 browser call costs the server.
//
// `--kiosk-base` opens the kiosk's page on another signalling node than the operator's (several
// nodes). `--signal-file FILE` tests a media move: once both sides decode, the script writes
// {"call_id"} to FILE (the caller then kills or drains the call's media node) and waits until both
// pages were told `media.reconnect` and decode again; the result gets a "reconnect" object with the
// reasons and the milliseconds from the signal to both decoding again.
//
// `--mode tcp` makes both pages drop every UDP candidate of the SFU (a network that blocks UDP), so
// ICE has to use the SFU's ICE-TCP candidate.
//
// After the measurement the operator ends the call (call.end, wrapup.done), also after a failure,
// so the same accounts can call again at once.
//
// On success prints one JSON line on standard output and exits 0:
//   {"ok":true,"mode","call_id","call_to_decoding_ms","kiosk":{…},"operator":{…}}
// where call_to_decoding_ms runs from the kiosk's call.request to the later of the two sides passing
// 10 decoded frames (call_to_first_frame_ms: their first), as the page marks them: the remote video's
// presented frames (requestVideoFrameCallback), or a 100 ms getStats poll, whichever sees them
// first; and each side carries framesDecoded, framesSent, bytes, the selected candidate
// pair and its protocol. On failure (a timeout, a page error) prints the reason, each page's log,
// console and ICE candidates on standard error and exits 1.
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, cpuSeconds, joinFigures, login, optionReader, pollUntil, sideFigures, sleep,
} from './harness.mjs';


function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    kioskToken: flag('kiosk-token', 'KIOSK_TOKEN'),
    username: flag('username', 'OPERATOR_USERNAME'),
    password: flag('password', 'OPERATOR_PASSWORD'),
    mode: flag('mode', 'MEDIA_MODE', 'udp'),
    timeoutS: Number(flag('timeout-s', 'MEDIA_TIMEOUT_S', '60')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    holdS: Number(flag('hold-s', 'MEDIA_HOLD_S', '0')),
    metrics: flag('metrics', 'SPORTELLO_METRICS'),
    serverPid: flag('server-pid', 'SPORTELLO_PID'),
    kioskBase: flag('kiosk-base', 'SPORTELLO_KIOSK_BASE'),
    signalFile: flag('signal-file', 'SPORTELLO_SIGNAL_FILE'),
    trace: flag('trace', 'MEDIA_TRACE', '') !== '',
  };
  const missing = ['base', 'kioskToken', 'username', 'password'].filter((k) => !o[k]);
  if (missing.length || !['udp', 'tcp'].includes(o.mode)) {
    console.error(`media.mjs: missing or bad options: ${missing.join(', ') || `mode ${o.mode}`}`);
    console.error('usage: node media.mjs --base URL --kiosk-token T --username U --password P --mode udp|tcp');
    process.exit(2);
  }
  o.base = o.base.replace(/\/$/, '');
  o.kioskBase = (o.kioskBase ?? o.base).replace(/\/$/, '');
  return o;
}


/** The server's CPU seconds (from /proc, when its pid is known) and forwarded media packets. */
async function serverCounters(url, pid) {
  const text = await (await fetch(url)).text();
  const value = (re) => Number((text.match(re) ?? [])[1] ?? NaN);
  return {
    cpu_s: pid ? cpuSeconds(pid) : NaN,
    packets_out: value(/^sportello_media_rtp_packets_total\{direction="out"\} (\S+)$/m),
  };
}



/** Opens /media-test/ for one role in its own browser context, recording its console. */
async function openPage(browser, o, role, token) {
  const base = role === 'kiosk' ? o.kioskBase : o.base;
  const context = await browser.newContext();
  await context.grantPermissions(['camera', 'microphone'], { origin: base });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  const fragment = new URLSearchParams({ role, token });
  if (o.mode === 'tcp') fragment.set('tcp', '1');
  await page.goto(`${base}/media-test/#${fragment}`);
  return { role, page, consoleLines };
}

async function snapshot(side) {
  return side.page.evaluate(async () => {
    const t = window.mediaTest;
    if (!t) return null;
    return {
      state: t.state, error: t.error, callId: t.callId, timings: t.timings, stats: await t.stats(),
      reconnects: t.reconnects, decodingAfterReconnect: t.decodingAfterReconnect,
      reconnectReasons: t.reconnectReasons,
    };
  });
}

function waitUntil(side, deadline, what, check) {
  return pollUntil(side, snapshot, deadline, what, check);
}

async function report(side) {
  const out = [`--- ${side.role} ---`];
  try {
    const s = await snapshot(side);
    out.push(`state: ${JSON.stringify(s)}`);
    const log = await side.page.evaluate(() => window.mediaTest?.log ?? []);
    out.push('log:', ...log.map((l) => `  ${l}`));
    const c = await side.page.evaluate(() => window.mediaTest?.candidates?.());
    const d = await side.page.evaluate(() => window.mediaTest?.details?.());
    if (d) {
      out.push('rtp streams:', ...d.rtp.map((x) => `  ${JSON.stringify(x)}`));
      out.push('local SDP (offer):', ...(d.localSdp ?? '').trim().split(/\r?\n/).map((l) => `  ${l}`));
      out.push('remote SDP (answer):', ...(d.remoteSdp ?? '').trim().split(/\r?\n/).map((l) => `  ${l}`));
    }
    if (c) {
      out.push('server candidates:', ...c.server.map((x) => `  ${x.used ? 'used   ' : 'dropped'} ${x.candidate}`));
      out.push('local candidates:', ...c.local.map((x) => `  ${x}`));
      out.push('remote candidates:', ...c.remote.map((x) => `  ${x}`));
      out.push('candidate pairs:', ...c.pairs.map((x) => `  ${x}`));
    }
  } catch (e) {
    out.push(`(page not readable: ${e.message})`);
  }
  out.push('console:', ...side.consoleLines.map((l) => `  ${l}`));
  return out.join('\n');
}

/** Ends the call from the operator's page (call.end, wrapup.done), within 5 s. */
async function hangUp(operator) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure('operator: call.end or wrapup.done got no reply within 5 s')), 5000);
  });
  try {
    await Promise.race([operator.page.evaluate(() => window.mediaTest.hangUp()), late]);
  } finally {
    clearTimeout(timer);
  }
}

function side(s) {
  return sideFigures(s, ['protocol', 'candidateType']);
}

async function main() {
  const o = options();
  const deadline = Date.now() + o.timeoutS * 1000;
  const operatorToken = await login(o.base, o.username, o.password);
  const browser = await chromium.launch({
    executablePath: o.chromium,
    headless: true,
    args: FLAGS,
    timeout: o.timeoutS * 1000,
  });
  const sides = [];
  try {
    const operator = await openPage(browser, o, 'operator', operatorToken);
    sides.push(operator);
    await waitUntil(operator, deadline, 'did not become available', (s) => s.state === 'available');
    const kiosk = await openPage(browser, o, 'kiosk', o.kioskToken);
    sides.push(kiosk);
    const decoding = (s) => s.stats.framesDecoded > 10 && s.timings.decoded !== undefined;
    const k = await waitUntil(kiosk, deadline, 'did not decode more than 10 frames', decoding);
    const op = await waitUntil(operator, deadline, 'did not decode more than 10 frames', decoding);
    const result = {
      ok: true,
      mode: o.mode,
      call_id: k.callId,
      ...joinFigures(k, op),
      kiosk: side(k),
      operator: side(op),
    };
    if (o.signalFile) {
      const { writeFileSync } = await import('node:fs');
      const signalled = Date.now();
      writeFileSync(o.signalFile, JSON.stringify({ call_id: k.callId }));
      const again = (s) => s.decodingAfterReconnect >= 1;
      const k2 = await waitUntil(kiosk, deadline, 'did not decode again after media.reconnect', again);
      const op2 = await waitUntil(operator, deadline, 'did not decode again after media.reconnect', again);
      result.reconnect = {
        call_id: k2.callId,
        kiosk_reasons: k2.reconnectReasons,
        operator_reasons: op2.reconnectReasons,
        signal_to_decoding_ms: Date.now() - signalled,
        kiosk_frames: k2.stats.framesDecoded,
        operator_frames: op2.stats.framesDecoded,
      };
    }
    if (o.holdS > 0) {
      const t0 = Date.now();
      const before = [await snapshot(kiosk), await snapshot(operator)];
      const c0 = o.metrics ? await serverCounters(o.metrics, o.serverPid) : null;
      await sleep(o.holdS * 1000);
      const after = [await snapshot(kiosk), await snapshot(operator)];
      const c1 = o.metrics ? await serverCounters(o.metrics, o.serverPid) : null;
      const secs = (Date.now() - t0) / 1000;
      const kbps = (i) => Math.round(((after[i].stats.bytesReceived - before[i].stats.bytesReceived) * 8) / secs / 1000);
      const video = (x) => x.stats.bytesReceived - (x.stats.audioBytesReceived ?? 0);
      const videoKbps = (i) => Math.round(((video(after[i]) - video(before[i])) * 8) / secs / 1000);
      result.hold = {
        seconds: secs,
        kiosk_receives_kbps: kbps(0),
        operator_receives_kbps: kbps(1),
        kiosk_receives_video_kbps: videoKbps(0),
        operator_receives_video_kbps: videoKbps(1),
        kiosk_send_limit: after[0].stats.qualityLimitationReason,
        kiosk_target_kbps: Math.round((after[0].stats.targetBitrate ?? 0) / 1000),
        kiosk_available_kbps: Math.round((after[0].stats.pair?.availableOutgoingBitrate ?? 0) / 1000),
        kiosk_frame: `${after[0].stats.frameWidth}x${after[0].stats.frameHeight}`,
        operator_frame: `${after[1].stats.frameWidth}x${after[1].stats.frameHeight}`,
      };
      if (c0 && c1) {
        result.hold.server_cpu_percent = ((c1.cpu_s - c0.cpu_s) / secs) * 100;
        result.hold.server_packets_per_s = (c1.packets_out - c0.packets_out) / secs;
      }
    }
    // Hang up, so the accounts are free for the next run: both sides see the call end.
    await hangUp(operator);
    await waitUntil(kiosk, Date.now() + 5000, 'did not see the call end', (s) => s.state === 'ended');
    // The page ran under its Content-Security-Policy without a violation.
    const csp = sides.flatMap((x) => x.consoleLines.filter((l) => /Content Security Policy/.test(l)));
    if (csp.length) throw new Failure(`CSP violations: ${JSON.stringify(csp)}`);
    // `--trace 1`: each page's timestamped log, SDP and candidates, also on success.
    if (o.trace) for (const x of sides) console.error(await report(x));
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`media.mjs (${o.mode}): FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    // Best effort: end the call so that the kiosk and the operator can call again at once.
    if (sides[0]) await hangUp(sides[0]).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`media.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});
