//! The append-only, hash-chained audit log.
//!
//! One JSON object per line: `{"record":{...},"hash":"<hex>"}`. The hash is the SHA-256 of the exact bytes
//! of the `record` value as written, and each record holds its sequence number and the previous record's
//! hash (`prev`, 64 zeros for the first). Hashing the written bytes, not a re-serialization, means
//! verification never depends on how a JSON library orders or formats fields.
//!
//! [`audit_verify`] recomputes the chain: an edited record changes its hash, a deleted or reordered one
//! breaks `seq` and `prev`. Cutting records off the end leaves a valid shorter chain, so the log keeps a
//! head file beside it (`<log>.head`, the last `seq` and hash, rewritten atomically after each append)
//! and verification compares the two. Anchoring the head hash elsewhere (printing it in a daily report)
//! is what makes a rewrite of both files detectable too.
//!
//! Several processes may share one data directory, so the chain position is never trusted from memory:
//! each append takes an exclusive advisory lock (`flock`) on the log, re-reads the last record under it,
//! appends, fsyncs and only then rewrites the head. A crash between the fsynced log line and the head's
//! rename leaves the log exactly one valid record ahead of the head; that state is accepted (and the head
//! repaired on open), while anything further apart, or a missing or emptied log whose head names records,
//! is reported as tampering.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::CertError;

/// The hash that precedes the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Actor {
    /// Operator user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Kiosk id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kiosk: Option<String>,
    /// Web user (their fiscal code or login id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_user: Option<String>,
    /// Command-line user or tool, for training and tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    /// The intermediary (patronato, bank, employer) acting on the web API, by its account name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediary: Option<String>,
    /// The reference of the citizen's signed delegation under which the intermediary acts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_ref: Option<String>,
}

/// An event to record. It holds no scans and no video, only identifiers and digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEvent {
    /// What happened: "certificate.issued", "identification", "print", "verification"…
    pub action: String,
    /// Who did it.
    pub actor: Actor,
    /// For whom: the fiscal code of the certificate's subject or of the identified citizen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How the requester was identified (cie, cns, pec, paper document, spid…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identification: Option<String>,
    /// The call, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// Certificate kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Document id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// SHA-256 of the document (PDF bytes), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The stated reason, when one is required or given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Further details (fees, exemption, as-of date…), as flat text pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// Hash of the previous record.
    pub prev: String,
    /// The event.
    pub event: AuditEvent,
}

#[derive(Serialize)]
struct LineOut<'a> {
    record: &'a RawValue,
    hash: &'a str,
}

#[derive(Deserialize)]
struct LineIn<'a> {
    #[serde(borrow)]
    record: &'a RawValue,
    hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    /// Number of records.
    pub records: u64,
    /// Hash of the last record (the value to anchor elsewhere).
    pub head: String,
}

/// An open audit log. Appends are serialized across threads by a mutex and across processes (and across
/// several `AuditLog`s on the same path) by a file lock, and flushed to disk before returning.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// The last record written through this handle, for callers' diagnostics only: the chain position used
    /// for appends is always re-read from the file under the lock, since other handles may have appended.
    state: Mutex<(u64, String)>,
}

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// Holds an advisory `flock` on a file until dropped. `flock` belongs to the open file description, so each
/// critical section locks a freshly opened descriptor; two descriptors in one process exclude each other
/// just as two processes do.
pub(crate) struct FileLock<'a> {
    #[cfg_attr(not(unix), allow(dead_code))]
    file: &'a File,
}

impl<'a> FileLock<'a> {
    /// Blocks until an exclusive lock is held.
    pub(crate) fn exclusive(file: &'a File, path: &Path) -> Result<Self, CertError> {
        Self::take(file, path, true)
    }

    /// Blocks until a shared lock is held (readers that must not see a half-written append).
    pub(crate) fn shared(file: &'a File, path: &Path) -> Result<Self, CertError> {
        Self::take(file, path, false)
    }

