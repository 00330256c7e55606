//! Issuing on the web, shared by signed-in citizens and intermediaries: the same certificates,
//! stamp, seal and audit chain as the kiosk (`calls::incall::certificate` does the claiming of the
//! marca, the issuing and the storing for both).
//!
//! - [`issue`]: checks a [`WebRequest`] (kind, fiscal code, [`WebUsage`]), claims its marca once
//!   across every channel, issues with [`certificates::issuer::Channel::Web`], stores the PDF and
//!   its [`DocumentMeta`] (with `channel`, `web_user` or `intermediary`) beside the kiosk's, and
//!   indexes it under the citizen who asked;
//! - [`audit_refusal`]: every refusal goes to the audit log with the channel and the identity;
//! - [`list_for_citizen`]: the certificates a citizen asked for that are still valid;
//! - [`pdf_for`]: a PDF, to the one who asked for it only (audited).
//!
//! The citizens' index is a folder per citizen under `DATA_DIR/web/citizens/<fiscal code>/`
//! holding one empty file per document id: plain files in the data directory every node shares,
//! created whole, so any node lists what any other issued.

use std::path::{Path, PathBuf};

use certificates::audit::{Actor, AuditEvent};
use certificates::issuer::{Channel, Requester};
use certificates::{CertificateKind, FiscalCode, IssueRequest, Marca};
use protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::calls::incall::certificate::{
    append_audit, document_meta, issue_claiming_marca, store_issued, stored_pdf,
};
use crate::calls::incall::DocumentMeta;
use crate::calls::Refusal;
use crate::state::AppState;

/// Who asks on the web.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebActor {
    /// A citizen signed in through OpenID Connect.
    Citizen {
        /// Their fiscal code (from the identity provider's fiscal-number claim).
        fiscal_code: String,
        /// The provider's configured name (`spid`, `cie`), recorded as the identification.
        provider: String,
    },
    /// An intermediary (patronato, bank, employer) with an API key.
    Intermediary {
        /// Its account name.
        name: String,
        /// The stated reason of the request.
        reason: String,
        /// The reference of the citizen's signed delegation.
        consent_ref: String,
    },
}

impl WebActor {
    /// The channel name used for marche and stored documents: `web` or `intermediary`.
    pub fn channel(&self) -> &'static str {
        match self {
            WebActor::Citizen { .. } => "web",
            WebActor::Intermediary { .. } => "intermediary",
        }
    }

    /// Who, as the marca records and the logs name them: the citizen's fiscal code or the
    /// intermediary's name.
    pub fn who(&self) -> &str {
        match self {
            WebActor::Citizen { fiscal_code, .. } => fiscal_code,
            WebActor::Intermediary { name, .. } => name,
        }
    }

    /// The audit log's actor.
    pub fn audit_actor(&self) -> Actor {
        match self {
            WebActor::Citizen { fiscal_code, .. } => Actor {
                web_user: Some(fiscal_code.clone()),
                ..Actor::default()
            },
            WebActor::Intermediary {
                name, consent_ref, ..
            } => Actor {
                intermediary: Some(name.clone()),
                consent_ref: Some(consent_ref.clone()).filter(|c| !c.trim().is_empty()),
                ..Actor::default()
            },
        }
    }

    /// How the requester was identified: the provider for citizens, `delega` (the signed
    /// delegation) for intermediaries.
    fn identification(&self) -> String {
        match self {
            WebActor::Citizen { provider, .. } => provider.clone(),
            WebActor::Intermediary { .. } => "delega".into(),
        }
    }
}

/// A marca da bollo as declared on the web: its 14-digit identifier and issue date (a
/// self-declaration, DPR 445/2000 art. 47).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebMarca {
    /// The 14-digit identifier printed on the marca.
    #[schema(example = "01234567890123")]
    pub id: String,
    /// The date printed on the marca, `YYYY-MM-DD`.
    #[schema(example = "2026-11-30", format = Date)]
    pub issued_at: String,
}

/// The body's `usage`: `{"bollo":true,"marca":{"id","issued_at"}}` (the bollo is due and paid
/// with that marca) or `{"exemption":"b5"}` (a bollo exemption a citizen may use). Civil-status
/// kinds are exempt by law: send `{"bollo":true}` without a marca, or any offered exemption.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WebUsage {
    /// The bollo is due, paid with the declared marca.
    Bollo {
        /// Always `true`.
        bollo: bool,
        /// The marca that pays it (required unless the kind is exempt by law).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        marca: Option<WebMarca>,
    },
    /// A use exempt from the bollo, by its code in the exemption table.
    Exemption {
        /// The exemption's code, e.g. `b5`.
        exemption: String,
    },
}

