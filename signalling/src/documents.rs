//! The HTTP side of the in-call actions: scan upload and download, and issued PDFs.
//!
//! - `POST /api/v1/calls/{call_id}/scans` (the call's kiosk; JPEG or PNG, ≤ 10 MiB) → `201 {"scan_id"}`
//! - `GET /api/v1/calls/{call_id}/scans/{scan_id}` (the call's operator) → the image
//! - `GET /api/v1/documents/{document_id}.pdf` (the issuing operator, the kiosk of a print job for
//!   it, supervisors) → the PDF
//!
//! The rules live in `calls::incall`; this module only maps HTTP to them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::calls::incall;
use crate::calls::Refusal;
use crate::error::AppError;
use crate::http::Authenticated;
use crate::state::AppState;

fn app_error(r: Refusal) -> AppError {
    AppError::new(r.code, r.message)
}

/// `POST /api/v1/calls/{call_id}/scans`.
pub async fn upload_scan(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let scan_id = incall::upload_scan(&state, &who, &call_id, content_type, &body)
        .await
        .map_err(app_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "scan_id": scan_id }))).into_response())
}

/// `GET /api/v1/calls/{call_id}/scans/{scan_id}`.
pub async fn get_scan(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    Path((call_id, scan_id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let scan = incall::get_scan(&state, &who, &call_id, &scan_id)
        .await
        .map_err(app_error)?;
    Ok((
        [
            (header::CONTENT_TYPE, scan.content_type),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        scan.bytes,
    )
        .into_response())
}

/// `GET /api/v1/documents/{document_id}.pdf`.
pub async fn get_document(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let Some(document_id) = file.strip_suffix(".pdf") else {
        return Err(AppError::not_found(format!("no document {file}")));
    };
    let pdf = incall::document_for(&state, &who, document_id)
        .await
        .map_err(app_error)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{document_id}.pdf\""),
            ),
        ],
        pdf,
    )
        .into_response())
}
