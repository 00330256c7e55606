//! The kiosk agent's journal, `kiosk_client::agent::journal`: a `JobRecord` loaded from JSON (as
//! `agent::store` reads it back after a restart; a fresh record when the text is not one), then a
//! sequence of the driver's operations chosen by the input, checking the exactly-once rules of the
//! module after each one:
//!
//! - once CUPS has the job (`submitted`), it is never submitted again: no way back to `received`
//!   or `submitting`, and its CUPS id does not change;
//! - a finished job (printed or abandoned) stays as it is;
//! - `printed` is reported only for a job CUPS completed, and never after `failed` directly;
//! - the outbox stays bounded, `updated_at` never goes back, and the record round-trips through
//!   JSON.
//!
//! Input: the record's JSON, a NUL byte, then the operations, two bytes each (operation, argument).
#![no_main]

use kiosk_client::agent::journal::{
    pick_titled, CupsJob, CupsJobState, JobRecord, Phase, StatusReport, MAX_OUTBOX,
};
use protocol::incall::{PrintJob, PrintState};

const STATES: [CupsJobState; 7] = [
    CupsJobState::Pending,
    CupsJobState::PendingHeld,
    CupsJobState::Processing,
    CupsJobState::ProcessingStopped,
    CupsJobState::Canceled,
    CupsJobState::Aborted,
    CupsJobState::Completed,
];

fn fresh() -> JobRecord {
    let job = PrintJob {
        job_id: "j1".into(),
        document_id: "d1".into(),
        pdf_url: "/api/v1/documents/d1.pdf".into(),
        copies: 1,
        call_id: "c1".into(),
    };
    JobRecord::new(&job, "j1.pdf", 100)
}

fn problem(arg: u8) -> Option<String> {
    match arg % 4 {
        0 => None,
        1 => Some("media-empty".into()),
        2 => Some("offline".into()),
        _ => Some(format!("problem-{arg}")),
    }
}

fn cups_id(phase: &Phase) -> Option<u32> {
    match phase {
        Phase::Submitted { cups_job } => Some(*cups_job),
        Phase::Printed { cups_job } => *cups_job,
        _ => None,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (json, ops) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let loaded = serde_json::from_slice::<JobRecord>(json).ok();
    // A record the agent made itself (not one written by hand): its outbox agrees with its phase.
    let own = loaded.is_none();
    let mut record = loaded.unwrap_or_else(fresh);
    let mut now = record.updated_at;
    let mut cups_had_it = cups_id(&record.phase).is_some();
    for op in ops.chunks(2) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        now = now.saturating_add(u64::from(arg % 8));
        let before = record.clone();
        let sent_before = record.outbox.last().cloned();
        match code % 9 {
            0 => {
                if record.mark_submitting(now) {
                    assert!(!cups_had_it, "submitted again after CUPS had the job");
                    assert_eq!(before.phase, Phase::Received);
                }
            }
            1 => {
                record.mark_submitted(u32::from(arg), now);
            }
            2 => {
                let jobs = [CupsJob {
                    id: u32::from(arg),
                    state: STATES[usize::from(arg) % STATES.len()],
                    title: if arg % 3 == 0 {
                        "other".into()
                    } else {
                        record.job_id.clone()
                    },
                }];
                let found = if arg % 2 == 0 {
                    pick_titled(&jobs, &record.job_id)
                } else {
                    None
                };
                record.adopt(found, now);
            }
            3 => {
                let state = (arg % 8 != 7).then(|| STATES[usize::from(arg) % STATES.len()]);
                record.observe(state, problem(arg / 8), now);
            }
            4 => {
                record.set_problem(problem(arg), now);
            }
            5 => {
                let report = match record.outbox.first() {
                    Some(first) if arg % 2 == 0 => first.clone(),
                    _ => StatusReport::new(PrintState::Printing),
                };
                record.ack(&report);
            }
            6 => {
                record.resend(now);
            }
            7 => {
                let _ = record.prunable(now, u64::from(arg));
                let _ = record.next_step();
                let _ = record.current().to_status(&record.job_id);
            }
            _ => {
                // A restart: the record is written and read back.
                let text = serde_json::to_string(&record).expect("a record serialises");
                record = serde_json::from_str(&text).expect("a written record reads back");
            }
        }

        // Once CUPS has the job, it is never submitted again and keeps its CUPS id.
        if matches!(
            before.phase,
            Phase::Submitted { .. } | Phase::Printed { .. } | Phase::Abandoned { .. }
        ) {
            assert!(
                !record.needs_pdf(),
                "{before:?} went back to {:?}",
                record.phase
            );
        }
        if let (Phase::Submitted { cups_job }, Some(after)) =
            (&before.phase, cups_id(&record.phase))
        {
            assert_eq!(*cups_job, after, "the CUPS id changed");
        }
        // A finished job stays as it is.
        if before.is_finished() {
            assert_eq!(before.phase, record.phase);
            assert_eq!(before.problem, record.problem);
        }
        // `printed` only from CUPS's `completed`, reported after `printing` rather than `failed`.
        if matches!(record.phase, Phase::Printed { .. }) && !before.is_finished() {
            assert_eq!(code % 9, 3, "printed without CUPS completing");
            assert!(matches!(before.phase, Phase::Submitted { .. }));
            let n = record.outbox.len();
            if own
                && n >= 2
                && sent_before
                    .as_ref()
                    .is_none_or(|s| s.state != PrintState::Printed)
            {
                assert_eq!(record.outbox[n - 1].state, PrintState::Printed);
                assert_ne!(
                    record.outbox[n - 2].state,
                    PrintState::Failed,
                    "printed right after failed"
                );
            }
        }
        if before.outbox.len() <= MAX_OUTBOX {
            assert!(record.outbox.len() <= MAX_OUTBOX);
        }
        assert!(record.updated_at >= before.updated_at);
        cups_had_it |= matches!(record.phase, Phase::Submitted { .. });
    }
});
