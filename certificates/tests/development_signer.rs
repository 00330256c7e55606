//! The development signer survives an interrupted first start: a lone key or certificate is replaced by a
//! new, consistent pair, and the key stays private.

use certificates::signer::Signer;
use time::macros::datetime;

const NOW: time::OffsetDateTime = datetime!(2025-07-01 10:00 UTC);

fn paths(data: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = data.join("signer");
    (
        dir.join("development-key.pem"),
        dir.join("development-certificate.pem"),
    )
}

fn assert_consistent_pair(data: &std::path::Path) -> Signer {
    let (key, cert) = paths(data);
    // `from_files` checks that the key matches the certificate.
    let signer = Signer::from_files(&key, &cert).unwrap();
    assert!(signer.is_development());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the development key must not be readable by others"
        );
    }
    signer
}

#[test]
fn the_development_signer_is_created_once_and_reloaded() {
    let data = tempfile::tempdir().unwrap();
    let first = Signer::development(data.path(), NOW).unwrap();
    let again = Signer::development(data.path(), NOW).unwrap();
    assert_eq!(first.kid(), again.kid());
    assert_eq!(assert_consistent_pair(data.path()).kid(), first.kid());
}

#[test]
fn a_lone_key_from_an_interrupted_start_is_replaced_by_a_pair() {
    let data = tempfile::tempdir().unwrap();
    let old = Signer::development(data.path(), NOW).unwrap();
    let (_key, cert) = paths(data.path());
    std::fs::remove_file(&cert).unwrap();
    let new = Signer::development(data.path(), NOW).unwrap();
    let on_disk = assert_consistent_pair(data.path());
    assert_eq!(on_disk.kid(), new.kid());
    assert_ne!(new.kid(), old.kid(), "a new pair, not the orphaned key");
}

#[test]
fn a_lone_certificate_is_replaced_by_a_pair() {
    let data = tempfile::tempdir().unwrap();
    Signer::development(data.path(), NOW).unwrap();
    let (key, _cert) = paths(data.path());
    std::fs::remove_file(&key).unwrap();
    let new = Signer::development(data.path(), NOW).unwrap();
    assert_eq!(assert_consistent_pair(data.path()).kid(), new.kid());
}

#[test]
fn leftover_temporary_files_do_not_block_generation() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("signer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("development-key.pem.tmp"), b"half").unwrap();
    std::fs::write(dir.join("development-certificate.pem.tmp"), b"half").unwrap();
    std::fs::write(dir.join("development-key.pem"), b"orphan").unwrap();
    let s = Signer::development(data.path(), NOW).unwrap();
    assert_eq!(assert_consistent_pair(data.path()).kid(), s.kid());
}

#[test]
fn concurrent_first_starts_agree_on_one_pair() {
    let data = tempfile::tempdir().unwrap();
    let kids: Vec<[u8; 8]> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Signer::development(data.path(), NOW).unwrap().kid()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let on_disk = assert_consistent_pair(data.path()).kid();
    assert!(
        kids.iter().all(|k| *k == on_disk),
        "{kids:?} vs {on_disk:?}"
    );
}
