//! One forwarding loop's state: its calls and peer connections, with no sockets and no clocks.
//!
//! The driver feeds it datagrams (tagged with transport and arrival instant), commands from
//! signalling and timeouts; it returns the datagrams to send, the addresses it has validated and
//! the events for signalling. Every peer connection is a sans-I/O `rtc` `RTCPeerConnection`;
//! media is forwarded from one connection's receiver to the other connections' senders without
//! decoding (see [`crate::rewrite`] for what is rewritten on the way).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::StatsSelector;

use crate::chain::kind_name;
use crate::demux;
use crate::rewrite::{ExtensionMap, StreamRewriter};
use crate::{CallStats, Candidate, DirectionStats, MediaError, MediaEvent, MediaRole, Participant};

/// How often a sender may be asked for a keyframe for one stream.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);

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

type PeerId = u64;

struct Inbound {
    kind: RtpCodecKind,
    receiver_id: RTCRtpReceiverId,
    ssrc: u32,
    mime_by_pt: Vec<(u8, Arc<str>)>,
    ext_uris: Arc<[(u8, String)]>,
    last_pli: Option<Instant>,
}

struct Outbound {
    source: MediaRole,
    kind: RtpCodecKind,
    sender_id: RTCRtpSenderId,
    ssrc: u32,
    pt_by_mime: Vec<(String, u8)>,
    ext_uris: Vec<(u8, String)>,
    rewriter: StreamRewriter,
    ext_map: Option<(PeerId, ExtensionMap)>,
    packets: u64,
    bytes: u64,
}

struct Peer {
    call: Arc<str>,
    who: Participant,
    pc: RTCPeerConnection,
    ufrag: String,
    inbound: HashMap<String, Inbound>,
    outbound: Vec<Outbound>,
    addrs: Vec<(TransportProtocol, SocketAddr)>,
    state: RTCPeerConnectionState,
    trouble_since: Option<Instant>,
    failed_reported: bool,
    scheduled: Option<Instant>,
    rx_packets: u64,
    rx_bytes: u64,
}

#[derive(Default)]
struct CallMedia {
    held: bool,
    peers: Vec<PeerId>,
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
}

/// One forwarding loop.
pub struct Engine {
    cfg: EngineConfig,
    peers: HashMap<PeerId, Peer>,
    calls: HashMap<Arc<str>, CallMedia>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<(TransportProtocol, SocketAddr), PeerId>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
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

/// A leg's negotiated header extensions as `(id, uri)`.
fn extensions(
    params: &rtc::rtp_transceiver::rtp_sender::RTCRtpParameters,
) -> impl Iterator<Item = (u8, String)> + '_ {
    params
        .header_extensions
        .iter()
        .map(|h| (h.id as u8, h.uri.clone()))
}

/// A fresh ECDSA P-256 DTLS certificate, or `None` (then rtc makes one per connection).
fn dtls_certificate() -> Option<rtc::peer_connection::certificate::RTCCertificate> {
    let provider = rtc::crypto::default_provider().ok()?;
    let params =
        rtc::peer_connection::certificate::CertificateParams::new(vec!["sportello".to_owned()])
            .ok()?;
    rtc::peer_connection::certificate::RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        params,
    )
    .ok()
}

/// The DTLS fingerprint line of an SDP: it identifies the client's peer connection.
fn fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(str::trim)
        .find(|l| l.starts_with("a=fingerprint:"))
}

