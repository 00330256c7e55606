//! The in-call service across two `sportello` processes on one Redis: the operator is on node A,
//! the kiosk's screen and its agent (the real `sportello-kiosk-agent` process, with a SoftHSM2
//! card and a PDF printer on testkit's private CUPS) on node B. A CIE card identifies the citizen
//! (the nonce made on A is spent on B), a scanned document uploaded to B is seen and judged on A,
//! a residenza issued on A prints on B's agent, and `sportello verify` accepts the printed PDF.
//! Then the print jobs move with the agent: an agent that dies after printing and before
//! reporting, restarted against node A, reports the job printed without printing it again; a job
//! made on A while the agent is away is delivered by node B when the agent comes back there, and
//! prints once.
//!
//! The agent binary is built by `cargo test --workspace`; alone, run `cargo build -p kiosk-client`
//! first.

#[path = "common/agent.rs"]
mod agent;
mod common;

use std::path::Path;
use std::time::Duration;

use agent::{resident, scan_image, Agent, RealSigner};
use common::centre::{available, call, event, ok, on_call, T};
use kiosk_client::{HeadlessKiosk, OperatorBot, Policy};
use protocol::incall::*;
use protocol::{Event, Request};
use testkit::cups::PdfPrinter;
use testkit::pki::{CardStyle, CardSubject, TestCa};
use testkit::softhsm::Card;
use testkit::SportelloProcess;
use time::{Duration as Days, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const PIN: &str = "24681357";

/// A node on the shared data directory and Redis, with the real signer and the card CA (in a
/// configuration file: the environment does not reach the `identity` table).
fn node(data: &Path, redis: &str, signer: &RealSigner, bundle: &Path) -> SportelloProcess {
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[certificates.signer]\nkey = {:?}\ncertificate = {:?}\n[identity]\nca_bundle = {:?}\n",
            signer.key, signer.cert, bundle
        ),
    )
    .unwrap();
    SportelloProcess::start(
        BIN,
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--redis".as_ref(),
            redis.as_ref(),
        ],
        &[],
    )
}

/// The states the operator sees for a job, up to `printed`.
async fn until_printed(op: &mut OperatorBot, id: &str, job: &str) -> Vec<PrintState> {
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
        seen.push(u.state);
        if u.state == PrintState::Printed {
            return seen;
        }
    }
}

fn print(id: &str, document_id: &str) -> Request {
    Request::PrintRequest(PrintRequest {
        call_id: id.into(),
        document_id: document_id.into(),
        copies: 1,
    })
}

