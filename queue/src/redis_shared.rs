//! [`Shared`] on Redis: records as keys with a server-side expiry, and the bus as a Stream.
//!
//! - A record `(ns, key)` of tenant `t` is the string key `{t}:kv:<ns>:<key>`, written with `PX`.
//!   The namespace's index `{t}:kvidx:<ns>` is a sorted set of keys scored by their expiry (our
//!   clock), so [`Shared::list`] finds them; entries past their time are dropped as it reads.
//! - The bus is the Stream `{t}:bus`, capped near [`BUS_CAPACITY`] entries. One reader task per
//!   tenant and process blocks on it with a connection of its own and forwards to the local
//!   listeners; after a lost connection it resumes after the last entry it read.
//!
//! Every key carries the tenant's hash tag, as the queue's keys do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::streams::StreamReadReply;
use redis::Script;
use tokio::sync::broadcast;

use crate::error::Error;
use crate::model::{Tenant, Time};
use crate::redis_conn::Dedicated;
use crate::redis_store::RedisStore;
use crate::shared::{check_name, BusReceiver, Shared, BUS_CAPACITY};

/// How long the bus reader blocks in one `XREAD`, in milliseconds.
const XREAD_BLOCK_MS: u64 = 1000;

/// `SET` the record (with `NX` when ARGV[4] is "nx"), and index it when written.
const PUT: &str = r#"
local ok
if ARGV[4] == "nx" then
  ok = redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2], "NX")
else
  ok = redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
end
if ok then
  redis.call("ZADD", KEYS[2], ARGV[3], KEYS[1])
  return 1
end
return 0
"#;

/// Compare and set: ARGV[5] is "1" when a value is expected (ARGV[6]), "0" when absence is.
const SWAP: &str = r#"
local cur = redis.call("GET", KEYS[1])
if ARGV[5] == "1" then
  if cur ~= ARGV[6] then return 0 end
else
  if cur then return 0 end
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[3], KEYS[1])
return 1
"#;

/// Shared records and the bus on the same Redis as the queue. Clones share the connection.
#[derive(Clone)]
pub struct RedisShared {
    inner: Arc<Inner>,
}

struct Inner {
    store: RedisStore,
    put: Script,
    swap: Script,
    listeners: Mutex<HashMap<Tenant, broadcast::Sender<Arc<str>>>>,
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShared").finish_non_exhaustive()
    }
}

fn record_key(t: &Tenant, ns: &str, key: &str) -> String {
    format!("{{{t}}}:kv:{ns}:{key}")
}

fn index_key(t: &Tenant, ns: &str) -> String {
    format!("{{{t}}}:kvidx:{ns}")
}

