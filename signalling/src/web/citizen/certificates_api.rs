//! The citizens' certificates on the web (being built).

use axum::Router;

use crate::state::AppState;

/// The certificate routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
