//! The command-line flags that override the other sources ([`FlagOverrides`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::{ClusterFlags, LogFormat};

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
    /// `--database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<super::HistoryFlags>,
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
