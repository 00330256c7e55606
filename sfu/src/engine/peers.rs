//! The peer table: each connection with its streams, the calls that group them, and the indexes
//! the loop finds them by (call and participant, ICE ufrag, validated address). Connections enter
//! it at an offer, leave it at `leave`, and learn their addresses in `flush`, which also sends
//! their datagrams and schedules their next timeout.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::TransportProtocol;

use super::{Engine, Transmit};
use crate::rewrite::{ExtensionMap, StreamRewriter};
use crate::{MediaRole, Participant};

/// DTLS records kept per connection until ICE has a pair (a handshake flight is a few).
pub(super) const EARLY_DTLS: usize = 8;

/// A connection's id within its loop.
pub(super) type PeerId = u64;

/// A stream the client sends us, as negotiated.
pub(super) struct Inbound {
    pub(super) kind: RtpCodecKind,
    pub(super) receiver_id: RTCRtpReceiverId,
    pub(super) ssrc: u32,
    pub(super) mime_by_pt: Vec<(u8, Arc<str>)>,
    pub(super) ext_uris: Arc<[(u8, String)]>,
    pub(super) last_pli: Option<Instant>,
}

/// A stream we send the client: one of the other party's (or, for a monitor, either party's).
pub(super) struct Outbound {
    pub(super) source: MediaRole,
    pub(super) kind: RtpCodecKind,
    pub(super) sender_id: RTCRtpSenderId,
    pub(super) ssrc: u32,
    pub(super) pt_by_mime: Vec<(String, u8)>,
    pub(super) ext_uris: Vec<(u8, String)>,
    pub(super) rewriter: StreamRewriter,
    pub(super) ext_map: Option<(PeerId, ExtensionMap)>,
    pub(super) packets: u64,
    pub(super) bytes: u64,
}

/// One participant's peer connection and what the loop knows of it.
pub(super) struct Peer {
    pub(super) call: Arc<str>,
    pub(super) who: Participant,
    pub(super) pc: RTCPeerConnection,
    pub(super) ufrag: String,
    pub(super) inbound: HashMap<String, Inbound>,
    pub(super) outbound: Vec<Outbound>,
    pub(super) addrs: Vec<(TransportProtocol, SocketAddr)>,
    pub(super) state: RTCPeerConnectionState,
    /// The ICE connection state `rtc` last reported.
    pub(super) ice: RTCIceConnectionState,
    /// DTLS records that arrived before ICE had a pair to carry them, which `rtc` would drop, to
    /// hand to the connection once it has one (at most [`EARLY_DTLS`]). A browser starts DTLS as
    /// soon as its own check is answered, often before ours is: without them it would wait for
    /// its retransmission timer.
    pub(super) early_dtls: Vec<(TransportProtocol, SocketAddr, BytesMut)>,
    pub(super) trouble_since: Option<Instant>,
    pub(super) failed_reported: bool,
    pub(super) scheduled: Option<Instant>,
    pub(super) rx_packets: u64,
    pub(super) rx_bytes: u64,
}

/// A call's connections and whether it is on hold.
#[derive(Default)]
pub(super) struct CallMedia {
    pub(super) held: bool,
    pub(super) peers: Vec<PeerId>,
}

impl Peer {
    /// Whether ICE has a pair for data yet: `rtc` drops anything but STUN until it does.
    pub(super) fn ice_has_pair(&self) -> bool {
        !matches!(
            self.ice,
            RTCIceConnectionState::Unspecified
                | RTCIceConnectionState::New
                | RTCIceConnectionState::Checking
        )
    }
}

impl Engine {
    /// The connection of `who` in `call`.
    pub(super) fn find_peer(&self, call: &str, who: &Participant) -> Option<PeerId> {
        self.calls.get(call).and_then(|c| {
            c.peers
                .iter()
                .copied()
                .find(|id| self.peers.get(id).is_some_and(|p| &p.who == who))
        })
    }

    /// Give a new connection an id and index it by its ufrag and under its call, whose hold state
    /// the offer sets.
    pub(super) fn insert_peer(&mut self, peer: Peer, held: bool) -> PeerId {
        let id = self.next_id;
        self.next_id += 1;
        let call = peer.call.clone();
        self.by_ufrag.insert(peer.ufrag.clone(), id);
        self.peers.insert(id, peer);
        let entry = self.calls.entry(call).or_default();
        entry.held = held;
        entry.peers.push(id);
        id
    }

    /// Close one participant's connection (`Some`) or the whole call's media (`None`).
    pub fn leave(&mut self, call: &str, who: Option<&Participant>) {
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        let gone: Vec<PeerId> = match who {
            None => std::mem::take(&mut c.peers),
            Some(w) => {
                let ids: Vec<PeerId> = c
                    .peers
                    .iter()
                    .copied()
                    .filter(|id| self.peers.get(id).is_some_and(|p| &p.who == w))
                    .collect();
                c.peers.retain(|id| !ids.contains(id));
                ids
            }
        };
        if c.peers.is_empty() {
            self.calls.remove(call);
        }
        for id in gone {
            if let Some(mut p) = self.peers.remove(&id) {
                let _ = p.pc.close();
                while let Some(t) = p.pc.poll_write() {
                    self.transmits.push(Transmit {
                        protocol: t.transport.transport_protocol,
                        to: t.transport.peer_addr,
                        data: t.message,
                    });
                }
                self.by_ufrag.remove(&p.ufrag);
                for a in p.addrs {
                    self.by_addr.remove(&a);
                    self.learned.push((a.0, a.1, false));
                }
            }
        }
    }

    /// Send a peer's datagrams, learn its validated addresses, reschedule its timer.
    pub(super) fn flush(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut new_addrs = Vec::new();
        while let Some(t) = peer.pc.poll_write() {
            let key = (t.transport.transport_protocol, t.transport.peer_addr);
            if !peer.addrs.contains(&key) {
                // rtc only writes to an address after it accepted an authenticated check from it.
                peer.addrs.push(key);
                new_addrs.push(key);
            }
            self.transmits.push(Transmit {
                protocol: key.0,
                to: key.1,
                data: t.message,
            });
        }
        if let Some(at) = peer.pc.poll_timeout() {
            let at = at.max(now);
            if peer.scheduled.is_none_or(|s| at < s) {
                peer.scheduled = Some(at);
                if peer.state == RTCPeerConnectionState::Connected {
                    self.lazy_timers.push(Reverse((at, id)));
                } else {
                    self.timers.push(Reverse((at, id)));
                }
            }
        }
        for key in new_addrs {
            if let Some(old) = self.by_addr.insert(key, id) {
                if old != id {
                    if let Some(o) = self.peers.get_mut(&old) {
                        o.addrs.retain(|a| a != &key);
                    }
                }
            }
            self.learned.push((key.0, key.1, true));
        }
    }
}
