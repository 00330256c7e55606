//! One authenticated protocol connection ([`Session`]) and its cloneable request side
//! ([`Requester`]).
//!
//! A background task owns the socket. It keeps reading all the time, so tungstenite answers the
//! server's pings even while nobody waits for anything; it routes each `ok`/`error` reply to the
//! request with the same `id` (ids are a per-session counter, `"1"` being `auth`), and pushes every
//! event into an unbounded channel. The [`Session`] side buffers those events: waiting for one event
//! leaves the others, in arrival order, for later calls.
//!
//! Frames that are not known events are kept apart, in the session's *unknown* list
//! ([`Session::take_unknown`], [`Session::wait_for_unknown`]): events this protocol version does not
//! know (`ServerMessage::Unknown`), replies nobody waits for any more (after a timeout, or to frames
//! sent with [`Requester::send_text`]), `error` frames without an `id`, and unparsable text (kept as
//! a JSON string).
//!
//! The session also keeps the ICE servers and transport policy of the `auth` reply, replaced by
//! each `ice.servers` event as it arrives ([`Requester::ice`]): [`crate::media`] reads them each
//! time it creates a peer connection, as the browser pages do.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{
    parse_server_frame, Auth, AuthOk, ErrorCode, Event, IceServer, IceTransportPolicy, Request,
    Role, ServerFrame, ServerMessage, CLOSE_UNAUTHORIZED,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ClientError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the task waits for the server's answer to our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Connection settings. `Default` gives the protocol's timeouts and the Mozilla TLS roots.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Extra CA certificates (PEM) trusted for `wss://` and `https://`, besides the Mozilla roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// How long to wait for the TCP, TLS and WebSocket handshakes (default 10 s).
    pub connect_timeout: Duration,
    /// How long to wait for the reply to `auth` (default 5 s, the server's own limit).
    pub auth_timeout: Duration,
    /// How long [`Session::request`] waits for a reply (default 10 s).
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(protocol::AUTH_TIMEOUT_S),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `now + after`, saturating at about thirty years so `Duration::MAX` means "no limit".
pub(crate) fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// A reply as the reader task hands it over: the whole `ok` frame, or the error's code and message.
type Reply = Result<Value, (ErrorCode, String)>;

/// What the socket task and the session share.
struct Shared {
    state: Mutex<SharedState>,
    /// The latest ICE servers and policy (`auth` reply, then `ice.servers` events).
    ice: Mutex<IceConfig>,
    next_id: AtomicU64,
    closed: watch::Sender<bool>,
}

struct SharedState {
    /// Requests waiting for their reply, by id. Each gets the reply and the frame's arrival number.
    pending: HashMap<String, oneshot::Sender<(u64, Reply)>>,
    /// Set once the socket task is gone; no request is registered after that.
    closed: bool,
    /// The close frame the server sent, if any: code and reason.
    close_frame: Option<(u16, String)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection closed and fails every waiting request with [`ClientError::Closed`].
    fn finish(&self) {
        {
            let mut state = self.lock();
            state.closed = true;
            state.pending.clear();
        }
        self.closed.send_replace(true);
    }
}

/// The ICE servers and transport policy a session's peer connections use: those of the `auth`
/// reply, then of the latest `ice.servers` event. Empty and `all` without `[turn]` on the server.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IceConfig {
    /// The servers, in the browser's `RTCIceServer` form (TURN credentials included).
    pub servers: Vec<IceServer>,
    /// `relay`: peer connections use only relayed candidates.
    pub policy: IceTransportPolicy,
}

impl std::fmt::Debug for IceConfig {
    // Written by hand so TURN credentials never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<(&[String], Option<&str>)> = self
            .servers
            .iter()
            .map(|s| (s.urls.as_slice(), s.username.as_deref()))
            .collect();
        f.debug_struct("IceConfig")
            .field("servers", &servers)
            .field("policy", &self.policy)
            .finish()
    }
}

/// What the session asks of the socket task.
enum Command {
    /// Send this text frame.
    Text(String),
    /// Send a normal close frame and wait for the server's.
    Close,
}

