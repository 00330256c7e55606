// One 1:1 call between two headless Chromium pages through Janus's `videocall` plugin, measured the
// way media.mjs measures a call through our server: the Janus half of the browser figures of
// `loadtest compare-janus` (loadtest/src/compare/browser.rs).
//
// Usage:
//   node janus-media.mjs --janus ws://127.0.0.1:PORT --media-ip IP [--janus-pid PID] [--hold-s N]
//                        [--timeout-s 60] [--chromium PATH] [--name PREFIX]
//
// No janus.js: each page speaks Janus's WebSocket API (subprotocol `janus-protocol`) itself, the
// same flow as the Rust client of loadtest/src/janus.rs. Each page has its own connection, one
// session (`create`) and one handle on `janus.plugin.videocall` (`attach`), kept alive with a
// `keepalive` every 25 s. The pages are served by this script from 127.0.0.1 (a secure context for
// getUserMedia), each in its own browser context with the fake camera (640x480) and microphone
// open before the call, like the kiosk and operator pages of /media-test/.
//
//   1. The callee ("operator") registers and waits; on `incomingcall` it answers Janus's offer and
//      sends `accept` with its answer.
//   2. The caller ("kiosk") sends its first `videocall` request, `register`, at `calling` (the
//      start of the join time, as the kiosk's `call.request` is for our server), then `call` with
//      its offer, and applies Janus's answer from `accepted`.
//   Both trickle their candidates (`trickle`, then `{"completed": true}`), and add any candidate
//   Janus trickles. Janus gathers no loopback candidates, only on `--media-ip` (testkit::janus), so
//   the pages send Janus only their host candidates on that address, as the Rust client binds it.
//
// Each page marks, as /media-test/ does, `first_frame` when the remote video presents its first
// frame and `decoded` when more than 10 (requestVideoFrameCallback on a video element of the remote
// track), or when a 100 ms getStats poll finds inbound video framesDecoded > 0 and > 10, whichever
// comes first. With `--hold-s N` the call is held N seconds after both
// decode, and the "hold" object gives the bitrate each side received over that window (all RTP,
// and video only) and, with `--janus-pid`, Janus's CPU share (utime + stime from /proc/PID/stat,
// 10 ms resolution): what one 1:1 browser call costs Janus. Then the caller hangs up and both
// sessions are destroyed.
//
// On success prints one JSON line on standard output and exits 0, with media.mjs's field names
// (the caller is "kiosk", the callee "operator"):
//   {"ok":true,"server":"janus","call_to_first_frame_ms","call_to_decoding_ms",
//    "call_to_connected_ms":{…},"kiosk":{…},"operator":{…},"hold":{…}}
// On failure prints the reason and each page's log on standard error and exits 1.
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, cpuSeconds, joinFigures, optionReader, pollUntil, sideFigures, sleep,
} from './harness.mjs';

