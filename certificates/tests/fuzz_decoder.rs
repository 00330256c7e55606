//! The stamp decoder and the file reader never panic on arbitrary input (a proptest stand-in for the
//! ten-minute cargo-fuzz run of the targets).

mod common;

use certificates::signer::TrustList;
use proptest::prelude::*;

fn trust() -> TrustList {
    TrustList::new("Comune di Parma", "034027", vec![])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in ".{0,600}") {
        let _ = certificates::stamp::decode(&s);
        let _ = certificates::verify_text(&s, &trust(), common::NOW);
    }

    #[test]
    fn random_base45_after_the_prefix_never_panics(s in "[0-9A-Z $%*+./:-]{0,900}") {
        let _ = certificates::verify_text(&format!("IT1:{s}"), &trust(), common::NOW);
    }

    #[test]
    fn random_compressed_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &bytes).unwrap();
        let text = format!("IT1:{}", certificates::base45::encode(&z.finish().unwrap()));
        let _ = certificates::stamp::decode(&text);
        let _ = certificates::stamp::StampClaims::from_cbor(&bytes);
        let _ = certificates::extract::decode_qr_image(&bytes);
    }

    #[test]
    fn random_fiscal_codes_never_panic(s in "\\PC{0,20}") {
        let _ = certificates::FiscalCode::parse(&s);
    }
}

#[test]
fn mutated_real_stamps_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = common::issuer(dir.path());
    let doc = common::issue(
        &issuer,
        certificates::CertificateKind::StatoFamiglia,
        common::LUCA,
        None,
    )
    .unwrap();
    let mut z = Vec::new();
    let raw = certificates::base45::decode(&doc.stamp[4..]).unwrap();
    flate2::read::ZlibDecoder::new(raw.as_slice());
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(raw.as_slice()), &mut z)
        .unwrap();
    // Flip every bit of the inner COSE bytes in turn: errors, never panics, never a valid stamp.
    for i in 0..z.len() * 8 {
        let mut m = z.clone();
        m[i / 8] ^= 1 << (i % 8);
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &m).unwrap();
        let text = format!(
            "IT1:{}",
            certificates::base45::encode(&enc.finish().unwrap())
        );
        assert!(issuer.verify_text(&text, common::NOW).is_err(), "bit {i}");
    }
}
