//! A client peer for the harness: an `rtc` peer connection built like `sfu::client`'s (the same
//! codecs and interceptor chain from `sfu::chain`), driven on the harness's clock instead of a
//! socket and a task.
//!
//! It offers one audio and one video track, and once connected sends Opus silence every 20 ms and
//! fake VP8 at a set frame rate. The VP8 payloads carry a real payload descriptor and frame tag:
//! a keyframe has the P bit clear and the `9d 01 2a` start code, so it can be told apart from an
//! interframe the way a depacketizer would. A keyframe is sent first and whenever a PLI or FIR
//! arrives for the video stream.
//!
//! What it receives goes through a small decoder model: a video frame is decodable when every
//! packet of it arrived; a packet missing for longer than [`MediaPlan::loss_timeout`] (NACK had
//! its chance) breaks the picture, and a broken or not yet started picture asks for a keyframe
//! with a PLI every [`MediaPlan::pli_retry`] until a complete keyframe arrives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::Rng;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sfu::{Candidate, Participant};

/// What a client sends and how its decoder model reacts to loss.
#[derive(Debug, Clone, Copy)]
pub struct MediaPlan {
    /// Send Opus silence every 20 ms.
    pub audio: bool,
    /// Video frames per second (0: no video).
    pub fps: u32,
    /// Packets of an interframe.
    pub packets_per_frame: usize,
    /// Packets of a keyframe.
    pub packets_per_keyframe: usize,
    /// Payload bytes per video packet.
    pub packet_size: usize,
    /// A keyframe at least this often, as encoders do; `None`: only on request.
    pub keyframe_interval: Option<Duration>,
    /// How long a missing video packet may stay missing before the picture is broken.
    pub loss_timeout: Duration,
    /// How often a broken picture asks again for a keyframe.
    pub pli_retry: Duration,
}

impl Default for MediaPlan {
    fn default() -> Self {
        MediaPlan {
            audio: true,
            fps: 30,
            packets_per_frame: 2,
            packets_per_keyframe: 5,
            packet_size: 600,
            keyframe_interval: None,
            loss_timeout: Duration::from_millis(200),
            // More eager than the engine's 500 ms limit, so the limit is what the sender sees.
            pli_retry: Duration::from_millis(150),
        }
    }
}

/// One RTP packet as the client received it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When (simulated).
    pub at: Instant,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// First packet of a VP8 keyframe.
    pub keyframe_start: bool,
}

/// One video frame being put together.
#[derive(Default)]
struct Frame {
    start: Option<u64>,
    end: Option<u64>,
    got: BTreeSet<u64>,
    key: bool,
    done: bool,
    first_seen: Option<Instant>,
}

/// One incoming track: everything that arrived and, for video, the decoder model.
pub struct Incoming {
    /// `audio` or `video`.
    pub kind: RtpCodecKind,
    /// The SFU's track id (`kiosk-video`, `operator-audio`, …).
    pub track_id: String,
    /// Every RTP packet, in arrival order (retransmissions included).
    pub arrivals: Vec<Arrival>,
    /// When each complete keyframe was put together.
    pub keyframes: Vec<Instant>,
    /// When the picture broke (a packet missing past the loss timeout).
    pub breaks: Vec<Instant>,
    /// When PLIs were sent for this track.
    pub plis_sent: Vec<Instant>,
    /// Waiting for a keyframe (from the start, or since the picture broke).
    pub waiting: bool,
    /// While waiting, PLIs are due from this instant on: right away after a break, and
    /// [`MediaPlan::loss_timeout`] after the first packet at the start (the first keyframe is on
    /// its way).
    ask_from: Option<Instant>,
    receiver: Option<RTCRtpReceiverId>,
    highest: Option<u64>,
    missing: BTreeMap<u64, Instant>,
    frames: HashMap<u32, Frame>,
}

