//! Logging out and refreshing: `POST /api/v1/logout` revokes the caller's login session (every
//! access and refresh token of that login), `POST /api/v1/refresh` trades a refresh token for a new
//! access token.
//!
//! The revoked session ids live in the store (`queue::Store::revoke`, a Redis sorted set with
//! `--redis`), so a logout on one node holds on all. Each process keeps a copy in memory
//! ([`Revocations`]), checked by [`crate::state::AppState::authenticate`] on every HTTP request and
//! WebSocket `auth`, and refreshed from the store every [`REFRESH_EVERY`] by [`run`]; the node
//! that takes the logout updates its copy at once. An entry lasts until the session could have
//! ended anyway (`auth.token_ttl_s` after the logout), then the store drops it.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{ErrorCode, LoginResponse, RefreshRequest};
use queue::Time;

use crate::error::{ApiJson, AppError};
use crate::state::AppState;
use crate::tokens::{rfc3339, unix_now, TokenError, TokenKind};

/// How often a process reads the revoked sessions from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// This process's copy of the revoked login sessions.
#[derive(Debug, Default)]
pub struct Revocations {
    sids: RwLock<HashSet<String>>,
}

impl Revocations {
    /// Whether session `sid` is revoked.
    pub fn contains(&self, sid: &str) -> bool {
        !sid.is_empty()
            && self
                .sids
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(sid)
    }

    /// Adds `sid` (after the store took it).
    pub fn insert(&self, sid: &str) {
        self.sids
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid.to_owned());
    }

    /// Replaces the copy with the store's list.
    pub fn replace(&self, sids: Vec<String>) {
        *self.sids.write().unwrap_or_else(|e| e.into_inner()) = sids.into_iter().collect();
    }
}

/// Keeps this process's copy in step with the store until shutdown.
pub async fn run(state: AppState) {
    let mut phases = state.shutdown.subscribe();
    let mut failing = false;
    loop {
        match state
            .routing
            .queue
            .revoked(&state.routing.tenant, Time::now())
            .await
        {
            Ok(sids) => {
                if failing {
                    tracing::info!("revoked sessions readable again");
                }
                failing = false;
                state.revocations.replace(sids);
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the revoked sessions; keeping the last list");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH_EVERY) => {}
            _ = crate::shutdown::left_running(&mut phases) => return,
        }
    }
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// `POST /api/v1/logout` with the access token as bearer: revokes its login session on every node.
/// Answers `204`; a token that is already revoked or expired gets `401`.
pub async fn logout(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let token =
        bearer(&headers).ok_or_else(|| AppError::unauthorized("a bearer token is needed"))?;
    let principal = state
        .authenticate(token)
        .map_err(|(code, message)| AppError::new(code, message))?;
    let info = state
        .tokens
        .check(token, unix_now())
        .map_err(|_| AppError::unauthorized("a login token is needed (kiosks have no login)"))?;
    if info.sid.is_empty() {
        return Err(AppError::new(
            ErrorCode::Invalid,
            "this token predates logout; it expires on its own",
        ));
    }
    let until = Time::from_secs(unix_now() + state.tokens.ttl_s());
    state
        .routing
        .queue
        .revoke(&state.routing.tenant, &info.sid, until)
        .await
        .map_err(|e| {
            AppError::new(
                ErrorCode::Unavailable,
                format!("cannot record the logout: {e}"),
            )
        })?;
    state.revocations.insert(&info.sid);
    tracing::info!(principal = %principal.id, role = principal.role.as_str(), "logout");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/refresh {"refresh_token"}`: a new access token of the same login session, while
/// the session is neither expired nor logged out and the account exists.
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<LoginResponse>, AppError> {
    let info = match state.tokens.check(&body.refresh_token, unix_now()) {
        Ok(info) => info,
        Err(TokenError::Expired) => {
            return Err(AppError::unauthorized(
                "the login session has ended; log in again",
            ))
        }
        Err(_) => return Err(AppError::unauthorized("invalid refresh token")),
    };
    if info.kind != TokenKind::Refresh {
        return Err(AppError::unauthorized("this is not a refresh token"));
    }
    if state.revocations.contains(&info.sid) {
        return Err(AppError::unauthorized(
            "the login session was ended (logout); log in again",
        ));
    }
    if !state.directory.contains(&info.principal) {
        return Err(AppError::unauthorized("the account no longer exists"));
    }
    let (token, exp) =
        state
            .tokens
            .refresh_access(&info.principal, &info.sid, info.exp, unix_now());
    Ok(Json(LoginResponse {
        token,
        role: info.principal.role,
        expires_at: rfc3339(exp),
        refresh_token: Some(body.refresh_token),
        refresh_expires_at: Some(rfc3339(info.exp)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_follows_inserts_and_the_store() {
        let r = Revocations::default();
        assert!(!r.contains("a"));
        r.insert("a");
        assert!(r.contains("a"));
        assert!(
            !r.contains(""),
            "tokens without a session are never revoked by id"
        );
        r.replace(vec!["b".into()]);
        assert!(!r.contains("a") && r.contains("b"));
    }
}
