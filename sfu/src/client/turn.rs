//! TURN for the headless client: the relay candidates a browser gathers from the `turn:` servers
//! of its `RTCConfiguration`, which `rtc`'s ICE agent does not gather by itself.
//!
//! [`TurnRelay`] is one allocation's state, with no sockets and no clock: bytes from the TURN
//! server, payloads for the remote and `now` go in; bytes for the TURN server, the relayed
//! address, payloads from the remote and failures come out. It wraps `rtc`'s own sans-I/O TURN
//! client (`rtc::turn::client::Client`), which does the STUN work: the unauthenticated Allocate,
//! the 401 with realm and nonce, the Allocate with the long-term credential, the refresh of the
//! allocation, of permissions and of channel bindings, and ChannelData once a channel is bound
//! (Send indications until then). What this core adds: a deadline for the allocation, a clear
//! error for a refusal or silence, permissions asked for each remote address before anything is
//! sent to it (payloads wait, a few per address, until the permission is granted), and a refresh
//! of the allocation at most every [`REFRESH_CAP`] so a stale nonce (438) is retried in time.
//!
//! [`TurnUrl::parse`] reads the `turn:` URLs of the `auth` reply's `ice_servers`, and
//! [`StreamFramer`] cuts the byte stream of TURN over TCP into STUN messages and ChannelData
//! (RFC 5766 §11.5: on a stream, ChannelData is padded to 4 bytes; no RFC 6062 is needed, the
//! relay itself is UDP).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::message::TransactionId;
use rtc::turn::client::{Client, ClientConfig, Event};

/// The default port of `turn:` URLs.
pub const DEFAULT_PORT: u16 = 3478;
/// The longest interval between two refreshes of an allocation (the server's lifetime is 600 s
/// by default; a refresh that meets a stale nonce is tried again this much later).
pub const REFRESH_CAP: Duration = Duration::from_secs(60);
/// Payloads kept per remote address while its permission is being asked for.
const QUEUED_PER_PEER: usize = 32;

/// How the client reaches a TURN server (the relay itself is always UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    /// `?transport=udp` (the default).
    Udp,
    /// `?transport=tcp`: STUN and ChannelData on one TCP stream.
    Tcp,
}

impl TurnTransport {
    /// `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
        }
    }

    fn protocol(self) -> TransportProtocol {
        match self {
            TurnTransport::Udp => TransportProtocol::UDP,
            TurnTransport::Tcp => TransportProtocol::TCP,
        }
    }
}

/// A `turn:` URL: `turn:host[:port][?transport=udp|tcp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUrl {
    /// The URL as given.
    pub url: String,
    /// The host name or address (without brackets for IPv6).
    pub host: String,
    /// The port ([`DEFAULT_PORT`] when absent).
    pub port: u16,
    /// How to reach the server.
    pub transport: TurnTransport,
}

/// What one ICE server URL means for the headless client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceUrl {
    /// A TURN server to allocate on.
    Turn(TurnUrl),
    /// A URL this client does not use, and why (`stun:`, `turns:`).
    Skipped(String),
}

impl TurnUrl {
    /// Reads one URL of an `RTCIceServer`. A malformed URL is an error naming it.
    pub fn parse(url: &str) -> Result<IceUrl, String> {
        let bad = |why: &str| format!("ICE server URL {url:?}: {why}");
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| bad("no scheme (turn:, turns: or stun:)"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "turn" => {}
            "turns" => {
                return Ok(IceUrl::Skipped(format!(
                    "{url}: TURN over TLS (turns:) is not supported by the headless client"
                )))
            }
            "stun" | "stuns" => {
                return Ok(IceUrl::Skipped(format!(
                    "{url}: STUN servers are not used by the headless client"
                )))
            }
            _ => return Err(bad("the scheme must be turn:, turns: or stun:")),
        }
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let mut transport = TurnTransport::Udp;
        if let Some(query) = query {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("transport") => {
                        transport = match v.to_ascii_lowercase().as_str() {
                            "udp" => TurnTransport::Udp,
                            "tcp" => TurnTransport::Tcp,
                            _ => return Err(bad("transport must be udp or tcp")),
                        }
                    }
                    _ => return Err(bad("the only query parameter is transport=udp|tcp")),
                }
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be 1-65535"))?,
        };
        Ok(IceUrl::Turn(TurnUrl {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            transport,
        }))
    }
}

