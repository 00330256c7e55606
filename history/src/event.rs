//! What is written to the history: one [`Event`] per fact, each applied by an idempotent upsert,
//! so that parts arriving in any order, from several nodes, or twice (an outbox replayed after a
//! crash) give the same rows.

use serde::{Deserialize, Serialize};

/// One fact for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The queue's facts of a call, at its end and again at its wrap-up's end.
    Call(CallFacts),
    /// The operator's disposition at the end of the wrap-up (`none` when it timed out).
    Wrapup(WrapupFacts),
    /// The citizen's rating.
    Feedback(FeedbackFacts),
    /// A certificate issued, on any channel.
    Certificate(CertificateFacts),
    /// A print job that ended.
    Print(PrintFacts),
}

impl Event {
    /// The call or document the event is about, for logs.
    pub fn subject(&self) -> &str {
        match self {
            Event::Call(c) => &c.call_id,
            Event::Wrapup(w) => &w.call_id,
            Event::Feedback(f) => &f.call_id,
            Event::Certificate(c) => &c.document_id,
            Event::Print(p) => &p.job_id,
        }
    }
}

/// The queue's facts of a call (see `queue::CallRecord`). Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    /// The call.
    pub call_id: String,
    /// The tenant-local day it was asked on, `YYYY-MM-DD`.
    pub day: String,
    /// Its kiosk.
    pub kiosk_id: String,
    /// Its service at the end.
    pub service: String,
    /// The citizen's language.
    pub language: String,
    /// Its last operator, when answered.
    pub operator_id: Option<String>,
    /// Every operator who answered it, in order.
    pub operators: Vec<String>,
    /// `completed`, `abandoned` or `kiosk_lost`.
    pub outcome: String,
    /// When the kiosk asked.
    pub requested_at: i64,
    /// When it was first offered.
    pub offered_at: Option<i64>,
    /// When it was first answered.
    pub answered_at: Option<i64>,
    /// When its last operator accepted it (none: never answered in its last service).
    pub accepted_at: Option<i64>,
    /// When the conversation or the wait ended.
    pub ended_at: i64,
    /// Time on hold, ms.
    pub held_ms: i64,
    /// Times put on hold.
    pub holds: i64,
    /// Times transferred.
    pub transfers: i64,
    /// The wait the queue's metrics counted, ms.
    pub wait_ms: i64,
    /// The service-level threshold, ms.
    pub sl_threshold_ms: i64,
    /// A short abandon (counted apart).
    pub short_abandon: bool,
    /// When the wrap-up ended (the second record).
    pub wrapup_at: Option<i64>,
    /// Connected + hold + wrap-up, ms (the second record).
    pub handle_ms: Option<i64>,
}

/// The end of a wrap-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapupFacts {
    /// The call.
    pub call_id: String,
    /// The disposition code, or `none`.
    pub disposition: String,
    /// The operator's notes.
    pub notes: Option<String>,
    /// When the wrap-up ended.
    pub at: i64,
}

/// The citizen's rating of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackFacts {
    /// The call.
    pub call_id: String,
    /// 1 to 5.
    pub rating: i64,
    /// The comment.
    pub comment: Option<String>,
    /// When it was given.
    pub at: i64,
}

/// A certificate issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFacts {
    /// The document.
    pub document_id: String,
    /// The call it was issued in (kiosk channel).
    pub call_id: Option<String>,
    /// The tenant-local day it was issued on, `YYYY-MM-DD`.
    pub day: String,
    /// When.
    pub issued_at: i64,
    /// `kiosk`, `web`, `intermediary` or `cli`.
    pub channel: String,
    /// The kind code.
    pub kind: String,
    /// `bollo` (a marca paid for it) or `esente` (exempt).
    pub fee: String,
    /// The exemption's code, when exempt.
    pub exemption: Option<String>,
    /// The kiosk (kiosk channel).
    pub kiosk_id: Option<String>,
    /// The operator (kiosk channel).
    pub operator_id: Option<String>,
}

/// A print job that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintFacts {
    /// The job.
    pub job_id: String,
    /// The document printed.
    pub document_id: Option<String>,
    /// The call.
    pub call_id: Option<String>,
    /// The kiosk.
    pub kiosk_id: Option<String>,
    /// The tenant-local day, `YYYY-MM-DD`.
    pub day: String,
    /// When it ended.
    pub at: i64,
    /// `printed`, `failed` or another final state reported by the kiosk.
    pub outcome: String,
}
