//! The web channel (`../shared/design/web-channel.md`, `docs/web.md`): citizens signed in through
//! OpenID Connect (SPID / CIE) and intermediaries with API keys get the same stamped certificates
//! as the kiosk.
//!
//! - [`issue`]: issuing on the web (usage, marca, audit, stored documents), shared by both;
//! - [`oidc`] and [`session`]: the relying party and the citizens' server-side sessions;
//! - [`citizen`]: `/servizi/login`, `/servizi/auth/callback`, `/servizi/logout`, `/api/v1/web/*`;
//! - [`intermediary`]: API keys, quotas and `/api/v1/intermediary/certificates`.

use std::time::Duration;

use axum::Router;

use crate::config::WebSettings;
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

/// The citizens' side of the web channel: the relying party, the sessions, the settings.
pub struct WebChannel {
    /// The OpenID providers.
    pub rp: oidc::RelyingParty,
    /// The sessions, in the store.
    pub sessions: session::Sessions,
    /// `[web]`.
    pub settings: WebSettings,
}

impl std::fmt::Debug for WebChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebChannel")
            .field("providers", &self.settings.oidc.len())
            .finish_non_exhaustive()
    }
}

impl WebChannel {
    /// The web channel of `[web]`, its sessions in this store.
    pub fn new(
        settings: &WebSettings,
        shared: queue::AnyShared,
        tenant: queue::Tenant,
    ) -> anyhow::Result<WebChannel> {
        Ok(WebChannel {
            rp: oidc::RelyingParty::new(&settings.oidc)?,
            sessions: session::Sessions::new(
                shared,
                tenant,
                Duration::from_secs(settings.session_idle_s),
                Duration::from_secs(settings.session_max_s),
            ),
            settings: settings.clone(),
        })
    }
}
