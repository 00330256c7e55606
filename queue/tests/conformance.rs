//! The conformance suite: the same scenarios and assertions against the memory store and the Redis store
//! (a real `redis-server` per test). Each scenario is an async fn taking the store kind; the macro at the
//! bottom instantiates every scenario once per store.

mod common;

use std::time::Duration;

use common::*;
use queue::{
    CallState, Effect, EndReason, Error, MetricEvent, OfferOutcome, OperatorState, Presence,
    QueueConfig, QueueMetrics, RequeueReason, TransferTarget, WrapupPolicy, MISSED_OFFERS_REASON,
};

/// Aging off and node leases of a day, so scenarios that span minutes are not disturbed by the crash
/// cleanup of nodes that do not heartbeat; the crash scenario sets its own leases.
fn cfg() -> QueueConfig {
    QueueConfig {
        aging_step: None,
        node_lease: Duration::from_secs(86_400),
        ..QueueConfig::default()
    }
}

async fn ordering(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op_on(
        at(0),
        "a",
        &[("anagrafe", 5)],
        &["it"],
        1,
        "n1",
        Presence::Paused("login".into()),
    )
    .await;
    h.call(at(1), "c1", "anagrafe", "it", 0).await;
    h.call(at(2), "c2", "anagrafe", "it", 5).await;
    h.call(at(3), "c3", "anagrafe", "it", 0).await;
    h.call(at(3), "c4", "anagrafe", "it", 5).await;
    let a =
        h.q.set_presence(&h.tenant, at(4), &oid("a"), Presence::Available)
            .await
            .unwrap();
    assert_eq!(offers(&a), offer("c2", "a"), "highest priority first");
    let mut served = vec!["c2".to_string()];
    let mut now = 5;
    while served.len() < 4 {
        let call = served.last().unwrap().clone();
        h.accept(at(now), "a", &call).await;
        h.q.end(&h.tenant, at(now + 1), &oid("a"), &cid(&call))
            .await
            .unwrap();
        let a =
            h.q.wrapup_done(&h.tenant, at(now + 2), &oid("a"), &cid(&call))
                .await
                .unwrap();
        h.check().await;
        let o = offers(&a);
        assert_eq!(o.len(), 1);
        served.push(o[0].0.clone());
        now += 3;
    }
    assert_eq!(served, ["c2", "c4", "c1", "c3"], "priority, then age");
}

async fn eligibility(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "a", &[("anagrafe", 5)], &["it"], 2).await;
    h.op_on(
        at(0),
        "b",
        &[("anagrafe", 5)],
        &["de"],
        2,
        "n1",
        Presence::Paused("x".into()),
    )
    .await;
    assert!(
        offers(&h.call(at(1), "skill", "stato_civile", "it", 0).await).is_empty(),
        "no skill"
    );
    assert!(
        offers(&h.call(at(1), "lang", "anagrafe", "de", 0).await).is_empty(),
        "no language; b is paused"
    );
    assert_eq!(
        offers(&h.call(at(2), "ok", "anagrafe", "it", 0).await),
        offer("ok", "a")
    );
    // Already offered: a second free slot of `a` does not get the same call again.
    let s = h.state().await;
    assert_eq!(s.operators[&oid("a")].offers, 1);
    // Pinned to another operator: `a` has room but must not take it.
    h.accept(at(3), "a", "ok").await;
    let t =
        h.q.transfer(
            &h.tenant,
            at(4),
            &oid("a"),
            &cid("ok"),
            TransferTarget::Operator(oid("b")),
        )
        .await
        .unwrap();
    assert!(offers(&t).is_empty(), "pinned to b, who is paused");
    let a =
        h.q.set_presence(&h.tenant, at(5), &oid("b"), Presence::Available)
            .await
            .unwrap();
    let o = offers(&a);
    assert_eq!(
        o,
        [
            ("lang".to_string(), "b".to_string()),
            ("ok".into(), "b".into())
        ],
        "the pinned call goes to b"
    );
    h.check().await;
}

