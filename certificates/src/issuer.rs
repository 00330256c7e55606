//! Issuing: the one entry point the server and the command line call.
//!
//! [`Issuer::open`] wires the configured registry, signer, exemption table and audit log under a data
//! directory. [`Issuer::issue`] checks who may ask, reads the registry, builds the content, signs the
//! stamp, renders the PDF and writes the audit record, in that order: a certificate that could not be
//! audited is not returned.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::audit::{Actor, AuditEvent, AuditLog};
use crate::dates::{add_months, iso, italian};
use crate::error::CertError;
use crate::exemptions::{ExemptionTable, CIVIL_STATUS_EXEMPTION};
use crate::fiscal_code::FiscalCode;
use crate::kinds::{build_content, CertificateKind, ContentOptions, ContestualePart};
use crate::pdf::{render, PageText};
use crate::registry::demo::DemoRegistry;
use crate::registry::http::HttpRegistry;
use crate::registry::{family_on, Comune, Registry};
use crate::signer::{Signer, SignerConfig, TrustList, TrustedSigner};
use crate::stamp::{self, StampClaims, VerifiedStamp};
use crate::wording::{self, MANDATORY_WORDING};

/// Largest QR version for the full payload. Version 25 at ECC M is 117 modules: at 45 mm that is 0.35 mm a
/// module, about 4 pixels at 300 dpi, which office scanners and phones still read. Above it the stamp
/// falls back to the reduced payload (members left out, their count and the text digest kept).
pub const MAX_FULL_QR_VERSION: i16 = 25;

/// Diritti di segreteria, in euro cents (L. 604/1962 Tab. D).
pub const FEE_WITH_BOLLO_CENTS: u32 = 52;
/// Diritti di segreteria for an exempt certificate, in cents.
pub const FEE_EXEMPT_CENTS: u32 = 26;
/// Imposta di bollo per sheet, in cents (DPR 642/1972, Tariffa all. A art. 4).
pub const BOLLO_CENTS: u32 = 1600;

mod canonical;
mod fees;

use canonical::claim_of;
pub use canonical::{canonical_text, canonical_text_of, Canonical};
pub use fees::CivilStatusDiritti;

/// Which registry backend to use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistryConfig {
    /// The demo registry shipped in the crate.
    #[default]
    Demo,
    /// A JSON file in the demo registry format.
    File {
        /// Path of the JSON file.
        path: PathBuf,
    },
    /// An existing front-office system over HTTP (`docs/registry-http.md`).
    Http {
        /// Base URL, e.g. `https://frontoffice.example/anagrafe/v1`.
        base_url: String,
        /// Per-request timeout in milliseconds.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// Configuration of the certificates service (the `[certificates]` section of the server's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    /// The registry backend.
    pub registry: RegistryConfig,
    /// The signer key and certificate; none means the development key in the data directory.
    pub signer: SignerConfig,
    /// The public URL of the verification page, printed beside the stamp.
    pub verify_url: String,
    /// The issuing office, printed in the header and signature block.
    pub office: String,
    /// The exemption table; default `<data dir>/exemptions.json`, else the shipped table.
    pub exemptions: Option<PathBuf>,
    /// The audit log; default `<data dir>/audit.log`.
    pub audit_log: Option<PathBuf>,
    /// The printed name of the officer responsible for certificates issued from the command line
    /// (in a call, the issuing operator's full name is printed instead).
    pub officer: Option<String>,
    /// The diritti di segreteria of the civil-status certificates (`[certificates.civil_status_diritti]`).
    #[serde(default)]
    pub civil_status_diritti: CivilStatusDiritti,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            registry: RegistryConfig::Demo,
            signer: SignerConfig::default(),
            verify_url: "https://sportello.comune.parma.it/verify/".into(),
            office: "Servizi Demografici - Sportello virtuale".into(),
            exemptions: None,
            audit_log: None,
            officer: None,
            civil_status_diritti: CivilStatusDiritti::default(),
        }
    }
}

