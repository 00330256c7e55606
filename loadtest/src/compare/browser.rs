//! The browser half of `compare-janus`: one 1:1 call between two headless Chromium pages (fake
//! camera at 640×480 and microphone) on each side, measured the same way.
//!
//! Both runs are Node.js scripts of `console-web/tests/` driving Debian's Chromium through
//! playwright-core, each printing one JSON line:
//!
//! - our server: `media.mjs` (the kiosk and operator pages of `/media-test/`, the script of the
//!   server's browser tests and of `scripts/bench-browser-call.sh`), with `--hold-s`, `--metrics`
//!   and `--server-pid`;
//! - Janus: `janus-media.mjs` (two pages speaking Janus's WebSocket API and `videocall` plugin
//!   themselves, the flow of [`crate::janus`]), with `--hold-s` and `--janus-pid`.
//!
//! Figures of a run ([`BrowserSide`]): the server's CPU during the hold (one call, so it is the
//! CPU per call, in percent of one core), the join times from the first request (our kiosk's
//! `call.request`; the Janus caller's first `videocall` request, `register`) to both pages having
//! decoded their first video frame and more than 10 frames (each page polls getStats every
//! 100 ms), and the video bitrate received, the mean of the two pages over the hold.
//!
//! [`Tools::find`] looks for what the runs need: `node` on the `PATH`, Chromium (`--chromium`,
//! `$CHROMIUM`, else `/usr/bin/chromium`, as the browser tests use) and the scripts' folder with
//! `node_modules/playwright-core` (`console-web/tests` under the current folder, else next to this
//! crate's sources).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;

use crate::server::Target;

/// Debian's Chromium, which the browser tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The npm package the scripts import.
const PLAYWRIGHT: &str = "playwright-core";
/// How long a script may take beyond its hold.
const SETUP: Duration = Duration::from_secs(60);

/// What the browser runs need.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Node.js.
    pub node: PathBuf,
    /// Chromium.
    pub chromium: PathBuf,
    /// `console-web/tests`, with its `node_modules`.
    pub scripts: PathBuf,
}

