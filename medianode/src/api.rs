//! The wire types of a media node's internal API (JSON over HTTP, under [`PREFIX`]), of the media
//! events a media node publishes ([`NodeEvent`]), and of what it advertises ([`NodeInfo`]).
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /internal/v1/offer` | [`OfferRequest`] | [`OfferAnswer`] |
//! | `POST /internal/v1/candidate` | [`CandidateRequest`] | [`Ack`] |
//! | `POST /internal/v1/held` | [`HeldRequest`] | [`Ack`] |
//! | `POST /internal/v1/leave` | [`LeaveRequest`] | [`Ack`] |
//! | `POST /internal/v1/end` | [`EndRequest`] | [`Ack`] |
//! | `GET /internal/v1/stats` | — | [`StatsAnswer`] |
//! | `GET /internal/v1/health` | — | [`HealthAnswer`] |
//! | `GET /internal/v1/load` | — | [`NodeLoad`] |
//!
//! Every request is signed ([`crate::auth`]). A refusal is an [`ErrorBody`],
//! `{"error":{"code","message"}}`, with the protocol's error codes and their HTTP statuses.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sfu::{Answer, CallStats, Candidate, MediaEvent, MediaLoad, MediaRole, Participant};

/// Where the internal API's routes live.
pub const PREFIX: &str = "/internal/v1";

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// `POST /internal/v1/offer`: [`sfu::Sfu::offer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRequest {
    /// The call.
    pub call_id: String,
    /// Whose connection (`kiosk:…`, `operator:…`, `supervisor:…`).
    pub principal: String,
    /// `kiosk`, `operator` or `monitor`.
    pub role: MediaRole,
    /// The offer SDP.
    pub sdp: String,
    /// The call's current hold state.
    #[serde(default)]
    pub held: bool,
}

/// The answer to an [`OfferRequest`]: [`sfu::Answer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAnswer {
    /// The answer SDP (with the media node's candidates in it).
    pub sdp: String,
    /// The media node's candidates, also to be trickled as `media.candidate` events.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

impl From<Answer> for OfferAnswer {
    fn from(a: Answer) -> Self {
        OfferAnswer {
            sdp: a.sdp,
            candidates: a.candidates,
        }
    }
}

impl From<OfferAnswer> for Answer {
    fn from(a: OfferAnswer) -> Self {
        Answer {
            sdp: a.sdp,
            candidates: a.candidates,
        }
    }
}

/// `POST /internal/v1/candidate`: [`sfu::Sfu::candidate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRequest {
    /// The call.
    pub call_id: String,
    /// Whose connection.
    pub principal: String,
    /// Their role.
    pub role: MediaRole,
    /// The `candidate:` attribute value (empty: end of candidates).
    pub candidate: String,
    /// The media section id.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section index.
    #[serde(default)]
    pub sdp_mline_index: Option<u16>,
}

impl CandidateRequest {
    /// The participant and the candidate, as [`sfu::Sfu::candidate`] takes them.
    pub fn into_parts(self) -> (String, Participant, Candidate) {
        (
            self.call_id,
            Participant {
                principal: self.principal,
                role: self.role,
            },
            Candidate {
                candidate: self.candidate,
                sdp_mid: self.sdp_mid,
                sdp_mline_index: self.sdp_mline_index,
            },
        )
    }
}

/// `POST /internal/v1/held`: [`sfu::Sfu::set_held`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRequest {
    /// The call.
    pub call_id: String,
    /// Pause (`true`) or resume forwarding.
    pub held: bool,
}

/// `POST /internal/v1/leave`: [`sfu::Sfu::leave`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveRequest {
    /// The call.
    pub call_id: String,
    /// Whose connection to close.
    pub principal: String,
    /// Their role.
    pub role: MediaRole,
}

/// `POST /internal/v1/end`: [`sfu::Sfu::end_call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRequest {
    /// The call whose connections all close.
    pub call_id: String,
}

/// The answer to a request that returns nothing: `{"ok":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Always `true`.
    pub ok: bool,
}

