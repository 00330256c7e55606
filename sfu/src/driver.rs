//! The thin driver around [`Engine`]: sockets, threads, timers.
//!
//! - One shared UDP media port. A reader thread takes `recvmmsg` batches from the shared socket
//!   and hands each datagram to the loop that owns its source address or, for a first STUN check,
//!   to the loop named by the ufrag. Once ICE validated a peer, its loop opens a socket on the same
//!   port connected to that peer (`SO_REUSEADDR`, [`udpio::connected`]) and reads it itself: the
//!   kernel then delivers that peer's datagrams there, with no reader thread and no hand-off. The
//!   loop watches its connected sockets with one `epoll` set (itself registered with the loop's
//!   runtime) and reads each ready one with `recvmmsg`.
//! - Output is sent with `sendmmsg` on the shared socket (safe from several threads) at the end
//!   of every batch of input taken from a socket or the queue: no packet waits for more input.
//! - N loop threads, each a current-thread tokio runtime owning one [`Engine`]: packets through a
//!   bounded channel (dropped and counted when full), commands through an unbounded one, and one
//!   timer — the engine's earliest deadline — rather than one per connection. They can run under
//!   `SCHED_RR` ([`Sfu::set_loop_priority`]) so that their packets do not queue behind other work.
//! - One ICE-TCP listener on the caller's runtime: each accepted connection is bound to a loop by
//!   its first (STUN) frame, and RFC 4571 framing is applied both ways.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::shared::tcp_framing::{frame_packet, TcpFrameDecoder};
use rtc::shared::TransportProtocol;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Answer, Engine, EngineConfig};
use crate::metrics::MediaMetrics;
use crate::{demux, udpio};
use crate::{CallStats, Candidate, MediaConfig, MediaError, MediaEvent, MediaLoad, Participant};

/// Packets queued per loop before the reader starts dropping.
const LOOP_QUEUE: usize = 8192;
/// Packets handled per wake-up before timers get their turn.
const BATCH: usize = 256;
/// Receive and send buffer asked of the kernel for the media socket.
const SOCKET_BUFFER: usize = 4 << 20;

struct Packet {
    protocol: TransportProtocol,
    from: SocketAddr,
    data: BytesMut,
    at: Instant,
}

enum Cmd {
    Offer {
        call_id: String,
        who: Participant,
        sdp: String,
        held: bool,
        reply: oneshot::Sender<Result<Answer, MediaError>>,
    },
    Candidate {
        call_id: String,
        who: Participant,
        candidate: Candidate,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Hold {
        call_id: String,
        held: bool,
    },
    Leave {
        call_id: String,
        who: Option<Participant>,
    },
    Stats {
        reply: oneshot::Sender<Vec<CallStats>>,
    },
    Ping {
        reply: oneshot::Sender<usize>,
    },
    Priority {
        priority: Option<u8>,
        reply: oneshot::Sender<io::Result<()>>,
    },
}

struct LoopHandle {
    packets: mpsc::Sender<Packet>,
    commands: mpsc::UnboundedSender<Cmd>,
    load: Arc<LoopLoad>,
}

/// One loop's figures for [`Sfu::load`], written by the loop at its one-second tick (from what it
/// already counts for the metrics) and read without asking the loop.
#[derive(Default)]
struct LoopLoad {
    calls: AtomicUsize,
    peers: AtomicUsize,
    /// `f64` bits.
    packets_per_s: AtomicU64,
    /// `f64` bits.
    busy: AtomicU64,
}

type TcpWriters = Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>>;

struct Inner {
    loops: Vec<LoopHandle>,
    udp_advertised: Option<SocketAddr>,
    tcp_advertised: Option<SocketAddr>,
    metrics: MediaMetrics,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A running media plane. Cheap to clone; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("udp", &self.inner.udp_advertised)
            .field("tcp", &self.inner.tcp_advertised)
            .field("loops", &self.inner.loops.len())
            .finish()
    }
}

fn advertised(bound: SocketAddr, public_ip: Option<IpAddr>) -> SocketAddr {
    let ip = match public_ip {
        Some(ip) => ip,
        None if bound.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => bound.ip(),
    };
    SocketAddr::new(ip, bound.port())
}

/// FNV-1a, so a call id always lands on the same loop.
fn loop_for(call_id: &str, loops: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % loops.max(1) as u64) as usize
}

