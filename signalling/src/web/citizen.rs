//! Web channel: citizen routes (being built).

use axum::Router;

use crate::state::AppState;

/// This module's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
