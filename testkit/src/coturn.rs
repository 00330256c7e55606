//! A private coturn TURN server (Debian's `coturn`, `/usr/bin/turnserver`) on loopback, with
//! time-limited credentials (`use-auth-secret`, the TURN REST API), for the relay tests.
//!
//! **The machine's own coturn is never used or touched.** [`Coturn::start`] writes a configuration
//! of its own into a temporary folder and runs `turnserver -c <folder>/turnserver.conf` in the
//! foreground, as a child of testkit in a process group of its own, killed when the [`Coturn`] is
//! dropped (and by the kernel if the test process dies first). `/etc/turnserver.conf`, the
//! system's user database (`/var/lib/turn`) and the `coturn` service are never read or written:
//! the private instance has its own `userdb`, `pidfile` and `log-file` in its folder.
//!
//! The configuration: listening and relaying on `127.0.0.1` only (`listening-ip`, `relay-ip`),
//! one free port for TURN over UDP and TCP ([`Coturn::udp_url`], [`Coturn::tcp_url`]), another for
//! TURN over TLS ([`Coturn::tls_url`], with a self-signed certificate for `127.0.0.1` and
//! `localhost` made with `rcgen`), a block of 200 relay ports below Linux's ephemeral range,
//! `allow-loopback-peers` (coturn refuses loopback peers otherwise), `use-auth-secret` with the
//! given `static-auth-secret` and [`REALM`], no DTLS, no CLI, verbose logs.
//!
//! **A daemon that dies is reported.** If the process exits before it listens, or does not listen
//! within [`START_TIMEOUT`], `start` fails with the tail of its log; a missing binary says
//! "install coturn (cargo xtask deps)". [`Coturn::check`] tells a running daemon from one that
//! died later. [`Coturn::allocate`] asks for an allocation with coturn's own client
//! (`turnutils_uclient`), to check which credentials coturn accepts.

use std::net::TcpStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The TURN server binary.
const TURNSERVER: &str = "/usr/bin/turnserver";
/// coturn's test client, from the same package.
const UCLIENT: &str = "/usr/bin/turnutils_uclient";
const INSTALL: &str = "install coturn (cargo xtask deps, or apt-get install -y coturn)";
/// The realm of the private instance.
pub const REALM: &str = "sportello.test";
/// How long the daemon may take to listen after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one `turnutils_uclient` run may take.
const UCLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Relay ports per instance.
const RELAY_PORTS: u16 = 200;
/// The log lines a failure report quotes.
const TAIL: usize = 25;

/// How the daemon process is doing.
#[derive(Debug, Clone)]
enum Life {
    Running,
    /// Exited on its own: how.
    Exited(String),
    /// Stopped by [`Coturn`]'s drop.
    Stopped,
}

#[derive(Debug)]
struct Inner {
    life: Mutex<Life>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What coturn answered to an allocation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// The allocation succeeded and data went through the relay.
    Accepted,
    /// coturn refused it (with `turnutils_uclient`'s output).
    Refused(String),
}

