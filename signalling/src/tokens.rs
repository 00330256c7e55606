//! Login tokens: HS256-signed JWTs carrying the principal, its role, an expiry, the login session
//! they belong to (`sid`) and their kind. A login gives a short-lived *access* token (HTTP and the
//! WebSocket) and a *refresh* token that lasts a shift and only buys new access tokens
//! (`POST /api/v1/refresh`). Logging out revokes the session id, so every token of that login
//! stops working on every node ([`crate::revocation`]). The signing secret is shared by every
//! process of a deployment (a file), so a token from one node works on all.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use protocol::Role;
use serde::{Deserialize, Serialize};

use crate::accounts::Principal;

/// The issuer claim of every token.
const ISSUER: &str = "sportello";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is not a well-formed, correctly signed token of this deployment.
    #[error("token is malformed or its signature is wrong")]
    Invalid,
    /// The token was valid but has expired.
    #[error("token has expired")]
    Expired,
    /// The token was issued for another tenant.
    #[error("token belongs to another tenant")]
    WrongTenant,
    /// A kiosk token cannot be a login token.
    #[error("kiosks authenticate with device tokens, not login tokens")]
    KioskRole,
    /// A refresh token where an access token is needed, or the other way round.
    #[error("wrong kind of token")]
    WrongKind,
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// HTTP and the WebSocket `auth` frame.
    #[default]
    Access,
    /// Only `POST /api/v1/refresh`.
    Refresh,
}

/// A checked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Whose it is.
    pub principal: Principal,
    /// When it expires (Unix seconds).
    pub exp: u64,
    /// The login session it belongs to (empty for tokens issued before sessions existed).
    pub sid: String,
    /// Its kind.
    pub kind: TokenKind,
}

/// The tokens of one login.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The access token and its expiry.
    pub access: (String, u64),
    /// The refresh token and its expiry (the end of the login session).
    pub refresh: (String, u64),
    /// The session id both carry.
    pub sid: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    tenant: String,
    iss: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    sid: String,
    #[serde(default)]
    kind: TokenKind,
}

/// Issues and checks login tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_s: u64,
    access_ttl_s: u64,
    tenant: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("ttl_s", &self.ttl_s)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The default name of the secret file inside the data directory.
pub const TOKEN_SECRET_FILE: &str = "token-secret";