/// The address of a UDP ICE candidate line (`candidate:…` or `a=candidate:…`); `None` for TCP
/// candidates, mDNS names and anything unreadable.
pub fn udp_candidate_addr(candidate: &str) -> Option<SocketAddr> {
    let line = candidate.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    let line = line.strip_prefix("candidate:")?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() < 6 || !parts[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    Some(SocketAddr::new(
        parts[4].parse().ok()?,
        parts[5].parse().ok()?,
    ))
}

/// The UDP candidates of an SDP's `a=candidate` lines.
pub fn sdp_udp_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .filter_map(udp_candidate_addr)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What a [`TurnRelay`] reports.
#[derive(Debug)]
pub enum TurnEvent {
    /// The allocation succeeded: the relayed address, the relay candidate's address.
    Allocated(SocketAddr),
    /// The allocation failed, or the server went away: why, in a sentence.
    Failed(String),
    /// A payload from a remote address, through the relay.
    Received(SocketAddr, BytesMut),
}

enum State {
    Allocating { deadline: Instant },
    Ready(SocketAddr),
    Failed,
}

enum Permit {
    /// Asked for (the CreatePermission transaction), with what waits for it.
    Pending(TransactionId, Vec<BytesMut>),
    Granted,
}

/// One TURN allocation (see the module docs). Feed it the server's bytes with
/// [`TurnRelay::handle_input`] and time with [`TurnRelay::handle_timeout`]; send what
/// [`TurnRelay::poll_transmit`] gives to the server, and read [`TurnRelay::poll_event`].
pub struct TurnRelay {
    client: Client,
    url: String,
    server: SocketAddr,
    local: SocketAddr,
    transport: TurnTransport,
    username: String,
    state: State,
    permits: HashMap<SocketAddr, Permit>,
    events: VecDeque<TurnEvent>,
}

impl std::fmt::Debug for TurnRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRelay")
            .field("url", &self.url)
            .field("server", &self.server)
            .field("relayed", &self.relayed())
            .finish_non_exhaustive()
    }
}

impl TurnRelay {
    /// Starts an allocation on `server` (the resolved address of `url`) for a client whose end of
    /// the connection to it is `local`, with the long-term credential `username`/`password`. It
    /// fails with [`TurnEvent::Failed`] if the server has not granted it `timeout` after `now`.
    pub fn new(
        url: &TurnUrl,
        server: SocketAddr,
        local: SocketAddr,
        username: &str,
        password: &str,
        now: Instant,
        timeout: Duration,
    ) -> Result<TurnRelay, String> {
        let provider = rtc::crypto::default_provider()
            .map_err(|e| format!("{}: no crypto provider: {e}", url.url))?;
        let config = ClientConfig {
            stun_serv_addr: String::new(),
            // An address literal: the core does no DNS.
            turn_serv_addr: server.to_string(),
            local_addr: local,
            transport_protocol: url.transport.protocol(),
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            allocation_refresh_interval_cap: Some(REFRESH_CAP),
        };
        let mut client = Client::new(config, provider).map_err(|e| format!("{}: {e}", url.url))?;
        client
            .allocate(now)
            .map_err(|e| format!("{}: cannot build the Allocate request: {e}", url.url))?;
        Ok(TurnRelay {
            client,
            url: url.url.clone(),
            server,
            local,
            transport: url.transport,
            username: username.to_owned(),
            state: State::Allocating {
                deadline: now + timeout,
            },
            permits: HashMap::new(),
            events: VecDeque::new(),
        })
    }