    #[cfg(unix)]
    fn take(file: &'a File, path: &Path, exclusive: bool) -> Result<Self, CertError> {
        use std::os::unix::io::AsRawFd as _;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: the descriptor is valid for the lifetime of `file`, which outlives the lock.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(FileLock { file });
            }
            let err = std::io::Error::last_os_error();
            // A signal may interrupt the wait; the lock is simply requested again.
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(CertError::io(path, err));
            }
        }
    }

    #[cfg(not(unix))]
    fn take(file: &'a File, _path: &Path, _exclusive: bool) -> Result<Self, CertError> {
        // Shared data directories are supported on Unix only; elsewhere the in-process mutex is all there is.
        Ok(FileLock { file })
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd as _;
            // SAFETY: the descriptor is still open (borrowed). Closing it would release the lock anyway;
            // unlocking explicitly keeps the critical section no longer than the guard's scope.
            unsafe {
                libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

fn open_for_append(path: &Path) -> Result<File, CertError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| CertError::io(path, e))
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, verifying the existing chain first so that new records never
    /// extend a tampered log. A log one valid record ahead of its head (a crash before the head was
    /// rewritten) is accepted and the head repaired.
    pub fn open(path: &Path) -> Result<Self, CertError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;
            }
        }
        // Creating the file first means a missing log and an empty one are checked the same way (against
        // the head), and the exclusive lock keeps other writers out while the head may be repaired.
        let file = open_for_append(path)?;
        let _lock = FileLock::exclusive(&file, path)?;
        let checked = verify_locked(path, &file)?;
        if checked.head_behind {
            write_head(
                path,
                &Head {
                    seq: checked.summary.records,
                    hash: checked.summary.head.clone(),
                },
            )?;
        }
        Ok(AuditLog {
            path: path.to_owned(),
            state: Mutex::new((checked.summary.records, checked.summary.head)),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event and returns the stored record. On error nothing has been recorded: a partly
    /// written line is cut off again.
    pub fn append(&self, event: AuditEvent, now: OffsetDateTime) -> Result<AuditRecord, CertError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let file = open_for_append(&self.path)?;
        let _lock = FileLock::exclusive(&file, &self.path)?;
        let len = file
            .metadata()
            .map_err(|e| CertError::io(&self.path, e))?
            .len();
        let (seq, prev) = tail_position(&self.path, &file, len)?;
        let record = AuditRecord {
            seq: seq + 1,
            time: crate::dates::rfc3339(now.to_offset(time::UtcOffset::UTC)),
            prev,
            event,
        };
        let invalid = |e: serde_json::Error| CertError::InvalidData {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let body = serde_json::to_string(&record).map_err(invalid)?;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let raw = RawValue::from_string(body).map_err(invalid)?;
        let line = serde_json::to_string(&LineOut {
            record: &raw,
            hash: &hash,
        })
        .map_err(invalid)?;
        let mut writer = &file;
        if let Err(e) = writer
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| file.sync_data())
        {
            rollback(&file, len);
            return Err(CertError::io(&self.path, e));
        }
        match write_head(
            &self.path,
            &Head {
                seq: record.seq,
                hash: hash.clone(),
            },
        ) {
            Ok(()) => {}
            Err(HeadError::BeforeRename(e)) => {
                // The head still names the previous record, so removing the line restores a consistent
                // pair and the caller's error means "not recorded".
                rollback(&file, len);
                return Err(e);
            }
            // The head was renamed into place but the directory could not be fsynced. Both the log line
            // (fsynced) and the visible head name the new record, and if the rename is lost in a crash the
            // log is one record ahead, which open accepts: the record is committed, so report success.
            Err(HeadError::AfterRename(_)) => {}
        }
        *guard = (record.seq, hash);
        Ok(record)
    }
}

/// Cuts the log back to `len` after a failed append. Best effort: if this fails too, the original error is
/// the one worth reporting, and a torn last line is caught by verification on the next open.
fn rollback(file: &File, len: u64) {
    if file.set_len(len).is_ok() {
        let _ = file.sync_data();
    }
}

