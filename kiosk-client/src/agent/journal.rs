//! The print journal's core: one [`JobRecord`] per print job, its [`Phase`], the statuses still to
//! report to the server (its *outbox*), and what the agent does next with it ([`Step`]).
//!
//! This module does no I/O and reads no clock: every transition takes `now` (Unix seconds) and
//! returns what changed, so the exactly-once rules can be tested exactly. The driver
//! (`agent::printer`) persists each record durably ([`crate::agent::store`]) *before* acting on it
//! or reporting it, which is what makes the rules hold across crashes:
//!
//! | phase | meaning | after a restart |
//! |---|---|---|
//! | `received` | the PDF and the record are on disk; nothing was handed to CUPS | check the printer, then submit |
//! | `submitting` | `lp` is about to run (or ran) with the job id as title; CUPS may or may not have the job | look for a CUPS job with that title: adopt it, or submit when there is none |
//! | `submitted` | CUPS has the job under `cups_job` | follow that CUPS job; never submit again |
//! | `printed` | CUPS reported it completed | nothing (statuses not yet acknowledged are re-sent) |
//! | `abandoned` | CUPS cancelled, aborted or forgot it; it is not printed again automatically | nothing |

use protocol::incall::{PrintJob, PrintState, PrintStatus};
use serde::{Deserialize, Serialize};

/// At most this many statuses wait in a record's outbox; older intermediate ones are dropped (the
/// first, normally `received`, is always kept).
pub const MAX_OUTBOX: usize = 16;

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Journaled with its PDF; not handed to CUPS yet.
    Received,
    /// About to be (or being) submitted with `lp -t <job_id>`; no CUPS job id is known.
    Submitting,
    /// CUPS holds the job.
    Submitted {
        /// The CUPS job id.
        cups_job: u32,
    },
    /// CUPS reported the job completed.
    Printed {
        /// The CUPS job id, when known.
        cups_job: Option<u32>,
    },
    /// The job will not print without a new `print.request`: CUPS cancelled or aborted it, or no
    /// longer knows it.
    Abandoned {
        /// Why, as reported in `print.status failed` `detail`.
        reason: String,
    },
}

/// One `print.status` to send: a state and its detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The state.
    pub state: PrintState,
    /// The printer's reason, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StatusReport {
    /// A report without detail.
    pub fn new(state: PrintState) -> Self {
        StatusReport {
            state,
            detail: None,
        }
    }

    /// A `failed` report with its detail.
    pub fn failed(detail: impl Into<String>) -> Self {
        StatusReport {
            state: PrintState::Failed,
            detail: Some(detail.into()),
        }
    }

    /// The `print.status` body for `job_id`.
    pub fn to_status(&self, job_id: &str) -> PrintStatus {
        PrintStatus {
            job_id: job_id.to_owned(),
            state: self.state,
            detail: self.detail.clone(),
        }
    }
}

impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{} ({detail})", self.state.as_str()),
            None => f.write_str(self.state.as_str()),
        }
    }
}

/// A CUPS job state (IPP `job-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CupsJobState {
    /// `pending`: queued.
    Pending,
    /// `pending-held`: held in the queue.
    PendingHeld,
    /// `processing`: being printed.
    Processing,
    /// `processing-stopped`: stopped while printing (the printer stopped).
    ProcessingStopped,
    /// `canceled`: cancelled by someone.
    Canceled,
    /// `aborted`: aborted by CUPS (a filter or backend failed).
    Aborted,
    /// `completed`: out of the printer.
    Completed,
}

