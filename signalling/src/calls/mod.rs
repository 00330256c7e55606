//! The call lifecycle over the wire: kiosks, operators and supervisors connected through the queue.
//!
//! - [`handle`] answers one request of an authenticated session: it checks the role, turns the
//!   request into a queue command (the queue core is the one call state machine; it checks that the
//!   call is the kiosk's or offered/assigned to the operator), and counts the committed batch in the
//!   Prometheus metrics.
//! - [`on_open`] runs after every successful `auth`: an operator is registered with the queue on
//!   this node, a kiosk's calls are re-attached to this node, and the `state.sync` is computed.
//! - [`deliver`] turns every committed batch of the tenant (from any node, through the queue's
//!   subscription) into events for the sessions of this process, by principal. So an event reaches
//!   a client whichever process it is connected to.
//! - [`principal_lost`] applies the protocol's rules when a principal's last session on this node
//!   passes its grace period.
//! - [`push_metrics`] sends `metrics.snapshot` to subscribed supervisors every second.

pub mod bus;
pub mod events;
pub mod hub;
pub mod incall;
pub mod live;
pub mod media;
pub mod outcome;
pub mod placement;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::{
    CallCreated, ClientFrame, ErrorCode, Event, PresenceState, Request, Role, ServerFrame,
};
use queue::{
    CallId, EffectReceiver, KioskId, Language, NewCall, OperatorId, OperatorLogin, Presence,
    Service, Store, Time, TransferTarget,
};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::accounts::Principal;
use crate::shutdown::Phase;
use crate::state::AppState;
use events::{events_for, metrics_snapshot, state_sync, Recipient};

/// The presence reason of an operator who just logged in and has not chosen to be available.
pub const LOGIN_PAUSE_REASON: &str = "login";

/// What a request handler knows about its session.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    /// Who the session is.
    pub principal: Principal,
    /// The socket's id in the [`hub::EventHub`].
    pub socket: u64,
}

/// A refused request: the error code and message of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The protocol code.
    pub code: ErrorCode,
    /// The message.
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl From<queue::Error> for Refusal {
    fn from(e: queue::Error) -> Self {
        let code = match e.code() {
            "invalid" => ErrorCode::Invalid,
            "not_found" => ErrorCode::NotFound,
            "forbidden" => ErrorCode::Forbidden,
            "conflict" => ErrorCode::Conflict,
            "unavailable" => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        match code {
            ErrorCode::Internal => internal(&e),
            ErrorCode::Unavailable => {
                tracing::warn!(error = %e, "queue store unavailable");
                Refusal::new(code, "the queue store is unavailable; retry shortly")
            }
            // The queue's messages name the call or operator and the state; they carry no secrets.
            _ => Refusal::new(code, strip_prefix(&e.to_string())),
        }
    }
}

fn strip_prefix(s: &str) -> String {
    match s.split_once(": ") {
        Some((_, rest)) => rest.to_owned(),
        None => s.to_owned(),
    }
}

/// An `internal` refusal: the error is logged with a fresh correlation id, which is all the client
/// sees.
fn internal(e: &dyn std::fmt::Display) -> Refusal {
    let correlation = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(%correlation, error = %e, "internal error while handling a request");
    Refusal::new(ErrorCode::Internal, correlation)
}

/// Whether `role` may send requests of type `kind` at all. Object-level checks (whose call it is)
/// come after, in the queue core.
pub fn allowed(role: Role, kind: &str) -> bool {
    match kind {
        "ping" => true,
        "call.request" | "call.cancel" => role == Role::Kiosk,
        "presence.set" | "call.accept" | "call.reject" | "call.hold" | "call.resume"
        | "call.transfer" | "call.end" | "wrapup.done" => role == Role::Operator,
        "metrics.subscribe" | "metrics.unsubscribe" | "operator.set_state" => {
            role == Role::Supervisor
        }
        "media.offer" | "media.candidate" => true,
        "monitor.start" | "monitor.stop" => role == Role::Supervisor,
        "identity.request"
        | "identity.confirm"
        | "identity.reject"
        | "certificate.issue"
        | "certificate.preview"
        | "print.request" => role == Role::Operator,
        "identity.card"
        | "identity.card_error"
        | "identity.pec_start"
        | "identity.pec_code"
        | "identity.scan"
        | "print.status"
        | "feedback.submit" => role == Role::Kiosk,
        _ => false,
    }
}

/// Answers one request of an authenticated session.
pub async fn handle(state: &AppState, ctx: &SessionCtx, frame: ClientFrame) -> ServerFrame {
    let kind = frame.request.kind();
    let result = if allowed(ctx.principal.role, kind) {
        dispatch(state, ctx, frame.request).await
    } else {
        Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "{} {} may not send {kind}",
                if ctx.principal.role == Role::Operator {
                    "an"
                } else {
                    "a"
                },
                ctx.principal.role.as_str()
            ),
        ))
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(r) => r.code.as_str(),
    };
    state
        .metrics
        .ws_requests
        .with_label_values(&[kind, outcome])
        .inc();
    match result {
        Ok(body) => ServerFrame::Ok { id: frame.id, body },
        Err(r) => ServerFrame::error(Some(frame.id), r.code, r.message),
    }
}

