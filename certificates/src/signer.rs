//! The stamp signer (key and X.509 certificate) and the trust list that publishes it.
//!
//! In production the key is a PKCS#8 PEM file and the certificate an X.509 PEM file named in the
//! configuration. Without configuration, [`Signer::development`] creates (once) a development key in the
//! data directory whose certificate subject says it is not valid; every page it signs says so too.
//! The key id (`kid`) is the first 8 bytes of the SHA-256 of the certificate's DER, as in EU DCC.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::der::{Decode, DecodePem, Encode};

use crate::audit::{sync_dir, FileLock};
use crate::error::CertError;

/// The marker in a development certificate's subject. Verifiers and the PDF show a warning when they see it.
pub const DEVELOPMENT_MARKER: &str = "NON VALIDO";
/// The common name of a development certificate.
pub const DEVELOPMENT_SUBJECT: &str =
    "SPORTELLO CHIAVE DI SVILUPPO - NON VALIDO - DEVELOPMENT KEY NOT VALID";
/// The trust list's format identifier.
pub const TRUST_LIST_FORMAT: &str = "sportello-trust-list/1";

/// Where the signer key and certificate come from: a key file, a key in a PKCS#11 token
/// (`pkcs11_module`, `token_label`, `key_label`, `pin_file`), or else the development key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignerConfig {
    /// PKCS#8 PEM private key (P-256). With `certificate`, replaces the development key.
    pub key: Option<PathBuf>,
    /// X.509 certificate (PEM or DER) of `key` or of the token's key.
    pub certificate: Option<PathBuf>,
    /// The PKCS#11 module of the token holding the key (an HSM's or SoftHSM2's `.so`).
    pub pkcs11_module: Option<PathBuf>,
    /// The token's label.
    pub token_label: Option<String>,
    /// The private key's label (`CKA_LABEL`) in the token.
    pub key_label: Option<String>,
    /// A file holding the token's user PIN (mode 0600, readable by the service only).
    pub pin_file: Option<PathBuf>,
    /// Further X.509 PEM certificates to keep in the trust list (earlier signers after a key rotation).
    pub trusted_certificates: Vec<PathBuf>,
}

/// A loaded signing key with its certificate.
///
/// The key is parsed and checked with RustCrypto's `p256` (which reads any PKCS#8 P-256 key), and
/// signs with `ring`'s P-256, about four times faster (measured by `cargo bench -p certificates`:
/// see `BENCHMARKS.md`). Both are the same key: `ring`'s pair is built from `p256`'s scalar and
/// point.
#[derive(Clone)]
pub struct Signer {
    backend: Backend,
    entry: TrustedSigner,
}

/// Where the private key is.
#[derive(Clone)]
enum Backend {
    /// In this process's memory (a key file, or the development key).
    Memory {
        key: SigningKey,
        fast: std::sync::Arc<ring::signature::EcdsaKeyPair>,
        rng: ring::rand::SystemRandom,
    },
    /// In a PKCS#11 token.
    Token(std::sync::Arc<crate::pkcs11::Pkcs11Key>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Signer")
            .field("entry", &self.entry)
            .finish()
    }
}

