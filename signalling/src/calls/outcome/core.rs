//! The rules of call outcomes, on plain records with no I/O (`now` is passed in as a
//! [`queue::Time`], since the records are shared by the nodes):
//!
//! - [`Outcome`]: one record per ended call, in three parts each set once: the end (kiosk,
//!   operator, reason, time), the wrap-up (disposition, notes, time) and the citizen's feedback
//!   (rating, comment, time). Parts arrive from different requests and nodes in any order, so each
//!   merge fills only a missing part ([`Outcome::with_end`], [`Outcome::with_wrapup`]);
//! - [`check_wrapup`]: what `wrapup.done` must carry while dispositions are configured;
//! - [`check_feedback_body`] and [`feedback`]: who may rate which call, once, and until when.

use protocol::outcome::{
    FeedbackSubmit, WrapupDone, DISPOSITION_NONE, FEEDBACK_WINDOW_S, MAX_COMMENT_CHARS,
    MAX_NOTES_CHARS, RATING_MAX, RATING_MIN,
};
use protocol::ErrorCode;
use queue::Time;
use serde::{Deserialize, Serialize};

use crate::calls::Refusal;
use crate::config::DispositionSetting;

/// How the call ended (set by the node that committed the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// The call's kiosk.
    pub kiosk_id: String,
    /// Its operator, when it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<String>,
    /// `completed`, `abandoned` or `kiosk_lost` (as in `call.ended`).
    pub reason: String,
    /// When it ended (ms since the epoch).
    pub at: u64,
}

/// How the wrap-up ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrapup {
    /// The operator's disposition code, or `none` (timed out, operator lost or logged out).
    pub disposition: String,
    /// The operator's notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// When it ended (ms since the epoch).
    pub at: u64,
}

/// The citizen's rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// 1 to 5.
    pub rating: u8,
    /// The citizen's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it was given (ms since the epoch).
    pub at: u64,
}

/// The outcome record of one call (namespace `outcomes`, key the call id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The call.
    pub call_id: String,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
    /// How its wrap-up ended (answered calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup: Option<Wrapup>,
    /// The citizen's rating (answered calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

impl Outcome {
    fn base(current: Option<&Outcome>, call_id: &str) -> Outcome {
        current.cloned().unwrap_or_else(|| Outcome {
            call_id: call_id.to_owned(),
            ..Outcome::default()
        })
    }

    /// The record with its end set, or `None` when it already had one (nothing to write).
    pub fn with_end(current: Option<&Outcome>, call_id: &str, end: End) -> Option<Outcome> {
        let mut next = Self::base(current, call_id);
        if next.end.is_some() {
            return None;
        }
        next.end = Some(end);
        Some(next)
    }

    /// The record with its wrap-up set, or `None` when it already had one.
    pub fn with_wrapup(
        current: Option<&Outcome>,
        call_id: &str,
        wrapup: Wrapup,
    ) -> Option<Outcome> {
        let mut next = Self::base(current, call_id);
        if next.wrapup.is_some() {
            return None;
        }
        next.wrapup = Some(wrapup);
        Some(next)
    }
}

/// Trims optional free text: blank is absent; longer than `max` characters is `invalid`.
fn free_text(what: &str, text: Option<&str>, max: usize) -> Result<Option<String>, Refusal> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > max {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            format!("{what} may have at most {max} characters"),
        ));
    }
    Ok(Some(text.to_owned()))
}

/// The disposition and notes a `wrapup.done` records. With dispositions configured, one of their
/// codes is required (`invalid` otherwise); with none configured, none may be given and `none` is
/// recorded.
pub fn check_wrapup(
    configured: &[DispositionSetting],
    body: &WrapupDone,
) -> Result<(String, Option<String>), Refusal> {
    let notes = free_text("notes", body.notes.as_deref(), MAX_NOTES_CHARS)?;
    let codes = || {
        configured
            .iter()
            .map(|d| d.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match body.disposition.as_deref() {
        None if configured.is_empty() => Ok((DISPOSITION_NONE.to_owned(), notes)),
        None => Err(Refusal::new(
            ErrorCode::Invalid,
            format!("wrapup.done needs a disposition, one of: {}", codes()),
        )),
        Some(code) if configured.iter().any(|d| d.code == code) => Ok((code.to_owned(), notes)),
        Some(code) => Err(Refusal::new(
            ErrorCode::Invalid,
            format!("unknown disposition {code:?}; one of: {}", codes()),
        )),
    }
}

/// The rating and comment of a `feedback.submit`, or `invalid`.
pub fn check_feedback_body(body: &FeedbackSubmit) -> Result<(u8, Option<String>), Refusal> {
    if !(RATING_MIN..=RATING_MAX).contains(&body.rating) {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            format!("rating must be {RATING_MIN} to {RATING_MAX}"),
        ));
    }
    let comment = free_text("comment", body.comment.as_deref(), MAX_COMMENT_CHARS)?;
    Ok((body.rating, comment))
}

