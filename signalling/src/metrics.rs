//! Prometheus metrics of the server process: process figures, HTTP requests, WebSocket sessions and
//! frames, logins. Served as text on the admin listener.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the server itself exports. Other crates register theirs on the same registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry served at `/metrics`.
    pub registry: Registry,
    /// `sportello_http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `sportello_http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `sportello_ws_sessions{role}`: open sockets by authenticated role (or `pending`).
    pub ws_sessions: IntGaugeVec,
    /// `sportello_ws_frames_total{direction}`: text frames in and out.
    pub ws_frames: IntCounterVec,
    /// `sportello_ws_closes_total{code}`: sockets the server closed, by close code.
    pub ws_closes: IntCounterVec,
    /// `sportello_ws_requests_total{type,outcome}`: WebSocket requests by type and reply (`ok` or
    /// the error code).
    pub ws_requests: IntCounterVec,
    /// `sportello_logins_total{outcome}`: `ok`, `failed` (wrong user name or password),
    /// `throttled` (too many failures: `429`), `busy` (too many logins at once: `429` or `503`).
    pub logins: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates and registers every metric, plus the process collector on Linux.
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let http_requests = IntCounterVec::new(
            Opts::new("sportello_http_requests_total", "HTTP requests served."),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "sportello_http_request_duration_seconds",
                "HTTP request handling time.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let ws_sessions = IntGaugeVec::new(
            Opts::new(
                "sportello_ws_sessions",
                "Open WebSocket connections by role.",
            ),
            &["role"],
        )
        .expect("valid metric");
        let ws_frames = IntCounterVec::new(
            Opts::new("sportello_ws_frames_total", "WebSocket text frames."),
            &["direction"],
        )
        .expect("valid metric");
        let ws_closes = IntCounterVec::new(
            Opts::new(
                "sportello_ws_closes_total",
                "WebSocket connections closed by the server, by close code.",
            ),
            &["code"],
        )
        .expect("valid metric");
        let ws_requests = IntCounterVec::new(
            Opts::new(
                "sportello_ws_requests_total",
                "WebSocket requests by type and reply (ok or the error code).",
            ),
            &["type", "outcome"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("sportello_logins_total", "Password logins by outcome."),
            &["outcome"],
        )
        .expect("valid metric");
        let build = IntGaugeVec::new(
            Opts::new("sportello_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(ws_sessions.clone()),
            Box::new(ws_frames.clone()),
            Box::new(ws_closes.clone()),
            Box::new(ws_requests.clone()),
            Box::new(logins.clone()),
            Box::new(build),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            ws_sessions,
            ws_frames,
            ws_closes,
            ws_requests,
            logins,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware that counts and times every request by method, matched route and status. The route
/// label is the route pattern, never the raw path, so label cardinality stays bounded.
/// The `method` label: one of the standard methods, else `other`, so that made-up methods cannot
/// create metric series (the route is the matched route or `unmatched`, the status one the server
/// itself produced).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics
        .http_requests
        .with_label_values(&[method, &route, &status])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method, &route])
        .observe(started.elapsed().as_secs_f64());
    response
}
