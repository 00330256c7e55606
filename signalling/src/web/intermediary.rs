//! The intermediaries' API (patronati, banks, employers under an agreement with the comune) and
//! the web channel's OpenAPI document (`docs/web.md`):
//!
//! - `POST /api/v1/intermediary/certificates` (`Authorization: Bearer KEY`)
//!   `{"kind","fiscal_code","reason","consent_ref","usage"}` → `201` [`WebIssued`]; `400 invalid`
//!   without `reason` or `consent_ref`; `401 unauthorized` for an unknown or revoked key; `403
//!   forbidden` without the `certificates` scope; `429 rate_limited` with `retry_after_s` over the
//!   daily quota; `409 conflict` for a marca used before on any channel;
//! - `GET /api/v1/intermediary/documents/{id}.pdf` (the same key): the PDF, to the intermediary that
//!   asked for it only;
//! - `GET /api/v1/intermediary/requests?from=&to=` (a key with the `audit` scope): its own audited
//!   requests;
//! - `GET /api/v1/intermediary-requests?name=&from=&to=` (a supervisor's bearer token): the
//!   intermediary's audited requests;
//! - `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the citizen and intermediary APIs.
//!
//! Every request, allowed or refused, is audited with the intermediary's name, reason and
//! consent reference. The submodules: [`accounts`] (keys, scopes, quotas on disk, the command
//! line's add/list/revoke), [`quota`] (the daily counters across nodes), [`requests`] (the audit
//! trail report) and [`openapi`].

pub mod accounts;
pub mod cli;
pub mod openapi;
pub mod quota;
pub mod requests;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use certificates::audit::{Actor, AuditEvent};
use protocol::{ErrorCode, Role};
use serde::{Deserialize, Serialize};

use self::accounts::Intermediary;
use self::quota::Taken;
use super::issue::{self, WebActor, WebIssued, WebRequest, WebUsage};
use crate::calls::incall::certificate::append_audit;
use crate::calls::Refusal;
use crate::error::AppError;
use crate::http::Authenticated;
use crate::state::AppState;

/// The scope `POST /api/v1/intermediary/certificates` needs.
pub const SCOPE_CERTIFICATES: &str = "certificates";
/// The scope that lets a key read its intermediary's own audited requests.
pub const SCOPE_AUDIT: &str = "audit";
/// The longest `reason` or `consent_ref` accepted.
pub const MAX_TEXT: usize = 500;

/// This module's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/intermediary/certificates", post(post_certificate))
        .route("/api/v1/intermediary/documents/{file}", get(get_document))
        .route("/api/v1/intermediary/requests", get(get_own_requests))
        .route("/api/v1/intermediary-requests", get(get_requests))
        .route("/api/v1/openapi.json", get(openapi::serve))
}

/// The body of `POST /api/v1/intermediary/certificates`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct IntermediaryCertificateRequest {
    /// The kind code, e.g. `residenza` (see `GET /api/v1/web/services`).
    pub kind: String,
    /// The subject's fiscal code: the citizen whose delegation the intermediary holds.
    pub fiscal_code: String,
    /// Why the certificate is requested (required, audited).
    #[serde(default)]
    pub reason: Option<String>,
    /// The reference of the citizen's signed delegation (required, audited).
    #[serde(default)]
    pub consent_ref: Option<String>,
    /// Bollo paid with a marca, or an exemption.
    pub usage: WebUsage,
    /// The date of a past situation (`YYYY-MM-DD`), for the kinds that need one.
    #[serde(default)]
    pub as_of: Option<String>,
}

/// The API's error body: the protocol's `{"code","message"}`, with `retry_after_s` on `429`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The protocol's error code.
    #[schema(example = "rate_limited")]
    pub code: String,
    /// What went wrong, for people; a correlation id for `internal`.
    pub message: String,
    /// On `429`: seconds until the quota is renewed (the next midnight, Europe/Rome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// An error answer: an [`AppError`], or a `429` with its wait.
#[derive(Debug)]
pub enum ApiError {
    /// A protocol error.
    App(AppError),
    /// Over the daily quota.
    OverQuota {
        /// Seconds to the next midnight in Europe/Rome.
        retry_after_s: u64,
    },
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError::App(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::App(AppError::new(r.code, r.message))
    }
}

/// `429 rate_limited`: the error body with `retry_after_s`, and `Retry-After`.
pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(ErrorBody {
            code: ErrorCode::RateLimited.as_str().into(),
            message: message.into(),
            retry_after_s: Some(retry_after_s),
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::App(e) => e.into_response(),
            ApiError::OverQuota { retry_after_s } => rate_limited(
                "quota giornaliera esaurita / daily quota used up",
                retry_after_s,
            ),
        }
    }
}