/// What the socket task hands to the session's event buffer.
pub(crate) enum Incoming {
    /// A known event, with the arrival number of its frame.
    Event(u64, Event),
    /// Anything else that is not a routed reply (see the module docs).
    Unknown(Value),
}

/// The request side of a [`Session`]: cheap to clone, usable from many tasks at once (for example
/// one task per call in [`crate::OperatorBot`]). It fails with [`ClientError::Closed`] once the
/// connection is gone.
#[derive(Clone)]
pub struct Requester {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("closed", &self.shared.lock().closed)
            .finish_non_exhaustive()
    }
}

impl Requester {
    /// The ICE servers and policy for a new peer connection: the `auth` reply's, or those of the
    /// latest `ice.servers` event.
    pub fn ice(&self) -> IceConfig {
        self.shared
            .ice
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn next_id(&self) -> String {
        (self.shared.next_id.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    /// Sends a request and waits for its reply. Returns the whole `ok` frame as JSON (with `type` and
    /// `id`). An `error` reply is [`ClientError::Refused`]; no reply within the request timeout is
    /// [`ClientError::Timeout`].
    pub async fn request(&self, request: &Request) -> Result<Value, ClientError> {
        self.request_stamped(request).await.map(|(_, body)| body)
    }

    /// Like [`Requester::request`], also returning the arrival number of the reply frame, so callers
    /// can tell which events came after it.
    pub(crate) async fn request_stamped(
        &self,
        request: &Request,
    ) -> Result<(u64, Value), ClientError> {
        let id = self.next_id();
        let text = request.to_frame(&id);
        self.round_trip(id, text, self.timeout).await
    }

    /// Sends an arbitrary JSON object as a request (malformed or unknown ones included) and waits for
    /// its reply, like [`Requester::request`]. The object gets a fresh `id`, replacing any it has.
    pub async fn request_raw(&self, request: Value) -> Result<Value, ClientError> {
        let Value::Object(mut map) = request else {
            return Err(ClientError::InvalidArgument(
                "a raw request must be a JSON object".into(),
            ));
        };
        let id = self.next_id();
        map.insert("id".into(), Value::from(id.as_str()));
        let text = Value::Object(map).to_string();
        self.round_trip(id, text, self.timeout)
            .await
            .map(|(_, body)| body)
    }

    /// Sends a text frame as it is, without waiting for anything. A reply to it lands in the
    /// session's unknown list, since no request waits for it.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        if self.shared.lock().closed {
            return Err(ClientError::Closed);
        }
        self.commands
            .send(Command::Text(text.into()))
            .map_err(|_| ClientError::Closed)
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    async fn round_trip(
        &self,
        id: String,
        text: String,
        timeout: Duration,
    ) -> Result<(u64, Value), ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(ClientError::Closed);
            }
            state.pending.insert(id.clone(), tx);
        }
        if self.commands.send(Command::Text(text)).is_err() {
            self.shared.lock().pending.remove(&id);
            return Err(ClientError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.shared.lock().pending.remove(&id);
                Err(ClientError::Timeout)
            }
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok((seq, Ok(body)))) => Ok((seq, body)),
            Ok(Ok((_, Err((code, message))))) => Err(ClientError::Refused { code, message }),
        }
    }
}

/// The event side of a session: the channel from the socket task, the events that arrived but were
/// not taken yet (oldest first), and the unknown frames.
pub(crate) struct EventBuffer {
    rx: mpsc::UnboundedReceiver<Incoming>,
    buffered: VecDeque<(u64, Event)>,
    unknown: VecDeque<Value>,
}

