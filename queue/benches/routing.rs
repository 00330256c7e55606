//! Routing decisions per second and offer latency, for the memory store and the Redis store, and
//! the Redis store's rate as a ratio of what `redis-benchmark` gets from the same kind of Redis, in
//! the same run.
//!
//! One iteration is one routing decision: a kiosk's call arrives while an operator is free, and the
//! timed operation returns with the `Offer` effect (so its time is also the offer latency). The call is
//! then cancelled outside the timed part, which frees the operator again. The Redis case starts its own
//! `redis-server` on a free loopback port with `testkit`, like the tests.
//!
//! After criterion's groups, when the Redis case ran (not under a filter that skips it, nor in
//! criterion's test mode), the bench starts another private `redis-server` through `testkit` (same
//! flags: no persistence), loads a one-line `INCR` script and runs
//! `redis-benchmark -p PORT -n N -c 50 -q evalsha SHA 1 '{t}:q'` `EVALSHA_RUNS` times (the median
//! counts), then once with `-c 1` (one client, sequential, like the bench). `EVALSHA_N` (200,000)
//! and `EVALSHA_RUNS` (3) override the sizes. It needs `redis-benchmark` (`redis-tools`).
//!
//! The last line on stdout is one JSON object: `memory_decision_us`, `memory_decisions_per_s`,
//! `redis_decision_us`, `redis_decisions_per_s` (criterion's estimate), `redis_benchmark_evalsha_per_s`
//! (`-c 50`, median), `redis_benchmark_evalsha_c1_per_s`, `redis_to_evalsha_ratio` and
//! `redis_to_evalsha_c1_ratio`; a figure that was not measured in this run is `null`.
//!
//! `redis/call_to_offer_c50` makes the same decision with 50 callers at once on one node and one
//! tenant (50 free operators; each caller loops enqueue → offer → cancel, and the figure is wall time
//! over enqueues), which the Redis store's group commit serves with shared commits. Before it,
//! [`HISTORY_CALLS`] calls are served to the end so that the tenant's `Meta` holds full windows of
//! handle times, as in production:
//! `redis_c50_decisions_per_s` and `redis_c50_to_evalsha_ratio` (against `-c 50`).
//!
//! `memory/enqueue_behind_backlog` is one operation (an enqueue, then its cancel untimed) while 30
//! calls wait behind 20 operators in calls, on the memory store: the routing core when every
//! operation re-estimates every waiting call's wait (`memory_backlog_op_us`).
//!
//! Run: `cargo bench -p queue --bench routing` (criterion's options after `--`, e.g.
//! `-- --warm-up-time 1 --measurement-time 2` for a short run).

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, Criterion, Throughput};
use queue::{
    AnyStore, CallId, Effect, KioskId, Language, MemoryStore, NewCall, NodeId, OperatorId,
    OperatorLogin, Presence, Queue, QueueConfig, RedisStore, Service, Tenant, Time,
};
use serde_json::json;

/// The `redis-benchmark` reference: a one-line script, called with one key in a hash tag.
const EVALSHA_SCRIPT: &str = "return redis.call('INCR', KEYS[1])";

/// Operator `op{i}` on the bench's node, in Italian, one call at a time, with these skills.
fn login(i: u64, skills: &[(&str, u8)], presence: Presence) -> OperatorLogin {
    OperatorLogin {
        operator_id: OperatorId::new(format!("op{i}")).unwrap(),
        skills: skills
            .iter()
            .map(|(s, level)| (Service::new(*s).unwrap(), *level))
            .collect(),
        languages: vec![Language::new("it").unwrap()],
        capacity: 1,
        node: NodeId::new("bench").unwrap(),
        presence,
    }
}

async fn setup(q: &Queue<AnyStore>, tenant: &Tenant) {
    // A realistic operator room: 20 operators with two services; the one free operator takes each call.
    for i in 0..20 {
        let presence = if i == 0 {
            Presence::Available
        } else {
            Presence::Paused("busy".into())
        };
        let login = login(i, &[("anagrafe", 5), ("stato_civile", 3)], presence);
        q.operator_online(tenant, Time::now(), login).await.unwrap();
    }
}

/// A call for `anagrafe` in Italian from `kiosk`.
fn new_call(call_id: &CallId, kiosk: &KioskId) -> NewCall {
    NewCall {
        call_id: call_id.clone(),
        kiosk_id: kiosk.clone(),
        kiosk_node: NodeId::new("bench").unwrap(),
        service: Service::new("anagrafe").unwrap(),
        language: Language::new("it").unwrap(),
        priority: 0,
    }
}

