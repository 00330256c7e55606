//! **Core** of the in-call actions: the rules of identification steps, PEC codes, scans, issued
//! documents and print jobs, on plain records. No I/O and no clock: every method takes `now` as a
//! [`queue::Time`] (wall-clock milliseconds since the Unix epoch), like the queue core, and spans
//! (a PEC code's lifetime, the wait between two codes, a printed job's keep) as
//! [`std::time::Duration`]s; it says what happened. The records are the values the store
//! (`store.rs`) keeps in the shared state, so every node applies the same rules to the same data
//! and compares the times one node wrote with its own clock; the drivers do the mail, the
//! registry, the audit log and the events. The per-process cores (`ws::connection`, `sessions`,
//! `throttle`) keep [`std::time::Instant`] instead: their timers are monotonic and never leave the
//! process.
//!
//! Rules (see `docs/protocol.md`, "In-call actions"):
//! - only a party of the call (its kiosk, its operator) acts on it, and only in conversation;
//! - an identification step must follow an `identity.request` with its method; a new request
//!   replaces the pending one; a nonce is spent by the first card answer;
//! - a PEC code lives [`PecLimits::ttl`] and allows `attempts` tries; one code per call every
//!   [`PecLimits::resend`], at most `per_hour` codes per fiscal code per [`PEC_WINDOW`];
//! - a verified identity stays with the call until it ends; a call holds at most
//!   [`MAX_SCANS_PER_CALL`] scans, dropped when it ends;
//! - a print job is re-sent until the kiosk acknowledges it; its state never goes backwards.
//!
//! Times in the records are written as milliseconds (a JSON integer) under names ending in `_ms`.
//! Records and job files written before the core took [`queue::Time`] held seconds (a JSON float)
//! under the names without `_ms`; they are still read (`wall`). A node of the older version
//! cannot read the new records, so a rolling upgrade across this change may drop the in-call state
//! of calls in progress (their next step is refused as `unavailable`); print jobs are kept.

use std::time::Duration;

use protocol::incall::{IdentityMethod, PrintState, Subject};
use protocol::Role;
use queue::Time;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::Principal;

/// Scans one call may hold.
pub const MAX_SCANS_PER_CALL: usize = 8;

/// The window of [`PecLimits::per_hour`]: the sends of a fiscal code counted against it.
pub const PEC_WINDOW: Duration = Duration::from_secs(3600);

/// Limits of the PEC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PecLimits {
    /// How long a code stays valid.
    pub ttl: Duration,
    /// Tries per code.
    pub attempts: u32,
    /// The least time between two codes of one call.
    pub resend: Duration,
    /// Codes per fiscal code per [`PEC_WINDOW`].
    pub per_hour: usize,
}

impl Default for PecLimits {
    fn default() -> Self {
        PecLimits {
            ttl: Duration::from_secs(300),
            attempts: 3,
            resend: Duration::from_secs(60),
            per_hour: 3,
        }
    }
}

/// Why a step was refused (mapped to protocol error codes by the driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The step does not follow the pending request (`conflict`).
    NotPending(String),
    /// The call is not in conversation (`conflict`).
    NotInConversation(String),
    /// Too many codes (`rate_limited`).
    RateLimited(String),
    /// No such scan or job (`not_found`).
    NotFound(String),
    /// Someone else's object (`forbidden`).
    Forbidden(String),
}

/// A call as the ownership rule sees it (the queue's view of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parties<'a> {
    /// The call id, for messages.
    pub call: &'a str,
    /// The call's kiosk.
    pub kiosk: &'a str,
    /// The operator it is offered or assigned to.
    pub operator: Option<&'a str>,
    /// Connected or on hold.
    pub in_conversation: bool,
}

/// Whether `who` is a party of the call: its kiosk, or the operator it is offered or assigned to.
/// A supervisor never is.
pub(crate) fn is_party(who: &Principal, call: &Parties<'_>) -> bool {
    match who.role {
        Role::Kiosk => call.kiosk == who.id,
        Role::Operator => call.operator == Some(who.id.as_str()),
        Role::Supervisor => false,
    }
}

/// The ownership check of every in-call request: `who` must have `role` and be a party of the
/// call (else `Forbidden`), and the call must be in conversation (else `NotInConversation`).
pub(crate) fn party_in_conversation(
    who: &Principal,
    role: Role,
    call: &Parties<'_>,
) -> Result<(), Refused> {
    if who.role != role || !is_party(who, call) {
        return Err(Refused::Forbidden(format!(
            "call {} is not yours",
            call.call
        )));
    }
    if !call.in_conversation {
        return Err(Refused::NotInConversation(format!(
            "call {} is not in conversation",
            call.call
        )));
    }
    Ok(())
}

