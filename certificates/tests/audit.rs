//! The audit log detects an edited, deleted, inserted or reordered record, a cut tail and a wiped log;
//! it survives concurrent writers on one file and a crash between a record and its head.

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

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        action: action.into(),
        ..AuditEvent::default()
    }
}

fn head_file(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    p.into()
}

#[test]
fn two_logs_on_one_file_appending_from_several_threads_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // Two handles stand in for two processes sharing a data directory: each has its own descriptor, so
    // only the file lock (not the in-process mutex) keeps them from both appending after the same record.
    let a = AuditLog::open(&path).unwrap();
    let b = AuditLog::open(&path).unwrap();
    const PER_THREAD: usize = 20;
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let log = if t % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            log.append(event(&format!("t{t}-{i}")), datetime!(2025-07-01 10:00 UTC))
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    let expected: Vec<u64> = (1..=4 * PER_THREAD as u64).collect();
    assert_eq!(sorted, expected, "every append got its own sequence number");
    let summary = audit_verify(&path).unwrap();
    assert_eq!(summary.records, 4 * PER_THREAD as u64);
    assert_eq!(lines(&path).len(), 4 * PER_THREAD);
    // And the file still opens, continuing after the last record whichever handle wrote it.
    let r = AuditLog::open(&path)
        .unwrap()
        .append(event("print"), datetime!(2025-07-02 10:00 UTC))
        .unwrap();
    assert_eq!(r.seq, 4 * PER_THREAD as u64 + 1);
    assert_eq!(r.prev, summary.head);
}

#[test]
fn a_handle_sees_records_appended_through_another() {
    let (_d, path) = log_with(2);
    let a = AuditLog::open(&path).unwrap();
    let b = AuditLog::open(&path).unwrap();
    let r1 = a
        .append(event("one"), datetime!(2025-07-02 10:00 UTC))
        .unwrap();
    let r2 = b
        .append(event("two"), datetime!(2025-07-02 10:01 UTC))
        .unwrap();
    let r3 = a
        .append(event("three"), datetime!(2025-07-02 10:02 UTC))
        .unwrap();
    assert_eq!((r1.seq, r2.seq, r3.seq), (3, 4, 5));
    assert_eq!(audit_verify(&path).unwrap().records, 5);
}

/// Leaves the log `ahead` records past the head file, as a crash before the head's rename would (for 1).
fn log_ahead_of_head(ahead: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let (d, path) = log_with(3);
    let old_head = std::fs::read(head_file(&path)).unwrap();
    let log = AuditLog::open(&path).unwrap();
    for i in 0..ahead {
        log.append(event(&format!("late{i}")), datetime!(2025-07-02 10:00 UTC))
            .unwrap();
    }
    std::fs::write(head_file(&path), old_head).unwrap();
    (d, path)
}

#[test]
fn a_crash_before_the_head_is_rewritten_is_not_tampering() {
    let (_d, path) = log_ahead_of_head(1);
    let s = audit_verify(&path).unwrap();
    assert_eq!(s.records, 4);
    let log = AuditLog::open(&path).unwrap();
    // Opening repaired the head, so the log and head agree again.
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(head_file(&path)).unwrap()).unwrap();
    assert_eq!(head["seq"], 4);
    assert_eq!(head["hash"], s.head.as_str());
    let r = log
        .append(event("print"), datetime!(2025-07-03 10:00 UTC))
        .unwrap();
    assert_eq!(r.seq, 5);
    assert_eq!(r.prev, s.head);
    assert_eq!(audit_verify(&path).unwrap().records, 5);
}

#[test]
fn an_append_after_a_crash_before_the_head_continues_the_chain() {
    // A handle opened before the crash window appends after the record the head does not name yet.
    let (_d, path) = log_with(3);
    let log = AuditLog::open(&path).unwrap();
    let old_head = std::fs::read(head_file(&path)).unwrap();
    log.append(event("late"), datetime!(2025-07-02 10:00 UTC))
        .unwrap();
    std::fs::write(head_file(&path), old_head).unwrap();
    let r = log
        .append(event("next"), datetime!(2025-07-02 10:01 UTC))
        .unwrap();
    assert_eq!(r.seq, 5);
    assert_eq!(audit_verify(&path).unwrap().records, 5);
}

