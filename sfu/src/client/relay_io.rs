//! The sockets of the client's TURN allocations: one connected UDP socket or one TCP stream per
//! `turn:` URL, each driving a [`TurnRelay`] core. Reader tasks hand what the servers send to the
//! client's loop through one channel ([`Relays::recv`]); writes are immediate on UDP and go through
//! a writer task on TCP (it ends, after writing what is queued, when the relay is dropped).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::turn::{IceUrl, StreamFramer, TurnEvent, TurnRelay, TurnTransport, TurnUrl};
use super::{ClientOptions, RelayInfo};

/// What a reader task hands over: the link's id and a message from its server, or why the
/// connection to the server ended.
pub(super) type TurnInput = (usize, Result<Vec<u8>, String>);

enum Io {
    Udp(Arc<UdpSocket>),
    Tcp(mpsc::UnboundedSender<BytesMut>),
}

struct Link {
    id: usize,
    core: TurnRelay,
    io: Io,
    base: SocketAddr,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    fn flush(&mut self) {
        while let Some(b) = self.core.poll_transmit() {
            match &self.io {
                Io::Udp(s) => {
                    let _ = s.try_send(&b);
                }
                Io::Tcp(tx) => {
                    let _ = tx.send(b);
                }
            }
        }
    }
}

/// The client's TURN allocations (see the module docs).
pub(super) struct Relays {
    links: Vec<Link>,
    tx: mpsc::UnboundedSender<TurnInput>,
    rx: mpsc::UnboundedReceiver<TurnInput>,
    /// Why a `turn:` URL gave no allocation, one line each.
    pub(super) errors: Vec<String>,
}

impl Relays {
    /// No allocation.
    pub(super) fn none() -> Relays {
        let (tx, rx) = mpsc::unbounded_channel();
        Relays {
            links: Vec::new(),
            tx,
            rx,
            errors: Vec::new(),
        }
    }

    /// Allocates on every `turn:` URL of `opts.ice_servers` at once, and waits until each one
    /// has its relayed address or has failed (at most `opts.turn_timeout`). Failed ones are
    /// dropped, with their reasons in [`Relays::errors`].
    pub(super) async fn gather(opts: &ClientOptions) -> Relays {
        let mut relays = Relays::none();
        let deadline = Instant::now() + opts.turn_timeout;
        for server in &opts.ice_servers {
            for url in &server.urls {
                let url = match TurnUrl::parse(url) {
                    Ok(IceUrl::Turn(u)) => u,
                    Ok(IceUrl::Skipped(why)) => {
                        tracing::debug!("{why}");
                        continue;
                    }
                    Err(e) => {
                        relays.errors.push(e);
                        continue;
                    }
                };
                let (Some(user), Some(pass)) = (&server.username, &server.credential) else {
                    relays.errors.push(format!(
                        "TURN server {}: no username and credential in its ICE server entry",
                        url.url
                    ));
                    continue;
                };
                match relays.open(&url, user, pass, deadline).await {
                    Ok(()) => {}
                    Err(e) => relays.errors.push(format!("TURN server {}: {e}", url.url)),
                }
            }
        }
        while relays.links.iter().any(|l| l.core.is_allocating()) {
            relays.flush();
            let now = Instant::now();
            let wake = relays
                .poll_timeout()
                .unwrap_or(deadline)
                .min(deadline)
                .max(now);
            tokio::select! {
                Some(input) = relays.rx.recv() => relays.handle_input(Instant::now(), input),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                for l in &mut relays.links {
                    if l.core.is_allocating() {
                        l.core.fail("no allocation in time");
                    }
                }
            }
            relays.handle_timeout(now);
            // Only allocations and failures can happen before there is a remote.
            while let Some((_, ev)) = relays.poll_event() {
                match ev {
                    TurnEvent::Failed(why) => relays.errors.push(why),
                    TurnEvent::Received(from, _) => {
                        tracing::debug!(%from, "TURN: data before the call, dropped")
                    }
                    TurnEvent::Allocated(relayed) => tracing::debug!(%relayed, "TURN: allocated"),
                }
            }
        }
        relays.flush();
        relays.links.retain(|l| l.core.relayed().is_some());
        relays
    }

