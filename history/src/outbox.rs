//! The durable outbox: events waiting to be written to the history database, in a SQLite file of
//! the node's own data directory (`history-outbox.sqlite`). An event is in the outbox before the
//! database is tried, and leaves it only once the database committed it, so a database that is
//! down, or a node that stops, loses nothing: the outbox is replayed at the next attempt or start.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::event::Event;
use crate::Error;

/// The outbox file's name in the data directory.
pub const FILE: &str = "history-outbox.sqlite";

/// A node's outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: SqlitePool,
}

impl Outbox {
    /// Opens (creating when missing) the outbox in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<Outbox, Error> {
        let path = data_dir.join(FILE);
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| Error::Database(format!("{}: {e}", path.display())))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit reaches the disk before the event counts as kept.
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| Error::Database(format!("{}: {e}", path.display())))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, \
             event TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS outbox_unreadable (id INTEGER PRIMARY KEY, \
             event TEXT NOT NULL, error TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Outbox { pool })
    }

    /// Keeps `events`, in one transaction.
    pub async fn push(&self, events: &[Event]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        for e in events {
            let text = serde_json::to_string(e).map_err(|e| Error::Invalid(e.to_string()))?;
            sqlx::query("INSERT INTO outbox (event) VALUES ($1)")
                .bind(text)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The oldest `limit` events with their ids. A row that no longer reads as an event (written
    /// by another version) is moved aside to `outbox_unreadable`, logged, and skipped.
    pub async fn peek(&self, limit: i64) -> Result<Vec<(i64, Event)>, Error> {
        let rows = sqlx::query("SELECT id, event FROM outbox ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let text: String = r.try_get("event")?;
            match serde_json::from_str(&text) {
                Ok(e) => out.push((id, e)),
                Err(err) => {
                    tracing::error!(id, error = %err, "unreadable history event set aside");
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(
                        "INSERT INTO outbox_unreadable (id, event, error) VALUES ($1, $2, $3)",
                    )
                    .bind(id)
                    .bind(&text)
                    .bind(err.to_string())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM outbox WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(out)
    }

    /// Removes the events up to and including `last_id` (they were committed).
    pub async fn remove_through(&self, last_id: i64) -> Result<(), Error> {
        sqlx::query("DELETE FROM outbox WHERE id <= $1")
            .bind(last_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many events wait.
    pub async fn len(&self) -> Result<i64, Error> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Whether nothing waits.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }
}