    /// The URL it was made from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TURN server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// How the server is reached.
    pub fn transport(&self) -> TurnTransport {
        self.transport
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Ready(a) => Some(a),
            _ => None,
        }
    }

    /// Whether the allocation is still being made.
    pub fn is_allocating(&self) -> bool {
        matches!(self.state, State::Allocating { .. })
    }

    /// Whether it failed (it then does nothing more).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    fn describe(&self) -> String {
        format!(
            "TURN server {} ({} over {})",
            self.url,
            self.server,
            self.transport.as_str()
        )
    }

    /// Gives up: the connection to the server broke (`why`), or the caller stops waiting.
    pub fn fail(&mut self, why: &str) {
        if self.is_failed() {
            return;
        }
        let text = format!("{}: {why}", self.describe());
        self.state = State::Failed;
        self.permits.clear();
        let _ = self.client.close();
        self.events.push_back(TurnEvent::Failed(text));
    }

    /// One STUN message or ChannelData from the server (a UDP datagram, or a frame of
    /// [`StreamFramer`]).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.is_failed() {
            return;
        }
        let read = self.client.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: self.server,
                ecn: None,
                transport_protocol: self.transport.protocol(),
            },
            message: BytesMut::from(data),
        });
        if let Err(e) = read {
            tracing::debug!(url = %self.url, "TURN: unreadable message from the server: {e}");
        }
        self.drain(now);
    }

    /// When [`TurnRelay::handle_timeout`] wants to run next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        match self.state {
            State::Failed => None,
            State::Allocating { deadline } => Some(
                self.client
                    .poll_timeout()
                    .map_or(deadline, |t| t.min(deadline)),
            ),
            State::Ready(_) => self.client.poll_timeout(),
        }
    }

    /// Retransmissions, refreshes (allocation, permissions) and the allocation's deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Allocating { deadline } = self.state {
            if now >= deadline {
                self.fail(
                    "no allocation in time (the server does not answer, or drops our requests)",
                );
                return;
            }
        }
        if self.is_failed() {
            return;
        }
        let _ = self.client.handle_timeout(now);
        self.drain(now);
    }

    /// The next message for the server.
    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        if self.is_failed() {
            return None;
        }
        self.client.poll_write().map(|t| t.message)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// Asks for a permission for `peer` (a remote candidate) unless one is held or asked for.
    pub fn permit(&mut self, now: Instant, peer: SocketAddr) {
        let State::Ready(relayed) = self.state else {
            return;
        };
        if self.permits.contains_key(&peer) {
            return;
        }
        match self
            .client
            .relay(relayed)
            .and_then(|mut r| r.create_permission(now, peer))
        {
            Ok(Some(tid)) => {
                self.permits.insert(peer, Permit::Pending(tid, Vec::new()));
            }
            Ok(None) => {
                self.permits.insert(peer, Permit::Granted);
            }
            Err(e) => {
                tracing::debug!(url = %self.url, %peer, "TURN: cannot ask for a permission: {e}")
            }
        }
    }

    /// Sends `payload` to `peer` through the relay: at once when its permission is held (as
    /// ChannelData once the channel `rtc` binds on first use is ready), after the permission is
    /// granted otherwise. Returns whether it was sent or queued.
    pub fn send(&mut self, now: Instant, peer: SocketAddr, payload: &[u8]) -> bool {
        let State::Ready(relayed) = self.state else {
            return false;
        };
        if !self.permits.contains_key(&peer) {
            self.permit(now, peer);
        }
        match self.permits.get_mut(&peer) {
            Some(Permit::Granted) => {
                let sent = self
                    .client
                    .relay(relayed)
                    .and_then(|mut r| r.send_to(now, payload, peer));
                match sent {
                    Ok(()) => true,
                    Err(e) => {
                        // The permission went away (refused at a refresh): ask again.
                        tracing::debug!(url = %self.url, %peer, "TURN: send failed: {e}");
                        self.permits.remove(&peer);
                        false
                    }
                }
            }
            Some(Permit::Pending(_, queue)) if queue.len() < QUEUED_PER_PEER => {
                queue.push(BytesMut::from(payload));
                true
            }
            _ => false,
        }
    }

    /// Releases the allocation (a Refresh with lifetime 0); what to send comes out of
    /// [`TurnRelay::poll_transmit`].
    pub fn close(&mut self, now: Instant) {
        if let State::Ready(relayed) = self.state {
            if let Ok(mut r) = self.client.relay(relayed) {
                let _ = r.close(now);
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::AllocateResponse(_, relayed) if self.is_allocating() => {
                    self.state = State::Ready(relayed);
                    self.events.push_back(TurnEvent::Allocated(relayed));
                }
                Event::AllocateError(_, e) => {
                    let e = e.to_string();
                    let hint = if e.contains("401") {
                        format!(
                            " (wrong or expired credentials for user {:?})",
                            self.username
                        )
                    } else {
                        String::new()
                    };
                    self.fail(&format!("the allocation was refused: {e}{hint}"));
                    return;
                }
                Event::TransactionTimeout(tid) => {
                    if self.is_allocating() {
                        self.fail("no answer to the Allocate request");
                        return;
                    }
                    let peer = self.permits.iter().find_map(|(peer, p)| match p {
                        Permit::Pending(t, _) if *t == tid => Some(*peer),
                        _ => None,
                    });
                    if let Some(peer) = peer {
                        tracing::warn!(url = %self.url, %peer, "TURN: no answer to CreatePermission");
                        self.permits.remove(&peer);
                    } else {
                        tracing::debug!(url = %self.url, "TURN: a request timed out");
                    }
                }
                Event::CreatePermissionResponse(tid, peer) => {
                    if let Some(Permit::Pending(t, queue)) = self.permits.remove(&peer) {
                        if t != tid {
                            tracing::debug!(url = %self.url, %peer, "TURN: permission granted");
                        }
                        self.permits.insert(peer, Permit::Granted);
                        if let State::Ready(relayed) = self.state {
                            for payload in queue {
                                if let Ok(mut r) = self.client.relay(relayed) {
                                    let _ = r.send_to(now, &payload, peer);
                                }
                            }
                        }
                    } else {
                        self.permits.insert(peer, Permit::Granted);
                    }
                }
                Event::CreatePermissionError(tid, e) => {
                    let peer = self.permits.iter().find_map(|(peer, p)| match p {
                        Permit::Pending(t, _) if *t == tid => Some(*peer),
                        _ => None,
                    });
                    tracing::warn!(
                        url = %self.url,
                        peer = ?peer,
                        "TURN: the server refused a permission: {e}"
                    );
                    if let Some(peer) = peer {
                        self.permits.remove(&peer);
                    }
                }
                Event::DataIndicationOrChannelData(_, from, data) => {
                    self.events.push_back(TurnEvent::Received(from, data));
                }
                _ => {}
            }
        }
    }
}

