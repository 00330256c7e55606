//! One private daemon process, watched from a thread and stopped when dropped: what the private
//! Janus, coturn, Prometheus and nginx share ([`crate::janus`], [`crate::coturn`],
//! [`crate::prometheus`], [`crate::nginx`]). Each of them writes its configuration into a
//! temporary folder of its own, then hands its command to [`Watched::spawn`] and waits for it with
//! [`wait_ready`], and Janus and Prometheus retry a port taken under them with
//! [`retry_taken_port`].
//!
//! **How the process runs.** [`Watched::spawn`] runs the command in the daemon's folder, with
//! standard input from `/dev/null` and standard output and error in one file of that folder, as
//! the leader of a process group of its own (so that stopping it also stops its workers), and
//! tied to the test process ([`crate::tie_daemon_to_parent`]: killed by the kernel if the test
//! process dies first, and no core dumps).
//!
//! **The watcher.** A thread named `testkit-<name>-watch-<n>` spawns the child and waits for it.
//! The parent-death signal fires when the *thread* that forked the child ends, so the child must
//! be forked by a thread that lives exactly as long as the daemon: the watcher. When the child
//! exits unasked, the watcher records how ("exited with exit status: 1", "was killed by signal
//! 9"), which [`Watched::check`] then reports.
//!
//! **Stopping.** Dropping a [`Watched`] sends SIGTERM to the daemon's process group, waits until
//! the watcher has reaped it (at most the stop grace, 2 s unless [`Watched::with_stop_grace`] says
//! otherwise), then sends SIGKILL and waits up to 5 s more. A daemon that already exited is left
//! alone. An owner that also holds the daemon's temporary folder declares its [`Watched`] first,
//! so that the daemon is stopped before its folder is removed.

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long a daemon may take to exit after SIGTERM before it gets SIGKILL, by default.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long the drop waits for the watcher to reap the daemon after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How the daemon process is doing.
#[derive(Debug, Clone)]
enum Life {
    Running,
    /// Exited on its own: how.
    Exited(String),
    /// Stopped by [`Watched`]'s drop.
    Stopped,
}

/// What the watcher thread records.
#[derive(Debug)]
struct State {
    life: Life,
    /// The watcher has waited for the child (it is gone, not even a zombie).
    reaped: bool,
}

/// What the watcher thread shares with its [`Watched`].
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Notified when the watcher has reaped the child.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A daemon process started by [`Watched::spawn`] (see the module docs): its pid, how it is doing
/// ([`Watched::check`]), and its stop when dropped.
#[derive(Debug)]
pub(crate) struct Watched {
    /// The daemon's name in reports, e.g. `Janus`.
    name: String,
    /// Its private folder (its working directory).
    dir: PathBuf,
    pid: u32,
    shared: Arc<Shared>,
    /// How long the drop waits after SIGTERM before it sends SIGKILL.
    stop_grace: Duration,
}

impl Watched {
    /// Starts `command` as the daemon `name` (e.g. `Janus`, as reports name it) in its private
    /// folder `dir`: standard input from `/dev/null`, standard output and error into
    /// `dir/output`, in a process group of its own, tied to the test process, forked by a watcher
    /// thread (see the module docs). Returns once the process exists; whether it is ready is the
    /// caller's business ([`wait_ready`]). When the program cannot be run, the error says
    /// "cannot run <program>: <install_hint>".
    pub(crate) fn spawn(
        name: &str,
        dir: &Path,
        output: &str,
        mut command: Command,
        install_hint: &str,
    ) -> anyhow::Result<Watched> {
        static WATCHERS: AtomicUsize = AtomicUsize::new(0);
        let file = || format!("{name}'s {output}");
        let out = std::fs::File::create(dir.join(output)).with_context(file)?;
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().with_context(file)?)
            .stderr(out)
            .process_group(0);
        crate::tie_daemon_to_parent(&mut command);
        let program = Path::new(command.get_program()).to_owned();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                life: Life::Running,
                reaped: false,
            }),
            changed: Condvar::new(),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let watched = shared.clone();
        let n = WATCHERS.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name(format!("testkit-{}-watch-{n}", name.to_lowercase()))
            .spawn(move || {
                let mut child = match command.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(child.id()));
                let how = match child.wait() {
                    Ok(s) => match s.signal() {
                        Some(sig) => format!("was killed by signal {sig}"),
                        None => format!("exited with {s}"),
                    },
                    Err(e) => format!("could not be waited for ({e})"),
                };
                let mut state = watched.lock();
                if let Life::Running = state.life {
                    state.life = Life::Exited(how);
                }
                state.reaped = true;
                drop(state);
                watched.changed.notify_all();
            })
            .with_context(|| format!("{name} watcher thread"))?;
        let pid = started_rx
            .recv()
            .with_context(|| format!("{name} watcher thread"))?
            .with_context(|| format!("cannot run {}: {install_hint}", program.display()))?;
        Ok(Watched {
            name: name.to_owned(),
            dir: dir.to_owned(),
            pid,
            shared,
            stop_grace: STOP_GRACE,
        })
    }

    /// The same daemon, given `grace` instead of 2 s to exit after SIGTERM when dropped.
    pub(crate) fn with_stop_grace(mut self, grace: Duration) -> Watched {
        self.stop_grace = grace;
        self
    }

    /// The daemon's process id (also its process group's).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// `Ok` while the daemon runs. Once it exited on its own: "the private <name> (pid <pid>,
    /// <folder>) <how it ended>; <report>", where `report` (called only then) adds what tells
    /// why, such as the tail of its log. After the drop began stopping it: "the private <name>
    /// (pid <pid>) was stopped".
    pub(crate) fn check(&self, report: impl FnOnce() -> String) -> anyhow::Result<()> {
        let life = self.shared.lock().life.clone();
        match life {
            Life::Running => Ok(()),
            Life::Stopped => bail!("the private {} (pid {}) was stopped", self.name, self.pid),
            Life::Exited(how) => bail!(
                "the private {} (pid {}, {}) {how}; {}",
                self.name,
                self.pid,
                self.dir.display(),
                report()
            ),
        }
    }

    /// Waits until the watcher reaped the process (true), or `timeout` (false).
    fn wait_reaped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while !state.reaped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let running = {
            let mut state = self.shared.lock();
            let running = matches!(state.life, Life::Running);
            if running {
                state.life = Life::Stopped;
            }
            running
        };
        if !running {
            return;
        }
        kill_group(self.pid, libc::SIGTERM);
        if !self.wait_reaped(self.stop_grace) {
            kill_group(self.pid, libc::SIGKILL);
            self.wait_reaped(KILL_WAIT);
        }
    }
}

