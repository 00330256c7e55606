//! The domain model: identifiers, time, configuration, calls and operators.
//!
//! Everything here is plain data that serialises to JSON, because the Redis store keeps each call and each
//! operator as one JSON value in a hash. Identifiers are validated when they enter the queue, so a bad
//! identifier is an [`Error::Invalid`] and never a panic or a broken Redis key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A point in time in milliseconds since the Unix epoch.
///
/// The core never reads a clock: every operation takes `now` as an argument, so tests are exact.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Time(pub u64);

impl Time {
    /// Builds a time from milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// Builds a time from whole seconds since the Unix epoch.
    pub const fn from_secs(s: u64) -> Self {
        Time(s * 1000)
    }

    /// Reads the system clock. Only drivers call this; the core takes time as an argument.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Time(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This time moved forward by `d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Time(self.0.saturating_add(d.as_millis() as u64))
    }

    /// The time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier: 1 to 128 characters from `A-Z a-z 0-9 - _ . @ :`.
            pub fn new(s: impl Into<String>) -> Result<Self, Error> {
                let s = s.into();
                validate_id(&s, $what)?;
                Ok($name(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }
    };
}

fn validate_id(s: &str, what: &str) -> Result<(), Error> {
    // Braces are refused on purpose: a `{` or `}` in a tenant would break the Redis hash tag.
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("bad {what} identifier {s:?}")))
    }
}

id_type!(
    /// One contact centre. Every Redis key of a tenant carries `{tenant}` as its hash tag.
    Tenant,
    "tenant"
);
id_type!(
    /// A call, chosen by the caller (usually a UUID) so that retries are idempotent.
    CallId,
    "call"
);
id_type!(
    /// A kiosk (booth) device.
    KioskId,
    "kiosk"
);
id_type!(
    /// An operator account.
    OperatorId,
    "operator"
);
id_type!(
    /// A service, which is also the skill needed to answer it, e.g. `anagrafe`.
    Service,
    "service"
);
id_type!(
    /// A language tag, e.g. `it` or `de`.
    Language,
    "language"
);
id_type!(
    /// A server process. It renews a lease per tenant with `heartbeat`; its connections die with it.
    NodeId,
    "node"
);

impl CallId {
    /// A fresh random call identifier.
    pub fn random() -> Self {
        CallId(uuid::Uuid::new_v4().to_string())
    }
}

/// When wrap-up blocks routing to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum WrapupPolicy {
    /// The operator is in `wrapup` and gets no offers while wrapping up with no other call (the default).
    #[default]
    BlockWhenIdle,
    /// Wrap-up never blocks routing; the operator gets offers whenever below capacity.
    Never,
}

/// Settings of the queue. Every node sharing one Redis must use the same values.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// How long an offer waits for accept before it expires (default 15 s).
    pub offer_lease: Duration,
    /// Missed (expired) offers in a row after which an operator is paused (default 2).
    pub max_missed_offers: u32,
    /// Wrap-up length after a call ends, unless `wrapup_done` comes first (default 30 s).
    pub wrapup: Duration,
    /// Whether wrap-up blocks routing to an operator with no other call.
    pub wrapup_policy: WrapupPolicy,
    /// Effective priority grows by one per step of waiting, up to 9; `None` turns aging off (default 120 s).
    pub aging_step: Option<Duration>,
    /// How long a dead node's clients may take to resume elsewhere before cleanup (default 30 s).
    pub resume_grace: Duration,
    /// How long a node heartbeat lasts (default 10 s); a node renews it every few seconds.
    pub node_lease: Duration,
    /// The service-level threshold T for services not listed in `service_level_by_service` (default 60 s).
    pub service_level_threshold: Duration,
    /// Per-service overrides of the service-level threshold.
    pub service_level_by_service: BTreeMap<Service, Duration>,
    /// Abandons shorter than this are counted apart as short abandons (default 5 s).
    pub short_abandon: Duration,
    /// The handle time assumed for a service before any call has been handled (default 180 s).
    pub default_aht: Duration,
    /// The tenant's time zone, for the "today" window (default Europe/Rome, with CET/CEST).
    pub time_zone: jiff::tz::TimeZone,
}

