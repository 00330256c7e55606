//! Prometheus export with the metric names of `queue.md`.
//!
//! Counters and histograms are fed from the [`MetricEvent`]s of the batches a node commits itself, so a
//! sum over nodes counts each event once. Gauges describe the whole tenant and are set from a
//! [`Snapshot`]; every node reports the same value, so dashboards should take `max` over nodes.
//! Labels are `tenant` and `service` (plus `outcome`, `state` and `window`); there are no per-call
//! labels. `sportello_queue_service_level{window}` is the snapshot's service level over the rolling
//! 15 minutes (`window="15m"`) and the tenant-local day (`window="today"`), as `queue.md` defines it.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::effect::{Effect, MetricEvent};
use crate::error::Error;
use crate::model::Tenant;
use crate::snapshot::Snapshot;

/// The queue's Prometheus metrics, registered in a registry the server owns.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    waiting: IntGaugeVec,
    longest_wait: IntGaugeVec,
    service_level: GaugeVec,
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
        let service_level = GaugeVec::new(
            Opts::new(
                "sportello_queue_service_level",
                "Answered within the service's target ÷ (answered + abandoned after it), 0-1; 1 when \
                 nothing was offered. window=15m (rolling) or today (tenant local time).",
            ),
            &["tenant", "service", "window"],
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
        registry.register(Box::new(service_level.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(wait.clone()))?;
        registry.register(Box::new(handle.clone()))?;
        registry.register(Box::new(operators.clone()))?;
        Ok(QueueMetrics {
            waiting,
            longest_wait,
            service_level,
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
            self.service_level
                .with_label_values(&[t, s.service.as_str(), "15m"])
                .set(s.rolling.service_level);
            self.service_level
                .with_label_values(&[t, s.service.as_str(), "today"])
                .set(s.today.service_level);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Service, Time};
    use crate::snapshot::{ServiceSnapshot, WindowStats};
    use crate::windows::Bucket;

    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_gauge().value())
    }

    #[test]
    fn the_gauges_follow_the_snapshot_with_both_service_level_windows() {
        let registry = Registry::new();
        let metrics = QueueMetrics::register(&registry).unwrap();
        let tenant = Tenant::new("parma").unwrap();
        let bucket = |answered, answered_in_sl| Bucket {
            offered: answered,
            answered,
            answered_in_sl,
            ..Bucket::default()
        };
        let snapshot = Snapshot {
            at: Time::from_secs(100),
            services: vec![ServiceSnapshot {
                service: Service::new("anagrafe").unwrap(),
                waiting: 3,
                longest_wait: Duration::from_secs(42),
                estimated_wait: None,
                aht_ewma: Duration::from_secs(180),
                rolling: WindowStats::from(bucket(4, 3)),
                today: WindowStats::from(bucket(10, 9)),
            }],
            operators: vec![],
        };
        metrics.set_gauges(&tenant, &snapshot);
        let svc = [("tenant", "parma"), ("service", "anagrafe")];
        assert_eq!(value(&registry, "sportello_queue_waiting", &svc), Some(3.0));
        assert_eq!(
            value(&registry, "sportello_queue_longest_wait_seconds", &svc),
            Some(42.0)
        );
        let level = |window| {
            value(
                &registry,
                "sportello_queue_service_level",
                &[svc[0], svc[1], ("window", window)],
            )
        };
        assert_eq!(level("15m"), Some(0.75));
        assert_eq!(level("today"), Some(0.9));
        assert_eq!(
            value(
                &registry,
                "sportello_operators",
                &[("tenant", "parma"), ("state", "available")]
            ),
            Some(0.0)
        );
    }
}
