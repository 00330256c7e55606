//! The operator console `/console/` in real headless Chromium (fake camera and microphone), driven
//! by `console-web/tests/console.mjs` with playwright-core against the `sportello` binary: the
//! operator logs in with a demo account of capacity 3, goes available, two kiosk pages (`/kiosk/`)
//! call, the console rings for each offer and accepts both (one with the `A` key), both booth tiles
//! decode their kiosk's video, booth 1 is held (its kiosk shows the hold screen) and resumed, the
//! console reloads and `state.sync` restores both tiles with their video, booth 2 is ended and its
//! wrap-up closed (its kiosk shows the end screen). The console is checked with
//! axe-core (no serious or critical violations) and screenshots are taken (into
//! `target/tmp/screenshots/`, or `docs/screenshots/console-*.png` with `UPDATE_SCREENSHOTS=1`).
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
async fn the_console_page_is_served() {
    browser::assert_served(
        BIN,
        &[
            ("/console/", "text/html"),
            ("/console/app.js", "javascript"),
            ("/console/console.css", "text/css"),
            ("/lib/staff.css", "text/css"),
            ("/lib/sportello.js", "javascript"),
            ("/lib/messages/it.json", "json"),
        ],
        &["/console/../tests/console.mjs", "/console/nothing.js"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_serves_two_booths_from_the_console() {
    let (_turn, s) = browser::start_browser_run(BIN).await;
    let server = &s.server;
    // maria.rossi has capacity 3, so both calls are offered to her.
    let (username, password) = s.operator("maria.rossi");
    let kiosk1 = s.kiosk_token_of("municipio");
    let kiosk2 = s.kiosk_token_of("centro-torri");
    // Screenshots are always taken; `UPDATE_SCREENSHOTS=1` refreshes the committed ones.
    let shots = browser::screenshot_dir();
    let shots = shots.as_str();
    let result = run_node(
        "console.mjs",
        &[
            "--base",
            &server.base,
            "--username",
            &username,
            "--password",
            &password,
            "--kiosk-token",
            &kiosk1,
            "--kiosk2-token",
            &kiosk2,
            "--chromium",
            CHROMIUM,
        ],
        &[("SCREENSHOTS", "1"), ("SCREENSHOT_DIR", shots)],
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");
    assert!(result["offersSeen"].as_u64().unwrap_or(0) >= 2, "{result}");
    assert_eq!(result["acceptedByKey"], true, "{result}");
    assert_eq!(result["tokenRefreshed"], true, "{result}");
    assert_eq!(result["logoutRevoked"], true, "{result}");
    assert_eq!(result["storageCleared"], true, "{result}");
    for booth in ["booth1", "booth2"] {
        let frames = result["frames"][booth].as_u64().unwrap_or(0);
        assert!(frames > 10, "{booth} decoded {frames} frames: {result}");
    }
    for kiosk in ["kiosk1", "kiosk2"] {
        let frames = result["kioskFrames"][kiosk].as_u64().unwrap_or(0);
        assert!(
            frames > 10,
            "{kiosk} decoded {frames} frames of the console: {result}"
        );
    }
    assert_eq!(result["kiosk1Held"], true, "{result}");
    assert_eq!(result["kiosk2Ended"], true, "{result}");
    assert_eq!(result["restoredAfterReload"], true, "{result}");
    assert_eq!(result["axe"]["serious"], 0, "{result}");
}