/// A request after the caller decided who the subject is (the family check is the citizen
/// side's; the issuer checks it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRequest {
    /// The kind code, e.g. `residenza`.
    pub kind: String,
    /// The subject's fiscal code.
    pub fiscal_code: String,
    /// The stated reason (required for past situations; intermediaries always state one).
    pub reason: Option<String>,
    /// Bollo or exemption.
    pub usage: WebUsage,
    /// The date of a past situation (`YYYY-MM-DD`), for the kinds that need one
    /// (`residenza_alla_data`, `stato_famiglia_alla_data`…).
    pub as_of: Option<String>,
}

/// What was decided about the bollo: `{"marca":"01234567890123"}` (paid with that marca) or
/// `{"exemption":"b5"}` (exempt: the use's code, or `l405_1990` for civil-status certificates).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct WebBollo {
    /// The marca da bollo that paid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marca: Option<String>,
    /// The exemption applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption: Option<String>,
}

/// `201` of a web issue: `{"document_id","pdf_url","bollo",…}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct WebIssued {
    /// The document id printed on the certificate and signed in its stamp.
    #[schema(example = "034027-20261203-7K3M9QX2")]
    pub document_id: String,
    /// Where the caller downloads the stamped, sealed PDF (the caller only).
    pub pdf_url: String,
    /// What was decided about the bollo.
    pub bollo: WebBollo,
    /// The kind code.
    pub kind: String,
    /// The subject's fiscal code.
    pub fiscal_code: String,
    /// The last day of validity (`YYYY-MM-DD`), absent for certificates without expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Pages of the PDF.
    pub pages: u32,
    /// The stamp's text (`IT1:…`), as printed in the QR code.
    pub stamp: String,
}

/// One of a citizen's certificates, for `GET /api/v1/web/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct WebDocument {
    /// The document id.
    pub document_id: String,
    /// The kind code.
    pub kind: String,
    /// The subject's fiscal code (the citizen or a member of their family).
    pub fiscal_code: String,
    /// When it was issued, RFC 3339 UTC.
    pub issued_at: String,
    /// The last day of validity, absent for certificates without expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Where to download it again.
    pub pdf_url: String,
    /// What was decided about the bollo.
    pub bollo: WebBollo,
}

/// The download path of a citizen's document (served by the citizen routes through [`pdf_for`]).
pub fn citizen_pdf_url(document_id: &str) -> String {
    format!("/api/v1/web/documents/{document_id}.pdf")
}

/// The download path of an intermediary's document.
pub fn intermediary_pdf_url(document_id: &str) -> String {
    format!("/api/v1/intermediary/documents/{document_id}.pdf")
}

fn pdf_url_for(actor: &WebActor, document_id: &str) -> String {
    match actor {
        WebActor::Citizen { .. } => citizen_pdf_url(document_id),
        WebActor::Intermediary { .. } => intermediary_pdf_url(document_id),
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::Invalid, message)
}

/// The checked request's parts that do not depend on the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The kind.
    pub kind: CertificateKind,
    /// The subject.
    pub fiscal_code: FiscalCode,
    /// The exemption code, when the usage is one.
    pub exemption: Option<String>,
    /// The marca, when the usage pays the bollo with one.
    pub marca: Option<Marca>,
    /// The reason, trimmed, when one was given.
    pub reason: Option<String>,
    /// The date of a past situation.
    pub as_of: Option<time::Date>,
}

