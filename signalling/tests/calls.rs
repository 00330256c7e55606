//! Whole calls over the wire, end to end: a server on port 0 (memory store, and a real `redis-server`
//! for the Redis store), the headless kiosk and the operator bot of `kiosk-client` as real WebSocket
//! clients. Each scenario is an async fn taking the store; the macro at the bottom runs it on both.
//! Two `sportello` processes sharing one Redis, and the generated authorization matrix, are at the end.

mod common;

use std::time::Duration;

use common::centre::{
    available, call, event, ok, on_call, refused, request_call, Centre, Kind, Op,
};
use protocol::{CallRequest, CallTransfer, ErrorCode, Event, PresenceSet, PresenceState, Request};

const ANAGRAFE: &[(&str, u8)] = &[("anagrafe", 5)];
const STATO_CIVILE: &[(&str, u8)] = &[("stato_civile", 5)];

// ---- scenarios ----

/// Placed, offered, accepted, held, resumed, transferred to a service and then to a person, ended,
/// wrapped up; every step seen by both sides.
async fn whole_call(kind: Kind) {
    let c = Centre::start(
        kind,
        &[
            Op::new("op-a", ANAGRAFE, 1),
            Op::new("op-b", STATO_CIVILE, 1),
            Op::new("op-c", STATO_CIVILE, 1),
        ],
        &["k1"],
        |_| {},
    )
    .await;
    let mut a = c.operator("op-a").await;
    let mut b = c.operator("op-b").await;
    let mut cc = c.operator("op-c").await;
    let mut k = c.kiosk("k1").await;

    let id = request_call(&mut k, "anagrafe").await;
    // Nobody is available: the kiosk is told its place and that the wait is unknown.
    let Event::QueueUpdate(u) = on_call(k.session(), "queue.update", &id).await else {
        unreachable!()
    };
    assert_eq!((u.position, u.estimated_wait_s), (1, None));
    assert_eq!(
        (u.estimated_wait_low_s, u.estimated_wait_high_s),
        (None, None)
    );
    // One active call per kiosk.
    assert_eq!(
        refused(
            k.session()
                .request(&Request::CallRequest(CallRequest {
                    service: "anagrafe".into(),
                    language: "it".into(),
                    priority: None,
                }))
                .await
        ),
        ErrorCode::Conflict
    );

    ok(a.session(), available()).await;
    let Event::CallOffered(o) = on_call(a.session(), "call.offered", &id).await else {
        unreachable!()
    };
    assert_eq!(o.kiosk.id, "k1");
    assert_eq!(o.kiosk.name, "Chiosco k1");
    assert_eq!(o.service, "anagrafe");
    assert!(o.expires_in_s >= 1 && o.expires_in_s <= 15, "{o:?}");
    ok(a.session(), Request::CallAccept(call(&id))).await;
    let Event::CallAssigned(asg) = on_call(k.session(), "call.assigned", &id).await else {
        unreachable!()
    };
    assert_eq!(asg.operator.id, "op-a");
    assert_eq!(asg.operator.display_name, "Operatore op-a");
    on_call(a.session(), "call.connected", &id).await;

    ok(a.session(), Request::CallHold(call(&id))).await;
    on_call(k.session(), "call.held", &id).await;
    // Only a held call can be resumed, only a connected one held.
    assert_eq!(
        refused(a.session().request(&Request::CallHold(call(&id))).await),
        ErrorCode::Conflict
    );
    ok(a.session(), Request::CallResume(call(&id))).await;
    on_call(k.session(), "call.resumed", &id).await;

    // To another service: back to the queue with its age; op-b takes it.
    ok(b.session(), available()).await;
    ok(
        cc.session(),
        Request::PresenceSet(PresenceSet {
            state: PresenceState::Paused,
            reason: Some("caffè".into()),
        }),
    )
    .await;
    ok(
        a.session(),
        Request::CallTransfer(CallTransfer {
            call_id: id.clone(),
            service: Some("stato_civile".into()),
            operator_id: None,
        }),
    )
    .await;
    let Event::CallEnded(e) = on_call(a.session(), "call.ended", &id).await else {
        unreachable!()
    };
    assert_eq!(e.reason, "transferred");
    let Event::CallRequeued(r) = on_call(k.session(), "call.requeued", &id).await else {
        unreachable!()
    };
    assert_eq!(r.reason, "transferred");
    let Event::CallOffered(o) = on_call(b.session(), "call.offered", &id).await else {
        unreachable!()
    };
    assert_eq!(o.service, "stato_civile");
    assert!(o.waited_s < 60);
    ok(b.session(), Request::CallAccept(call(&id))).await;
    let Event::CallAssigned(asg) = on_call(k.session(), "call.assigned", &id).await else {
        unreachable!()
    };
    assert_eq!(asg.operator.id, "op-b");

    // To a person who is paused: the call waits for them, and nobody else gets it.
    ok(
        b.session(),
        Request::CallTransfer(CallTransfer {
            call_id: id.clone(),
            service: None,
            operator_id: Some("op-c".into()),
        }),
    )
    .await;
    on_call(k.session(), "call.requeued", &id).await;
    ok(cc.session(), available()).await;
    on_call(cc.session(), "call.offered", &id).await;
    // op-c declines: the call is no longer pinned to them and goes back to its service, so op-b
    // (available again) gets it rather than op-c over and over.
    ok(cc.session(), Request::CallReject(call(&id))).await;
    on_call(b.session(), "call.offered", &id).await;
    ok(b.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;

    ok(b.session(), Request::CallEnd(call(&id))).await;
    let Event::CallEnded(e) = on_call(k.session(), "call.ended", &id).await else {
        unreachable!()
    };
    assert_eq!(e.reason, "completed");
    // op-b already heard "transferred" for this call when it passed it on; now it ends for good.
    event(
        b.session(),
        |e| matches!(e, Event::CallEnded(x) if x.call_id == id && x.reason == "completed"),
    )
    .await;
    ok(b.session(), common::centre::wrapup(&id)).await;
    on_call(b.session(), "wrapup.ended", &id).await;
    // The call is gone: acting on it again is not_found.
    assert_eq!(
        refused(b.session().request(&Request::CallEnd(call(&id))).await),
        ErrorCode::NotFound
    );
    // The kiosk may call again.
    request_call(&mut k, "anagrafe").await;
}

/// A reject and an expired lease both re-offer the call to someone else.
async fn rejects_and_expiries_reoffer(kind: Kind) {
    let c = Centre::start(
        kind,
        &[Op::new("op-a", ANAGRAFE, 1), Op::new("op-b", ANAGRAFE, 1)],
        &["k1"],
        |cfg| cfg.queue.offer_lease_s = 2,
    )
    .await;
    let mut a = c.operator("op-a").await;
    let mut b = c.operator("op-b").await;
    ok(a.session(), available()).await;
    ok(b.session(), available()).await;
    let mut k = c.kiosk("k1").await;
    let id = request_call(&mut k, "anagrafe").await;
    // op-a has been idle longest.
    on_call(a.session(), "call.offered", &id).await;
    ok(a.session(), Request::CallReject(call(&id))).await;
    on_call(b.session(), "call.offered", &id).await;
    // op-b lets the lease run out.
    let Event::CallOfferRevoked(r) = on_call(b.session(), "call.offer_revoked", &id).await else {
        unreachable!()
    };
    assert_eq!(r.reason, "expired");
    // Offered again; accepting a revoked offer is refused.
    assert_eq!(
        refused(b.session().request(&Request::CallAccept(call(&id))).await),
        ErrorCode::Forbidden
    );
    on_call(a.session(), "call.offered", &id).await;
    ok(a.session(), Request::CallAccept(call(&id))).await;
    let Event::CallAssigned(asg) = on_call(k.session(), "call.assigned", &id).await else {
        unreachable!()
    };
    assert_eq!(asg.operator.id, "op-a");
}

/// An operator with capacity 3 serves three booths at once; a fourth call waits.
async fn three_booths_at_once(kind: Kind) {
    let c = Centre::start(
        kind,
        &[Op::new("op-a", ANAGRAFE, 3)],
        &["k1", "k2", "k3", "k4"],
        |_| {},
    )
    .await;
    let mut a = c.operator("op-a").await;
    ok(a.session(), available()).await;
    let mut kiosks = Vec::new();
    let mut ids = Vec::new();
    for k in ["k1", "k2", "k3"] {
        let mut kiosk = c.kiosk(k).await;
        ids.push(request_call(&mut kiosk, "anagrafe").await);
        kiosks.push(kiosk);
    }
    for id in &ids {
        on_call(a.session(), "call.offered", id).await;
        ok(a.session(), Request::CallAccept(call(id))).await;
    }
    for (kiosk, id) in kiosks.iter_mut().zip(&ids) {
        on_call(kiosk.session(), "call.assigned", id).await;
    }
    let mut fourth = c.kiosk("k4").await;
    let id4 = request_call(&mut fourth, "anagrafe").await;
    let Event::QueueUpdate(u) = on_call(fourth.session(), "queue.update", &id4).await else {
        unreachable!()
    };
    assert_eq!(u.position, 1);
    // op-a is available (at capacity), so the wait is known, and comes with its interval.
    let (Some(est), Some(low), Some(high)) = (
        u.estimated_wait_s,
        u.estimated_wait_low_s,
        u.estimated_wait_high_s,
    ) else {
        panic!("a known estimate comes with an interval: {u:?}")
    };
    assert!(low <= est && est <= high, "{u:?}");
    // A kiosk that comes back finds the same figures in `state.sync`.
    fourth.reconnect().await.unwrap();
    let Event::StateSync(sync) =
        event(fourth.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    let w = &sync.calls[0];
    assert_eq!(
        (
            w.position,
            w.estimated_wait_s,
            w.estimated_wait_low_s,
            w.estimated_wait_high_s
        ),
        (Some(1), Some(est), Some(low), Some(high)),
        "{sync:?}"
    );
    // Hold two booths, talk to the third.
    ok(a.session(), Request::CallHold(call(&ids[0]))).await;
    ok(a.session(), Request::CallHold(call(&ids[1]))).await;
    on_call(kiosks[0].session(), "call.held", &ids[0]).await;
    on_call(kiosks[1].session(), "call.held", &ids[1]).await;
    ok(a.session(), Request::CallResume(call(&ids[0]))).await;
    on_call(kiosks[0].session(), "call.resumed", &ids[0]).await;
    // The supervisor sees load 3 of 3.
    let mut sup = c.supervisor().await;
    ok(&sup, Request::MetricsSubscribe {}).await;
    let Event::MetricsSnapshot(s) =
        event(&mut sup, |e| matches!(e, Event::MetricsSnapshot(_))).await
    else {
        unreachable!()
    };
    let op = s.operators.iter().find(|o| o.id == "op-a").unwrap();
    assert_eq!((op.load, op.capacity), (3, 3));
    let states: Vec<&str> = op.calls.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "on_hold").count(),
        1,
        "{states:?}"
    );
    // Ending one booth frees a slot: the waiting call is offered.
    ok(a.session(), Request::CallEnd(call(&ids[2]))).await;
    on_call(kiosks[2].session(), "call.ended", &ids[2]).await;
    on_call(a.session(), "call.offered", &id4).await;
}

