//! Real parts and a scripted server for the kiosk agent's tests: a PDF queue on a private cupsd
//! with its own output folder, a SoftHSM2 card with a test CA, a minimal PDF, a scripted
//! server (WebSocket, documents, scans) and the agent binary as a child process (`testkit::agent`).
//!
//! Every part is real except the server: the agent's own tests need to script exactly what the
//! server sends (a `print.job` again, a connection cut); the end-to-end tests with the real server
//! live in `signalling/tests/`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

pub use testkit::agent::AgentProcess;

/// The SoftHSM2 PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The test card's PIN.
pub const PIN: &str = "12345678";

/// The test card's SO PIN.
pub const SO_PIN: &str = "87654321";

/// Runs a tool and returns its standard output; panics with its output when it fails.
pub fn run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); is it installed?"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The test process's private `cupsd` (`testkit::cups`), never the system's.
pub fn cupsd() -> Arc<testkit::cups::Cupsd> {
    testkit::cups::Cupsd::shared().expect("a private cupsd")
}

/// A PDF queue of its own on the private `cupsd`, printing into its own folder
/// (`testkit::cups::PdfPrinter`), with the panicking API these tests use. Removed when dropped.
pub struct TestPrinter(testkit::cups::PdfPrinter);

impl TestPrinter {
    /// Creates and enables the queue on the shared private daemon.
    pub fn create() -> TestPrinter {
        TestPrinter(testkit::cups::PdfPrinter::create().expect("a PDF queue"))
    }

