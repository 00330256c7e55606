//! Printing exactly once: the driver around the journal core ([`super::journal`]), the durable
//! store ([`super::store`]) and CUPS ([`super::cups`]).
//!
//! - `print.job`: a job id already journaled is never printed again, its state is re-sent. A new
//!   one is downloaded, its PDF and record written durably, and only then reported `received`.
//! - One worker per unfinished job follows [`JobRecord::next_step`]: wait for the printer (reporting
//!   `failed` with the printer's reason while it has a problem), journal `submitting`, run `lp` with
//!   the job id as title, journal the CUPS id (`printing`), poll CUPS until the job completes,
//!   journal `printed`. At start-up the same workers resume every unfinished job, so a job in
//!   `submitting` is looked up by title before anything is submitted again. Jobs are submitted held
//!   and released only once their CUPS id is journaled, so the one found by title is still held
//!   (CUPS forgets the titles of finished jobs in its job list).
//! - The reporter sends every record's outbox, in order, whenever a connection is up, and removes
//!   each status once the server acknowledged it. So every (re)connection re-reports whatever the
//!   server may not have seen.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::incall::{PrintJob, PrintState};
use protocol::{ErrorCode, Request};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::api::ServerApi;
use super::cups::{Cups, UNAVAILABLE};
use super::journal::{
    on_print_job, CupsJobState, JobRecord, OnPrintJob, Phase, StatusReport, Step,
};
use super::link::Link;
use super::store::{lock_exclusive, JournalLock, JournalStore};
use crate::ClientError;

/// How often a waiting job checks the printer again.
pub const PRINTER_POLL: Duration = Duration::from_secs(2);

/// How long to wait before re-sending a status the server could not take (rate limited,
/// unavailable).
const RETRY_REFUSED: Duration = Duration::from_secs(1);

/// How often a submitted job's CUPS state is polled.
pub const JOB_POLL: Duration = Duration::from_secs(1);

/// How long the reporter waits for a reply before it tries again later.
const REPORT_PATIENCE: Duration = Duration::from_secs(10);

/// The environment variable of the fault-injection hook (tests only).
pub const FAULT_ENV: &str = "SPORTELLO_AGENT_FAULT";

/// A fault injected for tests through `SPORTELLO_AGENT_FAULT`. Never set it in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `exit_after_print`: exit with status 3 right after CUPS reports a job completed, before it is
    /// journaled `printed` or reported, to prove that a restarted agent neither prints it again
    /// nor forgets to report it.
    ExitAfterPrint,
}

