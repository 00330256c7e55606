//! Hostile input that the server must refuse or neutralise (issue "Hardening", rows 7, 11, 13
//! and 14): made-up HTTP methods cannot create metric series, a client's request id is kept only
//! when it is short and plain, a call cannot ask for a language no operator speaks, and text
//! fields refuse control and direction characters.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn made_up_methods_share_one_metric_label() {
    let t = TestServer::start().await;
    let client = reqwest::Client::new();
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        let res = client
            .request(method, t.url("/api/v1/session"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let metrics = reqwest::get(t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("FOO"), "made-up methods became labels");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
}

#[tokio::test]
async fn a_clients_request_id_is_kept_only_when_short_and_plain() {
    let t = TestServer::start().await;
    let client = reqwest::Client::new();
    let echoed = |value: &str| {
        let request = client
            .get(t.url("/healthz"))
            .header("x-request-id", value)
            .send();
        async move {
            request
                .await
                .unwrap()
                .headers()
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(echoed("kiosk-42:req.7_a").await, "kiosk-42:req.7_a");
    for bad in [
        "x".repeat(70_000),
        "a b".to_owned(),
        r#"ok" level="error"#.to_owned(),
        "x".repeat(65),
    ] {
        let got = echoed(&bad).await;
        assert_ne!(got, bad);
        assert!(
            uuid::Uuid::parse_str(&got).is_ok(),
            "replaced by a fresh id, got {got:?}"
        );
    }
}

async fn kiosk(t: &TestServer) -> Ws {
    let mut ws = t.connect().await;
    let ok = auth(&mut ws, &t.kiosk_token()).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    ws
}

async fn request(ws: &mut Ws, frame: Value) -> Value {
    send(ws, frame).await;
    loop {
        let reply = recv(ws).await;
        if reply["type"] == "ok" || reply["type"] == "error" {
            return reply;
        }
    }
}

#[tokio::test]
async fn a_call_must_ask_for_a_language_some_operator_speaks() {
    let t = TestServer::start().await;
    let mut ws = kiosk(&t).await;
    for language in ["xx".to_owned(), "a".repeat(128)] {
        let reply = request(
            &mut ws,
            json!({"type":"call.request","id":"2","service":"anagrafe","language":language}),
        )
        .await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], "invalid", "{reply}");
        assert_eq!(reply["id"], "2");
    }
    // Arabic is spoken by a demo operator.
    let reply = request(
        &mut ws,
        json!({"type":"call.request","id":"3","service":"anagrafe","language":"ar"}),
    )
    .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert!(reply["call_id"].is_string(), "{reply}");
}

#[tokio::test]
async fn text_fields_with_control_characters_are_refused() {
    let t = TestServer::start().await;
    let token = t.operator_token().await;
    let mut ws = t.connect().await;
    assert_eq!(auth(&mut ws, &token).await["type"], "ok");
    for reason in [
        "pausa\u{0000}",
        "\u{001b}[31mrosso",
        "a\r\nb",
        "\u{202e}ossor",
    ] {
        let reply = request(
            &mut ws,
            json!({"type":"presence.set","id":"5","state":"paused","reason":reason}),
        )
        .await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], "invalid", "{reply}");
        assert_eq!(reply["id"], "5");
    }
    // The session is still usable, and plain text with accents passes.
    let reply = request(
        &mut ws,
        json!({"type":"presence.set","id":"6","state":"paused","reason":"pausa caffè"}),
    )
    .await;
    assert_eq!(reply["type"], "ok", "{reply}");
}
