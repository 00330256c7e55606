//! The request side of a session ([`Requester`]) and what it shares with the socket task: the
//! requests waiting for their reply, the close frame, and the ICE servers ([`IceConfig`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use protocol::{ErrorCode, IceServer, IceTransportPolicy, Request};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

#[cfg(doc)]
use super::Session;
use crate::ClientError;

/// A reply as the reader task hands it over: the whole `ok` frame, or the error's code and message.
pub(super) type Reply = Result<Value, (ErrorCode, String)>;

/// What the socket task and the session share.
pub(super) struct Shared {
    pub(super) state: Mutex<SharedState>,
    /// The latest ICE servers and policy (`auth` reply, then `ice.servers` events).
    pub(super) ice: Mutex<IceConfig>,
    pub(super) next_id: AtomicU64,
    pub(super) closed: watch::Sender<bool>,
}

pub(super) struct SharedState {
    /// Requests waiting for their reply, by id. Each gets the reply and the frame's arrival number.
    pub(super) pending: HashMap<String, oneshot::Sender<(u64, Reply)>>,
    /// Set once the socket task is gone; no request is registered after that.
    pub(super) closed: bool,
    /// The close frame the server sent, if any: code and reason.
    pub(super) close_frame: Option<(u16, String)>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection closed and fails every waiting request with [`ClientError::Closed`].
    pub(super) fn finish(&self) {
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
pub(super) enum Command {
    /// Send this text frame.
    Text(String),
    /// Send a normal close frame and wait for the server's.
    Close,
}

/// The request side of a [`Session`]: cheap to clone, usable from many tasks at once (for example
/// one task per call in [`crate::OperatorBot`]). It fails with [`ClientError::Closed`] once the
/// connection is gone.
#[derive(Clone)]
pub struct Requester {
    pub(super) shared: Arc<Shared>,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) timeout: Duration,
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

    pub(super) fn next_id(&self) -> String {
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

    pub(super) async fn round_trip(
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
