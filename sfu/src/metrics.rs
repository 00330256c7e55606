//! Prometheus metrics of the media plane, registered on the server's registry.

use prometheus::{GaugeVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::engine::Counters;

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
    }
}
