//! Where a call's media runs when the deployment has media nodes (`--role signalling`).
//!
//! - Media nodes heartbeat a [`NodeInfo`] into the shared records (namespace [`NODES_NS`]) with a
//!   time to live of `cluster.node_ttl_ms`: a node whose record expired is dead.
//! - [`run`] refreshes this node's view of them every half heartbeat, and moves the calls placed on
//!   a dead node (`node_lost`) or on a node that is leaving after its drain (`node_draining`) to
//!   the least-loaded live node. The move is the queue's `PlaceMedia` command, a compare-and-set on
//!   the call, so when every signalling node notices at once only one move wins; the committed
//!   `MediaPlaced` effect reaches every node, which sends `media.reconnect` to the parties it holds.
//! - [`ensure_placed`] places a call on its first `media.offer`, the same way.
//!
//! Media nodes are reached through their internal API (`medianode::MediaNodeClient`), signed with
//! the cluster's shared secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medianode::{MediaNodeClient, NodeInfo, Secret};
use protocol::ErrorCode;
use queue::{CallId, CallState, Shared, Time};

use super::Refusal;
use crate::shutdown::Phase;
use crate::state::AppState;

/// The shared-records namespace of the media nodes' heartbeats.
pub const NODES_NS: &str = "media-nodes";

/// Why a call's media moves.
pub const NODE_LOST: &str = "node_lost";
/// Why a call's media moves off a node that is shutting down.
pub const NODE_DRAINING: &str = "node_draining";

/// This signalling node's view of the media nodes.
pub struct Cluster {
    secret: Arc<Secret>,
    nodes: Mutex<Vec<NodeInfo>>,
    clients: Mutex<HashMap<String, (String, MediaNodeClient)>>,
    /// Call → media node, as the committed `MediaPlaced` effects said (for effects that no longer
    /// find the call, such as its end).
    placements: Mutex<HashMap<String, String>>,
    refresh_every: Duration,
    gauges: NodeGauges,
}

/// The media nodes' advertised load, as this signalling node last read it (`/metrics`).
struct NodeGauges {
    calls: prometheus::IntGaugeVec,
    busy: prometheus::GaugeVec,
    draining: prometheus::IntGaugeVec,
}

