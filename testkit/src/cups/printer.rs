//! The PDF queues on a private [`Cupsd`]: creating them with `lpadmin`, printing with `lp`,
//! stopping and starting them, and waiting for the printed PDFs.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::{Cupsd, BACKEND, PPD};

/// A PDF queue on a private [`Cupsd`], accepting and enabled, printing into
/// [`PdfPrinter::out_dir`]. Dropping it deletes the queue (cancelling its jobs) and its folder,
/// and lets go of the daemon.
pub struct PdfPrinter {
    name: String,
    dir: tempfile::TempDir,
    out: PathBuf,
    cupsd: Arc<Cupsd>,
}

impl PdfPrinter {
    /// A new queue on the test process's shared daemon ([`Cupsd::shared`]).
    pub fn create() -> anyhow::Result<PdfPrinter> {
        PdfPrinter::create_on(&Cupsd::shared()?)
    }

    /// A new queue on `cupsd`.
    pub fn create_on(cupsd: &Arc<Cupsd>) -> anyhow::Result<PdfPrinter> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("testkit-pdf-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new()
            .prefix("testkit-cups-pdf-")
            .tempdir()
            .context("temporary printer folder")?;
        // The backend runs as `lp`: let it in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let out = dir.path().join("out");
        for sub in [&out, &dir.path().join("work")] {
            std::fs::create_dir(sub)?;
            std::fs::set_permissions(sub, std::fs::Permissions::from_mode(0o777))?;
        }
        let printer = PdfPrinter {
            name,
            dir,
            out,
            cupsd: cupsd.clone(),
        };
        cupsd.tool(
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

    /// The daemon the queue lives on.
    pub fn cupsd(&self) -> &Arc<Cupsd> {
        &self.cupsd
    }

    /// The scheduler to give the process under test (`CUPS_SERVER`, the agent's `cups_server`).
    pub fn server(&self) -> PathBuf {
        self.cupsd.server()
    }

    /// The folder the printed PDFs land in (complete files only).
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// The device URI, `testkit-pdf:<queue folder>`.
    pub fn device_uri(&self) -> String {
        format!("{BACKEND}:{}", self.dir.path().display())
    }

    /// The queue's IPP URI on the private daemon's loopback port.
    pub fn ipp_uri(&self) -> String {
        format!(
            "ipp://127.0.0.1:{}/printers/{}",
            self.cupsd.port(),
            self.name
        )
    }

    /// Prints `file` with `lp -d <name> -t <title>` and returns the job id.
    pub fn print(&self, file: &Path, title: &str) -> anyhow::Result<u32> {
        let file = file.to_str().context("non-UTF-8 path")?;
        let out = self
            .cupsd
            .tool("lp", &["-d", &self.name, "-t", title, file])?;
        // "request id is <name>-<id> (1 file(s))"
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(&self.name)?.strip_prefix('-')?.parse().ok())
            .with_context(|| format!("no job id in lp output: {out}"))
    }

    /// The finished PDFs, in job order: files in [`Self::out_dir`] whose job is no longer pending
    /// or processing. Empty if CUPS cannot be asked.
    pub fn printed(&self) -> Vec<PathBuf> {
        self.finished().unwrap_or_default()
    }

    /// Every completed run of the backend, in order: (CUPS job id, file title). A job that CUPS
    /// ran twice to the end (say, after a crash of the daemon) appears twice.
    pub fn completions(&self) -> Vec<(u32, String)> {
        std::fs::read_to_string(self.dir.path().join("work/completed.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (id, title) = l.split_once(' ')?;
                Some((id.parse().ok()?, title.to_owned()))
            })
            .collect()
    }

    /// The CUPS jobs the backend is writing now (converted, not yet complete): with
    /// [`Self::stall`], the jobs caught in the middle of printing.
    pub fn in_progress(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = std::fs::read_dir(self.dir.path().join("work"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        name.strip_prefix("job_")?
                            .strip_suffix(".part")?
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// While stalled, the backend holds every job it converted before writing the PDF: the job
    /// stays `processing`, in the middle of printing.
    pub fn stall(&self, stalled: bool) -> anyhow::Result<()> {
        let flag = self.dir.path().join("work/stall");
        if stalled {
            std::fs::write(&flag, b"")?;
        } else if flag.exists() {
            std::fs::remove_file(&flag)?;
        }
        Ok(())
    }

    /// Waits until at least `count` PDFs are [`Self::printed`] and returns them all. Blocks the
    /// thread: from async code use [`Self::wait_printed_async`]. Fails at once if the daemon dies.
    pub fn wait_printed(&self, count: usize, timeout: Duration) -> anyhow::Result<Vec<PathBuf>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.cupsd.check()?;
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
            self.cupsd.check()?;
            let (cupsd, name, out) = (self.cupsd.clone(), self.name.clone(), self.out.clone());
            let done = tokio::task::spawn_blocking(move || finished_in(&cupsd, &name, &out))
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
        self.cupsd
            .tool("cupsdisable", &["-r", reason, &self.name])
            .map(drop)
    }

    /// Restarts a stopped printer (`cupsenable`); held jobs then print.
    pub fn start(&self) -> anyhow::Result<()> {
        self.cupsd.tool("cupsenable", &[&self.name]).map(drop)
    }

    /// `lpstat -p <name>`, e.g. `printer X is idle.  enabled since …` or
    /// `printer X disabled since … -\n\tmedia-empty`.
    pub fn state(&self) -> anyhow::Result<String> {
        self.cupsd.tool("lpstat", &["-p", &self.name])
    }

    /// Ids of the jobs still pending, held or processing.
    pub fn jobs_pending(&self) -> anyhow::Result<Vec<u32>> {
        job_ids(&self.cupsd, &self.name, "not-completed")
    }

    /// How many jobs CUPS lists as completed (or cancelled/aborted) for this queue.
    pub fn jobs_completed(&self) -> usize {
        job_ids(&self.cupsd, &self.name, "completed").map_or(0, |ids| ids.len())
    }

    fn finished(&self) -> anyhow::Result<Vec<PathBuf>> {
        finished_in(&self.cupsd, &self.name, &self.out)
    }

    fn timeout_report(&self, count: usize, timeout: Duration, done: usize) -> String {
        let files: Vec<String> = std::fs::read_dir(&self.out)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "{done} of {count} PDFs printed by {} within {timeout:?}; files: {files:?}; \
             pending jobs: {:?}; state: {:?}; cupsd error log tail:\n{}",
            self.name,
            self.jobs_pending(),
            self.state(),
            self.cupsd.inner.log_tail(15)
        )
    }
}

impl Drop for PdfPrinter {
    fn drop(&mut self) {
        if self.cupsd.check().is_ok() {
            let _ = self.cupsd.tool("lpadmin", &["-x", &self.name]);
        }
    }
}

/// Finished PDFs of queue `name` in `out`, sorted by job id.
fn finished_in(cupsd: &Cupsd, name: &str, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let pending = job_ids(cupsd, name, "not-completed")?;
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
        if !pending.contains(&id) {
            done.push((id, path));
        }
    }
    done.sort();
    Ok(done.into_iter().map(|(_, p)| p).collect())
}

/// Job ids of queue `name` from `lpstat -W <which> -o <name>` (lines `<name>-<id> user …`).
fn job_ids(cupsd: &Cupsd, name: &str, which: &str) -> anyhow::Result<Vec<u32>> {
    let out = cupsd.tool("lpstat", &["-W", which, "-o", name])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|job| job.strip_prefix(name)?.strip_prefix('-')?.parse().ok())
        .collect())
}