impl Fault {
    /// The fault named by `SPORTELLO_AGENT_FAULT`, if any (an unknown name is logged and ignored).
    pub fn from_env() -> Option<Fault> {
        let value = std::env::var(FAULT_ENV).ok()?;
        match value.trim() {
            "" => None,
            "exit_after_print" => Some(Fault::ExitAfterPrint),
            other => {
                tracing::warn!(value = other, "unknown {FAULT_ENV}; ignored");
                None
            }
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The journal in memory, mirrored on disk: a change is written durably before memory reflects it.
struct Journal {
    store: JournalStore,
    records: BTreeMap<String, JobRecord>,
}

impl Journal {
    fn update(
        &mut self,
        job_id: &str,
        change: impl FnOnce(&mut JobRecord, u64) -> bool,
    ) -> std::io::Result<Option<(JobRecord, JobRecord)>> {
        let Some(before) = self.records.get(job_id).cloned() else {
            return Ok(None);
        };
        let mut after = before.clone();
        if !change(&mut after, now_s()) {
            return Ok(Some((before.clone(), before)));
        }
        self.store.save(&after)?;
        if !after.needs_pdf() && before.needs_pdf() {
            if let Err(e) = self.store.remove_pdf(job_id) {
                tracing::warn!(job_id, error = %e, "journal: cannot delete the printed PDF");
            }
        }
        self.records.insert(job_id.to_owned(), after.clone());
        Ok(Some((before, after)))
    }
}

/// The printing side of the agent.
pub struct PrintService {
    cups: Cups,
    journal: Arc<Mutex<Journal>>,
    api: ServerApi,
    outbox_changed: Notify,
    submitting: tokio::sync::Mutex<()>,
    downloading: Mutex<HashSet<String>>,
    running: Mutex<HashSet<String>>,
    fault: Option<Fault>,
    retention_s: u64,
    _lock: JournalLock,
}

impl std::fmt::Debug for PrintService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrintService")
            .field("cups", &self.cups)
            .finish_non_exhaustive()
    }
}

/// Logs one line for a change of a job's phase or reported state.
fn log_change(before: &JobRecord, after: &JobRecord) {
    let (was, now) = (before.current(), after.current());
    if was == now && before.phase == after.phase {
        return;
    }
    let job_id = after.job_id.as_str();
    match (&after.phase, now.state) {
        (Phase::Abandoned { reason }, _) => tracing::error!(
            job_id,
            reason,
            "print job: abandoned; it is not printed again without a new print request"
        ),
        (_, PrintState::Failed) => tracing::warn!(
            job_id,
            detail = now.detail.as_deref().unwrap_or(""),
            phase = ?after.phase,
            "print job: failed (kept in the journal; it prints when the printer is back)"
        ),
        (Phase::Printed { cups_job }, _) => {
            tracing::info!(job_id, cups_job = ?cups_job, "print job: printed")
        }
        (Phase::Submitted { cups_job }, _) => {
            tracing::info!(job_id, cups_job, "print job: printing")
        }
        (Phase::Submitting, _) => {
            tracing::info!(job_id, "print job: journaled as submitting; running lp")
        }
        (Phase::Received, _) => {
            tracing::info!(job_id, "print job: waiting to be submitted")
        }
    }
}

impl PrintService {
    /// Locks and opens the journal under `journal_dir` (failing when another agent holds it) and
    /// prepares printing on `cups`.
    pub fn open(
        journal_dir: &std::path::Path,
        cups: Cups,
        api: ServerApi,
        retention_days: u64,
        fault: Option<Fault>,
    ) -> std::io::Result<Arc<Self>> {
        let lock = lock_exclusive(journal_dir)?;
        let store = JournalStore::open(journal_dir)?;
        let records = store
            .load_all()?
            .into_iter()
            .map(|record| (record.job_id.clone(), record))
            .collect();
        Ok(Arc::new(PrintService {
            cups,
            journal: Arc::new(Mutex::new(Journal { store, records })),
            api,
            outbox_changed: Notify::new(),
            submitting: tokio::sync::Mutex::new(()),
            downloading: Mutex::new(HashSet::new()),
            running: Mutex::new(HashSet::new()),
            fault,
            retention_s: retention_days.saturating_mul(86_400),
            _lock: lock,
        }))
    }

