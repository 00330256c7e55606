//! The report of a load run: `report.json` (every figure), `report.md` (the same as tables) and
//! `report.svg` ([`crate::chart`]), plus the one-line JSON of headline figures printed last.
//!
//! Definitions:
//! - `wait_s`: `call.request` → `call.assigned` at the kiosk, answered calls (first answer).
//! - `join_ms`: `call.request` → both ends receiving the other's video (the first packet of the
//!   synthetic stream is its first frame); `join_after_accept_ms` from the operator's accept.
//! - `latency_ms`: one-way, send time in the payload → arrival at the receiver's socket, over
//!   every video packet of both directions (and per direction).
//! - `loss_ratio`: video sequence numbers still missing at the end ÷ expected, both directions.
//! - `service_level`: answered within the threshold ÷ (answered + abandoned after it), as the
//!   server defines it (`docs/design/queue.md`).
//! - `ewt_error_median`: median over answered calls told an estimate of
//!   `|estimate − wait| / max(wait, 10 s)`, as the EWT bench defines it.
//! - `server.cpu_per_call_pct`: the server's CPU seconds over the run ÷ the seconds of media
//!   conversations, in percent of one core: what one call in progress costs.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::run::{CallRecord, Counts, Direction, Ledger, LoadArgs, MediaResult};
use crate::server::{Scrape, Usage};
use crate::stats::{Quantiles, Samples};
use protocol::MetricsSnapshot;

/// The relative error of an estimate divides by at least this many seconds.
const EWT_FLOOR_S: f64 = 10.0;

/// One sample of the run's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimePoint {
    /// Seconds since the start.
    pub t_s: f64,
    /// Calls waiting for an answer.
    pub waiting: usize,
    /// Calls in conversation.
    pub in_conversation: usize,
    /// Calls answered so far.
    pub answered: u64,
    /// p95 of the waits so far.
    pub wait_p95_s: Option<f64>,
    /// The server's CPU over the last second, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// The server's resident memory.
    pub server_rss_mib: Option<f64>,
}

/// What the server's process and metrics said.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerFigures {
    /// CPU seconds over the run.
    pub cpu_s: Option<f64>,
    /// Largest resident set sampled.
    pub rss_mib_max: Option<f64>,
    /// CPU per call in progress, percent of one core.
    pub cpu_per_call_pct: Option<f64>,
    /// RTP packets received by the SFU over the run.
    pub packets_in: Option<f64>,
    /// RTP packets forwarded.
    pub packets_forwarded: Option<f64>,
    /// RTP payload bytes forwarded.
    pub bytes_forwarded: Option<f64>,
    /// Times the SFU's forwarding loops woke up (datagrams, timers, commands), all loops.
    pub loop_wakeups: Option<f64>,
}

impl ServerFigures {
    /// From the usage before and after and the metrics before and after (CPU per call is filled
    /// in by [`Report::build`]).
    pub fn from_samples(
        before: Option<Usage>,
        after: Option<Usage>,
        timeline: &[TimePoint],
        prom_before: Option<&Scrape>,
        prom_after: Option<&Scrape>,
    ) -> ServerFigures {
        let delta_of = |name: &str, filter: &[(&str, &str)]| {
            let (b, a) = (prom_before?, prom_after?);
            a.has(name)
                .then(|| a.sum(name, filter) - b.sum(name, filter))
        };
        let delta = |name: &str, direction: &str| delta_of(name, &[("direction", direction)]);
        let rss = timeline
            .iter()
            .filter_map(|p| p.server_rss_mib)
            .chain(after.map(|u| u.rss_mib))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        ServerFigures {
            cpu_s: before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s),
            rss_mib_max: rss,
            cpu_per_call_pct: None,
            packets_in: delta("sportello_media_rtp_packets_total", "in"),
            packets_forwarded: delta("sportello_media_rtp_packets_total", "out"),
            bytes_forwarded: delta("sportello_media_rtp_bytes_total", "out"),
            loop_wakeups: delta_of("sportello_media_loop_wakeups_total", &[]),
        }
    }
}

/// What [`Report::build`] needs.
pub struct Inputs<'a> {
    /// The load's parameters.
    pub load: LoadArgs,
    /// What the bots saw.
    pub ledger: &'a Ledger,
    /// The server's figures.
    pub server: ServerFigures,
    /// Its metrics before and after.
    pub prom: Option<(&'a Scrape, &'a Scrape)>,
    /// The supervisor's snapshots before and after.
    pub snapshots: Option<(&'a MetricsSnapshot, &'a MetricsSnapshot)>,
    /// The timeline.
    pub timeline: Vec<TimePoint>,
    /// Seconds of arrivals.
    pub arrivals_s: f64,
    /// Seconds until the last call ended.
    pub run_s: f64,
}

