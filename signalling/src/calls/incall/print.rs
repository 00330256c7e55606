//! The print driver: `print.request` makes one job (one shared record, never replaced),
//! `print.status` moves it on by the core's rule whichever node the agent's report reaches,
//! unacknowledged jobs go out again (at once to a printer session that connects on any node, and
//! every [`super::store::RESEND`] by one node only), and each job is also a file under
//! `<data_dir>/print-jobs`, so a restart of a single process loses none.
//!
//! Exactly once: the server makes one job per request and sends it as often as it likes; the agent
//! journals job ids and never prints one twice, and acknowledges a re-sent job with its journaled
//! state.

use std::path::PathBuf;
use std::sync::Arc;

use certificates::audit::{Actor, AuditEvent};
use protocol::incall::{PrintCreated, PrintJob, PrintRequest, PrintStatus, PrintUpdate};
use protocol::{Capability, ErrorCode, Event, Role};
use queue::Time;
use serde_json::Value;

use super::certificate::pdf_url;
use super::common::{append_audit, kiosk_of, operator_of, own_call, valid_id};
use super::core::{Job, PrintBacklog};
use super::store::PRINTED_KEEP;
use crate::calls::{Refusal, SessionCtx};
use crate::state::AppState;

fn job_path(state: &AppState, job_id: &str) -> Option<PathBuf> {
    valid_id(job_id).then(|| state.incall.jobs.join(format!("{job_id}.json")))
}

/// Writes a job's file durably (temporary file, fsync, rename), so a restart keeps it.
async fn save_job(state: &AppState, job: &Job) {
    let Some(path) = job_path(state, &job.job_id) else {
        return;
    };
    let bytes = match serde_json::to_vec(job) {
        Ok(b) => b,
        Err(e) => return tracing::error!(error = %e, "print job not serialisable"),
    };
    let saved = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::error!(job = %job.job_id, "print job file not written: {saved:?}");
    }
}

fn print_job_event(job: &Job) -> Arc<str> {
    Arc::from(
        Event::PrintJob(PrintJob {
            job_id: job.job_id.clone(),
            document_id: job.document_id.clone(),
            pdf_url: pdf_url(&job.document_id),
            copies: job.copies,
            call_id: job.call_id.clone(),
        })
        .to_json(),
    )
}

fn print_audit(job: &Job, state: &str, detail: Option<&str>) -> AuditEvent {
    let mut details = vec![
        ("job_id".to_owned(), job.job_id.clone()),
        ("state".to_owned(), state.to_owned()),
        ("copies".to_owned(), job.copies.to_string()),
    ];
    if let Some(d) = detail {
        details.push(("detail".into(), d.to_owned()));
    }
    AuditEvent {
        action: "print".into(),
        actor: Actor {
            operator: Some(job.operator.clone()),
            kiosk: Some(job.kiosk.clone()),
            ..Actor::default()
        },
        call_id: Some(job.call_id.clone()),
        document_id: Some(job.document_id.clone()),
        details,
        ..AuditEvent::default()
    }
}

/// `print.request` (operator).
pub async fn print(
    state: &AppState,
    ctx: &SessionCtx,
    req: PrintRequest,
) -> Result<Value, Refusal> {
    let call = own_call(state, ctx, &req.call_id, Role::Operator).await?;
    if !(1..=5).contains(&req.copies) {
        return Err(Refusal::new(ErrorCode::Invalid, "copies must be 1 to 5"));
    }
    let issued_here = state
        .incall
        .store
        .call(&req.call_id)
        .await?
        .is_some_and(|c| c.has_document(&req.document_id));
    if !issued_here {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no document {} issued in this call", req.document_id),
        ));
    }
    let job = Job {
        job_id: format!("pj-{}", uuid::Uuid::new_v4().simple()),
        call_id: req.call_id.clone(),
        kiosk: call.kiosk.clone(),
        operator: ctx.principal.id.clone(),
        document_id: req.document_id.clone(),
        copies: req.copies,
        state: None,
        detail: None,
        sent_at: Time::now(),
        printed_at: None,
    };
    let store = &state.incall.store;
    if !store.create_job(&job).await? {
        return Err(Refusal::new(
            ErrorCode::Internal,
            "print job id taken; retry",
        ));
    }
    // This sending counts as the first of the interval: no node re-sends it before RESEND.
    store.claim_send(&job.job_id, &state.incall.node).await?;
    save_job(state, &job).await;
    append_audit(state, print_audit(&job, "requested", None)).await;
    state.events.send_device(
        &kiosk_of(&call.kiosk),
        Capability::Printer,
        &print_job_event(&job),
    );
    let printer_nodes = state
        .incall
        .device_nodes(&call.kiosk, Capability::Printer)
        .await;
    tracing::info!(
        call = %req.call_id,
        job = %job.job_id,
        document = %req.document_id,
        printer_nodes,
        "print job created{}",
        if printer_nodes == 0 {
            ": no printer agent of the kiosk is connected to any node; the job waits for it"
        } else {
            ""
        }
    );
    Ok(serde_json::to_value(PrintCreated { job_id: job.job_id }).unwrap_or(Value::Null))
}

