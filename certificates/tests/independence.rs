//! The independence test: a PDF page rendered at 300 dpi with poppler, the QR code read by zbar, and the
//! COSE signature verified by Python's `cbor2` and `cryptography` against the trust list: no code of ours
//! on the verifying side. Also PDF/A-2b checks (qpdf structure, XMP identification, OutputIntent, embedded
//! fonts) and the rejection of a changed byte, a wrong key, an expired certificate and an untrusted kid.
//!
//! Needs Debian packages poppler-utils, zbar-tools, qpdf, python3-cbor2 and python3-cryptography; a
//! missing tool fails the test with the package to install.

mod common;

use certificates::registry::demo::cases;
use certificates::signer::{generate_signer_pem, Signer, TrustList};
use certificates::stamp::{self, StampClaims};
use certificates::{CertError, CertificateKind as K};
use common::*;

#[test]
fn a_printed_stamp_verifies_with_independent_tools() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::StatoFamiglia, cases::NICOLO_DALO, None).unwrap();
    let pdf = dir.path().join("certificate.pdf");
    std::fs::write(&pdf, &doc.pdf).unwrap();
    let prefix = dir.path().join("page");
    run_tool(
        "pdftoppm",
        "poppler-utils",
        &[
            "-r",
            "300",
            "-png",
            "-singlefile",
            pdf.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    let png = dir.path().join("page.png");
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
    assert_eq!(
        decoded.trim_end_matches('\n'),
        doc.stamp,
        "zbar reads exactly the signed stamp"
    );

    let stamp_file = dir.path().join("stamp.txt");
    std::fs::write(&stamp_file, decoded.trim_end_matches('\n')).unwrap();
    let trust_file = dir.path().join("trust-list.json");
    std::fs::write(&trust_file, issuer.trust_list().to_json()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independence.py");
    // Debian's python3 carries python3-cbor2 and python3-cryptography; a pyenv shim earlier on PATH may not.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
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
            trust_file.to_str().unwrap(),
        ],
    );
    let claims: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claims["iss"], "034027");
    assert_eq!(claims["certificate"]["id"], doc.document_id.as_str());
    assert_eq!(claims["certificate"]["h"], doc.text_sha256.as_str());
    assert_eq!(claims["certificate"]["m"].as_array().unwrap().len(), 8);

    // Our own reader agrees, from the PDF's metadata and from the rendered image.
    let v = certificates::verify_file(&pdf, &issuer.trust_list(), NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.document_id, doc.document_id);
    let v = certificates::verify_file(&png, &issuer.trust_list(), NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.document_id, doc.document_id);
    let txt = dir.path().join("stamp.txt");
    assert!(certificates::verify_file(&txt, &issuer.trust_list(), NOW).is_ok());
}

#[test]
fn a_scanned_pdf_without_metadata_is_read_by_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::Residenza, LUCA, None).unwrap();
    // Blank the metadata copy of the stamp, as a scan would not have it: the QR code must be read instead.
    let mut pdf = doc.pdf.clone();
    let key = b"/SportelloStamp (";
    let at = pdf.windows(key.len()).position(|w| w == key).unwrap();
    pdf[at + 1] = b'X';
    let path = dir.path().join("scan.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let v = certificates::verify_file(&path, &issuer.trust_list(), NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.document_id, doc.document_id);
}

#[test]
fn pdf_a_2b_structure_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::CumulativoFamiglia, cases::NICOLO_DALO, None).unwrap();
    let path = dir.path().join("c.pdf");
    std::fs::write(&path, &doc.pdf).unwrap();
    let p = path.to_str().unwrap();
    run_tool("qpdf", "qpdf", &["--check", p]);
    let fonts = run_tool("pdffonts", "poppler-utils", &[p]);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{fonts}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        // name, type (CID TrueType), encoding (Identity-H), emb, sub, uni, object id.
        assert!(cols[0].contains("+DejaVuSansCondensed"), "{row}");
        assert_eq!(
            &cols[cols.len() - 5..cols.len() - 2],
            ["yes", "yes", "yes"],
            "embedded, subset, unicode: {row}"
        );
    }
    let info = run_tool("pdfinfo", "poppler-utils", &["-meta", p]);
    assert!(info.contains("<pdfaid:part>2</pdfaid:part>"), "{info}");
    assert!(info.contains("<pdfaid:conformance>B</pdfaid:conformance>"));
    assert!(info.contains("it-IT"));
    let summary = run_tool("pdfinfo", "poppler-utils", &[p]);
    assert!(summary.contains("595.28 x 841.89 pts (A4)"), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("Encrypted:") && l.ends_with(" no")),
        "{summary}"
    );
    // OutputIntent with an ICC profile, trailer ID and no forbidden features, from the object structure.
    let json = run_tool("qpdf", "qpdf", &["--json", "--json-key=qpdf", p]);
    assert!(
        json.contains("\"/S\": \"/GTS_PDFA1\""),
        "OutputIntent GTS_PDFA1"
    );
    assert!(json.contains("\"/DestOutputProfile\""));
    assert!(json.contains("\"/N\": 3"), "RGB ICC profile");
    for forbidden in ["/JavaScript", "/Encrypt", "/EmbeddedFile", "/Transparency"] {
        assert!(!json.contains(forbidden), "{forbidden}");
    }
    let trailer = run_tool("qpdf", "qpdf", &["--show-object=trailer", p]);
    assert!(trailer.contains("/ID ["), "{trailer}");
    let text = pdf_text(&doc.pdf, dir.path());
    assert!(
        text.contains(
            certificates::pdf::MANDATORY_WORDING
                .split(" o ai ")
                .next()
                .unwrap()
        ),
        "{text}"
    );
    assert!(text.contains("gestori di pubblici servizi."));
}

