//! `sportello serve --role media`: a media node. It runs the SFU and its internal API
//! (`medianode::router`, authenticated with the cluster's shared secret), and no public pages.
//!
//! - **Heartbeat**: every `cluster.heartbeat_ms` it writes its [`NodeInfo`] (internal URL, media
//!   addresses, capacity, load, draining) into the shared records with a time to live of
//!   `cluster.node_ttl_ms`. When the record expires, the signalling nodes count it dead and move
//!   its calls.
//! - **Events**: the SFU's events (statistics, connected, failed) go on the shared bus as
//!   `calls::bus::BusMessage::Media`, for the signalling nodes that hold the calls' parties.
//! - **Drain** (SIGTERM): it stops taking new calls (`draining`), lets its calls go on for most of
//!   `shutdown.drain_s`, then says it is leaving, so the signalling nodes move what is left
//!   (`media.reconnect` with `node_draining`), and exits once its calls are gone, by the end of
//!   the drain. A second signal, or SIGINT, stops at once.
//! - **Admin listener**: `/healthz`, `/readyz` (the forwarding loops answer and the store is
//!   reachable) and `/metrics`, with the node's role, id and advertised load, the process's CPU
//!   and memory, the SFU's metrics, and whether Redis answers the heartbeat.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use medianode::{NodeInfo, Secret};
use queue::{Shared, Store, Time};
use serde_json::json;
use sfu::Sfu;

use crate::calls::bus::BusMessage;
use crate::calls::placement::NODES_NS;
use crate::config::Config;
use crate::routing::Routing;

/// The file, in the data directory, holding the secret the nodes share (unless
/// `cluster.secret_file` names another).
pub const CLUSTER_SECRET_FILE: &str = "cluster.secret";

/// Loads the cluster's shared secret, creating it in the data directory when missing.
pub fn load_secret(config: &Config) -> anyhow::Result<Arc<Secret>> {
    let path = config
        .cluster
        .secret_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(CLUSTER_SECRET_FILE));
    let secret = if config.cluster.secret_file.is_some() {
        Secret::load(&path)
    } else {
        Secret::load_or_create(&path)
    };
    Ok(Arc::new(secret.with_context(|| {
        format!("cluster secret {}", path.display())
    })?))
}

/// Running, draining (no new calls), leaving (its calls are being moved).
const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const LEAVING: u8 = 2;

/// A started media node.
pub struct MediaNode {
    /// The internal API's address.
    pub internal_addr: SocketAddr,
    /// The URL the signalling nodes use.
    pub internal_url: String,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The node's id.
    pub id: String,
    /// The SFU.
    pub sfu: Sfu,
    phase: Arc<AtomicU8>,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    heartbeat: Heartbeat,
}

#[derive(Clone)]
struct Heartbeat {
    routing: Routing,
    sfu: Sfu,
    info: NodeInfo,
    phase: Arc<AtomicU8>,
    ttl: Duration,
}

impl Heartbeat {
    fn info(&self) -> NodeInfo {
        let mut info = self.info.clone();
        let load = self.sfu.load();
        info.calls = load.calls as u64;
        info.connections = load.connections as u64;
        info.packets_per_s = load.packets_per_s;
        info.busy_ratio = load.busy_ratio;
        let phase = self.phase.load(Ordering::Relaxed);
        info.draining = phase != RUNNING;
        info.leaving = phase == LEAVING;
        info.seen_ms = Time::now().0;
        info
    }

    async fn beat(&self) -> Result<(), queue::Error> {
        let info = self.info();
        let text = serde_json::to_string(&info).unwrap_or_default();
        let r = &self.routing;
        r.shared
            .put(&r.tenant, NODES_NS, &info.id, &text, self.ttl, Time::now())
            .await
    }

    async fn remove(&self) {
        let r = &self.routing;
        let _ = r
            .shared
            .delete(&r.tenant, NODES_NS, &self.info.id, Time::now())
            .await;
    }
}