async fn capacity(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "a", &[("anagrafe", 5)], &["it"], 2).await;
    assert_eq!(
        offers(&h.call(at(1), "c1", "anagrafe", "it", 0).await),
        offer("c1", "a")
    );
    assert_eq!(
        offers(&h.call(at(2), "c2", "anagrafe", "it", 0).await),
        offer("c2", "a")
    );
    assert!(
        offers(&h.call(at(3), "c3", "anagrafe", "it", 0).await).is_empty(),
        "at capacity"
    );
    h.accept(at(4), "a", "c1").await;
    h.accept(at(4), "a", "c2").await;
    h.q.hold(&h.tenant, at(5), &oid("a"), &cid("c1"))
        .await
        .unwrap();
    assert!(
        offers(&h.tick(at(6)).await).is_empty(),
        "held calls count in the load"
    );
    // Ending one call: the operator has another call, so wrap-up does not block and c3 comes at once.
    let e =
        h.q.end(&h.tenant, at(7), &oid("a"), &cid("c2"))
            .await
            .unwrap();
    assert_eq!(offers(&e), offer("c3", "a"));
    let snap = h.q.snapshot(&h.tenant, at(8)).await.unwrap();
    let a = snap.operators.iter().find(|o| o.id == oid("a")).unwrap();
    assert_eq!((a.load, a.capacity), (1, 2));
    let states: Vec<_> = a
        .calls
        .iter()
        .map(|c| (c.call_id.to_string(), c.state.clone()))
        .collect();
    assert!(states.contains(&("c1".into(), "on_hold".into())));
    assert!(states.contains(&("c2".into(), "wrapup".into())));
    assert!(states.contains(&("c3".into(), "offered".into())));
    h.q.resume(&h.tenant, at(9), &oid("a"), &cid("c1"))
        .await
        .unwrap();
    h.check().await;
}

async fn skill_levels_idle_and_load(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "low", &[("anagrafe", 3)], &["it"], 1).await;
    h.op(at(1), "high", &[("anagrafe", 8)], &["it"], 1).await;
    assert_eq!(
        offers(&h.call(at(2), "c1", "anagrafe", "it", 0).await),
        offer("c1", "high"),
        "highest level"
    );
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "b", &[("anagrafe", 5)], &["it"], 3).await;
    h.op(at(0), "a", &[("anagrafe", 5)], &["it"], 3).await;
    h.op(at(1), "c", &[("anagrafe", 5)], &["it"], 3).await;
    // a and b idle since t0, c since t1: the tie on idle_since goes to the lower load, then the id.
    assert_eq!(
        offers(&h.call(at(2), "c1", "anagrafe", "it", 0).await),
        offer("c1", "a")
    );
    assert_eq!(
        offers(&h.call(at(2), "c2", "anagrafe", "it", 0).await),
        offer("c2", "b"),
        "lower load"
    );
    // Idle since t0 beats idle since t1, whatever the load.
    assert_eq!(
        offers(&h.call(at(2), "c3", "anagrafe", "it", 0).await),
        offer("c3", "a")
    );
    h.accept(at(3), "a", "c1").await;
    h.q.end(&h.tenant, at(4), &oid("a"), &cid("c1"))
        .await
        .unwrap();
    // a's load dropped at t4, so a is now the least idle; b (t0, one offer) and c (t1) come first.
    assert_eq!(
        offers(&h.call(at(5), "c4", "anagrafe", "it", 0).await),
        offer("c4", "b")
    );
}

async fn leases_expiry_reject_and_missed_offer_pause(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "a", &[("anagrafe", 9)], &["it"], 1).await;
    h.op(at(0), "b", &[("anagrafe", 5)], &["it"], 1).await;
    assert_eq!(
        offers(&h.call(at(1), "c1", "anagrafe", "it", 0).await),
        offer("c1", "a")
    );
    // Not yet expired at 15.999 s; expired at 16 s (offered at 1 s with a 15 s lease).
    assert!(h.tick(at_ms(15_999)).await.effects.is_empty());
    let t = h.tick(at(16)).await;
    assert!(t.effects.contains(&Effect::OfferClosed {
        call_id: cid("c1"),
        operator_id: oid("a"),
        outcome: OfferOutcome::Expired
    }));
    assert_eq!(
        offers(&t),
        offer("c1", "b"),
        "the operator who let it expire is tried last"
    );
    let err =
        h.q.accept(&h.tenant, at(17), &oid("a"), &cid("c1"))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    let r =
        h.q.reject(&h.tenant, at(18), &oid("b"), &cid("c1"))
            .await
            .unwrap();
    assert_eq!(
        offers(&r),
        offer("c1", "a"),
        "a declined first, b declined last"
    );
    // a misses a second offer in a row: paused("missed offers"); the call goes to b after all.
    let t = h.tick(at(33)).await;
    assert!(t.effects.contains(&Effect::OperatorStateChanged {
        operator_id: oid("a"),
        state: OperatorState::Paused(MISSED_OFFERS_REASON.into())
    }));
    assert_eq!(offers(&t), offer("c1", "b"));
    // Rejects are not missed offers: b rejects three times and stays available.
    h.call(at(34), "c2", "anagrafe", "it", 0).await;
    for i in 0..3 {
        h.q.reject(&h.tenant, at(35 + i), &oid("b"), &cid("c1"))
            .await
            .unwrap();
        h.check().await;
    }
    let snap = h.q.snapshot(&h.tenant, at(40)).await.unwrap();
    let b = snap.operators.iter().find(|o| o.id == oid("b")).unwrap();
    assert_eq!(b.state, OperatorState::Available);
    // Accept after the lease fails with conflict and changes nothing.
    let off = h.state().await;
    let CallState::Offered {
        operator,
        expires_at,
    } = off.calls[&cid("c1")].state.clone()
    else {
        panic!("c1 offered")
    };
    let err =
        h.q.accept(&h.tenant, expires_at, &operator, &cid("c1"))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    // Becoming available again resets the missed count.
    h.q.set_presence(&h.tenant, at(41), &oid("a"), Presence::Available)
        .await
        .unwrap();
    let s = h.state().await;
    assert_eq!(s.operators[&oid("a")].missed_offers, 0);
}

