//! The internal API of a media node: an axum [`Router`] over the [`Sfu`] handle, every route
//! behind the HMAC check of [`crate::auth`].
//!
//! The check is one middleware around the whole router (the fallback included): it refuses a
//! missing, malformed or stale header before it reads anything more, then reads the body once
//! (at most [`MAX_BODY`] bytes), verifies the signature over it, and hands the same bytes on to the
//! route. Routes parse their JSON themselves, so every refusal is an [`ErrorBody`] with a protocol
//! code: `unauthorized` 401, `invalid` 400 (bad JSON, bad SDP, bad candidate) or 413 (body too
//! large), `not_found` 404 (no such connection or route), `unavailable` 503, `internal` 500.
//! A panic in a handler becomes `internal`, never the end of the process.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::ErrorCode;
use serde::de::DeserializeOwned;
use sfu::{MediaError, Participant, Sfu};
use tower_http::catch_panic::CatchPanicLayer;

use crate::api::{
    Ack, CandidateRequest, EndRequest, ErrorBody, HealthAnswer, HeldRequest, LeaveRequest,
    NodeLoad, OfferAnswer, OfferRequest, StatsAnswer, MAX_BODY, PREFIX,
};
use crate::auth::{self, Secret};

/// The longest call id or principal accepted, in bytes.
pub const MAX_ID: usize = 256;

/// How long `health` waits for each forwarding loop.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The internal API over `sfu`, for requests signed with `secret`. Serve it on an address only
/// the nodes of the deployment reach.
pub fn router(sfu: Sfu, secret: Arc<Secret>) -> Router {
    let routes = Router::new()
        .route("/offer", post(offer))
        .route("/candidate", post(candidate))
        .route("/held", post(held))
        .route("/leave", post(leave))
        .route("/end", post(end))
        .route("/stats", get(stats))
        .route("/health", get(health))
        .route("/load", get(load));
    Router::new()
        .nest(PREFIX, routes)
        .fallback(no_route)
        .with_state(sfu)
        .layer(middleware::from_fn_with_state(
            Arc::new(Guard {
                secret,
                replays: auth::ReplayGuard::default(),
            }),
            authenticate,
        ))
        .layer(CatchPanicLayer::custom(panicked))
}

/// A refusal with its HTTP status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        let message = e.to_string();
        match e {
            MediaError::BadSdp(_) | MediaError::BadCandidate(_) => ApiError::invalid(message),
            MediaError::NoConnection => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
            }
            MediaError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                message,
            ),
            MediaError::Internal(_) => {
                tracing::error!(error = %message, "media node: internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    message,
                )
            }
        }
    }
}

fn panicked(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("media node: a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "internal error",
    )
    .into_response()
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

/// The HMAC check around every route; see the module docs.
/// The secret, and the requests already carried out within the time window.
struct Guard {
    secret: Arc<Secret>,
    replays: auth::ReplayGuard,
}

async fn authenticate(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let secret = &guard.secret;
    let now = auth::now_ms();
    let header = match req.headers().get(auth::HEADER).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(h)) => Some(h.to_owned()),
        Some(Err(_)) => Some(String::new()), // not text: malformed
    };
    let refuse = |e: auth::AuthError, method: &str, path: &str| {
        tracing::warn!(reason = %e, method, path, "media node: refused an unauthenticated request");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            e.to_string(),
        )
        .into_response()
    };
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    if let Err(e) = auth::precheck(header.as_deref(), now) {
        return refuse(e, &method, &path);
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::Invalid,
                "request body unreadable or larger than 256 KiB",
            )
            .into_response()
        }
    };
    if let Err(e) = auth::verify(secret, &method, &path, &bytes, header.as_deref(), now)
        .and_then(|()| guard.replays.check(header.as_deref().unwrap_or(""), now))
    {
        return refuse(e, &method, &path);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("bad request body: {e}")))
}

fn check_id(what: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_ID {
        return Err(ApiError::invalid(format!(
            "{what} must be 1 to {MAX_ID} bytes long"
        )));
    }
    Ok(())
}

async fn offer(State(sfu): State<Sfu>, body: Bytes) -> Result<Json<OfferAnswer>, ApiError> {
    let r: OfferRequest = parse(&body)?;
    check_id("call_id", &r.call_id)?;
    check_id("principal", &r.principal)?;
    let who = Participant {
        principal: r.principal,
        role: r.role,
    };
    let answer = sfu.offer(&r.call_id, who, r.sdp, r.held).await?;
    Ok(Json(answer.into()))
}

async fn candidate(State(sfu): State<Sfu>, body: Bytes) -> Result<Json<Ack>, ApiError> {
    let r: CandidateRequest = parse(&body)?;
    check_id("call_id", &r.call_id)?;
    check_id("principal", &r.principal)?;
    let (call_id, who, c) = r.into_parts();
    sfu.candidate(&call_id, who, c).await?;
    Ok(Json(Ack::OK))
}

async fn held(State(sfu): State<Sfu>, body: Bytes) -> Result<Json<Ack>, ApiError> {
    let r: HeldRequest = parse(&body)?;
    check_id("call_id", &r.call_id)?;
    sfu.set_held(&r.call_id, r.held);
    Ok(Json(Ack::OK))
}

async fn leave(State(sfu): State<Sfu>, body: Bytes) -> Result<Json<Ack>, ApiError> {
    let r: LeaveRequest = parse(&body)?;
    check_id("call_id", &r.call_id)?;
    check_id("principal", &r.principal)?;
    sfu.leave(
        &r.call_id,
        Participant {
            principal: r.principal,
            role: r.role,
        },
    );
    Ok(Json(Ack::OK))
}

async fn end(State(sfu): State<Sfu>, body: Bytes) -> Result<Json<Ack>, ApiError> {
    let r: EndRequest = parse(&body)?;
    check_id("call_id", &r.call_id)?;
    sfu.end_call(&r.call_id);
    Ok(Json(Ack::OK))
}

async fn stats(State(sfu): State<Sfu>) -> Json<StatsAnswer> {
    Json(StatsAnswer {
        calls: sfu.stats().await,
    })
}

async fn health(State(sfu): State<Sfu>) -> Result<Json<HealthAnswer>, ApiError> {
    let peers = sfu.health(HEALTH_TIMEOUT).await?;
    Ok(Json(HealthAnswer { peers }))
}

async fn load(State(sfu): State<Sfu>) -> Json<NodeLoad> {
    Json(sfu.load().into())
}
