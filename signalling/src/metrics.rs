//! Prometheus metrics of the server process: process figures, HTTP requests, WebSocket sessions and
//! frames, logins, certificates issued and failed, the audit chain's last verification, and the
//! print jobs not printed yet. Served as text on the admin listener. [`StoreMetrics`] (Redis
//! reachable, errors and round-trip time) is registered by both roles on their own registry.
//!
//! The figures are set by the drivers where the events happen (`calls::incall`, `routing`,
//! `media_node`); what they are computed from is in the cores (e.g. `incall::core::PrintBacklog`).
//! `docs/monitoring.md` lists every metric with its labels.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
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
    /// `sportello_certificates_issued_total{kind}`: certificates issued, by kind code (one of
    /// `CertificateKind::ALL`).
    pub certificates_issued: IntCounterVec,
    /// `sportello_certificate_failures_total{reason}`: issues that failed on the server's side
    /// (`registry`, `signing`, `pdf`, `audit`, `io`, `storage`, `internal`); a refused request (bad
    /// input, not issuable, not allowed) is not a failure.
    pub certificate_failures: IntCounterVec,
    /// `sportello_audit_chain_ok`: 1 when the last check of the audit log's hash chain passed, 0
    /// when it found the chain broken (or an append found it tampered).
    pub audit_chain_ok: IntGauge,
    /// `sportello_audit_records`: records in the audit log at the last verification.
    pub audit_records: IntGauge,
    /// `sportello_audit_last_verification_timestamp_seconds`: when the chain was last verified
    /// (Unix time), whatever the outcome.
    pub audit_verified_at: Gauge,
    /// `sportello_print_jobs_pending{state}`: print jobs not printed yet, by their last reported
    /// state (`unacknowledged`, `received`, `printing`, `failed`). Tenant-wide: every node
    /// reports the same figures.
    pub print_pending: IntGaugeVec,
    /// `sportello_print_oldest_pending_seconds`: age of the oldest print job not printed yet (0
    /// when there is none).
    pub print_oldest: IntGauge,
}

/// The label values of `sportello_print_jobs_pending`.
pub const PRINT_STATES: [&str; 4] = ["unacknowledged", "received", "printing", "failed"];

