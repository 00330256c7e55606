//! The in-call actions over the wire, with a real SMTP sink and a test card CA: identification by
//! PEC code, by card (the test signs the nonce as a card would), by scanned document; the refusals
//! (wrong or expired code, too many attempts, rate limits, untrusted or expired card, a certificate
//! before identification, someone else's call or job); `certificate.issue` and the document
//! download, sealed PAdES B-T with a real timestamp authority (`unavailable` once it is down); print jobs re-sent until acknowledged, never reported backwards; scans deleted at call
//! end. The real kiosk agent with CUPS and SoftHSM2 is driven in `incall_devices.rs`.

#[path = "common/agent.rs"]
mod agent;
mod common;

use std::time::Duration;

use agent::{pec_code_in, residents};
use base64::Engine as _;
use common::centre::{available, call, ok, on_call, refused, request_call, Centre, Op, T};
use kiosk_client::{HeadlessKiosk, OperatorBot, Session};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use protocol::incall::*;
use protocol::{Capability, ErrorCode, Event, Request, Role};
use serde_json::Value;
use testkit::images::{jpeg_truncated, png_1x1 as png, png_header_only};
use testkit::pki::{CardStyle, CardSubject, TestCa};
use testkit::smtp::SmtpSink;
use time::{Duration as Days, OffsetDateTime};

const ANAGRAFE: &[(&str, u8)] = &[("anagrafe", 5)];

struct Scene {
    c: Centre,
    op: OperatorBot,
    k: HeadlessKiosk,
    id: String,
    _dir: tempfile::TempDir,
    ca: TestCa,
}

/// A centre with a mail sink and a trusted card CA, and one call in conversation.
async fn scene(sink: &SmtpSink, edit: impl FnOnce(&mut signalling::config::Config)) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("CA di prova CIE");
    let bundle = dir.path().join("cards.pem");
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    let port = sink.port();
    let c = Centre::start_memory(&[Op::new("op1", ANAGRAFE, 2)], &["k1", "k2"], |cfg| {
        cfg.identity.ca_bundle = Some(bundle);
        cfg.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        cfg.mail.from = "Comune di Parma <sportello@comune.parma.it>".into();
        edit(cfg);
    })
    .await;
    let mut op = c.operator("op1").await;
    ok(op.session(), available()).await;
    let mut k = c.kiosk("k1").await;
    let id = request_call(&mut k, "anagrafe").await;
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;
    Scene {
        c,
        op,
        k,
        id,
        _dir: dir,
        ca,
    }
}

fn identity_request(id: &str, method: IdentityMethod) -> Request {
    Request::IdentityRequest(IdentityRequest {
        call_id: id.into(),
        method,
    })
}

fn issue(id: &str, kind: &str) -> Request {
    Request::CertificateIssue(CertificateIssue {
        call_id: id.into(),
        kind: kind.into(),
        fiscal_code: None,
        as_of: None,
        usage: Usage::Bollo { bollo: true },
        reason: None,
        marca: None,
        parts: vec![],
    })
}

