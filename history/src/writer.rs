//! The writer: the one task that moves events from the process to the outbox and from the outbox
//! to the database. [`History::record`] never waits (an unbounded channel), so no call is ever
//! delayed by the history; the task batches what arrived, keeps it in the outbox, then writes the
//! outbox's oldest events in one transaction and removes them. A database error leaves them in the
//! outbox, retried with a growing delay (up to [`MAX_RETRY`]); an outbox error (a full disk) keeps
//! the batch in memory until the outbox takes it.

use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Opts, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::db::Db;
use crate::event::Event;
use crate::outbox::Outbox;

/// Events moved to the outbox, or from it to the database, per transaction at most.
pub const BATCH: usize = 500;

/// The first retry's delay after a failure.
pub const MIN_RETRY: Duration = Duration::from_millis(500);

/// The longest delay between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

enum Msg {
    Event(Box<Event>),
    Flush(oneshot::Sender<bool>),
}

/// The history's counters and gauge (`sportello_history_*`).
#[derive(Debug, Clone)]
pub struct Metrics {
    written: IntCounter,
    failures: IntCounter,
    pending: IntGauge,
}

impl Metrics {
    /// Registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics::unregistered();
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        Ok(m)
    }

    /// Counters that go nowhere (the command line, benchmarks).
    pub fn unregistered() -> Metrics {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("valid metric literal")
        };
        Metrics {
            written: counter(
                "sportello_history_events_written_total",
                "History events committed to the history database.",
            ),
            failures: counter(
                "sportello_history_write_failures_total",
                "Attempts to write the history (outbox or database) that failed; they are retried.",
            ),
            pending: IntGauge::with_opts(Opts::new(
                "sportello_history_outbox_events",
                "History events kept in this node's outbox, not yet in the database.",
            ))
            .expect("valid metric literal"),
        }
    }
}

/// The handle the server records with. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct History {
    tx: mpsc::UnboundedSender<Msg>,
    db: Db,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Event(e) => write!(f, "Event({})", e.subject()),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl History {
    /// Starts the writer on `db` with `outbox`; it first replays what the outbox kept. It runs
    /// until every handle is dropped, then writes what it still can.
    pub fn start(
        db: Db,
        outbox: Outbox,
        metrics: Metrics,
    ) -> (History, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(db.clone(), outbox, rx, metrics));
        (History { tx, db }, task)
    }

    /// Records `event`, without waiting.
    pub fn record(&self, event: Event) {
        if self.tx.send(Msg::Event(Box::new(event))).is_err() {
            tracing::error!("history writer stopped; event not recorded");
        }
    }

    /// Waits until everything recorded before is in the database (`true`), or the attempt
    /// failed (`false`: it stays in the outbox and is retried), or `timeout` passed.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true)))
    }

    /// The database, for reports.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

struct Writer {
    db: Db,
    outbox: Outbox,
    metrics: Metrics,
    /// Events the outbox could not take yet.
    held: Vec<Event>,
    waiters: Vec<oneshot::Sender<bool>>,
    retry_at: Option<Instant>,
    delay: Duration,
}

async fn run(db: Db, outbox: Outbox, mut rx: mpsc::UnboundedReceiver<Msg>, metrics: Metrics) {
    let mut w = Writer {
        db,
        outbox,
        metrics,
        held: Vec::new(),
        waiters: Vec::new(),
        // Replay what a previous run left.
        retry_at: Some(Instant::now()),
        delay: MIN_RETRY,
    };
    loop {
        let retry_at = w.retry_at;
        let due = async move {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let closed = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => { w.take(m); false }
                None => true,
            },
            () = due => false,
        };
        while w.held.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => w.take(m),
                Err(_) => break,
            }
        }
        let failed_recently = w.retry_at.is_some_and(|t| t > Instant::now());
        w.keep().await;
        if !failed_recently || !w.waiters.is_empty() || closed {
            w.drain().await;
        }
        if closed {
            return;
        }
    }
}

impl Writer {
    fn take(&mut self, m: Msg) {
        match m {
            Msg::Event(e) => self.held.push(*e),
            Msg::Flush(tx) => self.waiters.push(tx),
        }
    }

    /// Moves the held events to the outbox.
    async fn keep(&mut self) {
        if self.held.is_empty() {
            return;
        }
        match self.outbox.push(&self.held).await {
            Ok(()) => self.held.clear(),
            Err(e) => {
                self.metrics.failures.inc();
                tracing::error!(error = %e, held = self.held.len(), "history outbox failed; events kept in memory");
                self.failed();
            }
        }
    }

    /// Writes the outbox to the database, oldest first, until it is empty or a write fails.
    async fn drain(&mut self) {
        let ok = self.held.is_empty() && self.drain_outbox().await;
        if ok {
            self.retry_at = None;
            self.delay = MIN_RETRY;
        } else {
            self.failed();
        }
        if let Ok(n) = self.outbox.len().await {
            self.metrics.pending.set(n + self.held.len() as i64);
        }
        for tx in self.waiters.drain(..) {
            let _ = tx.send(ok);
        }
    }

    async fn drain_outbox(&mut self) -> bool {
        loop {
            let batch = match self.outbox.peek(BATCH as i64).await {
                Ok(b) => b,
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::error!(error = %e, "history outbox unreadable");
                    return false;
                }
            };
            let Some(&(last, _)) = batch.last() else {
                return true;
            };
            let events: Vec<Event> = batch.into_iter().map(|(_, e)| e).collect();
            if let Err(e) = self.db.apply(&events).await {
                self.metrics.failures.inc();
                tracing::warn!(error = %e, database = self.db.url(), pending = events.len(), "history not written; retrying from the outbox");
                return false;
            }
            self.metrics.written.inc_by(events.len() as u64);
            if let Err(e) = self.outbox.remove_through(last).await {
                // Written but still kept: a replay rewrites the same rows (the upserts are
                // idempotent), so this only costs time.
                self.metrics.failures.inc();
                tracing::error!(error = %e, "history outbox not cleared");
                return false;
            }
        }
    }

    fn failed(&mut self) {
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(MAX_RETRY);
    }
}