/// The outcome of a PEC code attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// The code matches: the fiscal code it was sent for.
    Verified(String),
    /// Wrong; this many tries left.
    Wrong(u32),
    /// Wrong, and no tries left: the code is spent.
    TooManyAttempts,
    /// The code expired (spent).
    Expired,
}

/// A PEC code being checked (only its digest is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PecChallenge {
    fiscal_code: String,
    /// SHA-256 of the code, hex.
    digest: String,
    #[serde(rename = "expires_at_ms", alias = "expires_at", with = "super::wall")]
    expires_at: Time,
    attempts_left: u32,
}

/// The identification step the operator asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    method: IdentityMethod,
    /// The nonce a card signs, until spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pec: Option<PecChallenge>,
    /// The scan submitted for the operator to judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scan: Option<String>,
}

/// Who was identified in the call, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identified {
    /// The method.
    pub method: IdentityMethod,
    /// The citizen.
    pub subject: Subject,
}

/// The in-call state of one call: one record, changed by compare-and-set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call's kiosk.
    pub kiosk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identified: Option<Identified>,
    #[serde(
        rename = "last_pec_at_ms",
        alias = "last_pec_at",
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::wall::option"
    )]
    last_pec_at: Option<Time>,
    /// Ids of the scans uploaded in the call (their images are records of their own).
    #[serde(default)]
    pub scans: Vec<String>,
    /// Documents issued in the call.
    #[serde(default)]
    documents: Vec<String>,
}

fn digest(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().as_bytes()))
}

fn not_pending(what: &str) -> Refused {
    Refused::NotPending(format!("no {what} identification is pending"))
}

impl CallRecord {
    /// A call with nothing done yet.
    pub fn new(kiosk: &str) -> Self {
        CallRecord {
            kiosk: kiosk.to_owned(),
            pending: None,
            identified: None,
            last_pec_at: None,
            scans: Vec::new(),
            documents: Vec::new(),
        }
    }

    /// `identity.request`: `method` is now pending, replacing any pending step.
    pub fn request(&mut self, method: IdentityMethod, nonce: Option<String>) {
        self.pending = Some(Pending {
            method,
            nonce,
            pec: None,
            scan: None,
        });
    }

    /// The device step still waiting for its device (a card nonce not yet used, a document not
    /// yet scanned): `(method, nonce)`, to send again when a device connects.
    pub fn waiting_device(&self) -> Option<(IdentityMethod, String)> {
        let p = self.pending.as_ref()?;
        let waiting = match p.method {
            IdentityMethod::Cie | IdentityMethod::Cns => p.nonce.is_some(),
            IdentityMethod::Document => p.scan.is_none(),
            IdentityMethod::Pec => false,
        };
        waiting.then(|| (p.method, p.nonce.clone().unwrap_or_default()))
    }

    /// The pending method.
    pub fn pending(&self) -> Option<IdentityMethod> {
        self.pending.as_ref().map(|p| p.method)
    }

    fn pending_as(
        &mut self,
        ok: fn(IdentityMethod) -> bool,
        what: &str,
    ) -> Result<&mut Pending, Refused> {
        self.pending
            .as_mut()
            .filter(|p| ok(p.method))
            .ok_or_else(|| not_pending(what))
    }

    /// A card answered: spends and returns the nonce it had to sign, and the method.
    pub fn take_nonce(&mut self) -> Result<(IdentityMethod, String), Refused> {
        let p = self.pending_as(IdentityMethod::is_card, "card")?;
        let nonce = p
            .nonce
            .take()
            .ok_or_else(|| Refused::NotPending("the nonce was already used".into()))?;
        Ok((p.method, nonce))
    }

    /// A card could not be used: the pending card step stays, with its nonce, for another try.
    pub fn card_pending(&self) -> Result<IdentityMethod, Refused> {
        self.pending
            .as_ref()
            .filter(|p| p.method.is_card())
            .map(|p| p.method)
            .ok_or_else(|| not_pending("card"))
    }

    /// `identity.pec_start`: may a code be sent for this call now (the per-fiscal-code limit is
    /// [`PecSends::may_send`])?
    pub fn pec_may_send(&self, limits: &PecLimits, now: Time) -> Result<(), Refused> {
        if self.pending() != Some(IdentityMethod::Pec) {
            return Err(not_pending("PEC"));
        }
        if let Some(last) = self.last_pec_at {
            let ago = now.since(last);
            if ago < limits.resend {
                return Err(Refused::RateLimited(format!(
                    "a code was sent {:.0} s ago; wait {:.0} s",
                    ago.as_secs_f64(),
                    (limits.resend - ago).as_secs_f64()
                )));
            }
        }
        Ok(())
    }

