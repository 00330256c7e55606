//! The Redis store: shared state for several server nodes.
//!
//! # Keys
//! Every key of tenant `T` starts with the hash tag `{T}`, so each script touches one Cluster slot, and
//! every key is passed in `KEYS`:
//! - `{T}:ver` — the tenant's version token `"<counter>:<nonce>"`, replaced by every commit (absent for a
//!   tenant that never committed);
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
//! stores cannot drift apart. Each node caches the tenant state with its version token. An operation runs
//! the core on the cache and commits the changed calls and operators with one Lua script that first checks
//! the token: a compare-and-set. If another node committed in between, the script changes nothing, the
//! node reloads (one more script, atomic too) and runs the operation again.
//!
//! The token is the counter (reported as [`Applied::version`]) plus a random nonce that each commit
//! chooses. The counter alone is not enough: when Redis loses its last writes or is wiped, the counter
//! goes back and other nodes reach the same numbers again with different contents, so a node still caching
//! the lost state would see "105 == 105" and commit on top of state that no longer exists. A nonce never
//! repeats, so such a node finds a different token and reloads. Scripts go by `EVALSHA` and are
//! reloaded on `NOSCRIPT` by [`redis::Script`]. They are small loops of `HSET`/`HDEL`/`ZADD`, so Redis is
//! never blocked for long.
//!
//! # Group commit
//! Operations on one tenant wait for each other on the node (a per-tenant lock), so while one
//! commit is in flight the next ones queue up. The node runs them as one batch: each operation is
//! applied to the cached state in arrival order, with its own `now`, and the batch is written with
//! one commit script (one round trip). Each accepted operation still gets a version of its own and a stream entry of its own,
//! exactly as if it had been committed alone (the script adds the batch's size to the counter).
//! An operation the core refuses
//! changes nothing, so a refusal inside a batch is as authoritative as alone: the batch's commit (or,
//! when nothing changed, a token check) proves the state it was judged on was current. When the
//! compare-and-set fails the whole batch is applied again on the reloaded state. Batches are
//! processed by a spawned task (one per burst: the operation that finds none running spawns it), so
//! a caller that gives up (its future dropped) does not abandon the other callers' operations
//! halfway. At most [`MAX_BATCH`] operations go in one commit.
//!
//! # Durability
//! With `appendfsync everysec` up to one second of commits can be lost in a Redis crash. The state then
//! moves back by that second: an offer or an accept may be forgotten. Offers simply happen again (the
//! lease machinery re-offers waiting calls), and clients that find their call in an unexpected state
//! `resume`, which re-registers them. No call disappears that was waiting more than a second before.
//! Nodes notice the loss through the version token (see above) and never write their cached, lost state
//! back. Reconnections (and failovers) of the [`RedisConn`] are not reported to the store, which is why the
//! cache relies on the token and not on noticing them.
//!
//! # Sentinel
//! With a `redis+sentinel://` URL the connection follows the master the sentinels name (see
//! [`crate::redis_conn`]). A failover looks like a Redis restart that may have lost the last writes made
//! before it (replication is asynchronous): commands fail with [`Error::Unavailable`] while no master is
//! reachable, the version token makes every node reload, and the event-stream readers resume on the new
//! master after the last entry they read.
//!
//! # Timeouts
//! Every command has a response timeout, so a half-open connection fails the operation (the caller may
//! retry) instead of hanging while it holds the tenant's lock.
//!
//! [`Meta`]: crate::core::Meta
//! [`Call`]: crate::model::Call
//! [`Operator`]: crate::model::Operator
//! [`waiting_score`]: crate::model::waiting_score
//! [`Applied::version`]: crate::effect::Applied::version

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::{AsyncCommands, Script};

use crate::core::{Command, Meta, TenantState};
use crate::effect::{Applied, Effect};
use crate::error::Error;
use crate::model::{waiting_score, Call, CallState, Operator, QueueConfig, Tenant, Time};
use crate::redis_conn::RedisConn;
use crate::snapshot::Snapshot;
use crate::store::{EffectReceiver, Store};
use crate::stream_fanout::{Fanout, StreamKind, XREAD_BLOCK_MS};

const LOAD: &str = r#"
local v = redis.call('GET', KEYS[1]) or ''
local m = redis.call('GET', KEYS[2]) or ''
return {v, m, redis.call('HVALS', KEYS[3]), redis.call('HVALS', KEYS[4])}
"#;

const COMMIT: &str = r#"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return false end
local base = tonumber(string.match(cur, '^%d+')) or 0
local i = 3
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
n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  if ARGV[i] ~= '' then
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10000, '*', 'v', base + k, 'e', ARGV[i])
  end
  i = i + 1
