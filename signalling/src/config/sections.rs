//! The sections of the configuration file: `[tls]`, `[log]`, `[auth]`, `[ws]`, `[limits]`,
//! `[media]`, `[shutdown]`, `[queue]`, `[identity]`, `[mail]` and `[demo]`, with their defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// TLS certificate and key, both PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,signalling=debug`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Login token settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a login session, in seconds (a shift plus a margin by default): its refresh
    /// token lasts this long.
    pub token_ttl_s: u64,
    /// Lifetime of an access token, in seconds (at most `token_ttl_s`); pages refresh it with the
    /// login's refresh token before it ends.
    pub access_ttl_s: u64,
    /// File with the token signing secret. Processes that share it accept each other's tokens.
    /// Absent means `DATA_DIR/token-secret`, created on first start.
    pub token_secret_file: Option<PathBuf>,
    /// Password checks (argon2, 19 MiB each) run at once at most; 0 means the number of cores.
    pub login_concurrency: usize,
    /// Logins that may wait for a password check; past it a login is answered `503 unavailable`.
    pub login_queue: usize,
    /// Logins from one address that may be checked or waiting at once; past it, `429`.
    pub login_per_address: usize,
    /// The window failed logins are counted in, in seconds; a lock lasts until it ends.
    pub login_failure_window_s: u64,
    /// Failures of one user name from one address that lock that name, for that address only.
    pub login_failures_per_user_address: u32,
    /// Failures from one address over all user names that lock the address (password spraying).
    pub login_failures_per_address: u32,
    /// Log lines about failed or refused logins per minute; the rest are counted in a summary.
    pub login_log_lines_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_s: 10 * 3600,
            access_ttl_s: 15 * 60,
            token_secret_file: None,
            login_concurrency: 0,
            login_queue: 32,
            login_per_address: 4,
            login_failure_window_s: 300,
            login_failures_per_user_address: 10,
            login_failures_per_address: 50,
            login_log_lines_per_minute: 30,
        }
    }
}

/// WebSocket session settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// The server pings every this many seconds; a client silent for twice this is disconnected.
    pub heartbeat_s: u64,
    /// How long a disconnected kiosk session can be resumed, in seconds.
    pub kiosk_grace_s: u64,
    /// How long a disconnected operator session can be resumed, in seconds.
    pub operator_grace_s: u64,
    /// How long a disconnected supervisor session can be resumed, in seconds.
    pub supervisor_grace_s: u64,
    /// Requests per second a session may send on average (a token bucket refilled at this rate).
    pub rate_per_s: u32,
    /// Requests a session may send in a burst before `rate_limited` replies start.
    pub rate_burst: u32,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            heartbeat_s: 15,
            kiosk_grace_s: 30,
            operator_grace_s: 30,
            supervisor_grace_s: 30,
            rate_per_s: 20,
            rate_burst: 40,
        }
    }
}