async fn transfer_keeps_age(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "a", &[("anagrafe", 5)], &["it"], 1).await;
    h.op_on(
        at(0),
        "s",
        &[("stato_civile", 5)],
        &["it"],
        1,
        "n1",
        Presence::Paused("x".into()),
    )
    .await;
    h.call(at(1), "old", "anagrafe", "it", 0).await;
    h.accept(at(2), "a", "old").await;
    h.call(at(50), "young", "stato_civile", "it", 0).await;
    let t =
        h.q.transfer(
            &h.tenant,
            at(100),
            &oid("a"),
            &cid("old"),
            TransferTarget::Service(svc("stato_civile")),
        )
        .await;
    let t = t.unwrap();
    assert!(t.effects.iter().any(|e| matches!(
        e,
        Effect::Requeued {
            reason: RequeueReason::Transferred,
            ..
        }
    )));
    let s = h.state().await;
    assert_eq!(s.calls[&cid("old")].enqueued_at, at(1), "original age kept");
    assert_eq!(s.calls[&cid("old")].state, CallState::Waiting);
    let a =
        h.q.set_presence(&h.tenant, at(101), &oid("s"), Presence::Available)
            .await
            .unwrap();
    assert_eq!(
        offers(&a),
        offer("old", "s"),
        "the transferred call keeps its place ahead of younger calls"
    );
    // Transfer to a person: only that operator is offered the call.
    h.accept(at(102), "s", "old").await;
    h.op(at(103), "other", &[("anagrafe", 10)], &["it"], 1)
        .await;
    let t =
        h.q.transfer(
            &h.tenant,
            at(104),
            &oid("s"),
            &cid("old"),
            TransferTarget::Operator(oid("a")),
        )
        .await;
    // s is free again and takes the younger stato_civile call.
    assert_eq!(
        offers(&t.unwrap()),
        [
            ("old".to_string(), "a".to_string()),
            ("young".into(), "s".into())
        ]
    );
    let err =
        h.q.transfer(
            &h.tenant,
            at(105),
            &oid("a"),
            &cid("old"),
            TransferTarget::Operator(oid("a")),
        )
        .await;
    assert!(err.is_err());
    h.check().await;
}

async fn aging(kind: Kind) {
    for aging in [None, Some(Duration::from_secs(120))] {
        let h = Harness::new(
            kind,
            QueueConfig {
                aging_step: aging,
                ..cfg()
            },
        )
        .await;
        h.op_on(
            at(0),
            "a",
            &[("rare", 5), ("busy", 5)],
            &["it"],
            1,
            "n1",
            Presence::Paused("x".into()),
        )
        .await;
        h.call(at(0), "rare", "rare", "it", 0).await;
        h.call(at(290), "busy", "busy", "it", 2).await;
        let a =
            h.q.set_presence(&h.tenant, at(300), &oid("a"), Presence::Available)
                .await
                .unwrap();
        let expect = if aging.is_some() { "rare" } else { "busy" };
        assert_eq!(offers(&a), offer(expect, "a"), "aging {aging:?}");
    }
    // Effective priority stops at 9: an old priority-8 call and a younger priority-9 call tie at 9, and
    // the older wins.
    let h = Harness::new(
        kind,
        QueueConfig {
            aging_step: Some(Duration::from_secs(120)),
            ..cfg()
        },
    )
    .await;
    h.op_on(
        at(0),
        "a",
        &[("s", 5)],
        &["it"],
        1,
        "n1",
        Presence::Paused("x".into()),
    )
    .await;
    h.call(at(0), "p8", "s", "it", 8).await;
    h.call(at(1), "p9", "s", "it", 9).await;
    let a =
        h.q.set_presence(&h.tenant, at(1000), &oid("a"), Presence::Available)
            .await
            .unwrap();
    assert_eq!(offers(&a), offer("p8", "a"));
}