fn id<T>(parse: fn(String) -> Result<T, queue::Error>, s: &str) -> Result<T, Refusal> {
    parse(s.to_owned()).map_err(Refusal::from)
}

fn call_id(s: &str) -> Result<CallId, Refusal> {
    id(CallId::new, s)
}

fn presence(state: PresenceState, reason: Option<String>, default: &str) -> Presence {
    match state {
        PresenceState::Available => Presence::Available,
        PresenceState::Paused => Presence::Paused(reason.unwrap_or_else(|| default.to_owned())),
        PresenceState::Offline => Presence::Offline,
    }
}

/// The services this deployment knows: every operator skill and every kiosk's services.
fn known_service(state: &AppState, service: &str) -> bool {
    state
        .directory
        .operators()
        .iter()
        .any(|o| o.skills.contains_key(service))
        || state
            .directory
            .kiosks()
            .iter()
            .any(|k| k.services.iter().any(|s| s == service))
}

async fn dispatch(state: &AppState, ctx: &SessionCtx, request: Request) -> Result<Value, Refusal> {
    let r = &state.routing;
    let q = &r.queue;
    let now = Time::now();
    let me = &ctx.principal.id;
    let op = || id(OperatorId::new, me);
    let applied = match request {
        Request::CallRequest(req) => {
            let kiosk = state
                .directory
                .kiosk(me)
                .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "unknown kiosk"))?;
            let offered_here = if kiosk.services.is_empty() {
                known_service(state, &req.service)
            } else {
                kiosk.services.contains(&req.service)
            };
            if !offered_here {
                return Err(Refusal::new(
                    ErrorCode::Invalid,
                    format!("service {:?} is not offered at this kiosk", req.service),
                ));
            }
            // A call no configured operator could ever answer would wait forever.
            let spoken = state
                .directory
                .operators()
                .iter()
                .any(|o| o.languages.contains(&req.language));
            if !spoken {
                return Err(Refusal::new(
                    ErrorCode::Invalid,
                    format!("no operator speaks the language {:?}", req.language),
                ));
            }
            let call = NewCall {
                call_id: CallId::random(),
                kiosk_id: id(KioskId::new, me)?,
                kiosk_node: r.node.clone(),
                service: id(Service::new, &req.service)?,
                language: id(Language::new, &req.language)?,
                priority: req.priority.unwrap_or(0),
            };
            let call_id = call.call_id.to_string();
            let applied = q.enqueue(&r.tenant, now, call).await?;
            r.observe(&applied).await;
            return Ok(serde_json::to_value(CallCreated { call_id }).unwrap_or(Value::Null));
        }
        Request::CallCancel(c) => {
            q.cancel(
                &r.tenant,
                now,
                &id(KioskId::new, me)?,
                &call_id(&c.call_id)?,
            )
            .await?
        }
        Request::PresenceSet(p) => {
            q.set_presence(&r.tenant, now, &op()?, presence(p.state, p.reason, "pausa"))
                .await?
        }
        Request::CallAccept(c) => {
            let id = call_id(&c.call_id)?;
            let applied = q.accept(&r.tenant, now, &op()?, &id).await?;
            if let Some(cluster) = state.media.cluster() {
                // Place the call's media now, so both parties' first offers find it placed; an
                // offer places it itself if this fails.
                let (state, cluster) = (state.clone(), cluster.clone());
                tokio::spawn(async move {
                    if let Err(e) = placement::ensure_placed(&state, &cluster, &id, None).await {
                        tracing::debug!(call_id = %id, message = %e.message, "placement at accept");
                    }
                });
            }
            applied
        }
        Request::CallReject(c) => {
            q.reject(&r.tenant, now, &op()?, &call_id(&c.call_id)?)
                .await?
        }
        Request::CallHold(c) => {
            q.hold(&r.tenant, now, &op()?, &call_id(&c.call_id)?)
                .await?
        }
        Request::CallResume(c) => {
            q.resume(&r.tenant, now, &op()?, &call_id(&c.call_id)?)
                .await?
        }
        Request::CallEnd(c) => q.end(&r.tenant, now, &op()?, &call_id(&c.call_id)?).await?,
        Request::WrapupDone(c) => {
            let (disposition, notes) = outcome::core::check_wrapup(&state.config.dispositions, &c)?;
            let done = outcome::Done {
                call_id: call_id(&c.call_id)?,
                disposition,
                notes,
            };
            let applied = q.wrapup_done(&r.tenant, now, &op()?, &done.call_id).await?;
            r.observe_wrapup(&applied, Some(&done)).await;
            return Ok(Value::Null);
        }
        Request::FeedbackSubmit(f) => return outcome::submit_feedback(state, ctx, f).await,
        Request::CallTransfer(t) => {
            let target = match (t.service, t.operator_id) {
                (Some(s), None) => {
                    if !known_service(state, &s) {
                        return Err(Refusal::new(
                            ErrorCode::Invalid,
                            format!("unknown service {s:?}"),
                        ));
                    }
                    TransferTarget::Service(id(Service::new, &s)?)
                }
                (None, Some(o)) => {
                    if state.directory.operator(&o).is_none() {
                        return Err(Refusal::new(
                            ErrorCode::NotFound,
                            format!("no operator {o:?}"),
                        ));
                    }
                    TransferTarget::Operator(id(OperatorId::new, &o)?)
                }
                _ => {
                    return Err(Refusal::new(
                        ErrorCode::Invalid,
                        "call.transfer needs exactly one of service or operator_id",
                    ))
                }
            };
            q.transfer(&r.tenant, now, &op()?, &call_id(&t.call_id)?, target)
                .await?
        }
        Request::MetricsSubscribe {} => {
            state.events.set_metrics(ctx.socket, true);
            // The first snapshot follows the reply at once; the timer sends the next ones.
            if let Some(frame) = snapshot_frame(state).await {
                state.events.send_to_socket(ctx.socket, &frame);
            }
            return Ok(Value::Null);
        }
        Request::MediaOffer(m) => return media::offer(state, ctx, m).await,
        Request::MediaCandidate(c) => return media::candidate(state, ctx, c).await,
        Request::MonitorStart(c) => return media::monitor_start(state, ctx, &c.call_id).await,
        Request::MonitorStop(c) => return media::monitor_stop(state, ctx, &c.call_id).await,
        Request::IdentityRequest(r) => return incall::request(state, ctx, r).await,
        Request::IdentityCard(r) => return incall::card(state, ctx, r).await,
        Request::IdentityCardError(r) => return incall::card_error(state, ctx, r).await,
        Request::IdentityPecStart(r) => return incall::pec_start(state, ctx, r).await,
        Request::IdentityPecCode(r) => return incall::pec_code(state, ctx, r).await,
        Request::IdentityScan(r) => return incall::scan(state, ctx, r).await,
        Request::IdentityConfirm(r) => return incall::confirm(state, ctx, r).await,
        Request::IdentityReject(r) => return incall::reject(state, ctx, r).await,
        Request::CertificateIssue(r) => return incall::issue(state, ctx, r).await,
        Request::CertificatePreview(r) => return incall::preview(state, ctx, r).await,
        Request::PrintRequest(r) => return incall::print(state, ctx, r).await,
        Request::PrintStatus(r) => return incall::print_status(state, ctx, r).await,
        Request::MetricsUnsubscribe {} => {
            state.events.set_metrics(ctx.socket, false);
            return Ok(Value::Null);
        }
        Request::OperatorSetState(s) => {
            if state.directory.operator(&s.operator_id).is_none() {
                return Err(Refusal::new(
                    ErrorCode::NotFound,
                    format!("no operator {:?}", s.operator_id),
                ));
            }
            let target = id(OperatorId::new, &s.operator_id)?;
            if s.state != PresenceState::Offline {
                // Forcing someone who is not logged in to take calls would send offers to nobody.
                let logged_in = q
                    .read(&r.tenant, |st| {
                        st.operators
                            .get(&target)
                            .is_some_and(|o| o.presence != Presence::Offline)
                    })
                    .await?;
                if !logged_in {
                    return Err(Refusal::new(
                        ErrorCode::Conflict,
                        format!("operator {target} is not logged in"),
                    ));
                }
            }
            let reason = s.reason.or_else(|| Some(format!("supervisor {me}")));
            q.set_presence(
                &r.tenant,
                now,
                &target,
                presence(s.state, reason, "supervisor"),
            )
            .await?
        }
        Request::Auth(_) | Request::Ping {} => {
            // The connection core answers these itself; reaching here is a bug.
            return Err(internal(&"auth or ping dispatched to the call layer"));
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(Refusal::new(
                ErrorCode::Invalid,
                format!("{} is not supported by this server", other.kind()),
            ))
        }
    };
    r.observe(&applied).await;
    Ok(Value::Null)
}