impl CupsJobState {
    /// Parses the IPP keyword (`pending`, `pending-held`, …) or its enum number (3–9).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "pending" | "3" => CupsJobState::Pending,
            "pending-held" | "4" => CupsJobState::PendingHeld,
            "processing" | "5" => CupsJobState::Processing,
            "processing-stopped" | "6" => CupsJobState::ProcessingStopped,
            "canceled" | "cancelled" | "7" => CupsJobState::Canceled,
            "aborted" | "8" => CupsJobState::Aborted,
            "completed" | "9" => CupsJobState::Completed,
            _ => return None,
        })
    }

    /// The IPP keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CupsJobState::Pending => "pending",
            CupsJobState::PendingHeld => "pending-held",
            CupsJobState::Processing => "processing",
            CupsJobState::ProcessingStopped => "processing-stopped",
            CupsJobState::Canceled => "canceled",
            CupsJobState::Aborted => "aborted",
            CupsJobState::Completed => "completed",
        }
    }

    /// Whether the job is finished one way or another (`canceled`, `aborted`, `completed`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CupsJobState::Canceled | CupsJobState::Aborted | CupsJobState::Completed
        )
    }
}

/// A CUPS job as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CupsJob {
    /// The CUPS job id.
    pub id: u32,
    /// Its state.
    pub state: CupsJobState,
    /// Its title (`job-name`): the print job id for the agent's jobs.
    pub title: String,
}

/// What the driver does next with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait until the printer is ready, journal [`Phase::Submitting`], then submit.
    Submit,
    /// Look for a CUPS job titled with the job id: adopt it ([`JobRecord::adopt`]), or go back to
    /// [`Step::Submit`] when there is none.
    FindByTitle,
    /// Follow this CUPS job ([`JobRecord::observe`]).
    Track(u32),
    /// Nothing: printed or abandoned.
    Done,
}

/// What to do with a `print.job` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnPrintJob {
    /// A new job: download, journal, report `received`, print.
    Start,
    /// Already journaled: never print again; re-send this (current) state.
    Resend(StatusReport),
}

/// Decides what a `print.job` does, given the journaled record with the same job id, if any.
pub fn on_print_job(existing: Option<&JobRecord>) -> OnPrintJob {
    match existing {
        None => OnPrintJob::Start,
        Some(record) => OnPrintJob::Resend(record.current()),
    }
}

/// Chooses, among CUPS jobs, the one submitted for `job_id` (titled with it): a completed one first,
/// then one still in progress, then a cancelled or aborted one; the lowest CUPS id among equals.
pub fn pick_titled<'a>(jobs: &'a [CupsJob], job_id: &str) -> Option<&'a CupsJob> {
    let rank = |job: &CupsJob| match job.state {
        CupsJobState::Completed => 0,
        CupsJobState::Canceled | CupsJobState::Aborted => 2,
        _ => 1,
    };
    jobs.iter()
        .filter(|job| job.title == job_id)
        .min_by_key(|job| (rank(job), job.id))
}

/// One journaled print job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The server's job id (the CUPS title of its print).
    pub job_id: String,
    /// The document.
    pub document_id: String,
    /// The call it was printed for.
    #[serde(default)]
    pub call_id: String,
    /// Copies (1–5).
    pub copies: u32,
    /// The PDF's file name inside the journal's `pdf/` folder.
    pub pdf_file: String,
    /// Where the job stands.
    #[serde(flatten)]
    pub phase: Phase,
    /// The printer problem the job is waiting on, reported as `failed` with this detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Statuses not yet acknowledged by the server, oldest first.
    #[serde(default)]
    pub outbox: Vec<StatusReport>,
    /// When the job was journaled (Unix seconds).
    pub received_at: u64,
    /// When the record last changed (Unix seconds).
    pub updated_at: u64,
}

impl JobRecord {
    /// A new record for `job`, journaled at `now` with its PDF saved as `pdf_file`. Its outbox
    /// holds `received`. `copies` is clamped to 1–5.
    pub fn new(job: &PrintJob, pdf_file: impl Into<String>, now: u64) -> Self {
        JobRecord {
            job_id: job.job_id.clone(),
            document_id: job.document_id.clone(),
            call_id: job.call_id.clone(),
            copies: job.copies.clamp(1, 5),
            pdf_file: pdf_file.into(),
            phase: Phase::Received,
            problem: None,
            outbox: vec![StatusReport::new(PrintState::Received)],
            received_at: now,
            updated_at: now,
        }
    }

