//! The in-call rules, tested exactly on plain records.

use super::*;

fn subject() -> Subject {
    Subject {
        fiscal_code: "RSSMRA80A01H501U".into(),
        given_name: "Mario".into(),
        family_name: "Rossi".into(),
        birth_date: Some("1980-01-01".into()),
    }
}

fn p(role: Role, id: &str) -> Principal {
    Principal {
        role,
        id: id.into(),
    }
}

#[test]
fn only_a_party_acts_and_only_in_conversation() {
    let call = Parties {
        call: "c1",
        kiosk: "k1",
        operator: Some("op1"),
        in_conversation: true,
    };
    assert!(is_party(&p(Role::Kiosk, "k1"), &call));
    assert!(is_party(&p(Role::Operator, "op1"), &call));
    assert!(!is_party(&p(Role::Operator, "k1"), &call));
    assert!(!is_party(&p(Role::Kiosk, "op1"), &call));
    assert!(!is_party(&p(Role::Supervisor, "op1"), &call));
    assert_eq!(
        party_in_conversation(&p(Role::Operator, "op1"), Role::Operator, &call),
        Ok(())
    );
    // The right party in the wrong role of the request.
    assert!(matches!(
        party_in_conversation(&p(Role::Kiosk, "k1"), Role::Operator, &call),
        Err(Refused::Forbidden(_))
    ));
    assert!(matches!(
        party_in_conversation(&p(Role::Operator, "op2"), Role::Operator, &call),
        Err(Refused::Forbidden(_))
    ));
    let waiting = Parties {
        operator: None,
        in_conversation: false,
        ..call
    };
    assert!(matches!(
        party_in_conversation(&p(Role::Kiosk, "k1"), Role::Kiosk, &waiting),
        Err(Refused::NotInConversation(_))
    ));
}

#[test]
fn a_card_answer_needs_a_pending_card_request_and_spends_the_nonce() {
    let mut a = CallRecord::new("k");
    assert!(matches!(a.take_nonce(), Err(Refused::NotPending(_))));
    a.request(IdentityMethod::Pec, None);
    assert!(matches!(a.take_nonce(), Err(Refused::NotPending(_))));
    assert_eq!(a.waiting_device(), None, "PEC needs no device");
    a.request(IdentityMethod::Cie, Some("n1".into()));
    assert_eq!(
        a.waiting_device(),
        Some((IdentityMethod::Cie, "n1".to_owned()))
    );
    assert_eq!(a.take_nonce(), Ok((IdentityMethod::Cie, "n1".into())));
    assert!(matches!(a.take_nonce(), Err(Refused::NotPending(_))));
    // A new request brings a new nonce.
    a.request(IdentityMethod::Cns, Some("n2".into()));
    assert_eq!(a.card_pending(), Ok(IdentityMethod::Cns));
    assert_eq!(a.take_nonce(), Ok((IdentityMethod::Cns, "n2".into())));
    assert_eq!(a.waiting_device(), None, "the nonce is spent");
    // The record survives its text form unchanged.
    let text = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<CallRecord>(&text).unwrap(), a);
}

