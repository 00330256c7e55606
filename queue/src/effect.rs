//! Effects: what the core decided, for the server to carry out.
//!
//! The core never sends anything. Each operation returns an [`Applied`] batch; the server turns offers,
//! revokes and queue updates into protocol events, and feeds [`MetricEvent`]s to Prometheus.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{CallId, KioskId, Language, NodeId, OperatorId, OperatorState, Service, Time};

/// The effects of one committed operation, with the tenant's state version after it.
///
/// Versions grow by one per committed operation of a tenant, across all nodes, so batches from several
/// nodes can be put back in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Applied {
    /// The tenant state version this batch produced (0 when nothing was committed).
    pub version: u64,
    /// The effects, in the order they happened.
    pub effects: Vec<Effect>,
}

/// Why an offer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferOutcome {
    /// The operator accepted it.
    Accepted,
    /// The operator rejected it.
    Rejected,
    /// The lease ran out.
    Expired,
    /// The kiosk cancelled the call.
    Cancelled,
    /// The kiosk was lost.
    KioskLost,
    /// The operator was lost, paused or went offline.
    OperatorGone,
}

/// Why a call ended for the kiosk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The operator ended a conversation.
    Completed,
    /// The kiosk cancelled while waiting or offered.
    Abandoned,
    /// The kiosk was lost (past the resume grace).
    KioskLost,
}

/// Why a call went back to waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequeueReason {
    /// Its operator was lost; it goes to the head of the queue.
    OperatorLost,
    /// It was transferred to a service or a person.
    Transferred,
}

/// One thing for the server to do or record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Send `call.offered` to the operator.
    Offer {
        /// The call offered.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// The operator offered to.
        operator_id: OperatorId,
        /// The node holding the operator's connection.
        operator_node: NodeId,
        /// The call's service.
        service: Service,
        /// The call's language.
        language: Language,
        /// How long the call has waited since it first entered the queue.
        waited: Duration,
        /// When the offer expires.
        expires_at: Time,
    },
    /// An offer ended; for anything but `accepted` send `call.offer_revoked` to the operator.
    OfferClosed {
        /// The call.
        call_id: CallId,
        /// The operator who held the offer.
        operator_id: OperatorId,
        /// How it ended.
        outcome: OfferOutcome,
    },
    /// The operator accepted: send `call.assigned` to the kiosk.
    Assigned {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// The operator now on the call.
        operator_id: OperatorId,
    },
    /// Send `queue.update` to the kiosk: its position and estimated wait changed.
    QueueUpdate {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// 1-based position among the waiting calls of its service.
        position: u32,
        /// The estimate (the median of the queue's replays, `estimate.rs`), or `None` when no
        /// eligible operator is online (the kiosk says it is unknown).
        /// It is re-sent only when it moves by 15 s or a tenth, or the position changes.
        estimated_wait: Option<Duration>,
        /// Where the wait is likely to fall, `(low, high)` in whole seconds with
        /// `low ≤ estimated_wait ≤ high` (see `estimate::INTERVAL`); `None` exactly when
        /// `estimated_wait` is. It travels with each update but does not cause one by itself
        /// (absent in batches from nodes that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval: Option<(Duration, Duration)>,
    },
    /// The call went back to waiting, keeping its age.
    Requeued {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// The operator it left, if any.
        from_operator: Option<OperatorId>,
        /// Why.
        reason: RequeueReason,
    },
    /// The operator put the call on hold: send `call.held` to the kiosk.
    Held {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// The operator.
        operator_id: OperatorId,
    },
    /// The operator took the call off hold: send `call.resumed` to the kiosk.
    Resumed {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// The operator.
        operator_id: OperatorId,
    },
    /// Send `call.ended` to the kiosk (and to the operator, if any).
    CallEnded {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// The operator on it, if it had been answered.
        operator_id: Option<OperatorId>,
        /// Why.
        reason: EndReason,
    },
    /// A wrap-up finished (by `wrapup_done` or by timeout); the call is gone from the queue.
    WrapupEnded {
        /// The call.
        call_id: CallId,
        /// The operator.
        operator_id: OperatorId,
    },
    /// An operator's visible state changed (for example the missed-offer pause).
    OperatorStateChanged {
        /// The operator.
        operator_id: OperatorId,
        /// The new state.
        state: OperatorState,
    },
    /// The call's media was placed on a media node. With a `previous` node, the media moved: send
    /// `media.reconnect` to the kiosk, the operator and the call's monitors.
    MediaPlaced {
        /// The call.
        call_id: CallId,
        /// Its kiosk.
        kiosk_id: KioskId,
        /// Its operator.
        operator_id: Option<OperatorId>,
        /// The media node it is on now.
        node: String,
        /// The node it was on, if any.
        previous: Option<String>,
        /// Why it moved (empty for a first placement).
        reason: String,
    },
    /// A metric event; Prometheus counters and histograms are fed from these.
    Metric(MetricEvent),
    /// For the call history: what the queue knew of a call when it ended (right after its
    /// `CallEnded`) and again when its wrap-up ended (right after its `WrapupEnded`, then with
    /// `wrapup_ended_at` and `handle`).
    Record(Box<CallRecord>),
}

