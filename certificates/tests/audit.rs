//! The audit log detects an edited, deleted, inserted or reordered record, and a cut tail.

use certificates::{audit_verify, Actor, AuditEvent, AuditLog, CertError};
use time::macros::datetime;

fn log_with(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        log.append(
            AuditEvent {
                action: "certificate.issued".into(),
                actor: Actor {
                    operator: Some(format!("op{i}")),
                    ..Actor::default()
                },
                subject: Some("RSSLCU85D12G337O".into()),
                document_id: Some(format!("doc-{i}")),
                ..AuditEvent::default()
            },
            datetime!(2025-07-01 10:00 UTC) + time::Duration::minutes(i as i64),
        )
        .unwrap();
    }
    (dir, path)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write(path: &std::path::Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn broken_at(path: &std::path::Path) -> usize {
    match audit_verify(path) {
        Err(CertError::AuditTampered { line, .. }) => line,
        other => panic!("tampering not detected: {other:?}"),
    }
}

#[test]
fn an_intact_log_verifies_and_reopens() {
    let (_d, path) = log_with(5);
    let s = audit_verify(&path).unwrap();
    assert_eq!(s.records, 5);
    // Reopening continues the chain.
    let log = AuditLog::open(&path).unwrap();
    let r = log
        .append(
            AuditEvent {
                action: "print".into(),
                ..AuditEvent::default()
            },
            datetime!(2025-07-02 10:00 UTC),
        )
        .unwrap();
    assert_eq!(r.seq, 6);
    assert_eq!(r.prev, s.head);
    assert_eq!(audit_verify(&path).unwrap().records, 6);
}

#[test]
fn an_edited_record_is_detected() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l[2] = l[2].replace("op2", "op9");
    write(&path, &l);
    assert_eq!(broken_at(&path), 3);
}

#[test]
fn an_edited_record_with_a_recomputed_hash_is_detected() {
    use sha2::Digest;
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    let v: serde_json::Value = serde_json::from_str(&l[1]).unwrap();
    let mut record = v["record"].clone();
    record["event"]["document_id"] = "forged".into();
    let body = serde_json::to_string(&record).unwrap();
    let hash = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    l[1] = format!("{{\"record\":{body},\"hash\":\"{hash}\"}}");
    write(&path, &l);
    // The forged record is self-consistent, but the next one no longer points at it.
    assert_eq!(broken_at(&path), 3);
}

#[test]
fn a_deleted_record_is_detected() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.remove(1);
    write(&path, &l);
    assert_eq!(broken_at(&path), 2);
}

#[test]
fn reordered_records_are_detected() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.swap(2, 3);
    write(&path, &l);
    assert_eq!(broken_at(&path), 3);
}

#[test]
fn a_cut_tail_is_detected_by_the_head_file() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.pop();
    write(&path, &l);
    assert_eq!(broken_at(&path), 5);
    // And the log refuses to grow on top of a tampered chain.
    assert!(AuditLog::open(&path).is_err());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let (_d, path) = log_with(2);
    std::fs::write(&path, b"\xff\xfe not json\n").unwrap();
    assert_eq!(broken_at(&path), 1);
}
