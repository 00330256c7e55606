//! The routing core: a tenant's state and the pure functions that change it.
//!
//! [`TenantState::apply`] takes a [`Command`], the configuration and `now`, and returns the effects. It
//! does no I/O and reads no clock, so both stores run exactly this code: the memory store under a mutex,
//! the Redis store between an atomic load and an atomic compare-and-commit. Identical behaviour of the two
//! stores follows by construction, and the conformance suite checks it.
//!
//! Every operation has the same shape:
//! 1. validate the command against the current state without changing it (errors change nothing);
//! 2. advance time: clean up dead nodes, expire offer leases, end timed-out wrap-ups;
//! 3. execute the command (tolerant: if step 2 already resolved the call, it does nothing);
//! 4. run one routing pass;
//! 5. recompute positions and estimated waits and emit those that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::effect::{Effect, EndReason, MetricEvent, OfferOutcome, RequeueReason};
use crate::error::Error;
use crate::estimate::History;
use crate::model::{
    validate_reason, Call, CallId, CallState, KioskId, Language, NewCall, NodeId, Occupancy,
    Operator, OperatorId, OperatorLogin, OperatorState, Presence, QueueConfig, Service, Time,
    TransferTarget, WrapupPolicy,
};
use crate::windows::{day_start, local_day, ServiceWindows};

/// The pause reason given after too many missed offers.
pub const MISSED_OFFERS_REASON: &str = "missed offers";

/// One input to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A kiosk asks for a call.
    Enqueue(NewCall),
    /// The kiosk cancels its call (`call.cancel`).
    Cancel {
        /// The kiosk asking; it must own the call.
        kiosk_id: KioskId,
        /// The call.
        call_id: CallId,
    },
    /// The kiosk's connections on `node` are gone past their resume grace: its active calls that
    /// live on that node end (abandoned while waiting). A call the kiosk re-attached to another node
    /// in the meantime is left alone, so a late notice cannot undo a resume elsewhere.
    KioskLost {
        /// The kiosk.
        kiosk_id: KioskId,
        /// The node whose connections were lost.
        node: NodeId,
    },
    /// The kiosk resumed on another node.
    ReattachKiosk {
        /// The call.
        call_id: CallId,
        /// The node now holding the kiosk.
        node: NodeId,
    },
    /// An operator connects or resumes.
    OperatorOnline(OperatorLogin),
    /// An operator (or a supervisor for them) sets their presence.
    SetPresence {
        /// The operator.
        operator_id: OperatorId,
        /// The new presence.
        presence: Presence,
    },
    /// The operator's connections on `node` are gone past the resume grace. Ignored when the operator
    /// is now connected through another node (a late notice must not undo a resume elsewhere).
    OperatorLost {
        /// The operator.
        operator_id: OperatorId,
        /// The node whose connections were lost.
        node: NodeId,
    },
    /// The operator accepts an offer.
    Accept {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
    },
    /// The operator rejects an offer.
    Reject {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
    },
    /// The operator puts a call on hold.
    Hold {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
    },
    /// The operator takes a call off hold.
    Resume {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
    },
    /// The operator ends a call and starts its wrap-up.
    End {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
    },
    /// The operator finishes a wrap-up early.
    WrapupDone {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
    },
    /// The operator transfers a call to a service or a person.
    Transfer {
        /// The operator.
        operator_id: OperatorId,
        /// The call.
        call_id: CallId,
        /// Where it goes.
        target: TransferTarget,
    },
    /// Places the call's media on a media node, or moves it to another one. It applies only while
    /// the call is in conversation and only if its media is still where `replacing` says (`None`:
    /// not placed yet), so two nodes placing at once cannot both win: the loser gets `conflict`
    /// and reads the placement that won.
    PlaceMedia {
        /// The call.
        call_id: CallId,
        /// The media node chosen.
        node: String,
        /// Where the media is now, as the caller saw it.
        replacing: Option<String>,
        /// Why it moves (`node_lost`, `node_draining`); empty for a first placement.
        reason: String,
    },
    /// A node renews its lease.
    Heartbeat {
        /// The node.
        node: NodeId,
    },
    /// Only advance time and route: expire leases, end wrap-ups, clean up dead nodes.
    Tick,
}

/// Tenant-wide data besides calls and operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Meta {
    /// The next call sequence number (a tie-breaker for equal `enqueued_at`).
    pub seq: u64,
    /// Node leases: node → when its lease expires.
    pub nodes: BTreeMap<NodeId, Time>,
    /// Average handle time per service in milliseconds, as the EWMA `(3·old + new) / 4`.
    pub aht_ms: BTreeMap<Service, u64>,
    /// Metric windows per service.
    pub windows: BTreeMap<Service, ServiceWindows>,
    /// Recent handle times and answer delays, which the estimated waits learn from.
    #[serde(default)]
    pub history: History,
}

/// What changed since the last [`TenantState::take_dirty`], so the Redis store writes only that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Calls written or removed.
    pub calls: BTreeSet<CallId>,
    /// Operators written or removed.
    pub operators: BTreeSet<OperatorId>,
    /// Whether [`Meta`] changed.
    pub meta: bool,
}

/// All queue state of one tenant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantState {
    /// Active calls (waiting, offered, connected, on hold, in wrap-up).
    pub calls: BTreeMap<CallId, Call>,
    /// Known operators, including offline ones.
    pub operators: BTreeMap<OperatorId, Operator>,
    /// Tenant-wide data.
    pub meta: Meta,
    dirty: Dirty,
}

fn not_found_call(id: &CallId) -> Error {
    Error::NotFound(format!("call {id}"))
}

fn not_found_op(id: &OperatorId) -> Error {
    Error::NotFound(format!("operator {id}"))
}

/// A waiting call's place in routing order: head first, then effective priority, then age.
type OrderKey = (bool, std::cmp::Reverse<u8>, Time, u64);

/// Whether a call is in progress with its operator (connected or on hold).
fn in_call(state: &CallState) -> bool {
    matches!(state, CallState::Connected { .. } | CallState::Held { .. })
}

impl TenantState {
    /// Builds a state from stored parts (the Redis store's load).
    pub fn from_parts(
        calls: BTreeMap<CallId, Call>,
        operators: BTreeMap<OperatorId, Operator>,
        meta: Meta,
    ) -> Self {
        TenantState {
            calls,
            operators,
            meta,
            dirty: Dirty::default(),
        }
    }

    /// Returns and clears the record of what changed.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    /// Whether anything changed since the last [`TenantState::take_dirty`].
    pub fn is_dirty(&self) -> bool {
        self.dirty != Dirty::default()
    }

