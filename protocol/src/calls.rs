//! Bodies of the call-lifecycle messages: what kiosks, operators and supervisors send about calls,
//! and the events the server sends back (`protocol.md`, sections Kiosk, Operator and Supervisor).
//!
//! Reasons and states that may grow later are plain strings on the event side, so an older client
//! keeps parsing events from a newer server.

use serde::{Deserialize, Serialize};

/// `call.request`: a kiosk asks for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequest {
    /// The service (skill), e.g. `anagrafe` or `stato_civile`.
    pub service: String,
    /// The citizen's language (default `it`).
    #[serde(default = "default_language")]
    pub language: String,
    /// Priority 0–9, higher first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

fn default_language() -> String {
    "it".to_owned()
}

/// The `ok` body of `call.request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCreated {
    /// The new call's id.
    pub call_id: String,
}

/// A request that names one call: `call.cancel`, `call.accept`, `call.reject`, `call.hold`,
/// `call.resume`, `call.end`, `wrapup.done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRef {
    /// The call.
    pub call_id: String,
}

/// `call.transfer`: back to the queue for a service, or to one operator. Exactly one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTransfer {
    /// The call.
    pub call_id: String,
    /// The service whose queue takes the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The operator who takes the call in person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<String>,
}

/// An operator presence an operator (or a supervisor for them) may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    /// Ready for offers.
    Available,
    /// Not taking offers.
    Paused,
    /// Logged out of the queue (refused while the operator still has calls).
    Offline,
}

/// `presence.set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSet {
    /// The new presence.
    pub state: PresenceState,
    /// Why (for `paused`), shown to supervisors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `operator.set_state` (supervisor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSetState {
    /// The operator.
    pub operator_id: String,
    /// The forced presence.
    pub state: PresenceState,
    /// Why (for `paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An operator as kiosks see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorInfo {
    /// The operator's id.
    pub id: String,
    /// The name shown on the kiosk.
    pub display_name: String,
}

/// A kiosk as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskInfo {
    /// The kiosk's id.
    pub id: String,
    /// Its name, e.g. "Municipio — Sala anagrafe".
    pub name: String,
    /// Where it stands.
    pub location: String,
}

/// `queue.update`: the kiosk's position and estimated wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueUpdate {
    /// The call.
    pub call_id: String,
    /// 1-based position among the waiting calls of its service.
    pub position: u32,
    /// Estimated seconds to answer, or `null` when no eligible operator is online (the kiosk says
    /// the wait is unknown).
    pub estimated_wait_s: Option<u64>,
    /// Extension: the low end of the interval the wait is likely to fall in, whole seconds rounded
    /// down, at most `estimated_wait_s`; absent when unknown (or from an older server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_low_s: Option<u64>,
    /// Extension: the interval's high end, whole seconds rounded up, at least `estimated_wait_s`;
    /// absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_high_s: Option<u64>,
}

/// `call.assigned`: an operator accepted the kiosk's call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAssigned {
    /// The call.
    pub call_id: String,
    /// Who answered.
    pub operator: OperatorInfo,
}

/// `call.ended`, to the kiosk and to the operator on the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEnded {
    /// The call.
    pub call_id: String,
    /// `completed`, `abandoned`, `kiosk_lost`, `operator_lost`, `transferred`, …
    pub reason: String,
}

/// `call.requeued` (extension): the kiosk's call went back to the queue with its age, after a transfer
/// or because its operator was lost. `queue.update` events follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequeued {
    /// The call.
    pub call_id: String,
    /// `transferred` or `operator_lost`.
    pub reason: String,
}

/// `call.offered`: an offer under a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOffered {
    /// The call.
    pub call_id: String,
    /// The calling kiosk.
    pub kiosk: KioskInfo,
    /// The service asked for.
    pub service: String,
    /// The citizen's language.
    pub language: String,
    /// Seconds since the call first entered the queue.
    pub waited_s: u64,
    /// Seconds left to accept.
    pub expires_in_s: u64,
}

/// `call.offer_revoked`: the offer ended without an accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOfferRevoked {
    /// The call.
    pub call_id: String,
    /// `expired`, `rejected`, `abandoned`, `kiosk_lost` or `operator_unavailable`.
    pub reason: String,
}

/// `call.connected`: the operator's accept took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallConnected {
    /// The call.
    pub call_id: String,
    /// The kiosk now in the call.
    pub kiosk: KioskInfo,
}

