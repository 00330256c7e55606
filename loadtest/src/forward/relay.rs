//! The plain UDP relay, the reference the SFU is measured against: a relay thread moves 1200-byte
//! datagrams between loopback sockets (`recvmmsg`/`sendmmsg` in batches, or one `recv_from` and one
//! `send_to` per packet), with no crypto, fed by a blaster thread and drained by a sink thread.
//! [`throughput`] counts packets relayed per CPU second of the relay thread; [`latency`] measures
//! the one-way delay through it at a given rate with the kernel's receive timestamps.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{sys, Summary, BATCH, PKT, RCVBUF};

pub struct RelayResult {
    /// The `recvmmsg`/`sendmmsg` batch (1: `recv_from`/`send_to`; 0: [`wakeups`]).
    pub batch: usize,
    pub relayed: u64,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub sunk: u64,
}

impl RelayResult {
    pub fn per_core(&self) -> f64 {
        self.relayed as f64 / self.cpu_s.max(1e-9)
    }
}

/// One `mmsghdr` per iovec, each describing that one buffer.
fn headers(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

/// Receive buffers for `recvmmsg`: `n` slots of 2 KiB.
struct Mmsg {
    _bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new(n: usize) -> Mmsg {
        let mut bufs = vec![0u8; n * 2048];
        let mut iov: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                // SAFETY: in bounds of `bufs`, whose heap block never moves.
                iov_base: unsafe { bufs.as_mut_ptr().add(i * 2048) }.cast(),
                iov_len: 2048,
            })
            .collect();
        let hdr = headers(&mut iov);
        Mmsg {
            _bufs: bufs,
            iov,
            hdr,
        }
    }

    /// Blocks for at least one datagram (or the socket's read timeout).
    fn recv(&mut self, fd: i32) -> usize {
        // SAFETY: `hdr` describes `hdr.len()` valid buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                self.hdr.len() as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    sys::set_rcvbuf(s.as_raw_fd(), RCVBUF);
    s
}

fn v4(s: &UdpSocket) -> SocketAddrV4 {
    match s.local_addr().expect("addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
    }
}

/// The relay thread: everything received on `sock` goes to `to`. Returns (relayed, CPU ns).
fn relay(sock: UdpSocket, to: SocketAddrV4, batch: usize, stop: Arc<AtomicBool>) -> (u64, i64) {
    let t0 = sys::thread_cpu_ns();
    let mut relayed = 0u64;
    if batch <= 1 {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if sock.send_to(&buf[..n], to).is_ok() {
                    relayed += 1;
                }
            }
        }
    } else {
        let fd = sock.as_raw_fd();
        let mut rx = Mmsg::new(batch);
        let dest = sys::sockaddr_in(to);
        let mut tx_iov: Vec<libc::iovec> = rx.iov.clone();
        // SAFETY: all-zero is a valid mmsghdr.
        let mut tx: Vec<libc::mmsghdr> =
            (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
        while !stop.load(Ordering::Relaxed) {
            let n = rx.recv(fd);
            for i in 0..n {
                tx_iov[i].iov_len = rx.hdr[i].msg_len as usize;
                let h = &mut tx[i].msg_hdr;
                h.msg_iov = &mut tx_iov[i];
                h.msg_iovlen = 1;
                h.msg_name = (&dest as *const libc::sockaddr_in).cast_mut().cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
            let mut off = 0;
            while off < n {
                // SAFETY: tx[off..n] describe valid buffers and the destination.
                let s =
                    unsafe { libc::sendmmsg(fd, tx.as_mut_ptr().add(off), (n - off) as u32, 0) };
                if s <= 0 {
                    break;
                }
                off += s as usize;
            }
            relayed += off as u64;
        }
    }
    (relayed, sys::thread_cpu_ns() - t0)
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("thread")
}

/// A relay thread moving what reaches `addr` to a sink thread that drains it, until
/// [`Running::finish`].
struct Running {
    addr: SocketAddrV4,
    batch: usize,
    stop: Arc<AtomicBool>,
    relay: JoinHandle<(u64, i64)>,
    sink: JoinHandle<u64>,
    started: Instant,
}

impl Running {
    fn start(batch: usize) -> Running {
        let (relay_sock, sink) = (socket(), socket());
        let addr = v4(&relay_sock);
        let sink_addr = v4(&sink);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let sink = spawn("relay-sink", move || {
            let mut rx = Mmsg::new(64);
            let mut got = 0u64;
            while !s.load(Ordering::Relaxed) {
                got += rx.recv(sink.as_raw_fd()) as u64;
            }
            got
        });
        let s = stop.clone();
        let relay = spawn("relay", move || relay(relay_sock, sink_addr, batch, s));
        Running {
            addr,
            batch,
            stop,
            relay,
            sink,
            started: Instant::now(),
        }
    }

    /// Stops the relay and the sink (and whatever else watches `stop`) and counts.
    fn finish(self) -> RelayResult {
        self.stop.store(true, Ordering::Relaxed);
        let (relayed, cpu_ns) = self.relay.join().expect("relay");
        let sunk = self.sink.join().expect("sink");
        RelayResult {
            batch: self.batch,
            relayed,
            cpu_s: cpu_ns as f64 / 1e9,
            wall_s: self.started.elapsed().as_secs_f64(),
            sunk,
        }
    }
}

/// The relay at full tilt: a blaster sends 1200-byte datagrams in `sendmmsg` batches as fast
/// as it can, a sink drains them.
pub fn throughput(batch: usize, secs: Duration) -> RelayResult {
    let running = Running::start(batch);
    let blaster = socket();
    blaster.connect(running.addr).expect("connect");
    let s = running.stop.clone();
    let blast_t = spawn("relay-blaster", move || {
        let payload = vec![0x80u8; PKT];
        let mut iov: Vec<libc::iovec> = (0..BATCH)
            .map(|_| libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: PKT,
            })
            .collect();
        let mut hdr = headers(&mut iov);
        while !s.load(Ordering::Relaxed) {
            // SAFETY: hdr describes valid buffers; the socket is connected.
            unsafe { libc::sendmmsg(blaster.as_raw_fd(), hdr.as_mut_ptr(), BATCH as u32, 0) };
        }
    });
    std::thread::sleep(secs);
    let result = running.finish();
    let _ = blast_t.join();
    result
}

