//! Citizens' sessions on the web channel, kept server-side in the store so that any node serves
//! them, behind an `HttpOnly` cookie that holds only a random token.
//!
//! - A session (namespace [`NS_SESSION`], keyed by the SHA-256 of the token, so the store never
//!   holds a usable token) ends after `[web] session_idle_s` without a request, and
//!   `session_max_s` after sign-in whatever its use. Signing out deletes it.
//! - Each session may make `[web] requests_per_hour` certificate requests; the count lives in the
//!   record and is changed with compare-and-set, so two nodes cannot both spend the last one.
//! - A sign-in in progress (namespace [`NS_SIGNIN`], keyed by its `state`) is taken exactly once:
//!   a replayed `state` finds nothing.
//!
//! [`Session`] is the core: its rules take `now` and do no I/O. [`Sessions`] drives the store.

use std::time::Duration;

use queue::{AnyShared, Shared, Tenant, Time};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::oidc::{PendingSignIn, SignedIn};

/// The store namespace of citizens' sessions.
pub const NS_SESSION: &str = "web-sessions";
/// The store namespace of sign-ins in progress.
pub const NS_SIGNIN: &str = "web-signin";
/// The session cookie.
pub const COOKIE: &str = "sportello_web";
/// The cookie that ties a sign-in's callback to the browser that started it.
pub const SIGNIN_COOKIE: &str = "sportello_signin";
/// How long a sign-in may take at the provider.
pub const SIGNIN_TTL: Duration = Duration::from_secs(10 * 60);
/// A session's idle timer is pushed back at most this often (each push is a store write).
const TOUCH_EVERY_MS: u64 = 30_000;
/// The window of the request budget.
const WINDOW_MS: u64 = 3_600_000;

/// A signed-in citizen's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Who signed in.
    pub user: SignedIn,
    /// Sign-in time, ms since the epoch.
    pub created_ms: u64,
    /// The last time the idle timer was pushed back.
    pub touched_ms: u64,
    /// The start of the current request window.
    pub window_ms: u64,
    /// Requests made in the current window.
    pub requests: u32,
}

impl Session {
    /// A session starting `now`.
    pub fn new(user: SignedIn, now: Time) -> Session {
        Session {
            user,
            created_ms: now.as_millis(),
            touched_ms: now.as_millis(),
            window_ms: now.as_millis(),
            requests: 0,
        }
    }

    /// Whether the session has outlived `max` since sign-in.
    pub fn expired(&self, now: Time, max: Duration) -> bool {
        now.as_millis().saturating_sub(self.created_ms) >= max.as_millis() as u64
    }

    /// Whether the idle timer is due to be pushed back.
    pub fn touch_due(&self, now: Time) -> bool {
        now.as_millis().saturating_sub(self.touched_ms) >= TOUCH_EVERY_MS
    }

    /// Spends one request of the budget, or says in how many seconds one is free again.
    pub fn spend(&mut self, now: Time, per_hour: u32) -> Result<(), u64> {
        let now_ms = now.as_millis();
        if now_ms.saturating_sub(self.window_ms) >= WINDOW_MS {
            self.window_ms = now_ms;
            self.requests = 0;
        }
        if self.requests >= per_hour {
            let left_ms = (self.window_ms + WINDOW_MS).saturating_sub(now_ms);
            return Err(left_ms.div_ceil(1000).max(1));
        }
        self.requests += 1;
        Ok(())
    }

    /// The time left before the session ends by the absolute limit.
    fn left(&self, now: Time, max: Duration) -> Duration {
        Duration::from_millis(
            (self.created_ms + max.as_millis() as u64).saturating_sub(now.as_millis()),
        )
    }
}

/// Why a session could not be used.
#[derive(Debug)]
pub enum SessionError {
    /// No session, or it ended.
    None,
    /// Over the request budget: retry after this many seconds.
    Budget(u64),
    /// The store failed.
    Store(queue::Error),
}

impl From<queue::Error> for SessionError {
    fn from(e: queue::Error) -> Self {
        SessionError::Store(e)
    }
}

/// The sessions in the store.
#[derive(Clone)]
pub struct Sessions {
    shared: AnyShared,
    tenant: Tenant,
    idle: Duration,
    max: Duration,
}

