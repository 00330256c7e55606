//! End-to-end tests of the server on port 0 with real HTTP and WebSocket clients: login, tokens,
//! the WebSocket handshake and framing, health, readiness, metrics, and graceful shutdown.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{json, Value};
use tower::ServiceExt;

#[tokio::test]
async fn login_issues_a_token_that_opens_a_session() {
    let t = TestServer::start().await;
    let login = &t.demo().operators[0];
    let res = reqwest::Client::new()
        .post(t.url("/api/v1/login"))
        .json(&json!({"username": login.username, "password": login.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["role"], "operator");
    let expires = body["expires_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );

    let token = body["token"].as_str().unwrap();
    let who: Value = reqwest::Client::new()
        .get(t.url("/api/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["principal_id"], login.username.as_str());

    let mut ws = t.connect().await;
    let ok = auth(&mut ws, token).await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(ok["id"], "1");
    assert_eq!(ok["role"], "operator");
    assert_eq!(ok["principal_id"], login.username.as_str());
    assert_eq!(ok["heartbeat_s"], 15);
    assert!(ok["session_id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn supervisor_login_and_kiosk_device_token() {
    let t = TestServer::start().await;
    let sup = &t.demo().supervisors[0];
    let body: Value = post_json(
        &t.url("/api/v1/login"),
        &json!({"username": sup.username, "password": sup.password}),
    )
    .await
    .1;
    assert_eq!(body["role"], "supervisor");

    let mut ws = t.connect().await;
    send(
        &mut ws,
        json!({"type":"auth","id":"a","token": t.kiosk_token(), "capabilities":["printer"]}),
    )
    .await;
    let ok = recv(&mut ws).await;
    assert_eq!(ok["role"], "kiosk");
    assert_eq!(ok["principal_id"], t.demo().kiosks[0].id.as_str());
}

#[tokio::test]
async fn bad_logins_get_the_documented_errors() {
    let t = TestServer::start().await;
    let client = reqwest::Client::new();
    let login = &t.demo().operators[0];
    let res = client
        .post(t.url("/api/v1/login"))
        .json(&json!({"username": login.username, "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    assert!(body["message"].as_str().is_some());

    let res = client
        .post(t.url("/api/v1/login"))
        .json(&json!({"username": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    for bad in ["{not json", r#"{"username":"x"}"#, "[]"] {
        let res = client
            .post(t.url("/api/v1/login"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "invalid", "{bad}");
    }

    let res = client
        .post(t.url("/api/v1/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());

    let res = client.get(t.url("/api/v1/session")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .get(t.url("/api/v1/session"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let res = client.get(t.url("/no/such/page")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn repeated_failures_are_rate_limited() {
    let t = TestServer::start().await;
    let client = reqwest::Client::new();
    let login = &t.demo().operators[1];
    let mut last = 0;
    for _ in 0..11 {
        last = client
            .post(t.url("/api/v1/login"))
            .json(&json!({"username": login.username, "password": "wrong"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    // Even the right password is refused while throttled.
    let res = client
        .post(t.url("/api/v1/login"))
        .json(&json!({"username": login.username, "password": login.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let t = TestServer::start().await;
    let principal = signalling::accounts::Principal {
        role: protocol::Role::Operator,
        id: t.demo().operators[0].username.clone(),
    };
    let long_ago = signalling::tokens::unix_now() - 2 * t.server.state.tokens.ttl_s();
    let (expired, _) = t.server.state.tokens.issue(&principal, long_ago);

    let res = reqwest::Client::new()
        .get(t.url("/api/v1/session"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "token has expired");

    let mut ws = t.connect().await;
    let reply = auth(&mut ws, &expired).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "unauthorized");
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 4401u16.into());
}

#[tokio::test]
async fn ws_bad_token_closes_with_4401() {
    let t = TestServer::start().await;
    let mut ws = t.connect().await;
    let reply = auth(&mut ws, "not-a-token").await;
    assert_eq!(reply["code"], "unauthorized");
    assert_eq!(reply["id"], "1");
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 4401u16.into());
}

#[tokio::test]
async fn ws_first_frame_must_be_auth() {
    let t = TestServer::start().await;
    let mut ws = t.connect().await;
    send(&mut ws, json!({"type":"ping","id":"1"})).await;
    assert_eq!(recv(&mut ws).await["code"], "unauthorized");
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 4401u16.into());
}

#[tokio::test]
async fn ws_without_auth_for_five_seconds_closes_with_4401() {
    let t = TestServer::start().await;
    let mut ws = t.connect().await;
    let started = std::time::Instant::now();
    let close = recv_close(&mut ws).await.unwrap();
    assert_eq!(close.code, 4401u16.into());
    assert!(started.elapsed() >= Duration::from_millis(4500));
}

#[tokio::test]
async fn ws_unknown_types_and_malformed_json_get_invalid_and_stay_open() {
    let t = TestServer::start().await;
    let mut ws = t.connect().await;
    let token = t.operator_token().await;
    assert_eq!(auth(&mut ws, &token).await["type"], "ok");

    send(&mut ws, json!({"type":"teleport","id":"2"})).await;
    let reply = recv(&mut ws).await;
    assert_eq!(
        (
            reply["type"].as_str(),
            reply["code"].as_str(),
            reply["id"].as_str()
        ),
        (Some("error"), Some("invalid"), Some("2"))
    );

    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "{\"type\": oops".into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut ws).await["code"], "invalid");

    send(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["code"], "invalid");

    send(&mut ws, json!({"type":"ping","id":"3"})).await;
    let reply = recv(&mut ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_str()),
        (Some("ok"), Some("3"))
    );
}

#[tokio::test]
async fn ws_oversized_frames_get_invalid_and_close() {
    let t = TestServer::start().await;
    for size in [64 * 1024 + 1, 3 << 20] {
        let mut ws = t.connect().await;
        assert_eq!(auth(&mut ws, &t.kiosk_token()).await["type"], "ok");
        let pad = "x".repeat(size);
        use futures_util::SinkExt;
        let _ = ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                format!(r#"{{"type":"ping","id":"2","pad":"{pad}"}}"#).into(),
            ))
            .await;
        if size < (1 << 20) {
            let reply = recv(&mut ws).await;
            assert_eq!(reply["code"], "invalid");
            assert_eq!(recv_close(&mut ws).await.unwrap().code, 1009u16.into());
        } else {
            // Beyond the transport limit the server still answers and closes, and survives.
            let close = recv_close(&mut ws).await;
            if let Some(close) = close {
                assert_eq!(close.code, 1009u16.into());
            }
        }
    }
    // The server is still fine.
    let res = reqwest::get(t.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn ws_resume_keeps_the_session() {
    let t = TestServer::start().await;
    let token = t.kiosk_token();
    let mut ws = t.connect().await;
    let first = auth(&mut ws, &token).await;
    let session_id = first["session_id"].as_str().unwrap().to_owned();
    drop(ws);

    let mut ws = t.connect().await;
    send(
        &mut ws,
        json!({"type":"auth","id":"1","token":token,"resume":session_id}),
    )
    .await;
    let second = recv(&mut ws).await;
    assert_eq!(second["session_id"], session_id.as_str());
    assert_eq!(second["resumed"], true);

    // A third socket resuming the same live session supersedes the second.
    let mut ws3 = t.connect().await;
    send(
        &mut ws3,
        json!({"type":"auth","id":"1","token":token,"resume":session_id}),
    )
    .await;
    assert_eq!(recv(&mut ws3).await["resumed"], true);
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 4409u16.into());

    // Another kiosk cannot take the session over.
    let other = t.demo().kiosks[1].token.clone();
    let mut ws4 = t.connect().await;
    send(
        &mut ws4,
        json!({"type":"auth","id":"1","token":other,"resume":session_id}),
    )
    .await;
    let reply = recv(&mut ws4).await;
    assert_eq!(reply["resumed"], false);
    assert_ne!(reply["session_id"], session_id.as_str());
}

#[tokio::test]
async fn ws_heartbeat_pings_and_drops_silent_clients() {
    let t = TestServer::start_with(|c| c.ws.heartbeat_s = 1).await;
    let (stream, _) = tokio_tungstenite::connect_async(t.ws_url()).await.unwrap();
    let mut ws = stream;
    assert_eq!(auth(&mut ws, &t.kiosk_token()).await["heartbeat_s"], 1);
    // tungstenite answers pings only while the socket is being read; stop reading and the server
    // must give up on the client after 2 × heartbeat.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let close = recv_close(&mut ws).await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4408));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let t = TestServer::start().await;
    let res = reqwest::get(t.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
    let res = reqwest::get(t.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ready"], true);
    let media = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "media")
        .expect("a media check");
    assert_eq!(media["ok"], true, "{media}");

    let metrics = reqwest::get(t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sportello_media_peer_connections"),
        "the media plane's metrics are on the same registry"
    );
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sportello_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("sportello_build_info"));
    // Metrics are not on the public listener.
    assert_eq!(reqwest::get(t.url("/metrics")).await.unwrap().status(), 404);
}

#[tokio::test]
async fn redis_store_readiness_follows_redis() {
    let mut redis = testkit::RedisServer::start().await;
    let t = TestServer::start_with(|c| c.redis = Some(redis.url())).await;
    let res = reqwest::get(t.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body.to_string().contains("redis reachable"), "{body}");

    // The queue runs on Redis: the node's heartbeat is there, and its gauges are exported.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let metrics = reqwest::get(t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sportello_calls_total") || metrics.contains("sportello_operators"),
        "{metrics}"
    );

    redis.kill();
    let res = reqwest::get(t.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("store: redis"),
        "{body}"
    );
    // Liveness does not depend on Redis.
    assert_eq!(reqwest::get(t.url("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.redis = Some(format!("redis://127.0.0.1:{port}/0"));
    let err = signalling::server::start(cfg).await.unwrap_err();
    assert!(format!("{err:#}").contains("Redis"), "{err:#}");
}

#[tokio::test]
async fn router_answers_without_a_socket() {
    let t = TestServer::start().await;
    let app = signalling::http::app(t.server.state.clone());
    let res = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .oneshot(
            Request::post("/api/v1/login")
                .header("content-type", "text/plain")
                .body(Body::from("hello"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn graceful_shutdown_drains_then_closes() {
    let t = TestServer::start_with(|c| c.shutdown.drain_s = 2).await;
    let mut ws = t.connect().await;
    assert_eq!(auth(&mut ws, &t.kiosk_token()).await["type"], "ok");

    t.server.shutdown().drain(Duration::from_secs(2));
    let event = recv(&mut ws).await;
    assert_eq!(event["type"], "server.draining");
    assert!(event["grace_s"].as_u64().unwrap() <= 2);

    // While draining, readiness fails with a reason, on the admin listener that stays up.
    let res = reqwest::get(t.admin_url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("shutting down"));

    // The open session still works until the deadline.
    send(&mut ws, json!({"type":"ping","id":"p"})).await;
    assert_eq!(recv(&mut ws).await["type"], "ok");

    // New connections are refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio_tungstenite::connect_async(t.ws_url()).await.is_err());

    // At the deadline the socket is closed with "going away", and the server stops.
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 1001u16.into());
    let TestServer { server, dir: _dir } = t;
    tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("server stops after the drain")
        .unwrap();
}

#[tokio::test]
async fn stop_now_closes_everything_at_once() {
    let t = TestServer::start_with(|c| c.shutdown.drain_s = 60).await;
    let mut ws = t.connect().await;
    assert_eq!(auth(&mut ws, &t.kiosk_token()).await["type"], "ok");
    t.server.shutdown().stop_now();
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 1001u16.into());
    let TestServer { server, dir: _dir } = t;
    tokio::time::timeout(Duration::from_secs(5), server.wait())
        .await
        .expect("server stops at once")
        .unwrap();
}

#[tokio::test]
async fn processes_sharing_a_data_directory_share_accounts_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let a = signalling::server::start(config(dir.path())).await.unwrap();
    let b = signalling::server::start(config(dir.path())).await.unwrap();
    assert_eq!(a.demo, b.demo);
    let login = &a.demo.as_ref().unwrap().operators[2];
    let body: Value = post_json(
        &format!("{}/api/v1/login", a.base_url()),
        &json!({"username": login.username, "password": login.password}),
    )
    .await
    .1;
    let token = body["token"].as_str().unwrap();
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/session", b.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let creds: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("demo-credentials.json")).unwrap())
            .unwrap();
    assert_eq!(creds["operators"].as_array().unwrap().len(), 3);
    assert_eq!(creds["supervisors"].as_array().unwrap().len(), 1);
    assert_eq!(creds["kiosks"].as_array().unwrap().len(), 3);
    assert!(creds["kiosks"][0]["token"].as_str().is_some());
    assert!(creds["operators"][0]["password"].as_str().is_some());
}

#[tokio::test]
async fn a_signalling_node_stays_ready_without_media_nodes_and_reports_the_pool() {
    let mut redis = testkit::RedisServer::start().await;
    let t = TestServer::start_with(|c| {
        c.redis = Some(redis.url());
        c.cluster.role = signalling::config::NodeRole::Signalling;
    })
    .await;
    // No media node runs: the node still serves pages and logins, so it is ready, and the body
    // says that no media node takes calls.
    let res = reqwest::get(t.admin_url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "media"),
        "{body}"
    );
    assert_eq!(body["info"][0]["name"], "media", "{body}");
    assert_eq!(body["info"][0]["ok"], false, "{body}");
    assert_eq!(
        body["info"][0]["detail"], "0 of 0 media nodes take calls",
        "{body}"
    );
    // Its store still decides.
    redis.kill();
    let res = reqwest::get(t.admin_url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("store"), "{body}");
    assert!(
        !body["reason"].as_str().unwrap().contains("media"),
        "{body}"
    );
}