fn refusal_of(e: &ApiError) -> Refusal {
    match e {
        ApiError::App(e) => Refusal::new(e.code, e.message.clone()),
        ApiError::OverQuota { retry_after_s } => Refusal::new(
            ErrorCode::RateLimited,
            format!("daily quota used up; retry after {retry_after_s} s"),
        ),
    }
}

/// The intermediary of a request's `Authorization: Bearer KEY`: `unauthorized` when the header is
/// missing, the key unknown or revoked.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Intermediary, AppError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| AppError::unauthorized("missing Authorization: Bearer API key"))?;
    let accounts = accounts::current(&state.config.data_dir).map_err(AppError::internal)?;
    accounts::find_key(&accounts, key)
        .ok_or_else(|| AppError::unauthorized("unknown or revoked API key"))
}

/// A required text field: present, not blank, at most [`MAX_TEXT`] characters, no control
/// characters.
fn required_text(field: &str, value: Option<&str>) -> Result<String, AppError> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AppError::invalid(format!(
            "{field} is required / il campo {field} è obbligatorio"
        )));
    }
    if value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(AppError::invalid(format!(
            "{field} is at most {MAX_TEXT} characters, without control characters"
        )));
    }
    Ok(value.to_owned())
}

/// `POST /api/v1/intermediary/certificates`: issues a certificate for the citizen whose signed
/// delegation the intermediary holds.
#[utoipa::path(post, path = "/api/v1/intermediary/certificates", tag = "intermediary",
    security(("intermediary_key" = [])),
    request_body = IntermediaryCertificateRequest,
    responses(
        (status = 201, description = "Issued", body = WebIssued),
        (status = 400, description = "Invalid request, or reason or consent_ref missing", body = ErrorBody),
        (status = 401, description = "Unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the certificates scope, or an office-only exemption", body = ErrorBody),
        (status = 404, description = "The fiscal code is not in the registry", body = ErrorBody),
        (status = 409, description = "The marca da bollo was already used, or the certificate cannot be issued for this person", body = ErrorBody),
        (status = 429, description = "Over the daily quota; retry_after_s says when it renews", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to the next midnight, Europe/Rome"))),
    ))]
pub async fn post_certificate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // The body is read after the key, so an unauthenticated caller learns nothing of it.
    let parsed: Option<IntermediaryCertificateRequest> = serde_json::from_slice(&body).ok();
    let who = match authenticate(&state, &headers) {
        Ok(who) => who,
        Err(e) => {
            let e = ApiError::from(e);
            audit_unidentified(&state, parsed.as_ref(), &refusal_of(&e)).await;
            return Err(e);
        }
    };
    let req = match serde_json::from_slice::<IntermediaryCertificateRequest>(&body) {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::from(AppError::invalid(format!("bad request body: {e}")));
            audit_refused(&state, &who, None, &refusal_of(&e)).await;
            return Err(e);
        }
    };
    let checked = (|| {
        if !who.has_scope(SCOPE_CERTIFICATES) {
            return Err(ApiError::from(AppError::new(
                ErrorCode::Forbidden,
                format!("this key lacks the {SCOPE_CERTIFICATES} scope"),
            )));
        }
        let reason = required_text("reason", req.reason.as_deref())?;
        let consent_ref = required_text("consent_ref", req.consent_ref.as_deref())?;
        Ok((reason, consent_ref))
    })();
    let (reason, consent_ref) = match checked {
        Ok(c) => c,
        Err(e) => {
            audit_refused(&state, &who, Some(&req), &refusal_of(&e)).await;
            return Err(e);
        }
    };
    let actor = WebActor::Intermediary {
        name: who.name.clone(),
        reason: reason.clone(),
        consent_ref,
    };
    let web = WebRequest {
        kind: req.kind,
        fiscal_code: req.fiscal_code,
        reason: Some(reason),
        usage: req.usage,
        as_of: req.as_of,
    };
    let (shared, tenant) = state.incall.store().shared();
    let taken = quota::take(
        shared,
        tenant,
        &who.name,
        who.quota_per_day,
        jiff::Timestamp::now(),
    )
    .await;
    let over = match taken {
        Ok(Taken::Within(_)) => None,
        Ok(Taken::Over { retry_after_s }) => Some(ApiError::OverQuota { retry_after_s }),
        Err(e) => {
            tracing::warn!(error = %e, "intermediary quota unavailable");
            Some(ApiError::from(AppError::new(
                ErrorCode::Unavailable,
                "the quota cannot be counted now; retry",
            )))
        }
    };
    if let Some(e) = over {
        issue::record_refusal(&state, &actor, &web, &refusal_of(&e)).await;
        return Err(e);
    }
    let issued: WebIssued = issue::issue(&state, &actor, web).await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// Audits a request refused before issuing, from a known intermediary.
