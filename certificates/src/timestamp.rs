//! RFC 3161 time stamps for the PAdES B-T seal, with no I/O: the request, the checks of the reply
//! and of the token, and the X.509 signature checks they need.
//!
//! A PAdES B-T signature carries, as the unsigned attribute `id-aa-signatureTimeStampToken`
//! (1.2.840.113549.1.9.16.2.14, RFC 3161 appendix A), a time-stamp token over its own signature
//! value: the TSA attests that the signature existed at `genTime`. [`TimestampRequest`] builds the
//! `TimeStampReq` (SHA-256 imprint, a nonce, `certReq` so the token names its TSA, an optional
//! policy). [`TimestampRequest::check_reply`] accepts a reply only when its status is granted, the
//! token's `TSTInfo` repeats the imprint and the nonce (and the policy asked for), and the token
//! verifies ([`verify_token`]): the `SignedData` holds a `TSTInfo`, its `message-digest` is the
//! TSTInfo's hash, the signer's certificate is in the token and named by its ESS
//! signing-certificate attribute (v1 or v2), is meant for time stamping
//! (`extendedKeyUsage` `timeStamping`) and its key made the signature. Given trust anchors (the
//! `tsa_ca_file` of `[certificates.seal]`), the TSA certificate must also chain to one of them,
//! each certificate valid at `genTime`.
//!
//! The HTTP exchange is [`crate::tsa`]'s; the types are RustCrypto's `x509-tsp`, and the signature
//! checks `ring`'s (ECDSA P-256 and P-384, RSA PKCS#1 v1.5, with SHA-256/384/512).

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use ring::signature::{self as rsig, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::der::asn1::{Int, OctetString};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Any, Decode, Encode};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::error::CertError;

/// `id-aa-signatureTimeStampToken`: the unsigned attribute of a B-T SignerInfo.
pub const ID_AA_SIGNATURE_TIME_STAMP_TOKEN: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
/// `id-ct-TSTInfo`: the content type of a time-stamp token.
pub const ID_CT_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const ID_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// A checked time stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// The token (a DER `ContentInfo`), as it goes into the seal.
    pub token: Vec<u8>,
    /// `genTime`.
    pub time: OffsetDateTime,
    /// The TSA certificate's subject (RFC 4514 text).
    pub tsa: String,
    /// The TSA's policy (dotted OID).
    pub policy: String,
    /// The token's serial number, hexadecimal.
    pub serial: String,
}

fn ts_err(what: impl std::fmt::Display) -> CertError {
    CertError::Timestamp(what.to_string())
}

fn der(what: &str) -> impl Fn(x509_cert::der::Error) -> CertError + '_ {
    move |e| ts_err(format!("{what}: {e}"))
}

/// A time-stamp request for a SHA-256 imprint.
#[derive(Debug, Clone)]
pub struct TimestampRequest {
    der: Vec<u8>,
    imprint: Vec<u8>,
    nonce: Int,
    policy: Option<ObjectIdentifier>,
}