end
local tok = (base + math.max(n, 1)) .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], tok)
return tok
"#;

/// How long a command may wait for its reply. Long enough for a busy Redis, short enough that a
/// half-open connection does not hold a tenant's lock (and the caller) for long.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening a connection may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times an operation is retried when other nodes keep committing first.
const MAX_ATTEMPTS: u32 = 400;

/// The most operations one commit carries (group commit): enough to absorb a burst, small enough
/// that one script's arguments stay modest.
const MAX_BATCH: usize = 64;

/// An operation waiting for its tenant's next batch.
struct Pending {
    now: Time,
    cmd: Command,
    reply: tokio::sync::oneshot::Sender<Result<Applied, Error>>,
}

/// One tenant's slot on this node: the cached state (its lock orders the batches) and the operations
/// waiting for the next batch.
#[derive(Default)]
struct Slot {
    cached: Arc<tokio::sync::Mutex<Cached>>,
    pending: Mutex<Queued>,
}

/// The operations waiting for the next batch, and whether a task is draining them.
#[derive(Default)]
struct Queued {
    ops: Vec<Pending>,
    /// Set by the operation that spawns the drain task and cleared by that task when it finds
    /// nothing left (both under the lock), so one task serves a burst instead of one per operation.
    draining: bool,
}

/// Clears [`Queued::draining`] if the drain task ends before it found the queue empty (a panic,
/// or the runtime dropping it), so that the next operation spawns a new one.
struct DrainGuard<'a> {
    slot: &'a Slot,
    armed: bool,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut pending = self.slot.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.draining = false;
        }
    }
}

/// The same error again, for every caller of a batch that failed as a whole.
fn replicate(e: &Error) -> Error {
    match e {
        Error::Invalid(m) => Error::Invalid(m.clone()),
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::Forbidden(m) => Error::Forbidden(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::Unavailable(r) => {
            Error::Unavailable(redis::RedisError::from((r.kind(), "redis", r.to_string())))
        }
        Error::Contention(m) => Error::Contention(m.clone()),
        Error::Corrupt(m) => Error::Corrupt(m.clone()),
        Error::Metrics(m) => Error::Corrupt(m.to_string()),
    }
}

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
    /// The version token the state was loaded or committed at (`""` for a tenant with no stored state).
    token: String,
    state: Option<TenantState>,
}

/// The counter part of a version token (`"105:…"` → 105); 0 for the absent state.
fn counter(token: &str) -> u64 {
    let digits = token.split(':').next().unwrap_or("");
    digits.parse().unwrap_or(0)
}

/// A fresh nonce for a commit. It only has to differ from every nonce written before, which a random
/// UUID does.
fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A node's client of the shared Redis store. Clone it freely; clones share the cache and connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConn,
    cfg: QueueConfig,
    load: Script,
    commit: Script,
    cache: Mutex<HashMap<Tenant, Arc<Slot>>>,
    events: Arc<Fanout<Applied>>,
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Corrupt(e.to_string())
}

