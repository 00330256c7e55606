//! Pure translation from what the queue decided ([`queue::Effect`]) to protocol events and who gets
//! them, plus the read-only views sent as `state.sync` and `metrics.snapshot`.
//!
//! Nothing here does I/O: the delivery task feeds committed batches in and hands the resulting
//! `(recipient, event)` pairs to the sessions of this process.

use std::time::Duration;

use protocol::{
    CallAssigned, CallConnected, CallEnded, CallOfferRevoked, CallOffered, CallRef, CallRequeued,
    Event, KioskInfo, MetricsSnapshot, OperatorCall, OperatorInfo, OperatorMetrics,
    OperatorStateEvent, QueueUpdate, Role, ServiceMetrics, StateSync, SyncedCall, WindowMetrics,
};
use queue::{
    CallState, Effect, EndReason, OfferOutcome, OperatorState, QueueConfig, RequeueReason,
    Snapshot, TenantState, Time,
};

use crate::accounts::Directory;

/// Who an event is for: every session of that principal, on whichever node it is connected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The principal's role.
    pub role: Role,
    /// The kiosk id or operator user name.
    pub id: String,
}

impl Recipient {
    fn kiosk(id: &queue::KioskId) -> Self {
        Recipient {
            role: Role::Kiosk,
            id: id.to_string(),
        }
    }

    fn operator(id: &queue::OperatorId) -> Self {
        Recipient {
            role: Role::Operator,
            id: id.to_string(),
        }
    }
}

/// Names of kiosks and operators, for the events that show them.
pub trait Names {
    /// A kiosk as operators see it.
    fn kiosk(&self, id: &str) -> KioskInfo;
    /// An operator as kiosks see them.
    fn operator(&self, id: &str) -> OperatorInfo;
}

impl Names for Directory {
    fn kiosk(&self, id: &str) -> KioskInfo {
        match Directory::kiosk(self, id) {
            Some(k) => KioskInfo {
                id: k.id.clone(),
                name: k.name.clone(),
                location: k.location.clone(),
            },
            None => KioskInfo {
                id: id.to_owned(),
                name: id.to_owned(),
                location: String::new(),
            },
        }
    }

    fn operator(&self, id: &str) -> OperatorInfo {
        OperatorInfo {
            id: id.to_owned(),
            display_name: Directory::operator(self, id)
                .map(|o| o.display_name.clone())
                .unwrap_or_else(|| id.to_owned()),
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Whole seconds from `now` until `at`, rounded up, so a client never believes an offer ends before
/// it does.
fn secs_until(at: Time, now: Time) -> u64 {
    at.as_millis()
        .saturating_sub(now.as_millis())
        .div_ceil(1000)
}

fn secs_f(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_millis() as f64 / 1000.0 * 10.0).round() / 10.0)
}

/// The wire name of why a call ended.
pub fn end_reason(r: EndReason) -> &'static str {
    match r {
        EndReason::Completed => "completed",
        EndReason::Abandoned => "abandoned",
        EndReason::KioskLost => "kiosk_lost",
    }
}

fn requeue_reason(r: RequeueReason) -> &'static str {
    match r {
        RequeueReason::OperatorLost => "operator_lost",
        RequeueReason::Transferred => "transferred",
    }
}

fn revoke_reason(o: OfferOutcome) -> Option<&'static str> {
    match o {
        OfferOutcome::Accepted => None,
        OfferOutcome::Rejected => Some("rejected"),
        OfferOutcome::Expired => Some("expired"),
        OfferOutcome::Cancelled => Some("abandoned"),
        OfferOutcome::KioskLost => Some("kiosk_lost"),
        OfferOutcome::OperatorGone => Some("operator_unavailable"),
    }
}

/// The `operator.state` body of a queue state.
pub fn operator_state(id: &str, state: &OperatorState) -> OperatorStateEvent {
    OperatorStateEvent {
        operator_id: id.to_owned(),
        state: state.label().to_owned(),
        reason: match state {
            OperatorState::Paused(r) => Some(r.clone()),
            _ => None,
        },
    }
}