impl TimestampRequest {
    /// The request for `imprint` (a SHA-256 digest: 32 bytes) with `nonce`, asking for `policy`
    /// when given, and for the TSA's certificate in the token.
    pub fn new(
        imprint: &[u8],
        nonce: u64,
        policy: Option<ObjectIdentifier>,
    ) -> Result<Self, CertError> {
        if imprint.len() != 32 {
            return Err(ts_err("l'impronta deve essere uno SHA-256"));
        }
        let nonce = Int::from_der(&nonce.to_der().map_err(der("nonce"))?).map_err(der("nonce"))?;
        let request = TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint {
                hash_algorithm: AlgorithmIdentifierOwned {
                    oid: ID_SHA256,
                    parameters: Some(Any::from(x509_cert::der::asn1::Null)),
                },
                hashed_message: OctetString::new(imprint.to_vec()).map_err(der("impronta"))?,
            },
            req_policy: policy,
            nonce: Some(nonce.clone()),
            cert_req: true,
            extensions: None,
        };
        Ok(TimestampRequest {
            der: request.to_der().map_err(der("richiesta"))?,
            imprint: imprint.to_vec(),
            nonce,
            policy,
        })
    }

    /// The DER `TimeStampReq`, the body of an `application/timestamp-query` POST.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Checks the TSA's reply (a DER `TimeStampResp`) to this request (see the module docs);
    /// `trust` are the TSA's trust anchors, if any.
    pub fn check_reply(
        &self,
        reply: &[u8],
        trust: Option<&[Certificate]>,
    ) -> Result<Timestamp, CertError> {
        let resp = TimeStampResp::from_der(reply).map_err(der("risposta della TSA illeggibile"))?;
        let status = resp.status.status as u8;
        if status > 1 {
            let text = resp
                .status
                .status_string
                .as_ref()
                .map(|t| {
                    t.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            return Err(ts_err(format!(
                "la TSA ha rifiutato la richiesta (stato {status}{}{text})",
                if text.is_empty() { "" } else { ": " }
            )));
        }
        let token = resp
            .time_stamp_token
            .ok_or_else(|| ts_err("la risposta della TSA non contiene la marca"))?
            .to_der()
            .map_err(der("marca"))?;
        let (stamp, tst) = verify_token_info(&token, &self.imprint, trust)?;
        if tst.nonce.as_ref() != Some(&self.nonce) {
            return Err(ts_err(
                "il nonce della marca non corrisponde alla richiesta",
            ));
        }
        if let Some(policy) = self.policy {
            if tst.policy != policy {
                return Err(ts_err(format!(
                    "politica della marca {} invece di {policy}",
                    tst.policy
                )));
            }
        }
        Ok(stamp)
    }
}

/// Verifies a time-stamp token over `imprint` (the SHA-256 the TSA was asked to stamp): see the
/// module docs. With `trust`, the TSA certificate must chain to one of those certificates.
pub fn verify_token(
    token: &[u8],
    imprint: &[u8],
    trust: Option<&[Certificate]>,
) -> Result<Timestamp, CertError> {
    verify_token_info(token, imprint, trust).map(|(t, _)| t)
}

fn hash(alg: ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>, CertError> {
    Ok(match alg {
        ID_SHA256 => Sha256::digest(data).to_vec(),
        ID_SHA384 => Sha384::digest(data).to_vec(),
        ID_SHA512 => Sha512::digest(data).to_vec(),
        other => return Err(ts_err(format!("algoritmo di hash non supportato: {other}"))),
    })
}

fn verify_token_info(
    token: &[u8],
    imprint: &[u8],
    trust: Option<&[Certificate]>,
) -> Result<(Timestamp, TstInfo), CertError> {
    let info = ContentInfo::from_der(token).map_err(der("marca illeggibile"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(ts_err("la marca non è una SignedData"));
    }
    let signed: SignedData = info.content.decode_as().map_err(der("marca"))?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(ts_err("la marca non contiene un TSTInfo"));
    }
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| ts_err("TSTInfo mancante"))?;
    let tst_der = content.value();
    let tst = TstInfo::from_der(tst_der).map_err(der("TSTInfo"))?;
    if tst.message_imprint.hash_algorithm.oid != ID_SHA256
        || tst.message_imprint.hashed_message.as_bytes() != imprint
    {
        return Err(ts_err(
            "l'impronta della marca non corrisponde alla firma marcata",
        ));
    }
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| ts_err("marca senza firmatario"))?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| ts_err("marca senza attributi firmati"))?;
    let value_of = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let content_type: ObjectIdentifier = value_of(ID_CONTENT_TYPE)
        .ok_or_else(|| ts_err("marca senza content-type"))?
        .decode_as()
        .map_err(der("content-type"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(ts_err("content-type della marca errato"));
    }
    let claimed: OctetString = value_of(ID_MESSAGE_DIGEST)
        .ok_or_else(|| ts_err("marca senza message-digest"))?
        .decode_as()
        .map_err(der("message-digest"))?;
    if claimed.as_bytes() != hash(signer.digest_alg.oid, tst_der)? {
        return Err(ts_err("il TSTInfo è stato alterato"));
    }
    let certs: Vec<Certificate> = signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let tsa = certs
        .iter()
        .find(|c| match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                c.tbs_certificate.issuer == id.issuer
                    && c.tbs_certificate.serial_number == id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => extension(c, ID_SUBJECT_KEY_IDENTIFIER)
                .is_some_and(|v| {
                    OctetString::from_der(v).is_ok_and(|o| o.as_bytes() == ski.0.as_bytes())
                }),
        })
        .ok_or_else(|| ts_err("il certificato della TSA non è nella marca"))?;
    let eku = extension(tsa, ID_EXTENDED_KEY_USAGE)
        .and_then(|v| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(v).ok())
        .ok_or_else(|| ts_err("il certificato della TSA non ha extendedKeyUsage"))?;
    if !eku.0.contains(&ID_KP_TIME_STAMPING) {
        return Err(ts_err(
            "il certificato della TSA non è per la marcatura temporale (timeStamping)",
        ));
    }
    // RFC 3161 2.4.2: the token names its signer's certificate in an ESS signing-certificate
    // attribute (v1: SHA-1; v2: SHA-256 unless it says otherwise).
    let tsa_der = tsa.to_der().map_err(der("certificato della TSA"))?;
    let names = |oid: ObjectIdentifier, hashes: &[Vec<u8>]| {
        value_of(oid)
            .and_then(|v| v.to_der().ok())
            .is_some_and(|v| {
                hashes
                    .iter()
                    .any(|h| v.windows(h.len()).any(|w| w == h.as_slice()))
            })
    };
    let v2 = [
        Sha256::digest(&tsa_der).to_vec(),
        Sha384::digest(&tsa_der).to_vec(),
        Sha512::digest(&tsa_der).to_vec(),
    ];
    let v1 = [
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &tsa_der)
            .as_ref()
            .to_vec(),
    ];
    if !names(ID_SIGNING_CERTIFICATE_V2, &v2) && !names(ID_SIGNING_CERTIFICATE, &v1) {
        return Err(ts_err(
            "la marca non indica il certificato della TSA (ESS signing-certificate)",
        ));
    }
    let message = attrs.to_der().map_err(der("attributi firmati"))?;
    verify_signature(
        &tsa.tbs_certificate.subject_public_key_info,
        signer.signature_algorithm.oid,
        Some(signer.digest_alg.oid),
        &message,
        signer.signature.as_bytes(),
    )
    .map_err(|e| ts_err(format!("firma della marca non valida: {e}")))?;
    let secs = tst.gen_time.to_unix_duration().as_secs();
    let time = OffsetDateTime::from_unix_timestamp(secs as i64)
        .map_err(|_| ts_err("genTime fuori intervallo"))?;
    if let Some(anchors) = trust {
        check_chain(tsa, &certs, anchors, secs)
            .map_err(|e| ts_err(format!("certificato della TSA non attendibile: {e}")))?;
    }
    let stamp = Timestamp {
        token: token.to_vec(),
        time,
        tsa: tsa.tbs_certificate.subject.to_string(),
        policy: tst.policy.to_string(),
        serial: hex::encode(tst.serial_number.as_bytes()),
    };
    Ok((stamp, tst))
}

