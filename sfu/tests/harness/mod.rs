//! A sans-I/O harness for the SFU's [`Engine`]: `rtc` client peers ([`peer::ClientPeer`]) and
//! one engine exchange datagrams over a simulated network ([`net::Network`]: loss, delay and
//! jitter per direction, from seeded RNGs) on a simulated clock, with no socket and no sleep —
//! the way quinn-proto's test `Pair` and str0m's `progress(l, r)` work.
//!
//! [`Harness::run_for`] moves the clock from one thing to do to the next: a datagram arriving, the
//! engine's deadline, a client's timer or its next media frame. Offers, answers and candidates go
//! straight between client and engine at the instant of [`Harness::join`] (signalling is not
//! simulated). The harness records the simulated instant of each join step ([`JoinSteps`]) and
//! the engine's events and counters as they happen.
//!
//! Used by `engine_harness.rs`; a file that uses part of it only would see the rest unused.
#![allow(dead_code)]

pub mod net;
pub mod peer;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rtc::shared::TransportProtocol;
use sfu::engine::{Counters, Engine, EngineConfig};
use sfu::{MediaEvent, MediaRole, Participant};

pub use net::{Direction, Link, Network};
pub use peer::{Arrival, ClientPeer, Incoming, MediaPlan};

/// A client's index in the harness.
pub type ClientId = usize;

/// The simulated instants of one client's join, as durations since its offer.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinSteps {
    /// The offer went to the engine (since the harness started).
    pub offered_at: Duration,
    /// The client's ICE agent reached `connected`.
    pub ice_connected: Option<Duration>,
    /// The client's peer connection reached `connected`: DTLS done, SRTP keys in place.
    pub dtls_connected: Option<Duration>,
    /// The engine reported [`MediaEvent::Connected`] for this client.
    pub sfu_connected: Option<Duration>,
    /// The engine sent this client its first RTP packet (forwarded media).
    pub first_rtp_forwarded: Option<Duration>,
    /// The client received its first RTP packet.
    pub first_rtp_received: Option<Duration>,
    /// The client put together its first complete keyframe.
    pub first_keyframe: Option<Duration>,
}

impl fmt::Display for JoinSteps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| match d {
            Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
            None => "never".to_owned(),
        };
        write!(
            f,
            "ICE connected {}, DTLS done {}, SFU connected {}, first RTP forwarded {}, \
             first RTP received {}, first keyframe {}",
            ms(self.ice_connected),
            ms(self.dtls_connected),
            ms(self.sfu_connected),
            ms(self.first_rtp_forwarded),
            ms(self.first_rtp_received),
            ms(self.first_keyframe),
        )
    }
}

struct Slot {
    peer: ClientPeer,
    offered: Instant,
    first_rtp_forwarded: Option<Instant>,
    sfu_connected: Option<Instant>,
    /// RTP packets the engine sent to this client (forwarded media and retransmissions).
    rtp_forwarded: u64,
}

/// The engine, its clients, the network between them and the clock.
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// The network.
    pub net: Network,
    /// The SFU's (simulated) UDP address.
    pub sfu_addr: SocketAddr,
    /// Events the engine raised, with when.
    pub events: Vec<(Instant, MediaEvent)>,
    /// Datagrams the engine sent to an address no client has (any more).
    pub undeliverable: u64,
    start: Instant,
    now: Instant,
    clients: Vec<Option<Slot>>,
    /// Addresses the engine validated (`true`) or forgot (`false`), with when.
    pub learned: Vec<(Instant, SocketAddr, bool)>,
    /// Steps in a row at the same instant: a timer that never moves on would spin forever.
    spins: u32,
    /// Instants the engine was given datagrams, and instants it had only a due timer: the
    /// wake-ups a driver would make for it.
    pub packet_wakeups: u64,
    pub timer_wakeups: u64,
    /// CPU time this thread spent inside the engine's datagram and timer handling (not the
    /// clients'), for `sfu/benches/call_cost.rs`.
    pub engine_cpu: Duration,
    counters: Counters,
    rng: StdRng,
}

/// Is this datagram RTP (not RTCP, STUN or DTLS)? The SRTP header is in the clear (RFC 7983,
/// RFC 5761: RTCP packet types 192–223 take the marker bit and payload type byte).
fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && data[0] >> 6 == 2 && !(192..=223).contains(&data[1])
}

fn add(total: &mut Counters, c: Counters) {
    total.rtp_in += c.rtp_in;
    total.rtp_in_bytes += c.rtp_in_bytes;
    total.rtp_out += c.rtp_out;
    total.rtp_out_bytes += c.rtp_out_bytes;
    total.dropped_unknown += c.dropped_unknown;
    total.dropped_held += c.dropped_held;
    total.keyframes_asked += c.keyframes_asked;
    total.keyframes_sent += c.keyframes_sent;
    total.timer_fires += c.timer_fires;
}

