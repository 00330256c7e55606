//! Offer latency: the time from an operator becoming offer-eligible to the `Offer` effect being in the
//! server's hands, for the memory store and the Redis store.
//!
//! Two ways a call becomes offer-eligible are measured, 5,000 samples each after 200 unrecorded warm-up
//! samples, on a tenant with 20 operators and 10 calls of another service waiting:
//!
//! - `presence`: a call is waiting and its only skilled operator sets presence `available`; the sample
//!   runs from the `set_presence` call to the `Offer`. Pausing the operator again (untimed) puts the call
//!   back.
//! - `enqueue`: the operator is free and a kiosk's call arrives; the sample runs from the `enqueue` call
//!   to the `Offer`. Cancelling the call (untimed) frees the operator again.
//!
//! Each sample is taken at two points: `return`, when the store operation returns the committed batch to
//! the node that ran it, and `subscribe`, when the batch arrives on [`Queue::subscribe`], which is how the
//! server delivers offers to operators connected anywhere (for Redis this includes the event stream and
//! its reader). Figures come from an HDR histogram in microseconds and are printed in milliseconds.
//! Targets (`targets.md`): p99 < 5 ms for memory, < 10 ms for Redis.
//!
//! The Redis case starts its own `redis-server` on a free loopback port (`testkit::RedisServer`).
//!
//! The last line on stdout is one JSON object with the `subscribe` figures (what an operator
//! connected anywhere waits for): `{store}_{scenario}_p50_ms` and `_p99_ms` for `memory`/`redis` and
//! `presence`/`enqueue`, and per store the worse p99 of the two scenarios, `memory_offer_p99_ms` and
//! `redis_offer_p99_ms` (the figures the targets apply to).
//!
//! Run: `cargo bench -p queue --bench offer_latency` (env `SAMPLES` overrides the samples per row,
//! 5,000 by default).

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use queue::{
    AnyStore, CallId, Effect, EffectReceiver, KioskId, Language, MemoryStore, NewCall, NodeId,
    OperatorId, OperatorLogin, Presence, Queue, QueueConfig, RedisStore, Service, Tenant, Time,
};

/// Samples per row (`SAMPLES` overrides).
const SAMPLES: usize = 5000;
const WARMUP: usize = 200;

struct Bench {
    q: Queue<AnyStore>,
    tenant: Tenant,
    node: NodeId,
    op: OperatorId,
    service: Service,
    lang: Language,
    rx: EffectReceiver,
    n: u64,
    samples: usize,
}

/// Return and subscribe latency histograms of one scenario.
struct Hists {
    ret: Histogram<u64>,
    sub: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        Hists { ret: h(), sub: h() }
    }
}

fn has_offer(effects: &[Effect], call: &CallId) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Offer { call_id, .. } if call_id == call))
}

impl Bench {
    async fn new(store: AnyStore, name: &str, samples: usize) -> Bench {
        let q = Queue::new(store);
        let tenant = Tenant::new(format!("lat-{name}")).expect("tenant");
        let node = NodeId::new("bench").expect("node");
        let service = Service::new("anagrafe").expect("service");
        let other = Service::new("tributi").expect("service");
        let lang = Language::new("it").expect("language");
        for i in 0..20 {
            let mut skills = BTreeMap::new();
            skills.insert(service.clone(), 5);
            skills.insert(Service::new("stato_civile").expect("service"), 3);
            let login = OperatorLogin {
                operator_id: OperatorId::new(format!("op{i}")).expect("operator"),
                skills,
                languages: vec![lang.clone()],
                capacity: 1,
                node: node.clone(),
                presence: Presence::Paused("bench".into()),
            };
            q.operator_online(&tenant, Time::now(), login)
                .await
                .expect("operator online");
        }
        // Some unrelated waiting calls, so the routing pass and the estimates have work to do.
        for i in 0..10 {
            let call = NewCall {
                call_id: CallId::new(format!("other{i}")).expect("call"),
                kiosk_id: KioskId::new(format!("other{i}")).expect("kiosk"),
                kiosk_node: node.clone(),
                service: other.clone(),
                language: lang.clone(),
                priority: 0,
            };
            q.enqueue(&tenant, Time::now(), call)
                .await
                .expect("enqueue");
        }
        let rx = q.subscribe(&tenant).await.expect("subscribe");
        Bench {
            q,
            tenant,
            node,
            op: OperatorId::new("op0").expect("operator"),
            service,
            lang,
            rx,
            n: 0,
            samples,
        }
    }

    fn new_call(&mut self) -> (CallId, KioskId, NewCall) {
        self.n += 1;
        let call_id = CallId::new(format!("c{}", self.n)).expect("call");
        let kiosk_id = KioskId::new("kiosk").expect("kiosk");
        let call = NewCall {
            call_id: call_id.clone(),
            kiosk_id: kiosk_id.clone(),
            kiosk_node: self.node.clone(),
            service: self.service.clone(),
            language: self.lang.clone(),
            priority: 0,
        };
        (call_id, kiosk_id, call)
    }

    /// Waits on the subscription for the batch carrying the offer of `call`.
    async fn delivered(&mut self, call: &CallId) -> Instant {
        loop {
            let batch = self.rx.recv().await.expect("subscription");
            if has_offer(&batch.effects, call) {
                return Instant::now();
            }
        }
    }

