//! The media messages over the wire: `media.offer`, `media.candidate`, `monitor.start/stop`, and
//! `media.stats` events; and the glue between the call lifecycle and the SFU.
//!
//! - Who may negotiate: the call's kiosk and its operator while the call is in conversation
//!   (connected or on hold), and a supervisor after `monitor.start` on that call.
//! - The queue's effects drive the media plane: hold/resume pause and restart forwarding, an ended
//!   call closes every connection, a requeued call drops its old operator's connection.
//! - The SFU's events come back here: `media.stats` goes to the call's operator and monitoring
//!   supervisors; a connection failed past the grace period ends the call.
//!
//! Each process runs its own SFU: in a deployment of several processes both parties of a call must
//! negotiate on the same process (`docs/protocol.md`, "Several servers").

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use protocol::media::{MediaAnswer, MediaCandidate, MediaOffer};
use protocol::{ErrorCode, Event, Role};
use queue::{CallId, CallState, Effect, OperatorId, Time};
use serde_json::Value;
use sfu::{MediaError, MediaEvent, MediaRole, Participant, Sfu};
use tokio::sync::mpsc::UnboundedReceiver;

use super::events::Recipient;
use super::{call_id, Refusal, SessionCtx};
use crate::state::AppState;

/// The process's media plane and who monitors which call.
pub struct MediaPlane {
    /// The SFU.
    pub sfu: Sfu,
    monitors: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl std::fmt::Debug for MediaPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPlane")
            .field("sfu", &self.sfu)
            .finish_non_exhaustive()
    }
}

impl MediaPlane {
    /// Wraps a running SFU.
    pub fn new(sfu: Sfu) -> Self {
        MediaPlane {
            sfu,
            monitors: Mutex::new(HashMap::new()),
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
    let answer = state
        .media
        .sfu
        .offer(&req.call_id, who, req.sdp, call.held)
        .await
        .map_err(refusal)?;
    // The SFU's candidates are all in its answer (ICE-lite, host candidates only), so it sends no
    // `media.candidate` events of its own.
    Ok(serde_json::to_value(MediaAnswer { sdp: answer.sdp }).unwrap_or(Value::Null))
}

/// `media.candidate`.
pub(super) async fn candidate(
    state: &AppState,
    ctx: &SessionCtx,
    req: MediaCandidate,
) -> Result<Value, Refusal> {
    let (who, _) = participant(state, ctx, &req.call_id).await?;
    state
        .media
        .sfu
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
    view(state, &id).await?;
    if let Ok(mut m) = state.media.monitors.lock() {
        if let Some(set) = m.get_mut(raw_call_id) {
            set.remove(&ctx.principal.id);
            if set.is_empty() {
                m.remove(raw_call_id);
            }
        }
    }
    state.media.sfu.leave(
        raw_call_id,
        Participant {
            principal: ctx.principal.id.clone(),
            role: MediaRole::Monitor,
        },
    );
    Ok(Value::Null)
}

/// Applies one committed queue effect to this process's media plane.
pub(super) fn on_effect(state: &AppState, effect: &Effect) {
    let media = &state.media;
    match effect {
        Effect::Held { call_id, .. } => media.sfu.set_held(call_id.as_str(), true),
        Effect::Resumed { call_id, .. } => media.sfu.set_held(call_id.as_str(), false),
        Effect::CallEnded { call_id, .. } => {
            media.drop_monitors(call_id.as_str());
            media.sfu.end_call(call_id.as_str());
        }
        Effect::Requeued {
            call_id,
            from_operator,
            ..
        } => {
            // The conversation is over for its operator and its monitors; the kiosk's connection
            // stays for the next operator.
            if let Some(op) = from_operator {
                media.sfu.leave(
                    call_id.as_str(),
                    Participant {
                        principal: op.to_string(),
                        role: MediaRole::Operator,
                    },
                );
            }
            for s in media.drop_monitors(call_id.as_str()) {
                media.sfu.leave(
                    call_id.as_str(),
                    Participant {
                        principal: s,
                        role: MediaRole::Monitor,
                    },
                );
            }
        }
        _ => {}
    }
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
        match event {
            MediaEvent::Stats(stats) => {
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
                tracing::info!(%call_id, role = who.role.as_str(), "media connected");
            }
            MediaEvent::Failed { call_id, who } => {
                tracing::warn!(%call_id, role = who.role.as_str(), principal = %who.principal,
                    "media connection failed past its grace period");
                if who.role == MediaRole::Monitor {
                    state.media.sfu.leave(&call_id, who);
                    continue;
                }
                if let Err(r) = end_failed_call(&state, &call_id).await {
                    tracing::warn!(%call_id, message = %r.message, "could not end the call");
                }
            }
        }
    }
}

/// An event a media node published on the bus (see `calls::bus`).
pub(super) async fn on_node_event(_state: &AppState, from: &str, _event: Value) {
    tracing::debug!(node = from, "media node event");
}

/// A party's media is gone for good: the conversation ends (the operator goes to wrap-up).
async fn end_failed_call(state: &AppState, raw_call_id: &str) -> Result<(), Refusal> {
    let id = call_id(raw_call_id)?;
    let call = view(state, &id).await?;
    let (Some(op), true) = (call.operator, call.in_call) else {
        state.media.sfu.end_call(raw_call_id);
        return Ok(());
    };
    let r = &state.routing;
    let op = OperatorId::new(op).map_err(Refusal::from)?;
    let applied = r.queue.end(&r.tenant, Time::now(), &op, &id).await?;
    r.observe(&applied);
    Ok(())
}