    /// Applies one command at `now` and returns its effects. On error nothing has changed.
    pub fn apply(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        cmd: Command,
    ) -> Result<Vec<Effect>, Error> {
        self.validate(now, &cmd)?;
        let mut fx = Vec::new();
        self.advance(cfg, now, &mut fx);
        self.execute(cfg, now, cmd, &mut fx);
        self.route(cfg, now, &mut fx);
        self.update_positions(cfg, now, &mut fx);
        Ok(fx)
    }

    // ---- validation (no mutation) ----

    fn call(&self, id: &CallId) -> Result<&Call, Error> {
        self.calls.get(id).ok_or_else(|| not_found_call(id))
    }

    fn owned_call(&self, op: &OperatorId, id: &CallId) -> Result<&Call, Error> {
        if !self.operators.contains_key(op) {
            return Err(not_found_op(op));
        }
        let call = self.call(id)?;
        match call.state.operator() {
            Some(o) if o == op => Ok(call),
            _ => Err(Error::Forbidden(format!(
                "call {id} is not offered or assigned to {op}"
            ))),
        }
    }

    /// Checks that the call is the operator's and that its state is one `allowed` accepts; otherwise
    /// `conflict` saying the call "is not {what}".
    fn owned_call_in(
        &self,
        op: &OperatorId,
        id: &CallId,
        allowed: impl Fn(&CallState) -> bool,
        what: &str,
    ) -> Result<(), Error> {
        if allowed(&self.owned_call(op, id)?.state) {
            Ok(())
        } else {
            Err(Error::Conflict(format!("call {id} is not {what}")))
        }
    }

    fn validate(&self, now: Time, cmd: &Command) -> Result<(), Error> {
        match cmd {
            Command::Enqueue(c) => {
                if c.priority > 9 {
                    return Err(Error::Invalid(format!(
                        "priority {} is not in 0..=9",
                        c.priority
                    )));
                }
                crate::model::waiting_score(c.priority, now)?;
                if let Some(existing) = self.calls.get(&c.call_id) {
                    if existing.kiosk_id != c.kiosk_id {
                        return Err(Error::Conflict(format!("call id {} is taken", c.call_id)));
                    }
                    // The same kiosk retrying the same request is fine: nothing happens twice.
                    return Ok(());
                }
                if let Some(other) = self
                    .calls
                    .values()
                    .find(|x| x.kiosk_id == c.kiosk_id && kiosk_active(x))
                {
                    return Err(Error::Conflict(format!(
                        "kiosk {} already has an active call {}",
                        c.kiosk_id, other.call_id
                    )));
                }
                Ok(())
            }
            Command::Cancel { kiosk_id, call_id } => {
                let call = self.call(call_id)?;
                if &call.kiosk_id != kiosk_id {
                    return Err(Error::Forbidden(format!(
                        "call {call_id} belongs to another kiosk"
                    )));
                }
                if !kiosk_active(call) {
                    return Err(Error::Conflict(format!("call {call_id} has already ended")));
                }
                Ok(())
            }
            Command::KioskLost { .. } => Ok(()),
            Command::ReattachKiosk { call_id, .. } => self.call(call_id).map(|_| ()),
            Command::OperatorOnline(login) => login.validate(),
            Command::SetPresence {
                operator_id,
                presence,
            } => {
                let op = self
                    .operators
                    .get(operator_id)
                    .ok_or_else(|| not_found_op(operator_id))?;
                match presence {
                    Presence::Offline if op.load > 0 => Err(Error::Conflict(format!(
                        "operator {operator_id} still has {} call(s); end or transfer them first",
                        op.load
                    ))),
                    Presence::Paused(r) => validate_reason(r),
                    _ => Ok(()),
                }
            }
            Command::OperatorLost { operator_id, .. } => self
                .operators
                .get(operator_id)
                .ok_or_else(|| not_found_op(operator_id))
                .map(|_| ()),
            Command::Accept {
                operator_id,
                call_id,
            } => {
                let call = self.owned_call(operator_id, call_id)?;
                match call.state {
                    CallState::Offered { expires_at, .. } if expires_at > now => Ok(()),
                    CallState::Offered { .. } => Err(Error::Conflict(format!(
                        "the offer of {call_id} has expired"
                    ))),
                    _ => Err(Error::Conflict(format!("call {call_id} is not offered"))),
                }
            }
            Command::Reject {
                operator_id,
                call_id,
            } => self.owned_call_in(
                operator_id,
                call_id,
                |s| matches!(s, CallState::Offered { .. }),
                "offered",
            ),
            Command::Hold {
                operator_id,
                call_id,
            } => self.owned_call_in(
                operator_id,
                call_id,
                |s| matches!(s, CallState::Connected { .. }),
                "connected",
            ),
            Command::Resume {
                operator_id,
                call_id,
            } => self.owned_call_in(
                operator_id,
                call_id,
                |s| matches!(s, CallState::Held { .. }),
                "on hold",
            ),
            Command::End {
                operator_id,
                call_id,
            } => self.owned_call_in(operator_id, call_id, in_call, "connected"),
            Command::WrapupDone {
                operator_id,
                call_id,
            } => self.owned_call_in(
                operator_id,
                call_id,
                |s| matches!(s, CallState::WrapUp { .. }),
                "in wrap-up",
            ),
            Command::Transfer {
                operator_id,
                call_id,
                target,
            } => {
                self.owned_call_in(operator_id, call_id, in_call, "connected")?;
                if let TransferTarget::Operator(to) = target {
                    if to == operator_id {
                        return Err(Error::Invalid(
                            "a call cannot be transferred to its own operator".into(),
                        ));
                    }
                    match self.operators.get(to) {
                        None => return Err(not_found_op(to)),
                        Some(op) if op.presence == Presence::Offline => {
                            return Err(Error::Conflict(format!("operator {to} is not logged in")))
                        }
                        Some(_) => {}
                    }
                }
                Ok(())
            }
            Command::PlaceMedia {
                call_id,
                node,
                replacing,
                ..
            } => {
                let call = self.call(call_id)?;
                if !matches!(
                    call.state,
                    CallState::Connected { .. } | CallState::Held { .. }
                ) {
                    return Err(Error::Conflict(format!(
                        "call {call_id} is not in conversation"
                    )));
                }
                if node.is_empty() || node.len() > 200 || node.chars().any(char::is_control) {
                    return Err(Error::Invalid(format!("bad media node id {node:?}")));
                }
                if &call.media_node != replacing {
                    return Err(Error::Conflict(format!(
                        "the media of call {call_id} is already on {}",
                        call.media_node.as_deref().unwrap_or("no node")
                    )));
                }
                Ok(())
            }
            Command::Heartbeat { .. } | Command::Tick => Ok(()),
        }
    }

