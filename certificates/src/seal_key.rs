//! How issued PDFs are sealed, as `[certificates.seal]` says: with which key, and with or
//! without a time stamp.
//!
//! **The key.** Without a key of its own the seal is made with the stamp's key
//! (`[certificates.signer]`). A separate seal key is either a file (`key_file`, PKCS#8 PEM, EC
//! P-256 or RSA, with `certificate`) or a key in a PKCS#11 token (`pkcs11_module`, `token_label`,
//! `key_label`, `pin_file`, `certificate`), as the qualified seals of comuni usually are. The
//! `certificate` file holds the key's certificate first, then any issuer certificates to embed in
//! the seal. At start the key must match the certificate (a test signature is checked against it).
//!
//! **The time stamp.** With `tsa_url`, each seal carries an RFC 3161 signature time stamp (PAdES
//! B-T, [`crate::tsa`]), checked against `tsa_ca_file` when given, of policy `tsa_policy` when
//! given. A TSA that fails fails the issue ([`CertError::Timestamp`], which the server reports as
//! `unavailable`), unless `tsa_optional = true`: then the failure is logged and recorded in the
//! audit log and the certificate is sealed B-B, its text saying so ([`Sealing::seal`] renders it
//! again without the time-stamp sentence).
//!
//! A configuration that cannot work is refused at start with the reason ([`Sealing::from_config`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Encode;
use x509_cert::Certificate;

use crate::error::CertError;
use crate::pkcs11::{Pkcs11Key, TokenKey};
use crate::seal::{SealAlgorithm, SealKey, Timestamper};
use crate::signer::Signer;
use crate::tsa::TsaClient;

/// Default time to wait for the TSA's reply.
pub const DEFAULT_TSA_TIMEOUT_MS: u64 = 10_000;

/// The `[certificates.seal]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SealConfig {
    /// The timestamp authority's URL (RFC 3161 over HTTP); with it, seals are PAdES B-T.
    pub tsa_url: Option<String>,
    /// PEM (or DER) certificates the TSA's certificate must chain to.
    pub tsa_ca_file: Option<PathBuf>,
    /// The TSA policy to ask for and require (dotted OID).
    pub tsa_policy: Option<String>,
    /// Seal B-B (and say so) when the TSA fails, instead of refusing to issue.
    pub tsa_optional: bool,
    /// How long to wait for the TSA, in milliseconds (default 10 000).
    pub tsa_timeout_ms: Option<u64>,
    /// A seal key of its own: PKCS#8 PEM (EC P-256 or RSA), with `certificate`.
    pub key_file: Option<PathBuf>,
    /// The seal key's X.509 certificate (PEM or DER; a PEM file may add its issuers after it).
    pub certificate: Option<PathBuf>,
    /// The PKCS#11 module of the token holding the seal key.
    pub pkcs11_module: Option<PathBuf>,
    /// The token's label.
    pub token_label: Option<String>,
    /// The seal key's label (`CKA_LABEL`) in the token.
    pub key_label: Option<String>,
    /// A file holding the token's user PIN.
    pub pin_file: Option<PathBuf>,
}