async fn wrapup(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "a", &[("s", 5)], &["it"], 1).await;
    h.call(at(1), "c1", "s", "it", 0).await;
    h.accept(at(2), "a", "c1").await;
    h.call(at(3), "c2", "s", "it", 0).await;
    let e =
        h.q.end(&h.tenant, at(10), &oid("a"), &cid("c1"))
            .await
            .unwrap();
    assert!(e.effects.contains(&Effect::CallEnded {
        call_id: cid("c1"),
        kiosk_id: kid("c1"),
        operator_id: Some(oid("a")),
        reason: EndReason::Completed
    }));
    assert!(e.effects.contains(&Effect::OperatorStateChanged {
        operator_id: oid("a"),
        state: OperatorState::Wrapup
    }));
    assert!(
        offers(&e).is_empty(),
        "wrap-up blocks a single-call operator"
    );
    assert!(offers(&h.tick(at(39)).await).is_empty());
    let t = h.tick(at(40)).await;
    assert!(t
        .effects
        .iter()
        .any(|e| matches!(e, Effect::WrapupEnded { .. })));
    assert_eq!(
        offers(&t),
        offer("c2", "a"),
        "wrap-up ends by itself after wrapup_s"
    );
    h.accept(at(41), "a", "c2").await;
    h.q.end(&h.tenant, at(50), &oid("a"), &cid("c2"))
        .await
        .unwrap();
    h.call(at(51), "c3", "s", "it", 0).await;
    let d =
        h.q.wrapup_done(&h.tenant, at(52), &oid("a"), &cid("c2"))
            .await
            .unwrap();
    assert_eq!(offers(&d), offer("c3", "a"), "wrapup.done ends it early");
    let handled: Vec<_> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Metric(MetricEvent::Handled { handle, .. }) => Some(*handle),
            _ => None,
        })
        .collect();
    assert_eq!(
        handled,
        [Duration::from_secs(11)],
        "connected 9 s + wrap-up 2 s"
    );
    // With the `Never` policy wrap-up does not block at all.
    let h = Harness::new(
        kind,
        QueueConfig {
            wrapup_policy: WrapupPolicy::Never,
            ..cfg()
        },
    )
    .await;
    h.op(at(0), "a", &[("s", 5)], &["it"], 1).await;
    h.call(at(1), "c1", "s", "it", 0).await;
    h.accept(at(2), "a", "c1").await;
    h.call(at(3), "c2", "s", "it", 0).await;
    assert_eq!(
        offers(
            &h.q.end(&h.tenant, at(4), &oid("a"), &cid("c1"))
                .await
                .unwrap()
        ),
        offer("c2", "a")
    );
}

async fn abandon(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.call(at(0), "short", "s", "it", 0).await;
    h.call(at(0), "long", "s", "it", 0).await;
    let err =
        h.q.cancel(&h.tenant, at(1), &kid("long"), &cid("short"))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "another kiosk's call");
    let c =
        h.q.cancel(&h.tenant, at(2), &kid("short"), &cid("short"))
            .await
            .unwrap();
    assert!(c.effects.contains(&Effect::CallEnded {
        call_id: cid("short"),
        kiosk_id: kid("short"),
        operator_id: None,
        reason: EndReason::Abandoned
    }));
    h.q.cancel(&h.tenant, at(90), &kid("long"), &cid("long"))
        .await
        .unwrap();
    let err =
        h.q.cancel(&h.tenant, at(91), &kid("long"), &cid("long"))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    let snap = h.q.snapshot(&h.tenant, at(92)).await.unwrap();
    let s = &snap.services[0];
    assert_eq!(
        (
            s.rolling.offered,
            s.rolling.abandoned,
            s.rolling.abandoned_short
        ),
        (2, 1, 1)
    );
    assert_eq!(
        s.rolling.service_level, 0.0,
        "one abandon after T, nothing answered"
    );
    // An offered call cancelled: the operator's offer is closed.
    h.op(at(100), "a", &[("s", 5)], &["it"], 1).await;
    h.call(at(101), "c", "s", "it", 0).await;
    let c =
        h.q.cancel(&h.tenant, at(102), &kid("c"), &cid("c"))
            .await
            .unwrap();
    assert!(c.effects.contains(&Effect::OfferClosed {
        call_id: cid("c"),
        operator_id: oid("a"),
        outcome: OfferOutcome::Cancelled
    }));
    // A kiosk has one active call at a time.
    h.call(at(103), "d", "s", "it", 0).await;
    let dup = queue::NewCall {
        call_id: cid("d2"),
        kiosk_id: kid("d"),
        kiosk_node: queue::NodeId::new("n1").unwrap(),
        service: svc("s"),
        language: queue::Language::new("it").unwrap(),
        priority: 0,
    };
    assert!(matches!(
        h.q.enqueue(&h.tenant, at(104), dup).await.unwrap_err(),
        Error::Conflict(_)
    ));
    // The kiosk lost past the grace: abandoned with reason kiosk_lost.
    let l =
        h.q.kiosk_lost(
            &h.tenant,
            at(110),
            &kid("d"),
            &queue::NodeId::new("n1").unwrap(),
        )
        .await
        .unwrap();
    assert!(l.effects.iter().any(|e| matches!(
        e,
        Effect::CallEnded {
            reason: EndReason::KioskLost,
            ..
        }
    )));
    h.check().await;
}

