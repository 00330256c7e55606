//! The certificates service as the server and the binary expose it: the trust list, `POST
//! /api/v1/verify`, the `/verify/` page, and the `verify`, `registry list`, `certificate issue` and
//! `audit verify` commands on a shared data directory.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

fn issue_with_cli(data_dir: &std::path::Path, kind: &str, out: &std::path::Path) -> String {
    let list = Command::new(BIN)
        .args(["registry", "list", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    assert!(
        text.lines().count() >= 200,
        "the demo registry has 200+ people"
    );
    let resident = text
        .lines()
        .find(|l| !l.contains("non residente") && !l.contains("deceduto"))
        .unwrap();
    let cf = resident.split('\t').next().unwrap().to_owned();
    let issued = Command::new(BIN)
        .args([
            "certificate",
            "issue",
            "--kind",
            kind,
            "--fiscal-code",
            &cf,
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    cf
}

#[tokio::test]
async fn the_server_publishes_the_trust_list_and_verifies_stamps() {
    let t = TestServer::start().await;
    let list: Value = reqwest::get(t.url("/.well-known/sportello/trust-list.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!list["signers"].as_array().unwrap().is_empty(), "{list}");

    // A certificate issued from the command line on the server's data directory.
    let pdf = t.dir.path().join("residenza.pdf");
    let cf = issue_with_cli(t.dir.path(), "residenza", &pdf);
    let stamp = certificates::extract_stamp(&pdf).unwrap();

    let client = reqwest::Client::new();
    let answer: Value = post_json(&t.url("/api/v1/verify"), &json!({ "stamp": stamp }))
        .await
        .1;
    // The development key signs correctly but is never valid.
    assert_eq!(answer["development"], true, "{answer}");
    assert_eq!(answer["valid"], false);
    assert!(answer["reason"].as_str().unwrap().contains("development"));
    assert!(answer["document"].to_string().contains(&cf), "{answer}");

    // A forged stamp: one character changed.
    let mut forged: Vec<char> = stamp.chars().collect();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let answer: Value = post_json(&t.url("/api/v1/verify"), &json!({ "stamp": forged }))
        .await
        .1;
    assert_eq!(answer["valid"], false);
    assert_eq!(answer["document"], Value::Null);
    assert!(answer.get("development").is_none());
    assert!(!answer["reason"].as_str().unwrap().is_empty());

    for bad in [
        json!({}),
        json!({"stamp": 5}),
        json!({"stamp": "x".repeat(9000)}),
    ] {
        let res = client
            .post(t.url("/api/v1/verify"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "invalid");
    }
    let answer: Value = post_json(&t.url("/api/v1/verify"), &json!({"stamp": "garbage"}))
        .await
        .1;
    assert_eq!(answer["valid"], false);
    assert_eq!(answer["document"], Value::Null);
}

#[tokio::test]
async fn the_verify_page_is_embedded() {
    let t = TestServer::start().await;
    let res = reqwest::get(t.url("/verify/")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    let js = reqwest::get(t.url("/verify/app.js")).await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert_eq!(
        reqwest::get(t.url("/verify/../Cargo.toml"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        reqwest::get(t.url("/verify/nope.js"))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn command_line_issue_verify_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("stato.pdf");
    issue_with_cli(dir.path(), "stato_famiglia", &pdf);
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));

    let verify = |file: &std::path::Path| {
        Command::new(BIN)
            .arg("verify")
            .arg(file)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = verify(&pdf);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "development key: {text}");
    assert!(text.contains("development key"), "{text}");
    assert!(text.contains("Comune di Parma"), "{text}");
    assert!(
        text.contains("PAdES seal valid"),
        "the digital original's seal: {text}"
    );
    // A byte changed after sealing: the seal says so, and the answer is NOT VALID.
    let mut bytes = std::fs::read(&pdf).unwrap();
    let at = bytes.windows(8).position(|w| w == b"/Title (").unwrap() + 8;
    bytes[at] ^= 0x20;
    let forged = dir.path().join("forged.pdf");
    std::fs::write(&forged, bytes).unwrap();
    let out = verify(&forged);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("seal NOT valid"), "{text}");

    // The same stamp as text, checked against an exported trust list, gives the same answer.
    let stamp = certificates::extract_stamp(&pdf).unwrap();
    let trust = dir.path().join("trust.json");
    let issuer = certificates::Issuer::open(
        dir.path(),
        &certificates::IssuerConfig::default(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    std::fs::write(&trust, serde_json::to_vec(&issuer.trust_list()).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["verify", &stamp, "--trust-list"])
        .arg(&trust)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("development key"));

    let out = Command::new(BIN)
        .args(["verify", "IT1:NOTASTAMP"])
        .arg("--trust-list")
        .arg(&trust)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VALID"));

    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 record"));

    // Any edit of the log is detected.
    let log = dir.path().join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        text.replacen("residenza", "RESIDENZA", 1)
            .replacen("stato_famiglia", "stato_famiglia ", 1),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = Command::new(BIN)
        .args([
            "certificate",
            "issue",
            "--kind",
            "no_such_kind",
            "--fiscal-code",
            "RSSMRA80A01G337X",
            "--out",
        ])
        .arg(dir.path().join("x.pdf"))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kind"));
}

/// With a real (non-development) signer configured, `sportello verify` accepts the genuine
/// certificate and rejects a changed byte, a wrong key under our kid, an untrusted kid and an
/// expired certificate.
#[test]
fn sportello_verify_accepts_genuine_and_rejects_forgeries() {
    use certificates::signer::{generate_signer_pem, Signer, TrustList};
    use certificates::stamp;
    use time::{Duration, OffsetDateTime};

    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (key_pem, cert_pem) = generate_signer_pem(
        "Ufficiale d'anagrafe",
        // Valid long before the backdated issue of the expired case below.
        now - Duration::days(400),
        now + Duration::days(365),
    )
    .unwrap();
    let key = dir.path().join("signer-key.pem");
    let cert = dir.path().join("signer-cert.pem");
    std::fs::write(&key, &key_pem).unwrap();
    std::fs::write(&cert, &cert_pem).unwrap();
    let cfg = dir.path().join("sportello.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[certificates.signer]\nkey = {:?}\ncertificate = {:?}\n",
            dir.path().join("data"),
            key,
            cert
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (code, list) = run(&["registry", "list"]);
    assert_eq!(code, Some(0));
    let cf = list
        .lines()
        .find(|l| !l.contains("non residente") && !l.contains("deceduto"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    let pdf = dir.path().join("residenza.pdf");
    let (code, out) = run(&[
        "certificate",
        "issue",
        "--kind",
        "residenza",
        "--fiscal-code",
        &cf,
        "--out",
        pdf.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("NOT VALID"), "{out}");

    let (code, out) = run(&["verify", pdf.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("VALIDO / VALID"), "{out}");

    let genuine = certificates::extract_stamp(&pdf).unwrap();
    let decoded = stamp::decode(&genuine).unwrap();
    let ours = Signer::from_pem(&key_pem, &cert_pem).unwrap();
    let (wk, wc) = generate_signer_pem(
        "Falsario",
        now - Duration::days(1),
        now + Duration::days(365),
    )
    .unwrap();
    let wrong = Signer::from_pem(&wk, &wc).unwrap();

    let rejected = |text: &str, trust: Option<&std::path::Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["verify", text]);
        match trust {
            Some(path) => cmd.arg("--trust-list").arg(path),
            None => cmd.arg("--config").arg(&cfg),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.code() == Some(1) && stdout.starts_with("NON VALIDO / NOT VALID")
    };

    // A changed byte.
    let mut bytes = genuine.clone().into_bytes();
    let i = bytes.len() / 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    assert!(rejected(&String::from_utf8(bytes).unwrap(), None));

    // An untrusted kid: the same claims signed by another key.
    assert!(rejected(
        &stamp::sign(&decoded.claims, &wrong).unwrap(),
        None
    ));

    // A wrong key under our kid: a trust list that maps our kid to another key.
    let mut entry = wrong.trust_entry().clone();
    entry.kid = ours.trust_entry().kid.clone();
    let list = TrustList::new("Comune di Parma", &decoded.claims.issuer, vec![entry]);
    let wrong_list = dir.path().join("wrong-trust.json");
    std::fs::write(&wrong_list, serde_json::to_vec(&list).unwrap()).unwrap();
    assert!(rejected(&genuine, Some(&wrong_list)));

    // An expired certificate, correctly signed by our key (valid when it was issued).
    let mut claims = decoded.claims.clone();
    claims.issued_at = (now - Duration::days(200)).unix_timestamp();
    claims.expires_at = Some((now - Duration::days(20)).unix_timestamp());
    let expired = stamp::sign(&claims, &ours).unwrap();
    assert!(matches!(
        certificates::verify_text(&expired, &ours_list(&ours, &decoded.claims.issuer), now),
        Err(certificates::CertError::Expired(_))
    ));
    assert!(rejected(&expired, None));
}

fn ours_list(ours: &certificates::signer::Signer, issuer: &str) -> certificates::signer::TrustList {
    certificates::signer::TrustList::new(
        "Comune di Parma",
        issuer,
        vec![ours.trust_entry().clone()],
    )
}

/// `sportello certificate kinds` lists every kind; `certificate issue` prints the configured
/// officer, records a marca once in the data directory's folder (the server's too), refuses it a
/// second time and refuses a malformed one, and a failed issue leaves the marca unspent.
#[test]
fn command_line_kinds_officer_and_marca() {
    let out = Command::new(BIN)
        .args(["certificate", "kinds"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let kinds = String::from_utf8_lossy(&out.stdout);
    for kind in certificates::CertificateKind::ALL {
        assert!(
            kinds.lines().any(|l| l == kind.code()),
            "{} missing from\n{kinds}",
            kind.code()
        );
    }
    assert!(kinds.contains("validità / validity: 6 mesi"), "{kinds}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sportello.toml");
    std::fs::write(&config, "[certificates]\nofficer = \"Giulia Verdi\"\n").unwrap();
    let list = Command::new(BIN)
        .args(["registry", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let cf = list
        .lines()
        .find(|l| !l.contains("non residente") && !l.contains("deceduto"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    let issue = |marca: &str, kind: &str, out: &str| {
        Command::new(BIN)
            .args(["certificate", "issue", "--kind", kind, "--fiscal-code", &cf])
            .args(["--marca-id", marca, "--marca-date", "2026-11-30"])
            .arg("-c")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap()
    };
    let first = issue("01234567890123", "residenza", "a.pdf");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = pdf_text(&dir.path().join("a.pdf"));
    assert!(text.contains("Giulia Verdi"), "{text}");
    assert!(text.contains("01234567890123"), "{text}");
    assert!(dir.path().join("marche/01234567890123.json").exists());
    let again = issue("01234567890123", "stato_famiglia", "b.pdf");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("già stata usata"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let bad = issue("123", "residenza", "c.pdf");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("14 cifre"));
    // An "alla data" kind without its date fails, and does not spend the marca.
    let failed = issue("22222222222222", "residenza_alla_data", "d.pdf");
    assert_eq!(failed.status.code(), Some(2));
    assert!(!dir.path().join("marche/22222222222222.json").exists());
}

fn pdf_text(path: &std::path::Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The console offers every certificate kind and every use of the shipped table, with a label in
/// each language: a kind or exemption added to the certificates crate without its console entry
/// fails here.
#[test]
fn the_console_offers_every_kind_and_use_with_labels() {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../console-web");
    let console = std::fs::read_to_string(format!("{web}/console/incall.js")).unwrap();
    let table: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../certificates/data/exemptions.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let codes: Vec<String> = table
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect();
    for lang in ["it", "en"] {
        let catalogue: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{web}/lib/messages/{lang}.json")).unwrap(),
        )
        .unwrap();
        for kind in certificates::CertificateKind::ALL {
            let key = format!("cert.kind.{}", kind.code());
            assert!(catalogue.get(&key).is_some(), "{lang}.json lacks {key}");
        }
        for code in &codes {
            let key = format!("cert.exemption.{code}");
            assert!(catalogue.get(&key).is_some(), "{lang}.json lacks {key}");
        }
    }
    for kind in certificates::CertificateKind::ALL {
        assert!(
            console.contains(&format!("'{}'", kind.code())),
            "the console does not offer {}",
            kind.code()
        );
    }
    for code in &codes {
        assert!(
            console.contains(&format!("'{code}'")),
            "the console does not offer the use {code}"
        );
    }
}