    /// A code was mailed: it is now the one to check.
    pub fn pec_sent(&mut self, fiscal_code: &str, code: &str, limits: &PecLimits, now: Time) {
        self.last_pec_at = Some(now);
        if let Some(p) = self.pending.as_mut() {
            p.pec = Some(PecChallenge {
                fiscal_code: fiscal_code.to_owned(),
                digest: digest(code),
                expires_at: now.plus(limits.ttl),
                attempts_left: limits.attempts,
            });
        }
    }

    /// `identity.pec_code`: checks a code.
    pub fn pec_code(&mut self, code: &str, now: Time) -> Result<CodeOutcome, Refused> {
        let p = self.pending_as(|m| m == IdentityMethod::Pec, "PEC")?;
        let Some(ch) = p.pec.as_mut() else {
            return Err(Refused::NotPending("no code was sent yet".into()));
        };
        if now > ch.expires_at {
            p.pec = None;
            return Ok(CodeOutcome::Expired);
        }
        if digest(code) == ch.digest {
            let cf = ch.fiscal_code.clone();
            p.pec = None;
            return Ok(CodeOutcome::Verified(cf));
        }
        ch.attempts_left = ch.attempts_left.saturating_sub(1);
        if ch.attempts_left == 0 {
            p.pec = None;
            return Ok(CodeOutcome::TooManyAttempts);
        }
        Ok(CodeOutcome::Wrong(ch.attempts_left))
    }

    /// An uploaded scan joins the call: only while a document identification is pending, and
    /// within [`MAX_SCANS_PER_CALL`].
    pub fn add_scan(&mut self, scan_id: &str) -> Result<(), Refused> {
        self.pending_as(|m| m == IdentityMethod::Document, "document")?;
        if self.scans.len() >= MAX_SCANS_PER_CALL {
            return Err(Refused::NotPending(format!(
                "this call already holds {MAX_SCANS_PER_CALL} scans"
            )));
        }
        if !self.scans.iter().any(|s| s == scan_id) {
            self.scans.push(scan_id.to_owned());
        }
        Ok(())
    }

    /// Whether the scan belongs to the call.
    pub fn has_scan(&self, scan_id: &str) -> bool {
        self.scans.iter().any(|s| s == scan_id)
    }

    /// `identity.scan`: the scan the operator is to compare.
    pub fn scan_submitted(&mut self, scan_id: &str) -> Result<(), Refused> {
        let known = self.has_scan(scan_id);
        let p = self.pending_as(|m| m == IdentityMethod::Document, "document")?;
        if !known {
            return Err(Refused::NotFound(format!("no scan {scan_id} in this call")));
        }
        p.scan = Some(scan_id.to_owned());
        Ok(())
    }

    /// `identity.confirm`: the scan being judged.
    pub fn judged_scan(&self) -> Result<String, Refused> {
        let p = self
            .pending
            .as_ref()
            .filter(|p| p.method == IdentityMethod::Document)
            .ok_or_else(|| not_pending("document"))?;
        p.scan
            .clone()
            .ok_or_else(|| Refused::NotPending("the kiosk has not sent a scan yet".into()))
    }

    /// The identification ended well: the subject stays with the call.
    pub fn verified(&mut self, method: IdentityMethod, subject: Subject) {
        self.pending = None;
        self.identified = Some(Identified { method, subject });
    }

    /// The identification ended badly; the operator may ask again.
    pub fn failed(&mut self) {
        self.pending = None;
    }

    /// Who was identified in the call, and how.
    pub fn identified(&self) -> Option<&Identified> {
        self.identified.as_ref()
    }

    /// A document was issued in the call.
    pub fn add_document(&mut self, document_id: &str) {
        if !self.has_document(document_id) {
            self.documents.push(document_id.to_owned());
        }
    }

    /// Whether the document was issued in the call.
    pub fn has_document(&self, document_id: &str) -> bool {
        self.documents.iter().any(|d| d == document_id)
    }
}

/// When PEC codes were sent for one fiscal code (the per-hour limit, across calls).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PecSends {
    /// Send times, oldest first.
    #[serde(rename = "sent_ms", alias = "sent", with = "super::wall::list")]
    pub sent: Vec<Time>,
}

/// Whether `t` is within the [`PEC_WINDOW`] before `now` (a time ahead of `now`, from a node
/// whose clock is ahead, counts).
fn in_window(t: Time, now: Time) -> bool {
    now.since(t) < PEC_WINDOW
}