/// Call counts: what the bots did, and the most calls in conversation at once.
#[derive(Debug, Clone, Serialize)]
pub struct CallCounts {
    /// The bots' counts.
    #[serde(flatten)]
    pub bots: Counts,
    /// Most calls in conversation at once (sampled each second).
    pub concurrent_max: usize,
}

/// Latency figures.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median, ms.
    pub p50: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// Kiosk → operator.
    pub kiosk_to_operator: Quantiles,
    /// Operator → kiosk.
    pub operator_to_kiosk: Quantiles,
}

/// The comparison of the bots' counts with the server's.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Every compared count is equal.
    pub matches: bool,
    /// Each comparison: source, count, ours, theirs.
    pub rows: Vec<CheckRow>,
    /// Why something could not be compared.
    pub notes: Vec<String>,
}

/// One compared count.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// `sportello_calls_total` or `metrics.snapshot`.
    pub source: String,
    /// The count.
    pub count: String,
    /// The bots' count.
    pub ours: u64,
    /// The server's (difference over the run).
    pub server: u64,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The load's parameters.
    pub scenario: Value,
    /// Counts.
    pub calls: CallCounts,
    /// Waits, seconds.
    pub wait_s: Quantiles,
    /// Joins, ms.
    pub join_ms: Quantiles,
    /// Joins from the accept, ms.
    pub join_after_accept_ms: Quantiles,
    /// One-way latency.
    pub latency_ms: Latency,
    /// Video loss, both directions.
    pub loss_ratio: Option<f64>,
    /// Received bitrate per side of a call, kbit/s.
    pub kbps: Option<f64>,
    /// Service level.
    pub service_level: Option<f64>,
    /// Median relative error of the estimated wait.
    pub ewt_error_median: Option<f64>,
    /// Calls told an estimate and answered (the EWT figure's sample).
    pub ewt_samples: usize,
    /// `certificate.issue` → printed, ms.
    pub print_ms: Quantiles,
    /// The server's figures.
    pub server: ServerFigures,
    /// Counts against the server's.
    pub check: Check,
    /// Errors the bots met (count and the first messages).
    pub errors: Value,
    /// Seconds of arrivals and of the whole run.
    pub duration_s: Value,
    /// The timeline.
    pub timeline: Vec<TimePoint>,
    /// Every call, in request order.
    pub call_list: Vec<Value>,
    /// Per call: answered at (s), wait (s); ended at (s), latency p99 (ms).
    #[serde(skip)]
    pub points: Points,
}

/// Per-call points for the chart.
#[derive(Debug, Clone, Default)]
pub struct Points {
    /// (answered at, wait) seconds.
    pub waits: Vec<(f64, f64)>,
    /// (conversation ended at s, latency p99 ms).
    pub latencies: Vec<(f64, f64)>,
}

fn media_of(
    results: &[(Direction, std::time::Instant, MediaResult)],
    d: Option<Direction>,
) -> Samples {
    Samples::new(
        results
            .iter()
            .filter(|(dir, _, _)| d.is_none_or(|d| *dir == d))
            .flat_map(|(_, _, r)| r.latencies_ms.iter().copied()),
    )
}

