//! The server configuration: one struct, filled from defaults, then a TOML file, then `SPORTELLO_…`
//! environment variables, then command-line flags (later sources win), and validated as a whole so
//! that `sportello check-config` can list every problem at once.

mod cluster;
pub mod turn;

pub use cluster::{ClusterFlags, ClusterSettings, NodeRole};
pub use turn::TurnSettings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The prefix of every configuration environment variable. Nested keys use `__`, e.g.
/// `SPORTELLO_WS__HEARTBEAT_S=10` or `SPORTELLO_TLS__CERT=/etc/sportello/cert.pem`.
pub const ENV_PREFIX: &str = "SPORTELLO_";

/// The whole configuration of one `sportello` process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public listener (HTTP API, WebSocket, pages). Plain HTTP unless `tls` is set.
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`. Keep it on a private address.
    pub admin_listen: SocketAddr,
    /// Directory for state that must survive restarts: the token signing secret, demo credentials.
    pub data_dir: PathBuf,
    /// Redis URL (`redis://host:port/db`, `rediss://…`, or through Sentinel
    /// `redis+sentinel://host:port[,host:port…]/master_name[/db]`). Absent means the embedded in-memory store,
    /// which is only correct for a single process.
    pub redis: Option<String>,
    /// The contact centre's tenant name; every Redis key carries it as a hash tag.
    pub tenant: String,
    /// The municipality's name, shown in pages and printed on certificates.
    pub municipality: String,
    /// TLS for the public listener (HTTPS and WSS on the same port).
    pub tls: Option<TlsConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Login tokens.
    pub auth: AuthConfig,
    /// WebSocket session settings.
    pub ws: WsConfig,
    /// Connection limits: timeouts, caps per address and per principal, descriptors in reserve.
    pub limits: LimitsConfig,
    /// Shutdown behaviour.
    pub shutdown: ShutdownConfig,
    /// Call routing.
    pub queue: QueueSettings,
    /// Certificates: registry, signer key, verification page URL, audit log.
    pub certificates: certificates::IssuerConfig,
    /// The media plane (SFU).
    pub media: MediaSettings,
    /// Identifying citizens in a call: trusted card issuers, PEC code limits.
    pub identity: IdentitySettings,
    /// Outgoing mail (PEC one-time codes).
    pub mail: MailSettings,
    /// Demo accounts for trying Sportello out.
    pub demo: DemoConfig,
    /// Operator accounts.
    pub operators: Vec<OperatorAccount>,
    /// Supervisor accounts.
    pub supervisors: Vec<SupervisorAccount>,
    /// Kiosks (devices) allowed to connect.
    pub kiosks: Vec<KioskAccount>,
    /// Several nodes: this node's role, its id, and the media nodes' internal API.
    pub cluster: ClusterSettings,
    /// STUN/TURN servers for the clients, with time-limited TURN credentials (`docs/turn.md`).
    pub turn: Option<TurnSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            admin_listen: "127.0.0.1:9090".parse().expect("valid literal"),
            data_dir: PathBuf::from("./sportello-data"),
            redis: None,
            tenant: "default".into(),
            municipality: "Comune di Parma".into(),
            tls: None,
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            ws: WsConfig::default(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            queue: QueueSettings::default(),
            certificates: certificates::IssuerConfig::default(),
            media: MediaSettings::default(),
            identity: IdentitySettings::default(),
            mail: MailSettings::default(),
            demo: DemoConfig::default(),
            operators: Vec::new(),
            supervisors: Vec::new(),
            kiosks: Vec::new(),
            cluster: ClusterSettings::default(),
            turn: None,
        }
    }
}

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

