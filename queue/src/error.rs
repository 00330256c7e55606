//! The crate's one error type.
//!
//! Variants map onto the protocol's error codes (`not_found`, `forbidden`, `conflict`, `invalid`,
//! `unavailable`, `internal`) so the server can translate them without knowing the queue's insides.

/// Everything that can go wrong in the queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is malformed: a bad identifier, priority, capacity or setting.
    #[error("invalid: {0}")]
    Invalid(String),
    /// No such call or operator in this tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller may not act on this call (it is offered or assigned to someone else).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request is not allowed in the object's current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Redis failed or is unreachable; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// Other nodes kept changing the tenant's state; the operation was retried and gave up.
    #[error("too much contention on tenant {0}")]
    Contention(String),
    /// Stored state could not be decoded (a bug or a foreign writer).
    #[error("corrupt stored state: {0}")]
    Corrupt(String),
    /// A Prometheus metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// The protocol error code this error maps to.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::NotFound(_) => "not_found",
            Error::Forbidden(_) => "forbidden",
            Error::Conflict(_) => "conflict",
            Error::Unavailable(_) | Error::Contention(_) => "unavailable",
            Error::Corrupt(_) | Error::Metrics(_) => "internal",
        }
    }
}