    /// Creates and enables the queue on `cupsd`.
    pub fn create_on(cupsd: &Arc<testkit::cups::Cupsd>) -> TestPrinter {
        TestPrinter(testkit::cups::PdfPrinter::create_on(cupsd).expect("a PDF queue"))
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The scheduler (the private daemon's socket), for the agent's `cups_server`.
    pub fn server(&self) -> String {
        self.0.server().display().to_string()
    }

    /// The agent's view of this queue.
    pub fn cups(&self) -> kiosk_client::agent::cups::Cups {
        kiosk_client::agent::cups::Cups::new(self.name(), Some(&self.server()))
    }

    /// The testkit printer itself.
    pub fn inner(&self) -> &testkit::cups::PdfPrinter {
        &self.0
    }

    /// Runs a CUPS tool against the printer's daemon; panics when it fails.
    pub fn tool(&self, tool: &str, args: &[&str]) -> String {
        self.0
            .cupsd()
            .tool(tool, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The complete PDFs the queue printed.
    pub fn printed(&self) -> Vec<PathBuf> {
        self.0.printed()
    }

    /// Waits until at least `count` PDFs are written; returns them.
    pub async fn wait_printed(&self, count: usize, timeout: Duration) -> Vec<PathBuf> {
        self.0
            .wait_printed_async(count, timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `cupsdisable -r <reason>`: the queue stops (jobs wait) with that state message.
    pub fn stop(&self, reason: &str) {
        self.0.stop(reason).expect("cupsdisable");
    }

    /// `cupsenable`.
    pub fn start(&self) {
        self.0.start().expect("cupsenable");
    }
}

/// A small valid one-page PDF.
pub fn minimal_pdf() -> Vec<u8> {
    let content = "BT /F1 24 Tf 72 720 Td (Sportello kiosk agent test) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// The key of a test card.
pub enum CardKey {
    /// P-256, generated by rcgen.
    P256,
    /// RSA 2048, generated by `openssl genpkey`.
    Rsa,
}

/// A SoftHSM2 token in its own token folder, holding a card key and certificate (id 01, label
/// `auth`) issued by a test CA whose certificate is also on the token (id 02, label `ca`). Point
/// `SOFTHSM2_CONF` at [`SoftCard::conf`].
pub struct SoftCard {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// The card certificate (DER).
    pub card_der: Vec<u8>,
    /// The CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// The card's private key (PKCS#8 PEM), to check signatures.
    pub key_pem: String,
}

impl SoftCard {
    /// A token folder with no token at all: the reader is empty.
    pub fn empty() -> SoftCard {
        let dir = tempfile::Builder::new()
            .prefix("agent-test-hsm-")
            .tempdir()
            .unwrap();
        let conf = write_softhsm_conf(dir.path());
        SoftCard {
            dir,
            conf,
            card_der: Vec::new(),
            ca_der: Vec::new(),
            key_pem: String::new(),
        }
    }

    /// A token labelled `label` with a CIE-like card certificate.
    pub fn create(label: &str, key: CardKey) -> SoftCard {
        let mut card = SoftCard::empty();
        let dir = card.dir.path().to_owned();
        let env = [("SOFTHSM2_CONF", card.conf.as_path())];
        run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ],
            &env,
        );

        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Agent test card CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();

        let card_key = match key {
            CardKey::P256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            CardKey::Rsa => {
                let path = dir.join("rsa.pem");
                run(
                    "openssl",
                    &[
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                        "-out",
                        path.to_str().unwrap(),
                    ],
                    &[],
                );
                let pem = std::fs::read_to_string(&path).unwrap();
                rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
            }
        };
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ROSSI MARIO");
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            "TINIT-RSSMRA80A01G337X",
        );
        let card_cert = params.signed_by(&card_key, &ca_cert, &ca_key).unwrap();

        let key_path = dir.join("card.p8");
        std::fs::write(&key_path, card_key.serialize_pem()).unwrap();
        let card_path = dir.join("card.der");
        std::fs::write(&card_path, card_cert.der()).unwrap();
        let ca_path = dir.join("ca.der");
        std::fs::write(&ca_path, ca_cert.der()).unwrap();
        run(
            "softhsm2-util",
            &[
                "--import",
                key_path.to_str().unwrap(),
                "--token",
                label,
                "--label",
                "auth",
                "--id",
                "01",
                "--pin",
                PIN,
            ],
            &env,
        );
        for (path, id, object_label) in [(&card_path, "01", "auth"), (&ca_path, "02", "ca")] {
            run(
                "pkcs11-tool",
                &[
                    "--module",
                    SOFTHSM_MODULE,
                    "--token-label",
                    label,
                    "-l",
                    "-p",
                    PIN,
                    "-w",
                    path.to_str().unwrap(),
                    "--type",
                    "cert",
                    "--id",
                    id,
                    "--label",
                    object_label,
                ],
                &env,
            );
        }
        card.card_der = card_cert.der().to_vec();
        card.ca_der = ca_cert.der().to_vec();
        card.key_pem = card_key.serialize_pem();
        card
    }

    /// The `SOFTHSM2_CONF` file.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// A scratch folder that lives as long as the card.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write_softhsm_conf(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// What the scripted server shares between its handlers and the test.
struct FakeState {
    token: String,
    to_kiosk: broadcast::Sender<String>,
    frames: Mutex<Vec<Value>>,
    auths: Mutex<Vec<Value>>,
    pdfs: Mutex<HashMap<String, Vec<u8>>>,
    scans: Mutex<Vec<(String, String, Vec<u8>)>>,
    open: AtomicUsize,
    /// `print.status` requests still to refuse with `rate_limited`.
    refuse_statuses: AtomicUsize,
}

/// A scripted Sportello server: accepts the agent's `auth`, answers `ok` to every request and
/// records it, sends the events a test asks for, serves registered PDFs and accepts scans.
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    /// How many recorded frames the test already took.
    taken: Mutex<Vec<bool>>,
}

impl FakeServer {
    /// Starts the server; the agent must authenticate with `token`.
    pub async fn start(token: &str) -> FakeServer {
        let state = Arc::new(FakeState {
            token: token.to_owned(),
            to_kiosk: broadcast::channel(64).0,
            frames: Mutex::new(Vec::new()),
            auths: Mutex::new(Vec::new()),
            pdfs: Mutex::new(HashMap::new()),
            scans: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            refuse_statuses: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/api/v1/ws", get(ws_endpoint))
            .route("/api/v1/documents/{file}", get(document))
            .route("/api/v1/calls/{call_id}/scans", post(scan))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeServer {
            addr,
            state,
            taken: Mutex::new(Vec::new()),
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `pdf` at `/api/v1/documents/{document_id}.pdf`.
    pub fn add_pdf(&self, document_id: &str, pdf: Vec<u8>) {
        self.state
            .pdfs
            .lock()
            .unwrap()
            .insert(format!("{document_id}.pdf"), pdf);
    }

    /// Refuses the next `count` `print.status` requests with `rate_limited`.
    pub fn refuse_statuses(&self, count: usize) {
        self.state.refuse_statuses.store(count, Ordering::SeqCst);
    }

    /// The `auth` frames received so far.
    pub fn auths(&self) -> Vec<Value> {
        self.state.auths.lock().unwrap().clone()
    }

    /// The scans uploaded so far: (call id, content type, body).
    pub fn scans(&self) -> Vec<(String, String, Vec<u8>)> {
        self.state.scans.lock().unwrap().clone()
    }

    /// Waits until `count` `auth` frames were accepted (connections and reconnections).
    pub async fn wait_auths(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let auths = self.auths();
            if auths.len() >= count {
                return auths;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} connections in {timeout:?}",
                auths.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an agent connection is open.
    pub async fn wait_connected(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.state.open.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the agent did not connect in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends an event to every open connection.
    pub fn send(&self, event: Value) {
        let _ = self.state.to_kiosk.send(event.to_string());
    }

    /// Closes every open connection without a close frame (a network cut).
    pub fn cut(&self) {
        let _ = self.state.to_kiosk.send("__cut__".into());
    }

    /// The first recorded request not yet taken for which `pred` holds, waiting up to `timeout`.
    pub async fn take(&self, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let frames = self.state.frames.lock().unwrap();
                let mut taken = self.taken.lock().unwrap();
                taken.resize(frames.len(), false);
                for (i, frame) in frames.iter().enumerate() {
                    if !taken[i] && pred(frame) {
                        taken[i] = true;
                        return frame.clone();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no matching request in {timeout:?}; received: {:#?}",
                self.frames()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every request received so far, in order.
    pub fn frames(&self) -> Vec<Value> {
        self.state.frames.lock().unwrap().clone()
    }

    /// The `print.status` states received for `job_id`, in order (with details).
    pub fn print_statuses(&self, job_id: &str) -> Vec<(String, Option<String>)> {
        self.frames()
            .iter()
            .filter(|f| f["type"] == "print.status" && f["job_id"] == job_id)
            .map(|f| {
                (
                    f["state"].as_str().unwrap_or_default().to_owned(),
                    f["detail"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// Waits for a `print.status` of `job_id` in `state`.
    pub async fn wait_status(&self, job_id: &str, state: &str, timeout: Duration) -> Value {
        self.take(timeout, |f| {
            f["type"] == "print.status" && f["job_id"] == job_id && f["state"] == state
        })
        .await
    }
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {token}"))
}

async fn ws_endpoint(State(state): State<Arc<FakeState>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(socket, state))
}

async fn serve_socket(mut socket: WebSocket, state: Arc<FakeState>) {
    let Some(Ok(Message::Text(text))) = socket.recv().await else {
        return;
    };
    let auth: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if auth["type"] != "auth" || auth["token"] != state.token.as_str() {
        let _ = socket
            .send(Message::Text(
                json!({"type":"error","id":auth["id"],"code":"unauthorized","message":"bad token"})
                    .to_string()
                    .into(),
            ))
            .await;
        return;
    }
    state.auths.lock().unwrap().push(auth.clone());
    let reply = json!({
        "type": "ok", "id": auth["id"], "session_id": "session-1", "role": "kiosk",
        "principal_id": "kiosk-test", "heartbeat_s": 30, "resumed": auth["resume"].is_string(),
    });
    if socket
        .send(Message::Text(reply.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut events = state.to_kiosk.subscribe();
    state.open.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    state.frames.lock().unwrap().push(frame.clone());
                    let refuse = frame["type"] == "print.status"
                        && state
                            .refuse_statuses
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    let reply = if refuse {
                        json!({"type": "error", "id": frame["id"], "code": "rate_limited", "message": "slow down"})
                    } else {
                        json!({"type": "ok", "id": frame["id"]})
                    };
                    if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            event = events.recv() => match event {
                Ok(text) if text == "__cut__" => break,
                Ok(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            },
        }
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
}

async fn document(
    State(state): State<Arc<FakeState>>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !bearer_ok(&headers, &state.token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match state.pdfs.lock().unwrap().get(&file) {
        Some(pdf) => ([("content-type", "application/pdf")], pdf.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn scan(
    State(state): State<Arc<FakeState>>,
    UrlPath(call_id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !bearer_ok(&headers, &state.token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut scans = state.scans.lock().unwrap();
    scans.push((call_id, content_type, body.to_vec()));
    let scan_id = format!("scan-{}", scans.len());
    (StatusCode::CREATED, Json(json!({ "scan_id": scan_id }))).into_response()
}

/// The agent binary of this build as a child process ([`testkit::agent::AgentProcess`]):
/// `sportello-kiosk-agent --config <config>` with extra environment variables and the agent's own
/// debug lines in `log`.
pub fn spawn_agent(config: &Path, env: &[(&str, &str)], log: &Path) -> AgentProcess {
    let mut agent = AgentProcess::new(env!("CARGO_BIN_EXE_sportello-kiosk-agent"), config, log)
        .env("RUST_LOG", "info,kiosk_client=debug");
    agent.start(env).expect("the agent binary starts");
    agent
}

/// Writes an agent configuration for `server` with the extra TOML lines `extra` into `dir`.
pub fn write_config(dir: &Path, server: &str, token: &str, extra: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!("server = \"{server}\"\ntoken = \"{token}\"\n{extra}\n"),
    )
    .unwrap();
    path
}