impl Ack {
    /// `{"ok":true}`.
    pub const OK: Ack = Ack { ok: true };
}

/// `GET /internal/v1/stats`: [`sfu::Sfu::stats`], the `media.stats` body of every call now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsAnswer {
    /// One entry per call with media.
    pub calls: Vec<CallStats>,
}

/// `GET /internal/v1/health`: [`sfu::Sfu::health`]; every forwarding loop answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthAnswer {
    /// Live peer connections.
    pub peers: usize,
}

/// `GET /internal/v1/load`: [`sfu::Sfu::load`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Forwarding loops.
    pub loops: u64,
    /// Calls with media.
    pub calls: u64,
    /// Live peer connections.
    pub connections: u64,
    /// RTP packets received and forwarded per second.
    pub packets_per_s: f64,
    /// Mean busy share of the forwarding loops over the last second (0–1).
    pub busy_ratio: f64,
    /// The busiest loop's share (0–1).
    pub busiest_loop: f64,
}

impl From<MediaLoad> for NodeLoad {
    fn from(l: MediaLoad) -> Self {
        NodeLoad {
            loops: l.loops as u64,
            calls: l.calls as u64,
            connections: l.connections as u64,
            packets_per_s: l.packets_per_s,
            busy_ratio: l.busy_ratio,
            busiest_loop: l.busiest_loop,
        }
    }
}

impl From<NodeLoad> for MediaLoad {
    fn from(l: NodeLoad) -> Self {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        MediaLoad {
            loops: size(l.loops),
            calls: size(l.calls),
            connections: size(l.connections),
            packets_per_s: l.packets_per_s,
            busy_ratio: l.busy_ratio,
            busiest_loop: l.busiest_loop,
        }
    }
}

/// A refusal: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A protocol error code (`unauthorized`, `invalid`, `not_found`, `unavailable`,
    /// `internal`).
    pub code: String,
    /// For people.
    pub message: String,
}

impl ErrorBody {
    /// An error with `code` and `message`.
    pub fn new(code: protocol::ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }
}

/// A media event of a media node, as JSON on the message bus between nodes: the form of
/// [`sfu::MediaEvent`] that signalling nodes relay.
///
/// ```json
/// {"type":"connected","call_id":"c1","principal":"kiosk:a","role":"kiosk"}
/// {"type":"failed","call_id":"c1","principal":"operator:m","role":"operator"}
/// {"type":"stats","stats":{"call_id":"c1","held":false,"connected":[…],"directions":[…]}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// [`MediaEvent::Connected`].
    Connected {
        /// The call.
        call_id: String,
        /// Whose connection.
        principal: String,
        /// Their role.
        role: MediaRole,
    },
    /// [`MediaEvent::Failed`].
    Failed {
        /// The call.
        call_id: String,
        /// Whose connection.
        principal: String,
        /// Their role.
        role: MediaRole,
    },
    /// [`MediaEvent::Stats`].
    Stats {
        /// The call's `media.stats` body.
        stats: CallStats,
    },
}

impl NodeEvent {
    /// The call the event is about.
    pub fn call_id(&self) -> &str {
        match self {
            NodeEvent::Connected { call_id, .. } | NodeEvent::Failed { call_id, .. } => call_id,
            NodeEvent::Stats { stats } => &stats.call_id,
        }
    }
}

impl From<MediaEvent> for NodeEvent {
    fn from(e: MediaEvent) -> Self {
        match e {
            MediaEvent::Connected { call_id, who } => NodeEvent::Connected {
                call_id,
                principal: who.principal,
                role: who.role,
            },
            MediaEvent::Failed { call_id, who } => NodeEvent::Failed {
                call_id,
                principal: who.principal,
                role: who.role,
            },
            MediaEvent::Stats(stats) => NodeEvent::Stats { stats },
        }
    }
}

