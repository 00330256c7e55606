//! CIE and CNS cards through PKCS#11 (the `cryptoki` crate): find the card, log in with the PIN
//! (or on the reader's PIN pad), and sign the server's nonce with the authentication key.
//!
//! Every function here blocks (PKCS#11 calls can take seconds on a real card): the agent calls them
//! from `spawn_blocking`. One operation runs at a time per reader. The PIN is held as a
//! [`AuthPin`] (zeroized when dropped), handed to `C_Login` only, and never logged.
//!
//! What is signed: the UTF-8 bytes of the nonce with SHA-256; an RSA key with `CKM_SHA256_RSA_PKCS`
//! (or `CKM_RSA_PKCS` over the DigestInfo when the middleware lacks the former), an EC key with
//! `CKM_ECDSA` over the digest, which gives `r‖s` (64 bytes for P-256).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use protocol::incall::{IdentityCard, IdentityCardError};
use sha2::{Digest, Sha256};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::BasicConstraints;

pub use cryptoki::types::AuthPin;

/// The DER prefix of a SHA-256 `DigestInfo` (for `CKM_RSA_PKCS`).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Why a card could not be used. [`CardError::reason`] is the `identity.card_error` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// No card (no token present in any slot, or it was removed).
    #[error("no card in the reader")]
    NoCard,
    /// The PIN is wrong.
    #[error("the PIN is incorrect")]
    PinIncorrect {
        /// Tries left, when the card says (1 on the final try).
        tries_left: Option<u32>,
    },
    /// The PIN is blocked.
    #[error("the PIN is locked")]
    PinLocked,
    /// The PIN did not arrive in time.
    #[error("no PIN in time")]
    Timeout,
    /// Anything else (the module, the card, a missing key or certificate).
    #[error("card error: {0}")]
    Card(String),
}

impl CardError {
    /// The `identity.card_error` reason: `no_card`, `pin_incorrect`, `pin_locked`, `timeout`,
    /// `card_error`.
    pub fn reason(&self) -> &'static str {
        match self {
            CardError::NoCard => "no_card",
            CardError::PinIncorrect { .. } => "pin_incorrect",
            CardError::PinLocked => "pin_locked",
            CardError::Timeout => "timeout",
            CardError::Card(_) => "card_error",
        }
    }

    /// The `identity.card_error` body for `call_id`.
    pub fn to_request(&self, call_id: &str) -> IdentityCardError {
        IdentityCardError {
            call_id: call_id.to_owned(),
            reason: self.reason().to_owned(),
            tries_left: match self {
                CardError::PinIncorrect { tries_left } => *tries_left,
                _ => None,
            },
        }
    }
}

fn card_error(e: P11Error) -> CardError {
    match e {
        P11Error::Pkcs11(
            RvError::TokenNotPresent
            | RvError::DeviceRemoved
            | RvError::SlotIdInvalid
            | RvError::TokenNotRecognized,
            _,
        ) => CardError::NoCard,
        P11Error::Pkcs11(RvError::PinLocked, _) => CardError::PinLocked,
        P11Error::Pkcs11(RvError::FunctionCanceled, _) => {
            CardError::Card("cancelled on the reader".into())
        }
        other => CardError::Card(other.to_string()),
    }
}

/// The card found in the reader.
#[derive(Debug, Clone)]
pub struct CardProbe {
    /// Its slot.
    pub slot: Slot,
    /// The token label.
    pub label: String,
    /// Whether the PIN is typed on the reader's PIN pad (`CKF_PROTECTED_AUTHENTICATION_PATH`).
    pub protected_auth_path: bool,
    /// Whether the card says its PIN is blocked.
    pub pin_locked: bool,
}

/// A signature over the nonce and the certificates to check it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    /// DER certificates: the card's authentication certificate, then the CA certificates found on
    /// the card.
    pub certificate_chain: Vec<Vec<u8>>,
    /// The signature (PKCS#1 v1.5 for RSA, `r‖s` for ECDSA).
    pub signature: Vec<u8>,
    /// `rsa` or `ec`.
    pub key_type: &'static str,
    /// The label of the certificate used.
    pub label: String,
}

impl CardIdentity {
    /// The `identity.card` body for `call_id` (standard base64).
    pub fn to_request(&self, call_id: &str) -> IdentityCard {
        let b64 = base64::engine::general_purpose::STANDARD;
        IdentityCard {
            call_id: call_id.to_owned(),
            certificate_chain: self
                .certificate_chain
                .iter()
                .map(|der| b64.encode(der))
                .collect(),
            signature: b64.encode(&self.signature),
        }
    }
}

