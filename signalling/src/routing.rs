//! The server's side of the queue: opens the configured store (in memory, or Redis with `--redis`),
//! registers the queue metrics, and runs the timer that every node must run (lease expiry, wrap-up
//! timeouts, node heartbeats, dead-node cleanup, Prometheus gauges). With Redis, the timer's
//! operations also say whether Redis answers (`crate::metrics::StoreMetrics`).

use std::time::Duration;

use anyhow::Context;
use queue::{
    AnyStore, Applied, MemoryStore, NodeId, Queue, QueueMetrics, RedisStore, Store, Tenant, Time,
};

use crate::calls::outcome::{Done, Recorder};
use crate::config::Config;
use crate::metrics::StoreMetrics;
use crate::readiness::Check;
use crate::shutdown::{Phase, Shutdown};

/// The queue as this process uses it.
#[derive(Clone)]
pub struct Routing {
    /// The queue facade over the chosen store.
    pub queue: Queue<AnyStore>,
    /// Prometheus metrics of the queue.
    pub metrics: QueueMetrics,
    /// This deployment's tenant.
    pub tenant: Tenant,
    /// This process's node id (a fresh one per start).
    pub node: NodeId,
    /// Shared records and the bus that go with the store (in memory, or on the same Redis).
    pub shared: queue::AnyShared,
    /// Redis reachable, errors and round-trip times (`None` with the in-memory store).
    pub store_metrics: Option<StoreMetrics>,
    /// The calls' outcome records (end, disposition, rating) in `shared`.
    pub outcomes: Recorder,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("tenant", &self.tenant)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Routing {
    /// Opens the store the configuration names and registers the metrics on `registry`.
    pub async fn open(config: &Config, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let cfg = config.queue_config();
        let store = match &config.redis {
            None => AnyStore::Memory(MemoryStore::new(cfg).context("queue configuration")?),
            Some(url) => AnyStore::Redis(
                tokio::time::timeout(Duration::from_secs(5), RedisStore::connect(url, cfg))
                    .await
                    .map_err(|_| anyhow::anyhow!("Redis did not answer within 5 s"))?
                    .with_context(|| {
                        "cannot connect to Redis; check --redis and that Redis runs"
                    })?,
            ),
        };
        let metrics = QueueMetrics::register(registry).context("queue metrics")?;
        let store_metrics = match &store {
            AnyStore::Memory(_) => None,
            AnyStore::Redis(_) => Some(StoreMetrics::register(registry).context("store metrics")?),
        };
        let shared = store.shared();
        let tenant = Tenant::new(config.tenant.as_str()).context("tenant name")?;
        let outcomes = Recorder::register(shared.clone(), tenant.clone(), registry)
            .context("outcome metrics")?;
        Ok(Routing {
            outcomes,
            shared,
            store_metrics,
            queue: Queue::new(store),
            metrics,
            tenant,
            node: NodeId::new(
                config
                    .cluster
                    .node_id
                    .clone()
                    .unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple())),
            )
            .context("node id")?,
        })
    }

    /// Whether the store is usable, for `/readyz`.
    pub async fn check(&self) -> Check {
        let kind = match self.queue.store() {
            AnyStore::Memory(_) => "in-memory",
            AnyStore::Redis(_) => "redis",
        };
        match tokio::time::timeout(Duration::from_secs(1), self.queue.store().ping()).await {
            Ok(Ok(())) => Check {
                name: "store",
                ok: true,
                detail: format!("{kind} reachable"),
            },
            Ok(Err(e)) => Check {
                name: "store",
                ok: false,
                detail: format!("{kind} unreachable: {e}"),
            },
            Err(_) => Check {
                name: "store",
                ok: false,
                detail: format!("{kind} did not answer within 1 s"),
            },
        }
    }

    /// Counts a batch this node committed and records the outcomes of the calls it ended (see
    /// `calls::outcome`). Only the committing node observes a batch, so counters add up across
    /// nodes and each outcome is written by one node.
    pub async fn observe(&self, applied: &Applied) {
        self.observe_wrapup(applied, None).await;
    }

    /// [`Routing::observe`] for the batch of a `wrapup.done`, whose disposition it records.
    pub async fn observe_wrapup(&self, applied: &Applied, done: Option<&Done>) {
        self.metrics.observe(&self.tenant, &applied.effects);
        self.outcomes
            .record(&applied.effects, Time::now(), done)
            .await;
    }

    /// The timer every node runs until the server stops: `tick` every second, a heartbeat every
    /// 3 s, and the gauges every 2 s. A store error is logged and retried on the next beat.
    pub async fn run(self, shutdown: Shutdown) {
        let mut phase = shutdown.subscribe();
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = beat.tick() => {}
                _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
            }
            let now = Time::now();
            if n % 3 == 0 {
                let started = std::time::Instant::now();
                let result = self.queue.heartbeat(&self.tenant, now, &self.node).await;
                self.record_store("heartbeat", answered(&result), started);
                self.step("heartbeat", result).await;
            }
            let started = std::time::Instant::now();
            let result = self.queue.tick(&self.tenant, now).await;
            self.record_store("tick", answered(&result), started);
            self.step("tick", result).await;
            if n % 2 == 0 {
                let started = std::time::Instant::now();
                let result = self.queue.snapshot(&self.tenant, now).await;
                self.record_store("snapshot", answered(&result), started);
                match result {
                    Ok(snapshot) => self.metrics.set_gauges(&self.tenant, &snapshot),
                    Err(e) => tracing::warn!(error = %e, "queue snapshot failed"),
                }
            }
            n += 1;
        }
    }

    /// Records whether Redis answered a store operation, and its time, on the Redis metrics (with
    /// Redis only); see [`answered`].
    pub fn record_store(&self, op: &str, ok: bool, started: std::time::Instant) {
        if let Some(m) = &self.store_metrics {
            m.record(op, ok, started.elapsed());
        }
    }

    async fn step(&self, what: &str, result: Result<Applied, queue::Error>) {
        match result {
            Ok(applied) => self.observe(&applied).await,
            Err(e) => tracing::warn!(error = %e, "queue {what} failed"),
        }
    }
}

/// Whether the store answered: anything but [`queue::Error::Unavailable`] (a refusal or a
/// contention is an answer), for `sportello_redis_up`.
pub fn answered<T>(result: &Result<T, queue::Error>) -> bool {
    !matches!(result, Err(queue::Error::Unavailable(_)))
}