fn bench_store(c: &mut Criterion, name: &str, q: Queue<AnyStore>, rt: &tokio::runtime::Runtime) {
    let tenant = Tenant::new(format!("bench-{name}")).unwrap();
    rt.block_on(setup(&q, &tenant));
    timed_enqueues(c, rt, &q, &tenant, &format!("{name}/call_to_offer"), |e| {
        matches!(e, Effect::Offer { .. })
    });
}

/// Registers `id`: each iteration enqueues a new call, timed, and asserts that one of its effects
/// passes `expected`, then cancels the call, untimed.
fn timed_enqueues(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    q: &Queue<AnyStore>,
    tenant: &Tenant,
    id: &str,
    expected: fn(&Effect) -> bool,
) {
    let kiosk = KioskId::new("kiosk-timed").unwrap();
    let mut n = 0u64;
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(1));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let call_id = CallId::new(format!("t{n}")).unwrap();
                    let call = new_call(&call_id, &kiosk);
                    let start = Instant::now();
                    let a = q.enqueue(tenant, Time::now(), call).await.unwrap();
                    timed += start.elapsed();
                    assert!(a.effects.iter().any(expected), "{id}: no expected effect");
                    q.cancel(tenant, Time::now(), &kiosk, &call_id)
                        .await
                        .unwrap();
                }
                timed
            })
        })
    });
    group.finish();
}

/// `n` available operators (`op0`…) who take `anagrafe` calls in Italian, one at a time, and a
/// history of served calls behind them ([`fill_history`]).
async fn room_with_history(q: &Queue<AnyStore>, tenant: &Tenant, n: u64) {
    for i in 0..n {
        let login = login(i, &[("anagrafe", 5)], Presence::Available);
        q.operator_online(tenant, Time::now(), login).await.unwrap();
    }
    fill_history(q, tenant).await;
}

/// Concurrent callers of the Redis case: `redis-benchmark -c 50`'s clients.
const CALLERS: u64 = 50;