/// What the call history keeps of a call, from the queue's side (`Effect::Record`). Its `wait`,
/// `short_abandon`, `sl_threshold` and `handle` are exactly what the queue's metrics counted, so
/// reports built from records agree with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call.
    pub call_id: CallId,
    /// Its kiosk.
    pub kiosk_id: KioskId,
    /// Its service at the end (after any transfer).
    pub service: Service,
    /// The citizen's language.
    pub language: Language,
    /// The operator at the end, if it was answered.
    pub operator_id: Option<OperatorId>,
    /// Every operator who answered it, in order.
    pub operators: Vec<OperatorId>,
    /// How it ended.
    pub reason: EndReason,
    /// When the kiosk asked (entered the queue first).
    pub enqueued_at: Time,
    /// When it entered its last service's queue.
    pub queued_at: Time,
    /// When it was first offered.
    pub offered_at: Option<Time>,
    /// When it was first answered.
    pub answered_at: Option<Time>,
    /// When its last operator accepted it.
    pub accepted_at: Option<Time>,
    /// When the conversation (or the wait) ended.
    pub ended_at: Time,
    /// Time on hold.
    pub held: Duration,
    /// Times put on hold.
    pub holds: u32,
    /// Times transferred.
    pub transfers: u32,
    /// The wait the metrics counted: to its last acceptance, or to its end when never answered
    /// there (both from `queued_at`).
    pub wait: Duration,
    /// The service-level threshold of its service at the time.
    pub sl_threshold: Duration,
    /// An abandon shorter than the short-abandon limit (counted apart).
    pub short_abandon: bool,
    /// The tenant-local day it was asked on (days since 1970-01-01).
    pub day: i64,
    /// When its wrap-up ended (the second record only).
    pub wrapup_ended_at: Option<Time>,
    /// Connected + hold + wrap-up time, as the metrics' handle time (the second record only).
    pub handle: Option<Duration>,
}

/// A measurement for Prometheus. These carry no call identifiers, only services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum MetricEvent {
    /// A call entered a service's queue (new or transferred in).
    Offered {
        /// The service.
        service: Service,
    },
    /// A call was accepted after waiting `wait`.
    Answered {
        /// The service.
        service: Service,
        /// Time from entering the queue to acceptance.
        wait: Duration,
    },
    /// A call ended while waiting or offered.
    Abandoned {
        /// The service.
        service: Service,
        /// How long it waited.
        wait: Duration,
        /// Whether it was a short abandon (counted apart).
        short: bool,
    },
    /// A call was transferred out of this service.
    Transferred {
        /// The service it left.
        service: Service,
    },
    /// A call was handled to the end of its wrap-up.
    Handled {
        /// The service.
        service: Service,
        /// Connected + hold + wrap-up time.
        handle: Duration,
    },
}
