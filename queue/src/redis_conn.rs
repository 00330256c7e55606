//! The connection to the Redis master, directly or through Redis Sentinel, that follows a failover.
//!
//! # URLs
//! - `redis://HOST:PORT/DB`, `rediss://…`, `redis+unix:///path?db=N`: one Redis node, reconnected to
//!   the same address when the connection breaks (what the redis crate parses; `rediss` needs a TLS
//!   feature of the crate, which the workspace does not enable).
//! - `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]`: the sentinels
//!   (port 26379 when left out) that monitor the master named `MASTER_NAME`. The user name and
//!   password, if any, are for the Redis nodes (the master), not for the sentinels.
//!
//! # Following the master
//! [`RedisConn`] holds one multiplexed connection to the master, shared by every clone. The master
//! is found with the redis crate's [`Sentinel`] (`SENTINEL MASTERS`, then `ROLE` on the address it
//! names, so only a node that calls itself master is used), asking each sentinel in turn with a
//! timeout of its own. The connection is dropped, and the sentinels asked again by the next command,
//! when a command fails on the connection itself (I/O error, closed connection, timeout) or the node
//! answers `READONLY` or `MASTERDOWN` (it was demoted). A watcher task also asks the sentinels every
//! [`WATCH_INTERVAL`] and drops the connection when they name another master, which covers a master
//! demoted while this node sent nothing, and reconnects a dropped connection without waiting for a
//! command. The command that hit the broken connection fails (the store
//! reports it as `unavailable`); no command is retried here, since a write may or may not have been
//! applied. While no master can be reached, attempts to reconnect are spaced by [`RETRY_PAUSE`], and
//! commands in between fail at once.
//!
//! # Fencing a failover
//! Redis replicates asynchronously, and during a failover the old master keeps accepting writes
//! until it is reconfigured, which Sentinel does seconds after promoting the replica; whatever it
//! accepts in between is lost. So [`RedisConn`] also listens to every sentinel's events (pub/sub):
//! when the leading sentinel announces `+failover-state-send-slaveof-noone` for our master (it is
//! about to promote a replica), the shared connection is dropped and commands fail at once with an
//! error until `+switch-master` names the new master (or the failover is aborted, or
//! [`FENCE_MAX`] passes). For [`FENCE_MAX`] after a `+switch-master` the master it named is used
//! directly (after a `ROLE` check): the other sentinels learn of the switch a little later and
//! meanwhile still name the old master, which still calls itself master until Sentinel reconfigures
//! it. A `SENTINEL FAILOVER` then costs a second or two of refused commands
//! instead of silently lost writes. It narrows the window but cannot close it: a write the old master
//! executes after the replica stopped replicating is lost, which only `min-replicas-to-write` on the
//! Redis side can prevent. A crashed master loses whatever it had not replicated yet.
//!
//! [`RedisConn::dedicated`] opens a connection of its own to the current master, for blocking reads
//! (`XREAD BLOCK`). It fails its next command once the shared connection follows another master,
//! so a stream reader reconnects to the new master instead of reading from a demoted one.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Role, Value,
};

/// The URL scheme that selects Redis Sentinel.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// The sentinels' default port.
const SENTINEL_PORT: u16 = 26379;

/// How often the watcher asks the sentinels where the master is.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The least time between two attempts to reach the master after one failed.
pub const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long one sentinel may take to name the master (its answer and the `ROLE` check included).
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest commands are refused after a sentinel announced a promotion without a
/// `+switch-master` following it.
pub const FENCE_MAX: Duration = Duration::from_secs(10);

/// A sentinel event subscription with no message for this long is reopened (it may be half-open).
const EVENTS_IDLE: Duration = Duration::from_secs(30);

/// The sentinel events that fence, unfence or move the master.
const EVENTS: [&str; 2] = ["+failover-state-send-slaveof-noone", "+switch-master"];

/// The failover aborts, as a pattern.
const ABORTS: &str = "-failover-abort-*";

