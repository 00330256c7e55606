//! Connection limits: what one client may hold of the server.
//!
//! - [`Limiter`] counts open connections (or WebSocket sockets) per client address and in all, and
//!   hands out a [`Slot`] that gives its place back when dropped. Addresses are counted as the
//!   IPv4 address, or the IPv6 /64 (what one host usually gets).
//! - [`LimitAcceptor`] refuses a TCP connection past its listener's caps at once (over plain HTTP
//!   with a `429 rate_limited` written first, best effort) and ties the slot to the stream, so the
//!   place is held until the connection (HTTP or WebSocket) closes. It counts the TCP peer, since
//!   nothing of the request has been read yet: the public listener's exempt addresses therefore
//!   include `trusted_proxies`, whose connections carry many clients each (they still count in
//!   the total). The per-client caps that follow (WebSocket sockets per address, the login
//!   throttles) count the client address of [`crate::client_addr`].
//! - [`HeadDeadline`] closes a connection that has not sent a whole first request head within the
//!   header timeout (idle sockets, half-sent headers, a stalled TLS handshake), and refuses HTTP/2
//!   prior knowledge, which would escape hyper's HTTP/1 header timeout. Later requests on a
//!   kept-alive connection are bounded by hyper's own `header_read_timeout`, and bodies by the
//!   request body timeout (both set in `server.rs`).
//! - [`raise_nofile`] lifts the process's file-descriptor soft limit to the hard limit, and
//!   [`public_cap`] keeps a reserve out of the public listener's reach, so that `/healthz`, the admin
//!   listener, media and files still get descriptors while one address holds thousands.
//!
//! Sessions per principal are capped in [`crate::sessions::SessionRegistry`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client_addr::{in_ranges, AddressRange};
use crate::config::LimitsConfig;

/// The key an address is counted under: the IPv4 address (also for v4-mapped IPv6), or the IPv6
/// /64 prefix.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How many connections the public listener may hold: `max_connections` when set, and never more
/// than the file-descriptor limit minus the reserve. At most a quarter of the limit is reserved, so
/// a low limit still leaves the public listener most of it.
pub fn public_cap(nofile: Option<u64>, fd_reserve: u32, max_connections: u32) -> usize {
    let by_fds = nofile.map(|n| {
        let reserve = u64::from(fd_reserve).min(n / 4);
        usize::try_from(n.saturating_sub(reserve)).unwrap_or(usize::MAX)
    });
    match (max_connections as usize, by_fds) {
        (0, Some(fds)) => fds,
        (0, None) => 0,
        (set, Some(fds)) => set.min(fds),
        (set, None) => set,
    }
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to the hard limit and returns the soft limit
/// now in force (`None` when it cannot be read, or is unlimited).
pub fn raise_nofile() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "cannot raise the file-descriptor limit"
            );
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's address holds as many as it may.
    Address,
    /// The listener holds as many as it may in all.
    Total,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Address => "address",
            Refusal::Total => "total",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Counts what is open per address and in all, against two caps (0 means no cap).
#[derive(Debug)]
pub struct Limiter {
    per_address: usize,
    total: usize,
    exempt: Vec<AddressRange>,
    counts: Mutex<Counts>,
    open: prometheus::IntGauge,
    refused: IntCounterVec,
    label: &'static str,
}

/// A place held in a [`Limiter`]; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limiter.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.key {
            if let Some(n) = counts.by_address.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.by_address.remove(&key);
                }
            }
        }
        self.limiter.open.set(counts.total as i64);
    }
}

impl Limiter {
    fn new(
        label: &'static str,
        per_address: usize,
        total: usize,
        exempt: &[AddressRange],
        metrics: &LimitMetrics,
    ) -> Arc<Self> {
        Arc::new(Limiter {
            per_address,
            total,
            exempt: exempt.to_vec(),
            counts: Mutex::new(Counts::default()),
            open: metrics.open.with_label_values(&[label]),
            refused: metrics.refused.clone(),
            label,
        })
    }

