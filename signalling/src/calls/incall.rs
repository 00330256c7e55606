//! The in-call actions over the wire: identification (`identity.*`), `certificate.issue` and
//! printing (`print.*`), plus the scan upload and document download over HTTP.
//!
//! The decisions are in the core [`super::actions::Actions`]; this driver checks who may act on
//! which call (through the queue's view of the call), verifies cards, mails PEC codes, issues
//! certificates (in `spawn_blocking`), stores the PDFs under the data directory, writes every
//! attempt to the audit log and delivers the events. Its state is per process, like the media
//! plane's (`docs/protocol.md`, "Several servers").

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use certificates::audit::{Actor, AuditEvent};
use certificates::identity::CardVerifier;
use certificates::issuer::{Channel, Requester};
use certificates::{CertError, CertificateKind, FiscalCode, IssueRequest};
use protocol::incall::{
    CertificateIssue, CertificateIssued, CertificateIssuedEvent, IdentityCard, IdentityCardError,
    IdentityConfirm, IdentityFailed, IdentityMethod, IdentityPecCode, IdentityPecStart,
    IdentityProgress, IdentityReject, IdentityRequest, IdentityRequested, IdentityScan,
    IdentityVerified, PecSent, PrintCreated, PrintJob, PrintRequest, PrintStatus, PrintUpdate,
    Subject, Usage,
};
use protocol::{Capability, ErrorCode, Event, Role};
use queue::{CallId, Effect, Time};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::actions::{Actions, CodeOutcome, Job, PecLimits, Refused, Scan};
use super::events::Recipient;
use super::media::{view, CallView};
use super::{call_id, internal, Refusal, SessionCtx};
use crate::accounts::Principal;
use crate::mail::Mailer;
use crate::shutdown::Phase;
use crate::state::AppState;

/// Seconds between two sendings of a job the kiosk has not acknowledged.
pub const RESEND_S: f64 = 5.0;
/// The largest scan accepted, in bytes.
pub const MAX_SCAN_BYTES: usize = 10 * 1024 * 1024;

/// The process's in-call state and its dependencies.
pub struct InCall {
    actions: Mutex<Actions>,
    verifier: Option<CardVerifier>,
    mailer: Option<Mailer>,
    documents: PathBuf,
    jobs: PathBuf,
}

impl std::fmt::Debug for InCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InCall")
            .field("card_cas", &self.verifier.as_ref().map(CardVerifier::len))
            .field("mail", &self.mailer.is_some())
            .field("documents", &self.documents)
            .finish_non_exhaustive()
    }
}

/// What is kept next to an issued PDF, for `GET /api/v1/documents/{id}.pdf`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentMeta {
    /// The call it was issued in.
    pub call_id: String,
    /// The operator who issued it.
    pub operator: String,
    /// The kiosk of the call.
    pub kiosk: String,
    /// The subject.
    pub fiscal_code: String,
    /// Whether a marca da bollo is due.
    pub bollo_due: bool,
}

impl InCall {
    /// Builds the state: cards are accepted only with a CA bundle, PEC codes only with a mailer.
    /// Issued PDFs live in `data_dir/documents`; print jobs in `data_dir/print-jobs`, one file
    /// each, reloaded here so a restart loses no job (unacknowledged ones are sent again).
    pub fn new(
        limits: PecLimits,
        verifier: Option<CardVerifier>,
        mailer: Option<Mailer>,
        data_dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        let jobs = data_dir.join("print-jobs");
        std::fs::create_dir_all(&jobs)?;
        let mut actions = Actions::new(limits);
        let mut loaded = 0;
        for entry in std::fs::read_dir(&jobs)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Job>(&b).ok())
            {
                Some(mut job) => {
                    job.sent_at = 0.0;
                    actions.add_job(job);
                    loaded += 1;
                }
                None => tracing::warn!(file = %path.display(), "unreadable print job file skipped"),
            }
        }
        if loaded > 0 {
            tracing::info!(jobs = loaded, "print jobs reloaded");
        }
        Ok(InCall {
            actions: Mutex::new(actions),
            verifier,
            mailer,
            documents: data_dir.join("documents"),
            jobs,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Actions> {
        self.actions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pdf_path(&self, document_id: &str) -> Option<PathBuf> {
        valid_id(document_id).then(|| self.documents.join(format!("{document_id}.pdf")))
    }

    fn meta_path(&self, document_id: &str) -> Option<PathBuf> {
        valid_id(document_id).then(|| self.documents.join(format!("{document_id}.json")))
    }
}

/// Ids used in file names: letters, digits and `-`.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NotPending(m) => Refusal::new(ErrorCode::Conflict, m),
            Refused::RateLimited(m) => Refusal::new(ErrorCode::RateLimited, m),
            Refused::NotFound(m) => Refusal::new(ErrorCode::NotFound, m),
            Refused::Forbidden(m) => Refusal::new(ErrorCode::Forbidden, m),
        }
    }
}

