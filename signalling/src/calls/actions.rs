//! **Core** of the in-call actions: identification steps, PEC codes, scans, issued documents and
//! print jobs of the calls this process serves. No I/O and no clock: every method takes `now`
//! (whole seconds, counted by this core itself; not [`queue::Time`], which is milliseconds) and returns what happened; the driver in `incall.rs` does the mail,
//! the registry, the audit log and the events.
//!
//! Rules (see `docs/protocol.md`, "In-call actions"):
//! - an identification step must follow an `identity.request` with its method; a new request
//!   replaces the pending one; a nonce is spent by the first card answer;
//! - a PEC code lives `pec_ttl_s` and allows `pec_attempts` tries; one code per call every
//!   `pec_resend_s`, at most `pec_per_hour` codes per fiscal code per hour;
//! - a verified identity stays with the call until it ends; scans are dropped when it ends;
//! - a print job is re-sent until the kiosk acknowledges it; a state never goes backwards.

use std::collections::{BTreeMap, HashMap, VecDeque};

use protocol::incall::{IdentityMethod, PrintState, Subject};
use sha2::{Digest, Sha256};

/// Scans one call may hold (they stay in memory until the call ends).
pub const MAX_SCANS_PER_CALL: usize = 8;

/// Seconds, as the queue counts them.
pub type Secs = f64;

/// Limits of the PEC method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PecLimits {
    /// Seconds a code stays valid.
    pub ttl_s: Secs,
    /// Tries per code.
    pub attempts: u32,
    /// Seconds between two codes of one call.
    pub resend_s: Secs,
    /// Codes per fiscal code per hour.
    pub per_hour: usize,
}

impl Default for PecLimits {
    fn default() -> Self {
        PecLimits {
            ttl_s: 300.0,
            attempts: 3,
            resend_s: 60.0,
            per_hour: 3,
        }
    }
}

/// Why a step was refused (mapped to protocol error codes by the driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The step does not follow the pending request (`conflict`).
    NotPending(String),
    /// Too many codes (`rate_limited`).
    RateLimited(String),
    /// No such scan or job (`not_found`).
    NotFound(String),
    /// Someone else's object (`forbidden`).
    Forbidden(String),
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

#[derive(Debug, Clone)]
struct PecChallenge {
    fiscal_code: String,
    digest: [u8; 32],
    expires_at: Secs,
    attempts_left: u32,
}

#[derive(Debug, Clone)]
struct Pending {
    kiosk: String,
    method: IdentityMethod,
    nonce: Option<String>,
    pec: Option<PecChallenge>,
    scan: Option<String>,
}

/// An uploaded scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
    /// The image.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct CallActions {
    pending: Option<Pending>,
    verified: Option<(IdentityMethod, Subject)>,
    scans: HashMap<String, Scan>,
    last_pec_at: Option<Secs>,
    documents: Vec<String>,
}

/// A print job as the server tracks it (also its file under `<data_dir>/print-jobs`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// When it was last sent to the kiosk.
    pub sent_at: Secs,
}

/// Every call's actions and every print job of this process.
#[derive(Debug, Default)]
pub struct Actions {
    limits: PecLimits,
    calls: HashMap<String, CallActions>,
    jobs: BTreeMap<String, Job>,
    pec_sent: HashMap<String, VecDeque<Secs>>,
}

fn digest(code: &str) -> [u8; 32] {
    Sha256::digest(code.trim().as_bytes()).into()
}

impl Actions {
    /// Empty, with these PEC limits.
    pub fn new(limits: PecLimits) -> Self {
        Actions {
            limits,
            ..Actions::default()
        }
    }

    /// The PEC limits.
    pub fn limits(&self) -> PecLimits {
        self.limits
    }

    /// `identity.request`: `method` is now pending for `call` (of `kiosk`), replacing any pending
    /// step.
    pub fn request(
        &mut self,
        call: &str,
        kiosk: &str,
        method: IdentityMethod,
        nonce: Option<String>,
    ) {
        let c = self.calls.entry(call.to_owned()).or_default();
        c.pending = Some(Pending {
            kiosk: kiosk.to_owned(),
            method,
            nonce,
            pec: None,
            scan: None,
        });
    }