impl Signer {
    /// Loads a signer from a PKCS#8 PEM key and an X.509 PEM certificate, checking that they match.
    pub fn from_pem(key_pem: &str, certificate_pem: &str) -> Result<Self, CertError> {
        let key = SigningKey::from_pkcs8_pem(key_pem)
            .map_err(|e| CertError::SignerKey(format!("chiave PKCS#8 P-256 non leggibile: {e}")))?;
        let entry = TrustedSigner::from_certificate_pem(certificate_pem)?;
        if entry.verifying_key()? != *key.verifying_key() {
            return Err(CertError::SignerKey(
                "la chiave non corrisponde al certificato".into(),
            ));
        }
        let rng = ring::rand::SystemRandom::new();
        let public = key.verifying_key().to_encoded_point(false);
        let fast = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.to_bytes(),
            public.as_bytes(),
            &rng,
        )
        .map_err(|e| CertError::SignerKey(format!("chiave P-256 non utilizzabile: {e}")))?;
        Ok(Signer {
            backend: Backend::Memory {
                key,
                fast: std::sync::Arc::new(fast),
                rng,
            },
            entry,
        })
    }

    /// A signer whose key is in a PKCS#11 token, with its certificate (PEM or DER file). The key
    /// must be EC P-256 (the stamp is ES256), and match the certificate: a test signature is
    /// checked against it.
    pub fn from_token(
        key: &crate::pkcs11::TokenKey,
        certificate: &Path,
    ) -> Result<Self, CertError> {
        let der = crate::pkcs11::certificate_der(certificate)?;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| CertError::SignerKey(format!("certificato non leggibile: {e}")))?;
        let pem = x509_cert::der::EncodePem::to_pem(&cert, x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| CertError::SignerKey(format!("certificato: {e}")))?;
        let entry = TrustedSigner::from_certificate_pem(&pem)?;
        let token = crate::pkcs11::Pkcs11Key::open(key)?;
        if token.algorithm() != crate::seal::SealAlgorithm::EcdsaP256Sha256 {
            return Err(CertError::SignerKey(
                "la chiave del token deve essere EC P-256 (il contrassegno è ES256)".into(),
            ));
        }
        let probe = b"sportello: verifica della coppia chiave-certificato";
        let sig = token.sign(probe)?;
        let sig = Signature::from_slice(&sig)
            .map_err(|e| CertError::SignerKey(format!("firma del token non valida: {e}")))?;
        use p256::ecdsa::signature::Verifier as _;
        entry.verifying_key()?.verify(probe, &sig).map_err(|_| {
            CertError::SignerKey("la chiave del token non corrisponde al certificato".into())
        })?;
        Ok(Signer {
            backend: Backend::Token(std::sync::Arc::new(token)),
            entry,
        })
    }

    /// Loads a signer from files.
    pub fn from_files(key: &Path, certificate: &Path) -> Result<Self, CertError> {
        let k = std::fs::read_to_string(key).map_err(|e| CertError::io(key, e))?;
        let c = std::fs::read_to_string(certificate).map_err(|e| CertError::io(certificate, e))?;
        Self::from_pem(&k, &c)
    }

    /// Loads the development signer from `<data_dir>/signer/`, generating it on first use.
    ///
    /// The pair is generated under a lock file (several processes may start on one data directory at
    /// once), written to fsynced temporary files and renamed into place certificate first, key last, so
    /// that whoever sees both files sees one pair. A lone key or certificate is the remnant of an
    /// interrupted generation and is replaced by a new pair.
    pub fn development(data_dir: &Path, now: OffsetDateTime) -> Result<Self, CertError> {
        let dir = data_dir.join("signer");
        let key_path = dir.join("development-key.pem");
        let cert_path = dir.join("development-certificate.pem");
        if key_path.exists() && cert_path.exists() {
            return Self::from_files(&key_path, &cert_path);
        }
        std::fs::create_dir_all(&dir).map_err(|e| CertError::io(&dir, e))?;
        let lock_path = dir.join("development.lock");
        let lock_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| CertError::io(&lock_path, e))?;
        let _lock = FileLock::exclusive(&lock_file, &lock_path)?;
        // Another process may have finished generating while this one waited for the lock.
        if key_path.exists() && cert_path.exists() {
            return Self::from_files(&key_path, &cert_path);
        }
        // Remove the lone half first: otherwise a reader outside the lock could briefly pair an old key
        // with the new certificate once that is renamed into place.
        for stale in [&key_path, &cert_path] {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CertError::io(stale, e)),
            }
        }
        let (key_pem, cert_pem) = generate_signer_pem(
            DEVELOPMENT_SUBJECT,
            now - time::Duration::days(1),
            now + time::Duration::days(3650),
        )?;
        let key_tmp = dir.join("development-key.pem.tmp");
        let cert_tmp = dir.join("development-certificate.pem.tmp");
        write_synced(&key_tmp, key_pem.as_bytes(), true)?;
        write_synced(&cert_tmp, cert_pem.as_bytes(), false)?;
        std::fs::rename(&cert_tmp, &cert_path).map_err(|e| CertError::io(&cert_path, e))?;
        std::fs::rename(&key_tmp, &key_path).map_err(|e| CertError::io(&key_path, e))?;
        sync_dir(&key_path)?;
        Self::from_pem(&key_pem, &cert_pem)
    }

    /// The signer as configured: key and certificate files, or the development key in `data_dir`.
    pub fn from_config(
        config: &SignerConfig,
        data_dir: &Path,
        now: OffsetDateTime,
    ) -> Result<Self, CertError> {
        if let Some(module) = &config.pkcs11_module {
            let (Some(token_label), Some(key_label), Some(pin_file), Some(certificate)) = (
                &config.token_label,
                &config.key_label,
                &config.pin_file,
                &config.certificate,
            ) else {
                return Err(CertError::SignerKey(
                    "con pkcs11_module configurare anche token_label, key_label, pin_file e certificate".into(),
                ));
            };
            if config.key.is_some() {
                return Err(CertError::SignerKey(
                    "configurare la chiave in un file (key) oppure in un token (pkcs11_module), non entrambe".into(),
                ));
            }
            let key = crate::pkcs11::TokenKey {
                module: module.clone(),
                token_label: token_label.clone(),
                key_label: key_label.clone(),
                pin_file: pin_file.clone(),
            };
            return Self::from_token(&key, certificate);
        }
        match (&config.key, &config.certificate) {
            (Some(k), Some(c)) => Self::from_files(k, c),
            (None, None) => Self::development(data_dir, now),
            _ => Err(CertError::SignerKey(
                "configurare sia la chiave sia il certificato del firmatario".into(),
            )),
        }
    }

    /// Signs `data` with ES256; the signature is the 64-byte `r || s` that COSE uses. Fails only
    /// when a token refuses.
    pub fn try_sign(&self, data: &[u8]) -> Result<Vec<u8>, CertError> {
        match &self.backend {
            Backend::Memory { key, fast, rng } => Ok(match fast.sign(rng, data) {
                Ok(sig) => sig.as_ref().to_vec(),
                // `ring` fails only when the system's random source does; RFC 6979's
                // deterministic nonce needs none.
                Err(_) => {
                    let sig: Signature = key.sign(data);
                    sig.to_bytes().to_vec()
                }
            }),
            Backend::Token(token) => token.sign(data),
        }
    }

    /// Whether the key is in a PKCS#11 token.
    pub fn in_token(&self) -> bool {
        matches!(self.backend, Backend::Token(_))
    }

    /// The key id.
    pub fn kid(&self) -> [u8; 8] {
        self.entry.kid_bytes()
    }

    /// The trust-list entry for this signer.
    pub fn trust_entry(&self) -> &TrustedSigner {
        &self.entry
    }

    /// Whether this is a development key (its certificate says it is not valid).
    pub fn is_development(&self) -> bool {
        self.entry.development
    }
}

