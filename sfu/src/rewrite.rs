//! Per-stream RTP rewriting, the pure part of forwarding.
//!
//! A forwarded stream reaches its receiver on the SSRC and payload type *the receiver's* connection
//! negotiated, with sequence numbers and timestamps that never jump backwards or leave a gap the
//! receiver would treat as loss — across hold/resume and when the sender restarts (new SSRC).
//! Header extension ids are per connection: they are mapped by URI, and extensions the receiver did
//! not negotiate (or that only make sense hop by hop, like transport-wide sequence numbers) are
//! dropped.

use std::collections::HashMap;
use std::time::Instant;

/// Extensions that are hop-by-hop and must not be forwarded: the SFU is the other end of each leg.
pub const HOP_BY_HOP_EXTENSIONS: &[&str] = &[
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
];

/// Keeps one outgoing stream's sequence numbers and timestamps continuous.
///
/// `out = in + offset` (wrapping), so reordered and retransmitted packets of one source keep their
/// relative order. The offsets are recomputed when the source changes SSRC or after a pause
/// ([`StreamRewriter::resync`]): the next packet follows the last one sent, and its timestamp
/// advances by the wall-clock time that passed (at the codec's clock rate).
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    clock_rate: u32,
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_out: Option<LastOut>,
    resync: bool,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u16,
    ts: u32,
    at: Instant,
}

impl StreamRewriter {
    /// A rewriter for a codec with this clock rate (90 000 for video, 48 000 for Opus).
    pub fn new(clock_rate: u32) -> Self {
        StreamRewriter {
            clock_rate: clock_rate.max(1),
            source_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            last_out: None,
            resync: false,
        }
    }

    /// The next packet starts a new run (after hold, or when the receiver should not see a gap).
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// Maps one packet's `(sequence number, timestamp)` from its source to the receiver.
    pub fn rewrite(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32) -> (u16, u32) {
        let new_source = self.source_ssrc != Some(ssrc);
        if new_source || self.resync {
            match self.last_out {
                Some(last) => {
                    let next_seq = last.seq.wrapping_add(1);
                    let elapsed = now.saturating_duration_since(last.at);
                    let ticks = (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000)
                        .clamp(1, u32::MAX as u64) as u32;
                    let next_ts = last.ts.wrapping_add(ticks);
                    self.seq_offset = next_seq.wrapping_sub(seq);
                    self.ts_offset = next_ts.wrapping_sub(ts);
                }
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
            self.source_ssrc = Some(ssrc);
            self.resync = false;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newer = match self.last_out {
            None => true,
            Some(last) => seq_newer(out_seq, last.seq),
        };
        if newer {
            self.last_out = Some(LastOut {
                seq: out_seq,
                ts: out_ts,
                at: now,
            });
        }
        (out_seq, out_ts)
    }
}

/// RFC 1982 serial-number comparison for 16-bit sequence numbers: is `a` after `b`?
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Maps header extension ids of one incoming leg to those of one outgoing leg, by URI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionMap {
    map: HashMap<u8, u8>,
}

impl ExtensionMap {
    /// From the incoming leg's `(id, uri)` pairs and the outgoing leg's.
    pub fn new<'a>(
        incoming: impl IntoIterator<Item = (u8, &'a str)>,
        outgoing: impl IntoIterator<Item = (u8, &'a str)>,
    ) -> Self {
        let out: HashMap<&str, u8> = outgoing.into_iter().map(|(id, uri)| (uri, id)).collect();
        let map = incoming
            .into_iter()
            .filter(|(_, uri)| !HOP_BY_HOP_EXTENSIONS.contains(uri))
            .filter_map(|(id, uri)| out.get(uri).map(|&o| (id, o)))
            .collect();
        ExtensionMap { map }
    }

    /// The outgoing id for an incoming one, or `None` to drop the extension.
    pub fn map(&self, id: u8) -> Option<u8> {
        self.map.get(&id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_source_passes_through_unchanged() {
        let t = Instant::now();
        let mut r = StreamRewriter::new(90_000);
        assert_eq!(r.rewrite(t, 7, 100, 5000), (100, 5000));
        assert_eq!(r.rewrite(t, 7, 101, 8000), (101, 8000));
        // Reordered and retransmitted packets keep their place.
        assert_eq!(r.rewrite(t, 7, 99, 2000), (99, 2000));
    }

    #[test]
    fn a_resync_continues_after_the_last_packet_sent() {
        let t = Instant::now();
        let mut r = StreamRewriter::new(90_000);
        assert_eq!(r.rewrite(t, 7, 100, 5000), (100, 5000));
        r.resync();
        // The source ran on while held: 10 s later it is at seq 600.
        let later = t + Duration::from_secs(10);
        let (seq, ts) = r.rewrite(later, 7, 600, 905_000);
        assert_eq!(seq, 101);
        assert_eq!(ts, 5000 + 900_000);
        assert_eq!(r.rewrite(later, 7, 601, 908_000), (102, 5000 + 903_000));
    }

    #[test]
    fn a_new_source_ssrc_continues_without_a_jump() {
        let t = Instant::now();
        let mut r = StreamRewriter::new(48_000);
        r.rewrite(t, 1, 65_535, u32::MAX - 10);
        let (seq, ts) = r.rewrite(t + Duration::from_millis(20), 2, 30_000, 77);
        assert_eq!(seq, 0, "wraps to 0 after 65535");
        assert_eq!(ts, (u32::MAX - 10).wrapping_add(960));
    }

    #[test]
    fn a_resync_at_the_same_instant_still_advances_the_timestamp() {
        let t = Instant::now();
        let mut r = StreamRewriter::new(90_000);
        r.rewrite(t, 1, 10, 1000);
        r.resync();
        assert_eq!(r.rewrite(t, 1, 50, 99_999), (11, 1001));
    }

    #[test]
    fn serial_number_order_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, 65_535));
        assert!(!seq_newer(65_535, 0));
        assert!(!seq_newer(5, 5));
    }

    #[test]
    fn extensions_map_by_uri_and_hop_by_hop_ones_are_dropped() {
        let abs = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
        let level = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
        let twcc = HOP_BY_HOP_EXTENSIONS[0];
        let m = ExtensionMap::new(
            [(2, abs), (1, level), (3, twcc)],
            [(5, abs), (3, twcc), (9, "urn:3gpp:video-orientation")],
        );
        assert_eq!(m.map(2), Some(5));
        assert_eq!(m.map(1), None, "not negotiated by the receiver");
        assert_eq!(m.map(3), None, "transport-wide cc is per hop");
        assert_eq!(m.map(4), None);
    }
}
