//! The history database: SQLite (a file in the data directory, the embedded default) or
//! PostgreSQL (several nodes), through sqlx's `Any` driver so one set of portable SQL serves both.
//! [`Db::open`] runs the versioned migrations of `history/migrations/` at start; [`Db::apply`]
//! writes a batch of [`Event`]s in one transaction with idempotent upserts; the report queries sum
//! per group in SQL and leave the arithmetic to [`crate::report`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::OnceCell;

use crate::event::{CallFacts, CertificateFacts, Event, FeedbackFacts, PrintFacts, WrapupFacts};
use crate::report::{
    self, CallSums, CallsBy, CallsReport, CertificateCount, CertificatesBy, CertificatesReport,
    KeyedCount, Period,
};
use crate::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The history of one tenant in a SQLite or PostgreSQL database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    tenant: String,
    url: String,
    migrated: Arc<OnceCell<()>>,
}

/// The SQLite URL of the history file in a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("history.sqlite").display()
    )
}

/// `url` with any password hidden, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}://{}:***{}",
                    &url[..scheme],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `invalid` unless `url` is `sqlite:…`, `postgres://…` or `postgresql://…` (the password
/// hidden in the message).
pub fn check_url(url: &str) -> Result<(), Error> {
    if url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
    {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "the history database must be sqlite://… or postgres://…, not {}",
            redacted(url)
        )))
    }
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and brings its schema up to date.
    pub async fn open(url: &str, tenant: &str) -> Result<Db, Error> {
        let db = Db::open_lazy(url, tenant)?;
        db.ready().await?;
        Ok(db)
    }

    /// A handle on `url` that connects, and migrates, on first use: a database that is down at
    /// start delays only the history (kept in the outbox meanwhile), never the server. A URL that
    /// is not SQLite or PostgreSQL is refused at once.
    pub fn open_lazy(url: &str, tenant: &str) -> Result<Db, Error> {
        sqlx::any::install_default_drivers();
        check_url(url)?;
        let pool = AnyPoolOptions::new()
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        // A month's report reads the whole month: a 64 MiB page cache and memory
                        // mapping keep repeated reports off the system calls (3× faster here).
                        sqlx::query("PRAGMA cache_size = -65536")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA mmap_size = 268435456")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .max_connections(if url.starts_with("sqlite:") { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(|e| Error::Invalid(format!("{}: {e}", redacted(url))))?;
        Ok(Db {
            pool,
            tenant: tenant.to_owned(),
            url: redacted(url),
            migrated: Arc::new(OnceCell::new()),
        })
    }

    /// Connects and runs the migrations, once; every operation goes through it.
    pub async fn ready(&self) -> Result<(), Error> {
        self.migrated
            .get_or_try_init(|| async {
                MIGRATOR
                    .run(&self.pool)
                    .await
                    .map_err(|e| Error::Database(format!("migrating {}: {e}", self.url)))
            })
            .await
            .map(|_| ())
    }

    /// The database's URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `events` in one transaction; each is an idempotent upsert, so a batch written twice
    /// leaves the same rows.
    pub async fn apply(&self, events: &[Event]) -> Result<(), Error> {
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        for event in events {
            match event {
                Event::Call(c) => self.call(&mut tx, c).await?,
                Event::Wrapup(w) => self.wrapup(&mut tx, w).await?,
                Event::Feedback(f) => self.feedback(&mut tx, f).await?,
                Event::Certificate(c) => self.certificate(&mut tx, c).await?,
                Event::Print(p) => self.print(&mut tx, p).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn call(&self, tx: &mut Transaction<'_, Any>, c: &CallFacts) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO history_calls (call_id, tenant, day, kiosk_id, service, language, \
             operator_id, operators, outcome, requested_at, offered_at, answered_at, accepted_at, \
             ended_at, held_ms, holds, transfers, wait_ms, sl_threshold_ms, short_abandon, \
             wrapup_at, handle_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) \
             ON CONFLICT (call_id) DO UPDATE SET day = excluded.day, \
             kiosk_id = excluded.kiosk_id, service = excluded.service, \
             language = excluded.language, operator_id = excluded.operator_id, \
             operators = excluded.operators, outcome = excluded.outcome, \
             requested_at = excluded.requested_at, offered_at = excluded.offered_at, \
             answered_at = excluded.answered_at, accepted_at = excluded.accepted_at, \
             ended_at = excluded.ended_at, held_ms = excluded.held_ms, holds = excluded.holds, \
             transfers = excluded.transfers, wait_ms = excluded.wait_ms, \
             sl_threshold_ms = excluded.sl_threshold_ms, \
             short_abandon = excluded.short_abandon, \
             wrapup_at = COALESCE(excluded.wrapup_at, history_calls.wrapup_at), \
             handle_ms = COALESCE(excluded.handle_ms, history_calls.handle_ms)",
        )
        .bind(&c.call_id)
        .bind(&self.tenant)
        .bind(&c.day)
        .bind(&c.kiosk_id)
        .bind(&c.service)
        .bind(&c.language)
        .bind(c.operator_id.clone())
        .bind(c.operators.join(","))
        .bind(&c.outcome)
        .bind(c.requested_at)
        .bind(c.offered_at)
        .bind(c.answered_at)
        .bind(c.accepted_at)
        .bind(c.ended_at)
        .bind(c.held_ms)
        .bind(c.holds)
        .bind(c.transfers)
        .bind(c.wait_ms)
        .bind(c.sl_threshold_ms)
        .bind(i64::from(c.short_abandon))
        .bind(c.wrapup_at)
        .bind(c.handle_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn wrapup(&self, tx: &mut Transaction<'_, Any>, w: &WrapupFacts) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO history_calls (call_id, tenant, disposition, notes, wrapup_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id) DO UPDATE SET \
             disposition = excluded.disposition, notes = excluded.notes, \
             wrapup_at = COALESCE(history_calls.wrapup_at, excluded.wrapup_at)",
        )
        .bind(&w.call_id)
        .bind(&self.tenant)
        .bind(&w.disposition)
        .bind(w.notes.clone())
        .bind(w.at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn feedback(
        &self,
        tx: &mut Transaction<'_, Any>,
        f: &FeedbackFacts,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO history_calls (call_id, tenant, rating, comment, rated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id) DO UPDATE SET \
             rating = excluded.rating, comment = excluded.comment, rated_at = excluded.rated_at",
        )
        .bind(&f.call_id)
        .bind(&self.tenant)
        .bind(f.rating)
        .bind(f.comment.clone())
        .bind(f.at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn certificate(
        &self,
        tx: &mut Transaction<'_, Any>,
        c: &CertificateFacts,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO history_certificates (document_id, tenant, call_id, day, issued_at, \
             channel, kind, fee, exemption, kiosk_id, operator_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (document_id) DO NOTHING",
        )
        .bind(&c.document_id)
        .bind(&self.tenant)
        .bind(c.call_id.clone())
        .bind(&c.day)
        .bind(c.issued_at)
        .bind(&c.channel)
        .bind(&c.kind)
        .bind(&c.fee)
        .bind(c.exemption.clone())
        .bind(c.kiosk_id.clone())
        .bind(c.operator_id.clone())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn print(&self, tx: &mut Transaction<'_, Any>, p: &PrintFacts) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO history_prints (job_id, tenant, document_id, call_id, kiosk_id, day, \
             at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (job_id) DO UPDATE SET at = excluded.at, outcome = excluded.outcome",
        )
        .bind(&p.job_id)
        .bind(&self.tenant)
        .bind(p.document_id.clone())
        .bind(p.call_id.clone())
        .bind(p.kiosk_id.clone())
        .bind(&p.day)
        .bind(p.at)
        .bind(&p.outcome)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The calls report of `period`, grouped `by`.
    pub async fn calls_report(&self, period: &Period, by: CallsBy) -> Result<CallsReport, Error> {
        self.ready().await?;
        let key = calls_key(by);
        let (from, to) = (period.from_text(), period.to_text());
        let within = "c.tenant = $1 AND c.day >= $2 AND c.day <= $3";
        let sum = |cond: &str| format!("CAST(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS BIGINT)");
        // One pass: per group and disposition, so the dispositions' counts come with the sums.
        let sql = format!(
            "SELECT {key} AS k, c.disposition AS code, COUNT(*) AS calls, {answered} AS answered, \
             {abandoned} AS abandoned, {short} AS abandoned_short, {in_sl} AS answered_in_sl, \
             {after_sl} AS abandoned_after_sl, \
             CAST(SUM(CASE WHEN c.accepted_at IS NOT NULL THEN c.wait_ms ELSE 0 END) AS BIGINT) \
             AS wait_ms_sum, COUNT(c.handle_ms) AS handled, \
             CAST(SUM(COALESCE(c.handle_ms, 0)) AS BIGINT) AS handle_ms_sum, \
             COUNT(c.rating) AS ratings, CAST(SUM(COALESCE(c.rating, 0)) AS BIGINT) AS rating_sum, \
             CAST(SUM(COALESCE(c.transfers, 0)) AS BIGINT) AS transfers \
             FROM history_calls c WHERE {within} GROUP BY {key}, c.disposition",
            answered = sum("c.accepted_at IS NOT NULL"),
            abandoned = sum("c.accepted_at IS NULL AND c.short_abandon = 0"),
            short = sum("c.accepted_at IS NULL AND c.short_abandon = 1"),
            in_sl = sum("c.accepted_at IS NOT NULL AND c.wait_ms <= c.sl_threshold_ms"),
            after_sl = sum("c.accepted_at IS NULL AND c.wait_ms > c.sl_threshold_ms"),
        );
        let rows = sqlx::query(&sql)
            .bind(&self.tenant)
            .bind(&from)
            .bind(&to)
            .fetch_all(&self.pool)
            .await?;
        let mut sums = Vec::with_capacity(rows.len());
        let mut dispositions = Vec::new();
        for r in &rows {
            let s = call_sums(r)?;
            if let Some(code) = r.try_get::<Option<String>, _>("code")? {
                dispositions.push(KeyedCount {
                    key: s.key.clone(),
                    code,
                    count: s.calls,
                });
            }
            sums.push(s);
        }
        let sql = format!(
            "SELECT {key} AS k, h.kind AS code, COUNT(*) AS n FROM history_certificates h \
             JOIN history_calls c ON c.call_id = h.call_id WHERE {within} \
             GROUP BY {key}, h.kind"
        );
        let certificates = self.keyed(&sql, &from, &to).await?;
        Ok(report::calls_report(
            period,
            by,
            &sums,
            &dispositions,
            &certificates,
        ))
    }

    async fn keyed(&self, sql: &str, from: &str, to: &str) -> Result<Vec<KeyedCount>, Error> {
        let rows = sqlx::query(sql)
            .bind(&self.tenant)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyedCount {
                    key: r.try_get("k")?,
                    code: r.try_get("code")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    /// The certificates report of `period`, grouped `by`; `yearly_target` is passed through for
    /// the page's pro-rata chart.
    pub async fn certificates_report(
        &self,
        period: &Period,
        by: CertificatesBy,
        yearly_target: u64,
    ) -> Result<CertificatesReport, Error> {
        self.ready().await?;
        let key = certificates_key(by);
        let sql = format!(
            "SELECT {key} AS k, h.kind AS kind, h.channel AS channel, h.fee AS fee, \
             COALESCE(h.exemption, '') AS exemption, COUNT(*) AS n FROM history_certificates h \
             WHERE h.tenant = $1 AND h.day >= $2 AND h.day <= $3 \
             GROUP BY {key}, h.kind, h.channel, h.fee, COALESCE(h.exemption, '')"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.tenant)
            .bind(period.from_text())
            .bind(period.to_text())
            .fetch_all(&self.pool)
            .await?;
        let counts = rows
            .iter()
            .map(|r| {
                Ok(CertificateCount {
                    key: r.try_get("k")?,
                    kind: r.try_get("kind")?,
                    channel: r.try_get("channel")?,
                    fee: r.try_get("fee")?,
                    exemption: r.try_get("exemption")?,
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(report::certificates_report(
            period,
            by,
            &counts,
            yearly_target,
        ))
    }

    /// Deletes what is older than the retention: the rows of days before `keep_from`, and the free
    /// text (notes, comments) of days before `keep_text_from`. Returns the calls deleted.
    pub async fn purge(&self, keep_from: &str, keep_text_from: &str) -> Result<u64, Error> {
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        let calls = sqlx::query("DELETE FROM history_calls WHERE tenant = $1 AND day < $2")
            .bind(&self.tenant)
            .bind(keep_from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in ["history_certificates", "history_prints"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant = $1 AND day < $2"
            ))
            .bind(&self.tenant)
            .bind(keep_from)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE history_calls SET notes = NULL, comment = NULL WHERE tenant = $1 \
             AND day < $2 AND (notes IS NOT NULL OR comment IS NOT NULL)",
        )
        .bind(&self.tenant)
        .bind(keep_text_from)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(calls)
    }

    /// One call's row as JSON-like text fields, for tests and `sportello report call`.
    pub async fn call_row(&self, call_id: &str) -> Result<Option<CallRow>, Error> {
        self.ready().await?;
        let row = sqlx::query(
            "SELECT call_id, day, kiosk_id, service, language, operator_id, operators, outcome, \
             requested_at, offered_at, answered_at, accepted_at, ended_at, held_ms, holds, \
             transfers, wrapup_at, handle_ms, disposition, notes, rating, comment \
             FROM history_calls WHERE tenant = $1 AND call_id = $2",
        )
        .bind(&self.tenant)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<CallRow, Error> {
            Ok(CallRow {
                call_id: r.try_get("call_id")?,
                day: r.try_get("day")?,
                kiosk_id: r.try_get("kiosk_id")?,
                service: r.try_get("service")?,
                language: r.try_get("language")?,
                operator_id: r.try_get("operator_id")?,
                operators: r.try_get("operators")?,
                outcome: r.try_get("outcome")?,
                requested_at: r.try_get("requested_at")?,
                offered_at: r.try_get("offered_at")?,
                answered_at: r.try_get("answered_at")?,
                accepted_at: r.try_get("accepted_at")?,
                ended_at: r.try_get("ended_at")?,
                held_ms: r.try_get("held_ms")?,
                holds: r.try_get("holds")?,
                transfers: r.try_get("transfers")?,
                wrapup_at: r.try_get("wrapup_at")?,
                handle_ms: r.try_get("handle_ms")?,
                disposition: r.try_get("disposition")?,
                notes: r.try_get("notes")?,
                rating: r.try_get("rating")?,
                comment: r.try_get("comment")?,
            })
        })
        .transpose()
    }

    /// The number of calls in the history (all tenants), for benchmarks and checks.
    pub async fn count_calls(&self) -> Result<i64, Error> {
        self.ready().await?;
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM history_calls")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One call's history row as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub struct CallRow {
    pub call_id: String,
    pub day: Option<String>,
    pub kiosk_id: Option<String>,
    pub service: Option<String>,
    pub language: Option<String>,
    pub operator_id: Option<String>,
    pub operators: Option<String>,
    pub outcome: Option<String>,
    pub requested_at: Option<i64>,
    pub offered_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub held_ms: Option<i64>,
    pub holds: Option<i64>,
    pub transfers: Option<i64>,
    pub wrapup_at: Option<i64>,
    pub handle_ms: Option<i64>,
    pub disposition: Option<String>,
    pub notes: Option<String>,
    pub rating: Option<i64>,
    pub comment: Option<String>,
}

fn call_sums(r: &AnyRow) -> Result<CallSums, Error> {
    Ok(CallSums {
        key: r.try_get("k")?,
        calls: r.try_get("calls")?,
        answered: r.try_get("answered")?,
        abandoned: r.try_get("abandoned")?,
        abandoned_short: r.try_get("abandoned_short")?,
        answered_in_sl: r.try_get("answered_in_sl")?,
        abandoned_after_sl: r.try_get("abandoned_after_sl")?,
        wait_ms_sum: r.try_get("wait_ms_sum")?,
        handled: r.try_get("handled")?,
        handle_ms_sum: r.try_get("handle_ms_sum")?,
        ratings: r.try_get("ratings")?,
        rating_sum: r.try_get("rating_sum")?,
        transfers: r.try_get("transfers")?,
    })
}

/// The SQL of a calls group's key (fixed strings: never built from input).
fn calls_key(by: CallsBy) -> &'static str {
    match by {
        CallsBy::Day => "c.day",
        CallsBy::Month => "SUBSTR(c.day, 1, 7)",
        CallsBy::Service => "COALESCE(c.service, '')",
        CallsBy::Kiosk => "COALESCE(c.kiosk_id, '')",
        CallsBy::Operator => "COALESCE(c.operator_id, '')",
        CallsBy::Disposition => "COALESCE(c.disposition, '')",
    }
}

/// The SQL of a certificates group's key.
fn certificates_key(by: CertificatesBy) -> &'static str {
    match by {
        CertificatesBy::Kind => "h.kind",
        CertificatesBy::Channel => "h.channel",
        CertificatesBy::Fee => "h.fee",
        CertificatesBy::Day => "h.day",
        CertificatesBy::Month => "SUBSTR(h.day, 1, 7)",
        CertificatesBy::Kiosk => "COALESCE(h.kiosk_id, '')",
    }
}
