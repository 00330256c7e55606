//! TLS: with a certificate and key configured, HTTPS and WSS are served on the same listener.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn https_and_wss_on_one_port() {
    let (t, certified, _dir) = TestServer::start_tls(|_| {}).await;
    assert!(t.server.base_url().starts_with("https://"));
    let port = t.server.addr.port();

    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", t.server.addr)
        .build()
        .unwrap();
    let res = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let login = &t.demo().operators[0];
    let body: Value = client
        .post(format!("https://localhost:{port}/api/v1/login"))
        .json(&serde_json::json!({"username": login.username, "password": login.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = body["token"].as_str().unwrap().to_owned();

    // Plain HTTP on the TLS port does not get through.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    // WSS with a client that trusts only the test certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(t.server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async_tls_with_config(
        format!("wss://localhost:{port}/api/v1/ws"),
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(
            client_config,
        ))),
    )
    .await
    .unwrap();
    let ok = auth(&mut ws, &token).await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(ok["role"], "operator");
}

#[test]
fn mismatched_or_missing_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("a.pem");
    let key = dir.path().join("b.key");
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
    let err = signalling::server::load_tls(&cert, &key).unwrap_err();
    assert!(format!("{err:#}").contains("do not match"), "{err:#}");
    std::fs::write(&key, "not a key").unwrap();
    let err = signalling::server::load_tls(&cert, &key).unwrap_err();
    assert!(format!("{err:#}").contains("private key"), "{err:#}");
}
