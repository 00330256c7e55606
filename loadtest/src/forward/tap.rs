//! The latency tap: a UDP relay in front of the SFU for one call, which stamps each video packet
//! just before it enters the SFU's media port and reads the kernel's receive timestamp of the same
//! packet (same sequence number and timestamp) on its way out to the operator. With `TAP_DUMP=<file>`
//! in the environment it also writes each matched packet as `<in ns> <out ns> <sequence>` (realtime
//! clock), to see when in a run the slow packets were.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use sfu::MediaRole;

use super::{sys, RCVBUF, VIDEO_PT};

/// A UDP tap in front of the SFU for one call: the kiosk and the operator are given the tap's
/// ports in the answer's candidate, and the tap relays to the SFU from ports of its own.
pub struct Tap {
    pub sfu: SocketAddr,
    pub kiosk_port: u16,
    pub operator_port: u16,
    pub recording: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<(Vec<f64>, u64)>>,
}

pub fn is_video_rtp(b: &[u8]) -> Option<(u16, u32)> {
    (b.len() >= 12 && b[0] >> 6 == 2 && b[1] & 0x7f == VIDEO_PT).then(|| {
        (
            u16::from_be_bytes([b[2], b[3]]),
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        )
    })
}

impl Tap {
    pub fn start(sfu: SocketAddr) -> Tap {
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
                let mut dump: Option<Vec<(i64, i64, u16)>> =
                    std::env::var_os("TAP_DUMP").map(|_| Vec::new());
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
                                    Some(t0) => {
                                        lat.push((at - t0) as f64 / 1e3);
                                        if let Some(d) = dump.as_mut() {
                                            d.push((t0, at, key.0));
                                        }
                                    }
                                    None => unmatched += 1,
                                }
                            }
                        }
                        if let Some(to) = operator {
                            let _ = o_front.send_to(&buf[..n], to);
                        }
                    }
                }
                if let (Some(d), Some(path)) = (dump, std::env::var_os("TAP_DUMP")) {
                    let text: String = d
                        .iter()
                        .map(|(t0, at, seq)| format!("{t0} {at} {seq}\n"))
                        .collect();
                    let _ = std::fs::write(path, text);
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
    pub fn redirect(&self, sdp: &str, role: MediaRole) -> String {
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
    pub fn finish(mut self) -> (Vec<f64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("tap"))
            .unwrap_or_default()
    }
}