fn cert_refusal(e: CertError) -> Refusal {
    match e {
        CertError::InvalidFiscalCode(_)
        | CertError::UnknownKind(_)
        | CertError::UnknownExemption(_)
        | CertError::MissingInput(_) => Refusal::new(ErrorCode::Invalid, e.to_string()),
        CertError::PersonNotFound(_) => Refusal::new(ErrorCode::NotFound, e.to_string()),
        CertError::NotIssuable(_) => Refusal::new(ErrorCode::Conflict, e.to_string()),
        CertError::NotAllowed(_) => Refusal::new(ErrorCode::Forbidden, e.to_string()),
        CertError::Registry(_) => {
            tracing::warn!(error = %e, "registry unavailable");
            Refusal::new(ErrorCode::Unavailable, e.to_string())
        }
        other => internal(&other),
    }
}

/// The wall clock in seconds, as the core counts.
fn now_s() -> f64 {
    Time::now().as_millis() as f64 / 1000.0
}

fn kiosk_of(kiosk: &str) -> Recipient {
    Recipient {
        role: Role::Kiosk,
        id: kiosk.to_owned(),
    }
}

fn operator_of(operator: &str) -> Recipient {
    Recipient {
        role: Role::Operator,
        id: operator.to_owned(),
    }
}

fn send(state: &AppState, to: &Recipient, event: Event) {
    state.events.send(to, &Arc::from(event.to_json()));
}

/// Sends an event to the call's kiosk (every session) and operator.
fn to_both(state: &AppState, call: &CallView, event: Event) {
    let frame: Arc<str> = Arc::from(event.to_json());
    state.events.send(&kiosk_of(&call.kiosk), &frame);
    if let Some(op) = &call.operator {
        state.events.send(&operator_of(op), &frame);
    }
}

/// The call, checked to be in conversation and to be `ctx`'s (its operator, or its kiosk).
async fn own_call(
    state: &AppState,
    ctx: &SessionCtx,
    raw: &str,
    role: Role,
) -> Result<CallView, Refusal> {
    let id = call_id(raw)?;
    let call = view(state, &id).await?;
    let me = &ctx.principal.id;
    let mine = match role {
        Role::Kiosk => &call.kiosk == me,
        Role::Operator => call.operator.as_deref() == Some(me),
        Role::Supervisor => false,
    };
    if ctx.principal.role != role || !mine {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("call {raw} is not yours"),
        ));
    }
    if !call.in_call {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("call {raw} is not in conversation"),
        ));
    }
    Ok(call)
}

fn method_label(m: IdentityMethod) -> &'static str {
    match m {
        IdentityMethod::Cie => "cie",
        IdentityMethod::Cns => "cns",
        IdentityMethod::Pec => "pec",
        IdentityMethod::Document => "documento cartaceo",
    }
}

/// One `identification` audit record. A record that cannot be written is logged as an error; the
/// identification outcome itself is still reported.
async fn audit_identification(
    state: &AppState,
    call_id: &str,
    call: &CallView,
    method: IdentityMethod,
    subject: Option<&str>,
    outcome: &str,
    details: Vec<(String, String)>,
) {
    let mut all = vec![("outcome".to_owned(), outcome.to_owned())];
    all.extend(details);
    let event = AuditEvent {
        action: "identification".into(),
        actor: Actor {
            operator: call.operator.clone(),
            kiosk: Some(call.kiosk.clone()),
            ..Actor::default()
        },
        subject: subject.map(str::to_owned),
        identification: Some(method_label(method).into()),
        call_id: Some(call_id.to_owned()),
        details: all,
        ..AuditEvent::default()
    };
    append_audit(state, event).await;
}

async fn append_audit(state: &AppState, event: AuditEvent) {
    let issuer = state.issuer.clone();
    let action = event.action.clone();
    let written = tokio::task::spawn_blocking(move || {
        issuer.audit().append(event, OffsetDateTime::now_utc())
    })
    .await;
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, %action, "audit record not written"),
        Err(e) => tracing::error!(error = %e, %action, "audit task failed"),
    }
}

/// Reports a verified identity to both sides and remembers it for the call.
async fn verified(
    state: &AppState,
    call_id: &str,
    call: &CallView,
    method: IdentityMethod,
    subject: Subject,
    details: Vec<(String, String)>,
) {
    state
        .incall
        .lock()
        .verified(call_id, method, subject.clone());
    audit_identification(
        state,
        call_id,
        call,
        method,
        Some(&subject.fiscal_code),
        "verified",
        details,
    )
    .await;
    tracing::info!(
        call = call_id,
        method = method.as_str(),
        "citizen identified"
    );
    to_both(
        state,
        call,
        Event::IdentityVerified(IdentityVerified {
            call_id: call_id.to_owned(),
            method,
            subject,
        }),
    );
}

