//! The local endpoint, for the kiosk's screen on the same machine (`local_listen`, loopback only):
//!
//! - `POST /v1/pin {"call_id","pin"}`: the PIN typed on the screen's keypad, for the card being read
//!   in that call. `200 {"ok":true}`; `409` when no PIN is expected for the call; `400` for a
//!   malformed body or a PIN that is not 4–16 digits.
//! - `POST /v1/scan {"call_id"}`: "I placed the document": scan now. `200` or `409`.
//! - `GET /v1/status`: connection, printer, card and what the agent waits for.
//!
//! Errors are `{"ok":false,"code","message"}`. Browsers may call it from `screen_origin` only (CORS,
//! with `OPTIONS` preflight and Private Network Access); a request carrying another `Origin`, or a
//! `Host` that is not a loopback name (DNS rebinding), is refused with `403`. `POST` bodies must be
//! `application/json` (which forces a preflight on cross-origin callers) and at most 1 KiB.
//!
//! The PIN is moved into an [`AuthPin`] (zeroized on drop) at once, the request buffer is wiped,
//! and nothing here logs it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use zeroize::Zeroize;

use super::card::AuthPin;

/// The largest body accepted.
const MAX_BODY: usize = 1024;

/// What the agent waits for from the screen, by call.
#[derive(Default)]
pub struct LocalChannel {
    pins: Mutex<HashMap<String, oneshot::Sender<AuthPin>>>,
    scans: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl std::fmt::Debug for LocalChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChannel")
            .field("pin_expected_for", &self.pin_expected_for())
            .field("scan_expected_for", &self.scan_expected_for())
            .finish()
    }
}

fn expect<T>(
    map: &Mutex<HashMap<String, oneshot::Sender<T>>>,
    call_id: &str,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, waiting| !waiting.is_closed());
    map.insert(call_id.to_owned(), tx);
    rx
}

fn deliver<T>(map: &Mutex<HashMap<String, oneshot::Sender<T>>>, call_id: &str, value: T) -> bool {
    let waiting = map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(call_id);
    match waiting {
        Some(tx) => tx.send(value).is_ok(),
        None => false,
    }
}

fn expected<T>(map: &Mutex<HashMap<String, oneshot::Sender<T>>>) -> Vec<String> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    let mut calls: Vec<String> = map
        .iter()
        .filter(|(_, tx)| !tx.is_closed())
        .map(|(call, _)| call.clone())
        .collect();
    calls.sort();
    calls
}

impl LocalChannel {
    /// A new channel.
    pub fn new() -> Arc<Self> {
        Arc::new(LocalChannel::default())
    }

    /// Waits for a PIN for `call_id` (replacing an earlier wait for the same call, whose receiver
    /// then fails). Dropping the receiver ends the wait.
    pub fn expect_pin(&self, call_id: &str) -> oneshot::Receiver<AuthPin> {
        expect(&self.pins, call_id)
    }

    /// Hands a PIN to the wait for `call_id`; `false` when nobody waits.
    pub fn give_pin(&self, call_id: &str, pin: AuthPin) -> bool {
        deliver(&self.pins, call_id, pin)
    }

    /// Waits for the screen's "scan now" for `call_id`.
    pub fn expect_scan(&self, call_id: &str) -> oneshot::Receiver<()> {
        expect(&self.scans, call_id)
    }

    /// Signals "scan now" for `call_id`; `false` when nobody waits.
    pub fn trigger_scan(&self, call_id: &str) -> bool {
        deliver(&self.scans, call_id, ())
    }

    /// Ends every wait for `call_id`.
    pub fn forget(&self, call_id: &str) {
        self.pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call_id);
        self.scans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call_id);
    }

    /// The calls whose card waits for a PIN.
    pub fn pin_expected_for(&self) -> Vec<String> {
        expected(&self.pins)
    }

    /// The calls whose scan waits for the screen.
    pub fn scan_expected_for(&self) -> Vec<String> {
        expected(&self.scans)
    }
}

/// Produces the `GET /v1/status` body.
pub type StatusFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync>;

/// What the endpoint's handlers share.
#[derive(Clone)]
pub struct LocalState {
    /// The waits.
    pub channel: Arc<LocalChannel>,
    /// The origin allowed by CORS (`scheme://host[:port]`).
    pub origin: String,
    /// The status body.
    pub status: StatusFn,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"ok": false, "code": code, "message": message})),
    )
        .into_response()
}

