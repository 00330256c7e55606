//! Per-call media statistics, computed a few calls at a time by the driver.

use std::sync::Arc;
use std::time::Instant;

use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::statistics::StatsSelector;

use super::Engine;
use crate::{CallStats, DirectionStats, MediaRole};

impl Engine {
    /// Per-call media statistics, one entry per direction that has a receiver.
    pub fn stats(&mut self, now: Instant) -> Vec<CallStats> {
        let calls = self.call_ids();
        calls
            .iter()
            .filter_map(|c| self.call_stats(now, c))
            .collect()
    }

    /// The calls of this loop, for [`Engine::call_stats`] one at a time.
    pub fn call_ids(&self) -> Vec<Arc<str>> {
        self.calls.keys().cloned().collect()
    }

    /// One call's media statistics (as in [`Engine::stats`]), `None` if the call is gone.
    pub fn call_stats(&mut self, now: Instant, call: &str) -> Option<CallStats> {
        let (call, held, ids) = self
            .calls
            .get_key_value(call)
            .map(|(k, c)| (k.clone(), c.held, c.peers.clone()))?;
        // Per peer: what it sent us (with the loss we saw on that leg), and RTT/loss of the
        // streams we send it.
        struct Leg {
            role: MediaRole,
            principal: String,
            connected: bool,
            sent_lost: i64,
            recv_fraction_lost: f64,
            rtt_ms: Option<f64>,
            by_source: Vec<(MediaRole, u64, u64)>,
        }
        let mut legs = Vec::new();
        for id in ids {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let report = peer.pc.get_stats(now, StatsSelector::None);
            let sent_lost: i64 = report
                .inbound_rtp_streams()
                .map(|s| s.received_rtp_stream_stats.packets_lost)
                .sum();
            let mut fraction = 0.0f64;
            let mut rtt: Option<f64> = None;
            for e in report.iter() {
                if let rtc::statistics::report::RTCStatsReportEntry::RemoteInboundRtp(r) = e {
                    fraction = fraction.max(r.fraction_lost);
                    if r.round_trip_time_measurements > 0 {
                        rtt = Some(rtt.unwrap_or(0.0).max(r.round_trip_time * 1000.0));
                    }
                }
            }
            let mut by_source: Vec<(MediaRole, u64, u64)> = Vec::new();
            for o in &peer.outbound {
                match by_source.iter_mut().find(|(r, _, _)| *r == o.source) {
                    Some(e) => {
                        e.1 += o.packets;
                        e.2 += o.bytes;
                    }
                    None => by_source.push((o.source, o.packets, o.bytes)),
                }
            }
            legs.push(Leg {
                role: peer.who.role,
                principal: peer.who.principal.clone(),
                connected: peer.state == RTCPeerConnectionState::Connected,
                sent_lost,
                recv_fraction_lost: fraction,
                rtt_ms: rtt,
                by_source,
            });
        }
        let mut directions = Vec::new();
        for to in &legs {
            for (source, packets, bytes) in &to.by_source {
                let from = legs.iter().find(|l| l.role == *source);
                directions.push(DirectionStats {
                    from: source.as_str().to_owned(),
                    to: to.role.as_str().to_owned(),
                    to_principal: to.principal.clone(),
                    packets: *packets,
                    bytes: *bytes,
                    packets_lost: from.map(|f| f.sent_lost.max(0) as u64).unwrap_or(0),
                    fraction_lost: to.recv_fraction_lost,
                    rtt_ms: to.rtt_ms,
                });
            }
        }
        Some(CallStats {
            call_id: call.to_string(),
            held,
            connected: legs
                .iter()
                .filter(|l| l.connected)
                .map(|l| l.role.as_str().to_owned())
                .collect(),
            directions,
        })
    }
}