/// Runs after a successful `auth`: registers an operator with the queue on this node (keeping the
/// presence they had if they were connected), moves a kiosk's calls to this node, and returns the
/// `state.sync` event for the session.
pub async fn on_open(state: &AppState, principal: &Principal) -> Result<Event, Refusal> {
    let r = &state.routing;
    let now = Time::now();
    live::mark(state, principal).await;
    let who = Recipient {
        role: principal.role,
        id: principal.id.clone(),
    };
    match principal.role {
        Role::Operator => {
            let account = state
                .directory
                .operator(&principal.id)
                .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "unknown operator"))?;
            let mut skills = BTreeMap::new();
            for (s, level) in &account.skills {
                skills.insert(id(Service::new, s)?, *level);
            }
            let languages = account
                .languages
                .iter()
                .map(|l| id(Language::new, l))
                .collect::<Result<Vec<_>, _>>()?;
            let login = OperatorLogin {
                operator_id: id(OperatorId::new, &principal.id)?,
                skills,
                languages,
                capacity: account.capacity,
                node: r.node.clone(),
                presence: Presence::Paused(LOGIN_PAUSE_REASON.into()),
            };
            let applied = r.queue.operator_online(&r.tenant, now, login).await?;
            r.observe(&applied).await;
        }
        Role::Kiosk => {
            let node = r.node.clone();
            move_kiosk_calls(state, &principal.id, |n| *n != node, &node).await?;
        }
        Role::Supervisor => {}
    }
    sync_event(state, &who).await
}