#[test]
fn pec_codes_expire_allow_three_attempts_and_are_rate_limited() {
    let l = PecLimits::default();
    let mut a = CallRecord::new("k");
    let mut sends = PecSends::default();
    let cf = "RSSMRA80A01H501U";
    let t0 = Time::from_secs(0);
    assert!(matches!(
        a.pec_may_send(&l, t0),
        Err(Refused::NotPending(_))
    ));
    a.request(IdentityMethod::Pec, None);
    assert!(matches!(a.pec_code("1", t0), Err(Refused::NotPending(_))));
    a.pec_may_send(&l, t0).unwrap();
    sends.may_send(&l, t0).unwrap();
    a.pec_sent(cf, "123456", &l, t0);
    sends.record(t0);
    // Only the digest of the code is kept.
    assert!(!serde_json::to_string(&a).unwrap().contains("123456"));
    assert_eq!(a.pec_code("000000", Time(1_000)), Ok(CodeOutcome::Wrong(2)));
    assert_eq!(a.pec_code("000001", Time(2_000)), Ok(CodeOutcome::Wrong(1)));
    assert_eq!(
        a.pec_code("000002", Time(3_000)),
        Ok(CodeOutcome::TooManyAttempts)
    );
    // Spent: even the right code no longer works.
    assert!(matches!(
        a.pec_code("123456", Time(4_000)),
        Err(Refused::NotPending(_))
    ));

    // One code per call per minute, to the millisecond.
    assert!(matches!(
        a.pec_may_send(&l, Time(30_000)),
        Err(Refused::RateLimited(m)) if m == "a code was sent 30 s ago; wait 30 s"
    ));
    assert!(matches!(
        a.pec_may_send(&l, Time(59_999)),
        Err(Refused::RateLimited(_))
    ));
    a.pec_may_send(&l, Time(60_000)).unwrap();
    let t1 = Time::from_secs(61);
    a.pec_sent(cf, "654321", &l, t1);
    sends.record(t1);
    // The code lives five minutes: valid at its last millisecond, expired after it.
    let mut b = a.clone();
    assert_eq!(
        b.pec_code("000000", Time::from_secs(361)),
        Ok(CodeOutcome::Wrong(2))
    );
    assert_eq!(
        a.pec_code("654321", Time(361_500)),
        Ok(CodeOutcome::Expired)
    );

    a.pec_may_send(&l, Time(400_000)).unwrap();
    sends.may_send(&l, Time(400_000)).unwrap();
    a.pec_sent(cf, "111111", &l, Time(400_000));
    sends.record(Time(400_000));
    assert_eq!(
        a.pec_code(" 111111 ", Time(401_000)),
        Ok(CodeOutcome::Verified(cf.into()))
    );
    // Three codes for this citizen within the hour: the fourth waits, in any call, until the
    // first is an hour old.
    assert!(matches!(
        sends.may_send(&l, Time(500_000)),
        Err(Refused::RateLimited(_))
    ));
    assert!(matches!(
        sends.may_send(&l, Time(3_599_999)),
        Err(Refused::RateLimited(_))
    ));
    sends.may_send(&l, Time(3_600_000)).unwrap();
    sends.record(Time::from_secs(3601));
    assert_eq!(
        sends.sent,
        [t1, Time(400_000), Time::from_secs(3601)],
        "the oldest send is forgotten"
    );
}

