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

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
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

/// An open audit log. Appends are serialized by a mutex and flushed to disk before returning.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    state: Mutex<(File, u64, String)>,
}

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, verifying the existing chain first so that new records never
    /// extend a tampered log.
    pub fn open(path: &Path) -> Result<Self, CertError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;
            }
        }
        let summary = if path.exists() {
            audit_verify(path)?
        } else {
            AuditSummary {
                records: 0,
                head: GENESIS.into(),
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| CertError::io(path, e))?;
        Ok(AuditLog {
            path: path.to_owned(),
            state: Mutex::new((file, summary.records, summary.head)),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event and returns the stored record.
    pub fn append(&self, event: AuditEvent, now: OffsetDateTime) -> Result<AuditRecord, CertError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (file, seq, prev) = &mut *guard;
        let record = AuditRecord {
            seq: *seq + 1,
            time: crate::dates::rfc3339(now.to_offset(time::UtcOffset::UTC)),
            prev: prev.clone(),
            event,
        };
        let body = serde_json::to_string(&record).map_err(|e| CertError::InvalidData {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let raw = RawValue::from_string(body).map_err(|e| CertError::InvalidData {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let line = serde_json::to_string(&LineOut {
            record: &raw,
            hash: &hash,
        })
        .map_err(|e| CertError::InvalidData {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| CertError::io(&self.path, e))?;
        *seq = record.seq;
        *prev = hash.clone();
        write_head(
            &self.path,
            &Head {
                seq: record.seq,
                hash,
            },
        )?;
        Ok(record)
    }
}

fn write_head(path: &Path, head: &Head) -> Result<(), CertError> {
    let target = head_path(path);
    let tmp = {
        let mut p = target.as_os_str().to_owned();
        p.push(".tmp");
        PathBuf::from(p)
    };
    let text = serde_json::to_string(head).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(|e| CertError::io(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| CertError::io(&target, e))
}

/// Verifies the whole chain of the log at `path` and its head file. Any edit, deletion, insertion or
/// reordering yields [`CertError::AuditTampered`] with the first broken line.
pub fn audit_verify(path: &Path) -> Result<AuditSummary, CertError> {
    let file = File::open(path).map_err(|e| CertError::io(path, e))?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let broken = |reason: &str| CertError::AuditTampered {
            line: n,
            reason: reason.into(),
        };
        let line = line.map_err(|_| broken("riga non leggibile"))?;
        let parsed: LineIn<'_> =
            serde_json::from_str(&line).map_err(|_| broken("riga non valida"))?;
        let body = parsed.record.get();
        if hex::encode(Sha256::digest(body.as_bytes())) != parsed.hash {
            return Err(broken("contenuto modificato (hash non corrispondente)"));
        }
        let record: AuditRecord =
            serde_json::from_str(body).map_err(|_| broken("record non valido"))?;
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
        prev = parsed.hash;
    }
    let head_file = head_path(path);
    match std::fs::read_to_string(&head_file) {
        Ok(text) => {
            let head: Head = serde_json::from_str(&text).map_err(|_| CertError::AuditTampered {
                line: seq as usize,
                reason: "file di testa non valido".into(),
            })?;
            if head.seq != seq || head.hash != prev {
                return Err(CertError::AuditTampered {
                    line: seq as usize + 1,
                    reason: format!(
                        "il registro termina al record {seq} ma la testa indica il record {}",
                        head.seq
                    ),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && seq == 0 => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CertError::AuditTampered {
                line: seq as usize,
                reason: "file di testa mancante".into(),
            })
        }
        Err(e) => return Err(CertError::io(head_file, e)),
    }
    Ok(AuditSummary {
        records: seq,
        head: prev,
    })
}