impl AuthConfig {
    /// The problems of the login limits (empty when valid).
    fn login_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (what, value, max) in [
            ("login_concurrency", self.login_concurrency as u64, 1024),
            ("login_queue", self.login_queue as u64, 100_000),
        ] {
            if value > max {
                problems.push(format!("auth.{what}: {value} must be at most {max}"));
            }
        }
        for (what, value, max) in [
            ("login_per_address", self.login_per_address as u64, 100_000),
            (
                "login_failure_window_s",
                self.login_failure_window_s,
                86_400,
            ),
            (
                "login_failures_per_user_address",
                u64::from(self.login_failures_per_user_address),
                1_000_000,
            ),
            (
                "login_failures_per_address",
                u64::from(self.login_failures_per_address),
                1_000_000,
            ),
            (
                "login_log_lines_per_minute",
                u64::from(self.login_log_lines_per_minute),
                100_000,
            ),
        ] {
            if !(1..=max).contains(&value) {
                problems.push(format!("auth.{what}: {value} must be between 1 and {max}"));
            }
        }
        problems
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

impl LimitsConfig {
    /// The problems of the limits (empty when valid).
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (what, value) in [
            ("header_timeout_s", self.header_timeout_s),
            ("body_timeout_s", self.body_timeout_s),
        ] {
            if !(1..=600).contains(&value) {
                problems.push(format!("limits.{what}: {value} must be between 1 and 600"));
            }
        }
        if !(1..=10_000).contains(&self.admin_connections) {
            problems.push(format!(
                "limits.admin_connections: {} must be between 1 and 10000",
                self.admin_connections
            ));
        }
        if self.fd_reserve < 64 {
            problems.push(format!(
                "limits.fd_reserve: {} must be at least 64",
                self.fd_reserve
            ));
        }
        if let Some(all) = self.trusted_proxies.iter().find(|r| r.prefix_len() == 0) {
            problems.push(format!(
                "limits.trusted_proxies: {all} would let any client choose its own address; list \
                 the proxies' addresses or their network"
            ));
        }
        problems
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
        }
    }
}

impl MediaSettings {
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

/// An operator account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorAccount {
    /// Login name, also the operator id.
    pub username: String,
    /// Name shown to citizens and supervisors.
    #[serde(default)]
    pub display_name: String,
    /// Argon2 PHC string from `sportello hash-password`.
    pub password_hash: String,
    /// Services the operator handles, with a level from 1 (can) to 10 (expert).
    pub skills: BTreeMap<String, u8>,
    /// Languages spoken, as ISO 639-1 codes.
    pub languages: Vec<String>,
    /// Calls held at once, connected plus on hold, 1 to 6.
    #[serde(default = "default_capacity")]
    pub capacity: u8,
}

fn default_capacity() -> u8 {
    1
}

/// A supervisor account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorAccount {
    /// Login name, also the supervisor id.
    pub username: String,
    /// Name shown in the dashboard.
    #[serde(default)]
    pub display_name: String,
    /// Argon2 PHC string from `sportello hash-password`.
    pub password_hash: String,
}

/// A kiosk (device) account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskAccount {
    /// Kiosk id, e.g. `municipio`.
    pub id: String,
    /// Name shown to operators, e.g. "Municipio — atrio".
    pub name: String,
    /// Where it stands (address or description).
    #[serde(default)]
    pub location: String,
    /// Services offered on the kiosk's screen by default.
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// `sha256:<hex>` of the device token, from `sportello hash-token`.
    pub token_hash: String,
}

fn default_services() -> Vec<String> {
    vec!["anagrafe".into(), "stato_civile".into()]
}

/// Values given as command-line flags; only the ones present override the other sources.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogFlags>,
    /// `--allow-demo-on-network`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<DemoFlags>,
    /// `--media-udp`, `--media-tcp`, `--media-public-ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaFlags>,
    /// `--role`, `--node-id`, `--internal-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterFlags>,
}

/// The `media` part of the flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaFlags {
    /// `--media-udp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp: Option<String>,
    /// `--media-tcp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// `--media-public-ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<std::net::IpAddr>,
}

/// The `log` part of the flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogFlags {
    /// `--log-format`.
    pub format: LogFormat,
}

