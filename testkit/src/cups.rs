//! A real printer for tests: a private `cupsd` and PDF queues on it whose printed jobs land as PDF
//! files in each queue's own temporary folder.
//!
//! **The machine's own print system is never used or touched.** [`Cupsd`] is a scheduler of the
//! test process's own: its `ServerRoot`, spool, cache, state, logs and `ServerBin` live in a
//! temporary folder; it listens on a domain socket there and on a free loopback port; it runs in
//! the foreground as a child of testkit, in a process group of its own, and is stopped (with its
//! filters and backends) when the last [`PdfPrinter`] using it is dropped. Its `cupsd.conf` is
//! Debian's stock one (`/usr/share/cups/cupsd.conf.default`, the policy a kiosk runs) with the
//! listeners, browsing and logging replaced, and `DirtyCleanInterval 0` so that jobs survive a
//! crash of the daemon (see `deploy/kiosk-agent/README.md`). Client tools reach it through
//! `CUPS_SERVER` = [`Cupsd::server`].
//!
//! **A daemon that dies is noticed at once.** A watcher thread waits on the child. When it exits
//! unasked, it kills what is left of its process group (as systemd does with a crashed unit),
//! prints a report naming the signal, the last requests sent to it and the test threads that sent
//! them, and the tail of its error log; from then on every call on it (and every wait for a
//! printed PDF) fails with that report instead of timing out. [`Cupsd::crash`] and
//! [`Cupsd::restart`] let a test kill the daemon and bring it back on the same folder, socket and
//! port, with the queues and jobs it had written.
//!
//! **The PDF printer.** The cups-pdf backend reads its configuration only from `/etc/cups`, which a
//! private scheduler must not touch, so each queue uses a small backend installed in the private
//! `ServerBin` (`testkit-pdf`) that does what cups-pdf does: it turns the PostScript the CUPS
//! filter chain produces (from cups-pdf's own PPD, [`PPD`]) into PDF with Ghostscript. It writes
//! `<title>-job_<id>.pdf` into [`PdfPrinter::out_dir`], keeping only letters, digits, `-`, `_`
//! and `.` of the title, truncated to 64 characters, as cups-pdf does with `TitlePref=1` and
//! `Label=2`. The file appears by rename once complete, and each completed job is appended to a
//! log ([`PdfPrinter::completions`]), so a test can tell a job printed twice from one printed
//! once. [`PdfPrinter::stall`] holds the backend before it writes, to catch a job in the middle
//! of printing.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};

/// The cups-pdf PPD shipped by `printer-driver-cups-pdf` (a PostScript printer).
pub const PPD: &str = "/usr/share/ppd/cups-pdf/CUPS-PDF_opt.ppd";
/// Debian's stock `cupsd.conf`, the base of the private one.
const STOCK_CONF: &str = "/usr/share/cups/cupsd.conf.default";
/// The system's CUPS programs (filters, backends, CGI), linked into the private `ServerBin`.
const SYSTEM_SERVER_BIN: &str = "/usr/lib/cups";
const BACKEND: &str = "testkit-pdf";
const INSTALL: &str =
    "install them with `apt-get install -y cups printer-driver-cups-pdf cups-ipp-utils`";
/// How long the daemon may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many past requests a crash report lists.
const HISTORY: usize = 12;

