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
//! (`turnutils_uclient`), to check which credentials coturn accepts. Starting, watching and
//! stopping the process is testkit's common daemon code (`testkit/src/daemon.rs`).

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::daemon::{wait_ready, Watched};

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
    /// Declared before `dir`: dropping it stops the daemon before the folder is removed.
    daemon: Watched,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
    relay_ports: (u16, u16),
}

impl std::fmt::Debug for Coturn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coturn")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("tls_port", &self.tls_port)
            .field("relay_ports", &self.relay_ports)
            .field("pid", &self.daemon.pid())
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
        let mut command = Command::new(TURNSERVER);
        command.arg("-c").arg(dir.path().join("turnserver.conf"));
        let daemon = Watched::spawn("coturn", dir.path(), "stdout.log", command, INSTALL)?;
        // From here on, dropping `coturn` stops the daemon.
        let coturn = Coturn {
            daemon,
            dir,
            port,
            tls_port,
            relay_ports,
        };
        let ready = wait_ready(
            START_TIMEOUT,
            Duration::from_millis(50),
            || coturn.check(),
            || {
                coturn.log().contains("UDP listener opened")
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
            },
        );
        match ready {
            Ok(true) => Ok(coturn),
            Ok(false) => bail!(
                "the private coturn (pid {}, {}) does not listen on 127.0.0.1:{port} and \
                 {tls_port} within {START_TIMEOUT:?}; log tail:\n{}",
                coturn.pid(),
                coturn.dir.path().display(),
                tail(coturn.dir.path())
            ),
            Err(e) => bail!(
                "the private coturn died while starting: {e:#}\nstdout:\n{}",
                std::fs::read_to_string(coturn.dir.path().join("stdout.log")).unwrap_or_default()
            ),
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
        self.daemon.pid()
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
        self.daemon
            .check(|| format!("log tail:\n{}", tail(self.dir.path())))
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

fn log_path(dir: &Path) -> PathBuf {
    dir.join("turnserver.log")
}

/// The last [`TAIL`] lines of the daemon's log.
fn tail(dir: &Path) -> String {
    crate::daemon::log_tail(&log_path(dir), TAIL)
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