/// What a failed attempt reports.
struct Failure<'a> {
    method: IdentityMethod,
    code: &'a str,
    reason: String,
    attempts_left: Option<u32>,
    /// Whether the pending step ends (else the citizen may try again).
    ends: bool,
    subject: Option<String>,
}

impl<'a> Failure<'a> {
    /// A failure that ends the pending step.
    fn new(method: IdentityMethod, code: &'a str, reason: impl Into<String>) -> Self {
        Failure {
            method,
            code,
            reason: reason.into(),
            attempts_left: None,
            ends: true,
            subject: None,
        }
    }

    /// The citizen may try again within the same step.
    fn retry(mut self, attempts_left: Option<u32>) -> Self {
        self.ends = false;
        self.attempts_left = attempts_left;
        self
    }

    /// The fiscal code the attempt was about (audited).
    fn about(mut self, cf: &FiscalCode) -> Self {
        self.subject = Some(cf.to_string());
        self
    }
}

async fn failed(state: &AppState, call_id: &str, call: &CallView, f: Failure<'_>) {
    if f.ends {
        state.incall.lock().failed(call_id);
    }
    let mut details = vec![("code".to_owned(), f.code.to_owned())];
    if let Some(n) = f.attempts_left {
        details.push(("attempts_left".into(), n.to_string()));
    }
    audit_identification(
        state,
        call_id,
        call,
        f.method,
        f.subject.as_deref(),
        "failed",
        details,
    )
    .await;
    tracing::info!(
        call = call_id,
        method = f.method.as_str(),
        code = f.code,
        "identification failed"
    );
    to_both(
        state,
        call,
        Event::IdentityFailed(IdentityFailed {
            call_id: call_id.to_owned(),
            reason: f.reason,
            method: Some(f.method),
            code: Some(f.code.to_owned()),
            attempts_left: f.attempts_left,
        }),
    );
}

/// The registry's person with this fiscal code.
async fn registry_person(
    state: &AppState,
    cf: &FiscalCode,
) -> Result<certificates::registry::Person, CertError> {
    let issuer = state.issuer.clone();
    let cf = cf.clone();
    tokio::task::spawn_blocking(move || issuer.registry().person(&cf))
        .await
        .map_err(|e| CertError::Registry(e.to_string()))?
}

/// The identified subject as the registry knows them.
fn subject_of(person: &certificates::registry::Person) -> Subject {
    Subject {
        fiscal_code: person.fiscal_code.to_string(),
        given_name: person.given_names.clone(),
        family_name: person.surname.clone(),
        birth_date: Some(certificates::dates::iso(person.birth.date)),
    }
}

/// The subject as the registry knows them (names and birth date).
async fn registry_subject(state: &AppState, cf: &FiscalCode) -> Result<Subject, CertError> {
    registry_person(state, cf).await.map(|p| subject_of(&p))
}

/// `identity.progress` for both sides.
fn progress(call_id: &str, method: IdentityMethod, step: &str) -> IdentityProgress {
    IdentityProgress {
        call_id: call_id.to_owned(),
        method,
        step: step.into(),
        sent_to: None,
        scan_id: None,
        scan_url: None,
    }
}

/// `identity.request` (operator).
pub async fn request(
    state: &AppState,
    ctx: &SessionCtx,
    req: IdentityRequest,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    let method = req.method;
    if method.is_card() && state.incall.verifier.is_none() {
        return Err(Refusal::new(
            ErrorCode::Unavailable,
            "no CA bundle is configured for CIE/CNS cards (identity.ca_bundle)",
        ));
    }
    if method == IdentityMethod::Pec && state.incall.mailer.is_none() {
        return Err(Refusal::new(
            ErrorCode::Unavailable,
            "no mail server is configured for PEC codes (mail.smtp_url)",
        ));
    }
    let nonce = method
        .is_card()
        .then(|| B64URL.encode(rand::thread_rng().gen::<[u8; 32]>()));
    state
        .incall
        .lock()
        .request(&req.call_id, &call.kiosk, method, nonce.clone());
    tracing::info!(call = %req.call_id, method = method.as_str(), "identification requested");
    let requested = Arc::from(
        Event::IdentityRequested(IdentityRequested {
            call_id: req.call_id.clone(),
            method,
            nonce: nonce.unwrap_or_default(),
        })
        .to_json(),
    );
    let kiosk = kiosk_of(&call.kiosk);
    match method {
        IdentityMethod::Cie | IdentityMethod::Cns => {
            state
                .events
                .send_device(&kiosk, Capability::CardReader, &requested);
        }
        IdentityMethod::Document => {
            state
                .events
                .send_device(&kiosk, Capability::Scanner, &requested);
        }
        IdentityMethod::Pec => {
            state.events.send(&kiosk, &requested);
        }
    }
    to_both(
        state,
        &call,
        Event::IdentityProgress(progress(&req.call_id, method, "requested")),
    );
    Ok(Value::Null)
}