/// The events one effect causes, and for whom. `now` dates offer countdowns.
pub fn events_for(effect: &Effect, now: Time, names: &dyn Names) -> Vec<(Recipient, Event)> {
    match effect {
        Effect::Offer {
            call_id,
            kiosk_id,
            operator_id,
            service,
            language,
            waited,
            expires_at,
            ..
        } => vec![(
            Recipient::operator(operator_id),
            Event::CallOffered(CallOffered {
                call_id: call_id.to_string(),
                kiosk: names.kiosk(kiosk_id.as_str()),
                service: service.to_string(),
                language: language.to_string(),
                waited_s: secs(*waited),
                expires_in_s: secs_until(*expires_at, now),
            }),
        )],
        Effect::OfferClosed {
            call_id,
            operator_id,
            outcome,
        } => match revoke_reason(*outcome) {
            Some(reason) => vec![(
                Recipient::operator(operator_id),
                Event::CallOfferRevoked(CallOfferRevoked {
                    call_id: call_id.to_string(),
                    reason: reason.to_owned(),
                }),
            )],
            None => Vec::new(),
        },
        Effect::Assigned {
            call_id,
            kiosk_id,
            operator_id,
        } => vec![
            (
                Recipient::kiosk(kiosk_id),
                Event::CallAssigned(CallAssigned {
                    call_id: call_id.to_string(),
                    operator: names.operator(operator_id.as_str()),
                }),
            ),
            (
                Recipient::operator(operator_id),
                Event::CallConnected(CallConnected {
                    call_id: call_id.to_string(),
                    kiosk: names.kiosk(kiosk_id.as_str()),
                }),
            ),
        ],
        Effect::QueueUpdate {
            call_id,
            kiosk_id,
            position,
            estimated_wait,
            interval,
        } => vec![(
            Recipient::kiosk(kiosk_id),
            Event::QueueUpdate(QueueUpdate {
                call_id: call_id.to_string(),
                position: *position,
                estimated_wait_s: estimated_wait.map(secs),
                // Only beside an estimate (the queue gives both or neither).
                estimated_wait_low_s: estimated_wait.and(interval.map(|(low, _)| secs(low))),
                estimated_wait_high_s: estimated_wait.and(interval.map(|(_, high)| secs(high))),
            }),
        )],
        Effect::Held {
            call_id,
            kiosk_id,
            operator_id,
        }
        | Effect::Resumed {
            call_id,
            kiosk_id,
            operator_id,
        } => {
            let body = CallRef {
                call_id: call_id.to_string(),
            };
            let event = if matches!(effect, Effect::Held { .. }) {
                Event::CallHeld(body)
            } else {
                Event::CallResumed(body)
            };
            vec![
                (Recipient::kiosk(kiosk_id), event.clone()),
                (Recipient::operator(operator_id), event),
            ]
        }
        Effect::Requeued {
            call_id,
            kiosk_id,
            from_operator,
            reason,
        } => {
            let reason = requeue_reason(*reason).to_owned();
            let mut out = vec![(
                Recipient::kiosk(kiosk_id),
                Event::CallRequeued(CallRequeued {
                    call_id: call_id.to_string(),
                    reason: reason.clone(),
                }),
            )];
            if let Some(op) = from_operator {
                out.push((
                    Recipient::operator(op),
                    Event::CallEnded(CallEnded {
                        call_id: call_id.to_string(),
                        reason,
                    }),
                ));
            }
            out
        }
        Effect::CallEnded {
            call_id,
            kiosk_id,
            operator_id,
            reason,
        } => {
            let event = Event::CallEnded(CallEnded {
                call_id: call_id.to_string(),
                reason: end_reason(*reason).to_owned(),
            });
            let mut out = vec![(Recipient::kiosk(kiosk_id), event.clone())];
            if let Some(op) = operator_id {
                out.push((Recipient::operator(op), event));
            }
            out
        }
        Effect::WrapupEnded {
            call_id,
            operator_id,
        } => vec![(
            Recipient::operator(operator_id),
            Event::WrapupEnded(CallRef {
                call_id: call_id.to_string(),
            }),
        )],
        Effect::OperatorStateChanged { operator_id, state } => vec![(
            Recipient::operator(operator_id),
            Event::OperatorState(operator_state(operator_id.as_str(), state)),
        )],
        Effect::MediaPlaced {
            call_id,
            kiosk_id,
            operator_id,
            previous: Some(_),
            reason,
            ..
        } => {
            // The media moved to another node: both parties offer again (monitoring supervisors
            // are told by `calls::media`, which knows them).
            let event = Event::MediaReconnect(protocol::media::MediaReconnect {
                call_id: call_id.to_string(),
                reason: reason.clone(),
            });
            let mut out = vec![(Recipient::kiosk(kiosk_id), event.clone())];
            if let Some(op) = operator_id {
                out.push((Recipient::operator(op), event));
            }
            out
        }
        Effect::MediaPlaced { .. } | Effect::Metric(_) | Effect::Record(_) => Vec::new(),
    }
}

