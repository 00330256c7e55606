//! The state shared by every HTTP handler and WebSocket session.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use protocol::{Auth, ErrorCode, Role};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::{Directory, Principal};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::Routing;
use crate::sessions::{Attached, Graces, SessionRegistry};
use crate::shutdown::Shutdown;
use crate::tokens::{unix_now, TokenError, TokenIssuer};
use crate::ws::connection::{Opened, SessionOpener};

/// Everything a request may need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Accounts.
    pub directory: Arc<Directory>,
    /// Login tokens.
    pub tokens: Arc<TokenIssuer>,
    /// WebSocket sessions.
    pub sessions: Arc<SessionHub>,
    /// Metrics.
    pub metrics: Metrics,
    /// The shutdown signal.
    pub shutdown: Shutdown,
    /// Tracks WebSocket tasks so shutdown can wait for them.
    pub ws_tasks: TaskTracker,
    /// The queue.
    pub routing: Routing,
    /// This process's sockets by principal, for event delivery.
    pub events: Arc<crate::calls::hub::EventHub>,
    /// Certificates: registry, stamping, verification, audit.
    pub issuer: Arc<certificates::Issuer>,
    /// Identification, issued documents and print jobs of this process's calls.
    pub incall: Arc<crate::calls::incall::InCall>,
    /// The media plane and the monitors of each call.
    pub media: Arc<crate::calls::media::MediaPlane>,
    /// Password logins: the bound on concurrent checks, the failure throttle, the log budget.
    pub login: Arc<crate::login::LoginGuard>,
    /// Connection limits: per-address counts, timeouts, the per-principal session cap.
    pub limits: Arc<crate::limits::Limits>,
    /// This process's copy of the logged-out login sessions.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// The web channel: OpenID providers and citizens' sessions.
    pub web: Arc<crate::web::WebChannel>,
}

impl AppState {
    /// Authenticates a bearer token or kiosk device token at the current time.
    pub fn authenticate(&self, token: &str) -> Result<Principal, (ErrorCode, String)> {
        if let Some(kiosk) = self.directory.kiosk_by_token(token) {
            return Ok(Principal {
                role: Role::Kiosk,
                id: kiosk.id.clone(),
            });
        }
        match self.tokens.check(token, unix_now()) {
            Ok(info) if info.kind != crate::tokens::TokenKind::Access => Err((
                ErrorCode::Unauthorized,
                "a refresh token only buys access tokens (POST /api/v1/refresh)".into(),
            )),
            Ok(info) if self.revocations.contains(&info.sid) => Err((
                ErrorCode::Unauthorized,
                "the token was revoked (logged out)".into(),
            )),
            Ok(info) if self.directory.contains(&info.principal) => Ok(info.principal),
            Ok(_) => Err((
                ErrorCode::Unauthorized,
                "the token's account no longer exists".into(),
            )),
            Err(TokenError::Expired) => Err((ErrorCode::Unauthorized, "token has expired".into())),
            Err(_) => Err((ErrorCode::Unauthorized, "invalid token".into())),
        }
    }
}

/// The session registry plus the means to close a superseded socket.
#[derive(Debug)]
pub struct SessionHub {
    inner: Mutex<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    registry: SessionRegistry,
    kicks: std::collections::HashMap<(String, u64), CancellationToken>,
}

impl SessionHub {
    /// A hub with these grace periods.
    pub fn new(graces: Graces) -> Self {
        Self::with_per_principal(graces, 0)
    }

    /// A hub with these grace periods and at most `cap` sessions per principal (0: no cap).
    pub fn with_per_principal(graces: Graces, cap: usize) -> Self {
        SessionHub {
            inner: Mutex::new(HubInner {
                registry: SessionRegistry::new(graces).with_per_principal(cap),
                kicks: Default::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        // A panic while holding the lock cannot leave the registry half-updated in a way that
        // matters more than refusing every later session, so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches a socket; returns the attachment and a token cancelled if it is superseded, or
    /// the refusal when the principal holds as many sessions as it may.
    pub fn attach(
        &self,
        now: Instant,
        principal: &Principal,
        auth: &Auth,
    ) -> Result<(Attached, CancellationToken), crate::sessions::TooManySessions> {
        let mut inner = self.lock();
        let attached = inner.registry.try_attach(
            now,
            principal,
            &auth.capabilities,
            auth.resume.as_deref(),
        )?;
        if let Some(old) = attached.superseded {
            if let Some(token) = inner.kicks.remove(&(attached.session_id.clone(), old)) {
                token.cancel();
            }
        }
        let token = CancellationToken::new();
        inner.kicks.insert(
            (attached.session_id.clone(), attached.attachment),
            token.clone(),
        );
        Ok((attached, token))
    }

    /// Detaches a socket that ended.
    pub fn detach(&self, now: Instant, session_id: &str, attachment: u64) {
        let mut inner = self.lock();
        inner.kicks.remove(&(session_id.to_owned(), attachment));
        inner.registry.detach(now, session_id, attachment);
    }

    /// Expires sessions past their grace period.
    pub fn expire(&self, now: Instant) -> Vec<crate::sessions::Expired> {
        self.lock().registry.expire(now)
    }

    /// The device capabilities a session declared in its latest `auth`.
    pub fn capabilities(&self, session_id: &str) -> Vec<protocol::Capability> {
        self.lock()
            .registry
            .capabilities(session_id)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Whether `principal` still has a session on this process (attached or within grace).
    pub fn has_principal(&self, principal: &Principal) -> bool {
        self.lock().registry.has_principal(principal)
    }

    /// Number of sessions, attached or within grace.
    pub fn len(&self) -> usize {
        self.lock().registry.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The server's [`SessionOpener`]: checks the token and attaches the session.
pub struct StateOpener<'a> {
    /// The shared state.
    pub state: &'a AppState,
    /// Filled with the attachment on success.
    pub attached: Option<(Attached, CancellationToken)>,
}

impl SessionOpener for StateOpener<'_> {
    fn open(&mut self, now: Instant, auth: &Auth) -> Result<Opened, (ErrorCode, String)> {
        let principal = self.state.authenticate(&auth.token)?;
        let (attached, kick) =
            self.state
                .sessions
                .attach(now, &principal, auth)
                .map_err(|refused| {
                    tracing::info!(
                        principal = %principal.id,
                        role = principal.role.as_str(),
                        cap = refused.cap,
                        "session refused: the principal holds as many sessions as it may"
                    );
                    (
                        ErrorCode::RateLimited,
                        format!(
                            "{} already holds {} sessions; close one or resume it",
                            principal.id, refused.cap
                        ),
                    )
                })?;
        let opened = Opened {
            session_id: attached.session_id.clone(),
            principal,
            resumed: attached.resumed,
        };
        self.attached = Some((attached, kick));
        Ok(opened)
    }
}
