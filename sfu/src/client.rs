//! A headless WebRTC client for bots, tests and benchmarks: one peer connection on its own UDP
//! socket that sends synthetic audio and video and measures what it receives. It is the offerer
//! ([`MediaClient::start`], as towards our SFU), or the answerer of a remote offer
//! ([`MediaClient::start_answering`], as the callee of Janus's `videocall` plugin, whose offer
//! comes from the server).
//!
//! Video is sent as 30 frames per second of VP8-framed packets whose payload carries a marker, the
//! send time and a counter, so the receiver can measure one-way latency on the same machine;
//! audio is 50 Opus silence frames per second. The payloads are not decodable pictures: a Rust
//! bot's peers are other bots (browsers are tested with their own fake camera).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::rewrite::seq_newer;
use crate::Candidate;

/// Marks a synthetic video payload (after the one-byte VP8 descriptor).
pub const MARKER: &[u8; 4] = b"SPTL";
/// Bytes of the marker + send time (µs since the epoch) + counter.
const TRAILER: usize = 4 + 8 + 4;

/// What the client sends.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// A supervisor's monitor: four `recvonly` transceivers, nothing sent.
    pub monitor: bool,
    /// Video packets per frame and bytes per packet.
    pub video_packets_per_frame: usize,
    /// Payload size of each video packet (bytes).
    pub video_packet_size: usize,
    /// Video frames per second (0 = no video).
    pub fps: u32,
    /// Send Opus silence every 20 ms.
    pub audio: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            monitor: false,
            video_packets_per_frame: 2,
            video_packet_size: 1000,
            fps: 30,
            audio: true,
        }
    }
}

impl ClientOptions {
    /// The options for a supervisor's monitor.
    pub fn monitor() -> Self {
        ClientOptions {
            monitor: true,
            fps: 0,
            audio: false,
            ..Default::default()
        }
    }
}

/// What arrived on one incoming track.
#[derive(Clone, Default)]
pub struct TrackStats {
    /// `audio` or `video`.
    pub kind: String,
    /// The sender's track id (`kiosk-video`, `operator-audio`, …).
    pub track_id: String,
    /// RTP packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Times the sequence number jumped forward by more than one (loss or a discontinuity).
    pub seq_gaps: u64,
    /// Largest forward jump seen.
    pub max_seq_jump: u16,
    /// Times the timestamp went backwards between consecutive newer packets.
    pub ts_backwards: u64,
    /// One-way latencies of synthetic video packets, in microseconds (capped sample).
    pub latencies_us: Vec<u64>,
    /// When the last packet arrived.
    pub last_at: Option<Instant>,
    /// Which sequence numbers arrived: loss after retransmissions, duplicates.
    pub reception: Reception,
    last_seq: Option<u16>,
    last_ts: Option<u32>,
}

impl std::fmt::Debug for TrackStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackStats")
            .field("kind", &self.kind)
            .field("track_id", &self.track_id)
            .field("packets", &self.packets)
            .field("bytes", &self.bytes)
            .field("seq_gaps", &self.seq_gaps)
            .field("max_seq_jump", &self.max_seq_jump)
            .field("ts_backwards", &self.ts_backwards)
            .field("latency_samples", &self.latencies_us.len())
            .field("reception", &self.reception)
            .finish()
    }
}

/// Which sequence numbers of one stream arrived, over the whole stream: what is still missing after
/// retransmissions (NACK) is loss; a number that arrives twice is a duplicate.
#[derive(Clone, Default)]
pub struct Reception {
    first: Option<u64>,
    highest: u64,
    bits: Vec<u64>,
    unique: u64,
    /// Packets whose sequence number had already arrived.
    pub duplicates: u64,
    /// Packets too old to place (more than 32768 behind the newest).
    pub too_old: u64,
}

impl std::fmt::Debug for Reception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reception")
            .field("expected", &self.expected())
            .field("received", &self.unique)
            .field("duplicates", &self.duplicates)
            .field("too_old", &self.too_old)
            .finish()
    }
}

impl Reception {
    const WINDOW: u64 = 1 << 16;

