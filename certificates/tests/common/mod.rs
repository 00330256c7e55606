//! Shared test fixtures: a fixed clock and an issuer over the demo registry in a temporary data directory.

#![allow(dead_code)]

use std::path::Path;

use certificates::registry::demo::cases;
use certificates::{
    Actor, CertificateKind, Channel, FiscalCode, IssueRequest, IssuedDocument, Issuer,
    IssuerConfig, Requester,
};
use time::macros::datetime;
use time::OffsetDateTime;

/// The fixed "now" of the tests: after every event in the demo data.
pub const NOW: OffsetDateTime = datetime!(2025-07-01 10:00 UTC);

pub fn issuer(dir: &Path) -> Issuer {
    Issuer::open(dir, &IssuerConfig::default(), NOW).expect("issuer opens")
}

pub fn cf(code: &str) -> FiscalCode {
    FiscalCode::parse(code).expect("valid fiscal code")
}

pub fn issue(
    issuer: &Issuer,
    kind: CertificateKind,
    code: &str,
    as_of: Option<&str>,
) -> Result<IssuedDocument, certificates::CertError> {
    let as_of = as_of.map(|d| certificates::dates::parse_date(d).unwrap());
    issuer.issue(&request(kind, code, as_of), NOW)
}

/// A command-line request; past situations (art. 35, comma 4, DPR 223/1989) carry a stated reason.
pub fn request(kind: CertificateKind, code: &str, as_of: Option<time::Date>) -> IssueRequest {
    let mut req = IssueRequest::cli(kind, cf(code), as_of, None);
    if kind.is_past_situation() {
        req.reason = Some("pratica di successione".into());
    }
    req
}

pub const LUCA: &str = cases::LUCA_ROSSI;

/// Runs a command and returns stdout, failing the test with a clear message if the tool is missing.
pub fn run_tool(tool: &str, package: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("`{tool}` is required for this test (Debian package `{package}`: apt-get install -y {package}): {e}")
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Extracts text from a PDF with poppler's pdftotext.
pub fn pdf_text(pdf: &[u8], dir: &Path) -> String {
    let path = dir.join(format!("text-{}.pdf", uuid_like(pdf)));
    std::fs::write(&path, pdf).unwrap();
    run_tool(
        "pdftotext",
        "poppler-utils",
        &["-layout", path.to_str().unwrap(), "-"],
    )
}

fn uuid_like(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..6])
}

/// A request made in a call at kiosk `k1` by operator `op1` for the citizen Luca, identified by CIE.
pub fn kiosk() -> Requester {
    Requester {
        channel: Channel::Kiosk,
        actor: Actor {
            operator: Some("op1".into()),
            kiosk: Some("k1".into()),
            ..Actor::default()
        },
        citizen: Some(cf(LUCA)),
        identification: Some("cie".into()),
        call_id: Some("call-1".into()),
    }
}

/// A request on the web by the signed-in `citizen` (SPID).
pub fn web(citizen: &str) -> Requester {
    Requester {
        channel: Channel::Web,
        actor: Actor {
            web_user: Some(citizen.into()),
            ..Actor::default()
        },
        citizen: Some(cf(citizen)),
        identification: Some("spid".into()),
        call_id: None,
    }
}
