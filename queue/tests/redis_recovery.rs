//! The Redis store when Redis misbehaves: it loses its last writes or all of them, restarts, or stops
//! answering. Each test runs against a real `redis-server`; the stores never see a mock.

mod common;

use std::time::Duration;

use common::*;
use queue::{
    AnyStore, Applied, KioskId, Language, NewCall, NodeId, Presence, Queue, QueueConfig, Store,
    Tenant,
};

/// Aging off and a day-long node lease, so no cleanup interferes with the scenarios.
fn cfg() -> QueueConfig {
    QueueConfig {
        aging_step: None,
        node_lease: Duration::from_secs(86_400),
        ..QueueConfig::default()
    }
}

/// The tenant's keys, as `redis_store` names them.
fn keys(t: &Tenant) -> Vec<String> {
    ["ver", "meta", "calls", "ops", "waiting", "events"]
        .iter()
        .map(|k| format!("{{{t}}}:{k}"))
        .collect()
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

fn new_call(id: &str) -> NewCall {
    NewCall {
        call_id: cid(id),
        kiosk_id: KioskId::new(format!("k-{id}")).unwrap(),
        kiosk_node: NodeId::new("n1").unwrap(),
        service: svc("s"),
        language: Language::new("it").unwrap(),
        priority: 0,
    }
}

/// Two operators of capacity 1 for service `s`, logged in through `q`.
async fn two_operators(h: &Harness, q: &Queue<AnyStore>) -> Applied {
    let mut last = Applied::default();
    for id in ["o1", "o2"] {
        let login = queue::OperatorLogin {
            operator_id: oid(id),
            skills: [(svc("s"), 5)].into_iter().collect(),
            languages: vec![Language::new("it").unwrap()],
            capacity: 1,
            node: NodeId::new("n1").unwrap(),
            presence: Presence::Available,
        };
        last = q
            .operator_online(&h.tenant, at(0), login)
            .await
            .expect("online");
    }
    last
}

#[derive(Clone, Copy)]
enum Loss {
    /// Redis comes back with an older copy of the tenant (the last second of an AOF was lost).
    LastWrites,
    /// Redis comes back empty.
    Everything,
}

/// Node A caches the state at version 3 (c1 offered); Redis then loses data and node B commits a
/// different version 3 (c2 offered). A must not take its cached version 3 for the stored one.
async fn stale_cache_after_loss(loss: Loss) {
    let h = Harness::new(Kind::Redis, cfg()).await;
    let (a, b) = (&h.clients[0], &h.clients[1]);
    let url = h.server.as_ref().expect("redis").url();
    let mut raw = raw(&url).await;

    two_operators(&h, a).await;
    // What survives a loss of the last writes: the tenant before c1 arrived.
    let mut saved = Vec::new();
    for k in keys(&h.tenant) {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut raw)
            .await
            .unwrap();
        saved.push((k, dump));
    }
    let a_c1 = a.enqueue(&h.tenant, at(10), new_call("c1")).await.unwrap();
    let c1_offers = offers(&a_c1);
    assert_eq!(c1_offers.len(), 1, "c1 is offered on A");
    let a_op = oid(&c1_offers[0].1);

    match loss {
        Loss::LastWrites => {
            for (k, dump) in &saved {
                let _: () = match dump {
                    Some(d) => redis::cmd("RESTORE")
                        .arg(k)
                        .arg(0)
                        .arg(d)
                        .arg("REPLACE")
                        .query_async(&mut raw)
                        .await
                        .unwrap(),
                    None => redis::cmd("DEL")
                        .arg(k)
                        .query_async(&mut raw)
                        .await
                        .unwrap(),
                };
            }
        }
        Loss::Everything => {
            let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
            two_operators(&h, b).await;
        }
    }
    let b_c2 = b.enqueue(&h.tenant, at(11), new_call("c2")).await.unwrap();
    assert_eq!(
        b_c2.version, a_c1.version,
        "the scenario needs B to reach the counter A cached"
    );
    let b_offers = offers(&b_c2);
    assert_eq!(b_offers.len(), 1, "c2 is offered on B");

    // On its stale cache A would accept c1, which Redis no longer has, and overbook the operator.
    let accepted = a.accept(&h.tenant, at(12), &a_op, &cid("c1")).await;
    assert!(
        accepted.is_err(),
        "A accepted a call lost by Redis: {accepted:?}"
    );
    // A works on B's state from now on: c3 goes to the operator c2 left free, and nobody is offered two
    // calls.
    let a_c3 = a.enqueue(&h.tenant, at(13), new_call("c3")).await.unwrap();
    let c3_offers = offers(&a_c3);
    assert_eq!(c3_offers.len(), 1, "c3 is offered to the free operator");
    assert_ne!(c3_offers[0].1, b_offers[0].1, "an operator got two offers");

    let s = b.store().load_state(&h.tenant).await.unwrap();
    s.check_invariants().expect("invariants");
    assert!(!s.calls.contains_key(&cid("c1")), "the lost call came back");
    assert!(s.calls.contains_key(&cid("c2")) && s.calls.contains_key(&cid("c3")));
    for o in s.operators.values() {
        assert_eq!((o.load, o.offers), (0, 1), "operator {}", o.operator_id);
    }
    // A's view after its own commit is exactly what is stored.
    let sa = a.store().load_state(&h.tenant).await.unwrap();
    assert_eq!(sa.calls, s.calls);
}