impl Sfu {
    /// Binds the sockets and starts the threads. Must be called inside a tokio runtime (the
    /// ICE-TCP listener runs on it). Returns the handle and the events for signalling.
    pub async fn start(
        cfg: MediaConfig,
        registry: Option<&prometheus::Registry>,
    ) -> io::Result<(Sfu, mpsc::UnboundedReceiver<MediaEvent>)> {
        let loops = if cfg.loops == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.loops
        }
        .min(255);
        let metrics = MediaMetrics::new(registry);
        let stop = Arc::new(AtomicBool::new(false));
        let (events_tx, events_rx) = mpsc::unbounded_channel();

        let udp = match cfg.udp {
            Some(addr) => {
                let s = udpio::bind_shared(addr)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                let granted = udpio::set_buffers(&s, SOCKET_BUFFER);
                if granted < SOCKET_BUFFER {
                    tracing::info!(
                        granted,
                        wanted = SOCKET_BUFFER,
                        "media UDP receive buffer capped by net.core.rmem_max"
                    );
                }
                Some(Arc::new(s))
            }
            None => None,
        };
        let udp_advertised = match &udp {
            Some(s) => Some(advertised(s.local_addr()?, cfg.public_ip)),
            None => None,
        };
        let tcp = match cfg.tcp {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let tcp_advertised = match &tcp {
            Some(l) => Some(advertised(l.local_addr()?, cfg.public_ip)),
            None => None,
        };
        let addr_map: Arc<RwLock<HashMap<SocketAddr, usize>>> = Arc::default();
        let tcp_writers: TcpWriters = Arc::default();

        let mut handles = Vec::new();
        for index in 0..loops {
            let (ptx, prx) = mpsc::channel(LOOP_QUEUE);
            let (ctx, crx) = mpsc::unbounded_channel();
            let load = Arc::new(LoopLoad::default());
            handles.push(LoopHandle {
                packets: ptx,
                commands: ctx,
                load: load.clone(),
            });
            let engine = Engine::new(EngineConfig {
                loop_index: index,
                udp: udp_advertised,
                tcp: tcp_advertised,
                grace: cfg.grace,
            });
            let ctx = LoopContext {
                index,
                engine,
                peer_sockets: HashMap::new(),
                peer_fds: HashMap::new(),
                poller: None,
                ready: Vec::new(),
                rx: Box::default(),
                out: Vec::new(),
                stats_due: Vec::new(),
                packets: prx,
                commands: crx,
                udp: udp.clone(),
                tcp_writers: tcp_writers.clone(),
                addr_map: addr_map.clone(),
                events: events_tx.clone(),
                metrics: metrics.clone(),
                stats_interval: cfg.stats_interval,
                stop: stop.clone(),
                load,
            };
            std::thread::Builder::new()
                .name(format!("sfu-loop-{index}"))
                .spawn(move || ctx.run())?;
        }

        let senders: Vec<mpsc::Sender<Packet>> =
            handles.iter().map(|h| h.packets.clone()).collect();
        if let Some(sock) = udp {
            let senders = senders.clone();
            let addr_map = addr_map.clone();
            let stop = stop.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("sfu-udp-reader".into())
                .spawn(move || udp_reader(sock, senders, addr_map, metrics, stop))?;
        }
        if let Some(listener) = tcp {
            tokio::spawn(tcp_acceptor(
                listener,
                senders,
                tcp_writers,
                metrics.clone(),
                stop.clone(),
            ));
        }

        Ok((
            Sfu {
                inner: Arc::new(Inner {
                    loops: handles,
                    udp_advertised,
                    tcp_advertised,
                    metrics,
                    stop,
                }),
            },
            events_rx,
        ))
    }

