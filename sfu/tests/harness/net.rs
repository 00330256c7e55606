//! The simulated network between the client peers and the engine: one [`Link`] per direction of
//! each client, with loss, a fixed delay and a random extra delay (jitter) that reorders packets
//! sent closer together than it. Every link draws from its own seeded RNG, so changing one link's
//! settings never changes another link's pattern, and a run is the same every time.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What one direction of a client's path does to datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Probability that a datagram is lost (0–1).
    pub loss: f64,
    /// One-way delay every datagram takes.
    pub delay: Duration,
    /// A uniformly random extra delay in `[0, jitter]`: datagrams sent less than `jitter` apart
    /// may arrive in the other order.
    pub jitter: Duration,
    /// An extra delay for STUN success responses only, so that a check is answered after the
    /// datagrams its sender sends next (a browser's DTLS overtaking its answer to the SFU's own
    /// check, as the two race on a real host).
    pub stun_response_delay: Duration,
}

impl Default for Link {
    /// A clean 20 ms path.
    fn default() -> Self {
        Link {
            loss: 0.0,
            delay: Duration::from_millis(20),
            jitter: Duration::ZERO,
            stun_response_delay: Duration::ZERO,
        }
    }
}

impl Link {
    /// A clean path with this one-way delay.
    pub fn delay(delay: Duration) -> Self {
        Link {
            delay,
            ..Link::default()
        }
    }

    /// The same path, losing this share of datagrams.
    pub fn with_loss(self, loss: f64) -> Self {
        Link { loss, ..self }
    }

    /// The same path, with this much random extra delay (reordering).
    pub fn with_jitter(self, jitter: Duration) -> Self {
        Link { jitter, ..self }
    }

    /// The same path, holding STUN success responses back this much longer.
    pub fn with_stun_response_delay(self, stun_response_delay: Duration) -> Self {
        Link {
            stun_response_delay,
            ..self
        }
    }
}

/// Which way a datagram goes on a client's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → SFU.
    Up,
    /// SFU → client.
    Down,
}

/// What a datagram is, for traces (RFC 7983 demultiplexing on the first byte).
pub fn describe(data: &[u8]) -> String {
    match data.first().copied().unwrap_or(0) {
        0..=3 => "STUN".to_owned(),
        20..=63 => {
            let record = match data[0] {
                20 => "ChangeCipherSpec",
                21 => "Alert",
                22 => "Handshake",
                23 => "ApplicationData",
                _ => "record",
            };
            match (data[0], data.get(13)) {
                (22, Some(&t)) if data.get(3..5) == Some(&[0, 0]) => {
                    format!("DTLS {record} (message type {t})")
                }
                _ => format!("DTLS {record}"),
            }
        }
        128..=191 if data.get(1).is_some_and(|b| (192..=223).contains(b)) => {
            format!("SRTCP (packet type {})", data[1])
        }
        128..=191 => format!(
            "SRTP (pt {}, seq {})",
            data.get(1).map_or(0, |b| b & 0x7f),
            data.get(2..4)
                .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
        ),
        _ => "unknown".to_owned(),
    }
}

/// What one link did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounts {
    /// Datagrams offered to the link.
    pub sent: u64,
    /// Datagrams it dropped.
    pub lost: u64,
}

struct LinkState {
    link: Link,
    rng: StdRng,
    counts: LinkCounts,
}

/// A datagram on its way.
pub struct Flight {
    /// When it arrives.
    pub at: Instant,
    /// Sending order, to break ties so equal arrival instants keep the order they were sent in.
    order: u64,
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// The bytes.
    pub data: BytesMut,
}

impl PartialEq for Flight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Flight {}

impl PartialOrd for Flight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Flight {
    /// Reversed, so the max-heap pops the earliest arrival first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// Every link and every datagram in flight.
pub struct Network {
    /// Print every datagram (simulated time, link, fate, kind) to stderr.
    pub trace: bool,
    start: Instant,
    seed: u64,
    links: HashMap<(usize, Direction), LinkState>,
    flights: BinaryHeap<Flight>,
    order: u64,
}

impl Network {
    /// An empty network whose links draw from RNGs derived from `seed`; `start` is the instant
    /// traces count from.
    pub fn new(seed: u64, start: Instant) -> Self {
        Network {
            trace: false,
            start,
            seed,
            links: HashMap::new(),
            flights: BinaryHeap::new(),
            order: 0,
        }
    }

    /// Sets (or changes, mid-run) the link of `client` in direction `dir`. Its RNG is kept when
    /// the link already exists, so the loss pattern stays reproducible.
    pub fn set_link(&mut self, client: usize, dir: Direction, link: Link) {
        let seed = self.seed
            ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ match dir {
                Direction::Up => 0x5555,
                Direction::Down => 0xAAAA,
            };
        self.links
            .entry((client, dir))
            .or_insert_with(|| LinkState {
                link,
                rng: StdRng::seed_from_u64(seed),
                counts: LinkCounts::default(),
            })
            .link = link;
    }

    /// The current settings of a link.
    pub fn link(&self, client: usize, dir: Direction) -> Link {
        self.links
            .get(&(client, dir))
            .map(|l| l.link)
            .unwrap_or_default()
    }

    /// What a link did so far.
    pub fn counts(&self, client: usize, dir: Direction) -> LinkCounts {
        self.links
            .get(&(client, dir))
            .map(|l| l.counts)
            .unwrap_or_default()
    }

    /// Puts a datagram sent at `now` on the link of `client` in direction `dir` (or drops it).
    pub fn send(
        &mut self,
        now: Instant,
        client: usize,
        dir: Direction,
        from: SocketAddr,
        to: SocketAddr,
        data: BytesMut,
    ) {
        let state = self
            .links
            .entry((client, dir))
            .or_insert_with(|| LinkState {
                link: Link::default(),
                rng: StdRng::seed_from_u64(self.seed),
                counts: LinkCounts::default(),
            });
        state.counts.sent += 1;
        // Draw both numbers for every datagram, so the loss pattern does not depend on jitter.
        let lost = state.rng.gen::<f64>() < state.link.loss;
        let extra = state.rng.gen::<f64>();
        if self.trace {
            eprintln!(
                "{:>9.3} ms  client {client} {dir:?}{}  {} B  {}",
                (now - self.start).as_secs_f64() * 1000.0,
                if lost { " LOST" } else { "" },
                data.len(),
                describe(&data)
            );
        }
        if lost {
            state.counts.lost += 1;
            return;
        }
        let mut at = now + state.link.delay + state.link.jitter.mul_f64(extra);
        if data.len() >= 2 && data[0] == 0x01 && data[1] == 0x01 {
            at += state.link.stun_response_delay; // a Binding success response
        }
        self.order += 1;
        self.flights.push(Flight {
            at,
            order: self.order,
            from,
            to,
            data,
        });
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.flights.peek().map(|f| f.at)
    }

    /// The next datagram that has arrived by `now`.
    pub fn pop_arrived(&mut self, now: Instant) -> Option<Flight> {
        if self.flights.peek().is_some_and(|f| f.at <= now) {
            self.flights.pop()
        } else {
            None
        }
    }
}