impl Report {
    /// Computes every figure.
    pub fn build(inputs: Inputs<'_>) -> Report {
        let ledger = inputs.ledger;
        let records = ledger.records();
        let counts = ledger.counts();
        let media = ledger.media_results();
        let threshold = inputs.load.sl_threshold_s;

        let waits = Samples::new(records.iter().filter_map(CallRecord::wait_s));
        let joins = Samples::new(records.iter().filter_map(CallRecord::join_ms));
        let joins_accept =
            Samples::new(records.iter().filter_map(CallRecord::join_after_accept_ms));
        let all = media_of(&media, None);
        let k2o = media_of(&media, Some(Direction::KioskToOperator));
        let o2k = media_of(&media, Some(Direction::OperatorToKiosk));
        let expected: u64 = media.iter().map(|(_, _, r)| r.expected).sum();
        let lost: u64 = media.iter().map(|(_, _, r)| r.lost).sum();
        let bytes: u64 = media.iter().map(|(_, _, r)| r.bytes).sum();
        let side_secs: f64 = media.iter().map(|(_, _, r)| r.secs).sum();
        // Call-seconds of media: the kiosk's side of each conversation.
        let call_secs: f64 = media
            .iter()
            .filter(|(d, _, _)| *d == Direction::OperatorToKiosk)
            .map(|(_, _, r)| r.secs)
            .sum();

        let good = records
            .iter()
            .filter(|r| r.wait_s().is_some_and(|w| w <= threshold))
            .count();
        let answered = records.iter().filter(|r| r.answered.is_some()).count();
        let late_abandons = records
            .iter()
            .filter(|r| r.abandoned && r.answered.is_none())
            .filter(|r| r.plan.patience.is_some_and(|p| p.as_secs_f64() > threshold))
            .count();
        let sl_den = answered + late_abandons;
        let service_level = if records.is_empty() {
            None
        } else if sl_den == 0 {
            Some(1.0)
        } else {
            Some(good as f64 / sl_den as f64)
        };
        let ewt_errors = Samples::new(records.iter().filter_map(|r| {
            let est = r.first_estimate_s? as f64;
            let wait = r.wait_s()?;
            Some((est - wait).abs() / wait.max(EWT_FLOOR_S))
        }));

        let mut server = inputs.server;
        server.cpu_per_call_pct = server
            .cpu_s
            .filter(|_| call_secs > 0.0)
            .map(|cpu| cpu / call_secs * 100.0);

        let mut points = Points::default();
        for r in &records {
            if let (Some(a), Some(w)) = (r.answered, r.wait_s()) {
                points.waits.push((ledger.at(a), w));
            }
        }
        for (_, at, r) in &media {
            if let Some(p99) = Samples::new(r.latencies_ms.iter().copied()).quantile(0.99) {
                points.latencies.push((ledger.at(*at), p99));
            }
        }
        points.waits.sort_by(|a, b| a.0.total_cmp(&b.0));
        points.latencies.sort_by(|a, b| a.0.total_cmp(&b.0));

        let mut sorted: Vec<&CallRecord> = records.iter().collect();
        sorted.sort_by_key(|r| r.requested);
        let call_list = sorted
            .iter()
            .map(|r| {
                json!({
                    "index": r.plan.index,
                    "kiosk": r.kiosk,
                    "requested_s": ledger.at(r.requested),
                    "wait_s": r.wait_s(),
                    "join_ms": r.join_ms(),
                    "first_estimate_s": r.first_estimate_s,
                    "ended_s": r.ended.as_ref().map(|(at, _)| ledger.at(*at)),
                    "end_reason": r.ended.as_ref().map(|(_, why)| why.clone()),
                    "handle_s": r.plan.handle.as_secs_f64(),
                    "abandoned": r.abandoned,
                    "held": r.held,
                    "transferred": r.transferred,
                    "certificate": r.certificate,
                    "printed": r.printed,
                })
            })
            .collect();
        let check = check(&counts, inputs.prom, inputs.snapshots);
        let (error_count, error_list) = ledger.errors();
        let print_ms = Samples::new(records.iter().filter_map(|r| r.print_ms));
        let concurrent_max = inputs
            .timeline
            .iter()
            .map(|p| p.in_conversation)
            .max()
            .unwrap_or(0);
        Report {
            scenario: scenario_json(&inputs.load),
            calls: CallCounts {
                bots: counts.clone(),
                concurrent_max,
            },
            wait_s: waits.summary(),
            join_ms: joins.summary(),
            join_after_accept_ms: joins_accept.summary(),
            latency_ms: Latency {
                p50: all.quantile(0.5),
                p99: all.quantile(0.99),
                kiosk_to_operator: k2o.summary(),
                operator_to_kiosk: o2k.summary(),
            },
            loss_ratio: (expected > 0).then(|| lost as f64 / expected as f64),
            kbps: (side_secs > 0.0).then(|| bytes as f64 * 8.0 / side_secs / 1000.0),
            service_level,
            ewt_error_median: ewt_errors.quantile(0.5),
            ewt_samples: ewt_errors.len(),
            print_ms: print_ms.summary(),
            server,
            check,
            errors: json!({"count": error_count, "first": error_list}),
            duration_s: json!({"arrivals": inputs.arrivals_s, "run": inputs.run_s}),
            timeline: inputs.timeline,
            call_list,
            points,
        }
    }