    // ---- tracked mutation helpers ----

    fn call_mut(&mut self, id: &CallId) -> Option<&mut Call> {
        let c = self.calls.get_mut(id)?;
        self.dirty.calls.insert(id.clone());
        Some(c)
    }

    fn meta_mut(&mut self) -> &mut Meta {
        self.dirty.meta = true;
        &mut self.meta
    }

    /// Changes an operator and emits a state change if their visible state changed. Occupancy is brought
    /// up to date first, so busy and logged-in time are split exactly at `now`.
    fn with_op<R>(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        id: &OperatorId,
        fx: &mut Vec<Effect>,
        f: impl FnOnce(&mut Operator) -> R,
    ) -> Option<R> {
        let op = self.operators.get_mut(id)?;
        self.dirty.operators.insert(id.clone());
        accumulate_occupancy(op, cfg, now);
        let before = visible_state(op, cfg);
        let r = f(op);
        let after = visible_state(op, cfg);
        if before != after {
            if after == OperatorState::Available {
                op.idle_since = now;
            }
            fx.push(Effect::OperatorStateChanged {
                operator_id: id.clone(),
                state: after,
            });
        }
        Some(r)
    }

    fn metric(&mut self, cfg: &QueueConfig, now: Time, ev: MetricEvent, fx: &mut Vec<Effect>) {
        let off = &cfg.time_zone;
        let sl = |s: &Service| cfg.threshold(s);
        let meta = self.meta_mut();
        match &ev {
            MetricEvent::Offered { service } => {
                meta.windows
                    .entry(service.clone())
                    .or_default()
                    .record(now, off, |b| b.offered += 1);
            }
            MetricEvent::Answered { service, wait } => {
                let within = *wait <= sl(service);
                let ms = wait.as_millis() as u64;
                meta.history.record_wait(*wait, false);
                meta.windows
                    .entry(service.clone())
                    .or_default()
                    .record(now, off, |b| {
                        b.answered += 1;
                        b.answered_in_sl += u64::from(within);
                        b.wait_ms_sum += ms;
                    });
            }
            MetricEvent::Abandoned {
                service,
                wait,
                short,
            } => {
                let after = *wait > sl(service);
                let short = *short;
                meta.history.record_wait(*wait, true);
                meta.windows
                    .entry(service.clone())
                    .or_default()
                    .record(now, off, |b| {
                        if short {
                            b.abandoned_short += 1;
                        } else {
                            b.abandoned += 1;
                        }
                        b.abandoned_after_sl += u64::from(after);
                    });
            }
            MetricEvent::Transferred { service } => {
                meta.windows
                    .entry(service.clone())
                    .or_default()
                    .record(now, off, |b| b.transferred += 1);
            }
            MetricEvent::Handled { service, handle } => {
                let ms = handle.as_millis() as u64;
                meta.windows
                    .entry(service.clone())
                    .or_default()
                    .record(now, off, |b| {
                        b.handled += 1;
                        b.handle_ms_sum += ms;
                    });
                // Asterisk's smoothing: new = (3·old + sample) / 4, seeded by the first sample.
                let aht = meta.aht_ms.entry(service.clone()).or_insert(ms);
                *aht = (3 * *aht + ms) / 4;
            }
        }
        fx.push(Effect::Metric(ev));
    }

    fn renew_node(&mut self, cfg: &QueueConfig, now: Time, node: &NodeId) {
        let until = now.plus(cfg.node_lease);
        let cur = self.meta.nodes.get(node).copied();
        if cur.is_none_or(|t| t < until) {
            self.meta_mut().nodes.insert(node.clone(), until);
        }
    }

    // ---- time ----

    fn advance(&mut self, cfg: &QueueConfig, now: Time, fx: &mut Vec<Effect>) {
        // Dead nodes first: a lost kiosk must not get a fresh offer in this same pass.
        let grace = cfg.resume_grace;
        let dead: Vec<NodeId> = self
            .meta
            .nodes
            .iter()
            .filter(|(_, until)| until.plus(grace) <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in dead {
            let kiosk_calls: Vec<CallId> = self
                .calls
                .values()
                .filter(|c| c.kiosk_node == node && kiosk_active(c))
                .map(|c| c.call_id.clone())
                .collect();
            for id in kiosk_calls {
                self.end_for_kiosk(cfg, now, &id, EndReason::KioskLost, fx);
            }
            let ops: Vec<OperatorId> = self
                .operators
                .values()
                .filter(|o| o.node == node && o.presence != Presence::Offline)
                .map(|o| o.operator_id.clone())
                .collect();
            for id in ops {
                self.lose_operator(cfg, now, &id, fx);
            }
            self.meta_mut().nodes.remove(&node);
        }

        let mut expired: Vec<(Time, CallId)> = self
            .calls
            .values()
            .filter_map(|c| match c.state {
                CallState::Offered { expires_at, .. } if expires_at <= now => {
                    Some((expires_at, c.call_id.clone()))
                }
                _ => None,
            })
            .collect();
        expired.sort();
        for (_, id) in expired {
            self.close_offer(cfg, now, &id, OfferOutcome::Expired, fx);
        }

        let mut done: Vec<(Time, CallId)> = self
            .calls
            .values()
            .filter_map(|c| match c.state {
                CallState::WrapUp { until, .. } if until <= now => Some((until, c.call_id.clone())),
                _ => None,
            })
            .collect();
        done.sort();
        for (until, id) in done {
            self.finish_wrapup(cfg, until, &id, fx);
        }
    }

    // ---- transitions ----

    /// Ends an offer that did not turn into a call: the call waits again with its age.
    fn close_offer(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        id: &CallId,
        outcome: OfferOutcome,
        fx: &mut Vec<Effect>,
    ) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let CallState::Offered { operator, .. } = call.state.clone() else {
            return;
        };
        call.state = CallState::Waiting;
        call.since = now;
        if matches!(outcome, OfferOutcome::Rejected | OfferOutcome::Expired) {
            // The operator who let it go is tried last for this call.
            call.declined.retain(|o| o != &operator);
            call.declined.push(operator.clone());
            // A call transferred to this person, who let it go, returns to its service's queue;
            // otherwise it would be offered back to them alone, again and again.
            if call.pinned.as_ref() == Some(&operator) {
                call.pinned = None;
                call.last_update = None;
            }
        }
        fx.push(Effect::OfferClosed {
            call_id: id.clone(),
            operator_id: operator.clone(),
            outcome,
        });
        let max = cfg.max_missed_offers;
        let pause = self
            .with_op(cfg, now, &operator, fx, |op| {
                op.offers = op.offers.saturating_sub(1);
                if outcome == OfferOutcome::Expired {
                    op.missed_offers += 1;
                    if max > 0 && op.missed_offers >= max && op.presence == Presence::Available {
                        op.presence = Presence::Paused(MISSED_OFFERS_REASON.into());
                        return true;
                    }
                }
                false
            })
            .unwrap_or(false);
        if pause {
            self.release_offers(cfg, now, &operator, fx);
        }
    }