/// The `(seq, hash)` of the last record of the locked log of length `len`, read from the end so that an
/// append costs the same however long the log is. Also checks that record against the head file, which
/// catches a log wiped or swapped under a running process without re-verifying the whole chain.
fn tail_position(path: &Path, file: &File, len: u64) -> Result<(u64, String), CertError> {
    let head = read_head(path, 0)?;
    if len == 0 {
        return match head {
            Some(h) if h.seq > 0 => Err(wiped(&h)),
            _ => Ok((0, GENESIS.to_owned())),
        };
    }
    let line = last_line(path, file, len)?;
    let at = head.as_ref().map_or(1, |h| h.seq as usize + 1);
    let (record, hash) = parse_line(&line, at)?;
    let consistent = match &head {
        Some(h) => {
            (h.seq == record.seq && h.hash == hash)
                || (h.seq + 1 == record.seq && h.hash == record.prev)
        }
        None => record.seq == 1,
    };
    if !consistent {
        return Err(CertError::AuditTampered {
            line: at,
            reason: format!(
                "l'ultimo record ({}) non corrisponde al file di testa",
                record.seq
            ),
        });
    }
    Ok((record.seq, hash))
}

/// The last line of the log without its newline. The log must end with a newline: appending after an
/// unterminated line would glue two records together.
fn last_line(path: &Path, mut file: &File, len: u64) -> Result<String, CertError> {
    const CHUNK: u64 = 4096;
    let io = |e| CertError::io(path, e);
    let mut tail: Vec<u8> = Vec::new();
    let mut end = len;
    loop {
        let start = end.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.read_exact(&mut chunk).map_err(io)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        end = start;
        if tail.last() != Some(&b'\n') {
            return Err(CertError::AuditTampered {
                line: 0,
                reason: "ultima riga incompleta".into(),
            });
        }
        let body = &tail[..tail.len() - 1];
        if let Some(nl) = body.iter().rposition(|&b| b == b'\n') {
            return String::from_utf8(body[nl + 1..].to_vec()).map_err(|_| {
                CertError::AuditTampered {
                    line: 0,
                    reason: "riga non leggibile".into(),
                }
            });
        }
        if start == 0 {
            return String::from_utf8(body.to_vec()).map_err(|_| CertError::AuditTampered {
                line: 1,
                reason: "riga non leggibile".into(),
            });
        }
    }
}

/// Parses one log line and checks its hash; `n` is its line number for error messages.
fn parse_line(line: &str, n: usize) -> Result<(AuditRecord, String), CertError> {
    let broken = |reason: &str| CertError::AuditTampered {
        line: n,
        reason: reason.into(),
    };
    let parsed: LineIn<'_> = serde_json::from_str(line).map_err(|_| broken("riga non valida"))?;
    let body = parsed.record.get();
    if hex::encode(Sha256::digest(body.as_bytes())) != parsed.hash {
        return Err(broken("contenuto modificato (hash non corrispondente)"));
    }
    let record: AuditRecord =
        serde_json::from_str(body).map_err(|_| broken("record non valido"))?;
    Ok((record, parsed.hash))
}

fn wiped(head: &Head) -> CertError {
    CertError::AuditTampered {
        line: 1,
        reason: format!(
            "il registro è vuoto o mancante ma la testa indica il record {}",
            head.seq
        ),
    }
}

/// The head file, or `None` if there is none. `records` is only used to place a parse error.
fn read_head(path: &Path, records: u64) -> Result<Option<Head>, CertError> {
    let head_file = head_path(path);
    match std::fs::read_to_string(&head_file) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| CertError::AuditTampered {
                line: records as usize,
                reason: "file di testa non valido".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CertError::io(head_file, e)),
    }
}

/// Why rewriting the head failed: before the rename the old head is still in place; after it, the new one.
enum HeadError {
    BeforeRename(CertError),
    AfterRename(CertError),
}

impl From<HeadError> for CertError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::BeforeRename(e) | HeadError::AfterRename(e) => e,
        }
    }
}

