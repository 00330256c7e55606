//! A real printer for tests: a CUPS queue on the `cups-pdf` backend whose printed jobs land as PDF
//! files in the queue's own temporary folder.
//!
//! How each queue gets its own folder: cups-pdf 3.x runs one instance per device URI.
//! For `cups-pdf:/<NAME>` it reads `/etc/cups/cups-pdf-<NAME>.conf` instead of
//! `/etc/cups/cups-pdf.conf`, so every [`PdfPrinter`] writes its own configuration file with `Out`
//! (and `AnonDirName`, for jobs of users unknown to the system) pointing at its folder. The
//! queue's PPD options are set to `TitlePref=1` (file names come from the job title, `lp -t`, not
//! from the document) and `Label=2` (names end in `-job_<id>`), so a printed file is
//! `<title>-job_<id>.pdf`. cups-pdf keeps only letters, digits, `-`, `_` and `.` of the title and
//! truncates it to 64 characters.
//!
//! Queues are named `testkit-pdf-<pid>-<n>-<nonce>`, so tests may create them in parallel from
//! several processes. Queues left behind by test processes that died are removed by the next
//! [`PdfPrinter::create`].

use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The cups-pdf PPD shipped by `printer-driver-cups-pdf`.
pub const PPD: &str = "/usr/share/ppd/cups-pdf/CUPS-PDF_opt.ppd";
const PREFIX: &str = "testkit-pdf-";
const INSTALL: &str = "install them with `apt-get install -y cups printer-driver-cups-pdf`";

/// A cups-pdf queue, accepting and enabled, printing into [`PdfPrinter::out_dir`]. Dropping it
/// deletes the queue (cancelling its jobs), its cups-pdf configuration and its folder.
pub struct PdfPrinter {
    name: String,
    dir: tempfile::TempDir,
    out: PathBuf,
    conf: PathBuf,
}

