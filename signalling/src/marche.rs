//! Marche da bollo used once across every channel.
//!
//! A certificate whose bollo is paid with a marca carries the marca's 14-digit identifier; the
//! same marca must never pay for a second certificate, whether it comes through a call, the web
//! or the command line. A use is claimed in two places before the certificate is issued, and
//! released if issuing then fails:
//!
//! - a file `<data dir>/marche/<id>.json`, created only if absent: durable across restarts, and
//!   shared by every process on the data directory (the nodes of a cluster share it for the issued
//!   documents, and the command line uses it too);
//! - a shared record (namespace [`NS_MARCA`]) written only if absent: atomic across the nodes of a
//!   Redis-backed cluster even while a file system is slow to show another node's file.
//!
//! Either one being taken refuses the marca with `conflict`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certificates::Marca;
use queue::{AnyShared, Shared, Tenant, Time};
use serde::{Deserialize, Serialize};

/// The shared-records namespace of used marche.
pub const NS_MARCA: &str = "marche";
/// How long the shared record is kept. The file is kept for good; the record outlives by far any
/// marca still in circulation (the bollo's limitation period is three years).
pub const MARCA_KEEP: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// Who used a marca, kept beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarcaUse {
    /// The marca's identifier.
    pub id: String,
    /// The date printed on the marca, `YYYY-MM-DD`.
    pub date: String,
    /// `kiosk`, `web`, `intermediary` or `cli`.
    pub channel: String,
    /// Who asked: the operator, the signed-in citizen, the intermediary, the command line.
    pub actor: String,
    /// When it was claimed, Unix seconds.
    pub at: i64,
}

impl MarcaUse {
    /// A use of `marca` claimed now.
    pub fn new(marca: &Marca, channel: &str, actor: &str) -> MarcaUse {
        MarcaUse {
            id: marca.id.clone(),
            date: certificates::dates::iso(marca.date),
            channel: channel.into(),
            actor: actor.into(),
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    }
}

/// The folder of used marche under a data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("marche")
}

fn file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Claims `marca` in the folder: `Ok(false)` when it was already used. The file is written whole
/// and synced before this returns `true`.
pub fn claim_file(dir: &Path, marca: &MarcaUse) -> io::Result<bool> {
    use std::io::Write;
    // The identifier is 14 digits (checked by `Marca::new`), so it is a safe file name.
    if marca.id.len() != 14 || !marca.id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(io::Error::other("a marca identifier is 14 digits"));
    }
    crate::datadir::ensure_dir(dir)?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file(dir, &marca.id))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    f.write_all(&serde_json::to_vec(marca).map_err(io::Error::other)?)?;
    f.sync_all()?;
    Ok(true)
}

/// Releases a claim whose certificate could not be issued.
pub fn release_file(dir: &Path, id: &str) -> io::Result<()> {
    match std::fs::remove_file(file(dir, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Who used a marca, if anyone did (read from the folder).
pub fn used(dir: &Path, id: &str) -> Option<MarcaUse> {
    let bytes = std::fs::read(file(dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why a marca could not be claimed.
#[derive(Debug)]
pub enum ClaimError {
    /// Used before, by this use.
    Used(Option<MarcaUse>),
    /// The folder or the store failed.
    Unavailable(String),
}

/// Claims `marca` in the folder and in the shared records (see the module docs).
pub async fn claim(
    dir: &Path,
    shared: &AnyShared,
    tenant: &Tenant,
    marca: &MarcaUse,
) -> Result<(), ClaimError> {
    let text = serde_json::to_string(marca).map_err(|e| ClaimError::Unavailable(e.to_string()))?;
    let (d, m) = (dir.to_owned(), marca.clone());
    let filed = tokio::task::spawn_blocking(move || claim_file(&d, &m))
        .await
        .map_err(|e| ClaimError::Unavailable(e.to_string()))?
        .map_err(|e| ClaimError::Unavailable(format!("marche da bollo: {e}")))?;
    if !filed {
        return Err(ClaimError::Used(used(dir, &marca.id)));
    }
    match shared
        .put_new(tenant, NS_MARCA, &marca.id, &text, MARCA_KEEP, Time::now())
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            // Another node took it and its file is not visible here: ours goes.
            let _ = release_file(dir, &marca.id);
            let earlier = shared
                .get(tenant, NS_MARCA, &marca.id, Time::now())
                .await
                .ok()
                .flatten()
                .and_then(|t| serde_json::from_str(&t).ok());
            Err(ClaimError::Used(earlier))
        }
        Err(e) => {
            let _ = release_file(dir, &marca.id);
            Err(ClaimError::Unavailable(e.to_string()))
        }
    }
}

/// Releases a claim made by [`claim`] (the certificate was not issued).
pub async fn release(dir: &Path, shared: &AnyShared, tenant: &Tenant, id: &str) {
    if let Err(e) = shared.delete(tenant, NS_MARCA, id, Time::now()).await {
        tracing::warn!(marca = id, error = %e, "could not release a marca's shared record");
    }
    if let Err(e) = release_file(dir, id) {
        tracing::warn!(marca = id, error = %e, "could not release a marca's file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_of(id: &str) -> MarcaUse {
        MarcaUse {
            id: id.into(),
            date: "2026-12-01".into(),
            channel: "cli".into(),
            actor: "test".into(),
            at: 0,
        }
    }

    #[test]
    fn a_marca_is_claimed_once_and_can_be_released() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir(tmp.path());
        assert!(claim_file(&dir, &use_of("01234567890123")).unwrap());
        assert!(!claim_file(&dir, &use_of("01234567890123")).unwrap());
        assert_eq!(
            used(&dir, "01234567890123").map(|u| u.channel),
            Some("cli".into())
        );
        release_file(&dir, "01234567890123").unwrap();
        assert!(claim_file(&dir, &use_of("01234567890123")).unwrap());
        // Anything but 14 digits never becomes a file name.
        assert!(claim_file(&dir, &use_of("../../etc/x")).is_err());
        assert!(claim_file(&dir, &use_of("0123")).is_err());
    }

    #[tokio::test]
    async fn the_shared_record_refuses_a_marca_another_node_used() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = AnyShared::Memory(queue::MemoryShared::new());
        let tenant = Tenant::new("t").unwrap();
        let m = use_of("11111111111111");
        // Node A with its own folder, node B with another: the shared record still catches it.
        claim(&tmp.path().join("a"), &shared, &tenant, &m)
            .await
            .unwrap();
        let b = tmp.path().join("b");
        match claim(&b, &shared, &tenant, &m).await {
            Err(ClaimError::Used(Some(u))) => assert_eq!(u.id, m.id),
            other => panic!("expected used, got {other:?}"),
        }
        // B's folder does not keep a claim it lost.
        assert!(used(&b, &m.id).is_none());
        release(&tmp.path().join("a"), &shared, &tenant, &m.id).await;
        claim(&b, &shared, &tenant, &m).await.unwrap();
    }
}