/// `identity.card` (kiosk agent).
pub async fn card(state: &AppState, ctx: &SessionCtx, req: IdentityCard) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Kiosk).await?;
    let chain = req
        .certificate_chain
        .iter()
        .map(|c| B64.decode(c.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Refusal::new(ErrorCode::Invalid, "certificate_chain is not base64"))?;
    let signature = B64
        .decode(req.signature.trim())
        .map_err(|_| Refusal::new(ErrorCode::Invalid, "signature is not base64"))?;
    let (method, nonce) = state.incall.lock().take_nonce(&req.call_id)?;
    let Some(verifier) = state.incall.verifier.as_ref() else {
        return Err(Refusal::new(ErrorCode::Unavailable, "no CA bundle"));
    };
    let checked = verifier.verify(
        &chain,
        nonce.as_bytes(),
        &signature,
        OffsetDateTime::now_utc(),
    );
    match checked {
        Ok(holder) => {
            let subject = match registry_subject(state, &holder.fiscal_code).await {
                Ok(s) => s,
                // Someone not in this comune's registry is still identified by their card.
                Err(CertError::PersonNotFound(_)) => Subject {
                    fiscal_code: holder.fiscal_code.to_string(),
                    given_name: holder.given_name.clone().unwrap_or_default(),
                    family_name: holder.family_name.clone().unwrap_or_default(),
                    birth_date: None,
                },
                Err(e) => return Err(cert_refusal(e)),
            };
            let details = vec![
                ("certificate_serial".into(), holder.certificate_serial),
                ("certificate_issuer".into(), holder.issuer),
            ];
            verified(state, &req.call_id, &call, method, subject, details).await;
        }
        Err(e) => {
            failed(
                state,
                &req.call_id,
                &call,
                Failure::new(method, e.code(), e.to_string()),
            )
            .await;
        }
    }
    Ok(Value::Null)
}

/// `identity.card_error` (kiosk agent): wrong PIN, blocked card, no card…
pub async fn card_error(
    state: &AppState,
    ctx: &SessionCtx,
    req: IdentityCardError,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Kiosk).await?;
    let method = state.incall.lock().card_pending(&req.call_id)?;
    let failure = match req.reason.as_str() {
        "pin_incorrect" => Failure::new(
            method,
            "pin_incorrect",
            match req.tries_left {
                Some(n) => {
                    format!("PIN errato: restano {n} tentativi prima del blocco della carta")
                }
                None => "PIN errato".to_owned(),
            },
        )
        .retry(req.tries_left),
        "pin_locked" => Failure::new(
            method,
            "pin_locked",
            "La carta è bloccata: il PIN è stato sbagliato troppe volte (serve il PUK)",
        ),
        "no_card" => Failure::new(method, "no_card", "Nessuna carta nel lettore").retry(None),
        "timeout" => Failure::new(method, "timeout", "Tempo scaduto per l'inserimento del PIN"),
        "card_error" => Failure::new(method, "card_error", "La carta non può essere letta"),
        other => {
            return Err(Refusal::new(
                ErrorCode::Invalid,
                format!("unknown card error reason {other:?}"),
            ))
        }
    };
    failed(state, &req.call_id, &call, failure).await;
    Ok(Value::Null)
}