impl PdfPrinter {
    /// Makes sure `cupsd` runs (starting it if needed; concurrent starters in other test
    /// processes wait on a lock file, so only one daemon is started) and adds a new queue. Prints a
    /// warning if several `cupsd` processes run (started by hand at the same time, say).
    pub fn create() -> anyhow::Result<PdfPrinter> {
        if !Path::new(PPD).exists() {
            bail!("{PPD} is missing: {INSTALL}");
        }
        ensure_cupsd()?;
        remove_stale_queues();

        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let name = format!(
            "{PREFIX}{}-{}-{nonce:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );

        let dir = tempfile::Builder::new()
            .prefix("testkit-cups-pdf-")
            .tempdir()
            .context("temporary printer folder")?;
        // cups-pdf writes as the job's user (or `nobody` for unknown users): let everyone in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let out = dir.path().join("out");
        std::fs::create_dir(&out)?;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777))?;
        let conf = PathBuf::from(format!("/etc/cups/cups-pdf-{name}.conf"));
        let printer = PdfPrinter {
            name,
            dir,
            out,
            conf,
        };
        // Keys the PPD also sets (Label, TitlePref, Truncate, LogType) are set on the queue below;
        // the PPD wins over this file for those.
        std::fs::write(
            &printer.conf,
            format!(
                "Out {out}\nAnonDirName {out}\nLog {log}\nCut -1\nUserUMask 0022\nAnonUMask 0022\nGrp lp\nDecodeHexStrings 1\n",
                out = printer.out.display(),
                log = printer.dir.path().join("log").display(),
            ),
        )
        .with_context(|| format!("cannot write {}", printer.conf.display()))?;
        cups_tool(
            "lpadmin",
            &[
                "-p",
                &printer.name,
                "-E",
                "-v",
                &printer.device_uri(),
                "-P",
                PPD,
                "-o",
                "TitlePref=1",
                "-o",
                "Label=2",
                "-o",
                "printer-is-shared=false",
            ],
        )?;
        let state = printer.state()?;
        if !state.contains("enabled") {
            bail!(
                "queue {} is not enabled after lpadmin -E: {state}",
                printer.name
            );
        }
        Ok(printer)
    }

    /// The queue name (for `lp -d`, IPP and the process under test).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder the printed PDFs land in.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// The device URI, `cups-pdf:/<name>`.
    pub fn device_uri(&self) -> String {
        format!("cups-pdf:/{}", self.name)
    }

    /// The queue's IPP URI, `ipp://localhost:631/printers/<name>`. It reaches the queue only if a
    /// single `cupsd` runs (see the warning [`PdfPrinter::create`] prints otherwise).
    pub fn ipp_uri(&self) -> String {
        format!("ipp://localhost:631/printers/{}", self.name)
    }

    /// Prints `file` with `lp -d <name> -t <title>` and returns the job id.
    pub fn print(&self, file: &Path, title: &str) -> anyhow::Result<u32> {
        let file = file.to_str().context("non-UTF-8 path")?;
        let out = cups_tool("lp", &["-d", &self.name, "-t", title, file])?;
        // "request id is <name>-<id> (1 file(s))"
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(&self.name)?.strip_prefix('-')?.parse().ok())
            .with_context(|| format!("no job id in lp output: {out}"))
    }

    /// The finished PDFs, in job order: files in [`Self::out_dir`] whose job is no longer pending
    /// or processing in CUPS and that end with `%%EOF` (Ghostscript writes the file in place, so
    /// a file of a running job may be half written). Empty if CUPS cannot be asked.
    pub fn printed(&self) -> Vec<PathBuf> {
        self.finished().unwrap_or_default()
    }

    /// Waits until at least `count` PDFs are [`Self::printed`] and returns them all. Blocks the
    /// thread: from async code use [`Self::wait_printed_async`].
    pub fn wait_printed(&self, count: usize, timeout: Duration) -> anyhow::Result<Vec<PathBuf>> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = self.printed();
            if done.len() >= count {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                bail!(self.timeout_report(count, timeout, done.len()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`Self::wait_printed`] for async tests: polls without blocking the runtime.
    pub async fn wait_printed_async(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let deadline = Instant::now() + timeout;
        loop {
            let (name, out) = (self.name.clone(), self.out.clone());
            let done = tokio::task::spawn_blocking(move || finished_in(&name, &out))
                .await
                .context("join")?
                .unwrap_or_default();
            if done.len() >= count {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                bail!(self.timeout_report(count, timeout, done.len()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the printer as a fault would (`cupsdisable -r <reason>`; use `media-empty` for "out
    /// of paper"): it keeps accepting jobs but holds them until [`Self::start`]. The reason becomes
    /// the printer's `printer-state-message`; `printer-state` is `stopped` (5) and
    /// `printer-state-reasons` has `paused`.
    pub fn stop(&self, reason: &str) -> anyhow::Result<()> {
        cups_tool("cupsdisable", &["-r", reason, &self.name]).map(drop)
    }

    /// Restarts a stopped printer (`cupsenable`); held jobs then print.
    pub fn start(&self) -> anyhow::Result<()> {
        cups_tool("cupsenable", &[&self.name]).map(drop)
    }

    /// `lpstat -p <name>`, e.g. `printer X is idle.  enabled since …` or
    /// `printer X disabled since … -\n\tmedia-empty`.
    pub fn state(&self) -> anyhow::Result<String> {
        cups_tool("lpstat", &["-p", &self.name])
    }

    /// Ids of the jobs still pending, held or processing.
    pub fn jobs_pending(&self) -> anyhow::Result<Vec<u32>> {
        job_ids(&self.name, "not-completed")
    }

    /// How many jobs CUPS lists as completed (or cancelled/aborted) for this queue.
    pub fn jobs_completed(&self) -> usize {
        job_ids(&self.name, "completed").map_or(0, |ids| ids.len())
    }

    fn finished(&self) -> anyhow::Result<Vec<PathBuf>> {
        finished_in(&self.name, &self.out)
    }

    fn timeout_report(&self, count: usize, timeout: Duration, done: usize) -> String {
        let files: Vec<String> = std::fs::read_dir(&self.out)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let log = std::fs::read_dir(self.dir.path().join("log"))
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .unwrap_or_default();
        format!(
            "{done} of {count} PDFs printed by {} within {timeout:?}; files: {files:?}; \
             pending jobs: {:?}; state: {:?}; cups-pdf log tail:\n{log}",
            self.name,
            self.jobs_pending(),
            self.state()
        )
    }
}

impl Drop for PdfPrinter {
    fn drop(&mut self) {
        let _ = quiet("lpadmin", &["-x", &self.name]);
        let _ = std::fs::remove_file(&self.conf);
    }
}

/// Finished PDFs of queue `name` in `out`, sorted by job id.
fn finished_in(name: &str, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let pending = job_ids(name, "not-completed")?;
    let mut done: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pdf") {
            continue;
        }
        let Some(id) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.rsplit_once("-job_"))
            .and_then(|(_, id)| id.parse::<u32>().ok())
        else {
            continue;
        };
        if !pending.contains(&id) && ends_with_eof(&path) {
            done.push((id, path));
        }
    }
    done.sort();
    Ok(done.into_iter().map(|(_, p)| p).collect())
}

/// Whether the file ends with `%%EOF` (and optional trailing white space).
fn ends_with_eof(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(64))).is_err() || f.read_to_end(&mut tail).is_err()
    {
        return false;
    }
    tail.trim_ascii_end().ends_with(b"%%EOF")
}

/// Job ids of queue `name` from `lpstat -W <which> -o <name>` (lines `<name>-<id> user …`).
fn job_ids(name: &str, which: &str) -> anyhow::Result<Vec<u32>> {
    let out = cups_tool("lpstat", &["-W", which, "-o", name])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|job| job.strip_prefix(name)?.strip_prefix('-')?.parse().ok())
        .collect())
}