/// Checks a request's fields (no I/O): the kind, the fiscal code, the reason where the kind needs
/// one, and the usage against the exemption table's rows a citizen may use (`offered`: the codes
/// of `ExemptionTable::offered(true)`). Everything it refuses is `invalid`, but an exemption kept
/// for the office, which is `forbidden` on the web.
pub fn check(
    req: &WebRequest,
    offered: &[String],
    office_only: &[String],
) -> Result<Checked, Refusal> {
    let kind: CertificateKind = req
        .kind
        .parse()
        .map_err(|e: certificates::CertError| invalid(e.to_string()))?;
    let fiscal_code = FiscalCode::parse(&req.fiscal_code).map_err(|e| invalid(e.to_string()))?;
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let as_of = match req
        .as_of
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        Some(d) => Some(
            certificates::dates::parse_date(d).map_err(|_| invalid("as_of is not YYYY-MM-DD"))?,
        ),
        None => None,
    };
    if kind.needs_as_of() && as_of.is_none() {
        return Err(invalid(
            "questo certificato richiede la data della situazione (as_of) / this certificate needs as_of",
        ));
    }
    if kind.is_past_situation() && reason.is_none() {
        return Err(invalid(
            "questo certificato richiede il motivo della richiesta (art. 35, comma 4, DPR 223/1989) / this certificate needs a reason",
        ));
    }
    let (exemption, marca) = match &req.usage {
        WebUsage::Bollo { bollo: false, .. } => {
            return Err(invalid(
                "usage is {\"bollo\":true,\"marca\":{\"id\",\"issued_at\"}} or {\"exemption\":\"<code>\"}",
            ))
        }
        WebUsage::Bollo {
            bollo: true,
            marca: None,
        } if !kind.is_civil_status() => {
            return Err(invalid(
                "sul web l'imposta di bollo si assolve con una marca da bollo: indicarne identificativo e data / on the web the bollo is paid with a marca: give its id and issued_at",
            ))
        }
        WebUsage::Bollo { marca: None, .. } => (None, None),
        WebUsage::Bollo { marca: Some(m), .. } => {
            let date = certificates::dates::parse_date(&m.issued_at)
                .map_err(|_| invalid("marca.issued_at is not YYYY-MM-DD"))?;
            let marca = Marca::new(&m.id, date).map_err(|e| invalid(e.to_string()))?;
            (None, Some(marca))
        }
        WebUsage::Exemption { exemption } => {
            let code = exemption.trim();
            let is = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case(code));
            if is(office_only) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!("l'esenzione {code} è riservata all'ufficio / exemption {code} is not offered on the web"),
                ));
            }
            if !is(offered) {
                return Err(invalid(format!(
                    "esenzione sconosciuta / unknown exemption: {code}"
                )));
            }
            (Some(code.to_owned()), None)
        }
    };
    Ok(Checked {
        kind,
        fiscal_code,
        exemption,
        marca,
        reason,
        as_of,
    })
}

/// The exemption codes a citizen may use, and those kept for the office.
fn exemption_codes(state: &AppState) -> (Vec<String>, Vec<String>) {
    let table = state.issuer.exemptions();
    let offered: Vec<String> = table.offered(true).map(|e| e.code.clone()).collect();
    let office = table
        .offered(false)
        .filter(|e| !offered.contains(&e.code))
        .map(|e| e.code.clone())
        .collect();
    (offered, office)
}

/// Issues a certificate on the web for `actor`. Refusals are audited (see [`audit_refusal`]);
/// the issue itself is audited by the issuer. A marca already used on any channel is `conflict`.
pub async fn issue(
    state: &AppState,
    actor: &WebActor,
    req: WebRequest,
) -> Result<WebIssued, Refusal> {
    match issue_unaudited(state, actor, &req).await {
        Ok(issued) => Ok(issued),
        Err(refusal) => {
            record_refusal(state, actor, &req, &refusal).await;
            Err(refusal)
        }
    }
}