function options() {
  const flag = optionReader();
  const o = {
    janus: flag('janus', 'JANUS_WS'),
    mediaIp: flag('media-ip', 'JANUS_MEDIA_IP'),
    janusPid: flag('janus-pid', 'JANUS_PID'),
    holdS: Number(flag('hold-s', 'MEDIA_HOLD_S', '0')),
    timeoutS: Number(flag('timeout-s', 'MEDIA_TIMEOUT_S', '60')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    name: flag('name', 'JANUS_NAME', `jm${process.pid}`),
  };
  if (!o.janus || !o.mediaIp || !/^[A-Za-z0-9._-]+$/.test(o.name)) {
    console.error('usage: node janus-media.mjs --janus ws://127.0.0.1:PORT --media-ip IP [--janus-pid PID] [--hold-s N]');
    process.exit(2);
  }
  return o;
}

/**
 * The page's script (serialised into the served page): `window.janusTest`, a minimal client of
 * Janus's WebSocket API and of the videocall plugin for one party of one call.
 */
function pageScript() {
  const KEEPALIVE_MS = 25000;
  const REPLY_MS = 10000;
  const t = {
    state: 'new',
    error: null,
    timings: {},
    log: [],
    ws: null,
    sessionId: null,
    handleId: null,
    pc: null,
    stream: null,
    mediaIp: null,
    username: null,
    pending: new Map(),
    waiters: [],
    events: [],
    nextTx: 0,
    keepalive: null,
    sentJsep: false,
    queuedCandidates: [],
    remoteCandidates: [],
  };
  const note = (text) => {
    t.log.push(`${new Date().toISOString()} ${text}`);
    console.log(`janus-media: ${text}`);
  };
  const mark = (name) => { t.timings[name] ??= Date.now(); };
  const setState = (s) => { t.state = s; mark(s); note(`state ${s}`); };
  const fail = (e) => { t.error = String(e?.message ?? e); setState('error'); };
  const brief = (f) => JSON.stringify({ ...f, jsep: f.jsep ? { type: f.jsep.type, sdp: '…' } : undefined }).slice(0, 300);

  function send(body) {
    const transaction = `${t.username}-${++t.nextTx}`;
    const frame = { ...body, transaction };
    if (t.sessionId) frame.session_id = t.sessionId;
    if (t.handleId && body.janus !== 'keepalive' && body.janus !== 'destroy') frame.handle_id = t.handleId;
    t.ws.send(JSON.stringify(frame));
    return transaction;
  }

  /** A Janus request and its reply (`success` or `ack`), or its error. */
  function request(body) {
    const transaction = send(body);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        t.pending.delete(transaction);
        reject(new Error(`Janus did not answer ${body.janus} in time`));
      }, REPLY_MS);
      t.pending.set(transaction, (reply) => {
        clearTimeout(timer);
        if (reply.janus === 'error') reject(new Error(`${body.janus}: Janus error ${reply.error?.code}: ${reply.error?.reason}`));
        else resolve(reply);
      });
    });
  }

  /** The next videocall event `name` (earlier ones are kept), failing on a plugin error. */
  function waitEvent(name, ms = REPLY_MS) {
    return new Promise((resolve, reject) => {
      const waiter = { name, resolve, reject };
      const timer = setTimeout(() => {
        t.waiters = t.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${name} event in time`));
      }, ms);
      waiter.resolve = (f) => { clearTimeout(timer); resolve(f); };
      waiter.reject = (e) => { clearTimeout(timer); reject(e); };
      const i = t.events.findIndex((f) => f.plugindata?.data?.result?.event === name);
      if (i >= 0) waiter.resolve(t.events.splice(i, 1)[0]);
      else t.waiters.push(waiter);
    });
  }

  function onFrame(frame) {
    const cb = frame.transaction && ['ack', 'success', 'error'].includes(frame.janus)
      ? t.pending.get(frame.transaction) : null;
    if (cb) {
      t.pending.delete(frame.transaction);
      cb(frame);
      return;
    }
    if (frame.janus === 'ack') return;
    note(`event ${brief(frame)}`);
    if (frame.janus === 'trickle') {
      const c = frame.candidate;
      if (c && !c.completed && t.pc) t.pc.addIceCandidate(c).catch((e) => note(`addIceCandidate: ${e.message}`));
      return;
    }
    if (frame.janus === 'webrtcup') mark('webrtcup');
    const data = frame.plugindata?.data;
    if (data?.error_code) {
      const e = new Error(`videocall error ${data.error_code}: ${data.error}`);
      t.waiters.splice(0).forEach((w) => w.reject(e));
      fail(e);
      return;
    }
    const name = data?.result?.event;
    if (!name) return;
    if (name === 'incomingcall' && t.onIncoming) {
      t.onIncoming(frame).catch(fail);
      return;
    }
    if (name === 'hangup') setState('ended');
    const w = t.waiters.find((x) => x.name === name);
    if (w) {
      t.waiters = t.waiters.filter((x) => x !== w);
      w.resolve(frame);
    } else {
      t.events.push(frame);
    }
  }

  /** Sends a candidate on the media address to Janus (after the JSEP it belongs to). */
  function trickle(c) {
    if (!t.sentJsep) {
      t.queuedCandidates.push(c);
      return;
    }
    if (c === null) {
      request({ janus: 'trickle', candidate: { completed: true } }).catch((e) => note(`trickle: ${e.message}`));
      return;
    }
    // "candidate:… 1 udp 2122260223 192.0.2.2 45678 typ host …": the fifth field is the address.
    const fields = c.candidate.split(' ');
    if (fields[2]?.toLowerCase() !== 'udp' || fields[4] !== t.mediaIp) {
      note(`not sent to Janus (not UDP on ${t.mediaIp}): ${c.candidate}`);
      return;
    }
    note(`candidate sent: ${c.candidate}`);
    const candidate = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
    request({ janus: 'trickle', candidate }).catch((e) => note(`trickle: ${e.message}`));
  }

  function jsepSent() {
    t.sentJsep = true;
    t.queuedCandidates.splice(0).forEach(trickle);
  }

  function newPc() {
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    t.pc = pc;
    for (const track of t.stream.getTracks()) pc.addTrack(track, t.stream);
    pc.onicecandidate = (e) => trickle(e.candidate);
    pc.ontrack = (e) => {
      if (e.track.kind === 'video') watchFrames(new MediaStream([e.track]));
    };
    pc.onconnectionstatechange = () => {
      note(`peer connection ${pc.connectionState}`);
      if (pc.connectionState === 'connected') mark('media_connected');
      if (pc.connectionState === 'failed') fail(new Error('the peer connection failed'));
    };
    return pc;
  }

  /** Camera, microphone, connection, session and handle: everything before the call. */
  t.open = async (url, username, mediaIp) => {
    t.username = username;
    t.mediaIp = mediaIp;
    setState('waiting_media');
    t.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    setState('connecting');
    t.ws = new WebSocket(url, 'janus-protocol');
    await new Promise((resolve, reject) => {
      t.ws.onopen = resolve;
      t.ws.onerror = () => reject(new Error(`cannot connect to Janus at ${url}`));
    });
    t.ws.onmessage = (m) => onFrame(JSON.parse(m.data));
    t.ws.onclose = () => note('connection closed');
    t.sessionId = (await request({ janus: 'create' })).data.id;
    t.handleId = (await request({ janus: 'attach', plugin: 'janus.plugin.videocall' })).data.id;
    t.keepalive = setInterval(() => send({ janus: 'keepalive' }), KEEPALIVE_MS);
    setState('attached');
  };

  async function message(body, jsep, expect) {
    const frame = { janus: 'message', body };
    if (jsep) frame.jsep = jsep;
    const waiting = waitEvent(expect);
    await request(frame);
    if (jsep) jsepSent();
    return waiting;
  }

  const register = () => message({ request: 'register', username: t.username }, null, 'registered');

  /** The callee: registers, then answers the first incoming call at once. */
  t.wait = async () => {
    t.onIncoming = async (frame) => {
      setState('offered');
      const pc = newPc();
      await pc.setRemoteDescription(frame.jsep);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await message({ request: 'accept' }, { type: 'answer', sdp: pc.localDescription.sdp }, 'accepted');
      setState('connecting_media');
    };
    await register();
    setState('available');
  };

  /** The caller: its first videocall request (`register`) starts the join time; then `call`. */
  t.call = async (peer) => {
    setState('calling');
    await register();
    const pc = newPc();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const accepted = waitEvent('accepted');
    await message({ request: 'call', username: peer }, { type: 'offer', sdp: pc.localDescription.sdp }, 'calling');
    const frame = await accepted;
    if (frame.jsep?.type !== 'answer') throw new Error(`accepted without an answer: ${brief(frame)}`);
    await pc.setRemoteDescription(frame.jsep);
    setState('connecting_media');
  };

  /** Video and all-RTP counters of the peer connection, and the selected pair. */
  t.stats = async () => {
    const out = {
      framesDecoded: 0, framesSent: 0, bytesReceived: 0, videoBytesReceived: 0, bytesSent: 0,
      frameWidth: 0, frameHeight: 0, connectionState: t.pc?.connectionState ?? 'new', pair: null,
    };
    if (!t.pc) return out;
    const report = await t.pc.getStats();
    let pairId = null;
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp') {
        out.bytesReceived += s.bytesReceived ?? 0;
        if (s.kind === 'video') {
          out.videoBytesReceived += s.bytesReceived ?? 0;
          out.framesDecoded += s.framesDecoded ?? 0;
          out.frameWidth = Math.max(out.frameWidth, s.frameWidth ?? 0);
          out.frameHeight = Math.max(out.frameHeight, s.frameHeight ?? 0);
        }
      } else if (s.type === 'outbound-rtp') {
        out.bytesSent += s.bytesSent ?? 0;
        if (s.kind === 'video') out.framesSent += s.framesSent ?? 0;
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        pairId = s.selectedCandidatePairId;
      }
    }
    const pair = pairId ? report.get(pairId) : null;
    if (pair) {
      const c = (id) => report.get(id);
      const l = c(pair.localCandidateId);
      const r = c(pair.remoteCandidateId);
      out.pair = `${l?.protocol} ${l?.address}:${l?.port} → ${r?.address}:${r?.port}`;
    }
    return out;
  };

  /** The caller hangs up; both sides then leave Janus (detach, destroy). */
  t.hangup = async () => {
    const ended = waitEvent('hangup');
    await request({ janus: 'message', body: { request: 'hangup' } });
    await ended;
  };
  t.close = async () => {
    clearInterval(t.keepalive);
    t.pc?.close();
    t.stream?.getTracks().forEach((x) => x.stop());
    await request({ janus: 'detach' });
    t.handleId = null;
    await request({ janus: 'destroy' });
    t.ws.close();
  };

  // The moment video shows, to the frame, as /media-test/ measures it: each frame a video element
  // of the remote track presents (requestVideoFrameCallback), until more than 10.
  function watchFrames(stream) {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    document.body.append(video);
    video.srcObject = stream;
    if (!('requestVideoFrameCallback' in video)) return;
    const onFrame = (_, frame) => {
      mark('first_frame');
      if (frame.presentedFrames > 10) {
        mark('decoded');
        return;
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  // The moment video is decoded, polled as /media-test/ polls it (the earlier mark stays).
  setInterval(async () => {
    if (!t.pc) return;
    const s = await t.stats();
    if (s.framesDecoded > 0) mark('first_frame');
    if (s.framesDecoded > 10) mark('decoded');
  }, 100);
  window.janusTest = t;
}

/** Serves the two pages' one HTML document on 127.0.0.1 (a secure context for getUserMedia). */
async function servePage() {
  const html = `<!doctype html><meta charset="utf-8"><title>janus-media</title>
<script>(${pageScript.toString()})();</script>`;
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    res.end(req.url === '/' ? html : '');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

async function openPage(browser, url, role) {
  const context = await browser.newContext();
  await context.grantPermissions(['camera', 'microphone'], { origin: new URL(url).origin });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  await page.goto(url);
  return { role, page, consoleLines };
}

async function snapshot(side) {
  return side.page.evaluate(async () => {
    const t = window.janusTest;
    return { state: t.state, error: t.error, timings: t.timings, stats: await t.stats() };
  });
}

function waitUntil(side, deadline, what, check) {
  return pollUntil(side, snapshot, deadline, what, check);
}

/** Runs `fn` in the page, failing with the page's error after the deadline. */
async function inPage(side, deadline, what, fn, arg) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timeout: ${side.role} ${what}`)), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([side.page.evaluate(fn, arg), late]);
  } catch (e) {
    throw e instanceof Failure ? e : new Failure(`${side.role} ${what}: ${e.message.split('\n')[0]}`);
  } finally {
    clearTimeout(timer);
  }
}

async function report(side) {
  const out = [`--- ${side.role} ---`];
  try {
    const s = await snapshot(side);
    out.push(`state: ${JSON.stringify(s)}`);
    const log = await side.page.evaluate(() => window.janusTest.log);
    out.push('log:', ...log.map((l) => `  ${l}`));
  } catch (e) {
    out.push(`(page not readable: ${e.message})`);
  }
  out.push('console:', ...side.consoleLines.map((l) => `  ${l}`));
  return out.join('\n');
}

function side(s) {
  return sideFigures(s, ['videoBytesReceived']);
}

async function main() {
  const o = options();
  const deadline = Date.now() + o.timeoutS * 1000;
  const { server, url } = await servePage();
  const browser = await chromium.launch({
    executablePath: o.chromium,
    headless: true,
    args: FLAGS,
    timeout: o.timeoutS * 1000,
  });
  const sides = [];
  const callee = `${o.name}-operator`;
  const caller = `${o.name}-kiosk`;
  try {
    const operator = await openPage(browser, url, 'operator');
    sides.push(operator);
    await inPage(operator, deadline, 'cannot reach Janus', ([ws, name, ip]) => window.janusTest.open(ws, name, ip), [o.janus, callee, o.mediaIp]);
    await inPage(operator, deadline, 'cannot register', () => window.janusTest.wait());
    const kiosk = await openPage(browser, url, 'kiosk');
    sides.push(kiosk);
    await inPage(kiosk, deadline, 'cannot reach Janus', ([ws, name, ip]) => window.janusTest.open(ws, name, ip), [o.janus, caller, o.mediaIp]);
    await inPage(kiosk, deadline, 'cannot call', (peer) => window.janusTest.call(peer), callee);
    const decoding = (s) => s.stats.framesDecoded > 10 && s.timings.decoded !== undefined;
    const k = await waitUntil(kiosk, deadline, 'did not decode more than 10 frames', decoding);
    const op = await waitUntil(operator, deadline, 'did not decode more than 10 frames', decoding);
    const result = {
      ok: true,
      server: 'janus',
      ...joinFigures(k, op),
      kiosk: side(k),
      operator: side(op),
    };
    if (o.holdS > 0) {
      const t0 = Date.now();
      const before = [await snapshot(kiosk), await snapshot(operator)];
      const c0 = o.janusPid ? cpuSeconds(o.janusPid) : NaN;
      await sleep(o.holdS * 1000);
      const after = [await snapshot(kiosk), await snapshot(operator)];
      const c1 = o.janusPid ? cpuSeconds(o.janusPid) : NaN;
      const secs = (Date.now() - t0) / 1000;
      const kbps = (i, key) => Math.round(((after[i].stats[key] - before[i].stats[key]) * 8) / secs / 1000);
      result.hold = {
        seconds: secs,
        kiosk_receives_kbps: kbps(0, 'bytesReceived'),
        operator_receives_kbps: kbps(1, 'bytesReceived'),
        kiosk_receives_video_kbps: kbps(0, 'videoBytesReceived'),
        operator_receives_video_kbps: kbps(1, 'videoBytesReceived'),
        kiosk_frames_decoded: after[0].stats.framesDecoded - before[0].stats.framesDecoded,
        operator_frames_decoded: after[1].stats.framesDecoded - before[1].stats.framesDecoded,
        kiosk_frame: `${after[0].stats.frameWidth}x${after[0].stats.frameHeight}`,
        operator_frame: `${after[1].stats.frameWidth}x${after[1].stats.frameHeight}`,
      };
      if (o.janusPid) result.hold.server_cpu_percent = ((c1 - c0) / secs) * 100;
    }
    await inPage(kiosk, Date.now() + 10000, 'cannot hang up', () => window.janusTest.hangup());
    await waitUntil(operator, Date.now() + 5000, 'did not see the call end', (s) => s.state === 'ended');
    for (const s of [kiosk, operator]) {
      await inPage(s, Date.now() + 10000, 'cannot leave Janus', () => window.janusTest.close());
    }
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`janus-media.mjs: FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    process.exitCode = 1;
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  console.error(`janus-media.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});