    fn release_offers(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        op: &OperatorId,
        fx: &mut Vec<Effect>,
    ) {
        let offered: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| matches!(&c.state, CallState::Offered { operator, .. } if operator == op))
            .map(|c| c.call_id.clone())
            .collect();
        for id in offered {
            self.close_offer(cfg, now, &id, OfferOutcome::OperatorGone, fx);
        }
    }

    /// The kiosk's side ended (cancel or lost): abandon a waiting call, end a connected one.
    fn end_for_kiosk(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        id: &CallId,
        reason: EndReason,
        fx: &mut Vec<Effect>,
    ) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        match call.state.clone() {
            CallState::Waiting | CallState::Offered { .. } => {
                if matches!(call.state, CallState::Offered { .. }) {
                    let outcome = if reason == EndReason::KioskLost {
                        OfferOutcome::KioskLost
                    } else {
                        OfferOutcome::Cancelled
                    };
                    self.close_offer(cfg, now, id, outcome, fx);
                }
                let Some(call) = self.calls.remove(id) else {
                    return;
                };
                self.dirty.calls.insert(id.clone());
                let wait = now.since(call.queued_at);
                fx.push(Effect::CallEnded {
                    call_id: id.clone(),
                    kiosk_id: call.kiosk_id.clone(),
                    operator_id: None,
                    reason: if reason == EndReason::KioskLost {
                        EndReason::KioskLost
                    } else {
                        EndReason::Abandoned
                    },
                });
                let short = wait < cfg.short_abandon;
                self.metric(
                    cfg,
                    now,
                    MetricEvent::Abandoned {
                        service: call.service,
                        wait,
                        short,
                    },
                    fx,
                );
            }
            CallState::Connected { .. } | CallState::Held { .. } => {
                // An answered call the kiosk leaves is not an abandon: it ends `completed` on a cancel
                // (the citizen is done) or `kiosk_lost`, the operator wraps up, and it counts as handled.
                let reason = if reason == EndReason::KioskLost {
                    EndReason::KioskLost
                } else {
                    EndReason::Completed
                };
                self.start_wrapup(cfg, now, id, reason, fx);
            }
            CallState::WrapUp { .. } => {}
        }
    }

    fn start_wrapup(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        id: &CallId,
        reason: EndReason,
        fx: &mut Vec<Effect>,
    ) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let operator = match &call.state {
            CallState::Connected { operator } | CallState::Held { operator } => operator.clone(),
            _ => return,
        };
        let until = now.plus(cfg.wrapup);
        call.state = CallState::WrapUp {
            operator: operator.clone(),
            until,
        };
        call.ended_at = Some(now);
        call.since = now;
        let kiosk_id = call.kiosk_id.clone();
        fx.push(Effect::CallEnded {
            call_id: id.clone(),
            kiosk_id,
            operator_id: Some(operator.clone()),
            reason,
        });
        self.with_op(cfg, now, &operator, fx, |op| {
            op.load = op.load.saturating_sub(1);
            op.wrapups += 1;
            op.idle_since = now;
        });
        if cfg.wrapup.is_zero() {
            self.finish_wrapup(cfg, now, id, fx);
        }
    }

    fn finish_wrapup(&mut self, cfg: &QueueConfig, at: Time, id: &CallId, fx: &mut Vec<Effect>) {
        let Some(CallState::WrapUp { operator, .. }) = self.calls.get(id).map(|c| c.state.clone())
        else {
            return;
        };
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        self.dirty.calls.insert(id.clone());
        fx.push(Effect::WrapupEnded {
            call_id: id.clone(),
            operator_id: operator.clone(),
        });
        self.with_op(cfg, at, &operator, fx, |op| {
            op.wrapups = op.wrapups.saturating_sub(1);
        });
        let accepted = call.accepted_at.unwrap_or(at);
        let handle = at.since(accepted);
        let ended = call.ended_at.unwrap_or(at).max(accepted);
        self.meta_mut().history.record_handled(
            &call.service,
            ended.since(accepted),
            at.since(ended),
        );
        self.metric(
            cfg,
            at,
            MetricEvent::Handled {
                service: call.service,
                handle,
            },
            fx,
        );
    }

    /// Puts the operator's call on hold (`hold`) or takes it off hold, telling the kiosk.
    fn set_hold(
        &mut self,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
        hold: bool,
        fx: &mut Vec<Effect>,
    ) {
        let Some(c) = self.call_mut(call_id) else {
            return;
        };
        let next = match &c.state {
            CallState::Connected { operator } if hold && operator == operator_id => {
                CallState::Held {
                    operator: operator.clone(),
                }
            }
            CallState::Held { operator } if !hold && operator == operator_id => {
                CallState::Connected {
                    operator: operator.clone(),
                }
            }
            _ => return,
        };
        c.state = next;
        c.since = now;
        let (call_id, kiosk_id, operator_id) =
            (call_id.clone(), c.kiosk_id.clone(), operator_id.clone());
        fx.push(if hold {
            Effect::Held {
                call_id,
                kiosk_id,
                operator_id,
            }
        } else {
            Effect::Resumed {
                call_id,
                kiosk_id,
                operator_id,
            }
        });
    }

    fn lose_operator(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        id: &OperatorId,
        fx: &mut Vec<Effect>,
    ) {
        self.release_offers(cfg, now, id, fx);
        let mine: Vec<(CallId, bool)> = self
            .calls
            .values()
            .filter(|c| c.state.operator() == Some(id))
            .map(|c| {
                (
                    c.call_id.clone(),
                    matches!(c.state, CallState::WrapUp { .. }),
                )
            })
            .collect();
        for (cid, in_wrapup) in mine {
            if in_wrapup {
                self.finish_wrapup(cfg, now, &cid, fx);
                continue;
            }
            let Some(call) = self.call_mut(&cid) else {
                continue;
            };
            call.state = CallState::Waiting;
            call.since = now;
            call.head = true;
            call.accepted_at = None;
            let kiosk_id = call.kiosk_id.clone();
            fx.push(Effect::Requeued {
                call_id: cid.clone(),
                kiosk_id,
                from_operator: Some(id.clone()),
                reason: RequeueReason::OperatorLost,
            });
            self.with_op(cfg, now, id, fx, |op| op.load = op.load.saturating_sub(1));
        }
        self.with_op(cfg, now, id, fx, |op| {
            op.presence = Presence::Offline;
            op.load = 0;
            op.offers = 0;
        });
        self.unpin(id);
    }

    /// Calls transferred to `id` in person go back to their service's queue: the operator left, and a
    /// call pinned to someone who is not there would wait forever.
    fn unpin(&mut self, id: &OperatorId) {
        let pinned: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.pinned.as_ref() == Some(id) && c.state == CallState::Waiting)
            .map(|c| c.call_id.clone())
            .collect();
        for cid in pinned {
            if let Some(c) = self.call_mut(&cid) {
                c.pinned = None;
                c.last_update = None;
            }
        }
    }

    fn execute(&mut self, cfg: &QueueConfig, now: Time, cmd: Command, fx: &mut Vec<Effect>) {
        match cmd {
            Command::Enqueue(c) => {
                self.renew_node(cfg, now, &c.kiosk_node);
                if self.calls.contains_key(&c.call_id) {
                    return;
                }
                let seq = self.meta.seq;
                self.meta_mut().seq += 1;
                let call = Call {
                    call_id: c.call_id.clone(),
                    kiosk_id: c.kiosk_id,
                    kiosk_node: c.kiosk_node,
                    service: c.service.clone(),
                    language: c.language,
                    priority: c.priority,
                    enqueued_at: now,
                    queued_at: now,
                    seq,
                    state: CallState::Waiting,
                    pinned: None,
                    declined: Vec::new(),
                    head: false,
                    accepted_at: None,
                    ended_at: None,
                    since: now,
                    last_update: None,
                    media_node: None,
                };
                self.dirty.calls.insert(c.call_id.clone());
                self.calls.insert(c.call_id, call);
                self.metric(cfg, now, MetricEvent::Offered { service: c.service }, fx);
            }
            Command::Cancel { call_id, .. } => {
                self.end_for_kiosk(cfg, now, &call_id, EndReason::Abandoned, fx)
            }
            Command::KioskLost { kiosk_id, node } => {
                let lost: Vec<CallId> = self
                    .calls
                    .values()
                    .filter(|c| c.kiosk_id == kiosk_id && c.kiosk_node == node && kiosk_active(c))
                    .map(|c| c.call_id.clone())
                    .collect();
                for id in lost {
                    self.end_for_kiosk(cfg, now, &id, EndReason::KioskLost, fx);
                }
            }
            Command::ReattachKiosk { call_id, node } => {
                self.renew_node(cfg, now, &node);
                if let Some(c) = self.call_mut(&call_id) {
                    c.kiosk_node = node;
                }
            }
            Command::OperatorOnline(login) => {
                self.renew_node(cfg, now, &login.node);
                if !self.operators.contains_key(&login.operator_id) {
                    let op = Operator {
                        operator_id: login.operator_id.clone(),
                        skills: BTreeMap::new(),
                        languages: Vec::new(),
                        capacity: login.capacity,
                        presence: Presence::Offline,
                        node: login.node.clone(),
                        idle_since: now,
                        missed_offers: 0,
                        load: 0,
                        offers: 0,
                        wrapups: 0,
                        occupancy: Occupancy {
                            day: local_day(now, &cfg.time_zone),
                            last: now,
                            ..Default::default()
                        },
                    };
                    self.operators.insert(login.operator_id.clone(), op);
                }
                let id = login.operator_id.clone();
                self.with_op(cfg, now, &id, fx, |op| {
                    op.skills = login.skills;
                    op.languages = login.languages;
                    op.capacity = login.capacity;
                    op.node = login.node;
                    if op.presence == Presence::Offline {
                        op.presence = login.presence;
                        op.missed_offers = 0;
                        op.idle_since = now;
                    }
                });
                // A smaller capacity may leave open offers over the new limit: release them; the routing
                // pass below offers again within the new capacity.
                if self
                    .operators
                    .get(&id)
                    .is_some_and(|o| o.load + o.offers > o.capacity)
                {
                    self.release_offers(cfg, now, &id, fx);
                }
            }
            Command::SetPresence {
                operator_id,
                presence,
            } => {
                let available = presence == Presence::Available;
                let offline = presence == Presence::Offline;
                self.with_op(cfg, now, &operator_id, fx, |op| {
                    if available && op.presence != Presence::Available {
                        op.missed_offers = 0;
                        op.idle_since = now;
                    }
                    op.presence = presence;
                });
                if !available {
                    self.release_offers(cfg, now, &operator_id, fx);
                }
                if offline {
                    self.unpin(&operator_id);
                    let wraps: Vec<CallId> = self
                        .calls
                        .values()
                        .filter(|c| matches!(&c.state, CallState::WrapUp { operator, .. } if operator == &operator_id))
                        .map(|c| c.call_id.clone())
                        .collect();
                    for id in wraps {
                        self.finish_wrapup(cfg, now, &id, fx);
                    }
                }
            }
            Command::OperatorLost { operator_id, node } => {
                if self
                    .operators
                    .get(&operator_id)
                    .is_some_and(|o| o.node == node)
                {
                    self.lose_operator(cfg, now, &operator_id, fx);
                }
            }
            Command::Accept {
                operator_id,
                call_id,
            } => {
                let Some(call) = self.call_mut(&call_id) else {
                    return;
                };
                if !matches!(&call.state, CallState::Offered { operator, .. } if operator == &operator_id)
                {
                    return;
                }
                call.state = CallState::Connected {
                    operator: operator_id.clone(),
                };
                let answer = now.since(call.since);
                call.accepted_at = Some(now);
                call.since = now;
                call.head = false;
                call.last_update = None;
                let (kiosk_id, service, wait) = (
                    call.kiosk_id.clone(),
                    call.service.clone(),
                    now.since(call.queued_at),
                );
                fx.push(Effect::OfferClosed {
                    call_id: call_id.clone(),
                    operator_id: operator_id.clone(),
                    outcome: OfferOutcome::Accepted,
                });
                fx.push(Effect::Assigned {
                    call_id,
                    kiosk_id,
                    operator_id: operator_id.clone(),
                });
                self.with_op(cfg, now, &operator_id, fx, |op| {
                    op.offers = op.offers.saturating_sub(1);
                    op.load += 1;
                    op.missed_offers = 0;
                });
                self.meta_mut().history.record_answer(answer);
                self.metric(cfg, now, MetricEvent::Answered { service, wait }, fx);
            }
            Command::Reject { call_id, .. } => {
                self.close_offer(cfg, now, &call_id, OfferOutcome::Rejected, fx)
            }
            Command::Hold {
                operator_id,
                call_id,
            } => self.set_hold(now, &operator_id, &call_id, true, fx),
            Command::Resume {
                operator_id,
                call_id,
            } => self.set_hold(now, &operator_id, &call_id, false, fx),
            Command::End { call_id, .. } => {
                self.start_wrapup(cfg, now, &call_id, EndReason::Completed, fx)
            }
            Command::WrapupDone { call_id, .. } => self.finish_wrapup(cfg, now, &call_id, fx),
            Command::Transfer {
                operator_id,
                call_id,
                target,
            } => {
                let Some(call) = self.call_mut(&call_id) else {
                    return;
                };
                if !matches!(&call.state, CallState::Connected { operator } | CallState::Held { operator } if operator == &operator_id)
                {
                    return;
                }
                let old_service = call.service.clone();
                match target {
                    TransferTarget::Service(s) => {
                        call.service = s;
                        call.pinned = None;
                    }
                    TransferTarget::Operator(o) => call.pinned = Some(o),
                }
                call.state = CallState::Waiting;
                call.since = now;
                call.queued_at = now;
                call.accepted_at = None;
                call.declined.clear();
                call.last_update = None;
                let (kiosk_id, new_service) = (call.kiosk_id.clone(), call.service.clone());
                fx.push(Effect::Requeued {
                    call_id,
                    kiosk_id,
                    from_operator: Some(operator_id.clone()),
                    reason: RequeueReason::Transferred,
                });
                self.with_op(cfg, now, &operator_id, fx, |op| {
                    op.load = op.load.saturating_sub(1);
                    op.idle_since = now;
                });
                self.metric(
                    cfg,
                    now,
                    MetricEvent::Transferred {
                        service: old_service,
                    },
                    fx,
                );
                self.metric(
                    cfg,
                    now,
                    MetricEvent::Offered {
                        service: new_service,
                    },
                    fx,
                );
            }
            Command::PlaceMedia {
                call_id,
                node,
                reason,
                ..
            } => {
                let Some(call) = self.call_mut(&call_id) else {
                    return;
                };
                let previous = call.media_node.replace(node.clone());
                let kiosk_id = call.kiosk_id.clone();
                let operator_id = call.state.operator().cloned();
                fx.push(Effect::MediaPlaced {
                    call_id,
                    kiosk_id,
                    operator_id,
                    node,
                    previous,
                    reason,
                });
            }
            Command::Heartbeat { node } => self.renew_node(cfg, now, &node),
            Command::Tick => {}
        }
    }

    // ---- routing ----

    /// The effective priority of a call at `now`: its base priority plus one per aging step, at most 9.
    pub fn effective_priority(cfg: &QueueConfig, call: &Call, now: Time) -> u8 {
        let bonus = match cfg.aging_step {
            Some(step) => {
                (now.since(call.enqueued_at).as_millis() / step.as_millis().max(1)).min(9) as u8
            }
            None => 0,
        };
        call.priority.saturating_add(bonus).min(9)
    }

    fn order_key(cfg: &QueueConfig, call: &Call, now: Time) -> OrderKey {
        (
            !call.head,
            std::cmp::Reverse(Self::effective_priority(cfg, call, now)),
            call.enqueued_at,
            call.seq,
        )
    }

    /// Waiting (not offered) calls in routing order.
    pub fn waiting_in_order(&self, cfg: &QueueConfig, now: Time) -> Vec<&Call> {
        let mut v: Vec<(OrderKey, &Call)> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .map(|c| (Self::order_key(cfg, c, now), c))
            .collect();
        v.sort_by_key(|a| a.0);
        v.into_iter().map(|(_, c)| c).collect()
    }

    fn route(&mut self, cfg: &QueueConfig, now: Time, fx: &mut Vec<Effect>) {
        let mut free: Vec<OperatorId> = self
            .operators
            .values()
            .filter(|o| routable(o, cfg))
            .map(|o| o.operator_id.clone())
            .collect();
        if free.is_empty() {
            return;
        }
        let order: Vec<CallId> = self
            .waiting_in_order(cfg, now)
            .into_iter()
            .map(|c| c.call_id.clone())
            .collect();
        // Calls are served strictly in order, each taking its best operator; so an older call is never
        // skipped for a younger one that could take the same operator.
        for id in order {
            if free.is_empty() {
                break;
            }
            let call = &self.calls[&id];
            let best = free
                .iter()
                .filter_map(|oid| {
                    let op = &self.operators[oid];
                    let level = eligible_level(op, call)?;
                    let declined = call
                        .declined
                        .iter()
                        .position(|d| d == oid)
                        .map_or(0, |p| p + 1);
                    Some((
                        (
                            declined,
                            std::cmp::Reverse(level),
                            op.idle_since,
                            op.load + op.offers,
                            oid.clone(),
                        ),
                        oid,
                    ))
                })
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, oid)| oid.clone());
            let Some(oid) = best else { continue };
            let expires_at = now.plus(cfg.offer_lease);
            let Some(call) = self.call_mut(&id) else {
                continue;
            };
            call.state = CallState::Offered {
                operator: oid.clone(),
                expires_at,
            };
            call.since = now;
            call.last_update = None;
            let (kiosk_id, service, language, waited) = (
                call.kiosk_id.clone(),
                call.service.clone(),
                call.language.clone(),
                now.since(call.enqueued_at),
            );
            let node = self.operators[&oid].node.clone();
            fx.push(Effect::Offer {
                call_id: id.clone(),
                kiosk_id,
                operator_id: oid.clone(),
                operator_node: node,
                service,
                language,
                waited,
                expires_at,
            });
            let still_free = self.with_op(cfg, now, &oid, fx, |op| {
                op.offers += 1;
                op.load + op.offers < op.capacity
            });
            if still_free != Some(true) {
                free.retain(|o| o != &oid);
            }
        }
    }

    // ---- estimates ----

    /// The current average handle time of a service (the configured default before any sample).
    pub fn aht(&self, cfg: &QueueConfig, service: &Service) -> Duration {
        self.meta
            .aht_ms
            .get(service)
            .map_or(cfg.default_aht, |ms| Duration::from_millis(*ms))
    }

    /// Capacity of online operators (available or wrapping up) who could take calls of `service` in
    /// `language` (any language when `None`).
    pub fn eligible_capacity(&self, service: &Service, language: Option<&Language>) -> u32 {
        self.operators
            .values()
            .filter(|o| matches!(o.presence, Presence::Available))
            .filter(|o| {
                o.skills.contains_key(service) && language.is_none_or(|l| o.languages.contains(l))
            })
            .map(|o| u32::from(o.capacity))
            .sum()
    }

    fn update_positions(&mut self, cfg: &QueueConfig, now: Time, fx: &mut Vec<Effect>) {
        let waits = self.estimate_waits(cfg, now);
        let mut per_service: HashMap<&Service, u32> = HashMap::new();
        let mut updates = Vec::new();
        for call in self.waiting_in_order(cfg, now) {
            let pos = per_service.entry(&call.service).or_insert(0);
            *pos += 1;
            let ewt = waits.get(&call.call_id).copied().flatten();
            let key = (*pos, ewt.map(|d| d.as_millis() as u64));
            if needs_update(call.last_update, key) {
                updates.push((call.call_id.clone(), call.kiosk_id.clone(), key, ewt));
            }
        }
        for (id, kiosk_id, key, ewt) in updates {
            if let Some(c) = self.call_mut(&id) {
                c.last_update = Some(key);
            }
            fx.push(Effect::QueueUpdate {
                call_id: id,
                kiosk_id,
                position: key.0,
                estimated_wait: ewt,
            });
        }
    }

    /// Checks the invariants the queue promises: every offer and assignment points at a known operator,
    /// and operators' load, offers and wrap-ups match their calls and stay within capacity.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counts: HashMap<&OperatorId, (u8, u8, u8)> = HashMap::new();
        for c in self.calls.values() {
            if let Some(o) = c.state.operator() {
                if !self.operators.contains_key(o) {
                    return Err(format!("call {} points at unknown operator {o}", c.call_id));
                }
                let e = counts.entry(o).or_default();
                match c.state {
                    CallState::Offered { .. } => e.1 += 1,
                    CallState::Connected { .. } | CallState::Held { .. } => e.0 += 1,
                    CallState::WrapUp { .. } => e.2 += 1,
                    CallState::Waiting => {}
                }
            }
        }
        for o in self.operators.values() {
            let (load, offers, wraps) = counts.get(&o.operator_id).copied().unwrap_or_default();
            if (o.load, o.offers, o.wrapups) != (load, offers, wraps) {
                return Err(format!(
                    "operator {} counts {:?} but calls say {:?}",
                    o.operator_id,
                    (o.load, o.offers, o.wrapups),
                    (load, offers, wraps)
                ));
            }
            if o.load + o.offers > o.capacity.max(o.load) {
                return Err(format!("operator {} over capacity", o.operator_id));
            }
        }
        Ok(())
    }
}