impl EventBuffer {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Incoming>) -> Self {
        EventBuffer {
            rx,
            buffered: VecDeque::new(),
            unknown: VecDeque::new(),
        }
    }

    fn accept(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Event(seq, event) => self.buffered.push_back((seq, event)),
            Incoming::Unknown(value) => self.unknown.push_back(value),
        }
    }

    /// Moves everything that already arrived into the buffers.
    fn pump(&mut self) {
        while let Ok(incoming) = self.rx.try_recv() {
            self.accept(incoming);
        }
    }

    /// The first event, oldest first, for which `pred` holds; the others stay buffered in order.
    /// Cancel-safe: an event received before a cancellation is buffered, not lost.
    pub(crate) async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(u64, &Event) -> bool,
    ) -> Result<(u64, Event), ClientError> {
        self.pump();
        if let Some(i) = self.buffered.iter().position(|(s, e)| pred(*s, e)) {
            if let Some(found) = self.buffered.remove(i) {
                return Ok(found);
            }
        }
        let deadline = deadline_after(timeout);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(Incoming::Event(seq, event))) => {
                    if pred(seq, &event) {
                        return Ok((seq, event));
                    }
                    self.buffered.push_back((seq, event));
                }
                Ok(Some(unknown @ Incoming::Unknown(_))) => self.accept(unknown),
            }
        }
    }

    /// The first unknown frame, oldest first, for which `pred` holds.
    pub(crate) async fn wait_for_unknown(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        self.pump();
        if let Some(i) = self.unknown.iter().position(&mut pred) {
            if let Some(found) = self.unknown.remove(i) {
                return Ok(found);
            }
        }
        let deadline = deadline_after(timeout);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(Incoming::Unknown(value))) => {
                    if pred(&value) {
                        return Ok(value);
                    }
                    self.unknown.push_back(value);
                }
                Ok(Some(event @ Incoming::Event(..))) => self.accept(event),
            }
        }
    }

    /// Every event that arrived so far, oldest first, with its arrival number.
    pub(crate) fn drain(&mut self) -> Vec<(u64, Event)> {
        self.pump();
        self.buffered.drain(..).collect()
    }

    /// Every unknown frame that arrived so far, oldest first.
    pub(crate) fn take_unknown(&mut self) -> Vec<Value> {
        self.pump();
        self.unknown.drain(..).collect()
    }

    /// Puts events (from an earlier connection) in front of everything buffered, with arrival
    /// number 0.
    pub(crate) fn prepend(&mut self, events: Vec<Event>, unknown: Vec<Value>) {
        for event in events.into_iter().rev() {
            self.buffered.push_front((0, event));
        }
        for value in unknown.into_iter().rev() {
            self.unknown.push_front(value);
        }
    }
}

