//! Dispositions end to end: the operator learns the configured list in `state.sync`, closes a
//! wrap-up with one (`wrapup.done {"disposition","notes"}`), and the call's outcome record in the
//! shared store holds it; a wrap-up without one, or with an unknown code, is `invalid`; a wrap-up
//! that times out records `none`; Prometheus counts them. On the memory store and on a real
//! `redis-server`.

mod common;

use common::centre::{
    available, call, event, ok, on_call, refused, request_call, Centre, Kind, Op,
};
use kiosk_client::{OperatorBot, Policy};
use protocol::outcome::{Disposition, WrapupDone, MAX_NOTES_CHARS};
use protocol::{ErrorCode, Event, Request, Role};
use signalling::calls::outcome::core::Outcome;
use signalling::config::DispositionSetting;

const ANAGRAFE: &[(&str, u8)] = &[("anagrafe", 5)];

/// An operator whose first `state.sync` is returned with it.
async fn operator(c: &Centre, id: &str) -> (OperatorBot, Vec<Disposition>) {
    let mut bot = OperatorBot::connect(&c.ws(), &c.token(Role::Operator, id), Policy::Manual)
        .await
        .unwrap();
    let Event::StateSync(sync) = event(bot.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    (bot, sync.dispositions.expect("operators get dispositions"))
}

/// Places a call from `k1` and has `op` answer and end it; the call id.
async fn answered_and_ended(c: &Centre, op: &mut OperatorBot) -> String {
    let mut k = c.kiosk("k1").await;
    let id = request_call(&mut k, "anagrafe").await;
    ok(op.session(), available()).await;
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;
    id
}

async fn outcome(c: &Centre, id: &str) -> Outcome {
    c.t.server
        .state
        .routing
        .outcomes
        .get(id, queue::Time::now())
        .await
        .unwrap()
        .expect("an outcome record")
}

/// The outcome record once its wrap-up part is written. A wrap-up that times out is recorded by
/// the node whose timer committed it, after the commit's events went out: the operator may see
/// `wrapup.ended` a moment before the record has it.
async fn outcome_with_wrapup(c: &Centre, id: &str) -> Outcome {
    for _ in 0..100 {
        let o = outcome(c, id).await;
        if o.wrapup.is_some() {
            return o;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    outcome(c, id).await
}

async fn metric(c: &Centre, line_start: &str) -> f64 {
    let text = reqwest::get(c.t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in {text}"))
}

fn done(id: &str, disposition: Option<&str>, notes: Option<String>) -> Request {
    Request::WrapupDone(WrapupDone {
        call_id: id.into(),
        disposition: disposition.map(str::to_owned),
        notes,
    })
}

// ---- scenarios ----

/// The defaults are listed; only a listed code closes the wrap-up, and it is kept with the call.
async fn wrapup_records_the_disposition(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let (mut op, list) = operator(&c, "op-a").await;
    let codes: Vec<&str> = list.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "certificato_rilasciato",
            "informazioni",
            "pratica_avviata",
            "rinviato_allo_sportello",
            "non_risolto"
        ]
    );
    assert_eq!(list[0].label, "Certificato rilasciato");
    assert_eq!(list[0].label_en, "Certificate issued");

    let id = answered_and_ended(&c, &mut op).await;
    // The end is recorded before the operator hears that call.end went through.
    let ended = outcome(&c, &id).await;
    let end = ended.end.expect("the end is recorded");
    assert_eq!(
        (
            end.kiosk_id.as_str(),
            end.operator_id.as_deref(),
            end.reason.as_str()
        ),
        ("k1", Some("op-a"), "completed")
    );
    assert_eq!(ended.wrapup, None);

    for (bad, notes) in [
        (None, None),
        (Some("inventato"), None),
        (Some("none"), None),
        (
            Some("pratica_avviata"),
            Some("x".repeat(MAX_NOTES_CHARS + 1)),
        ),
    ] {
        assert_eq!(
            refused(op.session().request(&done(&id, bad, notes)).await),
            ErrorCode::Invalid,
            "{bad:?}"
        );
    }
    // Refused: still in wrap-up, nothing recorded.
    assert_eq!(outcome(&c, &id).await.wrapup, None);
    ok(
        op.session(),
        done(
            &id,
            Some("pratica_avviata"),
            Some(" richiesta cambio residenza ".into()),
        ),
    )
    .await;
    on_call(op.session(), "wrapup.ended", &id).await;
    let wrapup = outcome_with_wrapup(&c, &id)
        .await
        .wrapup
        .expect("the wrap-up is recorded");
    assert_eq!(wrapup.disposition, "pratica_avviata");
    assert_eq!(wrapup.notes.as_deref(), Some("richiesta cambio residenza"));
    assert!(wrapup.at >= end.at);
    // Once closed, it cannot be closed again.
    assert_eq!(
        refused(
            op.session()
                .request(&done(&id, Some("informazioni"), None))
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        outcome(&c, &id).await.wrapup.unwrap().disposition,
        "pratica_avviata"
    );
    assert_eq!(
        metric(
            &c,
            "sportello_dispositions_total{disposition=\"pratica_avviata\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(&c, "sportello_dispositions_total{disposition=\"none\"}").await,
        0.0
    );
}

/// A wrap-up nobody closes ends by itself and records `none`.
async fn a_timed_out_wrapup_records_none(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |cfg| {
        cfg.queue.wrapup_s = 1;
    })
    .await;
    let (mut op, _) = operator(&c, "op-a").await;
    let id = answered_and_ended(&c, &mut op).await;
    on_call(op.session(), "wrapup.ended", &id).await;
    let wrapup = outcome_with_wrapup(&c, &id)
        .await
        .wrapup
        .expect("the wrap-up is recorded");
    assert_eq!((wrapup.disposition.as_str(), wrapup.notes), ("none", None));
    assert_eq!(
        refused(
            op.session()
                .request(&done(&id, Some("informazioni"), None))
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        metric(&c, "sportello_dispositions_total{disposition=\"none\"}").await,
        1.0
    );
}

/// A comune's own list replaces the defaults; an empty list turns dispositions off.
async fn configured_dispositions_replace_the_defaults(kind: Kind) {
    let own = vec![DispositionSetting {
        code: "carta_identita".into(),
        label: "Carta d'identità".into(),
        label_en: "Identity card".into(),
    }];
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |cfg| {
        cfg.dispositions = own;
    })
    .await;
    let (mut op, list) = operator(&c, "op-a").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].code, "carta_identita");
    let id = answered_and_ended(&c, &mut op).await;
    assert_eq!(
        refused(
            op.session()
                .request(&done(&id, Some("informazioni"), None))
                .await
        ),
        ErrorCode::Invalid
    );
    ok(op.session(), done(&id, Some("carta_identita"), None)).await;
    assert_eq!(
        outcome(&c, &id).await.wrapup.unwrap().disposition,
        "carta_identita"
    );

    let off = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |cfg| {
        cfg.dispositions = vec![];
    })
    .await;
    let (mut op, list) = operator(&off, "op-a").await;
    assert!(list.is_empty());
    let id = answered_and_ended(&off, &mut op).await;
    ok(op.session(), done(&id, None, None)).await;
    assert_eq!(outcome(&off, &id).await.wrapup.unwrap().disposition, "none");
}

/// Kiosks and supervisors are not told the dispositions.
async fn only_operators_get_the_list(kind: Kind) {
    let c = Centre::start(kind, &[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut k = c.kiosk("k1").await;
    let Event::StateSync(sync) = event(k.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert_eq!(sync.dispositions, None);
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
    wrapup_records_the_disposition,
    a_timed_out_wrapup_records_none,
    configured_dispositions_replace_the_defaults,
    only_operators_get_the_list,
);