/// Replaces the head file atomically and durably: the temporary file is fsynced before the rename (or a
/// crash could leave an empty head under the final name), and the directory after it (or the rename
/// itself could be lost).
fn write_head(path: &Path, head: &Head) -> Result<(), HeadError> {
    let target = head_path(path);
    let tmp = {
        let mut p = target.as_os_str().to_owned();
        p.push(".tmp");
        PathBuf::from(p)
    };
    let text = serde_json::to_string(head).unwrap_or_default();
    let before = |p: &Path| {
        let p = p.to_owned();
        move |e| HeadError::BeforeRename(CertError::io(p, e))
    };
    let mut f = File::create(&tmp).map_err(before(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(before(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &target).map_err(before(&target))?;
    sync_dir(&target).map_err(HeadError::AfterRename)
}

/// Fsyncs the directory holding `path`, making a rename in it durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), CertError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CertError::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for fsync outside Unix; the rename is as durable as the OS makes it.
        let _ = dir;
        Ok(())
    }
}

/// The outcome of a chain check.
struct Checked {
    summary: AuditSummary,
    /// The log is one valid record ahead of the head file (a crash before the head was rewritten).
    head_behind: bool,
}

/// Verifies the whole chain of the log at `path` and its head file. Any edit, deletion, insertion or
/// reordering yields [`CertError::AuditTampered`] with the first broken line; so does a missing or empty log
/// whose head file names records. A log exactly one valid record ahead of its head is accepted: that is
/// what a crash between writing a record and rewriting the head leaves.
pub fn audit_verify(path: &Path) -> Result<AuditSummary, CertError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match read_head(path, 0)? {
                Some(h) if h.seq > 0 => Err(wiped(&h)),
                _ => Err(CertError::io(path, e)),
            };
        }
        Err(e) => return Err(CertError::io(path, e)),
    };
    // A shared lock keeps a concurrent append from being seen half-written.
    let _lock = FileLock::shared(&file, path)?;
    verify_locked(path, &file).map(|c| c.summary)
}

/// Reads the records of the log at `path` that `keep` selects, in order, each checked against its
/// own hash (for reports; [`audit_verify`] checks the chain). A missing log has no records.
pub fn audit_records(
    path: &Path,
    mut keep: impl FnMut(&AuditRecord) -> bool,
) -> Result<Vec<AuditRecord>, CertError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(CertError::io(path, e)),
    };
    // A shared lock keeps a concurrent append from being seen half-written.
    let _lock = FileLock::shared(&file, path)?;
    let mut kept = Vec::new();
    for (i, line) in BufReader::new(&file).lines().enumerate() {
        let line = line.map_err(|e| CertError::io(path, e))?;
        let (record, _) = parse_line(&line, i + 1)?;
        if keep(&record) {
            kept.push(record);
        }
    }
    Ok(kept)
}

fn verify_locked(path: &Path, file: &File) -> Result<Checked, CertError> {
    let mut reader = BufReader::new(file);
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| CertError::io(path, e))?;
    let mut prev = GENESIS.to_owned();
    let mut before_last = GENESIS.to_owned();
    let mut seq = 0u64;
    let mut buf = Vec::new();
    for n in 1usize.. {
        buf.clear();
        let broken = |reason: &str| CertError::AuditTampered {
            line: n,
            reason: reason.into(),
        };
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|_| broken("riga non leggibile"))?;
        if read == 0 {
            break;
        }
        // An unterminated last line would have the next append glued onto it.
        if buf.pop() != Some(b'\n') {
            return Err(broken("ultima riga incompleta"));
        }
        let line = std::str::from_utf8(&buf).map_err(|_| broken("riga non leggibile"))?;
        let (record, hash) = parse_line(line, n)?;
        if record.seq != seq + 1 {
            return Err(broken(&format!(
                "numero di sequenza {} invece di {}",
                record.seq,
                seq + 1
            )));
        }
        if record.prev != prev {
            return Err(broken("catena interrotta: record mancante o spostato"));
        }
        seq = record.seq;
        before_last = std::mem::replace(&mut prev, hash);
    }
    let head = read_head(path, seq)?;
    let head_behind = match &head {
        Some(h) if h.seq == seq && h.hash == prev => false,
        Some(h) if seq > 0 && h.seq == seq - 1 && h.hash == before_last => true,
        Some(h) if seq == 0 => return Err(wiped(h)),
        Some(h) => {
            return Err(CertError::AuditTampered {
                line: seq as usize + 1,
                reason: format!(
                    "il registro termina al record {seq} ma la testa indica il record {}",
                    h.seq
                ),
            })
        }
        None if seq <= 1 => seq == 1,
        None => {
            return Err(CertError::AuditTampered {
                line: seq as usize,
                reason: "file di testa mancante".into(),
            })
        }
    };
    Ok(Checked {
        summary: AuditSummary {
            records: seq,
            head: prev,
        },
        head_behind,
    })
}
