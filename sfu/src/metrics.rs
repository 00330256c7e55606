//! Prometheus metrics of the media plane, registered on the server's registry: packets, drops,
//! connections and loop load, and the media quality of the calls (keyframe requests, and the loss
//! and round-trip time from the receivers' reports, observed at each statistics interval).

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use crate::engine::Counters;
use crate::CallStats;

/// The media plane's metrics.
#[derive(Clone)]
pub struct MediaMetrics {
    /// `sportello_media_rtp_packets_total{direction}`: RTP packets received (`in`) and forwarded
    /// (`out`).
    pub packets: IntCounterVec,
    /// `sportello_media_rtp_bytes_total{direction}`: RTP payload bytes.
    pub bytes: IntCounterVec,
    /// `sportello_media_dropped_total{reason}`: datagrams from unknown sources (`unknown`), packets
    /// held back by a hold (`held`), packets dropped because a loop was full (`overload`).
    pub dropped: IntCounterVec,
    /// `sportello_media_peer_connections`: live peer connections.
    pub peer_connections: IntGauge,
    /// `sportello_media_peer_sockets`: UDP sockets connected to one peer each (the fast path that
    /// bypasses the shared socket's reader thread).
    pub peer_sockets: IntGauge,
    /// `sportello_media_calls`: calls with media.
    pub calls: IntGauge,
    /// `sportello_media_loop_busy_ratio{loop}`: share of the last second a forwarding loop spent
    /// working (0–1).
    pub loop_busy: GaugeVec,
    /// `sportello_media_loop_wakeups_total{loop}`: times a forwarding loop woke up (packets,
    /// commands or timers); with the busy ratio it shows whether idle connections cost anything.
    pub loop_wakeups: IntCounterVec,
    /// `sportello_media_keyframe_requests_total{direction}`: keyframe requests received from
    /// receivers (`in`: PLI/FIR, a picture they could not decode) and sent to senders (`out`).
    pub keyframes: IntCounterVec,
    /// `sportello_media_loss_ratio`: fraction lost between the SFU and a receiver (0–1), from its
    /// last receiver report, one observation per direction and statistics interval.
    pub loss: Histogram,
    /// `sportello_media_round_trip_seconds`: round-trip time SFU ⇄ receiver, one observation per
    /// direction and statistics interval, once measured.
    pub rtt: Histogram,
}

impl std::fmt::Debug for MediaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaMetrics").finish_non_exhaustive()
    }
}

