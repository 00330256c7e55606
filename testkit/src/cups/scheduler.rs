//! The private `cupsd` itself: starting it (as a child of a watcher thread), restarting and
//! crashing it on request, and running CUPS client tools against it.

use std::collections::VecDeque;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};

use super::watch::{kill_group, kill_leftovers, Inner, Life, Request, State};
#[cfg(doc)]
use super::PdfPrinter;
use super::{INSTALL, PPD, STOCK_CONF, SYSTEM_SERVER_BIN};

/// How long the daemon may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many past requests a crash report lists.
const HISTORY: usize = 12;

/// A private `cupsd` (see the [`cups`](super) module docs). Shared by the [`PdfPrinter`]s of a test process
/// ([`Cupsd::shared`]) or owned by one test ([`Cupsd::start`]).
pub struct Cupsd {
    pub(super) dir: tempfile::TempDir,
    pub(super) port: u16,
    pub(super) inner: Arc<Inner>,
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
