//! The call history and its reports (`docs/reports.md`), on the server's side:
//!
//! - [`Sink`]: what the server records: the queue's [`queue::CallRecord`]s, dispositions,
//!   ratings, certificates and prints, turned into [`history::Event`]s with the tenant's days;
//! - [`open`]: the database the configuration names (SQLite in the data directory by default,
//!   `--database postgres://…` for several nodes), its migrations, the node's outbox and writer;
//! - [`run_purge`]: the retention, applied at start and every 6 hours;
//! - [`api`]: `GET /api/v1/reports/calls` and `/api/v1/reports/certificates` (supervisors), JSON
//!   or CSV, and the same for `sportello report`.

pub mod api;
pub mod cli;

use std::time::Duration;

use anyhow::Context;
use history::{CallFacts, Event, History};
use queue::{CallRecord, Time};

use crate::calls::events::end_reason;
use crate::config::Config;
use crate::shutdown::{Phase, Shutdown};

/// How often the purge runs.
pub const PURGE_EVERY: Duration = Duration::from_secs(6 * 3600);

/// How long a report waits for this node's writer to catch up before it reads.
pub const FLUSH_BEFORE_REPORT: Duration = Duration::from_secs(2);

/// The history handle and the tenant's time zone, for the days of what is recorded.
#[derive(Debug, Clone)]
pub struct Sink {
    history: History,
    tz: jiff::tz::TimeZone,
}

impl Sink {
    /// A sink on `history`, with days in `tz`.
    pub fn new(history: History, tz: jiff::tz::TimeZone) -> Sink {
        Sink { history, tz }
    }

    /// The writer's handle.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Records an event (never waits).
    pub fn record(&self, event: Event) {
        self.history.record(event);
    }

    /// The tenant-local day of `t`, `YYYY-MM-DD`.
    pub fn day_of(&self, t: Time) -> String {
        day_text(queue::windows::local_day(t, &self.tz))
    }

    /// Today, tenant-local.
    pub fn today(&self) -> time::Date {
        today_in(&self.tz)
    }
}

/// Today in `tz`.
pub fn today_in(tz: &jiff::tz::TimeZone) -> time::Date {
    date_of(queue::windows::local_day(Time::now(), tz))
}

