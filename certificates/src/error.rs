//! The crate's single error type.
//!
//! Every fallible function in this crate returns [`CertError`]. Bad input of any kind (a malformed fiscal
//! code, a stamp that does not decode, a tampered audit log) is an error value, never a panic, because the
//! server calls this library with untrusted input.

use std::path::PathBuf;

/// Everything that can go wrong while reading the registry, issuing, stamping, verifying or auditing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The fiscal code is not a well-formed Italian codice fiscale (length, alphabet or check character).
    #[error("codice fiscale non valido: {0}")]
    InvalidFiscalCode(String),
    /// The registry has no person with this fiscal code.
    #[error("nessuna persona con codice fiscale {0} nell'anagrafe")]
    PersonNotFound(String),
    /// The certificate kind code is not one of the known kinds.
    #[error("tipo di certificato sconosciuto: {0}")]
    UnknownKind(String),
    /// The exemption code is not in the exemption table.
    #[error("esenzione dal bollo sconosciuta: {0}")]
    UnknownExemption(String),
    /// The request is missing something the kind needs (an `as_of` date, a reason, contestuale parts).
    #[error("richiesta incompleta: {0}")]
    MissingInput(String),
    /// The registry's data does not allow this certificate (e.g. stato libero for a married person).
    #[error("certificato non rilasciabile: {0}")]
    NotIssuable(String),
    /// The requester may not obtain this certificate through this channel.
    #[error("richiesta non consentita: {0}")]
    NotAllowed(String),
    /// The registry backend failed or answered something we cannot read.
    #[error("errore dell'anagrafe: {0}")]
    Registry(String),
    /// A data file (registry, exemption table, configuration) does not parse.
    #[error("dati non validi in {path}: {reason}")]
    InvalidData {
        /// The file or source that was being read.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The signer key or certificate cannot be loaded or does not match.
    #[error("chiave o certificato del firmatario non validi: {0}")]
    SignerKey(String),
    /// The stamp text or bytes do not decode (prefix, Base45, zlib, COSE or CBOR).
    #[error("contrassegno non leggibile: {0}")]
    StampFormat(String),
    /// The stamp's key id is not in the trust list.
    #[error("firmatario non presente nell'elenco di fiducia (kid {0})")]
    UntrustedSigner(String),
    /// The COSE signature does not verify against the trusted key.
    #[error("firma del contrassegno non valida")]
    BadSignature,
    /// The signer's certificate was not valid when the stamp was signed.
    #[error("il certificato del firmatario non era valido alla data di emissione")]
    SignerNotValid,
    /// The certificate's validity period has ended.
    #[error("certificato scaduto il {0}")]
    Expired(String),
    /// No stamp could be found in the given file.
    #[error("nessun contrassegno trovato: {0}")]
    NoStampFound(String),
    /// PDF rendering failed (font subsetting, layout).
    #[error("errore nella generazione del PDF: {0}")]
    Pdf(String),
    /// A PDF's electronic seal is missing, broken or does not match its certificate.
    #[error("sigillo elettronico non valido: {0}")]
    SealInvalid(String),
    /// The timestamp authority could not be reached, refused, or answered a time stamp that does
    /// not check (PAdES B-T): the certificate is not issued, unless `tsa_optional` is set.
    #[error("marca temporale non disponibile: {0}")]
    Timestamp(String),
    /// The audit log's hash chain is broken: a record was edited, deleted or reordered.
    #[error("registro di audit alterato alla riga {line}: {reason}")]
    AuditTampered {
        /// The 1-based line where the chain first breaks.
        line: usize,
        /// What was found there.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("errore di I/O su {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl CertError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CertError::Io {
            path: path.into(),
            source,
        }
    }
}