/// The `reason` label values of `sportello_certificate_failures_total`.
pub const CERTIFICATE_FAILURES: [&str; 7] = [
    "registry", "signing", "pdf", "audit", "io", "storage", "internal",
];

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
        let certificates_issued = IntCounterVec::new(
            Opts::new(
                "sportello_certificates_issued_total",
                "Certificates issued, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        // Every kind from zero, so a rate over the kinds is defined before the first issue.
        for kind in certificates::CertificateKind::ALL {
            certificates_issued.with_label_values(&[kind.code()]);
        }
        let certificate_failures = IntCounterVec::new(
            Opts::new(
                "sportello_certificate_failures_total",
                "Certificate issues that failed on the server's side (registry, signing, pdf, \
                 audit, io, storage, internal).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in CERTIFICATE_FAILURES {
            certificate_failures.with_label_values(&[reason]);
        }
        let audit_chain_ok = IntGauge::new(
            "sportello_audit_chain_ok",
            "1 when the last check of the audit log's hash chain passed, 0 when it is broken.",
        )
        .expect("valid metric");
        // The chain was verified when the certificates service opened (a broken one stops the
        // start), so it holds until a check says otherwise.
        audit_chain_ok.set(1);
        let audit_records = IntGauge::new(
            "sportello_audit_records",
            "Records in the audit log at the last verification.",
        )
        .expect("valid metric");
        let audit_verified_at = Gauge::new(
            "sportello_audit_last_verification_timestamp_seconds",
            "When the audit chain was last verified (Unix time).",
        )
        .expect("valid metric");
        let print_pending = IntGaugeVec::new(
            Opts::new(
                "sportello_print_jobs_pending",
                "Print jobs not printed yet, by last reported state.",
            ),
            &["state"],
        )
        .expect("valid metric");
        for state in PRINT_STATES {
            print_pending.with_label_values(&[state]);
        }
        let print_oldest = IntGauge::new(
            "sportello_print_oldest_pending_seconds",
            "Age of the oldest print job not printed yet (0 when none).",
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(ws_sessions.clone()),
            Box::new(ws_frames.clone()),
            Box::new(ws_closes.clone()),
            Box::new(ws_requests.clone()),
            Box::new(logins.clone()),
            Box::new(build),
            Box::new(certificates_issued.clone()),
            Box::new(certificate_failures.clone()),
            Box::new(audit_chain_ok.clone()),
            Box::new(audit_records.clone()),
            Box::new(audit_verified_at.clone()),
            Box::new(print_pending.clone()),
            Box::new(print_oldest.clone()),
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
            certificates_issued,
            certificate_failures,
            audit_chain_ok,
            audit_records,
            audit_verified_at,
            print_pending,
            print_oldest,
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

/// Whether the shared store (Redis) answers, as seen by the store operations a node runs on a
/// timer: `sportello_redis_up`, `sportello_redis_errors_total{op}` and
/// `sportello_redis_operation_duration_seconds{op}`. Registered only when the store is Redis.
#[derive(Clone)]
pub struct StoreMetrics {
    up: IntGauge,
    errors: IntCounterVec,
    duration: HistogramVec,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

/// The `op` label values of the store metrics: the queue's timer (`tick`, `heartbeat`,
/// `snapshot`) and a media node's record (`node_heartbeat`).
pub const STORE_OPS: [&str; 4] = ["tick", "heartbeat", "snapshot", "node_heartbeat"];

impl StoreMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let up = IntGauge::new(
            "sportello_redis_up",
            "1 when Redis answered the node's last timed store operation, 0 when it did not.",
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "sportello_redis_errors_total",
                "Store operations Redis did not answer (connection, timeout), by operation.",
            ),
            &["op"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sportello_redis_operation_duration_seconds",
                "Time of the store operations on Redis, by operation (one or a few round trips).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["op"],
        )?;
        for op in STORE_OPS {
            errors.with_label_values(&[op]);
        }
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        // The store answered when the node opened it.
        up.set(1);
        Ok(StoreMetrics {
            up,
            errors,
            duration,
        })
    }

    /// Records one operation `op` (one of [`STORE_OPS`]): its outcome and how long it took.
    pub fn record(&self, op: &str, ok: bool, took: std::time::Duration) {
        self.up.set(i64::from(ok));
        if !ok {
            self.errors.with_label_values(&[op]).inc();
        }
        self.duration
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_metrics_start_at_zero_so_rates_and_alerts_see_them() {
        let text = Metrics::new().render();
        for line in [
            "sportello_certificates_issued_total{kind=\"residenza\"} 0",
            "sportello_certificate_failures_total{reason=\"signing\"} 0",
            "sportello_print_jobs_pending{state=\"unacknowledged\"} 0",
            "sportello_print_oldest_pending_seconds 0",
            "sportello_audit_chain_ok 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(
            text.matches("sportello_certificates_issued_total{").count(),
            certificates::CertificateKind::ALL.len()
        );
    }

    #[test]
    fn store_operations_set_redis_up_count_errors_and_time() {
        let registry = Registry::new();
        let m = StoreMetrics::register(&registry).unwrap();
        assert_eq!(m.up.get(), 1, "the store answered when it was opened");
        m.record("tick", false, std::time::Duration::from_millis(3));
        assert_eq!(m.up.get(), 0);
        assert_eq!(m.errors.with_label_values(&["tick"]).get(), 1);
        m.record("tick", true, std::time::Duration::from_millis(1));
        assert_eq!(m.up.get(), 1);
        assert_eq!(m.errors.with_label_values(&["tick"]).get(), 1);
        let timed = m.duration.with_label_values(&["tick"]);
        assert_eq!(timed.get_sample_count(), 2);
        assert!(
            StoreMetrics::register(&registry).is_err(),
            "registered once"
        );
    }
}
