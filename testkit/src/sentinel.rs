//! A Redis Sentinel deployment on loopback: one master, one replica and three sentinels.
//!
//! Every daemon gets a free port and a folder of its own under one temporary folder (sentinels
//! rewrite their configuration file, so each has its own), no persistence, and a log file there,
//! whose tail is shown when a daemon dies. They all run from Debian's `redis-server` package
//! (`redis-server CONF --sentinel` is a sentinel), and are killed when the cluster is dropped.
//!
//! The sentinels use quorum 2, `down-after-milliseconds` [`DOWN_AFTER_MS`] and `failover-timeout`
//! [`FAILOVER_TIMEOUT_MS`], so a killed master is replaced within a few seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, FromRedisValue};

/// How long a sentinel waits before it considers an unresponsive master down.
pub const DOWN_AFTER_MS: u64 = 1000;

/// The sentinels' `failover-timeout`: also how long a failed failover blocks the next attempt (twice
/// this).
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;

/// How many sentinels must agree that the master is down.
pub const QUORUM: usize = 2;

/// How long any step of starting or failing over may take before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One daemon: its process (gone once killed), port and log file.
struct Daemon {
    what: String,
    port: u16,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Daemon {
    fn spawn(what: String, port: u16, log: PathBuf, args: &[String]) -> Daemon {
        let child = Command::new("redis-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). The Sentinel tests need a real Redis: install \
                     it with `apt-get install -y redis-server` (cargo xtask test installs it in CI)."
                )
            });
        Daemon {
            what,
            port,
            log,
            child: Mutex::new(Some(child)),
        }
    }

    /// Panics with the end of its log if the process exited (and was not killed on purpose).
    fn check_alive(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{} on port {} exited ({status}); the end of {}:\n{}",
                    self.what,
                    self.port,
                    self.log.display(),
                    tail.join("\n")
                );
            }
        }
    }

    fn is_running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// SIGKILL, and reaps it.
    fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs one command on the server at `port`, with short timeouts.
async fn query<T: FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(2));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    cmd.query_async(&mut conn).await
}