/// Europe/Rome from the bundled time-zone database (always present; see the `jiff` features).
pub fn rome() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/Rome").unwrap_or(jiff::tz::TimeZone::UTC)
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            offer_lease: Duration::from_secs(15),
            max_missed_offers: 2,
            wrapup: Duration::from_secs(30),
            wrapup_policy: WrapupPolicy::BlockWhenIdle,
            aging_step: Some(Duration::from_secs(120)),
            resume_grace: Duration::from_secs(30),
            node_lease: Duration::from_secs(10),
            service_level_threshold: Duration::from_secs(60),
            service_level_by_service: BTreeMap::new(),
            short_abandon: Duration::from_secs(5),
            default_aht: Duration::from_secs(180),
            time_zone: rome(),
        }
    }
}

impl QueueConfig {
    /// Checks the settings; a zero lease or an empty aging step would make the queue misbehave.
    pub fn validate(&self) -> Result<(), Error> {
        if self.offer_lease.is_zero() {
            return Err(Error::Invalid("offer_lease must be positive".into()));
        }
        if self.node_lease.is_zero() {
            return Err(Error::Invalid("node_lease must be positive".into()));
        }
        if self.aging_step.is_some_and(|s| s.is_zero()) {
            return Err(Error::Invalid("aging_step must be positive".into()));
        }
        if self.default_aht.is_zero() {
            return Err(Error::Invalid("default_aht must be positive".into()));
        }
        Ok(())
    }

    /// The service-level threshold of `service`.
    pub fn threshold(&self, service: &Service) -> Duration {
        self.service_level_by_service
            .get(service)
            .copied()
            .unwrap_or(self.service_level_threshold)
    }
}

/// The state of a call in the one call state machine of the brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "snake_case")]
pub enum CallState {
    /// In the queue, not offered to anyone.
    Waiting,
    /// Offered to one operator under a lease.
    Offered {
        /// The operator holding the offer.
        operator: OperatorId,
        /// When the lease ends.
        expires_at: Time,
    },
    /// Accepted and talking.
    Connected {
        /// The operator on the call.
        operator: OperatorId,
    },
    /// Accepted and put on hold by the operator.
    Held {
        /// The operator on the call.
        operator: OperatorId,
    },
    /// The conversation ended; the operator is wrapping up this call.
    WrapUp {
        /// The operator wrapping up.
        operator: OperatorId,
        /// When wrap-up ends by itself.
        until: Time,
    },
}

impl CallState {
    /// The short name used in snapshots: `waiting`, `offered`, `connected`, `on_hold` or `wrapup`.
    pub fn name(&self) -> &'static str {
        match self {
            CallState::Waiting => "waiting",
            CallState::Offered { .. } => "offered",
            CallState::Connected { .. } => "connected",
            CallState::Held { .. } => "on_hold",
            CallState::WrapUp { .. } => "wrapup",
        }
    }

    /// The operator the call is offered or assigned to, if any.
    pub fn operator(&self) -> Option<&OperatorId> {
        match self {
            CallState::Waiting => None,
            CallState::Offered { operator, .. }
            | CallState::Connected { operator }
            | CallState::Held { operator }
            | CallState::WrapUp { operator, .. } => Some(operator),
        }
    }
}

