//! The HTTP surface: `fn app(state) -> Router` for the public listener and `fn admin(state)` for
//! the admin listener. Tests drive both with `oneshot` without binding a port.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{LoginRequest, LoginResponse};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::accounts::Principal;
use crate::error::{ApiJson, AppError};
use crate::shutdown::Phase;
use crate::state::AppState;

/// The request-id header, set on every request that lacks one and echoed on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Largest JSON body the API accepts (scans, which are bigger, get their own limit).
const API_BODY_LIMIT: usize = 64 * 1024;

/// The public router: API, WebSocket and pages.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(crate::revocation::logout))
        .route("/api/v1/refresh", post(crate::revocation::refresh))
        .route("/api/v1/session", get(session))
        .route("/api/v1/ws", get(crate::ws::endpoint))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/.well-known/sportello/trust-list.json",
            get(crate::verification::trust_list),
        )
        .route("/api/v1/verify", post(crate::verification::verify))
        .route("/verify", get(crate::pages::verify_root))
        .route("/verify/", get(crate::pages::verify))
        .route("/verify/{*file}", get(crate::pages::verify))
        .route("/servizi", get(crate::pages::servizi_root))
        .route("/servizi/", get(crate::pages::servizi))
        .route("/servizi/{*file}", get(crate::pages::servizi))
        .route("/lib/{*file}", get(crate::pages::lib))
        .route("/media-test", get(crate::pages::media_test_root))
        .route("/media-test/", get(crate::pages::media_test))
        .route("/media-test/{*file}", get(crate::pages::media_test))
        .route("/kiosk", get(crate::pages::kiosk_root))
        .route("/kiosk/", get(crate::pages::kiosk))
        .route("/kiosk/{*file}", get(crate::pages::kiosk))
        .route("/console", get(crate::pages::console_root))
        .route("/console/", get(crate::pages::console))
        .route("/console/{*file}", get(crate::pages::console))
        .route("/supervisor", get(crate::pages::supervisor_root))
        .route("/supervisor/", get(crate::pages::supervisor))
        .route(
            "/supervisor/reports",
            get(crate::pages::supervisor_reports_root),
        )
        .route("/supervisor/{*file}", get(crate::pages::supervisor))
        .route("/", get(index))
        .route(
            "/api/v1/documents/{file}",
            get(crate::documents::get_document),
        )
        .route(
            "/api/v1/calls/{call_id}/scans/{scan_id}",
            get(crate::documents::get_scan),
        )
        .merge(crate::web::router())
        .merge(crate::reports::api::routes())
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(API_BODY_LIMIT));
    // Scans are images: their route has its own, larger limit.
    let scans = Router::new()
        .route(
            "/api/v1/calls/{call_id}/scans",
            post(crate::documents::upload_scan),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::calls::incall::MAX_SCAN_BYTES,
        ))
        .layer(RequestBodyLimitLayer::new(
            crate::calls::incall::MAX_SCAN_BYTES,
        ));
    with_common_layers(api.merge(scans), state)
}

/// The admin router: metrics and health, for the private admin listener.
pub fn admin(state: AppState) -> Router {
    let admin = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found);
    with_common_layers(admin, state)
}

/// A body over a route's limit is refused by the limit layers with a bare 413; clients get the
/// protocol's JSON error instead (`invalid`, keeping the 413 status).
async fn json_too_large(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    let mut json = AppError::invalid("the request body is too large").into_response();
    *json.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    json
}

/// Whether a client's `x-request-id` may be kept (logged and echoed): 1–64 characters of
/// `A-Z a-z 0-9 . _ : -`.
pub fn valid_request_id(value: &[u8]) -> bool {
    (1..=64).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes an `x-request-id` that is not [`valid_request_id`] (too long, spaces, quotes…), so
/// that a fresh one replaces it rather than landing in the logs as sent.
async fn drop_bad_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    if request
        .headers()
        .get_all(REQUEST_ID)
        .iter()
        .any(|v| !valid_request_id(v.as_bytes()))
        || request.headers().get_all(REQUEST_ID).iter().count() > 1
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn with_common_layers(router: Router<AppState>, state: AppState) -> Router {
    router
        .layer(axum::middleware::map_response(json_too_large))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track_http,
        ))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                AppError::internal("handler panicked").into_response()
            },
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let client = crate::login::ClientIp::of(request.extensions())
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %request_id,
                    client = %client,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_bad_request_id))
        .layer(axum::middleware::from_fn_with_state(
            state.config.tls.is_some(),
            crate::headers::security_headers,
        ))
        // Outermost: the client's address (behind trusted proxies, the forwarded one) is known
        // to the request span, the limits and the login throttles.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::client_addr::resolve_layer,
        ))
        .with_state(state)
}

