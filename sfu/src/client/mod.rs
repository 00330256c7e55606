//! A headless WebRTC client for bots, tests and benchmarks: one peer connection on its own UDP
//! socket that sends synthetic audio and video and measures what it receives. It is the offerer
//! ([`MediaClient::start`], as towards our SFU), or the answerer of a remote offer
//! ([`MediaClient::start_answering`], as the callee of Janus's `videocall` plugin, whose offer
//! comes from the server).
//!
//! Video is sent as 30 frames per second of VP8-framed packets whose payload carries a marker, the
//! send time and a counter, so the receiver can measure one-way latency on the same machine;
//! audio is 50 Opus silence frames per second. The payloads are not decodable pictures: a Rust
//! bot's peers are other bots (browsers are tested with their own fake camera). The connection runs
//! in a task of its own (`peer`); what it measures is in `stats`.
//!
//! **TURN.** Like a browser given an `RTCConfiguration`, the client takes ICE servers in the
//! `RTCIceServer` form ([`ClientOptions::ice_servers`], the `auth` reply's `ice_servers`) and a
//! transport policy ([`ClientOptions::ice_transport_policy`]). Before its offer (or answer) it
//! allocates on every `turn:` server (UDP or TCP; [`turn`] has the sans-I/O core, on `rtc`'s own
//! TURN client, and `relay_io` the sockets) and adds each relayed address as a local `relay`
//! candidate; ICE pairs them with the remote's candidates like any other. What the ICE agent
//! sends from a relay candidate goes through that allocation (a permission for each remote
//! candidate, then ChannelData), and what the allocation receives goes to the agent as if it had
//! arrived on the relayed address. With policy `relay` no host candidate is gathered, and a client
//! that gets no allocation fails to start with the servers' reasons. With `all`, a TURN server that
//! refuses or does not answer is logged and the host candidate remains.

mod peer;
mod relay_io;
mod stats;
pub mod turn;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateRelayConfig, RTCIceCandidate,
    RTCIceCandidateInit,
};
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::Candidate;
use peer::{Driver, OutTrack};
use relay_io::Relays;
pub use stats::{ClientStats, Reception, RelayInfo, TrackStats};

/// Marks a synthetic video payload (after the one-byte VP8 descriptor).
pub const MARKER: &[u8; 4] = b"SPTL";
/// Bytes of the marker + send time (µs since the epoch) + counter.
const TRAILER: usize = 4 + 8 + 4;

/// What the client sends, and the ICE servers it gathers relay candidates from.
#[derive(Clone)]
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
    /// ICE servers in the browser's `RTCIceServer` form (the `auth` reply's `ice_servers`): a
    /// relay candidate is gathered from each `turn:` URL (`?transport=udp` or `tcp`) with the
    /// entry's `username` and `credential`. `stun:` and `turns:` URLs are skipped.
    pub ice_servers: Vec<protocol::IceServer>,
    /// `Relay`: only relay candidates, no host candidate (the client fails to start when no TURN
    /// server gives an allocation). `All`: host and relay candidates.
    pub ice_transport_policy: protocol::IceTransportPolicy,
    /// How long the TURN allocations may take before the offer is made without them.
    pub turn_timeout: Duration,
}

impl std::fmt::Debug for ClientOptions {
    // Written by hand so TURN credentials never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<(&[String], Option<&str>)> = self
            .ice_servers
            .iter()
            .map(|s| (s.urls.as_slice(), s.username.as_deref()))
            .collect();
        f.debug_struct("ClientOptions")
            .field("monitor", &self.monitor)
            .field("video_packets_per_frame", &self.video_packets_per_frame)
            .field("video_packet_size", &self.video_packet_size)
            .field("fps", &self.fps)
            .field("audio", &self.audio)
            .field("ice_servers", &servers)
            .field("ice_transport_policy", &self.ice_transport_policy)
            .field("turn_timeout", &self.turn_timeout)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            monitor: false,
            video_packets_per_frame: 2,
            video_packet_size: 1000,
            fps: 30,
            audio: true,
            ice_servers: Vec::new(),
            ice_transport_policy: protocol::IceTransportPolicy::All,
            turn_timeout: Duration::from_secs(5),
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

