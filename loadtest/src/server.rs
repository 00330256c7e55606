//! The deployment under load: where it is, its accounts, and what it says about itself.
//!
//! A run either points at a running server (`--server URL --credentials FILE`, with `--metrics
//! URL` and `--server-pid PID` for its figures) or starts one (`--spawn BIN`: the `sportello`
//! binary on loopback ports with a fresh data directory and `[demo] kiosks/operators` sized to the
//! run). The server's CPU and memory come from `/proc/PID` when the process is on this machine,
//! else from `process_cpu_seconds_total` and `process_resident_memory_bytes` on its metrics;
//! its call counts from `sportello_calls_total`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One login of the demo credentials file.
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// One kiosk of the demo credentials file.
#[derive(Debug, Clone, Deserialize)]
pub struct Kiosk {
    /// Kiosk id.
    pub id: String,
    /// Device token.
    pub token: String,
}

/// `demo-credentials.json` (what `sportello` writes into its data directory).
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// Operator logins.
    pub operators: Vec<Login>,
    /// Supervisor logins.
    #[serde(default)]
    pub supervisors: Vec<Login>,
    /// Kiosk tokens.
    pub kiosks: Vec<Kiosk>,
}

impl Credentials {
    /// Reads a credentials file.
    pub fn read(path: &Path) -> Result<Credentials> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a demo credentials file", path.display()))
    }
}

/// How to reach the server under load.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's base URL (`http://127.0.0.1:8080`). Loopback only, unless --test-hosts.
    #[arg(long, required_unless_present = "spawn", conflicts_with = "spawn")]
    pub server: Option<String>,
    /// Its demo credentials (`DATA_DIR/demo-credentials.json`).
    #[arg(long, required_unless_present = "spawn")]
    pub credentials: Option<PathBuf>,
    /// Its metrics URL (`http://127.0.0.1:9090/metrics`), for its call counts and, without
    /// --server-pid, its CPU and memory.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Its process id on this machine, for CPU and memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Start this `sportello` binary instead, on loopback, with a fresh data directory.
    #[arg(long)]
    pub spawn: Option<PathBuf>,
    /// Allow private (RFC 1918, fc00::/7) addresses: the project's own test hosts.
    #[arg(long)]
    pub test_hosts: bool,
}

/// The server under load.
pub struct Target {
    /// Base URL, no trailing slash.
    pub base: String,
    /// WebSocket endpoint.
    pub ws: String,
    /// Accounts.
    pub credentials: Credentials,
    /// Metrics URL.
    pub metrics: Option<String>,
    /// Process id on this machine.
    pub pid: Option<u32>,
    spawned: Option<(testkit::SportelloProcess, tempfile::TempDir)>,
}

impl Target {
    /// Connects to, or starts, the server. `kiosks` and `operators` size a spawned server's demo
    /// accounts (and are checked against an existing server's credentials).
    pub fn open(args: &ServerArgs, kiosks: usize, operators: usize) -> Result<Target> {
        let target = match &args.spawn {
            Some(bin) => Self::spawn(bin, kiosks, operators)?,
            None => {
                let base = args.server.clone().context("--server or --spawn")?;
                crate::target::check(&base, args.test_hosts)?;
                if let Some(metrics) = &args.metrics {
                    crate::target::check(metrics, args.test_hosts)?;
                }
                let path = args.credentials.as_ref().context("--credentials")?;
                Target {
                    ws: ws_url(&base),
                    base: base.trim_end_matches('/').to_owned(),
                    credentials: Credentials::read(path)?,
                    metrics: args.metrics.clone(),
                    pid: args.server_pid,
                    spawned: None,
                }
            }
        };
        if target.credentials.kiosks.len() < kiosks {
            bail!(
                "the run needs {kiosks} kiosks and the credentials have {} (start the server with \
                 [demo] kiosks = {kiosks}, or SPORTELLO_DEMO__KIOSKS={kiosks})",
                target.credentials.kiosks.len()
            );
        }
        if target.credentials.operators.len() < operators {
            bail!(
                "the run needs {operators} operators and the credentials have {} ([demo] operators, \
                 SPORTELLO_DEMO__OPERATORS)",
                target.credentials.operators.len()
            );
        }
        Ok(target)
    }

    fn spawn(bin: &Path, kiosks: usize, operators: usize) -> Result<Target> {
        let data = tempfile::tempdir().context("temporary data directory")?;
        let bin_s = bin.to_str().context("the binary's path is not UTF-8")?;
        let kiosks_s = kiosks.max(1).to_string();
        let operators_s = operators.max(1).to_string();
        let args: Vec<&std::ffi::OsStr> = vec![
            "--data-dir".as_ref(),
            data.path().as_os_str(),
            "--media-udp".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--media-tcp".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        let process = testkit::SportelloProcess::try_start(
            bin_s,
            &args,
            &[
                ("RUST_LOG", "warn"),
                ("SPORTELLO_DEMO__KIOSKS", &kiosks_s),
                ("SPORTELLO_DEMO__OPERATORS", &operators_s),
                // The bots log in and connect all at once, from one address.
                ("SPORTELLO_AUTH__LOGIN_PER_ADDRESS", "1000"),
                ("SPORTELLO_WS__RATE_PER_S", "1000"),
                ("SPORTELLO_WS__RATE_BURST", "1000"),
                ("SPORTELLO_LIMITS__SESSIONS_PER_PRINCIPAL", "64"),
                ("SPORTELLO_LIMITS__WS_PER_ADDRESS", "100000"),
                ("SPORTELLO_LIMITS__CONNECTIONS_PER_ADDRESS", "100000"),
            ],
        )
        .map_err(anyhow::Error::msg)?;
        let credentials = Credentials::read(&data.path().join("demo-credentials.json"))?;
        Ok(Target {
            ws: ws_url(&process.base),
            base: process.base.clone(),
            credentials,
            metrics: process.metrics.clone(),
            pid: Some(process.child.id()),
            spawned: Some((process, data)),
        })
    }