/// Through which channel a request arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An operator serving a kiosk call.
    Kiosk,
    /// A citizen (or intermediary) on the web.
    Web,
    /// The command line, for training and tests.
    Cli,
}

/// Who asks, and how they were identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The channel.
    pub channel: Channel,
    /// Who acts (operator and kiosk, web user, or CLI).
    pub actor: Actor,
    /// The identified citizen, required on the kiosk and web channels.
    pub citizen: Option<FiscalCode>,
    /// How the citizen was identified ("cie", "cns", "pec", "documento cartaceo", "spid"…).
    pub identification: Option<String>,
    /// The call id, for kiosk requests.
    pub call_id: Option<String>,
}

impl Requester {
    /// A command-line requester (training and tests); `user` names who ran it.
    pub fn cli(user: &str) -> Self {
        Requester {
            channel: Channel::Cli,
            actor: Actor {
                cli: Some(user.into()),
                ..Actor::default()
            },
            citizen: None,
            identification: None,
            call_id: None,
        }
    }
}

/// A request to issue one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// The kind.
    pub kind: CertificateKind,
    /// The person the certificate is about.
    pub fiscal_code: FiscalCode,
    /// The as-of date for "alla data" kinds.
    pub as_of: Option<Date>,
    /// Parts of a contestuale certificate (empty: all that apply).
    pub parts: Vec<ContestualePart>,
    /// Exemption code from the table; `None` means the bollo is due (registry kinds).
    pub exemption: Option<String>,
    /// The stated reason: required for "alla data" kinds and for people outside the citizen's family.
    pub reason: Option<String>,
    /// The marca da bollo paid for this certificate (its identifier and date), when the bollo is due
    /// and was paid before issuing: the PDF then says "imposta di bollo assolta" with the identifier
    /// instead of leaving an empty space. Whoever issues checks that the identifier is used once
    /// across all channels (the server's store) before calling [`Issuer::issue`].
    pub marca: Option<Marca>,
    /// The printed name of the person responsible for the certificate (art. 3 c. 2 D.Lgs. 39/1993):
    /// the issuing operator in a call, `[certificates] officer` on the command line.
    pub officer_name: Option<String>,
    /// Who asks.
    pub requester: Requester,
}

/// A marca da bollo: the 14-digit identifier printed on it and the date it was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marca {
    /// The 14-digit identifier (identificativo) printed on the marca.
    pub id: String,
    /// The date printed on the marca.
    pub date: Date,
}

impl Marca {
    /// A marca from its identifier (exactly 14 digits, spaces allowed between groups) and date.
    pub fn new(id: &str, date: Date) -> Result<Marca, CertError> {
        let id: String = id.chars().filter(|c| !c.is_whitespace()).collect();
        if id.len() != 14 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CertError::MissingInput(
                "l'identificativo della marca da bollo è di 14 cifre".into(),
            ));
        }
        Ok(Marca { id, date })
    }
}

impl IssueRequest {
    /// A command-line request, as `sportello certificate issue` builds it.
    pub fn cli(
        kind: CertificateKind,
        fiscal_code: FiscalCode,
        as_of: Option<Date>,
        exemption: Option<String>,
    ) -> Self {
        IssueRequest {
            kind,
            fiscal_code,
            as_of,
            parts: vec![],
            exemption,
            reason: None,
            marca: None,
            officer_name: None,
            requester: Requester::cli("sportello-cli"),
        }
    }
}

