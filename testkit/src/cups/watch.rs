//! The daemon's watcher: the state it shares with its [`Cupsd`], what it does when the daemon
//! dies unasked (kill its leftovers, write a crash report), and waiting for it to be reaped.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[cfg(doc)]
use super::Cupsd;

/// How the daemon process ended.
#[derive(Debug, Clone)]
pub(super) enum Life {
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
pub(super) struct Request {
    pub(super) at: SystemTime,
    pub(super) test: String,
    pub(super) what: String,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) life: Life,
    /// Bumped at each start: a watcher of an older run must not report a newer one.
    pub(super) run: u64,
    /// The last run whose process has exited and been reaped.
    pub(super) reaped: u64,
    pub(super) history: VecDeque<Request>,
}

/// What the daemon's watcher thread shares with its [`Cupsd`].
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<State>,
    pub(super) changed: Condvar,
}

impl Inner {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn on_exit(
        &self,
        run: u64,
        pid: u32,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
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
    pub(super) fn wait_reaped(&self) {
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

    pub(super) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("log/error_log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Kills every process left of a daemon whose folder is `dir`: its filters and backends (CUPS puts
/// each in a process group of its own, and they outlive a crashed scheduler) are known by the
/// `CUPS_SERVERROOT` in their environment, which they pass on to their own children.
pub(super) fn kill_leftovers(dir: &Path) {
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

pub(super) fn kill_group(pid: u32, signal: i32) {
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