fn bad_sdp(e: impl std::fmt::Display) -> MediaError {
    MediaError::BadSdp(e.to_string())
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

    /// The earliest instant [`Engine::handle_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn find_peer(&self, call: &str, who: &Participant) -> Option<PeerId> {
        self.calls.get(call).and_then(|c| {
            c.peers
                .iter()
                .copied()
                .find(|id| self.peers.get(id).is_some_and(|p| &p.who == who))
        })
    }

    /// A client's offer: a new connection, or a renegotiation (ICE restart) of its existing one.
    pub fn offer(
        &mut self,
        now: Instant,
        call: &str,
        who: Participant,
        sdp: String,
        held: bool,
    ) -> Result<Answer, MediaError> {
        let desc = RTCSessionDescription::offer(sdp).map_err(bad_sdp)?;
        let parsed = desc.unmarshal().map_err(bad_sdp)?;
        let kinds: Vec<&str> = parsed
            .media_descriptions
            .iter()
            .map(|m| m.media_name.media.as_str())
            .collect();
        let audio = kinds.iter().filter(|k| **k == "audio").count();
        let video = kinds.iter().filter(|k| **k == "video").count();
        let want = if who.role == MediaRole::Monitor { 2 } else { 1 };
        if audio != want || video != want {
            return Err(MediaError::BadSdp(format!(
                "expected {want} audio and {want} video sections, got {audio} audio and {video} video"
            )));
        }

        if let Some(id) = self.find_peer(call, &who) {
            let same_client = self.peers.get(&id).is_some_and(|p| {
                p.pc.remote_description()
                    .is_some_and(|d| fingerprint(&d.sdp) == fingerprint(&desc.sdp))
            });
            if !same_client {
                // A new peer connection on the client (a reloaded page, a restarted bot): it
                // replaces the old one.
                self.leave(call, Some(&who));
                return self.offer(now, call, who, desc.sdp, held);
            }
        }
        if let Some(id) = self.find_peer(call, &who) {
            // A renegotiation on the same connection: the client restarted ICE.
            let peer = self.peers.get_mut(&id).expect("peer indexed");
            peer.pc.set_remote_description(now, desc).map_err(bad_sdp)?;
            let answer = peer.pc.create_answer(None).map_err(bad_sdp)?;
            peer.pc
                .set_local_description(now, answer)
                .map_err(bad_sdp)?;
            let sdp = peer
                .pc
                .local_description()
                .map(|d| d.sdp)
                .ok_or_else(|| MediaError::Internal("no local description".into()))?;
            let candidates = self.local_candidates(0);
            self.process(now, id);
            return Ok(Answer { sdp, candidates });
        }

        let ufrag = demux::new_ufrag(self.cfg.loop_index);
        let pwd = demux::new_pwd();
        let setting = SettingEngineBuilder::new()
            .with_lite(true)
            .with_ice_credentials(ufrag.clone(), pwd)
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .build();
        let mut media =
            crate::chain::media_engine().map_err(|e| MediaError::Internal(e.to_string()))?;
        let registry = crate::chain::interceptors(&mut media)
            .map_err(|e| MediaError::Internal(e.to_string()))?;
        let config = match &self.certificate {
            Some(c) => RTCConfigurationBuilder::new()
                .with_certificates(vec![c.clone()])
                .build(),
            None => RTCConfigurationBuilder::new().build(),
        };
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(setting)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| MediaError::Internal(e.to_string()))?;

        // What this connection sends: the other party's media, or both parties' for a monitor.
        let sources: &[MediaRole] = match who.role {
            MediaRole::Kiosk => &[MediaRole::Operator],
            MediaRole::Operator => &[MediaRole::Kiosk],
            MediaRole::Monitor => &[MediaRole::Kiosk, MediaRole::Operator],
        };
        let mut planned = Vec::new();
        for &source in sources {
            for (kind, _, clock) in crate::chain::KINDS {
                let (track, ssrc) = crate::chain::local_track(
                    format!("sportello-{}", source.as_str()),
                    format!("{}-{}", source.as_str(), kind_name(kind)),
                    kind,
                );
                let sender_id = pc
                    .add_track(track)
                    .map_err(|e| MediaError::Internal(e.to_string()))?;
                planned.push((source, kind, sender_id, ssrc, clock));
            }
        }

        pc.set_remote_description(now, desc).map_err(bad_sdp)?;
        let candidates = self.local_candidates(0);
        for c in &candidates {
            pc.add_local_candidate(RTCIceCandidateInit {
                candidate: c.candidate.clone(),
                sdp_mid: c.sdp_mid.clone(),
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: None,
                ..Default::default()
            })
            .map_err(|e| MediaError::Internal(e.to_string()))?;
        }
        let answer = pc.create_answer(None).map_err(bad_sdp)?;
        pc.set_local_description(now, answer).map_err(bad_sdp)?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| MediaError::Internal("no local description".into()))?;

        let mut outbound = Vec::new();
        for (source, kind, sender_id, ssrc, clock) in planned {
            let Some(mut sender) = pc.rtp_sender(sender_id) else {
                continue;
            };
            let params = sender.get_parameters();
            let pt_by_mime = params
                .rtp_parameters
                .codecs
                .iter()
                .map(|c| (c.rtp_codec.mime_type.to_ascii_lowercase(), c.payload_type))
                .collect();
            let ext_uris = extensions(&params.rtp_parameters).collect();
            outbound.push(Outbound {
                source,
                kind,
                sender_id,
                ssrc,
                pt_by_mime,
                ext_uris,
                rewriter: StreamRewriter::new(clock),
                ext_map: None,
                packets: 0,
                bytes: 0,
            });
        }

        let id = self.next_id;
        self.next_id += 1;
        let call_key: Arc<str> = Arc::from(call);
        self.by_ufrag.insert(ufrag.clone(), id);
        self.peers.insert(
            id,
            Peer {
                call: call_key.clone(),
                who,
                pc,
                ufrag,
                inbound: HashMap::new(),
                outbound,
                addrs: Vec::new(),
                state: RTCPeerConnectionState::New,
                trouble_since: Some(now),
                failed_reported: false,
                scheduled: None,
                rx_packets: 0,
                rx_bytes: 0,
            },
        );
        let entry = self.calls.entry(call_key).or_default();
        entry.held = held;
        entry.peers.push(id);
        self.process(now, id);
        Ok(Answer { sdp, candidates })
    }

    fn local_candidates(&self, mline: u16) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut make = |network: &str, addr: SocketAddr, tcp: bool| {
            let host = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type: if tcp {
                    rtc::ice::tcp_type::TcpType::Passive
                } else {
                    Default::default()
                },
            };
            if let Ok(c) = host.new_candidate_host() {
                if let Ok(init) = RTCIceCandidate::from(&c).to_json() {
                    out.push(Candidate {
                        candidate: init.candidate,
                        sdp_mid: Some(mline.to_string()),
                        sdp_mline_index: Some(mline),
                    });
                }
            }
        };
        if let Some(udp) = self.cfg.udp {
            make("udp", udp, false);
        }
        if let Some(tcp) = self.cfg.tcp {
            make("tcp", tcp, true);
        }
        out
    }

    /// A client's trickled candidate. The SFU is ICE-lite: it learns client addresses from their
    /// checks, so a well-formed candidate is accepted and kept only for the record.
    pub fn candidate(
        &mut self,
        call: &str,
        who: &Participant,
        candidate: Candidate,
    ) -> Result<(), MediaError> {
        let id = self.find_peer(call, who).ok_or(MediaError::NoConnection)?;
        let peer = self.peers.get_mut(&id).expect("peer indexed");
        if candidate.candidate.trim().is_empty() {
            // End of candidates.
            return Ok(());
        }
        peer.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: None,
                ..Default::default()
            })
            .map_err(|e| MediaError::BadCandidate(e.to_string()))
    }

    /// Hold or resume a call: while held nothing is forwarded to or from its booth; on resume the
    /// streams continue without a gap and the senders are asked for a keyframe.
    pub fn set_held(&mut self, now: Instant, call: &str, held: bool) {
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if c.held == held {
            return;
        }
        c.held = held;
        let ids = c.peers.clone();
        if !held {
            for &id in &ids {
                if let Some(p) = self.peers.get_mut(&id) {
                    for o in &mut p.outbound {
                        o.rewriter.resync();
                    }
                }
            }
            for id in ids {
                self.request_keyframes(now, id, true);
            }
        }
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

    /// One datagram from the network.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        protocol: TransportProtocol,
        from: SocketAddr,
        data: BytesMut,
    ) {
        let id = match self.by_addr.get(&(protocol, from)) {
            Some(&id) => id,
            None => match demux::binding_request_ufrag(&data).and_then(|u| self.by_ufrag.get(u)) {
                Some(&id) => id,
                None => {
                    self.counters.dropped_unknown += 1;
                    return;
                }
            },
        };
        let local = match protocol {
            TransportProtocol::TCP => self.cfg.tcp,
            _ => self.cfg.udp,
        };
        let Some(local) = local else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let result = peer.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: data,
        });
        if result.is_err() {
            // A malformed or unauthenticated datagram: the connection stays as it was.
            self.counters.dropped_unknown += 1;
        }
        self.process(now, id);
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded
            }
            peer.scheduled = None;
            let _ = peer.pc.handle_timeout(now);
            self.process(now, id);
        }
    }

    /// Connections that have been failed, disconnected or unconnected for longer than the grace
    /// period are reported once as [`MediaEvent::Failed`].
    pub fn check_failures(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            if peer.failed_reported {
                continue;
            }
            if let Some(since) = peer.trouble_since {
                if now.saturating_duration_since(since) >= self.cfg.grace {
                    peer.failed_reported = true;
                    self.events.push(MediaEvent::Failed {
                        call_id: peer.call.to_string(),
                        who: peer.who.clone(),
                    });
                }
            }
        }
    }

    /// Drain a connection's outputs: events, application messages (forwarded), datagrams, and its
    /// next deadline.
    fn process(&mut self, now: Instant, id: PeerId) {
        let mut forwards = std::mem::take(&mut self.scratch);
        let mut keyframe_for: Vec<u32> = Vec::new();
        let mut became_connected = false;
        {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            while let Some(ev) = peer.pc.poll_event() {
                match ev {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                        peer.state = state;
                        match state {
                            RTCPeerConnectionState::Connected => {
                                peer.trouble_since = None;
                                peer.failed_reported = false;
                                // Whatever was sent before this receiver could decrypt is lost:
                                // its senders start it with a keyframe.
                                became_connected = true;
                                self.events.push(MediaEvent::Connected {
                                    call_id: peer.call.to_string(),
                                    who: peer.who.clone(),
                                });
                            }
                            RTCPeerConnectionState::Failed
                            | RTCPeerConnectionState::Disconnected
                            | RTCPeerConnectionState::Closed => {
                                peer.trouble_since.get_or_insert(now);
                            }
                            _ => {}
                        }
                    }
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        let Some(mut receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
                            continue;
                        };
                        let kind = receiver.track().kind();
                        let params = receiver.get_parameters();
                        let mime_by_pt = params
                            .rtp_parameters
                            .codecs
                            .iter()
                            .map(|c| {
                                (
                                    c.payload_type,
                                    Arc::from(c.rtp_codec.mime_type.to_ascii_lowercase()),
                                )
                            })
                            .collect();
                        let ext_uris = extensions(&params.rtp_parameters).collect();
                        peer.inbound.insert(
                            init.track_id.to_string(),
                            Inbound {
                                kind,
                                receiver_id: init.receiver_id,
                                ssrc: init.ssrc,
                                mime_by_pt,
                                ext_uris,
                                last_pli: None,
                            },
                        );
                        if kind == RtpCodecKind::Video {
                            keyframe_for.push(0);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
                match message {
                    RTCMessage::RtpPacket(track_id, packet) => {
                        peer.rx_packets += 1;
                        peer.rx_bytes += packet.payload.len() as u64;
                        self.counters.rtp_in += 1;
                        self.counters.rtp_in_bytes += packet.payload.len() as u64;
                        forwards.push((track_id, packet));
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        for p in packets {
                            let any = p.as_any();
                            if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                                keyframe_for.push(pli.media_ssrc);
                                self.counters.keyframes_asked += 1;
                            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                                keyframe_for.extend(fir.fir.iter().map(|e| e.ssrc));
                                self.counters.keyframes_asked += fir.fir.len() as u64;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if !forwards.is_empty() {
            for (track_id, packet) in forwards.drain(..) {
                self.forward(now, id, &track_id, packet);
            }
        }
        self.scratch = forwards;
        if became_connected {
            let others: Vec<PeerId> = self
                .peers
                .get(&id)
                .and_then(|p| self.calls.get(&p.call))
                .map(|c| c.peers.iter().copied().filter(|&o| o != id).collect())
                .unwrap_or_default();
            for o in others {
                self.request_keyframes(now, o, true);
            }
        }
        for ssrc in keyframe_for {
            if ssrc == 0 {
                // A new incoming video track: ask it for a keyframe for its receivers.
                self.request_keyframes(now, id, false);
            } else {
                self.keyframe_request_from_receiver(now, id, ssrc);
            }
        }
        self.flush(now, id);
    }

    /// Send a peer's datagrams, learn its validated addresses, reschedule its timer.
    fn flush(&mut self, now: Instant, id: PeerId) {
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
                self.timers.push(Reverse((at, id)));
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

mod forward;
mod stats;
