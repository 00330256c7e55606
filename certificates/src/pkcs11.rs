//! A signing key kept in a PKCS#11 token: the HSMs and remote-seal services comuni use for their
//! electronic seal (`[certificates.signer] pkcs11_module, token_label, key_label, pin_file,
//! certificate`). The key never leaves the token; this process holds one logged-in session and
//! asks the token for each signature.
//!
//! - EC keys (P-256) sign with `CKM_ECDSA` over the SHA-256 digest, which the token returns as
//!   `r ‖ s` (the stamp's COSE form; the seal converts it to DER).
//! - RSA keys sign with `CKM_SHA256_RSA_PKCS` (or `CKM_RSA_PKCS` over a DigestInfo where the token
//!   lacks the combined mechanism). They can seal PDFs but not sign stamps, whose format is ES256.
//!
//! The PIN is read from `pin_file` (trailing newline ignored) at start. A session the token closed
//! (a restarted HSM) is opened again, and logged in, on the next signature.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

use crate::error::CertError;
use crate::seal::SealAlgorithm;

/// DER prefix of a SHA-256 DigestInfo (RFC 8017, 9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Where the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// The PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The private key's `CKA_LABEL`.
    pub key_label: String,
    /// A file holding the user PIN.
    pub pin_file: PathBuf,
}

/// A logged-in key in a token.
pub struct Pkcs11Key {
    where_: TokenKey,
    context: Pkcs11,
    slot: Slot,
    pin: String,
    algorithm: SealAlgorithm,
    session: Mutex<Option<(Session, ObjectHandle)>>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the PIN.
        f.debug_struct("Pkcs11Key")
            .field("where", &self.where_)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn p11(what: &str, e: impl std::fmt::Display) -> CertError {
    CertError::SignerKey(format!("PKCS#11: {what}: {e}"))
}

impl Pkcs11Key {
    /// Loads the module, finds the token by label, logs in and finds the key by label.
    pub fn open(key: &TokenKey) -> Result<Self, CertError> {
        let pin = std::fs::read_to_string(&key.pin_file)
            .map_err(|e| CertError::io(&key.pin_file, e))?
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        let context = Pkcs11::new(&key.module)
            .map_err(|e| p11(&format!("modulo {}", key.module.display()), e))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(p11("inizializzazione", e)),
        }
        let slot = context
            .get_slots_with_token()
            .map_err(|e| p11("slot", e))?
            .into_iter()
            .find(|s| {
                context
                    .get_token_info(*s)
                    .is_ok_and(|i| i.label().trim() == key.token_label)
            })
            .ok_or_else(|| {
                CertError::SignerKey(format!(
                    "PKCS#11: nessun token con etichetta {:?} nel modulo {}",
                    key.token_label,
                    key.module.display()
                ))
            })?;
        let mut this = Pkcs11Key {
            where_: key.clone(),
            context,
            slot,
            pin,
            algorithm: SealAlgorithm::EcdsaP256Sha256,
            session: Mutex::new(None),
        };
        let (session, handle) = this.login()?;
        let kind = session
            .get_attributes(handle, &[AttributeType::KeyType])
            .map_err(|e| p11("tipo di chiave", e))?;
        this.algorithm = match kind.first() {
            Some(Attribute::KeyType(t)) if *t == KeyType::EC => SealAlgorithm::EcdsaP256Sha256,
            Some(Attribute::KeyType(t)) if *t == KeyType::RSA => SealAlgorithm::RsaPkcs1Sha256,
            other => {
                return Err(CertError::SignerKey(format!(
                    "PKCS#11: tipo di chiave non supportato: {other:?}"
                )))
            }
        };
        *this.session.get_mut().unwrap_or_else(|e| e.into_inner()) = Some((session, handle));
        Ok(this)
    }

    fn login(&self) -> Result<(Session, ObjectHandle), CertError> {
        let session = self
            .context
            .open_ro_session(self.slot)
            .map_err(|e| p11("sessione", e))?;
        match session.login(UserType::User, Some(&AuthPin::from(self.pin.clone()))) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(p11("accesso con il PIN", e)),
        }
        let handle = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(self.where_.key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| p11("ricerca della chiave", e))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                CertError::SignerKey(format!(
                    "PKCS#11: nessuna chiave privata {:?} nel token {:?}",
                    self.where_.key_label, self.where_.token_label
                ))
            })?;
        Ok((session, handle))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> SealAlgorithm {
        self.algorithm
    }

    /// Where the key is.
    pub fn location(&self) -> &TokenKey {
        &self.where_
    }

    /// Signs `message`: `r ‖ s` for EC keys, the PKCS#1 v1.5 signature for RSA keys. A session
    /// the token dropped is opened again once.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        let mut slot = self.session.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(self.login()?);
            }
            let Some((session, key)) = slot.as_ref() else {
                continue;
            };
            let result = match self.algorithm {
                SealAlgorithm::EcdsaP256Sha256 => {
                    session.sign(&Mechanism::Ecdsa, *key, &Sha256::digest(message))
                }
                SealAlgorithm::RsaPkcs1Sha256 => {
                    match session.sign(&Mechanism::Sha256RsaPkcs, *key, message) {
                        Err(P11Error::Pkcs11(RvError::MechanismInvalid, _)) => {
                            let mut info = SHA256_DIGEST_INFO.to_vec();
                            info.extend_from_slice(&Sha256::digest(message));
                            session.sign(&Mechanism::RsaPkcs, *key, &info)
                        }
                        other => other,
                    }
                }
            };
            match result {
                Ok(sig) => return Ok(sig),
                Err(P11Error::Pkcs11(
                    RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent,
                    _,
                )) if attempt == 0 => {
                    *slot = None;
                }
                Err(e) => return Err(p11("firma", e)),
            }
        }
        Err(CertError::SignerKey("PKCS#11: firma non riuscita".into()))
    }
}

/// Reads a PEM or DER X.509 certificate file as DER.
pub fn certificate_der(path: &Path) -> Result<Vec<u8>, CertError> {
    let bytes = std::fs::read(path).map_err(|e| CertError::io(path, e))?;
    if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8_lossy(&bytes);
        use x509_cert::der::DecodePem as _;
        let cert = x509_cert::Certificate::from_pem(text.as_bytes())
            .map_err(|e| CertError::SignerKey(format!("certificato PEM non leggibile: {e}")))?;
        use x509_cert::der::Encode as _;
        cert.to_der()
            .map_err(|e| CertError::SignerKey(format!("certificato: {e}")))
    } else {
        Ok(bytes)
    }
}
