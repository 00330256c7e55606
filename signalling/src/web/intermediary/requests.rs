//! An intermediary's audit trail: its requests as the audit log recorded them (issued, refused,
//! downloaded), for the supervisor's `GET /api/v1/intermediary-requests` and
//! `sportello intermediary requests NAME`.

use std::path::Path;

use certificates::audit::AuditRecord;
use certificates::CertError;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

/// One audited request of an intermediary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntermediaryRequest {
    /// The audit record's sequence number.
    pub seq: u64,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// `certificate.issued`, `certificate.refused`, `certificate.downloaded`,
    /// `certificate.download_refused`.
    pub action: String,
    /// The certificate kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The subject's fiscal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fiscal_code: Option<String>,
    /// The document, when one was issued or downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// The stated reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The reference of the citizen's delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_ref: Option<String>,
    /// The error code of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The message of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether `record` is one of `name`'s, on a day (Europe/Rome) within `from..=to`.
pub fn selects(record: &AuditRecord, name: &str, from: Option<Date>, to: Option<Date>) -> bool {
    if record.event.actor.intermediary.as_deref() != Some(name) {
        return false;
    }
    let Ok(at) =
        OffsetDateTime::parse(&record.time, &time::format_description::well_known::Rfc3339)
    else {
        return false;
    };
    let day = certificates::issuer::italian_time(at).date();
    from.is_none_or(|f| day >= f) && to.is_none_or(|t| day <= t)
}

/// A record as the report shows it.
pub fn of_record(record: &AuditRecord) -> IntermediaryRequest {
    let detail = |k: &str| {
        record
            .event
            .details
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    IntermediaryRequest {
        seq: record.seq,
        time: record.time.clone(),
        action: record.event.action.clone(),
        kind: record.event.kind.clone(),
        fiscal_code: record.event.subject.clone(),
        document_id: record.event.document_id.clone(),
        reason: record.event.reason.clone(),
        consent_ref: record.event.actor.consent_ref.clone(),
        code: detail("code"),
        message: detail("message"),
    }
}

/// `name`'s requests in the audit log at `audit_log`, oldest first.
pub fn requests(
    audit_log: &Path,
    name: &str,
    from: Option<Date>,
    to: Option<Date>,
) -> Result<Vec<IntermediaryRequest>, CertError> {
    Ok(
        certificates::audit_records(audit_log, |r| selects(r, name, from, to))?
            .iter()
            .map(of_record)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use certificates::audit::{Actor, AuditEvent};

    fn record(name: &str, time: &str) -> AuditRecord {
        AuditRecord {
            seq: 7,
            time: time.into(),
            prev: String::new(),
            event: AuditEvent {
                action: "certificate.refused".into(),
                actor: Actor {
                    intermediary: Some(name.into()),
                    consent_ref: Some("D-1".into()),
                    ..Actor::default()
                },
                reason: Some("pensione".into()),
                details: vec![("code".into(), "conflict".into())],
                ..AuditEvent::default()
            },
        }
    }

    #[test]
    fn selects_by_name_and_rome_day() {
        let d = |s: &str| certificates::dates::parse_date(s).unwrap();
        // 23:30 UTC on the 2nd is the 3rd in Rome.
        let r = record("inca", "2026-12-02T23:30:00Z");
        assert!(selects(&r, "inca", None, None));
        assert!(!selects(&r, "acli", None, None));
        assert!(selects(
            &r,
            "inca",
            Some(d("2026-12-03")),
            Some(d("2026-12-03"))
        ));
        assert!(!selects(&r, "inca", None, Some(d("2026-12-02"))));
        let shown = of_record(&r);
        assert_eq!(shown.consent_ref.as_deref(), Some("D-1"));
        assert_eq!(shown.code.as_deref(), Some("conflict"));
        assert_eq!(shown.reason.as_deref(), Some("pensione"));
    }
}
