//! The server configuration: one struct, filled from defaults, then a TOML file, then `SPORTELLO_…`
//! environment variables, then command-line flags (later sources win), and validated as a whole so
//! that `sportello check-config` can list every problem at once.
//!
//! [`Config`] itself is here; its sections are in `sections` (accounts in `accounts`, `[cluster]`
//! in `cluster`, `[[dispositions]]` in `dispositions`, `[turn]` in `turn`, `[web]` in `web`), the command-line flags in `flags`, reading the sources in
//! `load`, and the rules in `validate`.

mod accounts;
mod cluster;
pub mod dispositions;
mod flags;
pub mod history;
mod load;
mod sections;
pub mod turn;
mod validate;
pub mod web;

pub use accounts::{KioskAccount, OperatorAccount, SupervisorAccount};
pub use cluster::{ClusterFlags, ClusterSettings, NodeRole};
pub use dispositions::DispositionSetting;
pub use flags::{DemoFlags, FlagOverrides, LogFlags, MediaFlags};
pub use history::{HistoryFlags, HistorySettings};
pub use load::{load, load_with_env, ConfigError, ENV_PREFIX};
pub use sections::{
    AuthConfig, DemoConfig, IdentitySettings, LimitsConfig, LogConfig, LogFormat, MailSettings,
    MediaSettings, QueueSettings, ShutdownConfig, TlsConfig, WsConfig, MAX_DEMO_KIOSKS,
    MAX_DEMO_OPERATORS,
};
pub use turn::TurnSettings;
use validate::is_name;
pub use web::{OidcProviderSettings, WebLink, WebSettings};

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// The web channel: OpenID providers, citizens' sessions, links (`docs/web.md`).
    pub web: WebSettings,
    /// The dispositions operators close wrap-ups with (`[[dispositions]]`; the defaults of
    /// [`dispositions::default_dispositions`] when absent).
    pub dispositions: Vec<DispositionSetting>,
    /// The call history and its reports (`docs/reports.md`).
    pub history: HistorySettings,
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
            web: WebSettings::default(),
            dispositions: dispositions::default_dispositions(),
            history: HistorySettings::default(),
        }
    }
}

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
}
