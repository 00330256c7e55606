// The client side of the Sportello wire protocol (docs/protocol.md), shared by every page: the
// WebSocket session (auth, requests with replies by id, server events, reconnection with resume)
// and the media negotiation of one call with the SFU (`CallMedia`). No build step, no dependencies.

/**
 * An `error` reply of the server, or a failure of the connection itself.
 * `code` is one of the protocol's error codes (`unauthorized`, `forbidden`, `not_found`, `invalid`,
 * `conflict`, `rate_limited`, `unavailable`, `internal`).
 */
export class SportelloError extends Error {
  /**
   * @param {string} code the protocol error code
   * @param {string} message the server's message
   */
  constructor(code, message) {
    super(message);
    this.name = 'SportelloError';
    /** @type {string} */
    this.code = code;
  }
}

/**
 * A minimal event emitter: listeners by event type, plus `'*'` for every event.
 */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }

  /**
   * Adds a listener; returns a function that removes it.
   * @param {string} type an event type, or `'*'` for all
   * @param {(event: object) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Removes a listener.
   * @param {string} type
   * @param {Function} fn
   */
  off(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }

  /**
   * Resolves with the next event of `type` that satisfies `predicate`; rejects after `timeoutMs`
   * (no timeout when 0).
   * @param {string} type
   * @param {(event: object) => boolean} [predicate]
   * @param {number} [timeoutMs]
   * @returns {Promise<object>}
   */
  once(type, predicate = () => true, timeoutMs = 0) {
    return new Promise((resolve, reject) => {
      let timer;
      const off = this.on(type, (event) => {
        if (!predicate(event)) return;
        off();
        clearTimeout(timer);
        resolve(event);
      });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          off();
          reject(new SportelloError('unavailable', `no ${type} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Calls the listeners of `event.type` and of `'*'`. A listener that throws does not stop the others.
   * @param {{type: string}} event
   */
  emit(event) {
    for (const key of [event.type, '*']) {
      for (const fn of [...(this.listeners.get(key) ?? [])]) {
        try {
          fn(event);
        } catch (e) {
          console.error(`sportello: a listener of ${event.type} failed`, e);
        }
      }
    }
  }
}

/** Close codes after which reconnecting cannot help: authentication failed, session taken over. */
const FINAL_CLOSE_CODES = new Set([4401, 4409]);

/**
 * One authenticated WebSocket session with the server, reconnected with `resume` when the socket
 * drops. Server events are emitted by their `type`; the client itself emits these local events:
 * - `'connection.open'` `{session_id, role, principal_id, heartbeat_s, resumed, ice_servers?,
 *   ice_transport_policy?, ice_servers_ttl_s?}` after every `auth`;
 * - `'connection.lost'` `{code, reason}` when a socket ends and a reconnection is scheduled;
 * - `'connection.closed'` `{code, reason}` when the client gives up (or `close()` was called).
 */
export class SportelloClient extends Emitter {
  /**
   * Use `connect()` rather than the constructor.
   * @param {string} wsUrl `ws://…/api/v1/ws` or `wss://…`
   * @param {{token: string, capabilities?: string[]}} auth
   * @param {{reconnect?: boolean, WebSocket?: typeof WebSocket, maxBackoffMs?: number}} [options]
   */
  constructor(wsUrl, auth, options = {}) {
    super();
    this.wsUrl = wsUrl;
    this.auth = typeof auth === 'string' ? { token: auth } : auth;
    this.options = { reconnect: true, maxBackoffMs: 10000, ...options };
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    /** The session id of the last `auth` reply (sent as `resume` when reconnecting). */
    this.sessionId = null;
    /** The role and principal of the session. */
    this.role = null;
    this.principalId = null;
    /**
     * The session's ICE servers (RTCIceServer form, TURN credentials included) and ICE transport
     * policy: from the `auth` reply, replaced by every `ice.servers` event (fresh credentials for a
     * long session). `CallMedia` reads them each time it creates a peer connection.
     * @type {RTCIceServer[]}
     */
    this.iceServers = [];
    /** @type {'all' | 'relay'} */
    this.iceTransportPolicy = 'all';
    /** `'connecting'`, `'open'`, `'reconnecting'` or `'closed'`. */
    this.state = 'connecting';
    this.socket = null;
    this.nextId = 0;
    /** @type {Map<string, {resolve: Function, reject: Function}>} */
    this.pending = new Map();
    /** Requests made while the socket is down, sent after the next `auth`. */
    this.outbox = [];
    this.attempt = 0;
    this.closedByUs = false;
    this.retryTimer = null;
  }

  /**
   * Opens the socket and authenticates (with `resume` when a session exists). Resolves with the
   * `auth` reply's body; rejects with a `SportelloError` when the socket or the `auth` fails.
   * @returns {Promise<object>}
   */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocketImpl(this.wsUrl);
      this.socket = ws;
      const authId = this.newId();
      let authed = false;
      ws.onopen = () => {
        const frame = { type: 'auth', id: authId, token: this.auth.token };
        if (this.sessionId) frame.resume = this.sessionId;
        if (this.auth.capabilities) frame.capabilities = this.auth.capabilities;
        ws.send(JSON.stringify(frame));
      };
      ws.onmessage = (message) => {
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          console.error('sportello: unreadable frame from the server', message.data);
          return;
        }
        if (!authed && frame.id === authId) {
          if (frame.type === 'ok') {
            authed = true;
            this.attempt = 0;
            const body = stripEnvelope(frame);
            this.sessionId = body.session_id;
            this.role = body.role;
            this.principalId = body.principal_id;
            this.setIce(body);
            this.state = 'open';
            resolve(body);
            this.emit({ type: 'connection.open', ...body });
            for (const text of this.outbox.splice(0)) ws.send(text);
          } else {
            reject(new SportelloError(frame.code ?? 'internal', frame.message ?? 'auth failed'));
          }
          return;
        }
        this.dispatch(frame);
      };
      ws.onclose = (event) => {
        if (this.socket !== ws) return;
        this.socket = null;
        const err = new SportelloError('unavailable', `connection lost (${event.code}) before the reply`);
        for (const { reject: fail } of this.pending.values()) fail(err);
        this.pending.clear();
        if (!authed) {
          reject(new SportelloError('unavailable', `connection closed (${event.code} ${event.reason})`));
        }
        this.afterClose(event.code, event.reason, authed);
      };
    });
  }

  /** Decides, after a socket ended, whether to reconnect. */
  afterClose(code, reason, wasAuthed) {
    const final = this.closedByUs || !this.options.reconnect || FINAL_CLOSE_CODES.has(code)
      || (!wasAuthed && this.sessionId === null);
    if (final) {
      this.state = 'closed';
      for (const text of this.outbox.splice(0)) {
        const { id } = JSON.parse(text);
        this.pending.get(id)?.reject(new SportelloError('unavailable', 'the connection is closed'));
        this.pending.delete(id);
      }
      this.emit({ type: 'connection.closed', code, reason });
      return;
    }
    this.state = 'reconnecting';
    this.emit({ type: 'connection.lost', code, reason });
    const base = Math.min(this.options.maxBackoffMs, 250 * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open().catch((e) => {
        if (e.code === 'unauthorized') {
          this.closedByUs = true;
          this.socket?.close();
        }
      });
    }, delay);
  }

  /** Takes the ICE servers and policy of an `auth` reply or an `ice.servers` event. */
  setIce(body) {
    this.iceServers = Array.isArray(body.ice_servers) ? body.ice_servers : [];
    this.iceTransportPolicy = body.ice_transport_policy === 'relay' ? 'relay' : 'all';
  }

  /**
   * The `RTCConfiguration` fields for a new peer connection: the session's current ICE servers and
   * transport policy.
   * @returns {{iceServers: RTCIceServer[], iceTransportPolicy: 'all' | 'relay'}}
   */
  iceConfig() {
    return { iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy };
  }

  /** Routes a server frame to its pending request or to the event listeners. */
  dispatch(frame) {
    if (frame.type === 'ice.servers') this.setIce(frame);
    if ((frame.type === 'ok' || frame.type === 'error') && frame.id !== undefined) {
      const waiter = this.pending.get(frame.id);
      if (waiter) {
        this.pending.delete(frame.id);
        if (frame.type === 'ok') waiter.resolve(stripEnvelope(frame));
        else waiter.reject(new SportelloError(frame.code, frame.message));
        return;
      }
    }
    if (frame.type === 'error') {
      console.warn('sportello: error frame without a pending request', frame);
    }
    this.emit(frame);
  }

  /** @returns {string} a fresh request id */
  newId() {
    this.nextId += 1;
    return String(this.nextId);
  }

  /**
   * Sends a request and resolves with the body of its `ok` reply (without `type` and `id`);
   * rejects with a `SportelloError` carrying the `code` and `message` of an `error` reply, or
   * `unavailable` when the connection drops before the reply. While reconnecting, the request is
   * held and sent after the next `auth`.
   * @param {string} type e.g. `'call.request'`
   * @param {object} [body] the request's fields
   * @returns {Promise<object>}
   */
  request(type, body = {}) {
    if (this.state === 'closed') {
      return Promise.reject(new SportelloError('unavailable', 'the connection is closed'));
    }
    const id = this.newId();
    const text = JSON.stringify({ ...body, type, id });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.state === 'open' && this.socket?.readyState === 1) this.socket.send(text);
      else this.outbox.push(text);
    });
  }

  /**
   * Fetches a server resource that needs this session's bearer token (a scan, a document's PDF)
   * and resolves with its body as a Blob (for `URL.createObjectURL`, since `<img src>` and
   * `<iframe src>` cannot carry an Authorization header).
   * @param {string} url absolute, or relative to the page's server
   * @returns {Promise<Blob>}
   */
  fetchBlob(url) {
    return fetchBlob(url, this.auth.token);
  }

  /** Closes the connection for good (no reconnection). */
  close() {
    this.closedByUs = true;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.afterClose(1000, 'closed by the client', false);
    }
    this.socket?.close(1000, 'bye');
  }
}

