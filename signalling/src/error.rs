//! One error type for the HTTP API, mapped to the protocol's error codes and JSON body.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{ErrorBody, ErrorCode};

/// An HTTP API error: a protocol error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// The message for the client.
    pub message: String,
}

impl AppError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
        }
    }

    /// `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// `invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `internal`: logs the cause with a fresh correlation id and returns only the id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let correlation = uuid::Uuid::new_v4().simple().to_string();
        tracing::error!(%correlation, %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            format!("internal error, correlation id {correlation}"),
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            Json(ErrorBody {
                code: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        AppError::invalid(rejection.body_text())
    }
}

/// A JSON body extractor whose failures come back as the protocol's `invalid` error.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);
