//! The web channel (`../shared/design/web-channel.md`, `docs/web.md`): citizens signed in through
//! OpenID Connect (SPID / CIE) and intermediaries with API keys get the same stamped certificates
//! as the kiosk.
//!
//! - [`issue`]: issuing on the web (usage, marca, audit, stored documents), shared by both;
//! - [`oidc`] and [`session`]: the relying party and the citizens' server-side sessions;
//! - [`citizen`]: `/servizi/login`, `/servizi/auth/callback`, `/servizi/logout`, `/api/v1/web/*`;
//! - [`intermediary`]: API keys, quotas and `/api/v1/intermediary/certificates`.

use axum::Router;

use crate::state::AppState;

pub mod citizen;
pub mod intermediary;
pub mod issue;
pub mod oidc;
pub mod session;

/// The web channel's routes, merged into the public router.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(citizen::routes())
        .merge(intermediary::routes())
}