async fn audit_refused(
    state: &AppState,
    who: &Intermediary,
    req: Option<&IntermediaryCertificateRequest>,
    refusal: &Refusal,
) {
    let actor = WebActor::Intermediary {
        name: who.name.clone(),
        reason: req.and_then(|r| r.reason.clone()).unwrap_or_default(),
        consent_ref: req.and_then(|r| r.consent_ref.clone()).unwrap_or_default(),
    };
    let web = web_request_of(req);
    issue::record_refusal(state, &actor, &web, refusal).await;
}

fn web_request_of(req: Option<&IntermediaryCertificateRequest>) -> WebRequest {
    WebRequest {
        kind: req.map(|r| clip(&r.kind)).unwrap_or_default(),
        fiscal_code: req.map(|r| clip(&r.fiscal_code)).unwrap_or_default(),
        reason: req.and_then(|r| r.reason.as_deref().map(clip)),
        usage: req.map(|r| r.usage.clone()).unwrap_or(WebUsage::Bollo {
            bollo: false,
            marca: None,
        }),
        as_of: req.and_then(|r| r.as_of.as_deref().map(clip)),
    }
}

/// At most [`MAX_TEXT`] characters of a caller's text, for the audit log.
fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// Audits a request whose key is missing, unknown or revoked: no intermediary is named (the key
/// is never logged), the body's reason and consent reference are kept when it could be read.
async fn audit_unidentified(
    state: &AppState,
    req: Option<&IntermediaryCertificateRequest>,
    refusal: &Refusal,
) {
    let web = web_request_of(req);
    let event = AuditEvent {
        action: "certificate.refused".into(),
        actor: Actor {
            consent_ref: req.and_then(|r| r.consent_ref.as_deref().map(clip)),
            ..Actor::default()
        },
        subject: Some(web.fiscal_code).filter(|s| !s.is_empty()),
        kind: Some(web.kind).filter(|s| !s.is_empty()),
        reason: web.reason,
        details: vec![
            ("channel".into(), "intermediary".into()),
            ("code".into(), refusal.code.as_str().into()),
            ("message".into(), refusal.message.clone()),
        ],
        ..AuditEvent::default()
    };
    append_audit(state, event).await;
}

/// `GET /api/v1/intermediary/documents/{id}.pdf`: the PDF, to the intermediary that asked for it.
#[utoipa::path(get, path = "/api/v1/intermediary/documents/{document_id}.pdf", tag = "intermediary",
    security(("intermediary_key" = [])),
    params(("document_id" = String, Path, description = "The document id")),
    responses(
        (status = 200, description = "The stamped, sealed PDF", content_type = "application/pdf", body = String),
        (status = 401, description = "Unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the certificates scope", body = ErrorBody),
        (status = 404, description = "No such document of this intermediary", body = ErrorBody),
    ))]
pub async fn get_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let Some(document_id) = file.strip_suffix(".pdf") else {
        return Err(AppError::not_found(format!("no document {file}")).into());
    };
    let who = match authenticate(&state, &headers) {
        Ok(who) => who,
        Err(e) => {
            audit_download_refused(&state, None, document_id, &e).await;
            return Err(e.into());
        }
    };
    if !who.has_scope(SCOPE_CERTIFICATES) {
        let e = AppError::new(
            ErrorCode::Forbidden,
            format!("this key lacks the {SCOPE_CERTIFICATES} scope"),
        );
        audit_download_refused(&state, Some(&who.name), document_id, &e).await;
        return Err(e.into());
    }
    let actor = WebActor::Intermediary {
        name: who.name,
        reason: String::new(),
        consent_ref: String::new(),
    };
    let pdf = issue::pdf_for(&state, &actor, document_id).await?;
    Ok(pdf_response(document_id, pdf))
}

