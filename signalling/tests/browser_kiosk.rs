//! The kiosk screen `/kiosk/` in real headless Chromium (fake camera), driven by
//! `console-web/tests/kiosk.mjs` with playwright-core against the `sportello` binary: the kiosk
//! picks a service and calls, an operator on `/media-test/` accepts, the kiosk shows the in-call
//! screen and decodes the operator's video, follows hold and resume, survives a cut socket, and
//! shows the end screen and then the welcome screen again when the operator ends the call. A
//! second kiosk page whose camera is denied shows the camera message, still receives the
//! operator, gets its camera back with the retry button and ends the call itself. The welcome
//! screen is checked with axe-core (no serious or critical violations), and screenshots of the
//! screens are taken (into `target/tmp/screenshots/`, or `docs/screenshots/kiosk-*.png` with
//! `UPDATE_SCREENSHOTS=1`).
//!
//! Every page of the run loads and runs under the server's Content-Security-Policy without a
//! violation. A kiosk page ignores `#agent=http://evil.example/` (with a console warning, nothing
//! stored) and keeps `#agent=http://127.0.0.1:<port>`, which it can reach while its CSP refuses any
//! other origin. The pages reach no test hook: the script reads their state from the DOM.
//!
//! A missing Chromium or Node.js fails the test (it never skips).

#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use browser::{run_node, CHROMIUM};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

#[tokio::test]
async fn the_kiosk_page_and_its_catalogues_are_served() {
    browser::assert_served(
        BIN,
        &[
            ("/kiosk/", "text/html"),
            ("/kiosk/app.js", "javascript"),
            ("/kiosk/kiosk.css", "text/css"),
            ("/lib/i18n.js", "javascript"),
            ("/lib/reflect.js", "javascript"),
            ("/lib/messages/it.json", "json"),
            ("/lib/messages/en.json", "json"),
        ],
        &["/kiosk/../tests/kiosk.mjs"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_calls_from_the_kiosk_through_hold_reconnection_and_end() {
    let (_turn, s) = browser::start_browser_run(BIN).await;
    // Screenshots are always taken; `UPDATE_SCREENSHOTS=1` refreshes the committed ones.
    let shots = browser::screenshot_dir();
    let shots = shots.as_str();
    let result = run_node(
        "kiosk.mjs",
        &[
            "--base",
            &s.server.base,
            "--kiosk-token",
            &s.kiosk_token,
            "--username",
            &s.username,
            "--password",
            &s.password,
            "--chromium",
            CHROMIUM,
        ],
        &[("SCREENSHOTS", "1"), ("SCREENSHOT_DIR", shots)],
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    let screens: Vec<&str> = result["screens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for screen in [
        "welcome", "waiting", "in_call", "hold", "in_call", "ended", "welcome",
    ] {
        assert!(screens.contains(&screen), "{screen} never shown: {result}");
    }
    let frames = result["framesDecoded"].as_u64().unwrap_or(0);
    assert!(frames > 10, "the kiosk decoded {frames} frames: {result}");
    assert_eq!(result["reconnected"], true, "{result}");
    assert_eq!(result["axe"]["serious"], 0, "{result}");
    assert_eq!(
        result["camera"]["cameraError"], "NotAllowedError",
        "{result}"
    );
    assert_eq!(result["camera"]["retried"], true, "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");
    let agent = &result["agent"];
    assert_eq!(agent["ignored"], "http://evil.example/", "{result}");
    assert!(
        agent["stored"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{result}"
    );
    assert_eq!(agent["reached"], true, "{result}");
    assert_eq!(agent["cspRefusedOther"], true, "{result}");
}
