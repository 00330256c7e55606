//! The citizens' certificates on the web:
//!
//! - `POST /api/v1/web/certificates` (same origin, signed in, within the session's hourly budget):
//!   for the citizen or a member of their family today, else `403 forbidden` (audited);
//! - `GET /api/v1/web/certificates`: the citizen's certificates still valid;
//! - `GET /api/v1/web/documents/{id}.pdf`: a PDF, to the citizen who asked for it only.
//!
//! Issuing itself (usage, marca once across channels, audit, storage) is `web::issue`'s.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use certificates::FiscalCode;
use protocol::ErrorCode;
use queue::Time;
use serde::Deserialize;
use serde_json::json;

use super::{family_of, same_origin, signed_in, store_unavailable};
use crate::calls::Refusal;
use crate::error::{ApiJson, AppError};
use crate::state::AppState;
use crate::web::issue::{self, WebActor, WebRequest, WebUsage};
use crate::web::session::{Session, SessionError};

/// The certificate routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/web/certificates", get(list).post(request))
        .route("/api/v1/web/documents/{file}", get(document))
}

/// `POST /api/v1/web/certificates`'s body (`web-channel.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    /// The kind code.
    pub kind: String,
    /// The subject: the citizen when absent, else a member of their family.
    #[serde(default)]
    pub fiscal_code: Option<String>,
    /// The reason, where the kind needs one.
    #[serde(default)]
    pub reason: Option<String>,
    /// Bollo with a marca, or an exemption.
    pub usage: WebUsage,
}

fn actor(session: &Session) -> WebActor {
    WebActor::Citizen {
        fiscal_code: session.user.fiscal_code.clone(),
        provider: session.user.provider.clone(),
    }
}

fn refused(r: Refusal) -> AppError {
    AppError::new(r.code, r.message)
}

/// `429 rate_limited` with `retry_after_s` (and `Retry-After`).
fn over_budget(retry_after_s: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "code": "rate_limited",
            "message": format!(
                "troppe richieste: riprova tra {} minuti / too many requests: retry in {retry_after_s} s",
                retry_after_s.div_ceil(60)
            ),
            "retry_after_s": retry_after_s,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// `POST /api/v1/web/certificates`.
async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CertificateBody>,
) -> Result<Response, AppError> {
    same_origin(&state, &headers)?;
    let (token, session) = signed_in(&state, &headers).await?;
    match state
        .web
        .sessions
        .spend(&token, state.web.settings.requests_per_hour, Time::now())
        .await
    {
        Ok(()) => {}
        Err(SessionError::Budget(s)) => return Ok(over_budget(s)),
        Err(SessionError::None) => {
            return Err(AppError::unauthorized(
                "sessione scaduta: accedi di nuovo / session expired: sign in again",
            ))
        }
        Err(SessionError::Store(e)) => return Err(store_unavailable(e)),
    }
    let me = session.user.fiscal_code.clone();
    let subject = match body.fiscal_code.as_deref().map(str::trim) {
        None | Some("") => me.clone(),
        Some(fc) => FiscalCode::parse(fc)
            .map_err(|e| AppError::invalid(e.to_string()))?
            .as_str()
            .to_owned(),
    };
    let actor = actor(&session);
    let req = WebRequest {
        kind: body.kind,
        fiscal_code: subject.clone(),
        reason: body.reason,
        usage: body.usage,
    };
    if subject != me {
        let family = family_of(&state, &me).await?;
        let member = family
            .as_ref()
            .is_some_and(|(_, fam)| fam.iter().any(|p| p.fiscal_code.as_str() == subject));
        if !member {
            let refusal = Refusal::new(
                ErrorCode::Forbidden,
                "puoi chiedere certificati solo per te e per chi è nella tua famiglia anagrafica \
                 / you may request certificates only for yourself and your family",
            );
            issue::audit_refusal(&state, &actor, &req, &refusal);
            tracing::info!(kind = %req.kind, "web certificate for someone outside the family refused");
            return Err(refused(refusal));
        }
    }
    let issued = issue::issue(&state, &actor, req).await.map_err(refused)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// `GET /api/v1/web/certificates`.
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    let (_, session) = signed_in(&state, &headers).await?;
    let documents = issue::list_for_citizen(&state, &session.user.fiscal_code)
        .await
        .map_err(refused)?;
    Ok(Json(json!({ "certificates": documents })))
}

/// `GET /api/v1/web/documents/{id}.pdf`.
async fn document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let (_, session) = signed_in(&state, &headers).await?;
    let Some(document_id) = file.strip_suffix(".pdf") else {
        return Err(AppError::not_found(format!("no document {file}")));
    };
    let pdf = issue::pdf_for(&state, &actor(&session), document_id)
        .await
        .map_err(refused)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{document_id}.pdf\""),
            ),
        ],
        pdf,
    )
        .into_response())
}