    /// The state to report now.
    pub fn current(&self) -> StatusReport {
        match (&self.phase, &self.problem) {
            (Phase::Printed { .. }, _) => StatusReport::new(PrintState::Printed),
            (Phase::Abandoned { reason }, _) => StatusReport::failed(reason.clone()),
            (_, Some(problem)) => StatusReport::failed(problem.clone()),
            (Phase::Submitted { .. }, None) => StatusReport::new(PrintState::Printing),
            (Phase::Received | Phase::Submitting, None) => StatusReport::new(PrintState::Received),
        }
    }

    /// What the driver does next (also right after a restart).
    pub fn next_step(&self) -> Step {
        match self.phase {
            Phase::Received => Step::Submit,
            Phase::Submitting => Step::FindByTitle,
            Phase::Submitted { cups_job } => Step::Track(cups_job),
            Phase::Printed { .. } | Phase::Abandoned { .. } => Step::Done,
        }
    }

    /// Whether the job is printed or abandoned.
    pub fn is_finished(&self) -> bool {
        self.next_step() == Step::Done
    }

    /// Whether the PDF may still be submitted (so must be kept on disk).
    pub fn needs_pdf(&self) -> bool {
        matches!(self.phase, Phase::Received | Phase::Submitting)
    }

    /// Whether the record may be deleted at `now`: finished, nothing left to report, and older
    /// than `retention_s`. Until then a re-sent `print.job` with its id is recognised.
    pub fn prunable(&self, now: u64, retention_s: u64) -> bool {
        self.is_finished()
            && self.outbox.is_empty()
            && now.saturating_sub(self.updated_at) >= retention_s
    }

    /// Queues `report` for the server, unless it is already the last one queued. A `failed` that
    /// follows a `failed` replaces it (the detail changed). Returns whether the outbox changed.
    fn push(&mut self, report: StatusReport) -> bool {
        match self.outbox.last() {
            Some(last) if *last == report => return false,
            Some(last)
                if last.state == PrintState::Failed && report.state == PrintState::Failed =>
            {
                self.outbox.pop();
            }
            _ => {}
        }
        self.outbox.push(report);
        while self.outbox.len() > MAX_OUTBOX {
            self.outbox.remove(1);
        }
        true
    }

    fn touch(&mut self, now: u64) {
        self.updated_at = now.max(self.updated_at);
    }

    /// A `print.job` with this id arrived again: queue the current state (unless it is already
    /// queued), so the server sees it. Returns whether the record changed.
    pub fn resend(&mut self, now: u64) -> bool {
        let current = self.current();
        if self.outbox.contains(&current) {
            return false;
        }
        self.touch(now);
        self.push(current)
    }

    /// The server acknowledged `report`: drop it from the front of the outbox. Returns whether it
    /// was there.
    pub fn ack(&mut self, report: &StatusReport) -> bool {
        if self.outbox.first() == Some(report) {
            self.outbox.remove(0);
            true
        } else {
            false
        }
    }

    /// The printer's problem changed (`None`: it is fine). A new problem is reported as `failed`;
    /// when it clears, a submitted job is reported as `printing` again (a job not yet submitted
    /// reports `printing` once it is). Returns whether the record changed. No effect on a finished
    /// job.
    pub fn set_problem(&mut self, problem: Option<String>, now: u64) -> bool {
        if self.is_finished() || self.problem == problem {
            return false;
        }
        self.problem = problem;
        self.touch(now);
        match (&self.problem, &self.phase) {
            (Some(problem), _) => {
                let report = StatusReport::failed(problem.clone());
                self.push(report);
            }
            (None, Phase::Submitted { .. }) => {
                self.push(StatusReport::new(PrintState::Printing));
            }
            (None, _) => {}
        }
        true
    }