/// The six digits of the latest mail to `to`.
async fn code_for(sink: &SmtpSink, to: &str, nth: usize) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mails: Vec<_> = sink
            .messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.contains(to)))
            .collect();
        if mails.len() > nth {
            let code = pec_code_in(&mails[nth].body_text());
            return code;
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail for {to}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pec_code(id: &str, code: &str) -> Request {
    Request::IdentityPecCode(IdentityPecCode {
        call_id: id.into(),
        code: code.into(),
    })
}

fn failed(e: Event) -> IdentityFailed {
    match e {
        Event::IdentityFailed(f) => f,
        other => panic!("expected identity.failed, got {other:?}"),
    }
}

/// PEC: the code goes to the registered address (never one the kiosk types), a wrong code counts
/// down, the third wrong one spends it; a new code after the resend interval verifies; the
/// certificate is issued, downloadable by its operator only, and the audit log holds every attempt.
#[tokio::test]
async fn pec_identification_then_certificate() {
    let sink = SmtpSink::start().await;
    let (citizen, no_pec) = residents();
    let address = citizen.pec.clone().unwrap();
    let cf = citizen.fiscal_code.to_string();
    let mut s = scene(&sink, |cfg| cfg.identity.pec_resend_s = 1).await;
    let id = s.id.clone();

    // Nothing before identification.
    assert_eq!(
        refused(s.op.session().request(&issue(&id, "residenza")).await),
        ErrorCode::Conflict
    );
    // Steps out of order, and the wrong roles.
    let start = |cf: &str| {
        Request::IdentityPecStart(IdentityPecStart {
            call_id: id.clone(),
            fiscal_code: cf.into(),
        })
    };
    assert_eq!(
        refused(s.k.session().request(&start(&cf)).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        refused(
            s.k.session()
                .request(&identity_request(&id, IdentityMethod::Pec))
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(s.op.session().request(&start(&cf)).await),
        ErrorCode::Forbidden
    );

    ok(s.op.session(), identity_request(&id, IdentityMethod::Pec)).await;
    let Event::IdentityProgress(p) = on_call(s.k.session(), "identity.progress", &id).await else {
        unreachable!()
    };
    assert_eq!(
        (p.method, p.step.as_str()),
        (IdentityMethod::Pec, "requested")
    );

    // Someone without a registered PEC address cannot use the method.
    assert_eq!(
        refused(
            s.k.session()
                .request(&start(&no_pec.fiscal_code.to_string()))
                .await
        ),
        ErrorCode::Conflict
    );
    let f = failed(on_call(s.op.session(), "identity.failed", &id).await);
    assert_eq!(f.code.as_deref(), Some("no_pec"));
    assert_eq!(
        refused(s.k.session().request(&start("RSSMRA80A01H501X")).await),
        ErrorCode::Invalid,
        "a malformed fiscal code"
    );

    s.k.session().drain_events();
    let sent = ok(s.k.session(), start(&cf)).await;
    assert_eq!(sent["expires_in_s"], 300);
    assert!(sent["sent_to"].as_str().unwrap().contains("***@"), "{sent}");
    let code = code_for(&sink, &address, 0).await;
    let mail = &sink.messages()[0];
    assert!(
        mail.body_text().contains("5 minuti"),
        "{}",
        mail.body_text()
    );
    let Event::IdentityProgress(p) = on_call(s.op.session(), "identity.progress", &id).await else {
        unreachable!()
    };
    assert_eq!(p.step, "requested");
    let Event::IdentityProgress(p) = on_call(s.op.session(), "identity.progress", &id).await else {
        unreachable!()
    };
    assert_eq!(p.step, "pec_sent");

    // Malformed codes are refused outright; wrong ones count down.
    assert_eq!(
        refused(s.k.session().request(&pec_code(&id, "12ab56")).await),
        ErrorCode::Invalid
    );
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let wrong2 = if code == "999999" { "999998" } else { "999999" };
    ok(s.k.session(), pec_code(&id, wrong)).await;
    let f = failed(on_call(s.k.session(), "identity.failed", &id).await);
    assert_eq!(
        (f.code.as_deref(), f.attempts_left),
        (Some("wrong_code"), Some(2))
    );
    ok(s.k.session(), pec_code(&id, wrong2)).await;
    ok(s.k.session(), pec_code(&id, wrong)).await;
    let f = failed(on_call(s.k.session(), "identity.failed", &id).await);
    assert_eq!(f.attempts_left, Some(1));
    let f = failed(on_call(s.k.session(), "identity.failed", &id).await);
    assert_eq!(f.code.as_deref(), Some("too_many_attempts"));
    // The spent code no longer works, and the step is over.
    assert_eq!(
        refused(s.k.session().request(&pec_code(&id, &code)).await),
        ErrorCode::Conflict
    );

    // Again, after the resend interval: the right code verifies.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok(s.op.session(), identity_request(&id, IdentityMethod::Pec)).await;
    ok(s.k.session(), start(&cf)).await;
    let code = code_for(&sink, &address, 1).await;
    ok(s.k.session(), pec_code(&id, &code)).await;
    let Event::IdentityVerified(v) = on_call(s.k.session(), "identity.verified", &id).await else {
        unreachable!()
    };
    assert_eq!(v.subject.fiscal_code, cf);
    assert_eq!(v.subject.family_name, citizen.surname);
    on_call(s.op.session(), "identity.verified", &id).await;

    // Issue: the reply, the kiosk's notice, the PDF for the operator only.
    let issued = ok(s.op.session(), issue(&id, "residenza")).await;
    let doc: CertificateIssued = serde_json::from_value(issued.clone()).unwrap();
    assert_eq!(doc.fiscal_code, cf);
    assert!(doc.bollo_due);
    assert!(doc.stamp.starts_with("IT1:"));
    let Event::CertificateIssued(n) = on_call(s.k.session(), "certificate.issued", &id).await
    else {
        unreachable!()
    };
    assert_eq!(
        (n.document_id.as_str(), n.bollo_due),
        (doc.document_id.as_str(), true)
    );
    let http = reqwest::Client::new();
    let url = s.c.t.url(&doc.pdf_url);
    let get = |token: String| http.get(&url).bearer_auth(token).send();
    let r = get(s.c.token(Role::Operator, "op1")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
    let r = get(common::centre::kiosk_token("k1")).await.unwrap();
    assert_eq!(r.status(), 403, "no print job for the kiosk yet");
    let r = get(s.c.token(Role::Operator, "op2")).await.unwrap();
    assert_eq!(r.status(), 401, "not an account");
    let missing = s.c.t.url("/api/v1/documents/034027-20260101-NOPE.pdf");
    let r = http
        .get(&missing)
        .bearer_auth(s.c.token(Role::Operator, "op1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // An exempt certificate states no bollo; a stranger needs a reason; an alla-data kind too.
    let mut exempt = issue(&id, "cittadinanza");
    if let Request::CertificateIssue(c) = &mut exempt {
        c.usage = Usage::Exemption {
            exemption: "b9".into(),
        };
    }
    let e = ok(s.op.session(), exempt).await;
    assert_eq!(e["bollo_due"], false);
    let mut stranger = issue(&id, "residenza");
    if let Request::CertificateIssue(c) = &mut stranger {
        c.fiscal_code = Some(no_pec.fiscal_code.to_string());
    }
    assert_eq!(
        refused(s.op.session().request(&stranger).await),
        ErrorCode::Invalid
    );
    if let Request::CertificateIssue(c) = &mut stranger {
        c.reason = Some("delega scritta presentata in video".into());
    }
    ok(s.op.session(), stranger).await;
    assert_eq!(
        refused(s.op.session().request(&issue(&id, "nessuno")).await),
        ErrorCode::Invalid
    );

    // A marca da bollo pays the bollo once: the PDF says so with its identifier and the operator's
    // name; the same marca again, on any certificate, is a conflict; a malformed one is invalid.
    let with_marca = |marca_id: &str, usage: Usage| {
        let mut r = issue(&id, "residenza");
        if let Request::CertificateIssue(c) = &mut r {
            c.marca = Some(MarcaRef {
                id: marca_id.into(),
                date: "2026-11-30".into(),
            });
            c.usage = usage;
        }
        r
    };
    let bollo = || Usage::Bollo { bollo: true };
    let paid = ok(s.op.session(), with_marca("01234567890123", bollo())).await;
    assert_eq!(paid["bollo_due"], false, "{paid}");
    assert_eq!(paid["marca_id"], "01234567890123");
    let pdf = http
        .get(s.c.t.url(paid["pdf_url"].as_str().unwrap()))
        .bearer_auth(s.c.token(Role::Operator, "op1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = pdf_text(&pdf);
    assert!(text.contains("01234567890123"), "{text}");
    assert!(text.to_lowercase().contains("assolta"), "{text}");
    assert!(
        text.contains("Operatore op1"),
        "the officer's printed name: {text}"
    );
    let Event::CertificateIssued(n) = on_call(s.k.session(), "certificate.issued", &id).await
    else {
        unreachable!()
    };
    assert!(!n.bollo_due, "nothing left to apply at the kiosk");
    assert_eq!(
        refused(
            s.op.session()
                .request(&with_marca("0123 4567 8901 23", bollo()))
                .await
        ),
        ErrorCode::Conflict,
        "a marca pays for one certificate"
    );
    assert_eq!(
        refused(s.op.session().request(&with_marca("12345", bollo())).await),
        ErrorCode::Invalid
    );
    assert_eq!(
        refused(
            s.op.session()
                .request(&with_marca(
                    "99999999999999",
                    Usage::Exemption {
                        exemption: "b9".into()
                    }
                ))
                .await
        ),
        ErrorCode::Invalid,
        "a marca with an exemption"
    );
    // A refused certificate does not spend its marca.
    let mut refused_one = with_marca("55555555555555", bollo());
    if let Request::CertificateIssue(c) = &mut refused_one {
        c.kind = "residenza_alla_data".into();
    }
    assert_eq!(
        refused(s.op.session().request(&refused_one).await),
        ErrorCode::Invalid
    );
    ok(s.op.session(), with_marca("55555555555555", bollo())).await;
    // A preview: the same request, the PDF watermarked, nothing issued and the marca not spent.
    let mut draft = with_marca("77777777777777", bollo());
    if let Request::CertificateIssue(c) = draft.clone() {
        draft = Request::CertificatePreview(c);
    }
    let preview = ok(s.op.session(), draft).await;
    use base64::Engine as _;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(preview["pdf"].as_str().unwrap())
        .unwrap();
    let text = pdf_text(&pdf);
    assert!(text.contains("ANTEPRIMA / PREVIEW"), "{text}");
    assert!(text.contains("77777777777777"), "{text}");
    assert!(!text.contains("Documento n."), "{text}");
    assert_eq!(preview["kind"], "residenza");
    ok(s.op.session(), with_marca("77777777777777", bollo())).await;
    // The kiosk may not ask for one.
    let mut kiosk_draft = issue(&id, "residenza");
    if let Request::CertificateIssue(c) = kiosk_draft.clone() {
        kiosk_draft = Request::CertificatePreview(c);
    }
    assert_eq!(
        refused(s.k.session().request(&kiosk_draft).await),
        ErrorCode::Forbidden
    );

    let used =
        s.c.t
            .server
            .state
            .config
            .data_dir
            .join("marche/01234567890123.json");
    assert!(used.exists(), "{}", used.display());

    // The audit log has the attempts and the issue, and its chain verifies.
    let audit = std::fs::read_to_string(s.c.t.server.state.issuer.audit().path()).unwrap();
    for needle in [
        "\"identification\"",
        "wrong_code",
        "too_many_attempts",
        "no_pec",
        "code_sent",
        "\"verified\"",
        "certificate.issued",
    ] {
        assert!(audit.contains(needle), "audit lacks {needle}");
    }
    assert!(!audit.contains(&code), "the code is never audited");
}

/// The text of a PDF, with poppler's pdftotext.
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) runs");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An expired PEC code is refused; codes are rate limited per call (the per-citizen limit is
/// unit-tested in the core); a mail server that refuses is `unavailable`.
#[tokio::test]
async fn pec_expiry_rate_limits_and_mail_failures() {
    let sink = SmtpSink::start().await;
    let (citizen, _) = residents();
    let address = citizen.pec.clone().unwrap();
    let cf = citizen.fiscal_code.to_string();
    let mut s = scene(&sink, |cfg| {
        cfg.identity.pec_code_ttl_s = 1;
        cfg.identity.pec_resend_s = 60;
        cfg.identity.pec_per_hour = 2;
    })
    .await;
    let id = s.id.clone();
    let start = Request::IdentityPecStart(IdentityPecStart {
        call_id: id.clone(),
        fiscal_code: cf.clone(),
    });
    ok(s.op.session(), identity_request(&id, IdentityMethod::Pec)).await;

    sink.set_refusing(true);
    assert_eq!(
        refused(s.k.session().request(&start).await),
        ErrorCode::Unavailable
    );
    sink.set_refusing(false);

    ok(s.k.session(), start.clone()).await;
    let code = code_for(&sink, &address, 0).await;
    assert_eq!(
        refused(s.k.session().request(&start).await),
        ErrorCode::RateLimited,
        "one code a minute per call"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ok(s.k.session(), pec_code(&id, &code)).await;
    let f = failed(on_call(s.k.session(), "identity.failed", &id).await);
    assert_eq!(f.code.as_deref(), Some("code_expired"));

    // Another kiosk's call for the same citizen: two codes an hour at most.
    let mut k2 = s.c.kiosk("k2").await;
    let id2 = request_call(&mut k2, "anagrafe").await;
    on_call(s.op.session(), "call.offered", &id2).await;
    ok(s.op.session(), Request::CallAccept(call(&id2))).await;
    ok(s.op.session(), identity_request(&id2, IdentityMethod::Pec)).await;
    let start2 = Request::IdentityPecStart(IdentityPecStart {
        call_id: id2.clone(),
        fiscal_code: cf.clone(),
    });
    ok(k2.session(), start2.clone()).await;
    assert_eq!(sink.messages().len(), 2);
    // A kiosk cannot act on another kiosk's call.
    assert_eq!(
        refused(s.k.session().request(&start2).await),
        ErrorCode::Forbidden
    );
}

fn signed_card(id: &str, chain: &[Vec<u8>], key_der: &[u8], nonce: &str) -> Request {
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(key_der).unwrap();
    let sig: p256::ecdsa::Signature = key.sign(nonce.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    Request::IdentityCard(IdentityCard {
        call_id: id.into(),
        certificate_chain: chain.iter().map(|c| b64.encode(c)).collect(),
        signature: b64.encode(sig.to_bytes()),
    })
}

/// CIE: the nonce goes to the card-reader session only; a card of an untrusted CA, an expired
/// card, a signature over another nonce are refused; a wrong PIN leaves the step open; a good CNS
/// card through an intermediate verifies, and the nonce cannot be replayed.
#[tokio::test]
async fn card_identification() {
    let sink = SmtpSink::start().await;
    let (citizen, _) = residents();
    let cf = citizen.fiscal_code.to_string();
    let mut s = scene(&sink, |_| {}).await;
    let id = s.id.clone();
    let now = OffsetDateTime::now_utc();
    let mut agent = HeadlessKiosk::connect(
        &s.c.ws(),
        &common::centre::kiosk_token("k1"),
        vec![Capability::CardReader, Capability::Printer],
    )
    .await
    .unwrap();

    let nonce_for = |e: Event| match e {
        Event::IdentityRequested(r) => r.nonce,
        other => panic!("{other:?}"),
    };
    ok(s.op.session(), identity_request(&id, IdentityMethod::Cie)).await;
    let nonce = nonce_for(on_call(agent.session(), "identity.requested", &id).await);
    assert!(nonce.len() >= 43, "32 random bytes");
    // The screen gets the prompt, not the nonce.
    on_call(s.k.session(), "identity.progress", &id).await;
    assert!(s
        .k
        .session()
        .drain_events()
        .iter()
        .all(|e| e.kind() != "identity.requested"));

    // A wrong PIN: reported with the tries left, the step stays open.
    ok(
        agent.session(),
        Request::IdentityCardError(IdentityCardError {
            call_id: id.clone(),
            reason: "pin_incorrect".into(),
            tries_left: Some(2),
        }),
    )
    .await;
    let f = failed(on_call(s.op.session(), "identity.failed", &id).await);
    assert_eq!(
        (f.code.as_deref(), f.attempts_left),
        (Some("pin_incorrect"), Some(2))
    );

    s.k.session().drain_events();
    // An untrusted card.
    let subject = CardSubject::new(&cf, &citizen.given_names, &citizen.surname, CardStyle::Cie);
    let rogue = TestCa::new("CA non attendibile").issue_card(
        &subject,
        now - Days::days(1),
        now + Days::days(300),
    );
    ok(
        agent.session(),
        signed_card(
            &id,
            std::slice::from_ref(&rogue.cert_der),
            &rogue.key_pkcs8_der,
            &nonce,
        ),
    )
    .await;
    let f = failed(on_call(s.k.session(), "identity.failed", &id).await);
    assert_eq!(f.code.as_deref(), Some("untrusted_card"));
    // The nonce was spent with that attempt.
    let good =
        s.ca.issue_card(&subject, now - Days::days(1), now + Days::days(300));
    assert_eq!(
        refused(
            agent
                .session()
                .request(&signed_card(
                    &id,
                    std::slice::from_ref(&good.cert_der),
                    &good.key_pkcs8_der,
                    &nonce
                ))
                .await
        ),
        ErrorCode::Conflict
    );

    // An expired card, then a signature over another nonce.
    s.op.session().drain_events();
    s.k.session().drain_events();
    ok(s.op.session(), identity_request(&id, IdentityMethod::Cie)).await;
    let nonce = nonce_for(on_call(agent.session(), "identity.requested", &id).await);
    let old =
        s.ca.issue_card(&subject, now - Days::days(400), now - Days::days(1));
    ok(
        agent.session(),
        signed_card(
            &id,
            std::slice::from_ref(&old.cert_der),
            &old.key_pkcs8_der,
            &nonce,
        ),
    )
    .await;
    assert_eq!(
        failed(on_call(s.op.session(), "identity.failed", &id).await)
            .code
            .as_deref(),
        Some("card_expired")
    );
    s.op.session().drain_events();
    ok(s.op.session(), identity_request(&id, IdentityMethod::Cie)).await;
    let _nonce = nonce_for(on_call(agent.session(), "identity.requested", &id).await);
    ok(
        agent.session(),
        signed_card(
            &id,
            std::slice::from_ref(&good.cert_der),
            &good.key_pkcs8_der,
            "another nonce",
        ),
    )
    .await;
    assert_eq!(
        failed(on_call(s.op.session(), "identity.failed", &id).await)
            .code
            .as_deref(),
        Some("bad_signature")
    );

    // A CNS card through an intermediate CA verifies.
    s.op.session().drain_events();
    s.k.session().drain_events();
    let inter = s.ca.intermediate("CA intermedia CNS");
    let cns = inter.issue_card(
        &CardSubject::new(&cf, &citizen.given_names, &citizen.surname, CardStyle::Cns),
        now - Days::days(1),
        now + Days::days(300),
    );
    ok(s.op.session(), identity_request(&id, IdentityMethod::Cns)).await;
    let nonce = nonce_for(on_call(agent.session(), "identity.requested", &id).await);
    let chain = vec![cns.cert_der.clone(), inter.cert_der()];
    assert_eq!(
        refused(
            agent
                .session()
                .request(&Request::IdentityCard(IdentityCard {
                    call_id: id.clone(),
                    certificate_chain: vec!["not base64!".into()],
                    signature: "AA==".into(),
                }))
                .await
        ),
        ErrorCode::Invalid
    );
    ok(
        agent.session(),
        signed_card(&id, &chain, &cns.key_pkcs8_der, &nonce),
    )
    .await;
    let Event::IdentityVerified(v) = on_call(s.op.session(), "identity.verified", &id).await else {
        unreachable!()
    };
    assert_eq!(
        (v.method, v.subject.fiscal_code.as_str()),
        (IdentityMethod::Cns, cf.as_str())
    );
    assert_eq!(
        v.subject.birth_date,
        Some(certificates::dates::iso(citizen.birth.date))
    );
    // Replaying the same answer: nothing pending any more.
    assert_eq!(
        refused(
            agent
                .session()
                .request(&signed_card(&id, &chain, &cns.key_pkcs8_der, &nonce))
                .await
        ),
        ErrorCode::Conflict
    );
}

/// POSTs `mib` MiB of chunked body by hand (no length announced) and returns the status.
async fn chunked_upload(url: &str, token: &str, mib: usize) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let url = reqwest::Url::parse(url).unwrap();
    let mut stream = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n",
        url.path(),
        url.host_str().unwrap()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        let sent = async {
            stream
                .write_all(format!("{:x}\r\n", block.len()).as_bytes())
                .await?;
            stream.write_all(&block).await?;
            stream.write_all(b"\r\n").await
        };
        if sent.await.is_err() {
            break; // the server answered and closed early
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&answer[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Document: only the call's kiosk uploads, only its operator sees the scan, the confirmation is
/// audited, and the scan is gone when the call ends. Print jobs: re-sent until acknowledged, to the
/// printer session after a reconnect, never reported backwards, someone else's job refused.
#[tokio::test]
async fn document_identification_and_print_jobs() {
    let sink = SmtpSink::start().await;
    let (citizen, _) = residents();
    let cf = citizen.fiscal_code.to_string();
    let mut s = scene(&sink, |_| {}).await;
    let id = s.id.clone();
    let http = reqwest::Client::new();
    let upload = |token: String, body: Vec<u8>, ct: &'static str| {
        http.post(s.c.t.url(&format!("/api/v1/calls/{id}/scans")))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let k1 = common::centre::kiosk_token("k1");
    let k2 = common::centre::kiosk_token("k2");

    // No scan is taken before the operator asks for a document identification.
    let r = upload(k1.clone(), png(), "image/png").await.unwrap();
    assert_eq!(r.status(), 409, "before identity.request");
    ok(
        s.op.session(),
        identity_request(&id, IdentityMethod::Document),
    )
    .await;
    let r = upload(k2.clone(), png(), "image/png").await.unwrap();
    assert_eq!(r.status(), 403, "another kiosk");
    // Only an image that decodes in full, within the pixel limits, is kept.
    let mut html = b"\x89PNG\r\n\x1a\n".to_vec();
    html.extend_from_slice(b"<html><script>alert(1)</script></html>");
    for (bad, ct) in [
        (html, "image/png"),
        (jpeg_truncated(), "image/jpeg"),
        (png_header_only(60_000, 60_000), "image/png"),
        (png()[..png().len() - 12].to_vec(), "image/png"),
    ] {
        let r = upload(k1.clone(), bad, ct).await.unwrap();
        assert_eq!(r.status(), 400, "{ct}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid");
    }
    // Every body over the limit is 413, by length or chunked.
    let mut over = png();
    over.resize(10 * 1024 * 1024 + 1, 0);
    let r = upload(k1.clone(), over, "image/png").await.unwrap();
    assert_eq!(r.status(), 413, "10 MiB + 1 byte");
    assert_eq!(
        chunked_upload(&s.c.t.url(&format!("/api/v1/calls/{id}/scans")), &k1, 50).await,
        413,
        "50 MiB chunked"
    );
    let r = upload(k1.clone(), b"GIF89a....".to_vec(), "image/gif")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid");
    let mut huge = png();
    huge.resize(10 * 1024 * 1024 + 10, 0);
    let r = upload(k1.clone(), huge, "image/png").await.unwrap();
    assert_eq!(r.status(), 413, "over 10 MiB");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid");
    let r = upload(k1.clone(), png(), "image/png").await.unwrap();
    assert_eq!(r.status(), 201);
    let scan_id = r.json::<Value>().await.unwrap()["scan_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Confirming before the kiosk submitted the scan is out of order.
    let confirm = Request::IdentityConfirm(IdentityConfirm {
        call_id: id.clone(),
        fiscal_code: cf.clone(),
        document_type: "carta_identita".into(),
        document_number: "CA12345AB".into(),
    });
    assert_eq!(
        refused(s.op.session().request(&confirm).await),
        ErrorCode::Conflict
    );
    ok(
        s.k.session(),
        Request::IdentityScan(IdentityScan {
            call_id: id.clone(),
            scan_id: scan_id.clone(),
        }),
    )
    .await;
    let scan_url = loop {
        if let Event::IdentityProgress(p) = on_call(s.op.session(), "identity.progress", &id).await
        {
            if p.step == "scan_received" {
                break p.scan_url.unwrap();
            }
        }
    };
    let get_scan = |token: String| http.get(s.c.t.url(&scan_url)).bearer_auth(token).send();
    let r = get_scan(s.c.token(Role::Operator, "op1")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png());
    assert_eq!(get_scan(k1.clone()).await.unwrap().status(), 403);

    ok(s.op.session(), confirm).await;
    let Event::IdentityVerified(v) = on_call(s.k.session(), "identity.verified", &id).await else {
        unreachable!()
    };
    assert_eq!(v.method, IdentityMethod::Document);
    // A console that reloads is told again who is identified in its calls.
    let auth = protocol::Auth {
        token: s.c.token(Role::Operator, "op1"),
        resume: None,
        capabilities: vec![],
    };
    let (mut reloaded, _) = Session::connect(&s.c.ws(), auth).await.unwrap();
    let Event::IdentityVerified(again) = on_call(&mut reloaded, "identity.verified", &id).await
    else {
        unreachable!()
    };
    assert_eq!(again.subject, v.subject);

    // Print jobs.
    let doc: CertificateIssued =
        serde_json::from_value(ok(s.op.session(), issue(&id, "residenza")).await).unwrap();
    let print = Request::PrintRequest(PrintRequest {
        call_id: id.clone(),
        document_id: doc.document_id.clone(),
        copies: 1,
    });
    assert_eq!(
        refused(
            s.op.session()
                .request(&Request::PrintRequest(PrintRequest {
                    call_id: id.clone(),
                    document_id: "034027-20260101-NOPE0000".into(),
                    copies: 1,
                }))
                .await
        ),
        ErrorCode::NotFound
    );
    let mut bad_copies = print.clone();
    if let Request::PrintRequest(p) = &mut bad_copies {
        p.copies = 9;
    }
    assert_eq!(
        refused(s.op.session().request(&bad_copies).await),
        ErrorCode::Invalid
    );
    let job = ok(s.op.session(), print.clone()).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No printer session yet: the screen session gets it (nobody declared the capability)…
    let Event::PrintJob(j) = on_call(s.k.session(), "print.job", &id).await else {
        unreachable!()
    };
    assert_eq!((j.job_id.as_str(), j.copies), (job.as_str(), 1));
    // …and again after 5 s while unacknowledged.
    let t0 = tokio::time::Instant::now();
    on_call(s.k.session(), "print.job", &id).await;
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    // A printer session that connects gets it at once, and the kiosk may now read the PDF.
    let mut agent = HeadlessKiosk::connect(&s.c.ws(), &k1, vec![Capability::Printer])
        .await
        .unwrap();
    on_call(agent.session(), "print.job", &id).await;
    let r = http
        .get(s.c.t.url(&doc.pdf_url))
        .bearer_auth(k1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(s.c.t.url(&doc.pdf_url))
        .bearer_auth(k2.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let status = |state: PrintState, detail: Option<&str>| {
        Request::PrintStatus(PrintStatus {
            job_id: job.clone(),
            state,
            detail: detail.map(str::to_owned),
        })
    };
    let mut other = s.c.kiosk("k2").await;
    assert_eq!(
        refused(
            other
                .session()
                .request(&status(PrintState::Printed, None))
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(
            s.op.session()
                .request(&status(PrintState::Printed, None))
                .await
        ),
        ErrorCode::Forbidden
    );
    for (st, detail) in [
        (PrintState::Received, None),
        (PrintState::Failed, Some("media-empty")),
        (PrintState::Printing, None),
        (PrintState::Printed, None),
        (PrintState::Printing, None),
    ] {
        ok(agent.session(), status(st, detail)).await;
    }
    let mut seen = vec![];
    while seen.last() != Some(&PrintState::Printed) {
        let Event::PrintUpdate(u) = on_call(s.op.session(), "print.update", &id).await else {
            unreachable!()
        };
        if u.state == PrintState::Failed {
            assert_eq!(u.detail.as_deref(), Some("media-empty"));
        }
        seen.push(u.state);
    }
    assert_eq!(
        seen,
        [
            PrintState::Received,
            PrintState::Failed,
            PrintState::Printing,
            PrintState::Printed
        ]
    );
    // The screen is told too; the late `printing` was dropped.
    on_call(s.k.session(), "print.update", &id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s
        .op
        .session()
        .drain_events()
        .iter()
        .all(|e| e.kind() != "print.update"));

    // The call ends: the scan is deleted.
    ok(s.op.session(), Request::CallEnd(call(&id))).await;
    on_call(s.k.session(), "call.ended", &id).await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = get_scan(s.c.token(Role::Operator, "op1")).await.unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scan kept after the call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // In-call requests on an ended call are refused.
    assert_eq!(
        refused(s.op.session().request(&print).await),
        ErrorCode::Conflict
    );
}

/// `certificate.issue` with a timestamp authority (`[certificates.seal] tsa_url`, a real one from
/// `testkit::tsa`): the PDF's seal is PAdES B-T; once the TSA is down, the issue is refused as
/// `unavailable`, with the reason.
#[tokio::test]
async fn certificate_issue_with_a_timestamp_authority() {
    let sink = SmtpSink::start().await;
    let mut tsa = testkit::tsa::Tsa::start().expect("a test TSA");
    let (citizen, _) = residents();
    let address = citizen.pec.clone().unwrap();
    let cf = citizen.fiscal_code.to_string();
    let (url, ca) = (tsa.url().to_owned(), tsa.ca_file());
    let mut s = scene(&sink, move |cfg| {
        cfg.certificates.seal.tsa_url = Some(url);
        cfg.certificates.seal.tsa_ca_file = Some(ca);
        cfg.certificates.seal.tsa_timeout_ms = Some(5_000);
    })
    .await;
    let id = s.id.clone();
    ok(s.op.session(), identity_request(&id, IdentityMethod::Pec)).await;
    ok(
        s.k.session(),
        Request::IdentityPecStart(IdentityPecStart {
            call_id: id.clone(),
            fiscal_code: cf.clone(),
        }),
    )
    .await;
    let code = code_for(&sink, &address, 0).await;
    ok(s.k.session(), pec_code(&id, &code)).await;
    on_call(s.k.session(), "identity.verified", &id).await;
    on_call(s.op.session(), "identity.verified", &id).await;

    let issued = ok(s.op.session(), issue(&id, "residenza")).await;
    let doc: CertificateIssued = serde_json::from_value(issued).unwrap();
    let pdf = reqwest::Client::new()
        .get(s.c.t.url(&doc.pdf_url))
        .bearer_auth(s.c.token(Role::Operator, "op1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let seal = certificates::seal::verify_seal(&pdf).unwrap();
    assert_eq!(seal.level(), "B-T", "{seal:?}");
    assert_eq!(tsa.served(), 1);

    // The TSA goes down: no certificate, `unavailable`, and the reason.
    tsa.stop();
    let reply = s.op.session().request(&issue(&id, "residenza")).await;
    let Err(kiosk_client::ClientError::Refused { code, message, .. }) = &reply else {
        panic!("{reply:?}");
    };
    assert_eq!(*code, ErrorCode::Unavailable, "{message}");
    assert!(
        message.contains("marca temporale non disponibile"),
        "{message}"
    );
}
