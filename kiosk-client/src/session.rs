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
//!
//! The request side and the state it shares with the socket task are in `requester`, the event
//! buffer in `events`, and the socket task in `socket`.

mod events;
mod requester;
mod socket;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{Auth, AuthOk, ErrorCode, Event, Request, Role, CLOSE_UNAUTHORIZED};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::ClientError;
use events::EventBuffer;
use requester::{Command, Shared, SharedState};
pub use requester::{IceConfig, Requester};
use socket::run_socket;

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