/// Cuts the byte stream of TURN over TCP into messages: a STUN message (first two bits 0, 20-byte
/// header with its length) or ChannelData (first byte 0x40–0x7F, 4-byte header, padded to 4
/// bytes on a stream).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    /// Bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if one is buffered. An error means the stream is not TURN (it
    /// cannot be resynchronised: close the connection).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        let total = match self.buf[0] {
            0x00..=0x3F => 20 + len,
            0x40..=0x7F => 4 + len.div_ceil(4) * 4,
            b => {
                return Err(format!(
                    "the TCP stream is not STUN or ChannelData (first byte {b:#04x})"
                ))
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_urls_parse_like_a_browser_reads_them() {
        let turn = |u: &str| match TurnUrl::parse(u) {
            Ok(IceUrl::Turn(t)) => t,
            other => panic!("{u}: {other:?}"),
        };
        let t = turn("turn:127.0.0.1:3478?transport=udp");
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("127.0.0.1", 3478, TurnTransport::Udp)
        );
        let t = turn("turn:turn.comune.example.it?transport=tcp");
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("turn.comune.example.it", DEFAULT_PORT, TurnTransport::Tcp)
        );
        let t = turn("TURN:[::1]:5000");
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("::1", 5000, TurnTransport::Udp)
        );
        for skipped in [
            "turns:turn.example:443?transport=tcp",
            "stun:stun.example:3478",
        ] {
            assert!(
                matches!(TurnUrl::parse(skipped), Ok(IceUrl::Skipped(_))),
                "{skipped}"
            );
        }
        for bad in [
            "http://x",
            "turn:",
            "turn:host:0",
            "turn:host:99999",
            "turn:host?transport=sctp",
            "turn:host?foo=bar",
            "turn:[::1",
            "nothing",
        ] {
            let e = TurnUrl::parse(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn udp_candidates_are_read_from_lines_and_sdps() {
        assert_eq!(
            udp_candidate_addr("candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"),
            Some(SocketAddr::from(([127, 0, 0, 1], 40000)))
        );
        assert_eq!(
            udp_candidate_addr("a=candidate:1 1 UDP 2130706431 ::1 40000 typ host"),
            Some("[::1]:40000".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(
            udp_candidate_addr("candidate:2 1 tcp 1 127.0.0.1 9 typ host tcptype passive"),
            None
        );
        assert_eq!(
            udp_candidate_addr("candidate:3 1 udp 1 abc.local 5 typ host"),
            None
        );
        assert_eq!(udp_candidate_addr("garbage"), None);
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.1.5 50000 typ host\r\n\
                   a=candidate:2 1 tcp 2130706431 10.0.1.5 50001 typ host tcptype passive\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.1.5 50000 typ host\r\n";
        assert_eq!(
            sdp_udp_candidates(sdp),
            vec![SocketAddr::from(([10, 0, 1, 5], 50000))]
        );
    }

    #[test]
    fn the_framer_cuts_stun_and_padded_channel_data_from_a_stream() {
        let mut stun = vec![0x01, 0x01, 0x00, 0x08];
        stun.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        stun.extend_from_slice(&[7; 12]);
        stun.extend_from_slice(&[1; 8]);
        assert_eq!(stun.len(), 28);
        let channel = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        let mut f = StreamFramer::default();
        let mut stream = stun.clone();
        stream.extend_from_slice(&channel);
        // Byte by byte: nothing comes out early.
        for (i, b) in stream.iter().enumerate() {
            f.push(&[*b]);
            let frame = f.next_frame().unwrap();
            match i + 1 {
                28 => assert_eq!(frame.as_deref(), Some(&stun[..])),
                40 => assert_eq!(frame.as_deref(), Some(&channel[..])),
                _ => assert_eq!(frame, None, "after {} bytes", i + 1),
            }
        }
        f.push(&[0xFF, 0, 0, 0]);
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn an_allocation_that_gets_no_answer_fails_at_its_deadline() {
        let url = match TurnUrl::parse("turn:127.0.0.1:3478").unwrap() {
            IceUrl::Turn(t) => t,
            _ => unreachable!(),
        };
        let now = Instant::now();
        let mut relay = TurnRelay::new(
            &url,
            "127.0.0.1:3478".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
            "1:kiosk",
            "secret",
            now,
            Duration::from_secs(3),
        )
        .unwrap();
        let first = relay.poll_transmit().expect("the Allocate request");
        assert_eq!(first[0] & 0xC0, 0, "a STUN message");
        assert!(relay.is_allocating());
        // Retransmissions, then the deadline.
        let mut t = now;
        while !relay.is_failed() {
            t = relay.poll_timeout().expect("a deadline while allocating");
            assert!(t <= now + Duration::from_secs(3));
            relay.handle_timeout(t);
            while relay.poll_transmit().is_some() {}
        }
        assert!(t >= now + Duration::from_millis(200));
        match relay.poll_event() {
            Some(TurnEvent::Failed(why)) => {
                assert!(
                    why.contains("127.0.0.1:3478") && why.contains("no allocation in time"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            relay.poll_timeout(),
            None,
            "a failed relay wants no more time"
        );
        assert!(!relay.send(t, "127.0.0.1:9".parse().unwrap(), b"x"));
    }
}
