//! Password logins (`POST /api/v1/login`) and what keeps them from hurting the server:
//!
//! - [`HashGate`] bounds the argon2 checks running at once (`auth.login_concurrency`, the number
//!   of cores by default), each in its own reused 19 MiB working memory, with a short wait queue
//!   (`auth.login_queue`) and a bound per client address (`auth.login_per_address`). Past the
//!   queue a login is answered `503 unavailable` at once, past the address's bound `429`. Logins
//!   from addresses without recent failures wait in a first lane that is served before the others,
//!   so a burst of bad logins delays a real operator by about one check.
//! - [`crate::throttle::LoginThrottle`] counts failures per (user name, address) and per address.
//! - Failed and refused logins and lockouts are logged with user name and address, at most
//!   `auth.login_log_lines_per_minute` lines a minute, then a count of the lines left out.
//!
//! Unknown user names cost a full argon2 check against a dummy hash, and take the same slots.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{ErrorCode, LoginRequest, LoginResponse};
use tokio::sync::oneshot;

use crate::config::AuthConfig;
use crate::error::AppError;
use crate::state::AppState;
use crate::throttle::{client_key, Limits, LogBudget, LogLine, LoginThrottle, Verdict};
use crate::tokens::{rfc3339, unix_now};

/// Longest user name accepted.
const MAX_USERNAME: usize = 128;
/// Longest password accepted.
const MAX_PASSWORD: usize = 1024;

/// Why a login could not get a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The address already has `login_per_address` logins checked or waiting.
    Address,
    /// Every check slot is taken and the wait queue is full.
    Full,
}

/// The bound on concurrent password checks: `limit` slots, each with its argon2 working memory,
/// a queue of `queue_limit` waiters in two lanes, and at most `per_address` logins per address.
#[derive(Debug)]
pub struct HashGate {
    inner: Mutex<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    limit: usize,
    queue_limit: usize,
    per_address: usize,
    running: usize,
    memories: Vec<Vec<argon2::Block>>,
    first: VecDeque<oneshot::Sender<Slot>>,
    later: VecDeque<oneshot::Sender<Slot>>,
    by_address: HashMap<IpAddr, usize>,
}

/// The right to run one password check, with its working memory. Dropping it hands it to the
/// next waiter (first lane first), or frees it.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<HashGate>,
    memory: Option<Vec<argon2::Block>>,
}

impl Slot {
    /// The argon2 working memory of this slot.
    pub fn memory(&mut self) -> &mut Vec<argon2::Block> {
        self.memory.get_or_insert_with(Vec::new)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(memory) = self.memory.take() {
            self.gate.release(memory);
        }
    }
}

/// One login of an address counted against `per_address`; released on drop.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<HashGate>,
    address: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        if let Some(n) = inner.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                inner.by_address.remove(&self.address);
            }
        }
    }
}