/// The private scheduler's backend: PostScript from the filter chain to a PDF (`$1` job id, `$3`
/// title, `$6` the file when not on standard input; `DEVICE_URI` = `testkit-pdf:<queue folder>`).
const BACKEND_SCRIPT: &str = r#"#!/bin/sh
# testkit's PDF printer (testkit/src/cups.rs): what cups-pdf does, configured by the device URI.
if [ $# -eq 0 ]; then
  echo 'direct testkit-pdf "Unknown" "testkit PDF printer"'
  exit 0
fi
dir="${DEVICE_URI#testkit-pdf:}"
umask 022
title=$(printf '%s' "$3" | tr -cd 'A-Za-z0-9._-' | cut -c1-64)
[ -n "$title" ] || title=untitled
part="$dir/work/job_$1.part"
if [ -n "$6" ]; then exec <"$6"; fi
echo "INFO: testkit-pdf: job $1 ($title)" >&2
gs -q -dNOPAUSE -dBATCH -dSAFER -sDEVICE=pdfwrite -sOutputFile="$part" - || exit 1
while [ -e "$dir/work/stall" ]; do sleep 0.05; done
mv -f "$part" "$dir/out/$title-job_$1.pdf" || exit 1
echo "$1 $title" >> "$dir/work/completed.log"
exit 0
"#;

/// How the daemon process ended.
#[derive(Debug, Clone)]
enum Life {
    Running {
        pid: u32,
    },
    /// Stopped or crashed by a call of testkit (drop, [`Cupsd::crash`]).
    Stopped,
    /// Died on its own.
    Died {
        report: String,
    },
}

/// One request sent to the daemon, for crash reports.
#[derive(Debug, Clone)]
struct Request {
    at: SystemTime,
    test: String,
    what: String,
}

#[derive(Debug)]
struct State {
    life: Life,
    /// Bumped at each start: a watcher of an older run must not report a newer one.
    run: u64,
    /// The last run whose process has exited and been reaped.
    reaped: u64,
    history: VecDeque<Request>,
}

/// What the daemon's watcher thread shares with its [`Cupsd`].
#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
}

