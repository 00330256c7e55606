//! What every in-call driver shares: the ownership check against the queue's view of the call,
//! refusal codes, event delivery to the call's parties, the audit log. The drivers read the clock
//! as [`queue::Time::now`] and pass it to the core.

use std::sync::Arc;

use certificates::audit::AuditEvent;
use certificates::CertError;
use protocol::incall::IdentityMethod;
use protocol::{ErrorCode, Event, Role};
use time::OffsetDateTime;

use super::core::{party_in_conversation, Parties, Refused};
use super::store::StoreError;
use crate::calls::events::Recipient;
use crate::calls::media::{view, CallView};
use crate::calls::{call_id, internal, Refusal, SessionCtx};
use crate::state::AppState;

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NotPending(m) | Refused::NotInConversation(m) => {
                Refusal::new(ErrorCode::Conflict, m)
            }
            Refused::RateLimited(m) => Refusal::new(ErrorCode::RateLimited, m),
            Refused::NotFound(m) => Refusal::new(ErrorCode::NotFound, m),
            Refused::Forbidden(m) => Refusal::new(ErrorCode::Forbidden, m),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => r.into(),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "in-call store unavailable");
                Refusal::new(ErrorCode::Unavailable, m)
            }
        }
    }
}

/// A certificates error as a protocol refusal.
pub(super) fn cert_refusal(e: CertError) -> Refusal {
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

/// The `reason` label of `sportello_certificate_failures_total` for an issuing error, or `None`
/// for a refusal of the request itself (bad input, not issuable, not allowed), which is no failure
/// of the service.
pub(super) fn failure_reason(e: &CertError) -> Option<&'static str> {
    match e {
        CertError::InvalidFiscalCode(_)
        | CertError::UnknownKind(_)
        | CertError::UnknownExemption(_)
        | CertError::MissingInput(_)
        | CertError::PersonNotFound(_)
        | CertError::NotIssuable(_)
        | CertError::NotAllowed(_) => None,
        CertError::Registry(_) => Some("registry"),
        CertError::SignerKey(_)
        | CertError::StampFormat(_)
        | CertError::UntrustedSigner(_)
        | CertError::BadSignature
        | CertError::SignerNotValid => Some("signing"),
        CertError::Pdf(_) => Some("pdf"),
        CertError::AuditTampered { .. } => Some("audit"),
        CertError::Io { .. } => Some("io"),
        _ => Some("internal"),
    }
}

/// Ids used in file names: letters, digits and `-`.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub(super) fn kiosk_of(kiosk: &str) -> Recipient {
    Recipient {
        role: Role::Kiosk,
        id: kiosk.to_owned(),
    }
}

pub(super) fn operator_of(operator: &str) -> Recipient {
    Recipient {
        role: Role::Operator,
        id: operator.to_owned(),
    }
}

/// Sends an event to every session of `to`, on every node.
pub(super) fn send(state: &AppState, to: &Recipient, event: Event) {
    state.events.send(to, &Arc::from(event.to_json()));
}

/// Sends an event to the call's kiosk (every session) and operator, on every node.
pub(super) fn to_both(state: &AppState, call: &CallView, event: Event) {
    let frame: Arc<str> = Arc::from(event.to_json());
    state.events.send(&kiosk_of(&call.kiosk), &frame);
    if let Some(op) = &call.operator {
        state.events.send(&operator_of(op), &frame);
    }
}

/// The call, checked (by the core's rule) to be in conversation and to be `ctx`'s in `role`.
pub(super) async fn own_call(
    state: &AppState,
    ctx: &SessionCtx,
    raw: &str,
    role: Role,
) -> Result<CallView, Refusal> {
    let id = call_id(raw)?;
    let call = view(state, &id).await?;
    party_in_conversation(
        &ctx.principal,
        role,
        &Parties {
            call: raw,
            kiosk: &call.kiosk,
            operator: call.operator.as_deref(),
            in_conversation: call.in_call,
        },
    )?;
    Ok(call)
}

/// The method as the audit log names it.
pub(super) fn method_label(m: IdentityMethod) -> &'static str {
    match m {
        IdentityMethod::Cie => "cie",
        IdentityMethod::Cns => "cns",
        IdentityMethod::Pec => "pec",
        IdentityMethod::Document => "documento cartaceo",
    }
}

/// Appends an audit record (off the async threads). A record that cannot be written is logged as
/// an error; the outcome itself is still reported.
pub(crate) async fn append_audit(state: &AppState, event: AuditEvent) {
    let issuer = state.issuer.clone();
    let action = event.action.clone();
    let written = tokio::task::spawn_blocking(move || {
        issuer.audit().append(event, OffsetDateTime::now_utc())
    })
    .await;
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            if matches!(e, CertError::AuditTampered { .. }) {
                state.metrics.audit_chain_ok.set(0);
            }
            tracing::error!(error = %e, %action, "audit record not written")
        }
        Err(e) => tracing::error!(error = %e, %action, "audit task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_no_failures_and_failures_have_a_known_reason() {
        for refusal in [
            CertError::InvalidFiscalCode("x".into()),
            CertError::PersonNotFound("x".into()),
            CertError::NotIssuable("x".into()),
            CertError::NotAllowed("x".into()),
        ] {
            assert_eq!(failure_reason(&refusal), None, "{refusal}");
        }
        for (e, reason) in [
            (CertError::Registry("down".into()), "registry"),
            (CertError::SignerKey("bad".into()), "signing"),
            (CertError::Pdf("font".into()), "pdf"),
            (
                CertError::AuditTampered {
                    line: 3,
                    reason: "x".into(),
                },
                "audit",
            ),
        ] {
            assert_eq!(failure_reason(&e), Some(reason));
            assert!(crate::metrics::CERTIFICATE_FAILURES.contains(&reason));
        }
    }
}
