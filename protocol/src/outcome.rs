//! What a call achieved and what the citizen thought of it (extensions of `docs/protocol.md`):
//!
//! - the operator closes a wrap-up with a **disposition** (`wrapup.done {"call_id","disposition",
//!   "notes"?}`), one of the codes the server lists in the operator's `state.sync`
//!   (`dispositions`); a wrap-up that times out records [`DISPOSITION_NONE`];
//! - the kiosk sends the citizen's **rating** of an answered call once, within
//!   [`FEEDBACK_WINDOW_S`] of its end (`feedback.submit {"call_id","rating","comment"?}`).
//!
//! The bounds are here so that every client checks what the server checks.

use serde::{Deserialize, Serialize};

/// The disposition recorded when a wrap-up ends without `wrapup.done` (its timeout, or the
/// operator lost or logged out). It is never a configured code.
pub const DISPOSITION_NONE: &str = "none";

/// The longest `notes` of `wrapup.done`, in characters.
pub const MAX_NOTES_CHARS: usize = 500;

/// The longest `comment` of `feedback.submit`, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;

/// The lowest rating (a very unhappy face).
pub const RATING_MIN: u8 = 1;

/// The highest rating (a very happy face).
pub const RATING_MAX: u8 = 5;

/// Seconds after a call's end during which its kiosk may send `feedback.submit`; later it is
/// refused with `conflict`.
pub const FEEDBACK_WINDOW_S: u64 = 600;

/// `wrapup.done` (operator): ends the wrap-up of a call. `disposition` is required while the
/// server has dispositions configured (it always has, by default); without it, or with a code the
/// server does not list, the request is `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapupDone {
    /// The call.
    pub call_id: String,
    /// Extension: one of the `code`s of the operator's `state.sync` `dispositions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// Extension: free notes, at most [`MAX_NOTES_CHARS`] characters on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl WrapupDone {
    /// `wrapup.done` for `call_id` with a disposition and no notes.
    pub fn with(call_id: impl Into<String>, disposition: impl Into<String>) -> Self {
        WrapupDone {
            call_id: call_id.into(),
            disposition: Some(disposition.into()),
            notes: None,
        }
    }
}

/// One disposition an operator may choose, as listed in `state.sync` (`dispositions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    /// The code sent in `wrapup.done`.
    pub code: String,
    /// The Italian label.
    pub label: String,
    /// The English label.
    pub label_en: String,
}

/// `feedback.submit` (kiosk, extension): the citizen's rating of the kiosk's answered call.
/// Accepted once per call (a second one is `conflict`), only from that call's kiosk (`forbidden`),
/// only within [`FEEDBACK_WINDOW_S`] of the call's end (`conflict` after); a rating outside
/// [`RATING_MIN`]..=[`RATING_MAX`] or a longer comment is `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackSubmit {
    /// The ended call.
    pub call_id: String,
    /// 1 (very unhappy) to 5 (very happy).
    pub rating: u8,
    /// An optional comment, at most [`MAX_COMMENT_CHARS`] characters on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
