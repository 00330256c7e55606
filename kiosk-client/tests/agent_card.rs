//! The agent's card module against a real SoftHSM2 token through its PKCS#11 module: find the
//! card, refuse a wrong PIN, sign a nonce with the card's P-256 key, and check the signature with
//! the certificate the card returned.
//!
//! One test: `SOFTHSM2_CONF` is read once per process when the module is initialised.

mod agent_common;

use agent_common::{CardKey, SoftCard, PIN, SOFTHSM_MODULE};
use base64::Engine;
use kiosk_client::agent::card::{is_ca_certificate, CardError, CardReader};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use x509_cert::der::{Decode, Encode};

#[test]
fn read_the_card_and_sign_the_nonce() {
    let card = SoftCard::create("CIE-TEST", CardKey::P256);
    // Set before the module is loaded; this is the only test of this process.
    std::env::set_var("SOFTHSM2_CONF", card.conf());
    let reader = CardReader::new(SOFTHSM_MODULE.as_ref());

    let probe = reader.probe().expect("the token is found");
    assert_eq!(probe.label, "CIE-TEST");
    assert!(!probe.protected_auth_path, "SoftHSM has no PIN pad");
    assert!(!probe.pin_locked);

    let nonce = "u0Qb3Jm7b2P9w9tq2m2gk5Zb8mQm4Hk7b5y0c1Zs3aA";
    let wrong = reader.read_and_sign(nonce, Some("00000000"));
    assert!(
        matches!(wrong, Err(CardError::PinIncorrect { .. })),
        "{wrong:?}"
    );
    assert_eq!(wrong.unwrap_err().reason(), "pin_incorrect");
    assert_eq!(
        reader.read_and_sign(nonce, None).unwrap_err(),
        CardError::Timeout,
        "no PIN and no PIN pad"
    );

    let identity = reader.read_and_sign(nonce, Some(PIN)).expect("signed");
    assert_eq!(identity.key_type, "ec");
    assert_eq!(identity.label, "auth");
    assert_eq!(
        identity.certificate_chain[0], card.card_der,
        "the card first"
    );
    assert_eq!(
        &identity.certificate_chain[1..],
        std::slice::from_ref(&card.ca_der),
        "then the CA"
    );
    assert!(is_ca_certificate(&card.ca_der));
    assert!(!is_ca_certificate(&card.card_der));
    assert_eq!(identity.signature.len(), 64, "r‖s for P-256");

    // Check the signature with the public key of the certificate the card returned.
    let cert = x509_cert::Certificate::from_der(&identity.certificate_chain[0]).unwrap();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    let signature = p256::ecdsa::Signature::from_slice(&identity.signature).unwrap();
    key.verify(nonce.as_bytes(), &signature)
        .expect("the signature verifies");
    assert!(key.verify(b"another nonce", &signature).is_err());

    // The wire body: standard base64 of the same bytes.
    let body = identity.to_request("call-1");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(body.call_id, "call-1");
    assert_eq!(b64.decode(&body.signature).unwrap(), identity.signature);
    assert_eq!(
        b64.decode(&body.certificate_chain[0]).unwrap(),
        card.card_der
    );

    // A second signature works too (the session was logged out and closed).
    assert!(reader.read_and_sign("second", Some(PIN)).is_ok());
}
