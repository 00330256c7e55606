//! Prometheus export with the metric names of `queue.md`.
//!
//! Counters and histograms are fed from the [`MetricEvent`]s of the batches a node commits itself, so a
//! sum over nodes counts each event once. Gauges describe the whole tenant and are set from a
//! [`Snapshot`]; every node reports the same value, so dashboards should take `max` over nodes.
//! Labels are `tenant` and `service` (plus `outcome` and `state`); there are no per-call labels.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::effect::{Effect, MetricEvent};
use crate::error::Error;
use crate::model::Tenant;
use crate::snapshot::Snapshot;

/// The queue's Prometheus metrics, registered in a registry the server owns.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    waiting: IntGaugeVec,
    longest_wait: IntGaugeVec,
    calls: IntCounterVec,
    wait: HistogramVec,
    handle: HistogramVec,
    operators: IntGaugeVec,
}

const OPERATOR_STATES: [&str; 4] = ["available", "paused", "offline", "wrapup"];

impl QueueMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// Registering twice in one registry is an error ([`Error::Metrics`]).
    pub fn register(registry: &Registry) -> Result<Self, Error> {
        let waiting = IntGaugeVec::new(
            Opts::new("sportello_queue_waiting", "Calls waiting or offered."),
            &["tenant", "service"],
        )?;
        let longest_wait = IntGaugeVec::new(
            Opts::new(
                "sportello_queue_longest_wait_seconds",
                "Age of the oldest waiting or offered call.",
            ),
            &["tenant", "service"],
        )?;
        let calls = IntCounterVec::new(
            Opts::new(
                "sportello_calls_total",
                "Calls by outcome: offered, answered, abandoned, abandoned_short, transferred, handled.",
            ),
            &["tenant", "service", "outcome"],
        )?;
        let wait = HistogramVec::new(
            HistogramOpts::new(
                "sportello_queue_wait_seconds",
                "Wait from entering the queue to acceptance.",
            )
            .buckets(vec![
                5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
            ]),
            &["tenant", "service"],
        )?;
        let handle = HistogramVec::new(
            HistogramOpts::new(
                "sportello_handle_seconds",
                "Connected + hold + wrap-up time of handled calls.",
            )
            .buckets(vec![30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0]),
            &["tenant", "service"],
        )?;
        let operators = IntGaugeVec::new(
            Opts::new("sportello_operators", "Operators by state."),
            &["tenant", "state"],
        )?;
        registry.register(Box::new(waiting.clone()))?;
        registry.register(Box::new(longest_wait.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(wait.clone()))?;
        registry.register(Box::new(handle.clone()))?;
        registry.register(Box::new(operators.clone()))?;
        Ok(QueueMetrics {
            waiting,
            longest_wait,
            calls,
            wait,
            handle,
            operators,
        })
    }

    /// Counts the metric events among `effects` (the batch this node committed).
    pub fn observe(&self, tenant: &Tenant, effects: &[Effect]) {
        let t = tenant.as_str();
        for e in effects {
            let Effect::Metric(m) = e else { continue };
            match m {
                MetricEvent::Offered { service } => {
                    self.calls
                        .with_label_values(&[t, service.as_str(), "offered"])
                        .inc();
                }
                MetricEvent::Answered { service, wait } => {
                    self.calls
                        .with_label_values(&[t, service.as_str(), "answered"])
                        .inc();
                    self.wait
                        .with_label_values(&[t, service.as_str()])
                        .observe(wait.as_secs_f64());
                }
                MetricEvent::Abandoned { service, short, .. } => {
                    let outcome = if *short {
                        "abandoned_short"
                    } else {
                        "abandoned"
                    };
                    self.calls
                        .with_label_values(&[t, service.as_str(), outcome])
                        .inc();
                }
                MetricEvent::Transferred { service } => {
                    self.calls
                        .with_label_values(&[t, service.as_str(), "transferred"])
                        .inc();
                }
                MetricEvent::Handled { service, handle } => {
                    self.calls
                        .with_label_values(&[t, service.as_str(), "handled"])
                        .inc();
                    self.handle
                        .with_label_values(&[t, service.as_str()])
                        .observe(handle.as_secs_f64());
                }
            }
        }
    }

    /// Sets the tenant-wide gauges from a snapshot.
    pub fn set_gauges(&self, tenant: &Tenant, snapshot: &Snapshot) {
        let t = tenant.as_str();
        for s in &snapshot.services {
            self.waiting
                .with_label_values(&[t, s.service.as_str()])
                .set(i64::from(s.waiting));
            self.longest_wait
                .with_label_values(&[t, s.service.as_str()])
                .set(s.longest_wait.as_secs() as i64);
        }
        for state in OPERATOR_STATES {
            let n = snapshot
                .operators
                .iter()
                .filter(|o| o.state.label() == state)
                .count();
            self.operators.with_label_values(&[t, state]).set(n as i64);
        }
    }
}