/// `POST /api/v1/login`; the limits and throttling are in [`crate::login`].
async fn login(
    State(state): State<AppState>,
    crate::login::ClientIp(client): crate::login::ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, crate::login::LoginError> {
    crate::login::login(&state, client, body).await
}

/// The authenticated principal of an HTTP request (`Authorization: Bearer <token>`); kiosks use
/// their device token the same way.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| AppError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AppError::unauthorized("Authorization must use the Bearer scheme"))?;
        state
            .authenticate(token.trim())
            .map(Authenticated)
            .map_err(|(code, message)| AppError::new(code, message))
    }
}

/// `GET /api/v1/session` (extension): who the bearer token belongs to.
async fn session(Authenticated(principal): Authenticated) -> Json<serde_json::Value> {
    Json(json!({"principal_id": principal.id, "role": principal.role}))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `/readyz`: ready when this node can serve (running, its store and registry answer, and on a
/// node with an in-process SFU, its forwarding loops answer). A signalling node's view of the
/// media pool is reported under `info` but does not decide: every signalling node shares the pool,
/// so failing them all while the media nodes are down or full would only stop the pages and
/// logins too.
async fn readyz(State(state): State<AppState>) -> Response {
    let mut checks = Vec::new();
    checks.push(match state.shutdown.phase() {
        Phase::Running => crate::readiness::Check {
            name: "lifecycle",
            ok: true,
            detail: "running".into(),
        },
        _ => crate::readiness::Check {
            name: "lifecycle",
            ok: false,
            detail: "shutting down".into(),
        },
    });
    checks.push(state.routing.check().await);
    checks.push(registry_check(&state).await);
    let mut info = Vec::new();
    match media_check(&state).await {
        Media::Local(check) => checks.push(check),
        Media::Pool(check) => info.push(check),
    }
    let (ready, body) = crate::readiness::report(&checks, &info);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The media check of this node: its own SFU's (required), or the pool's (informational).
enum Media {
    Local(crate::readiness::Check),
    Pool(crate::readiness::Check),
}

/// Every forwarding loop of the in-process SFU answers; or, on a signalling node, how many media
/// nodes take calls.
async fn media_check(state: &AppState) -> Media {
    let Some(sfu) = state.media.local() else {
        let nodes = state.media.cluster().map(|c| c.nodes()).unwrap_or_default();
        let usable = nodes.iter().filter(|n| n.has_room()).count();
        return Media::Pool(crate::readiness::media_pool(nodes.len(), usable));
    };
    let (ok, detail) = match sfu.health(std::time::Duration::from_secs(1)).await {
        Ok(peers) => (
            true,
            format!("{} forwarding loops, {peers} peer connections", sfu.loops()),
        ),
        Err(_) => (false, "a media forwarding loop does not answer".to_owned()),
    };
    Media::Local(crate::readiness::Check {
        name: "media",
        ok,
        detail,
    })
}

/// The registry answers (the demo registry always does; the HTTP adapter asks the front office).
async fn registry_check(state: &AppState) -> crate::readiness::Check {
    let issuer = state.issuer.clone();
    let probe = tokio::task::spawn_blocking(move || issuer.registry().comune());
    let (ok, detail) = match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(Ok(comune))) => (true, format!("{} reachable", comune.name)),
        Ok(Ok(Err(e))) => (false, format!("registry unavailable: {e}")),
        Ok(Err(_)) => (false, "registry check panicked".to_owned()),
        Err(_) => (false, "registry did not answer within 2 s".to_owned()),
    };
    crate::readiness::Check {
        name: "registry",
        ok,
        detail,
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn index(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "service": "sportello",
        "version": env!("CARGO_PKG_VERSION"),
        "municipality": state.config.municipality,
        "api": {"login": "/api/v1/login", "websocket": "/api/v1/ws", "health": "/healthz", "ready": "/readyz", "verify": "/api/v1/verify", "trust_list": "/.well-known/sportello/trust-list.json"},
        "pages": {"verify": "/verify/", "servizi": "/servizi/"},
    }))
}

async fn not_found() -> AppError {
    AppError::not_found("no such resource")
}
