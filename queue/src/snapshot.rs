//! Read-only views of a tenant: what `metrics.snapshot` and the Prometheus gauges are built from.
//!
//! The definitions follow `queue.md`: `waiting` counts waiting and offered calls, `longest_wait` runs from
//! the oldest `enqueued_at` among them, and the window figures come from [`crate::windows`].

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::{pending_occupancy, visible_state, TenantState};
use crate::model::{
    CallId, CallState, KioskId, OperatorId, OperatorState, QueueConfig, Service, Time,
};
use crate::windows::Bucket;

/// A tenant's queue at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Time,
    /// One entry per service that has calls, skilled operators or recent metrics.
    pub services: Vec<ServiceSnapshot>,
    /// Every operator who is not offline, plus offline ones with calls.
    pub operators: Vec<OperatorSnapshot>,
}

/// Figures of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    /// The service.
    pub service: Service,
    /// Calls waiting or offered.
    pub waiting: u32,
    /// `now` − the oldest `enqueued_at` among those (zero when none).
    pub longest_wait: Duration,
    /// The wait a new call would be told, or `None` when no eligible operator is online.
    pub estimated_wait: Option<Duration>,
    /// The smoothed average handle time used for estimates.
    pub aht_ewma: Duration,
    /// The rolling 15-minute window.
    pub rolling: WindowStats,
    /// The tenant-local "today" window.
    pub today: WindowStats,
}

/// Metric definitions of `queue.md` over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Calls that entered the queue.
    pub offered: u64,
    /// Calls accepted.
    pub answered: u64,
    /// Calls abandoned (cancel or kiosk lost), without short abandons.
    pub abandoned: u64,
    /// Abandons under the short-abandon limit, counted apart.
    pub abandoned_short: u64,
    /// Calls transferred out.
    pub transferred: u64,
    /// Answered within T ÷ (answered + abandoned after T), 1.0 when there is nothing to count.
    pub service_level: f64,
    /// Mean answer time, if anything was answered.
    pub asa: Option<Duration>,
    /// Mean handle time (connected + hold + wrap-up), if anything was handled.
    pub aht: Option<Duration>,
}

impl From<Bucket> for WindowStats {
    fn from(b: Bucket) -> Self {
        WindowStats {
            offered: b.offered,
            answered: b.answered,
            abandoned: b.abandoned,
            abandoned_short: b.abandoned_short,
            transferred: b.transferred,
            service_level: b.service_level(),
            asa: b.asa(),
            aht: b.aht(),
        }
    }
}

/// One operator as supervisors see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// The operator.
    pub id: OperatorId,
    /// Their visible state.
    pub state: OperatorState,
    /// Calls connected or on hold.
    pub load: u8,
    /// Their capacity.
    pub capacity: u8,
    /// Busy time ÷ logged-in time today, if they were logged in today.
    pub occupancy: Option<f64>,
    /// Their calls (offered, connected, on hold, in wrap-up).
    pub calls: Vec<CallSummary>,
}

/// A call as listed under its operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSummary {
    /// The call.
    pub call_id: CallId,
    /// Its kiosk.
    pub kiosk_id: KioskId,
    /// `offered`, `connected`, `on_hold` or `wrapup`.
    pub state: String,
    /// When it entered that state.
    pub since: Time,
}

impl TenantState {
    /// Builds the snapshot at `now` without changing anything.
    pub fn snapshot(&self, cfg: &QueueConfig, now: Time) -> Snapshot {
        let mut services: BTreeSet<&Service> = self.meta.windows.keys().collect();
        services.extend(self.calls.values().map(|c| &c.service));
        for o in self.operators.values() {
            services.extend(o.skills.keys());
        }
        let services = services
            .into_iter()
            .map(|s| {
                let queued: Vec<_> = self
                    .calls
                    .values()
                    .filter(|c| {
                        &c.service == s
                            && matches!(c.state, CallState::Waiting | CallState::Offered { .. })
                    })
                    .collect();
                let waiting = queued.len() as u32;
                let longest_wait = queued
                    .iter()
                    .map(|c| now.since(c.enqueued_at))
                    .max()
                    .unwrap_or_default();
                let capacity = self.eligible_capacity(s, None);
                let estimated_wait = (capacity > 0).then(|| {
                    let ms = u64::from(waiting + 1) * self.aht(cfg, s).as_millis() as u64
                        / u64::from(capacity);
                    Duration::from_secs(ms.div_ceil(1000))
                });
                let w = self.meta.windows.get(s);
                ServiceSnapshot {
                    service: s.clone(),
                    waiting,
                    longest_wait,
                    estimated_wait,
                    aht_ewma: self.aht(cfg, s),
                    rolling: w.map(|w| w.rolling(now)).unwrap_or_default().into(),
                    today: w
                        .map(|w| w.today(now, &cfg.time_zone))
                        .unwrap_or_default()
                        .into(),
                }
            })
            .collect();
        let operators = self
            .operators
            .values()
            .map(|o| {
                let (logged, busy) = pending_occupancy(o, cfg, now);
                OperatorSnapshot {
                    id: o.operator_id.clone(),
                    state: visible_state(o, cfg),
                    load: o.load,
                    capacity: o.capacity,
                    occupancy: (logged > 0).then(|| busy as f64 / logged as f64),
                    calls: self
                        .calls
                        .values()
                        .filter(|c| c.state.operator() == Some(&o.operator_id))
                        .map(|c| CallSummary {
                            call_id: c.call_id.clone(),
                            kiosk_id: c.kiosk_id.clone(),
                            state: c.state.name().to_string(),
                            since: c.since,
                        })
                        .collect(),
                }
            })
            .filter(|o| o.state != OperatorState::Offline || !o.calls.is_empty())
            .collect();
        Snapshot {
            at: now,
            services,
            operators,
        }
    }
}