impl MediaMetrics {
    /// Creates the metrics and registers them (when a registry is given).
    pub fn new(registry: Option<&Registry>) -> Self {
        let packets = IntCounterVec::new(
            Opts::new(
                "sportello_media_rtp_packets_total",
                "RTP packets received and forwarded.",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "sportello_media_rtp_bytes_total",
                "RTP payload bytes received and forwarded.",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let dropped = IntCounterVec::new(
            Opts::new(
                "sportello_media_dropped_total",
                "Media packets not forwarded.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let peer_connections =
            IntGauge::new("sportello_media_peer_connections", "Live peer connections.")
                .expect("valid metric");
        let calls = IntGauge::new("sportello_media_calls", "Calls with media.").expect("valid");
        let peer_sockets = IntGauge::new(
            "sportello_media_peer_sockets",
            "UDP sockets connected to one media peer each.",
        )
        .expect("valid metric");
        let loop_busy = GaugeVec::new(
            Opts::new(
                "sportello_media_loop_busy_ratio",
                "Share of the last second each forwarding loop spent working.",
            ),
            &["loop"],
        )
        .expect("valid metric");
        let loop_wakeups = IntCounterVec::new(
            Opts::new(
                "sportello_media_loop_wakeups_total",
                "Times each forwarding loop woke up.",
            ),
            &["loop"],
        )
        .expect("valid metric");
        let keyframes = IntCounterVec::new(
            Opts::new(
                "sportello_media_keyframe_requests_total",
                "Keyframe requests received from receivers (in) and sent to senders (out).",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let loss = Histogram::with_opts(
            HistogramOpts::new(
                "sportello_media_loss_ratio",
                "Fraction of packets lost between the SFU and a receiver (0-1), per direction and \
                 statistics interval.",
            )
            .buckets(vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
        )
        .expect("valid metric");
        let rtt = Histogram::with_opts(
            HistogramOpts::new(
                "sportello_media_round_trip_seconds",
                "Round-trip time between the SFU and a receiver, per direction and statistics \
                 interval.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.0,
            ]),
        )
        .expect("valid metric");
        for d in ["in", "out"] {
            keyframes.with_label_values(&[d]);
        }
        if let Some(r) = registry {
            for c in [
                Box::new(packets.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(bytes.clone()),
                Box::new(dropped.clone()),
                Box::new(peer_connections.clone()),
                Box::new(calls.clone()),
                Box::new(peer_sockets.clone()),
                Box::new(loop_busy.clone()),
                Box::new(loop_wakeups.clone()),
                Box::new(keyframes.clone()),
                Box::new(loss.clone()),
                Box::new(rtt.clone()),
            ] {
                let _ = r.register(c);
            }
        }
        MediaMetrics {
            packets,
            bytes,
            dropped,
            peer_connections,
            calls,
            peer_sockets,
            loop_busy,
            loop_wakeups,
            keyframes,
            loss,
            rtt,
        }
    }

    /// Observes one call's statistics: the loss and round-trip time of each direction whose
    /// receiver reported them (a call on hold forwards nothing, so it is skipped).
    pub(crate) fn observe(&self, stats: &CallStats) {
        if stats.held {
            return;
        }
        for d in &stats.directions {
            if d.packets == 0 {
                continue;
            }
            self.loss.observe(d.fraction_lost.clamp(0.0, 1.0));
            if let Some(ms) = d.rtt_ms {
                self.rtt.observe(ms / 1000.0);
            }
        }
    }

    pub(crate) fn add(&self, c: Counters) {
        self.packets.with_label_values(&["in"]).inc_by(c.rtp_in);
        self.packets.with_label_values(&["out"]).inc_by(c.rtp_out);
        self.bytes.with_label_values(&["in"]).inc_by(c.rtp_in_bytes);
        self.bytes
            .with_label_values(&["out"])
            .inc_by(c.rtp_out_bytes);
        self.dropped
            .with_label_values(&["unknown"])
            .inc_by(c.dropped_unknown);
        self.dropped
            .with_label_values(&["held"])
            .inc_by(c.dropped_held);
        self.keyframes
            .with_label_values(&["in"])
            .inc_by(c.keyframes_asked);
        self.keyframes
            .with_label_values(&["out"])
            .inc_by(c.keyframes_sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirectionStats;

    fn direction(packets: u64, fraction_lost: f64, rtt_ms: Option<f64>) -> DirectionStats {
        DirectionStats {
            from: "kiosk".into(),
            to: "operator".into(),
            to_principal: "op".into(),
            packets,
            bytes: packets * 1000,
            packets_lost: 0,
            fraction_lost,
            rtt_ms,
        }
    }

    #[test]
    fn call_statistics_feed_loss_and_round_trip_but_not_while_held() {
        let m = MediaMetrics::new(None);
        let mut stats = CallStats {
            call_id: "c1".into(),
            held: false,
            connected: vec!["kiosk".into(), "operator".into()],
            directions: vec![
                direction(100, 0.02, Some(40.0)),
                // Nothing forwarded yet: no figure.
                direction(0, 0.5, Some(900.0)),
                // Not measured yet: loss only.
                direction(100, 0.0, None),
            ],
        };
        m.observe(&stats);
        assert_eq!(m.loss.get_sample_count(), 2);
        assert!((m.loss.get_sample_sum() - 0.02).abs() < 1e-9);
        assert_eq!(m.rtt.get_sample_count(), 1);
        assert!((m.rtt.get_sample_sum() - 0.040).abs() < 1e-9);
        stats.held = true;
        m.observe(&stats);
        assert_eq!(m.loss.get_sample_count(), 2, "a held call forwards nothing");
        m.add(Counters {
            keyframes_asked: 3,
            keyframes_sent: 1,
            ..Counters::default()
        });
        assert_eq!(m.keyframes.with_label_values(&["in"]).get(), 3);
        assert_eq!(m.keyframes.with_label_values(&["out"]).get(), 1);
    }
}