/// Masks an address for the screen: `m***@pec.example.it`.
fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `identity.pec_start` (kiosk).
pub async fn pec_start(
    state: &AppState,
    ctx: &SessionCtx,
    req: IdentityPecStart,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Kiosk).await?;
    let cf = FiscalCode::parse(req.fiscal_code.trim())
        .map_err(|e| Refusal::new(ErrorCode::Invalid, e.to_string()))?;
    let now = now_s();
    state
        .incall
        .lock()
        .pec_may_send(&req.call_id, cf.as_str(), now)?;
    let Some(mailer) = state.incall.mailer.as_ref() else {
        return Err(Refusal::new(ErrorCode::Unavailable, "no mail server"));
    };
    let person = match registry_person(state, &cf).await {
        Ok(person) => person,
        Err(CertError::PersonNotFound(_)) => {
            let f = Failure::new(
                IdentityMethod::Pec,
                "not_in_registry",
                "Il codice fiscale non risulta nell'anagrafe del comune",
            );
            failed(state, &req.call_id, &call, f.retry(None).about(&cf)).await;
            return Err(Refusal::new(
                ErrorCode::NotFound,
                "no person with this fiscal code in the registry",
            ));
        }
        Err(e) => return Err(cert_refusal(e)),
    };
    let Some(address) = person.pec.clone() else {
        let f = Failure::new(
            IdentityMethod::Pec,
            "no_pec",
            "Nessun domicilio digitale (PEC) registrato per questo cittadino",
        );
        failed(state, &req.call_id, &call, f.retry(None).about(&cf)).await;
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "the citizen has no registered PEC address",
        ));
    };
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
    let name = format!("{} {}", person.given_names, person.surname);
    if let Err(e) = mailer.send_code(&address, &name, &code).await {
        tracing::warn!(call = %req.call_id, error = %e, "PEC code not sent: mail server");
        return Err(Refusal::new(
            ErrorCode::Unavailable,
            "the mail server did not accept the message; retry shortly",
        ));
    }
    state
        .incall
        .lock()
        .pec_sent(&req.call_id, cf.as_str(), &code, now);
    let sent_to = mask(&address);
    audit_identification(
        state,
        &req.call_id,
        &call,
        IdentityMethod::Pec,
        Some(cf.as_str()),
        "code_sent",
        vec![("sent_to".into(), sent_to.clone())],
    )
    .await;
    tracing::info!(call = %req.call_id, %sent_to, "PEC code sent");
    to_both(
        state,
        &call,
        Event::IdentityProgress(IdentityProgress {
            sent_to: Some(sent_to.clone()),
            ..progress(&req.call_id, IdentityMethod::Pec, "pec_sent")
        }),
    );
    let ttl = state.incall.lock().limits().ttl_s as u64;
    Ok(serde_json::to_value(PecSent {
        sent_to,
        expires_in_s: ttl,
    })
    .unwrap_or(Value::Null))
}

/// `identity.pec_code` (kiosk).
pub async fn pec_code(
    state: &AppState,
    ctx: &SessionCtx,
    req: IdentityPecCode,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Kiosk).await?;
    let code = req.code.trim();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(Refusal::new(ErrorCode::Invalid, "the code has six digits"));
    }
    let now = now_s();
    let outcome = state.incall.lock().pec_code(&req.call_id, code, now)?;
    let method = IdentityMethod::Pec;
    let failure = match outcome {
        CodeOutcome::Verified(cf) => {
            let cf = FiscalCode::parse(&cf).map_err(|e| internal(&e))?;
            let subject = registry_subject(state, &cf).await.map_err(cert_refusal)?;
            verified(state, &req.call_id, &call, method, subject, vec![]).await;
            return Ok(Value::Null);
        }
        CodeOutcome::Wrong(left) => Failure::new(
            method,
            "wrong_code",
            format!("Codice errato: restano {left} tentativi"),
        )
        .retry(Some(left)),
        CodeOutcome::TooManyAttempts => {
            let mut f = Failure::new(
                method,
                "too_many_attempts",
                "Codice errato per troppe volte: chieda un nuovo codice all'operatore",
            );
            f.attempts_left = Some(0);
            f
        }
        CodeOutcome::Expired => Failure::new(
            method,
            "code_expired",
            "Il codice è scaduto: chieda un nuovo codice all'operatore",
        ),
    };
    failed(state, &req.call_id, &call, failure).await;
    Ok(Value::Null)
}

/// `identity.scan` (kiosk).
pub async fn scan(state: &AppState, ctx: &SessionCtx, req: IdentityScan) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Kiosk).await?;
    state
        .incall
        .lock()
        .scan_submitted(&req.call_id, &req.scan_id)?;
    tracing::info!(call = %req.call_id, scan = %req.scan_id, "document scan submitted");
    to_both(
        state,
        &call,
        Event::IdentityProgress(IdentityProgress {
            scan_url: Some(format!(
                "/api/v1/calls/{}/scans/{}",
                req.call_id, req.scan_id
            )),
            scan_id: Some(req.scan_id.clone()),
            ..progress(&req.call_id, IdentityMethod::Document, "scan_received")
        }),
    );
    Ok(Value::Null)
}

/// `identity.confirm` (operator).
pub async fn confirm(
    state: &AppState,
    ctx: &SessionCtx,
    req: IdentityConfirm,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    let cf = FiscalCode::parse(req.fiscal_code.trim())
        .map_err(|e| Refusal::new(ErrorCode::Invalid, e.to_string()))?;
    let (doc_type, doc_number) = (req.document_type.trim(), req.document_number.trim());
    if doc_type.is_empty() || doc_number.is_empty() || doc_type.len() > 64 || doc_number.len() > 64
    {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            "document_type and document_number are required (at most 64 characters)",
        ));
    }
    let scan_id = state.incall.lock().judged_scan(&req.call_id)?;
    let subject = registry_subject(state, &cf).await.map_err(cert_refusal)?;
    let details = vec![
        ("document_type".into(), doc_type.to_owned()),
        ("document_number".into(), doc_number.to_owned()),
        ("scan_id".into(), scan_id),
    ];
    verified(
        state,
        &req.call_id,
        &call,
        IdentityMethod::Document,
        subject,
        details,
    )
    .await;
    Ok(Value::Null)
}

