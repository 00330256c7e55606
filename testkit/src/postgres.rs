//! A private PostgreSQL server for tests (Debian's `postgresql`, the newest
//! `/usr/lib/postgresql/<N>/bin/`) on loopback, for the history database's PostgreSQL tests.
//!
//! **The machine's own clusters are never used or touched.** [`PostgresServer::start`] runs
//! `initdb -D <folder>/data -A trust -U sportello --no-sync -E UTF8 --locale=C` in a temporary
//! folder of its own, then `postgres -D <folder>/data -p <port> -k <folder>` in the foreground, as
//! a child of testkit in a process group of its own, listening on `127.0.0.1` only, on a free port,
//! with its Unix socket in its folder, without durability (`fsync`, `synchronous_commit` and
//! `full_page_writes` off). Debian's `main` cluster, `/etc/postgresql` and the system service
//! are never read or written. Authentication is `trust`: [`PostgresServer::url`] has no password.
//! One server can hold many databases ([`PostgresServer::create_database`]), so two tests or two
//! server nodes can share it.
//!
//! **Root.** PostgreSQL refuses to run as root. When the test process is root (as in CI), the
//! folder is given to the `postgres` system user (created by Debian's package; `nobody` when it is
//! absent), and `initdb` and `postgres` run as that user: the child drops to its uid and gid
//! (`Command::uid`/`gid`, with no supplementary groups) before it execs, so no `runuser` or `su`
//! sits in between and the daemon stays tied to the test process. `psql` needs no such care: it
//! connects over TCP.
//!
//! **A daemon that dies is reported.** If `postgres` exits before it accepts connections
//! (`pg_isready`), or does not accept them within [`START_TIMEOUT`], `start` fails with the tail of
//! its log (a port taken under it is retried on another one); missing binaries name the package.
//! [`PostgresServer::check`] tells a running server from one that died later, and
//! [`PostgresServer::create_database`] and [`PostgresServer::psql`] say so. Dropping the server
//! asks for a fast shutdown (SIGINT), then removes its folder; testkit's common daemon code
//! (`testkit/src/daemon.rs`) spawns and watches it, and SIGTERMs then SIGKILLs it if it lingers.
//! If the test process dies, the kernel kills the postmaster, and its backends (each in a session
//! of its own) exit when they notice.

use std::ffi::CString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::daemon::{retry_taken_port, wait_ready, Launch, Watched};

/// Where Debian installs each major version's binaries (`<N>/bin`).
const LIB: &str = "/usr/lib/postgresql";
const INSTALL: &str =
    "install Debian's package `postgresql` (cargo xtask deps, or apt-get install -y postgresql)";
/// The superuser `initdb` creates, and the database `start` creates for [`PostgresServer::url`].
pub const USER: &str = "sportello";
/// How long the server may take to accept connections after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the drop waits for the fast shutdown before the common SIGTERM, then SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// The server's log (its standard output and error), in its folder.
const LOG: &str = "postgres.log";
/// The log lines a failure report quotes.
const TAIL: usize = 30;

/// A private PostgreSQL server (see the module docs), stopped when dropped.
pub struct PostgresServer {
    /// Declared before `dir`: dropping it stops the daemon before the folder is removed.
    daemon: Watched,
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("dir", &self.dir.path())
            .field("bin", &self.bin)
            .field("port", &self.port)
            .field("pid", &self.daemon.pid())
            .finish_non_exhaustive()
    }
}

