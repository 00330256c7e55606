//! The reported figures ([`FIGURES`]): per figure its benchmark, its key in the JSON, what it is,
//! its unit and its target; and reading a figure's value out of a benchmark's JSON.

use serde_json::{Map, Value};
use Target::{AtLeast, AtMost, Below};

/// Where a figure is in a benchmark's JSON.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key {
    /// A key, `a/b` for `{"a":{"b":…}}`.
    Path(&'static str),
    /// The ratio of two keys' numbers.
    Ratio(&'static str, &'static str),
}

/// A target: the measured value must be…
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    /// `true`.
    True,
}

/// One reported figure.
#[derive(Debug, Clone, Copy)]
pub(super) struct Figure {
    /// The [`Bench::name`](super::programs::Bench::name) that prints it.
    pub(super) bench: &'static str,
    pub(super) key: Key,
    pub(super) what: &'static str,
    /// Shown after the measured value and the target (` ms`, `/s`…).
    pub(super) unit: &'static str,
    pub(super) target: Option<Target>,
}

const fn fig(
    bench: &'static str,
    key: &'static str,
    what: &'static str,
    unit: &'static str,
    target: Option<Target>,
) -> Figure {
    Figure {
        bench,
        key: Key::Path(key),
        what,
        unit,
        target,
    }
}

/// A figure that is the ratio of two keys of `bench`'s JSON.
const fn ratio(
    bench: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    what: &'static str,
    target: Option<Target>,
) -> Figure {
    Figure {
        bench,
        key: Key::Ratio(numerator, denominator),
        what,
        unit: "",
        target,
    }
}

