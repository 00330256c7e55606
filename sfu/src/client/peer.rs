//! The task that runs one client's peer connection ([`Driver`]): it reads the host socket, the
//! TURN allocations and the client's commands, feeds them to the `rtc` connection with the time,
//! sends what it writes (from a relay candidate through its allocation, from the host candidate
//! on the socket), paces the synthetic audio and video, and records what arrives in the stats.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::relay_io::Relays;
use super::{host_candidate, now_us, turn, ClientOptions, ClientStats, Cmd, MARKER, TRAILER};
use crate::rewrite::seq_newer;

pub(super) struct OutTrack {
    pub(super) kind: RtpCodecKind,
    pub(super) id: RTCRtpSenderId,
    pub(super) ssrc: u32,
    pub(super) pt: u8,
    pub(super) seq: u16,
    pub(super) ts: u32,
}

pub(super) struct Driver {
    pub(super) pc: RTCPeerConnection,
    pub(super) socket: UdpSocket,
    pub(super) local: SocketAddr,
    pub(super) senders: Vec<OutTrack>,
    pub(super) opts: ClientOptions,
    pub(super) stats: Arc<Mutex<ClientStats>>,
    pub(super) cmds: mpsc::UnboundedReceiver<Cmd>,
    pub(super) sending: bool,
    pub(super) connected: bool,
    pub(super) track_kinds: HashMap<String, String>,
    pub(super) frame: u32,
    /// The TURN allocations (none without `turn:` servers).
    pub(super) relays: Relays,
    /// Their relay candidates, added again after an ICE restart.
    pub(super) relay_inits: Vec<RTCIceCandidateInit>,
    /// No host candidate (policy `relay`).
    pub(super) relay_only: bool,
}

