//! Real media in real browsers: the `sportello` binary with its SFU, and headless Chromium
//! (Debian's `/usr/bin/chromium`, driven by `console-web/tests/media.mjs` with playwright-core)
//! running the `/media-test/` page as a kiosk and as an operator. The kiosk calls, the operator
//! accepts, and each side must decode the other's video (more than 10 frames), once over UDP and
//! once with the SFU's UDP candidates dropped by both pages (ICE-TCP only).
//!
//! A missing Chromium or Node.js fails the test (it never skips); `cargo xtask test` installs both.
//! `console-web/tests/node_modules` is installed with `npm ci` when missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use testkit::SportelloProcess;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser run at a time: two Chromiums encoding video at once on a 2-core machine would turn
/// the timings into a measure of CPU contention.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web/tests")
}

/// Installs playwright-core from the lock file when `node_modules` is missing (offline-friendly:
/// nothing runs when it is there), with npm's cache under `target/` so nothing lands outside the
/// clone.
async fn ensure_node_modules(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("npm_config_cache", dir.join("../../target/npm-cache"))
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run npm ({e}): install Node.js with `apt-get install -y nodejs npm`")
        });
    assert!(
        out.status.success(),
        "npm ci in {} failed: {}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a server with its media plane on loopback, runs `media.mjs` in `mode` against it and
/// returns the script's JSON result.
async fn run(mode: &str) -> Value {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser media tests need Debian's Chromium. Install it with \
         `apt-get install -y chromium` (cargo xtask test installs it)."
    );
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tests_dir();
    ensure_node_modules(&dir).await;

    let data = tempfile::tempdir().unwrap();
    let server = SportelloProcess::start(
        BIN,
        &[
            "--data-dir".as_ref(),
            data.path().as_os_str(),
            "--media-udp".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--media-tcp".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        &[],
    );
    let creds: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("demo-credentials.json")).unwrap())
            .unwrap();
    let kiosk_token = creds["kiosks"][0]["token"].as_str().unwrap();
    let username = creds["operators"][0]["username"].as_str().unwrap();
    let password = creds["operators"][0]["password"].as_str().unwrap();

    let child = tokio::process::Command::new("node")
        .arg("media.mjs")
        .args(["--base", &server.base, "--kiosk-token", kiosk_token])
        .args(["--username", username, "--password", password])
        .args(["--mode", mode, "--chromium", CHROMIUM])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}): install Node.js with `apt-get install -y nodejs`")
        });
    // The script gives up after 60 s of waiting; this bounds a browser that hangs on start or exit.
    let out = tokio::time::timeout(Duration::from_secs(150), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("media.mjs ({mode}) did not finish within 150 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "media.mjs ({mode}) failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result from media.mjs ({mode}):\n{stdout}\n{stderr}"));
    eprintln!("media.mjs ({mode}): {line}");
    serde_json::from_str(line).unwrap()
}

/// Both sides decode more than 10 frames of the other's video, over a pair of `protocol`.
fn assert_both_decode(result: &Value, protocol: &str) {
    assert_eq!(result["ok"], true, "{result}");
    for side in ["kiosk", "operator"] {
        let s = &result[side];
        let frames = s["framesDecoded"].as_u64().unwrap_or(0);
        assert!(frames > 10, "{side} decoded {frames} frames: {result}");
        assert!(
            s["framesSent"].as_u64().unwrap_or(0) > 0,
            "{side}: {result}"
        );
        assert_eq!(s["connectionState"], "connected", "{side}: {result}");
        assert_eq!(
            s["pair"]["local"]["protocol"], protocol,
            "{side}'s selected candidate pair: {result}"
        );
        assert_eq!(
            s["pair"]["remote"]["protocol"], protocol,
            "{side}'s selected candidate pair: {result}"
        );
    }
    let ms = result["call_to_decoding_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms < 60_000.0, "{result}");
}

#[tokio::test]
async fn the_media_test_page_and_the_protocol_library_are_served() {
    let data = tempfile::tempdir().unwrap();
    let server =
        SportelloProcess::start(BIN, &["--data-dir".as_ref(), data.path().as_os_str()], &[]);
    for (path, mime) in [
        ("/media-test/", "text/html"),
        ("/media-test/app.js", "javascript"),
        ("/lib/sportello.js", "javascript"),
    ] {
        let res = reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.contains(mime), "{path}: {content_type}");
    }
    for path in [
        "/lib/nope.js",
        "/lib/../Cargo.toml",
        "/media-test/../tests/media.mjs",
    ] {
        let res = reqwest::get(format!("{}{path}", server.base))
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_and_operator_see_each_other_over_udp() {
    let result = run("udp").await;
    assert_both_decode(&result, "udp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_and_operator_see_each_other_over_ice_tcp_when_udp_is_blocked() {
    let result = run("tcp").await;
    assert_both_decode(&result, "tcp");
    for side in ["kiosk", "operator"] {
        assert_eq!(
            result[side]["pair"]["local"]["tcpType"], "active",
            "{side}: the browser connects to the SFU's passive TCP candidate: {result}"
        );
    }
}
