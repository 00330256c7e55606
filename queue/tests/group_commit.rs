//! The Redis store's group commit, against a real `redis-server`: operations that arrive together
//! on one node are written with fewer commit scripts than operations, yet each keeps a version and
//! an event-stream entry of its own, and a refusal inside a batch stays the caller's alone.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use queue::{AnyStore, Error, KioskId, Language, NewCall, NodeId, Queue, QueueConfig, Tenant};

const CALLS: usize = 100;

fn new_call(n: usize) -> NewCall {
    NewCall {
        call_id: cid(&format!("c{n}")),
        kiosk_id: KioskId::new(format!("k{n}")).unwrap(),
        kiosk_node: NodeId::new("n1").unwrap(),
        service: svc("s"),
        language: Language::new("it").unwrap(),
        priority: 0,
    }
}

/// How many times Redis ran a script by `EVALSHA` (`INFO commandstats`).
async fn evalsha_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_share_commits_but_keep_their_versions_and_entries() {
    let server = testkit::RedisServer::start().await;
    let url = server.url();
    let store = queue::RedisStore::connect(&url, QueueConfig::default())
        .await
        .expect("connect");
    let q = Queue::new(AnyStore::Redis(store));
    let tenant = Tenant::new("group").unwrap();
    let mut events = q.subscribe(&tenant).await.expect("subscribe");
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // One operation first, so the tenant is loaded and cached.
    let first = q.enqueue(&tenant, t0(), new_call(0)).await.expect("first");
    let scripts_before = evalsha_calls(&mut raw).await;

    // CALLS enqueues at once, and among them one cancel of a call that does not exist.
    let mut tasks = Vec::new();
    for n in 1..=CALLS {
        let q = q.clone();
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            q.enqueue(&tenant, at_ms(n as u64), new_call(n)).await
        }));
    }
    let refused = {
        let q = q.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            q.cancel(
                &tenant,
                at(1),
                &KioskId::new("nobody").unwrap(),
                &cid("nothing"),
            )
            .await
        })
    };
    let mut versions = BTreeSet::new();
    for t in tasks {
        let applied = t.await.unwrap().expect("every enqueue is accepted");
        assert!(!applied.effects.is_empty(), "an enqueue has effects");
        assert!(versions.insert(applied.version), "a version given twice");
    }
    assert!(
        matches!(refused.await.unwrap(), Err(Error::NotFound(_))),
        "the refused operation gets its own error"
    );
    // Versions: one each, contiguous after the first operation's.
    let expected: BTreeSet<u64> = (first.version + 1..=first.version + CALLS as u64).collect();
    assert_eq!(versions, expected);

    // Fewer scripts than operations: the batches shared commits (the refusal costs a token read,
    // not a script).
    let scripts = evalsha_calls(&mut raw).await - scripts_before;
    assert!(
        scripts < CALLS as u64,
        "{scripts} commit scripts for {CALLS} operations: no batching"
    );

    // The subscription sees one batch per operation, with that operation's version.
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.is_superset(&expected) {
        let batch = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the subscription sees every operation's entry in time")
            .expect("subscription open");
        seen.insert(batch.version);
    }

    // And the state holds every call.
    let state = queue::Store::load_state(q.store(), &tenant)
        .await
        .expect("state");
    assert_eq!(state.calls.len(), CALLS + 1);
}