/// Runs a CUPS command-line tool; its standard output, or an error with its output.
fn cups_tool(tool: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {tool}: {INSTALL}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{tool} {} failed ({}): {stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

fn quiet(tool: &str, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

fn scheduler_running() -> bool {
    cups_tool("lpstat", &["-r"]).is_ok_and(|s| s.trim() == "scheduler is running")
}

/// Pids of the processes named `cupsd`.
fn cupsd_pids() -> Vec<u32> {
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "cupsd")
        })
        .collect()
}

/// Starts `cupsd` unless it runs, and waits until it answers. Starters in other test processes
/// are serialised with a lock file; a `cupsd` that exists but does not answer yet is waited for,
/// never doubled.
pub fn ensure_cupsd() -> anyhow::Result<()> {
    if !scheduler_running() {
        let _lock = FileLock::acquire(&std::env::temp_dir().join("testkit-cupsd.lock"))?;
        if !scheduler_running() {
            if cupsd_pids().is_empty() {
                // cupsd daemonises: the parent returns once the daemon is up. Its standard streams
                // must not keep the test's output pipes open.
                let status = Command::new("cupsd")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .with_context(|| format!("cannot run cupsd: {INSTALL}"))?;
                if !status.success() {
                    bail!("cupsd failed to start ({status}); see /var/log/cups/error_log");
                }
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while !scheduler_running() {
                if Instant::now() >= deadline {
                    bail!(
                        "cupsd does not answer `lpstat -r` within 20 s (pids {:?})",
                        cupsd_pids()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Two daemons on the same configuration split the state: `lp`, `lpstat` and `lpadmin` (and so
    // this helper) reach the one owning /run/cups/cups.sock, while IPP on localhost:631 may reach
    // the other, which does not know the queue. Say so once; the socket side still works.
    for _ in 0..4 {
        if cupsd_pids().len() <= 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        eprintln!(
            "testkit::cups: WARNING: several cupsd processes run ({:?}). Queues made here are \
             reached through /run/cups/cups.sock (lp, lpstat) but maybe not over IPP at \
             localhost:631 (PdfPrinter::ipp_uri). Stop all but one.",
            cupsd_pids()
        );
    });
    Ok(())
}

/// Deletes queues (and cups-pdf configuration files) of test processes that no longer run.
fn remove_stale_queues() {
    let dead = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(out) = cups_tool("lpstat", &["-v"]) {
        for line in out.lines() {
            // "device for <name>: <uri>"
            let Some(name) = line
                .strip_prefix("device for ")
                .and_then(|l| l.split_once(':'))
                .map(|(n, _)| n)
            else {
                continue;
            };
            if dead(name) {
                let _ = quiet("lpadmin", &["-x", name]);
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/etc/cups") {
        for entry in rd.filter_map(|e| e.ok()) {
            let file = entry.file_name();
            let Some(name) = file
                .to_str()
                .and_then(|f| f.strip_prefix("cups-pdf-")?.strip_suffix(".conf"))
            else {
                continue;
            };
            if dead(name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// An exclusive `flock` on a file, released when dropped.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> anyhow::Result<FileLock> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .with_context(|| format!("lock file {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; it is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "flock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(90);

    fn text_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("doc.txt");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn prints_into_its_own_folder_with_the_title_in_the_name() {
        let docs = tempfile::tempdir().unwrap();
        let a = PdfPrinter::create().expect("printer a");
        let b = PdfPrinter::create().expect("printer b");
        assert_ne!(a.name(), b.name());
        assert_ne!(a.out_dir(), b.out_dir());
        let doc = text_file(docs.path(), "Ricevuta: Mario Rossi, sportello 3\n");
        // The title wins over the document's own title; dots survive (Cut -1).
        let id = a.print(&doc, "ticket-A123.v2").unwrap();
        b.print(&doc, "other-b").unwrap();

        let printed = a.wait_printed(1, WAIT).unwrap();
        assert_eq!(printed.len(), 1);
        let file = printed[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(file, format!("ticket-A123.v2-job_{id}.pdf"));
        assert!(printed[0].starts_with(a.out_dir()));
        let pdf = std::fs::read(&printed[0]).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(a.jobs_completed() >= 1);
        assert!(a.jobs_pending().unwrap().is_empty());

        let printed_b = b.wait_printed(1, WAIT).unwrap();
        assert!(printed_b[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("other-b-job_"));
        assert_eq!(a.printed().len(), 1, "b's job must not land in a's folder");
    }

    #[test]
    fn parallel_printers_do_not_mix() {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                std::thread::spawn(move || {
                    let docs = tempfile::tempdir().unwrap();
                    let p = PdfPrinter::create().expect("printer");
                    let doc = text_file(docs.path(), &format!("documento {i}\n"));
                    p.print(&doc, &format!("par-{i}")).unwrap();
                    let printed = p.wait_printed(1, WAIT).unwrap();
                    assert_eq!(printed.len(), 1);
                    let name = printed[0].file_name().unwrap().to_str().unwrap().to_owned();
                    assert!(name.starts_with(&format!("par-{i}-job_")), "{name}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn stopped_printer_holds_jobs_until_started() {
        let docs = tempfile::tempdir().unwrap();
        let p = PdfPrinter::create().unwrap();
        p.stop("media-empty").unwrap();
        let state = p.state().unwrap();
        assert!(
            state.contains("disabled") && state.contains("media-empty"),
            "{state}"
        );
        let id = p
            .print(&text_file(docs.path(), "in attesa\n"), "held")
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(p.jobs_pending().unwrap(), vec![id]);
        assert!(p.printed().is_empty());
        p.start().unwrap();
        assert!(p.state().unwrap().contains("enabled"));
        let printed = p.wait_printed(1, WAIT).unwrap();
        assert_eq!(printed.len(), 1);
    }

    #[tokio::test]
    async fn async_wait_and_unknown_users() {
        let docs = tempfile::tempdir().unwrap();
        let p = PdfPrinter::create().unwrap();
        // A job from a user this system does not know (as over IPP) goes to the same folder.
        let doc = text_file(docs.path(), "anonimo\n");
        let status = Command::new("lp")
            .args(["-d", p.name(), "-U", "nosuchuser", "-t", "anon"])
            .arg(&doc)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let printed = p.wait_printed_async(1, WAIT).await.unwrap();
        assert!(printed[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("anon-job_"));
        // Nothing more arrives: a short wait fails with a report.
        let err = p
            .wait_printed_async(2, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("1 of 2 PDFs"), "{err}");
    }

    #[test]
    fn drop_removes_queue_and_configuration() {
        let p = PdfPrinter::create().unwrap();
        let name = p.name().to_owned();
        let conf = PathBuf::from(format!("/etc/cups/cups-pdf-{name}.conf"));
        let out = p.out_dir().to_owned();
        assert!(conf.exists());
        assert!(cups_tool("lpstat", &["-p", &name]).is_ok());
        drop(p);
        assert!(!conf.exists());
        assert!(!out.exists());
        assert!(cups_tool("lpstat", &["-p", &name]).is_err());
    }

    #[test]
    fn eof_check() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pdf");
        std::fs::write(&f, b"%PDF-1.4\n...\n%%EOF\n").unwrap();
        assert!(ends_with_eof(&f));
        std::fs::write(&f, b"%PDF-1.4\n... half").unwrap();
        assert!(!ends_with_eof(&f));
    }
}
