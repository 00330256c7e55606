//! The print journal's core, exactly and without I/O: the phases a job goes through, what is
//! reported (and in which order), what a re-sent `print.job` does, and what the agent does with a
//! record after a crash at every point of the print path.

use kiosk_client::agent::journal::{
    on_print_job, pick_titled, CupsJob, CupsJobState, JobRecord, OnPrintJob, Phase, StatusReport,
    Step, MAX_OUTBOX,
};
use protocol::incall::{PrintJob, PrintState};

fn job(id: &str) -> PrintJob {
    PrintJob {
        job_id: id.into(),
        document_id: "doc-1".into(),
        pdf_url: "/api/v1/documents/doc-1.pdf".into(),
        copies: 2,
        call_id: "call-1".into(),
    }
}

fn received() -> StatusReport {
    StatusReport::new(PrintState::Received)
}
fn printing() -> StatusReport {
    StatusReport::new(PrintState::Printing)
}
fn printed() -> StatusReport {
    StatusReport::new(PrintState::Printed)
}
fn failed(detail: &str) -> StatusReport {
    StatusReport::failed(detail)
}

/// Acknowledges every queued status, as the reporter does when the server answers `ok`.
fn ack_all(record: &mut JobRecord) -> Vec<StatusReport> {
    let sent = record.outbox.clone();
    for report in &sent {
        assert!(record.ack(report));
    }
    sent
}

#[test]
fn a_new_job_is_received_then_printing_then_printed() {
    assert_eq!(on_print_job(None), OnPrintJob::Start);
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    assert_eq!(record.phase, Phase::Received);
    assert_eq!(record.copies, 2);
    assert_eq!(record.current(), received());
    assert_eq!(record.outbox, vec![received()]);
    assert_eq!(record.next_step(), Step::Submit);
    assert!(record.needs_pdf());

    assert!(record.mark_submitting(101));
    assert_eq!(record.phase, Phase::Submitting);
    assert_eq!(record.current(), received(), "submitting is not reported");
    assert_eq!(record.next_step(), Step::FindByTitle);
    assert!(!record.mark_submitting(101), "only from received");

    assert!(record.mark_submitted(7, 102));
    assert_eq!(record.phase, Phase::Submitted { cups_job: 7 });
    assert_eq!(record.next_step(), Step::Track(7));
    assert!(!record.needs_pdf());

    assert!(!record.observe(Some(CupsJobState::Processing), None, 103));
    assert!(record.observe(Some(CupsJobState::Completed), None, 104));
    assert_eq!(record.phase, Phase::Printed { cups_job: Some(7) });
    assert_eq!(record.next_step(), Step::Done);
    assert!(record.is_finished());
    assert_eq!(record.updated_at, 104);

    assert_eq!(
        ack_all(&mut record),
        vec![received(), printing(), printed()]
    );
    assert!(record.outbox.is_empty());
}

#[test]
fn a_re_sent_job_is_never_printed_again_only_its_state_is_re_sent() {
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    record.mark_submitting(101);
    record.mark_submitted(7, 102);
    record.observe(Some(CupsJobState::Completed), None, 103);
    ack_all(&mut record);

    assert_eq!(on_print_job(Some(&record)), OnPrintJob::Resend(printed()));
    assert!(record.resend(200));
    assert_eq!(record.outbox, vec![printed()]);
    assert!(!record.resend(201), "already queued");
    assert_eq!(record.next_step(), Step::Done, "nothing to print");

    let fresh = JobRecord::new(&job("j2"), "j2.pdf", 100);
    assert_eq!(on_print_job(Some(&fresh)), OnPrintJob::Resend(received()));
}

#[test]
fn a_printer_problem_is_reported_failed_and_the_job_prints_when_it_clears() {
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    ack_all(&mut record);
    assert!(record.set_problem(Some("media-empty".into()), 101));
    assert_eq!(record.current(), failed("media-empty"));
    assert_eq!(
        record.next_step(),
        Step::Submit,
        "still waiting to be submitted"
    );
    assert!(
        !record.set_problem(Some("media-empty".into()), 102),
        "same problem"
    );
    assert!(record.set_problem(Some("offline".into()), 103));
    assert_eq!(
        record.outbox,
        vec![failed("offline")],
        "a newer detail replaces an unsent one"
    );
    assert!(record.set_problem(None, 104));
    assert_eq!(record.current(), received());
    assert_eq!(
        record.outbox,
        vec![failed("offline")],
        "nothing new until printing"
    );

    record.mark_submitting(105);
    record.mark_submitted(9, 106);
    record.observe(Some(CupsJobState::Completed), None, 107);
    assert_eq!(
        ack_all(&mut record),
        vec![failed("offline"), printing(), printed()]
    );
}

