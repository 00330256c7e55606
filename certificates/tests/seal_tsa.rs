//! The PAdES B-T seal with a real timestamp authority (`testkit::tsa`: `openssl ts -reply` behind
//! a loopback HTTP server), and a seal key of its own (`[certificates.seal]`).
//!
//! - With a TSA, the issued PDF's seal carries a signature time stamp: poppler's `pdfsig` reports
//!   the signature valid, our [`verify_seal`] reports the time stamp and its TSA, the token taken
//!   out of the PDF verifies on its own with `openssl ts -verify` over the signature value, and
//!   the text says the seal is time-stamped.
//! - A TSA that is down, silent, answers 503, answers for another query, is not trusted or
//!   refuses the policy fails the issue with a [`CertError::Timestamp`]; with `tsa_optional` the
//!   certificate is sealed B-B and its text does not mention a time stamp.
//! - A separate seal key (an RSA key file here) makes the seal: `pdfsig` shows its subject, and
//!   the stamp still verifies with the stamp's key.
//!
//! Needs `openssl` and `poppler-utils`; a missing one fails the test.

use std::path::Path;
use std::process::Command;

use certificates::issuer::IssueRequest;
use certificates::seal::{verify_seal, verify_seal_with};
use certificates::seal_key::SealConfig;
use certificates::{CertError, CertificateKind, FiscalCode, IssuedDocument, Issuer, IssuerConfig};
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::der::Encode;

