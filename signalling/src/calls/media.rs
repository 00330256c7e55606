//! The media messages over the wire: `media.offer`, `media.candidate`, `monitor.start/stop`, and
//! `media.stats` events; and the glue between the call lifecycle and the SFU.
//!
//! - Who may negotiate: the call's kiosk and its operator while the call is in conversation
//!   (connected or on hold), and a supervisor after `monitor.start` on that call.
//! - The queue's effects drive the media plane: hold/resume pause and restart forwarding, an ended
//!   call closes every connection, a requeued call drops its old operator's connection, and a
//!   call whose media moved to another media node gets `media.reconnect` (to its monitors here;
//!   `calls::events` tells its parties).
//! - The SFU's events come back here: `media.stats` goes to the call's operator and monitoring
//!   supervisors; a connection failed past the grace period ends the call.
//!
//! Where the SFU is ([`Backend`]): in this process (`--role all`), or on media nodes reached
//! through their internal API (`--role signalling`; `calls::placement` chooses the node, and the
//! nodes' events arrive on the bus, `calls::bus`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use medianode::MediaNodeClient;
use protocol::media::{MediaAnswer, MediaCandidate, MediaOffer};
use protocol::{ErrorCode, Event, Role};
use queue::{CallId, CallState, Effect, OperatorId, Time};
use serde_json::Value;
use sfu::{MediaError, MediaEvent, MediaRole, Participant, Sfu};

use super::placement::Cluster;
use tokio::sync::mpsc::UnboundedReceiver;

use super::events::Recipient;
use super::{call_id, Refusal, SessionCtx};
use crate::state::AppState;

/// Where this node's calls negotiate media.
#[derive(Debug)]
pub enum Backend {
    /// The SFU in this process.
    Local(Sfu),
    /// Media nodes, through their internal API.
    Remote(Arc<Cluster>),
}

/// The process's media plane and who monitors which call.
pub struct MediaPlane {
    /// Where the SFU is.
    pub backend: Backend,
    monitors: Mutex<HashMap<String, BTreeSet<String>>>,
    /// One worker per media node that carries out the queue effects' media actions in order.
    workers: Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<Job>>>,
}

/// One effect's media action on a media node.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl std::fmt::Debug for MediaPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPlane")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// One call's SFU: here, or on a media node.
enum Target {
    Local(Sfu),
    Remote(MediaNodeClient),
}

impl Target {
    async fn offer(
        &self,
        call_id: &str,
        who: Participant,
        sdp: String,
        held: bool,
    ) -> Result<String, MediaError> {
        match self {
            Target::Local(sfu) => Ok(sfu.offer(call_id, who, sdp, held).await?.sdp),
            Target::Remote(c) => Ok(c.offer(call_id, who, sdp, held).await?.sdp),
        }
    }

    async fn candidate(
        &self,
        call_id: &str,
        who: Participant,
        candidate: sfu::Candidate,
    ) -> Result<(), MediaError> {
        match self {
            Target::Local(sfu) => sfu.candidate(call_id, who, candidate).await,
            Target::Remote(c) => c.candidate(call_id, who, candidate).await,
        }
    }

    async fn leave(&self, call_id: &str, who: Participant) {
        match self {
            Target::Local(sfu) => sfu.leave(call_id, who),
            Target::Remote(c) => {
                let _ = c.leave(call_id, who).await;
            }
        }
    }

    async fn set_held(&self, call_id: &str, held: bool) {
        match self {
            Target::Local(sfu) => sfu.set_held(call_id, held),
            Target::Remote(c) => {
                let _ = c.set_held(call_id, held).await;
            }
        }
    }

    async fn end_call(&self, call_id: &str) {
        match self {
            Target::Local(sfu) => sfu.end_call(call_id),
            Target::Remote(c) => {
                let _ = c.end_call(call_id).await;
            }
        }
    }
}

impl MediaPlane {
    /// Wraps a running SFU in this process.
    pub fn new(sfu: Sfu) -> Self {
        Self::with_backend(Backend::Local(sfu))
    }

    /// A media plane on `backend`.
    pub fn with_backend(backend: Backend) -> Self {
        MediaPlane {
            backend,
            monitors: Mutex::new(HashMap::new()),
            workers: Mutex::default(),
        }
    }

