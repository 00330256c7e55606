//! The whole in-call service with real parts: the `sportello-kiosk-agent` process with a SoftHSM2
//! card (PKCS#11), CUPS with a cups-pdf printer, and an SMTP sink. For each identification method,
//! from `call.request` to a printed PDF on disk whose stamp `sportello verify` accepts; and the
//! failures: a wrong PIN, the printer out of paper (reported, then printed once it is back), the
//! agent killed between printing and acknowledging (no second print), the agent away while a job
//! is pending (delivered when it is back).
//!
//! The agent binary is built by `cargo test --workspace` (kiosk-client has integration tests, so
//! its binaries are built); alone, run `cargo build -p kiosk-client` first.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certificates::registry::demo::DemoRegistry;
use common::centre::{available, call, event, kiosk_token, ok, on_call, Centre, Op, T};
use kiosk_client::{HeadlessKiosk, OperatorBot, Session};
use protocol::incall::*;
use protocol::{Event, Request};
use testkit::cups::PdfPrinter;
use testkit::pki::{CardStyle, CardSubject, TestCa};
use testkit::smtp::SmtpSink;
use testkit::softhsm::Card;
use time::{Duration as Days, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const PIN: &str = "24681357";

fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("sportello-kiosk-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p kiosk-client` (cargo xtask test builds it)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A resident with a registered PEC address.
fn resident() -> certificates::registry::Person {
    let reg = DemoRegistry::embedded().unwrap();
    let today = OffsetDateTime::now_utc().date();
    reg.data()
        .people
        .iter()
        .find(|p| p.death.is_none() && p.residence_on(today).is_some() && p.pec.is_some())
        .unwrap()
        .clone()
}

/// The kiosk agent as a separate process.
struct Agent {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    local: String,
    env: Vec<(String, PathBuf)>,
}

impl Agent {
    fn new(
        dir: &Path,
        server: &str,
        printer: &PdfPrinter,
        card: Option<&Card>,
        scan: &Path,
    ) -> Agent {
        let port = free_port();
        let config = dir.join("agent.toml");
        let mut toml = format!(
            "server = {server:?}\ntoken = {:?}\nprinter = {:?}\nscan_file = {:?}\n\
             journal_dir = {:?}\nlocal_listen = \"127.0.0.1:{port}\"\nscan_delay_s = 30\n\
             pin_timeout_s = 30\n",
            kiosk_token("k1"),
            printer.name(),
            scan,
            dir.join("journal"),
        );
        let mut env = vec![];
        if let Some(card) = card {
            toml.push_str(&format!("pkcs11_module = {:?}\n", card.module()));
            env.push(("SOFTHSM2_CONF".to_owned(), card.conf().to_path_buf()));
        }
        std::fs::write(&config, toml).unwrap();
        Agent {
            child: None,
            config,
            log: dir.join("agent.log"),
            local: format!("http://127.0.0.1:{port}"),
            env,
        }
    }

    fn start(&mut self, fault: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(agent_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match fault {
            Some(f) => cmd.env("SPORTELLO_AGENT_FAULT", f),
            None => cmd.env_remove("SPORTELLO_AGENT_FAULT"),
        };
        self.child = Some(cmd.spawn().unwrap());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself (the fault hook), returning its code.
    async fn exited(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + T * 3;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return status.code();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not exit\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Hands the PIN to the agent as the kiosk screen would (loopback only), retrying until the
    /// agent waits for it.
    async fn pin(&self, call_id: &str, pin: &str) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let r = http
                .post(format!("{}/v1/pin", self.local))
                .json(&serde_json::json!({"call_id": call_id, "pin": pin}))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never took the PIN\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.logs());
        }
    }
}

/// A centre with a real signer (so stamps verify), a trusted card CA, a mail sink, a printer.
struct Rig {
    c: Centre,
    dir: tempfile::TempDir,
    cli_config: PathBuf,
    printer: PdfPrinter,
    sink: SmtpSink,
    ca: TestCa,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (key_pem, cert_pem) = certificates::signer::generate_signer_pem(
        "Ufficiale d'anagrafe (prova)",
        now - Days::days(1),
        now + Days::days(365),
    )
    .unwrap();
    let key = dir.path().join("signer-key.pem");
    let cert = dir.path().join("signer-cert.pem");
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    let ca = TestCa::new("CA di prova CIE");
    let bundle = dir.path().join("cards.pem");
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    let sink = SmtpSink::start().await;
    let port = sink.port();
    let (k2, c2) = (key.clone(), cert.clone());
    let c = Centre::start_memory(&[Op::new("op1", &[("anagrafe", 5)], 2)], &["k1"], |cfg| {
        cfg.certificates.signer.key = Some(k2);
        cfg.certificates.signer.certificate = Some(c2);
        cfg.identity.ca_bundle = Some(bundle);
        cfg.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    let cli_config = dir.path().join("verify.toml");
    std::fs::write(
        &cli_config,
        format!(
            "data_dir = {:?}\n[certificates.signer]\nkey = {key:?}\ncertificate = {cert:?}\n",
            dir.path().join("cli-data")
        ),
    )
    .unwrap();
    Rig {
        c,
        dir,
        cli_config,
        printer: PdfPrinter::create().unwrap(),
        sink,
        ca,
    }
}

impl Rig {
    /// The stamp of a printed PDF verifies with `sportello verify`.
    fn verify(&self, pdf: &Path) -> String {
        let out = Command::new(BIN)
            .arg("verify")
            .arg(pdf)
            .arg("--config")
            .arg(&self.cli_config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("VALIDO / VALID"), "{text}");
        text
    }

    fn scan_file(&self) -> PathBuf {
        // Any real PNG will do as the "scanned" document.
        let path = self.dir.path().join("documento.png");
        let img = image::RgbImage::from_fn(320, 200, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        img.save(&path).unwrap();
        path
    }
}

fn of_call(e: &Event) -> Option<&str> {
    Some(match e {
        Event::IdentityProgress(x) => &x.call_id,
        Event::IdentityVerified(x) => &x.call_id,
        Event::IdentityFailed(x) => &x.call_id,
        Event::PrintUpdate(x) => &x.call_id,
        _ => return None,
    })
}

async fn on(s: &mut Session, kind: &str, call: &str) -> Event {
    event(s, |e| e.kind() == kind && of_call(e) == Some(call)).await
}

/// A call from the kiosk screen, answered by the operator.
async fn answered(c: &Centre, op: &mut OperatorBot) -> (HeadlessKiosk, String) {
    let mut screen = c.kiosk("k1").await;
    let id = screen.request_call("anagrafe", "it", None).await.unwrap();
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(screen.session(), "call.assigned", &id).await;
    (screen, id)
}

fn identify(id: &str, method: IdentityMethod) -> Request {
    Request::IdentityRequest(IdentityRequest {
        call_id: id.into(),
        method,
    })
}

/// Issues a residenza and asks to print it; returns (document id, job id).
async fn issue_and_print(op: &mut OperatorBot, id: &str) -> (String, String) {
    let issued = ok(
        op.session(),
        Request::CertificateIssue(CertificateIssue {
            call_id: id.into(),
            kind: "residenza".into(),
            fiscal_code: None,
            as_of: None,
            usage: Usage::Bollo { bollo: true },
            reason: None,
        }),
    )
    .await;
    let document_id = issued["document_id"].as_str().unwrap().to_owned();
    let job = ok(
        op.session(),
        Request::PrintRequest(PrintRequest {
            call_id: id.into(),
            document_id: document_id.clone(),
            copies: 1,
        }),
    )
    .await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (document_id, job)
}

/// The states the operator sees for a job, up to `printed`.
async fn until_printed(
    op: &mut OperatorBot,
    id: &str,
    job: &str,
) -> Vec<(PrintState, Option<String>)> {
    let mut seen = vec![];
    loop {
        let e = event(
            op.session(),
            |e| matches!(e, Event::PrintUpdate(u) if u.call_id == id && u.job_id == job),
        )
        .await;
        let Event::PrintUpdate(u) = e else {
            unreachable!()
        };
        seen.push((u.state, u.detail.clone()));
        if u.state == PrintState::Printed {
            return seen;
        }
    }
}

/// CIE through PKCS#11: a wrong PIN is reported with the card untouched; the right PIN identifies
/// the citizen; the residenza prints once and its stamp verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cie_card_to_printed_certificate() {
    let r = rig().await;
    let citizen = resident();
    let cf = citizen.fiscal_code.to_string();
    let now = OffsetDateTime::now_utc();
    let card_cert = r.ca.issue_card(
        &CardSubject::new(&cf, &citizen.given_names, &citizen.surname, CardStyle::Cie),
        now - Days::days(10),
        now + Days::days(3650),
    );
    let card = Card::create(
        "CIE-TEST",
        PIN,
        &card_cert.key_pkcs8_der,
        &card_cert.cert_der,
        &[],
    )
    .unwrap();
    let mut agent = Agent::new(
        r.dir.path(),
        &r.c.t.server.base_url(),
        &r.printer,
        Some(&card),
        &r.scan_file(),
    );
    agent.start(None);
    let mut op = r.c.operator("op1").await;
    ok(op.session(), available()).await;
    let (_screen, id) = answered(&r.c, &mut op).await;

    ok(op.session(), identify(&id, IdentityMethod::Cie)).await;
    agent.pin(&id, "11112222").await;
    let Event::IdentityFailed(f) = on(op.session(), "identity.failed", &id).await else {
        unreachable!()
    };
    assert_eq!(f.code.as_deref(), Some("pin_incorrect"), "{f:?}");

    // The step stays open: the citizen types the PIN again.
    agent.pin(&id, PIN).await;
    let Event::IdentityVerified(v) = on(op.session(), "identity.verified", &id).await else {
        unreachable!()
    };
    assert_eq!(
        (v.method, v.subject.fiscal_code.as_str()),
        (IdentityMethod::Cie, cf.as_str())
    );

    let (document_id, job) = issue_and_print(&mut op, &id).await;
    let states = until_printed(&mut op, &id, &job).await;
    assert_eq!(
        states.first().map(|s| s.0),
        Some(PrintState::Received),
        "{states:?}"
    );
    let pdfs = r.printer.wait_printed_async(1, T * 3).await.unwrap();
    assert_eq!(pdfs.len(), 1);
    let verified = r.verify(&pdfs[0]);
    assert!(verified.contains(&document_id), "{verified}");
    assert!(verified.contains(&cf), "{verified}");
}

/// PEC and paper document, each to a printed certificate; then the printer runs out of paper
/// (reported, printed when refilled), the agent dies between printing and acknowledging (no second
/// print), and the agent is away while a job is made (delivered when it is back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pec_and_document_then_printer_failures() {
    let r = rig().await;
    let citizen = resident();
    let cf = citizen.fiscal_code.to_string();
    let mut agent = Agent::new(
        r.dir.path(),
        &r.c.t.server.base_url(),
        &r.printer,
        None,
        &r.scan_file(),
    );
    agent.start(None);
    let mut op = r.c.operator("op1").await;
    ok(op.session(), available()).await;

    // PEC: the screen types the fiscal code, the code arrives in the registered mailbox.
    let (mut screen, id) = answered(&r.c, &mut op).await;
    ok(op.session(), identify(&id, IdentityMethod::Pec)).await;
    ok(
        screen.session(),
        Request::IdentityPecStart(IdentityPecStart {
            call_id: id.clone(),
            fiscal_code: cf.clone(),
        }),
    )
    .await;
    let mail = r
        .sink
        .wait_for_mail(citizen.pec.as_deref().unwrap(), T)
        .await
        .unwrap();
    let body = mail.body_text();
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    ok(
        screen.session(),
        Request::IdentityPecCode(IdentityPecCode {
            call_id: id.clone(),
            code,
        }),
    )
    .await;
    on(op.session(), "identity.verified", &id).await;
    let (_, job) = issue_and_print(&mut op, &id).await;
    until_printed(&mut op, &id, &job).await;
    let pdfs = r.printer.wait_printed_async(1, T * 3).await.unwrap();
    r.verify(&pdfs[0]);
    ok(op.session(), Request::CallEnd(call(&id))).await;
    ok(op.session(), Request::WrapupDone(call(&id))).await;
    drop(screen);

    // Paper document: the agent uploads the scan when the screen says the document is in place.
    let (_screen, id) = answered(&r.c, &mut op).await;
    ok(op.session(), identify(&id, IdentityMethod::Document)).await;
    let http = reqwest::Client::new();
    let scanned = http
        .post(format!("{}/v1/scan", agent.local))
        .json(&serde_json::json!({"call_id": id}))
        .send()
        .await
        .unwrap();
    assert!(scanned.status().is_success(), "{}", agent.logs());
    let scan_url = loop {
        let Event::IdentityProgress(p) = on(op.session(), "identity.progress", &id).await else {
            unreachable!()
        };
        if p.step == "scan_received" {
            break p.scan_url.unwrap();
        }
    };
    let image = http
        .get(r.c.t.url(&scan_url))
        .bearer_auth(r.c.token(protocol::Role::Operator, "op1"))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    assert!(image.bytes().await.unwrap().starts_with(b"\x89PNG"));
    ok(
        op.session(),
        Request::IdentityConfirm(IdentityConfirm {
            call_id: id.clone(),
            fiscal_code: cf.clone(),
            document_type: "carta_identita".into(),
            document_number: "CA12345AB".into(),
        }),
    )
    .await;
    on(op.session(), "identity.verified", &id).await;
    let (_, job) = issue_and_print(&mut op, &id).await;
    until_printed(&mut op, &id, &job).await;
    assert_eq!(
        r.printer.wait_printed_async(2, T * 3).await.unwrap().len(),
        2
    );

    // Out of paper: reported with the printer's reason, printed once the paper is back.
    r.printer.stop("media-empty").unwrap();
    let (document_id, job) = issue_and_print(&mut op, &id).await;
    let failed = event(
        op.session(),
        |e| matches!(e, Event::PrintUpdate(u) if u.job_id == job && u.state == PrintState::Failed),
    )
    .await;
    let Event::PrintUpdate(failed) = failed else {
        unreachable!()
    };
    assert!(
        failed
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("media-empty"),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        r.printer.printed().len(),
        2,
        "nothing printed while out of paper"
    );
    r.printer.start().unwrap();
    until_printed(&mut op, &id, &job).await;
    let pdfs = r.printer.wait_printed_async(3, T * 3).await.unwrap();
    assert_eq!(pdfs.len(), 3);

    // The agent dies after CUPS printed the job and before it said so: the restarted agent
    // reports it printed and does not print it again.
    agent.kill();
    agent.start(Some("exit_after_print"));
    let job = ok(
        op.session(),
        Request::PrintRequest(PrintRequest {
            call_id: id.clone(),
            document_id: document_id.clone(),
            copies: 1,
        }),
    )
    .await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        agent.exited().await,
        Some(0),
        "the fault hook exits abnormally"
    );
    assert_eq!(
        r.printer.wait_printed_async(4, T * 3).await.unwrap().len(),
        4
    );
    agent.start(None);
    until_printed(&mut op, &id, &job).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        r.printer.printed().len(),
        4,
        "printed once only\n{}",
        agent.logs()
    );

    // The agent is away while the job is made: the job waits and is delivered when it is back.
    agent.kill();
    let job = ok(
        op.session(),
        Request::PrintRequest(PrintRequest {
            call_id: id.clone(),
            document_id,
            copies: 1,
        }),
    )
    .await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(r.printer.printed().len(), 4);
    agent.start(None);
    until_printed(&mut op, &id, &job).await;
    assert_eq!(
        r.printer.wait_printed_async(5, T * 3).await.unwrap().len(),
        5
    );
}