#[test]
fn a_first_record_without_a_head_file_is_accepted() {
    let (_d, path) = log_with(1);
    std::fs::remove_file(head_file(&path)).unwrap();
    assert_eq!(audit_verify(&path).unwrap().records, 1);
    AuditLog::open(&path).unwrap();
    assert!(head_file(&path).exists(), "open rewrites the missing head");
    assert_eq!(audit_verify(&path).unwrap().records, 1);
}

#[test]
fn a_log_two_records_ahead_of_the_head_is_tampering() {
    let (_d, path) = log_ahead_of_head(2);
    assert_eq!(broken_at(&path), 6);
    assert!(matches!(
        AuditLog::open(&path),
        Err(CertError::AuditTampered { .. })
    ));
}

#[test]
fn an_edited_record_one_ahead_of_the_head_is_tampering() {
    let (_d, path) = log_ahead_of_head(1);
    let mut l = lines(&path);
    l[3] = l[3].replace("late0", "late9");
    write(&path, &l);
    assert_eq!(broken_at(&path), 4);
    assert!(AuditLog::open(&path).is_err());
}

#[test]
fn a_missing_head_under_several_records_is_tampering() {
    let (_d, path) = log_with(2);
    std::fs::remove_file(head_file(&path)).unwrap();
    assert!(matches!(
        audit_verify(&path),
        Err(CertError::AuditTampered { .. })
    ));
    assert!(AuditLog::open(&path).is_err());
}

#[test]
fn a_deleted_log_is_detected_by_the_head_file() {
    let (_d, path) = log_with(3);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(broken_at(&path), 1);
    assert!(matches!(
        AuditLog::open(&path),
        Err(CertError::AuditTampered { .. })
    ));
    // Refusing did not overwrite the head, so the evidence is still there on the next attempt.
    assert_eq!(broken_at(&path), 1);
}

#[test]
fn an_emptied_log_is_detected_by_the_head_file() {
    let (_d, path) = log_with(3);
    std::fs::write(&path, b"").unwrap();
    assert_eq!(broken_at(&path), 1);
    assert!(matches!(
        AuditLog::open(&path),
        Err(CertError::AuditTampered { .. })
    ));
}

#[test]
fn a_log_emptied_under_a_running_process_refuses_the_next_append() {
    let (_d, path) = log_with(3);
    let log = AuditLog::open(&path).unwrap();
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        log.append(event("print"), datetime!(2025-07-02 10:00 UTC)),
        Err(CertError::AuditTampered { .. })
    ));
    assert_eq!(broken_at(&path), 1);
}

#[test]
fn a_fresh_log_with_no_head_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("audit.log");
    AuditLog::open(&path).unwrap();
    assert_eq!(audit_verify(&path).unwrap().records, 0);
}

#[test]
fn an_unterminated_last_line_is_detected() {
    let (_d, path) = log_with(2);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.trim_end_matches('\n')).unwrap();
    assert_eq!(broken_at(&path), 2);
    assert!(AuditLog::open(&path).is_err());
}

#[test]
fn intermediary_fields_are_optional_and_records_read_back() {
    // Records written without the intermediary fields (as before them) and with them share a
    // chain that verifies; reading selects and returns them whole.
    let (_dir, path) = log_with(2);
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("intermediary"));
    let log = AuditLog::open(&path).unwrap();
    log.append(
        AuditEvent {
            action: "certificate.refused".into(),
            actor: Actor {
                intermediary: Some("inca".into()),
                consent_ref: Some("DELEGA-1".into()),
                ..Actor::default()
            },
            reason: Some("pensione".into()),
            ..AuditEvent::default()
        },
        datetime!(2025-07-01 11:00 UTC),
    )
    .unwrap();
    assert_eq!(audit_verify(&path).unwrap().records, 3);
    let all = certificates::audit_records(&path, |_| true).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].event.actor.intermediary, None);
    let inca = certificates::audit_records(&path, |r| {
        r.event.actor.intermediary.as_deref() == Some("inca")
    })
    .unwrap();
    assert_eq!(inca.len(), 1);
    assert_eq!(inca[0].seq, 3);
    assert_eq!(inca[0].event.actor.consent_ref.as_deref(), Some("DELEGA-1"));
    // A record edited in place is refused by the reader too.
    let mut edited = lines(&path);
    edited[2] = edited[2].replace("pensione", "altro");
    write(&path, &edited);
    assert!(matches!(
        certificates::audit_records(&path, |_| true),
        Err(CertError::AuditTampered { line: 3, .. })
    ));
    // A missing log has no records.
    assert!(
        certificates::audit_records(&path.with_extension("none"), |_| true)
            .unwrap()
            .is_empty()
    );
}
