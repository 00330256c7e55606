//! Intake: a datagram from the network demultiplexed onto its peer connection (by validated
//! address, else by the ufrag of an ICE check), and what a connection yields after a datagram, a
//! timeout or an offer: state changes and events, new incoming tracks, RTP to forward and keyframe
//! requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::negotiate::extensions;
use super::peers::{Inbound, PeerId, EARLY_DTLS};
use super::Engine;
use crate::demux;
use crate::MediaEvent;

impl Engine {
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
        if !peer.ice_has_pair() && demux::is_dtls(&data) {
            // Kept for when ICE has a pair (below): rtc would drop it now.
            if peer.early_dtls.len() < EARLY_DTLS {
                peer.early_dtls.push((protocol, from, data));
            } else {
                self.counters.dropped_unknown += 1;
            }
            return;
        }
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

    /// Drain a connection's outputs: events, application messages (forwarded), datagrams, and its
    /// next deadline.
    pub(super) fn process(&mut self, now: Instant, id: PeerId) {
        let mut forwards = std::mem::take(&mut self.scratch);
        let mut keyframe_for: Vec<u32> = Vec::new();
        let mut became_connected = false;
        let mut early_dtls = Vec::new();
        {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            while let Some(ev) = peer.pc.poll_event() {
                match ev {
                    RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                        peer.ice = state;
                        if peer.ice_has_pair() {
                            // The DTLS records that came before ICE had a pair now count.
                            early_dtls.append(&mut peer.early_dtls);
                        }
                    }
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
        for (protocol, from, data) in early_dtls {
            self.handle_packet(now, protocol, from, data);
        }
    }
}