/// Re-attaches the kiosk's calls held by a node `from` accepts to node `to`.
async fn move_kiosk_calls(
    state: &AppState,
    kiosk: &str,
    from: impl Fn(&queue::NodeId) -> bool + Send + Sync,
    to: &queue::NodeId,
) -> Result<(), queue::Error> {
    let r = &state.routing;
    let kiosk = kiosk.to_owned();
    let calls = r
        .queue
        .read(&r.tenant, |st| {
            st.calls
                .values()
                .filter(|c| {
                    c.kiosk_id.as_str() == kiosk
                        && from(&c.kiosk_node)
                        && !matches!(c.state, queue::CallState::WrapUp { .. })
                })
                .map(|c| c.call_id.clone())
                .collect::<Vec<_>>()
        })
        .await?;
    for call in calls {
        match r
            .queue
            .reattach_kiosk(&r.tenant, Time::now(), &call, to)
            .await
        {
            Ok(applied) => r.observe(&applied).await,
            // It ended in the meantime.
            Err(queue::Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn sync_event(state: &AppState, who: &Recipient) -> Result<Event, Refusal> {
    let r = &state.routing;
    let cfg = r.queue.store().config().clone();
    let directory = state.directory.clone();
    let now = Time::now();
    let operator = who.role == Role::Operator;
    let mut sync = r
        .queue
        .read(&r.tenant, move |st| {
            state_sync(st, &cfg, now, who, directory.as_ref())
        })
        .await?;
    if operator {
        sync.dispositions = Some(
            state
                .config
                .dispositions
                .iter()
                .map(crate::config::DispositionSetting::to_wire)
                .collect(),
        );
    }
    Ok(Event::StateSync(sync))
}

/// The principal's last session on this node passed its grace period: a kiosk's calls here are
/// abandoned (or ended), an operator's calls go back to the head of the queue and their offers are
/// released. The queue ignores the notice if the client meanwhile resumed on another node.
///
/// A notice the store refuses (Redis down) is retried every 2 s for up to 2 minutes, as long as the
/// principal has not come back to this node; a live node's clients are not covered by the dead-node
/// cleanup, so giving up early would leave a call waiting for a kiosk that is gone.
pub async fn principal_lost(state: AppState, principal: Principal) {
    for attempt in 0..60 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if state.sessions.has_principal(&principal)
                || *state.shutdown.subscribe().borrow() == Phase::Stopping
            {
                return;
            }
        }
        match try_lost(&state, &principal).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                principal = %principal.id,
                attempt,
                error = %e,
                "could not apply the lost-client rules; retrying"
            ),
        }
    }
    tracing::error!(principal = %principal.id, "gave up applying the lost-client rules");
}

