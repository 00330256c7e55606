//! The certificate driver: `certificate.issue` once the citizen is identified in the call (the
//! identity is read from the call's shared record), the issued PDF and its metadata under the data
//! directory (which the nodes share), and `GET /api/v1/documents/{id}.pdf` for those the rule
//! lets read it.

use std::path::PathBuf;

use certificates::audit::Actor;
use certificates::issuer::{Channel, Requester};
use certificates::{
    CertError, CertificateKind, ContestualePart, FiscalCode, IssueRequest, IssuedDocument, Marca,
};
use protocol::incall::{
    CertificateIssue, CertificateIssued, CertificateIssuedEvent, CertificatePreviewed, Usage,
};
use protocol::{ErrorCode, Event, Role};
use queue::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

pub(crate) use super::common::append_audit;
use super::common::{
    cert_refusal, failure_reason, kiosk_of, method_label, own_call, send, valid_id,
};
use crate::accounts::Principal;
use crate::calls::{internal, Refusal, SessionCtx};
use crate::marche::{self, ClaimError, MarcaUse};
use crate::state::AppState;

/// What is kept next to an issued PDF, for `GET /api/v1/documents/{id}.pdf` and the web channel's
/// downloads. The fields after `bollo_due` came with the web channel: they are optional, so the
/// metadata of documents issued before still reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocumentMeta {
    /// The call it was issued in (empty on the web).
    #[serde(default)]
    pub call_id: String,
    /// The operator who issued it (empty on the web).
    #[serde(default)]
    pub operator: String,
    /// The kiosk of the call (empty on the web).
    #[serde(default)]
    pub kiosk: String,
    /// The subject.
    pub fiscal_code: String,
    /// Whether a marca da bollo is due.
    pub bollo_due: bool,
    /// `kiosk`, `web` or `intermediary` (absent: a kiosk document issued before the web channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The signed-in citizen who asked for it on the web (their fiscal code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_user: Option<String>,
    /// The intermediary who asked for it through the API (its account name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediary: Option<String>,
    /// The kind code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// When it was issued, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<i64>,
    /// Its last day of validity (`YYYY-MM-DD`), absent for certificates without expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// The marca da bollo that paid the bollo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marca_id: Option<String>,
    /// The bollo exemption (or the civil-status exemption by law).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemption: Option<String>,
}

/// A `certificate.issue` or `certificate.preview` checked against the call: the issuer's request,
/// the call's kiosk and the operator.
struct Checked {
    request: IssueRequest,
    kiosk: String,
    operator: String,
}