/// The same decision with [`CALLERS`] callers at once on one node and one tenant, as a busy node
/// serves many kiosks: 50 operators are free, and each caller loops enqueue (timed together with
/// everything else: the figure is wall time over decisions) → offer → cancel. One iteration is one
/// enqueue that produced an offer; the cancels run in the same wall time, uncounted.
fn bench_concurrent(c: &mut Criterion, q: Queue<AnyStore>, rt: &tokio::runtime::Runtime) {
    let tenant = Tenant::new("bench-c50").unwrap();
    rt.block_on(room_with_history(&q, &tenant, CALLERS));
    let mut round = 0u64;
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("redis/call_to_offer_c50", |b| {
        b.iter_custom(|iters| {
            round += 1;
            let per_caller = iters.div_ceil(CALLERS);
            rt.block_on(async {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for caller in 0..CALLERS {
                    let q = q.clone();
                    let tenant = tenant.clone();
                    tasks.push(tokio::spawn(async move {
                        let kiosk = KioskId::new(format!("kiosk{caller}")).unwrap();
                        for n in 0..per_caller {
                            let call_id = CallId::new(format!("r{round}-c{caller}-{n}")).unwrap();
                            let call = new_call(&call_id, &kiosk);
                            let a = q.enqueue(&tenant, Time::now(), call).await.unwrap();
                            assert!(
                                a.effects.iter().any(|e| matches!(e, Effect::Offer { .. })),
                                "no offer"
                            );
                            q.cancel(&tenant, Time::now(), &kiosk, &call_id)
                                .await
                                .unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                // Scaled to the iterations asked for (each caller did whole rounds).
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_caller * CALLERS) as f64)
            })
        })
    });
    group.finish();
}

/// Calls served to the end before the concurrent case, so that the tenant's shared `Meta` carries
/// what a working day gives it: full windows of talk, wrap-up and answer times (256 each), which
/// every commit that changes `Meta` writes.
const HISTORY_CALLS: u64 = 300;

/// Serves [`HISTORY_CALLS`] calls one after the other (enqueue → offer → accept → end → wrap-up
/// done) on a clock that ends just before the real now, with answer delays of 1–6 s, talks of
/// 5–25 s and wrap-ups of 2–12 s (the node lease allows steps of up to 40 s).
async fn fill_history(q: &Queue<AnyStore>, tenant: &Tenant) {
    let steps: Vec<[u64; 4]> = (0..HISTORY_CALLS)
        .map(|n| {
            [
                1_000 + (n * 7_919) % 5_000,
                5_000 + (n * 104_729) % 20_000,
                2_000 + (n * 1_299_709) % 10_000,
                100,
            ]
        })
        .collect();
    let total: u64 = steps.iter().flatten().sum();
    let kiosk = KioskId::new("kiosk-history").unwrap();
    let mut t = Time::now().as_millis() - total - 1_000;
    for (n, [answer, talk, wrap, pause]) in steps.into_iter().enumerate() {
        let call_id = CallId::new(format!("h{n}")).unwrap();
        let applied = q
            .enqueue(tenant, Time::from_millis(t), new_call(&call_id, &kiosk))
            .await
            .unwrap();
        let operator = applied
            .effects
            .iter()
            .find_map(|e| match e {
                Effect::Offer { operator_id, .. } => Some(operator_id.clone()),
                _ => None,
            })
            .expect("a free operator takes each history call");
        t += answer;
        q.accept(tenant, Time::from_millis(t), &operator, &call_id)
            .await
            .unwrap();
        t += talk;
        q.end(tenant, Time::from_millis(t), &operator, &call_id)
            .await
            .unwrap();
        t += wrap;
        q.wrapup_done(tenant, Time::from_millis(t), &operator, &call_id)
            .await
            .unwrap();
        t += pause;
    }
    let meta = q.read(tenant, |s| serde_json::to_string(&s.meta).map(|j| j.len()));
    let meta = meta.await.unwrap().unwrap();
    eprintln!("history: {HISTORY_CALLS} calls served; the tenant's Meta is {meta} bytes of JSON");
}

/// Operators all in calls and calls waiting behind them, as at a busy hour.
const BACKLOG_OPERATORS: u64 = 20;
const BACKLOG_WAITING: u64 = 30;

/// One queue operation while [`BACKLOG_WAITING`] calls wait and [`BACKLOG_OPERATORS`] operators are
/// all in calls, on the memory store (the routing core alone): an enqueue that joins the back of
/// the line, timed, then its cancel, untimed. Each operation re-estimates every waiting call's wait
/// (the replays of `estimate.rs`), which the cases above, where no call waits, never do. The
/// tenant's history is filled first, so the replays draw from full windows.
fn bench_backlog(c: &mut Criterion, q: Queue<AnyStore>, rt: &tokio::runtime::Runtime) {
    let tenant = Tenant::new("bench-backlog").unwrap();
    rt.block_on(room_with_history(&q, &tenant, BACKLOG_OPERATORS));
    rt.block_on(async {
        for n in 0..BACKLOG_OPERATORS + BACKLOG_WAITING {
            let call_id = CallId::new(format!("b{n}")).unwrap();
            let kiosk = KioskId::new(format!("kiosk-b{n}")).unwrap();
            let applied = q
                .enqueue(&tenant, Time::now(), new_call(&call_id, &kiosk))
                .await
                .unwrap();
            for e in &applied.effects {
                if let Effect::Offer { operator_id, .. } = e {
                    q.accept(&tenant, Time::now(), operator_id, &call_id)
                        .await
                        .unwrap();
                }
            }
        }
    });
    timed_enqueues(c, rt, &q, &tenant, "memory/enqueue_behind_backlog", |e| {
        matches!(e, Effect::QueueUpdate { .. })
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn routing(c: &mut Criterion) {
    let rt = runtime();
    let memory = Queue::new(AnyStore::Memory(
        MemoryStore::new(QueueConfig::default()).unwrap(),
    ));
    bench_store(c, "memory", memory, &rt);
    let backlog = Queue::new(AnyStore::Memory(
        MemoryStore::new(QueueConfig::default()).unwrap(),
    ));
    bench_backlog(c, backlog, &rt);
    let server = rt.block_on(testkit::RedisServer::start());
    let url = server.url();
    let redis = rt
        .block_on(RedisStore::connect(&url, QueueConfig::default()))
        .unwrap();
    eprintln!(
        "commit script sha for redis-benchmark: {}",
        redis.commit_script_sha()
    );
    let q = Queue::new(AnyStore::Redis(redis));
    bench_store(c, "redis", q.clone(), &rt);
    bench_concurrent(c, q, &rt);
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = routing
}

/// `redis-benchmark … -q evalsha` → requests per second (its last progress line, after `\r`s).
fn evalsha_per_s(port: u16, sha: &str, n: u64, clients: u32) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-n", &n.to_string()])
        .args([
            "-c",
            &clients.to_string(),
            "-q",
            "evalsha",
            sha,
            "1",
            "{t}:q",
        ])
        .output()
        .map_err(|e| eprintln!("cannot run redis-benchmark ({e}): apt-get install redis-tools"))
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "requests")?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

/// The EVALSHA reference on a private `redis-server`: (`-c 50` median of `runs`, `-c 1`).
fn evalsha_reference(n: u64, runs: usize) -> (Option<f64>, Option<f64>) {
    let rt = runtime();
    rt.block_on(async {
        let server = testkit::RedisServer::start().await;
        let client = redis::Client::open(server.url()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the private redis-server");
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(EVALSHA_SCRIPT)
            .query_async(&mut conn)
            .await
            .expect("SCRIPT LOAD");
        eprintln!("redis-benchmark EVALSHA on 127.0.0.1:{}", server.port);
        let mut c50 = Vec::new();
        for run in 1..=runs {
            let rps = evalsha_per_s(server.port, &sha, n, 50);
            eprintln!("  -c 50 run {run}: {} req/s", shown(rps));
            c50.extend(rps);
        }
        c50.sort_by(f64::total_cmp);
        let median = (!c50.is_empty()).then(|| c50[c50.len() / 2]);
        let c1 = evalsha_per_s(server.port, &sha, n, 1);
        eprintln!("  -c 1: {} req/s", shown(c1));
        (median, c1)
    })
}

/// A rate for the log, or why it is missing.
fn shown(rps: Option<f64>) -> String {
    rps.map_or("no figure (redis-benchmark failed)".into(), |r| {
        format!("{r:.0}")
    })
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();

    let memory_ns = testkit::criterion_estimate_ns("routing", "memory/call_to_offer", started);
    let backlog_ns =
        testkit::criterion_estimate_ns("routing", "memory/enqueue_behind_backlog", started);
    let redis_ns = testkit::criterion_estimate_ns("routing", "redis/call_to_offer", started);
    let c50_ns = testkit::criterion_estimate_ns("routing", "redis/call_to_offer_c50", started);
    let n = env_or("EVALSHA_N", 200_000);
    let (c50, c1) = match redis_ns {
        Some(_) => evalsha_reference(n, env_or("EVALSHA_RUNS", 3)),
        None => (None, None),
    };
    let per_s = |ns: Option<f64>| ns.map(|ns| 1e9 / ns);
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let redis = per_s(redis_ns);
    if let (Some(ns), Some(d)) = (redis_ns, redis) {
        println!(
            "routing decisions, Redis store, one client: {:.1} µs per decision = {d:.0}/s",
            ns / 1e3
        );
    }
    if let (Some(c50), Some(c1)) = (c50, c1) {
        println!("redis-benchmark -n {n} EVALSHA (INCR script): -c 50 {c50:.0} req/s, -c 1 {c1:.0} req/s");
    }
    if let (Some(r50), Some(r1)) = (ratio(redis, c50), ratio(redis, c1)) {
        println!("ratio: {r50:.3} of -c 50, {r1:.3} of -c 1");
    }
    let redis_c50 = per_s(c50_ns);
    if let (Some(d), Some(r)) = (redis_c50, ratio(redis_c50, c50)) {
        println!(
            "routing decisions, Redis store, {CALLERS} callers on one tenant: {d:.0}/s, {r:.3} of -c 50"
        );
    }
    println!(
        "{}",
        json!({
            "memory_decision_us": memory_ns.map(|ns| ns / 1e3),
            "memory_backlog_op_us": backlog_ns.map(|ns| ns / 1e3),
            "memory_decisions_per_s": per_s(memory_ns),
            "redis_decision_us": redis_ns.map(|ns| ns / 1e3),
            "redis_decisions_per_s": redis,
            "redis_benchmark_evalsha_per_s": c50,
            "redis_benchmark_evalsha_c1_per_s": c1,
            "redis_to_evalsha_ratio": ratio(redis, c50),
            "redis_to_evalsha_c1_ratio": ratio(redis, c1),
            "redis_c50_decisions_per_s": redis_c50,
            "redis_c50_to_evalsha_ratio": ratio(redis_c50, c50),
        })
    );
}