    /// A limiter without metrics (tests of the counting alone).
    pub fn unmetered(per_address: usize, total: usize, exempt: &[AddressRange]) -> Arc<Self> {
        Self::new("test", per_address, total, exempt, &LimitMetrics::new())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a client at `ip`, or says which cap is reached.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let exempt = in_ranges(&self.exempt, ip);
        let key = (!exempt).then(|| address_key(ip));
        let mut counts = self.lock();
        let refusal = if self.total > 0 && counts.total >= self.total {
            Some(Refusal::Total)
        } else if let Some(key) = key.filter(|_| self.per_address > 0) {
            let n = counts.by_address.get(&key).copied().unwrap_or(0);
            (n >= self.per_address).then_some(Refusal::Address)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(counts);
            self.refused
                .with_label_values(&[self.label, refusal.as_str()])
                .inc();
            return Err(refusal);
        }
        counts.total += 1;
        if let Some(key) = key {
            *counts.by_address.entry(key).or_insert(0) += 1;
        }
        self.open.set(counts.total as i64);
        Ok(Slot {
            limiter: Arc::clone(self),
            key,
        })
    }

    /// What is open in all.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// What is open from `ip`'s address key.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock()
            .by_address
            .get(&address_key(ip))
            .copied()
            .unwrap_or(0)
    }

    /// The cap per address (0: none).
    pub fn per_address(&self) -> usize {
        self.per_address
    }

    /// The cap in all (0: none).
    pub fn open_cap(&self) -> usize {
        self.total
    }
}

#[derive(Debug, Clone)]
struct LimitMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
}

impl LimitMetrics {
    fn new() -> Self {
        LimitMetrics {
            open: IntGaugeVec::new(
                Opts::new(
                    "sportello_connections_open",
                    "Open connections (public, admin) and WebSocket sockets (ws).",
                ),
                &["listener"],
            )
            .expect("valid metric"),
            refused: IntCounterVec::new(
                Opts::new(
                    "sportello_connections_refused_total",
                    "Connections and WebSocket sockets refused by a cap (address or total).",
                ),
                &["listener", "reason"],
            )
            .expect("valid metric"),
        }
    }
}

/// Every limit of one server: the listeners' limiters, the WebSocket limiter and the timeouts.
#[derive(Debug)]
pub struct Limits {
    /// Connections on the public listener.
    pub public: Arc<Limiter>,
    /// Connections on the admin listener.
    pub admin: Arc<Limiter>,
    /// WebSocket sockets per address.
    pub ws: Arc<Limiter>,
    /// Time for a request head (and a TLS handshake).
    pub header_timeout: Duration,
    /// Time a request body may go without sending data.
    pub body_timeout: Duration,
    /// Sessions one principal may hold (0: no cap).
    pub sessions_per_principal: usize,
    /// The file-descriptor limit in force, when known.
    pub nofile: Option<u64>,
}

impl Limits {
    /// The limits of `config`, given the file-descriptor limit, with metrics in `registry`.
    pub fn new(config: &LimitsConfig, nofile: Option<u64>, registry: &Registry) -> Self {
        let metrics = LimitMetrics::new();
        let _ = registry.register(Box::new(metrics.open.clone()));
        let _ = registry.register(Box::new(metrics.refused.clone()));
        let exempt = &config.exempt_addresses;
        // A trusted proxy's connections carry many clients: they are not capped per address at
        // accept; its clients are capped once their address is read (WebSocket, logins).
        let public_exempt: Vec<AddressRange> = exempt
            .iter()
            .chain(&config.trusted_proxies)
            .copied()
            .collect();
        let per_address = config.connections_per_address as usize;
        let public_total = public_cap(nofile, config.fd_reserve, config.max_connections);
        Limits {
            public: Limiter::new(
                "public",
                per_address,
                public_total,
                &public_exempt,
                &metrics,
            ),
            admin: Limiter::new(
                "admin",
                per_address,
                config.admin_connections as usize,
                exempt,
                &metrics,
            ),
            ws: Limiter::new("ws", config.ws_per_address as usize, 0, exempt, &metrics),
            header_timeout: Duration::from_secs(config.header_timeout_s.max(1)),
            body_timeout: Duration::from_secs(config.body_timeout_s.max(1)),
            sessions_per_principal: config.sessions_per_principal as usize,
            nofile,
        }
    }
}

