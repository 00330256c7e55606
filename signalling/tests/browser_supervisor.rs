//! The supervisor's wallboard `/supervisor/` in real headless Chromium (fake camera and microphone),
//! driven by `console-web/tests/supervisor.mjs` with playwright-core against the `sportello` binary:
//! the demo supervisor logs in and receives `metrics.snapshot`; the operator logs in on `/console/`
//! and stays paused while a kiosk (`/kiosk/`) calls, so the board shows 1 waiting on anagrafe; the
//! operator goes available and accepts (the `A` key); the board shows the operator with load 1, the
//! call connected and nobody waiting; the supervisor monitors the call silently and both monitor
//! videos (kiosk and operator) decode; monitoring stops; the supervisor forces the operator to
//! paused with a reason (board and console show it); the console ends the call. The wallboard is
//! checked with axe-core (no serious or critical violations) and screenshots are taken (into
//! `target/tmp/screenshots/`, or `docs/screenshots/supervisor-*.png` with `UPDATE_SCREENSHOTS=1`).
//! Every page runs under the server's Content-Security-Policy without a violation, and the script
//! reads the pages' state from the DOM (they carry no test hook).
//!
//! A missing Chromium or Node.js fails the test (it never skips).

#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use browser::{run_node, CHROMIUM};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

#[tokio::test]
async fn the_wallboard_page_is_served() {
    browser::assert_served(
        BIN,
        &[
            ("/supervisor/", "text/html"),
            ("/supervisor/app.js", "javascript"),
            ("/supervisor/supervisor.css", "text/css"),
            ("/lib/messages/en.json", "json"),
        ],
        &[
            "/supervisor/../tests/supervisor.mjs",
            "/supervisor/nothing.js",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_watches_monitors_and_pauses_an_operator() {
    let (_turn, s) = browser::start_browser_run(BIN).await;
    let server = &s.server;
    let (supervisor, supervisor_password) = s.supervisor("anna.ferrari");
    let (username, password) = s.operator("maria.rossi");
    let kiosk = s.kiosk_token_of("municipio");
    // Screenshots are always taken; `UPDATE_SCREENSHOTS=1` refreshes the committed ones.
    let shots = browser::screenshot_dir();
    let shots = shots.as_str();
    let result = run_node(
        "supervisor.mjs",
        &[
            "--base",
            &server.base,
            "--supervisor",
            &supervisor,
            "--supervisor-password",
            &supervisor_password,
            "--username",
            &username,
            "--password",
            &password,
            "--kiosk-token",
            &kiosk,
            "--chromium",
            CHROMIUM,
        ],
        &[("SCREENSHOTS", "1"), ("SCREENSHOT_DIR", shots)],
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");
    assert_eq!(result["connectedShown"], true, "{result}");
    for side in ["kioskFramesDecoded", "operatorFramesDecoded"] {
        let frames = result["monitor"][side].as_u64().unwrap_or(0);
        assert!(frames > 10, "{side}: {frames} frames: {result}");
    }
    assert_eq!(result["monitorMuted"], true, "{result}");
    assert_eq!(result["monitorStopped"], true, "{result}");
    assert_eq!(result["forcedPaused"], true, "{result}");
    assert_eq!(result["ended"], true, "{result}");
    assert_eq!(result["axe"]["serious"], 0, "{result}");
}