impl RedisStore {
    /// Connects to Redis at `url`: one node (`redis://127.0.0.1:6379/`, `rediss://…`,
    /// `redis+unix:///path`) or the master the sentinels name
    /// (`redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]`, see
    /// [`crate::redis_conn`]). Fails when no Redis (master) answers now.
    pub async fn connect(url: &str, cfg: QueueConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let conn_cfg = AsyncConnectionConfig::new()
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_connection_timeout(CONNECTION_TIMEOUT);
        let conn = RedisConn::connect(url, conn_cfg).await?;
        let events = Arc::new(Fanout::new(
            conn.clone(),
            reader_config(),
            StreamKind {
                what: "queue event stream",
                key: |t| Keys::new(t).events,
                count: 256,
                capacity: 4096,
                decode: decode_batch,
            },
        ));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                cfg,
                load: Script::new(LOAD),
                commit: Script::new(COMMIT),
                cache: Mutex::default(),
                events,
            }),
        })
    }

    /// The SHA1 of the commit script, as `EVALSHA` uses it (for `redis-benchmark` comparisons).
    pub fn commit_script_sha(&self) -> &str {
        self.inner.commit.get_hash()
    }

    /// The address (`host:port`, or the socket path) of the Redis node the store's shared connection
    /// is on, `None` while it is not connected (during a failover, say). For diagnostics and tests.
    pub fn master_addr(&self) -> Option<String> {
        self.inner.conn.master_addr()
    }

    /// A handle on the store's shared connection (it reconnects by itself, following the master with
    /// sentinels), for the other Redis users of this crate (`redis_shared`).
    pub(crate) fn conn(&self) -> RedisConn {
        self.inner.conn.clone()
    }

    fn entry(&self, tenant: &Tenant) -> Arc<Slot> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.entry(tenant.clone()).or_default().clone()
    }

    /// Runs the tenant's waiting operations, batch after batch, until none is left. The operation
    /// that finds no drain task running spawns one ([`Queued::draining`]); the others only queue.
    async fn drain(&self, tenant: &Tenant, slot: &Slot) {
        let mut guard = DrainGuard { slot, armed: true };
        let mut cached = slot.cached.lock().await;
        loop {
            let batch: Vec<Pending> = {
                let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.ops.is_empty() {
                    // Under the lock an operation takes to queue: one queued after this spawns
                    // a new task.
                    pending.draining = false;
                    guard.armed = false;
                    return;
                }
                let n = pending.ops.len().min(MAX_BATCH);
                pending.ops.drain(..n).collect()
            };
            self.run_batch(tenant, &mut cached, batch).await;
        }
    }

    /// Applies a batch to the cached state and commits it once (retrying the whole batch when
    /// another node committed first), then answers every caller.
    async fn run_batch(&self, tenant: &Tenant, cached: &mut Cached, batch: Vec<Pending>) {
        let fail_all = |batch: Vec<Pending>, e: Error| {
            for p in batch {
                let _ = p.reply.send(Err(replicate(&e)));
            }
        };
        for attempt in 0..MAX_ATTEMPTS {
            // The state is taken out of the cache while in flight: if Redis fails mid-commit, the
            // cache is simply empty and the next operation reloads.
            let mut state = match cached.state.take() {
                Some(s) => s,
                None => match self.load(tenant).await {
                    Ok((v, s)) => {
                        cached.token = v;
                        s
                    }
                    Err(e) => return fail_all(batch, e),
                },
            };
            let expected = cached.token.clone();
            let outcomes: Vec<Result<Vec<Effect>, Error>> = batch
                .iter()
                .map(|p| state.apply(&self.inner.cfg, p.now, p.cmd.clone()))
                .collect();
            // Each operation the core accepted gets a version of its own and its own stream entry,
            // as if committed alone: the batch's first takes the stored counter + 1.
            let accepted: Vec<&[Effect]> = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok().map(Vec::as_slice))
                .collect();
            let first = if state.is_dirty() {
                match self.commit(tenant, &expected, &mut state, &accepted).await {
                    Ok(Some(token)) => {
                        cached.token = token;
                        cached.state = Some(state);
                        counter(&expected) + 1
                    }
                    Ok(None) => {
                        backoff(attempt).await;
                        continue;
                    }
                    Err(e) => return fail_all(batch, e),
                }
            } else {
                // Nothing changed (refusals only, or no-ops), but the cache may be stale; only a
                // current state may answer.
                match self.token(tenant).await {
                    Ok(token) if token == expected => {
                        cached.state = Some(state);
                        // Nothing was written: every operation reports the stored version.
                        let version = counter(&expected);
                        for (p, outcome) in batch.into_iter().zip(outcomes) {
                            let _ = p
                                .reply
                                .send(outcome.map(|effects| Applied { version, effects }));
                        }
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) => return fail_all(batch, e),
                }
            };
            let mut version = first;
            for (p, outcome) in batch.into_iter().zip(outcomes) {
                let answer = outcome.map(|effects| {
                    version += 1;
                    Applied {
                        version: version - 1,
                        effects,
                    }
                });
                let _ = p.reply.send(answer);
            }
            return;
        }
        fail_all(batch, Error::Contention(tenant.to_string()))
    }

    async fn load(&self, tenant: &Tenant) -> Result<(String, TenantState), Error> {
        let k = Keys::new(tenant);
        let mut conn = self.inner.conn.clone();
        let (ver, meta, calls, ops): (String, String, Vec<String>, Vec<String>) = self
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

    /// The tenant's current version token (`""` if it has no stored state).
    async fn token(&self, tenant: &Tenant) -> Result<String, Error> {
        let mut conn = self.inner.conn.clone();
        let v: Option<String> = conn.get(Keys::new(tenant).ver).await?;
        Ok(v.unwrap_or_default())
    }

    /// Returns the cached state if it is current, else loads it.
    async fn fresh(&self, tenant: &Tenant, cached: &mut Cached) -> Result<(), Error> {
        if cached.state.is_none() || self.token(tenant).await? != cached.token {
            let (v, s) = self.load(tenant).await?;
            cached.token = v;
            cached.state = Some(s);
        }
        Ok(())
    }

    /// Writes what changed if the stored token is still `expected`. Returns the new token, or `None` if
    /// another node committed first (or the stored state is not the one this node loaded).
    async fn commit(
        &self,
        tenant: &Tenant,
        expected: &str,
        state: &mut TenantState,
        operations: &[&[Effect]],
    ) -> Result<Option<String>, Error> {
        let k = Keys::new(tenant);
        let dirty = state.take_dirty();
        let mut inv = self.inner.commit.prepare_invoke();
        inv.key(&k.ver)
            .key(&k.meta)
            .key(&k.calls)
            .key(&k.ops)
            .key(&k.waiting)
            .key(&k.events);
        inv.arg(expected).arg(nonce());
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
        inv.arg(operations.len());
        for effects in operations {
            if effects.is_empty() {
                inv.arg("");
            } else {
                inv.arg(serde_json::to_string(effects).map_err(json_err)?);
            }
        }
        let mut conn = self.inner.conn.clone();
        let token: Option<String> = inv.invoke_async(&mut conn).await?;
        Ok(token)
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
        let slot = self.entry(tenant);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let spawn = {
            let mut pending = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.ops.push(Pending { now, cmd, reply });
            !std::mem::replace(&mut pending.draining, true)
        };
        if spawn {
            let this = self.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move { this.drain(&tenant, &slot).await });
        }
        answer.await.map_err(|_| {
            Error::Unavailable(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "the queue's batch was interrupted",
            )))
        })?
    }

    async fn snapshot(&self, tenant: &Tenant, now: Time) -> Result<Snapshot, Error> {
        let cfg = &self.inner.cfg;
        self.read(tenant, |s| s.snapshot(cfg, now)).await
    }

    async fn read<R, F>(&self, tenant: &Tenant, f: F) -> Result<R, Error>
    where
        R: Send,
        F: FnOnce(&TenantState) -> R + Send,
    {
        let slot = self.entry(tenant);
        let mut cached = slot.cached.lock().await;
        self.fresh(tenant, &mut cached).await?;
        match &cached.state {
            Some(s) => Ok(f(s)),
            None => Err(Error::Corrupt("state vanished from the cache".into())),
        }
    }

    async fn load_state(&self, tenant: &Tenant) -> Result<TenantState, Error> {
        Ok(self.load(tenant).await?.1)
    }

    async fn subscribe(&self, tenant: &Tenant) -> Result<EffectReceiver, Error> {
        self.inner.events.subscribe(tenant).await
    }

    async fn ping(&self) -> Result<(), Error> {
        // `PING` on one node; with sentinels `ROLE`, which must say master (a demoted master still
        // answers `PING`, but refuses writes).
        self.inner.conn.check().await?;
        Ok(())
    }

    async fn revoke(&self, tenant: &Tenant, key: &str, until: Time) -> Result<(), Error> {
        // A sorted set scored by the time each entry stops mattering; `GT` keeps the later time.
        let mut conn = self.inner.conn.clone();
        let _: i64 = redis::cmd("ZADD")
            .arg(revoked_key(tenant))
            .arg("GT")
            .arg(until.0)
            .arg(key)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn revoked(&self, tenant: &Tenant, now: Time) -> Result<Vec<String>, Error> {
        let mut conn = self.inner.conn.clone();
        let set = revoked_key(tenant);
        let (_, keys): (i64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(now.0)
            .cmd("ZRANGE")
            .arg(&set)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        Ok(keys)
    }
}

/// The tenant's sorted set of revoked login sessions (same hash tag as its other keys).
fn revoked_key(tenant: &Tenant) -> String {
    format!("{{{tenant}}}:revoked")
}

/// The dedicated connections' settings of the stream readers: the response timeout lets a blocking
/// `XREAD` run its course but still fails a half-open connection, so the reader notices and
/// reconnects.
pub(crate) fn reader_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(Duration::from_millis(XREAD_BLOCK_MS) + RESPONSE_TIMEOUT)
}

/// One entry of the event stream to the batch it carries.
fn decode_batch(id: &redis::streams::StreamId) -> Option<Arc<Applied>> {
    let v: Option<u64> = id.get("v");
    let e: Option<String> = id.get("e");
    let (Some(version), Some(e)) = (v, e) else {
        return None;
    };
    match serde_json::from_str::<Vec<Effect>>(&e) {
        Ok(effects) => Some(Arc::new(Applied { version, effects })),
        Err(err) => {
            tracing::warn!(%err, "undecodable effect batch in the event stream");
            None
        }
    }
}
