//! Bodies of the media messages: `media.offer`, `media.candidate`, `monitor.start/stop`, and the
//! `media.stats` and `media.reconnect` events. The SFU answers with `ok {"sdp"}`.

use serde::{Deserialize, Serialize};

/// `media.offer {"call_id","sdp","monitor"?}`: a participant's offer for its one peer connection of
/// the call. Kiosk and operator offer one audio and one video `sendrecv` transceiver; a supervisor
/// (after `monitor.start`) adds `"monitor":true` and offers four `recvonly` transceivers (audio
/// and video of the kiosk, then of the operator). Sending it again for the same call renegotiates
/// the same connection (an ICE restart after a network change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaOffer {
    /// The call.
    pub call_id: String,
    /// The offer SDP.
    pub sdp: String,
    /// A supervisor's silent monitor.
    #[serde(default)]
    pub monitor: bool,
}

/// The reply to `media.offer`: the SFU's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaAnswer {
    /// The answer SDP.
    pub sdp: String,
    /// Extension: the media node that answered (`node@instance`), with media nodes; `state.sync`
    /// names the call's node the same way, so a client that missed a `media.reconnect` sees that
    /// its connection is on another node and offers again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_node: Option<String>,
}

/// `media.candidate`: a trickled ICE candidate, as a request from the client and as an event from
/// the server. An empty `candidate` is the end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaCandidate {
    /// The call.
    pub call_id: String,
    /// The `candidate:` attribute value.
    pub candidate: String,
    /// The media section id.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section index.
    #[serde(default)]
    pub sdp_mline_index: Option<u16>,
}

/// `media.reconnect` (extension): the server placed the call's media on another media node (the
/// one it was on died or is draining). Sent to the call's kiosk, its operator and the supervisors
/// monitoring it, while the call is in conversation (connected or on hold), possibly more than once.
/// The call is neither ended nor requeued.
///
/// A client with media for the call closes its peer connection for it and sends a fresh
/// `media.offer` from a **new** peer connection (same local tracks; a supervisor again with
/// `"monitor":true`), then trickles that connection's candidates. Candidates of the old connection
/// are no longer sent. A client without media for the call ignores the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaReconnect {
    /// The call.
    pub call_id: String,
    /// Why: [`MediaReconnect::NODE_LOST`], [`MediaReconnect::NODE_DRAINING`], or another text
    /// (future reasons), which a client treats like the others.
    pub reason: String,
}

impl MediaReconnect {
    /// The media node of the call stopped answering.
    pub const NODE_LOST: &'static str = "node_lost";
    /// The media node of the call is being drained (shut down in order).
    pub const NODE_DRAINING: &'static str = "node_draining";
}

/// `media.stats`: one call's media, per direction, every few seconds to the operator and to the
/// supervisors monitoring the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaStats {
    /// The call.
    pub call_id: String,
    /// Forwarding is paused (the call is on hold).
    pub held: bool,
    /// Roles whose peer connection is up: `kiosk`, `operator`, `monitor`.
    pub connected: Vec<String>,
    /// One entry per (source, receiver) pair.
    pub directions: Vec<DirectionStats>,
}

/// One direction of a call's media, e.g. kiosk → operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// `kiosk` or `operator`.
    pub from: String,
    /// `kiosk`, `operator` or `monitor`.
    pub to: String,
    /// The receiving principal (tells monitors apart).
    pub to_principal: String,
    /// RTP packets forwarded in this direction since the connection opened.
    pub packets: u64,
    /// RTP payload bytes forwarded.
    pub bytes: u64,
    /// Packets lost between the sender and the SFU.
    pub packets_lost: u64,
    /// Fraction lost between the SFU and the receiver, from its last receiver report (0–1).
    pub fraction_lost: f64,
    /// Round-trip time SFU ⇄ receiver in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
}