fn wrong_signer() -> Signer {
    let (k, c) = generate_signer_pem(
        "Altro firmatario",
        NOW - time::Duration::days(1),
        NOW + time::Duration::days(365),
    )
    .unwrap();
    Signer::from_pem(&k, &c).unwrap()
}

#[test]
fn tampered_foreign_expired_and_untrusted_stamps_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let trust = issuer.trust_list();
    let doc = issue(&issuer, K::Residenza, LUCA, None).unwrap();
    let good = stamp::decode(&doc.stamp).unwrap();

    // A changed byte: a claim altered after signing keeps the signature, which no longer matches.
    let mut claims: StampClaims = good.claims.clone();
    claims.certificate.fields[0].1 = "Via Falsa n. 1".into();
    let forged = resign_with_kid(
        &claims,
        &wrong_signer(),
        issuer.signer().kid(),
        Some(&doc.stamp),
    );
    assert!(matches!(
        certificates::verify_text(&forged, &trust, NOW),
        Err(CertError::BadSignature)
    ));
    // And a changed character of the text anywhere fails to decode or to verify, never verifies.
    for i in (5..doc.stamp.len()).step_by(37) {
        let mut b = doc.stamp.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(b).unwrap();
        assert!(
            certificates::verify_text(&t, &trust, NOW).is_err(),
            "byte {i}"
        );
    }

    // A wrong key claiming our kid.
    let wrong = resign_with_kid(&good.claims, &wrong_signer(), issuer.signer().kid(), None);
    assert!(matches!(
        certificates::verify_text(&wrong, &trust, NOW),
        Err(CertError::BadSignature)
    ));

    // An untrusted kid.
    let other = stamp::sign(&good.claims, &wrong_signer()).unwrap();
    assert!(matches!(
        certificates::verify_text(&other, &trust, NOW),
        Err(CertError::UntrustedSigner(_))
    ));

    // An expired certificate: six months and a day later.
    let later = NOW + time::Duration::days(200);
    assert!(matches!(
        certificates::verify_text(&doc.stamp, &trust, later),
        Err(CertError::Expired(_))
    ));
    // A birth certificate does not expire.
    let birth = issue(&issuer, K::Nascita, LUCA, None).unwrap();
    assert!(
        certificates::verify_text(&birth.stamp, &trust, NOW + time::Duration::days(3650)).is_ok()
    );

    // A signer whose certificate had expired when it signed.
    let (k, c) = generate_signer_pem(
        "Firmatario scaduto",
        NOW - time::Duration::days(400),
        NOW - time::Duration::days(30),
    )
    .unwrap();
    let expired = Signer::from_pem(&k, &c).unwrap();
    let list = TrustList::new(
        "Comune di Parma",
        "034027",
        vec![expired.trust_entry().clone()],
    );
    let s = stamp::sign(&good.claims, &expired).unwrap();
    assert!(matches!(
        certificates::verify_text(&s, &list, NOW),
        Err(CertError::SignerNotValid)
    ));

    // A stamp from another comune's key listed under our issuer code is refused.
    let mut foreign = good.claims.clone();
    foreign.issuer = "015146".into();
    let s = stamp::sign(&foreign, issuer.signer()).unwrap();
    assert!(matches!(
        certificates::verify_text(&s, &trust, NOW),
        Err(CertError::UntrustedSigner(_))
    ));

    // The printed report for `sportello verify`.
    let ok = certificates::verify_text(&doc.stamp, &trust, NOW).unwrap();
    let report = ok.report();
    assert!(
        report.contains("NON VALIDO")
            && report.contains(&doc.document_id)
            && report.contains("Via Emilia Est"),
        "{report}"
    );
}

