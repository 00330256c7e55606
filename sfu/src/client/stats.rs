//! What a headless client measures: per-track counters ([`TrackStats`]), which sequence numbers
//! arrived ([`Reception`]) and the client's snapshot ([`ClientStats`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// What arrived on one incoming track.
#[derive(Clone, Default)]
pub struct TrackStats {
    /// `audio` or `video`.
    pub kind: String,
    /// The sender's track id (`kiosk-video`, `operator-audio`, …).
    pub track_id: String,
    /// RTP packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Times the sequence number jumped forward by more than one (loss or a discontinuity).
    pub seq_gaps: u64,
    /// Largest forward jump seen.
    pub max_seq_jump: u16,
    /// Times the timestamp went backwards between consecutive newer packets.
    pub ts_backwards: u64,
    /// One-way latencies of synthetic video packets, in microseconds (capped sample).
    pub latencies_us: Vec<u64>,
    /// When the last packet arrived.
    pub last_at: Option<Instant>,
    /// Which sequence numbers arrived: loss after retransmissions, duplicates.
    pub reception: Reception,
    pub(super) last_seq: Option<u16>,
    pub(super) last_ts: Option<u32>,
}

impl std::fmt::Debug for TrackStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackStats")
            .field("kind", &self.kind)
            .field("track_id", &self.track_id)
            .field("packets", &self.packets)
            .field("bytes", &self.bytes)
            .field("seq_gaps", &self.seq_gaps)
            .field("max_seq_jump", &self.max_seq_jump)
            .field("ts_backwards", &self.ts_backwards)
            .field("latency_samples", &self.latencies_us.len())
            .field("reception", &self.reception)
            .finish()
    }
}

/// Which sequence numbers of one stream arrived, over the whole stream: what is still missing after
/// retransmissions (NACK) is loss; a number that arrives twice is a duplicate.
#[derive(Clone, Default)]
pub struct Reception {
    first: Option<u64>,
    highest: u64,
    bits: Vec<u64>,
    unique: u64,
    /// Packets whose sequence number had already arrived.
    pub duplicates: u64,
    /// Packets too old to place (more than 32768 behind the newest).
    pub too_old: u64,
}

impl std::fmt::Debug for Reception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reception")
            .field("expected", &self.expected())
            .field("received", &self.unique)
            .field("duplicates", &self.duplicates)
            .field("too_old", &self.too_old)
            .finish()
    }
}

impl Reception {
    const WINDOW: u64 = 1 << 16;

    fn bit(&mut self, ext: u64) -> (usize, u64) {
        let i = (ext % Self::WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// One packet with sequence number `seq`.
    pub fn record(&mut self, seq: u16) {
        if self.bits.is_empty() {
            self.bits = vec![0; (Self::WINDOW / 64) as usize];
        }
        let ext = match self.first {
            None => {
                let ext = Self::WINDOW + seq as u64;
                self.first = Some(ext);
                self.highest = ext;
                ext
            }
            Some(_) => {
                let diff = seq.wrapping_sub(self.highest as u16) as i16 as i64;
                let ext = (self.highest as i64 + diff) as u64;
                if ext > self.highest {
                    if ext - self.highest >= Self::WINDOW {
                        self.bits.iter_mut().for_each(|w| *w = 0);
                    } else {
                        for e in self.highest + 1..=ext {
                            let (w, b) = self.bit(e);
                            self.bits[w] &= !b;
                        }
                    }
                    self.highest = ext;
                }
                ext
            }
        };
        if self.highest - ext >= Self::WINDOW / 2 || Some(ext) < self.first {
            self.too_old += 1;
            return;
        }
        let (w, b) = self.bit(ext);
        if self.bits[w] & b != 0 {
            self.duplicates += 1;
        } else {
            self.bits[w] |= b;
            self.unique += 1;
        }
    }

    /// Sequence numbers from the first to the newest seen.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |f| self.highest - f + 1)
    }

    /// Distinct sequence numbers received.
    pub fn received(&self) -> u64 {
        self.unique
    }

    /// Sequence numbers still missing.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }
}

/// A snapshot of the client.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Whether the peer connection is connected.
    pub connected: bool,
    /// The connection state's name.
    pub state: String,
    /// Incoming tracks by track id.
    pub tracks: HashMap<String, TrackStats>,
    /// RTP packets sent.
    pub sent_packets: u64,
    /// Keyframe requests (PLI/FIR) received for what this client sends.
    pub keyframe_requests: u64,
    /// The TURN allocations this connection gathered relay candidates from.
    pub relays: Vec<RelayInfo>,
    /// Datagrams (ICE checks, DTLS, media) sent to the remote through a TURN allocation.
    pub relay_sent: u64,
    /// Datagrams received from the remote through a TURN allocation.
    pub relay_received: u64,
    /// Datagrams received directly on the host socket, not through TURN.
    pub direct_received: u64,
    /// Why a TURN server could not be used: one line per `turn:` URL that failed.
    pub turn_errors: Vec<String>,
}

/// One TURN allocation of a client: a relay candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// The `turn:` URL it was allocated from.
    pub url: String,
    /// The TURN server's address.
    pub server: SocketAddr,
    /// How the client reaches the server: `udp` or `tcp`.
    pub transport: &'static str,
    /// The relayed address on the TURN server (the relay candidate's address).
    pub relayed: SocketAddr,
}

impl ClientStats {
    /// Packets received on tracks of this kind (`audio`/`video`).
    pub fn packets(&self, kind: &str) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.kind == kind)
            .map(|t| t.packets)
            .sum()
    }

    /// Packets received on tracks whose id starts with `prefix` (e.g. `kiosk-`).
    pub fn packets_from(&self, prefix: &str) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.track_id.starts_with(prefix))
            .map(|t| t.packets)
            .sum()
    }
}