impl HashGate {
    /// A gate of `limit` concurrent checks (at least 1), `queue_limit` waiters and `per_address`
    /// logins per address (at least 1).
    pub fn new(limit: usize, queue_limit: usize, per_address: usize) -> Arc<Self> {
        Arc::new(HashGate {
            inner: Mutex::new(GateInner {
                limit: limit.max(1),
                queue_limit,
                per_address: per_address.max(1),
                running: 0,
                memories: Vec::new(),
                first: VecDeque::new(),
                later: VecDeque::new(),
                by_address: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (checks running, logins waiting).
    pub fn load(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.running, inner.first.len() + inner.later.len())
    }

    /// Waits for a check slot for a login from `address` (a [`client_key`]). `first` puts it in
    /// the lane served first. Never waits when the address or the queue is over its bound.
    pub async fn acquire(
        self: &Arc<Self>,
        address: IpAddr,
        first: bool,
    ) -> Result<(Ticket, Slot), Busy> {
        let (ticket, waiting) = {
            let mut inner = self.lock();
            let from_address = inner.by_address.get(&address).copied().unwrap_or(0);
            if from_address >= inner.per_address {
                return Err(Busy::Address);
            }
            if inner.running < inner.limit {
                inner.running += 1;
                let memory = inner.memories.pop().unwrap_or_default();
                *inner.by_address.entry(address).or_default() += 1;
                let ticket = Ticket {
                    gate: self.clone(),
                    address,
                };
                let slot = Slot {
                    gate: self.clone(),
                    memory: Some(memory),
                };
                return Ok((ticket, slot));
            }
            if inner.first.len() + inner.later.len() >= inner.queue_limit {
                // Waiters whose client went away still hold a place: drop them first.
                inner.first.retain(|tx| !tx.is_closed());
                inner.later.retain(|tx| !tx.is_closed());
            }
            if inner.first.len() + inner.later.len() >= inner.queue_limit {
                // A login of the first lane takes the place of the newest one of the other lane,
                // which is answered as if the queue had been full.
                if !first || inner.later.pop_back().is_none() {
                    return Err(Busy::Full);
                }
            }
            let (tx, rx) = oneshot::channel();
            if first {
                inner.first.push_back(tx);
            } else {
                inner.later.push_back(tx);
            }
            *inner.by_address.entry(address).or_default() += 1;
            let ticket = Ticket {
                gate: self.clone(),
                address,
            };
            (ticket, rx)
        };
        match waiting.await {
            Ok(slot) => Ok((ticket, slot)),
            Err(_) => Err(Busy::Full),
        }
    }

    fn release(self: &Arc<Self>, memory: Vec<argon2::Block>) {
        let mut inner = self.lock();
        let mut memory = memory;
        loop {
            let Some(next) = inner.first.pop_front().or_else(|| inner.later.pop_front()) else {
                inner.running -= 1;
                inner.memories.push(memory);
                return;
            };
            let slot = Slot {
                gate: self.clone(),
                memory: Some(memory),
            };
            match next.send(slot) {
                Ok(()) => return,
                // That waiter went away: take the memory back (the returned slot then drops
                // without releasing) and try the next one.
                Err(mut slot) => memory = slot.memory.take().unwrap_or_default(),
            }
        }
    }
}

/// Everything logins share: the check gate, the failure throttle and the log budget.
#[derive(Debug)]
pub struct LoginGuard {
    /// The bound on concurrent password checks.
    pub gate: Arc<HashGate>,
    throttle: Mutex<LoginThrottle>,
    log: Mutex<LogBudget>,
}

impl LoginGuard {
    /// The guard for these settings.
    pub fn new(auth: &AuthConfig) -> Self {
        let concurrency = match auth.login_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        LoginGuard {
            gate: HashGate::new(concurrency, auth.login_queue, auth.login_per_address),
            throttle: Mutex::new(LoginThrottle::new(Limits {
                window: Duration::from_secs(auth.login_failure_window_s),
                user_address_failures: auth.login_failures_per_user_address,
                address_failures: auth.login_failures_per_address,
                ..Limits::default()
            })),
            log: Mutex::new(LogBudget::new(
                Duration::from_secs(60),
                auth.login_log_lines_per_minute,
            )),
        }
    }

    fn throttle(&self) -> MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the budget lets one more line out; writes the summary of suppressed lines first.
    fn may_log(&self) -> bool {
        let line = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .line(Instant::now());
        match line {
            LogLine::Write { suppressed } => {
                if suppressed > 0 {
                    tracing::warn!(
                        suppressed,
                        "login log lines left out (auth.login_log_lines_per_minute)"
                    );
                }
                true
            }
            LogLine::Suppress => false,
        }
    }
}

/// The client's IP address: the one [`crate::client_addr::resolve_layer`] found (the TCP peer,
/// or the forwarded client of a trusted proxy), else the TCP peer, else `0.0.0.0` when the router
/// is driven without a connection, as in tests that call it directly.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client's address of a request's parts, when it has a connection.
    pub fn of(parts: &axum::http::Extensions) -> Option<IpAddr> {
        parts
            .get::<crate::client_addr::ClientAddr>()
            .map(|c| c.0)
            .or_else(|| parts.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            ClientIp::of(&parts.extensions).unwrap_or(IpAddr::from([0, 0, 0, 0])),
        ))
    }
}

/// A login refusal: the API error plus, for limits, a `Retry-After` in seconds.
#[derive(Debug)]
pub struct LoginError {
    error: AppError,
    retry_after: Option<u64>,
}

impl From<AppError> for LoginError {
    fn from(error: AppError) -> Self {
        LoginError {
            error,
            retry_after: None,
        }
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(secs.max(1)),
            );
        }
        response
    }
}

fn refused(code: ErrorCode, message: &str, retry_after: Duration) -> LoginError {
    LoginError {
        error: AppError::new(code, message),
        retry_after: Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)),
    }
}