    /// The CUPS queue.
    pub fn cups(&self) -> &Cups {
        &self.cups
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the record of `job_id`.
    pub fn record(&self, job_id: &str) -> Option<JobRecord> {
        self.lock().records.get(job_id).cloned()
    }

    /// Copies of every record, oldest first.
    pub fn records(&self) -> Vec<JobRecord> {
        let mut records: Vec<JobRecord> = self.lock().records.values().cloned().collect();
        records.sort_by(|a, b| (a.received_at, &a.job_id).cmp(&(b.received_at, &b.job_id)));
        records
    }

    /// Applies `change` to the record of `job_id` and writes it durably (off the async threads).
    /// Returns the record before and after; `None` when there is no such record.
    async fn update(
        &self,
        job_id: &str,
        change: impl FnOnce(&mut JobRecord, u64) -> bool + Send + 'static,
    ) -> std::io::Result<Option<(JobRecord, JobRecord)>> {
        let journal = self.journal.clone();
        let id = job_id.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&id, change)
        })
        .await
        .map_err(std::io::Error::other)??;
        if let Some((before, after)) = &result {
            log_change(before, after);
            if before.outbox != after.outbox {
                self.outbox_changed.notify_one();
            }
        }
        Ok(result)
    }

    /// [`PrintService::update`], retrying every [`PRINTER_POLL`] while the disk refuses the write
    /// (a full disk, a read-only remount): nothing may happen to a job before its record is on disk.
    async fn update_durably(
        &self,
        job_id: &str,
        change: impl Fn(&mut JobRecord, u64) -> bool + Send + Sync + Clone + 'static,
    ) -> Option<(JobRecord, JobRecord)> {
        loop {
            match self.update(job_id, change.clone()).await {
                Ok(result) => return result,
                Err(e) => {
                    tracing::error!(job_id, error = %e, "journal: cannot write the job record; retrying");
                    tokio::time::sleep(PRINTER_POLL).await;
                }
            }
        }
    }

    /// Resumes every unfinished job (crash recovery) and deletes finished ones past the retention.
    pub fn start(self: &Arc<Self>) {
        self.prune();
        let records = self.records();
        let unfinished: Vec<&JobRecord> = records.iter().filter(|r| !r.is_finished()).collect();
        let unreported = records.iter().filter(|r| !r.outbox.is_empty()).count();
        tracing::info!(
            jobs = records.len(),
            unfinished = unfinished.len(),
            unreported,
            printer = self.cups.printer(),
            cups_server = self.cups.server(),
            "journal loaded"
        );
        for record in unfinished {
            tracing::info!(job_id = %record.job_id, phase = ?record.phase, "print job: resuming after a restart");
            self.spawn_worker(&record.job_id);
        }
    }

    /// Deletes finished, reported records older than the retention.
    pub fn prune(&self) {
        let now = now_s();
        let mut journal = self.lock();
        let old: Vec<String> = journal
            .records
            .values()
            .filter(|r| r.prunable(now, self.retention_s))
            .map(|r| r.job_id.clone())
            .collect();
        for job_id in old {
            match journal.store.remove(&job_id) {
                Ok(()) => {
                    journal.records.remove(&job_id);
                    tracing::debug!(job_id, "journal: old job removed");
                }
                Err(e) => tracing::warn!(job_id, error = %e, "journal: cannot remove an old job"),
            }
        }
    }

    fn spawn_worker(self: &Arc<Self>, job_id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if !running.insert(job_id.to_owned()) {
            return;
        }
        let service = self.clone();
        let job_id = job_id.to_owned();
        tokio::spawn(async move {
            service.drive(&job_id).await;
            service
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job_id);
        });
    }

    /// Handles a `print.job` event.
    pub async fn on_job(self: &Arc<Self>, job: PrintJob) {
        let job_id = job.job_id.clone();
        if let OnPrintJob::Resend(report) = on_print_job(self.record(&job_id).as_ref()) {
            tracing::info!(
                job_id,
                state = %report,
                "print job: already journaled; re-sending its state, not printing it again"
            );
            self.update_durably(&job_id, |record, now| record.resend(now))
                .await;
            self.outbox_changed.notify_one();
            return;
        }
        if !self
            .downloading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.clone())
        {
            tracing::debug!(job_id, "print job: already being downloaded");
            return;
        }
        let started = self.receive(&job).await;
        self.downloading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job_id);
        if started {
            self.spawn_worker(&job_id);
        }
    }

    /// Downloads and journals a new job; `true` when it is journaled.
    async fn receive(&self, job: &PrintJob) -> bool {
        let job_id = job.job_id.as_str();
        tracing::info!(
            job_id,
            document_id = %job.document_id,
            call_id = %job.call_id,
            copies = job.copies,
            "print job: new; downloading the PDF"
        );
        let pdf = match self.api.download_pdf(&job.pdf_url).await {
            Ok(pdf) => pdf,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "print job: cannot download the PDF; not acknowledged, the server will send it again");
                return false;
            }
        };
        let journal = self.journal.clone();
        let job = job.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
            if journal.records.contains_key(&job.job_id) {
                return Ok(false);
            }
            let file = journal.store.save_pdf(&job.job_id, &pdf)?;
            let record = JobRecord::new(&job, file, now_s());
            journal.store.save(&record)?;
            journal.records.insert(job.job_id.clone(), record);
            Ok::<bool, std::io::Error>(true)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match written {
            Ok(true) => {
                tracing::info!(
                    job_id,
                    "print job: received and journaled durably; reporting received"
                );
                self.outbox_changed.notify_one();
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(job_id, error = %e, "print job: cannot journal the job; not acknowledged");
                false
            }
        }
    }

    /// The printer's problem now (`None`: ready), with CUPS being unreachable counted as one
    /// ([`UNAVAILABLE`]).
    async fn printer_problem(&self) -> Option<String> {
        match self.cups.printer_status().await {
            Ok(status) => status.problem(),
            Err(e) => Some(self.cups_error_problem(&e.to_string()).await),
        }
    }

    /// The problem to report for a failed CUPS command: [`UNAVAILABLE`] when the scheduler does
    /// not even take a connection (crashed or restarting), else the error's first line.
    async fn cups_error_problem(&self, error: &str) -> String {
        if self.cups.reachable().await {
            short(error)
        } else {
            UNAVAILABLE.to_owned()
        }
    }

    /// Drives one job to `printed` or `abandoned`.
    async fn drive(self: &Arc<Self>, job_id: &str) {
        loop {
            let Some(record) = self.record(job_id) else {
                return;
            };
            match record.next_step() {
                Step::Done => return,
                Step::Submit => self.submit(&record).await,
                Step::FindByTitle => match self.cups.find_by_title(job_id).await {
                    Ok(found) => {
                        match &found {
                            Some(job) => tracing::info!(
                                job_id,
                                cups_job = job.id,
                                cups_state = job.state.as_str(),
                                "print job: found in CUPS by its title; adopting it (not submitting again)"
                            ),
                            None => tracing::info!(
                                job_id,
                                "print job: no CUPS job has its title; it was never submitted"
                            ),
                        }
                        self.update_durably(job_id, move |record, now| {
                            record.adopt(found.as_ref(), now)
                        })
                        .await;
                    }
                    Err(e) => {
                        tracing::warn!(job_id, error = %e, "print job: cannot list the CUPS jobs; retrying");
                        let problem = Some(self.cups_error_problem(&e.to_string()).await);
                        self.update_durably(job_id, move |record, now| {
                            record.set_problem(problem.clone(), now)
                        })
                        .await;
                        tokio::time::sleep(PRINTER_POLL).await;
                    }
                },
                Step::Track(cups_job) => self.track(job_id, cups_job).await,
            }
        }
    }

    /// Waits for the printer, then submits the job.
    async fn submit(&self, record: &JobRecord) {
        let job_id = record.job_id.as_str();
        if let Some(problem) = self.printer_problem().await {
            let changed = self
                .update_durably(job_id, {
                    let problem = problem.clone();
                    move |record, now| record.set_problem(Some(problem.clone()), now)
                })
                .await
                .is_some_and(|(before, after)| before != after);
            if changed {
                tracing::warn!(
                    job_id,
                    printer = self.cups.printer(),
                    problem,
                    "print job: the printer is not ready; waiting"
                );
            }
            tokio::time::sleep(PRINTER_POLL).await;
            return;
        }
        let _one_at_a_time = self.submitting.lock().await;
        self.update_durably(job_id, |record, now| {
            let cleared = record.set_problem(None, now);
            record.mark_submitting(now) || cleared
        })
        .await;
        let pdf: PathBuf = self.lock().store.pdf_path(job_id);
        match self.cups.submit(&pdf, record.copies, job_id).await {
            Ok(cups_job) => {
                tracing::info!(
                    job_id,
                    cups_job,
                    printer = self.cups.printer(),
                    copies = record.copies,
                    "print job: submitted to CUPS; printing"
                );
                self.update_durably(job_id, move |record, now| {
                    record.mark_submitted(cups_job, now)
                })
                .await;
                // Journaled: now it may print.
                self.release(job_id, cups_job).await;
            }
            Err(e) => {
                tracing::warn!(job_id, error = %e, "print job: lp failed; looking for the job in CUPS before trying again");
                let problem = Some(self.cups_error_problem(&e.to_string()).await);
                self.update_durably(job_id, move |record, now| {
                    record.set_problem(problem.clone(), now)
                })
                .await;
                tokio::time::sleep(PRINTER_POLL).await;
            }
        }
    }

    /// Releases the held CUPS job of a journaled job; a failure is retried by [`Self::track`],
    /// which releases any job of ours it finds held.
    async fn release(&self, job_id: &str, cups_job: u32) {
        match self.cups.release(cups_job).await {
            Ok(()) => tracing::info!(job_id, cups_job, "print job: released to the printer"),
            Err(e) => {
                tracing::warn!(job_id, cups_job, error = %e, "print job: cannot release the held job; retrying")
            }
        }
    }

    /// Polls CUPS job `cups_job` once and records what it says.
    async fn track(&self, job_id: &str, cups_job: u32) {
        let job = match self.cups.job(cups_job).await {
            Ok(job) => job,
            Err(e) => {
                // The scheduler is down (a crash, a restart) or failing: the job stays journaled
                // and followed; the operator sees why it does not progress.
                let problem = self.cups_error_problem(&e.to_string()).await;
                tracing::warn!(job_id, cups_job, error = %e, problem, "print job: cannot ask CUPS about the job; retrying");
                self.update_durably(job_id, move |record, now| {
                    record.set_problem(Some(problem.clone()), now)
                })
                .await;
                tokio::time::sleep(PRINTER_POLL).await;
                return;
            }
        };
        // A scheduler that lost its state in a crash reuses job ids: a job with this id and
        // another title is not ours, so ours is unknown to CUPS.
        let job = match job {
            Some(job) if !job.title.is_empty() && job.title != job_id => {
                tracing::error!(
                    job_id,
                    cups_job,
                    title = %job.title,
                    "print job: CUPS now has another job under this id (it lost ours, e.g. in a \
                     crash without DirtyCleanInterval 0); not printing it again"
                );
                None
            }
            other => other,
        };
        let state = job.map(|job| job.state);
        if state == Some(CupsJobState::PendingHeld) {
            // Submitted held and journaled, but not released before a restart.
            self.release(job_id, cups_job).await;
            tokio::time::sleep(JOB_POLL).await;
            return;
        }
        if state == Some(CupsJobState::Completed) && self.fault == Some(Fault::ExitAfterPrint) {
            tracing::error!(
                job_id,
                cups_job,
                "FAULT INJECTION (SPORTELLO_AGENT_FAULT=exit_after_print): exiting after CUPS \
                 completed the job, before journaling it printed"
            );
            std::process::exit(3);
        }
        let problem = match state {
            Some(state) if !state.is_final() => self.printer_problem().await,
            _ => None,
        };
        let finished = self
            .update_durably(job_id, move |record, now| {
                record.observe(state, problem.clone(), now)
            })
            .await
            .is_none_or(|(_, after)| after.is_finished());
        if !finished {
            tokio::time::sleep(JOB_POLL).await;
        }
    }

    /// Sends every unacknowledged status while a connection is up; runs until the link is gone.
    pub async fn run_reporter(self: Arc<Self>, link: Link) {
        let mut watch = link.subscribe();
        loop {
            let connected = watch.borrow_and_update().is_some();
            if connected {
                self.flush(&link).await;
            }
            tokio::select! {
                () = self.outbox_changed.notified() => {}
                changed = watch.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }

    /// Sends the outboxes, oldest job first, each in order. Stops at the first connection problem.
    async fn flush(&self, link: &Link) {
        for record in self.records() {
            for report in record.outbox.clone() {
                let request = Request::PrintStatus(report.to_status(&record.job_id));
                match link.request(&request, REPORT_PATIENCE).await {
                    Ok(_) => {
                        tracing::info!(job_id = %record.job_id, state = %report, "print job: reported to the server");
                    }
                    Err(ClientError::Refused { code, message })
                        if matches!(
                            code,
                            ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Internal
                        ) =>
                    {
                        // Not a verdict on the status: keep it and try again shortly.
                        tracing::info!(job_id = %record.job_id, state = %report, %code, %message, "print job: the server cannot take the status now; will retry");
                        tokio::time::sleep(RETRY_REFUSED).await;
                        self.outbox_changed.notify_one();
                        return;
                    }
                    Err(ClientError::Refused { code, message }) => {
                        tracing::warn!(job_id = %record.job_id, state = %report, %code, %message, "print job: the server refused the status; dropping it");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "print job: reporting interrupted; will retry");
                        return;
                    }
                }
                let acked = report.clone();
                let ok = self
                    .update(&record.job_id, move |record, _| record.ack(&acked))
                    .await;
                if let Err(e) = ok {
                    tracing::error!(job_id = %record.job_id, error = %e, "journal: cannot record the acknowledgement");
                    return;
                }
            }
        }
    }

    /// The printer part of `GET /v1/status`.
    pub async fn status(&self) -> Value {
        let printer =
            match tokio::time::timeout(Duration::from_secs(3), self.cups.printer_status()).await {
                Ok(Ok(status)) => json!({
                    "state": status.state,
                    "problem": status.problem(),
                    "reasons": status.reasons,
                    "message": status.message,
                }),
                Ok(Err(e)) => json!({"state": "unknown", "problem": short(&e.to_string())}),
                Err(_) => json!({"state": "unknown", "problem": "cups-timeout"}),
            };
        let records = self.records();
        let pending: Vec<Value> = records
            .iter()
            .filter(|r| !r.is_finished())
            .map(|r| {
                let StatusReport { state, detail } = r.current();
                json!({"job_id": r.job_id, "state": state.as_str(), "detail": detail})
            })
            .collect();
        json!({
            "name": self.cups.printer(),
            "printer": printer,
            "pending_jobs": pending,
            "unreported": records.iter().filter(|r| !r.outbox.is_empty()).count(),
        })
    }
}

/// The first line of an error, at most 160 characters: a `failed` detail.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    line.chars().take(160).collect()
}
