//! The Redis store: shared state for several server nodes.
//!
//! # Keys
//! Every key of tenant `T` starts with the hash tag `{T}`, so each script touches one Cluster slot, and
//! every key is passed in `KEYS`:
//! - `{T}:ver` — the tenant's state version, bumped by every commit;
//! - `{T}:meta` — JSON of [`Meta`] (node leases, AHT, metric windows, sequence);
//! - `{T}:calls` — hash call id → JSON of [`Call`] (active calls only; ended calls are deleted);
//! - `{T}:ops` — hash operator id → JSON of [`Operator`];
//! - `{T}:waiting` — sorted set of waiting calls, score from [`waiting_score`] (priority and age packed
//!   below 2^53); an index for operators and tools, kept in step by the commit script;
//! - `{T}:events` — a Stream of committed effect batches (`XADD … MAXLEN ~ 10000`), the audit trail and the
//!   way an offer made on one node reaches an operator connected to another.
//!
//! # Atomicity
//! Routing decisions are made by the same Rust core as the memory store (see [`crate::core`]), so the two
//! stores cannot drift apart. Each node caches the tenant state with its version. An operation runs the
//! core on the cache and commits the changed calls and operators with one Lua script that first checks the
//! version: a compare-and-set. If another node committed in between, the script changes nothing, the node
//! reloads (one more script, atomic too) and runs the operation again. Scripts go by `EVALSHA` and are
//! reloaded on `NOSCRIPT` by [`redis::Script`]. They are small loops of `HSET`/`HDEL`/`ZADD`, so Redis is
//! never blocked for long.
//!
//! # Durability
//! With `appendfsync everysec` up to one second of commits can be lost in a Redis crash. The state then
//! moves back by that second: an offer or an accept may be forgotten. Offers simply happen again (the
//! lease machinery re-offers waiting calls), and clients that find their call in an unexpected state
//! `resume`, which re-registers them. No call disappears that was waiting more than a second before.
//!
//! [`Meta`]: crate::core::Meta
//! [`Call`]: crate::model::Call
//! [`Operator`]: crate::model::Operator
//! [`waiting_score`]: crate::model::waiting_score

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::StreamReadReply;
use redis::{AsyncCommands, Script};
use tokio::sync::broadcast;

use crate::core::{Command, Meta, TenantState};
use crate::effect::{Applied, Effect};
use crate::error::Error;
use crate::model::{waiting_score, Call, CallState, Operator, QueueConfig, Tenant, Time};
use crate::snapshot::Snapshot;
use crate::store::{EffectReceiver, Store};

const LOAD: &str = r#"
local v = redis.call('GET', KEYS[1]) or '0'
local m = redis.call('GET', KEYS[2]) or ''
return {v, m, redis.call('HVALS', KEYS[3]), redis.call('HVALS', KEYS[4])}
"#;

const COMMIT: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
local i = 2
if ARGV[i] ~= '' then redis.call('SET', KEYS[2], ARGV[i]) end
i = i + 1
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('ZADD', KEYS[5], ARGV[i + 1], ARGV[i]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('ZREM', KEYS[5], ARGV[i]); i = i + 1 end
local nv = cur + 1
redis.call('SET', KEYS[1], nv)
if ARGV[i] ~= '' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10000, '*', 'v', nv, 'e', ARGV[i])
end
return nv
"#;

/// How many times an operation is retried when other nodes keep committing first.
const MAX_ATTEMPTS: u32 = 400;

struct Keys {
    ver: String,
    meta: String,
    calls: String,
    ops: String,
    waiting: String,
    events: String,
}

impl Keys {
    fn new(t: &Tenant) -> Self {
        // Tenant identifiers cannot contain braces (see `Tenant::new`), so the hash tag is always whole.
        let p = format!("{{{t}}}");
        Keys {
            ver: format!("{p}:ver"),
            meta: format!("{p}:meta"),
            calls: format!("{p}:calls"),
            ops: format!("{p}:ops"),
            waiting: format!("{p}:waiting"),
            events: format!("{p}:events"),
        }
    }
}

#[derive(Default)]
struct Cached {
    version: u64,
    state: Option<TenantState>,
}

/// A node's client of the shared Redis store. Clone it freely; clones share the cache and connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    cfg: QueueConfig,
    load: Script,
    commit: Script,
    cache: Mutex<HashMap<Tenant, Arc<tokio::sync::Mutex<Cached>>>>,
    subscribers: Mutex<HashMap<Tenant, broadcast::Sender<Arc<Applied>>>>,
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Corrupt(e.to_string())
}

