//! One Redis Stream per tenant, read by one task per process and fanned out to local subscribers.
//!
//! The queue's committed batches (`{t}:events`) and the shared bus (`{t}:bus`) are both delivered
//! this way. A subscriber gets what is added to the stream from the moment it subscribed: the first
//! subscriber of a tenant starts a reader at the stream's current end. The reader blocks in `XREAD`
//! on a connection of its own (a blocking read would stall the shared connection). After a failed
//! read (Redis restarted, the master moved) it opens a new connection, on the current master, and
//! resumes after the last entry it delivered, so nothing added meanwhile is skipped. It stops when
//! its last subscriber is gone or the fan-out is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::streams::{StreamId, StreamReadReply};
use redis::AsyncConnectionConfig;
use tokio::sync::broadcast;

use crate::error::Error;
use crate::model::Tenant;
use crate::redis_conn::{Dedicated, RedisConn};

/// How long a reader blocks in one `XREAD`, in milliseconds.
pub(crate) const XREAD_BLOCK_MS: u64 = 1000;

/// How to read one kind of stream.
pub(crate) struct StreamKind<T: ?Sized> {
    /// What it is, for logs.
    pub what: &'static str,
    /// The tenant's stream key.
    pub key: fn(&Tenant) -> String,
    /// Entries read per `XREAD`.
    pub count: usize,
    /// The local channel's capacity.
    pub capacity: usize,
    /// An entry to what subscribers get (`None`: skipped).
    pub decode: fn(&StreamId) -> Option<Arc<T>>,
}

/// Readers of one kind of stream, per tenant, for this process.
pub(crate) struct Fanout<T: ?Sized> {
    conn: RedisConn,
    config: AsyncConnectionConfig,
    kind: StreamKind<T>,
    subscribers: Mutex<HashMap<Tenant, broadcast::Sender<Arc<T>>>>,
}

impl<T: ?Sized + Send + Sync + 'static> Fanout<T> {
    /// Readers on `conn`'s Redis; `config` is the dedicated connections' (its response timeout
    /// must exceed [`XREAD_BLOCK_MS`]).
    pub(crate) fn new(conn: RedisConn, config: AsyncConnectionConfig, kind: StreamKind<T>) -> Self {
        Fanout {
            conn,
            config,
            kind,
            subscribers: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Tenant, broadcast::Sender<Arc<T>>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Receives what is added to the tenant's stream from now on.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        tenant: &Tenant,
    ) -> Result<broadcast::Receiver<Arc<T>>, Error> {
        // The reader decides to stop under this same lock, so a receiver handed out here always
        // has a running reader behind it.
        if let Some(tx) = self.lock().get(tenant) {
            return Ok(tx.subscribe());
        }
        let key = (self.kind.key)(tenant);
        let mut conn = self.conn.dedicated(&self.config).await?;
        // Start from the stream's current end so only new entries are delivered.
        let last: String = {
            let tail: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            tail.into_iter()
                .next()
                .map_or_else(|| "0-0".to_string(), |(id, _)| id)
        };
        let (tx, rx) = broadcast::channel(self.kind.capacity);
        {
            let mut map = self.lock();
            if let Some(tx) = map.get(tenant) {
                return Ok(tx.subscribe());
            }
            map.insert(tenant.clone(), tx.clone());
        }
        let reader = Reader {
            key,
            fanout: Arc::downgrade(self),
            tenant: tenant.clone(),
            tx,
            last,
        };
        tokio::spawn(reader.run(conn));
        Ok(rx)
    }
}

/// The task that forwards one tenant's stream to its local subscribers.
struct Reader<T: ?Sized> {
    key: String,
    fanout: Weak<Fanout<T>>,
    tenant: Tenant,
    tx: broadcast::Sender<Arc<T>>,
    /// The id of the last entry read; reading resumes after it, also on a new connection.
    last: String,
}

impl<T: ?Sized + Send + Sync + 'static> Reader<T> {
    async fn run(mut self, conn: Dedicated) {
        let mut conn = Some(conn);
        let mut failures: u32 = 0;
        loop {
            let Some(fanout) = self.fanout.upgrade() else {
                break;
            };
            let what = fanout.kind.what;
            if let Some(c) = conn.as_mut() {
                match self.read(&fanout.kind, c).await {
                    Ok(()) => failures = 0,
                    Err(err) => {
                        // A dedicated connection never reconnects by itself: after Redis restarts
                        // or the master moves every command on it fails, so open a new one.
                        tracing::warn!(%err, "reading the {what} failed; reconnecting");
                        conn = None;
                        failures = failures.saturating_add(1);
                    }
                }
            } else {
                match fanout.conn.dedicated(&fanout.config).await {
                    Ok(c) => conn = Some(c),
                    Err(err) => {
                        tracing::warn!(%err, "reconnecting the {what} reader failed");
                        failures = failures.saturating_add(1);
                    }
                }
            }
            if self.should_stop(&fanout) {
                break;
            }
            drop(fanout);
            if failures > 0 {
                // Brief and growing, so a restarted Redis is picked up quickly and a dead one is
                // not hammered.
                let ms = 100u64 << failures.min(4);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }

    /// One blocking `XREAD`; forwards what it returns.
    async fn read(
        &mut self,
        kind: &StreamKind<T>,
        conn: &mut Dedicated,
    ) -> Result<(), redis::RedisError> {
        let reply: StreamReadReply = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(XREAD_BLOCK_MS)
            .arg("COUNT")
            .arg(kind.count)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last)
            .query_async(conn)
            .await?;
        for id in reply.keys.into_iter().flat_map(|k| k.ids) {
            self.last = id.id.clone();
            if let Some(item) = (kind.decode)(&id) {
                let _ = self.tx.send(item);
            }
        }
        Ok(())
    }

    /// True when nobody listens any more. When it says stop, the reader is already out of the
    /// subscribers map: the check and the removal happen under the map's lock, which `subscribe`
    /// also holds while it hands out receivers, so none is handed out for a stopping reader.
    fn should_stop(&self, fanout: &Fanout<T>) -> bool {
        let mut map = fanout.lock();
        if self.tx.receiver_count() > 0 {
            return false;
        }
        // Only remove our own entry: never one a later reader registered.
        if map
            .get(&self.tenant)
            .is_some_and(|t| t.same_channel(&self.tx))
        {
            map.remove(&self.tenant);
        }
        true
    }
}