#[test]
fn times_are_written_in_milliseconds_and_read_from_older_seconds() {
    let l = PecLimits::default();
    let mut a = CallRecord::new("k");
    a.request(IdentityMethod::Pec, None);
    let t = Time(1_700_000_000_123);
    a.pec_sent("RSSMRA80A01H501U", "123456", &l, t);
    let text = serde_json::to_string(&a).unwrap();
    assert!(text.contains(r#""last_pec_at_ms":1700000000123"#), "{text}");
    assert!(text.contains(r#""expires_at_ms":1700000300123"#), "{text}");
    assert_eq!(serde_json::from_str::<CallRecord>(&text).unwrap(), a);

    // A record of the version that counted seconds.
    let old = r#"{"kiosk":"k","pending":{"method":"pec","pec":{"fiscal_code":"RSSMRA80A01H501U",
        "digest":"x","expires_at":1700000300.123,"attempts_left":3}},"last_pec_at":1700000000.123,
        "scans":[],"documents":[]}"#;
    let old: CallRecord = serde_json::from_str(old).unwrap();
    assert_eq!(old.last_pec_at, Some(t));
    assert_eq!(old.pending.unwrap().pec.unwrap().expires_at, t.plus(l.ttl));
    let sends: PecSends = serde_json::from_str(r#"{"sent":[1700000000.0,1700000060.5]}"#).unwrap();
    assert_eq!(
        sends.sent,
        [Time::from_secs(1_700_000_000), Time(1_700_000_060_500)]
    );
    let mut j = job("j1");
    j.sent_at = t;
    j.printed_at = Some(Time(t.as_millis() + 1));
    let text = serde_json::to_string(&j).unwrap();
    assert!(text.contains(r#""sent_at_ms":1700000000123"#), "{text}");
    assert!(text.contains(r#""printed_at_ms":1700000000124"#), "{text}");
    assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), j);
    let old = r#"{"job_id":"j1","call_id":"c","kiosk":"k1","operator":"op","document_id":"d",
        "copies":1,"state":"printed","detail":null,"sent_at":1700000000.0,"printed_at":1700000001.25}"#;
    let old: Job = serde_json::from_str(old).unwrap();
    assert_eq!(old.sent_at, Time::from_secs(1_700_000_000));
    assert_eq!(old.printed_at, Some(Time(1_700_000_001_250)));
    for bad in [
        r#"{"sent_ms":[-1]}"#,
        r#"{"sent_ms":[-1.5]}"#,
        r#"{"sent_ms":["1"]}"#,
    ] {
        assert!(serde_json::from_str::<PecSends>(bad).is_err(), "{bad}");
    }
}

#[test]
fn document_steps_follow_the_scan_and_scans_are_bounded() {
    let mut a = CallRecord::new("k");
    // No scan is taken before the operator asks for a document identification.
    assert!(matches!(a.add_scan("s1"), Err(Refused::NotPending(_))));
    assert!(matches!(
        a.scan_submitted("s1"),
        Err(Refused::NotPending(_))
    ));
    a.request(IdentityMethod::Document, None);
    a.add_scan("s1").unwrap();
    assert!(a.waiting_device().is_some());
    assert!(matches!(
        a.scan_submitted("nope"),
        Err(Refused::NotFound(_))
    ));
    assert!(matches!(a.judged_scan(), Err(Refused::NotPending(_))));
    a.scan_submitted("s1").unwrap();
    assert_eq!(a.waiting_device(), None, "scanned");
    assert_eq!(a.judged_scan(), Ok("s1".into()));
    for i in 1..MAX_SCANS_PER_CALL {
        a.add_scan(&format!("x{i}")).unwrap();
    }
    assert!(matches!(
        a.add_scan("one-too-many"),
        Err(Refused::NotPending(_))
    ));
    a.verified(IdentityMethod::Document, subject());
    assert_eq!(a.identified().unwrap().subject, subject());
    assert!(a.has_scan("s1"));
    assert_eq!(a.pending(), None);
    a.add_document("d1");
    a.add_document("d1");
    assert!(a.has_document("d1") && !a.has_document("d2"));
}

fn job(id: &str) -> Job {
    Job {
        job_id: id.into(),
        call_id: "c".into(),
        kiosk: "k1".into(),
        operator: "op".into(),
        document_id: "d".into(),
        copies: 1,
        state: None,
        detail: None,
        sent_at: Time(0),
        printed_at: None,
    }
}

#[test]
fn print_states_never_go_backwards() {
    let mut j = job("j1");
    assert!(j.unacknowledged());
    let s = Time::from_secs;
    assert!(matches!(
        j.report("k2", PrintState::Received, None, s(1)),
        Err(Refused::Forbidden(_))
    ));
    assert_eq!(j.report("k1", PrintState::Received, None, s(1)), Ok(true));
    assert!(!j.unacknowledged());
    assert_eq!(j.report("k1", PrintState::Received, None, s(1)), Ok(false));
    assert_eq!(
        j.report("k1", PrintState::Failed, Some("media-empty".into()), s(2)),
        Ok(true)
    );
    assert_eq!(j.detail.as_deref(), Some("media-empty"));
    assert_eq!(
        j.report(
            "k1",
            PrintState::Failed,
            Some("offline".into()),
            Time(2_500)
        ),
        Ok(true),
        "a new reason is news"
    );
    assert_eq!(j.report("k1", PrintState::Received, None, s(3)), Ok(false));
    assert_eq!(j.report("k1", PrintState::Printing, None, s(3)), Ok(true));
    assert_eq!(j.printed_at, None, "not printed yet");
    assert_eq!(j.report("k1", PrintState::Printed, None, s(4)), Ok(true));
    // Late or repeated reports change nothing.
    for state in [
        PrintState::Printing,
        PrintState::Received,
        PrintState::Failed,
        PrintState::Printed,
    ] {
        assert_eq!(j.report("k1", state, None, s(5)), Ok(false));
    }
    assert_eq!(j.printed_at, Some(s(4)));
    // Kept ten minutes after it printed (not after it was sent, at 0).
    let keep = Duration::from_secs(600);
    assert!(!j.expired(s(100), keep));
    assert!(!j.expired(s(604), keep), "exactly ten minutes");
    assert!(j.expired(Time(604_001), keep));
    assert!(
        !job("j2").expired(s(1_000_000_000), keep),
        "only printed jobs expire"
    );
}

#[test]
fn print_backlog_counts_jobs_not_printed_and_the_oldest() {
    let s = Time::from_secs;
    assert_eq!(PrintBacklog::of(&[], s(10)), PrintBacklog::default());
    let mut printed = job("p");
    printed.sent_at = s(1);
    printed
        .report("k1", PrintState::Printed, None, s(2))
        .unwrap();
    let mut received = job("r");
    received.sent_at = s(50);
    received
        .report("k1", PrintState::Received, None, s(51))
        .unwrap();
    let mut failed = job("f");
    failed.sent_at = s(40);
    failed
        .report("k1", PrintState::Failed, Some("media-empty".into()), s(41))
        .unwrap();
    let mut waiting = job("w");
    waiting.sent_at = s(90);
    let b = PrintBacklog::of(&[printed, received, failed, waiting], s(100));
    assert_eq!(b.counts(), [1, 1, 0, 1]);
    assert_eq!(
        b.oldest,
        Duration::from_secs(60),
        "the printed job does not count"
    );
}