/// One authenticated connection to `GET /api/v1/ws`.
///
/// Requests go through [`Session::request`] (or a [`Requester`] clone); events come out of
/// [`Session::next_event`], [`Session::wait_for`] and [`Session::drain_events`]. Dropping a session
/// without [`Session::close`] closes the socket normally once no [`Requester`] clone is left.
pub struct Session {
    requester: Requester,
    events: EventBuffer,
    auth: AuthOk,
    task: Option<JoinHandle<()>>,
    closed: watch::Receiver<bool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.auth.session_id)
            .field("role", &self.auth.role)
            .field("principal_id", &self.auth.principal_id)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens a socket to `ws_url` (`ws://` or `wss://`, the full endpoint URL; see [`crate::ws_url`]),
    /// sends `auth` as the first frame and waits for its reply.
    ///
    /// An `error` reply, or the server closing with 4401 before replying, is
    /// [`ClientError::Refused`]. Events the server sends right after `auth` (such as `state.sync`)
    /// are buffered in the returned session.
    pub async fn connect(ws_url: &str, auth: Auth) -> Result<(Session, AuthOk), ClientError> {
        Self::connect_with(ws_url, auth, &ConnectOptions::default()).await
    }

    /// [`Session::connect`] with explicit [`ConnectOptions`].
    pub async fn connect_with(
        ws_url: &str,
        auth: Auth,
        options: &ConnectOptions,
    ) -> Result<(Session, AuthOk), ClientError> {
        let request = ws_url
            .into_client_request()
            .map_err(|e| ClientError::InvalidUrl(format!("{ws_url:?}: {e}")))?;
        let connector = if request.uri().scheme_str() == Some("wss") {
            Some(crate::tls::connector(options.extra_ca_pem.as_deref())?)
        } else {
            None
        };
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
        let (ws, _response) = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| ClientError::Connect(format!("{ws_url}: no answer in time")))?
            .map_err(|e| ClientError::Connect(format!("{ws_url}: {e}")))?;

        let (closed_tx, closed_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(SharedState {
                pending: HashMap::new(),
                closed: false,
                close_frame: None,
            }),
            ice: Mutex::new(IceConfig::default()),
            next_id: AtomicU64::new(0),
            closed: closed_tx,
        });
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_socket(ws, commands_rx, events_tx, shared.clone()));
        let mut session = Session {
            requester: Requester {
                shared,
                commands: commands_tx,
                timeout: options.request_timeout,
            },
            events: EventBuffer::new(events_rx),
            auth: AuthOk {
                session_id: String::new(),
                role: Role::Kiosk,
                principal_id: String::new(),
                heartbeat_s: 0,
                resumed: false,
                ice_servers: None,
                ice_transport_policy: None,
                ice_servers_ttl_s: None,
            },
            task: Some(task),
            closed: closed_rx,
        };

        let id = session.requester.next_id();
        let frame = Request::Auth(auth).to_frame(&id);
        let reply = session
            .requester
            .round_trip(id, frame, options.auth_timeout)
            .await;
        let body = match reply {
            Ok((_, body)) => body,
            Err(ClientError::Closed) => {
                let close = session.requester.shared.lock().close_frame.clone();
                session.cut().await;
                return Err(match close {
                    Some((code, reason)) if code == CLOSE_UNAUTHORIZED => ClientError::Refused {
                        code: ErrorCode::Unauthorized,
                        message: reason,
                    },
                    _ => ClientError::Closed,
                });
            }
            Err(e) => {
                session.cut().await;
                return Err(e);
            }
        };
        let auth_ok: AuthOk = match serde_json::from_value(body.clone()) {
            Ok(ok) => ok,
            Err(e) => {
                session.cut().await;
                return Err(ClientError::Protocol(format!(
                    "unexpected auth reply {body}: {e}"
                )));
            }
        };
        // `ice.servers` events come only after the reply: they replace this from then on.
        *session
            .requester
            .shared
            .ice
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = IceConfig {
            servers: auth_ok.ice_servers.clone().unwrap_or_default(),
            policy: auth_ok.ice_transport_policy.unwrap_or_default(),
        };
        session.auth = auth_ok.clone();
        Ok((session, auth_ok))
    }

    /// A cloneable handle for sending requests from other tasks.
    pub fn requester(&self) -> Requester {
        self.requester.clone()
    }

    /// Sends a request and waits for its reply (see [`Requester::request`]).
    pub async fn request(&self, request: &Request) -> Result<Value, ClientError> {
        self.requester.request(request).await
    }

    pub(crate) async fn request_stamped(
        &self,
        request: &Request,
    ) -> Result<(u64, Value), ClientError> {
        self.requester.request_stamped(request).await
    }

    /// Sends an arbitrary JSON object as a request, with a fresh `id` (see
    /// [`Requester::request_raw`]).
    pub async fn request_raw(&self, request: Value) -> Result<Value, ClientError> {
        self.requester.request_raw(request).await
    }

    /// Sends a text frame as it is (see [`Requester::send_text`]).
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.requester.send_text(text)
    }

    /// The next event, oldest first. [`ClientError::Timeout`] when none arrives in time,
    /// [`ClientError::Closed`] when the connection is gone and every buffered event was taken.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        self.events
            .wait_for(timeout, |_, _| true)
            .await
            .map(|(_, event)| event)
    }

    /// The first event, oldest first, for which `pred` holds. The events it skips stay buffered, in
    /// order, for later calls, so waiting for one event never loses another.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<Event, ClientError> {
        self.events
            .wait_for(timeout, |_, event| pred(event))
            .await
            .map(|(_, event)| event)
    }

    pub(crate) async fn wait_for_stamped(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(u64, &Event) -> bool,
    ) -> Result<(u64, Event), ClientError> {
        self.events.wait_for(timeout, pred).await
    }

    /// Every event buffered or already arrived, oldest first, without waiting.
    pub fn drain_events(&mut self) -> Vec<Event> {
        self.events
            .drain()
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    /// Moves the events this (dead) session still holds in front of `next`'s, for a reconnect.
    /// `state.sync` events are dropped: the new session's own `state.sync` supersedes them.
    pub(crate) fn carry_over_into(&mut self, next: &mut Session) {
        let events: Vec<Event> = self
            .events
            .drain()
            .into_iter()
            .map(|(_, event)| event)
            .filter(|event| !matches!(event, Event::StateSync(_)))
            .collect();
        let unknown = self.events.take_unknown();
        next.events.prepend(events, unknown);
    }

    /// Every unknown frame arrived so far, oldest first (see the module docs for what they are).
    pub fn take_unknown(&mut self) -> Vec<Value> {
        self.events.take_unknown()
    }

    /// The first unknown frame, oldest first, for which `pred` holds; the others stay kept.
    pub async fn wait_for_unknown(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        self.events.wait_for_unknown(timeout, pred).await
    }

    /// Sends a normal close frame (1000), waits briefly for the server's, and ends the connection.
    pub async fn close(mut self) {
        let _ = self.requester.commands.send(Command::Close);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(CLOSE_WAIT + Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        self.requester.shared.finish();
    }

    /// Drops the socket without a close frame, as a network cut would: the server sees the TCP
    /// connection end. Returns once the socket is closed.
    pub async fn drop_connection(mut self) {
        self.cut().await;
    }

    /// Drops the socket without a close frame but keeps the session object, with its buffered events,
    /// so they can be carried over to a new connection.
    pub(crate) async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.requester.shared.finish();
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Waits until the connection is gone; returns the server's close code, if it sent one.
    pub async fn wait_closed(&self, timeout: Duration) -> Result<Option<u16>, ClientError> {
        let mut closed = self.closed.clone();
        let waited = tokio::time::timeout(timeout, closed.wait_for(|c| *c))
            .await
            .map(|_| ());
        match waited {
            Err(_) => Err(ClientError::Timeout),
            Ok(()) => Ok(self.close_code()),
        }
    }

    /// The code of the close frame the server sent (after a close this client started, it is the
    /// server's echo, normally 1000). `None` while open, or when the socket ended without a close
    /// frame.
    pub fn close_code(&self) -> Option<u16> {
        self.requester
            .shared
            .lock()
            .close_frame
            .as_ref()
            .map(|(code, _)| *code)
    }

    /// The reason of the close frame the server sent, if any.
    pub fn close_reason(&self) -> Option<String> {
        self.requester
            .shared
            .lock()
            .close_frame
            .as_ref()
            .map(|(_, reason)| reason.clone())
    }

    /// The session id, to pass as `resume` after a reconnect.
    pub fn session_id(&self) -> &str {
        &self.auth.session_id
    }

    /// The principal's id: the kiosk id, or the operator's or supervisor's user name.
    pub fn principal_id(&self) -> &str {
        &self.auth.principal_id
    }

    /// The principal's role.
    pub fn role(&self) -> Role {
        self.auth.role
    }

    /// The whole `auth` reply.
    pub fn auth_ok(&self) -> &AuthOk {
        &self.auth
    }
}

/// The socket task: sends what the session asks, reads everything, routes replies and events, and
/// records how the connection ended.
async fn run_socket(
    mut ws: Ws,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Incoming>,
    shared: Arc<Shared>,
) {
    let mut seq = 0u64;
    // Set once this side sent its close frame: how long to wait for the server's.
    let mut closing: Option<Instant> = None;
    loop {
        let close_deadline = closing.unwrap_or_else(Instant::now);
        tokio::select! {
            command = commands.recv(), if closing.is_none() => match command {
                Some(Command::Text(text)) => {
                    if let Err(e) = ws.send(Message::Text(text.into())).await {
                        tracing::debug!(error = %e, "sending failed; the connection is gone");
                        break;
                    }
                }
                Some(Command::Close) | None => {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    if ws.close(Some(frame)).await.is_err() {
                        break;
                    }
                    closing = Some(Instant::now() + CLOSE_WAIT);
                }
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    seq += 1;
                    dispatch(text.as_str(), seq, &events, &shared);
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                        // A close frame without a status is 1005 ("no status received").
                        None => (1005, String::new()),
                    };
                    tracing::debug!(code, %reason, "the server closed the connection");
                    shared.lock().close_frame = Some((code, reason));
                    // tungstenite answers the close; keep polling until the stream ends.
                }
                Some(Ok(Message::Binary(data))) => {
                    tracing::warn!(len = data.len(), "ignoring a binary frame from the server");
                }
                // Pings are answered by tungstenite while we read; pongs and raw frames need nothing.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the connection failed");
                    break;
                }
                None => break,
            },
            () = tokio::time::sleep_until(close_deadline), if closing.is_some() => break,
        }
    }
    shared.finish();
}