    /// The headline figures as one JSON object (the last line a load program prints).
    pub fn headline_json(&self) -> String {
        json!({
            "calls_offered": self.calls.bots.offered,
            "calls_answered": self.calls.bots.answered,
            "calls_abandoned": self.calls.bots.abandoned,
            "concurrent_max": self.calls.concurrent_max,
            "wait_s_p95": self.wait_s.p95,
            "join_ms_p50": self.join_ms.p50,
            "join_ms_p95": self.join_ms.p95,
            "join_after_accept_ms_p50": self.join_after_accept_ms.p50,
            "latency_ms_p99": self.latency_ms.p99,
            "loss_ratio": self.loss_ratio,
            "kbps": self.kbps,
            "service_level": self.service_level,
            "ewt_error_median": self.ewt_error_median,
            "server_cpu_per_call_pct": self.server.cpu_per_call_pct,
            "server_rss_mib_max": self.server.rss_mib_max,
            "counts_match": self.check.matches,
        })
        .to_string()
    }

    /// One human line.
    pub fn summary_line(&self) -> String {
        let f = |x: Option<f64>, d: usize| x.map_or("-".to_owned(), |x| format!("{x:.d$}"));
        format!(
            "loadtest: {} offered, {} answered, {} abandoned; wait p95 {} s; join p95 {} ms; \
             latency p99 {} ms; loss {}; server CPU per call {}%; counts {}",
            self.calls.bots.offered,
            self.calls.bots.answered,
            self.calls.bots.abandoned,
            f(self.wait_s.p95, 2),
            f(self.join_ms.p95, 0),
            f(self.latency_ms.p99, 1),
            f(self.loss_ratio, 4),
            f(self.server.cpu_per_call_pct, 2),
            if self.check.matches {
                "match the server's"
            } else {
                "DIFFER from the server's"
            }
        )
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let f = |x: Option<f64>, d: usize| x.map_or("–".to_owned(), |x| format!("{x:.d$}"));
        let q = |x: &Quantiles, d: usize| {
            format!(
                "{} / {} / {} (n = {})",
                f(x.p50, d),
                f(x.p95, d),
                f(x.p99, d),
                x.n
            )
        };
        let c = &self.calls.bots;
        let mut md = String::from("# Load run\n\n");
        md.push_str(&format!(
            "Scenario: `{}`\n\n",
            serde_json::to_string(&self.scenario).unwrap_or_default()
        ));
        md.push_str("## Calls\n\n| count | value |\n|---|---|\n");
        for (name, v) in [
            ("offered", c.offered),
            ("answered", c.answered),
            ("abandoned", c.abandoned),
            ("transferred", c.transferred),
            ("completed", c.completed),
            ("held", c.held),
            ("certificates issued", c.certificates),
            ("prints acknowledged", c.printed),
            ("blocked (every kiosk busy)", c.blocked),
            (
                "most in conversation at once",
                self.calls.concurrent_max as u64,
            ),
        ] {
            md.push_str(&format!("| {name} | {v} |\n"));
        }
        md.push_str("\n## Figures\n\n| figure | value |\n|---|---|\n");
        let rows = [
            ("wait, s, p50 / p95 / p99", q(&self.wait_s, 2)),
            (
                "join (request → both see video), ms, p50 / p95 / p99",
                q(&self.join_ms, 0),
            ),
            (
                "join from the accept, ms, p50 / p95 / p99",
                q(&self.join_after_accept_ms, 0),
            ),
            (
                "one-way latency, ms, p50 / p99",
                format!(
                    "{} / {}",
                    f(self.latency_ms.p50, 2),
                    f(self.latency_ms.p99, 2)
                ),
            ),
            (
                "latency kiosk → operator, ms, p50 / p95 / p99",
                q(&self.latency_ms.kiosk_to_operator, 2),
            ),
            (
                "latency operator → kiosk, ms, p50 / p95 / p99",
                q(&self.latency_ms.operator_to_kiosk, 2),
            ),
            ("video loss ratio", f(self.loss_ratio, 5)),
            ("received kbit/s per side", f(self.kbps, 0)),
            ("service level", f(self.service_level, 3)),
            (
                "estimated-wait median error",
                format!("{} (n = {})", f(self.ewt_error_median, 3), self.ewt_samples),
            ),
            (
                "certificate issued → printed, ms, p50 / p95 / p99",
                q(&self.print_ms, 0),
            ),
            ("server CPU over the run, s", f(self.server.cpu_s, 2)),
            (
                "server CPU per call in progress, % of a core",
                f(self.server.cpu_per_call_pct, 2),
            ),
            ("server RSS max, MiB", f(self.server.rss_mib_max, 1)),
            (
                "RTP packets received / forwarded by the SFU",
                format!(
                    "{} / {}",
                    f(self.server.packets_in, 0),
                    f(self.server.packets_forwarded, 0)
                ),
            ),
            (
                "RTP payload bytes forwarded",
                f(self.server.bytes_forwarded, 0),
            ),
            (
                "SFU loop wake-ups (per RTP packet received)",
                format!(
                    "{} ({})",
                    f(self.server.loop_wakeups, 0),
                    f(
                        self.server
                            .loop_wakeups
                            .zip(self.server.packets_in)
                            .filter(|(_, p)| *p > 0.0)
                            .map(|(w, p)| w / p),
                        2
                    )
                ),
            ),
        ];
        for (name, v) in rows {
            md.push_str(&format!("| {name} | {v} |\n"));
        }
        md.push_str(&format!(
            "\n## Counts against the server's\n\n{}\n\n| source | count | ours | server |\n|---|---|---|---|\n",
            if self.check.matches {
                "Every count equals the server's."
            } else {
                "**Some counts differ from the server's.**"
            }
        ));
        for r in &self.check.rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.source, r.count, r.ours, r.server
            ));
        }
        for note in &self.check.notes {
            md.push_str(&format!("\n- {note}"));
        }
        md.push_str(&format!("\n\nErrors: {}\n", self.errors));
        md
    }
}