/// A kiosk call in the queue, from `enqueue` until its wrap-up ends. Ended calls leave the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The call's identifier.
    pub call_id: CallId,
    /// The kiosk that placed the call.
    pub kiosk_id: KioskId,
    /// The node holding the kiosk's connection.
    pub kiosk_node: NodeId,
    /// The requested service (the skill needed).
    pub service: Service,
    /// The citizen's language.
    pub language: Language,
    /// Base priority 0–9, higher first.
    pub priority: u8,
    /// When the call first entered the queue; kept through rejects, transfers and requeues.
    pub enqueued_at: Time,
    /// When the call entered its current service's queue, for wait metrics after a transfer.
    pub queued_at: Time,
    /// A tie-breaker among calls enqueued in the same millisecond.
    pub seq: u64,
    /// Lifecycle state.
    pub state: CallState,
    /// For a transfer to a person: only this operator may take the call.
    pub pinned: Option<OperatorId>,
    /// Operators who rejected or let an offer of this call expire, tried last for it.
    pub declined: Vec<OperatorId>,
    /// Requeued after its operator was lost: it goes before every other waiting call.
    pub head: bool,
    /// When the current operator accepted it.
    pub accepted_at: Option<Time>,
    /// When the conversation ended (wrap-up started).
    pub ended_at: Option<Time>,
    /// When the call entered its current state, for snapshots.
    pub since: Time,
    /// The last position and estimated wait (ms) sent to the kiosk, so updates go out only on change.
    pub last_update: Option<(u32, Option<u64>)>,
    /// The interval (low, high, whole seconds) sent with the last update; meaningful only while
    /// `last_update` holds an estimate (absent in records written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_interval: Option<(u64, u64)>,
    /// The media node this call's media is placed on, in a deployment with separate media nodes
    /// (`None`: not placed, or media in the process each party talks to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_node: Option<String>,
    /// What the call history records of it beyond its state: first offer, hold time, transfers,
    /// operators (absent in records written before the history: empty).
    #[serde(default, skip_serializing_if = "CallLog::is_empty")]
    pub log: CallLog,
}

/// The facts of a call kept for the history (`Effect::Summary`), not for routing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallLog {
    /// When it was first offered to an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_at: Option<Time>,
    /// When it was first answered (`accepted_at` is the current operator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Time>,
    /// Time on hold so far, ms (the current hold counts when it ends).
    #[serde(default)]
    pub held_ms: u64,
    /// Times it was put on hold.
    #[serde(default)]
    pub holds: u32,
    /// Times it was transferred.
    #[serde(default)]
    pub transfers: u32,
    /// The operators who answered it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<OperatorId>,
}

impl CallLog {
    /// Nothing recorded yet.
    pub fn is_empty(&self) -> bool {
        self == &CallLog::default()
    }
}

/// An operator's own choice of presence; `wrapup` is derived from their calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "p", content = "reason", rename_all = "snake_case")]
pub enum Presence {
    /// Ready for offers.
    Available,
    /// Not taking offers, with a reason such as `missed offers`.
    Paused(String),
    /// Logged out.
    Offline,
}

/// The operator state shown to supervisors and exported to Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorState {
    /// Ready for offers.
    Available,
    /// Paused with a reason.
    Paused(String),
    /// Logged out.
    Offline,
    /// Wrapping up with no other call, so not routable.
    Wrapup,
}

impl OperatorState {
    /// The label used in snapshots and in the `state` label of `sportello_operators`.
    pub fn label(&self) -> &'static str {
        match self {
            OperatorState::Available => "available",
            OperatorState::Paused(_) => "paused",
            OperatorState::Offline => "offline",
            OperatorState::Wrapup => "wrapup",
        }
    }
}

/// An operator as the queue sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// The operator's identifier.
    pub operator_id: OperatorId,
    /// Skills: service → level 1–10.
    pub skills: BTreeMap<Service, u8>,
    /// Languages spoken.
    pub languages: Vec<Language>,
    /// Concurrent calls (connected plus on hold), 1 to 6.
    pub capacity: u8,
    /// Chosen presence.
    pub presence: Presence,
    /// The node holding the operator's connection.
    pub node: NodeId,
    /// When their load last dropped or they became available.
    pub idle_since: Time,
    /// Missed offers in a row.
    pub missed_offers: u32,
    /// Calls connected or on hold.
    pub load: u8,
    /// Offers outstanding; they reserve capacity.
    pub offers: u8,
    /// Calls in wrap-up.
    pub wrapups: u8,
    /// Occupancy accounting for the current local day.
    pub occupancy: Occupancy,
}

