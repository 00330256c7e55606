//! What each call achieved and what the citizen thought of it: the operator's disposition at the
//! end of the wrap-up (`wrapup.done {"disposition","notes"?}`) and the kiosk's rating
//! (`feedback.submit`).
//!
//! Every ended call gets one [`core::Outcome`] record in the shared store (namespace
//! [`NAMESPACE`], key the call id, kept [`RECORD_TTL`]), so every node sees it and the history
//! can later be written from it. Its parts are written by read → merge → compare-and-set:
//!
//! - the **end** and the **wrap-up** by the node that committed the queue batch carrying
//!   `CallEnded` or `WrapupEnded` ([`Recorder::record`], called from `Routing::observe`, which
//!   every commit goes through, before the request that caused it is answered). The queue's
//!   compare-and-set decides whether a `wrapup.done` or the wrap-up's timeout ended a wrap-up, so
//!   exactly one batch carries each `WrapupEnded`: the node that committed a `wrapup.done` records
//!   its disposition, and any other wrap-up end records `none`. Nothing about dispositions needs
//!   to live in the queue core;
//! - the **feedback** by the kiosk's node ([`submit_feedback`]), once (a compare-and-set from a
//!   record without feedback).
//!
//! Each part also goes to the call history (`crate::reports`), with the queue's own
//! [`queue::CallRecord`] of the call's end and wrap-up.
//!
//! The rules are in [`core`]; the counters `sportello_dispositions_total{disposition}` and
//! `sportello_feedback_ratings_total{rating}` are here.

pub mod core;

use std::time::Duration;

use history::{Event, FeedbackFacts, WrapupFacts};
use prometheus::{IntCounterVec, Opts, Registry};
use protocol::outcome::{FeedbackSubmit, DISPOSITION_NONE, RATING_MAX, RATING_MIN};
use protocol::ErrorCode;
use queue::{AnyShared, CallId, CallState, Effect, Shared, Tenant, Time};
use serde_json::Value;

use self::core::{End, Live, Outcome, Wrapup};
use crate::calls::{events::end_reason, Refusal, SessionCtx};
use crate::reports::{call_facts, Sink};
use crate::state::AppState;

/// The shared records' namespace.
pub const NAMESPACE: &str = "outcomes";

/// How long an outcome record is kept in the shared store: well past the feedback window, long
/// enough for the history writer to read it.
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

/// Read → merge → compare-and-set attempts before giving up on a record.
const ATTEMPTS: usize = 8;

/// A `wrapup.done` this node committed: the call and what the operator chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The call.
    pub call_id: CallId,
    /// The disposition code (checked against the configuration).
    pub disposition: String,
    /// The notes.
    pub notes: Option<String>,
}

/// Writes the outcome records of the batches this node commits, and counts them.
#[derive(Clone)]
pub struct Recorder {
    shared: AnyShared,
    tenant: Tenant,
    dispositions: IntCounterVec,
    ratings: IntCounterVec,
    /// The call history, on nodes that keep one (not on media nodes).
    sink: Option<Sink>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder on `shared`, with its counters registered on `registry`.
    pub fn register(
        shared: AnyShared,
        tenant: Tenant,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let dispositions = IntCounterVec::new(
            Opts::new(
                "sportello_dispositions_total",
                "Wrap-ups ended, by disposition (none: timed out or cut short), counted by the node that committed them.",
            ),
            &["disposition"],
        )?;
        let ratings = IntCounterVec::new(
            Opts::new(
                "sportello_feedback_ratings_total",
                "Citizens' ratings of their calls, by value (1 to 5).",
            ),
            &["rating"],
        )?;
        registry.register(Box::new(dispositions.clone()))?;
        registry.register(Box::new(ratings.clone()))?;
        for r in RATING_MIN..=RATING_MAX {
            ratings.with_label_values(&[&r.to_string()]);
        }
        dispositions.with_label_values(&[DISPOSITION_NONE]);
        Ok(Recorder {
            shared,
            tenant,
            dispositions,
            ratings,
            sink: None,
        })
    }

    /// Writes every outcome also to the call history.
    pub fn attach(&mut self, sink: Sink) {
        self.sink = Some(sink);
    }

    /// The call history, when this node keeps one.
    pub fn sink(&self) -> Option<&Sink> {
        self.sink.as_ref()
    }

    fn history(&self, event: impl FnOnce() -> Event) {
        if let Some(sink) = &self.sink {
            sink.record(event());
        }
    }

