//! Checking a command against the state before anything changes: who may do what to which call.

use super::*;

impl TenantState {
    pub(super) fn call(&self, id: &CallId) -> Result<&Call, Error> {
        self.calls.get(id).ok_or_else(|| not_found_call(id))
    }

    pub(super) fn owned_call(&self, op: &OperatorId, id: &CallId) -> Result<&Call, Error> {
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
    pub(super) fn owned_call_in(
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

    pub(super) fn validate(&self, now: Time, cmd: &Command) -> Result<(), Error> {
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
}