async fn issue_unaudited(
    state: &AppState,
    actor: &WebActor,
    req: &WebRequest,
) -> Result<WebIssued, Refusal> {
    let (offered, office) = exemption_codes(state);
    let checked = check(req, &offered, &office)?;
    // The citizen the issuer checks the family against: the signed-in one, or for an
    // intermediary the subject whose delegation it holds.
    let citizen = match actor {
        WebActor::Citizen { fiscal_code, .. } => {
            FiscalCode::parse(fiscal_code).map_err(|e| invalid(e.to_string()))?
        }
        WebActor::Intermediary { .. } => checked.fiscal_code.clone(),
    };
    let marca = checked.marca.clone();
    let request = IssueRequest {
        kind: checked.kind,
        fiscal_code: checked.fiscal_code,
        as_of: checked.as_of,
        parts: vec![],
        exemption: checked.exemption,
        reason: checked.reason,
        marca: marca.clone(),
        officer_name: None,
        requester: Requester {
            channel: Channel::Web,
            actor: actor.audit_actor(),
            citizen: Some(citizen),
            identification: Some(actor.identification()),
            call_id: None,
        },
    };
    let document = issue_claiming_marca(state, request, actor.channel(), actor.who()).await?;
    let mut meta = DocumentMeta {
        channel: Some(actor.channel().into()),
        ..DocumentMeta::of(&document, marca.as_ref())
    };
    match actor {
        WebActor::Citizen { fiscal_code, .. } => meta.web_user = Some(fiscal_code.clone()),
        WebActor::Intermediary { name, .. } => meta.intermediary = Some(name.clone()),
    }
    store_issued(state, &document, &meta).await?;
    if let WebActor::Citizen { fiscal_code, .. } = actor {
        let dir = citizen_dir(&state.config.data_dir, fiscal_code);
        let id = document.document_id.clone();
        let indexed = tokio::task::spawn_blocking(move || index_document(dir.as_deref(), &id))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = indexed {
            // The certificate is issued and audited; only the list would miss it.
            tracing::error!(error = %e, document = %document.document_id, "cannot index a web document");
        }
    }
    tracing::info!(
        document = %document.document_id,
        kind = document.kind.code(),
        channel = actor.channel(),
        "certificate issued on the web"
    );
    Ok(WebIssued {
        pdf_url: pdf_url_for(actor, &document.document_id),
        bollo: bollo_of(&meta),
        kind: document.kind.code().into(),
        fiscal_code: document.fiscal_code.clone(),
        valid_until: document.valid_until.clone(),
        pages: document.pages,
        stamp: document.stamp.clone(),
        document_id: document.document_id,
    })
}

fn bollo_of(meta: &DocumentMeta) -> WebBollo {
    WebBollo {
        marca: meta.marca_id.clone(),
        exemption: if meta.marca_id.is_some() {
            None
        } else {
            meta.exemption.clone()
        },
    }
}

/// The audit event of a web refusal: `certificate.refused`, with the channel, the identity, the
/// subject, the kind, the reason and the refusal's code and message.
pub fn refusal_event(actor: &WebActor, req: &WebRequest, refusal: &Refusal) -> AuditEvent {
    let mut details = vec![
        ("channel".to_owned(), actor.channel().to_owned()),
        ("code".to_owned(), refusal.code.as_str().to_owned()),
        ("message".to_owned(), refusal.message.clone()),
    ];
    match &req.usage {
        WebUsage::Bollo { marca: Some(m), .. } => details.push(("marca_id".into(), m.id.clone())),
        WebUsage::Exemption { exemption } => details.push(("exemption".into(), exemption.clone())),
        WebUsage::Bollo { .. } => {}
    }
    AuditEvent {
        action: "certificate.refused".into(),
        actor: actor.audit_actor(),
        subject: Some(req.fiscal_code.clone()).filter(|s| !s.is_empty()),
        identification: Some(actor.identification()),
        kind: Some(req.kind.clone()).filter(|s| !s.is_empty()),
        reason: req
            .reason
            .clone()
            .or_else(|| match actor {
                WebActor::Intermediary { reason, .. } => Some(reason.clone()),
                WebActor::Citizen { .. } => None,
            })
            .filter(|r| !r.trim().is_empty()),
        details,
        ..AuditEvent::default()
    }
}

/// Audits a refusal (the citizen side calls it for a 403 family refusal too). The record is
/// written in the background; a record that cannot be written is logged as an error.
pub fn audit_refusal(state: &AppState, actor: &WebActor, req: &WebRequest, refusal: &Refusal) {
    let event = refusal_event(actor, req, refusal);
    let state = state.clone();
    tokio::spawn(async move { append_audit(&state, event).await });
}

/// [`audit_refusal`], returning once the record is written (or its failure logged).
pub async fn record_refusal(
    state: &AppState,
    actor: &WebActor,
    req: &WebRequest,
    refusal: &Refusal,
) {
    append_audit(state, refusal_event(actor, req, refusal)).await;
}

/// The citizen's own certificates (those they asked for, about themselves or their family)
/// still valid today (Italian time) and still stored, newest first.
pub async fn list_for_citizen(
    state: &AppState,
    fiscal_code: &str,
) -> Result<Vec<WebDocument>, Refusal> {
    let Some(dir) = citizen_dir(&state.config.data_dir, fiscal_code) else {
        return Err(invalid("not a fiscal code"));
    };
    let ids = tokio::task::spawn_blocking(move || indexed_ids(&dir))
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read a citizen's document index");
            Refusal::new(ErrorCode::Unavailable, "the list cannot be read now; retry")
        })?;
    let today = certificates::dates::iso(
        certificates::issuer::italian_time(OffsetDateTime::now_utc()).date(),
    );
    let mut documents = Vec::new();
    for id in ids {
        let Some(meta) = document_meta(state, &id).await else {
            continue; // purged
        };
        if meta.web_user.as_deref() != Some(fiscal_code) {
            continue;
        }
        if let Some(doc) = listed(&id, &meta, &today) {
            documents.push(doc);
        }
    }
    documents.sort_by(|a, b| {
        b.issued_at
            .cmp(&a.issued_at)
            .then(b.document_id.cmp(&a.document_id))
    });
    Ok(documents)
}