    /// Records the ends and wrap-up ends of a batch this node committed at about `now`; `done` is
    /// the `wrapup.done` that was committed, if the batch came from one. A store that does not
    /// answer is logged: the call itself is not affected.
    pub async fn record(&self, effects: &[Effect], now: Time, done: Option<&Done>) {
        for effect in effects {
            let result = match effect {
                Effect::CallEnded {
                    call_id,
                    kiosk_id,
                    operator_id,
                    reason,
                } => {
                    let end = End {
                        kiosk_id: kiosk_id.to_string(),
                        operator_id: operator_id.as_ref().map(ToString::to_string),
                        reason: end_reason(*reason).to_owned(),
                        at: now.0,
                    };
                    self.merge(call_id.as_str(), now, |cur| {
                        Outcome::with_end(cur, call_id.as_str(), end.clone())
                    })
                    .await
                }
                Effect::WrapupEnded { call_id, .. } => {
                    let (disposition, notes) = match done {
                        Some(d) if &d.call_id == call_id => {
                            (d.disposition.clone(), d.notes.clone())
                        }
                        _ => (DISPOSITION_NONE.to_owned(), None),
                    };
                    self.dispositions.with_label_values(&[&disposition]).inc();
                    self.history(|| {
                        Event::Wrapup(WrapupFacts {
                            call_id: call_id.to_string(),
                            disposition: disposition.clone(),
                            notes: notes.clone(),
                            at: i64::try_from(now.0).unwrap_or(i64::MAX),
                        })
                    });
                    let wrapup = Wrapup {
                        disposition,
                        notes,
                        at: now.0,
                    };
                    self.merge(call_id.as_str(), now, |cur| {
                        Outcome::with_wrapup(cur, call_id.as_str(), wrapup.clone())
                    })
                    .await
                }
                Effect::Record(record) => {
                    self.history(|| Event::Call(call_facts(record)));
                    continue;
                }
                _ => continue,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "call outcome not recorded");
            }
        }
    }

    /// The outcome record of a call.
    pub async fn get(&self, call_id: &str, now: Time) -> Result<Option<Outcome>, queue::Error> {
        self.read(call_id, now).await.map(|r| r.map(|(o, _)| o))
    }

    async fn read(
        &self,
        call_id: &str,
        now: Time,
    ) -> Result<Option<(Outcome, String)>, queue::Error> {
        match self
            .shared
            .get(&self.tenant, NAMESPACE, call_id, now)
            .await?
        {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(|o| Some((o, text)))
                .map_err(|e| queue::Error::Corrupt(format!("outcome record {call_id}: {e}"))),
        }
    }

    async fn swap(
        &self,
        call_id: &str,
        expected: Option<&str>,
        next: &Outcome,
        now: Time,
    ) -> Result<bool, queue::Error> {
        let text = serde_json::to_string(next)
            .map_err(|e| queue::Error::Corrupt(format!("outcome record {call_id}: {e}")))?;
        self.shared
            .swap(
                &self.tenant,
                NAMESPACE,
                call_id,
                expected,
                &text,
                RECORD_TTL,
                now,
            )
            .await
    }

    async fn merge(
        &self,
        call_id: &str,
        now: Time,
        change: impl Fn(Option<&Outcome>) -> Option<Outcome>,
    ) -> Result<(), queue::Error> {
        for _ in 0..ATTEMPTS {
            let current = self.read(call_id, now).await?;
            let Some(next) = change(current.as_ref().map(|(o, _)| o)) else {
                return Ok(());
            };
            if self
                .swap(
                    call_id,
                    current.as_ref().map(|(_, t)| t.as_str()),
                    &next,
                    now,
                )
                .await?
            {
                return Ok(());
            }
        }
        Err(queue::Error::Contention(format!(
            "outcome record {call_id}"
        )))
    }
}

/// What the queue knows of a call, for a rating that arrives before its end is recorded.
async fn live(state: &AppState, call_id: &str) -> Result<Live, Refusal> {
    let Ok(id) = CallId::new(call_id) else {
        return Ok(Live::Gone);
    };
    let r = &state.routing;
    let found = r
        .queue
        .read(&r.tenant, move |st| {
            st.calls.get(&id).map(|c| match &c.state {
                CallState::WrapUp { operator, .. } => Live::Ended(End {
                    kiosk_id: c.kiosk_id.to_string(),
                    operator_id: Some(operator.to_string()),
                    reason: "completed".into(),
                    at: c.ended_at.unwrap_or(c.since).0,
                }),
                _ => Live::Active {
                    kiosk_id: c.kiosk_id.to_string(),
                },
            })
        })
        .await?;
    Ok(found.unwrap_or(Live::Gone))
}

/// `feedback.submit` (kiosk): records the citizen's rating of the kiosk's ended, answered call,
/// once, within the window (the rules are [`core::feedback`]).
pub async fn submit_feedback(
    state: &AppState,
    ctx: &SessionCtx,
    body: FeedbackSubmit,
) -> Result<Value, Refusal> {
    let (rating, comment) = core::check_feedback_body(&body)?;
    let recorder = &state.routing.outcomes;
    let kiosk = ctx.principal.id.as_str();
    for _ in 0..ATTEMPTS {
        let now = Time::now();
        let current = recorder.read(&body.call_id, now).await?;
        let record = current.as_ref().map(|(o, _)| o);
        let live = if record.is_some_and(|o| o.end.is_some()) {
            Live::Gone
        } else {
            live(state, &body.call_id).await?
        };
        let next = core::feedback(
            record,
            &live,
            &body.call_id,
            kiosk,
            now,
            rating,
            comment.clone(),
        )?;
        let expected = current.as_ref().map(|(_, t)| t.as_str());
        if recorder.swap(&body.call_id, expected, &next, now).await? {
            recorder
                .ratings
                .with_label_values(&[&rating.to_string()])
                .inc();
            recorder.history(|| {
                Event::Feedback(FeedbackFacts {
                    call_id: body.call_id.clone(),
                    rating: i64::from(rating),
                    comment: comment.clone(),
                    at: i64::try_from(now.0).unwrap_or(i64::MAX),
                })
            });
            tracing::info!(call_id = %body.call_id, kiosk, rating, "citizen's rating recorded");
            return Ok(Value::Null);
        }
    }
    Err(Refusal::new(
        ErrorCode::Unavailable,
        "the rating could not be recorded; retry",
    ))
}