/// The answer written to a refused plain-HTTP connection before it is closed.
const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 77\r\n\
\r\n\
{\"code\":\"rate_limited\",\"message\":\"too many connections; close some and retry\"}";

/// An acceptor that holds a [`Slot`] per connection and refuses connections past the caps. It
/// also sets `TCP_NODELAY`: small frames must leave at once, and without it an event written right
/// after another waits for the client's delayed ACK (about 40 ms on Linux).
#[derive(Debug, Clone)]
pub struct LimitAcceptor {
    limiter: Arc<Limiter>,
    answer_refused: bool,
}

impl LimitAcceptor {
    /// Counts in `limiter`; `plain` says the listener speaks plain HTTP, so a refused connection
    /// can be told why.
    pub fn new(limiter: Arc<Limiter>, plain: bool) -> Self {
        LimitAcceptor {
            limiter,
            answer_refused: plain,
        }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Counted<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted<TcpStream>, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(e) => return std::future::ready(Err(e)),
        };
        match self.limiter.try_acquire(peer.ip()) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                std::future::ready(Ok((
                    Counted {
                        inner: stream,
                        _slot: slot,
                    },
                    service,
                )))
            }
            Err(refusal) => {
                tracing::debug!(peer = %peer.ip(), reason = refusal.as_str(), "connection refused by a cap");
                if self.answer_refused {
                    // Best effort, without waiting: read what the client already sent, so that
                    // closing does not reset the connection before it reads the answer.
                    let mut sink = [0u8; 2048];
                    let _ = stream.try_read(&mut sink);
                    let _ = stream.try_write(REFUSED_RESPONSE);
                }
                std::future::ready(Err(io::Error::other(format!(
                    "connection refused: {} cap",
                    refusal.as_str()
                ))))
            }
        }
    }
}

/// Writes go straight to the wrapped stream's `inner`: only reading is watched.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}

/// A stream that holds its place in a [`Limiter`] until it is dropped.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Counted);

/// An acceptor around another (plain, or TLS around [`LimitAcceptor`]) that gives each connection
/// `timeout` from accept to send its first whole request head; see [`FirstHead`].
#[derive(Debug, Clone)]
pub struct HeadDeadline<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeadDeadline<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, timeout: Duration) -> Self {
        HeadDeadline { inner, timeout }
    }
}

impl<A, S> Accept<TcpStream, S> for HeadDeadline<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = FirstHead<A::Stream>;
    type Service = A::Service;
    type Future =
        Pin<Box<dyn Future<Output = io::Result<(FirstHead<A::Stream>, A::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = tokio::time::timeout_at(deadline, accepted)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timeout"))??;
            Ok((FirstHead::new(stream, deadline), service))
        })
    }
}

/// A stream that fails its reads once `deadline` passes before a whole request head (up to the
/// blank line) has been read, and refuses the HTTP/2 preface. After the first head it is a plain
/// pass-through.
#[derive(Debug)]
pub struct FirstHead<S> {
    inner: S,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    blank: u8,
    /// The first bytes read, to recognise the HTTP/2 preface.
    start: [u8; 4],
    started: u8,
}

impl<S> FirstHead<S> {
    fn new(inner: S, deadline: tokio::time::Instant) -> Self {
        FirstHead {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            blank: 0,
            start: [0; 4],
            started: 0,
        }
    }

    /// Follows the bytes just read; says whether the first head is complete, or fails on HTTP/2.
    fn scan(&mut self, bytes: &[u8]) -> io::Result<bool> {
        for &b in bytes {
            if usize::from(self.started) < self.start.len() {
                self.start[usize::from(self.started)] = b;
                self.started += 1;
                if usize::from(self.started) == self.start.len() && self.start == *b"PRI " {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "HTTP/2 prior knowledge is not served",
                    ));
                }
            }
            self.blank = match (self.blank, b) {
                (0 | 2, b'\r') => self.blank + 1,
                (1 | 3, b'\n') => self.blank + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.blank == 4 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstHead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() {
            if let Poll::Ready(Ok(())) = &polled {
                let filled = buf.filled()[before..].to_vec();
                if this.scan(&filled)? {
                    this.deadline = None;
                }
            }
        }
        polled
    }
}

