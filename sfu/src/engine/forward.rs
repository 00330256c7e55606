//! Forwarding: a received RTP packet rewritten for every other connection of its call, keyframe
//! requests passed from receivers to the sender, and hold: nothing is forwarded while a call is
//! held, and on resume the streams continue without a gap.

use std::time::{Duration, Instant};

use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpReceiverId;

use super::peers::PeerId;
use super::Engine;
use crate::rewrite::ExtensionMap;
use crate::MediaRole;

/// How often a sender may be asked for a keyframe for one stream.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);

impl Engine {
    /// Hold or resume a call: while held nothing is forwarded to or from its booth; on resume the
    /// streams continue without a gap and the senders are asked for a keyframe.
    pub fn set_held(&mut self, now: Instant, call: &str, held: bool) {
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if c.held == held {
            return;
        }
        c.held = held;
        let ids = c.peers.clone();
        if !held {
            for &id in &ids {
                if let Some(p) = self.peers.get_mut(&id) {
                    for o in &mut p.outbound {
                        o.rewriter.resync();
                    }
                }
            }
            for id in ids {
                self.request_keyframes(now, id, true);
            }
        }
    }

    pub(super) fn forward(
        &mut self,
        now: Instant,
        from: PeerId,
        track_id: &str,
        packet: rtc::rtp::Packet,
    ) {
        let (call, source_role, kind, mime, in_ext) = {
            let Some(peer) = self.peers.get(&from) else {
                return;
            };
            let Some(inb) = peer.inbound.get(track_id) else {
                return;
            };
            let Some(mime) = inb
                .mime_by_pt
                .iter()
                .find(|(pt, _)| *pt == packet.header.payload_type)
                .map(|(_, m)| m.clone())
            else {
                return;
            };
            (
                peer.call.clone(),
                peer.who.role,
                inb.kind,
                mime,
                inb.ext_uris.clone(),
            )
        };
        let mime: &str = &mime;
        if source_role == MediaRole::Monitor {
            return;
        }
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.held {
            self.counters.dropped_held += 1;
            return;
        }
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend(c.peers.iter().copied().filter(|&p| p != from));
        for &target in &targets {
            let Some(peer) = self.peers.get_mut(&target) else {
                continue;
            };
            if peer.state != RTCPeerConnectionState::Connected {
                // No SRTP keys yet: rtc would drop it (and the keyframe with it).
                continue;
            }
            let mut sent = false;
            for o in peer
                .outbound
                .iter_mut()
                .filter(|o| o.source == source_role && o.kind == kind)
            {
                let Some(pt) = o
                    .pt_by_mime
                    .iter()
                    .find(|(m, _)| m == mime)
                    .map(|(_, pt)| *pt)
                else {
                    continue;
                };
                if o.ext_map.as_ref().is_none_or(|(src, _)| *src != from) {
                    let map = ExtensionMap::new(
                        in_ext.iter().map(|(id, uri)| (*id, uri.as_str())),
                        o.ext_uris.iter().map(|(id, uri)| (*id, uri.as_str())),
                    );
                    o.ext_map = Some((from, map));
                }
                let map = &o.ext_map.as_ref().expect("just set").1;
                let mut out = packet.clone();
                let (seq, ts) = o.rewriter.rewrite(
                    now,
                    packet.header.ssrc,
                    packet.header.sequence_number,
                    packet.header.timestamp,
                );
                out.header.ssrc = o.ssrc;
                out.header.payload_type = pt;
                out.header.sequence_number = seq;
                out.header.timestamp = ts;
                out.header.extensions = packet
                    .header
                    .extensions
                    .iter()
                    .filter_map(|e| {
                        map.map(e.id).map(|id| rtc::rtp::header::Extension {
                            id,
                            payload: e.payload.clone(),
                        })
                    })
                    .collect();
                out.header.extension = !out.header.extensions.is_empty();
                if !out.header.extension {
                    out.header.extension_profile = 0;
                }
                let len = out.payload.len() as u64;
                if let Some(mut sender) = peer.pc.rtp_sender(o.sender_id) {
                    if sender.write_rtp(now, out).is_ok() {
                        o.packets += 1;
                        o.bytes += len;
                        self.counters.rtp_out += 1;
                        self.counters.rtp_out_bytes += len;
                        sent = true;
                    }
                }
            }
            if sent {
                self.flush(now, target);
            }
        }
        self.targets = targets;
    }

    /// A receiver on `target` asked for a keyframe of the stream it gets on `ssrc`: ask the
    /// stream's source.
    pub(super) fn keyframe_request_from_receiver(
        &mut self,
        now: Instant,
        target: PeerId,
        ssrc: u32,
    ) {
        let Some(peer) = self.peers.get(&target) else {
            return;
        };
        let Some(o) = peer.outbound.iter().find(|o| o.ssrc == ssrc) else {
            return;
        };
        let (source_role, call) = (o.source, peer.call.clone());
        let sources: Vec<PeerId> = self
            .calls
            .get(&call)
            .map(|c| {
                c.peers
                    .iter()
                    .copied()
                    .filter(|id| {
                        self.peers
                            .get(id)
                            .is_some_and(|p| p.who.role == source_role)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for s in sources {
            self.request_keyframes(now, s, false);
        }
    }

    /// Ask a peer for a keyframe on each of its video streams (throttled unless `force`); with
    /// `force`, a resumed or joined call, also ask the other peers of its call.
    pub(super) fn request_keyframes(&mut self, now: Instant, id: PeerId, force: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut asked = false;
        let wanted: Vec<(RTCRtpReceiverId, u32)> = peer
            .inbound
            .values_mut()
            .filter(|i| i.kind == RtpCodecKind::Video)
            .filter(|i| {
                force
                    || i.last_pli
                        .is_none_or(|t| now.saturating_duration_since(t) >= PLI_MIN_INTERVAL)
            })
            .map(|i| {
                i.last_pli = Some(now);
                (i.receiver_id, i.ssrc)
            })
            .collect();
        for (rid, ssrc) in wanted {
            if let Some(mut r) = peer.pc.rtp_receiver(rid) {
                let _ = r.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: ssrc,
                    })],
                );
                asked = true;
                self.counters.keyframes_sent += 1;
            }
        }
        if asked {
            self.flush(now, id);
        }
    }
}
