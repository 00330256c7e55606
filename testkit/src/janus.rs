//! A private Janus WebRTC server (Debian's `janus`, 1.1.2) for side-by-side media figures: the peer
//! SFU of `loadtest compare-janus`, with only its `videocall` plugin.
//!
//! **The machine's own Janus is never used or touched.** [`Janus::start`] writes a configuration of
//! its own into a temporary folder and runs `janus -F <folder> -C <folder>/janus.jcfg` in the
//! foreground, as a child of testkit in a process group of its own, killed when the [`Janus`] is
//! dropped (and by the kernel if the test process dies first). `/etc/janus` is only read, never
//! written. The configuration:
//!
//! - **Only what a 1:1 call needs is loaded.** The plugin, transport, event-handler and logger
//!   folders are private folders holding a link to `libjanus_videocall.so` and
//!   `libjanus_websockets.so` only; Janus loads every `*.so` of those folders, so nothing else is
//!   even opened (no Lua, no SIP, no MQTT…). Event handlers are off.
//! - **One transport:** the WebSocket API (subprotocol `janus-protocol`) on `127.0.0.1` and a free
//!   port ([`Janus::ws_url`]); no secure WebSocket, no admin API, no HTTP.
//! - **Media:** the RTP/ICE ports come from a block of 1000 below Linux's ephemeral range
//!   (20000–31999), so they do not collide with the clients' sockets. Janus gathers ICE host
//!   candidates on one address only, [`Janus::media_ip`].
//! - **Logs** (level 4, with timestamps, no colours) go to `janus.log` in the folder ([`Janus::log`]);
//!   what the process prints before it opens its log goes to `stdout.log`.
//!
//! **Loopback and ICE.** Janus 1.1.2 never gathers candidates on a loopback interface: `ice.c`
//! skips every `IFF_LOOPBACK` interface, before it looks at `ice_enforce_list`, so enforcing `lo`
//! or `127.0.0.1` leaves it with nothing of its own to offer. The private instance therefore uses
//! the machine's first non-loopback IPv4 address that is up ([`Janus::media_ip`]), enforced through
//! `ice_enforce_list`, so its candidates are exactly that address. The traffic still never leaves
//! the machine: the kernel delivers packets between two local addresses through `lo`. Clients give
//! the same address as their own host candidate (`sfu::client::MediaClient::start_on` /
//! `start_answering_on`) so that both ends are on one address. A machine with no such interface
//! cannot run Janus media at all, and [`Janus::start`] says so.
//!
//! **A daemon that dies is reported.** If the process exits before its WebSocket port answers a
//! WebSocket handshake, or does not answer within [`START_TIMEOUT`], `start` fails with the tail
//! of its log. A port taken by someone else between choosing and binding it is retried with
//! another port. [`Janus::check`] tells a running daemon from one that died later. Starting,
//! watching and stopping the process is testkit's common daemon code (`testkit/src/daemon.rs`).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};

use crate::daemon::{retry_taken_port, wait_ready, Launch, Watched};

/// The Janus binary.
const JANUS: &str = "/usr/bin/janus";
/// Where Debian's package puts Janus's plugins and transports.
const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// The only plugin loaded.
const PLUGIN: &str = "libjanus_videocall.so";
/// The only transport loaded.
const TRANSPORT: &str = "libjanus_websockets.so";
const INSTALL: &str = "install it with `apt-get install -y janus` (cargo xtask test installs it)";
/// How long the daemon may take to answer on its WebSocket port after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts when the chosen WebSocket port turns out to be taken.
const PORT_ATTEMPTS: usize = 3;
/// The log lines a failure report quotes.
const TAIL: usize = 25;

/// A private Janus (see the module docs), stopped when dropped.
pub struct Janus {
    /// Declared before `dir`: dropping it stops the daemon before the folder is removed.
    daemon: Watched,
    dir: tempfile::TempDir,
    port: u16,
    media_ip: IpAddr,
}

impl std::fmt::Debug for Janus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Janus")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("media_ip", &self.media_ip)
            .field("pid", &self.daemon.pid())
            .finish_non_exhaustive()
    }
}

impl Janus {
    /// Starts a private instance and waits until its WebSocket API answers (at most
    /// [`START_TIMEOUT`]). Fails if `janus` is not installed, if the machine has no non-loopback
    /// IPv4 address for media, or if the daemon dies or does not answer (with the tail of its log).
    pub fn start() -> anyhow::Result<Janus> {
        for needed in [
            PathBuf::from(JANUS),
            Path::new(LIB_DIR).join("plugins").join(PLUGIN),
            Path::new(LIB_DIR).join("transports").join(TRANSPORT),
        ] {
            if !needed.exists() {
                bail!("{} is missing: {INSTALL}", needed.display());
            }
        }
        let media_ip = media_ip()?;
        retry_taken_port("testkit::janus", PORT_ATTEMPTS, || Janus::launch(media_ip))
    }