fn scenario_json(load: &LoadArgs) -> Value {
    let shape = load.shape();
    json!({
        "kiosks": load.kiosks,
        "operators": load.operators,
        "duration_s": load.duration,
        "seed": load.seed,
        "rate_per_s": shape.rate_per_s,
        "handle_mean_s": load.handle_mean_s,
        "handle_cv": load.handle_cv,
        "abandon": load.abandon,
        "patience_mean_s": load.patience_mean_s,
        "hold": load.hold,
        "transfer": load.transfer,
        "certificate": load.certificate,
        "service": load.service,
        "language": load.language,
        "accept_delay_ms": load.accept_delay_ms,
        "wrapup_s": load.wrapup_s,
    })
}

/// The bots' counts against `sportello_calls_total` and `metrics.snapshot` (differences over the run).
fn check(
    ours: &crate::run::Counts,
    prom: Option<(&Scrape, &Scrape)>,
    snapshots: Option<(&MetricsSnapshot, &MetricsSnapshot)>,
) -> Check {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    match prom {
        Some((before, after)) => {
            let d = |outcome: &str| {
                let f = [("outcome", outcome)];
                (after.sum("sportello_calls_total", &f) - before.sum("sportello_calls_total", &f))
                    .round()
                    .max(0.0) as u64
            };
            for (count, mine, theirs) in [
                ("offered", ours.offered, d("offered")),
                ("answered", ours.answered, d("answered")),
                (
                    "abandoned (+ short)",
                    ours.abandoned,
                    d("abandoned") + d("abandoned_short"),
                ),
                ("transferred", ours.transferred, d("transferred")),
                ("handled", ours.completed, d("handled")),
            ] {
                rows.push(CheckRow {
                    source: "sportello_calls_total".into(),
                    count: count.into(),
                    ours: mine,
                    server: theirs,
                });
            }
        }
        None => notes.push("no metrics URL: sportello_calls_total not compared".into()),
    }
    match snapshots {
        Some((before, after)) => {
            let sum = |s: &MetricsSnapshot, f: fn(&protocol::ServiceMetrics) -> u64| -> u64 {
                s.services.iter().map(f).sum()
            };
            let d = |f: fn(&protocol::ServiceMetrics) -> u64| {
                sum(after, f).saturating_sub(sum(before, f))
            };
            if before.at.get(..10) != after.at.get(..10) {
                notes
                    .push("the run crossed midnight: the snapshot's daily counts restarted".into());
            }
            for (count, mine, theirs) in [
                ("offered", ours.offered, d(|s| s.offered)),
                ("answered", ours.answered, d(|s| s.answered)),
                (
                    "abandoned (+ short)",
                    ours.abandoned,
                    d(|s| s.abandoned + s.abandoned_short),
                ),
                ("transferred", ours.transferred, d(|s| s.transferred)),
            ] {
                rows.push(CheckRow {
                    source: "metrics.snapshot".into(),
                    count: count.into(),
                    ours: mine,
                    server: theirs,
                });
            }
        }
        None => notes.push("no supervisor account: metrics.snapshot not compared".into()),
    }
    Check {
        matches: !rows.is_empty() && rows.iter().all(|r| r.ours == r.server),
        rows,
        notes,
    }
}

/// Writes report.json, report.md and report.svg into `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json + "\n")?;
    std::fs::write(dir.join("report.md"), report.markdown())?;
    crate::chart::draw(&dir.join("report.svg"), report)?;
    Ok(())
}