/// Connection limits (see `docs/security.md`). Every cap counts an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Seconds a connection has to send a whole request head: from accept (TLS handshake
    /// included), and again after each response on a kept-alive connection. Idle or half-sent
    /// requests are closed after it.
    pub header_timeout_s: u64,
    /// Seconds a request body may go without sending any data before the request fails and the
    /// connection closes.
    pub body_timeout_s: u64,
    /// Open connections (HTTP and WebSocket) from one address on the public listener; further
    /// ones are closed at once. 0: no cap.
    pub connections_per_address: u32,
    /// WebSocket sockets from one address; further upgrades get `429 rate_limited`. 0: no cap.
    pub ws_per_address: u32,
    /// Sessions one kiosk, operator or supervisor may hold at once on this process; a further
    /// `auth` gets `rate_limited` and close code 4429. 0: no cap.
    pub sessions_per_principal: u32,
    /// Open connections on the public listener in all. 0: what the file-descriptor limit leaves
    /// after `fd_reserve`.
    pub max_connections: u32,
    /// File descriptors kept from the public listener for the admin listener, media, Redis, mail
    /// and files (at most a quarter of the limit is reserved).
    pub fd_reserve: u32,
    /// Open connections on the admin listener in all (they come out of the reserve).
    pub admin_connections: u32,
    /// Addresses or CIDR ranges not capped per address. They still count in the totals, and
    /// their principals in `sessions_per_principal`.
    pub exempt_addresses: Vec<crate::client_addr::AddressRange>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client. Their
    /// own connections are not capped per address at accept; the per-client caps and the login
    /// throttles apply to the forwarded address. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<crate::client_addr::AddressRange>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_s: 20,
            body_timeout_s: 20,
            connections_per_address: 256,
            ws_per_address: 128,
            sessions_per_principal: 8,
            max_connections: 0,
            fd_reserve: 512,
            admin_connections: 64,
            exempt_addresses: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The media plane: where the SFU listens and what it advertises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// UDP address for all calls' media: `IP:PORT`, `auto` (the `listen` IP, a free port) or
    /// `off`.
    pub udp: String,
    /// TCP address for ICE-TCP (networks that block UDP): `IP:PORT`, `auto` or `off`.
    pub tcp: String,
    /// The address put in candidates when clients reach this host through a 1:1 NAT, or the
    /// sockets are bound to `0.0.0.0`.
    pub public_ip: Option<std::net::IpAddr>,
    /// Forwarding loops (threads); 0 means one per core.
    pub loops: usize,
    /// Seconds a peer connection may stay failed or unconnected before its call ends.
    pub grace_s: u64,
    /// Seconds between `media.stats` events.
    pub stats_interval_s: u64,
    /// Run the forwarding loops under the real-time policy `SCHED_RR` at this priority (1–99); 0
    /// leaves them under the normal policy. On a busy machine the wait for a CPU is most of the
    /// latency the SFU adds (`BENCHMARKS.md`: p99 11.9 ms → 1.9 ms at half load). Needs
    /// `CAP_SYS_NICE` or `LimitRTPRIO=` (systemd) of at least this value; without it the server
    /// logs a warning and runs the loops as before.
    pub loop_priority: u8,
    /// Send runs of same-sized datagrams to one peer as one segmented send (UDP GSO,
    /// `UDP_SEGMENT`), which the kernel splits back into the same datagrams: its send path runs
    /// once per run (`BENCHMARKS.md`). Where the kernel or the route cannot segment, the first
    /// refusal turns it off by itself; `false` never tries.
    pub udp_gso: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            udp: "auto".into(),
            tcp: "auto".into(),
            public_ip: None,
            loops: 0,
            grace_s: 15,
            stats_interval_s: 2,
            loop_priority: 0,
            udp_gso: true,
        }
    }
}

impl MediaSettings {
    /// Applies `udp_gso` and `loop_priority` to `sfu`'s forwarding loops (no priority when 0); a
    /// refused priority is logged.
    pub async fn apply_loop_settings(&self, sfu: &sfu::Sfu) {
        sfu::udpio::set_segmentation(self.udp_gso);
        if self.loop_priority == 0 {
            return;
        }
        match sfu.set_loop_priority(Some(self.loop_priority)).await {
            Ok(()) => tracing::info!(
                priority = self.loop_priority,
                loops = sfu.loops(),
                "media loops run under SCHED_RR"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                priority = self.loop_priority,
                "media.loop_priority not applied (needs CAP_SYS_NICE or LimitRTPRIO); the loops run under the normal policy"
            ),
        }
    }

    /// Resolves `auto`/`off`/an address, with `listen` as the host for `auto`.
    pub fn address(value: &str, listen: SocketAddr) -> Result<Option<SocketAddr>, String> {
        match value.trim() {
            "off" => Ok(None),
            "auto" | "" => Ok(Some(SocketAddr::new(listen.ip(), 0))),
            other => other
                .parse()
                .map(Some)
                .map_err(|_| format!("{other:?} is not IP:PORT, \"auto\" or \"off\"")),
        }
    }

