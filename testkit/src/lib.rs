//! Real parts for tests, started on loopback and stopped when dropped. Tests never mock a component
//! that the design names: they start the real one here.
//!
//! - [`RedisServer`]: a `redis-server` on a free port, without persistence.
//! - [`RedisSentinelCluster`]: a master, a replica and three sentinels on free ports, without
//!   persistence, to test failovers.
//! - [`SportelloProcess`]: a `sportello` binary on port 0, its base URL read from the banner.
//! - [`free_port`] and [`loadavg`], for tests and load programs.

pub mod cups;
pub mod pki;
pub mod sentinel;
pub mod smtp;
pub mod softhsm;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use sentinel::RedisSentinelCluster;

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
}

impl SportelloProcess {
    /// Starts `bin` with `--listen`/`--admin-listen` on port 0, the extra `args` and `envs`, and reads
    /// the banner up to its `listening on` line. Standard output keeps being drained afterwards.
    pub fn start(bin: &str, args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> Self {
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
        let mut child = cmd.spawn().expect("spawn sportello");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("sportello exited before its banner")
                .expect("banner line");
            if let Some(url) = line.trim_start().strip_prefix("listening on") {
                break url.trim().trim_end_matches('/').to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        SportelloProcess { child, base }
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
