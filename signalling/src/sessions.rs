//! Sessions: what a socket authenticated as, kept across reconnects for a grace period so that a
//! client can `resume` it. This is a pure core: every method takes `now`.
//!
//! A session is *attached* while a socket serves it and *detached* after the socket ends. A detached
//! session can be resumed until its grace period passes; then it *expires* and the call lifecycle
//! applies the protocol's rules (kiosk lost, operator lost). Each attachment has a number so that a
//! late detach from a superseded socket cannot detach the socket that resumed the session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{Capability, Role};

use crate::accounts::Principal;

/// Grace periods per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graces {
    /// Kiosk sessions.
    pub kiosk: Duration,
    /// Operator sessions.
    pub operator: Duration,
    /// Supervisor sessions.
    pub supervisor: Duration,
}

impl Graces {
    fn of(&self, role: Role) -> Duration {
        match role {
            Role::Kiosk => self.kiosk,
            Role::Operator => self.operator,
            Role::Supervisor => self.supervisor,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    capabilities: Vec<Capability>,
    attachment: u64,
    detached_at: Option<Instant>,
}

/// The result of opening a session on a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The session id.
    pub session_id: String,
    /// The number of this attachment.
    pub attachment: u64,
    /// Whether an existing session was resumed.
    pub resumed: bool,
    /// When a live socket still held the resumed session, its attachment number: that socket must
    /// be closed.
    pub superseded: Option<u64>,
}

/// A session whose grace period has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The session id.
    pub session_id: String,
    /// Who it was.
    pub principal: Principal,
}

/// A new session refused because its principal holds as many attached sessions as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySessions {
    /// The cap.
    pub cap: usize,
}

/// Every session of this process.
#[derive(Debug)]
pub struct SessionRegistry {
    sessions: HashMap<String, Entry>,
    graces: Graces,
    next_attachment: u64,
    expired: Vec<Expired>,
    per_principal: usize,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new(graces: Graces) -> Self {
        SessionRegistry {
            sessions: HashMap::new(),
            graces,
            next_attachment: 1,
            expired: Vec::new(),
            per_principal: 0,
        }
    }

    /// This registry with at most `cap` sessions per principal (0: no cap). Past the cap a new
    /// session first takes the place of the principal's oldest detached one; when all of them are
    /// attached it is refused. Resuming is never refused.
    pub fn with_per_principal(mut self, cap: usize) -> Self {
        self.per_principal = cap;
        self
    }