/// `identity.reject` (operator): the document does not match, or the operator stops.
pub async fn reject(
    state: &AppState,
    ctx: &SessionCtx,
    req: IdentityReject,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    let method = state
        .incall
        .lock()
        .pending(&req.call_id)
        .ok_or_else(|| Refusal::new(ErrorCode::Conflict, "no identification is pending"))?;
    let reason = req.reason.trim();
    let reason = if reason.is_empty() {
        "Identificazione non riuscita".to_owned()
    } else {
        reason.chars().take(200).collect()
    };
    failed(
        state,
        &req.call_id,
        &call,
        Failure::new(method, "rejected", reason),
    )
    .await;
    Ok(Value::Null)
}

/// `certificate.issue` (operator).
pub async fn issue(
    state: &AppState,
    ctx: &SessionCtx,
    req: CertificateIssue,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    let Some((method, citizen)) = state.incall.lock().identified(&req.call_id).cloned() else {
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
    let operator = ctx.principal.id.clone();
    let request = IssueRequest {
        kind,
        fiscal_code,
        as_of,
        parts: vec![],
        exemption,
        reason: req.reason.clone(),
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
    let issuer = state.issuer.clone();
    let document =
        tokio::task::spawn_blocking(move || issuer.issue(&request, OffsetDateTime::now_utc()))
            .await
            .map_err(|e| internal(&e))?
            .map_err(cert_refusal)?;
    let bollo_due = document.fees.bollo_cents > 0;
    let meta = DocumentMeta {
        call_id: req.call_id.clone(),
        operator,
        kiosk: call.kiosk.clone(),
        fiscal_code: document.fiscal_code.clone(),
        bollo_due,
    };
    store_document(state, &document.document_id, &document.pdf, &meta)
        .await
        .map_err(|e| internal(&e))?;
    state
        .incall
        .lock()
        .add_document(&req.call_id, &document.document_id);
    tracing::info!(
        call = %req.call_id,
        document = %document.document_id,
        kind = kind.code(),
        "certificate issued"
    );
    send(
        state,
        &kiosk_of(&call.kiosk),
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
    })
    .unwrap_or(Value::Null))
}

fn pdf_url(document_id: &str) -> String {
    format!("/api/v1/documents/{document_id}.pdf")
}

/// Writes the PDF and its metadata durably (temporary file, fsync, rename).
async fn store_document(
    state: &AppState,
    document_id: &str,
    pdf: &[u8],
    meta: &DocumentMeta,
) -> std::io::Result<()> {
    let (Some(pdf_path), Some(meta_path)) = (
        state.incall.pdf_path(document_id),
        state.incall.meta_path(document_id),
    ) else {
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
    let path = state.incall.meta_path(document_id)?;
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
        Role::Kiosk => state.incall.lock().kiosk_prints(&who.id, document_id),
    };
    if !allowed {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this document is not yours to read",
        ));
    }
    let path = state.incall.pdf_path(document_id).ok_or_else(not_found)?;
    tokio::fs::read(path).await.map_err(|_| not_found())
}

/// Writes a job's file durably (temporary file, fsync, rename), so a restart keeps it.
async fn save_job(state: &AppState, job: &Job) {
    let Some(path) =
        valid_id(&job.job_id).then(|| state.incall.jobs.join(format!("{}.json", job.job_id)))
    else {
        return;
    };
    let bytes = match serde_json::to_vec(job) {
        Ok(b) => b,
        Err(e) => return tracing::error!(error = %e, "print job not serialisable"),
    };
    let saved = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::error!(job = %job.job_id, "print job file not written: {saved:?}");
    }
}

fn print_job_event(job: &Job) -> Arc<str> {
    Arc::from(
        Event::PrintJob(PrintJob {
            job_id: job.job_id.clone(),
            document_id: job.document_id.clone(),
            pdf_url: pdf_url(&job.document_id),
            copies: job.copies,
            call_id: job.call_id.clone(),
        })
        .to_json(),
    )
}

/// `print.request` (operator).
pub async fn print(
    state: &AppState,
    ctx: &SessionCtx,
    req: PrintRequest,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    if !(1..=5).contains(&req.copies) {
        return Err(Refusal::new(ErrorCode::Invalid, "copies must be 1 to 5"));
    }
    if !state
        .incall
        .lock()
        .has_document(&req.call_id, &req.document_id)
    {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no document {} issued in this call", req.document_id),
        ));
    }
    let job = Job {
        job_id: format!("pj-{}", uuid::Uuid::new_v4().simple()),
        call_id: req.call_id.clone(),
        kiosk: call.kiosk.clone(),
        operator: ctx.principal.id.clone(),
        document_id: req.document_id.clone(),
        copies: req.copies,
        state: None,
        detail: None,
        sent_at: now_s(),
    };
    save_job(state, &job).await;
    state.incall.lock().add_job(job.clone());
    append_audit(state, print_audit(&job, "requested", None)).await;
    let sessions = state.events.send_device(
        &kiosk_of(&call.kiosk),
        Capability::Printer,
        &print_job_event(&job),
    );
    tracing::info!(
        call = %req.call_id,
        job = %job.job_id,
        document = %req.document_id,
        sessions,
        "print job created"
    );
    Ok(serde_json::to_value(PrintCreated { job_id: job.job_id }).unwrap_or(Value::Null))
}

