//! The citizens' certificates on the web:
//!
//! - `POST /api/v1/web/certificates` (same origin, signed in, within the session's hourly budget):
//!   for the citizen or a member of their family today, else `403 forbidden` (audited);
//! - `GET /api/v1/web/certificates`: the citizen's certificates still valid;
//! - `GET /api/v1/web/documents/{id}.pdf`: a PDF, to the citizen who asked for it only.
//!
//! Issuing itself (usage, marca once across channels, audit, storage) is `web::issue`'s.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use certificates::FiscalCode;
use protocol::ErrorCode;
use queue::Time;

use super::schema::{CertificateList, CitizenCertificateRequest};
use super::{family_of, same_origin, signed_in, store_unavailable};
use crate::calls::Refusal;
use crate::error::{ApiJson, AppError};
use crate::state::AppState;
use crate::web::intermediary::{pdf_response, rate_limited, ErrorBody};
use crate::web::issue::{self, WebActor, WebDocument, WebIssued, WebRequest};
use crate::web::session::{Session, SessionError};

/// The certificate routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/web/certificates", get(list).post(request))
        .route("/api/v1/web/documents/{file}", get(document))
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

/// Issues a certificate for the citizen or a member of their family.
#[utoipa::path(post, path = "/api/v1/web/certificates", tag = "citizen",
    security(("citizen_session" = [])),
    request_body = CitizenCertificateRequest,
    responses(
        (status = 201, description = "Issued", body = WebIssued),
        (status = 400, description = "Invalid request (kind, fiscal code, usage, missing reason)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the citizen nor a member of their family, cross-origin, or an office-only exemption", body = ErrorBody),
        (status = 409, description = "The marca da bollo was already used, or the certificate cannot be issued for this person", body = ErrorBody),
        (status = 429, description = "Over the session's hourly budget", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a request is allowed"))),
    ))]
pub async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CitizenCertificateRequest>,
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
        Err(SessionError::Budget(s)) => {
            return Ok(rate_limited(
                format!(
                    "troppe richieste: riprova tra {} minuti / too many requests: retry in {s} s",
                    s.div_ceil(60)
                ),
                s,
            ))
        }
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
        as_of: body.as_of,
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

/// The citizen's own certificates still valid, newest first.
#[utoipa::path(get, path = "/api/v1/web/certificates", tag = "citizen",
    security(("citizen_session" = [])),
    responses(
        (status = 200, description = "The list", body = CertificateList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<CertificateList>, AppError> {
    let (_, session) = signed_in(&state, &headers).await?;
    let certificates: Vec<WebDocument> = issue::list_for_citizen(&state, &session.user.fiscal_code)
        .await
        .map_err(refused)?;
    Ok(Json(CertificateList { certificates }))
}

/// A certificate's PDF, to the citizen who asked for it only.
#[utoipa::path(get, path = "/api/v1/web/documents/{document_id}.pdf", tag = "citizen",
    security(("citizen_session" = [])),
    params(("document_id" = String, Path, description = "The document id")),
    responses(
        (status = 200, description = "The stamped, sealed PDF", content_type = "application/pdf", body = String),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such document of this citizen", body = ErrorBody),
    ))]
pub async fn document(
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
    Ok(pdf_response(document_id, pdf))
}