fn bus_key(t: &Tenant) -> String {
    format!("{{{t}}}:bus")
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisShared {
    /// Shared state on the store's Redis.
    pub fn new(store: RedisStore) -> Self {
        RedisShared {
            inner: Arc::new(Inner {
                store,
                put: Script::new(PUT),
                swap: Script::new(SWAP),
                listeners: Mutex::default(),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
        nx: bool,
    ) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        let ms = ttl_ms(ttl);
        let mut conn = self.inner.store.conn();
        let wrote: i64 = self
            .inner
            .put
            .key(record_key(tenant, ns, key))
            .key(index_key(tenant, ns))
            .arg(value)
            .arg(ms)
            .arg(now.0.saturating_add(ms))
            .arg(if nx { "nx" } else { "" })
            .invoke_async(&mut conn)
            .await?;
        Ok(wrote == 1)
    }
}

impl Shared for RedisShared {
    async fn put(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<(), Error> {
        self.write(tenant, ns, key, value, ttl, now, false).await?;
        Ok(())
    }

    async fn put_new(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, Error> {
        self.write(tenant, ns, key, value, ttl, now, true).await
    }

    async fn swap(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        let ms = ttl_ms(ttl);
        let mut conn = self.inner.store.conn();
        let wrote: i64 = self
            .inner
            .swap
            .key(record_key(tenant, ns, key))
            .key(index_key(tenant, ns))
            .arg(value)
            .arg(ms)
            .arg(now.0.saturating_add(ms))
            .arg("")
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or(""))
            .invoke_async(&mut conn)
            .await?;
        Ok(wrote == 1)
    }

    async fn get(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        _now: Time,
    ) -> Result<Option<String>, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        let mut conn = self.inner.store.conn();
        Ok(redis::cmd("GET")
            .arg(record_key(tenant, ns, key))
            .query_async(&mut conn)
            .await?)
    }

    async fn delete(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        _now: Time,
    ) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        let mut conn = self.inner.store.conn();
        let k = record_key(tenant, ns, key);
        let (deleted, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(&k)
            .cmd("ZREM")
            .arg(index_key(tenant, ns))
            .arg(&k)
            .query_async(&mut conn)
            .await?;
        Ok(deleted > 0)
    }

    async fn list(
        &self,
        tenant: &Tenant,
        ns: &str,
        now: Time,
    ) -> Result<Vec<(String, String)>, Error> {
        check_name("namespace", ns, false)?;
        let mut conn = self.inner.store.conn();
        let idx = index_key(tenant, ns);
        let (_, keys): (i64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&idx)
            .arg("-inf")
            .arg(now.0)
            .cmd("ZRANGE")
            .arg(&idx)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let prefix = record_key(tenant, ns, "");
        let mut out: Vec<(String, String)> = keys
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v?)))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn publish(&self, tenant: &Tenant, message: &str) -> Result<(), Error> {
        let mut conn = self.inner.store.conn();
        let _: String = redis::cmd("XADD")
            .arg(bus_key(tenant))
            .arg("MAXLEN")
            .arg("~")
            .arg(BUS_CAPACITY)
            .arg("*")
            .arg("m")
            .arg(message)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn listen(&self, tenant: &Tenant) -> Result<BusReceiver, Error> {
        if let Some(tx) = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            return Ok(tx.subscribe());
        }
        let mut conn = self.inner.store.dedicated().await?;
        // Start at the stream's current end: the bus is for live delivery.
        let last: String = {
            let tail: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(bus_key(tenant))
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
        let (tx, rx) = broadcast::channel(BUS_CAPACITY);
        {
            let mut map = self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = map.get(tenant) {
                return Ok(tx.subscribe());
            }
            map.insert(tenant.clone(), tx.clone());
        }
        let reader = BusReader {
            key: bus_key(tenant),
            inner: Arc::downgrade(&self.inner),
            tenant: tenant.clone(),
            tx,
            last,
        };
        tokio::spawn(reader.run(conn));
        Ok(rx)
    }
}

/// Forwards a tenant's bus stream to this process's listeners.
struct BusReader {
    key: String,
    inner: Weak<Inner>,
    tenant: Tenant,
    tx: broadcast::Sender<Arc<str>>,
    last: String,
}

impl BusReader {
    async fn run(mut self, conn: Dedicated) {
        let mut conn = Some(conn);
        let mut failures: u32 = 0;
        loop {
            if let Some(c) = conn.as_mut() {
                match self.read(c).await {
                    Ok(()) => failures = 0,
                    Err(err) => {
                        tracing::warn!(%err, "reading the shared bus failed; reconnecting");
                        conn = None;
                        failures = failures.saturating_add(1);
                    }
                }
            } else {
                let Some(inner) = self.inner.upgrade() else {
                    break;
                };
                match inner.store.dedicated().await {
                    Ok(c) => conn = Some(c),
                    Err(err) => {
                        tracing::warn!(%err, "reconnecting the shared bus reader failed");
                        failures = failures.saturating_add(1);
                    }
                }
            }
            if self.should_stop() {
                break;
            }
            if failures > 0 {
                let ms = 100u64 << failures.min(4);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }

    async fn read(&mut self, conn: &mut Dedicated) -> Result<(), redis::RedisError> {
        let reply: StreamReadReply = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(XREAD_BLOCK_MS)
            .arg("COUNT")
            .arg(512)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last)
            .query_async(conn)
            .await?;
        for id in reply.keys.into_iter().flat_map(|k| k.ids) {
            self.last = id.id.clone();
            if let Some(m) = id.get::<String>("m") {
                let _ = self.tx.send(Arc::from(m));
            }
        }
        Ok(())
    }

    /// True when nobody listens any more or the store is gone (checked and removed under the map's
    /// lock, which `listen` also holds, so no receiver is handed out for a stopping reader).
    fn should_stop(&self) -> bool {
        let Some(inner) = self.inner.upgrade() else {
            return true;
        };
        let mut map = inner.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if self.tx.receiver_count() > 0 {
            return false;
        }
        if map
            .get(&self.tenant)
            .is_some_and(|t| t.same_channel(&self.tx))
        {
            map.remove(&self.tenant);
        }
        true
    }
}
