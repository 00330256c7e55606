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
    let answer: Value = client
        .post(t.url("/api/v1/verify"))
        .json(&json!({ "stamp": stamp }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let answer: Value = client
        .post(t.url("/api/v1/verify"))
        .json(&json!({ "stamp": forged }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["valid"], false);
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
    let answer: Value = client
        .post(t.url("/api/v1/verify"))
        .json(&json!({"stamp": "garbage"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    let out = Command::new(BIN)
        .arg("verify")
        .arg(&pdf)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "development key: {text}");
    assert!(text.contains("development key"), "{text}");
    assert!(text.contains("Comune di Parma"), "{text}");

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
