//! The citizens' portal `/servizi/` in real headless Chromium, driven by
//! `console-web/tests/servizi.mjs`, signing in through a real OpenID provider (`oidc-provider` on
//! node, `testkit::oidc`) configured as `[[web.oidc]]`. A cancelled sign-in shows the server's
//! page that says so. Luca Rossi of the demo registry signs in on the provider's login page and is
//! back on `/servizi/`; he gets a residenza with a marca da bollo (the same marca again: the 409
//! message), one for his wife, is refused one for a stranger (403), is asked to wait after four
//! requests in the hour (429), and downloads the PDFs. Giuseppe Verdi, who is not in the registry,
//! is told so. Each PDF's QR code is read by zbar from a 300 dpi rendering and checked by the
//! independent COSE verifier (`certificates/tests/independence.py`, no code of ours) against the
//! server's trust list. axe-core checks the pages signed out, cancelled, signed in, on a 360 px
//! phone screen and not in the registry. Screenshots: `target/tmp/screenshots/servizi-*.png`, or
//! `docs/screenshots/` with `UPDATE_SCREENSHOTS=1`.
//!
//! A missing Chromium, Node.js, npm package, poppler, zbar or Python module fails the test (it
//! never skips).

#[path = "common/agent.rs"]
mod agent;
#[path = "common/browser.rs"]
mod browser;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use browser::{run_node, CHROMIUM};
use testkit::oidc::{demo_accounts, OidcProvider, FISCAL_NUMBER_CLAIM, SPID_L2};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
/// Luca Rossi, his wife Giulia Conti, and Marco Galli, a stranger to them (`demo_accounts`).
const LUCA: &str = "RSSLCU85D12G337O";
const GIULIA: &str = "CNTGLI87R45H223S";
const MARCO: &str = "GLLMRC72A18A944W";

#[tokio::test]
async fn the_portal_page_is_served() {
    browser::assert_served(
        BIN,
        &[
            ("/servizi", "text/html"),
            ("/servizi/", "text/html"),
            ("/servizi/servizi.js", "javascript"),
            ("/servizi/servizi.css", "text/css"),
        ],
        &["/servizi/../tests/servizi.mjs", "/servizi/nothing.js"],
    )
    .await;
}