/// Where the master is.
enum Target {
    /// One node, always at the same address.
    Direct(Client),
    /// Asked of the sentinels, one [`Sentinel`] per sentinel address so each gets its own timeout.
    Sentinel {
        sentinels: Vec<(String, tokio::sync::Mutex<Sentinel>)>,
        master_name: String,
        node: SentinelNodeConnectionInfo,
    },
}

/// The live shared connection.
struct Live {
    id: u64,
    conn: MultiplexedConnection,
    client: Client,
    addr: String,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    next_id: u64,
    /// When the last attempt to reach the master failed, and why.
    failed: Option<(Instant, String)>,
    /// The sentinel that answered last, asked first next time.
    preferred: usize,
    /// Set while a failover is under way: commands fail until then.
    fenced_until: Option<Instant>,
    /// The master a `+switch-master` named, and when: trusted over the sentinels' answers for
    /// [`FENCE_MAX`], since the sentinels that did not lead the failover learn of it a little later
    /// and meanwhile still name the old master, which still calls itself master.
    switched: Option<(String, u16, Instant)>,
}

struct ConnInner {
    target: Target,
    db: i64,
    config: AsyncConnectionConfig,
    state: Mutex<State>,
    /// Held while (re)connecting, so concurrent commands wait for one attempt instead of each making
    /// their own.
    connecting: tokio::sync::Mutex<()>,
}

/// A connection to the current Redis master (see the module docs). Clones share it.
#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<ConnInner>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("master", &self.master_addr())
            .finish_non_exhaustive()
    }
}

/// A connection of its own to the master, for blocking reads (see [`RedisConn::dedicated`]).
pub struct Dedicated {
    conn: MultiplexedConnection,
    addr: String,
    owner: Weak<ConnInner>,
}

fn fenced() -> RedisError {
    RedisError::from((
        ErrorKind::MasterDown,
        "a Redis failover is under way; the master is being replaced",
    ))
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, "bad Redis URL", detail))
}

/// Decodes `%XX` escapes (as in a password with reserved characters).
fn percent_decode(s: &str) -> RedisResult<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("bad %-escape in the user info".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("user info is not UTF-8".into()))
}

/// What a `redis+sentinel://` URL says.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    sentinels: Vec<(String, u16)>,
    master_name: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

fn parse_sentinel_url(url: &str) -> RedisResult<SentinelUrl> {
    let rest = url
        .strip_prefix(SENTINEL_SCHEME)
        .ok_or_else(|| invalid(format!("not a {SENTINEL_SCHEME} URL")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = (!user.is_empty())
                .then(|| percent_decode(user))
                .transpose()?;
            let pass = pass
                .filter(|p| !p.is_empty())
                .map(percent_decode)
                .transpose()?;
            (user, pass)
        }
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = if let Some(v6) = h.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid(format!("bad sentinel address {h:?}")))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(invalid(format!("bad sentinel address {h:?}"))),
            }
        } else {
            match h.rsplit_once(':') {
                Some((host, p)) => (host, Some(p)),
                None => (h, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| invalid(format!("bad sentinel port in {h:?}")))?,
            None => SENTINEL_PORT,
        };
        if host.is_empty() {
            return Err(invalid(format!("empty sentinel host in {url:?}")));
        }
        sentinels.push((host.to_owned(), port));
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master_name = parts
        .next()
        .ok_or_else(|| invalid("the URL names no master (…/MASTER_NAME[/DB])".into()))?
        .to_owned();
    let db = match parts.next() {
        Some(d) => d
            .parse()
            .map_err(|_| invalid(format!("bad database number {d:?}")))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(invalid(
            "too many path segments (…/MASTER_NAME[/DB])".into(),
        ));
    }
    Ok(SentinelUrl {
        sentinels,
        master_name,
        db,
        username,
        password,
    })
}

/// An error of the connection itself, after which it is not used again.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown)
}

