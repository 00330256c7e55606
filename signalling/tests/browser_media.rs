//! Real media in real browsers: the `sportello` binary with its SFU, and headless Chromium
//! (Debian's `/usr/bin/chromium`, driven by `console-web/tests/media.mjs` with playwright-core)
//! running the `/media-test/` page as a kiosk and as an operator. The kiosk calls, the operator
//! accepts, and each side must decode the other's video (more than 10 frames), once over UDP and
//! once with the SFU's UDP candidates dropped by both pages (ICE-TCP only).
//!
//! A missing Chromium or Node.js fails the test (it never skips); `cargo xtask test` installs both.
//! `console-web/tests/node_modules` is installed with `npm ci` when missing.

#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use browser::{run_node, CHROMIUM};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

/// Starts a server with its media plane on loopback, runs `media.mjs` in `mode` against it and
/// returns the script's JSON result.
async fn run(mode: &str) -> Value {
    let (_turn, s) = browser::start_browser_run(BIN).await;
    // The script gives up after 60 s of waiting; this bounds a browser that hangs on start or exit.
    run_node(
        "media.mjs",
        &[
            "--base",
            &s.server.base,
            "--kiosk-token",
            &s.kiosk_token,
            "--username",
            &s.username,
            "--password",
            &s.password,
            "--mode",
            mode,
            "--chromium",
            CHROMIUM,
        ],
        &[],
        Duration::from_secs(150),
    )
    .await
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
    browser::assert_served(
        BIN,
        &[
            ("/media-test/", "text/html"),
            ("/media-test/app.js", "javascript"),
            ("/media-test/media-test.css", "text/css"),
            ("/lib/sportello.js", "javascript"),
        ],
        &[
            "/lib/nope.js",
            "/lib/../Cargo.toml",
            "/media-test/../tests/media.mjs",
        ],
    )
    .await;
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
