//! `Issuer::preview`: the PDF the operator checks before issuing. It is the same certificate as
//! the one issued afterwards (title, subject, body), watermarked ANTEPRIMA / PREVIEW on every page,
//! with no number, no stamp and no seal, and nothing is written to the audit log. The same checks
//! of who may ask apply.

mod common;

use certificates::{CertError, CertificateKind as K};
use common::*;

fn flat(pdf: &[u8], dir: &std::path::Path) -> String {
    pdf_text(pdf, dir)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_preview_is_the_certificate_unnumbered_unstamped_and_unaudited() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let audit_before = std::fs::read_to_string(issuer.audit().path()).unwrap_or_default();

    let req = request(K::StatoFamiglia, LUCA, None);
    let preview = issuer.preview(&req, now).unwrap();
    let text = flat(&preview.pdf, dir.path());
    assert!(text.contains("ANTEPRIMA / PREVIEW"), "{text}");
    assert!(text.contains("NON È UN CERTIFICATO"), "{text}");
    assert!(!text.contains("Documento n."), "no number: {text}");
    assert_eq!(preview.document_id, "ANTEPRIMA");
    assert!(preview.stamp.is_empty());
    assert_eq!(preview.audit_seq, 0);
    let raw = String::from_utf8_lossy(&preview.pdf);
    assert!(!raw.contains("IT1:"), "no stamp in the PDF");
    assert!(!raw.contains("/ByteRange"), "no seal");
    assert!(certificates::seal::verify_seal(&preview.pdf).is_err());
    let audit_after = std::fs::read_to_string(issuer.audit().path()).unwrap_or_default();
    assert_eq!(audit_before, audit_after, "a preview is not audited");

    // What is then issued says the same, with its number, stamp and seal.
    let issued = issuer.issue(&req, now).unwrap();
    let issued_text = flat(&issued.pdf, dir.path());
    let body = |t: &str| {
        let start = t.find("CERTIFICA CHE").unwrap();
        let end = t.find("Il presente certificato").unwrap_or(t.len());
        t[start..end].to_owned()
    };
    assert_eq!(body(&text), body(&issued_text));
    assert!(!issued_text.contains("ANTEPRIMA"));
    assert!(certificates::seal::verify_seal(&issued.pdf).is_ok());

    // The same refusals as issuing: an "alla data" kind without its date and reason.
    assert!(matches!(
        issuer.preview(&request(K::ResidenzaAllaData, LUCA, None), now),
        Err(CertError::MissingInput(_))
    ));
}