/// Signs claims with `signer` but labels them with `kid` (a forger reusing a trusted key id).
fn resign_with_kid(
    claims: &StampClaims,
    signer: &Signer,
    kid: [u8; 8],
    _original: Option<&str>,
) -> String {
    use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(kid.to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(claims.to_cbor().unwrap())
        .create_signature(b"", |d| signer.try_sign(d).unwrap())
        .build();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &sign1.to_tagged_vec().unwrap()).unwrap();
    format!("IT1:{}", certificates::base45::encode(&z.finish().unwrap()))
}

/// Every kind, with a use, a marca and an officer where they apply: the printed QR read by zbar, the
/// COSE signature checked by Python, the structure by qpdf, the fonts by pdffonts and the PAdES seal
/// by pdfsig.
#[test]
fn every_kind_verifies_with_independent_tools() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let trust_file = dir.path().join("trust-list.json");
    std::fs::write(&trust_file, issuer.trust_list().to_json()).unwrap();
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independence.py");
    let subject = |k: K| match k {
        K::StatoFamigliaDecesso | K::Morte => cases::GIUSEPPE_BIANCHI,
        K::StatoLibero => cases::MARCO_GALLI,
        K::ResidenzaProvenienza => cases::ROBERTO_COLOMBO,
        K::ResidenzaAire => cases::GIORGIA_MARINI,
        K::UnioneCivile => cases::ALESSANDRO_FONTANA,
        K::CumulativoFamiglia => cases::NICOLO_DALO,
        K::StatoFamigliaAire => cases::ANTONIO_FERRARO,
        K::ResidenzaConvivenza => cases::ADA_SARTORI,
        K::ContrattoConvivenza => cases::SERGIO_BERTOLI,
        K::AnagraficoNascita => cases::GIULIA_CONTI,
        K::AnagraficoMatrimonio => cases::MARIA_GRECO,
        _ => LUCA,
    };
    for (i, kind) in K::ALL.into_iter().enumerate() {
        let as_of = match kind {
            K::ResidenzaAllaData | K::StatoFamigliaAllaData => {
                Some(certificates::dates::parse_date("2019-05-13").unwrap())
            }
            _ => None,
        };
        let mut req = request(kind, subject(kind), as_of);
        req.officer_name = Some("Maria Teresa D'Angelo".into());
        match i % 3 {
            0 if !kind.is_civil_status() => {
                req.marca = Some(
                    certificates::Marca::new("01234567890123", time::macros::date!(2025 - 06 - 30))
                        .unwrap(),
                )
            }
            1 => req.exemption = Some("dpr115_2002".into()),
            _ => {}
        }
        let doc = issuer
            .issue(&req, NOW)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let pdf = dir.path().join(format!("{kind}.pdf"));
        std::fs::write(&pdf, &doc.pdf).unwrap();
        let p = pdf.to_str().unwrap();
        run_tool("qpdf", "qpdf", &["--check", p]);
        let fonts = run_tool("pdffonts", "poppler-utils", &[p]);
        assert_eq!(fonts.lines().skip(2).count(), 2, "{kind}: {fonts}");
        // The PAdES seal, by poppler (its certificate is not in any trust store: only the
        // signature and the coverage are asserted).
        let sig = run_tool("pdfsig", "poppler-utils", &[p]);
        assert!(
            sig.contains("Signature Validation: Signature is Valid.")
                && sig.contains("Total document signed")
                && sig.contains("ETSI.CAdES.detached"),
            "{kind}: {sig}"
        );
        let prefix = dir.path().join(format!("{kind}-page"));
        run_tool(
            "pdftoppm",
            "poppler-utils",
            &[
                "-r",
                "300",
                "-png",
                "-f",
                &doc.pages.to_string(),
                "-singlefile",
                p,
                prefix.to_str().unwrap(),
            ],
        );
        let png = dir.path().join(format!("{kind}-page.png"));
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
        assert_eq!(decoded.trim_end_matches('\n'), doc.stamp, "{kind}");
        let stamp_file = dir.path().join(format!("{kind}.txt"));
        std::fs::write(&stamp_file, &doc.stamp).unwrap();
        let out = run_tool(
            python,
            "python3-cbor2 python3-cryptography",
            &[
                script,
                stamp_file.to_str().unwrap(),
                trust_file.to_str().unwrap(),
            ],
        );
        let claims: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(claims["certificate"]["k"], kind.code(), "{kind}");
        assert_eq!(
            claims["certificate"]["h"],
            doc.text_sha256.as_str(),
            "{kind}"
        );
    }
}
