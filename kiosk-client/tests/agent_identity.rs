//! The agent binary identifying citizens for a scripted server: a CIE with a P-256 key and a CNS
//! with an RSA key on real SoftHSM2 tokens, the PIN handed over on the local endpoint (with its
//! CORS rules), a wrong PIN, no PIN in time, an empty reader, and document scans triggered by the
//! screen or by the delay.

mod agent_common;

use std::path::Path;
use std::time::{Duration, Instant};

use agent_common::{spawn_agent, write_config, AgentProcess, CardKey, FakeServer, SoftCard, PIN};
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use serde_json::{json, Value};
use testkit::free_port;
use x509_cert::der::{Decode, Encode};

const TOKEN: &str = "agent-identity-test-token";
const LONG: Duration = Duration::from_secs(30);

struct Setup {
    server: FakeServer,
    dir: tempfile::TempDir,
    local: String,
    http: reqwest::Client,
    agent: Option<AgentProcess>,
}

impl Setup {
    /// A server and an agent with the extra configuration `extra` and environment `env`.
    async fn start(extra: &str, env: &[(&str, &str)]) -> Setup {
        let server = FakeServer::start(TOKEN).await;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(
            dir.path(),
            &server.url(),
            TOKEN,
            &format!("local_listen = \"127.0.0.1:{port}\"\n{extra}"),
        );
        let agent = spawn_agent(&config, env, &dir.path().join("agent.log"));
        server.wait_auths(1, LONG).await;
        Setup {
            server,
            dir,
            local: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            agent: Some(agent),
        }
    }

    fn origin(&self) -> String {
        self.server.url()
    }

