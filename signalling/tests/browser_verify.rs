//! The verification page `/verify/` in real headless Chromium, driven by
//! `console-web/tests/verify.mjs`. Headless Chromium on Linux has no `BarcodeDetector`, so the page
//! must read the QR code with the decoder it ships (`console-web/verify/vendor/`): a 150 dpi phone
//! photo of a printed residenza (turned, unevenly lit, blurred, JPEG) reads "Contrassegno valido";
//! the certificate's PDF too; an image without a code gets a clear refusal; and with the network
//! gone the page reloads from its service worker and still verifies the photo. The server signs
//! with a real (non-development) key, so a valid stamp is VALIDO. axe-core checks the page.
//!
//! A missing Chromium or Node.js fails the test (it never skips).

#[path = "common/agent.rs"]
mod agent;
#[path = "common/browser.rs"]
mod browser;

use std::process::Command;
use std::time::Duration;

use browser::{run_node, CHROMIUM};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

#[tokio::test]
async fn the_verify_page_ships_its_qr_decoder() {
    browser::assert_served(
        BIN,
        &[
            ("/verify/", "text/html"),
            ("/verify/app.js", "javascript"),
            ("/verify/vendor/barcode-detector.js", "javascript"),
            ("/verify/vendor/zxing_reader.wasm", "application/wasm"),
        ],
        &["/verify/../tests/verify.mjs", "/verify/vendor/nothing.wasm"],
    )
    .await;
    // The WebAssembly is the build the JavaScript expects (its SHA-256 is compiled into it).
    use sha2::Digest as _;
    let vendor = browser::tests_dir().join("../verify/vendor");
    let wasm = std::fs::read(vendor.join("zxing_reader.wasm")).unwrap();
    let js = std::fs::read_to_string(vendor.join("barcode-detector.js")).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&wasm));
    assert!(
        js.contains(&digest),
        "vendor/zxing_reader.wasm (sha256 {digest}) is not the build barcode-detector.js expects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_of_a_printed_certificate_verifies_in_a_browser_without_barcode_detector() {
    // A real signer, so that a genuine stamp is VALIDO (a development key never is).
    let keys = tempfile::tempdir().unwrap();
    let config = agent::RealSigner::create(keys.path()).config;
    let (_turn, s) =
        browser::start_browser_run_with(BIN, &["--config".as_ref(), config.as_os_str()]).await;

    // A residenza from the command line, on the server's data directory and signer.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&s.data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let resident = cli(&["registry", "list"])
        .lines()
        .find(|l| !l.contains("non residente") && !l.contains("deceduto"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    let work = tempfile::tempdir().unwrap();
    let pdf = work.path().join("residenza.pdf");
    let issued = cli(&[
        "certificate",
        "issue",
        "--kind",
        "residenza",
        "--fiscal-code",
        &resident,
        "--out",
        pdf.to_str().unwrap(),
    ]);
    let document_id = issued.split_whitespace().next().unwrap().to_owned();
    assert!(!issued.contains("NOT VALID"), "{issued}");

    // The printed page at 150 dpi, photographed.
    let render = Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&pdf)
        .arg(work.path().join("page"))
        .output()
        .expect("pdftoppm (poppler-utils) runs");
    assert!(render.status.success());
    let page = std::fs::read(work.path().join("page.png")).unwrap();
    let photo = work.path().join("photo.jpg");
    std::fs::write(&photo, testkit::images::photo_of_page(&page, 3.0)).unwrap();
    let blank = work.path().join("blank.png");
    std::fs::write(&blank, testkit::images::scan_png()).unwrap();

    let result = run_node(
        "verify.mjs",
        &[
            "--base",
            &s.server.base,
            "--photo",
            photo.to_str().unwrap(),
            "--pdf",
            pdf.to_str().unwrap(),
            "--blank",
            blank.to_str().unwrap(),
            "--document-id",
            &document_id,
            "--chromium",
            CHROMIUM,
        ],
        &[],
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["nativeDetector"], false,
        "headless Chromium is expected to lack BarcodeDetector, so the shipped decoder is tested: {result}"
    );
    assert_eq!(result["photo"]["valid"], true, "{result}");
    assert_eq!(result["pdf"]["valid"], true, "{result}");
    assert_eq!(result["blank"]["refused"], true, "{result}");
    assert_eq!(result["offline"]["valid"], true, "{result}");
    assert_eq!(result["axe"]["serious"], 0, "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");
}