/// Whether a `Host` header names this machine (loopback name or address, any port).
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn cors_headers(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// Host and origin checks, preflight answers and CORS headers.
async fn guard(State(state): State<LocalState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        if !loopback_host(host) {
            return error(StatusCode::FORBIDDEN, "forbidden", "host not allowed");
        }
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or_default().to_owned());
    if let Some(origin) = &origin {
        if *origin != state.origin {
            return error(StatusCode::FORBIDDEN, "forbidden", "origin not allowed");
        }
    }
    if request.method() == Method::OPTIONS {
        let private_network = headers
            .get("access-control-request-private-network")
            .is_some();
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        if let Some(origin) = &origin {
            cors_headers(out, origin);
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        if private_network {
            out.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        return response;
    }
    if request.method() == Method::POST {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid",
                "the body must be application/json",
            );
        }
    }
    let mut response = next.run(request).await;
    if let Some(origin) = &origin {
        cors_headers(response.headers_mut(), origin);
    }
    response
}

#[derive(Deserialize)]
struct PinBody {
    call_id: String,
    pin: String,
}

#[derive(Deserialize)]
struct ScanBody {
    call_id: String,
}

/// Whether a PIN has the shape of a CIE/CNS PIN: 4 to 16 ASCII digits.
pub fn plausible_pin(pin: &str) -> bool {
    (4..=16).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

async fn post_pin(State(state): State<LocalState>, body: Bytes) -> Response {
    if body.len() > MAX_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "invalid", "body too large");
    }
    let mut raw: Vec<u8> = body.into();
    let parsed = serde_json::from_slice::<PinBody>(&raw);
    raw.zeroize();
    let Ok(PinBody { call_id, mut pin }) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "expected {\"call_id\",\"pin\"}",
        );
    };
    if !plausible_pin(&pin) {
        pin.zeroize();
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the PIN must be 4 to 16 digits",
        );
    }
    let secret = AuthPin::from(pin.as_str());
    pin.zeroize();
    if state.channel.give_pin(&call_id, secret) {
        tracing::info!(call_id = %call_id, "local: PIN handed over by the screen");
        Json(json!({"ok": true})).into_response()
    } else {
        tracing::info!(call_id = %call_id, "local: a PIN arrived but none is expected for this call");
        error(
            StatusCode::CONFLICT,
            "conflict",
            "no PIN is expected for this call",
        )
    }
}

async fn post_scan(State(state): State<LocalState>, body: Bytes) -> Response {
    if body.len() > MAX_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "invalid", "body too large");
    }
    let Ok(ScanBody { call_id }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "expected {\"call_id\"}");
    };
    if state.channel.trigger_scan(&call_id) {
        tracing::info!(call_id = %call_id, "local: the screen asked to scan now");
        Json(json!({"ok": true})).into_response()
    } else {
        error(
            StatusCode::CONFLICT,
            "conflict",
            "no scan is expected for this call",
        )
    }
}

async fn get_status(State(state): State<LocalState>) -> Response {
    Json((state.status)().await).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The endpoint's routes.
pub fn router(state: LocalState) -> Router {
    Router::new()
        .route("/v1/pin", post(post_pin))
        .route("/v1/scan", post(post_scan))
        .route("/v1/status", get(get_status))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:7480",
            "localhost:7480",
            "[::1]:7480",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:7480", "192.168.1.2:7480", "[fe80::1]:1"] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn pins_are_digits() {
        assert!(plausible_pin("12345678"));
        assert!(!plausible_pin("123"));
        assert!(!plausible_pin("1234abcd"));
    }

    #[tokio::test]
    async fn a_pin_reaches_the_waiting_card_only() {
        let channel = LocalChannel::new();
        assert!(!channel.give_pin("c1", AuthPin::from("1234")));
        let rx = channel.expect_pin("c1");
        assert_eq!(channel.pin_expected_for(), vec!["c1".to_owned()]);
        assert!(!channel.give_pin("c2", AuthPin::from("1234")));
        assert!(channel.give_pin("c1", AuthPin::from("1234")));
        assert!(rx.await.is_ok());
        assert!(channel.pin_expected_for().is_empty());
    }
}
