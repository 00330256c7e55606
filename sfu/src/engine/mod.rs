//! One forwarding loop's state: its calls and peer connections, with no sockets and no clocks.
//!
//! The driver feeds it datagrams (tagged with transport and arrival instant), commands from
//! signalling and timeouts; it returns the datagrams to send, the addresses it has validated and
//! the events for signalling. Every peer connection is a sans-I/O `rtc` `RTCPeerConnection`;
//! media is forwarded from one connection's receiver to the other connections' senders without
//! decoding (see [`crate::rewrite`] for what is rewritten on the way).
//!
//! One concern per file, each an `impl Engine` block on the same state:
//! - `negotiate`: offers and answers (a new peer connection, a renegotiation, a replaced client),
//!   our candidates and the client's trickled ones;
//! - `peers`: the peer table and its indexes (by call, ufrag and validated address), and a
//!   connection's outputs: datagrams, learned addresses, next deadline;
//! - `intake`: a datagram demultiplexed onto its connection, and what the connection then yields;
//! - `forward`: RTP forwarded to the other connections of a call, keyframe requests, and hold;
//! - `timers`: connection timeouts and the failure grace period;
//! - `stats`: per-call media statistics.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::shared::TransportProtocol;

use crate::{Candidate, MediaEvent};

use negotiate::dtls_certificate;
use peers::{CallMedia, Peer, PeerId};

mod forward;
mod intake;
mod negotiate;
mod peers;
mod stats;
mod timers;

pub use timers::TIMER_SLACK;

/// What one loop needs to know about the sockets it answers on.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This loop's index (the first byte of its ufrags).
    pub loop_index: usize,
    /// The UDP address advertised in candidates (and used as the local address of UDP packets).
    pub udp: Option<SocketAddr>,
    /// The ICE-TCP address advertised as a passive candidate.
    pub tcp: Option<SocketAddr>,
    /// How long a connection may stay failed, disconnected or unconnected before it is reported
    /// as [`MediaEvent::Failed`].
    pub grace: Duration,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// UDP or TCP (then framed by the driver).
    pub protocol: TransportProtocol,
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: BytesMut,
}

/// Counters the driver turns into Prometheus metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// RTP packets received from clients.
    pub rtp_in: u64,
    /// RTP bytes (payload) received.
    pub rtp_in_bytes: u64,
    /// RTP packets forwarded to clients.
    pub rtp_out: u64,
    /// RTP bytes forwarded.
    pub rtp_out_bytes: u64,
    /// Datagrams dropped because no connection owns their address or ufrag.
    pub dropped_unknown: u64,
    /// RTP packets not forwarded because the call is on hold.
    pub dropped_held: u64,
    /// Keyframe requests (PLI, FIR entries) received from receivers: each one a picture they
    /// could not decode.
    pub keyframes_asked: u64,
    /// PLIs this SFU sent to senders (a receiver's request, a join or a resume).
    pub keyframes_sent: u64,
    /// Connection timers that came due and ran (`handle_timeout` of one connection): with the
    /// datagrams, what a call costs the loop in wake-ups (`sfu/tests/engine_harness.rs`).
    pub timer_fires: u64,
}

/// One forwarding loop.
pub struct Engine {
    cfg: EngineConfig,
    peers: HashMap<PeerId, Peer>,
    calls: HashMap<Arc<str>, CallMedia>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<(TransportProtocol, SocketAddr), PeerId>,
    /// Deadlines of connections that are not connected (joining, or in trouble): the driver
    /// wakes for them on time.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// Deadlines of connected connections: run at the first wake-up after them, and woken for
    /// only [`timers::TIMER_SLACK`] late (see [`Engine::next_deadline`]).
    lazy_timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    next_id: PeerId,
    transmits: Vec<Transmit>,
    learned: Vec<(TransportProtocol, SocketAddr, bool)>,
    events: Vec<MediaEvent>,
    counters: Counters,
    scratch: Vec<(String, rtc::rtp::Packet)>,
    targets: Vec<PeerId>,
    /// One DTLS certificate for every connection of the loop, made once (rtc would otherwise
    /// generate a key pair per connection).
    certificate: Option<rtc::peer_connection::certificate::RTCCertificate>,
}

/// The SFU's answer to an offer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The answer SDP (with our candidates in it).
    pub sdp: String,
    /// Our candidates, also trickled as `media.candidate` events.
    pub candidates: Vec<Candidate>,
}

impl Engine {
    /// An empty loop.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            peers: HashMap::new(),
            calls: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            lazy_timers: BinaryHeap::new(),
            next_id: 1,
            transmits: Vec::new(),
            learned: Vec::new(),
            events: Vec::new(),
            counters: Counters::default(),
            scratch: Vec::new(),
            targets: Vec::new(),
            certificate: dtls_certificate(),
        }
    }

    /// Counters since the last call (then reset).
    pub fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.counters)
    }

    /// Live peer connections in this loop.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Calls with media in this loop.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Datagrams to send, in order.
    pub fn drain_transmits(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.transmits.drain(..)
    }

    /// Addresses validated (`true`) or forgotten (`false`) since the last call.
    pub fn drain_learned(&mut self) -> std::vec::Drain<'_, (TransportProtocol, SocketAddr, bool)> {
        self.learned.drain(..)
    }

    /// Events for signalling.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, MediaEvent> {
        self.events.drain(..)
    }
}