    /// The same options with these ICE servers and policy (from the `auth` reply or the latest
    /// `ice.servers` event).
    pub fn with_ice(
        mut self,
        servers: Vec<protocol::IceServer>,
        policy: protocol::IceTransportPolicy,
    ) -> Self {
        self.ice_servers = servers;
        self.ice_transport_policy = policy;
        self
    }

    fn relay_only(&self) -> bool {
        self.ice_transport_policy == protocol::IceTransportPolicy::Relay
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

/// A relay candidate for the relayed address `relayed` of an allocation reached from `base`.
fn relay_candidate(
    relayed: SocketAddr,
    base: SocketAddr,
    url: &str,
) -> Result<RTCIceCandidateInit, rtc::shared::error::Error> {
    let relay = CandidateRelayConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: relayed.ip().to_string(),
            port: relayed.port(),
            component: 1,
            ..Default::default()
        },
        rel_addr: base.ip().to_string(),
        rel_port: base.port(),
        url: Some(url.to_owned()),
    }
    .new_candidate_relay()?;
    RTCIceCandidate::from(&relay).to_json()
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
        let relay_only = opts.relay_only();
        let relays = if opts.ice_servers.is_empty() {
            Relays::none()
        } else {
            Relays::gather(&opts).await
        };
        for e in &relays.errors {
            tracing::warn!("no relay candidate: {e}");
        }
        let relay_inits = relays
            .candidates()
            .into_iter()
            .map(|(relayed, base, url)| relay_candidate(relayed, base, &url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        if relay_only && relay_inits.is_empty() {
            let why = if relays.errors.is_empty() {
                "there is no turn: URL among the ICE servers".to_owned()
            } else {
                relays.errors.join("; ")
            };
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("ICE transport policy relay, but no TURN allocation: {why}"),
            ));
        }
        let now = Instant::now();
        let mut media = crate::chain::media_engine().map_err(err)?;
        let registry = crate::chain::interceptors(&mut media).map_err(err)?;
        // The policy is ours to apply (no host candidate is added): `rtc`'s own `relay` policy
        // wants TURN URLs it would not use.
        let mut setting_engine = SettingEngineBuilder::new();
        if relay_only {
            // Only relay candidates: no reason to wait for better ones.
            setting_engine = setting_engine.with_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine.build())
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

        let mut inits = Vec::new();
        if !relay_only {
            inits.push(host_candidate(local).map_err(err)?);
        }
        inits.extend(relay_inits.iter().cloned());
        let answering = remote_offer.is_some();
        let remote_sdp = remote_offer.as_ref().map(|o| o.sdp.clone());
        let local_sdp = match remote_offer {
            None => {
                for init in &inits {
                    pc.add_local_candidate(init.clone()).map_err(err)?;
                }
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
                for init in &inits {
                    pc.add_local_candidate(init.clone()).map_err(err)?;
                }
                let answer = pc.create_answer(None).map_err(err)?;
                pc.set_local_description(now, answer).map_err(err)?;
                pc.local_description().map(|d| d.sdp)
            }
        }
        .ok_or_else(|| err("no local description"))?;
        let mid = first_mid(&local_sdp).unwrap_or_else(|| "0".to_owned());
        let candidates = inits
            .into_iter()
            .map(|init| Candidate {
                candidate: init.candidate,
                sdp_mid: Some(mid.clone()),
                sdp_mline_index: Some(0),
            })
            .collect();

        let stats = Arc::new(Mutex::new(ClientStats {
            relays: relays.infos(),
            turn_errors: relays.errors.clone(),
            ..Default::default()
        }));
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
            relays,
            relay_inits,
            relay_only,
        };
        if answering {
            // Negotiation is complete: what we send is known now.
            driver.learn_payload_types();
            if let Some(sdp) = remote_sdp {
                driver.permit_sdp(&sdp);
            }
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
