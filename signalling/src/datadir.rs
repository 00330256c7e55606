//! The data directory: small files that must survive restarts and be shared by every process
//! started on the same directory (the token secret, the demo credentials), written whole and, where
//! they change, under a lock.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

/// Creates the directory (and parents) when missing, private to the service user.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut perms = fs::metadata(dir)?.permissions();
        if perms.mode() & 0o077 != 0 {
            perms.set_mode(0o700);
            // Best effort: a directory owned by someone else keeps its mode, which is not fatal.
            let _ = fs::set_permissions(dir, perms);
        }
    }
    Ok(())
}

/// Returns the content of `path`, creating it with `make()` first if it does not exist.
///
/// Several processes may start on the same directory at once; exactly one of them creates the file
/// and all of them read the same bytes. The file is written to a temporary name and then hard-linked
/// into place, which fails when the name exists, so no reader ever sees a half-written file.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let bytes = make();
    {
        let mut file = create_private(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Another process won the race; its file is complete because it was linked whole.
            for _ in 0..50 {
                if let Ok(bytes) = fs::read(path) {
                    return Ok(bytes);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            fs::read(path)
        }
        Err(e) => Err(e),
    }
}

/// Replaces the content of `path` whole: written to a temporary name, then renamed over it, so a
/// reader sees the old file or the new one, never a part.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// An exclusive lock on a file of the data directory (`flock`), held until dropped; processes
/// sharing the directory take turns.
#[derive(Debug)]
pub struct Lock {
    /// Closing it releases the lock.
    _file: fs::File,
}

/// Takes the exclusive lock of `path`, creating the file when missing; waits for other holders.
pub fn lock(path: &Path) -> io::Result<Lock> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; it is released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(Lock { _file: file })
}

fn create_private(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let first = read_or_create(&path, || b"one".to_vec()).unwrap();
        let second = read_or_create(&path, || b"two".to_vec()).unwrap();
        assert_eq!(first, b"one");
        assert_eq!(second, b"one");
    }

    #[test]
    fn concurrent_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let results: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = path.clone();
                    s.spawn(move || read_or_create(&path, || vec![i; 32]).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