impl Incoming {
    /// Extends a 16-bit sequence number to the 64-bit one closest to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1 << 16) + seq as u64,
            Some(h) => {
                let base = (h & !0xffff) | seq as u64;
                [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(h))
                    .unwrap_or(base)
            }
        }
    }

    /// Records a video packet in the decoder model.
    fn video(&mut self, now: Instant, seq: u16, ts: u32, marker: bool, payload: &[u8]) {
        let e = self.extend(seq);
        match self.highest {
            Some(h) if e > h + 1 => {
                if e - h > 1000 {
                    // A discontinuity, not loss: start over from a keyframe.
                    self.missing.clear();
                    self.waiting = true;
                    self.ask_from = Some(now);
                } else {
                    for s in h + 1..e {
                        self.missing.insert(s, now);
                    }
                }
                self.highest = Some(e);
            }
            Some(h) if e <= h => {
                self.missing.remove(&e);
            }
            _ => self.highest = Some(e),
        }
        let frame = self.frames.entry(ts).or_default();
        frame.first_seen.get_or_insert(now);
        frame.got.insert(e);
        if vp8_frame_start(payload) {
            frame.start = Some(e);
            frame.key = vp8_keyframe_start(payload);
        }
        if marker {
            frame.end = Some(e);
        }
        if !frame.done {
            if let (Some(s), Some(end)) = (frame.start, frame.end) {
                if end >= s && frame.got.range(s..=end).count() as u64 == end - s + 1 {
                    frame.done = true;
                    if frame.key {
                        self.keyframes.push(now);
                        self.waiting = false;
                        self.ask_from = None;
                        // Whatever was missing before this keyframe no longer matters.
                        self.missing = self.missing.split_off(&s);
                    }
                }
            }
        }
        if self.frames.len() > 256 {
            if let Some(horizon) = now.checked_sub(Duration::from_secs(2)) {
                self.frames
                    .retain(|_, f| f.first_seen.is_some_and(|t| t >= horizon));
            }
        }
    }

    /// Packets missing past `timeout` break the picture.
    fn check_losses(&mut self, now: Instant, timeout: Duration) {
        let expired: Vec<u64> = self
            .missing
            .iter()
            .filter(|(_, &t)| t + timeout <= now)
            .map(|(&s, _)| s)
            .collect();
        if expired.is_empty() {
            return;
        }
        for s in expired {
            self.missing.remove(&s);
        }
        if !self.waiting {
            self.waiting = true;
            self.ask_from = Some(now);
            self.breaks.push(now);
        }
    }

    /// When the decoder model next has something to do.
    fn next_wake(&self, plan: &MediaPlan) -> Option<Instant> {
        let loss = self.missing.values().min().map(|&t| t + plan.loss_timeout);
        let pli = self.ask_from.filter(|_| self.waiting).map(|from| {
            self.plis_sent
                .last()
                .map_or(from, |&t| from.max(t + plan.pli_retry))
        });
        [loss, pli].into_iter().flatten().min()
    }
}

/// A VP8 payload descriptor of one byte (no X bit) with S set and partition 0.
fn vp8_frame_start(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|&d| d & 0x80 == 0 && d & 0x10 != 0 && d & 0x07 == 0)
}

/// The first packet of a VP8 keyframe: a frame start whose frame tag has P clear.
fn vp8_keyframe_start(payload: &[u8]) -> bool {
    vp8_frame_start(payload) && payload.get(1).is_some_and(|&tag| tag & 0x01 == 0)
}

struct OutTrack {
    kind: RtpCodecKind,
    id: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
    seq: u16,
    ts_base: u32,
    clock: u32,
}

/// What a client saw and did, with simulated instants.
#[derive(Debug, Default, Clone)]
pub struct PeerLog {
    /// ICE reached `connected`.
    pub ice_connected: Option<Instant>,
    /// The peer connection reached `connected` (DTLS done, SRTP keys in place).
    pub connected: Option<Instant>,
    /// PLIs or FIRs received for the video this client sends.
    pub keyframe_requests: Vec<Instant>,
    /// Keyframes sent.
    pub keyframes_sent: Vec<Instant>,
    /// RTP packets sent.
    pub rtp_sent: u64,
}

