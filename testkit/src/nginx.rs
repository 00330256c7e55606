//! A private nginx for the tests: the TLS reverse proxy of `deploy/nginx/` in front of a real
//! `sportello` (`signalling/tests/deploy_tls_proxy.rs`).
//!
//! **The machine's own nginx is never used or touched.** [`Nginx::start`] writes a main
//! configuration of its own into a temporary folder, with the caller's http-context text (a
//! `conf.d` file such as `deploy/nginx/sportello.conf`) included in its `http` block, and runs
//! `nginx -p <folder>/ -c <folder>/nginx.conf -e <folder>/error.log` in the foreground
//! (`daemon off`) as a child of testkit, in a process group of its own, killed when the [`Nginx`]
//! is dropped (and by the kernel if the test process dies first). The pid file, the logs and every
//! temporary path (client bodies, proxy buffers) are in the folder; `/etc/nginx` is not read.
//!
//! **Which nginx.** `<workspace>/target/tools/bin/nginx` (Debian's 1.22, unpacked from its `.deb`
//! by `cargo xtask deps` without installing its service), else `nginx` on `PATH` or in
//! `/usr/sbin`. None: [`Nginx::start`] fails and says to run `cargo xtask deps`.
//!
//! **A daemon that dies is reported.** The configuration is checked first with `nginx -t`, whose
//! message is returned as it is. If the process then exits before the caller's port accepts a
//! connection, or the port does not answer within [`START_TIMEOUT`], `start` fails with the tail of
//! `error.log`. [`Nginx::check`] tells a running daemon from one that died later. Starting,
//! watching and stopping the process is testkit's common daemon code (`testkit/src/daemon.rs`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::daemon::{wait_ready, Watched};

/// How long nginx may take to accept connections on the caller's port.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The log lines a failure report quotes.
const TAIL: usize = 25;
const INSTALL: &str = "run cargo xtask deps (it puts Debian's nginx in target/tools/bin/)";

/// The nginx binary: the workspace's `target/tools/bin/nginx`, else one on `PATH` or in
/// `/usr/sbin`.
pub fn binary() -> anyhow::Result<PathBuf> {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/nginx");
    let mut candidates = vec![tools];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nginx")));
    }
    candidates.push(PathBuf::from("/usr/sbin/nginx"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("nginx is missing: {INSTALL}"))
}

/// A private nginx (see the module docs), stopped when dropped.
pub struct Nginx {
    /// Declared before `dir`: dropping it stops the daemon before the folder is removed.
    daemon: Watched,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Nginx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nginx")
            .field("dir", &self.dir.path())
            .field("pid", &self.daemon.pid())
            .finish_non_exhaustive()
    }
}

impl Nginx {
    /// Writes `files` (certificates, keys…) by name into a fresh private folder, then the text
    /// `site` returns for that folder (http-context directives: `upstream`, `server`, `map`…,
    /// naming those files by their path in it) beside a private main configuration; checks it
    /// with `nginx -t`, starts nginx and waits until `ready_port` on 127.0.0.1 accepts a
    /// connection.
    pub fn start(
        site: impl FnOnce(&Path) -> String,
        files: &[(&str, &[u8])],
        ready_port: u16,
    ) -> anyhow::Result<Nginx> {
        let bin = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-nginx-")
            .tempdir()
            .context("temporary nginx folder")?;
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes)
                .with_context(|| format!("write {name} for nginx"))?;
        }
        std::fs::create_dir(dir.path().join("tmp")).context("nginx temp folder")?;
        std::fs::write(dir.path().join("site.conf"), site(dir.path())).context("site.conf")?;
        std::fs::write(dir.path().join("nginx.conf"), main_conf(dir.path()))
            .context("nginx.conf")?;

        let args = |command: &mut Command| {
            command
                .arg("-p")
                .arg(format!("{}/", dir.path().display()))
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .current_dir(dir.path())
                .stdin(Stdio::null());
        };
        let mut test = Command::new(&bin);
        args(&mut test);
        let checked = test
            .arg("-t")
            .output()
            .with_context(|| format!("cannot run {}: {INSTALL}", bin.display()))?;
        if !checked.status.success() {
            bail!(
                "nginx -t refuses the configuration:\n{}",
                String::from_utf8_lossy(&checked.stderr)
            );
        }

        let mut command = Command::new(&bin);
        args(&mut command);
        // SIGQUIT would wait for open WebSockets; SIGTERM (the drop's) is nginx's fast shutdown.
        let daemon = Watched::spawn("nginx", dir.path(), "stdout.log", command, INSTALL)?
            .with_stop_grace(Duration::from_secs(3));
        let nginx = Nginx { daemon, dir };
        match wait_ready(
            START_TIMEOUT,
            Duration::from_millis(20),
            || nginx.check(),
            || TcpStream::connect(("127.0.0.1", ready_port)).is_ok(),
        ) {
            Ok(true) => Ok(nginx),
            Ok(false) => bail!(
                "the private nginx (pid {}, {}) does not accept connections on \
                 127.0.0.1:{ready_port} within {START_TIMEOUT:?}; error.log tail:\n{}",
                nginx.pid(),
                nginx.dir.path().display(),
                nginx.error_log_tail()
            ),
            Err(e) => Err(e.context("the private nginx died while starting")),
        }
    }

    /// The private folder (configuration, logs, temporary files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's process id (the master).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The access log so far (nginx's `combined` format, with the upstream's status and address).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The last lines of `error.log`.
    pub fn error_log_tail(&self) -> String {
        crate::daemon::log_tail(&self.dir.path().join("error.log"), TAIL)
    }

    /// `Ok` while the daemon runs; how it ended, with the tail of its error log, once it exited.
    pub fn check(&self) -> anyhow::Result<()> {
        self.daemon.check(|| {
            format!(
                "error.log tail:\n{}\nstdout:\n{}",
                self.error_log_tail(),
                std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
            )
        })
    }
}

/// The private main configuration: one worker, everything in `dir`, the site included.
fn main_conf(dir: &Path) -> String {
    let d = dir.display();
    // As root, nginx would switch its worker to `nobody`, which cannot enter the private folder.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;\n"
    } else {
        ""
    };
    format!(
        "# testkit's private nginx (testkit/src/nginx.rs)\n\
         {user}daemon off;\n\
         master_process on;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{\n\
         \tworker_connections 256;\n\
         }}\n\
         http {{\n\
         \tdefault_type application/octet-stream;\n\
         \tlog_format upstream '$remote_addr \"$request\" $status $body_bytes_sent \
         upstream=$upstream_addr upstream_status=$upstream_status';\n\
         \taccess_log {d}/access.log upstream;\n\
         \tclient_body_temp_path {d}/tmp/client_body;\n\
         \tproxy_temp_path {d}/tmp/proxy;\n\
         \tfastcgi_temp_path {d}/tmp/fastcgi;\n\
         \tuwsgi_temp_path {d}/tmp/uwsgi;\n\
         \tscgi_temp_path {d}/tmp/scgi;\n\
         \tinclude {d}/site.conf;\n\
         }}\n"
    )
}