/// `POST /api/v1/login` from `client`.
pub async fn login(
    state: &AppState,
    client: IpAddr,
    body: LoginRequest,
) -> Result<Json<LoginResponse>, LoginError> {
    if body.username.len() > MAX_USERNAME || body.password.len() > MAX_PASSWORD {
        return Err(AppError::invalid("username or password too long").into());
    }
    let guard = &state.login;
    let user = body.username.to_ascii_lowercase();
    let address = client_key(client);
    let outcome = |label: &str| state.metrics.logins.with_label_values(&[label]).inc();

    let verdict = guard.throttle().check(Instant::now(), &user, address);
    let first = match verdict {
        Verdict::Allowed { clean } => clean,
        Verdict::UserLocked { retry_after } => {
            outcome("throttled");
            if guard.may_log() {
                tracing::warn!(user = ?body.username, address = %client, "login refused: user name locked for this address");
            }
            return Err(refused(
                ErrorCode::RateLimited,
                "too many failed logins for this user from this address; wait a few minutes",
                retry_after,
            ));
        }
        Verdict::AddressLocked { retry_after } => {
            outcome("throttled");
            if guard.may_log() {
                tracing::warn!(user = ?body.username, address = %client, "login refused: address locked");
            }
            return Err(refused(
                ErrorCode::RateLimited,
                "too many failed logins from this address; wait a few minutes",
                retry_after,
            ));
        }
    };

    let (ticket, mut slot) = match guard.gate.acquire(address, first).await {
        Ok(acquired) => acquired,
        Err(busy) => {
            outcome("busy");
            if guard.may_log() {
                tracing::warn!(user = ?body.username, address = %client, ?busy, "login refused: too many logins at once");
            }
            return Err(match busy {
                Busy::Address => refused(
                    ErrorCode::RateLimited,
                    "too many logins at once from this address; retry in a moment",
                    Duration::from_secs(1),
                ),
                Busy::Full => refused(
                    ErrorCode::Unavailable,
                    "the server is busy checking other logins; retry in a moment",
                    Duration::from_secs(1),
                ),
            });
        }
    };
    let directory = state.directory.clone();
    let (username, password) = (body.username, body.password);
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers. The slot and the
    // ticket go with the check, so they are held until it ends even if the client goes away.
    let (principal, username) = tokio::task::spawn_blocking(move || {
        let principal = directory.verify_password_with(&username, &password, slot.memory());
        drop((slot, ticket));
        (principal, username)
    })
    .await
    .map_err(AppError::internal)?;

    let Some(principal) = principal else {
        let failure = guard.throttle().failed(Instant::now(), &user, address);
        outcome("failed");
        if guard.may_log() {
            tracing::warn!(
                user = ?username,
                address = %client,
                failures_user_address = failure.user_address_count,
                failures_address = failure.address_count,
                "login failed"
            );
        }
        if failure.user_locked && guard.may_log() {
            tracing::warn!(user = ?username, address = %client, "login locked: user name locked for this address");
        }
        if failure.address_locked && guard.may_log() {
            tracing::warn!(user = ?username, address = %client, "login locked: address locked for every user name");
        }
        return Err(AppError::unauthorized("wrong username or password").into());
    };
    guard.throttle().succeeded(&user, address);
    outcome("ok");
    let session = state.tokens.issue_session(&principal, unix_now());
    let (token, exp) = session.access;
    tracing::info!(principal = %principal.id, role = principal.role.as_str(), address = %client, "login");
    Ok(Json(LoginResponse {
        token,
        role: principal.role,
        expires_at: rfc3339(exp),
        refresh_token: Some(session.refresh.0),
        refresh_expires_at: Some(rfc3339(session.refresh.1)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test]
    async fn the_gate_bounds_checks_queue_and_addresses() {
        let gate = HashGate::new(2, 2, 1);
        let (t1, s1) = gate.acquire(ip(1), true).await.unwrap();
        let (_t2, _s2) = gate.acquire(ip(2), true).await.unwrap();
        assert_eq!(gate.load(), (2, 0));
        // A third address waits; a second login of a busy address is refused at once.
        let w1 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(ip(3), false).await.map(|_| ()) }
        });
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.acquire(ip(1), false).await.err(), Some(Busy::Address));
        // Another later-lane login fills the queue; one more is refused at once.
        let w2 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(ip(4), false).await.map(|_| ()) }
        });
        while gate.load().1 < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.acquire(ip(5), false).await.err(), Some(Busy::Full));
        // A first-lane login takes the place of the newest later-lane one ...
        let w3 = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(ip(6), true).await }
        });
        assert_eq!(w2.await.unwrap(), Err(Busy::Full));
        while gate.load().1 < 2 {
            tokio::task::yield_now().await;
        }
        // ... and is served first when a slot frees.
        drop((t1, s1));
        let held = w3.await.unwrap().unwrap();
        assert!(!w1.is_finished());
        assert_eq!(gate.load(), (2, 1));
        drop(held);
        w1.await.unwrap().unwrap();
        assert_eq!(gate.load(), (1, 0));
    }

    #[tokio::test]
    async fn slots_keep_their_memory_and_survive_gone_waiters() {
        let gate = HashGate::new(1, 4, 4);
        let (t, mut s) = gate.acquire(ip(1), true).await.unwrap();
        s.memory().resize(3, argon2::Block::default());
        // A waiter whose client goes away does not take the slot with it.
        let gone = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(ip(2), true).await.map(|_| ()) }
        });
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop((t, s));
        assert_eq!(gate.load(), (0, 0));
        let (_t, mut s) = gate.acquire(ip(3), true).await.unwrap();
        assert_eq!(s.memory().len(), 3);
        assert_eq!(gate.load(), (1, 0));
    }
}