/// What the queue knows of a call whose outcome record has no end yet (the end's writer may not
/// have finished when the kiosk already rates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Not in the queue any more.
    Gone,
    /// In the queue, still waiting or in conversation, for this kiosk.
    Active {
        /// Its kiosk.
        kiosk_id: String,
    },
    /// In the queue in wrap-up: it ended.
    Ended(End),
}

/// The record with the citizen's rating, or why not: `not_found` (no such call), `forbidden`
/// (another kiosk's call), `conflict` (not ended, never answered, already rated, or rated more than
/// [`FEEDBACK_WINDOW_S`] after its end).
pub fn feedback(
    current: Option<&Outcome>,
    live: &Live,
    call_id: &str,
    kiosk_id: &str,
    now: Time,
    rating: u8,
    comment: Option<String>,
) -> Result<Outcome, Refusal> {
    let end = match (current.and_then(|o| o.end.as_ref()), live) {
        (Some(end), _) => end.clone(),
        (None, Live::Ended(end)) => end.clone(),
        (None, Live::Active { kiosk_id: owner }) => {
            return Err(if owner == kiosk_id {
                Refusal::new(ErrorCode::Conflict, "the call has not ended yet")
            } else {
                Refusal::new(ErrorCode::Forbidden, "the call is another kiosk's")
            })
        }
        (None, Live::Gone) => {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!("no ended call {call_id:?}"),
            ))
        }
    };
    if end.kiosk_id != kiosk_id {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the call is another kiosk's",
        ));
    }
    if end.operator_id.is_none() {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "the call was never answered; there is nothing to rate",
        ));
    }
    if current.is_some_and(|o| o.feedback.is_some()) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "this call was already rated",
        ));
    }
    if now.0 > end.at.saturating_add(FEEDBACK_WINDOW_S * 1000) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            format!(
                "the call ended more than {} minutes ago",
                FEEDBACK_WINDOW_S / 60
            ),
        ));
    }
    let mut next = Outcome::base(current, call_id);
    next.feedback = Some(Feedback {
        rating,
        comment,
        at: now.0,
    });
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dispositions::default_dispositions;

    fn end(kiosk: &str, operator: Option<&str>, at: u64) -> End {
        End {
            kiosk_id: kiosk.into(),
            operator_id: operator.map(str::to_owned),
            reason: "completed".into(),
            at,
        }
    }

    fn ended(at: u64) -> Outcome {
        Outcome::with_end(None, "c1", end("k1", Some("op"), at)).unwrap()
    }

    fn code(r: Result<Outcome, Refusal>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn parts_are_set_once_in_any_order() {
        let wrap = |d: &str| Wrapup {
            disposition: d.into(),
            notes: None,
            at: 5,
        };
        let first = Outcome::with_wrapup(None, "c1", wrap("informazioni")).unwrap();
        let both = Outcome::with_end(Some(&first), "c1", end("k1", Some("op"), 4)).unwrap();
        assert_eq!(both.wrapup.as_ref().unwrap().disposition, "informazioni");
        assert_eq!(both.end.as_ref().unwrap().kiosk_id, "k1");
        assert_eq!(Outcome::with_wrapup(Some(&both), "c1", wrap("none")), None);
        assert_eq!(
            Outcome::with_end(Some(&both), "c1", end("k2", None, 9)),
            None
        );
        let json = serde_json::to_string(&both).unwrap();
        assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), both);
    }

    #[test]
    fn wrapup_needs_a_configured_disposition() {
        let list = default_dispositions();
        let body = |d: Option<&str>, notes: Option<&str>| WrapupDone {
            call_id: "c1".into(),
            disposition: d.map(str::to_owned),
            notes: notes.map(str::to_owned),
        };
        assert_eq!(
            check_wrapup(&list, &body(Some("informazioni"), Some("  chiesto orari "))).unwrap(),
            ("informazioni".into(), Some("chiesto orari".into()))
        );
        assert_eq!(
            check_wrapup(&list, &body(Some("non_risolto"), Some("  "))).unwrap(),
            ("non_risolto".into(), None)
        );
        for bad in [
            body(None, None),
            body(Some("none"), None),
            body(Some("INFORMAZIONI"), None),
            body(Some("informazioni"), Some(&"x".repeat(MAX_NOTES_CHARS + 1))),
        ] {
            assert_eq!(
                check_wrapup(&list, &bad).unwrap_err().code,
                ErrorCode::Invalid
            );
        }
        assert_eq!(
            check_wrapup(
                &list,
                &body(Some("informazioni"), Some(&"è".repeat(MAX_NOTES_CHARS)))
            )
            .unwrap()
            .0,
            "informazioni"
        );
        // Dispositions turned off: none needed, none accepted.
        assert_eq!(check_wrapup(&[], &body(None, None)).unwrap().0, "none");
        assert_eq!(
            check_wrapup(&[], &body(Some("informazioni"), None))
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn ratings_are_one_to_five_with_a_bounded_comment() {
        let body = |rating: u8, comment: Option<String>| FeedbackSubmit {
            call_id: "c1".into(),
            rating,
            comment,
        };
        assert_eq!(check_feedback_body(&body(1, None)).unwrap(), (1, None));
        assert_eq!(
            check_feedback_body(&body(5, Some(" grazie ".into()))).unwrap(),
            (5, Some("grazie".into()))
        );
        for bad in [
            body(0, None),
            body(6, None),
            body(3, Some("x".repeat(MAX_COMMENT_CHARS + 1))),
        ] {
            assert_eq!(
                check_feedback_body(&bad).unwrap_err().code,
                ErrorCode::Invalid
            );
        }
    }

    #[test]
    fn a_call_is_rated_once_by_its_kiosk_within_ten_minutes() {
        let rec = ended(1_000);
        let rate = |current: Option<&Outcome>, live: &Live, kiosk: &str, now: u64| {
            feedback(current, live, "c1", kiosk, Time(now), 4, None)
        };
        let rated = rate(Some(&rec), &Live::Gone, "k1", 2_000).unwrap();
        assert_eq!(
            rated.feedback,
            Some(Feedback {
                rating: 4,
                comment: None,
                at: 2_000
            })
        );
        assert_eq!(rated.end, rec.end);
        assert_eq!(
            code(rate(Some(&rated), &Live::Gone, "k1", 3_000)),
            ErrorCode::Conflict
        );
        assert_eq!(
            code(rate(Some(&rec), &Live::Gone, "k2", 2_000)),
            ErrorCode::Forbidden
        );
        // The window's last millisecond, then one past it.
        let last = 1_000 + FEEDBACK_WINDOW_S * 1000;
        assert!(rate(Some(&rec), &Live::Gone, "k1", last).is_ok());
        assert_eq!(
            code(rate(Some(&rec), &Live::Gone, "k1", last + 1)),
            ErrorCode::Conflict
        );
        // Never answered.
        let abandoned = Outcome::with_end(None, "c1", end("k1", None, 1_000)).unwrap();
        assert_eq!(
            code(rate(Some(&abandoned), &Live::Gone, "k1", 2_000)),
            ErrorCode::Conflict
        );
    }

    #[test]
    fn before_the_end_is_recorded_the_queue_decides() {
        let rate = |current: Option<&Outcome>, live: &Live, kiosk: &str| {
            feedback(current, live, "c1", kiosk, Time(2_000), 2, None)
        };
        assert_eq!(code(rate(None, &Live::Gone, "k1")), ErrorCode::NotFound);
        let active = Live::Active {
            kiosk_id: "k1".into(),
        };
        assert_eq!(code(rate(None, &active, "k1")), ErrorCode::Conflict);
        assert_eq!(code(rate(None, &active, "k2")), ErrorCode::Forbidden);
        let wrapping = Live::Ended(end("k1", Some("op"), 1_500));
        let rated = rate(None, &wrapping, "k1").unwrap();
        // Only the feedback is written: the end comes from the node that committed it.
        assert_eq!(rated.end, None);
        assert_eq!(rated.feedback.as_ref().unwrap().rating, 2);
        assert_eq!(code(rate(None, &wrapping, "k2")), ErrorCode::Forbidden);
        // A rating already there (the end not yet) is still a second rating.
        assert_eq!(
            code(rate(Some(&rated), &wrapping, "k1")),
            ErrorCode::Conflict
        );
    }
}
