//! The history's costs: what recording a call costs the server, and how long a month's report
//! takes over 100,000 calls, on SQLite in a temporary data directory (the embedded default).
//!
//! - `record_ns`: `History::record` per event, the only part on a call's path (a channel send);
//! - `write_per_call_us`: wall time per call for the writer to take a call's events (the queue's
//!   two records, the disposition, the rating, and a certificate for every third call) through the
//!   durable outbox into the database, measured from the first `record` to the `flush` that sees
//!   them all committed;
//! - `month_report_ms` (by day), `month_report_by_operator_ms` and `certificates_report_ms`: the
//!   median of five reports over a month holding `CALLS` calls (100,000; `--quick`: 10,000)
//!   spread over 31 days, 40 kiosks and 60 operators.
//!
//! The last line on stdout is one JSON object with those figures.
//!
//! Run: `cargo bench -p history --bench history` (`-- --quick` for a short run).

use std::time::{Duration, Instant};

use history::report::parse_day;
use history::{
    CallFacts, CallsBy, CertificateFacts, CertificatesBy, Db, Event, FeedbackFacts, History,
    Metrics, Outbox, Period, WrapupFacts,
};

const T0: i64 = 1_772_323_200_000;

fn call(i: usize, end: bool) -> CallFacts {
    let day = 1 + i % 31;
    let answered = i % 10 != 0;
    let wait = 5_000 + (i as i64 * 7_919) % 120_000;
    let handle = 60_000 + (i as i64 * 104_729) % 600_000;
    CallFacts {
        call_id: format!("call-{i:08}"),
        day: format!("2026-03-{day:02}"),
        kiosk_id: format!("kiosk-{:02}", i % 40),
        service: ["anagrafe", "stato_civile", "tributi"][i % 3].into(),
        language: "it".into(),
        operator_id: answered.then(|| format!("op-{:02}", i % 60)),
        operators: if answered {
            vec![format!("op-{:02}", i % 60)]
        } else {
            vec![]
        },
        outcome: if answered { "completed" } else { "abandoned" }.into(),
        requested_at: T0 + i as i64 * 1000,
        offered_at: answered.then_some(T0 + i as i64 * 1000 + wait - 500),
        answered_at: answered.then_some(T0 + i as i64 * 1000 + wait),
        accepted_at: answered.then_some(T0 + i as i64 * 1000 + wait),
        ended_at: T0 + i as i64 * 1000 + wait + handle,
        held_ms: 0,
        holds: 0,
        transfers: 0,
        wait_ms: wait,
        sl_threshold_ms: 60_000,
        short_abandon: !answered && wait < 5_000,
        wrapup_at: (answered && !end).then_some(T0 + i as i64 * 1000 + wait + handle + 20_000),
        handle_ms: (answered && !end).then_some(handle + 20_000),
    }
}

/// The events one call produces, in the order the server records them.
fn events(i: usize) -> Vec<Event> {
    let end = call(i, true);
    let answered = end.accepted_at.is_some();
    let mut out = vec![Event::Call(end)];
    if answered {
        out.push(Event::Call(call(i, false)));
        out.push(Event::Wrapup(WrapupFacts {
            call_id: format!("call-{i:08}"),
            disposition: ["certificato_rilasciato", "informazioni", "pratica_avviata"][i % 3]
                .into(),
            notes: None,
            at: T0 + i as i64 * 1000 + 900_000,
        }));
        if i % 2 == 0 {
            out.push(Event::Feedback(FeedbackFacts {
                call_id: format!("call-{i:08}"),
                rating: 1 + (i % 5) as i64,
                comment: None,
                at: T0 + i as i64 * 1000 + 910_000,
            }));
        }
        if i % 3 == 0 {
            out.push(Event::Certificate(CertificateFacts {
                document_id: format!("doc-{i:08}"),
                call_id: Some(format!("call-{i:08}")),
                day: format!("2026-03-{:02}", 1 + i % 31),
                issued_at: T0 + i as i64 * 1000 + 500_000,
                channel: "kiosk".into(),
                kind: ["residenza", "stato_famiglia", "nascita"][i % 3].into(),
                fee: if i % 2 == 0 { "bollo" } else { "esente" }.into(),
                exemption: (i % 2 == 1).then(|| "pensione".into()),
                kiosk_id: Some(format!("kiosk-{:02}", i % 40)),
                operator_id: Some(format!("op-{:02}", i % 60)),
            }));
        }
    }
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn timed<F, Fut, T>(f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(f().await);
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    median(runs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 100_000 });
    let dir = tempfile::tempdir().expect("a temporary directory");
    // HISTORY_BENCH_DIR keeps the database there, to look into it afterwards.
    let dir_path = std::env::var_os("HISTORY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().to_owned());

    // The writer: record the events of `written` calls, then wait for them to be committed.
    let written = if quick { 1_000 } else { 5_000 };
    let db = Db::open(&history::db::sqlite_url(&dir_path), "bench")
        .await
        .expect("SQLite");
    let outbox = Outbox::open(&dir_path).await.expect("the outbox");
    let (history, _task) = History::start(db.clone(), outbox, Metrics::unregistered());
    let all: Vec<Vec<Event>> = (0..written).map(events).collect();
    let n_events: usize = all.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut record_time = Duration::ZERO;
    for (i, evs) in all.into_iter().enumerate() {
        let t = Instant::now();
        for e in evs {
            history.record(e);
        }
        record_time += t.elapsed();
        // Calls end over time, not all at once: a short pause every 50 calls.
        if i % 50 == 49 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        history.flush(Duration::from_secs(600)).await,
        "the writer failed"
    );
    let write_per_call_us = started.elapsed().as_secs_f64() * 1e6 / written as f64;
    let record_ns = record_time.as_secs_f64() * 1e9 / n_events as f64;
    eprintln!(
        "writer: {written} calls ({n_events} events) in {:.2} s: {write_per_call_us:.0} µs a call, record {record_ns:.0} ns an event",
        started.elapsed().as_secs_f64()
    );

    // A month of calls, loaded in batches, then the reports.
    let load = Instant::now();
    for chunk in (written..calls).collect::<Vec<_>>().chunks(2_000) {
        let batch: Vec<Event> = chunk.iter().flat_map(|&i| events(i)).collect();
        db.apply(&batch).await.expect("loading the month");
    }
    eprintln!(
        "loaded {calls} calls in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let march = Period::new(
        parse_day("from", "2026-03-01").unwrap(),
        parse_day("to", "2026-03-31").unwrap(),
    )
    .unwrap();
    let by_day = timed(|| db.calls_report(&march, CallsBy::Day)).await;
    let by_operator = timed(|| db.calls_report(&march, CallsBy::Operator)).await;
    let certs = timed(|| db.certificates_report(&march, CertificatesBy::Kind, 10_000)).await;
    let report = db.calls_report(&march, CallsBy::Day).await.unwrap();
    assert_eq!(
        report.total.calls as usize, calls,
        "every call is in the month"
    );
    eprintln!(
        "month report over {calls} calls: by day {by_day:.1} ms, by operator {by_operator:.1} ms, certificates {certs:.1} ms"
    );
    println!(
        "{}",
        serde_json::json!({
            "calls": calls,
            "record_ns": (record_ns * 10.0).round() / 10.0,
            "write_per_call_us": write_per_call_us.round(),
            "month_report_ms": (by_day * 10.0).round() / 10.0,
            "month_report_by_operator_ms": (by_operator * 10.0).round() / 10.0,
            "certificates_report_ms": (certs * 10.0).round() / 10.0,
        })
    );
}