/// Busy and logged-in time of an operator for one local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Occupancy {
    /// The local day these totals belong to.
    pub day: i64,
    /// Milliseconds logged in (not offline).
    pub logged_in_ms: u64,
    /// Milliseconds busy (on a call or in wrap-up).
    pub busy_ms: u64,
    /// When the totals were last brought up to date.
    pub last: Time,
}

/// What an operator declares when they connect or reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLogin {
    /// The operator.
    pub operator_id: OperatorId,
    /// Skills: service → level 1–10.
    pub skills: BTreeMap<Service, u8>,
    /// Languages spoken (at least one).
    pub languages: Vec<Language>,
    /// Concurrent calls, 1 to 6.
    pub capacity: u8,
    /// The node holding the connection.
    pub node: NodeId,
    /// The presence to start in if the operator was offline or unknown; a resume keeps the old presence.
    pub presence: Presence,
}

impl OperatorLogin {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !(1..=6).contains(&self.capacity) {
            return Err(Error::Invalid(format!(
                "capacity {} is not in 1..=6",
                self.capacity
            )));
        }
        if self.languages.is_empty() {
            return Err(Error::Invalid(
                "an operator needs at least one language".into(),
            ));
        }
        if let Some((s, l)) = self.skills.iter().find(|(_, l)| !(1..=10).contains(*l)) {
            return Err(Error::Invalid(format!(
                "skill level {l} of {s} is not in 1..=10"
            )));
        }
        if let Presence::Paused(r) = &self.presence {
            validate_reason(r)?;
        }
        Ok(())
    }
}

pub(crate) fn validate_reason(r: &str) -> Result<(), Error> {
    if r.len() > 200 {
        return Err(Error::Invalid("pause reason longer than 200 bytes".into()));
    }
    Ok(())
}

/// A new call from a kiosk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// The call identifier, chosen by the caller.
    pub call_id: CallId,
    /// The kiosk placing the call; it may have one active call.
    pub kiosk_id: KioskId,
    /// The node holding the kiosk's connection.
    pub kiosk_node: NodeId,
    /// The requested service.
    pub service: Service,
    /// The citizen's language.
    pub language: Language,
    /// Priority 0–9.
    pub priority: u8,
}

/// Where a transfer sends a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferTarget {
    /// Back to the queue of a service.
    Service(Service),
    /// To one operator in person; the call waits for them only.
    Operator(OperatorId),
}

/// Packs a waiting call's base priority and age into one sorted-set score, highest priority and oldest
/// first when sorted ascending.
///
/// A Redis score is a double, exact only up to 2^53. The age takes 44 bits of milliseconds (good until
/// the year 2527) and the inverted priority 0–9 sits above it, so the largest score is below 10·2^44,
/// about 2^47.3: every score is exact.
pub fn waiting_score(priority: u8, enqueued_at: Time) -> Result<u64, Error> {
    const AGE_BITS: u32 = 44;
    if priority > 9 {
        return Err(Error::Invalid(format!(
            "priority {priority} is not in 0..=9"
        )));
    }
    let ms = enqueued_at.as_millis();
    if ms >= 1 << AGE_BITS {
        return Err(Error::Invalid("enqueued_at beyond the year 2527".into()));
    }
    Ok((u64::from(9 - priority) << AGE_BITS) | ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_hash_tag_breakers_and_empty() {
        assert!(Tenant::new("comune-x").is_ok());
        assert!(Tenant::new("a{b").is_err());
        assert!(Tenant::new("").is_err());
        assert!(Tenant::new("x".repeat(129)).is_err());
    }

    #[test]
    fn scores_are_exact_doubles_and_ordered() {
        let a = waiting_score(9, Time(1_700_000_000_000)).unwrap();
        let b = waiting_score(0, Time(1_600_000_000_000)).unwrap();
        let c = waiting_score(9, Time(1_700_000_000_001)).unwrap();
        assert!(a < b, "higher priority sorts first");
        assert!(a < c, "older sorts first");
        let max = waiting_score(0, Time((1 << 44) - 1)).unwrap();
        assert!(max < 1 << 53);
        assert_eq!(max as f64 as u64, max);
        assert!(waiting_score(10, Time(0)).is_err());
    }
}