    /// Device steps of `kiosk`'s calls still waiting for the device (a card nonce not yet used, a
    /// document not yet scanned): `(call, method, nonce)`, to send again when a device connects.
    pub fn waiting_devices(&self, kiosk: &str) -> Vec<(String, IdentityMethod, String)> {
        self.calls
            .iter()
            .filter_map(|(call, c)| {
                let p = c.pending.as_ref()?;
                let waiting = match p.method {
                    IdentityMethod::Cie | IdentityMethod::Cns => p.nonce.is_some(),
                    IdentityMethod::Document => p.scan.is_none(),
                    IdentityMethod::Pec => false,
                };
                (p.kiosk == kiosk && waiting)
                    .then(|| (call.clone(), p.method, p.nonce.clone().unwrap_or_default()))
            })
            .collect()
    }

    /// The pending method of a call.
    pub fn pending(&self, call: &str) -> Option<IdentityMethod> {
        self.calls
            .get(call)
            .and_then(|c| c.pending.as_ref())
            .map(|p| p.method)
    }

    fn pending_as(
        &mut self,
        call: &str,
        ok: fn(IdentityMethod) -> bool,
        what: &str,
    ) -> Result<&mut Pending, Refused> {
        self.calls
            .get_mut(call)
            .and_then(|c| c.pending.as_mut())
            .filter(|p| ok(p.method))
            .ok_or_else(|| Refused::NotPending(format!("no {what} identification is pending")))
    }

    /// A card answered: spends and returns the nonce it had to sign, and the method.
    pub fn take_nonce(&mut self, call: &str) -> Result<(IdentityMethod, String), Refused> {
        let p = self.pending_as(call, IdentityMethod::is_card, "card")?;
        let method = p.method;
        let nonce = p
            .nonce
            .take()
            .ok_or_else(|| Refused::NotPending("the nonce was already used".into()))?;
        Ok((method, nonce))
    }

    /// A card could not be used: the pending card step stays, with its nonce, for another try.
    pub fn card_pending(&mut self, call: &str) -> Result<IdentityMethod, Refused> {
        self.pending_as(call, IdentityMethod::is_card, "card")
            .map(|p| p.method)
    }

    /// `identity.pec_start`: may a code for `fiscal_code` be sent now?
    pub fn pec_may_send(
        &mut self,
        call: &str,
        fiscal_code: &str,
        now: Secs,
    ) -> Result<(), Refused> {
        let limits = self.limits;
        self.pending_as(call, |m| m == IdentityMethod::Pec, "PEC")?;
        if let Some(last) = self.calls.get(call).and_then(|c| c.last_pec_at) {
            if now - last < limits.resend_s {
                return Err(Refused::RateLimited(format!(
                    "a code was sent {:.0} s ago; wait {:.0} s",
                    now - last,
                    limits.resend_s - (now - last)
                )));
            }
        }
        let sent = self.pec_sent.entry(fiscal_code.to_owned()).or_default();
        while sent.front().is_some_and(|t| now - t >= 3600.0) {
            sent.pop_front();
        }
        if sent.len() >= limits.per_hour {
            return Err(Refused::RateLimited(format!(
                "{} codes were sent for this fiscal code in the last hour",
                sent.len()
            )));
        }
        Ok(())
    }

    /// A code was mailed: it is now the one to check.
    pub fn pec_sent(&mut self, call: &str, fiscal_code: &str, code: &str, now: Secs) {
        let limits = self.limits;
        self.pec_sent
            .entry(fiscal_code.to_owned())
            .or_default()
            .push_back(now);
        let c = self.calls.entry(call.to_owned()).or_default();
        c.last_pec_at = Some(now);
        if let Some(p) = c.pending.as_mut() {
            p.pec = Some(PecChallenge {
                fiscal_code: fiscal_code.to_owned(),
                digest: digest(code),
                expires_at: now + limits.ttl_s,
                attempts_left: limits.attempts,
            });
        }
    }