/// The figures of every benchmark, with their targets (`docs/design/targets.md`, and the goals of
/// issue 19 where they are stricter or new: stamps, the Redis ratio, the load run). One line each:
/// benchmark, key, what, unit, target.
#[rustfmt::skip]
pub(super) const FIGURES: &[Figure] = &[
    // SFU forwarding (`loadtest forward`).
    fig("forward", "sfu_pps_per_core", "SRTP packets forwarded per second per core of the SFU", "/s", Some(AtLeast(100_000.0))),
    fig("forward", "relay_pps_per_core", "plain recvmmsg/sendmmsg relay, packets per second per core (reference)", "/s", None),
    ratio("forward", "sfu_pps_per_core", "relay_pps_per_core", "SFU forwarding as a fraction of the plain relay", Some(AtLeast(0.5))),
    fig("forward", "latency_p99_ms", "latency added by the SFU at 50% load, p99", " ms", Some(Below(1.0))),
    fig("forward", "relay_latency_p99_ms", "latency added by the plain relay, p99 (reference)", " ms", None),
    fig("forward", "memory_per_call_kib", "memory per active call", " KiB", Some(Below(1024.0))),
    fig("forward", "cpu_per_call_pct", "SFU CPU per call, 50 calls at kiosk rates in one loop (the server's goal: ≤ 0.5%)", "% of a core", None),
    fig("forward", "relay_wakeup_us", "plain relay woken for every datagram, CPU per datagram (reference: the floor of a wake-up)", " µs", None),
    fig("forward", "latency_machine_busy", "the whole machine during the latency phase (≥ 0.8: saturated by the load generator)", " of all cores", None),
    // Queue.
    // The goals are on 50 callers at once on one tenant (issue 19), as `-c 50` has 50 clients; one
    // client is bound by a round trip per decision and is reported.
    fig("routing", "redis_c50_decisions_per_s", "routing decisions per second, Redis store, 50 callers on one tenant", "/s", Some(AtLeast(20_000.0))),
    fig("routing", "redis_benchmark_evalsha_per_s", "`redis-benchmark -c 50` EVALSHA of an INCR script, same run (reference)", "/s", None),
    fig("routing", "redis_c50_to_evalsha_ratio", "Redis routing, 50 callers, as a fraction of EVALSHA `-c 50`", "", Some(AtLeast(0.25))),
    fig("routing", "redis_decisions_per_s", "routing decisions per second, Redis store, one client", "/s", None),
    fig("routing", "memory_decisions_per_s", "routing decisions per second, memory store", "/s", None),
    fig("routing", "memory_backlog_op_us", "a queue operation with 30 calls waiting behind 20 busy operators, memory store (every wait re-estimated)", " µs", None),
    fig("offer_latency", "memory_offer_p99_ms", "offer-eligible → offer delivered, memory store, p99 (worse scenario)", " ms", Some(Below(5.0))),
    fig("offer_latency", "redis_offer_p99_ms", "offer-eligible → offer delivered, Redis store, p99 (worse scenario)", " ms", Some(Below(10.0))),
    fig("ewt", "median_error/0.6", "estimated wait, median relative error at utilisation 0.6", "", Some(Below(0.25))),
    fig("ewt", "median_error/0.8", "estimated wait, median relative error at utilisation 0.8", "", Some(Below(0.25))),
    fig("ewt", "median_error/0.95", "estimated wait, median relative error at utilisation 0.95", "", Some(Below(0.25))),
    // The call history (SQLite, the embedded default).
    fig("history", "record_ns", "recording one history event on a call's path (channel send)", " ns", Some(Below(5_000.0))),
    fig("history", "write_per_call_us", "a call's history written through the outbox into SQLite, per call", " µs", Some(Below(2_000.0))),
    fig("history", "month_report_ms", "a month's calls report by day over 100,000 calls", " ms", Some(Below(1_000.0))),
    fig("history", "month_report_by_operator_ms", "the same by operator", " ms", Some(Below(1_000.0))),
    fig("history", "certificates_report_ms", "the month's certificates report by kind", " ms", Some(Below(1_000.0))),
    // Server.
    fig("sessions", "startup_fresh_ms", "start-up to ready, fresh data directory (median)", " ms", Some(Below(1000.0))),
    fig("sessions", "startup_existing_ms", "start-up to ready, existing data directory (median)", " ms", Some(Below(1000.0))),
    fig("sessions", "idle_session_kib", "server memory per idle WebSocket session", " KiB", Some(Below(30.0))),
    fig("sessions", "request_reply_p99_ms", "request → reply with the active sessions, p99", " ms", Some(Below(5.0))),
    fig("calls", "memory_offered_p99_ms", "`call.request` → `call.offered` over the wire, memory store, p99", " ms", Some(Below(5.0))),
    fig("calls", "redis_offered_p99_ms", "`call.request` → `call.offered` over the wire, Redis store, p99", " ms", Some(Below(10.0))),
    fig("call_cost", "engine_cpu_per_call_pct/1", "the SFU engine alone (sans-I/O harness), CPU per call, 1 call", "% of a core", None),
    fig("call_cost", "engine_cpu_per_call_pct/25", "the SFU engine alone (sans-I/O harness), CPU per call, 25 calls", "% of a core", None),
    fig("medianode_offer", "internal_hop_p50_ms", "extra latency of a media node's internal API, median", " ms", None),
    // Certificates (criterion's estimates, not percentiles).
    fig("certificates", "stamps_signed_per_s", "stamps signed per second per core (family of 8)", "/s", Some(AtLeast(20_000.0))),
    fig("certificates", "stamp_verify_us", "verifying a stamp from text (criterion's estimate)", " µs", Some(Below(1000.0))),
    fig("certificates", "issue_residenza_ms", "issue a residenza (criterion's estimate; the target is on the p99)", " ms", Some(Below(20.0))),
    fig("certificates", "issue_stato_famiglia_8_ms", "issue a stato di famiglia of 8 (criterion's estimate; the target is on the p99)", " ms", Some(Below(20.0))),
    // The standard load scenario (`loadtest run`).
    // targets.md's join is with an operator available and accepting at once; this scenario's
    // calls also wait in the queue (12 kiosks for 4 operators), so the join is timed from the
    // accept, and the whole `call.request` → media is reported beside it.
    fig("load", "join_after_accept_ms_p50", "operator's accept → both sides receiving video, p50 (targets.md: call → video with an operator available)", " ms", Some(Below(250.0))),
    fig("load", "join_ms_p95", "call → both sides in the call, p95, the wait in the queue included", " ms", None),
    fig("load", "loss_ratio", "media packet loss", "", Some(AtMost(0.01))),
    fig("load", "latency_ms_p99", "media latency, p99", " ms", Some(AtMost(150.0))),
    fig("load", "server_cpu_per_call_pct", "server CPU per call", "% of a core", Some(AtMost(0.5))),
    fig("load", "counts_match", "every call counted once on both sides", "", Some(Target::True)),
    // Capacity and the Janus comparison report figures without targets.
    fig("capacity", "max_calls", "largest load that held every objective", " calls", None),
    fig("janus", "ratios/cpu_per_call_pct", "server CPU per call, ours ÷ Janus", "", Some(AtMost(0.2))),
    fig("janus", "ratios/join_ms_p50", "headless join p50, ours ÷ Janus", "", Some(Below(1.0))),
    fig("janus", "browser/ratios/cpu_per_call_pct", "Chromium 1:1 call: server CPU per call, ours ÷ Janus", "", Some(AtMost(0.2))),
    fig("janus", "browser/ratios/join_first_frame_ms", "Chromium 1:1 call: join to the first decoded frame, ours ÷ Janus", "", Some(Below(1.0))),
    fig("janus", "browser/ratios/join_10_frames_ms", "Chromium 1:1 call: join to 10 decoded frames, ours ÷ Janus", "", Some(Below(1.0))),
];

/// The value at `a/b/…` in `map`: a top-level key spelt so (`call_cost` prints flat keys like
/// `engine_cpu_per_call_pct/1`), else the nested objects.
pub(super) fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut parts = path.split('/');
    let mut value = map.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// Every leaf of `map` as (`a/b/…`, value), in the JSON's order.
pub(super) fn leaves(map: &Map<String, Value>) -> Vec<(String, &Value)> {
    fn walk<'a>(prefix: &str, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}/{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => out.push((prefix.to_owned(), value)),
        }
    }
    let mut out = Vec::new();
    for (k, v) in map {
        walk(k, v, &mut out);
    }
    out
}

/// A figure's value: a number, or the ratio of two.
pub(super) fn value_of(figures: &Map<String, Value>, key: Key) -> Value {
    match key {
        Key::Path(path) => lookup(figures, path).cloned().unwrap_or(Value::Null),
        Key::Ratio(a, b) => {
            let num = |k| lookup(figures, k).and_then(Value::as_f64);
            match (num(a), num(b)) {
                (Some(a), Some(b)) if b != 0.0 => serde_json::json!(a / b),
                _ => Value::Null,
            }
        }
    }
}