/// The start loop: every `interval`, calls `check` (the daemon still runs), then `ready` (it
/// answers), until `ready` says yes (`Ok(true)`), `check` fails (its error: the daemon died while
/// starting), or `timeout` has passed (`Ok(false)`).
pub(crate) fn wait_ready(
    timeout: Duration,
    interval: Duration,
    check: impl Fn() -> anyhow::Result<()>,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        check()?;
        if ready() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(interval);
    }
}

/// Why one launch of a daemon failed (see [`retry_taken_port`]).
pub(crate) enum Launch {
    /// The daemon's port was taken by someone else between choosing and binding it: worth another
    /// port.
    PortTaken(String),
    /// The daemon died or did not answer: the report.
    Failed(String),
    /// Preparing the folder or the process failed.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Launch {
    fn from(e: anyhow::Error) -> Self {
        Launch::Other(e)
    }
}

/// Calls `launch` (one attempt, on a fresh folder and port) until it succeeds, fails for another
/// reason than a taken port, or has found its port taken `attempts` times. Before each new
/// attempt, prints "<who>: <report>; trying another port" to standard error (`who` is e.g.
/// `testkit::janus`).
pub(crate) fn retry_taken_port<T>(
    who: &str,
    attempts: usize,
    mut launch: impl FnMut() -> Result<T, Launch>,
) -> anyhow::Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match launch() {
            Ok(launched) => return Ok(launched),
            Err(Launch::PortTaken(report)) if attempt < attempts => {
                eprintln!("{who}: {report}; trying another port");
            }
            Err(Launch::PortTaken(report)) | Err(Launch::Failed(report)) => bail!("{report}"),
            Err(Launch::Other(e)) => return Err(e),
        }
    }
}

/// Sends `signal` to the process group that the daemon `pid` leads (`process_group(0)`).
pub(crate) fn kill_group(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: plain kill(2) on the process group the daemon leads.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// The last `lines` lines of the log `file` (empty when it cannot be read), for failure reports.
pub(crate) fn log_tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path, script: &str) -> anyhow::Result<Watched> {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script);
        Watched::spawn("Sleeper", dir, "out.log", command, "it is /bin/sh")
    }

    /// Whether `pid` is alive (a zombie is not).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[test]
    fn a_daemon_is_stopped_with_its_group_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        // A child of the shell, in the daemon's group, and both ignore SIGTERM: SIGKILL gets them.
        let daemon = sleeper(dir.path(), "trap '' TERM; sleep 30 & echo $!; wait")
            .unwrap()
            .with_stop_grace(Duration::from_millis(200));
        let out = || std::fs::read_to_string(dir.path().join("out.log")).unwrap_or_default();
        let ready = wait_ready(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || daemon.check(String::new),
            || out().ends_with('\n'),
        );
        assert!(ready.unwrap());
        let (pid, sleep) = (daemon.pid(), out().trim().to_owned());
        assert!(alive(&sleep));
        let started = Instant::now();
        drop(daemon);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "SIGTERM was ignored"
        );
        assert!(!Path::new(&format!("/proc/{pid}/stat")).exists(), "reaped");
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(&sleep) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(&sleep), "the whole group is gone");
    }

    #[test]
    fn how_a_daemon_ended_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = sleeper(dir.path(), "echo bye; exit 3").unwrap();
        let e = wait_ready(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || daemon.check(|| log_tail(&dir.path().join("out.log"), 5)),
            || false,
        )
        .expect_err("it exits");
        let text = format!("{e:#}");
        assert!(text.starts_with("the private Sleeper (pid "), "{text}");
        assert!(text.contains("exited with exit status: 3; bye"), "{text}");
    }

    #[test]
    fn a_missing_program_names_the_install_hint() {
        let dir = tempfile::tempdir().unwrap();
        let e = Watched::spawn(
            "Nothing",
            dir.path(),
            "out.log",
            Command::new("/nonexistent/daemon"),
            "install nothing",
        )
        .expect_err("no such program");
        let text = format!("{e:#}");
        assert!(
            text.contains("cannot run /nonexistent/daemon: install nothing"),
            "{text}"
        );
    }
}