/// A document as listed, or `None` when it is no longer valid on `today` (`YYYY-MM-DD`).
pub fn listed(document_id: &str, meta: &DocumentMeta, today: &str) -> Option<WebDocument> {
    if meta.valid_until.as_deref().is_some_and(|v| v < today) {
        return None;
    }
    let issued_at = meta
        .issued_at
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .map(certificates::dates::rfc3339)
        .unwrap_or_default();
    Some(WebDocument {
        document_id: document_id.to_owned(),
        kind: meta.kind.clone().unwrap_or_default(),
        fiscal_code: meta.fiscal_code.clone(),
        issued_at,
        valid_until: meta.valid_until.clone(),
        pdf_url: citizen_pdf_url(document_id),
        bollo: bollo_of(meta),
    })
}

/// Whether `actor` asked for the document described by `meta`.
pub fn owns(actor: &WebActor, meta: &DocumentMeta) -> bool {
    match actor {
        WebActor::Citizen { fiscal_code, .. } => {
            meta.channel.as_deref() == Some("web")
                && meta.web_user.as_deref() == Some(fiscal_code.as_str())
        }
        WebActor::Intermediary { name, .. } => {
            meta.channel.as_deref() == Some("intermediary")
                && meta.intermediary.as_deref() == Some(name.as_str())
        }
    }
}

/// The PDF for `GET pdf_url`, only to the one who asked for it (the citizen's fiscal code, or the
/// intermediary's name): anyone else gets `not_found`, as for a document that does not exist.
/// Downloads and refused downloads are audited.
pub async fn pdf_for(
    state: &AppState,
    actor: &WebActor,
    document_id: &str,
) -> Result<Vec<u8>, Refusal> {
    let meta = document_meta(state, document_id).await;
    let pdf = match &meta {
        Some(m) if owns(actor, m) => stored_pdf(state, document_id).await,
        _ => Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no document {document_id}"),
        )),
    };
    let mut details = vec![("channel".to_owned(), actor.channel().to_owned())];
    if let Err(r) = &pdf {
        details.push(("code".into(), r.code.as_str().into()));
    }
    let event = AuditEvent {
        action: if pdf.is_ok() {
            "certificate.downloaded".into()
        } else {
            "certificate.download_refused".into()
        },
        actor: actor.audit_actor(),
        subject: meta.as_ref().map(|m| m.fiscal_code.clone()),
        identification: Some(actor.identification()),
        kind: meta.as_ref().and_then(|m| m.kind.clone()),
        document_id: Some(document_id.chars().take(64).collect()),
        details,
        ..AuditEvent::default()
    };
    append_audit(state, event).await;
    pdf
}

/// The index folder of a citizen, `None` when `fiscal_code` is not one (so never a path outside).
fn citizen_dir(data_dir: &Path, fiscal_code: &str) -> Option<PathBuf> {
    let fc = FiscalCode::parse(fiscal_code).ok()?.to_string();
    (fc.len() == 16 && fc.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| data_dir.join("web").join("citizens").join(fc))
}

/// Records `document_id` in a citizen's index folder (an empty file, created durably).
fn index_document(dir: Option<&Path>, document_id: &str) -> std::io::Result<()> {
    let dir = dir.ok_or_else(|| std::io::Error::other("not a fiscal code"))?;
    if !crate::calls::incall::certificate::usable_id(document_id) {
        return Err(std::io::Error::other(
            "document id not usable as a file name",
        ));
    }
    crate::datadir::ensure_dir(dir)?;
    crate::datadir::read_or_create(&dir.join(document_id), Vec::new)?;
    Ok(())
}

/// The document ids in a citizen's index folder (none when it does not exist).
fn indexed_ids(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(name) = name.to_str() {
            if crate::calls::incall::certificate::usable_id(name) {
                ids.push(name.to_owned());
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
#[path = "issue_tests.rs"]
mod tests;