/// The history handle of `config` without connecting: a URL of another kind is refused here.
fn lazy_db(config: &Config) -> anyhow::Result<history::Db> {
    crate::datadir::ensure_dir(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    history::Db::open_lazy(&config.history.url(&config.data_dir), &config.tenant)
        .context("cannot open the history database ([history] database / --database)")
}

/// Day number `day` (days since 1970-01-01) as a date.
pub fn date_of(day: i64) -> time::Date {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    i32::try_from(UNIX_EPOCH_JULIAN_DAY + day)
        .ok()
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .unwrap_or(time::Date::MIN)
}

/// Day number `day` as `YYYY-MM-DD`.
pub fn day_text(day: i64) -> String {
    history::report::iso(date_of(day))
}

fn ms(t: Time) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The history's facts of a queue record.
pub fn call_facts(r: &CallRecord) -> CallFacts {
    CallFacts {
        call_id: r.call_id.to_string(),
        day: day_text(r.day),
        kiosk_id: r.kiosk_id.to_string(),
        service: r.service.to_string(),
        language: r.language.to_string(),
        operator_id: r.operator_id.as_ref().map(ToString::to_string),
        operators: r.operators.iter().map(ToString::to_string).collect(),
        outcome: end_reason(r.reason).to_owned(),
        requested_at: ms(r.enqueued_at),
        offered_at: r.offered_at.map(ms),
        answered_at: r.answered_at.map(ms),
        accepted_at: r.accepted_at.map(ms),
        ended_at: ms(r.ended_at),
        held_ms: duration_ms(r.held),
        holds: i64::from(r.holds),
        transfers: i64::from(r.transfers),
        wait_ms: duration_ms(r.wait),
        sl_threshold_ms: duration_ms(r.sl_threshold),
        short_abandon: r.short_abandon,
        wrapup_at: r.wrapup_ended_at.map(ms),
        handle_ms: r.handle.map(duration_ms),
    }
}

/// The database the configuration names, connected and migrated (`sportello report`).
pub async fn open_db(config: &Config) -> anyhow::Result<history::Db> {
    let db = lazy_db(config)?;
    match tokio::time::timeout(Duration::from_secs(15), db.ready()).await {
        Ok(ready) => {
            ready.context("cannot open the history database ([history] database / --database)")?
        }
        Err(_) => anyhow::bail!(
            "the history database {} did not answer within 15 s",
            db.url()
        ),
    }
    Ok(db)
}

/// Opens the history and starts this node's writer, which first writes what its outbox kept. A
/// database that does not answer at start is logged, not fatal: calls go on, their history waits
/// in the outbox until the database answers (`sportello_history_outbox_events` grows meanwhile).
/// A URL that is neither SQLite nor PostgreSQL stops the start.
pub async fn open(config: &Config, registry: &prometheus::Registry) -> anyhow::Result<Sink> {
    let db = lazy_db(config)?;
    match tokio::time::timeout(Duration::from_secs(10), db.ready()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the call history's database is not usable; history kept in the outbox until it is"),
        Err(_) => tracing::error!(database = db.url(), "the call history's database did not answer within 10 s; history kept in the outbox until it does"),
    }
    let outbox = history::Outbox::open(&config.data_dir)
        .await
        .context("cannot open the history outbox in the data directory")?;
    let metrics = history::Metrics::register(registry).context("history metrics")?;
    let (history, _task) = History::start(db, outbox, metrics);
    let tz = jiff::tz::TimeZone::get(&config.queue.time_zone).context("queue.time_zone")?;
    tracing::info!(database = history.db().url(), "call history open");
    Ok(Sink::new(history, tz))
}

/// The days to keep from, by the retention: rows from `today - retention_days`, free text from
/// `today - text_retention_days` (0: for ever).
pub fn keep_from(settings: &crate::config::HistorySettings, today: time::Date) -> (String, String) {
    let back = |days: u32| {
        if days == 0 {
            "0000-00-00".to_owned()
        } else {
            history::report::iso(
                today
                    .checked_sub(time::Duration::days(i64::from(days)))
                    .unwrap_or(time::Date::MIN),
            )
        }
    };
    let rows = back(settings.retention_days);
    let text = if settings.text_retention_days == 0 {
        rows.clone()
    } else {
        back(settings.text_retention_days)
    };
    let text = text.max(rows.clone());
    (rows, text)
}

/// Applies the retention at start and every [`PURGE_EVERY`] until the server stops.
pub async fn run_purge(sink: Sink, settings: crate::config::HistorySettings, shutdown: Shutdown) {
    let mut phase = shutdown.subscribe();
    loop {
        let (rows, text) = keep_from(&settings, sink.today());
        match sink.history().db().purge(&rows, &text).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(calls = n, before = rows, "history purged"),
            Err(e) => tracing::warn!(error = %e, "history purge failed; retried later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(day_text(0), "1970-01-01");
        assert_eq!(day_text(20_514), "2026-03-02");
    }

    #[test]
    fn the_retention_sets_the_days_kept() {
        let mut s = crate::config::HistorySettings {
            retention_days: 30,
            text_retention_days: 7,
            ..crate::config::HistorySettings::default()
        };
        let (rows, text) = keep_from(&s, date!(2026 - 03 - 31));
        assert_eq!((rows.as_str(), text.as_str()), ("2026-03-01", "2026-03-24"));
        s.text_retention_days = 0;
        assert_eq!(keep_from(&s, date!(2026 - 03 - 31)).1, "2026-03-01");
        s.retention_days = 0;
        assert_eq!(keep_from(&s, date!(2026 - 03 - 31)).0, "0000-00-00");
    }
}