/// One client peer connection on the simulated network.
pub struct ClientPeer {
    /// Who it is in the call.
    pub who: Participant,
    /// The call.
    pub call: String,
    /// Its (simulated) address.
    pub addr: SocketAddr,
    /// What it sends and how its decoder model behaves.
    pub plan: MediaPlan,
    /// Whether it sends media once connected.
    pub sending: bool,
    /// What it saw and did.
    pub log: PeerLog,
    /// Incoming tracks by track id.
    pub incoming: BTreeMap<String, Incoming>,
    pc: RTCPeerConnection,
    senders: Vec<OutTrack>,
    media_start: Option<Instant>,
    next_audio: Option<Instant>,
    next_video: Option<Instant>,
    keyframe_wanted: bool,
    frame: u32,
    receivers: HashMap<String, (RTCRtpReceiverId, RtpCodecKind)>,
    /// Datagrams written, to put on the network: `(to, bytes)`.
    pub(super) outbox: Vec<(SocketAddr, BytesMut)>,
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl ClientPeer {
    /// A client at `addr` with its offer (host candidate included), like `MediaClient::start`.
    pub fn new(
        now: Instant,
        call: &str,
        who: Participant,
        addr: SocketAddr,
        plan: MediaPlan,
        rng: &mut StdRng,
    ) -> Result<(ClientPeer, String, Candidate), String> {
        let mut media = sfu::chain::media_engine().map_err(fail)?;
        let registry = sfu::chain::interceptors(&mut media).map_err(fail)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(SettingEngineBuilder::new().build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(fail)?;
        let mut senders = Vec::new();
        for (kind, _, clock) in sfu::chain::KINDS {
            let name = sfu::chain::kind_name(kind);
            let (track, ssrc) =
                sfu::chain::local_track("bot".to_owned(), format!("bot-{name}"), kind);
            let id = pc.add_track(track).map_err(fail)?;
            senders.push(OutTrack {
                kind,
                id,
                ssrc,
                pt: 0,
                seq: rng.gen(),
                ts_base: rng.gen(),
                clock,
            });
        }
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(fail)?;
        let init = RTCIceCandidate::from(&host).to_json().map_err(fail)?;
        pc.add_local_candidate(init.clone()).map_err(fail)?;
        let offer = pc.create_offer(None).map_err(fail)?;
        pc.set_local_description(now, offer).map_err(fail)?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or("no local description")?;
        let peer = ClientPeer {
            who,
            call: call.to_owned(),
            addr,
            plan,
            sending: true,
            log: PeerLog::default(),
            incoming: BTreeMap::new(),
            pc,
            senders,
            media_start: None,
            next_audio: None,
            next_video: None,
            keyframe_wanted: true,
            frame: 0,
            receivers: HashMap::new(),
            outbox: Vec::new(),
        };
        let candidate = Candidate {
            candidate: init.candidate,
            sdp_mid: Some("0".to_owned()),
            sdp_mline_index: Some(0),
        };
        Ok((peer, sdp, candidate))
    }

    /// Applies the SFU's answer and learns the payload types it negotiated.
    pub fn set_answer(&mut self, now: Instant, sdp: String) -> Result<(), String> {
        let desc = RTCSessionDescription::answer(sdp).map_err(fail)?;
        self.pc.set_remote_description(now, desc).map_err(fail)?;
        for s in &mut self.senders {
            let Some(mut sender) = self.pc.rtp_sender(s.id) else {
                continue;
            };
            let want = sfu::chain::KINDS
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
        self.pump(now);
        Ok(())
    }

    /// The SSRC this client sends its video (or audio) on.
    pub fn ssrc(&self, kind: RtpCodecKind) -> Option<u32> {
        self.senders.iter().find(|s| s.kind == kind).map(|s| s.ssrc)
    }

    /// The incoming track of this kind (the first, for a client that receives one of each).
    pub fn track(&self, kind: RtpCodecKind) -> Option<&Incoming> {
        self.incoming.values().find(|t| t.kind == kind)
    }

    /// Closes the connection (its last datagrams go to the outbox).
    pub fn close(&mut self) {
        let _ = self.pc.close();
        self.drain_writes();
    }

    /// A datagram from the network.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: BytesMut) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: data,
        });
        self.pump(now);
    }

