//! Citizens' ratings end to end (`feedback.submit`): once per answered call, only from that call's
//! kiosk, only within 10 minutes of its end, 1 to 5 with a bounded comment; kept in the call's
//! outcome record beside its disposition and counted by Prometheus. On the memory store, on a real
//! `redis-server`, and across two nodes sharing that Redis (the end recorded by one, the rating
//! taken by the other).

mod common;

use common::centre::{
    available, call, ok, on_call, refused, request_call, wrapup, Centre, Kind, Op,
};
use kiosk_client::{HeadlessKiosk, OperatorBot};
use protocol::outcome::{FeedbackSubmit, FEEDBACK_WINDOW_S, MAX_COMMENT_CHARS};
use protocol::{ErrorCode, Request};
use queue::{Shared, Time};
use signalling::calls::outcome::{core::Outcome, NAMESPACE};

const ANAGRAFE: &[(&str, u8)] = &[("anagrafe", 5)];

fn rate(id: &str, rating: u8, comment: Option<&str>) -> Request {
    Request::FeedbackSubmit(FeedbackSubmit {
        call_id: id.into(),
        rating,
        comment: comment.map(str::to_owned),
    })
}

/// Places a call from `k` that `op` answers; the call id.
async fn answered(k: &mut HeadlessKiosk, op: &mut OperatorBot) -> String {
    let id = request_call(k, "anagrafe").await;
    ok(op.session(), available()).await;
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;
    id
}

async fn outcome(c: &Centre, id: &str) -> Outcome {
    c.t.server
        .state
        .routing
        .outcomes
        .get(id, Time::now())
        .await
        .unwrap()
        .expect("an outcome record")
}

async fn ratings(c: &Centre, value: u8) -> f64 {
    let text = reqwest::get(c.t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = format!("sportello_feedback_ratings_total{{rating=\"{value}\"}}");
    text.lines()
        .find(|l| l.starts_with(&start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {start} in {text}"))
}

// ---- scenarios ----

/// The rules, in the order a kiosk meets them.
async fn a_call_is_rated_once_by_its_kiosk(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1", "k2"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    let mut k = c.kiosk("k1").await;
    let mut other = c.kiosk("k2").await;
    let id = answered(&mut k, &mut op).await;

    // Not yet: the call is in conversation.
    assert_eq!(
        refused(k.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        refused(other.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Forbidden
    );
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;

    // Bad values are invalid; an operator may not rate; nor may another kiosk; no such call.
    for bad in [0, 6] {
        assert_eq!(
            refused(k.session().request(&rate(&id, bad, None)).await),
            ErrorCode::Invalid
        );
    }
    let long = "è".repeat(MAX_COMMENT_CHARS + 1);
    assert_eq!(
        refused(k.session().request(&rate(&id, 3, Some(&long))).await),
        ErrorCode::Invalid
    );
    assert_eq!(
        refused(op.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(other.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(k.session().request(&rate("no-such-call", 5, None)).await),
        ErrorCode::NotFound
    );

    ok(k.session(), rate(&id, 4, Some(" Molto gentili, grazie "))).await;
    // Once only, even with another value.
    assert_eq!(
        refused(k.session().request(&rate(&id, 1, None)).await),
        ErrorCode::Conflict
    );

    // The rating sits with the end and, once the operator closes the wrap-up, the disposition.
    ok(op.session(), wrapup(&id)).await;
    on_call(op.session(), "wrapup.ended", &id).await;
    let record = outcome(&c, &id).await;
    let feedback = record.feedback.expect("the rating is recorded");
    assert_eq!(
        (feedback.rating, feedback.comment.as_deref()),
        (4, Some("Molto gentili, grazie"))
    );
    assert_eq!(record.end.unwrap().kiosk_id, "k1");
    assert_eq!(
        record.wrapup.unwrap().disposition,
        kiosk_client::BOT_DISPOSITION
    );
    assert_eq!(
        refused(k.session().request(&rate(&id, 4, None)).await),
        ErrorCode::Conflict
    );
    assert_eq!(ratings(&c, 4).await, 1.0);
    assert_eq!(ratings(&c, 1).await, 0.0);
}

/// After the wrap-up, the call is gone from the queue; the record still lets the kiosk rate it.
async fn rated_after_the_wrapup(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    let mut k = c.kiosk("k1").await;
    let id = answered(&mut k, &mut op).await;
    ok(op.session(), Request::CallEnd(call(&id))).await;
    ok(op.session(), wrapup(&id)).await;
    on_call(op.session(), "wrapup.ended", &id).await;
    on_call(k.session(), "call.ended", &id).await;
    ok(k.session(), rate(&id, 1, None)).await;
    assert_eq!(outcome(&c, &id).await.feedback.unwrap().rating, 1);
}

/// A call nobody answered has nothing to rate.
async fn an_abandoned_call_cannot_be_rated(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut k = c.kiosk("k1").await;
    let id = request_call(&mut k, "anagrafe").await;
    ok(k.session(), Request::CallCancel(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;
    let record = outcome(&c, &id).await;
    assert_eq!(record.end.as_ref().unwrap().operator_id, None);
    assert_eq!(
        refused(k.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Conflict
    );
}

/// Ten minutes after the end the window is closed (`conflict`). The record's end is moved back in
/// the shared store, since a test does not wait ten minutes.
async fn the_window_closes_ten_minutes_after_the_end(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    let mut k = c.kiosk("k1").await;
    let id = answered(&mut k, &mut op).await;
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;
    let mut record = outcome(&c, &id).await;
    let end = record.end.as_mut().unwrap();
    end.at = Time::now().0 - FEEDBACK_WINDOW_S * 1000 - 1_000;
    let r = &c.t.server.state.routing;
    r.shared
        .put(
            &r.tenant,
            NAMESPACE,
            &id,
            &serde_json::to_string(&record).unwrap(),
            std::time::Duration::from_secs(3600),
            Time::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        refused(k.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Conflict
    );
    assert_eq!(outcome(&c, &id).await.feedback, None);
}

/// Two nodes on one Redis: the operator's node records the end, the kiosk's node takes the rating,
/// and a second rating through the other node is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_two_nodes() {
    let redis = testkit::RedisServer::start().await;
    let ops = [Op::new("op-a", ANAGRAFE, 1)];
    let a = Centre::on(Some(redis.url()), &ops, &["k1"], |_| {}).await;
    let b = Centre::on(Some(redis.url()), &ops, &["k1"], |_| {}).await;
    let mut op = a.operator("op-a").await;
    let mut k = b.kiosk("k1").await;
    let id = answered(&mut k, &mut op).await;
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;
    ok(k.session(), rate(&id, 5, None)).await;
    let mut again = a.kiosk("k1").await;
    assert_eq!(
        refused(again.session().request(&rate(&id, 5, None)).await),
        ErrorCode::Conflict
    );
    ok(op.session(), wrapup(&id)).await;
    for node in [&a, &b] {
        let record = outcome(node, &id).await;
        assert_eq!(record.feedback.unwrap().rating, 5);
        assert_eq!(record.end.unwrap().operator_id.as_deref(), Some("op-a"));
    }
    // Counted once, by the node that took it.
    assert_eq!(ratings(&b, 5).await + ratings(&a, 5).await, 1.0);
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
    a_call_is_rated_once_by_its_kiosk,
    rated_after_the_wrapup,
    an_abandoned_call_cannot_be_rated,
    the_window_closes_ten_minutes_after_the_end,
);