    /// The SFU configuration for a server listening on `listen`.
    pub fn sfu_config(&self, listen: SocketAddr) -> Result<sfu::MediaConfig, String> {
        Ok(sfu::MediaConfig {
            udp: Self::address(&self.udp, listen).map_err(|e| format!("media.udp: {e}"))?,
            tcp: Self::address(&self.tcp, listen).map_err(|e| format!("media.tcp: {e}"))?,
            public_ip: self.public_ip,
            loops: self.loops,
            grace: std::time::Duration::from_secs(self.grace_s.max(1)),
            stats_interval: std::time::Duration::from_secs(self.stats_interval_s.max(1)),
        })
    }
}

/// Shutdown settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM, how long open sessions may continue before the server closes them, in seconds.
    pub drain_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_s: 30 }
    }
}

/// Call routing settings (see the queue design for their meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Seconds an operator has to accept an offer before it goes to someone else.
    pub offer_lease_s: u64,
    /// Missed offers in a row after which an operator is paused.
    pub max_missed_offers: u32,
    /// Seconds of wrap-up after a call, unless the operator ends it earlier.
    pub wrapup_s: u64,
    /// A waiting call's priority grows by one every this many seconds, up to 9; 0 turns aging off.
    pub aging_step_s: u64,
    /// Service-level threshold T in seconds: answered within T counts as in service level.
    pub service_level_s: u64,
    /// Per-service overrides of `service_level_s`.
    pub service_level_by_service: BTreeMap<String, u64>,
    /// Handle time assumed for a service before any call was handled, in seconds.
    pub default_aht_s: u64,
    /// The tenant's IANA time zone, for the "today" metrics window (daylight saving included).
    pub time_zone: String,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            offer_lease_s: 15,
            max_missed_offers: 2,
            wrapup_s: 30,
            aging_step_s: 120,
            service_level_s: 60,
            service_level_by_service: BTreeMap::new(),
            default_aht_s: 180,
            time_zone: "Europe/Rome".into(),
        }
    }
}

/// Identification of citizens during a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// PEM bundle of the CAs that issue CIE and CNS cards (the CIE CA and the CNS issuers' CAs).
    /// Absent: CIE/CNS identification is unavailable.
    pub ca_bundle: Option<PathBuf>,
    /// Seconds a PEC code stays valid.
    pub pec_code_ttl_s: u64,
    /// Tries per PEC code.
    pub pec_attempts: u32,
    /// Seconds between two PEC codes in one call.
    pub pec_resend_s: u64,
    /// PEC codes per fiscal code per hour.
    pub pec_per_hour: usize,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            ca_bundle: None,
            pec_code_ttl_s: 300,
            pec_attempts: 3,
            pec_resend_s: 60,
            pec_per_hour: 3,
        }
    }
}

/// Outgoing mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// The SMTP server: `smtp://host:25`, `smtp://user:pass@host:587?tls=required` (STARTTLS) or
    /// `smtps://host:465`. Absent: PEC identification is unavailable.
    pub smtp_url: Option<String>,
    /// The sender, e.g. `Comune di Parma <sportello@comune.parma.it>`.
    pub from: String,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            smtp_url: None,
            from: "Sportello virtuale <noreply-sportello@comune.example.it>".into(),
        }
    }
}

/// Demo-account settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Create demo accounts. Absent means: only when no account is configured.
    pub enabled: Option<bool>,
    /// Allow demo accounts on a listener that is not loopback. Their passwords are in a file in the
    /// data directory, so this is for closed training networks only.
    pub allow_non_loopback: bool,
    /// How many demo kiosks: the three named sites, then generated ones (for load runs).
    pub kiosks: usize,
    /// How many demo operators: the three named ones, then generated ones with mixed skills,
    /// languages and capacities (for load runs).
    pub operators: usize,
}

/// The most demo kiosks and operators (each operator's password is hashed at every start).
pub const MAX_DEMO_KIOSKS: usize = 5000;
/// See [`MAX_DEMO_KIOSKS`].
pub const MAX_DEMO_OPERATORS: usize = 1000;

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: None,
            allow_non_loopback: false,
            kiosks: 3,
            operators: 3,
        }
    }
}