/// A reply that says the node is no longer a usable master.
fn demoted(v: &Value) -> bool {
    match v {
        Value::ServerError(e) => matches!(e.code(), "READONLY" | "MASTERDOWN"),
        _ => false,
    }
}

impl ConnInner {
    /// The shared connection, connecting (asking the sentinels) if there is none.
    async fn live(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(l) = &lock(&self.state).live {
            return Ok((l.id, l.conn.clone()));
        }
        self.check_fence()?;
        let _one = self.connecting.lock().await;
        {
            let st = lock(&self.state);
            if let Some(l) = &st.live {
                return Ok((l.id, l.conn.clone()));
            }
            if st.fenced_until.is_some_and(|u| u > Instant::now()) {
                return Err(fenced());
            }
            if let Some((at, why)) = &st.failed {
                if at.elapsed() < RETRY_PAUSE {
                    return Err(RedisError::from((
                        ErrorKind::IoError,
                        "no Redis master reachable",
                        why.clone(),
                    )));
                }
            }
        }
        match self.connect().await {
            Ok((client, conn)) => {
                let addr = client.get_connection_info().addr.to_string();
                let mut st = lock(&self.state);
                st.next_id += 1;
                let id = st.next_id;
                if st.failed.take().is_some() {
                    tracing::info!(master = %addr, "connected to the Redis master again");
                }
                st.live = Some(Live {
                    id,
                    conn: conn.clone(),
                    client,
                    addr,
                });
                Ok((id, conn))
            }
            Err(e) => {
                lock(&self.state).failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    async fn connect(&self) -> RedisResult<(Client, MultiplexedConnection)> {
        let client = self.master().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok((client, conn))
    }

    /// Fails while a failover is fenced.
    fn check_fence(&self) -> RedisResult<()> {
        let mut st = lock(&self.state);
        match st.fenced_until {
            Some(u) if u > Instant::now() => Err(fenced()),
            Some(_) => {
                st.fenced_until = None;
                tracing::warn!("no +switch-master after a promotion began; asking the sentinels");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Handles one sentinel event (see the module docs).
    fn on_event(&self, channel: &str, payload: &str) {
        let Target::Sentinel { master_name, .. } = &self.target else {
            return;
        };
        let words: Vec<&str> = payload.split_whitespace().collect();
        if channel == "+switch-master" {
            // `<name> <old ip> <old port> <new ip> <new port>`
            if words.first() != Some(&master_name.as_str()) {
                return;
            }
            let (Some(ip), Some(Ok(port))) = (words.get(3), words.get(4).map(|p| p.parse())) else {
                return;
            };
            let new = format!("{ip}:{port}");
            let mut st = lock(&self.state);
            st.fenced_until = None;
            st.switched = Some(((*ip).to_owned(), port, Instant::now()));
            if st.live.as_ref().is_some_and(|l| l.addr != new) {
                st.live = None;
            }
            tracing::warn!(master = %new, "the sentinels switched the Redis master");
            return;
        }
        // The other events name the master after an `@` (for a replica) or as the second word.
        let ours = match words.iter().position(|w| *w == "@") {
            Some(at) => words.get(at + 1) == Some(&master_name.as_str()),
            None => words.get(1) == Some(&master_name.as_str()),
        };
        if !ours {
            return;
        }
        let mut st = lock(&self.state);
        if channel == "+failover-state-send-slaveof-noone" {
            st.fenced_until = Some(Instant::now() + FENCE_MAX);
            st.live = None;
            tracing::warn!(
                "a sentinel is promoting a replica: Redis commands are refused until the switch"
            );
        } else if st.fenced_until.take().is_some() {
            tracing::warn!(event = channel, "the Redis failover was aborted");
        }
    }

    /// A client for the current master: the one node, or what the sentinels say.
    async fn master(&self) -> RedisResult<Client> {
        let (sentinels, master_name, node) = match &self.target {
            Target::Direct(c) => return Ok(c.clone()),
            Target::Sentinel {
                sentinels,
                master_name,
                node,
            } => (sentinels, master_name, node),
        };
        let (start, switched) = {
            let st = lock(&self.state);
            let recent = st
                .switched
                .clone()
                .filter(|(_, _, at)| at.elapsed() < FENCE_MAX);
            (st.preferred, recent)
        };
        if let Some((ip, port, _)) = switched {
            // Right after a switch, go to the master it named (see `State::switched`), once it
            // says it is master.
            let client = Client::open(ConnectionInfo {
                addr: ConnectionAddr::Tcp(ip, port),
                redis: node.redis_connection_info.clone().unwrap_or_default(),
            })?;
            let role = tokio::time::timeout(SENTINEL_TIMEOUT, async {
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("ROLE").query_async::<Role>(&mut c).await
            })
            .await;
            return match role {
                Ok(Ok(Role::Primary { .. })) => Ok(client),
                Ok(Ok(_)) => Err(RedisError::from((
                    ErrorKind::MasterDown,
                    "the new Redis master does not say master yet",
                ))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(RedisError::from((
                    ErrorKind::IoError,
                    "the new Redis master did not answer ROLE in time",
                ))),
            };
        }
        let mut last = None;
        for i in 0..sentinels.len() {
            let idx = (start + i) % sentinels.len();
            let (addr, sentinel) = &sentinels[idx];
            let asked = tokio::time::timeout(SENTINEL_TIMEOUT, async {
                sentinel
                    .lock()
                    .await
                    .async_master_for(master_name, Some(node))
                    .await
            })
            .await;
            match asked {
                Ok(Ok(client)) => {
                    lock(&self.state).preferred = idx;
                    return Ok(client);
                }
                Ok(Err(e)) => last = Some(format!("sentinel {addr}: {e}")),
                Err(_) => last = Some(format!("sentinel {addr}: no answer in time")),
            }
        }
        Err(RedisError::from((
            ErrorKind::MasterDown,
            "no sentinel named a reachable master",
            last.unwrap_or_default(),
        )))
    }

    /// Forgets connection `id` (if it is still the current one), so the next command reconnects.
    fn drop_live(&self, id: u64, why: &str) {
        let mut st = lock(&self.state);
        if st.live.as_ref().is_some_and(|l| l.id == id) {
            let l = st.live.take();
            tracing::warn!(
                master = l.map(|l| l.addr).unwrap_or_default(),
                why,
                "dropping the Redis connection; the next command asks for the master again"
            );
        }
    }

    fn after(&self, id: u64, result: Result<&[Value], &RedisError>) {
        match result {
            Err(e) if breaks_connection(e) => self.drop_live(id, &e.to_string()),
            Ok(values) if values.iter().any(demoted) => {
                self.drop_live(id, "the node is no longer master")
            }
            _ => {}
        }
    }

    fn live_addr(&self) -> Option<String> {
        lock(&self.state).live.as_ref().map(|l| l.addr.clone())
    }
}

impl RedisConn {
    /// Opens a connection for `url` (see the module docs for the forms). `config` sets the timeouts of
    /// the shared connection. With sentinels, a watcher task follows the master (it ends when the
    /// last clone is dropped), so this must be called inside a Tokio runtime.
    pub async fn connect(url: &str, config: AsyncConnectionConfig) -> RedisResult<Self> {
        let (target, db) = if url.starts_with(SENTINEL_SCHEME) {
            let u = parse_sentinel_url(url)?;
            let mut sentinels = Vec::new();
            for (host, port) in &u.sentinels {
                let info = ConnectionInfo {
                    addr: ConnectionAddr::Tcp(host.clone(), *port),
                    redis: RedisConnectionInfo::default(),
                };
                sentinels.push((
                    format!("{host}:{port}"),
                    tokio::sync::Mutex::new(Sentinel::build(vec![info])?),
                ));
            }
            let node = SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(RedisConnectionInfo {
                    db: u.db,
                    username: u.username,
                    password: u.password,
                    ..RedisConnectionInfo::default()
                }),
            };
            let target = Target::Sentinel {
                sentinels,
                master_name: u.master_name,
                node,
            };
            (target, u.db)
        } else {
            let client = Client::open(url)?;
            let db = client.get_connection_info().redis.db;
            (Target::Direct(client), db)
        };
        let watch = matches!(target, Target::Sentinel { .. });
        let conn = RedisConn {
            inner: Arc::new(ConnInner {
                target,
                db,
                config,
                state: Mutex::default(),
                connecting: tokio::sync::Mutex::new(()),
            }),
        };
        conn.inner.live().await?;
        if watch {
            tokio::spawn(watch_master(Arc::downgrade(&conn.inner)));
            if let Target::Sentinel { sentinels, .. } = &conn.inner.target {
                for (addr, _) in sentinels {
                    tokio::spawn(sentinel_events(addr.clone(), Arc::downgrade(&conn.inner)));
                }
            }
        }
        Ok(conn)
    }

    /// True when connected through sentinels.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.inner.target, Target::Sentinel { .. })
    }

    /// The address (`host:port`) of the master the shared connection is on, if it is connected.
    pub fn master_addr(&self) -> Option<String> {
        self.inner.live_addr()
    }

    /// Checks that the master answers: `PING` on one node; with sentinels, `ROLE`, which must say
    /// master (a demoted node still answers `PING`).
    pub async fn check(&self) -> RedisResult<()> {
        let mut me = self.clone();
        if !self.is_sentinel() {
            let _: String = redis::cmd("PING").query_async(&mut me).await?;
            return Ok(());
        }
        let (id, mut conn) = self.inner.live().await?;
        let role: RedisResult<Role> = redis::cmd("ROLE").query_async(&mut conn).await;
        match role {
            Ok(Role::Primary { .. }) => Ok(()),
            Ok(_) => {
                self.inner.drop_live(id, "ROLE does not say master");
                Err(RedisError::from((
                    ErrorKind::ReadOnly,
                    "the Redis node is no longer master",
                )))
            }
            Err(e) => {
                if breaks_connection(&e) {
                    self.inner.drop_live(id, &e.to_string());
                }
                Err(e)
            }
        }
    }

    /// A connection of its own to the current master, for a blocking command that must not stall the
    /// shared connection. Its commands fail once the shared connection has moved to another master
    /// (or it breaks); open a new one then.
    pub async fn dedicated(&self, config: &AsyncConnectionConfig) -> RedisResult<Dedicated> {
        let (id, _) = self.inner.live().await?;
        let (client, addr) = {
            let st = lock(&self.inner.state);
            match &st.live {
                Some(l) if l.id == id => (l.client.clone(), l.addr.clone()),
                _ => {
                    return Err(RedisError::from((
                        ErrorKind::IoError,
                        "the Redis connection moved while opening a dedicated one",
                    )))
                }
            }
        };
        match client
            .get_multiplexed_async_connection_with_config(config)
            .await
        {
            Ok(conn) => Ok(Dedicated {
                conn,
                addr,
                owner: Arc::downgrade(&self.inner),
            }),
            Err(e) => {
                // The master the shared connection knows is not reachable any more: ask again.
                if breaks_connection(&e) {
                    self.inner.drop_live(id, &e.to_string());
                }
                Err(e)
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (id, mut conn) = self.inner.live().await?;
            let result = conn.req_packed_command(cmd).await;
            self.inner
                .after(id, result.as_ref().map(std::slice::from_ref));
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (id, mut conn) = self.inner.live().await?;
            let result = conn.req_packed_commands(cmd, offset, count).await;
            self.inner.after(id, result.as_ref().map(Vec::as_slice));
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

impl Dedicated {
    /// An error when the shared connection now follows another master.
    fn moved(&self) -> Option<RedisError> {
        let owner = self.owner.upgrade()?;
        let now = owner.live_addr()?;
        (now != self.addr).then(|| {
            RedisError::from((
                ErrorKind::IoError,
                "the Redis master moved",
                format!("{} -> {now}", self.addr),
            ))
        })
    }
}

impl ConnectionLike for Dedicated {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if let Some(e) = self.moved() {
                return Err(e);
            }
            self.conn.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if let Some(e) = self.moved() {
                return Err(e);
            }
            self.conn.req_packed_commands(cmd, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Asks the sentinels where the master is every [`WATCH_INTERVAL`], and drops the shared connection
/// when they name another one. Ends when the last [`RedisConn`] is dropped.
async fn watch_master(inner: Weak<ConnInner>) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Some((id, addr)) = lock(&inner.state)
            .live
            .as_ref()
            .map(|l| (l.id, l.addr.clone()))
        else {
            // Not connected: connect now (unless fenced), so that the dedicated connections of the
            // Stream readers notice the new master even while no other command is sent.
            let _ = inner.live().await;
            continue;
        };
        // An error here means no master right now; commands find that out for themselves.
        if let Ok(client) = inner.master().await {
            let now = client.get_connection_info().addr.to_string();
            if now != addr {
                inner.drop_live(id, &format!("the sentinels name {now} as master"));
            }
        }
    }
}

/// Follows one sentinel's events (see the module docs) until the last [`RedisConn`] is dropped.
async fn sentinel_events(addr: String, inner: Weak<ConnInner>) {
    use futures_util::StreamExt;
    let Ok(client) = Client::open(format!("redis://{addr}/")) else {
        return;
    };
    let mut failures: u32 = 0;
    loop {
        if inner.strong_count() == 0 {
            return;
        }
        let subscribed = tokio::time::timeout(SENTINEL_TIMEOUT, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&EVENTS[..]).await?;
            ps.psubscribe(ABORTS).await?;
            Ok::<_, RedisError>(ps)
        })
        .await;
        let mut stream = match subscribed {
            Ok(Ok(ps)) => {
                failures = 0;
                ps.into_on_message()
            }
            Ok(Err(err)) => {
                tracing::debug!(%err, sentinel = %addr, "cannot follow the sentinel's events");
                failures = failures.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(100 << failures.min(5))).await;
                continue;
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                continue;
            }
        };
        loop {
            let msg = match tokio::time::timeout(EVENTS_IDLE, stream.next()).await {
                Ok(Some(msg)) => msg,
                // Closed, or quiet for long: reopen (also checks that the store is still there).
                Ok(None) | Err(_) => break,
            };
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let payload: String = msg.get_payload().unwrap_or_default();
            inner.on_event(msg.get_channel_name(), &payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let u =
            parse_sentinel_url("redis+sentinel://127.0.0.1:26379,h2:26380,h3/mymaster/2").unwrap();
        assert_eq!(
            u.sentinels,
            vec![
                ("127.0.0.1".into(), 26379),
                ("h2".into(), 26380),
                ("h3".into(), SENTINEL_PORT)
            ]
        );
        assert_eq!((u.master_name.as_str(), u.db), ("mymaster", 2));
        assert_eq!((u.username, u.password), (None, None));

        let u = parse_sentinel_url("redis+sentinel://:p%40ss@[::1]:5000/m").unwrap();
        assert_eq!(u.sentinels, vec![("::1".into(), 5000)]);
        assert_eq!((u.username, u.password.as_deref()), (None, Some("p@ss")));
        assert_eq!(u.db, 0);

        let u = parse_sentinel_url("redis+sentinel://me:pw@h:1/m/").unwrap();
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("me"), Some("pw"))
        );

        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m/1/2",
            "redis+sentinel://:1/m",
            "redis+sentinel://h,/m",
        ] {
            assert!(parse_sentinel_url(bad).is_err(), "{bad}");
        }
    }
}