/**
 * `GET url` with `Authorization: Bearer <token>`; resolves with the body as a Blob. Rejects with a
 * {@link SportelloError} carrying the server's error code (or `unavailable` when the network failed).
 * @param {string} url
 * @param {string} token
 * @returns {Promise<Blob>}
 */
export async function fetchBlob(url, token) {
  let res;
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
  } catch (e) {
    throw new SportelloError('unavailable', e.message);
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new SportelloError(body.code ?? 'internal', body.message ?? `HTTP ${res.status}`);
  }
  return res.blob();
}

/** A server frame without its envelope fields. */
function stripEnvelope(frame) {
  const { type: _type, id: _id, ...body } = frame;
  return body;
}

/**
 * Connects and authenticates. Resolves with the client once the `auth` reply is `ok`.
 * @param {string} wsUrl `ws://host/api/v1/ws`
 * @param {string | {token: string, capabilities?: string[]}} auth a token, or the `auth` fields
 * @param {{reconnect?: boolean, WebSocket?: typeof WebSocket, maxBackoffMs?: number}} [options]
 * @returns {Promise<SportelloClient>}
 */
export async function connect(wsUrl, auth, options = {}) {
  const client = new SportelloClient(wsUrl, auth, options);
  await client.open();
  return client;
}

/**
 * The WebSocket URL of the server that served the current page.
 * @returns {string}
 */