/// Starts a media node: the SFU, the internal API, the admin listener, the heartbeat and the
/// event relay.
pub async fn start(config: Config) -> anyhow::Result<MediaNode> {
    crate::datadir::ensure_dir(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let secret = load_secret(&config)?;
    let registry = prometheus::Registry::new();
    // CPU, memory, file descriptors and start time (`process_*`), as on a signalling node.
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    let routing = Routing::open(&config, &registry).await?;
    let media_config = config
        .media
        .sfu_config(config.listen)
        .map_err(|e| anyhow::anyhow!(e))?;
    let (sfu, mut events) = Sfu::start(media_config, Some(&registry))
        .await
        .context("cannot start the media plane (check media.udp / media.tcp)")?;
    config.media.apply_loop_settings(&sfu).await;

    let internal = tokio::net::TcpListener::bind(config.cluster.internal_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.cluster.internal_listen))?;
    let internal_addr = internal.local_addr()?;
    let internal_url = config
        .cluster
        .internal_url
        .clone()
        .unwrap_or_else(|| format!("http://{internal_addr}"));
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    let admin_addr = admin.local_addr()?;

    let id = routing.node.to_string();
    let phase = Arc::new(AtomicU8::new(RUNNING));
    let heartbeat = Heartbeat {
        routing: routing.clone(),
        sfu: sfu.clone(),
        info: NodeInfo {
            id: id.clone(),
            internal_url: internal_url.clone(),
            media_udp: sfu.udp_addr(),
            media_tcp: sfu.tcp_addr(),
            capacity: u64::from(config.cluster.capacity),
            calls: 0,
            connections: 0,
            packets_per_s: 0.0,
            busy_ratio: 0.0,
            draining: false,
            leaving: false,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            seen_ms: 0,
            instance: uuid::Uuid::new_v4().simple().to_string(),
        },
        phase: phase.clone(),
        ttl: Duration::from_millis(config.cluster.node_ttl_ms),
    };
    let gauges = NodeGauges::register(&registry, &id)?;
    // Registered before serving, so a signalling node can place calls here as soon as it reads it.
    heartbeat
        .beat()
        .await
        .context("cannot register the media node in the store")?;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    let router = medianode::router(sfu.clone(), secret);
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(internal, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
    }));
    let admin_state = AdminState {
        sfu: sfu.clone(),
        routing: routing.clone(),
        registry: registry.clone(),
        heartbeat: heartbeat.clone(),
        gauges: gauges.clone(),
    };
    let admin_router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(admin_state);
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(admin, admin_router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
    }));
    let (hb, s, every) = (
        heartbeat.clone(),
        stop.clone(),
        Duration::from_millis(config.cluster.heartbeat_ms),
    );
    tasks.push(tokio::spawn(async move {
        let mut pause = every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = s.cancelled() => return,
            }
            // A heartbeat that fails (a Redis failover) is tried again soon, so the node is back
            // in the records as soon as the store is.
            let started = std::time::Instant::now();
            let beat = tokio::time::timeout(every, hb.beat()).await;
            let answered = beat.as_ref().is_ok_and(crate::routing::answered);
            hb.routing.record_store("node_heartbeat", answered, started);
            pause = match beat {
                Ok(Ok(())) => every,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "media node heartbeat failed");
                    Duration::from_millis(200)
                }
                Err(_) => {
                    tracing::warn!("media node heartbeat timed out");
                    Duration::from_millis(200)
                }
            };
            gauges.set(&hb.info());
        }
    }));
    let (r, from) = (routing.clone(), id.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            // Statistics come again in a moment; a failed connection ends a call, so it is
            // published again for up to 10 s while the store is unavailable.
            let attempts = match &event {
                sfu::MediaEvent::Failed { .. } => 40,
                _ => 1,
            };
            let msg = BusMessage::Media {
                from: from.clone(),
                event: serde_json::to_value(medianode::NodeEvent::from(event)).unwrap_or_default(),
            };
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            for attempt in 1..=attempts {
                match r.shared.publish(&r.tenant, &text).await {
                    Ok(()) => break,
                    Err(e) if attempt == attempts => {
                        tracing::warn!(error = %e, "a media event could not be published");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
    }));
    Ok(MediaNode {
        internal_addr,
        internal_url,
        admin_addr,
        id,
        sfu,
        phase,
        stop,
        tasks,
        heartbeat,
    })
}

