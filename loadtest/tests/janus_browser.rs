//! The Chromium half of `compare-janus` against a real Janus (a private one from `testkit::janus`):
//! `console-web/tests/janus-media.mjs` makes one `videocall` call between two headless Chromium
//! pages with the fake camera and microphone, holds it 3 s and hangs up. Both pages must decode
//! video, and the result must carry every figure `compare-janus` reads (join times, bitrate,
//! Janus's CPU).
//!
//! Like the existing Janus test and the server's browser tests, it never skips: a missing Janus,
//! Chromium or Node.js fails it (`cargo xtask test` installs them), and the scripts' npm packages
//! are installed from their lock file when missing.

use std::path::{Path, PathBuf};

use loadtest::compare::browser::{self, BrowserSide, Tools};
use serde_json::Value;
use testkit::janus::Janus;

/// How long the call is held.
const HOLD_S: f64 = 3.0;

/// One Chromium at a time: two on a 2-core machine would make the figures a measure of contention.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web/tests")
}

fn number(result: &Value, pointer: &str) -> f64 {
    result
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer}: {result}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_call_through_a_private_janus_and_both_decode() {
    let _one = ONE_AT_A_TIME.lock().await;
    testkit::node::ensure_node_modules(&scripts(), &["playwright-core"]);
    let tools = Tools::find(None).unwrap_or_else(|e| panic!("{e}"));
    let janus = Janus::start().expect("a private Janus (apt-get install -y janus)");

    let started = std::time::Instant::now();
    let result = browser::janus(
        &tools,
        &janus.ws_url(),
        janus.media_ip(),
        Some(janus.pid()),
        HOLD_S,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nJanus log:\n{}", janus.log()));
    println!("janus-media.mjs in {:?}: {result}", started.elapsed());

    for side in ["kiosk", "operator"] {
        let frames = number(&result, &format!("/{side}/framesDecoded"));
        assert!(frames > 10.0, "the {side} page decoded {frames} frames");
        assert_eq!(result[side]["connectionState"], "connected", "{result}");
        // The media went between the pages and Janus on its media address, not loopback.
        let pair = result[side]["pair"].as_str().unwrap_or_default();
        assert!(
            pair.matches(&janus.media_ip().to_string()).count() == 2,
            "the {side} page's selected pair is not on {}: {pair}",
            janus.media_ip()
        );
        // 30 frames/s of the fake camera; allow a slow, busy machine a third of it.
        let held = number(&result, &format!("/hold/{side}_frames_decoded"));
        assert!(
            held >= 10.0 * HOLD_S,
            "the {side} page decoded {held} frames in the hold"
        );
        let kbps = number(&result, &format!("/hold/{side}_receives_video_kbps"));
        assert!(
            kbps > 50.0,
            "the {side} page received {kbps} kbit/s of video"
        );
    }
    let first = number(&result, "/call_to_first_frame_ms");
    let ten = number(&result, "/call_to_decoding_ms");
    assert!(0.0 < first && first <= ten, "{result}");
    assert!(ten < 30_000.0, "{result}");
    let cpu = number(&result, "/hold/server_cpu_percent");
    assert!(
        (0.0..200.0).contains(&cpu),
        "Janus's CPU share {cpu} is not a share of two cores"
    );

    // compare-janus reads every figure from it.
    let side = BrowserSide::of(&result);
    for (name, figure) in side.fields() {
        assert!(figure.is_some(), "{name} is missing from {side:?}");
    }
    janus.check().expect("Janus still runs");
    assert!(!janus.log().contains("[FATAL]"), "{}", janus.log());
}

#[tokio::test]
async fn a_janus_that_is_not_there_is_a_clear_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    testkit::node::ensure_node_modules(&scripts(), &["playwright-core"]);
    let tools = Tools::find(None).unwrap_or_else(|e| panic!("{e}"));
    let port = testkit::free_port();
    let e = browser::janus(
        &tools,
        &format!("ws://127.0.0.1:{port}"),
        std::net::Ipv4Addr::LOCALHOST.into(),
        None,
        1.0,
    )
    .await
    .expect_err("nothing listens there");
    let text = format!("{e:#}");
    assert!(text.contains("cannot reach Janus"), "{text}");
}
