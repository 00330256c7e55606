//! A node holding operators with offers and connected calls, and kiosks with waiting calls, dies: its
//! lease runs out. Two survivors clean up at the same moment. Every call is recovered as `queue.md` says
//! (operator lost → requeued at the head with its age; kiosk lost → abandoned), exactly once, and the
//! survivors then serve the remaining calls in the original order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use queue::{CallId, CallState, Effect, EndReason, NodeId, Presence, QueueConfig, RequeueReason};

const CALLS: usize = 150;

async fn crash(kind: Kind) {
    let cfg = QueueConfig {
        node_lease: Duration::from_secs(10),
        resume_grace: Duration::from_secs(30),
        offer_lease: Duration::from_secs(60),
        aging_step: None,
        ..QueueConfig::default()
    };
    let h = Harness::with_clients(kind, cfg, 3).await;
    let nodes = ["na", "nb", "nc"];
    // The dying node's operators: 10 × capacity 6, enough for 50 connected calls and 10 open offers.
    for i in 0..10 {
        h.op_on(
            at(0),
            &format!("a{i}"),
            &[("s", 5)],
            &["it"],
            6,
            "na",
            Presence::Paused("x".into()),
        )
        .await;
    }
    for i in 0..5 {
        h.op_on(
            at(0),
            &format!("b{i}"),
            &[("s", 5)],
            &["it"],
            1,
            "nb",
            Presence::Paused("x".into()),
        )
        .await;
    }
    let mut kiosk_node = HashMap::new();
    for i in 0..CALLS {
        let id = format!("c{i:03}");
        let node = nodes[i % 3];
        h.call_on(at_ms(1000 + i as u64 * 10), &id, "s", "it", 0, node)
            .await;
        kiosk_node.insert(cid(&id), node);
    }
    let mut offered = Vec::new();
    for i in 0..10 {
        let a =
            h.q.set_presence(
                &h.tenant,
                at(5),
                &oid(&format!("a{i}")),
                Presence::Available,
            )
            .await
            .unwrap();
        offered.extend(offers(&a));
    }
    assert_eq!(offered.len(), 60);
    // The first 50 offers are accepted; 10 stay open.
    for (c, o) in &offered[..50] {
        h.accept(at(6), o, c).await;
    }
    // The dying node's last heartbeat.
    h.clients[0]
        .heartbeat(&h.tenant, at(6), &NodeId::new("na").unwrap())
        .await
        .unwrap();
    for s in (5..=45).step_by(5) {
        for n in ["nb", "nc"] {
            h.clients[1]
                .heartbeat(&h.tenant, at(s), &NodeId::new(n).unwrap())
                .await
                .unwrap();
        }
    }
    let before = h.state().await;
    let waiting_before = before.waiting_in_order(&h.cfg, at(45)).len();
    assert_eq!(waiting_before, CALLS - 60);

    // na's lease ended at 16 s (last activity at 6 s); cleanup is allowed from 46 s.
    let early = h.clients[1].tick(&h.tenant, at_ms(45_999)).await.unwrap();
    assert!(!early
        .effects
        .iter()
        .any(|e| matches!(e, Effect::CallEnded { .. } | Effect::Requeued { .. })));
    let (r1, r2) = tokio::join!(
        h.clients[1].tick(&h.tenant, at(46)),
        h.clients[2].tick(&h.tenant, at(46))
    );
    let effects: Vec<Effect> = r1
        .unwrap()
        .effects
        .into_iter()
        .chain(r2.unwrap().effects)
        .collect();
    h.check().await;

    let mut ended: BTreeMap<CallId, EndReason> = BTreeMap::new();
    let mut requeued = Vec::new();
    for e in &effects {
        match e {
            Effect::CallEnded {
                call_id, reason, ..
            } => {
                assert!(
                    ended.insert(call_id.clone(), *reason).is_none(),
                    "{call_id} ended twice"
                );
            }
            Effect::Requeued {
                call_id,
                reason: RequeueReason::OperatorLost,
                ..
            } => requeued.push(call_id.clone()),
            _ => {}
        }
    }
    // Kiosks on the dead node: every one of their calls ends, once, as kiosk_lost.
    let on_na: Vec<&CallId> = kiosk_node
        .iter()
        .filter(|(_, n)| **n == "na")
        .map(|(c, _)| c)
        .collect();
    assert_eq!(ended.len(), on_na.len());
    assert!(on_na
        .iter()
        .all(|c| ended.get(*c) == Some(&EndReason::KioskLost)));
    // Connected calls of surviving kiosks go back to the head; none is lost.
    let connected: Vec<CallId> = offered[..50].iter().map(|(c, _)| cid(c)).collect();
    let mut expect_requeued: Vec<CallId> = connected
        .iter()
        .filter(|c| kiosk_node[*c] != "na")
        .cloned()
        .collect();
    requeued.sort();
    expect_requeued.sort();
    assert_eq!(requeued, expect_requeued);

    let after = h.state().await;
    assert!(after
        .operators
        .values()
        .filter(|o| o.node.as_str() == "na")
        .all(|o| o.load == 0 && o.offers == 0));
    let survivors: Vec<CallId> = kiosk_node
        .iter()
        .filter(|(_, n)| **n != "na")
        .map(|(c, _)| c.clone())
        .collect();
    assert_eq!(
        after.calls.len(),
        survivors.len(),
        "no call lost, none left over"
    );
    assert!(after.calls.values().all(|c| c.state == CallState::Waiting));

    // Expected service order: head calls by age, then the rest by age.
    let mut expected: Vec<CallId> = survivors.clone();
    expected.sort_by_key(|c| (!expect_requeued.contains(c), after.calls[c].enqueued_at));

    // The survivors' operators serve everything; record the order of offers.
    let mut order = Vec::new();
    let mut now = 50;
    let mut pending = Vec::new();
    for i in 0..5 {
        let a = h.clients[1]
            .set_presence(
                &h.tenant,
                at(now),
                &oid(&format!("b{i}")),
                Presence::Available,
            )
            .await;
        pending.extend(offers(&a.unwrap()));
    }
    while let Some((c, o)) = (!pending.is_empty()).then(|| pending.remove(0)) {
        order.push(cid(&c));
        now += 1;
        let q = &h.clients[1 + now as usize % 2];
        q.accept(&h.tenant, at(now), &oid(&o), &cid(&c))
            .await
            .unwrap();
        q.end(&h.tenant, at(now), &oid(&o), &cid(&c)).await.unwrap();
        let d = q
            .wrapup_done(&h.tenant, at(now), &oid(&o), &cid(&c))
            .await
            .unwrap();
        pending.extend(offers(&d));
        // Keep the survivors alive while serving.
        for n in ["nb", "nc"] {
            q.heartbeat(&h.tenant, at(now), &NodeId::new(n).unwrap())
                .await
                .unwrap();
        }
    }
    assert_eq!(
        order, expected,
        "served in the original order, requeued calls first"
    );
    assert!(h.state().await.calls.is_empty());
}

#[tokio::test]
async fn memory_node_crash() {
    crash(Kind::Memory).await;
}

#[tokio::test]
async fn redis_node_crash() {
    crash(Kind::Redis).await;
}
