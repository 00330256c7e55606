//! Helpers shared by the browser tests (`browser_media.rs`, `browser_kiosk.rs`,
//! `browser_console.rs`, `browser_supervisor.rs`): the checks for Chromium and Node.js, the `npm ci`
//! of `console-web/tests/`, a `sportello` process with its media plane on loopback and the demo
//! credentials, and running one Node.js script to its JSON result.
//! Included with `#[path = "common/browser.rs"] mod browser;` so the other tests are unaffected.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use testkit::SportelloProcess;

/// Debian's Chromium, which playwright-core drives.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser run at a time: two Chromiums encoding video at once on a 2-core machine would turn
/// the timings into a measure of CPU contention.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `console-web/tests/`, where the scripts and their `node_modules/` live.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web/tests")
}

/// Fails (never skips) when Chromium is missing.
pub fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with \
         `apt-get install -y chromium` (cargo xtask test installs it)."
    );
}

/// Installs the packages of the lock file when one of `packages` is missing
/// ([`testkit::node::ensure_node_modules`]; it blocks only while npm runs, once per clone).
pub async fn ensure_node_modules(dir: &Path, packages: &[&str]) {
    testkit::node::ensure_node_modules(dir, packages);
}

/// A `sportello` process with its media plane on loopback, and the demo accounts it created.
pub struct MediaServer {
    pub server: SportelloProcess,
    /// The server's data directory.
    pub data_dir: PathBuf,
    pub kiosk_token: String,
    pub username: String,
    pub password: String,
    creds: Value,
    _data: tempfile::TempDir,
}

impl MediaServer {
    /// Starts `bin` (the test's `CARGO_BIN_EXE_sportello`) with UDP and TCP media on loopback.
    pub fn start(bin: &str) -> Self {
        Self::start_with(bin, &[])
    }

    /// [`MediaServer::start`] with extra command-line arguments (e.g. `--config FILE`).
    pub fn start_with(bin: &str, extra: &[&std::ffi::OsStr]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--data-dir".as_ref(),
            data.path().as_os_str(),
            "--media-udp".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--media-tcp".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        args.extend_from_slice(extra);
        // Access tokens of a minute: the staff pages refresh theirs every few seconds, so every
        // browser run also proves that a page keeps working across token refreshes.
        let server = SportelloProcess::start(bin, &args, &[("SPORTELLO_AUTH__ACCESS_TTL_S", "60")]);
        let creds: Value = serde_json::from_slice(
            &std::fs::read(data.path().join("demo-credentials.json")).unwrap(),
        )
        .unwrap();
        let text = |v: &Value| v.as_str().unwrap().to_owned();
        MediaServer {
            data_dir: data.path().to_owned(),
            kiosk_token: text(&creds["kiosks"][0]["token"]),
            username: text(&creds["operators"][0]["username"]),
            password: text(&creds["operators"][0]["password"]),
            creds,
            server,
            _data: data,
        }
    }
}

impl MediaServer {
    /// The user name and password of the demo operator `username`.
    pub fn operator(&self, username: &str) -> (String, String) {
        let op = self.creds["operators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["username"] == username)
            .unwrap_or_else(|| panic!("no demo operator {username}: {}", self.creds));
        (
            op["username"].as_str().unwrap().to_owned(),
            op["password"].as_str().unwrap().to_owned(),
        )
    }

    /// The user name and password of the demo supervisor `username`.
    pub fn supervisor(&self, username: &str) -> (String, String) {
        let sup = self.creds["supervisors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["username"] == username)
            .unwrap_or_else(|| panic!("no demo supervisor {username}: {}", self.creds));
        (
            sup["username"].as_str().unwrap().to_owned(),
            sup["password"].as_str().unwrap().to_owned(),
        )
    }

    /// The device token of the demo kiosk `id`.
    pub fn kiosk_token_of(&self, id: &str) -> String {
        self.creds["kiosks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap_or_else(|| panic!("no demo kiosk {id}: {}", self.creds))["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// What every browser run starts with: Chromium present (or a clear failure), its turn (one browser
/// run at a time), the npm packages installed, and a server with its media plane on loopback. Hold
/// the guard for the whole run.
pub async fn start_browser_run(bin: &str) -> (tokio::sync::MutexGuard<'static, ()>, MediaServer) {
    start_browser_run_with(bin, &[]).await
}

/// [`start_browser_run`] with extra command-line arguments for the server (e.g. `--config FILE`).
pub async fn start_browser_run_with(
    bin: &str,
    extra: &[&std::ffi::OsStr],
) -> (tokio::sync::MutexGuard<'static, ()>, MediaServer) {
    require_chromium();
    let turn = ONE_AT_A_TIME.lock().await;
    ensure_node_modules(&tests_dir(), &["playwright-core", "axe-core"]).await;
    (turn, MediaServer::start_with(bin, extra))
}

/// Where a browser test writes its screenshots: `docs/screenshots/` when `UPDATE_SCREENSHOTS` is set
/// (to refresh the committed ones), otherwise a folder under `target/tmp/`.
pub fn screenshot_dir() -> String {
    let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        tests_dir().join("../../docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}

/// Runs `node script args…` in `console-web/tests/` with `envs`, within `limit`, asserts that it
/// succeeded and returns the last JSON line of its standard output.
pub async fn run_node(
    script: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script)
        .args(args)
        .current_dir(tests_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run node ({e}): install Node.js with `apt-get install -y nodejs`")
    });
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} did not finish within {limit:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result from {script}:\n{stdout}\n{stderr}"));
    eprintln!("{script}: {line}");
    serde_json::from_str(line).unwrap()
}

/// Starts the binary on a fresh data directory and checks that each `(path, MIME fragment)` is
/// served with that type, and that each of `missing` (traversals, unknown files) is a 404.
pub async fn assert_served(bin: &str, served: &[(&str, &str)], missing: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    let server =
        SportelloProcess::start(bin, &["--data-dir".as_ref(), data.path().as_os_str()], &[]);
    for (path, mime) in served {
        let res = reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.contains(mime), "{path}: {content_type}");
    }
    for path in missing {
        let res = reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
}
