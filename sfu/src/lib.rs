//! The media plane: a selective forwarding unit (SFU) on the sans-I/O webrtc-rs `rtc` stack.
//!
//! Every participant of a call (kiosk, operator, silent supervisor monitors) has one peer
//! connection with the SFU. RTP is forwarded between them without decoding: the kiosk's audio and
//! video go out on the operator's own transceivers and the other way round, so no renegotiation is
//! needed; a monitor receives both parties.
//!
//! Shape (see `ARCHITECTURE.md`):
//! - [`engine::Engine`] is one forwarding loop's state. It does no I/O: datagrams, commands and
//!   timeouts in, datagrams, validated addresses and events out.
//! - [`Sfu`] is the driver: one UDP media port whose shared socket a reader thread demultiplexes
//!   (`recvmmsg`) to N loop threads (one per core by default; a call is pinned to one loop by its
//!   id), each loop then reading its validated peers on sockets connected to them, one ICE-TCP listener
//!   (RFC 4571 framing), and a handle signalling uses to negotiate, hold, and close.
//! - [`rewrite`] and [`demux`] are the pure parts, tested exactly.

pub mod chain;
pub mod client;
pub mod demux;
mod driver;
pub mod engine;
pub mod keyframes;
pub mod metrics;
pub mod rewrite;
pub mod udpio;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use driver::Sfu;
pub use engine::Answer;
pub use protocol::media::{DirectionStats, MediaStats as CallStats};

/// Where and how the media plane listens.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// UDP address to bind (one port for all calls); `None` disables UDP.
    pub udp: Option<SocketAddr>,
    /// TCP address to bind for ICE-TCP; `None` disables it.
    pub tcp: Option<SocketAddr>,
    /// The address advertised in candidates, when clients reach the server through a 1:1 NAT or
    /// the sockets are bound to an unspecified address.
    pub public_ip: Option<IpAddr>,
    /// Forwarding loops (threads); 0 means one per core.
    pub loops: usize,
    /// How long a peer connection may stay failed, disconnected or unconnected before the SFU
    /// reports [`MediaEvent::Failed`].
    pub grace: Duration,
    /// How often [`MediaEvent::Stats`] is produced per call.
    pub stats_interval: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            udp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            public_ip: None,
            loops: 0,
            grace: Duration::from_secs(15),
            stats_interval: Duration::from_secs(2),
        }
    }
}

/// A participant's place in a call's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaRole {
    /// The booth: sends and receives.
    Kiosk,
    /// The operator: sends and receives.
    Operator,
    /// A supervisor's silent monitor: receives both parties, sends nothing.
    Monitor,
}

impl MediaRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaRole::Kiosk => "kiosk",
            MediaRole::Operator => "operator",
            MediaRole::Monitor => "monitor",
        }
    }
}

/// Who a peer connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Participant {
    /// The principal (`kiosk:…`, `operator:…`, `supervisor:…` or however signalling names it).
    pub principal: String,
    /// Their role in the call's media.
    pub role: MediaRole,
}

/// An ICE candidate as the protocol carries it (`media.candidate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The `candidate:` line (without `a=`).
    pub candidate: String,
    /// The media section id.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section index.
    #[serde(default)]
    pub sdp_mline_index: Option<u16>,
}

/// Something signalling must act on or relay.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// A participant's connection is up (DTLS done).
    Connected {
        /// The call.
        call_id: String,
        /// Whose connection.
        who: Participant,
    },
    /// A participant's connection has been failed, disconnected or never connected for longer
    /// than the grace period.
    Failed {
        /// The call.
        call_id: String,
        /// Whose connection.
        who: Participant,
    },
    /// Periodic statistics of one call.
    Stats(CallStats),
}

/// How loaded the media plane is: what a media node advertises so calls are placed on the least
/// loaded one. Figures are as of each forwarding loop's last one-second tick ([`Sfu::load`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MediaLoad {
    /// Forwarding loops (threads).
    pub loops: usize,
    /// Calls with media.
    pub calls: usize,
    /// Live peer connections.
    pub connections: usize,
    /// RTP packets received and forwarded per second (over the last second).
    pub packets_per_s: f64,
    /// Mean share of the last second the loops spent working (0–1).
    pub busy_ratio: f64,
    /// The busiest loop's share of the last second (0–1): a call is pinned to one loop.
    pub busiest_loop: f64,
}

/// Why a media request failed. Signalling maps these to the protocol's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The SDP could not be parsed or negotiated (`invalid`).
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// The candidate could not be parsed (`invalid`).
    #[error("bad candidate: {0}")]
    BadCandidate(String),
    /// No peer connection for this participant in this call (`not_found`).
    #[error("no media connection for this call; send media.offer first")]
    NoConnection,
    /// The media plane is not running or is overloaded (`unavailable`).
    #[error("media plane unavailable")]
    Unavailable,
    /// A bug (`internal`).
    #[error("media internal error: {0}")]
    Internal(String),
}