    async fn status(&self) -> Value {
        self.http
            .get(format!("{}/v1/status", self.local))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `/v1/status` lists `call_id` under `field` (`pin_expected_for`, …).
    async fn wait_expected(&self, field: &str, call_id: &str) {
        let deadline = Instant::now() + LONG;
        loop {
            let status = self.status().await;
            if status[field]
                .as_array()
                .is_some_and(|calls| calls.iter().any(|c| c == call_id))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{field} never lists {call_id}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, origin: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.local))
            .header("origin", origin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn requested(&self, call_id: &str, method: &str, nonce: &str) {
        self.server.send(json!({
            "type": "identity.requested", "call_id": call_id, "method": method, "nonce": nonce,
        }));
    }

    async fn request_of(&self, kind: &str, call_id: &str) -> Value {
        self.server
            .take(LONG, |f| f["type"] == kind && f["call_id"] == call_id)
            .await
    }

    async fn stop(&mut self) -> String {
        self.agent.take().unwrap().stop().await.unwrap()
    }
}

fn decode(text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn a_cie_is_read_with_the_pin_from_the_screen() {
    let card = SoftCard::create("CIE-TEST", CardKey::P256);
    let conf = card.conf().to_str().unwrap().to_owned();
    let mut setup = Setup::start(
        &format!(
            "pkcs11_module = \"{}\"\npin_timeout_s = 10",
            agent_common::SOFTHSM_MODULE
        ),
        &[("SOFTHSM2_CONF", &conf)],
    )
    .await;
    assert_eq!(
        setup.server.auths()[0]["capabilities"],
        json!(["card_reader"])
    );
    let origin = setup.origin();
    let status = setup.status().await;
    assert_eq!(status["card_reader"]["present"], true, "{status}");
    assert_eq!(status["card_reader"]["label"], "CIE-TEST");

    // The CORS preflight from the screen's origin, with Private Network Access.
    let preflight = setup
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/pin", setup.local))
        .header("origin", &origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .header("access-control-request-private-network", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], origin.as_str());
    assert_eq!(headers["access-control-allow-private-network"], "true");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    // A wrong PIN.
    setup.requested("call-1", "cie", "nonce-one");
    setup.wait_expected("pin_expected_for", "call-1").await;
    let (code, body) = setup
        .post(
            "/v1/pin",
            "https://evil.example",
            json!({"call_id": "call-1", "pin": PIN}),
        )
        .await;
    assert_eq!((code, body["code"].as_str()), (403, Some("forbidden")));
    let text_plain = setup
        .http
        .post(format!("{}/v1/pin", setup.local))
        .header("origin", &origin)
        .header("content-type", "text/plain")
        .body(r#"{"call_id":"call-1","pin":"12345678"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(text_plain.status().as_u16(), 415);
    let (code, body) = setup
        .post(
            "/v1/pin",
            &origin,
            json!({"call_id": "call-1", "pin": "12ab"}),
        )
        .await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid")));
    let (code, body) = setup
        .post(
            "/v1/pin",
            &origin,
            json!({"call_id": "call-1", "pin": "00000000"}),
        )
        .await;
    assert_eq!((code, body), (200, json!({"ok": true})));
    let error = setup.request_of("identity.card_error", "call-1").await;
    assert_eq!(error["reason"], "pin_incorrect");

    // The step stays open after a wrong PIN: the citizen types it again, for the same nonce.
    setup.wait_expected("pin_expected_for", "call-1").await;
    let response = setup
        .http
        .post(format!("{}/v1/pin", setup.local))
        .header("origin", &origin)
        .json(&json!({"call_id": "call-1", "pin": PIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        origin.as_str()
    );
    let identity = setup.request_of("identity.card", "call-1").await;
    let chain: Vec<Vec<u8>> = identity["certificate_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(decode)
        .collect();
    assert_eq!(chain, vec![card.card_der.clone(), card.ca_der.clone()]);
    let cert = x509_cert::Certificate::from_der(&chain[0]).unwrap();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    let signature = p256::ecdsa::Signature::from_slice(&decode(&identity["signature"])).unwrap();
    key.verify(b"nonce-one", &signature)
        .expect("signed the nonce");
    let (code, body) = setup
        .post("/v1/pin", &origin, json!({"call_id": "call-1", "pin": PIN}))
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("conflict")),
        "nothing waits for a PIN once the card answered"
    );

    // No PIN in time.
    setup.requested("call-1", "cie", "nonce-three");
    let error = tokio::time::timeout(
        Duration::from_secs(25),
        setup.request_of("identity.card_error", "call-1"),
    )
    .await
    .unwrap();
    assert_eq!(error["reason"], "timeout");

    // A PEC request is the screen's business: the agent sends nothing.
    setup.requested("call-1", "pec", "nonce-four");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log = setup.stop().await;
    assert!(!log.contains(PIN), "the PIN is never logged");
    assert!(!log.contains("00000000"), "nor a wrong one");
    assert!(!log.contains(TOKEN), "nor the token");
    assert!(log.contains("waiting for the PIN from the screen"), "{log}");
    let sent: Vec<String> = setup
        .server
        .frames()
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sent,
        [
            "identity.card_error",
            "identity.card",
            "identity.card_error"
        ],
        "nothing else, and never the PIN"
    );
}

#[tokio::test]
async fn a_cns_with_an_rsa_key_signs_with_sha256_pkcs1() {
    let card = SoftCard::create("CNS-TEST", CardKey::Rsa);
    let conf = card.conf().to_str().unwrap().to_owned();
    let mut setup = Setup::start(
        &format!("pkcs11_module = \"{}\"", agent_common::SOFTHSM_MODULE),
        &[("SOFTHSM2_CONF", &conf)],
    )
    .await;
    setup.requested("call-9", "cns", "rsa-nonce");
    setup.wait_expected("pin_expected_for", "call-9").await;
    let (code, _) = setup
        .post(
            "/v1/pin",
            &setup.origin(),
            json!({"call_id": "call-9", "pin": PIN}),
        )
        .await;
    assert_eq!(code, 200);
    let identity = setup.request_of("identity.card", "call-9").await;
    let chain = identity["certificate_chain"].as_array().unwrap();
    assert_eq!(decode(&chain[0]), card.card_der);

    // Check with OpenSSL: RSA PKCS#1 v1.5 with SHA-256 over the nonce's bytes.
    let dir = setup.dir.path();
    let write = |name: &str, data: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    let cert = write("card.der", &card.card_der);
    let signature = write("signature.bin", &decode(&identity["signature"]));
    let nonce = write("nonce.txt", b"rsa-nonce");
    let public = agent_common::run(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            path(&cert),
            "-pubkey",
            "-noout",
        ],
        &[],
    );
    let public = write("public.pem", public.as_bytes());
    let verified = agent_common::run(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            path(&public),
            "-signature",
            path(&signature),
            path(&nonce),
        ],
        &[],
    );
    assert!(verified.contains("Verified OK"), "{verified}");
    setup.stop().await;
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn an_empty_reader_is_no_card() {
    let reader = SoftCard::empty();
    let conf = reader.conf().to_str().unwrap().to_owned();
    let mut setup = Setup::start(
        &format!("pkcs11_module = \"{}\"", agent_common::SOFTHSM_MODULE),
        &[("SOFTHSM2_CONF", &conf)],
    )
    .await;
    assert_eq!(setup.status().await["card_reader"]["present"], false);
    setup.requested("call-2", "cie", "n");
    let error = setup.request_of("identity.card_error", "call-2").await;
    assert_eq!(error["reason"], "no_card");
    assert!(error.get("tries_left").is_none());
    setup.stop().await;
}

#[tokio::test]
async fn a_document_is_scanned_when_the_screen_says_or_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("document.png");
    std::fs::write(&png, testkit::images::png_1x1()).unwrap();
    let mut setup = Setup::start(
        &format!("scan_file = \"{}\"\nscan_delay_s = 3", png.display()),
        &[],
    )
    .await;
    assert_eq!(setup.server.auths()[0]["capabilities"], json!(["scanner"]));

    // The screen's "I placed the document".
    let started = Instant::now();
    setup.requested("call-3", "document", "n");
    setup.wait_expected("scan_expected_for", "call-3").await;
    let (code, body) = setup
        .post("/v1/scan", &setup.origin(), json!({"call_id": "call-3"}))
        .await;
    assert_eq!((code, body), (200, json!({"ok": true})));
    let scan = setup.request_of("identity.scan", "call-3").await;
    assert_eq!(scan["scan_id"], "scan-1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for the delay"
    );
    let scans = setup.server.scans();
    assert_eq!(scans.len(), 1);
    assert_eq!(scans[0].0, "call-3");
    assert_eq!(scans[0].1, "image/png");
    assert_eq!(scans[0].2, testkit::images::png_1x1());

    // Nobody presses the button: it scans after scan_delay_s.
    let started = Instant::now();
    setup.requested("call-4", "document", "n");
    let scan = setup.request_of("identity.scan", "call-4").await;
    assert_eq!(scan["scan_id"], "scan-2");
    assert!(started.elapsed() >= Duration::from_secs(3));

    // A scan for a call nobody waits for.
    let (code, _) = setup
        .post("/v1/scan", &setup.origin(), json!({"call_id": "call-5"}))
        .await;
    assert_eq!(code, 409);
    let log = setup.stop().await;
    assert!(log.contains("scan uploaded"), "{log}");
}