impl Driver {
    pub(super) async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let start = Instant::now();
        let mut next_audio = start;
        let frame_interval = if self.opts.fps > 0 {
            Duration::from_secs(1) / self.opts.fps
        } else {
            Duration::from_secs(3600)
        };
        let mut next_video = start;
        loop {
            self.pump();
            let now = Instant::now();
            let mut deadline = self
                .pc
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(1));
            if let Some(t) = self.relays.poll_timeout() {
                deadline = deadline.min(t);
            }
            if self.connected && self.sending {
                if self.opts.audio {
                    deadline = deadline.min(next_audio);
                }
                if self.opts.fps > 0 {
                    deadline = deadline.min(next_video);
                }
            }
            tokio::select! {
                input = self.relays.recv() => {
                    self.relays.handle_input(Instant::now(), input);
                    self.relay_events();
                }
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        if let Ok(mut st) = self.stats.lock() {
                            st.direct_received += 1;
                        }
                        let _ = self.pc.handle_read(TaggedBytesMut {
                            now: Instant::now(),
                            transport: TransportContext {
                                local_addr: self.local,
                                peer_addr: from,
                                ecn: None,
                                transport_protocol: TransportProtocol::UDP,
                            },
                            message: BytesMut::from(&buf[..n]),
                        });
                    }
                }
                c = self.cmds.recv() => match c {
                    Some(Cmd::Vanish) => return,
                    None | Some(Cmd::Close) => {
                        let _ = self.pc.close();
                        self.pump();
                        self.relays.close(Instant::now());
                        return;
                    }
                    Some(Cmd::Answer(sdp, reply)) => {
                        let r = self.apply_answer(sdp);
                        let _ = reply.send(r);
                    }
                    Some(Cmd::RestartIce(reply)) => {
                        let r = self.restart_ice().await;
                        let _ = reply.send(r);
                    }
                    Some(Cmd::RemoteCandidate(c)) => {
                        if let Some(peer) = turn::udp_candidate_addr(&c.candidate) {
                            self.relays.permit(Instant::now(), peer);
                        }
                        let _ = self.pc.add_remote_candidate(RTCIceCandidateInit {
                            candidate: c.candidate,
                            sdp_mid: c.sdp_mid,
                            sdp_mline_index: c.sdp_mline_index,
                            ..Default::default()
                        });
                    }
                    Some(Cmd::SetSending(on)) => self.sending = on,
                    Some(Cmd::RequestKeyframe) => self.request_keyframe(),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            let _ = self.pc.handle_timeout(now);
            self.relays.handle_timeout(now);
            self.relay_events();
            if self.connected && self.sending {
                if self.opts.audio && now >= next_audio {
                    self.send_audio(now);
                    next_audio += Duration::from_millis(20);
                    if next_audio < now {
                        next_audio = now + Duration::from_millis(20);
                    }
                }
                if self.opts.fps > 0 && now >= next_video {
                    self.send_video(now);
                    next_video += frame_interval;
                    if next_video < now {
                        next_video = now + frame_interval;
                    }
                }
            }
        }
    }

    fn request_keyframe(&mut self) {
        let now = Instant::now();
        let receivers: Vec<_> = self.pc.get_receivers().collect();
        for id in receivers {
            if let Some(mut r) = self.pc.rtp_receiver(id) {
                if r.track().kind() != RtpCodecKind::Video {
                    continue;
                }
                let ssrcs: Vec<u32> = r.track().ssrcs().collect();
                for media_ssrc in ssrcs {
                    let _ = r.write_rtcp(
                        now,
                        vec![Box::new(
                            rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                                sender_ssrc: 0,
                                media_ssrc,
                            },
                        )],
                    );
                }
            }
        }
    }

    async fn restart_ice(&mut self) -> Result<String, String> {
        let bind = SocketAddr::new(self.local.ip(), 0);
        let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
        self.local = socket.local_addr().map_err(|e| e.to_string())?;
        self.socket = socket;
        if !self.relay_only {
            let init = host_candidate(self.local).map_err(|e| e.to_string())?;
            self.pc
                .add_local_candidate(init)
                .map_err(|e| e.to_string())?;
        }
        for init in self.relay_inits.clone() {
            let _ = self.pc.add_local_candidate(init);
        }
        self.pc.restart_ice();
        let offer = self.pc.create_offer(None).map_err(|e| e.to_string())?;
        self.pc
            .set_local_description(Instant::now(), offer)
            .map_err(|e| e.to_string())?;
        self.pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| "no local description".to_owned())
    }

    fn apply_answer(&mut self, sdp: String) -> Result<(), String> {
        self.permit_sdp(&sdp);
        let desc = RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?;
        self.pc
            .set_remote_description(Instant::now(), desc)
            .map_err(|e| e.to_string())?;
        self.learn_payload_types();
        Ok(())
    }

    /// Asks the TURN allocations for permissions for the remote's UDP candidates in `sdp`.
    pub(super) fn permit_sdp(&mut self, sdp: &str) {
        let now = Instant::now();
        for peer in turn::sdp_udp_candidates(sdp) {
            self.relays.permit(now, peer);
        }
    }

    /// Hands what came through the TURN allocations to the ICE agent, as arrived on the relayed
    /// address; logs an allocation that broke.
    fn relay_events(&mut self) {
        while let Some((relayed, ev)) = self.relays.poll_event() {
            match (ev, relayed) {
                (turn::TurnEvent::Received(from, data), Some(relayed)) => {
                    if let Ok(mut st) = self.stats.lock() {
                        st.relay_received += 1;
                    }
                    let _ = self.pc.handle_read(TaggedBytesMut {
                        now: Instant::now(),
                        transport: TransportContext {
                            local_addr: relayed,
                            peer_addr: from,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: data,
                    });
                }
                (turn::TurnEvent::Failed(why), _) => {
                    tracing::warn!("TURN relay lost: {why}");
                    if let Ok(mut st) = self.stats.lock() {
                        st.turn_errors.push(why);
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends what the connection wrote: from a relay candidate through its allocation, from the
    /// host candidate on the socket.
    fn write_out(&mut self) {
        let mut relayed = 0;
        while let Some(t) = self.pc.poll_write() {
            let local = t.transport.local_addr;
            if self.relays.owns(local) {
                if self
                    .relays
                    .send(t.now, local, t.transport.peer_addr, &t.message)
                {
                    relayed += 1;
                }
            } else if !self.relay_only {
                let _ = self.socket.try_send_to(&t.message, t.transport.peer_addr);
            }
        }
        if relayed > 0 {
            if let Ok(mut st) = self.stats.lock() {
                st.relay_sent += relayed;
            }
        }
    }

    /// Reads the payload type each sender was negotiated (after the offer/answer exchange).
    pub(super) fn learn_payload_types(&mut self) {
        for s in &mut self.senders {
            if let Some(mut sender) = self.pc.rtp_sender(s.id) {
                let want = crate::chain::KINDS
                    .iter()
                    .find(|(k, _, _)| *k == s.kind)
                    .map_or("", |(_, mime, _)| *mime);
                if let Some(c) = sender
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(want))
                {
                    s.pt = c.payload_type;
                }
            }
        }
    }

    fn send(&mut self, now: Instant, kind: RtpCodecKind, payloads: Vec<Bytes>, advance: u32) {
        let Some(s) = self.senders.iter_mut().find(|s| s.kind == kind) else {
            return;
        };
        if s.pt == 0 {
            return;
        }
        let n = payloads.len();
        let mut sent = 0;
        for (i, payload) in payloads.into_iter().enumerate() {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: i + 1 == n,
                    payload_type: s.pt,
                    sequence_number: s.seq,
                    timestamp: s.ts,
                    ssrc: s.ssrc,
                    ..Default::default()
                },
                payload,
            };
            s.seq = s.seq.wrapping_add(1);
            if let Some(mut sender) = self.pc.rtp_sender(s.id) {
                if sender.write_rtp(now, packet).is_ok() {
                    sent += 1;
                }
            }
        }
        s.ts = s.ts.wrapping_add(advance);
        if let Ok(mut st) = self.stats.lock() {
            st.sent_packets += sent;
        }
    }

    fn send_audio(&mut self, now: Instant) {
        // An Opus DTX/silence frame (TOC 0xF8: CELT FB 20 ms, mono, one frame).
        self.send(
            now,
            RtpCodecKind::Audio,
            vec![Bytes::from_static(&[0xF8, 0xFF, 0xFE])],
            960,
        );
    }

    fn send_video(&mut self, now: Instant) {
        self.frame = self.frame.wrapping_add(1);
        let sent_at = now_us();
        let mut payloads = Vec::with_capacity(self.opts.video_packets_per_frame);
        for i in 0..self.opts.video_packets_per_frame {
            let size = self.opts.video_packet_size.max(1 + TRAILER);
            let mut p = BytesMut::with_capacity(size);
            // VP8 payload descriptor: S bit on the first packet of the frame.
            p.extend_from_slice(&[if i == 0 { 0x10 } else { 0x00 }]);
            p.extend_from_slice(MARKER);
            p.extend_from_slice(&sent_at.to_be_bytes());
            p.extend_from_slice(&self.frame.to_be_bytes());
            p.resize(size, 0);
            payloads.push(p.freeze());
        }
        self.send(now, RtpCodecKind::Video, payloads, 3000);
    }

    /// Drains the connection: datagrams out, events, received media.
    fn pump(&mut self) {
        self.write_out();
        let mut kick = false;
        while let Some(ev) = self.pc.poll_event() {
            match ev {
                // rtc 0.21 builds the DTLS client's first flight when ICE selects a pair, but
                // leaves it in the DTLS endpoint until the connection's next `handle_timeout`,
                // which can be the ICE keepalive 100–200 ms later: run it now.
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                    RTCIceConnectionState::Connected,
                ) => kick = true,
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    self.connected = state == RTCPeerConnectionState::Connected;
                    if let Ok(mut st) = self.stats.lock() {
                        st.connected = self.connected;
                        st.state = state.to_string();
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let kind = self
                        .pc
                        .rtp_receiver(init.receiver_id)
                        .map(|r| {
                            if r.track().kind() == RtpCodecKind::Audio {
                                "audio"
                            } else {
                                "video"
                            }
                        })
                        .unwrap_or("video");
                    self.track_kinds
                        .insert(init.track_id.to_string(), kind.to_owned());
                }
                _ => {}
            }
        }
        if kick {
            let _ = self.pc.handle_timeout(Instant::now());
            self.write_out();
        }
        let arrived = Instant::now();
        let arrived_us = now_us();
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtcpPacket(_, packets) = &message {
                if let Ok(mut st) = self.stats.lock() {
                    st.keyframe_requests += packets.len() as u64;
                }
                continue;
            }
            if let RTCMessage::RtpPacket(track_id, packet) = message {
                let track_id = track_id.to_string();
                let kind = self.track_kinds.get(&track_id).cloned().unwrap_or_default();
                let Ok(mut st) = self.stats.lock() else {
                    continue;
                };
                let t = st.tracks.entry(track_id.clone()).or_default();
                t.kind = kind;
                t.track_id = track_id;
                t.packets += 1;
                t.bytes += packet.payload.len() as u64;
                t.last_at = Some(arrived);
                let seq = packet.header.sequence_number;
                t.reception.record(seq);
                match t.last_seq {
                    Some(last) if seq_newer(seq, last) => {
                        let jump = seq.wrapping_sub(last);
                        if jump > 1 {
                            t.seq_gaps += 1;
                            t.max_seq_jump = t.max_seq_jump.max(jump);
                        }
                        if let Some(lts) = t.last_ts {
                            if packet.header.timestamp.wrapping_sub(lts) >= 0x8000_0000 {
                                t.ts_backwards += 1;
                            }
                        }
                        t.last_seq = Some(seq);
                        t.last_ts = Some(packet.header.timestamp);
                    }
                    Some(_) => {}
                    None => {
                        t.last_seq = Some(seq);
                        t.last_ts = Some(packet.header.timestamp);
                    }
                }
                let p = &packet.payload;
                if p.len() > TRAILER && &p[1..5] == MARKER && t.latencies_us.len() < 200_000 {
                    let sent = u64::from_be_bytes(p[5..13].try_into().expect("8 bytes"));
                    t.latencies_us.push(arrived_us.saturating_sub(sent));
                }
            }
        }
        self.write_out();
    }
}
