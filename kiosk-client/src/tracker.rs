//! Following one kiosk call from its events: a pure state machine, with no I/O, shared by
//! [`crate::HeadlessKiosk::follow`] and the `sportello-kiosk` binary.

use protocol::{Event, OperatorInfo, SyncedCall};

/// The end reason recorded when a `state.sync` no longer lists the call: it ended while this client
/// was not connected, and its real reason was never received.
pub const REASON_GONE: &str = "gone";

/// Where a call stands, as far as the kiosk knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStatus {
    /// In the queue (or offered to an operator, which the kiosk does not see).
    Waiting {
        /// The last known 1-based position, if one arrived yet.
        position: Option<u32>,
        /// The last estimated wait in seconds; `None` means unknown (no eligible operator online)
        /// or not told yet.
        estimated_wait_s: Option<u64>,
    },
    /// An operator answered and the conversation runs.
    Assigned {
        /// Who answered.
        operator: OperatorInfo,
    },
    /// The operator put the call on hold.
    Held {
        /// Who holds it.
        operator: OperatorInfo,
    },
    /// The call ended.
    Ended {
        /// `completed`, `abandoned`, `kiosk_lost`, `operator_lost`, …, or [`REASON_GONE`].
        reason: String,
    },
}

/// How a followed call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// The call.
    pub call_id: String,
    /// The `call.ended` reason, or [`REASON_GONE`] when a `state.sync` showed the call was over.
    pub reason: String,
    /// The last operator assigned to the call, if any.
    pub operator: Option<OperatorInfo>,
    /// The last queue position told to the kiosk, if any.
    pub last_position: Option<u32>,
    /// The last estimated wait told to the kiosk (`None`: unknown or never told).
    pub last_estimated_wait_s: Option<u64>,
    /// Every event about the call, oldest first (including `state.sync` events that listed it or
    /// showed it gone).
    pub updates: Vec<Event>,
    /// Whether the end was learnt from `state.sync` rather than from `call.ended`.
    pub ended_by_sync: bool,
}

/// Follows one call from the events a kiosk receives.
#[derive(Debug, Clone)]
pub struct CallTracker {
    call_id: String,
    status: CallStatus,
    operator: Option<OperatorInfo>,
    last_position: Option<u32>,
    last_estimated_wait_s: Option<u64>,
    updates: Vec<Event>,
    ended_by_sync: bool,
}