impl RedisStore {
    /// Connects to Redis at `url` (e.g. `redis://127.0.0.1:6379/`).
    pub async fn connect(url: &str, cfg: QueueConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn,
                cfg,
                load: Script::new(LOAD),
                commit: Script::new(COMMIT),
                cache: Mutex::default(),
                subscribers: Mutex::default(),
            }),
        })
    }

    /// The SHA1 of the commit script, as `EVALSHA` uses it (for `redis-benchmark` comparisons).
    pub fn commit_script_sha(&self) -> &str {
        self.inner.commit.get_hash()
    }

    fn entry(&self, tenant: &Tenant) -> Arc<tokio::sync::Mutex<Cached>> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.entry(tenant.clone()).or_default().clone()
    }

    async fn load(&self, tenant: &Tenant) -> Result<(u64, TenantState), Error> {
        let k = Keys::new(tenant);
        let mut conn = self.inner.conn.clone();
        let (ver, meta, calls, ops): (u64, String, Vec<String>, Vec<String>) = self
            .inner
            .load
            .key(&k.ver)
            .key(&k.meta)
            .key(&k.calls)
            .key(&k.ops)
            .invoke_async(&mut conn)
            .await?;
        let meta: Meta = if meta.is_empty() {
            Meta::default()
        } else {
            serde_json::from_str(&meta).map_err(json_err)?
        };
        let mut cmap = BTreeMap::new();
        for c in calls {
            let c: Call = serde_json::from_str(&c).map_err(json_err)?;
            cmap.insert(c.call_id.clone(), c);
        }
        let mut omap = BTreeMap::new();
        for o in ops {
            let o: Operator = serde_json::from_str(&o).map_err(json_err)?;
            omap.insert(o.operator_id.clone(), o);
        }
        Ok((ver, TenantState::from_parts(cmap, omap, meta)))
    }

    async fn version(&self, tenant: &Tenant) -> Result<u64, Error> {
        let mut conn = self.inner.conn.clone();
        let v: Option<u64> = conn.get(Keys::new(tenant).ver).await?;
        Ok(v.unwrap_or(0))
    }

    /// Returns the cached state if it is current, else loads it.
    async fn fresh(&self, tenant: &Tenant, cached: &mut Cached) -> Result<(), Error> {
        if cached.state.is_none() || self.version(tenant).await? != cached.version {
            let (v, s) = self.load(tenant).await?;
            cached.version = v;
            cached.state = Some(s);
        }
        Ok(())
    }

    /// Writes what changed if the stored version is still `expected`. Returns the new version, or `None`
    /// if another node committed first.
    async fn commit(
        &self,
        tenant: &Tenant,
        expected: u64,
        state: &mut TenantState,
        effects: &[Effect],
    ) -> Result<Option<u64>, Error> {
        let k = Keys::new(tenant);
        let dirty = state.take_dirty();
        let mut inv = self.inner.commit.prepare_invoke();
        inv.key(&k.ver)
            .key(&k.meta)
            .key(&k.calls)
            .key(&k.ops)
            .key(&k.waiting)
            .key(&k.events);
        inv.arg(expected);
        if dirty.meta {
            inv.arg(serde_json::to_string(&state.meta).map_err(json_err)?);
        } else {
            inv.arg("");
        }
        let (mut sets, mut dels, mut zadd, mut zrem) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for id in &dirty.calls {
            match state.calls.get(id) {
                Some(c) => {
                    sets.push((id.as_str(), serde_json::to_string(c).map_err(json_err)?));
                    if c.state == CallState::Waiting {
                        zadd.push((id.as_str(), waiting_score(c.priority, c.enqueued_at)?));
                    } else {
                        zrem.push(id.as_str());
                    }
                }
                None => {
                    dels.push(id.as_str());
                    zrem.push(id.as_str());
                }
            }
        }
        inv.arg(sets.len());
        for (id, json) in &sets {
            inv.arg(*id).arg(json);
        }
        inv.arg(dels.len());
        for id in &dels {
            inv.arg(*id);
        }
        let mut ops = Vec::new();
        for id in &dirty.operators {
            if let Some(o) = state.operators.get(id) {
                ops.push((id.as_str(), serde_json::to_string(o).map_err(json_err)?));
            }
        }
        inv.arg(ops.len());
        for (id, json) in &ops {
            inv.arg(*id).arg(json);
        }
        inv.arg(zadd.len());
        for (id, score) in &zadd {
            inv.arg(*id).arg(*score);
        }
        inv.arg(zrem.len());
        for id in &zrem {
            inv.arg(*id);
        }
        if effects.is_empty() {
            inv.arg("");
        } else {
            inv.arg(serde_json::to_string(effects).map_err(json_err)?);
        }
        let mut conn = self.inner.conn.clone();
        let v: i64 = inv.invoke_async(&mut conn).await?;
        Ok(u64::try_from(v).ok())
    }
}