/// Writes `bytes` to a new file at `path` and fsyncs it, so that a later rename never exposes an empty or
/// partial file after a crash. A private file gets mode 0600 from creation, never readable by others even
/// briefly. A leftover temporary file (from an interrupted run; callers hold the lock) is replaced.
fn write_synced(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    use std::io::Write as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CertError::io(path, e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(path).map_err(|e| CertError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| CertError::io(path, e))
}

/// Generates a P-256 key (PKCS#8 PEM) and a self-signed certificate (PEM) with the given common name and
/// validity. Used for the development key and by tests (expired signers, foreign keys).
pub fn generate_signer_pem(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), CertError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::SignerKey(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| CertError::SignerKey(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "Comune di Parma - Sportello",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "IT");
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params
        .self_signed(&key)
        .map_err(|e| CertError::SignerKey(e.to_string()))?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// One signer in the trust list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedSigner {
    /// Key id, Base64 (standard alphabet) of 8 bytes.
    pub kid: String,
    /// Always "ES256".
    pub alg: String,
    /// The signer's X.509 certificate, Base64 DER.
    pub certificate: String,
    /// The certificate's public key as Base64 DER SubjectPublicKeyInfo (ready for WebCrypto `importKey("spki")`).
    pub public_key_spki: String,
    /// The certificate's subject.
    pub subject: String,
    /// Start of the certificate's validity, Unix seconds.
    pub not_before: i64,
    /// End of the certificate's validity, Unix seconds.
    pub not_after: i64,
    /// Whether this is a development key that must not be trusted for real documents.
    pub development: bool,
}

impl TrustedSigner {
    /// Builds the entry from a PEM certificate.
    pub fn from_certificate_pem(pem: &str) -> Result<Self, CertError> {
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| CertError::SignerKey(format!("certificato X.509 non leggibile: {e}")))?;
        let der = cert
            .to_der()
            .map_err(|e| CertError::SignerKey(e.to_string()))?;
        Self::from_certificate(&cert, &der)
    }

    fn from_certificate(cert: &x509_cert::Certificate, der: &[u8]) -> Result<Self, CertError> {
        let tbs = &cert.tbs_certificate;
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| CertError::SignerKey(e.to_string()))?;
        VerifyingKey::from_public_key_der(&spki).map_err(|_| {
            CertError::SignerKey("il certificato non contiene una chiave P-256".into())
        })?;
        let subject = tbs.subject.to_string();
        let kid = &Sha256::digest(der)[..8];
        Ok(TrustedSigner {
            kid: B64.encode(kid),
            alg: "ES256".into(),
            certificate: B64.encode(der),
            public_key_spki: B64.encode(&spki),
            development: subject.contains(DEVELOPMENT_MARKER),
            subject,
            not_before: tbs.validity.not_before.to_unix_duration().as_secs() as i64,
            not_after: tbs.validity.not_after.to_unix_duration().as_secs() as i64,
        })
    }

    /// The key id as bytes (zeros if the entry is malformed; such a kid matches no stamp).
    pub fn kid_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        if let Ok(b) = B64.decode(&self.kid) {
            if b.len() == 8 {
                out.copy_from_slice(&b);
            }
        }
        out
    }

    /// The verifying key, taken from the certificate itself (the authoritative field), after checking
    /// that the kid really is the certificate's hash.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CertError> {
        let der = B64
            .decode(&self.certificate)
            .map_err(|_| CertError::SignerKey("certificato Base64 non valido".into()))?;
        if Sha256::digest(&der)[..8] != self.kid_bytes() {
            return Err(CertError::SignerKey(
                "kid non corrispondente al certificato".into(),
            ));
        }
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| CertError::SignerKey(format!("certificato X.509 non leggibile: {e}")))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| CertError::SignerKey(e.to_string()))?;
        VerifyingKey::from_public_key_der(&spki)
            .map_err(|_| CertError::SignerKey("chiave pubblica P-256 non valida".into()))
    }
}