fn run(program: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn pdfsig(pdf: &Path) -> String {
    run("pdfsig", &[pdf.as_os_str()]).1
}

fn pdftotext(pdf: &Path) -> String {
    let (ok, text) = run("pdftotext", &[pdf.as_os_str(), "-".as_ref()]);
    assert!(ok, "{text}");
    // Lines are wrapped: compare the words.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn open(data: &Path, seal: SealConfig) -> Result<Issuer, CertError> {
    Issuer::open(
        data,
        &IssuerConfig {
            seal,
            ..IssuerConfig::default()
        },
        OffsetDateTime::now_utc(),
    )
}

fn issue(issuer: &Issuer) -> Result<IssuedDocument, CertError> {
    let cf = FiscalCode::parse(certificates::registry::demo::cases::LUCA_ROSSI).unwrap();
    issuer.issue(
        &IssueRequest::cli(CertificateKind::Residenza, cf, None, None),
        OffsetDateTime::now_utc(),
    )
}

/// The signature value and the time-stamp token of the PDF's last seal, read with `cms` alone.
fn signature_and_token(pdf: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let at = pdf
        .windows(11)
        .rposition(|w| w == b"/Contents <")
        .expect("a signature")
        + 11;
    let end = at + pdf[at..].iter().position(|b| *b == b'>').unwrap();
    let raw = hex::decode(&pdf[at..end]).unwrap();
    let mut reader = x509_cert::der::SliceReader::new(&raw).unwrap();
    let info: ContentInfo = x509_cert::der::Decode::decode(&mut reader).unwrap();
    let signed: SignedData = info.content.decode_as().unwrap();
    let signer = signed.signer_infos.0.iter().next().unwrap();
    let token = signer.unsigned_attrs.as_ref().and_then(|attrs| {
        attrs
            .iter()
            .find(|a| a.oid.to_string() == "1.2.840.113549.1.9.16.2.14")
            .map(|a| a.values.iter().next().unwrap().to_der().unwrap())
    });
    (signer.signature.as_bytes().to_vec(), token)
}

const TIMESTAMP_WORDS: &str = "marca temporale";

#[test]
fn with_a_tsa_the_seal_is_pades_b_t() {
    let tsa = testkit::tsa::Tsa::start().expect("a test TSA");
    let dir = tempfile::tempdir().unwrap();
    let issuer = open(
        &dir.path().join("data"),
        SealConfig {
            tsa_url: Some(tsa.url().to_owned()),
            tsa_ca_file: Some(tsa.ca_file()),
            tsa_policy: Some(testkit::tsa::OTHER_POLICY.into()),
            ..SealConfig::default()
        },
    )
    .expect("the issuer opens");
    assert!(issuer.sealing().timestamps());
    let doc = issue(&issuer).expect("issued with a time stamp");
    assert_eq!(tsa.served(), 1);
    let pdf = dir.path().join("residenza.pdf");
    std::fs::write(&pdf, &doc.pdf).unwrap();

    // poppler's check (poppler 22.12's pdfsig does not print a signature time stamp).
    let report = pdfsig(&pdf);
    assert!(
        report.contains("Signature Validation: Signature is Valid."),
        "{report}"
    );
    assert!(report.contains("Total document signed"), "{report}");
    assert!(report.contains("ETSI.CAdES.detached"), "{report}");

    // Ours: the seal, and its time stamp.
    let seal = verify_seal(&doc.pdf).unwrap();
    assert_eq!(seal.level(), "B-T");
    let stamp = seal.timestamp.clone().expect("a time stamp");
    assert!(stamp.is_valid(), "{stamp:?}");
    assert!(stamp.time.is_some());
    assert!(
        stamp
            .tsa
            .as_deref()
            .unwrap()
            .contains(testkit::tsa::TSA_NAME),
        "{stamp:?}"
    );
    let ca = certificates::timestamp::load_certificates(&tsa.ca_file()).unwrap();
    let trusted = verify_seal_with(&doc.pdf, Some(&ca)).unwrap();
    assert!(trusted.timestamp.unwrap().is_valid());
    // Against another TSA's root, the time stamp is reported as not verified.
    let other = testkit::tsa::Tsa::start().unwrap();
    let other_ca = certificates::timestamp::load_certificates(&other.ca_file()).unwrap();
    let untrusted = verify_seal_with(&doc.pdf, Some(&other_ca)).unwrap();
    assert_eq!(untrusted.level(), "B-B");
    let problem = untrusted.timestamp.unwrap().problem.unwrap();
    assert!(problem.contains("non attendibile"), "{problem}");

    // The token, out of the PDF, checked by OpenSSL alone over the signature value.
    let (signature, token) = signature_and_token(&doc.pdf);
    let token_file = dir.path().join("token.der");
    std::fs::write(&token_file, token.expect("the token attribute")).unwrap();
    let digest = hex::encode(Sha256::digest(&signature));
    let (ok, out) = run(
        "openssl",
        &[
            "ts".as_ref(),
            "-verify".as_ref(),
            "-token_in".as_ref(),
            "-in".as_ref(),
            token_file.as_os_str(),
            "-digest".as_ref(),
            digest.as_ref(),
            "-CAfile".as_ref(),
            tsa.ca_file().as_os_str(),
        ],
    );
    assert!(ok && out.contains("Verification: OK"), "{out}");
    let (_, text) = run(
        "openssl",
        &[
            "ts".as_ref(),
            "-reply".as_ref(),
            "-token_in".as_ref(),
            "-in".as_ref(),
            token_file.as_os_str(),
            "-token_out".as_ref(),
            "-text".as_ref(),
        ],
    );
    assert!(text.contains(testkit::tsa::OTHER_POLICY), "{text}");
    // Another digest does not verify: the token is over this signature.
    let (ok, out) = run(
        "openssl",
        &[
            "ts".as_ref(),
            "-verify".as_ref(),
            "-token_in".as_ref(),
            "-in".as_ref(),
            token_file.as_os_str(),
            "-digest".as_ref(),
            hex::encode(Sha256::digest(b"other")).as_ref(),
            "-CAfile".as_ref(),
            tsa.ca_file().as_os_str(),
        ],
    );
    assert!(!ok, "{out}");

    // The text says what is true: a seal with a time stamp. The audit log says B-T.
    let text = pdftotext(&pdf);
    assert!(text.contains(TIMESTAMP_WORDS), "{text}");
    let audit = std::fs::read_to_string(dir.path().join("data/audit.log")).unwrap();
    assert!(audit.contains("PAdES-B-T"), "{audit}");

    // A changed byte breaks the seal for both checks.
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
    assert!(!pdfsig(&forged_file).contains("Signature Validation: Signature is Valid."));
}

#[test]
fn a_failing_tsa_fails_the_issue_unless_optional() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let down = format!("http://127.0.0.1:{}/tsa", testkit::free_port());
    let refused = |seal: SealConfig| -> String {
        let issuer = open(&data, seal).expect("the issuer opens: the TSA is asked at issue");
        match issue(&issuer) {
            Err(e @ CertError::Timestamp(_)) => e.to_string(),
            other => panic!("{other:?}"),
        }
    };
    let e = refused(SealConfig {
        tsa_url: Some(down.clone()),
        tsa_timeout_ms: Some(2_000),
        ..SealConfig::default()
    });
    assert!(e.contains("marca temporale non disponibile"), "{e}");
    assert!(e.contains("non raggiungibile"), "{e}");

    let silent = testkit::tsa::Tsa::start_with(testkit::tsa::Behaviour::Silent).unwrap();
    let e = refused(SealConfig {
        tsa_url: Some(silent.url().to_owned()),
        tsa_timeout_ms: Some(300),
        ..SealConfig::default()
    });
    assert!(e.contains("nessuna risposta entro il tempo massimo"), "{e}");
    drop(silent);

    let unavailable = testkit::tsa::Tsa::start_with(testkit::tsa::Behaviour::Unavailable).unwrap();
    let e = refused(SealConfig {
        tsa_url: Some(unavailable.url().to_owned()),
        ..SealConfig::default()
    });
    assert!(e.contains("503"), "{e}");

    let liar = testkit::tsa::Tsa::start_with(testkit::tsa::Behaviour::AnswersAnotherQuery).unwrap();
    let e = refused(SealConfig {
        tsa_url: Some(liar.url().to_owned()),
        ..SealConfig::default()
    });
    assert!(e.contains("impronta"), "{e}");

    let honest = testkit::tsa::Tsa::start().unwrap();
    let stranger = testkit::tsa::Tsa::start().unwrap();
    let e = refused(SealConfig {
        tsa_url: Some(honest.url().to_owned()),
        tsa_ca_file: Some(stranger.ca_file()),
        ..SealConfig::default()
    });
    assert!(e.contains("non attendibile"), "{e}");
    let e = refused(SealConfig {
        tsa_url: Some(honest.url().to_owned()),
        tsa_policy: Some("1.3.6.1.4.1.99999.20.9".into()),
        ..SealConfig::default()
    });
    assert!(e.contains("rifiutato"), "{e}");
    // Nothing was issued.
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap_or_default();
    assert!(!audit.contains("certificate.issued"), "{audit}");

    // Optional: sealed B-B, and the text does not claim a time stamp.
    let issuer = open(
        &data,
        SealConfig {
            tsa_url: Some(down),
            tsa_optional: true,
            ..SealConfig::default()
        },
    )
    .unwrap();
    let doc = issue(&issuer).expect("issued B-B");
    let seal = verify_seal(&doc.pdf).unwrap();
    assert_eq!(seal.timestamp, None);
    assert_eq!(seal.level(), "B-B");
    let pdf = dir.path().join("b-b.pdf");
    std::fs::write(&pdf, &doc.pdf).unwrap();
    let report = pdfsig(&pdf);
    assert!(
        report.contains("Signature Validation: Signature is Valid."),
        "{report}"
    );
    let text = pdftotext(&pdf);
    assert!(!text.contains(TIMESTAMP_WORDS), "{text}");
    assert!(
        text.contains("sigillo elettronico del Comune (PAdES);"),
        "{text}"
    );
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(audit.contains("PAdES-B-B"), "{audit}");
    assert!(audit.contains("timestamp_failure"), "{audit}");
}