impl Harness {
    /// An engine at `10.0.0.1:40000` (UDP only) with no clients; `seed` fixes every random
    /// choice the harness makes (losses, jitter, the clients' first sequence numbers).
    pub fn new(seed: u64) -> Self {
        let sfu_addr: SocketAddr = "10.0.0.1:40000".parse().expect("an address");
        let engine = Engine::new(EngineConfig {
            loop_index: 0,
            udp: Some(sfu_addr),
            tcp: None,
            grace: Duration::from_secs(15),
        });
        let start = Instant::now();
        Harness {
            engine,
            net: Network::new(seed, start),
            sfu_addr,
            events: Vec::new(),
            undeliverable: 0,
            start,
            now: start,
            clients: Vec::new(),
            learned: Vec::new(),
            spins: 0,
            timer_wakeups: 0,
            packet_wakeups: 0,
            engine_cpu: Duration::ZERO,
            counters: Counters::default(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The simulated instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Simulated time since the harness started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The engine's counters, summed since the start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// A client peer; panics if it left.
    pub fn client(&self, id: ClientId) -> &ClientPeer {
        &self.slot(id).peer
    }

    /// A client peer, to change what it does; panics if it left.
    pub fn client_mut(&mut self, id: ClientId) -> &mut ClientPeer {
        &mut self.clients[id]
            .as_mut()
            .expect("a client that has not left")
            .peer
    }

    fn slot(&self, id: ClientId) -> &Slot {
        self.clients[id]
            .as_ref()
            .expect("a client that has not left")
    }

    /// What the link of `id` in direction `dir` carried so far.
    pub fn link_counts(&self, id: ClientId, dir: Direction) -> net::LinkCounts {
        self.net.counts(id, dir)
    }

    /// RTP packets the engine sent to a client so far.
    pub fn rtp_forwarded_to(&self, id: ClientId) -> u64 {
        self.slot(id).rtp_forwarded
    }

    /// A client's join steps so far.
    pub fn join_steps(&self, id: ClientId) -> JoinSteps {
        let s = self.slot(id);
        let since = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(s.offered));
        let video = s
            .peer
            .track(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video);
        JoinSteps {
            offered_at: s.offered - self.start,
            ice_connected: since(s.peer.log.ice_connected),
            dtls_connected: since(s.peer.log.connected),
            sfu_connected: since(s.sfu_connected),
            first_rtp_forwarded: since(s.first_rtp_forwarded),
            first_rtp_received: since(
                s.peer
                    .incoming
                    .values()
                    .filter_map(|t| t.arrivals.first().map(|a| a.at))
                    .min(),
            ),
            first_keyframe: since(video.and_then(|t| t.keyframes.first().copied())),
        }
    }

    /// A client joins `call` as `role`: its offer goes to [`Engine::offer`], the answer back, its
    /// candidate to [`Engine::candidate`]. Its links are `up` and `down`.
    pub fn join(
        &mut self,
        call: &str,
        principal: &str,
        role: MediaRole,
        plan: MediaPlan,
        up: Link,
        down: Link,
    ) -> ClientId {
        let id = self.clients.len();
        let addr = SocketAddr::from(([10, 0, 1, id as u8 + 1], 50_000));
        let who = Participant {
            principal: principal.to_owned(),
            role,
        };
        let (mut peer, offer, candidate) =
            ClientPeer::new(self.now, call, who.clone(), addr, plan, &mut self.rng)
                .expect("a client peer");
        let held = false;
        let answer = self
            .engine
            .offer(self.now, call, who.clone(), offer, held)
            .expect("the engine answers");
        peer.set_answer(self.now, answer.sdp)
            .expect("the answer applies");
        self.engine
            .candidate(call, &who, candidate)
            .expect("the engine takes the candidate");
        self.net.set_link(id, Direction::Up, up);
        self.net.set_link(id, Direction::Down, down);
        self.clients.push(Some(Slot {
            peer,
            offered: self.now,
            first_rtp_forwarded: None,
            sfu_connected: None,
            rtp_forwarded: 0,
        }));
        self.flush();
        id
    }

    /// Changes one of a client's links from now on.
    pub fn set_link(&mut self, id: ClientId, dir: Direction, link: Link) {
        self.net.set_link(id, dir, link);
    }

    /// Holds or resumes the call ([`Engine::set_held`]).
    pub fn set_held(&mut self, call: &str, held: bool) {
        self.engine.set_held(self.now, call, held);
        self.flush();
    }

    /// Signalling closes a client's connection ([`Engine::leave`]); the client closes its own too
    /// and is gone from the harness. What still reaches its address is counted as undeliverable.
    pub fn leave(&mut self, id: ClientId) {
        let slot = self.clients[id].take().expect("a client that has not left");
        let mut peer = slot.peer;
        self.engine.leave(&peer.call, Some(&peer.who));
        peer.close();
        for (to, data) in peer.outbox.drain(..) {
            self.net
                .send(self.now, id, Direction::Up, peer.addr, to, data);
        }
        self.flush();
    }

    /// Runs the simulation for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
    }

    /// Runs until `pred` holds (checked after every step) or `limit` of simulated time passed;
    /// returns whether it holds.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Harness) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step(until) {
                return pred(self);
            }
        }
    }

    /// One step: to the next instant something happens (not past `until`), and everything due
    /// then. Returns `false` when nothing is left to do before `until` (the clock is then at
    /// `until`).
    fn step(&mut self, until: Instant) -> bool {
        let mut next = self.net.next_arrival();
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        take(self.engine.next_deadline());
        for slot in self.clients.iter_mut().flatten() {
            take(slot.peer.next_wake());
        }
        let Some(next) = next.filter(|&t| t <= until) else {
            self.now = until;
            return false;
        };
        // A timer in the past is due now; the clock never goes back.
        if next > self.now {
            self.now = next;
            self.spins = 0;
        } else {
            self.spins += 1;
            assert!(
                self.spins < 100_000,
                "stuck at {:?}: a timer that stays due",
                self.elapsed()
            );
        }
        let now = self.now;

        let mut engine_got = false;
        while let Some(f) = self.net.pop_arrived(now) {
            if f.to == self.sfu_addr {
                engine_got = true;
                let t = thread_cpu();
                self.engine
                    .handle_packet(now, TransportProtocol::UDP, f.from, f.data);
                self.engine_cpu += thread_cpu().saturating_sub(t);
            } else if let Some(slot) = self
                .clients
                .iter_mut()
                .flatten()
                .find(|s| s.peer.addr == f.to)
            {
                slot.peer.handle_datagram(now, f.from, f.data);
            } else {
                self.undeliverable += 1;
            }
            self.flush();
        }
        if engine_got {
            self.packet_wakeups += 1;
        }
        // As the driver does: timers run on every wake-up of the engine, a datagram's too
        // (connected connections' timers are woken for only `TIMER_SLACK` late).
        if engine_got || self.engine.next_deadline().is_some_and(|t| t <= now) {
            if !engine_got {
                self.timer_wakeups += 1;
            }
            let t = thread_cpu();
            self.engine.handle_timeout(now);
            self.engine_cpu += thread_cpu().saturating_sub(t);
        }
        self.engine.check_failures(now);
        for slot in self.clients.iter_mut().flatten() {
            if slot.peer.next_wake().is_some_and(|t| t <= now) {
                slot.peer.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Moves what the engine and the clients wrote onto the network, and records the engine's
    /// events and counters.
    fn flush(&mut self) {
        let now = self.now;
        let transmits: Vec<_> = self.engine.drain_transmits().collect();
        for t in transmits {
            let Some((id, slot)) = self
                .clients
                .iter_mut()
                .enumerate()
                .find_map(|(i, s)| s.as_mut().filter(|s| s.peer.addr == t.to).map(|s| (i, s)))
            else {
                // A left client: the datagram still goes out, and arrives nowhere.
                self.undeliverable += 1;
                continue;
            };
            if is_rtp(&t.data) {
                slot.rtp_forwarded += 1;
                slot.first_rtp_forwarded.get_or_insert(now);
            }
            self.net
                .send(now, id, Direction::Down, self.sfu_addr, t.to, t.data);
        }
        let learned: Vec<_> = self.engine.drain_learned().collect();
        self.learned.extend(
            learned
                .into_iter()
                .map(|(_, addr, valid)| (now, addr, valid)),
        );
        let events: Vec<MediaEvent> = self.engine.drain_events().collect();
        for e in events {
            if let MediaEvent::Connected { who, .. } = &e {
                if let Some(slot) = self
                    .clients
                    .iter_mut()
                    .flatten()
                    .find(|s| &s.peer.who == who)
                {
                    slot.sfu_connected.get_or_insert(now);
                }
            }
            self.events.push((now, e));
        }
        let c = self.engine.take_counters();
        add(&mut self.counters, c);
        for (id, slot) in self.clients.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let from = slot.peer.addr;
            for (to, data) in slot.peer.outbox.drain(..) {
                self.net.send(now, id, Direction::Up, from, to, data);
            }
        }
    }
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