async fn try_lost(state: &AppState, principal: &Principal) -> Result<(), queue::Error> {
    let r = &state.routing;
    let now = Time::now();
    live::unmark(state, principal).await;
    if let Some(other) = live::elsewhere(state, principal).await? {
        // The principal is still connected through another node: hand it over instead.
        tracing::info!(principal = %principal.id, node = %other,
            "principal lost here but live on another node: handed over");
        return match principal.role {
            Role::Kiosk => move_kiosk_calls(state, &principal.id, |n| *n == r.node, &other).await,
            Role::Operator => {
                let operator = OperatorId::new(principal.id.as_str())?;
                let moved = r
                    .queue
                    .read(&r.tenant, |st| {
                        st.operators.get(&operator).map(|o| {
                            let login = OperatorLogin {
                                operator_id: o.operator_id.clone(),
                                skills: o.skills.clone(),
                                languages: o.languages.clone(),
                                capacity: o.capacity,
                                node: other.clone(),
                                presence: o.presence.clone(),
                            };
                            (login, o.node == r.node)
                        })
                    })
                    .await?;
                match moved {
                    Some((login, true)) => {
                        let applied = r.queue.operator_online(&r.tenant, now, login).await?;
                        r.observe(&applied).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Role::Supervisor => Ok(()),
        };
    }
    let result = match principal.role {
        Role::Kiosk => match KioskId::new(principal.id.as_str()) {
            Ok(k) => r.queue.kiosk_lost(&r.tenant, now, &k, &r.node).await,
            Err(e) => Err(e),
        },
        Role::Operator => match OperatorId::new(principal.id.as_str()) {
            Ok(o) => r.queue.operator_lost(&r.tenant, now, &o, &r.node).await,
            Err(e) => Err(e),
        },
        Role::Supervisor => return Ok(()),
    };
    match result {
        Ok(applied) => {
            if !applied.effects.is_empty() {
                tracing::info!(
                    principal = %principal.id,
                    role = principal.role.as_str(),
                    effects = applied.effects.len(),
                    "principal lost: queue rules applied"
                );
            }
            r.observe(&applied).await;
            Ok(())
        }
        // An operator who never reached the queue has nothing to clean up.
        Err(queue::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Delivers every committed batch of the tenant to this process's sessions until the server stops.
/// After missed batches (a lagging receiver or a store reconnect) every session gets a fresh
/// `state.sync`.
pub async fn deliver(state: AppState, mut rx: EffectReceiver) {
    let mut phase = state.shutdown.subscribe();
    loop {
        let received = tokio::select! {
            r = rx.recv() => r,
            _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
        };
        match received {
            Ok(applied) => {
                let now = Time::now();
                for effect in &applied.effects {
                    media::on_effect(&state, effect);
                    incall::on_effect(&state, effect);
                    for (to, event) in events_for(effect, now, state.directory.as_ref()) {
                        let frame: Arc<str> = Arc::from(event.to_json());
                        state.events.send_local(&to, &frame);
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "event delivery fell behind; resyncing every session"
                );
                resync_all(&state).await;
            }
            Err(RecvError::Closed) => loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if *phase.borrow() == Phase::Stopping {
                    return;
                }
                match state.routing.queue.subscribe(&state.routing.tenant).await {
                    Ok(fresh) => {
                        rx = fresh;
                        resync_all(&state).await;
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot resubscribe to queue events"),
                }
            },
        }
    }
}

/// Sends a fresh `state.sync` to every session of this process.
pub async fn resync_all(state: &AppState) {
    for (socket, principal) in state.events.sockets() {
        let who = Recipient {
            role: principal.role,
            id: principal.id.clone(),
        };
        match sync_event(state, &who).await {
            Ok(event) => state
                .events
                .send_to_socket(socket, &Arc::from(event.to_json())),
            Err(r) => tracing::warn!(message = %r.message, "resync failed"),
        }
    }
}

async fn snapshot_frame(state: &AppState) -> Option<Arc<str>> {
    let r = &state.routing;
    match r.queue.snapshot(&r.tenant, Time::now()).await {
        Ok(s) => {
            let mut body = metrics_snapshot(&s, state.directory.as_ref());
            if let Some(cluster) = state.media.cluster() {
                body.media_nodes = cluster.wallboard();
            }
            Some(Arc::from(Event::MetricsSnapshot(body).to_json()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "queue snapshot for supervisors failed");
            None
        }
    }
}

/// Sends `metrics.snapshot` to subscribed supervisors every second until the server stops.
pub async fn push_metrics(state: AppState) {
    let mut phase = state.shutdown.subscribe();
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
        }
        if state.events.wants_metrics() {
            if let Some(frame) = snapshot_frame(&state).await {
                state.events.send_metrics(&frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_may_send_only_their_requests() {
        for kind in Request::TYPES.iter().filter(|k| **k != "auth") {
            let who: Vec<Role> = [Role::Kiosk, Role::Operator, Role::Supervisor]
                .into_iter()
                .filter(|r| allowed(*r, kind))
                .collect();
            if matches!(*kind, "ping" | "media.offer" | "media.candidate") {
                // Every party of a call negotiates its own media.
                assert_eq!(who.len(), 3, "{kind} is for every role");
            } else {
                assert_eq!(who.len(), 1, "{kind} belongs to exactly one role");
            }
        }
        assert!(!allowed(Role::Supervisor, "call.accept"));
        assert!(!allowed(Role::Operator, "operator.set_state"));
        assert!(!allowed(Role::Kiosk, "presence.set"));
    }

    #[test]
    fn queue_errors_map_to_protocol_codes() {
        let r: Refusal =
            queue::Error::Forbidden("call c is not offered or assigned to x".into()).into();
        assert_eq!(r.code, ErrorCode::Forbidden);
        assert_eq!(r.message, "call c is not offered or assigned to x");
        let r: Refusal = queue::Error::Corrupt("bad json".into()).into();
        assert_eq!(r.code, ErrorCode::Internal);
        assert!(!r.message.contains("bad json"), "internals are not shown");
    }
}