    /// Runs `job` after the jobs queued before it for the same node.
    fn enqueue(&self, node: &str, job: Job) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let tx = workers.entry(node.to_owned()).or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    job.await;
                }
            });
            tx
        });
        if let Err(e) = tx.send(job) {
            // The worker is gone (it cannot be, short of a panic): start a new one.
            workers.remove(node);
            drop(workers);
            self.enqueue(node, e.0);
        }
    }

    /// The SFU in this process, if it runs one.
    pub fn local(&self) -> Option<&Sfu> {
        match &self.backend {
            Backend::Local(sfu) => Some(sfu),
            Backend::Remote(_) => None,
        }
    }

    /// The media nodes, if the media runs on them.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Remote(c) => Some(c),
        }
    }

    /// Where a call already placed (or known from effects) negotiates, without placing it.
    fn target_known(&self, call_id: &str, node: Option<&str>) -> Option<Target> {
        match &self.backend {
            Backend::Local(sfu) => Some(Target::Local(sfu.clone())),
            Backend::Remote(cluster) => {
                let node = node
                    .map(str::to_owned)
                    .or_else(|| cluster.placement(call_id))?;
                cluster.client(&node).ok().map(Target::Remote)
            }
        }
    }

    fn monitoring(&self, call: &str, supervisor: &str) -> bool {
        self.monitors
            .lock()
            .map(|m| m.get(call).is_some_and(|s| s.contains(supervisor)))
            .unwrap_or(false)
    }

    fn monitors_of(&self, call: &str) -> Vec<String> {
        self.monitors
            .lock()
            .map(|m| {
                m.get(call)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    fn drop_monitors(&self, call: &str) -> Vec<String> {
        self.monitors
            .lock()
            .map(|mut m| {
                m.remove(call)
                    .map(|s| s.into_iter().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

/// The call as media negotiation and the in-call actions need it.
pub(super) struct CallView {
    /// The call's kiosk.
    pub kiosk: String,
    /// The operator it is offered or assigned to.
    pub operator: Option<String>,
    /// Connected or on hold.
    pub in_call: bool,
    /// On hold.
    pub held: bool,
    /// The media node its media is placed on, if any.
    pub media_node: Option<String>,
}

/// The call's parties and state, or `not_found`.
pub(super) async fn view(state: &AppState, id: &CallId) -> Result<CallView, Refusal> {
    let r = &state.routing;
    let found = r
        .queue
        .read(&r.tenant, |st| {
            st.calls.get(id).map(|c| {
                let (operator, in_call, held) = match &c.state {
                    CallState::Connected { operator } => (Some(operator.to_string()), true, false),
                    CallState::Held { operator } => (Some(operator.to_string()), true, true),
                    CallState::Offered { operator, .. } | CallState::WrapUp { operator, .. } => {
                        (Some(operator.to_string()), false, false)
                    }
                    CallState::Waiting => (None, false, false),
                };
                CallView {
                    kiosk: c.kiosk_id.to_string(),
                    operator,
                    in_call,
                    held,
                    media_node: c.media_node.clone(),
                }
            })
        })
        .await?;
    found.ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no call {id}")))
}

/// Whose connection this session's media request is about, after the ownership and state checks.
async fn participant(
    state: &AppState,
    ctx: &SessionCtx,
    raw_call_id: &str,
) -> Result<(Participant, CallView), Refusal> {
    let id = call_id(raw_call_id)?;
    let call = view(state, &id).await?;
    let me = &ctx.principal.id;
    let role = match ctx.principal.role {
        Role::Kiosk if &call.kiosk == me => MediaRole::Kiosk,
        Role::Operator if call.operator.as_ref() == Some(me) => MediaRole::Operator,
        Role::Supervisor => {
            if !state.media.monitoring(raw_call_id, me) {
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    format!("send monitor.start for call {id} first"),
                ));
            }
            MediaRole::Monitor
        }
        _ => {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("call {id} is not yours"),
            ))
        }
    };
    if !call.in_call {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("call {id} is not in conversation"),
        ));
    }
    Ok((
        Participant {
            principal: me.clone(),
            role,
        },
        call,
    ))
}

fn refusal(e: MediaError) -> Refusal {
    match e {
        MediaError::BadSdp(_) | MediaError::BadCandidate(_) => {
            Refusal::new(ErrorCode::Invalid, e.to_string())
        }
        MediaError::NoConnection => Refusal::new(ErrorCode::NotFound, e.to_string()),
        MediaError::Unavailable => Refusal::new(ErrorCode::Unavailable, e.to_string()),
        MediaError::Internal(_) => super::internal(&e),
    }
}

/// `media.offer`.
pub(super) async fn offer(
    state: &AppState,
    ctx: &SessionCtx,
    req: MediaOffer,
) -> Result<Value, Refusal> {
    let (who, call) = participant(state, ctx, &req.call_id).await?;
    if req.monitor != (who.role == MediaRole::Monitor) {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            if req.monitor {
                "\"monitor\":true is for supervisors only"
            } else {
                "a supervisor's offer needs \"monitor\":true"
            },
        ));
    }
    let (target, media_node) = target(state, &req.call_id, &call).await?;
    let sdp = target
        .offer(&req.call_id, who, req.sdp, call.held)
        .await
        .map_err(refusal)?;
    // The SFU's candidates are all in its answer (ICE-lite, host candidates only), so it sends no
    // `media.candidate` events of its own.
    Ok(serde_json::to_value(MediaAnswer { sdp, media_node }).unwrap_or(Value::Null))
}

