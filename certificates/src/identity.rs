//! Smart-card identification (CIE and CNS): the card's authentication certificate, a chain up to a
//! configured CA bundle, and the card's signature over a server nonce.
//!
//! [`CardVerifier::verify`] takes `now` and bytes and does no I/O. It checks, in order: every
//! certificate parses; a path exists from the card certificate through the sent intermediates to a
//! CA of the bundle, each link's signature verifies and each issuer is a CA; every certificate of the
//! path is valid at `now`; the signature over the nonce verifies with the card's key (SHA-256 with
//! RSA PKCS#1 v1.5, or ECDSA P-256 as `r‖s` or DER); and the card certificate names a well-formed
//! fiscal code: subject `serialNumber` `TINIT-<CF>` (CIE) or `CN` `<CF>/<serial>.<hash>` (CNS).

use std::path::Path;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use time::OffsetDateTime;
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::fiscal_code::FiscalCode;

/// Why a card was not accepted. [`CardError::code`] is the stable code of `identity.failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// A certificate or the signature does not decode.
    #[error("certificato della carta non leggibile: {0}")]
    Malformed(String),
    /// No path to a trusted CA.
    #[error("carta non riconosciuta: il certificato non è emesso da un'autorità attendibile")]
    Untrusted,
    /// A certificate of the path is expired or not yet valid.
    #[error("carta scaduta o non ancora valida")]
    Expired,
    /// The signature over the nonce does not verify with the card's key.
    #[error("firma della carta non valida")]
    BadSignature,
    /// The card certificate carries no well-formed fiscal code.
    #[error("il certificato della carta non riporta un codice fiscale valido")]
    NoFiscalCode,
}

impl CardError {
    /// The code clients see in `identity.failed`.
    pub fn code(&self) -> &'static str {
        match self {
            CardError::Malformed(_) => "card_error",
            CardError::Untrusted => "untrusted_card",
            CardError::Expired => "card_expired",
            CardError::BadSignature => "bad_signature",
            CardError::NoFiscalCode => "no_fiscal_code",
        }
    }
}

/// Who the card says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardHolder {
    /// From `serialNumber` or `CN`.
    pub fiscal_code: FiscalCode,
    /// `givenName`, when present.
    pub given_name: Option<String>,
    /// `surname`, when present.
    pub family_name: Option<String>,
    /// The card certificate's serial number, hex (for the audit log).
    pub certificate_serial: String,
    /// The card certificate's issuer, as text (for the audit log).
    pub issuer: String,
}

/// Trusted card issuers, from a PEM bundle.
#[derive(Debug, Clone, Default)]
pub struct CardVerifier {
    anchors: Vec<Certificate>,
}

const OID_SERIAL_NUMBER: &str = "2.5.4.5";
const OID_COMMON_NAME: &str = "2.5.4.3";
const OID_GIVEN_NAME: &str = "2.5.4.42";
const OID_SURNAME: &str = "2.5.4.4";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
/// Longest chain accepted between the card and an anchor.
const MAX_DEPTH: usize = 6;

impl CardVerifier {
    /// Trusts the CA certificates of a PEM bundle (one or more `CERTIFICATE` blocks).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CardError> {
        let anchors = Certificate::load_pem_chain(pem)
            .map_err(|e| CardError::Malformed(format!("CA bundle: {e}")))?;
        if anchors.is_empty() {
            return Err(CardError::Malformed(
                "CA bundle without certificates".into(),
            ));
        }
        Ok(CardVerifier { anchors })
    }

    /// Reads a PEM bundle file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// How many CA certificates are trusted.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether no CA is trusted (every card is refused).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Verifies a card's chain (DER, card first) and its `signature` over `message` at `now`.
    pub fn verify(
        &self,
        chain_der: &[Vec<u8>],
        message: &[u8],
        signature: &[u8],
        now: OffsetDateTime,
    ) -> Result<CardHolder, CardError> {
        let chain = chain_der
            .iter()
            .map(|d| Certificate::from_der(d).map_err(|e| CardError::Malformed(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let card = chain
            .first()
            .ok_or_else(|| CardError::Malformed("empty certificate chain".into()))?;
        let path = self.path(card, &chain[1..])?;
        for cert in &path {
            valid_at(cert, now)?;
        }
        verify_with_key(card, message, signature).map_err(|_| CardError::BadSignature)?;
        holder(card)
    }

    /// The certificates from the card to a trusted anchor, both included.
    fn path<'a>(
        &'a self,
        card: &'a Certificate,
        intermediates: &'a [Certificate],
    ) -> Result<Vec<&'a Certificate>, CardError> {
        let mut path = vec![card];
        let mut current = card;
        for _ in 0..MAX_DEPTH {
            let issuer = &current.tbs_certificate.issuer;
            if let Some(anchor) = self
                .anchors
                .iter()
                .find(|a| &a.tbs_certificate.subject == issuer && signed_by(current, a))
            {
                path.push(anchor);
                return Ok(path);
            }
            let next = intermediates.iter().find(|c| {
                &c.tbs_certificate.subject == issuer
                    && is_ca(c)
                    && !path.iter().any(|p| std::ptr::eq(*p, *c))
                    && signed_by(current, c)
            });
            match next {
                Some(c) => {
                    path.push(c);
                    current = c;
                }
                None => return Err(CardError::Untrusted),
            }
        }
        Err(CardError::Untrusted)
    }
}

fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id.to_string() == OID_BASIC_CONSTRAINTS)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|b| b.ca))
}

fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    let Some(sig) = cert.signature.as_bytes() else {
        return false;
    };
    let alg = cert.signature_algorithm.oid.to_string();
    let algorithm: &dyn VerificationAlgorithm = match (alg.as_str(), key_kind(issuer)) {
        ("1.2.840.113549.1.1.11", Some(KeyKind::Rsa)) => &signature::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", Some(KeyKind::Rsa)) => &signature::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", Some(KeyKind::Rsa)) => &signature::RSA_PKCS1_2048_8192_SHA512,
        ("1.2.840.10045.4.3.2", Some(KeyKind::P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", Some(KeyKind::P256)) => &signature::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.2", Some(KeyKind::P384)) => &signature::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", Some(KeyKind::P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        _ => return false,
    };
    UnparsedPublicKey::new(algorithm, public_key_bytes(issuer))
        .verify(&tbs, sig)
        .is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
}

fn key_kind(cert: &Certificate) -> Option<KeyKind> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    match spki.algorithm.oid.to_string().as_str() {
        OID_RSA => Some(KeyKind::Rsa),
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            match curve.as_deref() {
                Some(OID_P256) => Some(KeyKind::P256),
                Some(OID_P384) => Some(KeyKind::P384),
                _ => None,
            }
        }
        _ => None,
    }
}

fn public_key_bytes(cert: &Certificate) -> &[u8] {
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
}

/// Verifies a signature over `message` (hashed with SHA-256) with the certificate's key.
fn verify_with_key(cert: &Certificate, message: &[u8], sig: &[u8]) -> Result<(), ()> {
    let algorithm: &dyn VerificationAlgorithm = match key_kind(cert) {
        Some(KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
        Some(KeyKind::P256) if sig.len() == 64 => &signature::ECDSA_P256_SHA256_FIXED,
        Some(KeyKind::P256) => &signature::ECDSA_P256_SHA256_ASN1,
        Some(KeyKind::P384) => &signature::ECDSA_P384_SHA256_ASN1,
        None => return Err(()),
    };
    UnparsedPublicKey::new(algorithm, public_key_bytes(cert))
        .verify(message, sig)
        .map_err(|_| ())
}

fn valid_at(cert: &Certificate, now: OffsetDateTime) -> Result<(), CardError> {
    let v = &cert.tbs_certificate.validity;
    let now = now.unix_timestamp();
    let from = v.not_before.to_unix_duration().as_secs() as i64;
    let to = v.not_after.to_unix_duration().as_secs() as i64;
    if now < from || now > to {
        return Err(CardError::Expired);
    }
    Ok(())
}

/// The string values of an attribute of a name, in order.
fn attribute(name: &Name, oid: &str) -> Vec<String> {
    let mut out = vec![];
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid.to_string() != oid {
                continue;
            }
            let v = &atv.value;
            let text = Utf8StringRef::try_from(v)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| PrintableStringRef::try_from(v).map(|s| s.as_str().to_owned()))
                .or_else(|_| Ia5StringRef::try_from(v).map(|s| s.as_str().to_owned()));
            if let Ok(t) = text {
                out.push(t);
            }
        }
    }
    out
}