    fn bit(&mut self, ext: u64) -> (usize, u64) {
        let i = (ext % Self::WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// One packet with sequence number `seq`.
    pub fn record(&mut self, seq: u16) {
        if self.bits.is_empty() {
            self.bits = vec![0; (Self::WINDOW / 64) as usize];
        }
        let ext = match self.first {
            None => {
                let ext = Self::WINDOW + seq as u64;
                self.first = Some(ext);
                self.highest = ext;
                ext
            }
            Some(_) => {
                let diff = seq.wrapping_sub(self.highest as u16) as i16 as i64;
                let ext = (self.highest as i64 + diff) as u64;
                if ext > self.highest {
                    if ext - self.highest >= Self::WINDOW {
                        self.bits.iter_mut().for_each(|w| *w = 0);
                    } else {
                        for e in self.highest + 1..=ext {
                            let (w, b) = self.bit(e);
                            self.bits[w] &= !b;
                        }
                    }
                    self.highest = ext;
                }
                ext
            }
        };
        if self.highest - ext >= Self::WINDOW / 2 || Some(ext) < self.first {
            self.too_old += 1;
            return;
        }
        let (w, b) = self.bit(ext);
        if self.bits[w] & b != 0 {
            self.duplicates += 1;
        } else {
            self.bits[w] |= b;
            self.unique += 1;
        }
    }

    /// Sequence numbers from the first to the newest seen.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |f| self.highest - f + 1)
    }

    /// Distinct sequence numbers received.
    pub fn received(&self) -> u64 {
        self.unique
    }

    /// Sequence numbers still missing.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }
}

/// A snapshot of the client.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Whether the peer connection is connected.
    pub connected: bool,
    /// The connection state's name.
    pub state: String,
    /// Incoming tracks by track id.
    pub tracks: HashMap<String, TrackStats>,
    /// RTP packets sent.
    pub sent_packets: u64,
    /// Keyframe requests (PLI/FIR) received for what this client sends.
    pub keyframe_requests: u64,
}

impl ClientStats {
    /// Packets received on tracks of this kind (`audio`/`video`).
    pub fn packets(&self, kind: &str) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.kind == kind)
            .map(|t| t.packets)
            .sum()
    }

    /// Packets received on tracks whose id starts with `prefix` (e.g. `kiosk-`).
    pub fn packets_from(&self, prefix: &str) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.track_id.starts_with(prefix))
            .map(|t| t.packets)
            .sum()
    }
}

enum Cmd {
    Answer(String, oneshot::Sender<Result<(), String>>),
    RestartIce(oneshot::Sender<Result<String, String>>),
    RemoteCandidate(Candidate),
    SetSending(bool),
    RequestKeyframe,
    Close,
    Vanish,
}

/// A host candidate for a local UDP address.
fn host_candidate(local: SocketAddr) -> Result<RTCIceCandidateInit, rtc::shared::error::Error> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    RTCIceCandidate::from(&host).to_json()
}

/// The `a=mid` of the first media section of `sdp`, the one our host candidate is given for.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .skip_while(|l| !l.starts_with("m="))
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

/// A running client peer connection.
pub struct MediaClient {
    cmd: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Mutex<ClientStats>>,
    /// The local description: our offer, or our answer for a client made by
    /// [`MediaClient::start_answering`].
    local_sdp: String,
    candidates: Vec<Candidate>,
}