async fn requeue_at_head_when_operator_lost(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    h.op(at(0), "a", &[("s", 5)], &["it"], 1).await;
    h.call(at(1), "x", "s", "it", 0).await;
    h.accept(at(2), "a", "x").await;
    h.call(at(3), "urgent", "s", "it", 9).await;
    h.op_on(
        at(4),
        "b",
        &[("s", 5)],
        &["it"],
        1,
        "n2",
        Presence::Paused("x".into()),
    )
    .await;
    let l =
        h.q.operator_lost(
            &h.tenant,
            at(5),
            &oid("a"),
            &queue::NodeId::new("n1").unwrap(),
        )
        .await
        .unwrap();
    assert!(l.effects.iter().any(|e| matches!(
        e,
        Effect::Requeued {
            reason: RequeueReason::OperatorLost,
            ..
        }
    )));
    let a =
        h.q.set_presence(&h.tenant, at(6), &oid("b"), Presence::Available)
            .await
            .unwrap();
    assert_eq!(
        offers(&a),
        offer("x", "b"),
        "requeued at the head, even before a higher priority"
    );
    let s = h.state().await;
    assert_eq!(s.calls[&cid("x")].enqueued_at, at(1));
    let snap = h.q.snapshot(&h.tenant, at(7)).await.unwrap();
    assert!(
        snap.operators.iter().all(|o| o.id != oid("a")),
        "a is offline with no calls"
    );
}

async fn crash_cleanup(kind: Kind) {
    let cfg = QueueConfig {
        node_lease: Duration::from_secs(10),
        resume_grace: Duration::from_secs(30),
        ..cfg()
    };
    let h = Harness::new(kind, cfg).await;
    let (n1, n2) = (&h.clients[0], &h.clients[1]);
    h.op_on(
        at(0),
        "a",
        &[("s", 5)],
        &["it"],
        2,
        "n1",
        Presence::Available,
    )
    .await;
    h.call_on(at(1), "connected", "s", "it", 0, "n2").await;
    h.accept(at(2), "a", "connected").await;
    h.call_on(at(3), "offered", "s", "it", 0, "n2").await;
    h.call_on(at(4), "kiosk-on-n1", "s", "it", 0, "n1").await;
    h.call_on(at(5), "waiting", "s", "it", 0, "n2").await;
    h.op_on(
        at(5),
        "b",
        &[("s", 5)],
        &["it"],
        3,
        "n2",
        Presence::Paused("x".into()),
    )
    .await;
    // n2 keeps heartbeating; n1 stops after t5 (lease until 15 s, cleanup from 45 s).
    for s in (10..=40).step_by(10) {
        n2.heartbeat(&h.tenant, at(s), &queue::NodeId::new("n2").unwrap())
            .await
            .unwrap();
    }
    // n1's last activity was at t4: lease until 14 s, cleanup allowed from 44 s.
    let before = n2.tick(&h.tenant, at_ms(43_999)).await.unwrap();
    assert!(before
        .effects
        .iter()
        .all(|e| !matches!(e, Effect::CallEnded { .. } | Effect::Requeued { .. })));
    // Two survivors clean up at once: the result is the same as one doing it.
    let (r1, r2) = tokio::join!(n1.tick(&h.tenant, at(44)), n2.tick(&h.tenant, at(44)));
    let all: Vec<Effect> = r1
        .unwrap()
        .effects
        .into_iter()
        .chain(r2.unwrap().effects)
        .collect();
    let ended: Vec<_> = all
        .iter()
        .filter(|e| matches!(e, Effect::CallEnded { .. }))
        .collect();
    assert_eq!(ended.len(), 1, "{all:?}");
    assert!(
        matches!(ended[0], Effect::CallEnded { call_id, reason: EndReason::KioskLost, .. } if call_id == &cid("kiosk-on-n1"))
    );
    let requeued = all
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Requeued {
                    reason: RequeueReason::OperatorLost,
                    ..
                }
            )
        })
        .count();
    assert_eq!(requeued, 1);
    h.check().await;
    let a = n2
        .set_presence(&h.tenant, at(46), &oid("b"), Presence::Available)
        .await
        .unwrap();
    let got: Vec<String> = offers(&a).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        got,
        ["connected", "offered", "waiting"],
        "head first, then the original order"
    );
    // Running the cleanup again changes nothing.
    let again = n1.tick(&h.tenant, at(47)).await.unwrap();
    assert!(again.effects.is_empty(), "{:?}", again.effects);
}

