//! The browser verifier (`console-web/verify/stamp.js`) run under Node.js: it accepts a real stamp and
//! rejects a forged, expired or untrusted one, with the same verdicts as the Rust verifier.
//! Needs the Debian package `nodejs`; a missing `node` fails the test.

mod common;

use certificates::registry::demo::cases;
use certificates::signer::{generate_signer_pem, Signer};
use certificates::CertificateKind as K;
use common::*;

fn node(
    dir: &std::path::Path,
    stamp: &str,
    trust: &str,
    now_ms: i64,
) -> Result<serde_json::Value, String> {
    let stamp_file = dir.join("stamp.txt");
    let trust_file = dir.join("trust.json");
    std::fs::write(&stamp_file, stamp).unwrap();
    std::fs::write(&trust_file, trust).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser_verifier.mjs");
    let module = concat!(
        "file://",
        env!("CARGO_MANIFEST_DIR"),
        "/../console-web/verify/stamp.js"
    );
    let out = std::process::Command::new("node")
        .args([script, stamp_file.to_str().unwrap(), trust_file.to_str().unwrap(), &now_ms.to_string(), module])
        .output()
        .unwrap_or_else(|e| panic!("`node` is required for this test (Debian package `nodejs`: apt-get install -y nodejs): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn the_browser_module_verifies_like_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let trust = issuer.trust_list().to_json();
    let now_ms = NOW.unix_timestamp() * 1000;
    let doc = issue(&issuer, K::StatoFamiglia, cases::NICOLO_DALO, None).unwrap();
    let ok = node(dir.path(), &doc.stamp, &trust, now_ms).expect("valid stamp");
    assert_eq!(ok["certificate"]["documentId"], doc.document_id.as_str());
    assert_eq!(ok["certificate"]["members"].as_array().unwrap().len(), 8);
    assert_eq!(ok["certificate"]["members"][2][1], "Thérèse");
    assert_eq!(ok["certificate"]["textSha256"], doc.text_sha256.as_str());
    assert_eq!(ok["development"], true);

    let expired = node(dir.path(), &doc.stamp, &trust, now_ms + 200 * 86_400_000).unwrap_err();
    assert!(expired.starts_with("ERROR expired"), "{expired}");

    let (k, c) = generate_signer_pem(
        "Altro",
        NOW - time::Duration::days(1),
        NOW + time::Duration::days(10),
    )
    .unwrap();
    let other = certificates::stamp::sign(
        &certificates::stamp::decode(&doc.stamp).unwrap().claims,
        &Signer::from_pem(&k, &c).unwrap(),
    )
    .unwrap();
    let untrusted = node(dir.path(), &other, &trust, now_ms).unwrap_err();
    assert!(untrusted.starts_with("ERROR untrusted"), "{untrusted}");

    let mut bytes = doc.stamp.clone().into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = node(
        dir.path(),
        &String::from_utf8(bytes).unwrap(),
        &trust,
        now_ms,
    )
    .unwrap_err();
    assert!(
        tampered.starts_with("ERROR format") || tampered.starts_with("ERROR signature"),
        "{tampered}"
    );
    assert!(node(dir.path(), "not a stamp", &trust, now_ms)
        .unwrap_err()
        .starts_with("ERROR format"));
}
