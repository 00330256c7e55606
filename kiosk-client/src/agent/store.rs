//! The print journal on disk: one JSON file per job under `<journal_dir>/jobs/`, the downloaded
//! PDFs under `<journal_dir>/pdf/`.
//!
//! Every write is durable before it returns: the data goes to a temporary file in the same folder,
//! which is flushed (`fsync`), renamed over the final name, and then the folder itself is flushed,
//! so after a crash or a power cut a file is either the old version or the new one, never a torn
//! one, and a rename that returned is not forgotten. Leftover temporary files are removed at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::journal::JobRecord;

/// The suffix of files being written.
const TMP_SUFFIX: &str = ".tmp";

/// The journal folder.
#[derive(Debug, Clone)]
pub struct JournalStore {
    jobs: PathBuf,
    pdf: PathBuf,
}

/// A file name for a job id: the id itself when it is short and made of `A-Z a-z 0-9 - _ .`
/// (server job ids are UUIDs), else the SHA-256 of the id in hex.
pub fn file_stem(job_id: &str) -> String {
    let plain = !job_id.is_empty()
        && job_id.len() <= 128
        && !job_id.starts_with('.')
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        job_id.to_owned()
    } else {
        hex::encode(Sha256::digest(job_id.as_bytes()))
    }
}

/// Writes `data` to `path` durably (temporary file, fsync, rename, fsync of the folder).
pub fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no folder"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Flushes a folder's entries (renames, creations, removals) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An exclusive lock on a journal folder (`<dir>/lock`, `flock`), held while an agent uses it, so
/// two agents never print from the same journal. The kernel releases it when the process ends.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
}

/// Takes the [`JournalLock`] of `dir` (creating the folder), or fails at once when another process
/// holds it.
pub fn lock_exclusive(dir: &Path) -> io::Result<JournalLock> {
    fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor owned by `file`, which the returned lock keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another sportello-kiosk-agent uses the journal {}",
                    dir.display()
                ),
            ));
        }
        return Err(error);
    }
    Ok(JournalLock { _file: file })
}

impl JournalStore {
    /// Opens (creating it if needed) the journal under `dir`, and removes temporary files left by
    /// an interrupted write.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let store = JournalStore {
            jobs: dir.join("jobs"),
            pdf: dir.join("pdf"),
        };
        for sub in [&store.jobs, &store.pdf] {
            fs::create_dir_all(sub)?;
            for entry in fs::read_dir(sub)? {
                let path = entry?.path();
                if path.to_string_lossy().ends_with(TMP_SUFFIX) {
                    tracing::info!(file = %path.display(), "journal: removing an unfinished write");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        sync_dir(dir)?;
        Ok(store)
    }

    fn record_path(&self, job_id: &str) -> PathBuf {
        self.jobs.join(format!("{}.json", file_stem(job_id)))
    }

    /// Where the PDF of `job_id` is kept.
    pub fn pdf_path(&self, job_id: &str) -> PathBuf {
        self.pdf.join(self.pdf_file(job_id))
    }

    /// The file name of the PDF of `job_id` inside `pdf/`.
    pub fn pdf_file(&self, job_id: &str) -> String {
        format!("{}.pdf", file_stem(job_id))
    }

    /// Every record, oldest first. Unreadable files are logged and skipped (they are left in place
    /// for inspection).
    pub fn load_all(&self) -> io::Result<Vec<JobRecord>> {
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.jobs)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|data| serde_json::from_slice(&data).map_err(|e| e.to_string()))
            {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "journal: unreadable record skipped")
                }
            }
        }
        records.sort_by(|a: &JobRecord, b: &JobRecord| {
            (a.received_at, &a.job_id).cmp(&(b.received_at, &b.job_id))
        });
        Ok(records)
    }

    /// Writes `record` durably.
    pub fn save(&self, record: &JobRecord) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_durably(&self.record_path(&record.job_id), &data)
    }

    /// Writes the PDF of `job_id` durably; returns its file name inside `pdf/`.
    pub fn save_pdf(&self, job_id: &str, pdf: &[u8]) -> io::Result<String> {
        write_durably(&self.pdf_path(job_id), pdf)?;
        Ok(self.pdf_file(job_id))
    }

    /// Deletes the PDF of `job_id`, if present.
    pub fn remove_pdf(&self, job_id: &str) -> io::Result<()> {
        match fs::remove_file(self.pdf_path(job_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes the record of `job_id` and its PDF.
    pub fn remove(&self, job_id: &str) -> io::Result<()> {
        self.remove_pdf(job_id)?;
        match fs::remove_file(self.record_path(job_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(&self.jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_is_locked_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_exclusive(dir.path()).unwrap();
        let second = lock_exclusive(dir.path()).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::WouldBlock);
        assert!(second.to_string().contains("another sportello-kiosk-agent"));
        drop(lock);
        assert!(lock_exclusive(dir.path()).is_ok());
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("3f2b8c1e-6d4a"), "3f2b8c1e-6d4a");
        for bad in ["", "../x", "a/b", ".hidden", "é"] {
            let stem = file_stem(bad);
            assert_eq!(stem.len(), 64, "{bad:?}");
            assert!(stem.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