/// A private `cupsd` (see the module docs). Shared by the [`PdfPrinter`]s of a test process
/// ([`Cupsd::shared`]) or owned by one test ([`Cupsd::start`]).
pub struct Cupsd {
    dir: tempfile::TempDir,
    port: u16,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cupsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cupsd")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Cupsd {
    /// The test process's shared daemon, started if no [`PdfPrinter`] holds one (or the one held
    /// died). It stops when the last holder drops it.
    pub fn shared() -> anyhow::Result<Arc<Cupsd>> {
        static SHARED: Mutex<Weak<Cupsd>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cupsd) = shared.upgrade() {
            if cupsd.check().is_ok() {
                return Ok(cupsd);
            }
        }
        let cupsd = Cupsd::start()?;
        *shared = Arc::downgrade(&cupsd);
        Ok(cupsd)
    }

    /// A daemon of the caller's own, in a new temporary folder on a free loopback port.
    pub fn start() -> anyhow::Result<Arc<Cupsd>> {
        for needed in [PPD, STOCK_CONF, SYSTEM_SERVER_BIN, "/usr/sbin/cupsd"] {
            if !Path::new(needed).exists() {
                bail!("{needed} is missing: {INSTALL}");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("testkit-cupsd-")
            .tempdir()
            .context("temporary cupsd folder")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("free port")?
            .port();
        let inner = Arc::new(Inner {
            dir: dir.path().to_owned(),
            state: Mutex::new(State {
                life: Life::Stopped,
                run: 0,
                reaped: 0,
                history: VecDeque::new(),
            }),
            changed: Condvar::new(),
        });
        let cupsd = Arc::new(Cupsd { dir, port, inner });
        cupsd.configure()?;
        cupsd.launch()?;
        Ok(cupsd)
    }

    /// The scheduler for `CUPS_SERVER` and the agent's `cups_server`: its domain socket.
    pub fn server(&self) -> PathBuf {
        self.dir.path().join("cups.sock")
    }

    /// The loopback port it serves IPP on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its private folder (`root/` is its `ServerRoot`, `log/` its logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        match self.lock().life {
            Life::Running { pid } => Some(pid),
            _ => None,
        }
    }

    /// `Ok` while the daemon runs; the crash report once it died on its own.
    pub fn check(&self) -> anyhow::Result<()> {
        match &self.lock().life {
            Life::Running { .. } => Ok(()),
            Life::Died { report } => bail!("{report}"),
            Life::Stopped => bail!(
                "the private cupsd in {} was stopped by the test (Cupsd::crash) and not restarted",
                self.dir.path().display()
            ),
        }
    }

    /// Kills the daemon as a crash would (`SIGKILL`), and what is left of it (filters and
    /// backends) as systemd does with the processes of a crashed unit. Its files stay for
    /// [`Self::restart`].
    pub fn crash(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("cupsd is not running")?;
        self.lock().life = Life::Stopped;
        kill_group(pid, libc::SIGKILL);
        self.inner.wait_reaped();
        kill_leftovers(self.dir.path());
        Ok(())
    }

    /// Starts the daemon again on the same folder, socket and port (after [`Self::crash`]).
    pub fn restart(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.pid() {
            bail!("cupsd still runs (pid {pid})");
        }
        self.launch()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `cups-files.conf`, `cupsd.conf` and the private `ServerBin`.
    fn configure(&self) -> anyhow::Result<()> {
        let d = self.dir.path();
        // The backend runs as `lp`: it must reach ServerBin and the queue folders.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        for sub in [
            "root",
            "root/ppd",
            "root/ssl",
            "spool",
            "spool/tmp",
            "cache",
            "state",
            "log",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let bin = d.join("bin");
        std::fs::create_dir_all(bin.join("backend"))?;
        for sub in [
            "cgi-bin", "daemon", "driver", "filter", "monitor", "notifier",
        ] {
            let target = Path::new(SYSTEM_SERVER_BIN).join(sub);
            if target.exists() {
                std::os::unix::fs::symlink(&target, bin.join(sub))?;
            }
        }
        // The system's backends (socket, ipp, lpd…) for queues on other devices; not cups-pdf,
        // which would read its configuration from /etc/cups.
        for entry in std::fs::read_dir(Path::new(SYSTEM_SERVER_BIN).join("backend"))? {
            let entry = entry?;
            if entry.file_name() != "cups-pdf" {
                std::os::unix::fs::symlink(
                    entry.path(),
                    bin.join("backend").join(entry.file_name()),
                )?;
            }
        }
        let backend = bin.join("backend").join(BACKEND);
        std::fs::write(&backend, BACKEND_SCRIPT)?;
        std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o755))?;

        let p = |rel: &str| d.join(rel).display().to_string();
        let root = unsafe { libc::geteuid() } == 0;
        let mut files = format!(
            "ServerRoot {}\nRequestRoot {}\nTempDir {}\nCacheDir {}\nStateDir {}\nServerBin {}\n\
             ErrorLog {}\nAccessLog {}\nPageLog {}\nFileDevice No\n",
            p("root"),
            p("spool"),
            p("spool/tmp"),
            p("cache"),
            p("state"),
            p("bin"),
            p("log/error_log"),
            p("log/access_log"),
            p("log/page_log"),
        );
        if root {
            files.push_str("User lp\nGroup lp\nSystemGroup root\n");
        }
        std::fs::write(d.join("root/cups-files.conf"), files)?;

        let stock = std::fs::read_to_string(STOCK_CONF)
            .with_context(|| format!("cannot read {STOCK_CONF}: {INSTALL}"))?;
        let replaced = [
            "Listen",
            "Port",
            "Browsing",
            "BrowseLocalProtocols",
            "WebInterface",
            "LogLevel",
            "IdleExitTimeout",
            "MaxLogSize",
        ];
        let mut conf: String = stock
            .lines()
            .filter(|line| {
                let key = line.split_whitespace().next().unwrap_or("");
                !replaced.contains(&key)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        conf.push_str(&format!(
            "# testkit: a private scheduler (testkit/src/cups.rs)\n\
             Listen 127.0.0.1:{port}\nListen {socket}\nBrowsing No\nWebInterface No\n\
             LogLevel info\nMaxLogSize 0\n\
             # Write job and queue state at once, so a crash loses nothing already accepted.\n\
             DirtyCleanInterval 0\nPreserveJobHistory Yes\nPreserveJobFiles No\n",
            port = self.port,
            socket = self.server().display(),
        ));
        std::fs::write(d.join("root/cupsd.conf"), conf)?;
        Ok(())
    }

    /// Starts `cupsd -f` from a watcher thread (which owns the child, so the child's parent-death
    /// signal fires only when the watcher ends) and waits until it answers.
    fn launch(self: &Cupsd) -> anyhow::Result<()> {
        let run = {
            let mut state = self.lock();
            state.run += 1;
            state.run
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("log/stderr"))?;
        let mut command = Command::new("/usr/sbin/cupsd");
        command
            .arg("-f")
            .arg("-c")
            .arg(self.path("root/cupsd.conf"))
            .arg("-s")
            .arg(self.path("root/cups-files.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        crate::tie_daemon_to_parent(&mut command);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name(format!("testkit-cupsd-watch-{run}"))
            .spawn(move || {
                let mut child = match command.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id();
                let _ = started_tx.send(Ok(pid));
                let status = child.wait();
                inner.on_exit(run, pid, status);
            })
            .context("watcher thread")?;
        let pid = started_rx
            .recv()
            .context("watcher thread")?
            .with_context(|| format!("cannot run cupsd: {INSTALL}"))?;
        self.lock().life = Life::Running { pid };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check().context("cupsd died while starting")?;
            if self
                .tool("lpstat", &["-r"])
                .is_ok_and(|s| s.contains("is running"))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the private cupsd (pid {pid}) does not answer `lpstat -r` on {} within {:?}; \
                     error log:\n{}",
                    self.server().display(),
                    START_TIMEOUT,
                    self.inner.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a CUPS client tool against this daemon; its standard output, or an error that names a
    /// crash of the daemon when there was one.
    pub fn tool(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        self.check()?;
        {
            let mut state = self.lock();
            if state.history.len() == HISTORY {
                state.history.pop_front();
            }
            state.history.push_back(Request {
                at: SystemTime::now(),
                test: std::thread::current()
                    .name()
                    .unwrap_or("(unnamed thread)")
                    .to_owned(),
                what: format!("{tool} {}", args.join(" ")),
            });
        }
        let out = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {tool}: {INSTALL}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            // A daemon that died during the call is the real cause: say so.
            std::thread::sleep(Duration::from_millis(20));
            self.check()?;
            bail!(
                "{tool} {} failed ({}): {stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// A command for a CUPS client tool aimed at this daemon (`CUPS_SERVER`, `LC_ALL=C`).
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command
            .env("CUPS_SERVER", self.server())
            .env("LC_ALL", "C")
            .env("LANG", "C");
        command
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_exit(&self, run: u64, pid: u32, status: std::io::Result<std::process::ExitStatus>) {
        let mut state = self.lock();
        if state.run == run {
            if let Life::Running { .. } = state.life {
                // Died on its own: clean up its filters and backends, then report.
                kill_group(pid, libc::SIGKILL);
                kill_leftovers(&self.dir);
                let how = match &status {
                    Ok(s) => match s.signal() {
                        Some(sig) => format!("was killed by signal {sig} ({})", signal_name(sig)),
                        None => format!("exited with {s}"),
                    },
                    Err(e) => format!("could not be waited for ({e})"),
                };
                let last: Vec<String> = state
                    .history
                    .iter()
                    .rev()
                    .take(5)
                    .map(|r| format!("  {} by test `{}`: {}", stamp(r.at), r.test, r.what))
                    .collect();
                let report = format!(
                    "the private cupsd (pid {pid}, {}) {how} at {}. The request that caused it is \
                     likely the last one sent; last requests, newest first:\n{}\nerror log \
                     tail:\n{}",
                    self.dir.display(),
                    stamp(SystemTime::now()),
                    if last.is_empty() {
                        "  (none)".to_owned()
                    } else {
                        last.join("\n")
                    },
                    self.log_tail(15)
                );
                eprintln!("testkit::cups: {report}");
                state.life = Life::Died { report };
            }
        }
        state.reaped = state.reaped.max(run);
        drop(state);
        self.changed.notify_all();
    }

    /// Waits until the watcher reaped the current run's process (at most 10 s).
    fn wait_reaped(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut state = self.lock();
        while state.reaped < state.run {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("log/error_log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cupsd {
    fn drop(&mut self) {
        let pid = self.pid();
        self.lock().life = Life::Stopped;
        if let Some(pid) = pid {
            kill_group(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Path::new(&format!("/proc/{pid}/stat")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(pid, libc::SIGKILL);
            self.inner.wait_reaped();
        }
        kill_leftovers(self.dir.path());
    }
}

/// Kills every process left of a daemon whose folder is `dir`: its filters and backends (CUPS puts
/// each in a process group of its own, and they outlive a crashed scheduler) are known by the
/// `CUPS_SERVERROOT` in their environment, which they pass on to their own children.
fn kill_leftovers(dir: &Path) {
    let needle = format!("CUPS_SERVERROOT={}\0", dir.join("root").display());
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in proc
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
    {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let needle = needle.as_bytes();
        if environ.windows(needle.len()).any(|w| w == needle) {
            // SAFETY: plain kill(2) of a process that runs with this daemon's folder.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn kill_group(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: plain kill(2) on the process group the daemon leads (process_group(0)).
    unsafe {
        libc::kill(-pid, signal);
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV, a crash",
        libc::SIGABRT => "SIGABRT, an abort",
        libc::SIGBUS => "SIGBUS, a crash",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

fn stamp(at: SystemTime) -> String {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        d.as_secs() / 3600 % 24,
        d.as_secs() / 60 % 60,
        d.as_secs() % 60,
        d.subsec_millis()
    )
}

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
        // Dots survive; spaces and slashes do not.
        let id = a.print(&doc, "ticket-A123.v2").unwrap();
        b.print(&doc, "other b/x").unwrap();

        let printed = a.wait_printed(1, WAIT).unwrap();
        assert_eq!(printed.len(), 1);
        let file = printed[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(file, format!("ticket-A123.v2-job_{id}.pdf"));
        assert!(printed[0].starts_with(a.out_dir()));
        let pdf = std::fs::read(&printed[0]).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
        assert!(a.jobs_completed() >= 1);
        assert!(a.jobs_pending().unwrap().is_empty());
        assert_eq!(a.completions(), vec![(id, "ticket-A123.v2".to_owned())]);

        let printed_b = b.wait_printed(1, WAIT).unwrap();
        assert!(printed_b[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("otherbx-job_"));
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

    // Jobs from users the system does not know (`lp -U nosuchuser`) are not tested here, on
    // purpose: the product never sends them (the kiosk agent submits under its own local user,
    // docs/kiosk-agent.md), and Debian's cupsd 2.4.2-3+deb12u10 with its stock policy segfaults
    // on them. What such a crash must look like to a test is checked below instead.

    #[tokio::test]
    async fn a_dead_cupsd_is_reported_at_once_with_the_last_request() {
        let cupsd = Cupsd::start().unwrap();
        let docs = tempfile::tempdir().unwrap();
        let p = PdfPrinter::create_on(&cupsd).unwrap();
        p.stop("media-empty").unwrap();
        p.print(&text_file(docs.path(), "x\n"), "before-the-crash")
            .unwrap();
        let pid = cupsd.pid().unwrap();
        // Not Cupsd::crash: a death testkit did not ask for, as a segfault would be.
        unsafe { libc::kill(pid as i32, libc::SIGSEGV) };
        let started = Instant::now();
        let err = p.wait_printed_async(1, WAIT).await.unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "noticed after {:?}",
            started.elapsed()
        );
        assert!(err.contains("killed by signal 11 (SIGSEGV"), "{err}");
        assert!(
            err.contains("a_dead_cupsd_is_reported_at_once_with_the_last_request"),
            "{err}"
        );
        assert!(err.contains("lp -d"), "{err}");
        // Every later call fails the same way, at once.
        let err = p.state().unwrap_err().to_string();
        assert!(err.contains("SIGSEGV"), "{err}");
        assert!(!Path::new(&format!("/proc/{pid}/stat")).exists());
    }

    #[test]
    fn a_crashed_cupsd_restarts_with_its_queues_and_jobs() {
        let cupsd = Cupsd::start().unwrap();
        let docs = tempfile::tempdir().unwrap();
        let p = PdfPrinter::create_on(&cupsd).unwrap();
        p.stall(true).unwrap();
        let id = p
            .print(&text_file(docs.path(), "a metà stampa\n"), "mid-print")
            .unwrap();
        // Wait until the backend holds the converted job: the middle of a print.
        let deadline = Instant::now() + WAIT;
        while p.in_progress() != vec![id] {
            assert!(
                Instant::now() < deadline,
                "the job never reached the backend"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cupsd.crash().unwrap();
        assert!(p.state().is_err());
        p.stall(false).unwrap();
        cupsd.restart().unwrap();
        // The queue and the interrupted job are still there; the job prints once, in full.
        let printed = p.wait_printed(1, WAIT).unwrap();
        assert_eq!(printed.len(), 1);
        assert_eq!(p.completions(), vec![(id, "mid-print".to_owned())]);
    }

    /// What the system's print system is made of: `/etc/cups` and the spool (names, sizes, times),
    /// whether its socket exists, and the `cupsd` processes that are not testkit's.
    fn system_cups_snapshot() -> (Vec<String>, bool, Vec<u32>) {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.filter_map(|e| e.ok()) {
                let path = e.path();
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    out.push(format!(
                        "{} {} {:?}",
                        path.display(),
                        meta.len(),
                        meta.modified().ok()
                    ));
                    if meta.is_dir() {
                        walk(&path, out);
                    }
                }
            }
        }
        let mut files = Vec::new();
        walk(Path::new("/etc/cups"), &mut files);
        walk(Path::new("/var/spool/cups"), &mut files);
        files.sort();
        let others = std::fs::read_dir("/proc")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.trim() == "cupsd")
                            && !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                                .unwrap_or_default()
                                .contains("testkit-cupsd-")
                    })
                    .collect()
            })
            .unwrap_or_default();
        (files, Path::new("/run/cups/cups.sock").exists(), others)
    }

    #[test]
    fn the_system_cupsd_is_neither_started_nor_touched() {
        let before = system_cups_snapshot();
        let cupsd = Cupsd::start().unwrap();
        assert!(cupsd.server().starts_with(cupsd.dir()));
        let docs = tempfile::tempdir().unwrap();
        let p = PdfPrinter::create_on(&cupsd).unwrap();
        p.print(&text_file(docs.path(), "privato\n"), "private")
            .unwrap();
        p.wait_printed(1, WAIT).unwrap();
        // The job went through the private daemon's own spool and logs.
        let log = std::fs::read_to_string(cupsd.dir().join("log/error_log")).unwrap();
        assert!(log.contains(BACKEND), "{log}");
        let dir = cupsd.dir().to_owned();
        drop(p);
        drop(cupsd);
        assert!(
            !dir.exists(),
            "the private folder is removed with the daemon"
        );
        assert_eq!(system_cups_snapshot(), before);
    }

    #[test]
    fn drop_removes_queue_and_folder() {
        let cupsd = Cupsd::start().unwrap();
        let p = PdfPrinter::create_on(&cupsd).unwrap();
        let name = p.name().to_owned();
        let out = p.out_dir().to_owned();
        assert!(cupsd.tool("lpstat", &["-p", &name]).is_ok());
        drop(p);
        assert!(!out.exists());
        assert!(cupsd.tool("lpstat", &["-p", &name]).is_err());
        // The daemon outlives its queues while somebody holds it.
        cupsd.check().unwrap();
    }
}