/// Where the call negotiates: this process's SFU, or its media node (placed now if it has none
/// usable).
async fn target(
    state: &AppState,
    raw_call_id: &str,
    call: &CallView,
) -> Result<(Target, Option<String>), Refusal> {
    match &state.media.backend {
        Backend::Local(sfu) => Ok((Target::Local(sfu.clone()), None)),
        Backend::Remote(cluster) => {
            let id = call_id(raw_call_id)?;
            let node =
                super::placement::ensure_placed(state, cluster, &id, call.media_node.clone())
                    .await?;
            Ok((Target::Remote(cluster.client(&node)?), Some(node)))
        }
    }
}

/// `media.candidate`.
pub(super) async fn candidate(
    state: &AppState,
    ctx: &SessionCtx,
    req: MediaCandidate,
) -> Result<Value, Refusal> {
    let (who, call) = participant(state, ctx, &req.call_id).await?;
    target(state, &req.call_id, &call)
        .await?
        .0
        .candidate(
            &req.call_id,
            who,
            sfu::Candidate {
                candidate: req.candidate,
                sdp_mid: req.sdp_mid,
                sdp_mline_index: req.sdp_mline_index,
            },
        )
        .await
        .map_err(refusal)?;
    Ok(Value::Null)
}

/// `monitor.start`: the supervisor may then offer a monitor connection for the call.
pub(super) async fn monitor_start(
    state: &AppState,
    ctx: &SessionCtx,
    raw_call_id: &str,
) -> Result<Value, Refusal> {
    let id = call_id(raw_call_id)?;
    let call = view(state, &id).await?;
    if !call.in_call {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!("call {id} is not in conversation"),
        ));
    }
    if let Ok(mut m) = state.media.monitors.lock() {
        m.entry(raw_call_id.to_owned())
            .or_default()
            .insert(ctx.principal.id.clone());
    }
    Ok(Value::Null)
}

/// `monitor.stop`: closes the supervisor's monitor connection (if any).
pub(super) async fn monitor_stop(
    state: &AppState,
    ctx: &SessionCtx,
    raw_call_id: &str,
) -> Result<Value, Refusal> {
    let id = call_id(raw_call_id)?;
    let call = view(state, &id).await?;
    if let Ok(mut m) = state.media.monitors.lock() {
        if let Some(set) = m.get_mut(raw_call_id) {
            set.remove(&ctx.principal.id);
            if set.is_empty() {
                m.remove(raw_call_id);
            }
        }
    }
    if let Some(t) = state
        .media
        .target_known(raw_call_id, call.media_node.as_deref())
    {
        t.leave(
            raw_call_id,
            Participant {
                principal: ctx.principal.id.clone(),
                role: MediaRole::Monitor,
            },
        )
        .await;
    }
    Ok(Value::Null)
}