#[tokio::test]
async fn stale_cache_after_redis_loses_its_last_writes() {
    stale_cache_after_loss(Loss::LastWrites).await;
}

#[tokio::test]
async fn stale_cache_after_redis_is_wiped() {
    stale_cache_after_loss(Loss::Everything).await;
}

/// Receives until `want` arrives (other batches may come first), or fails after a few seconds.
async fn expect_batch(rx: &mut queue::EffectReceiver, want: &Applied) {
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(a) if *a == *want => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("subscription closed: {e}"),
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the batch never reached the subscriber");
}

#[tokio::test]
async fn subscriber_survives_a_redis_restart() {
    let mut h = Harness::new(Kind::Redis, cfg()).await;
    let (a, b) = (h.clients[0].clone(), h.clients[1].clone());
    let mut rx = a.subscribe(&h.tenant).await.unwrap();
    let before = two_operators(&h, &b).await;
    expect_batch(&mut rx, &before).await;

    let server = h.server.as_mut().expect("redis");
    let port = server.port;
    server.kill();
    // Let the reader fail against the dead server at least once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _restarted = testkit::RedisServer::start_on(port).await;

    // B's connection manager reconnects on the next commands; the first may still fail.
    let mut committed = None;
    for _ in 0..100 {
        match b.enqueue(&h.tenant, at(10), new_call("c1")).await {
            Ok(applied) => {
                committed = Some(applied);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let after = committed.expect("B commits after the restart");
    assert!(!after.effects.is_empty());
    expect_batch(&mut rx, &after).await;
}

#[tokio::test]
async fn a_silent_redis_fails_the_operation_instead_of_hanging() {
    let h = Harness::new(Kind::Redis, cfg()).await;
    let a = &h.clients[0];
    two_operators(&h, a).await;
    let mut raw = raw(&h.server.as_ref().expect("redis").url()).await;
    // Redis keeps the connections open but answers nothing, as a half-open connection would.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5000)
        .arg("ALL")
        .query_async(&mut raw)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(4),
        a.enqueue(&h.tenant, at(10), new_call("c1")),
    )
    .await;
    let r = r.expect("apply hung on a silent Redis");
    assert!(r.is_err(), "apply succeeded on a paused Redis: {r:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Once Redis answers again, the store works again.
    let mut ok = false;
    for _ in 0..100 {
        if a.enqueue(&h.tenant, at(10), new_call("c1")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store did not recover after the pause");
    h.check().await;
}

/// Subscribers come and go while batches are committed: every new receiver must get the next batch,
/// even when the previous receiver was dropped just before and its reader was about to stop.
#[tokio::test]
async fn resubscribing_while_the_reader_stops_still_delivers() {
    let h = Harness::new(Kind::Redis, cfg()).await;
    let (a, b) = (&h.clients[0], &h.clients[1]);
    two_operators(&h, b).await;
    for i in 0..30u64 {
        let mut rx = a.subscribe(&h.tenant).await.unwrap();
        let applied = b
            .enqueue(&h.tenant, at(i), new_call(&format!("c{i}")))
            .await
            .unwrap();
        assert!(!applied.effects.is_empty(), "an enqueue always has effects");
        expect_batch(&mut rx, &applied).await;
        drop(rx);
    }
}
