//! Real parts for tests, started on loopback and stopped when dropped. Tests never mock a component
//! that the design names: they start the real one here.
//!
//! - [`RedisServer`]: a `redis-server` on a free port, without persistence.
//! - [`RedisSentinelCluster`]: a master, a replica and three sentinels on free ports, without
//!   persistence, to test failovers.
//! - [`SportelloProcess`]: a `sportello` binary on port 0, its base URL read from the banner.
//! - [`free_port`] and [`loadavg`], for tests and load programs.
//! - [`cups`] (a private `cupsd` with PDF queues), [`softhsm`] and [`pki`] (smart cards and their
//!   CA), [`smtp`] (an SMTP sink), [`janus`] (a private Janus, the peer SFU of `loadtest
//!   compare-janus`), [`coturn`], [`prometheus`] and [`nginx`] (the deployment tests' daemons),
//!   [`agent`] (the kiosk agent as a child process), [`images`] (the scans and broken images
//!   the tests upload), [`oidc`] (a real OpenID provider, `oidc-provider` on node, for the web
//!   channel's sign-in) and [`tsa`] (an RFC 3161 timestamp authority answering with
//!   `openssl ts`).
//! - [`postgres`]: a private PostgreSQL server (its own cluster, trust authentication, on a free
//!   loopback port) for the history database's PostgreSQL tests.
//! - [`node`]: `npm ci` for the test scripts of `console-web/tests` when a package they need is
//!   missing.
//!
//! The private Janus, coturn, Prometheus, nginx and PostgreSQL share one way of running a daemon
//! (the crate's private `daemon` module): spawned by a watcher thread that records how it ended,
//! in a process group of its own, stopped when dropped.

pub mod agent;
pub mod coturn;
pub mod cups;
mod daemon;
pub mod images;
pub mod janus;
pub mod nginx;
pub mod node;
pub mod oidc;
pub mod pki;
pub mod postgres;
pub mod prometheus;
pub mod sentinel;
pub mod smtp;
pub mod softhsm;
pub mod tsa;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

pub use sentinel::RedisSentinelCluster;

/// Makes a daemon started by a watcher thread die with its parent (the parent-death signal: the
/// watcher lives as long as the daemon, and dies with the test process), and never dump core.
pub(crate) fn tie_daemon_to_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl and setrlimit are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
}

/// Criterion's time per iteration in nanoseconds of `group/bench` (its directory name: `/` in the
/// bench's name becomes `_`), read from the `estimates.json` it wrote (the slope when it sampled
/// linearly, else the mean: the middle figure it prints), if it wrote it after `since` (a
/// filtered-out bench or criterion's test mode leaves an older file or none). The directory is
/// criterion's own default: `CRITERION_HOME`, else `CARGO_TARGET_DIR/criterion`, else the target
/// directory the calling bench was built in (`target/release/deps/…`). For benches that print
/// their figures as one JSON line.
pub fn criterion_estimate_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .or_else(|| {
            Some(
                std::env::current_exe()
                    .ok()?
                    .ancestors()
                    .nth(3)?
                    .join("criterion"),
            )
        })?;
    let file = dir
        .join(group)
        .join(bench.replace('/', "_"))
        .join("new/estimates.json");
    if std::fs::metadata(&file).ok()?.modified().ok()? < since {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    let estimate = |name: &str| estimates[name]["point_estimate"].as_f64();
    estimate("slope").or_else(|| estimate("mean"))
}

/// A free loopback TCP port: bound, then released, for a process that binds it next.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The load averages of the last 1, 5 and 15 minutes (`/proc/loadavg`), for a run's report.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A `redis-server` on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`. Fails the test (never skips it) if
    /// `redis-server` is not installed.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts a server on `port` (e.g. the port of one that was killed, to test a Redis restart) and
    /// waits until it answers `PING`.
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). Tests of the Redis store need a real Redis: \
                     install it with `apt-get install -y redis-server` (cargo xtask test installs \
                     it in CI)."
                )
            });
        let server = RedisServer { child, port };
        let client = redis::Client::open(server.url()).expect("redis url");
        for _ in 0..200 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {port} did not answer PING within 5 s");
    }

    /// The server's URL, e.g. `redis://127.0.0.1:6390/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server now (to test what happens when Redis goes away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `sportello` process (the binary path comes from the caller's
/// `env!("CARGO_BIN_EXE_sportello")`), listening on loopback port 0; killed when dropped.
pub struct SportelloProcess {
    /// The child process.
    pub child: std::process::Child,
    /// The public base URL from the banner, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub base: String,
    /// The admin listener's metrics URL from the banner, e.g. `http://127.0.0.1:41235/metrics`.
    pub metrics: Option<String>,
}

impl SportelloProcess {
    /// Starts `bin` with `--listen`/`--admin-listen` on port 0, the extra `args` and `envs`, and reads
    /// the banner up to its `listening on` line. Standard output keeps being drained afterwards.
    /// Panics when it cannot (for tests; see [`SportelloProcess::try_start`]).
    pub fn start(bin: &str, args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> Self {
        Self::try_start(bin, args, envs).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`SportelloProcess::start`] with an error instead of a panic; also reads the banner's
    /// `metrics` line when it follows within a few lines.
    pub fn try_start(
        bin: &str,
        args: &[&std::ffi::OsStr],
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut next = |what: &str| match lines.next() {
            Some(Ok(line)) => Ok(line),
            _ => Err(format!("{bin} exited before its banner's {what}")),
        };
        let base = loop {
            let line = next("listening on line");
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            };
            if let Some(url) = line.trim_start().strip_prefix("listening on") {
                break url.trim().trim_end_matches('/').to_owned();
            }
        };
        let mut metrics = None;
        for _ in 0..8 {
            let Ok(line) = next("metrics line") else {
                break;
            };
            if let Some(url) = line.trim_start().strip_prefix("metrics") {
                metrics = Some(url.trim().to_owned());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(SportelloProcess {
            child,
            base,
            metrics,
        })
    }

    /// The WebSocket endpoint, `ws://…/api/v1/ws`.
    pub fn ws_url(&self) -> String {
        format!("{}/api/v1/ws", self.base.replacen("http", "ws", 1))
    }
}

impl Drop for SportelloProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
