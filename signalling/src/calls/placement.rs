//! Where a call's media runs when the deployment has media nodes (`--role signalling`).
//!
//! - Media nodes heartbeat a [`NodeInfo`] into the shared records (namespace [`NODES_NS`]) with a
//!   time to live of `cluster.node_ttl_ms`. A call's placement names the node and its instance
//!   (`id@instance`, a fresh instance per start), so a node restarted under the same id is a new
//!   placement.
//! - [`run`] refreshes this node's view of them every half heartbeat and moves the calls placed on
//!   a node that is gone (`node_lost`) or leaving after its drain (`node_draining`) to the
//!   least-loaded live node. A node counts as gone only after its record has been missing from
//!   successful reads for a heartbeat (so a store failover, during which heartbeats cannot be
//!   written, moves nothing), and only after a direct read of its record confirms it (so a view a
//!   moment old cannot move a call off a node another signalling node just placed it on).
//! - The move is the queue's `PlaceMedia` command, a compare-and-set on the call, so when every
//!   signalling node notices at once only one move wins; the committed `MediaPlaced` effect reaches
//!   every node, which sends `media.reconnect` to the parties it holds.
//! - [`ensure_placed`] places a call at accept and on its first `media.offer`, the same way.
//!
//! Media nodes are reached through their internal API (`medianode::MediaNodeClient`), signed with
//! the cluster's shared secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    view: Mutex<View>,
    clients: Mutex<HashMap<String, (String, MediaNodeClient)>>,
    /// Call → placement, as the committed `MediaPlaced` effects said (for effects that no longer
    /// find the call, such as its end).
    placements: Mutex<HashMap<String, String>>,
    refresh_every: Duration,
    /// How long a placement's node must be missing from successful reads before it counts as gone.
    absence: Duration,
    gauges: NodeGauges,
}

/// What the last reads said.
#[derive(Default)]
struct View {
    /// The nodes whose records parse, as last read.
    nodes: Vec<NodeInfo>,
    /// The ids of every record, also those that do not parse (a newer version's): never gone.
    ids: Vec<String>,
    /// Since when reads of the store succeed without a failure (`None`: the last read failed).
    healthy_since: Option<Instant>,
    /// Placements whose node was missing, since when (cleared by a failed read).
    missing_since: HashMap<String, Instant>,
}