impl MediaNode {
    /// Drains: no new calls now; its calls go on for most of `drain`, then those left are moved, and
    /// the node stops by the end of `drain` (at least a second after it asked for the move).
    pub async fn drain(self, drain: Duration, stop_now: tokio_util::sync::CancellationToken) {
        self.phase.store(DRAINING, Ordering::Relaxed);
        let _ = self.heartbeat.beat().await;
        tracing::info!(drain_s = drain.as_secs(), "media node draining");
        let started = tokio::time::Instant::now();
        let deadline = started + drain;
        // The calls still here at the end of the drain are moved in its last part, so the node is
        // gone by the deadline: half the drain, at least 1 s and at most 5 s.
        let window = (drain / 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
        let move_at = deadline.checked_sub(window).unwrap_or(started).max(started);
        let wait = |until: tokio::time::Instant| {
            let stop_now = stop_now.clone();
            let sfu = self.sfu.clone();
            async move {
                while sfu.load().calls > 0 && tokio::time::Instant::now() < until {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop_now.cancelled() => break,
                    }
                }
            }
        };
        wait(move_at).await;
        if self.sfu.load().calls > 0 && !stop_now.is_cancelled() {
            // Ask the signalling nodes to move what is left; the move ends the old connections.
            self.phase.store(LEAVING, Ordering::Relaxed);
            let _ = self.heartbeat.beat().await;
            tracing::info!(calls = self.sfu.load().calls, "media node moving its calls");
            wait(deadline.max(tokio::time::Instant::now() + Duration::from_secs(1))).await;
        }
        self.stop().await;
    }

    /// Stops at once: the record is removed, so the signalling nodes move the calls now.
    pub async fn stop(self) {
        self.heartbeat.remove().await;
        self.stop.cancel();
        for t in self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct AdminState {
    sfu: Sfu,
    routing: Routing,
    registry: prometheus::Registry,
    heartbeat: Heartbeat,
    gauges: NodeGauges,
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let media = s.sfu.health(Duration::from_secs(1)).await;
    let store = tokio::time::timeout(Duration::from_secs(1), s.routing.queue.store().ping()).await;
    let media_ok = media.is_ok();
    let store_ok = matches!(store, Ok(Ok(())));
    let draining = s.heartbeat.phase.load(Ordering::Relaxed) != RUNNING;
    let ready = media_ok && store_ok && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "role": "media",
        "node": s.heartbeat.info.id,
        "checks": [
            {"name": "media", "ok": media_ok},
            {"name": "store", "ok": store_ok},
            {"name": "draining", "ok": !draining},
        ],
    });
    (status, Json(body))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    s.gauges.set(&s.heartbeat.info());
    let families = s.registry.gather();
    let mut out = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}

/// `sportello_node_info{role,node}` and the load the node advertises.
#[derive(Clone)]
struct NodeGauges {
    calls: prometheus::IntGauge,
    capacity: prometheus::IntGauge,
    connections: prometheus::IntGauge,
    packets: prometheus::Gauge,
    busy: prometheus::Gauge,
    draining: prometheus::IntGauge,
}

impl NodeGauges {
    fn register(registry: &prometheus::Registry, id: &str) -> anyhow::Result<Self> {
        let info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("sportello_node_info", "This node's role and id (always 1)."),
            &["role", "node"],
        )?;
        registry.register(Box::new(info.clone()))?;
        info.with_label_values(&["media", id]).set(1);
        let g = |name: &str, help: &str| -> anyhow::Result<prometheus::IntGauge> {
            let g = prometheus::IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let f = |name: &str, help: &str| -> anyhow::Result<prometheus::Gauge> {
            let g = prometheus::Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(NodeGauges {
            calls: g(
                "sportello_node_media_calls",
                "Calls with media on this node, as advertised.",
            )?,
            capacity: g(
                "sportello_node_media_capacity",
                "Calls this node takes at most (cluster.capacity), as advertised.",
            )?,
            connections: g(
                "sportello_node_media_connections",
                "Peer connections on this node, as advertised.",
            )?,
            packets: f(
                "sportello_node_media_packets_per_second",
                "RTP packets received and forwarded per second, as advertised.",
            )?,
            busy: f(
                "sportello_node_media_busy_ratio",
                "Mean busy share of the forwarding loops (0-1), as advertised.",
            )?,
            draining: g(
                "sportello_node_draining",
                "1 while the node takes no new calls.",
            )?,
        })
    }

    fn set(&self, info: &NodeInfo) {
        self.calls
            .set(i64::try_from(info.calls).unwrap_or(i64::MAX));
        self.capacity
            .set(i64::try_from(info.capacity).unwrap_or(i64::MAX));
        self.connections
            .set(i64::try_from(info.connections).unwrap_or(i64::MAX));
        self.packets.set(info.packets_per_s);
        self.busy.set(info.busy_ratio);
        self.draining.set(i64::from(info.draining));
    }
}