impl Tools {
    /// Finds node, Chromium (`chromium`, else `$CHROMIUM`, else [`CHROMIUM`]) and the scripts'
    /// folder, or says what is missing and how to get it.
    pub fn find(chromium: Option<&Path>) -> Result<Tools, String> {
        let chromium = chromium
            .map(Path::to_owned)
            .or_else(|| std::env::var_os("CHROMIUM").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(CHROMIUM));
        if !chromium.is_file() {
            return Err(format!(
                "Chromium is missing at {} (apt-get install -y chromium, or --chromium PATH)",
                chromium.display()
            ));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let node = std::env::split_paths(&path)
            .map(|d| d.join("node"))
            .find(|p| p.is_file())
            .ok_or("node is not on the PATH (apt-get install -y nodejs npm)")?;
        let candidates = [
            PathBuf::from("console-web/tests"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web/tests"),
        ];
        let Some(scripts) = candidates
            .iter()
            .find(|d| d.join("janus-media.mjs").is_file())
        else {
            return Err(format!(
                "the browser scripts (console-web/tests/janus-media.mjs) are not found: run from \
                 the project's root (looked in {})",
                candidates.map(|c| c.display().to_string()).join(", ")
            ));
        };
        if !scripts
            .join("node_modules")
            .join(PLAYWRIGHT)
            .join("package.json")
            .is_file()
        {
            return Err(format!(
                "{PLAYWRIGHT} is missing from {}/node_modules: run `npm ci` there",
                scripts.display()
            ));
        }
        Ok(Tools {
            node,
            chromium,
            scripts: scripts.canonicalize().unwrap_or_else(|_| scripts.clone()),
        })
    }

    /// Runs `node SCRIPT ARGS… --chromium …` in the scripts' folder and returns its last stdout
    /// line as JSON; fails with the tail of its stderr if it fails or takes longer than `timeout`.
    pub async fn run(&self, script: &str, args: &[String], timeout: Duration) -> Result<Value> {
        let mut command = tokio::process::Command::new(&self.node);
        command
            .arg(script)
            .args(args)
            .arg("--chromium")
            .arg(&self.chromium)
            .arg("--timeout-s")
            .arg(SETUP.as_secs().to_string())
            .current_dir(&self.scripts)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, command.output())
            .await
            .map_err(|_| anyhow::anyhow!("{script} took longer than {timeout:?}"))?
            .with_context(|| format!("cannot run {}", self.node.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("{script} failed ({}):\n{}", out.status, tail(&stderr, 60));
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let value: Value = line
            .and_then(|l| serde_json::from_str(l).ok())
            .with_context(|| format!("{script} printed no JSON line: {}", tail(&stdout, 10)))?;
        if value["ok"] != Value::Bool(true) {
            bail!("{script} did not say ok: {value}");
        }
        Ok(value)
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One browser call's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BrowserSide {
    /// The server's CPU during the hold, percent of one core (one call).
    pub cpu_per_call_pct: Option<f64>,
    /// First request → both pages decoded their first video frame, ms.
    pub join_first_frame_ms: Option<f64>,
    /// First request → both pages decoded more than 10 video frames, ms.
    pub join_10_frames_ms: Option<f64>,
    /// Video received per page during the hold, kbit/s (the mean of the two pages).
    pub kbps: Option<f64>,
}

impl BrowserSide {
    /// The figures of a `media.mjs` or `janus-media.mjs` result.
    pub fn of(result: &Value) -> BrowserSide {
        let num = |p: &str| result.pointer(p).and_then(Value::as_f64);
        let kbps = match (
            num("/hold/kiosk_receives_video_kbps"),
            num("/hold/operator_receives_video_kbps"),
        ) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            _ => None,
        };
        BrowserSide {
            cpu_per_call_pct: num("/hold/server_cpu_percent"),
            join_first_frame_ms: num("/call_to_first_frame_ms"),
            join_10_frames_ms: num("/call_to_decoding_ms"),
            kbps,
        }
    }

    /// The figures by name, for the ratios.
    pub fn fields(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("cpu_per_call_pct", self.cpu_per_call_pct),
            ("join_first_frame_ms", self.join_first_frame_ms),
            ("join_10_frames_ms", self.join_10_frames_ms),
            ("kbps", self.kbps),
        ]
    }
}

/// One call through our server: the last demo kiosk calls, the last demo operator answers (the
/// headless run used the first ones), held `hold_s` seconds.
pub async fn ours(tools: &Tools, target: &Target, hold_s: f64) -> Result<Value> {
    let kiosk = target.credentials.kiosks.last().context("no demo kiosk")?;
    let operator = target
        .credentials
        .operators
        .last()
        .context("no demo operator")?;
    let mut args = vec![
        "--base".to_owned(),
        target.base.clone(),
        "--kiosk-token".to_owned(),
        kiosk.token.clone(),
        "--username".to_owned(),
        operator.username.clone(),
        "--password".to_owned(),
        operator.password.clone(),
        "--mode".to_owned(),
        "udp".to_owned(),
        "--hold-s".to_owned(),
        hold_s.to_string(),
    ];
    if let Some(metrics) = &target.metrics {
        args.extend(["--metrics".to_owned(), metrics.clone()]);
    }
    if let Some(pid) = target.pid {
        args.extend(["--server-pid".to_owned(), pid.to_string()]);
    }
    tools.run("media.mjs", &args, script_timeout(hold_s)).await
}

/// One call through the Janus at `ws` (candidates on `media_ip`), held `hold_s` seconds.
pub async fn janus(
    tools: &Tools,
    ws: &str,
    media_ip: IpAddr,
    pid: Option<u32>,
    hold_s: f64,
) -> Result<Value> {
    let mut args = vec![
        "--janus".to_owned(),
        ws.to_owned(),
        "--media-ip".to_owned(),
        media_ip.to_string(),
        "--hold-s".to_owned(),
        hold_s.to_string(),
        "--name".to_owned(),
        format!("lt{}-browser", std::process::id()),
    ];
    if let Some(pid) = pid {
        args.extend(["--janus-pid".to_owned(), pid.to_string()]);
    }
    tools
        .run("janus-media.mjs", &args, script_timeout(hold_s))
        .await
}

fn script_timeout(hold_s: f64) -> Duration {
    SETUP + SETUP + Duration::from_secs_f64(hold_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_of_a_script_result() {
        let result = json!({"ok": true, "call_to_first_frame_ms": 420, "call_to_decoding_ms": 800,
            "hold": {"server_cpu_percent": 1.5, "kiosk_receives_video_kbps": 1000,
                     "operator_receives_video_kbps": 1200, "kiosk_receives_kbps": 1040}});
        assert_eq!(
            BrowserSide::of(&result),
            BrowserSide {
                cpu_per_call_pct: Some(1.5),
                join_first_frame_ms: Some(420.0),
                join_10_frames_ms: Some(800.0),
                kbps: Some(1100.0),
            }
        );
        // No hold, no CPU: those figures are missing, not zero.
        let side = BrowserSide::of(&json!({"ok": true, "call_to_decoding_ms": 800}));
        assert_eq!(side.cpu_per_call_pct, None);
        assert_eq!(side.kbps, None);
        assert_eq!(side.join_10_frames_ms, Some(800.0));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
