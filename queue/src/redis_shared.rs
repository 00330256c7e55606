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

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use crate::error::Error;
use crate::model::{Tenant, Time};
use crate::redis_store::RedisStore;
use crate::shared::{check_name, BusReceiver, Shared, BUS_CAPACITY};
use crate::stream_fanout::{Fanout, StreamKind};

/// Writes the record and indexes it, under a condition: ARGV[4] is "" (always), "nx" (only when
/// absent) or "eq" (only when the value is ARGV[5]). Returns 1 when it wrote.
const WRITE: &str = r#"
local mode = ARGV[4]
if mode == "nx" then
  if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
elseif mode == "eq" then
  if redis.call("GET", KEYS[1]) ~= ARGV[5] then return 0 end
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[3], KEYS[1])
return 1
"#;

/// When a write applies.
enum Condition<'a> {
    Always,
    Absent,
    Equals(&'a str),
}

/// Shared records and the bus on the same Redis as the queue. Clones share the connection.
#[derive(Clone)]
pub struct RedisShared {
    inner: Arc<Inner>,
}

struct Inner {
    store: RedisStore,
    write: Script,
    bus: Arc<Fanout<str>>,
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
        let bus = Arc::new(Fanout::new(
            store.conn(),
            crate::redis_store::reader_config(),
            StreamKind {
                what: "shared bus",
                key: bus_key,
                count: 512,
                capacity: BUS_CAPACITY,
                decode: |id| id.get::<String>("m").map(Arc::from),
            },
        ));
        RedisShared {
            inner: Arc::new(Inner {
                store,
                write: Script::new(WRITE),
                bus,
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
        condition: Condition<'_>,
    ) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        let ms = ttl_ms(ttl);
        let (mode, expected) = match condition {
            Condition::Always => ("", ""),
            Condition::Absent => ("nx", ""),
            Condition::Equals(v) => ("eq", v),
        };
        let mut conn = self.inner.store.conn();
        let wrote: i64 = self
            .inner
            .write
            .key(record_key(tenant, ns, key))
            .key(index_key(tenant, ns))
            .arg(value)
            .arg(ms)
            .arg(now.0.saturating_add(ms))
            .arg(mode)
            .arg(expected)
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
        self.write(tenant, ns, key, value, ttl, now, Condition::Always)
            .await?;
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
        self.write(tenant, ns, key, value, ttl, now, Condition::Absent)
            .await
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
        let condition = match expected {
            Some(v) => Condition::Equals(v),
            None => Condition::Absent,
        };
        self.write(tenant, ns, key, value, ttl, now, condition)
            .await
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
        self.inner.bus.subscribe(tenant).await
    }
}