/// `INFO replication` of the server at `port` as `key → value`.
async fn replication(port: u16) -> redis::RedisResult<Vec<(String, String)>> {
    let info: String = query(port, redis::cmd("INFO").arg("replication")).await?;
    Ok(info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A master, a replica and three sentinels on loopback (see the module docs). Dropping it kills them
/// all and removes their folder.
pub struct RedisSentinelCluster {
    master_name: String,
    /// The data nodes: the first started as master, the second as its replica.
    nodes: Vec<Daemon>,
    sentinels: Vec<Daemon>,
    folder: tempfile::TempDir,
}

impl RedisSentinelCluster {
    /// Starts the master, its replica (and waits until it is in sync), then the sentinels, and waits
    /// until every sentinel knows the replica and the two other sentinels. Fails the test (never skips
    /// it) if `redis-server` is missing or a daemon dies.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sportello-sentinel-")
            .tempdir()
            .expect("temporary folder");
        let master_name = "sportello".to_owned();
        let mut nodes = Vec::new();
        for (i, role) in ["master", "replica"].into_iter().enumerate() {
            let port = crate::free_port();
            let folder = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&folder).expect("node folder");
            let log = folder.join("redis.log");
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &folder.display().to_string(),
                "--logfile",
                &log.display().to_string(),
                // A promoted replica serves the other node at once (the default waits 5 s).
                "--repl-diskless-sync-delay",
                "0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some(master) = nodes.first() {
                let master: &Daemon = master;
                args.extend([
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    master.port.to_string(),
                ]);
            }
            nodes.push(Daemon::spawn(format!("redis {role}"), port, log, &args));
        }
        let mut sentinels = Vec::new();
        let mut cluster = RedisSentinelCluster {
            master_name,
            nodes,
            sentinels: Vec::new(),
            folder: dir,
        };
        for n in &cluster.nodes {
            cluster
                .wait_for(&format!("{} answers PING", n.what), || async {
                    query::<String>(n.port, &redis::cmd("PING")).await.is_ok()
                })
                .await;
        }
        let replica = cluster.nodes[1].port;
        cluster
            .wait_for("the replica is in sync", || async move {
                replication(replica)
                    .await
                    .is_ok_and(|r| field(&r, "master_link_status") == Some("up"))
            })
            .await;
        let master_port = cluster.nodes[0].port;
        for i in 0..3 {
            let port = crate::free_port();
            let folder = cluster.folder.path().join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&folder).expect("sentinel folder");
            let log = folder.join("sentinel.log");
            let conf = folder.join("sentinel.conf");
            let name = &cluster.master_name;
            std::fs::write(
                &conf,
                format!(
                    "port {port}\n\
                     bind 127.0.0.1\n\
                     dir {dir}\n\
                     logfile {log}\n\
                     sentinel monitor {name} 127.0.0.1 {master_port} {QUORUM}\n\
                     sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
                     sentinel parallel-syncs {name} 1\n",
                    dir = folder.display(),
                    log = log.display(),
                ),
            )
            .expect("sentinel.conf");
            let args = [conf.display().to_string(), "--sentinel".to_owned()];
            sentinels.push(Daemon::spawn(format!("sentinel {i}"), port, log, &args));
        }
        cluster.sentinels = sentinels;
        let name = cluster.master_name.clone();
        for s in &cluster.sentinels {
            let (port, name) = (s.port, name.clone());
            cluster
                .wait_for(
                    &format!("{} knows the replica and the other sentinels", s.what),
                    || {
                        let name = name.clone();
                        async move {
                            let Ok(info) = sentinel_master(port, &name).await else {
                                return false;
                            };
                            field(&info, "num-slaves") == Some("1")
                                && field(&info, "num-other-sentinels") == Some("2")
                        }
                    },
                )
                .await;
        }
        cluster
    }

    /// The `redis+sentinel://` URL of the three sentinels and the master name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.master_name)
    }

    /// The name the sentinels monitor the master under.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The data nodes' ports (the first started as master).
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The master's port as the first sentinel that answers reports it.
    pub async fn current_master_port(&self) -> u16 {
        self.check_alive();
        let mut last = String::new();
        for s in &self.sentinels {
            if !s.is_running() {
                continue;
            }
            match master_addr(s.port, &self.master_name).await {
                Ok(port) => return port,
                Err(e) => last = e.to_string(),
            }
        }
        panic!("no sentinel reports the master: {last}");
    }

    /// `SENTINEL FAILOVER`, then waits until every sentinel names the new master, it says it is
    /// master, and the old master (demoted by the sentinels) is in sync with it. Returns the new
    /// master's port.
    pub async fn failover(&self) -> u16 {
        let old = self.current_master_port().await;
        let started = Instant::now();
        loop {
            let mut refused = String::new();
            let mut asked = false;
            for s in &self.sentinels {
                let r: redis::RedisResult<String> = query(
                    s.port,
                    redis::cmd("SENTINEL")
                        .arg("FAILOVER")
                        .arg(&self.master_name),
                )
                .await;
                match r {
                    Ok(_) => {
                        asked = true;
                        break;
                    }
                    Err(e) => refused = e.to_string(),
                }
            }
            if asked {
                break;
            }
            // NOGOODSLAVE or INPROGRESS right after another failover: the sentinels still settle.
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "no sentinel accepted SENTINEL FAILOVER: {refused}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let new = self.wait_for_new_master(old).await;
        let old_node = self.node(old);
        if old_node.is_running() {
            self.wait_for(
                &format!("the old master (port {old}) replicates the new one (port {new})"),
                || async move {
                    replication(old).await.is_ok_and(|r| {
                        field(&r, "role") == Some("slave")
                            && field(&r, "master_port") == Some(&new.to_string())
                            && field(&r, "master_link_status") == Some("up")
                    })
                },
            )
            .await;
        }
        new
    }

    /// Kills the current master with SIGKILL and returns its port. It does not wait for the failover
    /// (see [`RedisSentinelCluster::wait_for_new_master`]).
    pub async fn kill_master(&self) -> u16 {
        let port = self.current_master_port().await;
        self.node(port).kill();
        port
    }

    /// Waits until every running sentinel names a master other than the one on `old`, and that node
    /// says it is master. Returns its port.
    pub async fn wait_for_new_master(&self, old: u16) -> u16 {
        let name = self.master_name.clone();
        let ports: Vec<u16> = self
            .sentinels
            .iter()
            .filter(|s| s.is_running())
            .map(|s| s.port)
            .collect();
        let found = std::sync::Arc::new(Mutex::new(0u16));
        let f = found.clone();
        self.wait_for(
            &format!("the sentinels name a new master (the old one is on port {old})"),
            || {
                let (name, ports, f) = (name.clone(), ports.clone(), f.clone());
                async move {
                    let mut seen = None;
                    for p in ports {
                        match master_addr(p, &name).await {
                            Ok(m) if m != old && seen.is_none_or(|s| s == m) => seen = Some(m),
                            _ => return false,
                        }
                    }
                    let Some(m) = seen else { return false };
                    let is_master = replication(m)
                        .await
                        .is_ok_and(|r| field(&r, "role") == Some("master"));
                    if is_master {
                        *f.lock().unwrap_or_else(|e| e.into_inner()) = m;
                    }
                    is_master
                }
            },
        )
        .await;
        let port = *found.lock().unwrap_or_else(|e| e.into_inner());
        port
    }

    fn node(&self, port: u16) -> &Daemon {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// Panics if a daemon that was not killed on purpose has exited.
    fn check_alive(&self) {
        for d in self.nodes.iter().chain(&self.sentinels) {
            d.check_alive();
        }
    }

    /// Polls `ready` until it says yes; fails the test after [`STEP_TIMEOUT`] or when a daemon dies.
    async fn wait_for<F, Fut>(&self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            self.check_alive();
            if ready().await {
                return;
            }
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "timed out waiting until {what} (logs under {})",
                self.dir().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The folder with every daemon's folder and log.
    pub fn dir(&self) -> &Path {
        self.folder.path()
    }
}

/// `SENTINEL MASTER name` as `field → value`.
async fn sentinel_master(port: u16, name: &str) -> redis::RedisResult<Vec<(String, String)>> {
    let flat: Vec<String> = query(port, redis::cmd("SENTINEL").arg("MASTER").arg(name)).await?;
    Ok(flat
        .chunks(2)
        .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
        .collect())
}

/// The master's port according to the sentinel on `port`.
async fn master_addr(port: u16, name: &str) -> redis::RedisResult<u16> {
    let (_, p): (String, u16) = query(
        port,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name),
    )
    .await?;
    Ok(p)
}

impl Drop for RedisSentinelCluster {
    fn drop(&mut self) {
        // Sentinels first, so they do not start a failover while the data nodes go away.
        for d in self.sentinels.iter().chain(&self.nodes) {
            d.kill();
        }
    }
}