/// Routes one text frame from the server.
fn dispatch(text: &str, seq: u64, events: &mpsc::UnboundedSender<Incoming>, shared: &Shared) {
    let raw = || serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    let unrouted = match parse_server_frame(text) {
        Ok(ServerMessage::Frame(ServerFrame::Ok { id, body })) => route(shared, &id, seq, Ok(body)),
        Ok(ServerMessage::Frame(ServerFrame::Error {
            id: Some(id),
            code,
            message,
        })) => route(shared, &id, seq, Err((code, message))),
        Ok(ServerMessage::Frame(ServerFrame::Error { id: None, .. })) => true,
        Ok(ServerMessage::Frame(ServerFrame::Event(event))) => {
            if let Event::IceServers(fresh) = &event {
                *shared.ice.lock().unwrap_or_else(|e| e.into_inner()) = IceConfig {
                    servers: fresh.ice_servers.clone(),
                    policy: fresh.ice_transport_policy.unwrap_or_default(),
                };
            }
            let _ = events.send(Incoming::Event(seq, event));
            false
        }
        Ok(ServerMessage::Unknown(value)) => {
            let _ = events.send(Incoming::Unknown(value));
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable frame from the server");
            true
        }
    };
    if unrouted {
        let _ = events.send(Incoming::Unknown(raw()));
    }
}