impl TokenIssuer {
    /// An issuer with this secret, token lifetime and tenant.
    pub fn new(secret: &[u8], ttl_s: u64, tenant: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the caller's clock in `verify`, so that tests control time.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        TokenIssuer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_s,
            access_ttl_s: ttl_s,
            tenant: tenant.to_owned(),
        }
    }

    /// Access tokens of a session last `access_ttl_s` (at most the session's `ttl_s`).
    pub fn with_access_ttl(mut self, access_ttl_s: u64) -> Self {
        self.access_ttl_s = access_ttl_s.min(self.ttl_s);
        self
    }

    /// The access token lifetime in seconds.
    pub fn access_ttl_s(&self) -> u64 {
        self.access_ttl_s
    }

    /// Loads the secret from `file`, creating it with 32 random bytes when it does not exist.
    pub fn load_or_create(file: &Path, ttl_s: u64, tenant: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let secret = crate::datadir::read_or_create(file, || {
            crate::accounts::generate_secret().into_bytes()
        })
        .with_context(|| format!("cannot read or create token secret {}", file.display()))?;
        let trimmed = secret.trim_ascii();
        anyhow::ensure!(
            trimmed.len() >= 32,
            "token secret {} is shorter than 32 bytes",
            file.display()
        );
        Ok(TokenIssuer::new(trimmed, ttl_s, tenant))
    }

    /// The login session lifetime in seconds (the refresh token's).
    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    fn sign(
        &self,
        principal: &Principal,
        now_unix: u64,
        exp: u64,
        sid: &str,
        kind: TokenKind,
    ) -> String {
        let claims = Claims {
            sub: principal.id.clone(),
            role: principal.role,
            tenant: self.tenant.clone(),
            iss: ISSUER.into(),
            iat: now_unix,
            exp,
            sid: sid.to_owned(),
            kind,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Starts a login session for `principal` at `now_unix`: a new session id, an access token
    /// and a refresh token.
    pub fn issue_session(&self, principal: &Principal, now_unix: u64) -> IssuedSession {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let session_end = now_unix + self.ttl_s;
        let access_exp = now_unix + self.access_ttl_s;
        IssuedSession {
            access: (
                self.sign(principal, now_unix, access_exp, &sid, TokenKind::Access),
                access_exp,
            ),
            refresh: (
                self.sign(principal, now_unix, session_end, &sid, TokenKind::Refresh),
                session_end,
            ),
            sid,
        }
    }

    /// A new access token of session `sid` (from a refresh token expiring at `session_end`): it
    /// never outlives the session.
    pub fn refresh_access(
        &self,
        principal: &Principal,
        sid: &str,
        session_end: u64,
        now_unix: u64,
    ) -> (String, u64) {
        let exp = (now_unix + self.access_ttl_s).min(session_end);
        (
            self.sign(principal, now_unix, exp, sid, TokenKind::Access),
            exp,
        )
    }

    /// Issues an access token of a new session for `principal` at wall-clock time `now_unix`;
    /// returns it and its expiry.
    pub fn issue(&self, principal: &Principal, now_unix: u64) -> (String, u64) {
        self.issue_session(principal, now_unix).access
    }

    /// Checks a token of any kind at wall-clock time `now_unix`.
    pub fn check(&self, token: &str, now_unix: u64) -> Result<TokenInfo, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        if claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        if claims.tenant != self.tenant {
            return Err(TokenError::WrongTenant);
        }
        if claims.role == Role::Kiosk {
            return Err(TokenError::KioskRole);
        }
        Ok(TokenInfo {
            principal: Principal {
                role: claims.role,
                id: claims.sub,
            },
            exp: claims.exp,
            sid: claims.sid,
            kind: claims.kind,
        })
    }

    /// Checks an access token at wall-clock time `now_unix` and returns its principal and expiry.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<(Principal, u64), TokenError> {
        let info = self.check(token, now_unix)?;
        if info.kind != TokenKind::Access {
            return Err(TokenError::WrongKind);
        }
        Ok((info.principal, info.exp))
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Principal {
        Principal {
            role: Role::Operator,
            id: "maria.rossi".into(),
        }
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let issuer = TokenIssuer::new(&[7u8; 32], 600, "default");
        let (token, exp) = issuer.issue(&op(), 1_000);
        assert_eq!(exp, 1_600);
        assert_eq!(issuer.verify(&token, 1_599), Ok((op(), 1_600)));
        assert_eq!(issuer.verify(&token, 1_600), Err(TokenError::Expired));
    }

    #[test]
    fn other_secrets_tenants_and_garbage_are_refused() {
        let issuer = TokenIssuer::new(&[7u8; 32], 600, "default");
        let (token, _) = issuer.issue(&op(), 1_000);
        let other = TokenIssuer::new(&[8u8; 32], 600, "default");
        assert_eq!(other.verify(&token, 1_001), Err(TokenError::Invalid));
        let other_tenant = TokenIssuer::new(&[7u8; 32], 600, "altro");
        assert_eq!(
            other_tenant.verify(&token, 1_001),
            Err(TokenError::WrongTenant)
        );
        assert_eq!(issuer.verify("a.b.c", 1_001), Err(TokenError::Invalid));
        assert_eq!(issuer.verify("", 1_001), Err(TokenError::Invalid));
    }

    #[test]
    fn a_session_has_short_access_tokens_and_a_refresh_token_of_its_own_kind() {
        let issuer = TokenIssuer::new(&[7u8; 32], 36_000, "default").with_access_ttl(900);
        let s = issuer.issue_session(&op(), 1_000);
        assert_eq!(s.access.1, 1_900);
        assert_eq!(s.refresh.1, 37_000);
        assert_eq!(issuer.verify(&s.access.0, 1_899), Ok((op(), 1_900)));
        assert_eq!(issuer.verify(&s.access.0, 1_900), Err(TokenError::Expired));
        // A refresh token is no access token, and carries the same session.
        assert_eq!(
            issuer.verify(&s.refresh.0, 1_001),
            Err(TokenError::WrongKind)
        );
        let info = issuer.check(&s.refresh.0, 1_001).unwrap();
        assert_eq!(
            (info.kind, info.sid.as_str()),
            (TokenKind::Refresh, s.sid.as_str())
        );
        let (again, exp) = issuer.refresh_access(&op(), &info.sid, info.exp, 36_500);
        assert_eq!(exp, 37_000, "never past the session's end");
        let info = issuer.check(&again, 36_501).unwrap();
        assert_eq!((info.kind, info.sid), (TokenKind::Access, s.sid.clone()));
        assert_ne!(issuer.issue_session(&op(), 1_000).sid, s.sid);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