#[test]
fn a_separate_seal_key_seals_and_the_stamp_key_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An RSA seal key and its certificate, made by OpenSSL.
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "seal.key",
            "-out",
            "seal.pem",
            "-days",
            "30",
            "-subj",
            "/C=IT/O=Comune di Parma/CN=Comune di Parma - sigillo elettronico qualificato",
        ])
        .current_dir(d)
        .output()
        .expect("openssl runs");
    let (ok, out) = (out.status.success(), String::from_utf8_lossy(&out.stderr));
    assert!(ok, "{out}");
    let tsa = testkit::tsa::Tsa::start().unwrap();
    let seal = SealConfig {
        key_file: Some(d.join("seal.key")),
        certificate: Some(d.join("seal.pem")),
        tsa_url: Some(tsa.url().to_owned()),
        tsa_ca_file: Some(tsa.ca_file()),
        ..SealConfig::default()
    };
    let issuer = open(&d.join("data"), seal.clone()).expect("the issuer opens");
    assert!(issuer
        .sealing()
        .own_key_subject()
        .unwrap()
        .contains("sigillo elettronico qualificato"));
    let doc = issue(&issuer).unwrap();
    let pdf = d.join("residenza.pdf");
    std::fs::write(&pdf, &doc.pdf).unwrap();
    let report = pdfsig(&pdf);
    assert!(
        report.contains("Signature Validation: Signature is Valid."),
        "{report}"
    );
    assert!(
        report.contains("Comune di Parma - sigillo elettronico qualificato"),
        "{report}"
    );
    let info = verify_seal(&doc.pdf).unwrap();
    assert!(info.subject.contains("sigillo elettronico qualificato"));
    assert_eq!(info.level(), "B-T");
    // The stamp is the stamp key's (the development key here), and verifies with it.
    let verified = issuer
        .verify_text(&doc.stamp, OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(
        verified.stamp.claims.certificate.document_id,
        doc.document_id
    );
    assert_ne!(info.subject, issuer.signer().trust_entry().subject);

    // A seal key with another key's certificate is refused at start.
    drop(issuer);
    let other = testkit::tsa::Tsa::start().unwrap();
    let e = open(
        &d.join("data"),
        SealConfig {
            certificate: Some(other.cert_file()),
            ..seal
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("non corrisponde"), "{e}");
}
