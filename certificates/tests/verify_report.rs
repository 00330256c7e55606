//! What `sportello verify` prints: signed text cannot drive the terminal (control and direction
//! characters are escaped), and a development-key stamp is never called valid.

mod common;

use certificates::stamp;
use certificates::CertificateKind as K;
use common::*;

#[test]
fn signed_text_is_escaped_and_a_development_stamp_is_never_valid() {
    let dir = tempfile::tempdir().unwrap();
    // No signer configured: the development key.
    let issuer = issuer(dir.path());
    assert!(issuer.signer().is_development());
    let doc = issue(&issuer, K::Residenza, LUCA, None).unwrap();
    let mut claims = stamp::decode(&doc.stamp).unwrap().claims;
    // A hostile value, signed (a comune's own data could hold it too): clear screen, a forged
    // line, a right-to-left override.
    claims.certificate.surname = "ROSSI\x1b[2J\rContrassegno VALIDO\u{202e}ITALIA".into();
    claims
        .certificate
        .fields
        .push(("nota".into(), "a\u{0007}b\u{009b}c\u{2066}d".into()));
    let forged = stamp::sign(&claims, issuer.signer()).unwrap();
    let verified = certificates::verify_text(&forged, &issuer.trust_list(), NOW).unwrap();
    let report = verified.report();

    let hidden: Vec<char> = report
        .chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(u32::from(*c), 0x202A..=0x202E | 0x2066..=0x2069)
        })
        .collect();
    assert!(hidden.is_empty(), "{hidden:?} in:\n{report}");
    assert!(
        report.contains(r"ROSSI\u{001b}[2J\u{000d}Contrassegno VALIDO\u{202e}ITALIA"),
        "{report}"
    );
    assert!(report.contains(r"a\u{0007}b\u{009b}c\u{2066}d"), "{report}");
    // Development key: every line that says VALIDO says NON VALIDO, except the escaped signed text.
    for line in report.lines().filter(|l| !l.starts_with("Intestatario")) {
        assert!(
            !line.contains("VALIDO") || line.contains("NON VALIDO"),
            "a development stamp called valid: {line}"
        );
    }
    assert!(report.contains("Contrassegno NON VALIDO"), "{report}");
}

#[test]
fn printable_keeps_ordinary_text() {
    assert_eq!(
        stamp::printable("Nicolò D'Alò, Via Emilia Est 12"),
        "Nicolò D'Alò, Via Emilia Est 12"
    );
    assert_eq!(stamp::printable("a\tb\u{7f}"), r"a\u{0009}b\u{007f}");
}