impl NodeGauges {
    fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let calls = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "sportello_media_node_calls",
                "Calls on each live media node, as it advertises.",
            ),
            &["node"],
        )?;
        let busy = prometheus::GaugeVec::new(
            prometheus::Opts::new(
                "sportello_media_node_busy_ratio",
                "Mean busy share of each live media node's forwarding loops (0-1).",
            ),
            &["node"],
        )?;
        let draining = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "sportello_media_node_draining",
                "1 while a live media node takes no new calls.",
            ),
            &["node"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(busy.clone()))?;
        registry.register(Box::new(draining.clone()))?;
        Ok(NodeGauges {
            calls,
            busy,
            draining,
        })
    }

    fn set(&self, nodes: &[NodeInfo]) {
        self.calls.reset();
        self.busy.reset();
        self.draining.reset();
        for n in nodes {
            self.calls
                .with_label_values(&[n.id.as_str()])
                .set(i64::try_from(n.calls).unwrap_or(i64::MAX));
            self.busy
                .with_label_values(&[n.id.as_str()])
                .set(n.busy_ratio);
            self.draining
                .with_label_values(&[n.id.as_str()])
                .set(i64::from(n.draining));
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes().len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// A view with no node known yet; [`run`] fills it. Its gauges go on `registry`.
    pub fn new(
        secret: Arc<Secret>,
        heartbeat_ms: u64,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<Self> {
        Ok(Cluster {
            secret,
            nodes: Mutex::default(),
            clients: Mutex::default(),
            placements: Mutex::default(),
            refresh_every: Duration::from_millis((heartbeat_ms / 2).max(100)),
            gauges: NodeGauges::register(registry)?,
        })
    }

    /// The live media nodes, as last read.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        lock(&self.nodes).clone()
    }

    /// The media nodes as the supervisors' wallboard shows them, by id.
    pub fn wallboard(&self) -> Vec<protocol::MediaNodeMetrics> {
        let mut nodes: Vec<protocol::MediaNodeMetrics> = self
            .nodes()
            .into_iter()
            .map(|n| protocol::MediaNodeMetrics {
                id: n.id,
                calls: n.calls,
                capacity: n.capacity,
                packets_per_s: n.packets_per_s,
                busy_ratio: n.busy_ratio,
                draining: n.draining,
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    fn node(&self, id: &str) -> Option<NodeInfo> {
        lock(&self.nodes).iter().find(|n| n.id == id).cloned()
    }

    /// Whether `id` is live and not leaving.
    fn usable(&self, id: &str) -> bool {
        self.node(id).is_some_and(|n| !n.leaving)
    }

    /// The least-loaded live node with room, other than `exclude`.
    fn choose(&self, exclude: Option<&str>) -> Option<String> {
        let nodes: Vec<NodeInfo> = self
            .nodes()
            .into_iter()
            .filter(|n| Some(n.id.as_str()) != exclude && !n.leaving)
            .collect();
        // Liveness is the record's presence (its time to live runs on the store's clock), so
        // the heartbeat times are not compared with this node's clock.
        medianode::placement::choose(&nodes, 0, u64::MAX).map(|n| n.id.clone())
    }

    /// A client of node `id`'s internal API.
    pub fn client(&self, id: &str) -> Result<MediaNodeClient, Refusal> {
        let Some(info) = self.node(id) else {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                format!("media node {id} is not available; try again"),
            ));
        };
        let mut clients = lock(&self.clients);
        if let Some((url, c)) = clients.get(id) {
            if *url == info.internal_url {
                return Ok(c.clone());
            }
        }
        let c = MediaNodeClient::new(&info.internal_url, self.secret.clone())
            .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
        clients.insert(id.to_owned(), (info.internal_url.clone(), c.clone()));
        Ok(c)
    }

    /// Records a committed placement.
    pub fn placed(&self, call_id: &str, node: &str) {
        lock(&self.placements).insert(call_id.to_owned(), node.to_owned());
    }

    /// Forgets an ended call; returns the node it was on.
    pub fn forget(&self, call_id: &str) -> Option<String> {
        lock(&self.placements).remove(call_id)
    }

    /// The node a call was last placed on, as the effects said.
    pub fn placement(&self, call_id: &str) -> Option<String> {
        lock(&self.placements).get(call_id).cloned()
    }

    async fn refresh(&self, state: &AppState) -> Result<(), queue::Error> {
        let r = &state.routing;
        let records = r.shared.list(&r.tenant, NODES_NS, Time::now()).await?;
        let nodes: Vec<NodeInfo> = records
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        self.gauges.set(&nodes);
        *lock(&self.nodes) = nodes;
        Ok(())
    }
}

/// The node the call's media is on, placing it first if it is on no usable node.
pub async fn ensure_placed(
    state: &AppState,
    cluster: &Cluster,
    id: &CallId,
    current: Option<String>,
) -> Result<String, Refusal> {
    let mut current = current;
    for _ in 0..3 {
        if let Some(n) = &current {
            if cluster.usable(n) {
                return Ok(n.clone());
            }
        }
        let Some(next) = cluster.choose(current.as_deref()) else {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "no media node is available; try again shortly",
            ));
        };
        let reason = match &current {
            None => "",
            Some(n) if cluster.node(n).is_some() => NODE_DRAINING,
            Some(_) => NODE_LOST,
        };
        let r = &state.routing;
        match r
            .queue
            .place_media(
                &r.tenant,
                Time::now(),
                id,
                &next,
                current.as_deref(),
                reason,
            )
            .await
        {
            Ok(applied) => {
                r.observe(&applied);
                cluster.placed(id.as_str(), &next);
                return Ok(next);
            }
            Err(queue::Error::Conflict(_)) => {
                // Another node placed it first: use what won.
                current = super::media::view(state, id).await?.media_node;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Refusal::new(
        ErrorCode::Unavailable,
        "the call's media is being moved; try again",
    ))
}

/// Keeps the view of the media nodes fresh and moves the calls of dead or leaving nodes, until
/// the server stops.
pub async fn run(state: AppState, cluster: Arc<Cluster>) {
    let mut phase = state.shutdown.subscribe();
    loop {
        match cluster.refresh(&state).await {
            Ok(()) => sweep(&state, &cluster).await,
            Err(e) => tracing::debug!(error = %e, "cannot read the media nodes"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cluster.refresh_every) => {}
            _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
        }
    }
}

/// Moves every call in conversation whose media node is dead or leaving.
async fn sweep(state: &AppState, cluster: &Cluster) {
    let r = &state.routing;
    let placed = r
        .queue
        .read(&r.tenant, |st| {
            st.calls
                .values()
                .filter(|c| {
                    matches!(
                        c.state,
                        CallState::Connected { .. } | CallState::Held { .. }
                    )
                })
                .filter_map(|c| Some((c.call_id.clone(), c.media_node.clone()?)))
                .collect::<Vec<_>>()
        })
        .await;
    let Ok(placed) = placed else {
        return;
    };
    for (id, node) in placed {
        if cluster.usable(&node) {
            continue;
        }
        match ensure_placed(state, cluster, &id, Some(node.clone())).await {
            Ok(to) => {
                tracing::info!(call_id = %id, from = %node, %to, "call media moved");
            }
            Err(e) => {
                tracing::warn!(call_id = %id, from = %node, message = %e.message,
                    "cannot move the call's media yet");
            }
        }
    }
}
