//! Routing decisions per second and offer latency, for the memory store and the Redis store.
//!
//! One iteration is one routing decision: a kiosk's call arrives while an operator is free, and the
//! timed operation returns with the `Offer` effect (so its time is also the offer latency). The call is
//! then cancelled outside the timed part, which frees the operator again. The Redis case starts its own
//! `redis-server` on a free loopback port with `testkit`, like the tests.
//!
//! Run: `cargo bench -p queue --bench routing`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use queue::{
    AnyStore, CallId, Effect, KioskId, Language, MemoryStore, NewCall, NodeId, OperatorId,
    OperatorLogin, Presence, Queue, QueueConfig, RedisStore, Service, Tenant, Time,
};

async fn setup(q: &Queue<AnyStore>, tenant: &Tenant) {
    // A realistic operator room: 20 operators with two services; the one free operator takes each call.
    for i in 0..20 {
        let mut skills = BTreeMap::new();
        skills.insert(Service::new("anagrafe").unwrap(), 5);
        skills.insert(Service::new("stato_civile").unwrap(), 3);
        let login = OperatorLogin {
            operator_id: OperatorId::new(format!("op{i}")).unwrap(),
            skills,
            languages: vec![Language::new("it").unwrap()],
            capacity: 1,
            node: NodeId::new("bench").unwrap(),
            presence: if i == 0 {
                Presence::Available
            } else {
                Presence::Paused("busy".into())
            },
        };
        q.operator_online(tenant, Time::now(), login).await.unwrap();
    }
}

fn bench_store(c: &mut Criterion, name: &str, q: Queue<AnyStore>, rt: &tokio::runtime::Runtime) {
    let tenant = Tenant::new(format!("bench-{name}")).unwrap();
    rt.block_on(setup(&q, &tenant));
    let kiosk = KioskId::new("kiosk").unwrap();
    let mut n = 0u64;
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}/call_to_offer"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let call_id = CallId::new(format!("c{n}")).unwrap();
                    let call = NewCall {
                        call_id: call_id.clone(),
                        kiosk_id: kiosk.clone(),
                        kiosk_node: NodeId::new("bench").unwrap(),
                        service: Service::new("anagrafe").unwrap(),
                        language: Language::new("it").unwrap(),
                        priority: 0,
                    };
                    let start = Instant::now();
                    let a = q.enqueue(&tenant, Time::now(), call).await.unwrap();
                    timed += start.elapsed();
                    assert!(
                        a.effects.iter().any(|e| matches!(e, Effect::Offer { .. })),
                        "no offer"
                    );
                    q.cancel(&tenant, Time::now(), &kiosk, &call_id)
                        .await
                        .unwrap();
                }
                timed
            })
        })
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let memory = Queue::new(AnyStore::Memory(
        MemoryStore::new(QueueConfig::default()).unwrap(),
    ));
    bench_store(c, "memory", memory, &rt);
    let server = rt.block_on(testkit::RedisServer::start());
    let url = server.url();
    let redis = rt
        .block_on(RedisStore::connect(&url, QueueConfig::default()))
        .unwrap();
    eprintln!(
        "commit script sha for redis-benchmark: {}",
        redis.commit_script_sha()
    );
    bench_store(c, "redis", Queue::new(AnyStore::Redis(redis)), &rt);
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = routing
}
criterion_main!(benches);
