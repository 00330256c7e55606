//! Events for the history's tests: calls with known waits, handle times, dispositions and ratings.

#![allow(dead_code)]

use history::{CallFacts, CertificateFacts, Event, FeedbackFacts, WrapupFacts};

/// An answered call asked on `day`: waited `wait_s`, handled `handle_s`.
pub fn answered(
    id: &str,
    day: &str,
    kiosk: &str,
    op: &str,
    wait_s: i64,
    handle_s: i64,
) -> CallFacts {
    let t0 = 1_772_000_000_000;
    CallFacts {
        call_id: id.into(),
        day: day.into(),
        kiosk_id: kiosk.into(),
        service: "anagrafe".into(),
        language: "it".into(),
        operator_id: Some(op.into()),
        operators: vec![op.into()],
        outcome: "completed".into(),
        requested_at: t0,
        offered_at: Some(t0 + wait_s * 1000 - 500),
        answered_at: Some(t0 + wait_s * 1000),
        accepted_at: Some(t0 + wait_s * 1000),
        ended_at: t0 + wait_s * 1000 + handle_s * 1000 - 10_000,
        held_ms: 0,
        holds: 0,
        transfers: 0,
        wait_ms: wait_s * 1000,
        sl_threshold_ms: 60_000,
        short_abandon: false,
        wrapup_at: Some(t0 + wait_s * 1000 + handle_s * 1000),
        handle_ms: Some(handle_s * 1000),
    }
}

/// A call abandoned after `wait_s` (short under 5 s).
pub fn abandoned(id: &str, day: &str, kiosk: &str, wait_s: i64) -> CallFacts {
    let t0 = 1_772_000_000_000;
    CallFacts {
        call_id: id.into(),
        day: day.into(),
        kiosk_id: kiosk.into(),
        service: "anagrafe".into(),
        language: "it".into(),
        operator_id: None,
        operators: vec![],
        outcome: "abandoned".into(),
        requested_at: t0,
        offered_at: None,
        answered_at: None,
        accepted_at: None,
        ended_at: t0 + wait_s * 1000,
        held_ms: 0,
        holds: 0,
        transfers: 0,
        wait_ms: wait_s * 1000,
        sl_threshold_ms: 60_000,
        short_abandon: wait_s < 5,
        wrapup_at: None,
        handle_ms: None,
    }
}

pub fn wrapup(id: &str, disposition: &str) -> Event {
    Event::Wrapup(WrapupFacts {
        call_id: id.into(),
        disposition: disposition.into(),
        notes: Some("nota".into()),
        at: 1_772_000_900_000,
    })
}

pub fn rating(id: &str, rating: i64) -> Event {
    Event::Feedback(FeedbackFacts {
        call_id: id.into(),
        rating,
        comment: None,
        at: 1_772_000_950_000,
    })
}

pub fn certificate(
    doc: &str,
    call: Option<&str>,
    day: &str,
    channel: &str,
    kind: &str,
    fee: &str,
) -> Event {
    Event::Certificate(CertificateFacts {
        document_id: doc.into(),
        call_id: call.map(str::to_owned),
        day: day.into(),
        issued_at: 1_772_000_500_000,
        channel: channel.into(),
        kind: kind.into(),
        fee: fee.into(),
        exemption: (fee == "esente").then(|| "pensione".to_owned()),
        kiosk_id: call.map(|_| "k1".to_owned()),
        operator_id: None,
    })
}