/// Where a placement stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// Its node is live and takes calls.
    Usable,
    /// Its node is shutting down and asked for its calls to be moved.
    Leaving,
    /// Its node has been gone long enough (or restarted: another instance runs under its id).
    Gone,
    /// Not known yet (missing only a moment, the store just came back, or a record that does not
    /// parse): leave it alone for now.
    Unsure,
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
            view: Mutex::default(),
            clients: Mutex::default(),
            placements: Mutex::default(),
            refresh_every: Duration::from_millis((heartbeat_ms / 2).max(100)),
            absence: Duration::from_millis(heartbeat_ms.max(100)),
            gauges: NodeGauges::register(registry)?,
        })
    }

    /// The live media nodes, as last read.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        lock(&self.view).nodes.clone()
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

    /// The live node a placement names.
    fn node(&self, placement: &str) -> Option<NodeInfo> {
        lock(&self.view)
            .nodes
            .iter()
            .find(|n| n.placement() == placement)
            .cloned()
    }

    /// Where `placement` stands in the view, as of `now`.
    fn standing(&self, placement: &str, now: Instant) -> Standing {
        let mut view = lock(&self.view);
        if let Some(n) = view.nodes.iter().find(|n| n.placement() == placement) {
            return if n.leaving {
                Standing::Leaving
            } else {
                Standing::Usable
            };
        }
        let id = NodeInfo::node_of(placement);
        let restarted = view.nodes.iter().any(|n| n.id == id);
        if view.ids.iter().any(|i| i == id) && !restarted {
            // A record under its id that does not parse: not ours to judge.
            return Standing::Unsure;
        }
        let Some(healthy) = view.healthy_since else {
            return Standing::Unsure;
        };
        if restarted {
            return Standing::Gone;
        }
        let absence = self.absence;
        let since = *view
            .missing_since
            .entry(placement.to_owned())
            .or_insert(now);
        if now.duration_since(since) >= absence && now.duration_since(healthy) >= absence {
            Standing::Gone
        } else {
            Standing::Unsure
        }
    }

    /// The least-loaded live node with room, other than the node of `exclude`.
    fn choose(&self, exclude: Option<&str>) -> Option<String> {
        let skip = exclude.map(NodeInfo::node_of);
        let nodes: Vec<NodeInfo> = self
            .nodes()
            .into_iter()
            .filter(|n| Some(n.id.as_str()) != skip && !n.leaving)
            .collect();
        // Liveness is the record's presence (its time to live runs on the store's clock), so
        // the heartbeat times are not compared with this node's clock.
        medianode::placement::choose(&nodes, 0, u64::MAX).map(NodeInfo::placement)
    }

    /// Counts a call just placed on `placement` until the node's next heartbeat says, so that
    /// the calls of a dead node spread instead of all going to the node that was least loaded.
    fn count_one(&self, placement: &str) {
        if let Some(n) = lock(&self.view)
            .nodes
            .iter_mut()
            .find(|n| n.placement() == placement)
        {
            n.calls = n.calls.saturating_add(1);
        }
    }

    /// A client of the internal API of the node a placement names.
    pub fn client(&self, placement: &str) -> Result<MediaNodeClient, Refusal> {
        let Some(info) = self.node(placement) else {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                format!(
                    "media node {} is not available; try again",
                    NodeInfo::node_of(placement)
                ),
            ));
        };
        let mut clients = lock(&self.clients);
        if let Some((url, c)) = clients.get(&info.id) {
            if *url == info.internal_url {
                return Ok(c.clone());
            }
        }
        let c = MediaNodeClient::new(&info.internal_url, self.secret.clone())
            .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
        clients.insert(info.id.clone(), (info.internal_url.clone(), c.clone()));
        Ok(c)
    }

    /// Clients of every live node (to end a call whose node is not known any more).
    pub fn all_clients(&self) -> Vec<MediaNodeClient> {
        self.nodes()
            .iter()
            .filter_map(|n| self.client(&n.placement()).ok())
            .collect()
    }

    /// Records a committed placement.
    pub fn placed(&self, call_id: &str, placement: &str) {
        lock(&self.placements).insert(call_id.to_owned(), placement.to_owned());
    }

    /// Forgets an ended call; returns its placement.
    pub fn forget(&self, call_id: &str) -> Option<String> {
        lock(&self.placements).remove(call_id)
    }

    /// The placement of a call, as the effects said.
    pub fn placement(&self, call_id: &str) -> Option<String> {
        lock(&self.placements).get(call_id).cloned()
    }

    async fn refresh(&self, state: &AppState) -> Result<(), queue::Error> {
        let r = &state.routing;
        let records = match r.shared.list(&r.tenant, NODES_NS, Time::now()).await {
            Ok(records) => records,
            Err(e) => {
                let mut view = lock(&self.view);
                view.healthy_since = None;
                view.missing_since.clear();
                return Err(e);
            }
        };
        let mut nodes = Vec::new();
        let mut ids = Vec::new();
        for (id, value) in records {
            match serde_json::from_str::<NodeInfo>(&value) {
                Ok(n) => nodes.push(n),
                Err(e) => tracing::warn!(node = %id, error = %e,
                    "a media node's record does not parse; its calls are left alone"),
            }
            ids.push(id);
        }
        self.gauges.set(&nodes);
        let mut view = lock(&self.view);
        let now = Instant::now();
        view.healthy_since.get_or_insert(now);
        let present: Vec<String> = nodes.iter().map(NodeInfo::placement).collect();
        view.missing_since.retain(|p, _| !present.contains(p));
        view.nodes = nodes;
        view.ids = ids;
        // Clients of nodes that are gone are dropped with them.
        let live: Vec<String> = view.ids.clone();
        drop(view);
        lock(&self.clients).retain(|id, _| live.contains(id));
        Ok(())
    }

    /// Reads a placement's node record directly (not the view): whether it is there, live, and
    /// the same instance. A node that is there joins the view.
    async fn confirm(&self, state: &AppState, placement: &str) -> Result<Standing, queue::Error> {
        let r = &state.routing;
        let id = NodeInfo::node_of(placement);
        let Some(value) = r.shared.get(&r.tenant, NODES_NS, id, Time::now()).await? else {
            return Ok(Standing::Gone);
        };
        let Ok(info) = serde_json::from_str::<NodeInfo>(&value) else {
            return Ok(Standing::Unsure);
        };
        if info.placement() != placement {
            return Ok(Standing::Gone);
        }
        let leaving = info.leaving;
        let mut view = lock(&self.view);
        if !view.nodes.iter().any(|n| n.placement() == placement) {
            view.nodes.push(info);
            view.ids.push(id.to_owned());
        }
        Ok(if leaving {
            Standing::Leaving
        } else {
            Standing::Usable
        })
    }
}

/// The node the call's media is on, placing it first if it has none, or moving it if its node is
/// gone or leaving. `unavailable` while that cannot be told yet.
pub async fn ensure_placed(
    state: &AppState,
    cluster: &Cluster,
    id: &CallId,
    current: Option<String>,
) -> Result<String, Refusal> {
    let mut current = current;
    for _ in 0..3 {
        let reason = match &current {
            None => "",
            Some(p) => match cluster.standing(p, Instant::now()) {
                Standing::Usable => return Ok(p.clone()),
                Standing::Leaving => NODE_DRAINING,
                // The view may be a moment old: ask the store before moving anything.
                Standing::Gone | Standing::Unsure => match cluster.confirm(state, p).await? {
                    Standing::Usable => return Ok(p.clone()),
                    Standing::Leaving => NODE_DRAINING,
                    Standing::Gone if cluster.standing(p, Instant::now()) == Standing::Gone => {
                        NODE_LOST
                    }
                    _ => {
                        return Err(Refusal::new(
                            ErrorCode::Unavailable,
                            "the call's media node does not answer; try again shortly",
                        ))
                    }
                },
            },
        };
        let Some(next) = cluster.choose(current.as_deref()) else {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "no media node is available; try again shortly",
            ));
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
                r.observe(&applied).await;
                cluster.placed(id.as_str(), &next);
                cluster.count_one(&next);
                return Ok(next);
            }
            Err(queue::Error::Conflict(_)) => {
                // Another node placed or moved it first: use what won.
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

/// Keeps the view of the media nodes fresh and moves the calls of gone or leaving nodes, until
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

/// Moves every call in conversation whose media node is gone or leaving.
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
        match cluster.standing(&node, Instant::now()) {
            Standing::Usable | Standing::Unsure => continue,
            Standing::Leaving | Standing::Gone => {}
        }
        match ensure_placed(state, cluster, &id, Some(node.clone())).await {
            Ok(to) if to != node => {
                tracing::info!(call_id = %id, from = %node, %to, "call media moved");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(call_id = %id, from = %node, message = %e.message,
                    "the call's media stays where it is for now");
            }
        }
    }
}