/// The relay woken for every datagram: a paced sender sends one datagram every `1/pps` s (the
/// spacing of a few calls at kiosk rates, where a datagram seldom finds the relay awake), the
/// relay thread blocks in `recvmmsg` for each. Its CPU per datagram is what one wake-up, one
/// receive and one send cost on this machine with no other work: the floor under any media
/// server that wakes once per datagram.
pub fn wakeups(pps: usize, secs: Duration) -> RelayResult {
    let running = Running::start(BATCH);
    let sender = socket();
    sender.connect(running.addr).expect("connect");
    let gap = Duration::from_secs_f64(1.0 / pps.max(1) as f64);
    let payload = vec![0x80u8; PKT];
    let mut next = Instant::now();
    while running.started.elapsed() < secs {
        let _ = sender.send(&payload);
        next += gap;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    RelayResult {
        batch: 0,
        ..running.finish()
    }
}

/// One-way latency through the relay (batch 32) at `pps`: the blaster stamps each datagram
/// just before `send_to`, the sink takes the kernel's receive timestamp. Microseconds.
pub fn latency(pps: usize, secs: Duration) -> Summary {
    let (relay_sock, sink, blaster) = (socket(), socket(), socket());
    let relay_addr = v4(&relay_sock);
    let sink_addr = v4(&sink);
    sys::enable_rx_timestamps(sink.as_raw_fd()).expect("SO_TIMESTAMPNS");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sink_t = spawn("relay-sink", move || {
        let mut buf = [0u8; 2048];
        let mut lat = Vec::new();
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, Some(at))) = sys::recv_timestamped(sink.as_raw_fd(), &mut buf, 0) {
                if n >= 8 {
                    let sent = i64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                    lat.push((at - sent) as f64 / 1e3);
                }
            }
        }
        lat
    });
    let s = stop.clone();
    let relay_t = spawn("relay", move || relay(relay_sock, sink_addr, BATCH, s));
    let per_ms = (pps / 1000).max(1);
    let mut payload = vec![0x80u8; PKT];
    let started = Instant::now();
    let mut tick = started;
    while started.elapsed() < secs {
        for _ in 0..per_ms {
            payload[..8].copy_from_slice(&sys::realtime_ns().to_be_bytes());
            let _ = blaster.send_to(&payload, relay_addr);
        }
        tick += Duration::from_millis(1);
        if let Some(d) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let _ = relay_t.join();
    Summary::of(sink_t.join().expect("sink"))
}