impl From<NodeEvent> for MediaEvent {
    fn from(e: NodeEvent) -> Self {
        match e {
            NodeEvent::Connected {
                call_id,
                principal,
                role,
            } => MediaEvent::Connected {
                call_id,
                who: Participant { principal, role },
            },
            NodeEvent::Failed {
                call_id,
                principal,
                role,
            } => MediaEvent::Failed {
                call_id,
                who: Participant { principal, role },
            },
            NodeEvent::Stats { stats } => MediaEvent::Stats(stats),
        }
    }
}

/// What a media node advertises about itself (as JSON, refreshed by its heartbeat), and what
/// [`crate::placement::choose`] ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// The base URL of its internal API (`http://10.0.0.5:8081`), without [`PREFIX`].
    pub internal_url: String,
    /// The UDP media address clients are told to use.
    #[serde(default)]
    pub media_udp: Option<SocketAddr>,
    /// The ICE-TCP media address clients are told to use.
    #[serde(default)]
    pub media_tcp: Option<SocketAddr>,
    /// The most calls it takes.
    pub capacity: u64,
    /// Calls with media now.
    pub calls: u64,
    /// Live peer connections now.
    pub connections: u64,
    /// RTP packets received and forwarded per second.
    pub packets_per_s: f64,
    /// Mean busy share of its forwarding loops (0–1).
    pub busy_ratio: f64,
    /// It takes no new calls (it is shutting down); its calls go on.
    #[serde(default)]
    pub draining: bool,
    /// Its drain time is over: its remaining calls are to be moved now (`media.reconnect` with
    /// `node_draining`).
    #[serde(default)]
    pub leaving: bool,
    /// The `sportello` version it runs.
    pub version: String,
    /// When the heartbeat that wrote this was sent, in Unix milliseconds.
    pub seen_ms: u64,
    /// A fresh id per start of the node: a node restarted under the same id has lost its calls,
    /// and its new instance is a different placement.
    #[serde(default)]
    pub instance: String,
}

impl NodeInfo {
    /// What a call's placement records: the node's id and its instance (`id@instance`), so a
    /// placement on a node that restarted since is seen as lost.
    pub fn placement(&self) -> String {
        if self.instance.is_empty() {
            self.id.clone()
        } else {
            format!("{}@{}", self.id, self.instance)
        }
    }

    /// The node id of a placement (`id@instance` → `id`).
    pub fn node_of(placement: &str) -> &str {
        placement.split_once('@').map_or(placement, |(id, _)| id)
    }

    /// Whether its heartbeat is recent: `seen_ms + ttl_ms > now_ms`.
    pub fn is_live(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.seen_ms.saturating_add(ttl_ms) > now_ms
    }

    /// Whether it takes another call: not draining, and below its capacity.
    pub fn has_room(&self) -> bool {
        !self.draining && self.calls < self.capacity
    }