/// The DER value of `cert`'s extension `oid`.
fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// The `ring` algorithm for a key `spki` and a signature algorithm `sig_alg` (with `digest_alg`
/// when `sig_alg` is the bare `rsaEncryption` a CMS SignerInfo may name).
fn algorithm(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: ObjectIdentifier,
    digest_alg: Option<ObjectIdentifier>,
) -> Result<&'static dyn VerificationAlgorithm, String> {
    let unsupported = || format!("algoritmo non supportato: {sig_alg}");
    match spki.algorithm.oid {
        ID_EC_PUBLIC_KEY => {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as().ok())
                .ok_or("curva ellittica non indicata")?;
            Ok(match (curve, sig_alg) {
                (SECP256R1, ECDSA_WITH_SHA256) => &rsig::ECDSA_P256_SHA256_ASN1,
                (SECP256R1, ECDSA_WITH_SHA384) => &rsig::ECDSA_P256_SHA384_ASN1,
                (SECP384R1, ECDSA_WITH_SHA256) => &rsig::ECDSA_P384_SHA256_ASN1,
                (SECP384R1, ECDSA_WITH_SHA384) => &rsig::ECDSA_P384_SHA384_ASN1,
                _ => return Err(unsupported()),
            })
        }
        RSA_ENCRYPTION => {
            let effective = match (sig_alg, digest_alg) {
                (RSA_ENCRYPTION, Some(ID_SHA256)) => SHA256_WITH_RSA,
                (RSA_ENCRYPTION, Some(ID_SHA384)) => SHA384_WITH_RSA,
                (RSA_ENCRYPTION, Some(ID_SHA512)) => SHA512_WITH_RSA,
                (other, _) => other,
            };
            Ok(match effective {
                SHA256_WITH_RSA => &rsig::RSA_PKCS1_2048_8192_SHA256,
                SHA384_WITH_RSA => &rsig::RSA_PKCS1_2048_8192_SHA384,
                SHA512_WITH_RSA => &rsig::RSA_PKCS1_2048_8192_SHA512,
                _ => return Err(unsupported()),
            })
        }
        other => Err(format!("tipo di chiave non supportato: {other}")),
    }
}

/// Checks `signature` over `message` with the public key `spki`.
pub(crate) fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: ObjectIdentifier,
    digest_alg: Option<ObjectIdentifier>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let alg = algorithm(spki, sig_alg, digest_alg)?;
    let public = spki
        .subject_public_key
        .as_bytes()
        .ok_or("chiave pubblica illeggibile")?;
    UnparsedPublicKey::new(alg, public)
        .verify(message, signature)
        .map_err(|_| "la firma non corrisponde alla chiave".to_owned())
}