#[test]
fn a_submitted_job_that_stalls_is_failed_then_printing_again() {
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    record.mark_submitting(100);
    record.mark_submitted(3, 100);
    ack_all(&mut record);

    assert!(record.observe(Some(CupsJobState::Pending), Some("media-empty".into()), 101));
    assert_eq!(record.current(), failed("media-empty"));
    assert_eq!(record.next_step(), Step::Track(3), "never resubmitted");
    assert!(!record.observe(Some(CupsJobState::Pending), Some("media-empty".into()), 102));
    assert!(record.observe(Some(CupsJobState::Processing), None, 103));
    assert_eq!(record.current(), printing());
    assert!(record.observe(Some(CupsJobState::Completed), None, 104));
    assert_eq!(
        ack_all(&mut record),
        vec![failed("media-empty"), printing(), printed()]
    );

    // The printer came back and the job completed between two polls: still printing, printed.
    let mut quick = JobRecord::new(&job("j3"), "j3.pdf", 100);
    quick.mark_submitting(100);
    quick.mark_submitted(5, 100);
    ack_all(&mut quick);
    quick.observe(Some(CupsJobState::Pending), Some("stopped".into()), 101);
    assert!(quick.observe(Some(CupsJobState::Completed), None, 102));
    assert_eq!(
        ack_all(&mut quick),
        vec![failed("stopped"), printing(), printed()]
    );

    let mut held = JobRecord::new(&job("j2"), "j2.pdf", 100);
    held.mark_submitting(100);
    held.mark_submitted(4, 100);
    held.observe(Some(CupsJobState::PendingHeld), None, 101);
    assert_eq!(held.current(), failed("job-held"));
}

#[test]
fn cancelled_aborted_or_forgotten_cups_jobs_are_abandoned_not_reprinted() {
    for (state, detail) in [
        (Some(CupsJobState::Canceled), "cups job 5 was canceled"),
        (Some(CupsJobState::Aborted), "cups job 5 was aborted"),
        (None, "cups job 5 is unknown to CUPS"),
    ] {
        let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
        record.mark_submitting(100);
        record.mark_submitted(5, 100);
        ack_all(&mut record);
        assert!(record.observe(state, None, 101));
        assert_eq!(
            record.phase,
            Phase::Abandoned {
                reason: detail.into()
            }
        );
        assert_eq!(record.next_step(), Step::Done);
        assert_eq!(record.outbox, vec![failed(detail)]);
        assert!(!record.set_problem(Some("x".into()), 102), "finished");
        assert_eq!(
            on_print_job(Some(&record)),
            OnPrintJob::Resend(failed(detail))
        );
    }
}

/// After a restart the agent runs `next_step` on every journaled record. This walks every crash
/// point of the print path and checks what happens then.
#[test]
fn after_a_crash_at_any_point_nothing_prints_twice() {
    // Crash before the record was written: there is no record; the server re-sends the job
    // (it saw no `received`) and it starts afresh.
    assert_eq!(on_print_job(None), OnPrintJob::Start);

    // Crash after journaling `received` (maybe before reporting it): submit it (after checking
    // the printer); `received` is still queued for the server.
    let record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    assert_eq!(record.next_step(), Step::Submit);
    assert_eq!(record.outbox, vec![received()]);

    // Crash after journaling `submitting`, before or after `lp` ran: look the job up by title.
    let mut submitting = record.clone();
    submitting.mark_submitting(101);
    assert_eq!(submitting.next_step(), Step::FindByTitle);
    // ... `lp` had run: the CUPS job is adopted and followed, not submitted again.
    let mut adopted = submitting.clone();
    let found = CupsJob {
        id: 12,
        state: CupsJobState::Completed,
        title: "j1".into(),
    };
    assert!(adopted.adopt(Some(&found), 102));
    assert_eq!(adopted.next_step(), Step::Track(12));
    assert!(adopted.observe(Some(CupsJobState::Completed), None, 103));
    assert_eq!(adopted.phase, Phase::Printed { cups_job: Some(12) });
    // ... `lp` had not run: back to `received`, to be submitted (with `submitting` journaled
    // again first).
    let mut never = submitting.clone();
    assert!(never.adopt(None, 102));
    assert_eq!(never.phase, Phase::Received);
    assert_eq!(never.next_step(), Step::Submit);

    // Crash after journaling the CUPS id (`printing`): follow that CUPS job, never submit again.
    let mut submitted = submitting.clone();
    submitted.mark_submitted(12, 102);
    assert_eq!(submitted.next_step(), Step::Track(12));
    // Crash after CUPS completed the job but before journaling `printed` (the test fault hook):
    // the CUPS job says completed, so it is journaled printed and reported.
    assert!(submitted.observe(Some(CupsJobState::Completed), None, 200));
    assert_eq!(submitted.outbox, vec![received(), printing(), printed()]);

    // Crash after journaling `printed` but before the server acknowledged it: nothing to do but
    // report what is still queued.
    assert_eq!(submitted.next_step(), Step::Done);
    assert!(!submitted.outbox.is_empty());
}