async fn job_of(op: &mut OperatorBot, id: &str, document_id: &str) -> String {
    ok(op.session(), print(id, document_id)).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_identify_issue_print_across_nodes_and_the_agent_moving_node() {
    let redis = testkit::RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let signer = RealSigner::create(dir.path());
    let ca = TestCa::new("CA di prova CIE");
    let bundle = dir.path().join("cards.pem");
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    let a = node(&data, &redis.url(), &signer, &bundle);
    let b = node(&data, &redis.url(), &signer, &bundle);
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("demo-credentials.json")).unwrap())
            .unwrap();
    let kiosk_token = creds["kiosks"][0]["token"].as_str().unwrap().to_owned();
    let (user, password) = (
        creds["operators"][0]["username"].as_str().unwrap(),
        creds["operators"][0]["password"].as_str().unwrap(),
    );

    // The citizen's CIE, on a SoftHSM2 token.
    let citizen = resident();
    let cf = citizen.fiscal_code.to_string();
    let now = OffsetDateTime::now_utc();
    let card_cert = ca.issue_card(
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
    let printer = PdfPrinter::create().unwrap();
    let scan = scan_image(dir.path());
    let agent_on = |server: &SportelloProcess| {
        Agent::new(
            &agent_dir,
            &server.base,
            &kiosk_token,
            &printer,
            Some(&card),
            &scan,
        )
    };

    // The agent and the screen on B, the operator on A.
    let mut agent = agent_on(&b);
    agent.start(None);
    agent.connected().await;
    let token = OperatorBot::login(&a.base, user, password).await.unwrap();
    let mut op = OperatorBot::connect(&a.ws_url(), &token, Policy::Manual)
        .await
        .unwrap();
    ok(op.session(), available()).await;
    let mut screen = HeadlessKiosk::connect(&b.ws_url(), &kiosk_token, vec![])
        .await
        .unwrap();
    let id = screen.request_call("anagrafe", "it", None).await.unwrap();
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(screen.session(), "call.assigned", &id).await;

    // CIE: the nonce is made on A and signed by the card on B.
    ok(
        op.session(),
        Request::IdentityRequest(IdentityRequest {
            call_id: id.clone(),
            method: IdentityMethod::Cie,
        }),
    )
    .await;
    agent.pin(&id, PIN).await;
    let Event::IdentityVerified(v) = on_call(op.session(), "identity.verified", &id).await else {
        unreachable!()
    };
    assert_eq!(
        (v.method, v.subject.fiscal_code.as_str()),
        (IdentityMethod::Cie, cf.as_str())
    );
    on_call(screen.session(), "identity.verified", &id).await;

    // A paper document: scanned and uploaded on B, fetched and confirmed on A.
    ok(
        op.session(),
        Request::IdentityRequest(IdentityRequest {
            call_id: id.clone(),
            method: IdentityMethod::Document,
        }),
    )
    .await;
    let http = reqwest::Client::new();
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        .get(format!("{}{scan_url}", a.base))
        .bearer_auth(&token)
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

    // Issued on A, printed by the agent on B; the operator on A follows the job to `printed`.
    let issued = ok(
        op.session(),
        Request::CertificateIssue(CertificateIssue {
            call_id: id.clone(),
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
    on_call(screen.session(), "certificate.issued", &id).await;
    let job = job_of(&mut op, &id, &document_id).await;
    let states = until_printed(&mut op, &id, &job).await;
    assert_eq!(states.first(), Some(&PrintState::Received), "{states:?}");
    let pdfs = printer.wait_printed_async(1, T * 3).await.unwrap();
    assert_eq!(pdfs.len(), 1);
    let verified = signer.verify(BIN, &pdfs[0]);
    assert!(verified.contains(&document_id), "{verified}");
    assert!(verified.contains(&cf), "{verified}");

    // The agent on B dies after CUPS printed a job and before it said so; it comes back on A,
    // reports the job printed from its journal, and does not print it again.
    agent.kill();
    drop(agent);
    let mut agent = agent_on(&b);
    agent.start(Some("exit_after_print"));
    agent.connected().await;
    let job = job_of(&mut op, &id, &document_id).await;
    assert_ne!(agent.exited().await, Some(0), "the fault hook exits");
    assert_eq!(printer.wait_printed_async(2, T * 3).await.unwrap().len(), 2);
    drop(agent);
    let mut agent = agent_on(&a);
    agent.start(None);
    agent.connected().await;
    until_printed(&mut op, &id, &job).await;

    // A job made on A while the agent is away: the agent comes back on B, which sends it the
    // pending job from the shared records, and it prints once.
    agent.kill();
    drop(agent);
    let job = job_of(&mut op, &id, &document_id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        printer.printed().len(),
        2,
        "nobody prints while the agent is away"
    );
    let mut agent = agent_on(&b);
    agent.start(None);
    agent.connected().await;
    until_printed(&mut op, &id, &job).await;
    assert_eq!(printer.wait_printed_async(3, T * 3).await.unwrap().len(), 3);

    // Re-sendings by both nodes (every 5 s) never print a job again.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        printer.printed().len(),
        3,
        "each job printed once\n{}",
        agent.logs()
    );
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(screen.session(), "call.ended", &id).await;
    drop(agent);
}