impl std::fmt::Debug for MediaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaClient").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl MediaClient {
    /// Creates the connection on a fresh loopback UDP socket and its offer.
    pub async fn start(opts: ClientOptions) -> io::Result<MediaClient> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// Same, binding `bind`.
    pub async fn start_on(bind: SocketAddr, opts: ClientOptions) -> io::Result<MediaClient> {
        Self::launch(bind, opts, None).await
    }

    /// Creates the connection on a fresh loopback UDP socket as the answerer of `offer` (a remote
    /// offer, e.g. the one a media server forwards to a callee), with the candidates the offer
    /// carries; the answer to send back is [`MediaClient::local_description`]. Candidates the
    /// remote trickles later go to [`MediaClient::add_remote_candidate`].
    pub async fn start_answering(opts: ClientOptions, offer: &str) -> io::Result<MediaClient> {
        Self::start_answering_on(SocketAddr::from(([127, 0, 0, 1], 0)), opts, offer).await
    }

    /// Same, binding `bind` (e.g. a non-loopback address, for a server that gathers no loopback
    /// candidates).
    pub async fn start_answering_on(
        bind: SocketAddr,
        opts: ClientOptions,
        offer: &str,
    ) -> io::Result<MediaClient> {
        if !offer.trim_start().starts_with("v=0") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the remote offer is not an SDP (it does not start with `v=0`)",
            ));
        }
        let desc = RTCSessionDescription::offer(offer.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad remote offer: {e}"),
            )
        })?;
        Self::launch(bind, opts, Some(desc)).await
    }

    /// Binds the socket, builds the connection with what it sends and negotiates: an offer when
    /// `remote_offer` is `None`, else the answer to it.
    async fn launch(
        bind: SocketAddr,
        opts: ClientOptions,
        remote_offer: Option<RTCSessionDescription>,
    ) -> io::Result<MediaClient> {
        let socket = UdpSocket::bind(bind).await?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut media = crate::chain::media_engine().map_err(err)?;
        let registry = crate::chain::interceptors(&mut media).map_err(err)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(SettingEngineBuilder::new().build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(err)?;

        let mut senders = Vec::new();
        if opts.monitor {
            for kind in [
                RtpCodecKind::Audio,
                RtpCodecKind::Video,
                RtpCodecKind::Audio,
                RtpCodecKind::Video,
            ] {
                pc.add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .map_err(err)?;
            }
        } else {
            for (kind, _, _) in crate::chain::KINDS {
                let name = crate::chain::kind_name(kind);
                let (track, ssrc) =
                    crate::chain::local_track("bot".to_owned(), format!("bot-{name}"), kind);
                let id = pc.add_track(track).map_err(err)?;
                senders.push(OutTrack {
                    kind,
                    id,
                    ssrc,
                    pt: 0,
                    seq: rand::random(),
                    ts: rand::random(),
                });
            }
        }

        let init = host_candidate(local).map_err(err)?;
        let answering = remote_offer.is_some();
        let local_sdp = match remote_offer {
            None => {
                pc.add_local_candidate(init.clone()).map_err(err)?;
                let offer = pc.create_offer(None).map_err(err)?;
                pc.set_local_description(now, offer).map_err(err)?;
                pc.local_description().map(|d| d.sdp)
            }
            Some(offer) => {
                pc.set_remote_description(now, offer).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("the remote offer was refused: {e}"),
                    )
                })?;
                pc.add_local_candidate(init.clone()).map_err(err)?;
                let answer = pc.create_answer(None).map_err(err)?;
                pc.set_local_description(now, answer).map_err(err)?;
                pc.local_description().map(|d| d.sdp)
            }
        }
        .ok_or_else(|| err("no local description"))?;
        let mid = first_mid(&local_sdp).unwrap_or_else(|| "0".to_owned());
        let candidates = vec![Candidate {
            candidate: init.candidate,
            sdp_mid: Some(mid),
            sdp_mline_index: Some(0),
        }];

        let stats = Arc::new(Mutex::new(ClientStats::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut driver = Driver {
            pc,
            socket,
            local,
            senders,
            opts,
            stats: stats.clone(),
            cmds: rx,
            sending: true,
            connected: false,
            track_kinds: HashMap::new(),
            frame: 0,
        };
        if answering {
            // Negotiation is complete: what we send is known now.
            driver.learn_payload_types();
        }
        tokio::spawn(driver.run());
        Ok(MediaClient {
            cmd: tx,
            stats,
            local_sdp,
            candidates,
        })
    }

    /// The offer to send as `media.offer`. For a client made by
    /// [`MediaClient::start_answering`], this is its answer ([`MediaClient::local_description`]).
    pub fn offer(&self) -> &str {
        &self.local_sdp
    }

    /// The local description: the offer of a client made by [`MediaClient::start`], the answer of
    /// one made by [`MediaClient::start_answering`].
    pub fn local_description(&self) -> &str {
        &self.local_sdp
    }

    /// Our candidates (also in the offer or answer), to trickle as `media.candidate`.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Applies the SFU's answer.
    pub async fn set_answer(&self, sdp: String) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Answer(sdp, tx)).map_err(err)?;
        rx.await.map_err(err)?.map_err(err)
    }

    /// Moves to a fresh UDP socket (a new local address, as after a network change) and restarts
    /// ICE: returns the new offer to send as `media.offer`, whose answer goes to
    /// [`MediaClient::set_answer`].
    pub async fn restart_ice(&self) -> io::Result<String> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::RestartIce(tx)).map_err(err)?;
        rx.await.map_err(err)?.map_err(err)
    }

    /// A candidate trickled by the server.
    pub fn add_remote_candidate(&self, c: Candidate) {
        let _ = self.cmd.send(Cmd::RemoteCandidate(c));
    }

    /// Stop or restart sending synthetic media.
    pub fn set_sending(&self, on: bool) {
        let _ = self.cmd.send(Cmd::SetSending(on));
    }

    /// A snapshot of what was sent and received.
    pub fn stats(&self) -> ClientStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `pred` holds for the stats, or `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ClientStats) -> bool,
    ) -> Result<ClientStats, ClientStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a PLI for every video stream received, as a decoder that lost its picture would.
    pub fn request_keyframe(&self) {
        let _ = self.cmd.send(Cmd::RequestKeyframe);
    }

    /// Stops dead without closing anything, as a crashed or unplugged client would: no DTLS alert,
    /// no more ICE checks.
    pub fn vanish(&self) {
        let _ = self.cmd.send(Cmd::Vanish);
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.cmd.send(Cmd::Close);
    }
}

impl Drop for MediaClient {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Close);
    }
}

struct OutTrack {
    kind: RtpCodecKind,
    id: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
    seq: u16,
    ts: u32,
}

struct Driver {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    senders: Vec<OutTrack>,
    opts: ClientOptions,
    stats: Arc<Mutex<ClientStats>>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    sending: bool,
    connected: bool,
    track_kinds: HashMap<String, String>,
    frame: u32,
}

impl Driver {
    async fn run(mut self) {
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
            if self.connected && self.sending {
                if self.opts.audio {
                    deadline = deadline.min(next_audio);
                }
                if self.opts.fps > 0 {
                    deadline = deadline.min(next_video);
                }
            }
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
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
        let init = host_candidate(self.local).map_err(|e| e.to_string())?;
        self.pc
            .add_local_candidate(init)
            .map_err(|e| e.to_string())?;
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
        let desc = RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?;
        self.pc
            .set_remote_description(Instant::now(), desc)
            .map_err(|e| e.to_string())?;
        self.learn_payload_types();
        Ok(())
    }

    /// Reads the payload type each sender was negotiated (after the offer/answer exchange).
    fn learn_payload_types(&mut self) {
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
        while let Some(t) = self.pc.poll_write() {
            let _ = self.socket.try_send_to(&t.message, t.transport.peer_addr);
        }
        while let Some(ev) = self.pc.poll_event() {
            match ev {
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
        while let Some(t) = self.pc.poll_write() {
            let _ = self.socket.try_send_to(&t.message, t.transport.peer_addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{first_mid, ClientOptions, MediaClient, Reception};

    #[test]
    fn first_mid_is_the_first_media_sections() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\na=group:BUNDLE a v\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=mid:v\r\n";
        assert_eq!(first_mid(sdp).as_deref(), Some("a"));
        assert_eq!(
            first_mid("v=0\r\na=mid:x\r\n"),
            None,
            "session-level lines are not a mid"
        );
    }

    #[tokio::test]
    async fn an_answerer_refuses_what_is_not_an_offer() {
        let e = MediaClient::start_answering(ClientOptions::default(), "hello")
            .await
            .expect_err("not an SDP");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("not an SDP"), "{e}");
        // An SDP that says nothing: no origin, no media, no ICE credentials.
        let e = MediaClient::start_answering(ClientOptions::default(), "v=0\r\n")
            .await
            .expect_err("an empty SDP");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    }

    /// An offerer and an answerer connect to each other directly and exchange media both ways.
    #[tokio::test]
    async fn an_answerer_connects_to_an_offerer_and_media_flows_both_ways() {
        let offerer = MediaClient::start(ClientOptions::default()).await.unwrap();
        let answerer = MediaClient::start_answering(ClientOptions::default(), offerer.offer())
            .await
            .unwrap();
        let answer = answerer.local_description().to_owned();
        assert!(
            answer.contains("a=candidate:"),
            "the answer carries our host candidate"
        );
        assert_eq!(answerer.offer(), answer, "offer() is the local description");
        assert_eq!(answerer.candidates().len(), 1);
        offerer.set_answer(answer).await.unwrap();
        let flowing = |s: &super::ClientStats| {
            s.connected
                && s.packets("video") >= 10
                && s.packets("audio") >= 5
                && s.tracks.values().any(|t| !t.latencies_us.is_empty())
        };
        let timeout = Duration::from_secs(10);
        let a = answerer.wait_for(timeout, flowing).await;
        let o = offerer.wait_for(timeout, flowing).await;
        let (a, o) = (a.expect("answerer receives"), o.expect("offerer receives"));
        for s in [&a, &o] {
            for t in s.tracks.values() {
                assert!(t.reception.lost() <= 2, "loss on loopback: {t:?}");
            }
        }
    }

    #[test]
    fn reception_counts_loss_recovery_duplicates_and_wraps() {
        let mut r = Reception::default();
        for s in [65_530u16, 65_531, 65_533, 65_535, 0, 1, 3] {
            r.record(s);
        }
        assert_eq!(r.expected(), 10);
        assert_eq!(r.lost(), 3, "65532, 65534 and 2 are missing");
        r.record(65_532); // a retransmission fills a gap
        r.record(2);
        assert_eq!(r.lost(), 1);
        r.record(2);
        assert_eq!(r.duplicates, 1);
        r.record(30_000); // far ahead: a jump counts as loss
        assert_eq!(r.expected(), 6 + 30_001, "65530..=65535 then 0..=30000");
    }
}