/// Whether the kiosk still sees the call as active (not yet ended for it).
/// An estimate within this many milliseconds (or a tenth) of the one last sent is not sent again: the
/// projection moves with every tick, and a kiosk needs no update per second.
const EWT_STEP_MS: u64 = 15_000;

/// Whether a waiting call's position or estimate moved enough from what its kiosk was last told.
fn needs_update(last: Option<(u32, Option<u64>)>, new: (u32, Option<u64>)) -> bool {
    match (last, new) {
        (Some((p, Some(old))), (q, Some(ms))) => {
            p != q || old.abs_diff(ms) >= EWT_STEP_MS.max(old / 10)
        }
        (Some(l), n) => l != n,
        (None, _) => true,
    }
}

fn kiosk_active(c: &Call) -> bool {
    !matches!(c.state, CallState::WrapUp { .. })
}

/// The operator state supervisors see.
pub fn visible_state(op: &Operator, cfg: &QueueConfig) -> OperatorState {
    match &op.presence {
        Presence::Offline => OperatorState::Offline,
        Presence::Paused(r) => OperatorState::Paused(r.clone()),
        Presence::Available => {
            if op.wrapups > 0
                && op.load == 0
                && op.offers == 0
                && cfg.wrapup_policy == WrapupPolicy::BlockWhenIdle
            {
                OperatorState::Wrapup
            } else {
                OperatorState::Available
            }
        }
    }
}

