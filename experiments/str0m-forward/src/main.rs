//! The engine cost of `sfu/benches/call_cost.rs`, measured on str0m.
//!
//! N calls, each a kiosk and an operator client, every client a str0m `Rtc` connected to its own
//! server-side str0m `Rtc` (ICE, DTLS, SRTP, RTCP reports, TWCC and NACK with RTX as str0m does
//! them), with datagrams carried in memory on a simulated clock over links of 2 ms plus up to
//! 3 ms of jitter. Each client sends what the call_cost clients send (Opus-sized audio every
//! 20 ms and 30 two-packet video frames per second by default); the server side forwards every
//! RTP packet it receives to the other party's server-side `Rtc` in RTP mode (`write_rtp`, as an
//! SFU does), which encrypts and sends it on. The thread CPU time spent inside the server-side
//! `Rtc`s is counted (datagram input, timers, the forwarding writes and their outputs), the
//! clients' is not, and divided by the datagrams the servers received: the same figures as
//! call_cost prints for our engine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy)]
struct Plan {
    audio: bool,
    fps: u32,
    packets_per_frame: usize,
    packet_size: usize,
}

struct Node {
    rtc: Rtc,
    addr: SocketAddr,
    timeout: Instant,
    server: bool,
    /// For a server: the node of the other party's server side.
    forward_to: usize,
    /// Streams this node sends on: (audio, video).
    tx: (Ssrc, Ssrc),
    pts: (Pt, Pt),
    rtp_received: u64,
}

struct Datagram {
    to: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

struct Sim {
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    in_flight: Vec<Option<Datagram>>,
    free: Vec<usize>,
    seq: u64,
    rng: u64,
    now: Instant,
    next_media: Instant,
    server_cpu: Duration,
    server_datagrams: u64,
    by_addr: std::collections::HashMap<SocketAddr, usize>,
}

impl Sim {
    fn jitter(&mut self) -> Duration {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        Duration::from_micros(2_000 + r % 3_000)
    }