#[test]
fn the_title_lookup_prefers_a_completed_job_then_an_active_one() {
    let job = |id, state, title: &str| CupsJob {
        id,
        state,
        title: title.into(),
    };
    let jobs = vec![
        job(1, CupsJobState::Completed, "other"),
        job(2, CupsJobState::Canceled, "j1"),
        job(3, CupsJobState::Pending, "j1"),
        job(4, CupsJobState::Completed, "j1"),
        job(5, CupsJobState::Processing, "j1"),
    ];
    assert_eq!(pick_titled(&jobs, "j1").map(|j| j.id), Some(4));
    assert_eq!(pick_titled(&jobs[..3], "j1").map(|j| j.id), Some(3));
    assert_eq!(pick_titled(&jobs[..2], "j1").map(|j| j.id), Some(2));
    assert_eq!(pick_titled(&jobs, "j9"), None);
}

#[test]
fn acknowledgements_must_match_the_head_of_the_outbox() {
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    record.mark_submitting(100);
    record.mark_submitted(1, 100);
    assert!(!record.ack(&printing()), "received comes first");
    assert!(record.ack(&received()));
    assert!(record.ack(&printing()));
    assert!(!record.ack(&printing()));
}

#[test]
fn a_flapping_printer_does_not_grow_the_outbox_without_bound() {
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    record.mark_submitting(100);
    record.mark_submitted(1, 100);
    for i in 0..100 {
        record.observe(Some(CupsJobState::Pending), Some(format!("p{i}")), 100 + i);
        record.observe(Some(CupsJobState::Processing), None, 100 + i);
    }
    assert!(record.outbox.len() <= MAX_OUTBOX);
    assert_eq!(record.outbox[0], received(), "received stays first");
    assert_eq!(record.outbox.last(), Some(&printing()));
}

#[test]
fn old_finished_and_reported_jobs_may_be_pruned() {
    let day = 86_400;
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 0);
    assert!(!record.prunable(100 * day, 30 * day), "not finished");
    record.mark_submitting(0);
    record.mark_submitted(1, 0);
    record.observe(Some(CupsJobState::Completed), None, 10);
    assert!(!record.prunable(100 * day, 30 * day), "not reported");
    ack_all(&mut record);
    assert!(!record.prunable(29 * day, 30 * day), "too recent");
    assert!(record.prunable(30 * day + 10, 30 * day));
}

#[test]
fn records_keep_their_phase_through_json() {
    let mut record = JobRecord::new(&job("j1"), "j1.pdf", 100);
    record.set_problem(Some("media-empty".into()), 101);
    let text = serde_json::to_string(&record).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["phase"], "received");
    assert_eq!(value["problem"], "media-empty");
    assert_eq!(value["outbox"][1]["state"], "failed");
    assert_eq!(serde_json::from_str::<JobRecord>(&text).unwrap(), record);
    let abandoned: JobRecord = serde_json::from_value(serde_json::json!({
        "job_id": "j", "document_id": "d", "copies": 1, "pdf_file": "j.pdf",
        "phase": "abandoned", "reason": "r", "received_at": 1, "updated_at": 2
    }))
    .unwrap();
    assert_eq!(abandoned.current(), failed("r"));
    assert_eq!(
        CupsJobState::parse("processing-stopped"),
        Some(CupsJobState::ProcessingStopped)
    );
    assert_eq!(CupsJobState::parse("9"), Some(CupsJobState::Completed));
    assert_eq!(CupsJobState::parse("bogus"), None);
}