fn print_audit(job: &Job, state: &str, detail: Option<&str>) -> AuditEvent {
    let mut details = vec![
        ("job_id".to_owned(), job.job_id.clone()),
        ("state".to_owned(), state.to_owned()),
        ("copies".to_owned(), job.copies.to_string()),
    ];
    if let Some(d) = detail {
        details.push(("detail".into(), d.to_owned()));
    }
    AuditEvent {
        action: "print".into(),
        actor: Actor {
            operator: Some(job.operator.clone()),
            kiosk: Some(job.kiosk.clone()),
            ..Actor::default()
        },
        call_id: Some(job.call_id.clone()),
        document_id: Some(job.document_id.clone()),
        details,
        ..AuditEvent::default()
    }
}

/// `print.status` (kiosk agent).
pub async fn print_status(
    state: &AppState,
    ctx: &SessionCtx,
    req: PrintStatus,
) -> Result<Value, Refusal> {
    if ctx.principal.role != Role::Kiosk {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only kiosks report print status",
        ));
    }
    let detail = req.detail.map(|d| d.chars().take(200).collect::<String>());
    let changed = state.incall.lock().job_status(
        &ctx.principal.id,
        &req.job_id,
        req.state,
        detail.clone(),
    )?;
    let Some(job) = changed else {
        return Ok(Value::Null);
    };
    save_job(state, &job).await;
    tracing::info!(
        job = %job.job_id,
        state = req.state.as_str(),
        detail = detail.as_deref().unwrap_or(""),
        "print job update"
    );
    append_audit(
        state,
        print_audit(&job, req.state.as_str(), detail.as_deref()),
    )
    .await;
    let update = Arc::from(
        Event::PrintUpdate(PrintUpdate {
            job_id: job.job_id.clone(),
            state: req.state,
            detail,
            call_id: job.call_id.clone(),
            document_id: job.document_id.clone(),
        })
        .to_json(),
    );
    state.events.send(&operator_of(&job.operator), &update);
    state.events.send(&kiosk_of(&job.kiosk), &update);
    Ok(Value::Null)
}

/// A kiosk socket opened: its unacknowledged jobs go out again at once, and so does a card or
/// scan request still waiting for a device the socket declares (an agent that connects, or comes
/// back, after the operator asked).
pub fn on_socket(
    state: &AppState,
    principal: &Principal,
    socket: u64,
    capabilities: &[Capability],
) {
    if principal.role == Role::Operator {
        // A console that reloads learns again who is identified in its calls.
        let (state, operator) = (state.clone(), principal.id.clone());
        tokio::spawn(async move { resend_identities(&state, &operator, socket).await });
        return;
    }
    if principal.role != Role::Kiosk {
        return;
    }
    let waiting = state.incall.lock().waiting_devices(&principal.id);
    for (call_id, method, nonce) in waiting {
        let device = if method.is_card() {
            Capability::CardReader
        } else {
            Capability::Scanner
        };
        if capabilities.contains(&device) {
            tracing::info!(
                call = %call_id,
                method = method.as_str(),
                "identification request re-sent to a device that connected"
            );
            let frame = Arc::from(
                Event::IdentityRequested(IdentityRequested {
                    call_id,
                    method,
                    nonce,
                })
                .to_json(),
            );
            state.events.send_to_socket(socket, &frame);
        }
    }
    let wants_jobs = capabilities.is_empty() || capabilities.contains(&Capability::Printer);
    if !wants_jobs {
        return;
    }
    let now = now_s();
    let jobs = state.incall.lock().unacknowledged(&principal.id, now);
    for job in jobs {
        tracing::info!(job = %job.job_id, kiosk = %principal.id, "print job re-sent after reconnect");
        state.events.send_to_socket(socket, &print_job_event(&job));
    }
}

