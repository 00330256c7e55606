//! One English line per event, for people watching a kiosk from a terminal (the `sportello-kiosk`
//! binary without `--json`).

use protocol::Event;
use serde_json::Value;

/// The estimated wait as words: `estimated wait 3 min`, `estimated wait 40 s`, or
/// `estimated wait unknown (no operator online)` for `null`.
pub fn format_wait(estimated_wait_s: Option<u64>) -> String {
    match estimated_wait_s {
        None => "estimated wait unknown (no operator online)".to_owned(),
        Some(s) if s < 60 => format!("estimated wait {s} s"),
        Some(s) => format!("estimated wait {} min", s.div_ceil(60)),
    }
}

fn explain_end(reason: &str) -> &'static str {
    match reason {
        "completed" => " (the operator closed the call)",
        "abandoned" => " (cancelled before an operator answered)",
        "kiosk_lost" => " (the kiosk was disconnected for too long)",
        "operator_lost" => " (the operator was disconnected)",
        "transferred" => " (transferred)",
        crate::REASON_GONE => " (it ended while this client was disconnected)",
        _ => "",
    }
}

/// A one-line English description of an event.
///
/// ```
/// use protocol::{Event, QueueUpdate};
/// let line = kiosk_client::describe_event(&Event::QueueUpdate(QueueUpdate {
///     call_id: "c1".into(),
///     position: 2,
///     estimated_wait_s: Some(170),
///     estimated_wait_low_s: None,
///     estimated_wait_high_s: None,
/// }));
/// assert_eq!(line, "queued: position 2, estimated wait 3 min");
/// ```
pub fn describe_event(event: &Event) -> String {
    match event {
        Event::QueueUpdate(u) => format!(
            "queued: position {}, {}",
            u.position,
            format_wait(u.estimated_wait_s)
        ),
        Event::CallAssigned(a) => format!(
            "answered by {} ({})",
            a.operator.display_name, a.operator.id
        ),
        Event::CallHeld(_) => "on hold".to_owned(),
        Event::CallResumed(_) => "resumed".to_owned(),
        Event::CallRequeued(r) => match r.reason.as_str() {
            "operator_lost" => "back in the queue: the operator was disconnected".to_owned(),
            "transferred" => "back in the queue: transferred".to_owned(),
            other => format!("back in the queue: {other}"),
        },
        Event::CallEnded(e) => format!("call ended: {}{}", e.reason, explain_end(&e.reason)),
        Event::ServerDraining { grace_s } => {
            format!("the server is shutting down; reconnecting within {grace_s} s")
        }
        Event::StateSync(sync) => {
            if sync.calls.is_empty() {
                return "synchronised: no active call".to_owned();
            }
            let calls: Vec<String> = sync
                .calls
                .iter()
                .map(|c| match c.position {
                    Some(p) => format!("call {} {} (position {p})", c.call_id, c.state),
                    None => format!("call {} {}", c.call_id, c.state),
                })
                .collect();
            format!("synchronised: {}", calls.join(", "))
        }
        Event::CallOffered(o) => format!(
            "offered: call {} from {} ({}, {}), {} s to accept",
            o.call_id, o.kiosk.name, o.service, o.language, o.expires_in_s
        ),
        Event::CallOfferRevoked(r) => format!("offer of call {} revoked: {}", r.call_id, r.reason),
        Event::CallConnected(c) => format!("connected: call {} with {}", c.call_id, c.kiosk.name),
        Event::WrapupEnded(c) => format!("wrap-up of call {} ended", c.call_id),
        Event::OperatorState(s) => match &s.reason {
            Some(reason) => format!("operator {} is {} ({reason})", s.operator_id, s.state),
            None => format!("operator {} is {}", s.operator_id, s.state),
        },
        Event::MetricsSnapshot(m) => format!(
            "metrics at {}: {} services, {} operators",
            m.at,
            m.services.len(),
            m.operators.len()
        ),
        other => format!("event {}", other.kind()),
    }
}

/// A one-line description of a frame this client version does not know.
pub fn describe_unknown(value: &Value) -> String {
    match value.get("type").and_then(Value::as_str) {
        Some(kind) => format!("event {kind} (not known to this client)"),
        None => format!("unreadable frame {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallAssigned, CallEnded, OperatorInfo, QueueUpdate, StateSync};

    #[test]
    fn waits_read_naturally() {
        assert_eq!(
            format_wait(None),
            "estimated wait unknown (no operator online)"
        );
        assert_eq!(format_wait(Some(0)), "estimated wait 0 s");
        assert_eq!(format_wait(Some(59)), "estimated wait 59 s");
        assert_eq!(format_wait(Some(60)), "estimated wait 1 min");
        assert_eq!(format_wait(Some(61)), "estimated wait 2 min");
    }

    #[test]
    fn kiosk_events_have_plain_lines() {
        assert_eq!(
            describe_event(&Event::QueueUpdate(QueueUpdate {
                call_id: "c".into(),
                position: 1,
                estimated_wait_s: None,
                estimated_wait_low_s: None,
                estimated_wait_high_s: None,
            })),
            "queued: position 1, estimated wait unknown (no operator online)"
        );
        assert_eq!(
            describe_event(&Event::CallAssigned(CallAssigned {
                call_id: "c".into(),
                operator: OperatorInfo {
                    id: "maria.rossi".into(),
                    display_name: "Maria Rossi".into(),
                },
            })),
            "answered by Maria Rossi (maria.rossi)"
        );
        assert_eq!(
            describe_event(&Event::CallEnded(CallEnded {
                call_id: "c".into(),
                reason: "completed".into(),
            })),
            "call ended: completed (the operator closed the call)"
        );
        assert_eq!(
            describe_event(&Event::StateSync(StateSync {
                calls: vec![],
                operator_state: None,
                dispositions: None,
            })),
            "synchronised: no active call"
        );
        assert_eq!(
            describe_unknown(&serde_json::json!({"type": "media.stats"})),
            "event media.stats (not known to this client)"
        );
    }
}