/// `print.status` (kiosk agent).
pub async fn print_status(
    state: &AppState,
    ctx: &SessionCtx,
    req: PrintStatus,
) -> Result<Value, Refusal> {
    if ctx.principal.role != Role::Kiosk {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only kiosks report print status",
        ));
    }
    let detail = req.detail.map(|d| d.chars().take(200).collect::<String>());
    let changed = state
        .incall
        .store
        .report_job(
            &ctx.principal.id,
            &req.job_id,
            req.state,
            detail.clone(),
            Time::now(),
        )
        .await?;
    let Some(job) = changed else {
        return Ok(Value::Null);
    };
    save_job(state, &job).await;
    if let Some(sink) = state.routing.outcomes.sink() {
        let now = Time::now();
        sink.record(history::Event::Print(history::PrintFacts {
            job_id: job.job_id.clone(),
            document_id: Some(job.document_id.clone()),
            call_id: Some(job.call_id.clone()),
            kiosk_id: Some(job.kiosk.clone()),
            day: sink.day_of(now),
            at: i64::try_from(now.0).unwrap_or(i64::MAX),
            outcome: req.state.as_str().to_owned(),
        }));
    }
    tracing::info!(
        job = %job.job_id,
        state = req.state.as_str(),
        detail = detail.as_deref().unwrap_or(""),
        "print job update"
    );
    append_audit(
        state,
        print_audit(&job, req.state.as_str(), detail.as_deref()),
    )
    .await;
    let update = Arc::from(
        Event::PrintUpdate(PrintUpdate {
            job_id: job.job_id.clone(),
            state: req.state,
            detail,
            call_id: job.call_id.clone(),
            document_id: job.document_id.clone(),
        })
        .to_json(),
    );
    state.events.send(&operator_of(&job.operator), &update);
    state.events.send(&kiosk_of(&job.kiosk), &update);
    Ok(Value::Null)
}

/// Sends a kiosk's new printer socket (on this node) its unacknowledged jobs, from the shared
/// records: an agent that reconnects to any node gets them at once.
pub(super) async fn resend_jobs(state: &AppState, kiosk: &str, socket: u64) {
    let jobs = match state.incall.store.jobs().await {
        Ok(jobs) => jobs,
        Err(e) => return tracing::warn!(error = ?e, "print jobs not re-sent: store"),
    };
    for job in jobs
        .iter()
        .filter(|j| j.kiosk == kiosk && j.unacknowledged())
    {
        tracing::info!(job = %job.job_id, %kiosk, "print job re-sent after reconnect");
        state.events.send_to_socket(socket, &print_job_event(job));
    }
}

/// One round of re-sending: every unacknowledged job whose sending this node claims for the next
/// interval (so with several nodes each job still goes out once per interval).
pub(super) async fn resend_due(state: &AppState) {
    let store = &state.incall.store;
    let jobs = match store.jobs().await {
        Ok(jobs) => jobs,
        Err(e) => return tracing::debug!(error = ?e, "print jobs not re-sent: store"),
    };
    set_backlog(state, &jobs);
    for job in jobs.iter().filter(|j| j.unacknowledged()) {
        match store.claim_send(&job.job_id, &state.incall.node).await {
            Ok(true) => {
                state.events.send_device(
                    &kiosk_of(&job.kiosk),
                    Capability::Printer,
                    &print_job_event(job),
                );
            }
            Ok(false) => {}
            Err(e) => return tracing::debug!(error = ?e, "print job claim failed"),
        }
    }
}

/// Sets `sportello_print_jobs_pending{state}` and `sportello_print_oldest_pending_seconds` from
/// the shared records (the same figures on every node).
fn set_backlog(state: &AppState, jobs: &[Job]) {
    let backlog = PrintBacklog::of(jobs, Time::now());
    for (label, n) in crate::metrics::PRINT_STATES.iter().zip(backlog.counts()) {
        state
            .metrics
            .print_pending
            .with_label_values(&[label])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    state
        .metrics
        .print_oldest
        .set(i64::try_from(backlog.oldest.as_secs()).unwrap_or(i64::MAX));
}

/// Puts the jobs of the files back into the shared records where they are missing (a restarted
/// single process, or a store that lost them); a live record is never replaced.
pub(super) async fn restore_jobs(state: &AppState, jobs: Vec<Job>) {
    let mut restored = 0;
    for job in jobs {
        match state.incall.store.create_job(&job).await {
            Ok(true) => restored += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(job = %job.job_id, error = ?e, "print job not restored"),
        }
    }
    if restored > 0 {
        tracing::info!(
            jobs = restored,
            "print jobs restored from the data directory"
        );
    }
}

/// Removes the files of jobs printed more than a day ago.
pub(super) async fn prune_files(state: &AppState) {
    let dir = state.incall.jobs.clone();
    let now = Time::now();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            let old = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Job>(&b).ok())
                .is_some_and(|j| j.expired(now, PRINTED_KEEP));
            if old {
                let _ = std::fs::remove_file(&path);
            }
        }
    })
    .await;
}

/// The jobs of `<data_dir>/print-jobs` (read at start).
pub(super) fn read_job_files(dir: &std::path::Path) -> std::io::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Job>(&b).ok())
        {
            Some(job) => jobs.push(job),
            None => tracing::warn!(file = %path.display(), "unreadable print job file skipped"),
        }
    }
    Ok(jobs)
}