impl CallTracker {
    /// A tracker for a call that was just requested (waiting, position not known yet).
    pub fn new(call_id: impl Into<String>) -> Self {
        CallTracker {
            call_id: call_id.into(),
            status: CallStatus::Waiting {
                position: None,
                estimated_wait_s: None,
            },
            operator: None,
            last_position: None,
            last_estimated_wait_s: None,
            updates: Vec::new(),
            ended_by_sync: false,
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Where the call stands now.
    pub fn status(&self) -> &CallStatus {
        &self.status
    }

    /// Whether the call ended.
    pub fn is_ended(&self) -> bool {
        matches!(self.status, CallStatus::Ended { .. })
    }

    /// Whether the call is still waiting for an operator.
    pub fn is_waiting(&self) -> bool {
        matches!(self.status, CallStatus::Waiting { .. })
    }

    /// Every event about the call applied so far, oldest first.
    pub fn updates(&self) -> &[Event] {
        &self.updates
    }

    /// Applies one event. Returns `true` when it was about this call (and so changed or confirmed
    /// its state), `false` for anything else. Events after the end are ignored.
    ///
    /// Every `state.sync` is taken as current: one that does not list the call ends it with
    /// [`REASON_GONE`]. The caller must not pass a `state.sync` that the server sent before the
    /// call existed (the one right after `auth`, in the session that then requested the call).
    pub fn apply(&mut self, event: &Event) -> bool {
        if self.is_ended() {
            return false;
        }
        let about_us = match event {
            Event::QueueUpdate(u) if u.call_id == self.call_id => {
                self.last_position = Some(u.position);
                self.last_estimated_wait_s = u.estimated_wait_s;
                self.status = CallStatus::Waiting {
                    position: Some(u.position),
                    estimated_wait_s: u.estimated_wait_s,
                };
                true
            }
            Event::CallAssigned(a) if a.call_id == self.call_id => {
                self.operator = Some(a.operator.clone());
                self.status = CallStatus::Assigned {
                    operator: a.operator.clone(),
                };
                true
            }
            Event::CallHeld(c) if c.call_id == self.call_id => {
                if let Some(operator) = self.operator.clone() {
                    self.status = CallStatus::Held { operator };
                }
                true
            }
            Event::CallResumed(c) if c.call_id == self.call_id => {
                if let Some(operator) = self.operator.clone() {
                    self.status = CallStatus::Assigned { operator };
                }
                true
            }
            Event::CallRequeued(r) if r.call_id == self.call_id => {
                self.status = CallStatus::Waiting {
                    position: None,
                    estimated_wait_s: None,
                };
                true
            }
            Event::CallEnded(e) if e.call_id == self.call_id => {
                self.status = CallStatus::Ended {
                    reason: e.reason.clone(),
                };
                true
            }
            Event::StateSync(sync) => {
                match sync.calls.iter().find(|c| c.call_id == self.call_id) {
                    Some(call) => self.apply_synced(call),
                    None => {
                        self.ended_by_sync = true;
                        self.status = CallStatus::Ended {
                            reason: REASON_GONE.to_owned(),
                        };
                    }
                }
                true
            }
            _ => false,
        };
        if about_us {
            self.updates.push(event.clone());
        }
        about_us
    }

    fn apply_synced(&mut self, call: &SyncedCall) {
        if let Some(operator) = &call.operator {
            self.operator = Some(operator.clone());
        }
        match (call.state.as_str(), self.operator.clone()) {
            ("connected", Some(operator)) => self.status = CallStatus::Assigned { operator },
            ("on_hold", Some(operator)) => self.status = CallStatus::Held { operator },
            ("waiting" | "offered", _) => {
                if call.position.is_some() {
                    self.last_position = call.position;
                    self.last_estimated_wait_s = call.estimated_wait_s;
                }
                self.status = CallStatus::Waiting {
                    position: call.position.or(self.last_position),
                    estimated_wait_s: call.estimated_wait_s,
                };
            }
            // A state this client does not know: keep what it had.
            _ => {}
        }
    }

    /// The outcome, once the call ended.
    pub fn outcome(&self) -> Option<CallOutcome> {
        let CallStatus::Ended { reason } = &self.status else {
            return None;
        };
        Some(CallOutcome {
            call_id: self.call_id.clone(),
            reason: reason.clone(),
            operator: self.operator.clone(),
            last_position: self.last_position,
            last_estimated_wait_s: self.last_estimated_wait_s,
            updates: self.updates.clone(),
            ended_by_sync: self.ended_by_sync,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallAssigned, CallEnded, CallRef, CallRequeued, QueueUpdate, StateSync};

    fn op() -> OperatorInfo {
        OperatorInfo {
            id: "maria.rossi".into(),
            display_name: "Maria Rossi".into(),
        }
    }

    #[test]
    fn follows_a_call_from_queue_to_completion() {
        let mut t = CallTracker::new("c1");
        assert!(t.apply(&Event::QueueUpdate(QueueUpdate {
            call_id: "c1".into(),
            position: 2,
            estimated_wait_s: None,
            estimated_wait_low_s: None,
            estimated_wait_high_s: None,
        })));
        assert_eq!(
            t.status(),
            &CallStatus::Waiting {
                position: Some(2),
                estimated_wait_s: None
            }
        );
        assert!(!t.apply(&Event::QueueUpdate(QueueUpdate {
            call_id: "other".into(),
            position: 1,
            estimated_wait_s: Some(5),
            estimated_wait_low_s: None,
            estimated_wait_high_s: None,
        })));
        t.apply(&Event::QueueUpdate(QueueUpdate {
            call_id: "c1".into(),
            position: 1,
            estimated_wait_s: Some(40),
            estimated_wait_low_s: None,
            estimated_wait_high_s: None,
        }));
        t.apply(&Event::CallAssigned(CallAssigned {
            call_id: "c1".into(),
            operator: op(),
        }));
        t.apply(&Event::CallHeld(CallRef {
            call_id: "c1".into(),
        }));
        assert_eq!(t.status(), &CallStatus::Held { operator: op() });
        t.apply(&Event::CallResumed(CallRef {
            call_id: "c1".into(),
        }));
        assert_eq!(t.status(), &CallStatus::Assigned { operator: op() });
        assert!(t.outcome().is_none());
        t.apply(&Event::CallEnded(CallEnded {
            call_id: "c1".into(),
            reason: "completed".into(),
        }));
        let out = t.outcome().unwrap();
        assert_eq!(out.reason, "completed");
        assert_eq!(out.operator, Some(op()));
        assert_eq!(out.last_position, Some(1));
        assert_eq!(out.last_estimated_wait_s, Some(40));
        assert_eq!(out.updates.len(), 6);
        assert!(!out.ended_by_sync);
        // Nothing changes after the end.
        assert!(!t.apply(&Event::CallEnded(CallEnded {
            call_id: "c1".into(),
            reason: "abandoned".into(),
        })));
    }

    #[test]
    fn requeue_goes_back_to_waiting_and_sync_without_the_call_ends_it() {
        let mut t = CallTracker::new("c1");
        t.apply(&Event::CallAssigned(CallAssigned {
            call_id: "c1".into(),
            operator: op(),
        }));
        t.apply(&Event::CallRequeued(CallRequeued {
            call_id: "c1".into(),
            reason: "operator_lost".into(),
        }));
        assert!(t.is_waiting());
        let listed = SyncedCall {
            call_id: "c1".into(),
            state: "waiting".into(),
            service: "anagrafe".into(),
            language: "it".into(),
            kiosk: None,
            operator: None,
            waited_s: 30,
            expires_in_s: None,
            position: Some(4),
            estimated_wait_s: Some(120),
            estimated_wait_low_s: None,
            estimated_wait_high_s: None,
            media_node: None,
        };
        t.apply(&Event::StateSync(StateSync {
            calls: vec![listed],
            operator_state: None,
            dispositions: None,
        }));
        assert_eq!(
            t.status(),
            &CallStatus::Waiting {
                position: Some(4),
                estimated_wait_s: Some(120)
            }
        );
        t.apply(&Event::StateSync(StateSync {
            calls: vec![],
            operator_state: None,
            dispositions: None,
        }));
        let out = t.outcome().unwrap();
        assert_eq!(out.reason, REASON_GONE);
        assert!(out.ended_by_sync);
        assert_eq!(out.last_position, Some(4));
    }
}