    /// Like [`attach`](Self::attach), within the per-principal cap.
    pub fn try_attach(
        &mut self,
        now: Instant,
        principal: &Principal,
        capabilities: &[Capability],
        resume: Option<&str>,
    ) -> Result<Attached, TooManySessions> {
        let resumable = resume.is_some_and(|id| {
            self.expire_one(now, id);
            self.sessions
                .get(id)
                .is_some_and(|e| e.principal == *principal)
        });
        if self.per_principal > 0 && !resumable {
            let held = self
                .sessions
                .values()
                .filter(|e| e.principal == *principal)
                .count();
            if held >= self.per_principal {
                // Oldest detached first; attached ones (no detach time) cannot be replaced.
                let mut detached: Vec<(Instant, String)> = self
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.principal == *principal)
                    .filter_map(|(id, e)| e.detached_at.map(|at| (at, id.clone())))
                    .collect();
                let excess = held + 1 - self.per_principal;
                if detached.len() < excess {
                    return Err(TooManySessions {
                        cap: self.per_principal,
                    });
                }
                detached.sort();
                for (_, id) in detached.into_iter().take(excess) {
                    self.sessions.remove(&id);
                }
            }
        }
        Ok(self.attach(now, principal, capabilities, resume))
    }

    /// Opens a session for `principal`, resuming `resume` when it names a session of the same
    /// principal that has not expired. Otherwise a new session is created.
    pub fn attach(
        &mut self,
        now: Instant,
        principal: &Principal,
        capabilities: &[Capability],
        resume: Option<&str>,
    ) -> Attached {
        let attachment = self.next_attachment;
        self.next_attachment += 1;
        if let Some(id) = resume {
            self.expire_one(now, id);
            if let Some(entry) = self.sessions.get_mut(id) {
                if entry.principal == *principal {
                    let superseded = entry.detached_at.is_none().then_some(entry.attachment);
                    entry.attachment = attachment;
                    entry.detached_at = None;
                    entry.capabilities = capabilities.to_vec();
                    return Attached {
                        session_id: id.to_owned(),
                        attachment,
                        resumed: true,
                        superseded,
                    };
                }
            }
        }
        let session_id = uuid::Uuid::new_v4().to_string();
        self.sessions.insert(
            session_id.clone(),
            Entry {
                principal: principal.clone(),
                capabilities: capabilities.to_vec(),
                attachment,
                detached_at: None,
            },
        );
        Attached {
            session_id,
            attachment,
            resumed: false,
            superseded: None,
        }
    }

    /// Marks the session detached, if `attachment` is still the current one.
    pub fn detach(&mut self, now: Instant, session_id: &str, attachment: u64) {
        if let Some(entry) = self.sessions.get_mut(session_id) {
            if entry.attachment == attachment && entry.detached_at.is_none() {
                entry.detached_at = Some(now);
            }
        }
    }

    /// Removes a session at once, without a grace period (a deliberate logout).
    pub fn close(&mut self, session_id: &str) -> Option<Principal> {
        self.sessions.remove(session_id).map(|e| e.principal)
    }

    fn expire_one(&mut self, now: Instant, session_id: &str) {
        let Some(entry) = self.sessions.get(session_id) else {
            return;
        };
        if let Some(at) = entry.detached_at {
            if now.saturating_duration_since(at) >= self.graces.of(entry.principal.role) {
                let entry = self.sessions.remove(session_id).expect("present");
                self.expired.push(Expired {
                    session_id: session_id.to_owned(),
                    principal: entry.principal,
                });
            }
        }
    }

    /// Expires every detached session past its grace period and returns all sessions that expired
    /// since the last call.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        let due: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, e)| {
                e.detached_at.is_some_and(|at| {
                    now.saturating_duration_since(at) >= self.graces.of(e.principal.role)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.expire_one(now, &id);
        }
        std::mem::take(&mut self.expired)
    }

    /// Whether the session exists and a socket serves it now.
    pub fn is_attached(&self, session_id: &str) -> bool {
        self.sessions
            .get(session_id)
            .is_some_and(|e| e.detached_at.is_none())
    }

    /// The declared capabilities of a session.
    pub fn capabilities(&self, session_id: &str) -> Option<&[Capability]> {
        self.sessions
            .get(session_id)
            .map(|e| e.capabilities.as_slice())
    }

    /// Whether `principal` has a session here, attached or within its grace period.
    pub fn has_principal(&self, principal: &Principal) -> bool {
        self.sessions.values().any(|e| e.principal == *principal)
    }

    /// Number of sessions (attached or within grace).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graces() -> Graces {
        Graces {
            kiosk: Duration::from_secs(30),
            operator: Duration::from_secs(60),
            supervisor: Duration::from_secs(10),
        }
    }

    fn kiosk() -> Principal {
        Principal {
            role: Role::Kiosk,
            id: "municipio".into(),
        }
    }

    #[test]
    fn resume_within_grace_keeps_the_session() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces());
        let a = reg.attach(t0, &kiosk(), &[], None);
        assert!(!a.resumed);
        reg.detach(t0 + Duration::from_secs(1), &a.session_id, a.attachment);
        assert!(!reg.is_attached(&a.session_id));
        let b = reg.attach(
            t0 + Duration::from_secs(30),
            &kiosk(),
            &[Capability::Printer],
            Some(&a.session_id),
        );
        assert!(b.resumed);
        assert_eq!(b.session_id, a.session_id);
        assert_eq!(b.superseded, None);
        assert_eq!(
            reg.capabilities(&a.session_id),
            Some(&[Capability::Printer][..])
        );
        assert!(reg.expire(t0 + Duration::from_secs(300)).is_empty());
    }

    #[test]
    fn past_grace_the_session_expires_once() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces());
        let a = reg.attach(t0, &kiosk(), &[], None);
        reg.detach(t0, &a.session_id, a.attachment);
        assert!(reg.expire(t0 + Duration::from_secs(29)).is_empty());
        let expired = reg.expire(t0 + Duration::from_secs(30));
        assert_eq!(
            expired,
            vec![Expired {
                session_id: a.session_id.clone(),
                principal: kiosk()
            }]
        );
        assert!(reg.expire(t0 + Duration::from_secs(31)).is_empty());
        let b = reg.attach(
            t0 + Duration::from_secs(31),
            &kiosk(),
            &[],
            Some(&a.session_id),
        );
        assert!(!b.resumed);
        assert_ne!(b.session_id, a.session_id);
    }

    #[test]
    fn a_late_resume_reports_the_expiry_and_starts_afresh() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces());
        let a = reg.attach(t0, &kiosk(), &[], None);
        reg.detach(t0, &a.session_id, a.attachment);
        let b = reg.attach(
            t0 + Duration::from_secs(45),
            &kiosk(),
            &[],
            Some(&a.session_id),
        );
        assert!(!b.resumed);
        assert_eq!(reg.expire(t0 + Duration::from_secs(45)).len(), 1);
    }

    #[test]
    fn resume_by_another_principal_is_refused() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces());
        let a = reg.attach(t0, &kiosk(), &[], None);
        reg.detach(t0, &a.session_id, a.attachment);
        let thief = Principal {
            role: Role::Kiosk,
            id: "barilla".into(),
        };
        let b = reg.attach(t0, &thief, &[], Some(&a.session_id));
        assert!(!b.resumed);
        assert_ne!(b.session_id, a.session_id);
    }

    #[test]
    fn resuming_a_live_session_supersedes_the_old_socket() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces());
        let a = reg.attach(t0, &kiosk(), &[], None);
        let b = reg.attach(t0, &kiosk(), &[], Some(&a.session_id));
        assert!(b.resumed);
        assert_eq!(b.superseded, Some(a.attachment));
        // The old socket's detach arrives late and must not detach the new one.
        reg.detach(t0, &a.session_id, a.attachment);
        assert!(reg.is_attached(&a.session_id));
    }

    #[test]
    fn a_principal_past_its_cap_is_refused_unless_a_detached_session_can_go() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces()).with_per_principal(2);
        let a = reg.try_attach(t0, &kiosk(), &[], None).unwrap();
        let b = reg.try_attach(t0, &kiosk(), &[], None).unwrap();
        assert_eq!(
            reg.try_attach(t0, &kiosk(), &[], None),
            Err(TooManySessions { cap: 2 })
        );
        // Another principal is not affected.
        let other = Principal {
            role: Role::Operator,
            id: "maria".into(),
        };
        assert!(reg.try_attach(t0, &other, &[], None).is_ok());
        // Resuming a held session is never refused.
        let again = reg
            .try_attach(t0, &kiosk(), &[], Some(&a.session_id))
            .unwrap();
        assert!(again.resumed);
        // A detached session makes way for a new one, and leaves without expiring.
        reg.detach(t0, &b.session_id, b.attachment);
        let c = reg.try_attach(t0, &kiosk(), &[], None).unwrap();
        assert!(!c.resumed);
        assert!(reg.capabilities(&b.session_id).is_none());
        assert_eq!(reg.len(), 3);
        assert!(reg.expire(t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn grace_depends_on_role() {
        let t0 = Instant::now();
        let mut reg = SessionRegistry::new(graces());
        let sup = Principal {
            role: Role::Supervisor,
            id: "anna".into(),
        };
        let op = Principal {
            role: Role::Operator,
            id: "maria".into(),
        };
        let s = reg.attach(t0, &sup, &[], None);
        let o = reg.attach(t0, &op, &[], None);
        reg.detach(t0, &s.session_id, s.attachment);
        reg.detach(t0, &o.session_id, o.attachment);
        let expired = reg.expire(t0 + Duration::from_secs(10));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].principal, sup);
        assert_eq!(reg.len(), 1);
    }
}