    async fn presence(&mut self) -> Hists {
        let mut h = Hists::new();
        let (call_id, kiosk_id, call) = self.new_call();
        self.q
            .enqueue(&self.tenant, Time::now(), call)
            .await
            .expect("enqueue");
        for i in 0..WARMUP + self.samples {
            if i % 200 == 0 {
                self.q
                    .heartbeat(&self.tenant, Time::now(), &self.node)
                    .await
                    .expect("heartbeat");
            }
            let start = Instant::now();
            let a = self
                .q
                .set_presence(&self.tenant, Time::now(), &self.op, Presence::Available)
                .await
                .expect("available");
            let returned = Instant::now();
            assert!(has_offer(&a.effects, &call_id), "no offer: {a:?}");
            let got = self.delivered(&call_id).await;
            if i >= WARMUP {
                record(&mut h, start, returned, got);
            }
            self.q
                .set_presence(
                    &self.tenant,
                    Time::now(),
                    &self.op,
                    Presence::Paused("bench".into()),
                )
                .await
                .expect("pause");
        }
        self.q
            .cancel(&self.tenant, Time::now(), &kiosk_id, &call_id)
            .await
            .expect("cancel");
        h
    }

    async fn enqueue(&mut self) -> Hists {
        let mut h = Hists::new();
        self.q
            .set_presence(&self.tenant, Time::now(), &self.op, Presence::Available)
            .await
            .expect("available");
        for i in 0..WARMUP + self.samples {
            if i % 200 == 0 {
                self.q
                    .heartbeat(&self.tenant, Time::now(), &self.node)
                    .await
                    .expect("heartbeat");
            }
            let (call_id, kiosk_id, call) = self.new_call();
            let start = Instant::now();
            let a = self
                .q
                .enqueue(&self.tenant, Time::now(), call)
                .await
                .expect("enqueue");
            let returned = Instant::now();
            assert!(has_offer(&a.effects, &call_id), "no offer: {a:?}");
            let got = self.delivered(&call_id).await;
            if i >= WARMUP {
                record(&mut h, start, returned, got);
            }
            self.q
                .cancel(&self.tenant, Time::now(), &kiosk_id, &call_id)
                .await
                .expect("cancel");
        }
        h
    }
}

fn record(h: &mut Hists, start: Instant, returned: Instant, got: Instant) {
    let us = |t: Instant| (t.duration_since(start).as_micros() as u64).max(1);
    h.ret.saturating_record(us(returned));
    h.sub.saturating_record(us(got));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn print(store: &str, scenario: &str, h: &Hists, target_ms: f64) {
    for (point, hist) in [("return", &h.ret), ("subscribe", &h.sub)] {
        let p99 = ms(hist.value_at_quantile(0.99));
        println!(
            "{store:>7} {scenario:>9} {point:>10} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3}   {}",
            hist.len(),
            ms(hist.value_at_quantile(0.5)),
            p99,
            ms(hist.value_at_quantile(0.999)),
            ms(hist.max()),
            if p99 < target_ms { "met" } else { "NOT met" }
        );
    }
}

/// Prints a scenario's rows, adds its `subscribe` figures to `json` and returns its p99 (ms).
fn report(
    store: &str,
    scenario: &str,
    h: &Hists,
    target_ms: f64,
    json: &mut serde_json::Map<String, serde_json::Value>,
) -> f64 {
    print(store, scenario, h, target_ms);
    let (p50, p99) = (
        ms(h.sub.value_at_quantile(0.5)),
        ms(h.sub.value_at_quantile(0.99)),
    );
    json.insert(format!("{store}_{scenario}_p50_ms"), p50.into());
    json.insert(format!("{store}_{scenario}_p99_ms"), p99.into());
    p99
}

/// Runs both scenarios on `store` and adds their figures to `json`.
async fn run(
    store: AnyStore,
    name: &str,
    target_ms: f64,
    samples: usize,
    json: &mut serde_json::Map<String, serde_json::Value>,
) {
    let mut b = Bench::new(store, name, samples).await;
    let h = b.presence().await;
    let presence = report(name, "presence", &h, target_ms, json);
    let h = b.enqueue().await;
    let enqueue = report(name, "enqueue", &h, target_ms, json);
    json.insert(format!("{name}_offer_p99_ms"), presence.max(enqueue).into());
}

fn main() {
    let samples = std::env::var("SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SAMPLES);
    // Two workers: the Redis event-stream reader runs beside the driving task, as in the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("Offer latency, {samples} samples per row after {WARMUP} warm-up; milliseconds");
    println!(
        "{:>7} {:>9} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8}   p99 target",
        "store", "scenario", "point", "n", "p50", "p99", "p99.9", "max"
    );
    let mut json = serde_json::Map::new();
    rt.block_on(async {
        let memory = AnyStore::Memory(MemoryStore::new(QueueConfig::default()).expect("config"));
        run(memory, "memory", 5.0, samples, &mut json).await;
        let server = testkit::RedisServer::start().await;
        let redis = RedisStore::connect(&server.url(), QueueConfig::default())
            .await
            .expect("connect to redis");
        run(AnyStore::Redis(redis), "redis", 10.0, samples, &mut json).await;
        drop(server);
    });
    println!("{}", serde_json::Value::Object(json));
}