impl PostgresServer {
    /// Creates a cluster in a temporary folder, starts it on a free loopback port, waits until it
    /// accepts connections (at most [`START_TIMEOUT`]) and creates the database `sportello`.
    /// Fails if PostgreSQL is not installed, or if the server dies or does not answer (with the
    /// tail of its log). Blocking: about 1.5 s, mostly `initdb`.
    pub fn start() -> anyhow::Result<PostgresServer> {
        let bin = bin_dir()?;
        let owner = owner()?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-postgres-")
            .tempdir()
            .context("temporary PostgreSQL folder")?;
        if let Some((name, uid, gid)) = &owner {
            std::os::unix::fs::chown(dir.path(), Some(*uid), Some(*gid))
                .with_context(|| format!("giving {} to {name}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8"])
            .arg("--locale=C")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        as_owner(&mut initdb, &owner);
        // As root, the child enters the folder as `owner`: a TMPDIR it cannot reach fails here.
        let unreachable = owner.as_ref().map_or(String::new(), |(name, ..)| {
            format!(" ({name} must reach that folder: a TMPDIR such as /tmp)")
        });
        let out = initdb.output().with_context(|| {
            let dir = dir.path().display();
            format!("cannot run {}/initdb in {dir}{unreachable}", bin.display())
        })?;
        if !out.status.success() {
            bail!(
                "initdb of the private PostgreSQL in {} failed ({}){unreachable}:\n{}{}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (daemon, port) =
            retry_taken_port("testkit::postgres", 3, || launch(&bin, dir.path(), &owner))?;
        let server = PostgresServer {
            daemon,
            dir,
            bin,
            port,
        };
        server.create_database(USER)?;
        Ok(server)
    }

    /// `postgres://sportello@127.0.0.1:<port>/sportello`: the database `start` created, for sqlx
    /// or `psql` (trust authentication, no password, no TLS).
    pub fn url(&self) -> String {
        self.database_url(USER)
    }

    /// `postgres://sportello@127.0.0.1:<port>/<name>`, whether or not that database exists.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates the empty database `name` (letters, digits and `_`, not starting with a digit, at
    /// most 63 bytes) and returns its URL ([`PostgresServer::database_url`]).
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bail!("{name:?} is not a database name testkit::postgres accepts ([A-Za-z_][A-Za-z0-9_]*)");
        }
        self.psql(
            &self.database_url("postgres"),
            &format!("CREATE DATABASE \"{name}\""),
        )
        .with_context(|| format!("creating the database {name}"))?;
        Ok(self.database_url(name))
    }

    /// Runs `sql` with this version's `psql` on `url` (stopping at the first error, without
    /// `~/.psqlrc`) and returns what it printed: unaligned rows without headers, `|` between
    /// columns, one row a line.
    pub fn psql(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        self.check()?;
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-d", url, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}/psql: {INSTALL}", self.bin.display()))?;
        if !out.status.success() {
            self.check()?;
            bail!(
                "psql {url} -c {sql:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The private folder: `data/`, the Unix socket and [`PostgresServer::log`]'s file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    /// `Ok` while the server runs; how it ended, with the tail of its log, once it exited.
    pub fn check(&self) -> anyhow::Result<()> {
        self.daemon.check(|| {
            format!(
                "log tail:\n{}",
                crate::daemon::log_tail(&self.dir.path().join(LOG), TAIL)
            )
        })
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Fast shutdown: SIGTERM (what the common stop sends) is PostgreSQL's "smart" shutdown,
        // which waits for every client to leave; and the backends are not in the postmaster's
        // process group (each calls setsid), so the postmaster must end them itself.
        if self.daemon.check(String::new).is_ok() {
            crate::daemon::kill_group(self.daemon.pid(), libc::SIGINT);
            let deadline = Instant::now() + STOP_WAIT;
            while self.daemon.check(String::new).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Then the fields drop: `daemon` (SIGTERM, then SIGKILL, if it still runs), then `dir`.
    }
}

/// The newest `/usr/lib/postgresql/<N>/bin` with the binaries testkit runs.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let newest = std::fs::read_dir(LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, p)| p.join("bin/postgres").exists())
        .max_by_key(|(n, _)| *n);
    let Some((_, dir)) = newest else {
        bail!("PostgreSQL is not installed (no {LIB}/<N>/bin/postgres): {INSTALL}");
    };
    let bin = dir.join("bin");
    for tool in ["initdb", "pg_isready", "psql"] {
        if !bin.join(tool).exists() {
            bail!("{}/{tool} is missing: {INSTALL}", bin.display());
        }
    }
    Ok(bin)
}

/// Who runs `initdb` and `postgres`: `None` (this process's user) unless this process is root,
/// then the `postgres` system user, or `nobody` (name, uid, gid).
fn owner() -> anyhow::Result<Option<(String, u32, u32)>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some((uid, gid)) = system_user(name) {
            return Ok(Some((name.to_owned(), uid, gid)));
        }
    }
    bail!("running as root, and neither the user postgres nor nobody exists to run PostgreSQL as")
}