/// Fees recorded for an issued certificate (collection is out of scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    /// Diritti di segreteria, cents.
    pub diritti_cents: u32,
    /// Imposta di bollo due (paid with marche on the paper), cents; 0 when exempt.
    pub bollo_cents: u32,
    /// The exemption code, when exempt.
    pub exemption: Option<String>,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedDocument {
    /// Document id, printed and signed.
    pub document_id: String,
    /// Kind.
    pub kind: CertificateKind,
    /// The subject's fiscal code.
    pub fiscal_code: String,
    /// The PDF/A-2b bytes.
    #[serde(skip)]
    pub pdf: Vec<u8>,
    /// The stamp text (`IT1:…`).
    pub stamp: String,
    /// Number of pages.
    pub pages: u32,
    /// QR version of the printed stamp.
    pub qr_version: i16,
    /// Whether the stamp uses the reduced payload.
    pub reduced_stamp: bool,
    /// Issue instant, Unix seconds.
    pub issued_at: i64,
    /// Last day of validity, `None` for certificates without expiry.
    pub valid_until: Option<String>,
    /// SHA-256 of the canonical text, hex (signed in the stamp).
    pub text_sha256: String,
    /// SHA-256 of the PDF, hex (recorded in the audit log).
    pub pdf_sha256: String,
    /// Fees.
    pub fees: Fees,
    /// Signed with the development key.
    pub development: bool,
    /// The audit record's sequence number.
    pub audit_seq: u64,
}

/// Italian civil time (Europe/Rome: CET, or CEST in summer) from the bundled time-zone database.
pub fn italian_time(now: OffsetDateTime) -> OffsetDateTime {
    let rome = jiff::tz::TimeZone::get("Europe/Rome").unwrap_or(jiff::tz::TimeZone::UTC);
    let seconds = jiff::Timestamp::from_second(now.unix_timestamp())
        .map(|ts| rome.to_offset(ts).seconds())
        .unwrap_or(3600);
    let offset = UtcOffset::from_whole_seconds(seconds).unwrap_or(UtcOffset::UTC);
    now.to_offset(offset)
}

/// The issuing service.
pub struct Issuer {
    registry: Arc<dyn Registry>,
    signer: Signer,
    extra_trusted: Vec<TrustedSigner>,
    exemptions: ExemptionTable,
    audit: AuditLog,
    comune: Comune,
    config: IssuerConfig,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("comune", &self.comune)
            .field("signer", &self.signer)
            .field("audit", &self.audit.path())
            .finish()
    }
}

impl Issuer {
    /// Opens the service under `data_dir` (created if missing): registry, signer (generating the
    /// development key on first start), exemption table and audit log.
    pub fn open(
        data_dir: &Path,
        config: &IssuerConfig,
        now: OffsetDateTime,
    ) -> Result<Self, CertError> {
        std::fs::create_dir_all(data_dir).map_err(|e| CertError::io(data_dir, e))?;
        let registry: Arc<dyn Registry> = match &config.registry {
            RegistryConfig::Demo => Arc::new(DemoRegistry::embedded()?),
            RegistryConfig::File { path } => Arc::new(DemoRegistry::from_file(path)?),
            RegistryConfig::Http {
                base_url,
                timeout_ms,
            } => Arc::new(HttpRegistry::new(
                base_url,
                Duration::from_millis(*timeout_ms),
            )?),
        };
        let signer = Signer::from_config(&config.signer, data_dir, now)?;
        let mut extra_trusted = Vec::new();
        for path in &config.signer.trusted_certificates {
            let pem = std::fs::read_to_string(path).map_err(|e| CertError::io(path, e))?;
            extra_trusted.push(TrustedSigner::from_certificate_pem(&pem)?);
        }
        let exemptions_path = config
            .exemptions
            .clone()
            .unwrap_or_else(|| data_dir.join("exemptions.json"));
        let exemptions = ExemptionTable::load_or_default(&exemptions_path)?;
        let audit = AuditLog::open(
            &config
                .audit_log
                .clone()
                .unwrap_or_else(|| data_dir.join("audit.log")),
        )?;
        Self::from_parts(
            registry,
            signer,
            exemptions,
            audit,
            config.clone(),
            extra_trusted,
        )
    }

    /// Builds the service from ready parts (tests, or a server that wires its own registry).
    pub fn from_parts(
        registry: Arc<dyn Registry>,
        signer: Signer,
        exemptions: ExemptionTable,
        audit: AuditLog,
        config: IssuerConfig,
        extra_trusted: Vec<TrustedSigner>,
    ) -> Result<Self, CertError> {
        let comune = registry.comune()?;
        Ok(Issuer {
            registry,
            signer,
            extra_trusted,
            exemptions,
            audit,
            comune,
            config,
        })
    }