/// Whether `issuer`'s key signed `cert`.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    cert.tbs_certificate.issuer == issuer.tbs_certificate.subject
        && cert.tbs_certificate.to_der().is_ok_and(|tbs| {
            cert.signature.as_bytes().is_some_and(|sig| {
                verify_signature(
                    &issuer.tbs_certificate.subject_public_key_info,
                    cert.signature_algorithm.oid,
                    None,
                    &tbs,
                    sig,
                )
                .is_ok()
            })
        })
}

fn valid_at(cert: &Certificate, secs: u64) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_before.to_unix_duration().as_secs() <= secs
        && secs <= v.not_after.to_unix_duration().as_secs()
}

/// Walks from `leaf` through `pool` (the token's certificates) to one of `anchors`, each
/// certificate valid at `secs`.
fn check_chain(
    leaf: &Certificate,
    pool: &[Certificate],
    anchors: &[Certificate],
    secs: u64,
) -> Result<(), String> {
    let mut cert = leaf.clone();
    for _ in 0..8 {
        if !valid_at(&cert, secs) {
            return Err(format!(
                "{} non valido all'ora della marca",
                cert.tbs_certificate.subject
            ));
        }
        if anchors.contains(&cert) || anchors.iter().any(|a| signed_by(&cert, a)) {
            return Ok(());
        }
        match pool.iter().find(|c| **c != cert && signed_by(&cert, c)) {
            Some(next) => cert = next.clone(),
            None => {
                return Err(format!(
                    "nessuna catena da {} ai certificati di tsa_ca_file",
                    leaf.tbs_certificate.subject
                ))
            }
        }
    }
    Err("catena troppo lunga".into())
}

/// Reads one or more X.509 certificates from a PEM (a chain) or DER file.
pub fn load_certificates(path: &std::path::Path) -> Result<Vec<Certificate>, CertError> {
    let bytes = std::fs::read(path).map_err(|e| CertError::io(path, e))?;
    let certs =
        if bytes.starts_with(b"-----BEGIN") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            Certificate::load_pem_chain(&bytes).map_err(|e| e.to_string())
        } else {
            Certificate::from_der(&bytes)
                .map(|c| vec![c])
                .map_err(|e| e.to_string())
        }
        .map_err(|e| CertError::InvalidData {
            path: path.display().to_string(),
            reason: format!("certificati X.509 illeggibili: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::InvalidData {
            path: path.display().to_string(),
            reason: "nessun certificato".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_der_with_imprint_nonce_and_cert_req() {
        let imprint = [7u8; 32];
        let policy = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.4146.2.3");
        let r = TimestampRequest::new(&imprint, 0x1234_5678_9abc_def0, Some(policy)).unwrap();
        let back = TimeStampReq::from_der(r.der()).unwrap();
        assert_eq!(back.message_imprint.hashed_message.as_bytes(), &imprint);
        assert_eq!(back.message_imprint.hash_algorithm.oid, ID_SHA256);
        assert_eq!(back.req_policy, Some(policy));
        assert!(back.cert_req);
        assert_eq!(
            back.nonce.unwrap().as_bytes(),
            &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]
        );
        // A nonce with the top bit set stays positive.
        let r = TimestampRequest::new(&imprint, u64::MAX, None).unwrap();
        let back = TimeStampReq::from_der(r.der()).unwrap();
        assert_eq!(back.nonce.unwrap().as_bytes()[0], 0);
        assert!(TimestampRequest::new(&[0; 20], 1, None).is_err());
    }

    #[test]
    fn garbage_replies_and_tokens_are_errors() {
        let r = TimestampRequest::new(&[1; 32], 5, None).unwrap();
        for reply in [&b""[..], b"<html>", &[0x30, 0x03, 0x02, 0x01, 0x00]] {
            let e = r.check_reply(reply, None).unwrap_err();
            assert!(matches!(e, CertError::Timestamp(_)), "{e}");
        }
        // status rejection (2), no token.
        let rejected = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02];
        let e = r.check_reply(&rejected, None).unwrap_err().to_string();
        assert!(e.contains("rifiutato"), "{e}");
        // status granted but no token.
        let empty = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00];
        let e = r.check_reply(&empty, None).unwrap_err().to_string();
        assert!(e.contains("non contiene"), "{e}");
        assert!(verify_token(b"\x30\x00", &[1; 32], None).is_err());
    }
}