async fn positions_and_estimates(kind: Kind) {
    let h = Harness::new(
        kind,
        QueueConfig {
            default_aht: Duration::from_secs(120),
            ..cfg()
        },
    )
    .await;
    let a = h.call(at(0), "c1", "s", "it", 0).await;
    assert!(
        a.effects.contains(&Effect::QueueUpdate {
            call_id: cid("c1"),
            kiosk_id: kid("c1"),
            position: 1,
            estimated_wait: None,
            interval: None,
        }),
        "no eligible operator online: unknown, not invented"
    );
    h.call(at(1), "c2", "s", "it", 0).await;
    h.op_on(
        at(2),
        "a",
        &[("s", 5)],
        &["it"],
        2,
        "n1",
        Presence::Paused("x".into()),
    )
    .await;
    let p =
        h.q.set_presence(&h.tenant, at(3), &oid("a"), Presence::Available)
            .await
            .unwrap();
    // Both are offered now; a third call waits at position 1. Estimates project when each slot frees:
    // both of a's slots hold an offer, counted as a call of one AHT from now, so the first frees at
    // 4 s + 120 s and c3 waits 120 s (the basic formula said 1 × 120 s / capacity 2 = 60 s).
    assert_eq!(offers(&p).len(), 2);
    let c3 = h.call(at(4), "c3", "s", "it", 0).await;
    assert!(c3.effects.contains(&Effect::QueueUpdate {
        call_id: cid("c3"),
        kiosk_id: kid("c3"),
        position: 1,
        estimated_wait: Some(Duration::from_secs(120)),
        // Before any history every replay draws the AHT: a point, so a point interval.
        interval: Some((Duration::from_secs(120), Duration::from_secs(120))),
    }));
    let c4 = h.call(at(5), "c4", "s", "it", 0).await;
    let updates: Vec<_> = c4
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::QueueUpdate { .. }))
        .collect();
    assert_eq!(updates.len(), 1, "only the new call's figures changed");
    // AHT learns by (3·old + new) / 4: a handled call of 40 s moves 120 s to 100 s.
    h.accept(at(10), "a", "c1").await;
    h.q.end(&h.tenant, at(30), &oid("a"), &cid("c1"))
        .await
        .unwrap();
    h.q.wrapup_done(&h.tenant, at(50), &oid("a"), &cid("c1"))
        .await
        .unwrap();
    let snap = h.q.snapshot(&h.tenant, at(51)).await.unwrap();
    // The first sample seeds the average: (3·40 + 40)/4 = 40 s.
    assert_eq!(snap.services[0].aht_ewma, Duration::from_secs(40));
}

async fn metrics(kind: Kind) {
    let h = Harness::new(
        kind,
        QueueConfig {
            offer_lease: Duration::from_secs(200),
            ..cfg()
        },
    )
    .await;
    h.op(at(0), "a", &[("s", 5)], &["it"], 1).await;
    h.call(at(0), "fast", "s", "it", 0).await;
    h.accept(at(10), "a", "fast").await;
    h.call(at(11), "slow", "s", "it", 0).await;
    h.q.end(&h.tenant, at(20), &oid("a"), &cid("fast"))
        .await
        .unwrap();
    h.q.wrapup_done(&h.tenant, at(25), &oid("a"), &cid("fast"))
        .await
        .unwrap();
    h.accept(at(100), "a", "slow").await;
    h.call(at(101), "gone", "s", "it", 0).await;
    h.q.cancel(&h.tenant, at(103), &kid("gone"), &cid("gone"))
        .await
        .unwrap();
    h.call(at(104), "waits", "s", "it", 0).await;
    let snap = h.q.snapshot(&h.tenant, at(200)).await.unwrap();
    let s = &snap.services[0];
    assert_eq!(s.waiting, 1);
    assert_eq!(s.longest_wait, Duration::from_secs(96));
    for w in [&s.rolling, &s.today] {
        assert_eq!(
            (w.offered, w.answered, w.abandoned, w.abandoned_short),
            (4, 2, 0, 1)
        );
        assert_eq!(w.service_level, 0.5, "fast in 10 s, slow in 89 s > 60 s");
        assert_eq!(w.asa, Some(Duration::from_millis(49_500)));
        assert_eq!(w.aht, Some(Duration::from_secs(15)));
    }
    // Fifteen minutes later the rolling window is empty, the day is not.
    let later = h.q.snapshot(&h.tenant, at(200 + 16 * 60)).await.unwrap();
    assert_eq!(later.services[0].rolling.offered, 0);
    assert_eq!(later.services[0].rolling.service_level, 1.0);
    assert_eq!(later.services[0].today.offered, 4);
    let a = snap.operators.iter().find(|o| o.id == oid("a")).unwrap();
    let occ = a.occupancy.unwrap();
    assert!((0.0..=1.0).contains(&occ) && occ > 0.5, "occupancy {occ}");
    // Prometheus export with the names of queue.md.
    let reg = prometheus::Registry::new();
    let m = QueueMetrics::register(&reg).unwrap();
    assert!(
        QueueMetrics::register(&reg).is_err(),
        "registering twice is an error, not a panic"
    );
    let replay =
        h.q.accept(&h.tenant, at(201), &oid("a"), &cid("slow"))
            .await;
    assert!(replay.is_err());
    let e =
        h.q.end(&h.tenant, at(202), &oid("a"), &cid("slow"))
            .await
            .unwrap();
    m.observe(&h.tenant, &e.effects);
    let d =
        h.q.wrapup_done(&h.tenant, at(203), &oid("a"), &cid("slow"))
            .await
            .unwrap();
    m.observe(&h.tenant, &d.effects);
    assert_eq!(offers(&d), offer("waits", "a"));
    let w =
        h.q.accept(&h.tenant, at(204), &oid("a"), &cid("waits"))
            .await
            .unwrap();
    m.observe(&h.tenant, &w.effects);
    m.set_gauges(&h.tenant, &h.q.snapshot(&h.tenant, at(204)).await.unwrap());
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&reg.gather())
        .unwrap();
    for name in [
        "sportello_queue_waiting",
        "sportello_queue_longest_wait_seconds",
        "sportello_calls_total",
        "sportello_queue_wait_seconds",
        "sportello_handle_seconds",
        "sportello_operators",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(text.contains("outcome=\"handled\""));
    assert!(!text.contains("call_id"), "no per-call labels");
}