    /// Timers and media that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.pc.handle_timeout(now);
        }
        if self.sending && self.log.connected.is_some() {
            if self.next_audio.is_some_and(|t| t <= now) {
                self.send_audio(now);
                self.next_audio = Some(now + Duration::from_millis(20));
            }
            if self.next_video.is_some_and(|t| t <= now) {
                self.send_video(now);
                self.next_video = Some(now + Duration::from_secs(1) / self.plan.fps);
            }
        }
        self.pump(now);
    }

    /// The earliest instant [`ClientPeer::handle_timeout`] has work to do.
    pub fn next_wake(&mut self) -> Option<Instant> {
        let mut next = self.pc.poll_timeout();
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.sending && self.log.connected.is_some() {
            take(self.next_audio);
            take(self.next_video);
        }
        for t in self.incoming.values() {
            take(t.next_wake(&self.plan));
        }
        next
    }

    /// Stops or restarts sending (the source keeps its clock: timestamps jump by the pause).
    pub fn set_sending(&mut self, on: bool) {
        self.sending = on;
    }

    fn send(&mut self, now: Instant, kind: RtpCodecKind, payloads: Vec<Bytes>) -> bool {
        let start = self.media_start.unwrap_or(now);
        let Some(s) = self.senders.iter_mut().find(|s| s.kind == kind) else {
            return false;
        };
        if s.pt == 0 {
            return false;
        }
        // The timestamp follows the clock, as a capture clock does.
        let elapsed = now.saturating_duration_since(start);
        let ticks = (elapsed.as_micros() as u64 * s.clock as u64 / 1_000_000) as u32;
        let ts = s.ts_base.wrapping_add(ticks);
        let n = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: i + 1 == n,
                    payload_type: s.pt,
                    sequence_number: s.seq,
                    timestamp: ts,
                    ssrc: s.ssrc,
                    ..Default::default()
                },
                payload,
            };
            s.seq = s.seq.wrapping_add(1);
            if let Some(mut sender) = self.pc.rtp_sender(s.id) {
                if sender.write_rtp(now, packet).is_ok() {
                    self.log.rtp_sent += 1;
                }
            }
        }
        true
    }

    fn send_audio(&mut self, now: Instant) {
        // An Opus silence frame (TOC 0xF8: CELT FB 20 ms, mono, one frame).
        let frame = vec![Bytes::from_static(&[0xF8, 0xFF, 0xFE])];
        self.send(now, RtpCodecKind::Audio, frame);
    }

    fn send_video(&mut self, now: Instant) {
        let periodic = self.plan.keyframe_interval.is_some_and(|i| {
            self.log
                .keyframes_sent
                .last()
                .is_none_or(|&t| now.saturating_duration_since(t) >= i)
        });
        let key = self.keyframe_wanted || periodic;
        let count = if key {
            self.plan.packets_per_keyframe
        } else {
            self.plan.packets_per_frame
        }
        .max(1);
        self.frame = self.frame.wrapping_add(1);
        let payloads = (0..count)
            .map(|i| {
                let mut p = BytesMut::with_capacity(self.plan.packet_size.max(16));
                if i == 0 {
                    // Payload descriptor: S set, partition 0. Then the frame tag: P clear for
                    // a keyframe (with show_frame set), followed by the keyframe start code
                    // and a 640×480 size.
                    p.extend_from_slice(&[0x10]);
                    if key {
                        p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
                        p.extend_from_slice(&640u16.to_le_bytes());
                        p.extend_from_slice(&480u16.to_le_bytes());
                    } else {
                        p.extend_from_slice(&[0x11, 0x02, 0x00]);
                    }
                } else {
                    p.extend_from_slice(&[0x00]);
                }
                p.extend_from_slice(&self.frame.to_be_bytes());
                p.resize(self.plan.packet_size.max(p.len()), 0);
                p.freeze()
            })
            .collect();
        if self.send(now, RtpCodecKind::Video, payloads) && key {
            self.keyframe_wanted = false;
            self.log.keyframes_sent.push(now);
        }
    }

    fn drain_writes(&mut self) {
        while let Some(t) = self.pc.poll_write() {
            self.outbox.push((t.transport.peer_addr, t.message));
        }
    }

    /// Drains the connection: events, received media and RTCP, the decoder model, datagrams.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.pc.poll_event() {
            match ev {
                RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                    RTCIceConnectionState::Connected,
                ) => {
                    self.log.ice_connected.get_or_insert(now);
                    // rtc leaves the DTLS client's first flight in its endpoint until the next
                    // `handle_timeout` (see `sfu::client`'s driver): run it now, as it does.
                    let _ = self.pc.handle_timeout(now);
                    self.drain_writes();
                }
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                    RTCPeerConnectionState::Connected,
                ) if self.log.connected.is_none() => {
                    self.log.connected = Some(now);
                    self.media_start = Some(now);
                    self.next_audio = self.plan.audio.then_some(now);
                    self.next_video = (self.plan.fps > 0).then_some(now);
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let kind = self
                        .pc
                        .rtp_receiver(init.receiver_id)
                        .map(|r| r.track().kind())
                        .unwrap_or(RtpCodecKind::Video);
                    self.receivers
                        .insert(init.track_id.to_string(), (init.receiver_id, kind));
                }
                _ => {}
            }
        }
        let video_ssrc = self.ssrc(RtpCodecKind::Video);
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtcpPacket(_, packets) => {
                    for p in packets {
                        let any = p.as_any();
                        let asked = if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                            Some(pli.media_ssrc) == video_ssrc
                        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                            fir.fir.iter().any(|e| Some(e.ssrc) == video_ssrc)
                        } else {
                            false
                        };
                        if asked {
                            self.log.keyframe_requests.push(now);
                            self.keyframe_wanted = true;
                        }
                    }
                }
                RTCMessage::RtpPacket(track_id, packet) => {
                    let track_id = track_id.to_string();
                    let (receiver, kind) = match self.receivers.get(&track_id) {
                        Some(&(r, k)) => (Some(r), k),
                        None => (None, RtpCodecKind::Video),
                    };
                    let t = self
                        .incoming
                        .entry(track_id.clone())
                        .or_insert_with(|| Incoming {
                            kind,
                            track_id,
                            arrivals: Vec::new(),
                            keyframes: Vec::new(),
                            breaks: Vec::new(),
                            plis_sent: Vec::new(),
                            waiting: true,
                            ask_from: (kind == RtpCodecKind::Video)
                                .then(|| now + self.plan.loss_timeout),
                            receiver,
                            highest: None,
                            missing: BTreeMap::new(),
                            frames: HashMap::new(),
                        });
                    let h = &packet.header;
                    t.arrivals.push(Arrival {
                        at: now,
                        seq: h.sequence_number,
                        ts: h.timestamp,
                        ssrc: h.ssrc,
                        pt: h.payload_type,
                        keyframe_start: kind == RtpCodecKind::Video
                            && vp8_keyframe_start(&packet.payload),
                    });
                    if kind == RtpCodecKind::Video {
                        t.video(
                            now,
                            h.sequence_number,
                            h.timestamp,
                            h.marker,
                            &packet.payload,
                        );
                    }
                }
                _ => {}
            }
        }
        self.decode(now);
        self.drain_writes();
    }

    /// The decoder model: losses past the timeout break the picture; a picture waiting for a
    /// keyframe asks for one.
    fn decode(&mut self, now: Instant) {
        let plan = self.plan;
        let mut plis = Vec::new();
        for t in self.incoming.values_mut() {
            if t.kind != RtpCodecKind::Video {
                continue;
            }
            t.check_losses(now, plan.loss_timeout);
            let due = t
                .plis_sent
                .last()
                .is_none_or(|&last| last + plan.pli_retry <= now);
            if t.waiting && t.ask_from.is_some_and(|from| from <= now) && due {
                t.plis_sent.push(now);
                plis.extend(t.receiver);
            }
        }
        for rid in plis {
            let Some(mut r) = self.pc.rtp_receiver(rid) else {
                continue;
            };
            let ssrcs: Vec<u32> = r.track().ssrcs().collect();
            for media_ssrc in ssrcs {
                let _ = r.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    })],
                );
            }
        }
    }
}