    /// About to run `lp`: [`Phase::Received`] → [`Phase::Submitting`]. Must be journaled before
    /// `lp` runs. Returns whether the record changed.
    pub fn mark_submitting(&mut self, now: u64) -> bool {
        if self.phase != Phase::Received {
            return false;
        }
        self.phase = Phase::Submitting;
        self.touch(now);
        true
    }

    /// `lp` returned CUPS job `cups_job`: → [`Phase::Submitted`], reported as `printing`. Returns
    /// whether the record changed.
    pub fn mark_submitted(&mut self, cups_job: u32, now: u64) -> bool {
        if !matches!(self.phase, Phase::Received | Phase::Submitting) {
            return false;
        }
        self.phase = Phase::Submitted { cups_job };
        self.problem = None;
        self.touch(now);
        self.push(StatusReport::new(PrintState::Printing));
        true
    }

    /// The result of looking for a CUPS job titled with the job id, for a record in
    /// [`Phase::Submitting`]: `Some` adopts it ([`Phase::Submitted`], then followed like any
    /// other); `None` goes back to [`Phase::Received`], to be submitted. Returns whether the record
    /// changed.
    pub fn adopt(&mut self, found: Option<&CupsJob>, now: u64) -> bool {
        if self.phase != Phase::Submitting {
            return false;
        }
        match found {
            Some(job) => self.mark_submitted(job.id, now),
            None => {
                self.phase = Phase::Received;
                self.touch(now);
                true
            }
        }
    }

    /// What CUPS says about the submitted job (`None`: CUPS does not know it), with the printer's
    /// current problem. `completed` → [`Phase::Printed`] (reported `printing` first if `failed` was
    /// the last state); `canceled`, `aborted` or unknown →
    /// [`Phase::Abandoned`] (never resubmitted: it may have printed in part); otherwise the job is
    /// waiting or printing, and a printer problem (or a held or stopped job) is reported as
    /// `failed`. Returns whether the record changed.
    pub fn observe(
        &mut self,
        job: Option<CupsJobState>,
        printer_problem: Option<String>,
        now: u64,
    ) -> bool {
        let Phase::Submitted { cups_job } = self.phase else {
            return false;
        };
        let abandon = |reason: String| Phase::Abandoned { reason };
        let next = match job {
            Some(CupsJobState::Completed) => Phase::Printed {
                cups_job: Some(cups_job),
            },
            Some(CupsJobState::Canceled) => abandon(format!("cups job {cups_job} was canceled")),
            Some(CupsJobState::Aborted) => abandon(format!("cups job {cups_job} was aborted")),
            None => abandon(format!("cups job {cups_job} is unknown to CUPS")),
            Some(state) => {
                let problem = printer_problem.or(match state {
                    CupsJobState::PendingHeld => Some("job-held".to_owned()),
                    CupsJobState::ProcessingStopped => Some("processing-stopped".to_owned()),
                    _ => None,
                });
                return self.set_problem(problem, now);
            }
        };
        if matches!(next, Phase::Printed { .. }) && self.problem.is_some() {
            // Completed right after a problem cleared, between two polls: the server saw
            // `failed` last, so it hears `printing` before `printed`.
            self.push(StatusReport::new(PrintState::Printing));
        }
        self.phase = next;
        self.problem = None;
        self.touch(now);
        let report = self.current();
        self.push(report);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> PrintJob {
        PrintJob {
            job_id: "j1".into(),
            document_id: "d1".into(),
            pdf_url: "/api/v1/documents/d1.pdf".into(),
            copies: 9,
            call_id: "c1".into(),
        }
    }

    #[test]
    fn records_round_trip_through_json() {
        let mut record = JobRecord::new(&job(), "j1.pdf", 10);
        assert_eq!(record.copies, 5);
        record.mark_submitting(11);
        record.mark_submitted(42, 12);
        let text = serde_json::to_string(&record).unwrap();
        assert!(
            text.contains(r#""phase":"submitted","cups_job":42"#),
            "{text}"
        );
        let back: JobRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record);
    }
}