impl SealConfig {
    /// The configuration's own mistakes, found without opening a key, a token or the TSA (for
    /// `sportello check-config`; [`Sealing::from_config`] checks this first): half a key, both a
    /// file and a token, TSA settings without `tsa_url`, a URL that is not http(s), a policy that
    /// is not an OID, a zero timeout, a named file that does not exist.
    pub fn check(&self) -> Result<(), CertError> {
        let token_fields =
            self.token_label.is_some() || self.key_label.is_some() || self.pin_file.is_some();
        match (&self.pkcs11_module, &self.key_file) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "configurare la chiave del sigillo in un file (key_file) oppure in un token (pkcs11_module), non entrambe",
                ))
            }
            (Some(_), None) => {
                if self.token_label.is_none()
                    || self.key_label.is_none()
                    || self.pin_file.is_none()
                    || self.certificate.is_none()
                {
                    return Err(bad(
                        "con pkcs11_module configurare anche token_label, key_label, pin_file e certificate",
                    ));
                }
            }
            (None, Some(_)) => {
                if self.certificate.is_none() {
                    return Err(bad("con key_file configurare anche certificate"));
                }
                if token_fields {
                    return Err(bad(
                        "token_label, key_label e pin_file valgono solo con pkcs11_module",
                    ));
                }
            }
            (None, None) => {
                if self.certificate.is_some() || token_fields {
                    return Err(bad(
                        "certificate, token_label, key_label e pin_file richiedono key_file o pkcs11_module",
                    ));
                }
            }
        }
        match &self.tsa_url {
            None => {
                if self.tsa_ca_file.is_some()
                    || self.tsa_policy.is_some()
                    || self.tsa_optional
                    || self.tsa_timeout_ms.is_some()
                {
                    return Err(bad(
                        "tsa_ca_file, tsa_policy, tsa_optional e tsa_timeout_ms richiedono tsa_url",
                    ));
                }
            }
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad(format!(
                        "tsa_url: URL della TSA non valido (http:// o https://): {url}"
                    )));
                }
                if let Some(p) = &self.tsa_policy {
                    if ObjectIdentifier::new(p).is_err() {
                        return Err(bad(format!(
                            "tsa_policy {p:?} non è un OID (es. 1.3.6.1.4.1.x.y)"
                        )));
                    }
                }
                if self.tsa_timeout_ms == Some(0) {
                    return Err(bad("tsa_timeout_ms deve essere almeno 1"));
                }
            }
        }
        for (name, path) in [
            ("key_file", &self.key_file),
            ("certificate", &self.certificate),
            ("pkcs11_module", &self.pkcs11_module),
            ("pin_file", &self.pin_file),
            ("tsa_ca_file", &self.tsa_ca_file),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    return Err(bad(format!(
                        "{name}: il file {} non esiste",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn bad(what: impl std::fmt::Display) -> CertError {
    CertError::InvalidData {
        path: "[certificates.seal]".into(),
        reason: what.to_string(),
    }
}

/// The seal's key and time stamping, ready to use.
#[derive(Default)]
pub struct Sealing {
    /// `None`: the stamp's key.
    key: Option<Arc<dyn SealKey>>,
    tsa: Option<TsaClient>,
    optional: bool,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field(
                "own_key",
                &self.key.as_ref().map(|k| subject_of(k.as_ref())),
            )
            .field("tsa", &self.tsa.as_ref().map(|t| t.url()))
            .field("optional", &self.optional)
            .finish()
    }
}

fn subject_of(key: &dyn SealKey) -> String {
    key.certificates()
        .first()
        .and_then(|c| x509_cert::der::Decode::from_der(c).ok())
        .map(|c: Certificate| c.tbs_certificate.subject.to_string())
        .unwrap_or_default()
}

/// A sealed PDF and how it was sealed.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The sealed PDF.
    pub pdf: Vec<u8>,
    /// It carries a signature time stamp (PAdES B-T).
    pub timestamped: bool,
    /// Why the optional time stamp is missing, when the TSA failed.
    pub timestamp_failure: Option<String>,
}

impl Sealing {
    /// Opens the configured seal key and TSA client, or refuses the configuration with the reason.
    pub fn from_config(config: &SealConfig) -> Result<Self, CertError> {
        config.check()?;
        let incomplete = || bad("configurazione incompleta");
        let key: Option<Arc<dyn SealKey>> = match (&config.pkcs11_module, &config.key_file) {
            (Some(module), _) => {
                let (Some(token_label), Some(key_label), Some(pin_file), Some(certificate)) = (
                    &config.token_label,
                    &config.key_label,
                    &config.pin_file,
                    &config.certificate,
                ) else {
                    return Err(incomplete());
                };
                let key = TokenKey {
                    module: module.clone(),
                    token_label: token_label.clone(),
                    key_label: key_label.clone(),
                    pin_file: pin_file.clone(),
                };
                Some(Arc::new(TokenSealKey::open(&key, certificate)?))
            }
            (None, Some(key_file)) => {
                let certificate = config.certificate.as_ref().ok_or_else(incomplete)?;
                Some(Arc::new(FileSealKey::from_files(key_file, certificate)?))
            }
            (None, None) => None,
        };
        let tsa = match &config.tsa_url {
            None => None,
            Some(url) => {
                let policy = match &config.tsa_policy {
                    None => None,
                    Some(p) => Some(ObjectIdentifier::new(p).map_err(|_| incomplete())?),
                };
                let trust = match &config.tsa_ca_file {
                    None => None,
                    Some(path) => Some(
                        crate::timestamp::load_certificates(path)
                            .map_err(|e| bad(format!("tsa_ca_file: {e}")))?,
                    ),
                };
                let timeout = config.tsa_timeout_ms.unwrap_or(DEFAULT_TSA_TIMEOUT_MS);
                Some(
                    TsaClient::new(url, policy, trust, Duration::from_millis(timeout))
                        .map_err(|e| bad(format!("tsa_url: {e}")))?,
                )
            }
        };
        Ok(Sealing {
            key,
            tsa,
            optional: config.tsa_optional,
        })
    }

    /// Whether seals carry a time stamp (a TSA is configured).
    pub fn timestamps(&self) -> bool {
        self.tsa.is_some()
    }

    /// The timestamp authority's URL, when one is configured.
    pub fn tsa_url(&self) -> Option<&str> {
        self.tsa.as_ref().map(|t| t.url())
    }

    /// Whether a failing TSA lets the seal fall back to B-B (`tsa_optional`).
    pub fn tsa_optional(&self) -> bool {
        self.optional
    }

    /// The separate seal key's certificate subject; `None` when the stamp's key seals.
    pub fn own_key_subject(&self) -> Option<String> {
        self.key.as_ref().map(|k| subject_of(k.as_ref()))
    }

    /// Seals the PDF `render(timestamped)` returns (the PDF's text says whether the seal carries a
    /// time stamp), with the seal key or else `stamp_key`. When the optional TSA fails, the PDF is
    /// rendered again with `false` and sealed without a time stamp.
    pub fn seal(
        &self,
        stamp_key: &Signer,
        now: OffsetDateTime,
        name: &str,
        reason: &str,
        render: &dyn Fn(bool) -> Result<Vec<u8>, CertError>,
    ) -> Result<Sealed, CertError> {
        let key: &dyn SealKey = match &self.key {
            Some(k) => k.as_ref(),
            None => stamp_key,
        };
        let Some(tsa) = &self.tsa else {
            let pdf = crate::seal::seal_pdf(&render(false)?, key, now, name, reason)?;
            return Ok(Sealed {
                pdf,
                timestamped: false,
                timestamp_failure: None,
            });
        };
        let tsa: &dyn Timestamper = tsa;
        match crate::seal::seal_pdf_with(&render(true)?, key, Some(tsa), now, name, reason) {
            Ok(pdf) => Ok(Sealed {
                pdf,
                timestamped: true,
                timestamp_failure: None,
            }),
            Err(CertError::Timestamp(why)) if self.optional => {
                tracing::warn!(
                    error = %why,
                    "timestamp authority failed; sealing PAdES B-B (tsa_optional)"
                );
                let pdf = crate::seal::seal_pdf(&render(false)?, key, now, name, reason)?;
                Ok(Sealed {
                    pdf,
                    timestamped: false,
                    timestamp_failure: Some(why),
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// The chain in `certificate` (PEM, key's certificate first, or DER) as DER.
fn chain_der(certificate: &Path) -> Result<(Certificate, Vec<Vec<u8>>), CertError> {
    let certs = crate::timestamp::load_certificates(certificate)
        .map_err(|e| bad(format!("certificate: {e}")))?;
    let der = certs
        .iter()
        .map(|c| c.to_der())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("certificate: {e}")))?;
    Ok((certs[0].clone(), der))
}

/// Checks that the key that made `signature` over `probe` is `cert`'s.
fn check_pair(
    cert: &Certificate,
    algorithm: SealAlgorithm,
    probe: &[u8],
    signature: &[u8],
) -> Result<(), CertError> {
    let sig_alg = match algorithm {
        SealAlgorithm::EcdsaP256Sha256 => ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
        SealAlgorithm::RsaPkcs1Sha256 => ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
    };
    crate::timestamp::verify_signature(
        &cert.tbs_certificate.subject_public_key_info,
        sig_alg,
        None,
        probe,
        signature,
    )
    .map_err(|_| bad("la chiave del sigillo non corrisponde al certificato"))
}

const PROBE: &[u8] = b"sportello: verifica della coppia chiave-certificato del sigillo";

/// A seal key in a PKCS#8 file.
pub struct FileSealKey {
    key: FileKey,
    chain: Vec<Vec<u8>>,
}

enum FileKey {
    Ec(ring::signature::EcdsaKeyPair),
    Rsa(ring::signature::RsaKeyPair),
}

impl FileSealKey {
    /// Loads a PKCS#8 PEM key (EC P-256 or RSA) and its certificate chain, checking they match.
    pub fn from_files(key_file: &Path, certificate: &Path) -> Result<Self, CertError> {
        let text = std::fs::read(key_file).map_err(|e| CertError::io(key_file, e))?;
        let (label, der) = x509_cert::der::pem::decode_vec(&text)
            .map_err(|e| bad(format!("key_file: PEM non leggibile: {e}")))?;
        if label != "PRIVATE KEY" {
            return Err(bad(format!(
                "key_file: serve una chiave PKCS#8 non cifrata (\"PRIVATE KEY\"), non {label:?}: convertirla con `openssl pkcs8 -topk8 -nocrypt`"
            )));
        }
        let rng = ring::rand::SystemRandom::new();
        let key = match ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &rng,
        ) {
            Ok(k) => FileKey::Ec(k),
            Err(_) => FileKey::Rsa(
                ring::signature::RsaKeyPair::from_pkcs8(&der)
                    .map_err(|e| bad(format!("key_file: né EC P-256 né RSA utilizzabile ({e})")))?,
            ),
        };
        let (cert, chain) = chain_der(certificate)?;
        let this = FileSealKey { key, chain };
        let sig = this.sign(PROBE)?;
        check_pair(&cert, this.algorithm(), PROBE, &sig)?;
        Ok(this)
    }
}

impl SealKey for FileSealKey {
    fn certificates(&self) -> Vec<Vec<u8>> {
        self.chain.clone()
    }

    fn algorithm(&self) -> SealAlgorithm {
        match self.key {
            FileKey::Ec(_) => SealAlgorithm::EcdsaP256Sha256,
            FileKey::Rsa(_) => SealAlgorithm::RsaPkcs1Sha256,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        let rng = ring::rand::SystemRandom::new();
        let failed = |_| CertError::SignerKey("firma del sigillo non riuscita".into());
        match &self.key {
            FileKey::Ec(k) => Ok(k.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
            FileKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
        }
    }
}

/// A seal key in a PKCS#11 token (EC P-256 or RSA).
pub struct TokenSealKey {
    key: Pkcs11Key,
    chain: Vec<Vec<u8>>,
}

impl TokenSealKey {
    /// Logs in to the token, finds the key and checks it against `certificate`.
    pub fn open(key: &TokenKey, certificate: &Path) -> Result<Self, CertError> {
        let (cert, chain) = chain_der(certificate)?;
        let this = TokenSealKey {
            key: Pkcs11Key::open(key).map_err(|e| bad(e.to_string()))?,
            chain,
        };
        let sig = this.sign(PROBE)?;
        check_pair(&cert, this.algorithm(), PROBE, &sig)?;
        Ok(this)
    }
}

impl SealKey for TokenSealKey {
    fn certificates(&self) -> Vec<Vec<u8>> {
        self.chain.clone()
    }

    fn algorithm(&self) -> SealAlgorithm {
        self.key.algorithm()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        let raw = self.key.sign(message)?;
        match self.key.algorithm() {
            // The token returns r ‖ s; CMS wants the DER Ecdsa-Sig-Value.
            SealAlgorithm::EcdsaP256Sha256 => {
                let sig = p256::ecdsa::Signature::from_slice(&raw)
                    .map_err(|e| CertError::SignerKey(format!("firma P-256 del token: {e}")))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            SealAlgorithm::RsaPkcs1Sha256 => Ok(raw),
        }
    }
}

impl std::fmt::Debug for FileSealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("FileSealKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TokenSealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSealKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: SealConfig) -> String {
        Sealing::from_config(&config).unwrap_err().to_string()
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let e = refused(SealConfig {
            tsa_url: Some("ftp://tsa.example".into()),
            ..SealConfig::default()
        });
        assert!(e.contains("tsa_url"), "{e}");
        let e = refused(SealConfig {
            tsa_url: Some("https://tsa.example/tsa".into()),
            tsa_policy: Some("not an oid".into()),
            ..SealConfig::default()
        });
        assert!(e.contains("tsa_policy"), "{e}");
        let e = refused(SealConfig {
            tsa_optional: true,
            ..SealConfig::default()
        });
        assert!(e.contains("richiedono tsa_url"), "{e}");
        let e = refused(SealConfig {
            key_file: Some("/nonexistent/seal.key".into()),
            ..SealConfig::default()
        });
        assert!(e.contains("certificate"), "{e}");
        let e = refused(SealConfig {
            key_file: Some("/nonexistent/seal.key".into()),
            pkcs11_module: Some("/nonexistent.so".into()),
            ..SealConfig::default()
        });
        assert!(e.contains("non entrambe"), "{e}");
        let e = refused(SealConfig {
            pkcs11_module: Some("/nonexistent.so".into()),
            ..SealConfig::default()
        });
        assert!(e.contains("pin_file"), "{e}");
        let e = refused(SealConfig {
            certificate: Some("/etc/seal.pem".into()),
            ..SealConfig::default()
        });
        assert!(e.contains("key_file o pkcs11_module"), "{e}");
        let e = refused(SealConfig {
            key_file: Some("/nonexistent/seal.key".into()),
            certificate: Some("/nonexistent/seal.pem".into()),
            ..SealConfig::default()
        });
        assert!(
            e.contains("key_file: il file /nonexistent/seal.key non esiste"),
            "{e}"
        );
        let e = refused(SealConfig {
            tsa_url: Some("https://tsa.example/tsa".into()),
            tsa_timeout_ms: Some(0),
            ..SealConfig::default()
        });
        assert!(e.contains("tsa_timeout_ms"), "{e}");
        let sealing = Sealing::from_config(&SealConfig {
            tsa_url: Some("http://127.0.0.1:9/tsa".into()),
            tsa_policy: Some("1.3.6.1.4.1.99999.1".into()),
            ..SealConfig::default()
        })
        .unwrap();
        assert!(sealing.timestamps());
        assert_eq!(sealing.own_key_subject(), None);
    }

    #[test]
    fn a_file_key_must_match_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (k1, c1) = crate::signer::generate_signer_pem(
            "Comune di Prova - sigillo",
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
        .unwrap();
        let (_, c2) = crate::signer::generate_signer_pem(
            "Altro",
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
        .unwrap();
        std::fs::write(dir.path().join("k1"), &k1).unwrap();
        std::fs::write(dir.path().join("c1"), &c1).unwrap();
        std::fs::write(dir.path().join("c2"), &c2).unwrap();
        let ok = FileSealKey::from_files(&dir.path().join("k1"), &dir.path().join("c1")).unwrap();
        assert_eq!(ok.algorithm(), SealAlgorithm::EcdsaP256Sha256);
        let e = FileSealKey::from_files(&dir.path().join("k1"), &dir.path().join("c2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("non corrisponde"), "{e}");
        // A certificate where the key should be.
        let e = FileSealKey::from_files(&dir.path().join("c1"), &dir.path().join("c1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PKCS#8"), "{e}");
    }
}