/// `operator.state` (extension): the operator's state changed without their asking (the missed-offer
/// pause, a supervisor's `operator.set_state`, wrap-up), or by their own `presence.set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStateEvent {
    /// The operator.
    pub operator_id: String,
    /// `available`, `paused`, `offline` or `wrapup`.
    pub state: String,
    /// The pause reason, for `paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One call as `state.sync` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedCall {
    /// The call.
    pub call_id: String,
    /// `waiting`, `offered`, `connected`, `on_hold` or `wrapup`.
    pub state: String,
    /// The service.
    pub service: String,
    /// The language.
    pub language: String,
    /// The kiosk (for operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiosk: Option<KioskInfo>,
    /// The operator (for kiosks, once answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorInfo>,
    /// Seconds since the call first entered the queue.
    pub waited_s: u64,
    /// For an offer: seconds left to accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
    /// For a kiosk's waiting call: its last position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// For a kiosk's waiting call: the last estimated wait (absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_s: Option<u64>,
    /// Extension, for a kiosk's waiting call: the interval's low end last sent in `queue.update`
    /// (absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_low_s: Option<u64>,
    /// Extension: the interval's high end last sent (absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_high_s: Option<u64>,
    /// Extension, with media nodes: the node the call's media is on (`node@instance`), as
    /// `media.offer`'s answer names it. A client whose connection was answered by another node
    /// missed a `media.reconnect` and offers again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_node: Option<String>,
}

/// `state.sync` (extension): sent right after every successful `auth`, and again whenever the server
/// may have missed events for the session. It lists the principal's calls as they are now; a call the
/// client knows that is missing here has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSync {
    /// The kiosk's active call, or the operator's offers and calls; empty for supervisors.
    pub calls: Vec<SyncedCall>,
    /// For operators: their queue state (`available`, `paused`, `offline`, `wrapup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_state: Option<OperatorStateEvent>,
    /// Extension, for operators: the dispositions `wrapup.done` accepts, in the order to offer
    /// them (the console's keys 1–9 follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispositions: Option<Vec<crate::outcome::Disposition>>,
}

/// One service in `metrics.snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMetrics {
    /// The service.
    pub service: String,
    /// Calls waiting or offered.
    pub waiting: u32,
    /// Seconds since the oldest of those entered the queue.
    pub longest_wait_s: u64,
    /// The wait a new call would be told, or `null` when unknown.
    pub estimated_wait_s: Option<u64>,
    /// Calls that entered the queue today (tenant local time).
    pub offered: u64,
    /// Calls accepted today.
    pub answered: u64,
    /// Calls abandoned today, short abandons excluded.
    pub abandoned: u64,
    /// Answered within the threshold ÷ (answered + abandoned after it), today.
    pub service_level: f64,
    /// Mean seconds to answer today, or `null`.
    pub asa_s: Option<f64>,
    /// Mean handle seconds today, or `null`.
    pub aht_s: Option<f64>,
    /// Extension: abandons under the short-abandon limit, counted apart.
    pub abandoned_short: u64,
    /// Extension: calls transferred out today.
    pub transferred: u64,
    /// Extension: the same figures over the rolling 15 minutes.
    pub last_15m: WindowMetrics,
}

/// Window figures (extension inside `metrics.snapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowMetrics {
    /// Calls that entered the queue.
    pub offered: u64,
    /// Calls accepted.
    pub answered: u64,
    /// Calls abandoned, short abandons excluded.
    pub abandoned: u64,
    /// Service level.
    pub service_level: f64,
    /// Mean seconds to answer.
    pub asa_s: Option<f64>,
    /// Mean handle seconds.
    pub aht_s: Option<f64>,
}

/// One call under an operator in `metrics.snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCall {
    /// The call.
    pub call_id: String,
    /// Its kiosk.
    pub kiosk_id: String,
    /// `offered`, `connected`, `on_hold` or `wrapup`.
    pub state: String,
    /// When it entered that state, RFC 3339 UTC.
    pub since: String,
}

/// One operator in `metrics.snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorMetrics {
    /// The operator.
    pub id: String,
    /// Their display name.
    pub display_name: String,
    /// `available`, `paused`, `offline` or `wrapup`.
    pub state: String,
    /// Extension: the pause reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Calls connected or on hold.
    pub load: u8,
    /// Their capacity.
    pub capacity: u8,
    /// Extension: busy ÷ logged-in time today.
    pub occupancy: Option<f64>,
    /// Their offers and calls.
    pub calls: Vec<OperatorCall>,
}

/// `metrics.snapshot`: the live wallboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When it was taken, RFC 3339 UTC.
    pub at: String,
    /// Per service.
    pub services: Vec<ServiceMetrics>,
    /// Per operator who is logged in or has calls.
    pub operators: Vec<OperatorMetrics>,
    /// Extension: the media nodes and the load each advertises, in a deployment with media nodes
    /// (absent when the SFU runs in the server process).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_nodes: Vec<MediaNodeMetrics>,
}

/// One media node on the wallboard (extension of `metrics.snapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaNodeMetrics {
    /// The node's id.
    pub id: String,
    /// Calls with media on it.
    pub calls: u64,
    /// The most calls it takes.
    pub capacity: u64,
    /// RTP packets received and forwarded per second.
    pub packets_per_s: f64,
    /// Mean busy share of its forwarding loops (0–1).
    pub busy_ratio: f64,
    /// It takes no new calls (shutting down).
    pub draining: bool,
}
