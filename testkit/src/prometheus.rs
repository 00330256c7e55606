//! A private Prometheus for the tests: it scrapes the servers a test started, under the scrape job
//! names the deployments use, evaluates the project's alert rules, and answers queries through
//! its HTTP API.
//!
//! **The machine's own Prometheus is never used or touched.** [`Prometheus::start`] writes a
//! configuration of its own into a temporary folder and runs `prometheus` in the foreground, as a
//! child of testkit in a process group of its own, with `--storage.tsdb.path` in that folder, the
//! web listener on `127.0.0.1` and a free port, and every scrape and rule evaluation each second.
//! It is killed when the [`Prometheus`] is dropped, and by the kernel if the test process dies
//! first. Its output goes to `prometheus.log` in the folder ([`Prometheus::log`]).
//!
//! **The binaries** (`prometheus`, `promtool`, Debian's 2.42) are looked up by [`tool`]: first in
//! `<workspace>/target/tools/bin/`, where `cargo xtask deps` installs them, then on `PATH`.
//!
//! **A daemon that dies is reported.** If the process exits before it answers `/-/ready`, or does
//! not answer within [`START_TIMEOUT`], `start` fails with the tail of its log; a port taken by
//! someone else between choosing and binding it is retried with another port. Every query first
//! checks that the daemon still runs ([`Prometheus::check`]), so a test fails at once, with the
//! log, rather than waiting for answers that never come. Starting, watching and stopping the
//! process is testkit's common daemon code (`testkit/src/daemon.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::daemon::{retry_taken_port, wait_ready, Launch, Watched};

/// How long the daemon may take to answer `/-/ready` after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts when the chosen web port turns out to be taken.
const PORT_ATTEMPTS: usize = 3;
/// The log lines a failure report quotes.
const TAIL: usize = 25;
const INSTALL: &str = "run cargo xtask deps (it installs Debian's prometheus and promtool into \
                       target/tools/bin)";

/// The path of a Prometheus tool (`prometheus`, `promtool`): `<workspace>/target/tools/bin/<name>`
/// when it exists, else the first `<name>` on `PATH`. Fails with "run cargo xtask deps" when
/// neither exists.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut candidates = vec![workspace.join("target/tools/bin").join(name)];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("tools/bin").join(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is missing: {INSTALL}"))
}

/// One scrape job: its name (the `job` label) and its targets (`host:port`, scraped at
/// `/metrics`).
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    /// The job name, e.g. `sportello-signalling`.
    pub name: String,
    /// `host:port` of each target.
    pub targets: Vec<String>,
}

impl ScrapeJob {
    /// A job named `name` scraping `targets`.
    pub fn new(name: &str, targets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ScrapeJob {
            name: name.to_owned(),
            targets: targets.into_iter().map(Into::into).collect(),
        }
    }
}