impl PecSends {
    fn forget_old(&mut self, now: Time) {
        self.sent.retain(|t| in_window(*t, now));
    }

    /// May one more code be sent now?
    pub fn may_send(&self, limits: &PecLimits, now: Time) -> Result<(), Refused> {
        let recent = self.sent.iter().filter(|t| in_window(**t, now)).count();
        if recent >= limits.per_hour {
            return Err(Refused::RateLimited(format!(
                "{recent} codes were sent for this fiscal code in the last hour"
            )));
        }
        Ok(())
    }

    /// A code was sent now.
    pub fn record(&mut self, now: Time) {
        self.forget_old(now);
        self.sent.push(now);
    }
}

/// A print job as the server tracks it (its record, and its file under `<data_dir>/print-jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job id.
    pub job_id: String,
    /// Its call.
    pub call_id: String,
    /// The kiosk that prints it.
    pub kiosk: String,
    /// The operator who asked.
    pub operator: String,
    /// The document.
    pub document_id: String,
    /// Copies.
    pub copies: u32,
    /// The last state the kiosk reported; `None` until it acknowledged.
    pub state: Option<PrintState>,
    /// The printer's reason with the last state.
    pub detail: Option<String>,
    /// When it was created.
    #[serde(rename = "sent_at_ms", alias = "sent_at", with = "super::wall")]
    pub sent_at: Time,
    /// When it was reported printed.
    #[serde(
        rename = "printed_at_ms",
        alias = "printed_at",
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::wall::option"
    )]
    pub printed_at: Option<Time>,
}

impl Job {
    /// Whether the kiosk has not acknowledged it yet (it is to be sent, and sent again).
    pub fn unacknowledged(&self) -> bool {
        self.state.is_none()
    }

    /// `print.status` from `kiosk`: `Ok(true)` when the state moved on (to record and report),
    /// `Ok(false)` for a repeated or backwards state (ignored).
    pub fn report(
        &mut self,
        kiosk: &str,
        state: PrintState,
        detail: Option<String>,
        now: Time,
    ) -> Result<bool, Refused> {
        if self.kiosk != kiosk {
            return Err(Refused::Forbidden(format!(
                "print job {} is not this kiosk's",
                self.job_id
            )));
        }
        let moves_on = match (self.state, state) {
            (None, _) => true,
            (Some(PrintState::Printed), _) => false,
            // A failed printer may come back: printing and printed follow a failure.
            (Some(PrintState::Failed), s) => s != PrintState::Received,
            (Some(old), PrintState::Failed) => old != PrintState::Printed,
            (Some(old), new) => new > old,
        };
        let changed_detail = self.state == Some(state) && self.detail != detail;
        if !moves_on && !changed_detail {
            return Ok(false);
        }
        self.state = Some(state);
        self.detail = detail;
        if state == PrintState::Printed {
            self.printed_at = Some(now);
        }
        Ok(true)
    }

    /// Whether a printed job is older than `keep` (its record and file may go).
    pub fn expired(&self, now: Time, keep: Duration) -> bool {
        self.state == Some(PrintState::Printed)
            && now.since(self.printed_at.unwrap_or(self.sent_at)) > keep
    }
}

/// The print jobs not printed yet, for the metrics: how many by last reported state, and the age
/// of the oldest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrintBacklog {
    /// Not acknowledged by the kiosk's agent yet.
    pub unacknowledged: u64,
    /// Journaled by the agent.
    pub received: u64,
    /// Handed to the printer.
    pub printing: u64,
    /// The printer reported a problem.
    pub failed: u64,
    /// `now` − the oldest `sent_at` among them (zero when there is none).
    pub oldest: Duration,
}

impl PrintBacklog {
    /// Counts the jobs among `jobs` that are not printed, at `now`.
    pub fn of(jobs: &[Job], now: Time) -> Self {
        let mut b = PrintBacklog::default();
        for job in jobs {
            match job.state {
                None => b.unacknowledged += 1,
                Some(PrintState::Received) => b.received += 1,
                Some(PrintState::Printing) => b.printing += 1,
                Some(PrintState::Failed) => b.failed += 1,
                Some(PrintState::Printed) => continue,
            }
            b.oldest = b.oldest.max(now.since(job.sent_at));
        }
        b
    }

    /// The counts in the order of the metric's `state` labels: unacknowledged, received,
    /// printing, failed.
    pub fn counts(&self) -> [u64; 4] {
        [
            self.unacknowledged,
            self.received,
            self.printing,
            self.failed,
        ]
    }
}

#[cfg(test)]
mod tests;