/// A short pause that grows with the attempt and varies between nodes, so retries do not collide again.
async fn backoff(attempt: u32) {
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    let cap = 200 + u64::from(attempt.min(20)) * 250;
    tokio::time::sleep(Duration::from_micros(jitter % cap)).await;
}

impl Store for RedisStore {
    fn config(&self) -> &QueueConfig {
        &self.inner.cfg
    }

    async fn apply(&self, tenant: &Tenant, now: Time, cmd: Command) -> Result<Applied, Error> {
        let entry = self.entry(tenant);
        let mut cached = entry.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            // The state is taken out of the cache while in flight: if this future is dropped or Redis
            // fails mid-commit, the cache is simply empty and the next operation reloads.
            let mut state = match cached.state.take() {
                Some(s) => s,
                None => {
                    let (v, s) = self.load(tenant).await?;
                    cached.version = v;
                    s
                }
            };
            let expected = cached.version;
            let effects = match state.apply(&self.inner.cfg, now, cmd.clone()) {
                Ok(fx) => fx,
                Err(e) => {
                    // Validation changed nothing, but the cache may be stale; only a current state may
                    // refuse the operation.
                    if self.version(tenant).await? == expected {
                        cached.state = Some(state);
                        return Err(e);
                    }
                    continue;
                }
            };
            if !state.is_dirty() {
                if self.version(tenant).await? == expected {
                    cached.state = Some(state);
                    return Ok(Applied {
                        version: expected,
                        effects,
                    });
                }
                continue;
            }
            match self.commit(tenant, expected, &mut state, &effects).await? {
                Some(v) => {
                    cached.version = v;
                    cached.state = Some(state);
                    return Ok(Applied {
                        version: v,
                        effects,
                    });
                }
                None => backoff(attempt).await,
            }
        }
        Err(Error::Contention(tenant.to_string()))
    }

    async fn snapshot(&self, tenant: &Tenant, now: Time) -> Result<Snapshot, Error> {
        let entry = self.entry(tenant);
        let mut cached = entry.lock().await;
        self.fresh(tenant, &mut cached).await?;
        match &cached.state {
            Some(s) => Ok(s.snapshot(&self.inner.cfg, now)),
            None => Err(Error::Corrupt("state vanished from the cache".into())),
        }
    }

    async fn load_state(&self, tenant: &Tenant) -> Result<TenantState, Error> {
        Ok(self.load(tenant).await?.1)
    }

    async fn subscribe(&self, tenant: &Tenant) -> Result<EffectReceiver, Error> {
        if let Some(tx) = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            return Ok(tx.subscribe());
        }
        // A blocking XREAD needs a connection of its own, or it would stall every other command.
        let mut conn = self.inner.client.get_multiplexed_async_connection().await?;
        // Start from the stream's current end so only new batches are delivered.
        let last: String = {
            let info: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(Keys::new(tenant).events)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            info.into_iter()
                .next()
                .map_or_else(|| "0-0".to_string(), |(id, _)| id)
        };
        let (tx, rx) = broadcast::channel(4096);
        {
            let mut map = self
                .inner
                .subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = map.get(tenant) {
                return Ok(tx.subscribe());
            }
            map.insert(tenant.clone(), tx.clone());
        }
        let key = Keys::new(tenant).events;
        let inner = Arc::downgrade(&self.inner);
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let mut last = last;
            loop {
                let reply: Result<StreamReadReply, _> = redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("COUNT")
                    .arg(256)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&last)
                    .query_async(&mut conn)
                    .await;
                match reply {
                    Ok(r) => {
                        for id in r.keys.into_iter().flat_map(|k| k.ids) {
                            last = id.id.clone();
                            let v: Option<u64> = id.get("v");
                            let e: Option<String> = id.get("e");
                            let (Some(version), Some(e)) = (v, e) else {
                                continue;
                            };
                            match serde_json::from_str::<Vec<Effect>>(&e) {
                                Ok(effects) => {
                                    let _ = tx.send(Arc::new(Applied { version, effects }));
                                }
                                Err(err) => {
                                    tracing::warn!(%err, "undecodable effect batch in the event stream")
                                }
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "reading the queue event stream failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                // Stop when nobody listens any more or the store is gone.
                if tx.receiver_count() == 0 || inner.upgrade().is_none() {
                    if let Some(inner) = inner.upgrade() {
                        inner
                            .subscribers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&tenant);
                    }
                    break;
                }
            }
        });
        Ok(rx)
    }

    async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.inner.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