/// Checks the call (the operator's, the citizen identified in it) and the request's fields, and
/// builds the issuer's request.
async fn check(
    state: &AppState,
    ctx: &SessionCtx,
    req: &CertificateIssue,
) -> Result<Checked, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    let identified = state
        .incall
        .store
        .call(&req.call_id)
        .await?
        .and_then(|c| c.identified().cloned());
    let Some(super::core::Identified {
        method,
        subject: citizen,
    }) = identified
    else {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "the citizen is not identified in this call yet",
        ));
    };
    let kind: CertificateKind = req
        .kind
        .parse()
        .map_err(|e: CertError| Refusal::new(ErrorCode::Invalid, e.to_string()))?;
    let fiscal_code = FiscalCode::parse(req.fiscal_code.as_deref().unwrap_or(&citizen.fiscal_code))
        .map_err(|e| Refusal::new(ErrorCode::Invalid, e.to_string()))?;
    let as_of = match req.as_of.as_deref() {
        Some(d) => Some(
            time::Date::parse(
                d,
                &time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|_| Refusal::new(ErrorCode::Invalid, "as_of is not YYYY-MM-DD"))?,
        ),
        None => None,
    };
    let exemption = match &req.usage {
        Usage::Bollo { bollo: true } => None,
        Usage::Bollo { bollo: false } => {
            return Err(Refusal::new(
                ErrorCode::Invalid,
                "usage is {\"bollo\":true} or {\"exemption\":\"<code>\"}",
            ))
        }
        Usage::Exemption { exemption } => Some(exemption.clone()),
    };
    let parts = req
        .parts
        .iter()
        .map(|p| {
            p.parse::<ContestualePart>()
                .map_err(|e: CertError| Refusal::new(ErrorCode::Invalid, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !parts.is_empty() && kind != CertificateKind::Contestuale {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            "parts are chosen only for a contestuale certificate",
        ));
    }
    let marca = match &req.marca {
        Some(m) => {
            let date = certificates::dates::parse_date(&m.date)
                .map_err(|_| Refusal::new(ErrorCode::Invalid, "marca.date is not YYYY-MM-DD"))?;
            Some(
                Marca::new(&m.id, date)
                    .map_err(|e| Refusal::new(ErrorCode::Invalid, e.to_string()))?,
            )
        }
        None => None,
    };
    // A marca with a use that exempts from the bollo is refused by the issuer (`invalid`): only
    // the table knows which uses leave the bollo due (cause giudiziarie, immigrazione).
    let operator = ctx.principal.id.clone();
    // The printed name of the officer: the issuing operator's full name.
    let officer_name = state
        .directory
        .operator(&operator)
        .map(|o| o.display_name.clone())
        .filter(|n| !n.trim().is_empty());
    let request = IssueRequest {
        kind,
        fiscal_code,
        as_of,
        parts,
        exemption,
        reason: req.reason.clone(),
        marca: marca.clone(),
        officer_name,
        requester: Requester {
            channel: Channel::Kiosk,
            actor: Actor {
                operator: Some(operator.clone()),
                kiosk: Some(call.kiosk.clone()),
                ..Actor::default()
            },
            citizen: Some(FiscalCode::parse(&citizen.fiscal_code).map_err(|e| internal(&e))?),
            identification: Some(method_label(method).into()),
            call_id: Some(req.call_id.clone()),
        },
    };
    Ok(Checked {
        request,
        kiosk: call.kiosk.clone(),
        operator,
    })
}

/// `certificate.preview` (operator, extension): the PDF `certificate.issue` would make, watermarked
/// ANTEPRIMA / PREVIEW, with no number, stamp or seal; not issued, not audited, no marca spent.
pub async fn preview(
    state: &AppState,
    ctx: &SessionCtx,
    req: CertificateIssue,
) -> Result<Value, Refusal> {
    let Checked { request, .. } = check(state, ctx, &req).await?;
    let issuer = state.issuer.clone();
    let document =
        tokio::task::spawn_blocking(move || issuer.preview(&request, OffsetDateTime::now_utc()))
            .await
            .map_err(|e| internal(&e))?
            .map_err(cert_refusal)?;
    use base64::Engine as _;
    Ok(serde_json::to_value(CertificatePreviewed {
        kind: document.kind.code().into(),
        fiscal_code: document.fiscal_code,
        pages: document.pages,
        valid_until: document.valid_until,
        pdf: base64::engine::general_purpose::STANDARD.encode(&document.pdf),
    })
    .unwrap_or(Value::Null))
}

/// `certificate.issue` (operator).
pub async fn issue(
    state: &AppState,
    ctx: &SessionCtx,
    req: CertificateIssue,
) -> Result<Value, Refusal> {
    let Checked {
        request,
        kiosk,
        operator,
    } = check(state, ctx, &req).await?;
    let kind = request.kind;
    let marca = request.marca.clone();
    let document = issue_claiming_marca(state, request, "kiosk", &operator).await?;
    // A marca recorded on the certificate paid the bollo: nothing is left to apply to the paper.
    let bollo_due = document.fees.bollo_cents > 0 && marca.is_none();
    let meta = DocumentMeta {
        call_id: req.call_id.clone(),
        operator,
        kiosk: kiosk.clone(),
        channel: Some("kiosk".into()),
        ..DocumentMeta::of(&document, marca.as_ref())
    };
    store_issued(state, &document, &meta).await?;
    state
        .incall
        .store
        .change_call(&req.call_id, &kiosk, |c| {
            c.add_document(&document.document_id);
            Ok(())
        })
        .await?;
    tracing::info!(
        call = %req.call_id,
        document = %document.document_id,
        kind = kind.code(),
        "certificate issued"
    );
    send(
        state,
        &kiosk_of(&kiosk),
        Event::CertificateIssued(CertificateIssuedEvent {
            call_id: req.call_id.clone(),
            document_id: document.document_id.clone(),
            kind: kind.code().into(),
            bollo_due,
            pages: document.pages,
        }),
    );
    Ok(serde_json::to_value(CertificateIssued {
        pdf_url: pdf_url(&document.document_id),
        document_id: document.document_id,
        kind: kind.code().into(),
        stamp: document.stamp,
        pages: document.pages,
        fiscal_code: document.fiscal_code,
        bollo_due,
        valid_until: document.valid_until,
        marca_id: marca.map(|m| m.id),
    })
    .unwrap_or(Value::Null))
}

impl DocumentMeta {
    /// The metadata every channel keeps of an issued document; the caller sets who asked.
    pub fn of(document: &IssuedDocument, marca: Option<&Marca>) -> DocumentMeta {
        DocumentMeta {
            fiscal_code: document.fiscal_code.clone(),
            bollo_due: document.fees.bollo_cents > 0 && marca.is_none(),
            kind: Some(document.kind.code().into()),
            issued_at: Some(document.issued_at),
            valid_until: document.valid_until.clone(),
            marca_id: marca.map(|m| m.id.clone()),
            exemption: document.fees.exemption.clone(),
            ..DocumentMeta::default()
        }
    }
}

/// Issues `request` as every channel does: claims its marca first (once across all channels,
/// recorded with `channel` and `actor`), issues in a blocking task, releases the marca when
/// issuing fails, and counts failures. The certificate's audit record is the issuer's.
pub(crate) async fn issue_claiming_marca(
    state: &AppState,
    request: IssueRequest,
    channel: &str,
    actor: &str,
) -> Result<IssuedDocument, Refusal> {
    let marca = request.marca.clone();
    let issuer = state.issuer.clone();
    let failures = &state.metrics.certificate_failures;
    let (shared, tenant) = state.incall.store.shared();
    if let Some(m) = &marca {
        claim_marca(state, m, channel, actor).await?;
    }
    let issued =
        tokio::task::spawn_blocking(move || issuer.issue(&request, OffsetDateTime::now_utc()))
            .await;
    if let (Some(m), Err(_) | Ok(Err(_))) = (&marca, &issued) {
        marche::release(&state.incall.marche, shared, tenant, &m.id).await;
    }
    issued
        .map_err(|e| {
            failures.with_label_values(&["internal"]).inc();
            internal(&e)
        })?
        .map_err(|e| {
            if let Some(reason) = failure_reason(&e) {
                failures.with_label_values(&[reason]).inc();
            }
            if matches!(e, CertError::AuditTampered { .. }) {
                state.metrics.audit_chain_ok.set(0);
            }
            cert_refusal(e)
        })
}

/// Stores an issued document's PDF and metadata durably and counts it as issued.
pub(crate) async fn store_issued(
    state: &AppState,
    document: &IssuedDocument,
    meta: &DocumentMeta,
) -> Result<(), Refusal> {
    store_document(state, &document.document_id, &document.pdf, meta)
        .await
        .map_err(|e| {
            state
                .metrics
                .certificate_failures
                .with_label_values(&["storage"])
                .inc();
            internal(&e)
        })?;
    state
        .metrics
        .certificates_issued
        .with_label_values(&[document.kind.code()])
        .inc();
    if let Some(sink) = state.routing.outcomes.sink() {
        sink.record(certificate_event(sink, document, meta));
    }
    Ok(())
}

/// The call history's record of an issued certificate.
fn certificate_event(
    sink: &crate::reports::Sink,
    document: &IssuedDocument,
    meta: &DocumentMeta,
) -> history::Event {
    let at_ms = meta
        .issued_at
        .map_or_else(|| Time::now().0 as i64, |s| s.saturating_mul(1000));
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    history::Event::Certificate(history::CertificateFacts {
        document_id: document.document_id.clone(),
        call_id: some(&meta.call_id),
        day: sink.day_of(Time(u64::try_from(at_ms).unwrap_or(0))),
        issued_at: at_ms,
        channel: meta.channel.clone().unwrap_or_else(|| "kiosk".into()),
        kind: document.kind.code().to_owned(),
        fee: if meta.bollo_due { "bollo" } else { "esente" }.to_owned(),
        exemption: meta.exemption.clone().filter(|_| !meta.bollo_due),
        kiosk_id: some(&meta.kiosk),
        operator_id: some(&meta.operator),
    })
}

/// The stored PDF of a document, `not_found` when there is none (never issued, or purged).
pub(crate) async fn stored_pdf(state: &AppState, document_id: &str) -> Result<Vec<u8>, Refusal> {
    let not_found = || Refusal::new(ErrorCode::NotFound, format!("no document {document_id}"));
    let path = pdf_path(state, document_id).ok_or_else(not_found)?;
    tokio::fs::read(path).await.map_err(|_| not_found())
}

/// Claims a marca for a certificate, or refuses it: `conflict` when it paid for another
/// certificate already (on any channel), `unavailable` when it cannot be recorded.
async fn claim_marca(
    state: &AppState,
    marca: &Marca,
    channel: &str,
    actor: &str,
) -> Result<(), Refusal> {
    let (shared, tenant) = state.incall.store.shared();
    let using = MarcaUse::new(marca, channel, actor);
    match marche::claim(&state.incall.marche, shared, tenant, &using).await {
        Ok(()) => Ok(()),
        Err(ClaimError::Used(earlier)) => Err(Refusal::new(
            ErrorCode::Conflict,
            match earlier {
                Some(u) => format!(
                    "la marca da bollo {} è già stata usata ({}, {}) / this marca was already used",
                    u.id,
                    u.channel,
                    time::OffsetDateTime::from_unix_timestamp(u.at)
                        .map(|t| certificates::dates::iso(t.date()))
                        .unwrap_or_default()
                ),
                None => format!(
                    "la marca da bollo {} è già stata usata / this marca was already used",
                    marca.id
                ),
            },
        )),
        Err(ClaimError::Unavailable(e)) => {
            tracing::error!(error = %e, "cannot record a marca da bollo");
            Err(Refusal::new(
                ErrorCode::Unavailable,
                "the marca da bollo cannot be recorded now; retry",
            ))
        }
    }
}

/// Verifies the whole audit chain (in a blocking task) and sets `sportello_audit_chain_ok`,
/// `sportello_audit_records` and `sportello_audit_last_verification_timestamp_seconds`. The
/// in-call timer runs it at start and every [`AUDIT_VERIFY_EVERY`].
pub(super) async fn verify_audit(state: AppState) {
    let path = state.issuer.audit().path().to_owned();
    let checked = tokio::task::spawn_blocking(move || certificates::audit_verify(&path)).await;
    let m = &state.metrics;
    match checked {
        Ok(Ok(summary)) => {
            m.audit_chain_ok.set(1);
            m.audit_records
                .set(i64::try_from(summary.records).unwrap_or(i64::MAX));
        }
        Ok(Err(e)) => {
            // An unreadable log is as bad as a broken one: the chain cannot be shown intact.
            m.audit_chain_ok.set(0);
            tracing::error!(error = %e, "audit chain verification failed");
        }
        Err(e) => return tracing::error!(error = %e, "audit verification task failed"),
    }
    let now = OffsetDateTime::now_utc();
    m.audit_verified_at
        .set(now.unix_timestamp() as f64 + f64::from(now.millisecond()) / 1000.0);
}

/// How often the in-call timer verifies the audit chain, in its 1-second ticks (10 minutes).
pub(super) const AUDIT_VERIFY_EVERY: u64 = 600;

pub(super) fn pdf_url(document_id: &str) -> String {
    format!("/api/v1/documents/{document_id}.pdf")
}

/// Writes the PDF and its metadata durably (temporary file, fsync, rename).
async fn store_document(
    state: &AppState,
    document_id: &str,
    pdf: &[u8],
    meta: &DocumentMeta,
) -> std::io::Result<()> {
    let (Some(pdf_path), Some(meta_path)) =
        (pdf_path(state, document_id), meta_path(state, document_id))
    else {
        return Err(std::io::Error::other(
            "document id not usable as a file name",
        ));
    };
    let dir = state.incall.documents.clone();
    let pdf = pdf.to_vec();
    let meta = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        // Document ids are fresh: the first write creates each file whole, durably.
        crate::datadir::read_or_create(&pdf_path, || pdf)?;
        crate::datadir::read_or_create(&meta_path, || meta).map(|_| ())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Reads an issued document's metadata.
pub async fn document_meta(state: &AppState, document_id: &str) -> Option<DocumentMeta> {
    let path = meta_path(state, document_id)?;
    let bytes = tokio::fs::read(path).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The PDF of a document, for `GET /api/v1/documents/{id}.pdf`, if `who` may read it: the
/// operator who issued it, the kiosk of a print job for it, a supervisor.
pub async fn document_for(
    state: &AppState,
    who: &Principal,
    document_id: &str,
) -> Result<Vec<u8>, Refusal> {
    let not_found = || Refusal::new(ErrorCode::NotFound, format!("no document {document_id}"));
    let meta = document_meta(state, document_id)
        .await
        .ok_or_else(not_found)?;
    let allowed = match who.role {
        Role::Supervisor => true,
        Role::Operator => meta.operator == who.id,
        Role::Kiosk => state
            .incall
            .store
            .jobs()
            .await?
            .iter()
            .any(|j| j.kiosk == who.id && j.document_id == document_id),
    };
    if !allowed {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this document is not yours to read",
        ));
    }
    stored_pdf(state, document_id).await
}

fn pdf_path(state: &AppState, document_id: &str) -> Option<PathBuf> {
    valid_id(document_id).then(|| state.incall.documents.join(format!("{document_id}.pdf")))
}

fn meta_path(state: &AppState, document_id: &str) -> Option<PathBuf> {
    valid_id(document_id).then(|| state.incall.documents.join(format!("{document_id}.json")))
}

/// Whether `id` is usable as a file name in the data directory (letters, digits and `-`).
pub(crate) fn usable_id(id: &str) -> bool {
    valid_id(id)
}
