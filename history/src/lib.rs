//! The call history: every call that ends, with its timestamps, operators, transfers, outcome,
//! disposition and rating, the certificates issued on every channel and the prints, kept in a
//! database for reports.
//!
//! - [`event`]: the facts written, each an idempotent upsert;
//! - [`db`]: SQLite (the embedded default, a file in the data directory) or PostgreSQL (several
//!   nodes), versioned migrations at start, and the report queries;
//! - [`outbox`] and [`writer`]: recording never waits; events are kept durably in the node's own
//!   outbox and written from it, retried until the database has them;
//! - [`report`]: the reports' rules and CSV, without I/O.

pub mod db;
pub mod event;
pub mod outbox;
pub mod report;
pub mod writer;

pub use db::Db;
pub use event::{CallFacts, CertificateFacts, Event, FeedbackFacts, PrintFacts, WrapupFacts};
pub use outbox::Outbox;
pub use report::{CallsBy, CallsReport, CertificatesBy, CertificatesReport, Period};
pub use writer::{History, Metrics};

/// What can go wrong with the history.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad request or configuration.
    #[error("{0}")]
    Invalid(String),
    /// The database (or the outbox) failed.
    #[error("history database: {0}")]
    Database(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e.to_string())
    }
}
