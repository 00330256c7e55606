//! The seal and the stamp made with a key in a PKCS#11 token (SoftHSM2, a private token folder):
//! `[certificates.signer] pkcs11_module, token_label, key_label, pin_file, certificate`. The issued
//! PDF's PAdES seal is reported valid by poppler's `pdfsig` (the whole document signed,
//! ETSI.CAdES.detached) and by the crate's own [`verify_seal`]; its stamp verifies against the
//! trust list; a changed byte breaks the seal for both. A wrong PIN, an unknown token or key, a
//! certificate of another key and a half configuration are refused at start with a clear error.
//! The same token key as a seal key of its own (`[certificates.seal]`) seals while the stamp is
//! signed by another key.
//!
//! Needs `softhsm2`, `opensc` (pkcs11-tool) and `poppler-utils`; a missing one fails the test.

mod common;

use std::process::Command;

use certificates::issuer::IssueRequest;
use certificates::seal::verify_seal;
use certificates::signer::SignerConfig;
use certificates::{CertificateKind, FiscalCode, Issuer, IssuerConfig};
use time::OffsetDateTime;

fn pdfsig(pdf: &std::path::Path) -> String {
    let out = Command::new("pdfsig")
        .arg(pdf)
        .output()
        .expect("pdfsig (poppler-utils) runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_token_key_seals_and_stamps() {
    let now = OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Comune di Parma - sigillo elettronico",
    );
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).unwrap();
    let card = testkit::softhsm::Card::create(
        "sigillo-comune",
        "246810",
        &key.serialize_der(),
        cert.der(),
        &[],
    )
    .expect("a SoftHSM2 token");
    // SAFETY (edition 2021: set_var is safe, but the process must be single-threaded here): this
    // test binary runs this one test, before any thread reads the environment.
    std::env::set_var("SOFTHSM2_CONF", card.conf());

    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "246810\n").unwrap();
    let cert_file = dir.path().join("seal.pem");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    let signer = SignerConfig {
        certificate: Some(cert_file.clone()),
        pkcs11_module: Some(card.module()),
        token_label: Some("sigillo-comune".into()),
        key_label: Some("auth".into()),
        pin_file: Some(pin_file.clone()),
        ..SignerConfig::default()
    };
    let config = IssuerConfig {
        signer: signer.clone(),
        ..IssuerConfig::default()
    };
    let issuer = Issuer::open(&dir.path().join("data"), &config, now).expect("the token opens");
    assert!(issuer.signer().in_token());
    assert!(!issuer.signer().is_development());

    let cf = FiscalCode::parse(certificates::registry::demo::cases::LUCA_ROSSI).unwrap();
    let doc = issuer
        .issue(
            &IssueRequest::cli(CertificateKind::Residenza, cf, None, None),
            now,
        )
        .unwrap();
    let pdf = dir.path().join("residenza.pdf");
    std::fs::write(&pdf, &doc.pdf).unwrap();

    // poppler's independent check, and ours.
    let report = pdfsig(&pdf);
    assert!(
        report.contains("Signature Validation: Signature is Valid."),
        "{report}"
    );
    assert!(report.contains("Total document signed"), "{report}");
    assert!(report.contains("ETSI.CAdES.detached"), "{report}");
    assert!(
        report.contains("Comune di Parma - sigillo elettronico"),
        "{report}"
    );
    let seal = verify_seal(&doc.pdf).unwrap();
    assert_eq!(seal.certificate, cert.der().to_vec());
    // The stamp was signed in the token too, and verifies against the trust list.
    let verified = issuer.verify_text(&doc.stamp, now).unwrap();
    assert_eq!(
        verified.stamp.claims.certificate.document_id,
        doc.document_id
    );

    // A byte changed in the signed content: both checks refuse it.
    let mut forged = doc.pdf.clone();
    let at = forged
        .windows(b"/Title (".len())
        .position(|w| w == b"/Title (")
        .unwrap()
        + 8;
    forged[at] ^= 0x20;
    assert!(verify_seal(&forged).is_err());
    let forged_file = dir.path().join("forged.pdf");
    std::fs::write(&forged_file, &forged).unwrap();
    let report = pdfsig(&forged_file);
    assert!(
        !report.contains("Signature Validation: Signature is Valid."),
        "{report}"
    );

    // Refused at start, each with its reason. PKCS#11 logs in the whole process, until its last
    // session closes: the running issuer goes first.
    drop(issuer);
    let open = |s: SignerConfig| {
        Issuer::open(
            &dir.path().join("data"),
            &IssuerConfig {
                signer: s,
                ..IssuerConfig::default()
            },
            now,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    std::fs::write(dir.path().join("bad-pin"), "000000").unwrap();
    let e = open(SignerConfig {
        pin_file: Some(dir.path().join("bad-pin")),
        ..signer.clone()
    });
    assert!(e.contains("PIN"), "{e}");
    let e = open(SignerConfig {
        token_label: Some("nessuno".into()),
        ..signer.clone()
    });
    assert!(e.contains("nessun token"), "{e}");
    let e = open(SignerConfig {
        key_label: Some("altra".into()),
        ..signer.clone()
    });
    assert!(e.contains("nessuna chiave privata"), "{e}");
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&other)
        .unwrap();
    std::fs::write(dir.path().join("other.pem"), other_cert.pem()).unwrap();
    let e = open(SignerConfig {
        certificate: Some(dir.path().join("other.pem")),
        ..signer.clone()
    });
    assert!(e.contains("non corrisponde"), "{e}");
    let e = open(SignerConfig {
        pin_file: None,
        ..signer.clone()
    });
    assert!(e.contains("pin_file"), "{e}");

    // The token's key as a seal key of its own (`[certificates.seal]`), the stamp signed by
    // another key (the development key here): pdfsig names the token's certificate, and the stamp
    // verifies with the stamp's key.
    let seal = certificates::seal_key::SealConfig {
        pkcs11_module: Some(card.module()),
        token_label: Some("sigillo-comune".into()),
        key_label: Some("auth".into()),
        pin_file: Some(pin_file.clone()),
        certificate: Some(cert_file.clone()),
        ..Default::default()
    };
    let issuer = Issuer::open(
        &dir.path().join("data-seal"),
        &IssuerConfig {
            seal: seal.clone(),
            ..IssuerConfig::default()
        },
        now,
    )
    .expect("the seal's token opens");
    assert!(issuer.signer().is_development());
    let cf = FiscalCode::parse(certificates::registry::demo::cases::LUCA_ROSSI).unwrap();
    let doc = issuer
        .issue(
            &IssueRequest::cli(CertificateKind::Residenza, cf, None, None),
            now,
        )
        .unwrap();
    let sealed = dir.path().join("sealed-by-token.pdf");
    std::fs::write(&sealed, &doc.pdf).unwrap();
    let report = pdfsig(&sealed);
    assert!(
        report.contains("Signature Validation: Signature is Valid."),
        "{report}"
    );
    assert!(
        report.contains("Comune di Parma - sigillo elettronico"),
        "{report}"
    );
    assert_eq!(
        verify_seal(&doc.pdf).unwrap().certificate,
        cert.der().to_vec()
    );
    issuer.verify_text(&doc.stamp, now).unwrap();
    // The seal's token with another key's certificate is refused at start.
    drop(issuer);
    let e = Issuer::open(
        &dir.path().join("data-seal"),
        &IssuerConfig {
            seal: certificates::seal_key::SealConfig {
                certificate: Some(dir.path().join("other.pem")),
                ..seal
            },
            ..IssuerConfig::default()
        },
        now,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("[certificates.seal]"), "{e}");
    assert!(e.contains("non corrisponde"), "{e}");
}