/// Runs `program args`, asserting it succeeded; its standard output. `package` is what to install
/// when it cannot run.
fn run_tool(program: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): apt-get install -y {package}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stamp of `pdf`, read by zbar from its first page at 300 dpi, checked by the independent
/// verifier against `trust_list`: the claims it prints.
fn independent_check(pdf: &Path, trust_list: &Path) -> serde_json::Value {
    let dir = pdf.parent().unwrap();
    let stem = pdf.file_stem().unwrap().to_str().unwrap();
    let prefix = dir.join(format!("{stem}-page"));
    run_tool(
        "pdftoppm",
        "poppler-utils",
        &[
            "-r",
            "300",
            "-png",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            pdf.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    let png = dir.join(format!("{stem}-page.png"));
    let decoded = run_tool(
        "zbarimg",
        "zbar-tools",
        &[
            "--raw",
            "-q",
            "-Sdisable",
            "-Sqrcode.enable",
            png.to_str().unwrap(),
        ],
    );
    let stamp = decoded.trim_end_matches('\n');
    assert!(stamp.starts_with("IT1:"), "{pdf:?}: zbar read {stamp:?}");
    let stamp_file = dir.join(format!("{stem}-stamp.txt"));
    std::fs::write(&stamp_file, stamp).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../certificates/tests/independence.py"
    );
    // Debian's python3 carries python3-cbor2 and python3-cryptography; a pyenv shim may not.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = run_tool(
        python,
        "python3-cbor2 python3-cryptography",
        &[
            script,
            stamp_file.to_str().unwrap(),
            trust_list.to_str().unwrap(),
        ],
    );
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_signs_in_with_spid_and_gets_stamped_certificates() {
    browser::require_chromium();
    browser::ensure_node_modules(
        &browser::tests_dir(),
        &["oidc-provider", "playwright-core", "axe-core"],
    )
    .await;
    let keys = tempfile::tempdir().unwrap();
    let signer = agent::RealSigner::create(keys.path());
    let op = OidcProvider::start(
        &keys.path().join("oidc"),
        "http://127.0.0.1:0/servizi/auth/callback",
        &demo_accounts(),
    )
    .unwrap();
    let secret = keys.path().join("oidc-client-secret");
    std::fs::write(&secret, op.client_secret()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut config = std::fs::read_to_string(&signer.config).unwrap();
    // Four requests an hour: the fifth shows the 429 message.
    config.push_str(&format!(
        "[web]\nrequests_per_hour = 4\n[[web.oidc]]\nname = \"spid\"\nissuer = {:?}\nclient_id = {:?}\n\
         client_secret_file = {:?}\nfiscal_number_claim = {FISCAL_NUMBER_CLAIM:?}\n\
         acr_values = {SPID_L2:?}\n",
        op.issuer(),
        op.client_id(),
        secret,
    ));
    std::fs::write(&signer.config, config).unwrap();
    let (_turn, s) =
        browser::start_browser_run_with(BIN, &["--config".as_ref(), signer.config.as_os_str()])
            .await;

    let out = tempfile::tempdir().unwrap();
    let shots = browser::screenshot_dir();
    let result = run_node(
        "servizi.mjs",
        &[
            "--base",
            &s.server.base,
            "--login",
            "luca",
            "--fiscal-code",
            LUCA,
            "--family",
            GIULIA,
            "--stranger",
            MARCO,
            "--marca",
            "01234567890123",
            "--marca2",
            "01234567890124",
            "--out-dir",
            out.path().to_str().unwrap(),
            "--outsider",
            "giuseppe",
            "--budget",
            "4",
            "--chromium",
            CHROMIUM,
        ],
        &[("SCREENSHOTS", "1"), ("SCREENSHOT_DIR", shots.as_str())],
        Duration::from_secs(240),
    )
    .await;
    op.check().unwrap();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["provider"], op.issuer(), "{result}");
    assert_eq!(result["conflict"]["result"], "conflict", "{result}");
    assert_eq!(result["forbidden"]["result"], "forbidden", "{result}");
    assert_eq!(result["rateLimited"]["result"], "rate_limited", "{result}");
    assert_eq!(result["outsider"]["inRegistry"], "false", "{result}");
    assert_eq!(result["cancelled"]["failure"], "Cancelled", "{result}");
    for axe in ["signedOut", "cancelled", "phone", "outsider"] {
        assert_eq!(result[axe]["axe"]["serious"], 0, "{axe}: {result}");
    }
    assert_eq!(result["axe"]["serious"], 0, "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");

    // The downloaded PDFs: their QR codes, read by zbar, verify with the independent checker.
    let trust_list = out.path().join("trust-list.json");
    let trust = reqwest::get(format!(
        "{}/.well-known/sportello/trust-list.json",
        s.server.base
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    std::fs::write(&trust_list, trust).unwrap();
    for (which, fiscal_code) in [("own", LUCA), ("family", GIULIA)] {
        let pdf = result[which]["pdf"].as_str().unwrap();
        let bytes = std::fs::read(pdf).unwrap();
        assert!(bytes.starts_with(b"%PDF-"), "{which}: not a PDF");
        let claims = independent_check(Path::new(pdf), &trust_list);
        let cert = &claims["certificate"];
        assert_eq!(cert["k"], "residenza", "{which}: {claims}");
        assert_eq!(cert["s"]["cf"], fiscal_code, "{which}: {claims}");
        assert_eq!(cert["id"], result[which]["documentId"], "{which}: {claims}");
    }
}
