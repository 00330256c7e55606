//! `[history]`: the call history's database (`docs/reports.md`): SQLite in the data directory by
//! default, PostgreSQL (`--database postgres://…`) when several nodes report together; how long
//! rows and free text are kept; and the kiosks' yearly certificate target the reports compare
//! with.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySettings {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. Absent: SQLite in
    /// `DATA_DIR/history.sqlite`, which is one node's history only.
    pub database: Option<String>,
    /// Days a call, a certificate's row and a print's row are kept (the purge runs at start and
    /// every 6 hours). 0 keeps them for ever.
    pub retention_days: u32,
    /// Days the operators' notes and the citizens' comments are kept (free text may name people);
    /// at most `retention_days`. 0 keeps them as long as the row.
    pub text_retention_days: u32,
    /// Certificates a year the kiosks are meant to issue (the brief's minimum), drawn pro rata in
    /// the reports page.
    pub yearly_certificate_target: u64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            database: None,
            retention_days: 5 * 365,
            text_retention_days: 365,
            yearly_certificate_target: 10_000,
        }
    }
}

impl HistorySettings {
    /// The database URL: the configured one, or SQLite in `data_dir`.
    pub fn url(&self, data_dir: &Path) -> String {
        match &self.database {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => history::db::sqlite_url(data_dir),
        }
    }

    /// The problems of this section, for `check-config`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(url) = self.database.as_deref().map(str::trim) {
            if let (false, Err(e)) = (url.is_empty(), history::db::check_url(url)) {
                out.push(format!("history.database: {e}"));
            }
        }
        if self.retention_days != 0
            && self.text_retention_days != 0
            && self.text_retention_days > self.retention_days
        {
            out.push(format!(
                "history.text_retention_days ({}) is longer than history.retention_days ({})",
                self.text_retention_days, self.retention_days
            ));
        }
        out
    }
}

/// The `history` part of the flags: `--database`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryFlags {
    /// `--database`.
    pub database: String,
}