/// Hands a reply to the request waiting for it; `true` when nobody waits for that id.
fn route(shared: &Shared, id: &str, seq: u64, reply: Reply) -> bool {
    let waiter = shared.lock().pending.remove(id);
    match waiter {
        Some(tx) => tx.send((seq, reply)).is_err(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallRef, QueueUpdate};

    fn update(call: &str, position: u32) -> Event {
        Event::QueueUpdate(QueueUpdate {
            call_id: call.into(),
            position,
            estimated_wait_s: None,
        })
    }

    fn held(call: &str) -> Event {
        Event::CallHeld(CallRef {
            call_id: call.into(),
        })
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn an_ice_servers_event_replaces_the_sessions_ice_config_and_is_still_delivered() {
        let (closed, _) = watch::channel(false);
        let shared = Shared {
            state: Mutex::new(SharedState {
                pending: HashMap::new(),
                closed: false,
                close_frame: None,
            }),
            ice: Mutex::new(IceConfig::default()),
            next_id: AtomicU64::new(0),
            closed,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let frame = r#"{"type":"ice.servers","ice_servers":[{"urls":["turn:t.example:3478"],
            "username":"2000000000:k1","credential":"c2VjcmV0"}],"ice_transport_policy":"relay",
            "ice_servers_ttl_s":600}"#
            .replace('\n', "");
        dispatch(&frame, 7, &tx, &shared);
        let ice = shared.ice.lock().unwrap().clone();
        assert_eq!(ice.policy, IceTransportPolicy::Relay);
        assert_eq!(ice.servers[0].urls, ["turn:t.example:3478"]);
        assert_eq!(ice.servers[0].username.as_deref(), Some("2000000000:k1"));
        assert!(
            !format!("{ice:?}").contains("c2VjcmV0"),
            "no credential in Debug: {ice:?}"
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Incoming::Event(7, Event::IceServers(_)))
        ));
        // Without a policy: `all`.
        dispatch(
            r#"{"type":"ice.servers","ice_servers":[],"ice_servers_ttl_s":600}"#,
            8,
            &tx,
            &shared,
        );
        assert_eq!(*shared.ice.lock().unwrap(), IceConfig::default());
    }

    #[tokio::test]
    async fn wait_for_keeps_the_skipped_events_in_order() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        for (i, event) in [update("a", 3), update("a", 2), held("a"), update("a", 1)]
            .into_iter()
            .enumerate()
        {
            tx.send(Incoming::Event(i as u64 + 1, event)).unwrap();
        }
        let (seq, found) = buffer
            .wait_for(SHORT, |_, e| matches!(e, Event::CallHeld(_)))
            .await
            .unwrap();
        assert_eq!((seq, found), (3, held("a")));
        let (_, next) = buffer.wait_for(SHORT, |_, _| true).await.unwrap();
        assert_eq!(next, update("a", 3));
        let rest: Vec<Event> = buffer.drain().into_iter().map(|(_, e)| e).collect();
        assert_eq!(rest, vec![update("a", 2), update("a", 1)]);
        assert!(buffer.drain().is_empty());
    }

    #[tokio::test]
    async fn waiting_buffers_later_arrivals_and_times_out_without_losing_them() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(Incoming::Event(1, update("a", 2))).unwrap();
            tx.send(Incoming::Unknown(
                serde_json::json!({"type": "media.stats"}),
            ))
            .unwrap();
            tx.send(Incoming::Event(2, update("a", 1))).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(Incoming::Event(3, held("a"))).unwrap();
            tx
        });
        let (_, found) = buffer
            .wait_for(Duration::from_secs(5), |_, e| {
                matches!(e, Event::CallHeld(_))
            })
            .await
            .unwrap();
        assert_eq!(found, held("a"));
        assert!(matches!(
            buffer
                .wait_for(SHORT, |_, e| matches!(e, Event::CallEnded(_)))
                .await,
            Err(ClientError::Timeout)
        ));
        let _tx = sender.await.unwrap();
        let rest: Vec<Event> = buffer.drain().into_iter().map(|(_, e)| e).collect();
        assert_eq!(rest, vec![update("a", 2), update("a", 1)]);
        let unknown = buffer.take_unknown();
        assert_eq!(unknown, vec![serde_json::json!({"type": "media.stats"})]);
    }

    #[tokio::test]
    async fn a_closed_channel_still_yields_the_buffered_events_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        tx.send(Incoming::Event(1, update("a", 1))).unwrap();
        tx.send(Incoming::Event(2, held("a"))).unwrap();
        drop(tx);
        assert!(matches!(
            buffer
                .wait_for(SHORT, |_, e| matches!(e, Event::CallEnded(_)))
                .await,
            Err(ClientError::Closed)
        ));
        assert_eq!(
            buffer.wait_for(SHORT, |_, _| true).await.unwrap().1,
            update("a", 1)
        );
        assert_eq!(
            buffer.wait_for(SHORT, |_, _| true).await.unwrap().1,
            held("a")
        );
        assert!(matches!(
            buffer.wait_for(SHORT, |_, _| true).await,
            Err(ClientError::Closed)
        ));
    }

    #[tokio::test]
    async fn carried_over_events_come_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        tx.send(Incoming::Event(1, update("a", 1))).unwrap();
        buffer.pump();
        buffer.prepend(vec![update("a", 3), update("a", 2)], Vec::new());
        let all: Vec<(u64, Event)> = buffer.drain();
        assert_eq!(
            all,
            vec![
                (0, update("a", 3)),
                (0, update("a", 2)),
                (1, update("a", 1))
            ]
        );
    }

    #[tokio::test]
    async fn unknown_frames_can_be_waited_for_without_losing_events() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        tx.send(Incoming::Event(1, update("a", 1))).unwrap();
        tx.send(Incoming::Unknown(serde_json::json!({"type": "x", "n": 1})))
            .unwrap();
        tx.send(Incoming::Unknown(serde_json::json!({"type": "x", "n": 2})))
            .unwrap();
        let found = buffer
            .wait_for_unknown(SHORT, |v| v["n"] == 2)
            .await
            .unwrap();
        assert_eq!(found["n"], 2);
        assert_eq!(buffer.take_unknown().len(), 1);
        assert_eq!(buffer.drain().len(), 1);
    }
}