    /// Connects to the server of `url` and starts its allocation.
    async fn open(
        &mut self,
        url: &TurnUrl,
        user: &str,
        pass: &str,
        deadline: Instant,
    ) -> io::Result<()> {
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let resolved = tokio::time::timeout(
            left(),
            tokio::net::lookup_host((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("cannot resolve {} in time", url.host),
            )
        })??
        .collect::<Vec<_>>();
        let server = resolved
            .iter()
            .find(|a| a.is_ipv4())
            .or(resolved.first())
            .copied()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no address", url.host),
                )
            })?;
        let id = self.links.len();
        let tx = self.tx.clone();
        let (io, base, reader) = match url.transport {
            TurnTransport::Udp => {
                let any: SocketAddr = if server.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(any).await?;
                socket.connect(server).await?;
                let base = socket.local_addr()?;
                let socket = Arc::new(socket);
                let s = socket.clone();
                let reader = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        match s.recv(&mut buf).await {
                            Ok(n) => {
                                if tx.send((id, Ok(buf[..n].to_vec()))).is_err() {
                                    return;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                                let _ = tx.send((
                                    id,
                                    Err("nothing listens on its UDP port (ICMP port unreachable)"
                                        .to_owned()),
                                ));
                                return;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                });
                (Io::Udp(socket), base, reader)
            }
            TurnTransport::Tcp => {
                let stream = tokio::time::timeout(left(), TcpStream::connect(server))
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no TCP connection to {server} in time"),
                        )
                    })?
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("no TCP connection to {server}: {e}"))
                    })?;
                let _ = stream.set_nodelay(true);
                let base = stream.local_addr()?;
                let (mut read, mut write) = stream.into_split();
                let (wtx, mut wrx) = mpsc::unbounded_channel::<BytesMut>();
                tokio::spawn(async move {
                    while let Some(b) = wrx.recv().await {
                        if write.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                });
                let reader = tokio::spawn(async move {
                    let mut framer = StreamFramer::default();
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        let why = match read.read(&mut buf).await {
                            Ok(0) => "the server closed the TCP connection".to_owned(),
                            Ok(n) => {
                                framer.push(&buf[..n]);
                                loop {
                                    match framer.next_frame() {
                                        Ok(Some(frame)) => {
                                            if tx.send((id, Ok(frame))).is_err() {
                                                return;
                                            }
                                        }
                                        Ok(None) => break,
                                        Err(e) => {
                                            let _ = tx.send((id, Err(e)));
                                            return;
                                        }
                                    }
                                }
                                continue;
                            }
                            Err(e) => format!("the TCP connection broke: {e}"),
                        };
                        let _ = tx.send((id, Err(why)));
                        return;
                    }
                });
                (Io::Tcp(wtx), base, reader)
            }
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        let core = TurnRelay::new(url, server, base, user, pass, Instant::now(), timeout)
            .map_err(io::Error::other)?;
        let mut link = Link {
            id,
            core,
            io,
            base,
            reader,
        };
        link.flush();
        self.links.push(link);
        Ok(())
    }

    /// The allocations: what the client's stats show.
    pub(super) fn infos(&self) -> Vec<RelayInfo> {
        self.links
            .iter()
            .filter_map(|l| {
                Some(RelayInfo {
                    url: l.core.url().to_owned(),
                    server: l.core.server(),
                    transport: l.core.transport().as_str(),
                    relayed: l.core.relayed()?,
                })
            })
            .collect()
    }

    /// Each allocation's relayed address, its base (our end of the connection to the server)
    /// and URL: the relay candidates.
    pub(super) fn candidates(&self) -> Vec<(SocketAddr, SocketAddr, String)> {
        self.links
            .iter()
            .filter_map(|l| Some((l.core.relayed()?, l.base, l.core.url().to_owned())))
            .collect()
    }

    /// Whether `local` is one of our relayed addresses.
    pub(super) fn owns(&self, local: SocketAddr) -> bool {
        self.links.iter().any(|l| l.core.relayed() == Some(local))
    }

    /// Sends `payload` from the relayed address `local` to `peer`; whether it went (or waits for
    /// its permission).
    pub(super) fn send(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> bool {
        match self
            .links
            .iter_mut()
            .find(|l| l.core.relayed() == Some(local))
        {
            Some(l) => {
                let sent = l.core.send(now, peer, payload);
                l.flush();
                sent
            }
            None => false,
        }
    }

    /// Asks every allocation for a permission for `peer` (a remote UDP candidate).
    pub(super) fn permit(&mut self, now: Instant, peer: SocketAddr) {
        for l in &mut self.links {
            l.core.permit(now, peer);
            l.flush();
        }
    }

    /// The earliest time an allocation wants.
    pub(super) fn poll_timeout(&mut self) -> Option<Instant> {
        self.links
            .iter_mut()
            .filter_map(|l| l.core.poll_timeout())
            .min()
    }

    /// Runs the allocations' timers that are due.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for l in &mut self.links {
            if l.core.poll_timeout().is_some_and(|t| t <= now) {
                l.core.handle_timeout(now);
            }
            l.flush();
        }
    }

    /// The next message (or end) from a server; pending forever when there is none.
    pub(super) async fn recv(&mut self) -> TurnInput {
        match self.rx.recv().await {
            Some(input) => input,
            // The relays hold a sender: this does not happen.
            None => std::future::pending().await,
        }
    }

    /// Feeds what a reader task handed over to its allocation.
    pub(super) fn handle_input(&mut self, now: Instant, (id, input): TurnInput) {
        let Some(l) = self.links.iter_mut().find(|l| l.id == id) else {
            return;
        };
        match input {
            Ok(frame) => l.core.handle_input(now, &frame),
            Err(why) => l.core.fail(&why),
        }
        l.flush();
    }

    /// Sends what the allocations queued.
    pub(super) fn flush(&mut self) {
        for l in &mut self.links {
            l.flush();
        }
    }

    /// The next event of any allocation, with its relayed address (if allocated).
    pub(super) fn poll_event(&mut self) -> Option<(Option<SocketAddr>, TurnEvent)> {
        for l in &mut self.links {
            if let Some(ev) = l.core.poll_event() {
                return Some((l.core.relayed(), ev));
            }
        }
        None
    }

    /// Releases every allocation (best effort: the server frees them at their lifetime anyway).
    pub(super) fn close(&mut self, now: Instant) {
        for l in &mut self.links {
            l.core.close(now);
            l.flush();
        }
    }
}