/// The `demo` part of the flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DemoFlags {
    /// `--allow-demo-on-network`.
    pub allow_non_loopback: bool,
}

/// Why configuration could not be loaded or is not valid. `Display` lists every problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sources could not be read or parsed into the configuration struct.
    #[error("cannot read configuration: {0}")]
    Load(String),
    /// The configuration was read but breaks one or more rules.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// Every problem, one per entry.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Load(problem) => vec![problem.clone()],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }
}

/// Loads the configuration from defaults, the optional file, the process environment and the flags,
/// in that order of precedence (later wins), then validates it.
pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
    load_with_env(file, flags, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests use this to stay hermetic).
pub fn load_with_env(
    file: Option<&Path>,
    flags: &FlagOverrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::Load(format!(
                "configuration file {} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    // Figment's Env provider reads the process environment; to keep tests hermetic the variables
    // are turned into a TOML-like dictionary here, with the same `__` nesting rule.
    figment = figment.merge(env_provider(env));
    figment = figment.merge(Serialized::defaults(flags));
    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Load(join_figment_errors(e)))?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn join_figment_errors(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn env_provider(
    env: impl IntoIterator<Item = (String, String)>,
) -> Serialized<figment::value::Dict> {
    use figment::value::{Dict, Value};
    let mut root = Dict::new();
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        // Only keys of this struct are read, so variables meant for other Sportello programs
        // (the kiosk agent, the load test) never make the server refuse to start.
        if !TOP_LEVEL_KEYS.contains(&path[0].as_str()) {
            continue;
        }
        // Values parse like TOML scalars and arrays (`10`, `true`, `[1,2]`); anything else is a string.
        let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
        insert_path(&mut root, &path, value);
    }
    return Serialized::defaults(root);

    fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
        match path {
            [] => {}
            [last] => {
                dict.insert(last.clone(), value);
            }
            [head, rest @ ..] => {
                let entry = dict
                    .entry(head.clone())
                    .or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                if let Value::Dict(_, inner) = entry {
                    insert_path(inner, rest, value);
                }
            }
        }
    }
}

/// The top-level keys of [`Config`], the only ones read from the environment.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "data_dir",
    "redis",
    "tenant",
    "municipality",
    "tls",
    "log",
    "auth",
    "ws",
    "limits",
    "shutdown",
    "queue",
    "certificates",
    "media",
    "identity",
    "mail",
    "demo",
    "operators",
    "supervisors",
    "kiosks",
    "cluster",
    "turn",
];

impl Config {
    /// The queue's configuration derived from this one.
    pub fn queue_config(&self) -> queue::QueueConfig {
        let secs = std::time::Duration::from_secs;
        queue::QueueConfig {
            offer_lease: secs(self.queue.offer_lease_s),
            max_missed_offers: self.queue.max_missed_offers,
            wrapup: secs(self.queue.wrapup_s),
            aging_step: (self.queue.aging_step_s > 0).then(|| secs(self.queue.aging_step_s)),
            resume_grace: secs(self.ws.kiosk_grace_s.max(self.ws.operator_grace_s)),
            service_level_threshold: secs(self.queue.service_level_s),
            service_level_by_service: self
                .queue
                .service_level_by_service
                .iter()
                .filter_map(|(service, s)| {
                    Some((queue::Service::new(service.as_str()).ok()?, secs(*s)))
                })
                .collect(),
            default_aht: secs(self.queue.default_aht_s),
            time_zone: jiff::tz::TimeZone::get(&self.queue.time_zone)
                .unwrap_or_else(|_| queue::model::rome()),
            ..queue::QueueConfig::default()
        }
    }

    /// Whether demo accounts are created: as configured, or by default only when no account is.
    pub fn demo_enabled(&self) -> bool {
        self.demo.enabled.unwrap_or(
            self.operators.is_empty() && self.supervisors.is_empty() && self.kiosks.is_empty(),
        )
    }

