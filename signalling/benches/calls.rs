//! Call-lifecycle latency over the wire for `BENCHMARKS.md`, against the real `sportello` binary on
//! loopback with the headless kiosk and an operator of `kiosk-client`:
//!
//! 1. `call.request` sent by the kiosk → `call.offered` received by the available operator;
//! 2. `call.accept` sent by the operator → `call.assigned` received by the kiosk.
//!
//! Both include two WebSocket hops on loopback, the queue decision and the event delivery through
//! the queue's subscription (on Redis: the commit script, then the Stream read by every node). Each
//! round ends the call and its wrap-up so the next starts from the same state. Runs on the in-memory
//! store and on a real `redis-server`.
//!
//! The last line on stdout is one JSON object, per store (`memory`, `redis`):
//! `{store}_offered_p50_ms`, `{store}_offered_p99_ms`, `{store}_offered_max_ms` (request → offered)
//! and `{store}_assigned_p50_ms`, `{store}_assigned_p99_ms` (accept → assigned).
//!
//! Run: `cargo bench -p signalling --bench calls` (env `CALLS` overrides the rounds, default 2,000).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kiosk_client::{HeadlessKiosk, OperatorBot, Policy};
use protocol::{CallRef, Event, PresenceSet, PresenceState, Request};
use testkit::SportelloProcess;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const T: Duration = Duration::from_secs(10);

struct Server {
    process: SportelloProcess,
    data: tempfile::TempDir,
}

fn spawn(extra: &[&str]) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut args: Vec<&std::ffi::OsStr> = vec!["--data-dir".as_ref(), data.path().as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let process = SportelloProcess::start(
        BIN,
        &args,
        &[
            ("RUST_LOG", "warn"),
            // One operator and one kiosk drive calls back to back, far above a person's request rate.
            ("SPORTELLO_WS__RATE_PER_S", "10000"),
            ("SPORTELLO_WS__RATE_BURST", "10000"),
        ],
    );
    Server { process, data }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs `calls` rounds against `server`, prints them and adds their figures to `json`.
async fn run(
    label: &str,
    server: &Server,
    calls: usize,
    json: &mut serde_json::Map<String, serde_json::Value>,
) {
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.data.path().join("demo-credentials.json")).unwrap(),
    )
    .unwrap();
    let ws = server.process.ws_url();
    let token = OperatorBot::login(
        &server.process.base,
        creds["operators"][0]["username"].as_str().unwrap(),
        creds["operators"][0]["password"].as_str().unwrap(),
    )
    .await
    .unwrap();
    let mut op = OperatorBot::connect(&ws, &token, Policy::Manual)
        .await
        .unwrap();
    op.session()
        .request(&Request::PresenceSet(PresenceSet {
            state: PresenceState::Available,
            reason: None,
        }))
        .await
        .unwrap();
    let mut kiosk =
        HeadlessKiosk::connect(&ws, creds["kiosks"][0]["token"].as_str().unwrap(), vec![])
            .await
            .unwrap();
    let mut offered = Histogram::<u64>::new(3).unwrap();
    let mut assigned = Histogram::<u64>::new(3).unwrap();
    let warmup = 100;
    for round in 0..calls + warmup {
        let t0 = Instant::now();
        let id = kiosk.request_call("anagrafe", "it", None).await.unwrap();
        op.session()
            .wait_for(T, |e| matches!(e, Event::CallOffered(o) if o.call_id == id))
            .await
            .unwrap();
        let t1 = Instant::now();
        let call = CallRef {
            call_id: id.clone(),
        };
        op.session()
            .request(&Request::CallAccept(call.clone()))
            .await
            .unwrap();
        kiosk
            .session()
            .wait_for(
                T,
                |e| matches!(e, Event::CallAssigned(a) if a.call_id == id),
            )
            .await
            .unwrap();
        let t2 = Instant::now();
        if round >= warmup {
            offered
                .record(t1.duration_since(t0).as_micros() as u64)
                .unwrap();
            assigned
                .record(t2.duration_since(t1).as_micros() as u64)
                .unwrap();
        }
        op.session()
            .request(&Request::CallEnd(call.clone()))
            .await
            .unwrap();
        kiosk
            .session()
            .wait_for(T, |e| matches!(e, Event::CallEnded(x) if x.call_id == id))
            .await
            .unwrap();
        op.session()
            .request(&Request::WrapupDone(protocol::outcome::WrapupDone::with(
                call.call_id,
                kiosk_client::BOT_DISPOSITION,
            )))
            .await
            .unwrap();
        // Keep the buffers small: drop events nobody waits for.
        op.session().drain_events();
        kiosk.session().drain_events();
    }
    println!(
        "{label:<8} request → offered  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({calls} calls)",
        ms(&offered, 0.5),
        ms(&offered, 0.99),
        offered.max() as f64 / 1000.0
    );
    println!(
        "{label:<8} accept → assigned  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(&assigned, 0.5),
        ms(&assigned, 0.99),
        assigned.max() as f64 / 1000.0
    );
    for (key, value) in [
        ("offered_p50_ms", ms(&offered, 0.5)),
        ("offered_p99_ms", ms(&offered, 0.99)),
        ("offered_max_ms", offered.max() as f64 / 1000.0),
        ("assigned_p50_ms", ms(&assigned, 0.5)),
        ("assigned_p99_ms", ms(&assigned, 0.99)),
    ] {
        json.insert(format!("{label}_{key}"), value.into());
    }
}

fn main() {
    let calls = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut json = serde_json::Map::new();
    rt.block_on(async {
        let memory = spawn(&[]);
        run("memory", &memory, calls, &mut json).await;
        drop(memory);
        let redis = testkit::RedisServer::start().await;
        let server = spawn(&["--redis", &redis.url()]);
        run("redis", &server, calls, &mut json).await;
    });
    println!("{}", serde_json::Value::Object(json));
}
