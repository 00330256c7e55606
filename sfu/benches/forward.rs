//! Media-plane figures for `BENCHMARKS.md`, measured in one run on one machine:
//!
//! 1. **plain UDP relay ceiling**: a relay thread moves 1200-byte datagrams between loopback
//!    sockets with `recvmmsg`/`sendmmsg` (batches of 32, no crypto) while a blaster thread feeds
//!    it; the figure is packets relayed per CPU second of the relay thread
//!    (`CLOCK_THREAD_CPUTIME_ID`). The same with one `recv_from` + one `send_to` per packet for
//!    reference: close to the syscalls the SFU pays per packet of an established peer (one `recv`
//!    on the socket connected to that peer, one `send_to` on the shared media socket per datagram
//!    out), though the SFU's receive goes through tokio's readiness and the relay's does not.
//! 2. **memory per call**: resident set and malloc heap of this process before and after N
//!    kiosk–operator calls at the default kiosk rates ([`ClientOptions::default`]). The clients run
//!    in a child process (this binary re-executed), so every byte and every CPU second measured here
//!    is the SFU's. Sampled until the per-stream NACK send buffers have filled. Also the SFU's CPU
//!    per call at those rates.
//! 3. **SFU forwarding with SRTP**: [`Sfu`] with one loop; kiosks send 1200-byte VP8 packets to
//!    receive-only operators; packets forwarded per CPU second of the SFU's own threads
//!    (`sfu-loop-0` + `sfu-udp-reader`, from `/proc/self/task/*/schedstat`), SRTP decrypt and
//!    encrypt included, and as a fraction of the relay ceiling. In the driver measured, the
//!    reader thread takes `recvmmsg` batches of up to 32 from the shared media socket, which after
//!    ICE carries only first checks and the packets of peers without a connected socket; once
//!    ICE validates a peer, the loop opens a UDP socket on the media port connected to it and
//!    reads it on its own runtime, so an established peer's packets never cross threads. The loop
//!    sends each packet's output (`send_to` on the shared socket) as soon as that packet is
//!    processed, not after its batch.
//! 4. **latency added at 50% load**: offered load is half of figure 3 (so the SFU's threads use
//!    about half a core), in 5-packet frames at 200 fps per kiosk. One call runs through a tap in
//!    this process: it stamps each video packet just before handing it to the SFU's media port and
//!    reads the kernel's receive timestamp (`SO_TIMESTAMPNS`) of the same packet (same sequence
//!    number and timestamp: the SFU does not rewrite them for a call's first source) on the way
//!    out. The plain relay is measured the same way at the same packet rate. The clients'
//!    end-to-end figure (send time in the payload → receiver's `poll_read`) is reported too.
//!
//! Run: `cargo bench -p sfu --bench forward` (about 75 s); `-- --quick` or `QUICK=1` for a smoke
//! run of ~8 s. Environment overrides: `SECS` (measurement window), `CALLS` (calls
//! in the memory phase), `FWD_CALLS` and `FWD_PPS` (kiosks and total offered packets/s in phase
//! 3), `LAT_PPS` (offered packets/s in phase 4), `SFU_NICE` (e.g. `-15`: raise the SFU threads'
//! priority over the clients and anything else on a shared machine), `ONLY` (comma-separated
//! subset of `relay`, `memory`, `forward`, `latency`). The figures are measurements, not
//! assertions: run it on a quiet machine.
//!
//! Work-arounds for what the SFU does not expose: right after the SFU starts, its shared UDP
//! socket is found through `/proc/self/fd` and its receive buffer raised to 8 MiB, and so are the
//! clients' sockets (in their process). The driver itself asks for 4 MiB of receive and send buffer on the shared
//! socket and on every connected peer socket (`SO_RCVBUFFORCE`, so a process without
//! `CAP_NET_ADMIN` gets at most `net.core.rmem_max`, by default ~208 KiB: a burst of about a
//! hundred 1200-byte packets); the connected peer sockets, opened later, keep the driver's size.
//! The kernel's drop counter reported is the sum over every socket on the media port.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sfu::client::{ClientOptions, MediaClient};
use sfu::{Candidate, MediaConfig, MediaRole, Participant, Sfu};

/// Set in the child process: the JSON [`Plan`] of the clients it runs.
const CHILD_ENV: &str = "SFU_BENCH_CLIENTS";
/// Datagram size of the plain relay.
const PKT: usize = 1200;
/// `recvmmsg`/`sendmmsg` batch of the relay.
const BATCH: usize = 32;
/// Receive buffer the bench gives the SFU's shared socket and the clients' sockets (the driver
/// asks for 4 MiB).
const RCVBUF: i32 = 8 << 20;
/// VP8's payload type in the clients' offers and the SFU's answers.
const VIDEO_PT: u8 = 96;
/// Frames per second of the kiosks in phases 3 and 4.
const FPS: u32 = 200;
/// Packets per video frame in phase 4.
const LAT_PPF: usize = 5;