    fn send(&mut self, to_addr: SocketAddr, from: SocketAddr, data: Vec<u8>) {
        let Some(&to) = self.by_addr.get(&to_addr) else {
            return;
        };
        let at = self.now + self.jitter();
        let slot = match self.free.pop() {
            Some(s) => {
                self.in_flight[s] = Some(Datagram { to, from, data });
                s
            }
            None => {
                self.in_flight.push(Some(Datagram { to, from, data }));
                self.in_flight.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    /// Drains one node's outputs: transmits go on the links, a server forwards its RTP.
    fn drain(&mut self, i: usize) {
        loop {
            let out = match self.nodes[i].rtc.poll_output() {
                Ok(o) => o,
                Err(e) => panic!("node {i}: {e:?}"),
            };
            match out {
                Output::Timeout(t) => {
                    self.nodes[i].timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    let data = t.contents.to_vec();
                    self.send(t.destination, t.source, data);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    self.nodes[i].rtp_received += 1;
                    if self.nodes[i].server {
                        let o = self.nodes[i].forward_to;
                        let video = p.header.payload_type == self.nodes[o].pts.1;
                        let ssrc = if video {
                            self.nodes[o].tx.1
                        } else {
                            self.nodes[o].tx.0
                        };
                        let now = self.now;
                        let mut api = self.nodes[o].rtc.direct_api();
                        let stream = api.stream_tx(&ssrc).expect("declared");
                        stream.write_rtp(
                            RtpWrite::new(
                                p.header.payload_type,
                                p.seq_no,
                                p.header.timestamp,
                                now,
                                p.payload.clone(),
                            )
                            .marker(p.header.marker)
                            .nackable(video),
                        );
                        self.drain(o);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Runs every node's due timers and delivers every datagram due, up to `until`.
    fn run_until(&mut self, until: Instant, mut media: impl FnMut(&mut Sim)) {
        loop {
            let next_dgram = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = self.nodes.iter().map(|n| n.timeout).min().unwrap();
            let next = next_dgram
                .map_or(next_timer, |d| d.min(next_timer))
                .min(until);
            // Media is written on a 1 ms grid, between the events.
            while self.next_media <= next {
                self.now = self.now.max(self.next_media);
                media(self);
                self.next_media += Duration::from_millis(1);
            }
            self.now = self.now.max(next);
            if next >= until && next_dgram.is_none_or(|d| d > until) && next_timer > until {
                return;
            }
            if next_dgram == Some(next) {
                let Reverse((_, _, slot)) = self.queue.pop().unwrap();
                let d = self.in_flight[slot].take().unwrap();
                self.free.push(slot);
                let to = d.to;
                let server = self.nodes[to].server;
                let start = server.then(thread_cpu);
                let dest = self.nodes[to].addr;
                if let Ok(r) = Receive::new(Protocol::Udp, d.from, dest, &d.data) {
                    let now = self.now;
                    let _ = self.nodes[to].rtc.handle_input(Input::Receive(now, r));
                    self.drain(to);
                }
                if let Some(s) = start {
                    self.server_cpu += thread_cpu() - s;
                    self.server_datagrams += 1;
                }
                continue;
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].timeout <= self.now {
                    let server = self.nodes[i].server;
                    let start = server.then(thread_cpu);
                    let now = self.now;
                    self.nodes[i].rtc.handle_input(Input::Timeout(now)).unwrap();
                    self.drain(i);
                    if let Some(s) = start {
                        self.server_cpu += thread_cpu() - s;
                    }
                }
            }
        }
    }
}

fn pts(rtc: &Rtc) -> (Pt, Pt) {
    let find = |c: Codec| {
        rtc.codec_config()
            .find(|p| p.spec().codec == c)
            .unwrap()
            .pt()
    };
    (find(Codec::Opus), find(Codec::Vp8))
}

fn run(calls: usize, secs: u64, plan: Plan) -> (f64, f64, f64) {
    let start = Instant::now();
    let mut sim = Sim {
        nodes: Vec::new(),
        queue: BinaryHeap::new(),
        in_flight: Vec::new(),
        free: Vec::new(),
        seq: 0,
        rng: 0x9E37_79B9_7F4A_7C15,
        now: start,
        next_media: start,
        server_cpu: Duration::ZERO,
        server_datagrams: 0,
        by_addr: Default::default(),
    };
    // Per client: a client node and a server node, connected with the direct API (no SDP).
    let (au, vu, ad, vd): (Mid, Mid, Mid, Mid) =
        ("au".into(), "vu".into(), "ad".into(), "vd".into());
    for c in 0..calls * 2 {
        let ci = sim.nodes.len();
        let (cb, sb) = ((c / 250) as u8, (c % 250) as u8);
        let caddr: SocketAddr = (Ipv4Addr::new(10, 0, cb, sb + 1), 1000).into();
        let saddr: SocketAddr = (Ipv4Addr::new(10, 1, cb, sb + 1), 2000).into();
        let mut client = Rtc::builder().set_rtp_mode(true).build(start);
        let mut server = Rtc::builder().set_rtp_mode(true).build(start);
        let hc = Candidate::host(caddr, "udp").unwrap();
        let hs = Candidate::host(saddr, "udp").unwrap();
        client.add_local_candidate(hc.clone());
        client.add_remote_candidate(hs.clone());
        server.add_local_candidate(hs);
        server.add_remote_candidate(hc);
        let fc = client.direct_api().local_dtls_fingerprint().clone();
        let fs = server.direct_api().local_dtls_fingerprint().clone();
        client.direct_api().set_remote_fingerprint(fs);
        server.direct_api().set_remote_fingerprint(fc);
        let cc = client.direct_api().local_ice_credentials();
        let cs = server.direct_api().local_ice_credentials();
        client.direct_api().set_remote_ice_credentials(cs);
        server.direct_api().set_remote_ice_credentials(cc);
        client.direct_api().set_ice_controlling(true);
        server.direct_api().set_ice_controlling(false);
        client.direct_api().start_dtls(true).unwrap();
        server.direct_api().start_dtls(false).unwrap();
        // Streams: up (client → server) and down (server → client), video with RTX.
        let base = 1000 * (c as u32 + 1);
        let (a_up, v_up, r_up) = (
            Ssrc::from(base + 1),
            Ssrc::from(base + 2),
            Ssrc::from(base + 3),
        );
        let (a_dn, v_dn, r_dn) = (
            Ssrc::from(base + 4),
            Ssrc::from(base + 5),
            Ssrc::from(base + 6),
        );
        for rtc in [&mut client, &mut server] {
            let mut api = rtc.direct_api();
            api.declare_media(au, MediaKind::Audio);
            api.declare_media(vu, MediaKind::Video);
            api.declare_media(ad, MediaKind::Audio);
            api.declare_media(vd, MediaKind::Video);
        }
        {
            let mut api = client.direct_api();
            api.declare_stream_tx(a_up, None, au, None);
            api.declare_stream_tx(v_up, Some(r_up), vu, None);
            api.expect_stream_rx(a_dn, None, ad, None);
            api.expect_stream_rx(v_dn, Some(r_dn), vd, None);
        }
        {
            let mut api = server.direct_api();
            api.expect_stream_rx(a_up, None, au, None);
            api.expect_stream_rx(v_up, Some(r_up), vu, None);
            api.declare_stream_tx(a_dn, None, ad, None);
            api.declare_stream_tx(v_dn, Some(r_dn), vd, None);
        }
        let (cp, sp) = (pts(&client), pts(&server));
        sim.by_addr.insert(caddr, ci);
        sim.by_addr.insert(saddr, ci + 1);
        sim.nodes.push(Node {
            rtc: client,
            addr: caddr,
            timeout: start,
            server: false,
            forward_to: usize::MAX,
            tx: (a_up, v_up),
            pts: cp,
            rtp_received: 0,
        });
        sim.nodes.push(Node {
            rtc: server,
            addr: saddr,
            timeout: start,
            server: true,
            forward_to: usize::MAX,
            tx: (a_dn, v_dn),
            pts: sp,
            rtp_received: 0,
        });
    }
    // Pair the calls: client 2k (kiosk) with 2k+1 (operator); their server nodes forward to
    // each other.
    for k in 0..calls {
        let (s1, s2) = (4 * k + 1, 4 * k + 3);
        sim.nodes[s1].forward_to = s2;
        sim.nodes[s2].forward_to = s1;
    }
    let clients: Vec<usize> = (0..calls * 2).map(|c| 2 * c).collect();
    let mut seqs: Vec<(u64, u64)> = vec![(1, 1); clients.len()];
    let payload: Arc<[u8]> = vec![0x10u8; plan.packet_size].into();
    let audio: Arc<[u8]> = vec![0xF8u8; 60].into();
    let senders = clients.clone();
    let media = move |sim: &mut Sim| {
        let ms = sim.now.saturating_duration_since(start).as_millis() as u64;
        let now = sim.now;
        for (k, &c) in senders.iter().enumerate() {
            if !sim.nodes[c].rtc.is_connected() {
                continue;
            }
            // Spread the clients over the 20 ms and the frame interval.
            let phase = k as u64 * 7;
            let (a_ssrc, v_ssrc) = sim.nodes[c].tx;
            let (a_pt, v_pt) = sim.nodes[c].pts;
            if plan.audio && (ms + phase).is_multiple_of(20) {
                let seq = seqs[k].0;
                seqs[k].0 += 1;
                let mut api = sim.nodes[c].rtc.direct_api();
                let s = api.stream_tx(&a_ssrc).unwrap();
                s.write_rtp(RtpWrite::new(
                    a_pt,
                    SeqNo::from(seq),
                    (ms * 48) as u32,
                    now,
                    audio.clone(),
                ));
                sim.drain(c);
            }
            let frame_ms = (1000 / plan.fps.max(1)) as u64;
            if plan.fps > 0 && (ms + phase).is_multiple_of(frame_ms) {
                for j in 0..plan.packets_per_frame {
                    let seq = seqs[k].1;
                    seqs[k].1 += 1;
                    let mut api = sim.nodes[c].rtc.direct_api();
                    let s = api.stream_tx(&v_ssrc).unwrap();
                    s.write_rtp(
                        RtpWrite::new(
                            v_pt,
                            SeqNo::from(seq),
                            (ms * 90) as u32,
                            now,
                            payload.clone(),
                        )
                        .marker(j + 1 == plan.packets_per_frame)
                        .nackable(true),
                    );
                }
                sim.drain(c);
            }
        }
    };
    let mut media = media;
    // Come up, then settle for 2 s, then measure.
    let up = start + Duration::from_secs(10);
    sim.run_until(up, &mut media);
    let all_up = sim.nodes.iter().all(|n| n.rtc.is_connected());
    assert!(all_up, "{calls} calls did not all connect within 10 s");
    let got: Vec<u64> = clients.iter().map(|&c| sim.nodes[c].rtp_received).collect();
    assert!(
        got.iter().all(|&g| g > 0),
        "every client receives forwarded RTP: {got:?}"
    );
    let (cpu0, d0) = (sim.server_cpu, sim.server_datagrams);
    let rtp0: u64 = clients.iter().map(|&c| sim.nodes[c].rtp_received).sum();
    let end = sim.now + Duration::from_secs(secs);
    sim.run_until(end, &mut media);
    let cpu = (sim.server_cpu - cpu0).as_secs_f64();
    let d = (sim.server_datagrams - d0) as f64;
    let per_call_s = |x: f64| x / calls as f64 / secs as f64;
    let rtp: u64 = clients
        .iter()
        .map(|&c| sim.nodes[c].rtp_received)
        .sum::<u64>()
        - rtp0;
    eprintln!(
        "  forwarded RTP the clients received: {:.0} per call per second",
        per_call_s(rtp as f64)
    );
    (per_call_s(cpu) * 100.0, cpu / d * 1e6, per_call_s(d))
}

fn main() {
    let calls: Vec<usize> = std::env::var("CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 25]);
    let secs: u64 = env("SECONDS", 20);
    let plan = Plan {
        audio: env("AUDIO", 1u8) != 0,
        fps: env("FPS", 30),
        packets_per_frame: env("PACKETS_PER_FRAME", 2),
        packet_size: env("PACKET_SIZE", 600),
    };
    let mut json = Vec::new();
    for &n in &calls {
        let (pct, us, dps) = run(n, secs, plan);
        println!(
            "str0m, {n} call(s), {secs} s simulated: server-side CPU {pct:.3}% of a core per call, \
             {us:.1} µs per datagram in ({dps:.0} datagrams per call per second)"
        );
        json.push(format!(
            "\"str0m_cpu_per_call_pct/{n}\":{pct:.4},\"str0m_us_per_datagram/{n}\":{us:.2},\
             \"datagrams_per_call_s/{n}\":{dps:.1}"
        ));
    }
    println!("{{{}}}", json.join(","));
}