    /// The WebSocket API's URL, `ws://127.0.0.1:<port>` (subprotocol `janus-protocol`).
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The WebSocket API's port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The one address Janus gathers ICE candidates on; a client should bind its media socket to it
    /// (see the module docs on loopback).
    pub fn media_ip(&self) -> IpAddr {
        self.media_ip
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The private folder (configuration, `janus.log`, `stdout.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    /// `Ok` while the daemon runs; how it ended, with the tail of its log, once it exited.
    pub fn check(&self) -> anyhow::Result<()> {
        self.daemon
            .check(|| format!("log tail:\n{}", tail(self.dir.path())))
    }

    /// One attempt: a fresh folder and port, the daemon, and the wait for its WebSocket API.
    fn launch(media_ip: IpAddr) -> Result<Janus, Launch> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-janus-")
            .tempdir()
            .context("temporary Janus folder")?;
        let port = crate::free_port();
        configure(dir.path(), port, media_ip)?;
        let mut command = Command::new(JANUS);
        command
            .arg("-F")
            .arg(dir.path())
            .arg("-C")
            .arg(dir.path().join("janus.jcfg"))
            .arg("-N");
        let daemon = Watched::spawn("Janus", dir.path(), "stdout.log", command, INSTALL)?;
        // From here on, dropping `janus` stops the daemon.
        let janus = Janus {
            daemon,
            dir,
            port,
            media_ip,
        };
        match wait_ready(
            START_TIMEOUT,
            Duration::from_millis(50),
            || janus.check(),
            || ws_answers(port),
        ) {
            Ok(true) => Ok(janus),
            Ok(false) => Err(Launch::Failed(format!(
                "the private Janus (pid {}, {}) does not answer a WebSocket handshake on \
                 127.0.0.1:{port} within {START_TIMEOUT:?}; log tail:\n{}",
                janus.pid(),
                janus.dir.path().display(),
                tail(janus.dir.path())
            ))),
            Err(e) => {
                let report = format!("{e:#}");
                Err(if report.contains("Error creating vhost") {
                    Launch::PortTaken(format!("WebSocket port {port} is taken: {report}"))
                } else {
                    Launch::Failed(format!(
                        "the private Janus died while starting: {report}\nstdout:\n{}",
                        std::fs::read_to_string(janus.dir.path().join("stdout.log"))
                            .unwrap_or_default()
                    ))
                })
            }
        }
    }
}

/// Writes the private configuration into `dir` (see the module docs).
fn configure(dir: &Path, port: u16, media_ip: IpAddr) -> anyhow::Result<()> {
    for (sub, keep) in [
        ("plugins", Some(PLUGIN)),
        ("transports", Some(TRANSPORT)),
        ("events", None),
        ("loggers", None),
    ] {
        let folder = dir.join(sub);
        std::fs::create_dir(&folder).with_context(|| format!("{}", folder.display()))?;
        if let Some(name) = keep {
            std::os::unix::fs::symlink(Path::new(LIB_DIR).join(sub).join(name), folder.join(name))
                .with_context(|| format!("link {name} into {}", folder.display()))?;
        }
    }
    let rtp = rtp_port_base();
    let p = |rel: &str| dir.join(rel).display().to_string();
    let janus = format!(
        "# testkit's private Janus (testkit/src/janus.rs)\n\
         general: {{\n\
         \tconfigs_folder = \"{configs}\"\n\
         \tplugins_folder = \"{plugins}\"\n\
         \ttransports_folder = \"{transports}\"\n\
         \tevents_folder = \"{events}\"\n\
         \tloggers_folder = \"{loggers}\"\n\
         \tlog_to_stdout = false\n\
         \tlog_to_file = \"{log}\"\n\
         \tdebug_level = 4\n\
         \tdebug_timestamps = true\n\
         \tdebug_colors = false\n\
         \tserver_name = \"testkit-janus-{port}\"\n\
         \tsession_timeout = 60\n\
         \thide_dependencies = true\n\
         \tprotected_folders = [ \"/bin\", \"/boot\", \"/dev\", \"/etc\", \"/lib\", \"/proc\", \
         \"/sbin\", \"/sys\", \"/usr\", \"/var\" ]\n\
         }}\n\
         certificates: {{\n\
         }}\n\
         media: {{\n\
         \trtp_port_range = \"{rtp}-{rtp_end}\"\n\
         }}\n\
         nat: {{\n\
         \tnice_debug = false\n\
         \tignore_mdns = true\n\
         \tice_enforce_list = \"{media_ip}\"\n\
         }}\n\
         plugins: {{\n\
         }}\n\
         transports: {{\n\
         }}\n\
         loggers: {{\n\
         }}\n\
         events: {{\n\
         \tbroadcast = false\n\
         }}\n",
        configs = dir.display(),
        plugins = p("plugins"),
        transports = p("transports"),
        events = p("events"),
        loggers = p("loggers"),
        log = p("janus.log"),
        rtp_end = rtp + 999,
    );
    std::fs::write(dir.join("janus.jcfg"), janus).context("janus.jcfg")?;
    let websockets = format!(
        "general: {{\n\
         \tjson = \"plain\"\n\
         \tws = true\n\
         \tws_port = {port}\n\
         \tws_ip = \"127.0.0.1\"\n\
         \twss = false\n\
         }}\n\
         admin: {{\n\
         \tadmin_ws = false\n\
         \tadmin_wss = false\n\
         }}\n"
    );
    std::fs::write(dir.join("janus.transport.websockets.jcfg"), websockets)
        .context("janus.transport.websockets.jcfg")?;
    std::fs::write(
        dir.join("janus.plugin.videocall.jcfg"),
        "general: {\n\tevents = false\n}\n",
    )
    .context("janus.plugin.videocall.jcfg")?;
    Ok(())
}

/// The first port of this instance's block of 1000 RTP ports in 20000–31999 (below Linux's
/// ephemeral range), varied by process and time so that parallel instances seldom share a block
/// (libnice moves on to the next free port when they do).
fn rtp_port_base() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    20_000 + 1000 * (mix % 12) as u16
}

/// The first IPv4 address of an interface that is up, running and not loopback.
fn media_ip() -> anyhow::Result<IpAddr> {
    let mut found = Vec::new();
    // SAFETY: getifaddrs fills a list that we walk read-only and free once.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            bail!("getifaddrs failed: {}", std::io::Error::last_os_error());
        }
        let mut at = list;
        while !at.is_null() {
            let ifa = &*at;
            at = ifa.ifa_next;
            let flags = ifa.ifa_flags as libc::c_int;
            let up = flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0;
            if ifa.ifa_addr.is_null() || !up || flags & libc::IFF_LOOPBACK != 0 {
                continue;
            }
            if (*ifa.ifa_addr).sa_family as libc::c_int != libc::AF_INET {
                continue;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            if !ip.is_unspecified() && !ip.is_link_local() {
                found.push(ip);
            }
        }
        libc::freeifaddrs(list);
    }
    found.first().copied().map(IpAddr::V4).context(
        "this machine has no IPv4 interface up other than loopback, and Janus never gathers ICE \
         candidates on loopback (its ice.c skips IFF_LOOPBACK interfaces): a private Janus cannot \
         carry media here",
    )
}

/// Whether `127.0.0.1:port` completes a WebSocket handshake with Janus's subprotocol.
fn ws_answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGVzdGtpdC1qYW51cy1wcm9iZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: janus-protocol\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head.starts_with(b"HTTP/1.1 101")
}

/// The last [`TAIL`] lines of the daemon's log in `dir`.
fn tail(dir: &Path) -> String {
    crate::daemon::log_tail(&dir.join("janus.log"), TAIL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::kill_group;
    use std::time::Instant;

    #[test]
    fn starts_answers_websockets_and_stops_on_drop() {
        let janus = Janus::start().expect("a private Janus");
        assert!(janus.ws_url().starts_with("ws://127.0.0.1:"));
        assert!(ws_answers(janus.port()));
        janus.check().expect("running");
        assert!(!janus.media_ip().is_loopback());
        let log = janus.log();
        assert!(log.contains("JANUS VideoCall plugin initialized"), "{log}");
        assert!(!log.contains("EchoTest"), "only videocall is loaded: {log}");
        let conf = std::fs::read_to_string(janus.dir().join("janus.jcfg")).unwrap();
        assert!(conf.contains(&janus.dir().display().to_string()));
        let pid = janus.pid();
        let dir = janus.dir().to_owned();
        drop(janus);
        assert!(
            !Path::new(&format!("/proc/{pid}/stat")).exists(),
            "the daemon is gone"
        );
        assert!(!dir.exists(), "the folder is removed");
    }

    #[test]
    fn a_daemon_that_dies_is_reported_with_its_log() {
        let janus = Janus::start().expect("a private Janus");
        kill_group(janus.pid(), libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while janus.check().is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = janus.check().expect_err("it died");
        let text = format!("{e:#}");
        assert!(text.contains("killed by signal 9"), "{text}");
        assert!(text.contains("log tail"), "{text}");
    }

    #[test]
    fn rtp_ports_stay_below_the_ephemeral_range() {
        for _ in 0..100 {
            let base = rtp_port_base();
            assert!(
                (20_000..=31_000).contains(&base) && base % 1000 == 0,
                "{base}"
            );
        }
    }
}
