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

use crate::effect::{CallRecord, Effect, EndReason, MetricEvent, OfferOutcome, RequeueReason};
use crate::error::Error;
use crate::estimate::History;
use crate::model::{
    validate_reason, Call, CallId, CallLog, CallState, KioskId, Language, NewCall, NodeId,
    Occupancy, Operator, OperatorId, OperatorLogin, OperatorState, Presence, QueueConfig, Service,
    Time, TransferTarget, WrapupPolicy,
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
        // Choose first, on shared borrows and without cloning ids: each free operator with the
        // offers this pass has given it so far. Calls are served strictly in order, each taking
        // its best operator; so an older call is never skipped for a younger one that could take
        // the same operator.
        let mut picks: Vec<(CallId, OperatorId)> = Vec::new();
        {
            let order = self.waiting_in_order(cfg, now);
            if order.is_empty() {
                return;
            }
            let mut free: Vec<(&Operator, u8)> = self
                .operators
                .values()
                .filter(|o| routable(o, cfg))
                .map(|o| (o, 0))
                .collect();
            for call in order {
                if free.is_empty() {
                    break;
                }
                let best = free
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (op, given))| {
                        let level = eligible_level(op, call)?;
                        let declined = call
                            .declined
                            .iter()
                            .position(|d| d == &op.operator_id)
                            .map_or(0, |p| p + 1);
                        Some((
                            (
                                declined,
                                std::cmp::Reverse(level),
                                op.idle_since,
                                op.load + op.offers + given,
                                &op.operator_id,
                            ),
                            i,
                        ))
                    })
                    .min_by(|a, b| a.0.cmp(&b.0))
                    .map(|(_, i)| i);
                let Some(i) = best else { continue };
                let (op, given) = &mut free[i];
                *given += 1;
                picks.push((call.call_id.clone(), op.operator_id.clone()));
                if op.load + op.offers + *given >= op.capacity {
                    free.swap_remove(i);
                }
            }
        }
        for (id, oid) in picks {
            let expires_at = now.plus(cfg.offer_lease);
            let Some(call) = self.call_mut(&id) else {
                continue;
            };
            call.state = CallState::Offered {
                operator: oid.clone(),
                expires_at,
            };
            call.log.offered_at.get_or_insert(now);
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
                call_id: id,
                kiosk_id,
                operator_id: oid.clone(),
                operator_node: node,
                service,
                language,
                waited,
                expires_at,
            });
            self.with_op(cfg, now, &oid, fx, |op| op.offers += 1);
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
            let key = (*pos, ewt.map(|e| e.wait.as_millis() as u64));
            if needs_update(call.last_update, key) {
                updates.push((call.call_id.clone(), call.kiosk_id.clone(), key, ewt));
            }
        }
        for (id, kiosk_id, key, ewt) in updates {
            let interval = ewt.map(|e| (e.low, e.high));
            if let Some(c) = self.call_mut(&id) {
                c.last_update = Some(key);
                c.last_interval = interval.map(|(l, h)| (l.as_secs(), h.as_secs()));
            }
            fx.push(Effect::QueueUpdate {
                call_id: id,
                kiosk_id,
                position: key.0,
                estimated_wait: ewt.map(|e| e.wait),
                interval,
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
            if blocked_by_wrapup(op, cfg) {
                OperatorState::Wrapup
            } else {
                OperatorState::Available
            }
        }
    }
}

/// Whether an idle operator is held by their wrap-ups (the `BlockWhenIdle` policy).
pub(crate) fn blocked_by_wrapup(op: &Operator, cfg: &QueueConfig) -> bool {
    op.wrapups > 0
        && op.load == 0
        && op.offers == 0
        && cfg.wrapup_policy == WrapupPolicy::BlockWhenIdle
}

/// Whether `op` can take an offer now: `visible_state` is `Available` (without building it: a
/// paused operator's state would clone the reason) and a slot is free.
fn routable(op: &Operator, cfg: &QueueConfig) -> bool {
    op.presence == Presence::Available
        && !blocked_by_wrapup(op, cfg)
        && op.load + op.offers < op.capacity
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
pub(crate) mod tests;
mod transitions;
mod validation;
