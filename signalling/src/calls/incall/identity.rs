//! The identification driver (`identity.*`): asks the kiosk's devices, verifies cards, mails PEC
//! codes, takes the operator's judgement of a scanned document, audits every attempt and tells
//! both parties. Each step is a core rule applied to the call's shared record
//! ([`super::store::InCallStore::change_call`]), so a step may reach any node.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use certificates::audit::{Actor, AuditEvent};
use certificates::{CertError, FiscalCode};
use protocol::incall::{
    IdentityCard, IdentityCardError, IdentityConfirm, IdentityFailed, IdentityMethod,
    IdentityPecCode, IdentityPecStart, IdentityProgress, IdentityReject, IdentityRequest,
    IdentityRequested, IdentityScan, IdentityVerified, PecSent, Subject,
};
use protocol::{Capability, ErrorCode, Event, Role};
use queue::Time;
use rand::Rng as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::common::{append_audit, cert_refusal, kiosk_of, method_label, own_call, to_both};
use super::core::CodeOutcome;
use crate::calls::media::CallView;
use crate::calls::{internal, Refusal, SessionCtx};
use crate::state::AppState;

/// One `identification` audit record.
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

/// Records a verified identity with the call, audits it and tells both sides.
async fn verified(
    state: &AppState,
    call_id: &str,
    call: &CallView,
    method: IdentityMethod,
    subject: Subject,
    details: Vec<(String, String)>,
) -> Result<(), Refusal> {
    state
        .incall
        .store
        .change_call(call_id, &call.kiosk, |c| {
            c.verified(method, subject.clone());
            Ok(())
        })
        .await?;
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
    Ok(())
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

async fn failed(
    state: &AppState,
    call_id: &str,
    call: &CallView,
    f: Failure<'_>,
) -> Result<(), Refusal> {
    if f.ends {
        state
            .incall
            .store
            .change_call(call_id, &call.kiosk, |c| {
                c.failed();
                Ok(())
            })
            .await?;
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
    Ok(())
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

/// The subject as the registry knows them (names and birth date).
async fn registry_subject(state: &AppState, cf: &FiscalCode) -> Result<Subject, CertError> {
    registry_person(state, cf).await.map(|person| Subject {
        fiscal_code: person.fiscal_code.to_string(),
        given_name: person.given_names.clone(),
        family_name: person.surname.clone(),
        birth_date: Some(certificates::dates::iso(person.birth.date)),
    })
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

/// The device a method needs.
fn device_of(method: IdentityMethod) -> Option<Capability> {
    match method {
        IdentityMethod::Cie | IdentityMethod::Cns => Some(Capability::CardReader),
        IdentityMethod::Document => Some(Capability::Scanner),
        IdentityMethod::Pec => None,
    }
}

fn requested_frame(call_id: &str, method: IdentityMethod, nonce: String) -> Arc<str> {
    Arc::from(
        Event::IdentityRequested(IdentityRequested {
            call_id: call_id.to_owned(),
            method,
            nonce,
        })
        .to_json(),
    )
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
        .store
        .change_call(&req.call_id, &call.kiosk, |c| {
            c.request(method, nonce.clone());
            Ok(())
        })
        .await?;
    let requested = requested_frame(&req.call_id, method, nonce.unwrap_or_default());
    let kiosk = kiosk_of(&call.kiosk);
    match device_of(method) {
        Some(device) => {
            state.events.send_device(&kiosk, device, &requested);
            let nodes = state.incall.device_nodes(&call.kiosk, device).await;
            tracing::info!(
                call = %req.call_id,
                method = method.as_str(),
                device_nodes = nodes,
                "identification requested"
            );
        }
        None => {
            state.events.send(&kiosk, &requested);
            tracing::info!(call = %req.call_id, method = method.as_str(), "identification requested");
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
    // Spent here, by one node only, before anything is checked.
    let (method, nonce) = state
        .incall
        .store
        .change_call(&req.call_id, &call.kiosk, |c| c.take_nonce())
        .await?;
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
            verified(state, &req.call_id, &call, method, subject, details).await?;
        }
        Err(e) => {
            let f = Failure::new(method, e.code(), e.to_string());
            failed(state, &req.call_id, &call, f).await?;
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
    let record = state.incall.store.call(&req.call_id).await?;
    let method = match record {
        Some(c) => c.card_pending()?,
        None => super::core::CallRecord::new(&call.kiosk).card_pending()?,
    };
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
    failed(state, &req.call_id, &call, failure).await?;
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
    let now = Time::now();
    let limits = state.incall.limits;
    let store = &state.incall.store;
    let record = store
        .call(&req.call_id)
        .await?
        .unwrap_or_else(|| super::core::CallRecord::new(&call.kiosk));
    record.pec_may_send(&limits, now)?;
    store.pec_sends(cf.as_str()).await?.may_send(&limits, now)?;
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
            failed(state, &req.call_id, &call, f.retry(None).about(&cf)).await?;
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
        failed(state, &req.call_id, &call, f.retry(None).about(&cf)).await?;
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
    store.pec_sent(cf.as_str(), now).await?;
    store
        .change_call(&req.call_id, &call.kiosk, |c| {
            c.pec_sent(cf.as_str(), &code, &limits, now);
            Ok(())
        })
        .await?;
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
    Ok(serde_json::to_value(PecSent {
        sent_to,
        expires_in_s: limits.ttl.as_secs(),
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
    let now = Time::now();
    let outcome = state
        .incall
        .store
        .change_call(&req.call_id, &call.kiosk, |c| c.pec_code(code, now))
        .await?;
    let method = IdentityMethod::Pec;
    let failure = match outcome {
        CodeOutcome::Verified(cf) => {
            let cf = FiscalCode::parse(&cf).map_err(|e| internal(&e))?;
            let subject = registry_subject(state, &cf).await.map_err(cert_refusal)?;
            verified(state, &req.call_id, &call, method, subject, vec![]).await?;
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
    failed(state, &req.call_id, &call, failure).await?;
    Ok(Value::Null)
}

/// `identity.scan` (kiosk).
pub async fn scan(state: &AppState, ctx: &SessionCtx, req: IdentityScan) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Kiosk).await?;
    state
        .incall
        .store
        .change_call(&req.call_id, &call.kiosk, |c| {
            c.scan_submitted(&req.scan_id)
        })
        .await?;
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
    let record = state
        .incall
        .store
        .call(&req.call_id)
        .await?
        .unwrap_or_else(|| super::core::CallRecord::new(&call.kiosk));
    let scan_id = record.judged_scan()?;
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
    .await?;
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
        .store
        .call(&req.call_id)
        .await?
        .and_then(|c| c.pending())
        .ok_or_else(|| Refusal::new(ErrorCode::Conflict, "no identification is pending"))?;
    let reason = req.reason.trim();
    let reason = if reason.is_empty() {
        "Identificazione non riuscita".to_owned()
    } else {
        reason.chars().take(200).collect()
    };
    let f = Failure::new(method, "rejected", reason);
    failed(state, &req.call_id, &call, f).await?;
    Ok(Value::Null)
}

/// The calls in conversation of a principal (`kiosk` or `operator`), from the queue.
async fn calls_in_conversation(state: &AppState, role: Role, id: &str) -> Vec<String> {
    let r = &state.routing;
    let me = id.to_owned();
    r.queue
        .read(&r.tenant, move |st| {
            st.calls
                .values()
                .filter(|c| match (&c.state, role) {
                    (
                        queue::CallState::Connected { operator }
                        | queue::CallState::Held { operator },
                        Role::Operator,
                    ) => operator.as_str() == me,
                    (
                        queue::CallState::Connected { .. } | queue::CallState::Held { .. },
                        Role::Kiosk,
                    ) => c.kiosk_id.as_str() == me,
                    _ => false,
                })
                .map(|c| c.call_id.to_string())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default()
}

/// Sends `identity.verified` to an operator's new socket for each of their calls in conversation
/// whose citizen is identified (a console that reloads, on any node).
pub(super) async fn resend_identities(state: &AppState, operator: &str, socket: u64) {
    for call_id in calls_in_conversation(state, Role::Operator, operator).await {
        let identified = match state.incall.store.call(&call_id).await {
            Ok(record) => record.and_then(|c| c.identified().cloned()),
            Err(e) => {
                tracing::warn!(call = %call_id, error = ?e, "identity not re-sent: store");
                None
            }
        };
        if let Some(id) = identified {
            let frame = Arc::from(
                Event::IdentityVerified(IdentityVerified {
                    call_id,
                    method: id.method,
                    subject: id.subject,
                })
                .to_json(),
            );
            state.events.send_to_socket(socket, &frame);
        }
    }
}

/// Sends a kiosk's new socket the card or scan requests still waiting for a device it declares
/// (an agent that connects, or comes back on any node, after the operator asked).
pub(super) async fn resend_requests(
    state: &AppState,
    kiosk: &str,
    socket: u64,
    capabilities: &[Capability],
) {
    for call_id in calls_in_conversation(state, Role::Kiosk, kiosk).await {
        let waiting = match state.incall.store.call(&call_id).await {
            Ok(record) => record.and_then(|c| c.waiting_device()),
            Err(e) => {
                tracing::warn!(call = %call_id, error = ?e, "request not re-sent: store");
                None
            }
        };
        let Some((method, nonce)) = waiting else {
            continue;
        };
        if device_of(method).is_some_and(|d| capabilities.contains(&d)) {
            tracing::info!(
                call = %call_id,
                method = method.as_str(),
                "identification request re-sent to a device that connected"
            );
            let frame = requested_frame(&call_id, method, nonce);
            state.events.send_to_socket(socket, &frame);
        }
    }
}