export function defaultWsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api/v1/ws`;
}

/**
 * Whether an ICE candidate line (`candidate:…` or `a=candidate:…`) uses UDP.
 * @param {string} line
 * @returns {boolean}
 */
export function isUdpCandidate(line) {
  const fields = line.replace(/^a=/, '').trim().split(/\s+/);
  return (fields[2] ?? '').toLowerCase() === 'udp';
}

/**
 * Removes the UDP `a=candidate` lines of an SDP.
 * @param {string} sdp
 * @returns {string}
 */
export function withoutUdpCandidates(sdp) {
  return sdp
    .split(/\r\n/)
    .filter((line) => !(line.startsWith('a=candidate:') && isUdpCandidate(line)))
    .join('\r\n');
}

/** Resolves after `ms` milliseconds. */
const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** How many times a re-offer after `media.reconnect` is sent when the server answers `unavailable`. */
const RECONNECT_ATTEMPTS = 4;

/**
 * The media of one call: one RTCPeerConnection with the SFU.
 *
 * A kiosk or operator sends its camera and microphone on two `sendrecv` transceivers and receives
 * the other party on the same transceivers (`remoteStream`). A supervisor monitor (`monitor: true`)
 * offers four `recvonly` transceivers: audio and video of the kiosk (`remoteStreams.kiosk`), then
 * of the operator (`remoteStreams.operator`).
 *
 * It follows `media.reconnect` for its call (the server moved the call's media to another media
 * node): it closes the peer connection, creates a new one with the same local stream, and sends a
 * fresh `media.offer` (docs/protocol.md). The remote streams are then new `MediaStream` objects:
 * pages set them on their video elements again on `'streams'`.
 *
 * Emits `'track'` `{track, stream, transceiver}`, `'state'` `{connectionState, iceConnectionState}`,
 * `'candidate.dropped'` `{candidate}` (UDP candidates dropped under `tcpOnly`), and for a
 * reconnect: `'reconnecting'` `{reason, reconnects}` when it starts, `'streams'`
 * `{remoteStream, remoteStreams}` with the new connection's streams, `'reconnected'` `{reconnects}`
 * once the new connection is connected, and `'reconnect.failed'` `{error}` when the new offer was
 * refused.
 */
export class CallMedia extends Emitter {
  /**
   * @param {SportelloClient} client the authenticated session
   * @param {string} callId
   * @param {object} [options]
   * @param {MediaStream} [options.stream] the local camera and microphone (not for a monitor)
   * @param {boolean} [options.monitor] a supervisor's receive-only view of both parties
   * @param {boolean} [options.tcpOnly] drop every UDP candidate from the server (simulates a
   *   network that blocks UDP, so ICE must use the SFU's ICE-TCP candidate)
   * @param {RTCIceServer[]} [options.iceServers] default: the session's (`client.iceConfig()`,
   *   from the `auth` reply and `ice.servers`), read each time a peer connection is created
   * @param {'all' | 'relay'} [options.iceTransportPolicy] default: the session's
   */
  constructor(client, callId, options = {}) {
    super();
    this.client = client;
    this.callId = callId;
    this.options = { monitor: false, tcpOnly: false, ...options };
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** The other party's audio and video (kiosk and operator). */
    this.remoteStream = new MediaStream();
    /** For a monitor: `{kiosk, operator}`. */
    this.remoteStreams = { kiosk: new MediaStream(), operator: new MediaStream() };
    /** Server candidates that arrived before the answer was applied. */
    this.earlyCandidates = [];
    /** Local candidates found before the answer came back. */
    this.localCandidates = [];
    this.answered = false;
    /** Every candidate the server sent (kept for diagnostics), with whether it was used. */
    this.serverCandidates = [];
    this.unsubscribe = null;
    /** How many `media.reconnect` events were followed (each one a new peer connection). */
    this.reconnects = 0;
    /** A reconnect is in progress: from the event until the new connection is connected. */
    this.reconnecting = false;
    /** Set by `close()`: no more reconnects. */
    this.closed = false;
    /** The media node that answered the current connection, with media nodes. */
    this.mediaNode = null;
    /** The offer `prepare()` made for the current peer connection, sent by `start()`. */
    this.preparedOffer = null;
  }

  /**
   * Creates the peer connection and its offer ahead of `start()`, for instance while a kiosk
   * waits in the queue, so that `start()` only has to send `media.offer` when the call is
   * answered. Nothing reaches the network before `start()` but ICE gathering of local
   * candidates, which wait for the answer. Resolves once the offer is the local description.
   * @returns {Promise<void>}
   */
  async prepare() {
    if (this.pc || this.closed) return;
    const pc = this.createPeerConnection();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    // The SDP as made, without the candidates gathered since: those are trickled after the
    // answer, as for an offer made in `start()`.
    if (this.pc === pc) this.preparedOffer = offer.sdp;
  }

  /**
   * Creates the peer connection and its transceivers, sends `media.offer` and applies the answer.
   * Resolves once the answer is applied (ICE and DTLS continue in the background: watch `'state'`).
   * @returns {Promise<void>}
   */
  async start() {
    const offCandidate = this.client.on('media.candidate', (event) => {
      if (event.call_id === this.callId) this.remoteCandidate(event);
    });
    const offReconnect = this.client.on('media.reconnect', (event) => {
      if (event.call_id !== this.callId || !this.pc || this.closed) return;
      this.reconnect(event.reason ?? '').catch((e) => {
        console.warn(`sportello: media.offer after media.reconnect failed: ${e.code ?? ''} ${e.message}`);
      });
    });
    // A `state.sync` (after this client reconnected, or resynced) that puts the call's media on
    // another node than the one that answered means a `media.reconnect` was missed: offer again.
    const offSync = this.client.on('state.sync', (event) => {
      if (!this.pc || this.closed || !this.mediaNode) return;
      const call = (event.calls ?? []).find((c) => c.call_id === this.callId);
      if (!call?.media_node || call.media_node === this.mediaNode) return;
      this.reconnect('resync').catch((e) => {
        console.warn(`sportello: media.offer after a resync failed: ${e.code ?? ''} ${e.message}`);
      });
    });
    this.unsubscribe = () => {
      offCandidate();
      offReconnect();
      offSync();
    };
    if (!this.pc) this.createPeerConnection();
    await this.negotiate();
  }

  /**
   * Creates the peer connection with its transceivers (the local stream's tracks, or four
   * `recvonly` ones for a monitor), adds their receivers' tracks to the remote streams, and makes it
   * the current one. Handlers of a connection that is no longer current do nothing.
   */
  createPeerConnection() {
    // The session's current ICE servers (fresh TURN credentials after a long session), unless the
    // caller gave its own.
    const ice = this.client.iceConfig?.() ?? { iceServers: [], iceTransportPolicy: 'all' };
    const pc = new RTCPeerConnection({
      iceServers: this.options.iceServers ?? ice.iceServers,
      iceTransportPolicy: this.options.iceTransportPolicy ?? ice.iceTransportPolicy,
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this.pc = pc;
    this.preparedOffer = null;
    this.answered = false;
    this.earlyCandidates = [];
    this.localCandidates = [];
    if (this.options.monitor) {
      const parties = [this.remoteStreams.kiosk, this.remoteStreams.operator];
      for (const stream of parties) {
        for (const kind of ['audio', 'video']) {
          const t = pc.addTransceiver(kind, { direction: 'recvonly' });
          stream.addTrack(t.receiver.track);
        }
      }
    } else {
      const stream = this.options.stream;
      for (const kind of ['audio', 'video']) {
        const track = stream?.getTracks().find((t) => t.kind === kind);
        const t = pc.addTransceiver(track ?? kind, {
          direction: 'sendrecv',
          streams: stream ? [stream] : [],
        });
        this.remoteStream.addTrack(t.receiver.track);
      }
    }
    pc.ontrack = (event) => {
      if (this.pc !== pc) return;
      this.emit({ type: 'track', track: event.track, stream: event.streams[0], transceiver: event.transceiver });
    };
    pc.onicecandidate = (event) => {
      const c = event.candidate;
      // A closed connection's candidates are never sent (after media.reconnect).
      if (this.pc !== pc || !c || !c.candidate) return;
      if (this.answered) this.sendCandidate(c);
      else this.localCandidates.push(c);
    };
    const report = () => {
      if (this.pc !== pc) return;
      this.emit({
        type: 'state',
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
      });
      if (this.reconnecting && pc.connectionState === 'connected') {
        this.reconnecting = false;
        this.emit({ type: 'reconnected', reconnects: this.reconnects });
      }
    };
    pc.onconnectionstatechange = report;
    pc.oniceconnectionstatechange = report;
    return pc;
  }

  /**
   * Follows `media.reconnect`: closes the peer connection, creates a new one with the same local
   * stream (or the same four `recvonly` transceivers), and sends a fresh `media.offer` from it
   * (`unavailable` is retried a few times). A reconnect that arrives meanwhile supersedes this one.
   * Called by the client's `media.reconnect` listener; pages need not call it.
   * @param {string} [reason] the event's reason (`node_lost`, `node_draining`, …)
   * @returns {Promise<void>}
   */
  async reconnect(reason = '') {
    if (this.closed) return;
    this.reconnects += 1;
    this.reconnecting = true;
    this.emit({ type: 'reconnecting', reason, reconnects: this.reconnects });
    const old = this.pc;
    this.pc = null;
    old?.close();
    this.remoteStream = new MediaStream();
    this.remoteStreams = { kiosk: new MediaStream(), operator: new MediaStream() };
    const pc = this.createPeerConnection();
    this.emit({ type: 'streams', remoteStream: this.remoteStream, remoteStreams: this.remoteStreams });
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.negotiate();
        return;
      } catch (e) {
        if (this.pc !== pc || this.closed) return;
        if (e.code === 'unavailable' && attempt < RECONNECT_ATTEMPTS) {
          await pause(250 * 2 ** attempt);
          if (this.pc !== pc || this.closed) return;
          continue;
        }
        this.emit({ type: 'reconnect.failed', error: e });
        throw e;
      }
    }
  }

  /**
   * Replaces the local stream (e.g. a camera that came back): its tracks go to the current
   * connection's senders, and a connection made after `media.reconnect` uses it.
   * @param {MediaStream} stream
   * @returns {Promise<void>}
   */
  async replaceStream(stream) {
    this.options.stream = stream;
    if (!this.pc || this.options.monitor) return;
    for (const t of this.pc.getTransceivers()) {
      const track = stream.getTracks().find((x) => x.kind === t.receiver.track.kind);
      if (track) await t.sender.replaceTrack(track);
    }
  }

  /**
   * Creates an offer, sends it as `media.offer`, applies the `ok {"sdp"}` answer. Returns without
   * applying anything when the connection was replaced meanwhile (`media.reconnect`).
   */
  async negotiate() {
    const pc = this.pc;
    try {
      await this.offerAndAnswer(pc);
    } catch (e) {
      // A connection closed meanwhile refuses every call: that is no failure of the current one.
      if (this.pc === pc) throw e;
    }
  }

  /** The body of `negotiate()` for the connection `pc`. */
  async offerAndAnswer(pc) {
    this.answered = false;
    let offerSdp = this.preparedOffer;
    this.preparedOffer = null;
    if (!offerSdp || pc.signalingState !== 'have-local-offer') {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (this.pc !== pc) return;
      offerSdp = pc.localDescription.sdp;
    }
    const body = { call_id: this.callId, sdp: offerSdp };
    if (this.options.monitor) body.monitor = true;
    const reply = await this.client.request('media.offer', body);
    if (this.pc !== pc) return;
    // With media nodes: the node that answered (`state.sync` names the call's node the same way).
    this.mediaNode = reply.media_node ?? null;
    let sdp = reply.sdp;
    if (this.options.tcpOnly) {
      for (const line of sdp.split(/\r\n/)) {
        if (line.startsWith('a=candidate:') && isUdpCandidate(line)) {
          this.serverCandidates.push({ candidate: line.slice(2), used: false });
          this.emit({ type: 'candidate.dropped', candidate: line.slice(2) });
        }
      }
      sdp = withoutUdpCandidates(sdp);
    }
    for (const line of sdp.split(/\r\n/)) {
      if (line.startsWith('a=candidate:')) this.serverCandidates.push({ candidate: line.slice(2), used: true });
    }
    await pc.setRemoteDescription({ type: 'answer', sdp });
    if (this.pc !== pc) return;
    this.answered = true;
    for (const c of this.earlyCandidates.splice(0)) await this.addRemote(c);
    for (const c of this.localCandidates.splice(0)) this.sendCandidate(c);
  }

  /** Sends one local candidate as a `media.candidate` request. */
  sendCandidate(c) {
    this.client
      .request('media.candidate', {
        call_id: this.callId,
        candidate: c.candidate,
        sdp_mid: c.sdpMid,
        sdp_mline_index: c.sdpMLineIndex,
      })
      .catch((e) => console.warn(`sportello: media.candidate refused: ${e.code} ${e.message}`));
  }

  /** A `media.candidate` event from the server. */
  async remoteCandidate(event) {
    const candidate = (event.candidate ?? '').replace(/^a=/, '');
    if (candidate && this.options.tcpOnly && isUdpCandidate(candidate)) {
      this.serverCandidates.push({ candidate, used: false });
      this.emit({ type: 'candidate.dropped', candidate });
      return;
    }
    this.serverCandidates.push({ candidate, used: true });
    const init = {
      candidate,
      sdpMid: event.sdp_mid ?? null,
      sdpMLineIndex: event.sdp_mline_index ?? null,
    };
    if (!this.answered) this.earlyCandidates.push(init);
    else await this.addRemote(init);
  }

  /** Adds a remote candidate; an empty one means the server has no more. */
  async addRemote(init) {
    if (!this.pc) return;
    try {
      if (!init.candidate) await this.pc.addIceCandidate(null);
      else await this.pc.addIceCandidate(init);
    } catch (e) {
      console.warn('sportello: cannot add the server candidate', init, e);
    }
  }

  /**
   * Restarts ICE (new credentials, new candidates): calls `pc.restartIce()` and sends `media.offer`
   * again for the same call. Use it after a network change or when the connection failed.
   * @returns {Promise<void>}
   */
  async restartIce() {
    if (!this.pc) return;
    this.pc.restartIce();
    await this.negotiate();
  }

  /**
   * A summary of `getStats()`: frames and bytes in each direction, the connection states, and the
   * selected candidate pair.
   * @returns {Promise<{framesDecoded: number, framesReceived: number, framesSent: number,
   *   bytesReceived: number, bytesSent: number, audioBytesReceived: number, frameWidth: number,
   *   frameHeight: number, connectionState: string, iceConnectionState: string,
   *   pair: null | {local: object, remote: object, currentRoundTripTime?: number}}>}
   */
  async stats() {
    const out = {
      framesDecoded: 0,
      framesReceived: 0,
      framesSent: 0,
      bytesReceived: 0,
      bytesSent: 0,
      audioBytesReceived: 0,
      frameWidth: 0,
      frameHeight: 0,
      connectionState: this.pc?.connectionState ?? 'new',
      iceConnectionState: this.pc?.iceConnectionState ?? 'new',
      pair: null,
    };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    let pairId = null;
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp') {
        out.bytesReceived += s.bytesReceived ?? 0;
        if (s.kind === 'video') {
          out.framesDecoded += s.framesDecoded ?? 0;
          out.framesReceived += s.framesReceived ?? 0;
          out.frameWidth = Math.max(out.frameWidth, s.frameWidth ?? 0);
          out.frameHeight = Math.max(out.frameHeight, s.frameHeight ?? 0);
        } else {
          out.audioBytesReceived += s.bytesReceived ?? 0;
        }
      } else if (s.type === 'outbound-rtp') {
        out.bytesSent += s.bytesSent ?? 0;
        if (s.kind === 'video') {
          out.framesSent += s.framesSent ?? 0;
          // Why the encoder holds back: 'bandwidth' (the estimate), 'cpu', or 'none'.
          out.qualityLimitationReason = s.qualityLimitationReason;
          out.targetBitrate = s.targetBitrate;
        }
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        pairId = s.selectedCandidatePairId;
      }
    }
    const pair = pairId ? report.get(pairId) : null;
    if (pair) {
      const describe = (c) => c && {
        candidateType: c.candidateType,
        protocol: c.protocol,
        address: c.address,
        port: c.port,
        tcpType: c.tcpType,
      };
      out.pair = {
        local: describe(report.get(pair.localCandidateId)),
        remote: describe(report.get(pair.remoteCandidateId)),
        currentRoundTripTime: pair.currentRoundTripTime,
        availableOutgoingBitrate: pair.availableOutgoingBitrate,
      };
    }
    return out;
  }

  /** Closes the peer connection and stops listening for this call's candidates and reconnects. */
  close() {
    this.closed = true;
    this.reconnecting = false;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.pc?.close();
  }
}

/**
 * Logs a staff member in over HTTP (`POST /api/v1/login`) and checks their role.
 * Resolves with the login body (`token`, `role`, …). Rejects with a {@link SportelloError} whose
 * `code` is `unauthorized` (wrong name or password), `forbidden` (an account of another role) or
 * the server's error code.
 * @param {string} username
 * @param {string} password
 * @param {'operator'|'supervisor'} role the role the page is for
 */
/**
 * `POST /api/v1/refresh`: a new access token of the same login. Rejects with a
 * {@link SportelloError} (`unauthorized` once the login is over or logged out).
 * @param {string} refreshToken
 */
export async function refreshLogin(refreshToken) {
  const res = await fetch('/api/v1/refresh', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new SportelloError(body.code ?? 'internal', body.message ?? String(res.status));
  return body;
}

/**
 * `POST /api/v1/logout`: ends the login of `token` on every server (its refresh token too).
 * @param {string} token
 */
export async function staffLogout(token) {
  const res = await fetch('/api/v1/logout', { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  if (!res.ok && res.status !== 401) throw new SportelloError('internal', String(res.status));
}

export async function staffLogin(username, password, role) {
  const res = await fetch('/api/v1/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const code = res.status === 401 ? 'unauthorized' : (body.code ?? 'internal');
    throw new SportelloError(code, body.message ?? String(res.status));
  }
  if (body.role !== role) throw new SportelloError('forbidden', `not a ${role}`);
  return body;
}
