// The /media-test/ diagnostics page (not the product UI): a kiosk or an operator places or takes one
// call and exchanges camera and microphone with the other side through the SFU. Parameters come from
// the URL fragment, which is read once and removed from the address bar:
//   #role=kiosk&token=…     the kiosk's device token; it calls at once (service anagrafe, Italian)
//   #role=operator&token=…  an operator's login token; it becomes available and accepts the first offer
//   &tcp=1                  drop the SFU's UDP candidates (a network that blocks UDP: ICE-TCP only)
//   &service=…&language=…   (kiosk) another service or language
// Tests read `window.mediaTest`. The page follows `media.reconnect` (CallMedia offers again from a new
// peer connection): `reconnects` counts them, and `decodingAfterReconnect` is the number of the last
// reconnect after which more than 10 frames were decoded on the new connection, so a test waits for
// `decodingAfterReconnect >= n` to see the media back after the n-th reconnect.
import { connect, defaultWsUrl, CallMedia } from '../lib/sportello.js';

const params = new URLSearchParams(location.hash.slice(1));
history.replaceState(null, '', location.pathname + location.search);
const role = params.get('role');
const token = params.get('token');
const tcpOnly = params.get('tcp') === '1';

const $ = (id) => document.getElementById(id);

/** @type {CallMedia | null} */
let media = null;
/** The media prepared while the call waits (kiosk) or rings (operator), as the kiosk page and
 *  the console do: `{callId, media, ready}`. */
let prepared = null;
let client = null;
/** The operator's dispositions from `state.sync`; the wrap-up closes with the first. */
let dispositions = [];