async fn bad_input_is_an_error(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    let bad = queue::NewCall {
        call_id: cid("c"),
        kiosk_id: kid("c"),
        kiosk_node: queue::NodeId::new("n1").unwrap(),
        service: svc("s"),
        language: queue::Language::new("it").unwrap(),
        priority: 10,
    };
    assert!(matches!(
        h.q.enqueue(&h.tenant, at(0), bad).await.unwrap_err(),
        Error::Invalid(_)
    ));
    let login = queue::OperatorLogin {
        operator_id: oid("a"),
        skills: Default::default(),
        languages: vec![],
        capacity: 0,
        node: queue::NodeId::new("n1").unwrap(),
        presence: Presence::Available,
    };
    assert_eq!(
        h.q.operator_online(&h.tenant, at(0), login)
            .await
            .unwrap_err()
            .code(),
        "invalid"
    );
    assert_eq!(
        h.q.accept(&h.tenant, at(0), &oid("nobody"), &cid("c"))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    h.op(at(0), "a", &[("s", 5)], &["it"], 1).await;
    assert_eq!(
        h.q.end(&h.tenant, at(0), &oid("a"), &cid("nope"))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    h.call(at(1), "c", "s", "it", 0).await;
    h.accept(at(2), "a", "c").await;
    assert_eq!(
        h.q.hold(&h.tenant, at(3), &oid("a"), &cid("c"))
            .await
            .map(|_| ())
            .unwrap_err_or_ok(),
        Ok(())
    );
    assert_eq!(
        h.q.hold(&h.tenant, at(3), &oid("a"), &cid("c"))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    assert_eq!(
        h.q.operator_offline(&h.tenant, at(4), &oid("a"))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    h.check().await;
}

/// `Result` helper so an Ok assertion reads the same as the error ones.
trait OkOrErr {
    fn unwrap_err_or_ok(self) -> Result<(), String>;
}

impl OkOrErr for Result<(), Error> {
    fn unwrap_err_or_ok(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// A lost-client notice from a node the client has left changes nothing; hold and resume are
/// effects the kiosk hears about; a call pinned to an operator who leaves goes back to its service.
async fn late_notices_hold_effects_and_unpinning(kind: Kind) {
    let h = Harness::new(kind, cfg()).await;
    let n1 = queue::NodeId::new("n1").unwrap();
    let n2 = queue::NodeId::new("n2").unwrap();
    h.op(at(0), "a", &[("s", 5)], &["it"], 2).await;
    h.call(at(1), "x", "s", "it", 0).await;
    h.accept(at(2), "a", "x").await;
    // The operator and the kiosk both resume on n2; n1's late notices must not undo that.
    h.op_on(
        at(3),
        "a",
        &[("s", 5)],
        &["it"],
        2,
        "n2",
        Presence::Paused("login".into()),
    )
    .await;
    h.q.reattach_kiosk(&h.tenant, at(3), &cid("x"), &n2)
        .await
        .unwrap();
    let late =
        h.q.operator_lost(&h.tenant, at(4), &oid("a"), &n1)
            .await
            .unwrap();
    assert!(late.effects.is_empty(), "{:?}", late.effects);
    let late =
        h.q.kiosk_lost(&h.tenant, at(4), &kid("x"), &n1)
            .await
            .unwrap();
    assert!(late.effects.is_empty(), "{:?}", late.effects);
    assert!(matches!(
        h.state().await.calls[&cid("x")].state,
        CallState::Connected { .. }
    ));
    let held =
        h.q.hold(&h.tenant, at(5), &oid("a"), &cid("x"))
            .await
            .unwrap();
    assert!(held
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Held { call_id, .. } if call_id == &cid("x"))));
    let resumed =
        h.q.resume(&h.tenant, at(6), &oid("a"), &cid("x"))
            .await
            .unwrap();
    assert!(resumed
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Resumed { call_id, .. } if call_id == &cid("x"))));

    // Transfer in person: refused to someone logged out, pinned to someone paused.
    h.op_on(
        at(7),
        "c",
        &[("s", 5)],
        &["it"],
        1,
        "n2",
        Presence::Paused("x".into()),
    )
    .await;
    h.q.set_presence(&h.tenant, at(7), &oid("c"), Presence::Offline)
        .await
        .unwrap();
    assert!(matches!(
        h.q.transfer(
            &h.tenant,
            at(8),
            &oid("a"),
            &cid("x"),
            TransferTarget::Operator(oid("c"))
        )
        .await
        .unwrap_err(),
        Error::Conflict(_)
    ));
    h.q.set_presence(&h.tenant, at(8), &oid("c"), Presence::Paused("x".into()))
        .await
        .unwrap();
    h.q.set_presence(&h.tenant, at(8), &oid("a"), Presence::Paused("busy".into()))
        .await
        .unwrap();
    let t =
        h.q.transfer(
            &h.tenant,
            at(9),
            &oid("a"),
            &cid("x"),
            TransferTarget::Operator(oid("c")),
        )
        .await
        .unwrap();
    assert!(offers(&t).is_empty(), "waits for c");
    assert_eq!(h.state().await.calls[&cid("x")].pinned, Some(oid("c")));
    // c logs out: the call is no longer pinned and goes to whoever can take the service.
    h.q.set_presence(&h.tenant, at(10), &oid("c"), Presence::Offline)
        .await
        .unwrap();
    assert_eq!(h.state().await.calls[&cid("x")].pinned, None);
    let a =
        h.q.set_presence(&h.tenant, at(11), &oid("a"), Presence::Available)
            .await
            .unwrap();
    assert_eq!(offers(&a), offer("x", "a"));
    // The kiosk lost on the node it lives on: the call ends with that reason.
    h.accept(at(12), "a", "x").await;
    let lost =
        h.q.kiosk_lost(&h.tenant, at(13), &kid("x"), &n2)
            .await
            .unwrap();
    assert!(lost.effects.iter().any(|e| matches!(
        e,
        Effect::CallEnded {
            reason: EndReason::KioskLost,
            ..
        }
    )));
    h.check().await;
}

/// Revoked login sessions: seen by every client of the store, kept until their time, then gone;
/// revoking again never shortens the time; tenants do not see each other's.
async fn revocations(kind: Kind) {
    let h = Harness::with_clients(kind, cfg(), 1).await;
    let other = &h.clients[0];
    assert!(h.q.revoked(&h.tenant, at(0)).await.unwrap().is_empty());
    h.q.revoke(&h.tenant, "sid-a", at(100)).await.unwrap();
    h.q.revoke(&h.tenant, "sid-b", at(50)).await.unwrap();
    h.q.revoke(&h.tenant, "sid-a", at(10)).await.unwrap();
    let mut seen = other.revoked(&h.tenant, at(20)).await.unwrap();
    seen.sort();
    assert_eq!(seen, ["sid-a", "sid-b"]);
    assert_eq!(other.revoked(&h.tenant, at(60)).await.unwrap(), ["sid-a"]);
    assert!(other.revoked(&h.tenant, at(100)).await.unwrap().is_empty());
    let elsewhere = queue::Tenant::new("altro").unwrap();
    h.q.revoke(&elsewhere, "sid-c", at(500)).await.unwrap();
    assert!(h.q.revoked(&h.tenant, at(100)).await.unwrap().is_empty());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::Kind::Memory).await; })*
        }
        mod redis {
            $(#[tokio::test] async fn $name() { super::$name(super::Kind::Redis).await; })*
        }
    };
}

conformance!(
    ordering,
    eligibility,
    capacity,
    skill_levels_idle_and_load,
    leases_expiry_reject_and_missed_offer_pause,
    transfer_keeps_age,
    aging,
    wrapup,
    abandon,
    requeue_at_head_when_operator_lost,
    crash_cleanup,
    positions_and_estimates,
    metrics,
    bad_input_is_an_error,
    late_notices_hold_effects_and_unpinning,
    revocations,
);
