//! The kiosk agent (`sportello-kiosk-agent`) as a child process, for the tests that need the real
//! binary and for the print chaos program (`loadtest print-chaos`).
//!
//! [`AgentProcess`] starts the binary with `--config <file>` and the environment the caller gives,
//! appends its standard error (its log) to a file, and can kill it (SIGKILL), stop it (SIGTERM),
//! notice that it exited by itself (the `SPORTELLO_AGENT_FAULT` hooks) and start it again on the
//! same configuration. It reads the agent's local API (`GET /v1/status`, `POST /v1/pin`) on
//! loopback. It is killed when dropped, and a test that panics gets the log on standard error.
//!
//! testkit depends on no crate of the workspace: the binary's path and the configuration file are
//! plain values the caller writes ([`sibling_bin`] finds a binary of the same build).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The variable of the agent's fault hooks (`exit_after_print`, …); removed unless asked for.
pub const FAULT_ENV: &str = "SPORTELLO_AGENT_FAULT";
/// The variable that overrides the agent's `local_listen`.
pub const LOCAL_LISTEN_ENV: &str = "SPORTELLO_AGENT_LOCAL_LISTEN";
/// How many log lines an error message carries.
const LOG_TAIL: usize = 40;

/// A binary of the same build as the running executable: beside it (`target/<profile>/loadtest`),
/// or one folder up (a test in `target/<profile>/deps/`). Fails when neither exists.
pub fn sibling_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("the running executable's path")?;
    let dir = exe.parent().context("the executable's folder")?;
    let candidates = [Some(dir.join(name)), dir.parent().map(|up| up.join(name))];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .with_context(|| format!("no {name} beside {} or one folder up", exe.display()))
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `GET {local}/v1/status` of an agent's local API, or `None` when it does not answer.
pub async fn status(local: &str) -> Option<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(format!("{local}/v1/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// Waits until the agent whose local API is `local` says it is connected to its server.
pub async fn wait_connected(local: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if status(local).await.is_some_and(|v| v["connected"] == true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the agent at {local} did not connect within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent binary as a child process: started, killed and restarted on one configuration, its
/// log appended to one file.
pub struct AgentProcess {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(OsString, OsString)>,
    fresh_local_port: bool,
    local: String,
    child: Option<Child>,
    started_at: Instant,
}

impl AgentProcess {
    /// An agent not started yet: `bin --config <config>`, its standard error appended to `log`,
    /// with `RUST_LOG=info` unless [`AgentProcess::env`] sets it.
    pub fn new(
        bin: impl Into<PathBuf>,
        config: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Self {
        AgentProcess {
            bin: bin.into(),
            config: config.into(),
            log: log.into(),
            env: vec![("RUST_LOG".into(), "info".into())],
            fresh_local_port: false,
            local: String::new(),
            child: None,
            started_at: Instant::now(),
        }
    }

    /// An environment variable for every start (later values win).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The port of the local API the configuration sets (`local_listen = "127.0.0.1:<port>"`).
    pub fn local_port(mut self, port: u16) -> Self {
        self.local = format!("http://127.0.0.1:{port}");
        self
    }

    /// A new free local port on every start (through [`LOCAL_LISTEN_ENV`]), so that a restart
    /// right after a kill never waits for the old port.
    pub fn fresh_local_port(mut self) -> Self {
        self.fresh_local_port = true;
        self
    }

    /// Starts the process with the extra variables `env` for this start only (e.g. the fault
    /// hook: `[(FAULT_ENV, "exit_after_print")]`). A process still running is killed first.
    pub fn start(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .env_remove(FAULT_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        if self.fresh_local_port {
            let port = crate::free_port();
            self.local = format!("http://127.0.0.1:{port}");
            cmd.env(LOCAL_LISTEN_ENV, format!("127.0.0.1:{port}"));
        }
        for (name, value) in env {
            cmd.env(name, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        self.started_at = Instant::now();
        self.child = Some(child);
        Ok(())
    }

    /// The local API's base URL, `http://127.0.0.1:<port>` (empty when no port is known).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The process id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How long the current (or last) process has been up.
    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// SIGKILL and reap; the status, or `None` when no process ran.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// The exit status if the process ended by itself (it is then no longer running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if self.child.is_none() {
                bail!("the agent is not running");
            }
            if Instant::now() >= deadline {
                bail!(
                    "the agent did not exit within {timeout:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit; its status (a clean stop is code 0).
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling our own child process, not yet reaped, by its id.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        self.wait_exit(timeout).await
    }

    /// Stops the agent with SIGTERM and requires a clean exit (code 0 within 15 s); returns the
    /// whole log, also printed on standard error when `AGENT_TEST_SHOW_LOG` is set.
    pub async fn stop(mut self) -> anyhow::Result<String> {
        let status = self.terminate(Duration::from_secs(15)).await?;
        let log = self.log();
        if status.code() != Some(0) {
            bail!(
                "the agent did not stop cleanly ({status}); log tail:\n{}",
                tail(&log, LOG_TAIL)
            );
        }
        if std::env::var_os("AGENT_TEST_SHOW_LOG").is_some() {
            eprintln!("---- agent log {} ----\n{log}", self.log.display());
        }
        Ok(log)
    }

    /// Waits until the agent says (`GET /v1/status`) it is connected to its server; the error
    /// carries the log's tail.
    pub async fn wait_connected(&self, within: Duration) -> anyhow::Result<()> {
        wait_connected(&self.local, within)
            .await
            .with_context(|| format!("log tail:\n{}", self.log_tail()))
    }

    /// `GET /v1/status`, or `None` when the agent does not answer.
    pub async fn status(&self) -> Option<serde_json::Value> {
        status(&self.local).await
    }

    /// Hands a PIN to the agent as the kiosk screen would (`POST /v1/pin`), retrying until the
    /// agent waits for one or `within` has passed.
    pub async fn pin(&self, call_id: &str, pin: &str, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            let answer = http
                .post(format!("{}/v1/pin", self.local))
                .json(&serde_json::json!({"call_id": call_id, "pin": pin}))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the agent never took the PIN within {within:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Appends a marker line (`==== text ====`) to the log, between the agent's own lines.
    pub fn mark(&self, text: &str) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = writeln!(f, "==== {text} ====");
        }
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's last lines.
    pub fn log_tail(&self) -> String {
        tail(&self.log(), LOG_TAIL)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log {} ----\n{}", self.log.display(), self.log());
        }
    }
}