/// A PKCS#11 module (the card reader's middleware), loaded and initialised on first use.
pub struct CardReader {
    module: PathBuf,
    context: Mutex<Option<Pkcs11>>,
    busy: Mutex<()>,
}

impl std::fmt::Debug for CardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardReader")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl CardReader {
    /// A reader through the PKCS#11 module at `module` (nothing is loaded yet).
    pub fn new(module: &Path) -> Self {
        CardReader {
            module: module.to_owned(),
            context: Mutex::new(None),
            busy: Mutex::new(()),
        }
    }

    /// The module path.
    pub fn module(&self) -> &Path {
        &self.module
    }

    fn context(&self) -> Result<Pkcs11, CardError> {
        let mut slot = self.context.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(context) = slot.as_ref() {
            return Ok(context.clone());
        }
        let context = Pkcs11::new(&self.module).map_err(|e| {
            CardError::Card(format!(
                "cannot load the PKCS#11 module {}: {e}",
                self.module.display()
            ))
        })?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(CardError::Card(format!(
                    "cannot initialise the PKCS#11 module {}: {e}",
                    self.module.display()
                )))
            }
        }
        *slot = Some(context.clone());
        Ok(context)
    }

    /// The first slot holding an initialised token, or [`CardError::NoCard`].
    pub fn probe(&self) -> Result<CardProbe, CardError> {
        let context = self.context()?;
        let slots = context.get_slots_with_token().map_err(card_error)?;
        for slot in slots {
            let Ok(info) = context.get_token_info(slot) else {
                continue;
            };
            if !info.token_initialized() {
                continue;
            }
            return Ok(CardProbe {
                slot,
                label: info.label().trim().to_owned(),
                protected_auth_path: info.protected_authentication_path(),
                pin_locked: info.user_pin_locked(),
            });
        }
        Err(CardError::NoCard)
    }

    /// Logs in on the probed card (with `pin`, or on the PIN pad when `pin` is `None`), signs the
    /// UTF-8 bytes of `nonce` with the authentication key, logs out and closes the session. The PIN
    /// is dropped (zeroized) as soon as the login returns.
    pub fn sign(
        &self,
        probe: &CardProbe,
        pin: Option<AuthPin>,
        nonce: &str,
    ) -> Result<CardIdentity, CardError> {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let context = self.context()?;
        if context
            .get_token_info(probe.slot)
            .map_err(card_error)?
            .user_pin_locked()
        {
            return Err(CardError::PinLocked);
        }
        let session = context.open_ro_session(probe.slot).map_err(card_error)?;
        let login = session.login(UserType::User, pin.as_ref());
        drop(pin);
        match login {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                let info = context.get_token_info(probe.slot).ok();
                if info.as_ref().is_some_and(|i| i.user_pin_locked()) {
                    return Err(CardError::PinLocked);
                }
                let tries_left = info.and_then(|i| i.user_pin_final_try().then_some(1));
                return Err(CardError::PinIncorrect { tries_left });
            }
            Err(e) => return Err(card_error(e)),
        }
        let result = sign_logged_in(&session, nonce);
        if let Err(e) = session.logout() {
            tracing::debug!(error = %e, "card: logout failed");
        }
        drop(session);
        result
    }

    /// [`CardReader::probe`] then [`CardReader::sign`], with `pin` (`None` only for a reader with a
    /// PIN pad).
    pub fn read_and_sign(&self, nonce: &str, pin: Option<&str>) -> Result<CardIdentity, CardError> {
        let probe = self.probe()?;
        let pin = match (pin, probe.protected_auth_path) {
            (Some(pin), _) => Some(AuthPin::from(pin)),
            (None, true) => None,
            (None, false) => return Err(CardError::Timeout),
        };
        self.sign(&probe, pin, nonce)
    }
}

/// A certificate object on the card.
struct CardCert {
    id: Vec<u8>,
    label: String,
    der: Vec<u8>,
}

/// A private key object on the card.
struct CardKey {
    handle: ObjectHandle,
    id: Vec<u8>,
    label: String,
    key_type: KeyType,
}

