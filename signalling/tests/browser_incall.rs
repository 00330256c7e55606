//! The in-call service through the browser: the kiosk screen `/kiosk/` and the operator console
//! `/console/` in real headless Chromium (driven by `console-web/tests/incall.mjs`), the
//! `sportello-kiosk-agent` process with a scanner image and a PDF printer on a private CUPS, and
//! the `sportello` binary with a real signer. The operator identifies the citizen by paper document (the scan shown
//! beside the video, confirmed with type and number), issues a residenza with bollo (preview in the
//! console, bollo notice on the kiosk), prints it (the console follows the job to "stampato", the
//! kiosk tells the citizen to collect it); the printed PDF's stamp verifies with `sportello verify`.
//! axe-core finds no violation on either page with the panels open. Both pages (the PDF preview
//! and the calls to the loopback agent included) run under the server's Content-Security-Policy
//! without a violation.
//!
//! A missing Chromium, Node.js, CUPS or agent binary fails the test (it never skips).

#[path = "common/agent.rs"]
mod agent;
#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use agent::{resident, scan_image, Agent, RealSigner};
use browser::{run_node, CHROMIUM};
use testkit::cups::PdfPrinter;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_identified_issued_and_printed_from_the_console() {
    browser::require_chromium();
    let _turn = browser::ONE_AT_A_TIME.lock().await;
    browser::ensure_node_modules(&browser::tests_dir(), &["playwright-core", "axe-core"]).await;
    let dir = tempfile::tempdir().unwrap();
    let signer = RealSigner::create(dir.path());
    let s =
        browser::MediaServer::start_with(BIN, &["--config".as_ref(), signer.config.as_os_str()]);
    let printer = PdfPrinter::create().unwrap();
    let token = s.kiosk_token_of("municipio");
    let mut agent = Agent::new(
        dir.path(),
        &s.server.base,
        &token,
        &printer,
        None,
        &scan_image(dir.path()),
    );
    agent.start(None);
    agent.connected().await;
    let citizen = resident();
    let (username, password) = s.operator("maria.rossi");
    let shots = browser::screenshot_dir();
    let result = run_node(
        "incall.mjs",
        &[
            "--base",
            &s.server.base,
            "--kiosk-token",
            &token,
            "--agent-url",
            &agent.local,
            "--username",
            &username,
            "--password",
            &password,
            "--fiscal-code",
            &citizen.fiscal_code.to_string(),
            "--chromium",
            CHROMIUM,
        ],
        &[("SCREENSHOTS", "1"), ("SCREENSHOT_DIR", shots.as_str())],
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(result["ok"], true, "{result}\n{}", agent.logs());
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");
    assert_eq!(result["print_state"], "printed", "{result}");
    assert_eq!(result["bollo_due"], true, "{result}");
    assert_eq!(result["kiosk"]["identity"], "verified", "{result}");
    assert_eq!(result["kiosk"]["bollo_notice"], true, "{result}");
    assert_eq!(result["kiosk"]["collect_notice"], true, "{result}");
    assert!(
        result["scan"]["naturalWidth"].as_u64().unwrap_or(0) > 0,
        "{result}"
    );
    assert!(
        result["preview"]["bytes"].as_u64().unwrap_or(0) > 1000,
        "{result}"
    );
    assert_eq!(result["axe"]["violations"], 0, "{result}");

    let pdfs = printer
        .wait_printed_async(1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(pdfs.len(), 1, "printed once");
    let document_id = result["document_id"].as_str().unwrap();
    let verified = signer.verify(BIN, &pdfs[0]);
    assert!(verified.contains(document_id), "{verified}");
}