/// Sends `identity.verified` to an operator's new socket for each of their calls in conversation
/// whose citizen is identified.
async fn resend_identities(state: &AppState, operator: &str, socket: u64) {
    let r = &state.routing;
    let me = operator.to_owned();
    let calls = r
        .queue
        .read(&r.tenant, move |st| {
            st.calls
                .values()
                .filter(|c| match &c.state {
                    queue::CallState::Connected { operator }
                    | queue::CallState::Held { operator } => operator.as_str() == me,
                    _ => false,
                })
                .map(|c| c.call_id.to_string())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for call_id in calls {
        let identified = state.incall.lock().identified(&call_id).cloned();
        if let Some((method, subject)) = identified {
            let frame = Arc::from(
                Event::IdentityVerified(IdentityVerified {
                    call_id,
                    method,
                    subject,
                })
                .to_json(),
            );
            state.events.send_to_socket(socket, &frame);
        }
    }
}

/// Applies a committed queue effect: an ended call drops its identification and scans.
pub fn on_effect(state: &AppState, effect: &Effect) {
    if let Effect::CallEnded { call_id, .. } = effect {
        let dropped = state.incall.lock().call_ended(call_id.as_str());
        if dropped > 0 {
            tracing::info!(call = %call_id, scans = dropped, "call ended: scans deleted");
        }
    }
}

/// Re-sends unacknowledged print jobs every [`RESEND_S`] until the server stops.
pub async fn run_resends(state: AppState) {
    let mut phase = state.shutdown.subscribe();
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
        }
        let now = now_s();
        let (pruned, due) = {
            let mut a = state.incall.lock();
            (a.prune(now, 24.0 * 3600.0), a.due_resends(now, RESEND_S))
        };
        for id in pruned {
            let _ = tokio::fs::remove_file(state.incall.jobs.join(format!("{id}.json"))).await;
        }
        for job in due {
            state.events.send_device(
                &kiosk_of(&job.kiosk),
                Capability::Printer,
                &print_job_event(&job),
            );
        }
    }
}

/// The largest scan side in pixels: an A4 page at 600 dpi is 4,961 × 7,016.
pub const MAX_SCAN_SIDE: u32 = 10_000;

/// Decodes a whole scan with pixel and memory limits: only an image that decodes completely is
/// kept (a PNG or JPEG header in front of other data, a truncated file or a 60000 × 60000
/// "image" is refused before its pixels are allocated). Returns its size.
pub fn decode_scan(bytes: &[u8], format: image::ImageFormat) -> Result<(u32, u32), String> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SCAN_SIDE);
    limits.max_image_height = Some(MAX_SCAN_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| format!("the scan is not a whole image: {e}"))?;
    Ok((decoded.width(), decoded.height()))
}

/// `POST /api/v1/calls/{call_id}/scans` by the call's kiosk, while a document identification is
/// pending: stores the image for the call once it decodes.
pub async fn upload_scan(
    state: &AppState,
    who: &Principal,
    raw_call: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<String, Refusal> {
    if who.role != Role::Kiosk {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only the call's kiosk uploads scans",
        ));
    }
    let ctx = SessionCtx {
        principal: who.clone(),
        socket: 0,
    };
    own_call(state, &ctx, raw_call, Role::Kiosk).await?;
    let ct = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let sniffed = if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if body.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            "the scan must be a JPEG or PNG image",
        ));
    };
    if !ct.is_empty() && ct != sniffed {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            format!("content type {ct} does not match the image ({sniffed})"),
        ));
    }
    if body.len() > MAX_SCAN_BYTES {
        return Err(Refusal::new(ErrorCode::Invalid, "the scan is over 10 MiB"));
    }
    if state.incall.lock().pending(raw_call) != Some(IdentityMethod::Document) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "no document identification is pending: the operator asks for one first",
        ));
    }
    let image = body.to_vec();
    let format = if sniffed == "image/png" {
        image::ImageFormat::Png
    } else {
        image::ImageFormat::Jpeg
    };
    let (width, height) = tokio::task::spawn_blocking(move || decode_scan(&image, format))
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| Refusal::new(ErrorCode::Invalid, e))?;
    let scan_id = format!("scan-{}", uuid::Uuid::new_v4().simple());
    state.incall.lock().add_scan(
        raw_call,
        &scan_id,
        Scan {
            content_type: sniffed.into(),
            bytes: body.to_vec(),
        },
    )?;
    tracing::info!(call = raw_call, scan = %scan_id, bytes = body.len(), width, height, "scan uploaded");
    Ok(scan_id)
}

/// `GET /api/v1/calls/{call_id}/scans/{scan_id}` by the call's operator.
pub async fn get_scan(
    state: &AppState,
    who: &Principal,
    raw_call: &str,
    scan_id: &str,
) -> Result<Scan, Refusal> {
    let id: CallId = call_id(raw_call)?;
    let call = view(state, &id).await?;
    let allowed = match who.role {
        Role::Operator => call.operator.as_deref() == Some(&who.id),
        _ => false,
    };
    if !allowed {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only the call's operator sees its scans",
        ));
    }
    state
        .incall
        .lock()
        .scan(raw_call, scan_id)
        .cloned()
        .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no scan {scan_id}")))
}
