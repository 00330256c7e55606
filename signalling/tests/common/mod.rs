//! Shared helpers for the end-to-end tests: a server on port 0 with a private data directory, and
//! real HTTP and WebSocket clients.
#![allow(dead_code)]

pub mod centre;
pub mod web;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use signalling::config::Config;
use signalling::server::{self, RunningServer};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A configuration for tests: loopback, port 0 everywhere, a fresh data directory.
pub fn config(data_dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    }
}

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        edit(&mut cfg);
        assert_eq!(cfg.validate(), Vec::<String>::new());
        let server = server::start(cfg).await.unwrap();
        TestServer { server, dir }
    }

    /// A server on TLS with a fresh self-signed certificate for `localhost`; `edit` changes the
    /// rest of the configuration. Returns the certificate for the client's roots.
    pub async fn start_tls(
        edit: impl FnOnce(&mut Config),
    ) -> (Self, rcgen::CertifiedKey, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let t = Self::start_with(|c| {
            c.tls = Some(signalling::config::TlsConfig { cert, key });
            edit(c);
        })
        .await;
        (t, certified, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.admin_addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.server.addr)
    }

    pub fn demo(&self) -> &signalling::accounts::DemoCredentials {
        self.server.demo.as_ref().expect("demo accounts")
    }

    /// Logs in the first demo operator and returns the token.
    pub async fn operator_token(&self) -> String {
        let login = &self.demo().operators[0];
        let res = reqwest::Client::new()
            .post(self.url("/api/v1/login"))
            .json(&serde_json::json!({"username": login.username, "password": login.password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    pub fn kiosk_token(&self) -> String {
        self.demo().kiosks[0].token.clone()
    }

    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url())
            .await
            .unwrap();
        ws
    }
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next text frame as JSON; panics after 10 s. Pings, the `state.sync` event that follows
/// every `auth` and an operator's `operator.state` are skipped (the call tests check those through
/// the kiosk client).
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] != "state.sync" && v["type"] != "operator.state" {
                    return v;
                }
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Waits for the close frame, skipping other frames; returns it.
pub async fn recv_close(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("close within 15 s");
        match msg {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Authenticates and returns the `ok` reply.
pub async fn auth(ws: &mut Ws, token: &str) -> Value {
    send(
        ws,
        serde_json::json!({"type":"auth","id":"1","token":token}),
    )
    .await;
    recv(ws).await
}

/// POSTs a JSON body and returns the status and the JSON answer.
pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}