fn key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token (256 bits, URL-safe).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// Sessions in this store, with these timers.
    pub fn new(shared: AnyShared, tenant: Tenant, idle: Duration, max: Duration) -> Sessions {
        Sessions {
            shared,
            tenant,
            idle,
            max,
        }
    }

    /// The idle timeout (the cookie's lifetime is the absolute one).
    pub fn max(&self) -> Duration {
        self.max
    }

    fn ttl(&self, s: &Session, now: Time) -> Duration {
        self.idle
            .min(s.left(now, self.max))
            .max(Duration::from_secs(1))
    }

    /// Starts a session for `user`; returns its token.
    pub async fn create(&self, user: SignedIn, now: Time) -> Result<String, queue::Error> {
        let token = new_token();
        let session = Session::new(user, now);
        let text = serde_json::to_string(&session).unwrap_or_default();
        self.shared
            .put(
                &self.tenant,
                NS_SESSION,
                &key(&token),
                &text,
                self.ttl(&session, now),
                now,
            )
            .await?;
        Ok(token)
    }

    /// The live session of `token`, its idle timer pushed back.
    pub async fn get(&self, token: &str, now: Time) -> Result<Session, SessionError> {
        let k = key(token);
        let Some(text) = self.shared.get(&self.tenant, NS_SESSION, &k, now).await? else {
            return Err(SessionError::None);
        };
        let Ok(mut session) = serde_json::from_str::<Session>(&text) else {
            return Err(SessionError::None);
        };
        if session.expired(now, self.max) {
            let _ = self.shared.delete(&self.tenant, NS_SESSION, &k, now).await;
            return Err(SessionError::None);
        }
        if session.touch_due(now) {
            session.touched_ms = now.as_millis();
            let new = serde_json::to_string(&session).unwrap_or_default();
            // A lost race only means another request pushed the timer back already.
            let _ = self
                .shared
                .swap(
                    &self.tenant,
                    NS_SESSION,
                    &k,
                    Some(&text),
                    &new,
                    self.ttl(&session, now),
                    now,
                )
                .await?;
        }
        Ok(session)
    }

    /// Spends one certificate request of the session's budget.
    pub async fn spend(&self, token: &str, per_hour: u32, now: Time) -> Result<(), SessionError> {
        let k = key(token);
        for _ in 0..8 {
            let Some(text) = self.shared.get(&self.tenant, NS_SESSION, &k, now).await? else {
                return Err(SessionError::None);
            };
            let mut session: Session =
                serde_json::from_str(&text).map_err(|_| SessionError::None)?;
            session.spend(now, per_hour).map_err(SessionError::Budget)?;
            let new = serde_json::to_string(&session).unwrap_or_default();
            if self
                .shared
                .swap(
                    &self.tenant,
                    NS_SESSION,
                    &k,
                    Some(&text),
                    &new,
                    self.ttl(&session, now),
                    now,
                )
                .await?
            {
                return Ok(());
            }
        }
        Err(SessionError::Store(queue::Error::Contention(
            "a web session changed too often to count a request".into(),
        )))
    }

    /// Ends the session of `token`.
    pub async fn end(&self, token: &str, now: Time) -> Result<bool, queue::Error> {
        self.shared
            .delete(&self.tenant, NS_SESSION, &key(token), now)
            .await
    }

    /// Keeps a sign-in in progress under its `state`.
    pub async fn put_signin(
        &self,
        state: &str,
        pending: &PendingSignIn,
        now: Time,
    ) -> Result<(), queue::Error> {
        let text = serde_json::to_string(pending).unwrap_or_default();
        self.shared
            .put(&self.tenant, NS_SIGNIN, &key(state), &text, SIGNIN_TTL, now)
            .await
    }

    /// Takes the sign-in kept under `state`, once: a second take (a replay) finds nothing.
    pub async fn take_signin(
        &self,
        state: &str,
        now: Time,
    ) -> Result<Option<PendingSignIn>, queue::Error> {
        let k = key(state);
        let Some(text) = self.shared.get(&self.tenant, NS_SIGNIN, &k, now).await? else {
            return Ok(None);
        };
        if !self.shared.delete(&self.tenant, NS_SIGNIN, &k, now).await? {
            return Ok(None);
        }
        Ok(serde_json::from_str(&text).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> SignedIn {
        SignedIn {
            provider: "spid".into(),
            fiscal_code: "RSSLCU85D12G337O".into(),
            given_name: None,
            family_name: None,
            acr: None,
        }
    }

    #[test]
    fn a_session_ends_at_its_absolute_limit() {
        let s = Session::new(user(), Time::from_millis(1_000));
        let max = Duration::from_secs(60);
        assert!(!s.expired(Time::from_millis(60_999), max));
        assert!(s.expired(Time::from_millis(61_000), max));
    }

    #[test]
    fn the_budget_refills_an_hour_after_the_window_opened() {
        let mut s = Session::new(user(), Time::from_millis(0));
        assert_eq!(s.spend(Time::from_millis(10), 2), Ok(()));
        assert_eq!(s.spend(Time::from_millis(20), 2), Ok(()));
        assert_eq!(s.spend(Time::from_millis(1_000), 2), Err(3_599));
        assert_eq!(s.spend(Time::from_millis(3_599_999), 2), Err(1));
        assert_eq!(s.spend(Time::from_millis(3_600_000), 2), Ok(()));
        assert_eq!(s.requests, 1);
    }

    #[test]
    fn the_idle_timer_is_pushed_back_at_most_every_30_s() {
        let s = Session::new(user(), Time::from_millis(0));
        assert!(!s.touch_due(Time::from_millis(29_999)));
        assert!(s.touch_due(Time::from_millis(30_000)));
    }

    #[tokio::test]
    async fn a_signin_is_taken_once_and_a_session_ends_on_sign_out() {
        let shared = AnyShared::Memory(queue::MemoryShared::new());
        let tenant = Tenant::new("t").unwrap();
        let sessions = Sessions::new(
            shared,
            tenant,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let now = Time::from_millis(1_000_000);
        let pending = PendingSignIn {
            provider: "spid".into(),
            pkce_verifier: "v".into(),
            nonce: "n".into(),
            redirect_uri: "http://x/servizi/auth/callback".into(),
        };
        sessions.put_signin("state", &pending, now).await.unwrap();
        assert_eq!(
            sessions.take_signin("state", now).await.unwrap(),
            Some(pending)
        );
        assert_eq!(sessions.take_signin("state", now).await.unwrap(), None);

        let token = sessions.create(user(), now).await.unwrap();
        assert_eq!(sessions.get(&token, now).await.unwrap().user, user());
        // Idle for longer than the idle timeout: gone.
        let later = Time::from_millis(now.as_millis() + 61_000);
        assert!(matches!(
            sessions.get(&token, later).await,
            Err(SessionError::None)
        ));
        let token = sessions.create(user(), now).await.unwrap();
        sessions.spend(&token, 1, now).await.unwrap();
        assert!(matches!(
            sessions.spend(&token, 1, now).await,
            Err(SessionError::Budget(3600))
        ));
        assert!(sessions.end(&token, now).await.unwrap());
        assert!(matches!(
            sessions.get(&token, now).await,
            Err(SessionError::None)
        ));
    }
}