/// Audits a download refused before the document was looked at (no key, a revoked key, no scope).
async fn audit_download_refused(
    state: &AppState,
    name: Option<&str>,
    document_id: &str,
    e: &AppError,
) {
    let event = AuditEvent {
        action: "certificate.download_refused".into(),
        actor: Actor {
            intermediary: name.map(str::to_owned),
            ..Actor::default()
        },
        document_id: Some(document_id.chars().take(64).collect()),
        details: vec![
            ("channel".into(), "intermediary".into()),
            ("code".into(), e.code.as_str().into()),
        ],
        ..AuditEvent::default()
    };
    append_audit(state, event).await;
}

/// A PDF download: `application/pdf`, never cached.
pub fn pdf_response(document_id: &str, pdf: Vec<u8>) -> Response {
    (
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
        .into_response()
}

/// The query of `GET /api/v1/intermediary-requests`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// The intermediary's name.
    pub name: Option<String>,
    /// First day, `YYYY-MM-DD` (Europe/Rome), inclusive.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (Europe/Rome), inclusive.
    pub to: Option<String>,
}

/// The answer of `GET /api/v1/intermediary-requests`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestsReport {
    /// The intermediary.
    pub name: String,
    /// Its requests, oldest first.
    pub requests: Vec<requests::IntermediaryRequest>,
}

fn day(field: &str, value: Option<&str>) -> Result<Option<time::Date>, AppError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            certificates::dates::parse_date(v)
                .map_err(|_| AppError::invalid(format!("{field} is not YYYY-MM-DD")))
        })
        .transpose()
}

/// The query of `GET /api/v1/intermediary/requests`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnRequestsQuery {
    /// First day, `YYYY-MM-DD` (Europe/Rome), inclusive.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (Europe/Rome), inclusive.
    pub to: Option<String>,
}

/// `GET /api/v1/intermediary/requests` (the `audit` scope): the intermediary's own audited
/// requests, as the supervisor sees them.
#[utoipa::path(get, path = "/api/v1/intermediary/requests", tag = "intermediary",
    security(("intermediary_key" = [])),
    params(OwnRequestsQuery),
    responses(
        (status = 200, description = "Its requests, oldest first", body = RequestsReport),
        (status = 400, description = "A bad date", body = ErrorBody),
        (status = 401, description = "Unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the audit scope", body = ErrorBody),
    ))]
pub async fn get_own_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<OwnRequestsQuery>,
) -> Result<Json<RequestsReport>, ApiError> {
    let who = authenticate(&state, &headers)?;
    if !who.has_scope(SCOPE_AUDIT) {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            format!("this key lacks the {SCOPE_AUDIT} scope"),
        )
        .into());
    }
    Ok(Json(report(&state, who.name, q.from, q.to).await?))
}

/// An intermediary's audited requests between two days.
async fn report(
    state: &AppState,
    name: String,
    from: Option<String>,
    to: Option<String>,
) -> Result<RequestsReport, AppError> {
    let (from, to) = (day("from", from.as_deref())?, day("to", to.as_deref())?);
    let path = state.issuer.audit().path().to_owned();
    let n = name.clone();
    let found = tokio::task::spawn_blocking(move || requests::requests(&path, &n, from, to))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    Ok(RequestsReport {
        name,
        requests: found,
    })
}

/// `GET /api/v1/intermediary-requests` (supervisors): an intermediary's audited requests.
#[utoipa::path(get, path = "/api/v1/intermediary-requests", tag = "supervisor",
    security(("supervisor_token" = [])),
    params(RequestsQuery),
    responses(
        (status = 200, description = "The requests, oldest first", body = RequestsReport),
        (status = 400, description = "Missing name or a bad date", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not a supervisor", body = ErrorBody),
    ))]
pub async fn get_requests(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    Query(q): Query<RequestsQuery>,
) -> Result<Json<RequestsReport>, ApiError> {
    if who.role != Role::Supervisor {
        return Err(AppError::new(ErrorCode::Forbidden, "supervisors only").into());
    }
    let name = q
        .name
        .filter(|n| accounts::valid_name(n))
        .ok_or_else(|| AppError::invalid("name is required (an intermediary's name)"))?;
    Ok(Json(report(&state, name, q.from, q.to).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_and_consent_are_required_plain_text() {
        assert!(required_text("reason", None).is_err());
        assert!(required_text("reason", Some("  ")).is_err());
        assert!(required_text("reason", Some("a\u{7}b")).is_err());
        assert!(required_text("reason", Some(&"x".repeat(MAX_TEXT + 1))).is_err());
        assert_eq!(
            required_text("reason", Some(" pensione ")).unwrap(),
            "pensione"
        );
        assert_eq!(
            required_text("consent_ref", None).unwrap_err().code,
            ErrorCode::Invalid
        );
    }
}
