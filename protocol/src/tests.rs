//! Round trips and the contract's examples for the wire types.

use super::*;

#[test]
fn parses_auth_with_resume_and_capabilities() {
    let frame = parse_client_frame(
        r#"{"type":"auth","id":"1","token":"abc","resume":"s1","capabilities":["printer","card_reader"]}"#,
    )
    .unwrap();
    assert_eq!(frame.id, "1");
    assert_eq!(
        frame.request,
        Request::Auth(Auth {
            token: "abc".into(),
            resume: Some("s1".into()),
            capabilities: vec![Capability::Printer, Capability::CardReader],
        })
    );
}

#[test]
fn refuses_bad_frames_with_the_id_when_readable() {
    assert!(matches!(
        parse_client_frame("{not json"),
        Err((None, FrameError::Malformed(_)))
    ));
    assert!(matches!(
        parse_client_frame("[1,2]"),
        Err((None, FrameError::Malformed(_)))
    ));
    assert_eq!(
        parse_client_frame(r#"{"type":"nope","id":"7"}"#),
        Err((Some("7".into()), FrameError::UnknownType("nope".into())))
    );
    assert_eq!(
        parse_client_frame(r#"{"id":"7"}"#),
        Err((Some("7".into()), FrameError::MissingType))
    );
    assert_eq!(
        parse_client_frame(r#"{"type":"ping"}"#),
        Err((None, FrameError::MissingId))
    );
    assert!(matches!(
        parse_client_frame(r#"{"type":"auth","id":"2","token":5}"#),
        Err((Some(id), FrameError::BadFields { .. })) if id == "2"
    ));
}

#[test]
fn text_fields_refuse_control_and_direction_characters() {
    for bad in [
        "a\\u0000b",
        "\\u001b[2J",
        "line\\r\\nforged",
        "\\u202eevil",
        "x\\u009by",
        "\\u2066",
    ] {
        let frame =
            format!(r#"{{"type":"presence.set","id":"3","state":"paused","reason":"{bad}"}}"#);
        assert!(
            matches!(
                parse_client_frame(&frame),
                Err((Some(ref id), FrameError::ControlCharacter { ref field, .. }))
                    if id == "3" && field == "reason"
            ),
            "{frame}: {:?}",
            parse_client_frame(&frame)
        );
    }
    // Ordinary text, accents and emoji pass; an SDP keeps its CRLF line ends, but not NUL.
    parse_client_frame(
        r#"{"type":"presence.set","id":"3","state":"paused","reason":"pausa caffè ☕"}"#,
    )
    .unwrap();
    let sdp = r#"{"type":"media.offer","id":"4","call_id":"c","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}"#;
    parse_client_frame(sdp).unwrap();
    assert!(matches!(
        parse_client_frame(&sdp.replace("v=0", "v=0\\u0000")),
        Err((_, FrameError::ControlCharacter { .. }))
    ));
    // Nested values are checked too, under their own key.
    assert!(matches!(
        parse_client_frame(r#"{"type":"auth","id":"1","token":"t","capabilities":["printer\u0007"]}"#),
        Err((_, FrameError::ControlCharacter { ref field, .. })) if field == "capabilities"
    ));
}

#[test]
fn server_frames_serialize_as_the_contract_says() {
    let ok = ServerFrame::ok_with(
        "1",
        &AuthOk {
            session_id: "s".into(),
            role: Role::Kiosk,
            principal_id: "k1".into(),
            heartbeat_s: 15,
            resumed: false,
            ice_servers: None,
            ice_transport_policy: None,
            ice_servers_ttl_s: None,
        },
    );
    let v: Value = serde_json::from_str(&ok.to_json()).unwrap();
    assert_eq!(v["type"], "ok");
    for absent in ["ice_servers", "ice_transport_policy", "ice_servers_ttl_s"] {
        assert!(v.get(absent).is_none(), "{absent} is omitted without TURN");
    }
    assert_eq!(v["id"], "1");
    assert_eq!(v["role"], "kiosk");
    assert_eq!(v["heartbeat_s"], 15);

    let err = ServerFrame::error(Some("9".into()), ErrorCode::RateLimited, "slow down");
    let v: Value = serde_json::from_str(&err.to_json()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["code"], "rate_limited");
    assert_eq!(v["id"], "9");

    let ev = ServerFrame::Event(Event::ServerDraining { grace_s: 10 });
    let v: Value = serde_json::from_str(&ev.to_json()).unwrap();
    assert_eq!(v["type"], "server.draining");
    assert_eq!(v["grace_s"], 10);
}

#[test]
fn error_codes_map_to_http_statuses() {
    assert_eq!(ErrorCode::Unauthorized.http_status(), 401);
    assert_eq!(ErrorCode::Internal.http_status(), 500);
    assert_eq!(
        serde_json::to_string(&ErrorCode::NotFound).unwrap(),
        "\"not_found\""
    );
}

#[test]
fn call_requests_parse_with_defaults_and_round_trip() {
    let frame =
        parse_client_frame(r#"{"type":"call.request","id":"2","service":"anagrafe"}"#).unwrap();
    assert_eq!(
        frame.request,
        Request::CallRequest(CallRequest {
            service: "anagrafe".into(),
            language: "it".into(),
            priority: None,
        })
    );
    let transfer = Request::CallTransfer(CallTransfer {
        call_id: "c1".into(),
        service: Some("stato_civile".into()),
        operator_id: None,
    });
    let text = transfer.to_frame("9");
    let back = parse_client_frame(&text).unwrap();
    assert_eq!(back.id, "9");
    assert_eq!(back.request, transfer);
    assert_eq!(back.request.kind(), "call.transfer");
    for kind in Request::TYPES {
        assert!(
            !matches!(
                parse_client_frame(&format!(r#"{{"type":"{kind}","id":"1"}}"#)),
                Err((_, FrameError::UnknownType(_)))
            ),
            "{kind} is listed but unknown"
        );
    }
    assert!(matches!(
        parse_client_frame(r#"{"type":"presence.set","id":"3","state":"asleep"}"#),
        Err((Some(_), FrameError::BadFields { .. }))
    ));
}

#[test]
fn events_round_trip_and_unknown_events_are_kept() {
    let ev = Event::QueueUpdate(QueueUpdate {
        call_id: "c".into(),
        position: 2,
        estimated_wait_s: None,
        estimated_wait_low_s: None,
        estimated_wait_high_s: None,
    });
    let text = ev.to_json();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "queue.update");
    assert!(v["estimated_wait_s"].is_null(), "unknown wait is null");
    assert_eq!(
        parse_server_frame(&text).unwrap(),
        ServerMessage::Frame(ServerFrame::Event(ev))
    );
    assert!(matches!(
        parse_server_frame(r#"{"type":"media.stats","call_id":"c"}"#).unwrap(),
        ServerMessage::Unknown(_)
    ));
    assert!(matches!(
        parse_server_frame(r#"{"type":"error","id":"4","code":"conflict","message":"m"}"#).unwrap(),
        ServerMessage::Frame(ServerFrame::Error {
            code: ErrorCode::Conflict,
            ..
        })
    ));
}

#[test]
fn media_reconnect_round_trips_and_keeps_unknown_reasons() {
    let ev = Event::MediaReconnect(media::MediaReconnect {
        call_id: "3f2b8c1e".into(),
        reason: media::MediaReconnect::NODE_LOST.into(),
    });
    assert_eq!(ev.kind(), "media.reconnect");
    let text = ev.to_json();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "media.reconnect");
    assert_eq!(v["call_id"], "3f2b8c1e");
    assert_eq!(v["reason"], "node_lost");
    assert_eq!(
        parse_server_frame(&text).unwrap(),
        ServerMessage::Frame(ServerFrame::Event(ev.clone()))
    );
    let framed = ServerFrame::Event(ev).to_json();
    assert_eq!(serde_json::from_str::<Value>(&framed).unwrap(), v);

    // Draining, and a reason this version does not know: still the typed event, with the text.
    for reason in ["node_draining", "rebalanced"] {
        let text = format!(r#"{{"type":"media.reconnect","call_id":"c","reason":"{reason}"}}"#);
        assert_eq!(
            parse_server_frame(&text).unwrap(),
            ServerMessage::Frame(ServerFrame::Event(Event::MediaReconnect(
                media::MediaReconnect {
                    call_id: "c".into(),
                    reason: reason.into(),
                }
            )))
        );
    }
    // Unknown extra fields are ignored; a frame without a reason is kept as unknown.
    assert!(matches!(
        parse_server_frame(
            r#"{"type":"media.reconnect","call_id":"c","reason":"node_lost","node":"n2"}"#
        )
        .unwrap(),
        ServerMessage::Frame(ServerFrame::Event(Event::MediaReconnect(_)))
    ));
    assert!(matches!(
        parse_server_frame(r#"{"type":"media.reconnect","call_id":"c"}"#).unwrap(),
        ServerMessage::Unknown(_)
    ));
}

#[test]
fn wrapup_done_and_feedback_round_trip() {
    let frame = parse_client_frame(
        r#"{"type":"wrapup.done","id":"9","call_id":"c1","disposition":"informazioni","notes":"ok"}"#,
    )
    .unwrap();
    let expected = Request::WrapupDone(outcome::WrapupDone {
        call_id: "c1".into(),
        disposition: Some("informazioni".into()),
        notes: Some("ok".into()),
    });
    assert_eq!(frame.request, expected);
    let again = parse_client_frame(&expected.to_frame("9")).unwrap();
    assert_eq!(again.request, expected);
    // The contract's original form still parses: the server decides whether it is enough.
    let bare = parse_client_frame(r#"{"type":"wrapup.done","id":"1","call_id":"c1"}"#).unwrap();
    assert_eq!(
        bare.request,
        Request::WrapupDone(outcome::WrapupDone {
            call_id: "c1".into(),
            disposition: None,
            notes: None,
        })
    );
    assert_eq!(
        Request::WrapupDone(outcome::WrapupDone::with("c1", "non_risolto")).to_frame("2"),
        r#"{"call_id":"c1","disposition":"non_risolto","id":"2","type":"wrapup.done"}"#
    );

    let feedback = Request::FeedbackSubmit(outcome::FeedbackSubmit {
        call_id: "c1".into(),
        rating: 4,
        comment: Some("gentili".into()),
    });
    assert_eq!(feedback.kind(), "feedback.submit");
    assert_eq!(
        parse_client_frame(&feedback.to_frame("3")).unwrap().request,
        feedback
    );
    let plain =
        parse_client_frame(r#"{"type":"feedback.submit","id":"4","call_id":"c1","rating":5}"#)
            .unwrap();
    assert!(
        matches!(plain.request, Request::FeedbackSubmit(f) if f.rating == 5 && f.comment.is_none())
    );
    for bad in [
        r#"{"type":"feedback.submit","id":"5","call_id":"c1"}"#,
        r#"{"type":"feedback.submit","id":"5","call_id":"c1","rating":-1}"#,
        r#"{"type":"feedback.submit","id":"5","call_id":"c1","rating":2.5}"#,
        r#"{"type":"feedback.submit","id":"5","call_id":"c1","rating":"5"}"#,
        r#"{"type":"feedback.submit","id":"5","call_id":"c1","rating":3,"comment":"a\nb"}"#,
    ] {
        assert!(
            matches!(parse_client_frame(bad), Err((Some(id), _)) if id == "5"),
            "{bad}"
        );
    }
}

#[test]
fn state_sync_lists_dispositions_only_when_present() {
    let sync = StateSync {
        calls: vec![],
        operator_state: None,
        dispositions: Some(vec![outcome::Disposition {
            code: "informazioni".into(),
            label: "Informazioni".into(),
            label_en: "Information".into(),
        }]),
    };
    let json = Event::StateSync(sync.clone()).to_json();
    assert_eq!(
        json,
        r#"{"type":"state.sync","calls":[],"dispositions":[{"code":"informazioni","label":"Informazioni","label_en":"Information"}]}"#
    );
    let back: Event = serde_json::from_str(&json).unwrap();
    assert_eq!(back, Event::StateSync(sync));
    let old: Event = serde_json::from_str(r#"{"type":"state.sync","calls":[]}"#).unwrap();
    assert!(matches!(
        old,
        Event::StateSync(StateSync {
            dispositions: None,
            ..
        })
    ));
}

#[test]
fn the_wait_interval_is_optional_and_absent_when_unknown() {
    // Known: the three figures side by side.
    let known = Event::QueueUpdate(QueueUpdate {
        call_id: "c".into(),
        position: 3,
        estimated_wait_s: Some(150),
        estimated_wait_low_s: Some(90),
        estimated_wait_high_s: Some(240),
    });
    let json = known.to_json();
    assert_eq!(
        json,
        r#"{"type":"queue.update","call_id":"c","position":3,"estimated_wait_s":150,"estimated_wait_low_s":90,"estimated_wait_high_s":240}"#
    );
    assert_eq!(
        parse_server_frame(&json).unwrap(),
        ServerMessage::Frame(ServerFrame::Event(known))
    );
    // Unknown: the interval is absent, so the frame is exactly what older servers sent.
    let unknown = Event::QueueUpdate(QueueUpdate {
        call_id: "c".into(),
        position: 1,
        estimated_wait_s: None,
        estimated_wait_low_s: None,
        estimated_wait_high_s: None,
    });
    assert_eq!(
        unknown.to_json(),
        r#"{"type":"queue.update","call_id":"c","position":1,"estimated_wait_s":null}"#
    );
    // An older server's frame (no interval) still parses, with no interval; so does an explicit null.
    for old in [
        r#"{"type":"queue.update","call_id":"c","position":2,"estimated_wait_s":60}"#,
        r#"{"type":"queue.update","call_id":"c","position":2,"estimated_wait_s":60,"estimated_wait_low_s":null,"estimated_wait_high_s":null}"#,
    ] {
        let ServerMessage::Frame(ServerFrame::Event(Event::QueueUpdate(u))) =
            parse_server_frame(old).unwrap()
        else {
            panic!("{old}")
        };
        assert_eq!(
            (
                u.estimated_wait_s,
                u.estimated_wait_low_s,
                u.estimated_wait_high_s
            ),
            (Some(60), None, None)
        );
    }
    // The same in `state.sync`: a waiting call carries the interval when known, and nothing else
    // changes when it is not.
    let mut call = SyncedCall {
        call_id: "c".into(),
        state: "waiting".into(),
        service: "anagrafe".into(),
        language: "it".into(),
        kiosk: None,
        operator: None,
        waited_s: 48,
        expires_in_s: None,
        position: Some(2),
        estimated_wait_s: Some(180),
        estimated_wait_low_s: Some(120),
        estimated_wait_high_s: Some(300),
        media_node: None,
    };
    let sync = |call: &SyncedCall| {
        Event::StateSync(StateSync {
            calls: vec![call.clone()],
            operator_state: None,
            dispositions: None,
        })
    };
    let json = sync(&call).to_json();
    assert_eq!(
        json,
        r#"{"type":"state.sync","calls":[{"call_id":"c","state":"waiting","service":"anagrafe","language":"it","waited_s":48,"position":2,"estimated_wait_s":180,"estimated_wait_low_s":120,"estimated_wait_high_s":300}]}"#
    );
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), sync(&call));
    (
        call.estimated_wait_s,
        call.estimated_wait_low_s,
        call.estimated_wait_high_s,
    ) = (None, None, None);
    let json = sync(&call).to_json();
    assert_eq!(
        json,
        r#"{"type":"state.sync","calls":[{"call_id":"c","state":"waiting","service":"anagrafe","language":"it","waited_s":48,"position":2}]}"#
    );
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), sync(&call));
}