write_through!(FirstHead);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_per_address_and_in_all_and_slots_give_back() {
        let limiter = Limiter::unmetered(2, 3, &[]);
        let a1 = limiter.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = limiter.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("10.0.0.1")).unwrap_err(),
            Refusal::Address
        );
        let _b1 = limiter.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("10.0.0.3")).unwrap_err(),
            Refusal::Total
        );
        drop(a1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.try_acquire(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_exempt_addresses_only_count_in_all() {
        let limiter = Limiter::unmetered(1, 3, &[ip("192.0.2.9").into()]);
        let _x = limiter.try_acquire(ip("2001:db8::1")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("2001:db8::ffff:2")).unwrap_err(),
            Refusal::Address
        );
        let _y = limiter.try_acquire(ip("2001:db8:0:1::1")).unwrap();
        let _p = limiter.try_acquire(ip("192.0.2.9")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.9")).unwrap_err(),
            Refusal::Total
        );
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn exempt_ranges_and_trusted_proxies_are_not_capped_per_address_at_accept() {
        let limiter = Limiter::unmetered(1, 0, &["10.0.0.0/8".parse().unwrap()]);
        let _a = limiter.try_acquire(ip("10.1.2.3")).unwrap();
        let _b = limiter.try_acquire(ip("10.1.2.3")).unwrap();
        let _c = limiter.try_acquire(ip("::ffff:10.9.9.9")).unwrap();
        let _d = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_err());
        assert_eq!(limiter.open(), 4);

        let config = LimitsConfig {
            connections_per_address: 1,
            ws_per_address: 1,
            exempt_addresses: vec!["192.0.2.9".parse().unwrap()],
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..LimitsConfig::default()
        };
        let limits = Limits::new(&config, Some(65_536), &Registry::new());
        let _p1 = limits.public.try_acquire(ip("127.0.0.1")).unwrap();
        let _p2 = limits.public.try_acquire(ip("127.0.0.1")).unwrap();
        let _e1 = limits.public.try_acquire(ip("192.0.2.9")).unwrap();
        let _e2 = limits.public.try_acquire(ip("192.0.2.9")).unwrap();
        // The WebSocket cap counts client addresses: a proxy's own address is one like any other.
        let _w1 = limits.ws.try_acquire(ip("127.0.0.1")).unwrap();
        assert!(limits.ws.try_acquire(ip("127.0.0.1")).is_err());
        let _w2 = limits.ws.try_acquire(ip("198.51.100.1")).unwrap();
        assert!(limits.ws.try_acquire(ip("198.51.100.1")).is_err());
        // The admin listener is not behind the proxy.
        let _a1 = limits.admin.try_acquire(ip("127.0.0.1")).unwrap();
        assert!(limits.admin.try_acquire(ip("127.0.0.1")).is_err());
    }

    #[test]
    fn the_public_cap_keeps_the_reserve() {
        assert_eq!(public_cap(Some(65_536), 512, 0), 65_024);
        assert_eq!(public_cap(Some(65_536), 512, 1_000), 1_000);
        // At most a quarter is reserved.
        assert_eq!(public_cap(Some(1_024), 512, 0), 768);
        assert_eq!(public_cap(None, 512, 0), 0);
        assert_eq!(public_cap(None, 512, 10), 10);
    }

    #[tokio::test]
    async fn the_first_head_ends_at_the_blank_line_and_http2_is_refused() {
        let mut head = FirstHead::new((), tokio::time::Instant::now());
        assert!(!head.scan(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap());
        assert!(!head.scan(b"\r").unwrap());
        assert!(head.scan(b"\n").unwrap());
        let mut h2 = FirstHead::new((), tokio::time::Instant::now());
        assert!(h2.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").is_err());
    }
}