    /// The UDP address clients are told to use.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner.udp_advertised
    }

    /// The ICE-TCP address clients are told to use.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_advertised
    }

    /// The media plane's metrics.
    pub fn metrics(&self) -> &MediaMetrics {
        &self.inner.metrics
    }

    fn commands(&self, call_id: &str) -> &mpsc::UnboundedSender<Cmd> {
        let i = loop_for(call_id, self.inner.loops.len());
        &self.inner.loops[i].commands
    }

    /// Negotiate a participant's connection (or renegotiate it: ICE restart). `held` is the call's
    /// current hold state.
    pub async fn offer(
        &self,
        call_id: &str,
        who: Participant,
        sdp: String,
        held: bool,
    ) -> Result<Answer, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.commands(call_id)
            .send(Cmd::Offer {
                call_id: call_id.to_owned(),
                who,
                sdp,
                held,
                reply,
            })
            .map_err(|_| MediaError::Unavailable)?;
        rx.await.map_err(|_| MediaError::Unavailable)?
    }

    /// A client's trickled candidate.
    pub async fn candidate(
        &self,
        call_id: &str,
        who: Participant,
        candidate: Candidate,
    ) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.commands(call_id)
            .send(Cmd::Candidate {
                call_id: call_id.to_owned(),
                who,
                candidate,
                reply,
            })
            .map_err(|_| MediaError::Unavailable)?;
        rx.await.map_err(|_| MediaError::Unavailable)?
    }

    /// Pause (`true`) or resume forwarding of a call.
    pub fn set_held(&self, call_id: &str, held: bool) {
        let _ = self.commands(call_id).send(Cmd::Hold {
            call_id: call_id.to_owned(),
            held,
        });
    }

    /// Close one participant's connection.
    pub fn leave(&self, call_id: &str, who: Participant) {
        let _ = self.commands(call_id).send(Cmd::Leave {
            call_id: call_id.to_owned(),
            who: Some(who),
        });
    }

    /// Close every connection of a call.
    pub fn end_call(&self, call_id: &str) {
        let _ = self.commands(call_id).send(Cmd::Leave {
            call_id: call_id.to_owned(),
            who: None,
        });
    }

    /// Whether every forwarding loop answers: the live peer connections, or `Unavailable` when a
    /// loop is gone or does not answer within `timeout`.
    pub async fn health(&self, timeout: Duration) -> Result<usize, MediaError> {
        let mut peers = 0;
        for l in &self.inner.loops {
            let (reply, rx) = oneshot::channel();
            l.commands
                .send(Cmd::Ping { reply })
                .map_err(|_| MediaError::Unavailable)?;
            peers += tokio::time::timeout(timeout, rx)
                .await
                .map_err(|_| MediaError::Unavailable)?
                .map_err(|_| MediaError::Unavailable)?;
        }
        Ok(peers)
    }

    /// Runs every forwarding loop's thread under the real-time policy `SCHED_RR` at `priority`
    /// (1–99; `None`: back to the normal policy). A loop is idle in `epoll` unless packets wait,
    /// so this costs no CPU; it lets a loop take a core as soon as its packets arrive, where
    /// under the normal policy it queues behind every other runnable thread of the machine (on a
    /// busy 2-core machine that wait is most of the latency the SFU adds, see `BENCHMARKS.md`).
    /// Needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at least `priority`: the first error is
    /// returned and the loops that failed stay as they were. The kernel's real-time throttling
    /// (`sched_rt_runtime_us`) still leaves other threads their share if a loop ever spins.
    pub async fn set_loop_priority(&self, priority: Option<u8>) -> io::Result<()> {
        let mut first_error = None;
        for l in &self.inner.loops {
            let (reply, rx) = oneshot::channel();
            let gone = || io::Error::other("media loop gone");
            let result = match l.commands.send(Cmd::Priority { priority, reply }) {
                Ok(()) => rx.await.unwrap_or_else(|_| Err(gone())),
                Err(_) => Err(gone()),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The number of forwarding loops.
    pub fn loops(&self) -> usize {
        self.inner.loops.len()
    }

    /// How loaded the media plane is, as of each loop's last one-second tick: calls, peer
    /// connections, RTP packets per second and the loops' busy ratio. Cheap: it reads figures the
    /// loops publish and does not wait for them.
    pub fn load(&self) -> MediaLoad {
        let mut out = MediaLoad {
            loops: self.inner.loops.len(),
            ..MediaLoad::default()
        };
        let mut busy = 0.0;
        for l in &self.inner.loops {
            out.calls += l.load.calls.load(Ordering::Relaxed);
            out.connections += l.load.peers.load(Ordering::Relaxed);
            out.packets_per_s += f64::from_bits(l.load.packets_per_s.load(Ordering::Relaxed));
            let b = f64::from_bits(l.load.busy.load(Ordering::Relaxed));
            busy += b;
            out.busiest_loop = out.busiest_loop.max(b);
        }
        if out.loops > 0 {
            out.busy_ratio = busy / out.loops as f64;
        }
        out
    }

    /// Statistics of every call now (all loops).
    pub async fn stats(&self) -> Vec<CallStats> {
        let mut out = Vec::new();
        for l in &self.inner.loops {
            let (reply, rx) = oneshot::channel();
            if l.commands.send(Cmd::Stats { reply }).is_ok() {
                if let Ok(s) = rx.await {
                    out.extend(s);
                }
            }
        }
        out
    }
}

fn udp_reader(
    sock: Arc<UdpSocket>,
    loops: Vec<mpsc::Sender<Packet>>,
    addr_map: Arc<RwLock<HashMap<SocketAddr, usize>>>,
    metrics: MediaMetrics,
    stop: Arc<AtomicBool>,
) {
    let mut batch = udpio::BatchReceiver::default();
    let overload = metrics.dropped.with_label_values(&["overload"]);
    let unknown = metrics.dropped.with_label_values(&["unknown"]);
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.recv(&sock) {
            Ok(n) => n,
            // Timeouts (to look at the stop flag), interruptions, and ICMP errors reported on the
            // socket (port unreachable from a client that is gone).
            Err(_) => continue,
        };
        let at = Instant::now();
        let map = addr_map.read().ok();
        for i in 0..n {
            let Some((data, from)) = batch.get(i) else {
                continue;
            };
            let known = map.as_ref().and_then(|m| m.get(&from).copied());
            let target = known.or_else(|| {
                demux::binding_request_ufrag(data)
                    .and_then(demux::loop_of_ufrag)
                    .filter(|&i| i < loops.len())
            });
            let Some(target) = target else {
                unknown.inc();
                continue;
            };
            let packet = Packet {
                protocol: TransportProtocol::UDP,
                from,
                data: BytesMut::from(data),
                at,
            };
            match loops[target].try_send(packet) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => overload.inc(),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

async fn tcp_acceptor(
    listener: tokio::net::TcpListener,
    loops: Vec<mpsc::Sender<Packet>>,
    writers: TcpWriters,
    metrics: MediaMetrics,
    stop: Arc<AtomicBool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if stop.load(Ordering::Relaxed) { return; }
                continue;
            }
        };
        let Ok((stream, from)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(tcp_connection(
            stream,
            from,
            loops.clone(),
            writers.clone(),
            metrics.clone(),
            stop.clone(),
        ));
    }
}

async fn tcp_connection(
    stream: tokio::net::TcpStream,
    from: SocketAddr,
    loops: Vec<mpsc::Sender<Packet>>,
    writers: TcpWriters,
    metrics: MediaMetrics,
    stop: Arc<AtomicBool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if let Ok(mut w) = writers.lock() {
        w.insert(from, tx);
    }
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = TcpFrameDecoder::new();
    let mut buf = vec![0u8; 8192];
    let mut owner: Option<usize> = None;
    'read: while !stop.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => continue, // idle: re-check the stop flag
        };
        decoder.extend_from_slice(&buf[..n]);
        while let Some(frame) = decoder.next_packet() {
            let i = match owner {
                Some(i) => i,
                None => {
                    // The first frame must be an ICE check for one of our ufrags.
                    match demux::binding_request_ufrag(&frame)
                        .and_then(demux::loop_of_ufrag)
                        .filter(|&i| i < loops.len())
                    {
                        Some(i) => {
                            owner = Some(i);
                            i
                        }
                        None => {
                            metrics.dropped.with_label_values(&["unknown"]).inc();
                            break 'read;
                        }
                    }
                }
            };
            let packet = Packet {
                protocol: TransportProtocol::TCP,
                from,
                data: BytesMut::from(&frame[..]),
                at: Instant::now(),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = loops[i].try_send(packet) {
                metrics.dropped.with_label_values(&["overload"]).inc();
            }
        }
    }
    if let Ok(mut w) = writers.lock() {
        w.remove(&from);
    }
    writer.abort();
}

mod forwarding_loop;
use forwarding_loop::LoopContext;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_always_lands_on_the_same_loop() {
        assert_eq!(loop_for("c-1", 4), loop_for("c-1", 4));
        assert!(loop_for("anything", 3) < 3);
        assert_eq!(loop_for("x", 1), 0);
        let spread: std::collections::HashSet<usize> = (0..100)
            .map(|i| loop_for(&format!("call-{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn the_advertised_address_prefers_the_public_ip() {
        let bound: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert_eq!(
            advertised(bound, None),
            "127.0.0.1:5000".parse::<SocketAddr>().unwrap()
        );
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            advertised(bound, Some(public)),
            "203.0.113.7:5000".parse::<SocketAddr>().unwrap()
        );
        let specific: SocketAddr = "10.0.0.2:7".parse().unwrap();
        assert_eq!(advertised(specific, None), specific);
    }

    #[tokio::test]
    async fn the_loops_take_the_priority_asked_or_say_why_not() {
        let cfg = MediaConfig {
            loops: 2,
            tcp: None,
            ..Default::default()
        };
        let (sfu, _events) = Sfu::start(cfg, None).await.unwrap();
        match sfu.set_loop_priority(Some(1)).await {
            Ok(()) => {}
            // Without CAP_SYS_NICE or an RLIMIT_RTPRIO: refused, and the loops keep running.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied),
        }
        sfu.set_loop_priority(None).await.unwrap();
        assert_eq!(sfu.health(Duration::from_secs(5)).await.unwrap(), 0);
    }
}