fn holder(card: &Certificate) -> Result<CardHolder, CardError> {
    let subject = &card.tbs_certificate.subject;
    let from_serial = attribute(subject, OID_SERIAL_NUMBER)
        .into_iter()
        .filter_map(|s| {
            s.strip_prefix("TINIT-")
                .or_else(|| s.strip_prefix("IT-"))
                .map(str::to_owned)
        })
        .find_map(|cf| FiscalCode::parse(&cf).ok());
    let from_cn = || {
        attribute(subject, OID_COMMON_NAME)
            .into_iter()
            .find_map(|cn| {
                let cf = cn.split('/').next().unwrap_or_default();
                FiscalCode::parse(cf).ok()
            })
    };
    let fiscal_code = from_serial
        .or_else(from_cn)
        .ok_or(CardError::NoFiscalCode)?;
    Ok(CardHolder {
        fiscal_code,
        given_name: attribute(subject, OID_GIVEN_NAME).into_iter().next(),
        family_name: attribute(subject, OID_SURNAME).into_iter().next(),
        certificate_serial: hex::encode(card.tbs_certificate.serial_number.as_bytes()),
        issuer: card.tbs_certificate.issuer.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::DecodePrivateKey as _;
    use rcgen::{
        BasicConstraints as RcBasic, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    };
    use time::Duration;

    const CF: &str = "RSSMRA80A01H501U";

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(RcBasic::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn card_dn(serial: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 42]), "MARIO");
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 4]), "ROSSI");
        dn
    }

    fn card(issuer: &Ca, serial: &str, days: (i64, i64)) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = card_dn(serial);
        let now = OffsetDateTime::now_utc();
        p.not_before = now + Duration::days(days.0);
        p.not_after = now + Duration::days(days.1);
        let cert = p.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
        (cert.der().to_vec(), key)
    }

    fn sign(key: &KeyPair, msg: &[u8]) -> Vec<u8> {
        let sk = p256::ecdsa::SigningKey::from_pkcs8_der(&key.serialize_der()).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        sig.to_bytes().to_vec()
    }

    #[test]
    fn accepts_a_card_of_a_trusted_ca_and_reads_the_fiscal_code() {
        let root = ca("Test CIE CA");
        let verifier = CardVerifier::from_pem(root.cert.pem().as_bytes()).unwrap();
        let (der, key) = card(&root, &format!("TINIT-{CF}"), (-1, 365));
        let sig = sign(&key, b"nonce-1");
        let holder = verifier
            .verify(
                std::slice::from_ref(&der),
                b"nonce-1",
                &sig,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert_eq!(holder.fiscal_code.to_string(), CF);
        assert_eq!(holder.given_name.as_deref(), Some("MARIO"));
        assert_eq!(holder.family_name.as_deref(), Some("ROSSI"));

        // The signature over another nonce does not verify.
        assert_eq!(
            verifier.verify(&[der], b"nonce-2", &sig, OffsetDateTime::now_utc()),
            Err(CardError::BadSignature)
        );
    }

    #[test]
    fn refuses_untrusted_expired_and_nameless_cards() {
        let root = ca("Test CIE CA");
        let other = ca("Rogue CA");
        let verifier = CardVerifier::from_pem(root.cert.pem().as_bytes()).unwrap();
        let now = OffsetDateTime::now_utc();

        let (der, key) = card(&other, &format!("TINIT-{CF}"), (-1, 365));
        let sig = sign(&key, b"n");
        assert_eq!(
            verifier.verify(&[der], b"n", &sig, now),
            Err(CardError::Untrusted)
        );

        let (der, key) = card(&root, &format!("TINIT-{CF}"), (-400, -1));
        let sig = sign(&key, b"n");
        assert_eq!(
            verifier.verify(&[der], b"n", &sig, now),
            Err(CardError::Expired)
        );

        let (der, key) = card(&root, "TINIT-NOTAFISCALCODE", (-1, 365));
        let sig = sign(&key, b"n");
        assert_eq!(
            verifier.verify(&[der], b"n", &sig, now),
            Err(CardError::NoFiscalCode)
        );

        assert!(matches!(
            verifier.verify(&[b"junk".to_vec()], b"n", &sig, now),
            Err(CardError::Malformed(_))
        ));
        assert!(matches!(
            verifier.verify(&[], b"n", &sig, now),
            Err(CardError::Malformed(_))
        ));
    }

    #[test]
    fn an_end_entity_cannot_act_as_an_intermediate() {
        let root = ca("Test CIE CA");
        let verifier = CardVerifier::from_pem(root.cert.pem().as_bytes()).unwrap();
        // A genuine card of the root signs a "card" of its own: not a CA, so no path.
        let (leaf_der, leaf_key) = card(&root, &format!("TINIT-{CF}"), (-1, 365));
        // rcgen signs with the issuer's name and key: a stand-in with the card's name and key.
        let mut p = CertificateParams::default();
        p.distinguished_name = card_dn(&format!("TINIT-{CF}"));
        let leaf = Ca {
            cert: p.self_signed(&leaf_key).unwrap(),
            key: leaf_key,
        };
        let (forged, forged_key) = card(&leaf, "TINIT-VRDGPP80A01H501Q", (-1, 365));
        let sig = sign(&forged_key, b"n");
        assert_eq!(
            verifier.verify(&[forged, leaf_der], b"n", &sig, OffsetDateTime::now_utc()),
            Err(CardError::Untrusted)
        );
    }
}