/// Applies one committed queue effect to this process's media plane. Every node sees every
/// effect; with media nodes, each signalling node passes it on (the media node's handlers are
/// idempotent).
pub(super) fn on_effect(state: &AppState, effect: &Effect) {
    let media = &state.media;
    let (call, action): (&CallId, MediaAction) =
        match effect {
            Effect::Held { call_id, .. } => (call_id, MediaAction::Held(true)),
            Effect::Resumed { call_id, .. } => (call_id, MediaAction::Held(false)),
            Effect::CallEnded { call_id, .. } => {
                media.drop_monitors(call_id.as_str());
                (call_id, MediaAction::End)
            }
            Effect::Requeued {
                call_id,
                from_operator,
                ..
            } => {
                // The conversation is over for its operator and its monitors; the kiosk's connection
                // stays for the next operator.
                let mut gone: Vec<Participant> = from_operator
                    .iter()
                    .map(|op| Participant {
                        principal: op.to_string(),
                        role: MediaRole::Operator,
                    })
                    .collect();
                gone.extend(media.drop_monitors(call_id.as_str()).into_iter().map(|s| {
                    Participant {
                        principal: s,
                        role: MediaRole::Monitor,
                    }
                }));
                (call_id, MediaAction::Leave(gone))
            }
            Effect::MediaPlaced {
                call_id,
                node,
                previous,
                reason,
                ..
            } => {
                if let Some(cluster) = media.cluster() {
                    cluster.placed(call_id.as_str(), node);
                }
                let Some(previous) = previous else {
                    return;
                };
                // The parties are told by `calls::events`; the monitors are known here only.
                let frame: Arc<str> = Arc::from(
                    Event::MediaReconnect(protocol::media::MediaReconnect {
                        call_id: call_id.to_string(),
                        reason: reason.clone(),
                    })
                    .to_json(),
                );
                for id in media.monitors_of(call_id.as_str()) {
                    let to = Recipient {
                        role: Role::Supervisor,
                        id,
                    };
                    state.events.send_local(&to, &frame);
                }
                // Free what is left on the old node, if it still answers (a draining one does).
                (call_id, MediaAction::EndOn(previous.clone()))
            }
            _ => return,
        };
    let raw = call.as_str();
    let Some(cluster) = media.cluster() else {
        // In-process calls are quick sends to the forwarding loops: done here, in the effects'
        // order.
        if let Some(target) = media.target_known(raw, None) {
            let run = apply(target, raw.to_owned(), action);
            futures_util::FutureExt::now_or_never(run).unwrap_or(());
        }
        return;
    };
    // On media nodes: in order per node, by one worker each, so a hold and a resume cannot
    // overtake each other, and a slow node holds up only its own calls.
    let known = match &action {
        MediaAction::EndOn(node) => Some(node.clone()),
        MediaAction::End => cluster.forget(raw),
        _ => cluster.placement(raw),
    };
    let (state2, raw) = (state.clone(), raw.to_owned());
    let key = known.as_deref().map_or_else(
        || "?".to_owned(),
        |p| medianode::NodeInfo::node_of(p).to_owned(),
    );
    let job = async move {
        let cluster = match state2.media.cluster() {
            Some(c) => c.clone(),
            None => return,
        };
        let placement = match known {
            Some(p) => Some(p),
            // This node never saw the placement (it started later): ask the queue.
            None => match call_id_opt(&raw) {
                Some(id) => view(&state2, &id).await.ok().and_then(|c| c.media_node),
                None => None,
            },
        };
        match placement {
            Some(p) => {
                if let Ok(c) = cluster.client(&p) {
                    apply(Target::Remote(c), raw, action).await;
                }
            }
            // An ended call nobody here knew the node of: every live node forgets it.
            None if matches!(action, MediaAction::End) => {
                for c in cluster.all_clients() {
                    let _ = c.end_call(&raw).await;
                }
            }
            None => {}
        }
    };
    media.enqueue(&key, Box::pin(job));
}

/// Carries out one effect's media action on `target`.
async fn apply(target: Target, raw: String, action: MediaAction) {
    match action {
        MediaAction::Held(held) => target.set_held(&raw, held).await,
        MediaAction::End | MediaAction::EndOn(_) => target.end_call(&raw).await,
        MediaAction::Leave(gone) => {
            for who in gone {
                target.leave(&raw, who).await;
            }
        }
    }
}

