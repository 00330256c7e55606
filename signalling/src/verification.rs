//! Stamp verification over HTTP: the trust list at `/.well-known/sportello/trust-list.json` and
//! `POST /api/v1/verify`. Both are public: anyone holding a printed certificate may check it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::error::{ApiJson, AppError};
use crate::state::AppState;

/// `POST /api/v1/verify` body.
#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    /// The barcode text (`IT1:…`).
    pub stamp: String,
}

/// The longest stamp text accepted; a QR code holds less than this.
const MAX_STAMP: usize = 8 * 1024;

/// `GET /.well-known/sportello/trust-list.json`.
pub async fn trust_list(State(state): State<AppState>) -> Response {
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.issuer.trust_list()),
    )
        .into_response()
}

/// `POST /api/v1/verify`: `200 {"valid", "reason"?, "document"}`. An invalid stamp is a normal
/// answer (`valid: false` with the reason), not an error; only a malformed body is `invalid`.
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Json<serde_json::Value>, AppError> {
    if body.stamp.len() > MAX_STAMP {
        return Err(AppError::invalid(format!(
            "stamp text longer than {MAX_STAMP} characters"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let answer = match state.issuer.verify_text(&body.stamp, now) {
        Ok(verified) => json!({
            "valid": !verified.development,
            "reason": verified.development.then_some(
                "firmato con la chiave di sviluppo: non valido / signed with the development key: not valid"
            ),
            "document": verified.stamp.claims,
            "signer": verified.signer_subject,
            "issuer_name": verified.issuer_name,
            "development": verified.development,
        }),
        Err(error) => {
            // A stamp that failed verification proves nothing, so `document` stays empty. What it
            // claims (when it decodes) goes under its own name, for diagnostics only: a page must
            // never show it as the certificate's content.
            let unverified = certificates::stamp::decode(&body.stamp)
                .map(|d| json!(d.claims))
                .unwrap_or(serde_json::Value::Null);
            json!({
                "valid": false,
                "reason": error.to_string(),
                "document": serde_json::Value::Null,
                "unverified_claims": unverified,
            })
        }
    };
    Ok(Json(answer))
}