/// The uid and gid of the user `name`, if it exists.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes only into `pwd` and `buf` (of the given length) and `found`.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Makes `command` run as `owner` (see [`owner`]), if any.
fn as_owner(command: &mut Command, owner: &Option<(String, u32, u32)>) {
    if let Some((_, uid, gid)) = owner {
        command.uid(*uid).gid(*gid);
    }
}

/// One launch of `postgres` on a free port, up to its first accepted connection.
fn launch(
    bin: &Path,
    dir: &Path,
    owner: &Option<(String, u32, u32)>,
) -> Result<(Watched, u16), Launch> {
    let port = crate::free_port();
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"]);
    as_owner(&mut command, owner);
    let daemon = Watched::spawn("PostgreSQL", dir, LOG, command, INSTALL)?;
    let log = dir.join(LOG);
    let tail = || crate::daemon::log_tail(&log, TAIL);
    let ready = wait_ready(
        START_TIMEOUT,
        Duration::from_millis(50),
        || daemon.check(|| format!("log tail:\n{}", tail())),
        || pg_isready(bin, port),
    );
    match ready {
        Ok(true) => Ok((daemon, port)),
        Ok(false) => Err(Launch::Failed(format!(
            "the private PostgreSQL (pid {}, {}) does not accept connections on 127.0.0.1:{port} \
             within {START_TIMEOUT:?}; log tail:\n{}",
            daemon.pid(),
            dir.display(),
            tail()
        ))),
        Err(e) if tail().contains("Address already in use") => {
            Err(Launch::PortTaken(format!("{e:#}")))
        }
        Err(e) => Err(Launch::Failed(format!(
            "the private PostgreSQL died while starting: {e:#}"
        ))),
    }
}

/// Whether the server on `port` accepts connections (`pg_isready` exits with 0).
fn pg_isready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", USER, "-d", "postgres", "-t", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_databases_on_one_server_then_the_drop_stops_it() {
        let started = Instant::now();
        let server = PostgresServer::start().unwrap();
        eprintln!("started in {:?}: {server:?}", started.elapsed());
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        assert_ne!(uid.split_whitespace().next(), Some("0"), "never as root");
        let a = server.create_database("history_a").unwrap();
        let b = server.create_database("history_b").unwrap();
        assert_eq!(
            a,
            format!("postgres://sportello@127.0.0.1:{}/history_a", server.port())
        );
        for (url, x) in [(&a, 1), (&b, 2)] {
            let out = Command::new(server.bin.join("psql"))
                .args(["-X", url, "-c"])
                .arg(format!("create table t(x int); insert into t values ({x})"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        assert_eq!(server.psql(&a, "select x from t").unwrap().trim(), "1");
        assert_eq!(server.psql(&b, "select x from t").unwrap().trim(), "2");
        assert_eq!(server.psql(&server.url(), "select 1").unwrap().trim(), "1");
        let e = server.create_database("history_a").unwrap_err();
        assert!(format!("{e:#}").contains("already exists"), "{e:#}");
        assert!(server.create_database("x; drop").is_err());

        let (port, dir) = (server.port(), server.dir().to_owned());
        let stopping = Instant::now();
        drop(server);
        eprintln!("stopped in {:?}", stopping.elapsed());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(!dir.exists(), "the folder is removed");
    }

    #[test]
    fn a_server_that_dies_is_reported() {
        let server = PostgresServer::start().unwrap();
        crate::daemon::kill_group(server.pid(), libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.check().is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = format!("{:#}", server.create_database("late").unwrap_err());
        assert!(e.contains("the private PostgreSQL (pid "), "{e}");
        assert!(e.contains("was killed by signal 9"), "{e}");
    }
}
