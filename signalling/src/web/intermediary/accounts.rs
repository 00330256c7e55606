//! Intermediary accounts: `DATA_DIR/intermediaries.json` (mode 0600), written whole under a lock
//! by `sportello intermediary add|revoke`, read by every node.
//!
//! An API key is 32 random bytes (`spk_` and 64 hex digits), printed once; only its SHA-256 is
//! stored. A plain hash suffices for a key of 256 random bits (no dictionary or brute force
//! reaches it, so a slow password hash would add nothing but CPU per request), and it lets a
//! request find its account by the hash directly.
//!
//! The server stats the file on every request and re-reads it when its inode, size or
//! modification time changed (every write replaces it by a rename), so a revocation holds on
//! every node sharing the data directory from its next request.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file name under the data directory.
pub const FILE: &str = "intermediaries.json";
/// The scopes an intermediary may be given: `certificates` (request certificates and download
/// them), `audit` (read its own audited requests, to reconcile them with its records).
pub const SCOPES: &[&str] = &["certificates", "audit"];
/// The daily quota when `--quota-per-day` is not given.
pub const DEFAULT_QUOTA_PER_DAY: u32 = 1000;
/// The prefix of every API key.
pub const KEY_PREFIX: &str = "spk_";

/// One intermediary (patronato, bank, employer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intermediary {
    /// Its name, unique: letters, digits, `-`, `_` and `.`, up to 64.
    pub name: String,
    /// SHA-256 of its API key, hex.
    pub key_sha256: String,
    /// What it may do (`certificates`).
    pub scopes: Vec<String>,
    /// Requests it may make per day (Europe/Rome).
    pub quota_per_day: u32,
    /// When it was added, RFC 3339.
    pub created_at: String,
    /// When it was revoked, RFC 3339; a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl Intermediary {
    /// Whether it holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountsFile {
    intermediaries: Vec<Intermediary>,
}

/// The accounts file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// SHA-256 of a key, hex.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks a name: 1–64 of letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read(path: &Path) -> io::Result<AccountsFile> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AccountsFile::default()),
        Err(e) => Err(e),
    }
}

/// Changes the file under its lock: read, `change`, write whole (0600, fsync, rename).
fn update<T>(
    data_dir: &Path,
    change: impl FnOnce(&mut AccountsFile) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    crate::datadir::ensure_dir(data_dir)?;
    let file = path(data_dir);
    let _lock = crate::datadir::lock(&data_dir.join(".intermediaries.lock"))?;
    let mut accounts = read(&file)?;
    let out = change(&mut accounts)?;
    crate::datadir::replace(&file, &serde_json::to_vec_pretty(&accounts)?)?;
    Ok(out)
}

/// Adds an intermediary and returns its new API key (shown once; only its hash is kept).
pub fn add(
    data_dir: &Path,
    name: &str,
    scopes: &[String],
    quota_per_day: Option<u32>,
    now: time::OffsetDateTime,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        valid_name(name),
        "the name is 1 to 64 letters, digits, '-', '_' or '.'"
    );
    anyhow::ensure!(!scopes.is_empty(), "give at least one --scopes");
    for s in scopes {
        anyhow::ensure!(
            SCOPES.contains(&s.as_str()),
            "unknown scope {s:?} (known: {})",
            SCOPES.join(", ")
        );
    }
    let quota = quota_per_day.unwrap_or(DEFAULT_QUOTA_PER_DAY);
    anyhow::ensure!(quota >= 1, "--quota-per-day is at least 1");
    let key = new_key();
    let hash = key_hash(&key);
    update(data_dir, |accounts| {
        anyhow::ensure!(
            !accounts.intermediaries.iter().any(|i| i.name == name),
            "an intermediary named {name:?} exists already (names are never reused, even revoked)"
        );
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        accounts.intermediaries.push(Intermediary {
            name: name.to_owned(),
            key_sha256: hash,
            scopes,
            quota_per_day: quota,
            created_at: certificates::dates::rfc3339(now),
            revoked_at: None,
        });
        Ok(())
    })?;
    Ok(key)
}

/// Every intermediary, revoked ones too, in the order they were added.
pub fn list(data_dir: &Path) -> anyhow::Result<Vec<Intermediary>> {
    Ok(read(&path(data_dir))?.intermediaries)
}

/// Revokes an intermediary's key; its record stays for the audit trail.
pub fn revoke(data_dir: &Path, name: &str, now: time::OffsetDateTime) -> anyhow::Result<()> {
    update(data_dir, |accounts| {
        let found = accounts
            .intermediaries
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| anyhow::anyhow!("no intermediary named {name:?}"))?;
        anyhow::ensure!(found.revoked_at.is_none(), "{name:?} is already revoked");
        found.revoked_at = Some(certificates::dates::rfc3339(now));
        Ok(())
    })
}

fn new_key() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// What identifies a version of the file: a rewrite (rename) changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            Ok(Some(Stamp {
                inode,
                len: m.len(),
                modified: m.modified().ok(),
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

type Cached = (Option<Stamp>, Arc<Vec<Intermediary>>);

/// The accounts as last read, per file, shared by the process's requests.
fn cache() -> &'static Mutex<HashMap<PathBuf, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The current accounts of `data_dir`: one `stat` per call, a re-read when the file changed.
pub fn current(data_dir: &Path) -> io::Result<Arc<Vec<Intermediary>>> {
    let file = path(data_dir);
    let now = stamp(&file)?;
    if let Some((seen, accounts)) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(&file) {
        if *seen == now {
            return Ok(accounts.clone());
        }
    }
    let accounts = Arc::new(read(&file)?.intermediaries);
    cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(file, (now, accounts.clone()));
    Ok(accounts)
}

/// The live (not revoked) intermediary whose key is `key`.
pub fn find_key(accounts: &[Intermediary], key: &str) -> Option<Intermediary> {
    if !key.starts_with(KEY_PREFIX) {
        return None;
    }
    let hash = key_hash(key);
    accounts
        .iter()
        .find(|i| i.key_sha256 == hash && i.revoked_at.is_none())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_revoke_and_find_by_key() {
        let tmp = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let key = add(
            tmp.path(),
            "inca-parma",
            &["certificates".into()],
            None,
            now,
        )
        .unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        let text = std::fs::read_to_string(path(tmp.path())).unwrap();
        assert!(!text.contains(&key), "the key itself is never stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(tmp.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let found = find_key(&current(tmp.path()).unwrap(), &key).unwrap();
        assert_eq!(found.name, "inca-parma");
        assert_eq!(found.quota_per_day, DEFAULT_QUOTA_PER_DAY);
        assert!(find_key(&current(tmp.path()).unwrap(), "spk_0000").is_none());
        assert!(add(
            tmp.path(),
            "inca-parma",
            &["certificates".into()],
            None,
            now
        )
        .is_err());
        assert!(add(tmp.path(), "x", &["admin".into()], None, now).is_err());
        assert!(add(tmp.path(), "../x", &["certificates".into()], None, now).is_err());
        revoke(tmp.path(), "inca-parma", now).unwrap();
        // The cached copy notices the rewrite.
        assert!(find_key(&current(tmp.path()).unwrap(), &key).is_none());
        assert!(revoke(tmp.path(), "inca-parma", now).is_err());
        assert!(revoke(tmp.path(), "nobody", now).is_err());
        assert_eq!(list(tmp.path()).unwrap().len(), 1);
    }
}
