//! The transitions of the call state machine: offers, answers, holds, transfers, ends and wrap-ups.

use super::*;

impl TenantState {
    /// Ends an offer that did not turn into a call: the call waits again with its age.
    pub(super) fn close_offer(
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

    pub(super) fn release_offers(
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
    pub(super) fn end_for_kiosk(
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
                fx.push(call_record(
                    cfg,
                    &call,
                    now,
                    reason_of(reason),
                    wait,
                    short,
                    None,
                ));
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

    pub(super) fn start_wrapup(
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
        if matches!(call.state, CallState::Held { .. }) {
            call.log.held_ms += now.since(call.since).as_millis() as u64;
        }
        call.state = CallState::WrapUp {
            operator: operator.clone(),
            until,
        };
        call.ended_at = Some(now);
        call.since = now;
        let kiosk_id = call.kiosk_id.clone();
        let wait = call.accepted_at.unwrap_or(now).since(call.queued_at);
        let record = call_record(cfg, call, now, reason, wait, false, None);
        fx.push(Effect::CallEnded {
            call_id: id.clone(),
            kiosk_id,
            operator_id: Some(operator.clone()),
            reason,
        });
        fx.push(record);
        self.with_op(cfg, now, &operator, fx, |op| {
            op.load = op.load.saturating_sub(1);
            op.wrapups += 1;
            op.idle_since = now;
        });
        if cfg.wrapup.is_zero() {
            self.finish_wrapup(cfg, now, id, fx);
        }
    }

    pub(super) fn finish_wrapup(
        &mut self,
        cfg: &QueueConfig,
        at: Time,
        id: &CallId,
        fx: &mut Vec<Effect>,
    ) {
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
        fx.push(call_record(
            cfg,
            &call,
            ended,
            EndReason::Completed,
            accepted.since(call.queued_at),
            false,
            Some((at, handle)),
        ));
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
    pub(super) fn set_hold(
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
        if hold {
            c.log.holds += 1;
        } else {
            c.log.held_ms += now.since(c.since).as_millis() as u64;
        }
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

    pub(super) fn lose_operator(
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
    pub(super) fn unpin(&mut self, id: &OperatorId) {
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

    pub(super) fn execute(
        &mut self,
        cfg: &QueueConfig,
        now: Time,
        cmd: Command,
        fx: &mut Vec<Effect>,
    ) {
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
                    last_interval: None,
                    media_node: None,
                    log: CallLog::default(),
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
                call.log.answered_at.get_or_insert(now);
                if call.log.operators.last() != Some(&operator_id) {
                    call.log.operators.push(operator_id.clone());
                }
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
                call.log.transfers += 1;
                if matches!(call.state, CallState::Held { .. }) {
                    call.log.held_ms += now.since(call.since).as_millis() as u64;
                }
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
}

/// `CallEnded`'s reason for a kiosk's leaving while waiting.
fn reason_of(reason: EndReason) -> EndReason {
    if reason == EndReason::KioskLost {
        EndReason::KioskLost
    } else {
        EndReason::Abandoned
    }
}

/// The history's record of `call`, ended at `ended_at` (see [`CallRecord`]).
fn call_record(
    cfg: &QueueConfig,
    call: &Call,
    ended_at: Time,
    reason: EndReason,
    wait: Duration,
    short_abandon: bool,
    wrapup: Option<(Time, Duration)>,
) -> Effect {
    Effect::Record(Box::new(CallRecord {
        call_id: call.call_id.clone(),
        kiosk_id: call.kiosk_id.clone(),
        service: call.service.clone(),
        language: call.language.clone(),
        operator_id: call.accepted_at.and(call.log.operators.last().cloned()),
        operators: call.log.operators.clone(),
        reason,
        enqueued_at: call.enqueued_at,
        queued_at: call.queued_at,
        offered_at: call.log.offered_at,
        answered_at: call.log.answered_at,
        accepted_at: call.accepted_at,
        ended_at,
        held: Duration::from_millis(call.log.held_ms),
        holds: call.log.holds,
        transfers: call.log.transfers,
        wait,
        sl_threshold: cfg.threshold(&call.service),
        short_abandon,
        day: local_day(call.enqueued_at, &cfg.time_zone),
        wrapup_ended_at: wrapup.map(|(at, _)| at),
        handle: wrapup.map(|(_, h)| h),
    }))
}