const mediaTest = {
  role,
  tcpOnly,
  /** connecting · waiting_media · available · calling · queued · offered · connecting_media ·
   *  media_connected · media_reconnecting · ended · error */
  state: 'connecting',
  /** `media.reconnect` events followed for the call (each one a new peer connection). */
  reconnects: 0,
  /** The last reconnect after which the new connection decoded more than 10 frames (0: none). */
  decodingAfterReconnect: 0,
  /** The reasons of the reconnects, in order. */
  reconnectReasons: [],
  /** The last re-offer that failed after a reconnect, if any. */
  reconnectError: null,
  callId: null,
  error: null,
  /** Date.now() of each step; `decoded` is when more than 10 frames had been decoded;
   *  `reconnect_N` when the N-th reconnect started and `decoded_after_reconnect_N` when the new
   *  connection had decoded more than 10 frames. */
  timings: {},
  /** Every step and every server event, for a test to print when something fails. */
  log: [],
  /** The media summary (see CallMedia.stats) plus the selected pair's type and protocol. */
  stats: async () => {
    const s = media ? await media.stats() : { framesDecoded: 0, framesSent: 0, bytesReceived: 0, connectionState: 'new', pair: null };
    return {
      ...s,
      candidateType: s.pair?.remote?.candidateType ?? null,
      protocol: s.pair?.local?.protocol ?? null,
      state: mediaTest.state,
    };
  },
  /** Every ICE candidate seen: the server's (with whether they were used) and the browser's
   *  local and remote candidates and candidate pairs from getStats. */
  candidates: async () => {
    if (!media?.pc) return null;
    const report = await media.pc.getStats();
    const list = (type) => [...report.values()].filter((s) => s.type === type);
    return {
      server: media.serverCandidates,
      local: list('local-candidate').map((c) => `${c.id} ${c.candidateType} ${c.protocol} ${c.address}:${c.port}${c.tcpType ? ` ${c.tcpType}` : ''}`),
      remote: list('remote-candidate').map((c) => `${c.id} ${c.candidateType} ${c.protocol} ${c.address}:${c.port}${c.tcpType ? ` ${c.tcpType}` : ''}`),
      pairs: list('candidate-pair').map((p) => `${p.localCandidateId} → ${p.remoteCandidateId} ${p.state}${p.nominated ? ' nominated' : ''} requests=${p.requestsSent} responses=${p.responsesReceived}`),
    };
  },
  /** The raw getStats entries of the received and sent media, their codecs, and both SDPs. */
  details: async () => {
    if (!media?.pc) return null;
    const report = await media.pc.getStats();
    const pick = (s, keys) => Object.fromEntries(keys.filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
    const codec = (id) => {
      const c = id && report.get(id);
      return c ? `${c.payloadType} ${c.mimeType}${c.sdpFmtpLine ? ` ${c.sdpFmtpLine}` : ''}` : null;
    };
    const rtp = [...report.values()]
      .filter((s) => s.type === 'inbound-rtp' || s.type === 'outbound-rtp')
      .map((s) => ({
        type: s.type,
        kind: s.kind,
        mid: s.mid,
        ssrc: s.ssrc,
        codec: codec(s.codecId),
        ...pick(s, ['packetsReceived', 'packetsLost', 'packetsDiscarded', 'bytesReceived', 'framesReceived',
          'framesDecoded', 'keyFramesDecoded', 'framesDropped', 'nackCount', 'pliCount', 'firCount',
          'packetsSent', 'bytesSent', 'framesEncoded', 'keyFramesEncoded', 'framesSent', 'retransmittedPacketsSent',
          'targetBitrate', 'qualityLimitationReason', 'decoderImplementation', 'encoderImplementation',
          'jitterBufferDelay', 'jitterBufferEmittedCount']),
      }));
    return {
      rtp,
      localSdp: media.pc.localDescription?.sdp ?? null,
      remoteSdp: media.pc.remoteDescription?.sdp ?? null,
    };
  },
  /** Restarts ICE on the current call (CallMedia.restartIce). */
  restartIce: async () => {
    if (!media) throw new Error('no media');
    await media.restartIce();
  },
  /** Puts the call on hold (operator). */
  hold: async () => {
    await client.request('call.hold', { call_id: mediaTest.callId });
  },
  /** Takes the call off hold (operator). */
  resume: async () => {
    await client.request('call.resume', { call_id: mediaTest.callId });
  },
  /** Ends the call: the kiosk cancels it; the operator ends it and closes the wrap-up. */
  hangUp: async () => {
    const callId = mediaTest.callId;
    if (!callId || !client) return;
    if (role === 'kiosk') {
      await client.request('call.cancel', { call_id: callId });
    } else {
      await client.request('call.end', { call_id: callId });
      const done = { call_id: callId };
      if (dispositions[0]) done.disposition = dispositions[0].code;
      await client.request('wrapup.done', done);
    }
  },
};
window.mediaTest = mediaTest;

const STATE_TEXT = {
  connecting: 'Connessione… / Connecting…',
  waiting_media: 'Attesa della fotocamera… / Waiting for the camera…',
  available: 'Disponibile, in attesa di una chiamata / Available, waiting for a call',
  calling: 'Chiamata in corso… / Calling…',
  queued: 'In coda / Queued',
  offered: 'Chiamata in arrivo / Incoming call',
  connecting_media: 'Collegamento audio e video… / Connecting audio and video…',
  media_connected: 'In chiamata / In call',
  media_reconnecting: 'Riconnessione audio e video… / Reconnecting audio and video…',
  ended: 'Chiamata terminata / Call ended',
  error: 'Errore / Error',
};

function note(text) {
  const line = `${new Date().toISOString()} ${text}`;
  mediaTest.log.push(line);
  console.log(`media-test: ${text}`);
}

function setState(state, detail = '') {
  mediaTest.state = state;
  mediaTest.timings[state] ??= Date.now();
  $('status').textContent = STATE_TEXT[state] + (detail ? ` — ${detail}` : '');
  note(`state ${state}${detail ? ` (${detail})` : ''}`);
}

function fail(error) {
  mediaTest.error = error?.code ? `${error.code}: ${error.message}` : String(error?.message ?? error);
  setState('error', mediaTest.error);
}

async function startMedia(callId, localStream) {
  if (media) return;
  setState('connecting_media');
  const ahead = prepared?.callId === callId ? prepared : null;
  prepared = null;
  media = ahead?.media ?? new CallMedia(client, callId, { stream: localStream, tcpOnly });
  media.on('state', (s) => {
    note(`peer connection ${s.connectionState}, ICE ${s.iceConnectionState}`);
    if (s.connectionState === 'connected') setState('media_connected');
    if (s.connectionState === 'failed') {
      note('peer connection failed: restarting ICE');
      media.restartIce().catch((e) => note(`ICE restart failed: ${e.code ?? ''} ${e.message}`));
    }
  });
  media.on('candidate.dropped', (c) => note(`dropped UDP candidate ${c.candidate}`));
  media.on('reconnecting', (e) => {
    mediaTest.reconnects = e.reconnects;
    mediaTest.reconnectReasons.push(e.reason);
    mediaTest.timings[`reconnect_${e.reconnects}`] = Date.now();
    setState('media_reconnecting', e.reason);
  });
  media.on('streams', (e) => {
    $('remote').srcObject = e.remoteStream;
  });
  media.on('reconnect.failed', (e) => {
    mediaTest.reconnectError = `${e.error?.code ?? ''} ${e.error?.message ?? e.error}`;
    note(`offer after media.reconnect failed: ${mediaTest.reconnectError}`);
  });
  $('remote').srcObject = media.remoteStream;
  watchFrames($('remote'));
  if (ahead) await ahead.ready;
  await media.start();
  note('answer applied');
}

/** Makes the call's peer connection and offer now; `startMedia` sends them. */
function prepare(callId, localStream) {
  const m = new CallMedia(client, callId, { stream: localStream, tcpOnly });
  prepared = { callId, media: m, ready: m.prepare() };
}

function endMedia(reason) {
  media?.close();
  media = null;
  prepared?.media.close();
  prepared = null;
  setState('ended', reason);
}

async function kiosk(localStream) {
  client.on('call.assigned', (event) => {
    if (event.call_id !== mediaTest.callId) return;
    note(`assigned to ${event.operator?.id}`);
    startMedia(event.call_id, localStream).catch(fail);
  });
  client.on('queue.update', (event) => {
    if (event.call_id === mediaTest.callId && mediaTest.state === 'calling') setState('queued', `#${event.position}`);
  });
  client.on('state.sync', (event) => {
    const call = event.calls?.find((c) => c.call_id === mediaTest.callId);
    if (call && (call.state === 'connected' || call.state === 'on_hold') && !media) {
      startMedia(call.call_id, localStream).catch(fail);
    }
  });
  setState('calling');
  const reply = await client.request('call.request', {
    service: params.get('service') ?? 'anagrafe',
    language: params.get('language') ?? 'it',
  });
  mediaTest.callId = reply.call_id;
  note(`call ${reply.call_id}`);
  // Like the kiosk page: the peer connection and its offer are made while the call waits.
  if (!media) prepare(reply.call_id, localStream);
}

async function operator(localStream) {
  client.on('state.sync', (event) => {
    if (Array.isArray(event.dispositions)) dispositions = event.dispositions;
  });
  client.on('call.offered', async (event) => {
    if (mediaTest.callId) return;
    mediaTest.callId = event.call_id;
    setState('offered', event.kiosk?.name ?? '');
    // Like the console: the peer connection and its offer are made while the call rings.
    prepare(event.call_id, localStream);
    try {
      await client.request('call.accept', { call_id: event.call_id });
      await startMedia(event.call_id, localStream);
    } catch (e) {
      fail(e);
    }
  });
  await client.request('presence.set', { state: 'available' });
  setState('available');
}

async function main() {
  $('role').textContent = role ?? '—';
  if ((role !== 'kiosk' && role !== 'operator') || !token) {
    fail('#role=kiosk|operator&token=… mancante / missing');
    return;
  }
  setState('waiting_media');
  const localStream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 640, height: 480 },
  });
  $('local').srcObject = localStream;
  setState('connecting');
  client = await connect(defaultWsUrl(), { token });
  note(`session ${client.sessionId} as ${client.role} ${client.principalId}`);
  client.on('*', (event) => {
    if (event.type !== 'metrics.snapshot') note(`event ${JSON.stringify(event)}`);
  });
  client.on('call.ended', (event) => {
    if (event.call_id === mediaTest.callId) endMedia(event.reason);
  });
  if (role === 'kiosk') await kiosk(localStream);
  else await operator(localStream);
}