/// A private coturn (see the module docs), stopped when dropped.
pub struct Coturn {
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
    relay_ports: (u16, u16),
    pid: u32,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coturn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coturn")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("tls_port", &self.tls_port)
            .field("relay_ports", &self.relay_ports)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Coturn {
    /// Starts a private instance whose `static-auth-secret` is `secret`, and waits until it listens
    /// (at most [`START_TIMEOUT`]). Fails if coturn is not installed, or if the daemon dies or does
    /// not listen (with the tail of its log).
    pub fn start(secret: &str) -> anyhow::Result<Coturn> {
        if !Path::new(TURNSERVER).exists() {
            bail!("{TURNSERVER} is missing: {INSTALL}");
        }
        if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c == '#') {
            bail!("the TURN secret must be non-empty, without spaces or '#'");
        }
        let dir = tempfile::Builder::new()
            .prefix("testkit-coturn-")
            .tempdir()
            .context("temporary coturn folder")?;
        let port = crate::free_port();
        let tls_port = loop {
            let p = crate::free_port();
            if p != port {
                break p;
            }
        };
        let relay_ports = relay_port_block();
        configure(dir.path(), (port, tls_port), relay_ports, secret)?;
        let out =
            std::fs::File::create(dir.path().join("stdout.log")).context("coturn's stdout.log")?;
        let mut command = Command::new(TURNSERVER);
        command
            .arg("-c")
            .arg(dir.path().join("turnserver.conf"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("coturn's stdout.log")?)
            .stderr(out)
            .process_group(0);
        crate::tie_daemon_to_parent(&mut command);
        let inner = Arc::new(Inner {
            life: Mutex::new(Life::Running),
            changed: Condvar::new(),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let watched = inner.clone();
        std::thread::Builder::new()
            .name(format!("testkit-coturn-watch-{port}"))
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
                let mut life = watched.lock();
                if let Life::Running = *life {
                    *life = Life::Exited(how);
                }
                drop(life);
                watched.changed.notify_all();
            })
            .context("coturn watcher thread")?;
        let pid = started_rx
            .recv()
            .context("coturn watcher thread")?
            .with_context(|| format!("cannot run {TURNSERVER}: {INSTALL}"))?;
        // From here on, dropping `coturn` stops the daemon.
        let coturn = Coturn {
            dir,
            port,
            tls_port,
            relay_ports,
            pid,
            inner,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Err(e) = coturn.check() {
                bail!(
                    "the private coturn died while starting: {e:#}\nstdout:\n{}",
                    std::fs::read_to_string(coturn.dir.path().join("stdout.log"))
                        .unwrap_or_default()
                );
            }
            if coturn.log().contains("UDP listener opened")
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
                && TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
            {
                return Ok(coturn);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the private coturn (pid {pid}, {}) does not listen on 127.0.0.1:{port} \
                     and {tls_port} within {START_TIMEOUT:?}; log tail:\n{}",
                    coturn.dir.path().display(),
                    tail(coturn.dir.path())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TURN port (UDP and TCP) on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first and last relay ports.
    pub fn relay_ports(&self) -> (u16, u16) {
        self.relay_ports
    }

    /// `turn:127.0.0.1:<port>?transport=udp`.
    pub fn udp_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    /// `turn:127.0.0.1:<port>?transport=tcp`.
    pub fn tcp_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=tcp", self.port)
    }

    /// The TURN-over-TLS port on `127.0.0.1`.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// `turns:127.0.0.1:<tls port>?transport=tcp` (a self-signed certificate).
    pub fn tls_url(&self) -> String {
        format!("turns:127.0.0.1:{}?transport=tcp", self.tls_port)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The private folder (configuration, `turnserver.log`, `stdout.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default()
    }

    /// `Ok` while the daemon runs; how it ended, with the tail of its log, once it exited.
    pub fn check(&self) -> anyhow::Result<()> {
        match &*self.inner.lock() {
            Life::Running => Ok(()),
            Life::Stopped => bail!("the private coturn (pid {}) was stopped", self.pid),
            Life::Exited(how) => bail!(
                "the private coturn (pid {}, {}) {how}; log tail:\n{}",
                self.pid,
                self.dir.path().display(),
                tail(self.dir.path())
            ),
        }
    }

    /// Asks coturn for an allocation over UDP with `username` and `password`, and sends a message
    /// through it (`turnutils_uclient` in client-to-client mode): [`Allocation::Accepted`] when
    /// that worked, [`Allocation::Refused`] when coturn refused the allocation. Blocking.
    pub fn allocate(&self, username: &str, password: &str) -> anyhow::Result<Allocation> {
        self.check()?;
        if !Path::new(UCLIENT).exists() {
            bail!("{UCLIENT} is missing: {INSTALL}");
        }
        let mut command = Command::new(UCLIENT);
        command
            .args([
                "-u", username, "-w", password, "-n", "1", "-m", "1", "-c", "-y",
            ])
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {UCLIENT}: {INSTALL}"))?;
        let deadline = Instant::now() + UCLIENT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for turnutils_uclient")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("turnutils_uclient did not finish within {UCLIENT_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = child
            .wait_with_output()
            .context("turnutils_uclient's output")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.check()?;
        if status.success() {
            Ok(Allocation::Accepted)
        } else if text.contains("Cannot complete Allocation") {
            Ok(Allocation::Refused(text))
        } else {
            bail!("turnutils_uclient failed ({status}) for another reason:\n{text}")
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let running = {
            let mut life = self.inner.lock();
            let running = matches!(*life, Life::Running);
            if running {
                *life = Life::Stopped;
            }
            running
        };
        if !running {
            return;
        }
        kill_group(self.pid, libc::SIGTERM);
        if !self.wait_exited(Duration::from_secs(2)) {
            kill_group(self.pid, libc::SIGKILL);
            self.wait_exited(Duration::from_secs(5));
        }
    }
}

impl Coturn {
    /// Waits until the watcher reaped the process (true), or `timeout` (false).
    fn wait_exited(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Path::new(&format!("/proc/{}/stat", self.pid)).exists() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let life = self.inner.lock();
            let _ = self
                .inner
                .changed
                .wait_timeout(life, left.min(Duration::from_millis(20)));
        }
        true
    }
}

fn kill_group(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; the group is the daemon's own.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("turnserver.log")
}

/// The last lines of the daemon's log.
fn tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(TAIL)..].join("\n")
}

/// A block of [`RELAY_PORTS`] relay ports in 10000–19999 (below the ephemeral range, and apart from
/// testkit's Janus block), chosen by process id and time so parallel tests rarely share one;
/// coturn skips ports it cannot bind.
fn relay_port_block() -> (u16, u16) {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let blocks = 10_000 / u32::from(RELAY_PORTS);
    let first = 10_000 + (seed % blocks) * u32::from(RELAY_PORTS);
    let first = u16::try_from(first).unwrap_or(10_000);
    (first, first + RELAY_PORTS - 1)
}

/// Writes the private configuration into `dir` (see the module docs).
fn configure(
    dir: &Path,
    (port, tls_port): (u16, u16),
    relay: (u16, u16),
    secret: &str,
) -> anyhow::Result<()> {
    let p = |rel: &str| dir.join(rel).display().to_string();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("coturn's self-signed certificate")?;
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).context("cert.pem")?;
    std::fs::write(dir.join("key.pem"), certified.key_pair.serialize_pem()).context("key.pem")?;
    let conf = format!(
        "# testkit's private coturn (testkit/src/coturn.rs)\n\
         listening-ip=127.0.0.1\n\
         relay-ip=127.0.0.1\n\
         listening-port={port}\n\
         tls-listening-port={tls_port}\n\
         cert={cert}\n\
         pkey={pkey}\n\
         min-port={min}\n\
         max-port={max}\n\
         allow-loopback-peers\n\
         use-auth-secret\n\
         static-auth-secret={secret}\n\
         realm={REALM}\n\
         fingerprint\n\
         no-cli\n\
         no-dtls\n\
         no-multicast-peers\n\
         userdb={userdb}\n\
         pidfile={pidfile}\n\
         log-file={log}\n\
         simple-log\n\
         no-stdout-log\n\
         verbose\n",
        min = relay.0,
        max = relay.1,
        cert = p("cert.pem"),
        pkey = p("key.pem"),
        userdb = p("turndb"),
        pidfile = p("turnserver.pid"),
        log = log_path(dir).display(),
    );
    std::fs::write(dir.join("turnserver.conf"), conf).context("turnserver.conf")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_blocks_stay_below_the_ephemeral_range() {
        for _ in 0..100 {
            let (first, last) = relay_port_block();
            assert!(first >= 10_000 && last < 20_000, "{first}-{last}");
            assert_eq!(last - first + 1, RELAY_PORTS);
        }
    }
}