fn find_certificates(session: &Session) -> Result<Vec<CardCert>, CardError> {
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
        .map_err(card_error)?;
    let mut certs = Vec::new();
    for handle in handles {
        let attributes = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Value,
                    AttributeType::Id,
                    AttributeType::Label,
                ],
            )
            .map_err(card_error)?;
        let mut cert = CardCert {
            id: Vec::new(),
            label: String::new(),
            der: Vec::new(),
        };
        for attribute in attributes {
            match attribute {
                Attribute::Value(der) => cert.der = der,
                Attribute::Id(id) => cert.id = id,
                Attribute::Label(label) => cert.label = String::from_utf8_lossy(&label).into(),
                _ => {}
            }
        }
        if !cert.der.is_empty() {
            certs.push(cert);
        }
    }
    Ok(certs)
}

fn find_private_keys(session: &Session) -> Result<Vec<CardKey>, CardError> {
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(card_error)?;
    let mut keys = Vec::new();
    for handle in handles {
        let attributes = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::KeyType,
                ],
            )
            .map_err(card_error)?;
        let mut id = Vec::new();
        let mut label = String::new();
        let mut key_type = None;
        for attribute in attributes {
            match attribute {
                Attribute::Id(value) => id = value,
                Attribute::Label(value) => label = String::from_utf8_lossy(&value).into(),
                Attribute::KeyType(value) => key_type = Some(value),
                _ => {}
            }
        }
        if let Some(key_type) = key_type {
            keys.push(CardKey {
                handle,
                id,
                label,
                key_type,
            });
        }
    }
    Ok(keys)
}

/// Whether a DER certificate is a CA certificate (basic constraints `cA`).
pub fn is_ca_certificate(der: &[u8]) -> bool {
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return false;
    };
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|ext| ext.extn_id == BasicConstraints::OID)
        .any(|ext| BasicConstraints::from_der(ext.extn_value.as_bytes()).is_ok_and(|bc| bc.ca))
}

/// Picks the authentication certificate and its key: the first certificate that has a private key
/// with the same `CKA_ID` (else the same label).
fn pick_pair<'a>(
    certs: &'a [CardCert],
    keys: &'a [CardKey],
) -> Option<(&'a CardCert, &'a CardKey)> {
    let by_id = certs.iter().find_map(|cert| {
        keys.iter()
            .find(|key| !cert.id.is_empty() && key.id == cert.id)
            .map(|key| (cert, key))
    });
    by_id.or_else(|| {
        certs.iter().find_map(|cert| {
            keys.iter()
                .find(|key| !cert.label.is_empty() && key.label == cert.label)
                .map(|key| (cert, key))
        })
    })
}

fn sign_logged_in(session: &Session, nonce: &str) -> Result<CardIdentity, CardError> {
    let certs = find_certificates(session)?;
    let keys = find_private_keys(session)?;
    let (cert, key) = pick_pair(&certs, &keys).ok_or_else(|| {
        CardError::Card(format!(
            "no certificate with a matching private key ({} certificates, {} keys)",
            certs.len(),
            keys.len()
        ))
    })?;
    let digest = Sha256::digest(nonce.as_bytes());
    let (signature, key_type) = if key.key_type == KeyType::RSA {
        let signed = match session.sign(&Mechanism::Sha256RsaPkcs, key.handle, nonce.as_bytes()) {
            Err(P11Error::Pkcs11(RvError::MechanismInvalid, _)) => {
                let mut digest_info = SHA256_DIGEST_INFO.to_vec();
                digest_info.extend_from_slice(&digest);
                session.sign(&Mechanism::RsaPkcs, key.handle, &digest_info)
            }
            other => other,
        };
        (signed.map_err(card_error)?, "rsa")
    } else if key.key_type == KeyType::EC {
        let signed = session
            .sign(&Mechanism::Ecdsa, key.handle, &digest)
            .map_err(card_error)?;
        (signed, "ec")
    } else {
        return Err(CardError::Card(format!(
            "unsupported key type {} for the authentication key",
            key.key_type
        )));
    };
    let mut chain = vec![cert.der.clone()];
    chain.extend(
        certs
            .iter()
            .filter(|other| other.der != cert.der && is_ca_certificate(&other.der))
            .map(|other| other.der.clone()),
    );
    Ok(CardIdentity {
        certificate_chain: chain,
        signature,
        key_type,
        label: cert.label.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_match_the_protocol() {
        assert_eq!(CardError::NoCard.reason(), "no_card");
        let wrong = CardError::PinIncorrect {
            tries_left: Some(1),
        };
        let body = wrong.to_request("c1");
        assert_eq!(body.reason, "pin_incorrect");
        assert_eq!(body.tries_left, Some(1));
        assert_eq!(CardError::PinLocked.to_request("c").tries_left, None);
        assert_eq!(CardError::Card("x".into()).reason(), "card_error");
    }
}