    /// Checks every rule and returns all the problems found (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            problems.push(format!(
                "listen and admin_listen are the same address {}",
                self.listen
            ));
        }
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+sentinel://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                problems.push(format!(
                    "redis: {url:?} is not a redis://, rediss://, redis+sentinel:// or unix:// URL"
                ));
            }
        }
        if let Err(e) = self.media.sfu_config(self.listen) {
            problems.push(e);
        }
        problems.extend(self.cluster.problems(self.redis.is_some()));
        if let Some(turn) = &self.turn {
            problems.extend(turn.problems());
        }
        if !(1..=MAX_DEMO_KIOSKS).contains(&self.demo.kiosks) {
            problems.push(format!(
                "demo.kiosks: {} must be between 1 and {MAX_DEMO_KIOSKS}",
                self.demo.kiosks
            ));
        }
        if !(1..=MAX_DEMO_OPERATORS).contains(&self.demo.operators) {
            problems.push(format!(
                "demo.operators: {} must be between 1 and {MAX_DEMO_OPERATORS}",
                self.demo.operators
            ));
        }
        if let Some(path) = &self.identity.ca_bundle {
            if let Err(e) = certificates::identity::CardVerifier::from_file(path) {
                problems.push(format!("identity.ca_bundle: {e}"));
            }
        }
        if self.identity.pec_attempts == 0 || self.identity.pec_code_ttl_s == 0 {
            problems.push("identity: pec_attempts and pec_code_ttl_s must be at least 1".into());
        }
        if let Some(url) = &self.mail.smtp_url {
            if let Err(e) = crate::mail::Mailer::new(url, &self.mail.from, &self.municipality) {
                problems.push(e);
            }
        }
        if self.media.udp.trim() == "off" && self.media.tcp.trim() == "off" {
            problems.push("media: udp and tcp are both \"off\"; calls would have no media".into());
        }
        if !is_name(&self.tenant) {
            problems.push(format!(
                "tenant: {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
                self.tenant
            ));
        }
        if let Some(tls) = &self.tls {
            for (what, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.is_file() {
                    problems.push(format!("{what}: file {} does not exist", path.display()));
                }
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problems.push(format!(
                "log.level: {:?} is not a valid filter",
                self.log.level
            ));
        }
        if !(60..=7 * 24 * 3600).contains(&self.auth.token_ttl_s) {
            problems.push(format!(
                "auth.token_ttl_s: {} must be between 60 and 604800",
                self.auth.token_ttl_s
            ));
        }
        if !(60..=self.auth.token_ttl_s.max(60)).contains(&self.auth.access_ttl_s) {
            problems.push(format!(
                "auth.access_ttl_s: {} must be between 60 and auth.token_ttl_s ({})",
                self.auth.access_ttl_s, self.auth.token_ttl_s
            ));
        }
        problems.extend(self.auth.login_problems());
        if !(1..=300).contains(&self.ws.heartbeat_s) {
            problems.push(format!(
                "ws.heartbeat_s: {} must be between 1 and 300",
                self.ws.heartbeat_s
            ));
        }
        for (what, value) in [
            ("ws.kiosk_grace_s", self.ws.kiosk_grace_s),
            ("ws.operator_grace_s", self.ws.operator_grace_s),
            ("ws.supervisor_grace_s", self.ws.supervisor_grace_s),
        ] {
            if value > 3600 {
                problems.push(format!("{what}: {value} must be at most 3600"));
            }
        }
        if !(1..=10_000).contains(&self.ws.rate_per_s) {
            problems.push(format!(
                "ws.rate_per_s: {} must be between 1 and 10000",
                self.ws.rate_per_s
            ));
        }
        if self.ws.rate_burst < self.ws.rate_per_s.min(10_000) || self.ws.rate_burst > 100_000 {
            problems.push(format!(
                "ws.rate_burst: {} must be at least ws.rate_per_s and at most 100000",
                self.ws.rate_burst
            ));
        }
        problems.extend(self.limits.problems());
        if self.shutdown.drain_s > 3600 {
            problems.push(format!(
                "shutdown.drain_s: {} must be at most 3600",
                self.shutdown.drain_s
            ));
        }

        if !(1..=600).contains(&self.queue.offer_lease_s) {
            problems.push(format!(
                "queue.offer_lease_s: {} must be between 1 and 600",
                self.queue.offer_lease_s
            ));
        }
        if self.queue.max_missed_offers == 0 {
            problems.push("queue.max_missed_offers: must be at least 1".into());
        }
        if self.queue.wrapup_s > 3600 {
            problems.push(format!(
                "queue.wrapup_s: {} must be at most 3600",
                self.queue.wrapup_s
            ));
        }
        if self.queue.service_level_s == 0 {
            problems.push("queue.service_level_s: must be at least 1".into());
        }
        for service in self.queue.service_level_by_service.keys() {
            if !is_name(service) {
                problems.push(format!(
                    "queue.service_level_by_service: {service:?} is not a valid service name"
                ));
            }
        }
        if self.queue.default_aht_s == 0 {
            problems.push("queue.default_aht_s: must be at least 1".into());
        }
        if jiff::tz::TimeZone::get(&self.queue.time_zone).is_err() {
            problems.push(format!(
                "queue.time_zone: {:?} is not an IANA time zone (e.g. \"Europe/Rome\")",
                self.queue.time_zone
            ));
        }

        let mut usernames = std::collections::HashSet::new();
        for (i, op) in self.operators.iter().enumerate() {
            let at = format!("operators[{i}] ({})", op.username);
            if !is_name(&op.username) {
                problems.push(format!(
                    "{at}: username must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ));
            }
            if !usernames.insert(op.username.as_str()) {
                problems.push(format!("{at}: username is used twice"));
            }
            check_password_hash(&at, &op.password_hash, &mut problems);
            if op.skills.is_empty() {
                problems.push(format!("{at}: skills must name at least one service"));
            }
            for (service, level) in &op.skills {
                if !is_name(service) {
                    problems.push(format!(
                        "{at}: skill {service:?} is not a valid service name"
                    ));
                }
                if !(1..=10).contains(level) {
                    problems.push(format!(
                        "{at}: skill {service} has level {level}; levels are 1 to 10"
                    ));
                }
            }
            if op.languages.is_empty() {
                problems.push(format!("{at}: languages must list at least one language"));
            }
            for lang in &op.languages {
                if !is_language(lang) {
                    problems.push(format!(
                        "{at}: language {lang:?} is not a two-letter ISO 639-1 code"
                    ));
                }
            }
            if !(1..=6).contains(&op.capacity) {
                problems.push(format!(
                    "{at}: capacity {} must be between 1 and 6",
                    op.capacity
                ));
            }
        }
        for (i, sup) in self.supervisors.iter().enumerate() {
            let at = format!("supervisors[{i}] ({})", sup.username);
            if !is_name(&sup.username) {
                problems.push(format!(
                    "{at}: username must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ));
            }
            if !usernames.insert(sup.username.as_str()) {
                problems.push(format!("{at}: username is used twice"));
            }
            check_password_hash(&at, &sup.password_hash, &mut problems);
        }
        let mut kiosk_ids = std::collections::HashSet::new();
        let mut token_hashes = std::collections::HashSet::new();
        for (i, kiosk) in self.kiosks.iter().enumerate() {
            let at = format!("kiosks[{i}] ({})", kiosk.id);
            if !is_name(&kiosk.id) {
                problems.push(format!(
                    "{at}: id must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ));
            }
            if !kiosk_ids.insert(kiosk.id.as_str()) {
                problems.push(format!("{at}: id is used twice"));
            }
            if kiosk.name.trim().is_empty() {
                problems.push(format!("{at}: name must not be empty"));
            }
            if crate::accounts::parse_token_hash(&kiosk.token_hash).is_none() {
                problems.push(format!(
                    "{at}: token_hash must be \"sha256:\" followed by 64 hex digits (sportello hash-token)"
                ));
            } else if !token_hashes.insert(kiosk.token_hash.to_ascii_lowercase()) {
                problems.push(format!("{at}: token_hash is shared with another kiosk"));
            }
            for service in &kiosk.services {
                if !is_name(service) {
                    problems.push(format!("{at}: service {service:?} is not a valid name"));
                }
            }
        }
        if self.demo_enabled() && !self.demo.allow_non_loopback {
            for (what, addr) in [("listen", self.listen), ("admin_listen", self.admin_listen)] {
                if !addr.ip().is_loopback() {
                    problems.push(format!(
                        "{what}: demo accounts are enabled and {addr} is not a loopback address; \
                         configure accounts, or set demo.allow_non_loopback = true \
                         (--allow-demo-on-network) on a closed training network"
                    ));
                }
            }
        }
        problems
    }
}

fn check_password_hash(at: &str, hash: &str, problems: &mut Vec<String>) {
    match argon2::PasswordHash::new(hash) {
        Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => {}
        _ => problems.push(format!(
            "{at}: password_hash is not an argon2 PHC string (sportello hash-password)"
        )),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

fn is_language(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_loopback_with_demo_accounts() {
        let config = load_with_env(None, &FlagOverrides::default(), env(&[])).unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            config.admin_listen,
            "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.data_dir, PathBuf::from("./sportello-data"));
        assert_eq!(config.redis, None);
        assert!(config.demo_enabled());
    }

    #[test]
    fn precedence_is_flags_then_env_then_file_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sportello.toml");
        std::fs::write(
            &file,
            r#"
listen = "127.0.0.1:1001"
admin_listen = "127.0.0.1:2001"
data_dir = "/from/file"
tenant = "file"
[ws]
heartbeat_s = 11
kiosk_grace_s = 12
"#,
        )
        .unwrap();
        let vars = env(&[
            ("SPORTELLO_ADMIN_LISTEN", "127.0.0.1:2002"),
            ("SPORTELLO_DATA_DIR", "/from/env"),
            ("SPORTELLO_WS__HEARTBEAT_S", "21"),
            ("SPORTELLO_REDIS", "redis://127.0.0.1:6390/0"),
            ("SPORTELLO_MEDIA__LOOPS", "3"),
            ("SPORTELLO_IDENTITY__PEC_ATTEMPTS", "5"),
            ("SPORTELLO_MAIL__FROM", "anagrafe@example.org"),
            ("SPORTELLO_CLUSTER__ROLE", "signalling"),
            ("SPORTELLO_CLUSTER__NODE_ID", "sig-1"),
            ("SPORTELLO_DEMO__KIOSKS", "12"),
            ("SPORTELLO_DEMO__OPERATORS", "4"),
            ("SPORTELLO_KIOSK_TOKEN", "belongs to the kiosk agent"),
            ("OTHER_VAR", "ignored"),
        ]);
        let flags = FlagOverrides {
            data_dir: Some(PathBuf::from("/from/flag")),
            ..FlagOverrides::default()
        };
        let config = load_with_env(Some(&file), &flags, vars).unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:1001".parse::<SocketAddr>().unwrap(),
            "file"
        );
        assert_eq!(
            config.admin_listen,
            "127.0.0.1:2002".parse::<SocketAddr>().unwrap(),
            "env"
        );
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"), "flag");
        assert_eq!(config.tenant, "file");
        assert_eq!(config.ws.heartbeat_s, 21, "nested env");
        assert_eq!(config.ws.kiosk_grace_s, 12, "nested file");
        assert_eq!(config.ws.operator_grace_s, 30, "default");
        assert_eq!(config.redis.as_deref(), Some("redis://127.0.0.1:6390/0"));
        assert_eq!(
            config.media.loops, 3,
            "every section is read from the environment"
        );
        assert_eq!(config.identity.pec_attempts, 5);
        assert_eq!(config.mail.from, "anagrafe@example.org");
        assert_eq!(config.cluster.role, NodeRole::Signalling);
        assert_eq!(config.cluster.node_id.as_deref(), Some("sig-1"));
        assert_eq!((config.demo.kiosks, config.demo.operators), (12, 4));
    }

    #[test]
    fn roles_other_than_all_need_redis() {
        let mut c = Config::default();
        c.cluster.role = NodeRole::Media;
        assert!(
            c.validate().iter().any(|p| p.contains("needs --redis")),
            "{:?}",
            c.validate()
        );
        c.redis = Some("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/sportello".into());
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        c.cluster.node_ttl_ms = c.cluster.heartbeat_ms;
        assert!(c.validate().iter().any(|p| p.contains("node_ttl_ms")));
    }

    #[test]
    fn every_problem_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            r#"
listen = "0.0.0.0:8080"
tenant = "Bad Tenant"
redis = "http://nope"
[ws]
heartbeat_s = 0
[[operators]]
username = "Maria"
password_hash = "plain"
skills = { anagrafe = 11 }
languages = ["ita"]
capacity = 9
[[kiosks]]
id = "k1"
name = ""
token_hash = "md5:abc"
"#,
        )
        .unwrap();
        let err = load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).unwrap_err();
        let problems = err.problems();
        let expect = [
            "tenant",
            "redis",
            "ws.heartbeat_s",
            "username must be",
            "password_hash",
            "level 11",
            "\"ita\"",
            "capacity 9",
            "name must not be empty",
            "token_hash",
        ];
        for needle in expect {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "no problem mentions {needle:?}: {problems:#?}"
            );
        }
        // Accounts are configured, so demo mode is off and 0.0.0.0 is allowed.
        assert!(!problems.iter().any(|p| p.contains("loopback")));
    }

    #[test]
    fn demo_accounts_are_refused_off_loopback_unless_allowed() {
        let flags = FlagOverrides {
            listen: Some("0.0.0.0:8080".parse::<SocketAddr>().unwrap()),
            ..FlagOverrides::default()
        };
        let err = load_with_env(None, &flags, env(&[])).unwrap_err();
        assert!(err.problems().iter().any(|p| p.contains("loopback")));
        let allowed = FlagOverrides {
            demo: Some(DemoFlags {
                allow_non_loopback: true,
            }),
            ..flags
        };
        assert!(load_with_env(None, &allowed, env(&[])).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typo.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").unwrap();
        let err = load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        std::fs::write(&file, "listen = 5\n").unwrap();
        assert!(load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).is_err());
        let missing = dir.path().join("missing.toml");
        let err = load_with_env(Some(&missing), &FlagOverrides::default(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn typos_in_the_certificates_section_are_errors() {
        // A misspelt signer key must not fall back silently to the development key.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typo.toml");
        for text in [
            "[certificates.signer]\nkeyy = \"/etc/key.pem\"\n",
            "[certificates]\nverify_ulr = \"https://x/\"\n",
            "[certificates.registry]\ntype = \"http\"\nbase_url = \"https://x\"\ntimeout = 5\n",
        ] {
            std::fs::write(&file, text).unwrap();
            let err = load_with_env(Some(&file), &FlagOverrides::default(), env(&[]));
            assert!(err.is_err(), "{text}");
        }
        std::fs::write(
            &file,
            "[certificates.registry]\ntype = \"http\"\nbase_url = \"https://x\"\ntimeout_ms = 5\n",
        )
        .unwrap();
        assert!(load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).is_ok());
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sportello.example.toml");
        let config = load_with_env(Some(&example), &FlagOverrides::default(), env(&[]));
        assert!(config.is_ok(), "{:?}", config.err().map(|e| e.problems()));
    }
}
