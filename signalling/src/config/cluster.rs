//! `[cluster]`: what a `sportello` process runs (`--role all|signalling|media`), its node id, and
//! the media nodes' internal API (`docs/cluster.md`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::is_name;

/// What a `sportello` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Everything in one process: pages, signalling and the SFU (the default).
    #[default]
    All,
    /// Pages, the API and signalling; calls' media go to media nodes registered in Redis.
    Signalling,
    /// Only the SFU and its internal API, registered in Redis for the signalling nodes.
    Media,
}

impl NodeRole {
    /// The name used on the command line and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::All => "all",
            NodeRole::Signalling => "signalling",
            NodeRole::Media => "media",
        }
    }
}

impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(NodeRole::All),
            "signalling" => Ok(NodeRole::Signalling),
            "media" => Ok(NodeRole::Media),
            other => Err(format!(
                "{other:?} is not a role: use all, signalling or media"
            )),
        }
    }
}

/// Several nodes (`docs/cluster.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// What this process runs.
    pub role: NodeRole,
    /// This node's id, unique in the deployment (default: a fresh one per start).
    pub node_id: Option<String>,
    /// Media nodes: where the internal API listens. Keep it on a private network.
    pub internal_listen: SocketAddr,
    /// Media nodes: the base URL the signalling nodes reach the internal API at (default:
    /// `http://` and the bound `internal_listen` address).
    pub internal_url: Option<String>,
    /// The secret shared by every node, which authenticates the internal API (default:
    /// `cluster.secret` in the data directory, created when missing).
    pub secret_file: Option<PathBuf>,
    /// Media nodes: calls this node takes at most.
    pub capacity: u32,
    /// Media nodes: milliseconds between heartbeats.
    pub heartbeat_ms: u64,
    /// Milliseconds after its last heartbeat that a media node counts as dead.
    pub node_ttl_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            role: NodeRole::All,
            node_id: None,
            internal_listen: "127.0.0.1:9091".parse().expect("valid literal"),
            internal_url: None,
            secret_file: None,
            capacity: 1000,
            heartbeat_ms: 1000,
            node_ttl_ms: 3000,
        }
    }
}

impl ClusterSettings {
    pub(super) fn problems(&self, redis: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.role != NodeRole::All && !redis {
            problems.push(format!(
                "cluster.role = {:?} needs --redis: the nodes share their state there",
                self.role.as_str()
            ));
        }
        if let Some(id) = &self.node_id {
            if !is_name(id) {
                problems.push(format!(
                    "cluster.node_id: {id:?} must be 1-64 characters of a-z, 0-9, '-' or '_'"
                ));
            }
        }
        if let Some(url) = &self.internal_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "cluster.internal_url: {url:?} is not an http:// or https:// URL"
                ));
            }
        }
        if self.capacity == 0 {
            problems.push("cluster.capacity: must be at least 1".into());
        }
        if self.role == NodeRole::Media
            && self.internal_url.is_none()
            && self.internal_listen.ip().is_unspecified()
        {
            problems.push(format!(
                "cluster.internal_url: set it when cluster.internal_listen is {} (the signalling nodes need an address they can reach)",
                self.internal_listen
            ));
        }
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            problems.push(format!(
                "cluster.heartbeat_ms: {} must be between 100 and 60000",
                self.heartbeat_ms
            ));
        }
        if self.node_ttl_ms < 2 * self.heartbeat_ms || self.node_ttl_ms > 600_000 {
            problems.push(format!(
                "cluster.node_ttl_ms: {} must be at least twice cluster.heartbeat_ms and at most 600000",
                self.node_ttl_ms
            ));
        }
        problems
    }
}

/// The `cluster` part of the flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterFlags {
    /// `--role`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<NodeRole>,
    /// `--node-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// `--internal-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_listen: Option<SocketAddr>,
}
