//! The intermediaries' API end to end, on a real server and the real `sportello` binary sharing a
//! data directory: keys made with `sportello intermediary add`, a certificate issued with reason
//! and consent (its PDF downloadable by that intermediary only, its stamp verified against the
//! server's trust list), `400` without reason or consent, `409` for a marca used twice (also after
//! the command line used it), `429` with `retry_after_s` over the quota, `401` for unknown and
//! revoked keys, `403` without the scope, the audit trail on the command line and for the
//! supervisor, and `GET /api/v1/openapi.json` checked by `openapi-spec-validator`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

fn sportello(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `sportello intermediary add` → the key (its first line).
fn add(data_dir: &Path, name: &str, scopes: &str, quota: &str) -> String {
    let out = sportello(
        data_dir,
        &[
            "intermediary",
            "add",
            "--name",
            name,
            "--scopes",
            scopes,
            "--quota-per-day",
            quota,
        ],
    );
    stdout(&out).lines().next().unwrap().to_owned()
}

/// Residents of the demo registry (alive, resident), by fiscal code.
fn residents(data_dir: &Path) -> Vec<String> {
    stdout(&sportello(data_dir, &["registry", "list"]))
        .lines()
        .filter(|l| !l.contains("non residente") && !l.contains("deceduto"))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

async fn post(t: &TestServer, key: Option<&str>, body: &Value) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(t.url("/api/v1/intermediary/certificates"))
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().await.unwrap_or(Value::Null), retry)
}

