//! Logging out and refreshing (issue "Hardening", row 10): a login gives a short access token and
//! a refresh token; `POST /api/v1/logout` revokes every token of that login, on every node (two
//! servers on one `redis-server`); a revoked token fails HTTP with 401 and the WebSocket `auth`
//! with close code 4401.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn login(t: &TestServer, n: usize) -> Value {
    let login = &t.demo().operators[n];
    let (status, body) = post_json(
        &t.url("/api/v1/login"),
        &json!({"username": login.username, "password": login.password}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The status of `method path` with `token` as bearer.
async fn with_bearer(t: &TestServer, method: reqwest::Method, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .request(method, t.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn session_status(t: &TestServer, token: &str) -> u16 {
    with_bearer(t, reqwest::Method::GET, "/api/v1/session", token).await
}

async fn logout(t: &TestServer, token: &str) -> u16 {
    with_bearer(t, reqwest::Method::POST, "/api/v1/logout", token).await
}

async fn ws_auth_closes_4401(t: &TestServer, token: &str) {
    let mut ws = t.connect().await;
    let reply = auth(&mut ws, token).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    assert_eq!(recv_close(&mut ws).await.unwrap().code, 4401u16.into());
}

#[tokio::test]
async fn logout_revokes_every_token_of_that_login_and_only_those() {
    let t = TestServer::start().await;
    let first = login(&t, 0).await;
    let second = login(&t, 0).await;
    let token = first["token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert!(first["refresh_expires_at"].as_str().unwrap() > first["expires_at"].as_str().unwrap());
    assert_eq!(session_status(&t, token).await, 200);

    assert_eq!(logout(&t, token).await, 204);
    assert_eq!(session_status(&t, token).await, 401);
    ws_auth_closes_4401(&t, token).await;
    let (status, body) = post_json(
        &t.url("/api/v1/refresh"),
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(
        status, 401,
        "the refresh token of a logged-out login: {body}"
    );
    assert_eq!(logout(&t, token).await, 401, "already logged out");

    // Another login of the same operator (another tab, another booth) is untouched.
    let other = second["token"].as_str().unwrap();
    assert_eq!(session_status(&t, other).await, 200);
    let mut ws = t.connect().await;
    assert_eq!(auth(&mut ws, other).await["type"], "ok");
}

#[tokio::test]
async fn a_refresh_token_buys_access_tokens_and_nothing_else() {
    let t = TestServer::start_with(|c| c.auth.access_ttl_s = 60).await;
    let body = login(&t, 0).await;
    let (token, refresh) = (
        body["token"].as_str().unwrap(),
        body["refresh_token"].as_str().unwrap(),
    );
    // The access token lasts access_ttl_s, the refresh token the session.
    let expires = |v: &Value, key: &str| {
        time::OffsetDateTime::parse(
            v[key].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let access_left = expires(&body, "expires_at") - time::OffsetDateTime::now_utc();
    assert!(access_left <= time::Duration::seconds(61), "{access_left}");
    assert!(
        expires(&body, "refresh_expires_at") - time::OffsetDateTime::now_utc()
            > time::Duration::hours(9)
    );

    let (status, again) = post_json(
        &t.url("/api/v1/refresh"),
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let fresh = again["token"].as_str().unwrap();
    assert_eq!(again["role"], "operator");
    assert_eq!(again["refresh_token"], refresh);
    assert_eq!(session_status(&t, fresh).await, 200);

    // Neither kind stands in for the other.
    assert_eq!(session_status(&t, refresh).await, 401);
    ws_auth_closes_4401(&t, refresh).await;
    let (status, _) = post_json(&t.url("/api/v1/refresh"), &json!({"refresh_token": token})).await;
    assert_eq!(status, 401);
    let (status, _) = post_json(
        &t.url("/api/v1/refresh"),
        &json!({"refresh_token": "x.y.z"}),
    )
    .await;
    assert_eq!(status, 401);

    // Logging out with the refreshed token ends the whole login, the first token included.
    assert_eq!(logout(&t, fresh).await, 204);
    assert_eq!(session_status(&t, token).await, 401);
    let (status, _) = post_json(
        &t.url("/api/v1/refresh"),
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_holds_on_the_other() {
    let redis = testkit::RedisServer::start().await;
    let shared = tempfile::tempdir().unwrap();
    let secret = shared.path().join("token-secret");
    std::fs::write(&secret, "s".repeat(48)).unwrap();
    let node = |secret: std::path::PathBuf, url: String| async move {
        TestServer::start_with(move |c| {
            c.redis = Some(url);
            c.auth.token_secret_file = Some(secret);
        })
        .await
    };
    let a = node(secret.clone(), redis.url()).await;
    let b = node(secret.clone(), redis.url()).await;
    let body = login(&a, 0).await;
    let token = body["token"].as_str().unwrap();
    assert_eq!(session_status(&b, token).await, 200, "valid on every node");

    assert_eq!(logout(&a, token).await, 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    while session_status(&b, token).await != 401 {
        assert!(Instant::now() < deadline, "node B still accepts the token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws_auth_closes_4401(&b, token).await;
    let (status, _) = post_json(
        &b.url("/api/v1/refresh"),
        &json!({"refresh_token": body["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 401);
}
