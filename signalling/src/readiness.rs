//! Readiness checks: each one says whether a dependency is usable now, and what it found.

use serde::Serialize;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What it found.
    pub detail: String,
}