async fn get(t: &TestServer, path: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(t.url(path));
    if let Some(k) = bearer {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

fn body(cf: &str, marca: &str) -> Value {
    json!({
        "kind": "residenza",
        "fiscal_code": cf,
        "reason": "pratica di pensione",
        "consent_ref": "DELEGA-2026-0042",
        "usage": {"bollo": true, "marca": {"id": marca, "issued_at": "2026-11-30"}},
    })
}

async fn supervisor_token(t: &TestServer) -> String {
    let login = &t.demo().supervisors[0];
    let (status, answer) = post_json(
        &t.url("/api/v1/login"),
        &json!({"username": login.username, "password": login.password}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn intermediaries_issue_with_reason_and_consent_within_their_quota() {
    let t = TestServer::start().await;
    let dir = t.dir.path().to_owned();
    let inca = add(&dir, "inca", "certificates", "4");
    let acli = add(&dir, "acli", "certificates,audit", "10");
    let auditor = add(&dir, "auditor", "audit", "10");
    assert!(inca.starts_with("spk_") && inca != acli);
    let people = residents(&dir);
    let cf = &people[0];

    // Issued, with reason and consent (quota: 1 of 4).
    let (status, issued, _) = post(&t, Some(&inca), &body(cf, "11112222333344")).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["kind"], "residenza");
    assert_eq!(issued["fiscal_code"], cf.as_str());
    assert_eq!(issued["bollo"], json!({"marca": "11112222333344"}));
    let id = issued["document_id"].as_str().unwrap().to_owned();
    let pdf_url = issued["pdf_url"].as_str().unwrap().to_owned();
    assert_eq!(pdf_url, format!("/api/v1/intermediary/documents/{id}.pdf"));

    // The PDF, to inca only; its stamp verifies against the server's trust list.
    let res = get(&t, &pdf_url, Some(&inca)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    let pdf = res.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    assert_eq!(get(&t, &pdf_url, Some(&acli)).await.status(), 404);
    assert_eq!(get(&t, &pdf_url, None).await.status(), 401);
    // A key without the certificates scope downloads nothing.
    assert_eq!(get(&t, &pdf_url, Some(&auditor)).await.status(), 403);
    let file = dir.join("inca.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let trust: certificates::TrustList = get(&t, "/.well-known/sportello/trust-list.json", None)
        .await
        .json()
        .await
        .unwrap();
    let verified = certificates::verify_file(&file, &trust, time::OffsetDateTime::now_utc())
        .expect("the stamp verifies");
    assert!(verified.report().contains(&id), "{}", verified.report());
    assert!(verified.report().contains(cf.as_str()));
    // The test server signs with the development key: the stamp checks out, and the binary says
    // it is not valid for that reason alone.
    let out = Command::new(BIN)
        .args(["verify"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("chiave di sviluppo") && said.contains(&id),
        "{said}"
    );
    assert!(said.contains("Sigillo elettronico PAdES valido"), "{said}");

    // Reason and consent are required (not counted in the quota).
    for (field, value) in [
        ("reason", Value::Null),
        ("reason", json!("  ")),
        ("consent_ref", Value::Null),
        ("consent_ref", json!("")),
    ] {
        let mut b = body(cf, "55556666777788");
        b[field] = value;
        let (status, answer, _) = post(&t, Some(&inca), &b).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["code"], "invalid");
    }
    let (status, _, _) = post(&t, Some(&inca), &json!({"kind": 1})).await;
    assert_eq!(status, 400);

    // The same marca again (2 of 4), and a marca the command line used first (3 of 4).
    let (status, answer, _) = post(&t, Some(&inca), &body(&people[1], "11112222333344")).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "conflict");
    let cli = sportello(
        &dir,
        &[
            "certificate",
            "issue",
            "--kind",
            "residenza",
            "--fiscal-code",
            &people[1],
            "--marca-id",
            "99998888777766",
            "--marca-date",
            "2026-11-30",
            "--out",
            dir.join("cli.pdf").to_str().unwrap(),
        ],
    );
    stdout(&cli);
    let (status, _, _) = post(&t, Some(&inca), &body(&people[1], "99998888777766")).await;
    assert_eq!(status, 409);

    // An exemption (4 of 4), then the quota is used up until midnight in Rome.
    let mut exempt = body(&people[1], "");
    exempt["usage"] = json!({"exemption": "b5"});
    let (status, answer, _) = post(&t, Some(&inca), &exempt).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["bollo"], json!({"exemption": "b5"}));
    let (status, answer, retry) = post(&t, Some(&inca), &body(cf, "12121212121212")).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["code"], "rate_limited");
    let wait = answer["retry_after_s"].as_u64().unwrap();
    assert!((1..=25 * 3600).contains(&wait), "{answer}");
    assert_eq!(retry, Some(wait.to_string()));
    // Another intermediary has its own quota.
    let (status, answer, _) = post(&t, Some(&acli), &exempt).await;
    assert_eq!(status, 201, "{answer}");

    // Unknown key, missing key, revoked key: 401. A key without the scope: 403.
    let (status, answer, _) = post(&t, Some(&format!("spk_{}", "0".repeat(64))), &exempt).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(post(&t, None, &exempt).await.0, 401);
    let (status, answer, _) = post(&t, Some(&auditor), &exempt).await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")));
    // Its own trail, with the audit scope only.
    let res = get(&t, "/api/v1/intermediary/requests", Some(&acli)).await;
    assert_eq!(res.status(), 200);
    let own: Value = res.json().await.unwrap();
    assert_eq!(own["name"], "acli");
    let own = own["requests"].as_array().unwrap();
    assert!(
        own.iter().any(|r| r["action"] == "certificate.issued"),
        "{own:?}"
    );
    assert!(own
        .iter()
        .all(|r| r["consent_ref"] == "DELEGA-2026-0042"
            || r["action"] == "certificate.download_refused"));
    assert_eq!(
        get(&t, "/api/v1/intermediary/requests", Some(&inca))
            .await
            .status(),
        403
    );
    stdout(&sportello(&dir, &["intermediary", "revoke", "acli"]));
    let (status, _, _) = post(&t, Some(&acli), &exempt).await;
    assert_eq!(status, 401);
    assert_eq!(get(&t, &answer_url(&id), Some(&acli)).await.status(), 401);
    assert_eq!(
        get(&t, "/api/v1/intermediary/requests", Some(&acli))
            .await
            .status(),
        401
    );

    // The audit trail on the command line: every request of inca, with reason and consent.
    let lines: Vec<Value> = stdout(&sportello(&dir, &["intermediary", "requests", "inca"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<(&str, Option<&str>)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["code"].as_str()))
        .collect();
    for expected in [
        ("certificate.issued", None),
        ("certificate.downloaded", None),
        ("certificate.refused", Some("invalid")),
        ("certificate.refused", Some("conflict")),
        ("certificate.refused", Some("rate_limited")),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    let first = &lines[0];
    assert_eq!(first["action"], "certificate.issued");
    assert_eq!(first["document_id"], id.as_str());
    assert_eq!(first["reason"], "pratica di pensione");
    assert_eq!(first["consent_ref"], "DELEGA-2026-0042");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["action"] == "certificate.issued")
            .count(),
        2
    );
    // acli's refused download of inca's document is in acli's trail, not inca's.
    let acli_lines = stdout(&sportello(&dir, &["intermediary", "requests", "acli"]));
    assert!(
        acli_lines.contains("certificate.download_refused"),
        "{acli_lines}"
    );

    // The supervisor's view of the same trail.
    let token = supervisor_token(&t).await;
    let res = get(&t, "/api/v1/intermediary-requests?name=inca", Some(&token)).await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["name"], "inca");
    assert_eq!(report["requests"].as_array().unwrap().len(), lines.len());
    let res = get(
        &t,
        "/api/v1/intermediary-requests?name=inca&from=2000-01-01&to=2000-01-02",
        Some(&token),
    )
    .await;
    let empty: Value = res.json().await.unwrap();
    assert_eq!(empty["requests"], json!([]));
    let operator = t.operator_token().await;
    let res = get(
        &t,
        "/api/v1/intermediary-requests?name=inca",
        Some(&operator),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        get(&t, "/api/v1/intermediary-requests?name=inca", None)
            .await
            .status(),
        401
    );
    let res = get(&t, "/api/v1/intermediary-requests", Some(&token)).await;
    assert_eq!(res.status(), 400);

    // The chain is intact after all of it.
    stdout(&sportello(&dir, &["audit", "verify"]));
}

fn answer_url(id: &str) -> String {
    format!("/api/v1/intermediary/documents/{id}.pdf")
}

#[test]
fn intermediary_accounts_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = sportello(
        dir,
        &[
            "intermediary",
            "add",
            "--name",
            "inca-parma",
            "--scopes",
            "certificates",
        ],
    );
    let text = stdout(&out);
    let key = text.lines().next().unwrap();
    assert!(key.starts_with("spk_") && key.len() == 68, "{text}");
    let stored = std::fs::read_to_string(dir.join("intermediaries.json")).unwrap();
    assert!(!stored.contains(key), "only the key's hash is stored");
    let list = stdout(&sportello(dir, &["intermediary", "list"]));
    assert!(
        list.starts_with("inca-parma\tcertificates\t1000/day\t"),
        "{list}"
    );
    assert!(list.trim_end().ends_with("active"), "{list}");
    // The same name again, an unknown scope, a bad name: refused (exit 2).
    for args in [
        &[
            "intermediary",
            "add",
            "--name",
            "inca-parma",
            "--scopes",
            "certificates",
        ][..],
        &[
            "intermediary",
            "add",
            "--name",
            "x",
            "--scopes",
            "everything",
        ][..],
        &[
            "intermediary",
            "add",
            "--name",
            "../x",
            "--scopes",
            "certificates",
        ][..],
    ] {
        let out = sportello(dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    stdout(&sportello(dir, &["intermediary", "revoke", "inca-parma"]));
    let list = stdout(&sportello(dir, &["intermediary", "list"]));
    assert!(list.contains("\trevoked "), "{list}");
    assert_eq!(
        sportello(dir, &["intermediary", "revoke", "inca-parma"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        sportello(dir, &["intermediary", "revoke", "nobody"])
            .status
            .code(),
        Some(2)
    );
}

/// `openapi-spec-validator`: the clone's (`cargo xtask deps` puts it in `target/tools/venv`), or
/// one on the PATH.
fn validator() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/venv/bin/openapi-spec-validator");
    if venv.is_file() {
        return venv;
    }
    let on_path = Command::new("openapi-spec-validator")
        .arg("--help")
        .output();
    assert!(
        on_path.is_ok_and(|o| o.status.success()),
        "{} is missing: run cargo xtask deps (it installs PyPI's openapi-spec-validator there)",
        venv.display()
    );
    PathBuf::from("openapi-spec-validator")
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let t = TestServer::start().await;
    let res = get(&t, "/api/v1/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/intermediary/certificates",
        "/api/v1/web/certificates",
        "/api/v1/web/me",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    let file = t.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new(validator()).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator does fail a broken document: a path without responses.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/web/me"]["get"]
        .as_object_mut()
        .unwrap()
        .remove("responses");
    broken["openapi"] = json!("3.1.0");
    broken["paths"]["/x"] = json!({"get": {"responses": {"200": {"description": 1}}}});
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = Command::new(validator()).arg(&file).output().unwrap();
    assert!(
        !out.status.success(),
        "the validator accepted a broken document"
    );
}
