//! The agent's connection to the server: connect with the device token and the configured
//! capabilities, hand every event to a handler, and reconnect forever with backoff, resuming the
//! session. [`Link`] is how the rest of the agent sends requests over whichever connection is up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Auth, Capability, Event, Request};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::session::{ConnectOptions, Requester, Session};
use crate::ClientError;

/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The request side of the current connection, if any.
#[derive(Clone)]
pub struct Link {
    current: Arc<watch::Sender<Option<Requester>>>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            current: Arc::new(watch::channel(None).0),
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Link {
    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.current
            .borrow()
            .as_ref()
            .is_some_and(|r| !r.is_closed())
    }

    /// Watches the connection (`Some` while one is up).
    pub fn subscribe(&self) -> watch::Receiver<Option<Requester>> {
        self.current.subscribe()
    }

    fn set(&self, requester: Option<Requester>) {
        self.current.send_replace(requester);
    }

    /// Sends `request` over the current connection and waits for its reply. When there is no
    /// connection, or it drops before the reply, waits for the next one and tries again, for up to
    /// `patience`. An `error` reply is returned at once.
    pub async fn request(
        &self,
        request: &Request,
        patience: Duration,
    ) -> Result<Value, ClientError> {
        let deadline = Instant::now() + patience;
        let mut watch = self.subscribe();
        loop {
            let requester = watch.borrow_and_update().clone();
            if let Some(requester) = requester.filter(|r| !r.is_closed()) {
                match requester.request(request).await {
                    Err(ClientError::Closed | ClientError::Timeout) => {}
                    other => return other,
                }
            }
            match tokio::time::timeout_at(deadline, watch.changed()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(Err(_)) => return Err(ClientError::Closed),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// How to connect.
#[derive(Clone)]
pub struct LinkSettings {
    /// The WebSocket endpoint.
    pub ws_url: String,
    /// The device token.
    pub token: String,
    /// The declared capabilities.
    pub capabilities: Vec<Capability>,
    /// TLS and timeouts.
    pub options: ConnectOptions,
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSettings")
            .field("ws_url", &self.ws_url)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// A pause of `base` plus up to a quarter of it, varied by the clock so that many kiosks do not
/// reconnect in step.
fn with_jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base / 4 * (nanos % 1000) / 1000
}

/// Connects, hands every event to `on_event`, and reconnects (resuming the session) until
/// `shutdown` completes. [`Link`] follows the connection.
pub async fn run(
    settings: LinkSettings,
    link: Link,
    mut on_event: impl FnMut(Event),
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut resume: Option<String> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        let auth = Auth {
            token: settings.token.clone(),
            resume: resume.clone(),
            capabilities: settings.capabilities.clone(),
        };
        let connecting = Session::connect_with(&settings.ws_url, auth, &settings.options);
        let connected = tokio::select! {
            () = &mut shutdown => return,
            connected = connecting => connected,
        };
        match connected {
            Ok((mut session, ok)) => {
                tracing::info!(
                    url = %settings.ws_url,
                    kiosk = %ok.principal_id,
                    session = %ok.session_id,
                    resumed = ok.resumed,
                    "connected to the server"
                );
                resume = Some(ok.session_id.clone());
                backoff = MIN_BACKOFF;
                link.set(Some(session.requester()));
                loop {
                    let next = tokio::select! {
                        () = &mut shutdown => {
                            link.set(None);
                            session.close().await;
                            return;
                        }
                        next = session.next_event(Duration::from_secs(3600)) => next,
                    };
                    match next {
                        Ok(event) => on_event(event),
                        Err(ClientError::Timeout) => {}
                        Err(_) => break,
                    }
                }
                link.set(None);
                match session.close_code() {
                    Some(protocol::CLOSE_SUPERSEDED) => tracing::error!(
                        "disconnected: another connection resumed this session (is a second agent \
                         running with the same device token?); reconnecting"
                    ),
                    code => {
                        tracing::warn!(close_code = ?code, "disconnected from the server; reconnecting")
                    }
                }
            }
            Err(ClientError::Refused { code, message }) => {
                tracing::error!(
                    %code, %message,
                    "the server refused the device token; check token/token_file"
                );
                backoff = MAX_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(url = %settings.ws_url, error = %e, retry_in_s = backoff.as_secs(), "cannot connect to the server");
            }
        }
        let pause = with_jitter(backoff);
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(pause) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
