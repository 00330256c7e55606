//! The stamp decoder, `certificates::stamp::decode` (Base45, zlib, COSE, CBOR), and
//! `certificates::verify_text` with a fixed trust list: the signer of the seed stamp
//! (`fixtures/stamp-signer.pem`, a development certificate), so mutations of a real stamp reach the
//! signature and claim checks.
#![no_main]

use std::sync::OnceLock;

use certificates::signer::{TrustList, TrustedSigner};
use time::OffsetDateTime;

fn trust() -> &'static TrustList {
    static TRUST: OnceLock<TrustList> = OnceLock::new();
    TRUST.get_or_init(|| {
        let signer =
            TrustedSigner::from_certificate_pem(include_str!("../fixtures/stamp-signer.pem"))
                .expect("the fixture certificate parses");
        TrustList::new("Comune di Parma", "034027", vec![signer])
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = certificates::stamp::decode(text);
    // 2026-12-02 08:00 UTC: inside the fixture certificate's validity, after the seed was issued.
    let now = OffsetDateTime::from_unix_timestamp(1_796_198_400).expect("time");
    if let Ok(verified) = certificates::verify_text(text, trust(), now) {
        let _ = verified.report();
    }
});