fn routable(op: &Operator, cfg: &QueueConfig) -> bool {
    visible_state(op, cfg) == OperatorState::Available && op.load + op.offers < op.capacity
}

/// The skill level with which `op` could take `call`, or `None` if not eligible (ignoring availability).
pub(crate) fn eligible_level(op: &Operator, call: &Call) -> Option<u8> {
    match &call.pinned {
        // A transfer to a person waits for that person only, whatever their skills.
        Some(p) => {
            (p == &op.operator_id).then_some(op.skills.get(&call.service).copied().unwrap_or(1))
        }
        None => {
            if !op.languages.contains(&call.language) {
                return None;
            }
            op.skills.get(&call.service).copied()
        }
    }
}

/// Brings an operator's busy and logged-in totals up to `now`, starting afresh on a new local day.
pub(crate) fn accumulate_occupancy(op: &mut Operator, cfg: &QueueConfig, now: Time) {
    let (logged, busy) = pending_occupancy(op, cfg, now);
    let day = local_day(now, &cfg.time_zone);
    op.occupancy = Occupancy {
        day,
        logged_in_ms: logged,
        busy_ms: busy,
        last: now.max(op.occupancy.last),
    };
}

/// Busy and logged-in milliseconds of today including the interval not yet accumulated.
pub(crate) fn pending_occupancy(op: &Operator, cfg: &QueueConfig, now: Time) -> (u64, u64) {
    let occ = op.occupancy;
    let day = local_day(now, &cfg.time_zone);
    let (mut logged, mut busy, from) = if occ.day == day {
        (occ.logged_in_ms, occ.busy_ms, occ.last)
    } else {
        (0, 0, occ.last.max(day_start(day, &cfg.time_zone)))
    };
    let delta = now.as_millis().saturating_sub(from.as_millis());
    if op.presence != Presence::Offline {
        logged += delta;
        if op.load > 0 || op.wrapups > 0 {
            busy += delta;
        }
    }
    (logged, busy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KioskId, NewCall, NodeId, OperatorLogin};

    fn cfg() -> QueueConfig {
        QueueConfig {
            default_aht: Duration::from_secs(120),
            // A node lease longer than the scenario, so no step finds the node dead.
            node_lease: Duration::from_secs(3600),
            ..QueueConfig::default()
        }
    }

    fn run(st: &mut TenantState, s: u64, cmd: Command) -> Vec<Effect> {
        st.apply(&cfg(), Time::from_secs(s), cmd).unwrap()
    }

    fn online(st: &mut TenantState, s: u64, op: &str) {
        let login = OperatorLogin {
            operator_id: OperatorId::new(op).unwrap(),
            skills: [(Service::new("s").unwrap(), 5)].into(),
            languages: vec![Language::new("it").unwrap()],
            capacity: 1,
            node: NodeId::new("n1").unwrap(),
            presence: Presence::Available,
        };
        run(st, s, Command::OperatorOnline(login));
    }

    fn enqueue(st: &mut TenantState, s: u64, id: &str) -> Vec<Effect> {
        let call = NewCall {
            call_id: CallId::new(id).unwrap(),
            kiosk_id: KioskId::new(id).unwrap(),
            kiosk_node: NodeId::new("n1").unwrap(),
            service: Service::new("s").unwrap(),
            language: Language::new("it").unwrap(),
            priority: 0,
        };
        run(st, s, Command::Enqueue(call))
    }

    fn op_cmd(st: &mut TenantState, s: u64, op: &str, id: &str, end: bool) {
        let (operator_id, call_id) = (OperatorId::new(op).unwrap(), CallId::new(id).unwrap());
        let cmd = if end {
            Command::End {
                operator_id,
                call_id,
            }
        } else {
            Command::Accept {
                operator_id,
                call_id,
            }
        };
        run(st, s, cmd);
    }

    /// The estimates (whole seconds) in a batch's queue updates, by call.
    fn told(fx: &[Effect]) -> Vec<(String, Option<u64>)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::QueueUpdate {
                    call_id,
                    estimated_wait,
                    ..
                } => Some((
                    call_id.as_str().to_string(),
                    estimated_wait.map(|d| d.as_secs()),
                )),
                _ => None,
            })
            .collect()
    }

    fn place(
        st: &mut TenantState,
        s: u64,
        node: &str,
        replacing: Option<&str>,
    ) -> Result<Vec<Effect>, Error> {
        st.apply(
            &cfg(),
            Time::from_secs(s),
            Command::PlaceMedia {
                call_id: CallId::new("c1").unwrap(),
                node: node.into(),
                replacing: replacing.map(str::to_owned),
                reason: if replacing.is_some() { "node_lost" } else { "" }.into(),
            },
        )
    }

    #[test]
    fn media_is_placed_once_and_moved_only_from_where_it_is() {
        let mut st = TenantState::default();
        enqueue(&mut st, 0, "c1");
        // Not in conversation yet.
        assert!(matches!(
            place(&mut st, 1, "m1", None),
            Err(Error::Conflict(_))
        ));
        online(&mut st, 1, "a");
        op_cmd(&mut st, 2, "a", "c1", false);
        let fx = place(&mut st, 3, "m1", None).unwrap();
        let placed: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::MediaPlaced {
                    node,
                    previous,
                    operator_id,
                    ..
                } => Some((node.clone(), previous.clone(), operator_id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            placed,
            [("m1".into(), None, Some(OperatorId::new("a").unwrap()))]
        );
        // A second first placement (another node racing) loses.
        assert!(matches!(
            place(&mut st, 3, "m2", None),
            Err(Error::Conflict(_))
        ));
        // A move from the wrong node loses; from the right one it wins and says where from.
        assert!(matches!(
            place(&mut st, 4, "m3", Some("m2")),
            Err(Error::Conflict(_))
        ));
        let fx = place(&mut st, 4, "m2", Some("m1")).unwrap();
        assert!(fx.iter().any(
            |e| matches!(e, Effect::MediaPlaced { previous: Some(p), reason, .. }
            if p == "m1" && reason == "node_lost")
        ));
        assert_eq!(
            st.calls[&CallId::new("c1").unwrap()].media_node.as_deref(),
            Some("m2")
        );
        assert!(matches!(
            place(&mut st, 5, "", Some("m2")),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn estimates_project_when_each_slot_frees() {
        let mut st = TenantState::default();
        // Nobody online: unknown.
        assert_eq!(told(&enqueue(&mut st, 0, "c1")), [("c1".into(), None)]);
        // `a` is offered c1 at 0 and accepts at 5 (an answer takes 5 s): free at 5 + 120 = 125 s.
        online(&mut st, 0, "a");
        op_cmd(&mut st, 5, "a", "c1", false);
        // `b` comes online at 10 and is offered c2 at once: an offer counts as an answer and an AHT.
        online(&mut st, 10, "b");
        assert!(told(&enqueue(&mut st, 10, "c2")).is_empty());
        // c3 at 20: `a` frees first, at 125 s, and c3 is answered 5 s later → 110 s.
        assert_eq!(
            told(&enqueue(&mut st, 20, "c3")),
            [("c3".into(), Some(110))]
        );
        // c4 at 21: `a` is refilled by c3 until 250 s, so c4 waits for `b`: the offer is 11 s old,
        // longer than any answer seen, so 3/10 of one (1.5 s), then an AHT and an answer: 147.5 s.
        assert_eq!(
            told(&enqueue(&mut st, 21, "c4")),
            [("c4".into(), Some(127))]
        );
        // `b` accepts at 22 (answers seen: 5 s and 12 s; free at 142 s). At 100: c3 → `a` at 125,
        // c4 → `b` at 142, each plus the median answer of the draws.
        op_cmd(&mut st, 22, "b", "c2", false);
        let fx = run(&mut st, 100, Command::Tick);
        assert_eq!(
            told(&fx),
            [("c3".into(), Some(30)), ("c4".into(), Some(47))]
        );
        // `a` ends c1 at 130 and wraps up until 160 s, blocked (no wrap-up seen yet, so it runs to
        // its timeout); `b` frees at 142 s. At 140 c3 goes to `b` (142 + 5 s) and c4 to `a` after its
        // wrap-up (160 + 12 s: the median draw of the answers lands on the other sample here).
        op_cmd(&mut st, 130, "a", "c1", true);
        let fx = run(&mut st, 140, Command::Tick);
        assert_eq!(told(&fx), [("c3".into(), Some(7)), ("c4".into(), Some(32))]);
    }

    #[test]
    fn a_call_past_its_aht_keeps_a_share_of_an_aht() {
        let mut st = TenantState::default();
        online(&mut st, 0, "a");
        enqueue(&mut st, 0, "c1");
        op_cmd(&mut st, 0, "a", "c1", false);
        // At 200 s c1 has outlived the 120 s AHT: 3/10 of an AHT (36 s) is still expected.
        assert_eq!(
            told(&enqueue(&mut st, 200, "c2")),
            [("c2".into(), Some(36))]
        );
    }
}