/// What an effect asks of the SFU.
enum MediaAction {
    Held(bool),
    End,
    EndOn(String),
    Leave(Vec<Participant>),
}

/// Relays the SFU's events until the SFU stops.
pub async fn run_events(state: AppState, mut rx: UnboundedReceiver<MediaEvent>) {
    let mut phase = state.shutdown.subscribe();
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = phase.wait_for(|p| *p == crate::shutdown::Phase::Stopping) => None,
        };
        let Some(event) = event else {
            return;
        };
        on_media_event(&state, event, None).await;
    }
}

/// An event a media node published on the bus (see `calls::bus`).
pub(super) async fn on_node_event(state: &AppState, from: &str, event: Value) {
    if state.media.cluster().is_none() {
        return;
    }
    match serde_json::from_value::<medianode::NodeEvent>(event) {
        Ok(e) => on_media_event(state, e.into(), Some(from)).await,
        Err(e) => tracing::debug!(node = from, error = %e, "an undecodable media node event"),
    }
}

/// One event of the SFU: here (`node` is `None`) or on media node `node`.
async fn on_media_event(state: &AppState, event: MediaEvent, node: Option<&str>) {
    match event {
        MediaEvent::Stats(stats) => {
            if let (Some(node), Some(cluster)) = (node, state.media.cluster()) {
                // A node the call has moved away from no longer speaks for it.
                if cluster
                    .placement(&stats.call_id)
                    .is_some_and(|p| medianode::NodeInfo::node_of(&p) != node)
                {
                    return;
                }
            }
            let mut to: Vec<Recipient> = stats
                .directions
                .iter()
                .filter(|d| d.to == MediaRole::Operator.as_str())
                .map(|d| Recipient {
                    role: Role::Operator,
                    id: d.to_principal.clone(),
                })
                .collect();
            to.dedup_by(|a, b| a.id == b.id);
            to.extend(
                state
                    .media
                    .monitors_of(&stats.call_id)
                    .into_iter()
                    .map(|id| Recipient {
                        role: Role::Supervisor,
                        id,
                    }),
            );
            let frame: Arc<str> = Arc::from(Event::MediaStats(stats).to_json());
            for r in &to {
                state.events.send_local(r, &frame);
            }
        }
        MediaEvent::Connected { call_id, who } => {
            tracing::info!(%call_id, role = who.role.as_str(), node, "media connected");
        }
        MediaEvent::Failed { call_id, who } => {
            if let Some(node) = node {
                // A node the call has moved away from no longer speaks for it.
                let current = match call_id_opt(&call_id) {
                    Some(id) => view(state, &id).await.ok().and_then(|c| c.media_node),
                    None => None,
                };
                if current.as_deref().map(medianode::NodeInfo::node_of) != Some(node) {
                    return;
                }
                // Every signalling node hears this; the first to end the call wins, and the
                // others find it no longer in conversation.
            }
            tracing::warn!(%call_id, role = who.role.as_str(), principal = %who.principal, node,
                "media connection failed past its grace period");
            if who.role == MediaRole::Monitor {
                if let Some(t) = state.media.target_known(&call_id, node) {
                    t.leave(&call_id, who).await;
                }
                return;
            }
            if let Err(r) = end_failed_call(state, &call_id, node).await {
                tracing::debug!(%call_id, message = %r.message, "could not end the call");
            }
        }
    }
}

fn call_id_opt(raw: &str) -> Option<CallId> {
    CallId::new(raw).ok()
}

/// A party's media is gone for good: the conversation ends (the operator goes to wrap-up).
async fn end_failed_call(
    state: &AppState,
    raw_call_id: &str,
    node: Option<&str>,
) -> Result<(), Refusal> {
    let id = call_id(raw_call_id)?;
    let call = view(state, &id).await?;
    let (Some(op), true) = (call.operator, call.in_call) else {
        if let Some(t) = state.media.target_known(raw_call_id, node) {
            t.end_call(raw_call_id).await;
        }
        return Ok(());
    };
    let r = &state.routing;
    let op = OperatorId::new(op).map_err(Refusal::from)?;
    let applied = r.queue.end(&r.tenant, Time::now(), &op, &id).await?;
    r.observe(&applied).await;
    Ok(())
}