/// A kiosk cancels while its call is offered (the offer is revoked and the call is abandoned), and
/// later during a conversation.
async fn kiosk_cancels(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut a = c.operator("op-a").await;
    ok(a.session(), available()).await;
    let mut k = c.kiosk("k1").await;
    let id = request_call(&mut k, "anagrafe").await;
    on_call(a.session(), "call.offered", &id).await;
    k.cancel().await.unwrap();
    let Event::CallEnded(e) = on_call(k.session(), "call.ended", &id).await else {
        unreachable!()
    };
    assert_eq!(e.reason, "abandoned");
    let Event::CallOfferRevoked(r) = on_call(a.session(), "call.offer_revoked", &id).await else {
        unreachable!()
    };
    assert_eq!(r.reason, "abandoned");
    assert_eq!(
        refused(a.session().request(&Request::CallAccept(call(&id))).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        refused(k.session().request(&Request::CallCancel(call(&id))).await),
        ErrorCode::NotFound
    );
    // The citizen ends during the conversation: an answered call ends "completed" (it is not an
    // abandon in the metrics), and the operator wraps up.
    let id = request_call(&mut k, "anagrafe").await;
    on_call(a.session(), "call.offered", &id).await;
    ok(a.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;
    k.cancel().await.unwrap();
    let Event::CallEnded(e) = on_call(a.session(), "call.ended", &id).await else {
        unreachable!()
    };
    assert_eq!(e.reason, "completed");
    ok(a.session(), common::centre::wrapup(&id)).await;
}

/// Within the grace period a kiosk and an operator reconnect and keep their call, offer and place.
async fn reconnect_within_grace(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut k = c.kiosk("k1").await;
    let id = request_call(&mut k, "anagrafe").await;
    on_call(k.session(), "queue.update", &id).await;
    let again = k.reconnect().await.unwrap();
    assert!(again.resumed);
    let Event::StateSync(sync) = event(k.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert_eq!(sync.calls.len(), 1);
    assert_eq!(
        (sync.calls[0].call_id.as_str(), sync.calls[0].state.as_str()),
        (id.as_str(), "waiting")
    );
    assert_eq!(sync.calls[0].position, Some(1));

    let mut a = c.operator("op-a").await;
    ok(a.session(), available()).await;
    on_call(a.session(), "call.offered", &id).await;
    // The operator's network blips while the offer is open: after resuming the offer is still theirs.
    let again = a.reconnect().await.unwrap();
    assert!(again.resumed);
    let Event::StateSync(sync) = event(a.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert_eq!(sync.calls[0].state, "offered");
    assert!(sync.calls[0].expires_in_s.is_some());
    ok(a.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;
    // Both blip during the conversation and find it connected.
    k.reconnect().await.unwrap();
    let Event::StateSync(sync) = event(k.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert_eq!(sync.calls[0].state, "connected");
    assert_eq!(sync.calls[0].operator.as_ref().unwrap().id, "op-a");
    a.reconnect().await.unwrap();
    ok(a.session(), Request::CallHold(call(&id))).await;
    on_call(k.session(), "call.held", &id).await;
}

/// Past the grace period: the lost kiosk's waiting call is abandoned; the lost operator's call goes
/// back to the head of the queue and to another operator.
async fn past_the_grace_period(kind: Kind) {
    let c = Centre::start(
        kind,
        &[Op::new("op-a", ANAGRAFE, 1), Op::new("op-b", ANAGRAFE, 1)],
        &["k1", "k2", "k3"],
        |cfg| {
            cfg.ws.kiosk_grace_s = 1;
            cfg.ws.operator_grace_s = 1;
        },
    )
    .await;
    let mut sup = c.supervisor().await;
    ok(&sup, Request::MetricsSubscribe {}).await;

    // A waiting kiosk disappears.
    let mut k1 = c.kiosk("k1").await;
    let lost = request_call(&mut k1, "anagrafe").await;
    k1.disconnect().await;
    let Event::MetricsSnapshot(_) = event(&mut sup, |e| match e {
        Event::MetricsSnapshot(s) => s.services.iter().any(|x| {
            x.service == "anagrafe" && x.abandoned + x.abandoned_short == 1 && x.waiting == 0
        }),
        _ => false,
    })
    .await
    else {
        unreachable!()
    };
    // Coming back later, it has no call any more.
    let again = k1.reconnect().await.unwrap();
    assert!(!again.resumed);
    let Event::StateSync(sync) = event(k1.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert!(sync.calls.is_empty(), "{sync:?}");
    assert_eq!(
        refused(
            k1.session()
                .request(&Request::CallCancel(call(&lost)))
                .await
        ),
        ErrorCode::NotFound
    );

    // An operator in a call disappears; another kiosk waits behind.
    let mut a = c.operator("op-a").await;
    ok(a.session(), available()).await;
    let mut k2 = c.kiosk("k2").await;
    let id = request_call(&mut k2, "anagrafe").await;
    on_call(a.session(), "call.offered", &id).await;
    ok(a.session(), Request::CallAccept(call(&id))).await;
    on_call(k2.session(), "call.assigned", &id).await;
    let mut k3 = c.kiosk("k3").await;
    let behind = request_call(&mut k3, "anagrafe").await;
    on_call(k3.session(), "queue.update", &behind).await;
    a.disconnect().await;
    let Event::CallRequeued(r) = on_call(k2.session(), "call.requeued", &id).await else {
        unreachable!()
    };
    assert_eq!(r.reason, "operator_lost");
    // Requeued at the head, ahead of the call that was already waiting.
    let Event::QueueUpdate(u) = on_call(k2.session(), "queue.update", &id).await else {
        unreachable!()
    };
    assert_eq!(u.position, 1);
    let mut b = c.operator("op-b").await;
    ok(b.session(), available()).await;
    let Event::CallOffered(o) = event(b.session(), |e| matches!(e, Event::CallOffered(_))).await
    else {
        unreachable!()
    };
    assert_eq!(o.call_id, id, "the requeued call goes first");
}

/// `metrics.snapshot` and `/metrics` count the calls this test made.
async fn metrics_agree_with_the_calls(kind: Kind) {
    let c = Centre::start(
        kind,
        &[Op::new("op-a", ANAGRAFE, 2)],
        &["k1", "k2", "k3"],
        |_| {},
    )
    .await;
    let mut sup = c.supervisor().await;
    ok(&sup, Request::MetricsSubscribe {}).await;
    let mut a = c.operator("op-a").await;
    ok(a.session(), available()).await;
    // Two answered (one ended and wrapped up), one abandoned at once (a short abandon).
    let mut k1 = c.kiosk("k1").await;
    let one = request_call(&mut k1, "anagrafe").await;
    on_call(a.session(), "call.offered", &one).await;
    ok(a.session(), Request::CallAccept(call(&one))).await;
    ok(a.session(), Request::CallEnd(call(&one))).await;
    ok(a.session(), common::centre::wrapup(&one)).await;
    let mut k2 = c.kiosk("k2").await;
    let two = request_call(&mut k2, "anagrafe").await;
    on_call(a.session(), "call.offered", &two).await;
    ok(a.session(), Request::CallAccept(call(&two))).await;
    ok(
        a.session(),
        Request::PresenceSet(PresenceSet {
            state: PresenceState::Paused,
            reason: Some("pausa".into()),
        }),
    )
    .await;
    let mut k3 = c.kiosk("k3").await;
    request_call(&mut k3, "anagrafe").await;
    k3.cancel().await.unwrap();

    let Event::MetricsSnapshot(s) = event(&mut sup, |e| match e {
        Event::MetricsSnapshot(s) => s.services.iter().any(|x| {
            x.service == "anagrafe" && x.offered == 3 && x.answered == 2 && x.abandoned_short == 1
        }),
        _ => false,
    })
    .await
    else {
        unreachable!()
    };
    let svc = s.services.iter().find(|x| x.service == "anagrafe").unwrap();
    assert_eq!((svc.waiting, svc.abandoned), (0, 0));
    assert_eq!(svc.service_level, 1.0, "both answered within 60 s");
    assert!(svc.asa_s.is_some() && svc.aht_s.is_some(), "{svc:?}");
    assert_eq!(svc.last_15m.answered, 2);
    let op = s.operators.iter().find(|o| o.id == "op-a").unwrap();
    assert_eq!(
        (op.state.as_str(), op.reason.as_deref(), op.load),
        ("paused", Some("pausa"), 1)
    );
    assert_eq!(op.calls.len(), 1);
    assert_eq!(op.calls[0].call_id, two);

    // Snapshots keep coming at least every 2 s (older ones still buffered are dropped first).
    sup.drain_events();
    event(&mut sup, |e| matches!(e, Event::MetricsSnapshot(_))).await;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        event(&mut sup, |e| matches!(e, Event::MetricsSnapshot(_))).await;
        assert!(started.elapsed() < Duration::from_millis(2500));
    }

    // Prometheus counts the same calls.
    let text = reqwest::get(c.t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |outcome: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("sportello_calls_total{")
                    && l.contains("service=\"anagrafe\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("offered"), 3.0, "{text}");
    assert_eq!(count("answered"), 2.0);
    assert_eq!(count("abandoned_short"), 1.0);
    assert_eq!(count("handled"), 1.0);
    assert!(
        text.contains("sportello_ws_requests_total{outcome=\"ok\",type=\"call.accept\"} 2"),
        "{text}"
    );
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Memory).await; })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Redis).await; })*
        }
    };
}

on_both_stores!(
    whole_call,
    rejects_and_expiries_reoffer,
    three_booths_at_once,
    kiosk_cancels,
    reconnect_within_grace,
    past_the_grace_period,
    metrics_agree_with_the_calls,
);