/// What `state.sync` tells `who` about their calls, from the tenant's current state.
pub fn state_sync(
    st: &TenantState,
    cfg: &QueueConfig,
    now: Time,
    who: &Recipient,
    names: &dyn Names,
) -> StateSync {
    let mut calls = Vec::new();
    let mut operator_state_event = None;
    match who.role {
        Role::Kiosk => {
            for c in st.calls.values().filter(|c| c.kiosk_id.as_str() == who.id) {
                // A call in wrap-up has ended for the kiosk.
                if matches!(c.state, CallState::WrapUp { .. }) {
                    continue;
                }
                calls.push(SyncedCall {
                    call_id: c.call_id.to_string(),
                    state: kiosk_view(&c.state).to_owned(),
                    service: c.service.to_string(),
                    language: c.language.to_string(),
                    kiosk: None,
                    operator: match &c.state {
                        CallState::Connected { operator } | CallState::Held { operator } => {
                            Some(names.operator(operator.as_str()))
                        }
                        _ => None,
                    },
                    waited_s: secs(now.since(c.enqueued_at)),
                    expires_in_s: None,
                    position: c.last_update.map(|(p, _)| p),
                    estimated_wait_s: c.last_update.and_then(|(_, w)| w.map(|ms| ms / 1000)),
                    // The interval sent with that estimate, only while there is one.
                    estimated_wait_low_s: c
                        .last_update
                        .and_then(|(_, w)| w)
                        .and(c.last_interval.map(|(low, _)| low)),
                    estimated_wait_high_s: c
                        .last_update
                        .and_then(|(_, w)| w)
                        .and(c.last_interval.map(|(_, high)| high)),
                    media_node: c.media_node.clone(),
                });
            }
        }
        Role::Operator => {
            for c in st
                .calls
                .values()
                .filter(|c| c.state.operator().is_some_and(|o| o.as_str() == who.id))
            {
                calls.push(SyncedCall {
                    call_id: c.call_id.to_string(),
                    state: c.state.name().to_owned(),
                    service: c.service.to_string(),
                    language: c.language.to_string(),
                    kiosk: Some(names.kiosk(c.kiosk_id.as_str())),
                    operator: None,
                    waited_s: secs(now.since(c.enqueued_at)),
                    expires_in_s: match c.state {
                        CallState::Offered { expires_at, .. } => Some(secs_until(expires_at, now)),
                        _ => None,
                    },
                    position: None,
                    estimated_wait_s: None,
                    estimated_wait_low_s: None,
                    estimated_wait_high_s: None,
                    media_node: c.media_node.clone(),
                });
            }
            if let Some(op) = st
                .operators
                .values()
                .find(|o| o.operator_id.as_str() == who.id)
            {
                operator_state_event = Some(operator_state(
                    &who.id,
                    &queue::core::visible_state(op, cfg),
                ));
            }
        }
        Role::Supervisor => {}
    }
    StateSync {
        calls,
        operator_state: operator_state_event,
        dispositions: None,
    }
}

/// A kiosk sees an offered call as still waiting: the offer is between the queue and the operator.
fn kiosk_view(state: &CallState) -> &'static str {
    match state {
        CallState::Waiting | CallState::Offered { .. } => "waiting",
        other => other.name(),
    }
}

/// RFC 3339 UTC text of a queue time.
pub fn rfc3339(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.as_millis() as i64)
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}

/// The `metrics.snapshot` body of a queue snapshot. The main figures are the tenant-local "today"
/// window; `last_15m` carries the rolling window.
pub fn metrics_snapshot(s: &Snapshot, names: &dyn Names) -> MetricsSnapshot {
    MetricsSnapshot {
        at: rfc3339(s.at),
        services: s
            .services
            .iter()
            .map(|svc| ServiceMetrics {
                service: svc.service.to_string(),
                waiting: svc.waiting,
                longest_wait_s: secs(svc.longest_wait),
                estimated_wait_s: svc.estimated_wait.map(secs),
                offered: svc.today.offered,
                answered: svc.today.answered,
                abandoned: svc.today.abandoned,
                service_level: svc.today.service_level,
                asa_s: secs_f(svc.today.asa),
                aht_s: secs_f(svc.today.aht),
                abandoned_short: svc.today.abandoned_short,
                transferred: svc.today.transferred,
                last_15m: WindowMetrics {
                    offered: svc.rolling.offered,
                    answered: svc.rolling.answered,
                    abandoned: svc.rolling.abandoned,
                    service_level: svc.rolling.service_level,
                    asa_s: secs_f(svc.rolling.asa),
                    aht_s: secs_f(svc.rolling.aht),
                },
            })
            .collect(),
        operators: s
            .operators
            .iter()
            .map(|o| OperatorMetrics {
                id: o.id.to_string(),
                display_name: names.operator(o.id.as_str()).display_name,
                state: o.state.label().to_owned(),
                reason: match &o.state {
                    OperatorState::Paused(r) => Some(r.clone()),
                    _ => None,
                },
                load: o.load,
                capacity: o.capacity,
                occupancy: o.occupancy,
                calls: o
                    .calls
                    .iter()
                    .map(|c| OperatorCall {
                        call_id: c.call_id.to_string(),
                        kiosk_id: c.kiosk_id.to_string(),
                        state: c.state.clone(),
                        since: rfc3339(c.since),
                    })
                    .collect(),
            })
            .collect(),
        media_nodes: Vec::new(),
    }
}
