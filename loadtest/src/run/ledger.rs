//! What the bots saw, in one place: a record per call, the counts the run compares with the
//! server's, and the media figures of every conversation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiosk_client::media::{ClientStats, MediaClient};

use crate::scenario::PlannedCall;

/// A direction of media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The kiosk's video as the operator receives it.
    KioskToOperator,
    /// The operator's video as the kiosk receives it.
    OperatorToKiosk,
}

/// The video one side received during one conversation.
#[derive(Debug, Clone, Default)]
pub struct MediaResult {
    /// One-way latencies, milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Sequence numbers expected and still missing at the end.
    pub expected: u64,
    /// Missing.
    pub lost: u64,
    /// Payload bytes (audio and video).
    pub bytes: u64,
    /// How long the connection lasted.
    pub secs: f64,
}

impl MediaResult {
    /// The figures of one client's received video.
    pub fn of(stats: &ClientStats, secs: f64) -> MediaResult {
        let mut result = MediaResult {
            secs,
            ..Default::default()
        };
        for track in stats.tracks.values() {
            result.bytes += track.bytes;
            if track.kind == "video" {
                result.expected += track.reception.expected();
                result.lost += track.reception.lost();
                result
                    .latencies_ms
                    .extend(track.latencies_us.iter().map(|us| *us as f64 / 1000.0));
            }
        }
        result
    }
}

/// One call as the bots saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// What the scenario drew for it.
    pub plan: PlannedCall,
    /// The kiosk that placed it.
    pub kiosk: String,
    /// When `call.request` was sent.
    pub requested: Instant,
    /// The first estimate the kiosk was told (`queue.update`), seconds.
    pub first_estimate_s: Option<u64>,
    /// When it was first answered (`call.assigned` at the kiosk).
    pub answered: Option<Instant>,
    /// When the operator's `call.accept` was acknowledged, the first time.
    pub accepted: Option<Instant>,
    /// When the kiosk first received the operator's video.
    pub kiosk_video: Option<Instant>,
    /// When the operator first received the kiosk's video.
    pub operator_video: Option<Instant>,
    /// When and why it ended (`call.ended` at the kiosk).
    pub ended: Option<(Instant, String)>,
    /// The kiosk gave up waiting.
    pub abandoned: bool,
    /// Put on hold (acknowledged).
    pub held: bool,
    /// Transferred (acknowledged).
    pub transferred: bool,
    /// A certificate was issued in it.
    pub certificate: bool,
    /// Its print job was reported printed.
    pub printed: bool,
    /// From the operator's `certificate.issue` to `print.update printed`.
    pub print_ms: Option<f64>,
}

impl CallRecord {
    /// Seconds from the request to the first answer.
    pub fn wait_s(&self) -> Option<f64> {
        self.answered
            .map(|a| a.duration_since(self.requested).as_secs_f64())
    }

    /// Milliseconds from the request to both sides receiving video.
    pub fn join_ms(&self) -> Option<f64> {
        let last = self.kiosk_video?.max(self.operator_video?);
        Some(last.duration_since(self.requested).as_secs_f64() * 1000.0)
    }

    /// Milliseconds from the operator's accept to both sides receiving video.
    pub fn join_after_accept_ms(&self) -> Option<f64> {
        let last = self.kiosk_video?.max(self.operator_video?);
        Some(last.checked_duration_since(self.accepted?)?.as_secs_f64() * 1000.0)
    }
}

/// Counts kept as the bots act, for the comparison with the server's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// `call.request` acknowledged, plus transfers back into a queue.
    pub offered: u64,
    /// `call.accept` acknowledged.
    pub answered: u64,
    /// `call.cancel` acknowledged while waiting.
    pub abandoned: u64,
    /// `call.transfer` acknowledged.
    pub transferred: u64,
    /// Calls that ended after a conversation (`completed`).
    pub completed: u64,
    /// `call.hold` acknowledged.
    pub held: u64,
    /// `certificate.issue` acknowledged.
    pub certificates: u64,
    /// Print jobs reported printed to the operator.
    pub printed: u64,
    /// Arrivals that found every kiosk busy (not placed).
    pub blocked: u64,
}

/// The shared ledger of a run.
pub struct Ledger {
    /// When the run started.
    pub start: Instant,
    calls: Mutex<HashMap<String, CallRecord>>,
    counts: Mutex<Counts>,
    media: Mutex<Vec<(Direction, Instant, MediaResult)>>,
    errors: Mutex<(u64, Vec<String>)>,
}

/// How many error messages a run keeps (all are counted).
const KEPT_ERRORS: usize = 20;

impl Ledger {
    /// An empty ledger starting now.
    pub fn new() -> Ledger {
        Ledger {
            start: Instant::now(),
            calls: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
            media: Mutex::new(Vec::new()),
            errors: Mutex::new((0, Vec::new())),
        }
    }

    /// A new call.
    pub fn open(&self, call_id: &str, record: CallRecord) {
        lock(&self.calls).insert(call_id.to_owned(), record);
    }

    /// Changes a call's record (nothing when unknown).
    pub fn update(&self, call_id: &str, f: impl FnOnce(&mut CallRecord)) {
        if let Some(record) = lock(&self.calls).get_mut(call_id) {
            f(record);
        }
    }

    /// The plan of a call, once the kiosk has recorded it.
    pub fn plan(&self, call_id: &str) -> Option<PlannedCall> {
        lock(&self.calls).get(call_id).map(|r| r.plan.clone())
    }

    /// Changes the counts.
    pub fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut lock(&self.counts));
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        lock(&self.counts).clone()
    }

    /// Keeps the video one side received in a conversation that just ended.
    pub fn media(&self, direction: Direction, client: &MediaClient, since: Instant) {
        let result = MediaResult::of(&client.stats(), since.elapsed().as_secs_f64());
        lock(&self.media).push((direction, Instant::now(), result));
    }

    /// Every media result.
    pub fn media_results(&self) -> Vec<(Direction, Instant, MediaResult)> {
        lock(&self.media).clone()
    }

    /// Every call record.
    pub fn records(&self) -> Vec<CallRecord> {
        lock(&self.calls).values().cloned().collect()
    }

    /// Calls requested and not ended: (waiting, in conversation).
    pub fn in_progress(&self) -> (usize, usize) {
        let calls = lock(&self.calls);
        let open = calls.values().filter(|r| r.ended.is_none());
        let (mut waiting, mut talking) = (0, 0);
        for r in open {
            if r.answered.is_some() {
                talking += 1;
            } else {
                waiting += 1;
            }
        }
        (waiting, talking)
    }

    /// Something went wrong that the run reports.
    pub fn error(&self, what: impl Into<String>) {
        let what = what.into();
        tracing::debug!(%what, "load run error");
        let mut errors = lock(&self.errors);
        errors.0 += 1;
        if errors.1.len() < KEPT_ERRORS {
            errors.1.push(what);
        }
    }

    /// The error count and the first messages.
    pub fn errors(&self) -> (u64, Vec<String>) {
        lock(&self.errors).clone()
    }

    /// Seconds since the start.
    pub fn at(&self, instant: Instant) -> f64 {
        instant
            .checked_duration_since(self.start)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