/// The trust list served at `/.well-known/sportello/trust-list.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    /// Format identifier, [`TRUST_LIST_FORMAT`].
    pub format: String,
    /// The issuing comune's name.
    pub issuer_name: String,
    /// The issuing comune's ISTAT code (the stamp's `iss`).
    pub issuer: String,
    /// The signers.
    pub signers: Vec<TrustedSigner>,
}

impl TrustList {
    /// A trust list with the given signers.
    pub fn new(issuer_name: &str, issuer: &str, signers: Vec<TrustedSigner>) -> Self {
        TrustList {
            format: TRUST_LIST_FORMAT.into(),
            issuer_name: issuer_name.into(),
            issuer: issuer.into(),
            signers,
        }
    }

    /// Parses a trust list from JSON.
    pub fn from_json(text: &str) -> Result<Self, CertError> {
        let list: TrustList = serde_json::from_str(text).map_err(|e| CertError::InvalidData {
            path: "trust list".into(),
            reason: e.to_string(),
        })?;
        if list.format != TRUST_LIST_FORMAT {
            return Err(CertError::InvalidData {
                path: "trust list".into(),
                reason: format!("formato sconosciuto: {}", list.format),
            });
        }
        Ok(list)
    }

    /// Pretty JSON, as served.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The signer with this key id.
    pub fn find(&self, kid: &[u8]) -> Option<&TrustedSigner> {
        self.signers.iter().find(|s| s.kid_bytes() == kid)
    }
}

/// Encodes a verifying key as DER SPKI (for tests and tools).
pub fn spki_der(key: &VerifyingKey) -> Result<Vec<u8>, CertError> {
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| CertError::SignerKey(e.to_string()))
}