fn main() {
    if let Ok(plan) = std::env::var(CHILD_ENV) {
        child::run(&plan);
        return;
    }
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    eprintln!(
        "sfu forward bench: {} cores, window {:.1} s{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cfg.secs.as_secs_f64(),
        if cfg.quick { ", quick" } else { "" }
    );

    let load_before = loadavg();
    let mut out = Results::default();
    if cfg.wants("relay") {
        eprintln!("[relay] recvmmsg/sendmmsg x{BATCH} …");
        out.relay_batched = Some(relay::throughput(BATCH, cfg.secs));
        eprintln!("[relay] recv_from/send_to …");
        out.relay_single = Some(relay::throughput(1, cfg.secs));
    }
    if cfg.wants("memory") {
        out.memory = Some(memory_phase(&rt, &cfg));
    }
    if cfg.wants("forward") {
        out.forward = Some(forward_phase(&rt, &cfg));
    }
    if cfg.wants("latency") {
        let pps = cfg.lat_pps.unwrap_or_else(|| match &out.forward {
            Some(f) => (f.per_core() / 2.0) as usize,
            None => 20_000,
        });
        out.latency = Some(latency_phase(&rt, &cfg, pps));
    }
    out.print(&cfg);
    println!();
    println!("load average before: {load_before}; after: {}", loadavg());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Configuration

struct Config {
    quick: bool,
    secs: Duration,
    warm: Duration,
    mem_calls: usize,
    mem_samples: Vec<Duration>,
    fwd_calls: usize,
    fwd_pps: usize,
    lat_pps: Option<usize>,
    sfu_nice: Option<i32>,
    only: Option<Vec<String>>,
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

impl Config {
    fn from_env() -> Self {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let secs =
            Duration::from_secs_f64(env_num("SECS").unwrap_or(if quick { 1.0 } else { 8.0 }));
        let mem_samples = if quick {
            vec![Duration::from_secs(1)]
        } else {
            // 60 video packets/s per stream fill a 1024-packet NACK send buffer in ~17 s.
            [2, 10, 20, 25].map(Duration::from_secs).to_vec()
        };
        Config {
            quick,
            secs,
            warm: if quick {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(2)
            },
            mem_calls: env_num("CALLS").unwrap_or(if quick { 5 } else { 50 }),
            mem_samples,
            fwd_calls: env_num("FWD_CALLS").unwrap_or(4),
            fwd_pps: env_num("FWD_PPS").unwrap_or(if quick { 8_000 } else { 40_000 }),
            lat_pps: env_num("LAT_PPS"),
            sfu_nice: env_num("SFU_NICE"),
            only: std::env::var("ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
        }
    }

    fn wants(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == phase))
    }
}

// ---------------------------------------------------------------------------------------------
// System figures

mod sys {
    use std::io;
    use std::net::{SocketAddr, SocketAddrV4};

    /// `CLOCK_REALTIME` in nanoseconds (the clock of `SO_TIMESTAMPNS`).
    pub fn realtime_ns() -> i64 {
        clock_ns(libc::CLOCK_REALTIME)
    }

    /// CPU time of the calling thread.
    pub fn thread_cpu_ns() -> i64 {
        clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    fn clock_ns(clock: libc::clockid_t) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a valid out pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }

    /// CPU time of this process (all threads), from `getrusage`.
    pub fn process_cpu_s() -> f64 {
        // SAFETY: zeroed rusage is a valid out value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out pointer.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    /// Resident set size of this process (`VmRSS`), bytes.
    pub fn rss_bytes() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// Bytes allocated through malloc and not freed (all arenas, mmapped chunks included).
    pub fn heap_bytes() -> u64 {
        // SAFETY: no arguments; glibc returns a plain struct.
        let m = unsafe { libc::mallinfo2() };
        (m.uordblks + m.hblkhd) as u64
    }

    /// This process's threads whose name starts with `prefix`: (tid, name).
    pub fn threads(prefix: &str) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(name) = std::fs::read_to_string(e.path().join("comm")) {
                let name = name.trim().to_owned();
                if name.starts_with(prefix) {
                    out.push((tid, name));
                }
            }
        }
        out.sort();
        out
    }

    /// CPU time a thread of this process has used (`schedstat`: nanoseconds on CPU), or from
    /// `stat` (utime + stime in clock ticks) where schedstat is missing.
    pub fn task_cpu_ns(tid: u32) -> u64 {
        let base = format!("/proc/self/task/{tid}");
        if let Some(ns) = std::fs::read_to_string(format!("{base}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        {
            return ns;
        }
        let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) else {
            return 0;
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        f.get(11)
            .copied()
            .unwrap_or(0)
            .saturating_add(f.get(12).copied().unwrap_or(0))
            * 1_000_000_000
            / hz
    }

    /// Raises a socket's receive buffer (past `rmem_max` when we may).
    pub fn set_rcvbuf(fd: i32, bytes: i32) {
        let set = |opt| {
            // SAFETY: valid fd, pointer to an i32 of the given length.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&bytes as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE) != 0 {
            set(libc::SO_RCVBUF);
        }
    }

    fn local_addr(fd: i32) -> Option<SocketAddr> {
        // SAFETY: zeroed storage is a valid out value; getsockname fails on non-sockets.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: valid pointers and length.
        let r = unsafe {
            libc::getsockname(
                fd,
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if r != 0 || ss.ss_family as i32 != libc::AF_INET {
            return None;
        }
        // SAFETY: family checked: it is a sockaddr_in.
        let sin: libc::sockaddr_in =
            unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
        Some(SocketAddr::V4(SocketAddrV4::new(
            u32::from_be(sin.sin_addr.s_addr).into(),
            u16::from_be(sin.sin_port),
        )))
    }

    fn is_udp(fd: i32) -> bool {
        let mut ty: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: valid pointers and length.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&mut ty as *mut i32).cast(),
                &mut len,
            )
        };
        r == 0 && ty == libc::SOCK_DGRAM
    }

    /// Raises the receive buffer of this process's IPv4 UDP sockets that `pick` selects (sockets
    /// owned by library code: the SFU's, the clients'). Returns how many were raised.
    pub fn raise_udp_rcvbufs(pick: impl Fn(SocketAddr) -> bool) -> usize {
        let mut n = 0;
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return 0;
        };
        for e in dir.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(addr) = local_addr(fd) {
                if is_udp(fd) && pick(addr) {
                    set_rcvbuf(fd, super::RCVBUF);
                    n += 1;
                }
            }
        }
        n
    }

    /// The kernel's drop counters of every IPv4 UDP socket bound to `port` (`/proc/net/udp`),
    /// summed: the SFU's shared socket and the sockets it connects to validated peers.
    pub fn udp_drops(port: u16) -> Option<u64> {
        let table = std::fs::read_to_string("/proc/net/udp").ok()?;
        let want = format!(":{port:04X}");
        let mut total = None;
        for l in table.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1).is_some_and(|a| a.ends_with(&want)) {
                if let Some(n) = f.last().and_then(|n| n.parse::<u64>().ok()) {
                    *total.get_or_insert(0) += n;
                }
            }
        }
        total
    }

    pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        s.sin_family = libc::AF_INET as libc::sa_family_t;
        s.sin_port = a.port().to_be();
        s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
        s
    }

    /// Asks the kernel to timestamp datagrams as they reach this socket.
    pub fn enable_rx_timestamps(fd: i32) -> io::Result<()> {
        let on: i32 = 1;
        // SAFETY: valid fd and option value.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// One datagram and the kernel's receive timestamp (`CLOCK_REALTIME` ns), if any.
    pub fn recv_timestamped(
        fd: i32,
        buf: &mut [u8],
        flags: i32,
    ) -> io::Result<(usize, Option<i64>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: hdr describes valid buffers.
        let n = unsafe { libc::recvmsg(fd, &mut hdr, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ts = None;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled in.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    ts = Some(t.tv_sec * 1_000_000_000 + t.tv_nsec);
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        Ok((n as usize, ts))
    }
}

// ---------------------------------------------------------------------------------------------
// Latency summaries

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Summary {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Summary {
    /// From samples in any unit; the summary keeps the unit.
    fn of(mut v: Vec<f64>) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Summary {
            n: v.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: v[v.len() - 1],
        }
    }

    fn ms(&self) -> String {
        format!(
            "p50 {:.3} / p90 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms (n = {})",
            self.p50 / 1e3,
            self.p90 / 1e3,
            self.p99 / 1e3,
            self.p999 / 1e3,
            self.max / 1e3,
            self.n
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: the plain relay

mod relay {
    use super::*;

    pub struct RelayResult {
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
                    let s = unsafe {
                        libc::sendmmsg(fd, tx.as_mut_ptr().add(off), (n - off) as u32, 0)
                    };
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

    fn spawn<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .expect("thread")
    }

    /// The relay at full tilt: a blaster sends 1200-byte datagrams in `sendmmsg` batches as fast
    /// as it can, a sink drains them.
    pub fn throughput(batch: usize, secs: Duration) -> RelayResult {
        let (relay_sock, sink, blaster) = (socket(), socket(), socket());
        let relay_addr = v4(&relay_sock);
        let sink_addr = v4(&sink);
        blaster.connect(relay_addr).expect("connect");
        let stop = Arc::new(AtomicBool::new(false));

        let s = stop.clone();
        let sink_t = spawn("relay-sink", move || {
            let mut rx = Mmsg::new(64);
            let mut got = 0u64;
            while !s.load(Ordering::Relaxed) {
                got += rx.recv(sink.as_raw_fd()) as u64;
            }
            got
        });
        let s = stop.clone();
        let relay_t = spawn("relay", move || relay(relay_sock, sink_addr, batch, s));
        let s = stop.clone();
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
        let started = Instant::now();
        std::thread::sleep(secs);
        stop.store(true, Ordering::Relaxed);
        let _ = blast_t.join();
        let (relayed, cpu_ns) = relay_t.join().expect("relay");
        let sunk = sink_t.join().expect("sink");
        RelayResult {
            batch,
            relayed,
            cpu_s: cpu_ns as f64 / 1e9,
            wall_s: started.elapsed().as_secs_f64(),
            sunk,
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
}

// ---------------------------------------------------------------------------------------------
// The client process and the parent's side of signalling

/// Video and audio of one client, as the child builds its [`ClientOptions`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Opts {
    ppf: usize,
    size: usize,
    fps: u32,
    audio: bool,
}

impl Opts {
    fn kiosk_default() -> Opts {
        let d = ClientOptions::default();
        Opts {
            ppf: d.video_packets_per_frame,
            size: d.video_packet_size,
            fps: d.fps,
            audio: d.audio,
        }
    }

    /// Sends nothing, receives everything.
    fn silent() -> Opts {
        Opts {
            ppf: 1,
            size: PKT,
            fps: 0,
            audio: false,
        }
    }

    fn options(self) -> ClientOptions {
        ClientOptions {
            video_packets_per_frame: self.ppf,
            video_packet_size: self.size,
            fps: self.fps,
            audio: self.audio,
            ..ClientOptions::default()
        }
    }
}

/// What the child runs: `calls` kiosk–operator pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    calls: usize,
    kiosk: Opts,
    operator: Opts,
}

/// Child → parent, one JSON object per line on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Up {
    Offer {
        call: usize,
        role: MediaRole,
        sdp: String,
        candidates: Vec<Candidate>,
    },
    /// Every receiver has video (`missing` did not within the timeout).
    Ready {
        missing: usize,
    },
    Marked,
    Report(ClientReport),
}

/// Parent → child, one JSON object per line on stdin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Down {
    Answer {
        sdp: String,
    },
    /// Start the measurement window.
    Mark,
    /// End it and report.
    Report,
}

/// The clients' view of the window since [`Down::Mark`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ClientReport {
    sent: u64,
    received: u64,
    cpu_s: f64,
    wall_s: f64,
    /// One-way send → receive latency of synthetic video packets, µs.
    latency_us: Summary,
}

mod child {
    use super::*;

    fn say(up: &Up) {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(up).expect("json"));
        let _ = out.flush();
    }

    fn hear(lines: &mut impl Iterator<Item = io::Result<String>>) -> Option<Down> {
        let line = lines.next()?.ok()?;
        serde_json::from_str(&line).ok()
    }

    /// The client process: start the clients, negotiate through the parent, then answer marks and
    /// reports until stdin closes.
    pub fn run(plan: &str) {
        let plan: Plan = serde_json::from_str(plan).expect("plan");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-client")
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(serve(plan));
    }

    struct Pair {
        kiosk: MediaClient,
        operator: MediaClient,
    }

    async fn serve(plan: Plan) {
        let stdin = io::stdin();
        let mut lines = stdin.lock().lines();
        let mut pairs = Vec::new();
        for call in 0..plan.calls {
            let mut clients = Vec::new();
            for (role, opts) in [
                (MediaRole::Kiosk, plan.kiosk),
                (MediaRole::Operator, plan.operator),
            ] {
                let c = MediaClient::start(opts.options()).await.expect("client");
                say(&Up::Offer {
                    call,
                    role,
                    sdp: c.offer().to_owned(),
                    candidates: c.candidates().to_vec(),
                });
                let Some(Down::Answer { sdp }) = hear(&mut lines) else {
                    panic!("expected an answer");
                };
                c.set_answer(sdp).await.expect("answer applies");
                clients.push(c);
            }
            let operator = clients.pop().expect("operator");
            let kiosk = clients.pop().expect("kiosk");
            pairs.push(Pair { kiosk, operator });
        }
        sys::raise_udp_rcvbufs(|a| a.ip().is_loopback());

        // Ready once each receiver whose peer sends video has some.
        let deadline = Instant::now() + Duration::from_secs(30);
        let missing = loop {
            let missing = pairs
                .iter()
                .map(|p| {
                    usize::from(plan.kiosk.fps > 0 && p.operator.stats().packets("video") == 0)
                        + usize::from(
                            plan.operator.fps > 0 && p.kiosk.stats().packets("video") == 0,
                        )
                })
                .sum::<usize>();
            if missing == 0 || Instant::now() >= deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        say(&Up::Ready { missing });

        let clients = || pairs.iter().flat_map(|p| [&p.kiosk, &p.operator]);
        // Per client: sent, received, latency samples already taken per track.
        let mut mark: Vec<(u64, u64, HashMap<String, usize>)> = Vec::new();
        let mut mark_at = (Instant::now(), sys::process_cpu_s());
        while let Some(cmd) = hear(&mut lines) {
            match cmd {
                Down::Mark => {
                    mark = clients()
                        .map(|c| {
                            let s = c.stats();
                            let lat = s
                                .tracks
                                .iter()
                                .map(|(k, t)| (k.clone(), t.latencies_us.len()))
                                .collect();
                            (
                                s.sent_packets,
                                s.tracks.values().map(|t| t.packets).sum(),
                                lat,
                            )
                        })
                        .collect();
                    mark_at = (Instant::now(), sys::process_cpu_s());
                    say(&Up::Marked);
                }
                Down::Report => {
                    let mut r = ClientReport {
                        cpu_s: sys::process_cpu_s() - mark_at.1,
                        wall_s: mark_at.0.elapsed().as_secs_f64(),
                        ..Default::default()
                    };
                    let mut lat = Vec::new();
                    for (c, (sent0, recv0, lat0)) in clients().zip(&mark) {
                        let s = c.stats();
                        r.sent += s.sent_packets - sent0;
                        r.received += s.tracks.values().map(|t| t.packets).sum::<u64>() - recv0;
                        for (k, t) in &s.tracks {
                            let from = lat0.get(k).copied().unwrap_or(0);
                            lat.extend(
                                t.latencies_us[from.min(t.latencies_us.len())..]
                                    .iter()
                                    .map(|&v| v as f64),
                            );
                        }
                    }
                    r.latency_us = Summary::of(lat);
                    say(&Up::Report(r));
                }
                Down::Answer { .. } => panic!("unexpected answer"),
            }
        }
        for c in clients() {
            c.close();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The running client process, from the parent's side.
struct Clients {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Clients {
    fn spawn(plan: &Plan) -> Clients {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .env(CHILD_ENV, serde_json::to_string(plan).expect("json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("client process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Clients {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, d: &Down) {
        let w = self.stdin.as_mut().expect("stdin open");
        writeln!(w, "{}", serde_json::to_string(d).expect("json")).expect("write to clients");
        w.flush().expect("flush");
    }

    fn recv(&mut self) -> Up {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from clients");
        assert!(!line.is_empty(), "the client process exited");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad line from clients ({e}): {line}"))
    }

    /// Negotiates every client through `sfu` (the tap, if any, takes call 0) until all are up.
    /// Returns the number of receivers that got no video.
    fn negotiate(&mut self, rt: &tokio::runtime::Runtime, sfu: &Sfu, tap: Option<&Tap>) -> usize {
        loop {
            match self.recv() {
                Up::Offer {
                    call,
                    role,
                    sdp,
                    candidates,
                } => {
                    let call_id = format!("bench-{call}");
                    let who = Participant {
                        principal: format!("{}:{call}", role.as_str()),
                        role,
                    };
                    let answer = rt
                        .block_on(sfu.offer(&call_id, who.clone(), sdp, false))
                        .expect("the SFU answers");
                    for c in candidates {
                        rt.block_on(sfu.candidate(&call_id, who.clone(), c))
                            .expect("candidate");
                    }
                    let sdp = match tap {
                        Some(tap) if call == 0 => tap.redirect(&answer.sdp, role),
                        _ => answer.sdp,
                    };
                    self.send(&Down::Answer { sdp });
                }
                Up::Ready { missing } => return missing,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn mark(&mut self) {
        self.send(&Down::Mark);
        assert!(matches!(self.recv(), Up::Marked));
    }

    fn report(&mut self) -> ClientReport {
        self.send(&Down::Report);
        match self.recv() {
            Up::Report(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stdin = None; // EOF: the child closes its clients and exits
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The SFU under test

/// The SFU's threads: (tid, name).
type Threads = Vec<(u32, String)>;

/// Starts an SFU with one loop and finds its two threads (a previous phase's may still be winding
/// down: they stop within a second of their handle being dropped).
fn start_sfu(rt: &tokio::runtime::Runtime, cfg: &Config) -> (Sfu, Threads) {
    let old = sys::threads("sfu-");
    let (sfu, events) = rt
        .block_on(Sfu::start(
            MediaConfig {
                loops: 1,
                tcp: None,
                ..Default::default()
            },
            None,
        ))
        .expect("sfu starts");
    drop(events); // statistics are still computed every 2 s, as in production
                  // The threads name themselves once running.
    let deadline = Instant::now() + Duration::from_secs(2);
    let threads = loop {
        let new: Threads = sys::threads("sfu-")
            .into_iter()
            .filter(|t| !old.contains(t))
            .collect();
        if new.len() >= 2 || Instant::now() >= deadline {
            break new;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(nice) = cfg.sfu_nice {
        for (tid, _) in &threads {
            // SAFETY: plain syscall on a thread id of this process.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, *tid, nice) };
        }
    }
    (sfu, threads)
}

/// CPU of the SFU's own threads and its forwarding counters at one instant.
#[derive(Debug, Clone, Copy)]
struct SfuSnap {
    at: Instant,
    loop_ns: u64,
    reader_ns: u64,
    forwarded: u64,
}

fn snap(rt: &tokio::runtime::Runtime, sfu: &Sfu, threads: &Threads) -> SfuSnap {
    let forwarded = rt
        .block_on(sfu.stats())
        .iter()
        .flat_map(|c| c.directions.iter())
        .map(|d| d.packets)
        .sum();
    let mut s = SfuSnap {
        at: Instant::now(),
        loop_ns: 0,
        reader_ns: 0,
        forwarded,
    };
    for (tid, name) in threads {
        let ns = sys::task_cpu_ns(*tid);
        if name.starts_with("sfu-loop") {
            s.loop_ns += ns;
        } else {
            s.reader_ns += ns;
        }
    }
    s
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy, Default)]
struct SfuWindow {
    wall_s: f64,
    loop_s: f64,
    reader_s: f64,
    forwarded: u64,
}

impl SfuWindow {
    fn between(a: SfuSnap, b: SfuSnap) -> SfuWindow {
        SfuWindow {
            wall_s: b.at.duration_since(a.at).as_secs_f64(),
            loop_s: (b.loop_ns - a.loop_ns) as f64 / 1e9,
            reader_s: (b.reader_ns - a.reader_ns) as f64 / 1e9,
            forwarded: b.forwarded - a.forwarded,
        }
    }

    fn cpu_s(&self) -> f64 {
        self.loop_s + self.reader_s
    }
}

/// The SFU's packet counters over a whole phase (set-up and warm-up included): each phase starts
/// a fresh [`Sfu`] with fresh metrics and a fresh socket. Read a second after the window, since
/// the loop publishes its counters once a second.
#[derive(Debug, Clone, Copy, Default)]
struct Drops {
    rtp_in: u64,
    rtp_out: u64,
    loop_queue: u64,
    kernel: u64,
}

impl Drops {
    fn of(sfu: &Sfu) -> Drops {
        let m = sfu.metrics();
        Drops {
            rtp_in: m.packets.with_label_values(&["in"]).get(),
            rtp_out: m.packets.with_label_values(&["out"]).get(),
            loop_queue: m.dropped.with_label_values(&["overload"]).get(),
            kernel: sfu
                .udp_addr()
                .and_then(|a| sys::udp_drops(a.port()))
                .unwrap_or(0),
        }
    }

    fn describe(&self) -> String {
        format!(
            "SFU over the phase: rtp in {} out {}; dropped: loop queue full {}, kernel (socket buffer) {}",
            self.rtp_in, self.rtp_out, self.loop_queue, self.kernel
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 2: memory per call

struct MemResult {
    calls: usize,
    setup_s: f64,
    missing: usize,
    rss_empty: u64,
    heap_empty: u64,
    /// (seconds since ready, RSS, heap)
    samples: Vec<(f64, u64, u64)>,
    window: SfuWindow,
}

fn memory_phase(rt: &tokio::runtime::Runtime, cfg: &Config) -> MemResult {
    eprintln!(
        "[memory] {} calls at the default kiosk rates …",
        cfg.mem_calls
    );
    let (sfu, threads) = start_sfu(rt, cfg);
    std::thread::sleep(Duration::from_millis(200));
    let (rss_empty, heap_empty) = (sys::rss_bytes(), sys::heap_bytes());
    let started = Instant::now();
    let mut clients = Clients::spawn(&Plan {
        calls: cfg.mem_calls,
        kiosk: Opts::kiosk_default(),
        operator: Opts::kiosk_default(),
    });
    let missing = clients.negotiate(rt, &sfu, None);
    let setup_s = started.elapsed().as_secs_f64();
    let ready = Instant::now();
    let first = snap(rt, &sfu, &threads);
    let mut samples = Vec::new();
    for &at in &cfg.mem_samples {
        if let Some(d) = (ready + at).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        samples.push((
            ready.elapsed().as_secs_f64(),
            sys::rss_bytes(),
            sys::heap_bytes(),
        ));
        eprintln!(
            "[memory]   +{:>4.1} s: RSS {:.1} MiB, heap {:.1} MiB",
            ready.elapsed().as_secs_f64(),
            mib(samples.last().expect("pushed").1),
            mib(samples.last().expect("pushed").2)
        );
    }
    let window = SfuWindow::between(first, snap(rt, &sfu, &threads));
    drop(clients);
    drop(sfu);
    MemResult {
        calls: cfg.mem_calls,
        setup_s,
        missing,
        rss_empty,
        heap_empty,
        samples,
        window,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Phase 3: forwarding throughput

struct FwdResult {
    calls: usize,
    ppf: usize,
    offered_pps: usize,
    missing: usize,
    window: SfuWindow,
    drops: Drops,
    clients: ClientReport,
}

impl FwdResult {
    fn per_core(&self) -> f64 {
        self.window.forwarded as f64 / self.window.cpu_s().max(1e-9)
    }
}

fn forward_phase(rt: &tokio::runtime::Runtime, cfg: &Config) -> FwdResult {
    let calls = cfg.fwd_calls.max(1);
    let ppf = (cfg.fwd_pps / calls / FPS as usize).max(1);
    let offered = ppf * FPS as usize * calls;
    eprintln!(
        "[forward] {calls} kiosks x {ppf} x 1200 B x {FPS} fps = {offered} packets/s offered …"
    );
    let (sfu, threads) = start_sfu(rt, cfg);
    let port = sfu.udp_addr().expect("udp").port();
    sys::raise_udp_rcvbufs(|a| a.port() == port);
    let mut clients = Clients::spawn(&Plan {
        calls,
        kiosk: Opts {
            ppf,
            size: PKT,
            fps: FPS,
            audio: false,
        },
        operator: Opts::silent(),
    });
    let missing = clients.negotiate(rt, &sfu, None);
    std::thread::sleep(cfg.warm);
    clients.mark();
    let a = snap(rt, &sfu, &threads);
    std::thread::sleep(cfg.secs);
    let b = snap(rt, &sfu, &threads);
    let report = clients.report();
    if !cfg.quick {
        std::thread::sleep(Duration::from_millis(1100)); // counters are published once a second
    }
    let r = FwdResult {
        calls,
        ppf,
        offered_pps: offered,
        missing,
        window: SfuWindow::between(a, b),
        drops: Drops::of(&sfu),
        clients: report,
    };
    eprintln!(
        "[forward]   {:.0} packets/s forwarded, {:.0} per SFU CPU second",
        r.window.forwarded as f64 / r.window.wall_s,
        r.per_core()
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Phase 4: latency at 50% load, through a tap

/// A UDP tap in front of the SFU for one call: the kiosk and the operator are given the tap's
/// ports in the answer's candidate, and the tap relays to the SFU from ports of its own.
struct Tap {
    sfu: SocketAddr,
    kiosk_port: u16,
    operator_port: u16,
    recording: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(Vec<f64>, u64)>>,
}

fn is_video_rtp(b: &[u8]) -> Option<(u16, u32)> {
    (b.len() >= 12 && b[0] >> 6 == 2 && b[1] & 0x7f == VIDEO_PT).then(|| {
        (
            u16::from_be_bytes([b[2], b[3]]),
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        )
    })
}

impl Tap {
    fn start(sfu: SocketAddr) -> Tap {
        let bind = || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_nonblocking(true).expect("nonblocking");
            sys::set_rcvbuf(s.as_raw_fd(), RCVBUF);
            s
        };
        let (k_front, k_back, o_front, o_back) = (bind(), bind(), bind(), bind());
        sys::enable_rx_timestamps(o_back.as_raw_fd()).expect("SO_TIMESTAMPNS");
        let kiosk_port = k_front.local_addr().expect("addr").port();
        let operator_port = o_front.local_addr().expect("addr").port();
        let recording = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, st) = (recording.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("tap".into())
            .spawn(move || {
                let mut fds: Vec<libc::pollfd> = [&k_front, &k_back, &o_front, &o_back]
                    .iter()
                    .map(|s| libc::pollfd {
                        fd: s.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                let mut buf = [0u8; 2048];
                let (mut kiosk, mut operator): (Option<SocketAddr>, Option<SocketAddr>) =
                    (None, None);
                let mut ingress: HashMap<(u16, u32), i64> = HashMap::new();
                let mut lat = Vec::new();
                let mut unmatched = 0u64;
                while !st.load(Ordering::Relaxed) {
                    // SAFETY: fds is a valid array of pollfd.
                    if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) } <= 0
                    {
                        continue;
                    }
                    // Kiosk → SFU: stamp video just before it enters the SFU's socket.
                    while let Ok((n, from)) = k_front.recv_from(&mut buf) {
                        kiosk = Some(from);
                        if rec.load(Ordering::Relaxed) {
                            if let Some(key) = is_video_rtp(&buf[..n]) {
                                if ingress.len() > 200_000 {
                                    ingress.clear();
                                }
                                ingress.entry(key).or_insert_with(sys::realtime_ns);
                            }
                        }
                        let _ = k_back.send_to(&buf[..n], sfu);
                    }
                    while let Ok((n, _)) = k_back.recv_from(&mut buf) {
                        if let Some(to) = kiosk {
                            let _ = k_front.send_to(&buf[..n], to);
                        }
                    }
                    while let Ok((n, from)) = o_front.recv_from(&mut buf) {
                        operator = Some(from);
                        let _ = o_back.send_to(&buf[..n], sfu);
                    }
                    // SFU → operator: the kernel's timestamp of the packet leaving the SFU.
                    while let Ok((n, at)) =
                        sys::recv_timestamped(o_back.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT)
                    {
                        if let (Some(key), Some(at)) = (is_video_rtp(&buf[..n]), at) {
                            if rec.load(Ordering::Relaxed) {
                                match ingress.remove(&key) {
                                    Some(t0) => lat.push((at - t0) as f64 / 1e3),
                                    None => unmatched += 1,
                                }
                            }
                        }
                        if let Some(to) = operator {
                            let _ = o_front.send_to(&buf[..n], to);
                        }
                    }
                }
                (lat, unmatched)
            })
            .expect("tap thread");
        Tap {
            sfu,
            kiosk_port,
            operator_port,
            recording,
            stop,
            thread: Some(thread),
        }
    }

    /// The answer with the SFU's candidate pointing at the tap instead.
    fn redirect(&self, sdp: &str, role: MediaRole) -> String {
        let port = match role {
            MediaRole::Operator => self.operator_port,
            _ => self.kiosk_port,
        };
        let from = format!(" {} {} typ host", self.sfu.ip(), self.sfu.port());
        assert!(
            sdp.contains(&from),
            "the answer carries the SFU's host candidate: {sdp}"
        );
        sdp.replace(&from, &format!(" {} {port} typ host", self.sfu.ip()))
    }

    /// Stops the tap: latencies in µs and packets seen leaving without a recorded entry.
    fn finish(mut self) -> (Vec<f64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("tap"))
            .unwrap_or_default()
    }
}

struct LatResult {
    offered_pps: usize,
    calls: usize,
    missing: usize,
    window: SfuWindow,
    tap: Summary,
    tap_unmatched: u64,
    drops: Drops,
    clients: ClientReport,
    relay: Summary,
}

fn latency_phase(rt: &tokio::runtime::Runtime, cfg: &Config, pps: usize) -> LatResult {
    let per_call = LAT_PPF * FPS as usize;
    let calls = pps.div_ceil(per_call).max(1);
    let offered = calls * per_call;
    eprintln!(
        "[latency] {calls} kiosks x {LAT_PPF} x 1200 B x {FPS} fps = {offered} packets/s offered …"
    );
    let (sfu, threads) = start_sfu(rt, cfg);
    let addr = sfu.udp_addr().expect("udp");
    sys::raise_udp_rcvbufs(|a| a.port() == addr.port());
    let tap = Tap::start(addr);
    let mut clients = Clients::spawn(&Plan {
        calls,
        kiosk: Opts {
            ppf: LAT_PPF,
            size: PKT,
            fps: FPS,
            audio: false,
        },
        operator: Opts::silent(),
    });
    let missing = clients.negotiate(rt, &sfu, Some(&tap));
    std::thread::sleep(cfg.warm);
    clients.mark();
    tap.recording.store(true, Ordering::Relaxed);
    let a = snap(rt, &sfu, &threads);
    std::thread::sleep(cfg.secs);
    let b = snap(rt, &sfu, &threads);
    tap.recording.store(false, Ordering::Relaxed);
    let report = clients.report();
    let (lat, unmatched) = tap.finish();
    if !cfg.quick {
        std::thread::sleep(Duration::from_millis(1100)); // counters are published once a second
    }
    let drops = Drops::of(&sfu);
    drop(clients);
    drop(sfu);
    eprintln!("[latency] plain relay at {offered} packets/s …");
    let relay = relay::latency(offered, cfg.secs);
    LatResult {
        offered_pps: offered,
        calls,
        missing,
        window: SfuWindow::between(a, b),
        tap: Summary::of(lat),
        tap_unmatched: unmatched,
        drops,
        clients: report,
        relay,
    }
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Results {
    relay_batched: Option<relay::RelayResult>,
    relay_single: Option<relay::RelayResult>,
    memory: Option<MemResult>,
    forward: Option<FwdResult>,
    latency: Option<LatResult>,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

impl Results {
    fn print(&self, cfg: &Config) {
        println!();
        println!(
            "Media plane, loopback, {} cores, window {:.1} s{}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cfg.secs.as_secs_f64(),
            if cfg.quick {
                " (QUICK: smoke run, figures not meaningful)"
            } else {
                ""
            }
        );
        println!();
        let ceiling = self.relay_batched.as_ref().map(|r| r.per_core());
        for r in [&self.relay_batched, &self.relay_single]
            .into_iter()
            .flatten()
        {
            let how = if r.batch > 1 {
                format!("recvmmsg/sendmmsg x{}", r.batch)
            } else {
                "recv_from/send_to per packet".to_owned()
            };
            println!(
                "plain relay, {how}, {PKT} B: {:>9.0} packets/s per core ({:.2} µs/packet; {} relayed in {:.2} CPU s over {:.1} s; sink got {})",
                r.per_core(),
                1e6 / r.per_core(),
                r.relayed,
                r.cpu_s,
                r.wall_s,
                r.sunk
            );
        }
        if let Some(f) = &self.forward {
            let w = &f.window;
            println!();
            println!(
                "SFU forwarding, SRTP in and out, 1200 B: {:>9.0} packets/s per core of the SFU [target >= 100,000: {}]",
                f.per_core(),
                verdict(f.per_core() >= 100_000.0)
            );
            println!(
                "  {:.2} µs of SFU CPU per packet: loop {:.2} µs + reader {:.2} µs; loop thread alone {:.0} packets/s per core",
                w.cpu_s() * 1e6 / w.forwarded.max(1) as f64,
                w.loop_s * 1e6 / w.forwarded.max(1) as f64,
                w.reader_s * 1e6 / w.forwarded.max(1) as f64,
                w.forwarded as f64 / w.loop_s.max(1e-9)
            );
            if let Some(c) = ceiling {
                println!(
                    "  = {:.3} of the recvmmsg/sendmmsg relay ceiling",
                    f.per_core() / c
                );
            }
            if let Some(r) = &self.relay_single {
                println!(
                    "  = {:.3} of the recv_from/send_to relay",
                    f.per_core() / r.per_core()
                );
            }
            println!(
                "  {} kiosks x {} packets x {FPS} fps = {} packets/s offered; forwarded {:.0}/s over {:.1} s; loop busy {:.0}%, reader {:.0}%{}",
                f.calls,
                f.ppf,
                f.offered_pps,
                w.forwarded as f64 / w.wall_s,
                w.wall_s,
                100.0 * w.loop_s / w.wall_s,
                100.0 * w.reader_s / w.wall_s,
                if f.missing > 0 { format!("; {} receivers never got video", f.missing) } else { String::new() }
            );
            println!(
                "  clients (other process) in the window: sent {} received {} ({:.2}% short), {:.2} cores",
                f.clients.sent,
                f.clients.received,
                100.0 * (f.clients.sent as f64 - f.clients.received as f64) / f.clients.sent.max(1) as f64,
                f.clients.cpu_s / f.clients.wall_s.max(1e-9),
            );
            println!("  {}", f.drops.describe());
        }
        if let Some(l) = &self.latency {
            let w = &l.window;
            println!();
            println!(
                "Latency added by the SFU at {} packets/s ({} kiosks x {LAT_PPF} x 1200 B x {FPS} fps; SFU threads {:.0}% of a core: loop {:.0}%, reader {:.0}%):",
                l.offered_pps,
                l.calls,
                100.0 * w.cpu_s() / w.wall_s,
                100.0 * w.loop_s / w.wall_s,
                100.0 * w.reader_s / w.wall_s
            );
            println!(
                "  SFU socket in → out (tap):        {} [target p99 < 1 ms: {}]",
                l.tap.ms(),
                verdict(l.tap.n > 0 && l.tap.p99 < 1000.0)
            );
            println!("  plain relay, same rate, same way: {}", l.relay.ms());
            println!(
                "  client send → client receive:    {}",
                l.clients.latency_us.ms()
            );
            println!(
                "  tap: {} packets out without a match; clients sent {} received {}, {:.2} cores{}",
                l.tap_unmatched,
                l.clients.sent,
                l.clients.received,
                l.clients.cpu_s / l.clients.wall_s.max(1e-9),
                if l.missing > 0 {
                    format!("; {} receivers never got video", l.missing)
                } else {
                    String::new()
                }
            );
            println!("  {}", l.drops.describe());
        }
        if let Some(m) = &self.memory {
            println!();
            println!(
                "Memory, {} calls at the default kiosk rates (set up in {:.1} s{}); SFU process: RSS {:.1} MiB, heap {:.1} MiB with no calls",
                m.calls,
                m.setup_s,
                if m.missing > 0 { format!(", {} receivers without video", m.missing) } else { String::new() },
                mib(m.rss_empty),
                mib(m.heap_empty)
            );
            for (i, &(at, rss, heap)) in m.samples.iter().enumerate() {
                let per =
                    |now: u64, base: u64| (now as f64 - base as f64) / m.calls as f64 / 1024.0;
                let last = i + 1 == m.samples.len();
                println!(
                    "  +{at:>4.1} s: RSS {:.1} MiB = {:.0} KiB per call, heap {:.1} MiB = {:.0} KiB per call{}",
                    mib(rss),
                    per(rss, m.rss_empty),
                    mib(heap),
                    per(heap, m.heap_empty),
                    if last {
                        format!(" [target < 1 MiB per call: {}]", verdict(per(rss, m.rss_empty) < 1024.0))
                    } else {
                        String::new()
                    }
                );
            }
            let w = &m.window;
            println!(
                "  SFU CPU over {:.1} s: {:.2}% of a core for {} calls = {:.3}% of a core per call ({:.0} packets/s forwarded)",
                w.wall_s,
                100.0 * w.cpu_s() / w.wall_s,
                m.calls,
                100.0 * w.cpu_s() / w.wall_s / m.calls as f64,
                w.forwarded as f64 / w.wall_s
            );
        }
    }
}