    /// Whether this run started the server.
    pub fn is_spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// The spawned server's data directory.
    pub fn data_dir(&self) -> Option<&Path> {
        self.spawned.as_ref().map(|(_, d)| d.path())
    }

    /// A spawned server that exited on its own: its exit status.
    pub fn exited(&mut self) -> Option<String> {
        let (process, _) = self.spawned.as_mut()?;
        match process.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

/// `ws://host:port/api/v1/ws` of a base URL.
pub fn ws_url(base: &str) -> String {
    format!(
        "{}/api/v1/ws",
        base.trim_end_matches('/').replacen("http", "ws", 1)
    )
}

/// One Prometheus sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// The samples of a Prometheus text exposition.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub Vec<Sample>);

impl Scrape {
    /// Parses the text format (comments skipped, escapes in label values kept simple).
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, value) = match line.rfind('}') {
                Some(close) => (&line[..=close], line[close + 1..].trim()),
                None => match line.split_once(' ') {
                    Some((h, v)) => (h, v.trim()),
                    None => continue,
                },
            };
            let value = value.split_whitespace().next().unwrap_or("");
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Scrape(samples)
    }

    /// The sum of `name` over the samples whose labels include every `(key, value)` of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Whether `name` appears at all.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim().trim_start_matches(',').trim().to_owned(), value);
        rest = after[end..].trim_start_matches(',');
    }
    labels
}

/// Fetches and parses a metrics URL.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<Scrape> {
    let text = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .text()
        .await
        .with_context(|| format!("GET {url}"))?;
    Ok(Scrape::parse(&text))
}

/// CPU seconds (user + system) and resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU seconds so far.
    pub cpu_s: f64,
    /// Resident set, MiB.
    pub rss_mib: f64,
}

/// [`Usage`] of a process on this machine, from `/proc/PID`.
pub fn proc_usage(pid: u32) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .context("/proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .context("/proc/PID/stat is short")?
            .parse::<f64>()?)
    };
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = (ticks(11)? + ticks(12)?) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(Usage {
        cpu_s,
        rss_mib: rss_kib / 1024.0,
    })
}

/// [`Usage`] from a scrape's process metrics.
pub fn scrape_usage(scrape: &Scrape) -> Option<Usage> {
    if !scrape.has("process_cpu_seconds_total") {
        return None;
    }
    Some(Usage {
        cpu_s: scrape.sum("process_cpu_seconds_total", &[]),
        rss_mib: scrape.sum("process_resident_memory_bytes", &[]) / (1024.0 * 1024.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP sportello_calls_total Calls.\n\
            # TYPE sportello_calls_total counter\n\
            sportello_calls_total{tenant=\"default\",service=\"anagrafe\",outcome=\"offered\"} 12\n\
            sportello_calls_total{tenant=\"default\",service=\"stato_civile\",outcome=\"offered\"} 3\n\
            sportello_calls_total{tenant=\"default\",service=\"anagrafe\",outcome=\"answered\"} 10\n\
            process_cpu_seconds_total 1.5\n\
            weird{a=\"x\\\"y,z\"} 2 1700000000\n";
        let s = Scrape::parse(text);
        assert_eq!(
            s.sum("sportello_calls_total", &[("outcome", "offered")]),
            15.0
        );
        assert_eq!(
            s.sum(
                "sportello_calls_total",
                &[("outcome", "offered"), ("service", "anagrafe")]
            ),
            12.0
        );
        assert_eq!(s.sum("process_cpu_seconds_total", &[]), 1.5);
        assert_eq!(s.sum("weird", &[("a", "x\"y,z")]), 2.0);
        assert!(!s.has("absent"));
        assert_eq!(scrape_usage(&s).unwrap().cpu_s, 1.5);
    }

    #[test]
    fn reads_its_own_process() {
        let usage = proc_usage(std::process::id()).unwrap();
        assert!(usage.rss_mib > 1.0);
        assert!(usage.cpu_s >= 0.0);
    }

    #[test]
    fn ws_urls() {
        assert_eq!(ws_url("http://127.0.0.1:1/"), "ws://127.0.0.1:1/api/v1/ws");
        assert_eq!(ws_url("https://localhost:2"), "wss://localhost:2/api/v1/ws");
    }
}
