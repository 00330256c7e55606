//! # Sportello certificates
//!
//! Everything needed to issue an Italian registry (anagrafe) or civil-status (stato civile) certificate that
//! anyone can verify from the paper, as specified in `docs/design/certificates.md`:
//!
//! - [`registry`]: the registry data model with history, the [`Registry`] adapter trait, the shipped demo
//!   registry and the HTTP adapter to a front-office system;
//! - [`fiscal_code`]: codice fiscale validation, check character and omocodia;
//! - [`kinds`]: the 15 registry kinds and 4 civil-status kinds, read from the registry's history;
//! - [`exemptions`]: the editable table of bollo and diritti exemptions and of uses;
//! - [`wording`]: the fixed Italian wording of the certificates, with its sources;
//! - [`stamp`], [`signer`]: the timbro digitale (CWT claims → COSE_Sign1 ES256 → zlib → Base45 `IT1:` → QR),
//!   the signer key and the trust list;
//! - [`pdf`]: PDF/A-2b rendering with embedded DejaVu fonts;
//! - [`extract`]: finding a stamp in a PDF, an image or text, for offline verification;
//! - [`audit`]: the append-only hash-chained audit log;
//! - [`issuer`]: the service that ties them together.
//!
//! **Architecture invariant:** this crate knows nothing about the wire protocol or HTTP serving. The server
//! calls [`Issuer::issue`], [`Issuer::trust_list`], [`Issuer::verify_text`], [`extract::verify_file`] and
//! [`audit::audit_verify`]; every function takes `now` as an argument, so tests are exact.
//!
//! ```no_run
//! use certificates::{Issuer, IssuerConfig, IssueRequest, CertificateKind, FiscalCode};
//! let now = time::OffsetDateTime::now_utc();
//! let issuer = Issuer::open(std::path::Path::new("sportello-data"), &IssuerConfig::default(), now)?;
//! let cf = FiscalCode::parse("RSSLCU85D12G337O")?;
//! let doc = issuer.issue(&IssueRequest::cli(CertificateKind::Residenza, cf, None, None), now)?;
//! std::fs::write("residenza.pdf", &doc.pdf).unwrap();
//! # Ok::<(), certificates::CertError>(())
//! ```

pub mod audit;
pub mod base45;
pub mod dates;
pub mod error;
pub mod exemptions;
pub mod extract;
pub mod fiscal_code;
mod icc;
pub mod identity;
pub mod issuer;
pub mod kinds;
pub mod pdf;
pub mod pkcs11;
pub mod registry;
pub mod seal;
pub mod signer;
pub mod stamp;
pub mod wording;

pub use audit::{audit_records, audit_verify, Actor, AuditEvent, AuditLog, AuditSummary};
pub use error::CertError;
pub use extract::{extract_stamp, verify_file};
pub use fiscal_code::FiscalCode;
pub use issuer::{
    Channel, CivilStatusDiritti, IssueRequest, IssuedDocument, Issuer, IssuerConfig, Marca,
    RegistryConfig, Requester,
};
pub use kinds::{CertificateKind, ContestualePart};
pub use registry::{PersonSummary, Registry};
pub use signer::{Signer, SignerConfig, TrustList};
pub use stamp::{verify_text, VerifiedStamp};