    /// `identity.pec_code`: checks a code.
    pub fn pec_code(&mut self, call: &str, code: &str, now: Secs) -> Result<CodeOutcome, Refused> {
        let p = self.pending_as(call, |m| m == IdentityMethod::Pec, "PEC")?;
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

    /// Stores an uploaded scan of `call`: only while a document identification is pending.
    pub fn add_scan(&mut self, call: &str, scan_id: &str, scan: Scan) -> Result<(), Refused> {
        self.pending_as(call, |m| m == IdentityMethod::Document, "document")?;
        let scans = &mut self.calls.entry(call.to_owned()).or_default().scans;
        if scans.len() >= MAX_SCANS_PER_CALL {
            return Err(Refused::NotPending(format!(
                "this call already holds {MAX_SCANS_PER_CALL} scans"
            )));
        }
        scans.insert(scan_id.to_owned(), scan);
        Ok(())
    }

    /// A stored scan.
    pub fn scan(&self, call: &str, scan_id: &str) -> Option<&Scan> {
        self.calls.get(call).and_then(|c| c.scans.get(scan_id))
    }

    /// `identity.scan`: the scan the operator is to compare.
    pub fn scan_submitted(&mut self, call: &str, scan_id: &str) -> Result<(), Refused> {
        self.pending_as(call, |m| m == IdentityMethod::Document, "document")?;
        if self.scan(call, scan_id).is_none() {
            return Err(Refused::NotFound(format!("no scan {scan_id} in this call")));
        }
        let p = self.pending_as(call, |m| m == IdentityMethod::Document, "document")?;
        p.scan = Some(scan_id.to_owned());
        Ok(())
    }

    /// `identity.confirm`/`identity.reject`: the scan being judged.
    pub fn judged_scan(&mut self, call: &str) -> Result<String, Refused> {
        let p = self.pending_as(call, |m| m == IdentityMethod::Document, "document")?;
        p.scan
            .clone()
            .ok_or_else(|| Refused::NotPending("the kiosk has not sent a scan yet".into()))
    }

    /// The identification ended well: the subject stays with the call.
    pub fn verified(&mut self, call: &str, method: IdentityMethod, subject: Subject) {
        let c = self.calls.entry(call.to_owned()).or_default();
        c.pending = None;
        c.verified = Some((method, subject));
    }

    /// The identification ended badly; the operator may ask again.
    pub fn failed(&mut self, call: &str) {
        if let Some(c) = self.calls.get_mut(call) {
            c.pending = None;
        }
    }

    /// Who was identified in the call, and how.
    pub fn identified(&self, call: &str) -> Option<&(IdentityMethod, Subject)> {
        self.calls.get(call).and_then(|c| c.verified.as_ref())
    }

    /// A document was issued in the call.
    pub fn add_document(&mut self, call: &str, document_id: &str) {
        self.calls
            .entry(call.to_owned())
            .or_default()
            .documents
            .push(document_id.to_owned());
    }

    /// Whether the document was issued in the call.
    pub fn has_document(&self, call: &str, document_id: &str) -> bool {
        self.calls
            .get(call)
            .is_some_and(|c| c.documents.iter().any(|d| d == document_id))
    }

    /// The call ended: identification, pending steps and scans are dropped. Print jobs stay.
    pub fn call_ended(&mut self, call: &str) -> usize {
        self.calls.remove(call).map(|c| c.scans.len()).unwrap_or(0)
    }

    /// `print.request`: a new job, to be sent at once.
    pub fn add_job(&mut self, job: Job) {
        self.jobs.insert(job.job_id.clone(), job);
    }

    /// A job.
    pub fn job(&self, job_id: &str) -> Option<&Job> {
        self.jobs.get(job_id)
    }

    /// Whether `kiosk` has a print job for `document_id`.
    pub fn kiosk_prints(&self, kiosk: &str, document_id: &str) -> bool {
        self.jobs
            .values()
            .any(|j| j.kiosk == kiosk && j.document_id == document_id)
    }

    /// `print.status` from `kiosk`: `Ok(Some(job))` when the state moved on (to report),
    /// `Ok(None)` for a repeated or backwards state (ignored).
    pub fn job_status(
        &mut self,
        kiosk: &str,
        job_id: &str,
        state: PrintState,
        detail: Option<String>,
    ) -> Result<Option<Job>, Refused> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| Refused::NotFound(format!("no print job {job_id}")))?;
        if job.kiosk != kiosk {
            return Err(Refused::Forbidden(format!(
                "print job {job_id} is not this kiosk's"
            )));
        }
        let moves_on = match (job.state, state) {
            (None, _) => true,
            (Some(PrintState::Printed), _) => false,
            // A failed printer may come back: printing and printed follow a failure.
            (Some(PrintState::Failed), s) => s != PrintState::Received,
            (Some(old), PrintState::Failed) => old != PrintState::Printed,
            (Some(old), new) => new > old,
        };
        let changed_detail = job.state == Some(state) && job.detail != detail;
        if !moves_on && !changed_detail {
            return Ok(None);
        }
        job.state = Some(state);
        job.detail = detail;
        Ok(Some(job.clone()))
    }

    /// Jobs of `kiosk` not yet acknowledged (to send when its printer session connects).
    pub fn unacknowledged(&mut self, kiosk: &str, now: Secs) -> Vec<Job> {
        self.jobs
            .values_mut()
            .filter(|j| j.kiosk == kiosk && j.state.is_none())
            .map(|j| {
                j.sent_at = now;
                j.clone()
            })
            .collect()
    }

    /// Jobs not acknowledged `every_s` after they were last sent (to send again).
    pub fn due_resends(&mut self, now: Secs, every_s: Secs) -> Vec<Job> {
        self.jobs
            .values_mut()
            .filter(|j| j.state.is_none() && now - j.sent_at >= every_s)
            .map(|j| {
                j.sent_at = now;
                j.clone()
            })
            .collect()
    }

    /// Forgets printed jobs older than `keep_s` since they were sent (memory bound); returns
    /// their ids.
    pub fn prune(&mut self, now: Secs, keep_s: Secs) -> Vec<String> {
        let old: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.state == Some(PrintState::Printed) && now - j.sent_at > keep_s)
            .map(|j| j.job_id.clone())
            .collect();
        for id in &old {
            self.jobs.remove(id);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            fiscal_code: "RSSMRA80A01H501U".into(),
            given_name: "Mario".into(),
            family_name: "Rossi".into(),
            birth_date: Some("1980-01-01".into()),
        }
    }

    #[test]
    fn a_card_answer_needs_a_pending_card_request_and_spends_the_nonce() {
        let mut a = Actions::default();
        assert!(matches!(a.take_nonce("c"), Err(Refused::NotPending(_))));
        a.request("c", "k", IdentityMethod::Pec, None);
        assert!(matches!(a.take_nonce("c"), Err(Refused::NotPending(_))));
        a.request("c", "k", IdentityMethod::Cie, Some("n1".into()));
        assert_eq!(
            a.waiting_devices("k"),
            vec![("c".to_owned(), IdentityMethod::Cie, "n1".to_owned())]
        );
        assert!(a.waiting_devices("other").is_empty());
        assert_eq!(a.take_nonce("c"), Ok((IdentityMethod::Cie, "n1".into())));
        assert!(matches!(a.take_nonce("c"), Err(Refused::NotPending(_))));
        // A new request brings a new nonce.
        a.request("c", "k", IdentityMethod::Cns, Some("n2".into()));
        assert_eq!(a.card_pending("c"), Ok(IdentityMethod::Cns));
        assert_eq!(a.take_nonce("c"), Ok((IdentityMethod::Cns, "n2".into())));
        assert!(a.waiting_devices("k").is_empty(), "the nonce is spent");
    }

    #[test]
    fn pec_codes_expire_allow_three_attempts_and_are_rate_limited() {
        let mut a = Actions::default();
        let cf = "RSSMRA80A01H501U";
        assert!(matches!(
            a.pec_may_send("c", cf, 0.0),
            Err(Refused::NotPending(_))
        ));
        a.request("c", "k", IdentityMethod::Pec, None);
        assert!(matches!(
            a.pec_code("c", "1", 0.0),
            Err(Refused::NotPending(_))
        ));
        a.pec_may_send("c", cf, 0.0).unwrap();
        a.pec_sent("c", cf, "123456", 0.0);
        assert_eq!(a.pec_code("c", "000000", 1.0), Ok(CodeOutcome::Wrong(2)));
        assert_eq!(a.pec_code("c", "000001", 2.0), Ok(CodeOutcome::Wrong(1)));
        assert_eq!(
            a.pec_code("c", "000002", 3.0),
            Ok(CodeOutcome::TooManyAttempts)
        );
        // Spent: even the right code no longer works.
        assert!(matches!(
            a.pec_code("c", "123456", 4.0),
            Err(Refused::NotPending(_))
        ));

        // One code per call per minute.
        assert!(matches!(
            a.pec_may_send("c", cf, 30.0),
            Err(Refused::RateLimited(_))
        ));
        a.pec_may_send("c", cf, 61.0).unwrap();
        a.pec_sent("c", cf, "654321", 61.0);
        assert_eq!(a.pec_code("c", "654321", 361.5), Ok(CodeOutcome::Expired));

        a.pec_may_send("c", cf, 400.0).unwrap();
        a.pec_sent("c", cf, "111111", 400.0);
        assert_eq!(
            a.pec_code("c", " 111111 ", 401.0),
            Ok(CodeOutcome::Verified(cf.into()))
        );
        // Three codes for this citizen within the hour: the fourth waits.
        a.request("d", "k", IdentityMethod::Pec, None);
        assert!(matches!(
            a.pec_may_send("d", cf, 500.0),
            Err(Refused::RateLimited(_))
        ));
        a.pec_may_send("d", "VRDGPP80A01H501Q", 500.0).unwrap();
        a.pec_may_send("d", cf, 3601.0).unwrap();
    }

    #[test]
    fn document_steps_follow_the_scan_and_scans_go_with_the_call() {
        let mut a = Actions::default();
        let scan = Scan {
            content_type: "image/png".into(),
            bytes: vec![1, 2, 3],
        };
        // No scan is taken before the operator asks for a document identification.
        assert!(matches!(
            a.add_scan("c", "s1", scan.clone()),
            Err(Refused::NotPending(_))
        ));
        assert!(matches!(
            a.scan_submitted("c", "s1"),
            Err(Refused::NotPending(_))
        ));
        a.request("c", "k", IdentityMethod::Document, None);
        a.add_scan("c", "s1", scan.clone()).unwrap();
        assert_eq!(a.waiting_devices("k").len(), 1);
        assert!(matches!(
            a.scan_submitted("c", "nope"),
            Err(Refused::NotFound(_))
        ));
        assert!(matches!(a.judged_scan("c"), Err(Refused::NotPending(_))));
        a.scan_submitted("c", "s1").unwrap();
        assert!(a.waiting_devices("k").is_empty(), "scanned");
        assert_eq!(a.judged_scan("c"), Ok("s1".into()));
        for i in 1..MAX_SCANS_PER_CALL {
            a.add_scan("c", &format!("x{i}"), scan.clone()).unwrap();
        }
        assert!(matches!(
            a.add_scan("c", "one-too-many", scan.clone()),
            Err(Refused::NotPending(_))
        ));
        a.verified("c", IdentityMethod::Document, subject());
        assert_eq!(a.identified("c").unwrap().1, subject());
        assert_eq!(a.scan("c", "s1"), Some(&scan));
        assert_eq!(a.call_ended("c"), MAX_SCANS_PER_CALL);
        assert!(a.scan("c", "s1").is_none());
        assert!(a.identified("c").is_none());
    }

    fn job(id: &str) -> Job {
        Job {
            job_id: id.into(),
            call_id: "c".into(),
            kiosk: "k1".into(),
            operator: "op".into(),
            document_id: "d".into(),
            copies: 1,
            state: None,
            detail: None,
            sent_at: 0.0,
        }
    }

    #[test]
    fn print_jobs_are_resent_until_acknowledged_and_never_go_backwards() {
        let mut a = Actions::default();
        a.add_job(job("j1"));
        assert!(a.due_resends(2.0, 5.0).is_empty());
        assert_eq!(a.due_resends(5.0, 5.0).len(), 1);
        assert!(a.due_resends(6.0, 5.0).is_empty());
        assert_eq!(a.unacknowledged("k1", 7.0).len(), 1);
        assert!(a.unacknowledged("k2", 7.0).is_empty());
        assert!(matches!(
            a.job_status("k2", "j1", PrintState::Received, None),
            Err(Refused::Forbidden(_))
        ));
        assert!(matches!(
            a.job_status("k1", "j9", PrintState::Received, None),
            Err(Refused::NotFound(_))
        ));
        assert!(a
            .job_status("k1", "j1", PrintState::Received, None)
            .unwrap()
            .is_some());
        assert!(a.due_resends(100.0, 5.0).is_empty(), "acknowledged");
        assert!(a
            .job_status("k1", "j1", PrintState::Received, None)
            .unwrap()
            .is_none());
        let failed = a
            .job_status("k1", "j1", PrintState::Failed, Some("media-empty".into()))
            .unwrap()
            .unwrap();
        assert_eq!(failed.detail.as_deref(), Some("media-empty"));
        assert!(a
            .job_status("k1", "j1", PrintState::Printing, None)
            .unwrap()
            .is_some());
        assert!(a
            .job_status("k1", "j1", PrintState::Printed, None)
            .unwrap()
            .is_some());
        // Late or repeated reports change nothing.
        for s in [
            PrintState::Printing,
            PrintState::Received,
            PrintState::Failed,
        ] {
            assert!(a.job_status("k1", "j1", s, None).unwrap().is_none());
        }
        assert!(a.kiosk_prints("k1", "d"));
        assert_eq!(a.prune(1000.0, 600.0), vec!["j1".to_owned()]);
        assert!(a.job("j1").is_none());
    }
}