    /// The registry (for `sportello registry list`: `issuer.registry().list()`).
    pub fn registry(&self) -> &dyn Registry {
        self.registry.as_ref()
    }

    /// The exemption table (for menus).
    pub fn exemptions(&self) -> &ExemptionTable {
        &self.exemptions
    }

    /// The audit log (to record identification, print and other events).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The comune.
    pub fn comune(&self) -> &Comune {
        &self.comune
    }

    /// The trust list to serve at `/.well-known/sportello/trust-list.json`.
    pub fn trust_list(&self) -> TrustList {
        let mut signers = vec![self.signer.trust_entry().clone()];
        signers.extend(self.extra_trusted.iter().cloned());
        TrustList::new(
            &format!("Comune di {}", self.comune.name),
            &self.comune.istat_code,
            signers,
        )
    }

    /// Verifies stamp text against this issuer's trust list (for `POST /api/v1/verify`).
    pub fn verify_text(
        &self,
        stamp: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedStamp, CertError> {
        stamp::verify_text(stamp, &self.trust_list(), now)
    }

    /// Checks that the requester may obtain this certificate and returns the reason to record.
    fn authorize(&self, request: &IssueRequest, today: Date) -> Result<Option<String>, CertError> {
        let reason = request
            .reason
            .as_ref()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        let r = &request.requester;
        // Art. 35, comma 4, DPR 223/1989: past situations only on a reasoned request, on every channel.
        if request.kind.is_past_situation() && reason.is_none() {
            return Err(CertError::MissingInput(
                "i certificati di situazioni pregresse (alla data, alla data del decesso) richiedono il motivo della richiesta (art. 35, comma 4, DPR 223/1989)".into(),
            ));
        }
        if r.channel == Channel::Cli {
            // The command line exists for training and tests; its requests are audited with this reason.
            return Ok(Some(reason.unwrap_or_else(|| {
                "emissione da riga di comando (formazione e prove)".into()
            })));
        }
        let citizen = r.citizen.as_ref().ok_or_else(|| {
            CertError::NotAllowed("il richiedente non è stato identificato".into())
        })?;
        // ANPR issues the contract of cohabitation only to its two parties.
        if request.kind == CertificateKind::ContrattoConvivenza && citizen != &request.fiscal_code {
            let subject = self.registry.person(&request.fiscal_code)?;
            let party = subject
                .cohabitation_contracts
                .last()
                .and_then(|c| c.partner_fiscal_code.as_ref())
                == Some(citizen);
            if !party {
                return Err(CertError::NotAllowed(
                    "il certificato di contratto di convivenza si rilascia solo alle parti del contratto".into(),
                ));
            }
        }
        let in_family = citizen == &request.fiscal_code || {
            let me = self.registry.person(citizen)?;
            match me.residence_on(today) {
                // The members of a convivenza anagrafica are not one family (art. 5 DPR 223/1989).
                Some(p) if p.convivenza.is_some() => false,
                Some(p) => family_on(
                    &self.registry.family_members(&p.family_id)?,
                    &p.family_id,
                    today,
                    false,
                )
                .iter()
                .any(|m| m.person.fiscal_code == request.fiscal_code),
                None => false,
            }
        };
        if !in_family {
            if r.channel == Channel::Web {
                return Err(CertError::NotAllowed(
                    "sul web si possono richiedere solo certificati propri o dei componenti della propria famiglia anagrafica".into(),
                ));
            }
            if reason.is_none() {
                return Err(CertError::MissingInput(
                    "per una persona estranea alla famiglia anagrafica l'operatore deve indicare il motivo".into(),
                ));
            }
        }
        Ok(reason)
    }

    /// Issues a certificate: authorization, registry read, content, stamp, PDF and audit record.
    ///
    /// This is CPU and (for the HTTP registry) network work: async callers run it in `spawn_blocking`.
    pub fn issue(
        &self,
        request: &IssueRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedDocument, CertError> {
        self.produce(request, now, false)
    }

    /// The same PDF [`Issuer::issue`] would make for `request`, watermarked ANTEPRIMA / PREVIEW,
    /// for the operator to check before issuing: the same checks of who may ask, but no number
    /// (the document id is `ANTEPRIMA`), no stamp, no seal, and nothing in the audit log. The
    /// returned document's `stamp` is empty and its `audit_seq` 0.
    pub fn preview(
        &self,
        request: &IssueRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedDocument, CertError> {
        self.produce(request, now, true)
    }

    fn produce(
        &self,
        request: &IssueRequest,
        now: OffsetDateTime,
        preview: bool,
    ) -> Result<IssuedDocument, CertError> {
        let local = italian_time(now);
        let today = local.date();
        let reason = self.authorize(request, today)?;
        let person = self.registry.person(&request.fiscal_code)?;
        let options = ContentOptions {
            as_of: request.as_of,
            parts: request.parts.clone(),
        };
        let mut content = build_content(
            request.kind,
            &person,
            self.registry.as_ref(),
            &options,
            today,
        )?;

        let civil = request.kind.is_civil_status();
        // The declared use: a bollo exemption, or a use with the bollo due that changes the wording.
        let use_row = match (&request.exemption, civil) {
            (Some(code), false) => Some(self.exemptions.get(code)?),
            _ => None,
        };
        if let Some(e) = use_row {
            if e.office_only && request.requester.channel == Channel::Web {
                return Err(CertError::NotAllowed(format!(
                    "l'uso \"{}\" ({}) non è disponibile sul web",
                    e.use_, e.legal_basis
                )));
            }
        }
        let bollo_exempt = civil || use_row.is_some_and(|e| e.bollo_exempt);
        let exemption = if civil {
            Some((
                CIVIL_STATUS_EXEMPTION.0.to_owned(),
                CIVIL_STATUS_EXEMPTION.2.to_owned(),
            ))
        } else {
            use_row
                .filter(|e| e.bollo_exempt)
                .map(|e| (e.code.clone(), e.text.clone()))
        };
        let use_text = use_row.filter(|e| !e.bollo_exempt).map(|e| e.text.clone());
        if let Some(e) = use_row.filter(|e| !e.bollo_exempt) {
            content.fields.push(("uso".into(), e.code.clone()));
        }
        let art40_text = use_row
            .and_then(|e| e.art40)
            .map(|a| a.text())
            .unwrap_or(MANDATORY_WORDING);
        let bollo_paid = match &request.marca {
            Some(_) if bollo_exempt => return Err(CertError::MissingInput(
                "la marca da bollo non va indicata: il certificato è esente dall'imposta di bollo"
                    .into(),
            )),
            Some(m) => {
                content
                    .fields
                    .push(("mb".into(), format!("{} {}", m.id, iso(m.date))));
                Some(wording::bollo_paid(&m.id, &italian(m.date)))
            }
            None => None,
        };
        let valid_until = request.kind.expires().then(|| add_months(today, 6));
        let validity = match valid_until {
            Some(d) => wording::validity_six_months(&italian(d)),
            None => wording::VALIDITY_UNLIMITED.into(),
        };
        let diritti = match self.config.civil_status_diritti.cents(request.kind) {
            Some(cents) => cents,
            None if use_row.is_some_and(|e| e.diritti_exempt) => 0,
            None if bollo_exempt => FEE_EXEMPT_CENTS,
            None => FEE_WITH_BOLLO_CENTS,
        };
        let diritti_text = if diritti == 0 {
            "Diritti di segreteria: esenti".to_owned()
        } else {
            format!(
                "Diritti di segreteria: € {},{:02}",
                diritti / 100,
                diritti % 100
            )
        };
        let fees_text = format!(
            "{diritti_text}{}.",
            if bollo_exempt {
                ""
            } else {
                " - Imposta di bollo: € 16,00 per foglio"
            }
        );
        let officer_name = request
            .officer_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        let signatory = officer_name.map(|name| {
            format!(
                "{}: {name}",
                if civil {
                    wording::SIGNATORY_CIVIL_STATUS
                } else {
                    wording::SIGNATORY_REGISTRY
                }
            )
        });

        let document_id = if preview {
            PREVIEW_ID.to_owned()
        } else {
            new_document_id(&self.comune.istat_code, today)
        };
        let bollo_line = match (&exemption, &bollo_paid) {
            (Some(e), _) => e.1.clone(),
            (None, Some(paid)) => paid.clone(),
            (None, None) => wording::BOLLO_DUE_SHORT.to_owned(),
        };
        let canonical = canonical_text_of(
            &content,
            &document_id,
            &Canonical {
                bollo: &bollo_line,
                use_text: use_text.as_deref(),
                art40: art40_text,
                validity: &validity,
                signatory: signatory.as_deref().unwrap_or(&self.config.office),
            },
        );
        let text_sha256 = hex::encode(Sha256::digest(canonical.as_bytes()));
        let development = self.signer.is_development();
        let mut claims = StampClaims {
            issuer: self.comune.istat_code.clone(),
            issued_at: now.unix_timestamp(),
            expires_at: valid_until
                .and_then(|d| d.next_day())
                .map(|d| d.midnight().assume_offset(local.offset()).unix_timestamp() - 1),
            certificate: claim_of(
                &content,
                &document_id,
                exemption.as_ref().map(|e| e.0.clone()),
                &text_sha256,
                development,
            ),
        };
        // A preview carries no stamp: nothing is signed for it.
        let mut stamp_text = if preview {
            String::new()
        } else {
            stamp::sign(&claims, &self.signer)?
        };
        let version =
            qrcode::QrCode::with_error_correction_level(stamp_text.as_bytes(), qrcode::EcLevel::M)
                .map(|q| match q.version() {
                    qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => v,
                })
                .unwrap_or(i16::MAX);
        if !preview && version > MAX_FULL_QR_VERSION {
            claims.certificate.members.clear();
            claims.certificate.reduced = true;
            stamp_text = stamp::sign(&claims, &self.signer)?;
        }

        let officer = if civil {
            wording::OFFICER_CIVIL_STATUS
        } else {
            wording::OFFICER_REGISTRY
        };
        let page = PageText {
            comune: self.comune.name.clone(),
            province: self.comune.province.clone(),
            province_line: self.comune.province_line(),
            istat_code: self.comune.istat_code.clone(),
            office: self.config.office.clone(),
            title: request.kind.title().into(),
            legal_basis: request.kind.legal_basis().into(),
            officer: officer.into(),
            subject_lines: content.subject_lines(),
            body: content.body.clone(),
            exemption_text: exemption.as_ref().map(|e| e.1.clone()),
            bollo_paid: bollo_paid.clone(),
            use_text: use_text.clone(),
            art40_text: art40_text.into(),
            signatory: signatory.clone(),
            validity,
            fees: fees_text,
            place_date: format!("{}, {}", self.comune.name, italian(today)),
            document_id: document_id.clone(),
            stamp: stamp_text.clone(),
            verify_url: self.config.verify_url.clone(),
            development,
            preview,
            issued_at: now.to_offset(UtcOffset::UTC),
        };
        let rendered = render(&page)?;
        if preview {
            let pdf_sha256 = hex::encode(Sha256::digest(&rendered.bytes));
            return Ok(IssuedDocument {
                document_id,
                kind: request.kind,
                fiscal_code: request.fiscal_code.to_string(),
                pdf: rendered.bytes,
                stamp: String::new(),
                pages: rendered.pages,
                qr_version: 0,
                reduced_stamp: false,
                issued_at: now.unix_timestamp(),
                valid_until: valid_until.map(iso),
                text_sha256,
                pdf_sha256,
                fees: Fees {
                    diritti_cents: diritti,
                    bollo_cents: 0,
                    exemption: exemption.as_ref().map(|e| e.0.clone()),
                },
                development,
                audit_seq: 0,
            });
        }
        // The digital original carries the comune's electronic seal (PAdES B-B), made with the
        // stamp's key; the paper copy carries the stamp (Circ. AgID 62/2013).
        let sealed = crate::seal::seal_pdf(
            &rendered.bytes,
            &self.signer,
            now,
            &format!("Comune di {}", self.comune.name),
            &format!("Sigillo elettronico del certificato n. {document_id}"),
        )?;
        let pdf_sha256 = hex::encode(Sha256::digest(&sealed));
        let sheets = rendered.pages.div_ceil(4).max(1);
        let fees = Fees {
            diritti_cents: diritti,
            bollo_cents: if exemption.is_some() {
                0
            } else {
                BOLLO_CENTS * sheets
            },
            exemption: exemption.as_ref().map(|e| e.0.clone()),
        };

        let r = &request.requester;
        let mut details = vec![
            ("diritti_cents".to_owned(), fees.diritti_cents.to_string()),
            ("bollo_cents".to_owned(), fees.bollo_cents.to_string()),
            ("pages".to_owned(), rendered.pages.to_string()),
            (
                "channel".to_owned(),
                format!("{:?}", r.channel).to_lowercase(),
            ),
        ];
        if let Some(e) = &fees.exemption {
            details.push(("exemption".into(), e.clone()));
        }
        if let Some(e) = use_row.filter(|e| !e.bollo_exempt) {
            details.push(("use".into(), e.code.clone()));
        }
        if let Some(m) = &request.marca {
            details.push(("marca_id".into(), m.id.clone()));
            details.push(("marca_date".into(), iso(m.date)));
        }
        if let Some(name) = officer_name {
            details.push(("officer".into(), name.to_owned()));
        }
        if let Some(d) = request.as_of {
            details.push(("as_of".into(), iso(d)));
        }
        if let Some(c) = &r.citizen {
            details.push(("requested_by".into(), c.to_string()));
        }
        let record = self.audit.append(
            AuditEvent {
                action: "certificate.issued".into(),
                actor: r.actor.clone(),
                subject: Some(request.fiscal_code.to_string()),
                identification: r.identification.clone(),
                call_id: r.call_id.clone(),
                kind: Some(request.kind.code().into()),
                document_id: Some(document_id.clone()),
                digest: Some(pdf_sha256.clone()),
                reason,
                details,
            },
            now,
        )?;

        Ok(IssuedDocument {
            document_id,
            kind: request.kind,
            fiscal_code: request.fiscal_code.to_string(),
            pdf: sealed,
            stamp: stamp_text,
            pages: rendered.pages,
            qr_version: rendered.qr_version,
            reduced_stamp: claims.certificate.reduced,
            issued_at: now.unix_timestamp(),
            valid_until: valid_until.map(iso),
            text_sha256,
            pdf_sha256,
            fees,
            development,
            audit_seq: record.seq,
        })
    }
}

/// The document id printed on a preview, which has no number.
pub const PREVIEW_ID: &str = "ANTEPRIMA";

/// A document id: ISTAT code, issue date and 8 random base-32 characters, e.g. `034027-20261127-7K3M9QX2`.
fn new_document_id(istat: &str, today: Date) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect();
    format!(
        "{istat}-{:04}{:02}{:02}-{suffix}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

#[cfg(test)]
mod italian_time_tests {
    use super::italian_time;
    use time::macros::datetime;

    #[test]
    fn cet_in_winter_cest_in_summer() {
        let winter = italian_time(datetime!(2026-01-15 23:30 UTC));
        assert_eq!((winter.day(), winter.hour()), (16, 0));
        let summer = italian_time(datetime!(2026-07-15 22:30 UTC));
        assert_eq!((summer.day(), summer.hour()), (16, 0));
        // The switch happens at 01:00 UTC on the last Sunday of March.
        assert_eq!(italian_time(datetime!(2026-03-29 00:59 UTC)).hour(), 1);
        assert_eq!(italian_time(datetime!(2026-03-29 01:00 UTC)).hour(), 3);
    }
}
