//! The whole in-call service with real parts: the `sportello-kiosk-agent` process with a SoftHSM2
//! card (PKCS#11), a private CUPS with a PDF printer, and an SMTP sink. For each identification method,
//! from `call.request` to a printed PDF on disk whose stamp `sportello verify` accepts; and the
//! failures: a wrong PIN, the printer out of paper (reported, then printed once it is back), the
//! agent killed between printing and acknowledging (no second print), the agent away while a job
//! is pending (delivered when it is back).
//!
//! The agent binary is built by `cargo test --workspace` (kiosk-client has integration tests, so
//! its binaries are built); alone, run `cargo build -p kiosk-client` first.

#[path = "common/agent.rs"]
mod agent;
mod common;

use std::time::Duration;

use agent::{pec_code_in, resident, scan_image, Agent, RealSigner};
use common::centre::{available, call, event, kiosk_token, ok, on_call, Centre, Op, T};
use kiosk_client::{HeadlessKiosk, OperatorBot};
use protocol::incall::*;
use protocol::{Event, Request};
use testkit::cups::PdfPrinter;
use testkit::pki::{CardStyle, CardSubject, TestCa};
use testkit::smtp::SmtpSink;
use testkit::softhsm::Card;
use time::{Duration as Days, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const PIN: &str = "24681357";

/// A centre with a real signer (so stamps verify), a trusted card CA, a mail sink, a printer.
struct Rig {
    c: Centre,
    dir: tempfile::TempDir,
    signer: RealSigner,
    printer: PdfPrinter,
    sink: SmtpSink,
    ca: TestCa,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let signer = RealSigner::create(dir.path());
    let ca = TestCa::new("CA di prova CIE");
    let bundle = dir.path().join("cards.pem");
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    let sink = SmtpSink::start().await;
    let port = sink.port();
    let (key, cert) = (signer.key.clone(), signer.cert.clone());
    let c = Centre::start_memory(&[Op::new("op1", &[("anagrafe", 5)], 2)], &["k1"], |cfg| {
        cfg.certificates.signer.key = Some(key);
        cfg.certificates.signer.certificate = Some(cert);
        cfg.identity.ca_bundle = Some(bundle);
        cfg.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    Rig {
        c,
        dir,
        signer,
        printer: PdfPrinter::create().unwrap(),
        sink,
        ca,
    }
}

impl Rig {
    fn verify(&self, pdf: &std::path::Path) -> String {
        self.signer.verify(BIN, pdf)
    }

    fn agent(&self, card: Option<&Card>) -> Agent {
        Agent::new(
            self.dir.path(),
            &self.c.t.server.base_url(),
            &kiosk_token("k1"),
            &self.printer,
            card,
            &scan_image(self.dir.path()),
        )
    }
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
            marca: None,
            parts: vec![],
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
    let mut agent = r.agent(Some(&card));
    agent.start(None);
    agent.connected().await;
    let mut op = r.c.operator("op1").await;
    ok(op.session(), available()).await;
    let (_screen, id) = answered(&r.c, &mut op).await;

    ok(op.session(), identify(&id, IdentityMethod::Cie)).await;
    agent.pin(&id, "11112222").await;
    let Event::IdentityFailed(f) = on_call(op.session(), "identity.failed", &id).await else {
        unreachable!()
    };
    assert_eq!(f.code.as_deref(), Some("pin_incorrect"), "{f:?}");

    // The step stays open: the citizen types the PIN again.
    agent.pin(&id, PIN).await;
    let Event::IdentityVerified(v) = on_call(op.session(), "identity.verified", &id).await else {
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
    let mut agent = r.agent(None);
    agent.start(None);
    agent.connected().await;
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
    let code = pec_code_in(&mail.body_text());
    ok(
        screen.session(),
        Request::IdentityPecCode(IdentityPecCode {
            call_id: id.clone(),
            code,
        }),
    )
    .await;
    on_call(op.session(), "identity.verified", &id).await;
    let (_, job) = issue_and_print(&mut op, &id).await;
    until_printed(&mut op, &id, &job).await;
    let pdfs = r.printer.wait_printed_async(1, T * 3).await.unwrap();
    r.verify(&pdfs[0]);
    ok(op.session(), Request::CallEnd(call(&id))).await;
    ok(op.session(), common::centre::wrapup(&id)).await;
    drop(screen);

    // Paper document: the agent uploads the scan when the screen says the document is in place.
    let (_screen, id) = answered(&r.c, &mut op).await;
    ok(op.session(), identify(&id, IdentityMethod::Document)).await;
    let http = reqwest::Client::new();
    // The request reaches the agent through the server a moment after the operator's `ok`: until
    // then the agent answers 409 (no scan asked for this call).
    let deadline = std::time::Instant::now() + T;
    loop {
        let scanned = http
            .post(format!("{}/v1/scan", agent.local))
            .json(&serde_json::json!({"call_id": id}))
            .send()
            .await
            .unwrap();
        if scanned.status().is_success() {
            break;
        }
        assert!(
            scanned.status() == 409 && std::time::Instant::now() < deadline,
            "{}: {}",
            scanned.status(),
            agent.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let scan_url = loop {
        let Event::IdentityProgress(p) = on_call(op.session(), "identity.progress", &id).await
        else {
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
    on_call(op.session(), "identity.verified", &id).await;
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
    agent.connected().await;
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
    agent.connected().await;
    until_printed(&mut op, &id, &job).await;
    assert_eq!(
        r.printer.wait_printed_async(5, T * 3).await.unwrap().len(),
        5
    );
}