    /// Copies the figures of `load` (calls, connections, packets per second, busy ratio).
    pub fn set_load(&mut self, load: &NodeLoad) {
        self.calls = load.calls;
        self.connections = load.connections;
        self.packets_per_s = load.packets_per_s;
        self.busy_ratio = load.busy_ratio;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_have_the_documented_json_form() {
        let offer: OfferRequest = serde_json::from_value(json!({
            "call_id": "c1", "principal": "kiosk:a", "role": "kiosk", "sdp": "v=0\r\n"
        }))
        .unwrap();
        assert!(!offer.held, "held defaults to false");
        assert_eq!(offer.role, MediaRole::Kiosk);
        assert_eq!(
            serde_json::to_value(&offer).unwrap(),
            json!({"call_id":"c1","principal":"kiosk:a","role":"kiosk","sdp":"v=0\r\n","held":false})
        );
        assert!(serde_json::from_value::<OfferRequest>(json!({
            "call_id": "c1", "principal": "kiosk:a", "role": "citizen", "sdp": ""
        }))
        .is_err());
        let c: CandidateRequest = serde_json::from_value(json!({
            "call_id": "c1", "principal": "operator:m", "role": "operator", "candidate": "candidate:1"
        }))
        .unwrap();
        let (call, who, cand) = c.into_parts();
        assert_eq!(call, "c1");
        assert_eq!(who.role, MediaRole::Operator);
        assert_eq!(cand.sdp_mid, None);
        assert_eq!(serde_json::to_value(Ack::OK).unwrap(), json!({"ok": true}));
        assert_eq!(
            serde_json::to_value(ErrorBody::new(protocol::ErrorCode::NotFound, "no")).unwrap(),
            json!({"error": {"code": "not_found", "message": "no"}})
        );
    }

    fn stats() -> CallStats {
        CallStats {
            call_id: "c1".into(),
            held: false,
            connected: vec!["kiosk".into(), "operator".into()],
            directions: vec![sfu::DirectionStats {
                from: "kiosk".into(),
                to: "operator".into(),
                to_principal: "operator:m".into(),
                packets: 10,
                bytes: 1000,
                packets_lost: 1,
                fraction_lost: 0.25,
                rtt_ms: Some(3.5),
            }],
        }
    }

    #[test]
    fn node_events_round_trip_through_json() {
        let who = Participant {
            principal: "kiosk:a".into(),
            role: MediaRole::Kiosk,
        };
        let connected = NodeEvent::from(MediaEvent::Connected {
            call_id: "c1".into(),
            who: who.clone(),
        });
        assert_eq!(
            serde_json::to_value(&connected).unwrap(),
            json!({"type":"connected","call_id":"c1","principal":"kiosk:a","role":"kiosk"})
        );
        let failed = NodeEvent::from(MediaEvent::Failed {
            call_id: "c1".into(),
            who: who.clone(),
        });
        assert_eq!(
            serde_json::to_value(&failed).unwrap()["type"],
            json!("failed")
        );
        let st = NodeEvent::from(MediaEvent::Stats(stats()));
        assert_eq!(st.call_id(), "c1");
        for e in [connected, failed, st] {
            let text = serde_json::to_string(&e).unwrap();
            let back: NodeEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, e);
            // And back to the SFU's event, with the same content.
            let media = MediaEvent::from(back);
            assert_eq!(NodeEvent::from(media), e);
        }
        match MediaEvent::from(NodeEvent::Failed {
            call_id: "c9".into(),
            principal: "kiosk:a".into(),
            role: MediaRole::Kiosk,
        }) {
            MediaEvent::Failed { call_id, who: w } => {
                assert_eq!(call_id, "c9");
                assert_eq!(w, who);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn node_info_round_trips_and_answers_its_questions() {
        let mut info = NodeInfo {
            id: "media-1".into(),
            internal_url: "http://10.0.0.5:8081".into(),
            media_udp: Some("203.0.113.7:3478".parse().unwrap()),
            media_tcp: None,
            capacity: 10,
            calls: 9,
            connections: 18,
            packets_per_s: 1234.5,
            busy_ratio: 0.3,
            draining: false,
            leaving: false,
            version: "0.1.0".into(),
            seen_ms: 1_000,
            instance: String::new(),
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["media_udp"], json!("203.0.113.7:3478"));
        assert_eq!(v["media_tcp"], json!(null));
        assert_eq!(serde_json::from_value::<NodeInfo>(v).unwrap(), info);
        assert!(info.is_live(1_000, 1));
        assert!(!info.is_live(1_001, 1));
        assert!(info.has_room());
        info.set_load(&NodeLoad {
            loops: 2,
            calls: 10,
            connections: 20,
            packets_per_s: 1.0,
            busy_ratio: 0.5,
            busiest_loop: 0.7,
        });
        assert!(!info.has_room());
        assert_eq!((info.calls, info.connections), (10, 20));
        info.calls = 0;
        info.draining = true;
        assert!(!info.has_room());
        // seen_ms near the end of time does not overflow.
        info.seen_ms = u64::MAX;
        assert!(info.is_live(u64::MAX - 1, 10));
    }

    #[test]
    fn load_converts_both_ways() {
        let l = MediaLoad {
            loops: 2,
            calls: 3,
            connections: 6,
            packets_per_s: 100.0,
            busy_ratio: 0.1,
            busiest_loop: 0.2,
        };
        assert_eq!(MediaLoad::from(NodeLoad::from(l)), l);
    }
}