/// A private Prometheus (see the module docs), stopped when dropped.
pub struct Prometheus {
    /// Declared before `dir`: dropping it stops the daemon before the folder is removed.
    daemon: Watched,
    dir: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.daemon.pid())
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// Starts a private instance scraping `jobs` every second and evaluating the rules of
    /// `rule_files` every second, and waits until it is ready (at most [`START_TIMEOUT`]).
    pub fn start(jobs: &[ScrapeJob], rule_files: &[PathBuf]) -> anyhow::Result<Prometheus> {
        let binary = tool("prometheus")?;
        retry_taken_port("testkit::prometheus", PORT_ATTEMPTS, || {
            Prometheus::launch(&binary, jobs, rule_files)
        })
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The private folder (configuration, data, `prometheus.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `Ok` while the daemon runs; how it ended, with the tail of its log, once it exited.
    pub fn check(&self) -> anyhow::Result<()> {
        self.daemon
            .check(|| format!("log tail:\n{}", tail(self.dir.path())))
    }

    /// `GET /api/v1/<path>` with `query` parameters: the response's `data` when its status is
    /// `success`, else an error with Prometheus's `errorType` and `error`.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.check()?;
        let url = format!("{}/api/v1/{path}", self.url());
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))?;
        if body["status"] != "success" {
            bail!(
                "GET {url} {query:?}: {} {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            );
        }
        Ok(body["data"].clone())
    }

    /// Evaluates `expr` now (`/api/v1/query`): its `data` (`resultType` and `result`), or the
    /// error Prometheus gives (a parse error, an unknown function, a bad range…).
    pub async fn query(&self, expr: &str) -> anyhow::Result<Value> {
        self.api("query", &[("query", expr)]).await
    }

    /// Every metric name Prometheus holds series for (`/api/v1/label/__name__/values`).
    pub async fn metric_names(&self) -> anyhow::Result<BTreeSet<String>> {
        let names = self.api("label/__name__/values", &[]).await?;
        Ok(names
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until every target has been scraped successfully (`health` `up`), or fails after
    /// `timeout` with the targets' last errors.
    pub async fn wait_targets_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.api("targets", &[("state", "active")]).await?;
            let active = targets["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let down: Vec<String> = active
                .iter()
                .filter(|t| t["health"] != "up")
                .map(|t| {
                    format!(
                        "{} {} ({}: {})",
                        t["labels"]["job"].as_str().unwrap_or("?"),
                        t["scrapeUrl"].as_str().unwrap_or("?"),
                        t["health"].as_str().unwrap_or("?"),
                        t["lastError"].as_str().unwrap_or("")
                    )
                })
                .collect();
            if !active.is_empty() && down.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "targets not up within {timeout:?}: {down:?} (of {})",
                    active.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every rule of the loaded rule files has been evaluated at least once, then
    /// returns them (`/api/v1/rules`: groups, each rule with its `health` and `lastError`).
    pub async fn wait_rules_evaluated(&self, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let data = self.api("rules", &[]).await?;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let pending = rules
                .iter()
                .filter(|r| {
                    r["health"] == "unknown" || r["lastEvaluation"] == "0001-01-01T00:00:00Z"
                })
                .count();
            if !rules.is_empty() && pending == 0 {
                return Ok(rules);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{pending} of {} rules not evaluated within {timeout:?}",
                    rules.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One attempt: a fresh folder and port, the daemon, and the wait for `/-/ready`.
    fn launch(binary: &Path, jobs: &[ScrapeJob], rule_files: &[PathBuf]) -> Result<Self, Launch> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-prometheus-")
            .tempdir()
            .context("temporary Prometheus folder")?;
        let port = crate::free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, configuration(jobs, rule_files)).context("prometheus.yml")?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=info");
        let daemon = Watched::spawn("Prometheus", dir.path(), "prometheus.log", command, INSTALL)?
            .with_stop_grace(Duration::from_secs(5));
        // From here on, dropping `prometheus` stops the daemon.
        let prometheus = Prometheus {
            daemon,
            dir,
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .context("HTTP client")?,
        };
        match wait_ready(
            START_TIMEOUT,
            Duration::from_millis(50),
            || prometheus.check(),
            || ready(port),
        ) {
            Ok(true) => Ok(prometheus),
            Ok(false) => Err(Launch::Failed(format!(
                "the private Prometheus (pid {}, {}) is not ready on 127.0.0.1:{port} within \
                 {START_TIMEOUT:?}; log tail:\n{}",
                prometheus.daemon.pid(),
                prometheus.dir.path().display(),
                tail(prometheus.dir.path())
            ))),
            Err(e) => {
                let report = format!("{e:#}");
                Err(if report.contains("address already in use") {
                    Launch::PortTaken(format!("web port {port} is taken: {report}"))
                } else {
                    Launch::Failed(format!(
                        "the private Prometheus died while starting: {report}"
                    ))
                })
            }
        }
    }
}

/// The configuration file: a scrape and an evaluation every second, the rule files, one scrape
/// job per [`ScrapeJob`]. Names and paths are quoted as JSON strings, which YAML reads as they are.
fn configuration(jobs: &[ScrapeJob], rule_files: &[PathBuf]) -> String {
    let q = |s: &str| Value::from(s).to_string();
    let mut text = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    text.push_str("rule_files:\n");
    if rule_files.is_empty() {
        text.truncate(text.len() - 1);
        text.push_str(" []\n");
    }
    for f in rule_files {
        text.push_str(&format!("  - {}\n", q(&f.display().to_string())));
    }
    text.push_str("scrape_configs:\n");
    for job in jobs {
        text.push_str(&format!("  - job_name: {}\n", q(&job.name)));
        text.push_str("    static_configs:\n      - targets: [");
        let targets: Vec<String> = job.targets.iter().map(|t| q(t)).collect();
        text.push_str(&targets.join(", "));
        text.push_str("]\n");
    }
    text
}

/// Whether `/-/ready` answers 200 (a plain HTTP/1.0 request: no client runtime needed here).
fn ready(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The last [`TAIL`] lines of the daemon's output.
fn tail(dir: &Path) -> String {
    crate::daemon::log_tail(&dir.join("prometheus.log"), TAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_every_job_and_rule_file() {
        let text = configuration(
            &[
                ScrapeJob::new("sportello-signalling", ["127.0.0.1:1", "127.0.0.1:2"]),
                ScrapeJob::new("sportello-media", ["127.0.0.1:3"]),
            ],
            &[PathBuf::from("/x/alerts.yml")],
        );
        assert!(text.contains("evaluation_interval: 1s"), "{text}");
        assert!(text.contains("  - \"/x/alerts.yml\"\n"), "{text}");
        assert!(
            text.contains(
                "  - job_name: \"sportello-signalling\"\n    static_configs:\n      - targets: \
                 [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n"
            ),
            "{text}"
        );
        assert!(text.contains("job_name: \"sportello-media\""), "{text}");
        let none = configuration(&[], &[]);
        assert!(none.contains("rule_files: []\n"), "{none}");
    }
}
