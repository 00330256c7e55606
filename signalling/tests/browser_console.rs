//! The operator console `/console/` in real headless Chromium (fake camera and microphone), driven
//! by `console-web/tests/console.mjs` with playwright-core against the `sportello` binary: the
//! operator logs in with a demo account of capacity 3, goes available, two kiosk pages (`/kiosk/`)
//! call, the console rings for each offer and accepts both (one with the `A` key), both booth tiles
//! decode their kiosk's video, booth 1 is held (its kiosk shows the hold screen) and resumed, the
//! console reloads and `state.sync` restores both tiles with their video, booth 2 is ended (its
//! kiosk shows the end screen and its citizen rates the call with a face) and its wrap-up closed
//! with a disposition chosen by key, booth 1's citizen skips the rating. The console is checked with
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
    // The citizen rated the call with a face; the operator closed its wrap-up with key 2.
    assert_eq!(result["kioskRated"], 4, "{result}");
    assert_eq!(result["kioskBackToWelcome"], true, "{result}");
    assert_eq!(result["kioskSkipped"], true, "{result}");
    let faces = result["kioskFaces"].as_array().expect("the faces");
    assert_eq!(faces.len(), 5, "{result}");
    assert!(
        faces[0].as_str().unwrap().contains("Molto insoddisfatto"),
        "{result}"
    );
    assert!(
        faces[4].as_str().unwrap().contains("Very happy"),
        "{result}"
    );
    let dispositions = result["dispositions"].as_array().expect("the dispositions");
    assert_eq!(dispositions.len(), 5, "{result}");
    assert_eq!(dispositions[1]["code"], "informazioni", "{result}");
    assert_eq!(dispositions[1]["keys"], "2", "{result}");
    assert!(
        dispositions[1]["name"]
            .as_str()
            .unwrap()
            .contains("Informazioni fornite"),
        "{result}"
    );
    // The server kept both: Prometheus counts the rating and the disposition.
    let metrics_url = server
        .metrics
        .clone()
        .expect("the admin listener's metrics URL");
    let text = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "sportello_feedback_ratings_total{rating=\"4\"} 1",
        "sportello_dispositions_total{disposition=\"informazioni\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in {text}");
    }
    assert_eq!(result["restoredAfterReload"], true, "{result}");
    assert_eq!(result["axe"]["serious"], 0, "{result}");
}