$('unmute').addEventListener('click', () => {
  $('remote').muted = false;
});

// The moment video shows, to the frame: each frame the remote video presents
// (requestVideoFrameCallback), until more than 10. The getStats poll below marks the same timings at
// 100 ms steps, for a video that does not render; the earlier mark stays.
function watchFrames(video) {
  if (!('requestVideoFrameCallback' in video)) return;
  const onFrame = (_, frame) => {
    mediaTest.timings.first_frame ??= Date.now();
    if (frame.presentedFrames > 10) {
      mediaTest.timings.decoded ??= Date.now();
      return;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// The on-screen statistics, and the moment both directions of video work.
setInterval(async () => {
  if (!media) return;
  const current = media;
  const reconnects = current.reconnects;
  const s = await mediaTest.stats();
  if (s.framesDecoded > 0) mediaTest.timings.first_frame ??= Date.now();
  if (s.framesDecoded > 10) mediaTest.timings.decoded ??= Date.now();
  // Decoding again on the connection made after the last reconnect (and no newer one since).
  if (media === current && current.reconnects === reconnects && reconnects > mediaTest.decodingAfterReconnect
    && s.framesDecoded > 10) {
    mediaTest.decodingAfterReconnect = reconnects;
    mediaTest.timings[`decoded_after_reconnect_${reconnects}`] = Date.now();
    note(`decoding again after reconnect ${reconnects}`);
  }
  const rows = [
    ['framesDecoded', s.framesDecoded],
    ['framesSent', s.framesSent],
    ['bytesReceived', s.bytesReceived],
    ['bytesSent', s.bytesSent],
    ['resolution', `${s.frameWidth}×${s.frameHeight}`],
    ['connectionState', s.connectionState],
    ['pair', s.pair ? `${s.pair.local?.protocol} ${s.pair.local?.candidateType} → ${s.pair.remote?.candidateType} ${s.pair.remote?.address}:${s.pair.remote?.port}` : '—'],
  ];
  $('stats').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = String(v);
    return [dt, dd];
  }));
}, 100);

main().catch(fail);
