//! Negotiation: a client's offer answered (a new peer connection built on the loop's setting
//! engine, codecs, interceptors and DTLS certificate; a renegotiation when the client restarts
//! ICE; a replacement when the client is a new peer connection), our host candidates, and the
//! client's trickled candidates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::RTCPeerConnectionBuilder;

use super::peers::{Outbound, Peer};
use super::{Answer, Engine};
use crate::chain::kind_name;
use crate::demux;
use crate::rewrite::StreamRewriter;
use crate::{Candidate, MediaError, MediaRole, Participant};

/// A leg's negotiated header extensions as `(id, uri)`.
pub(super) fn extensions(
    params: &rtc::rtp_transceiver::rtp_sender::RTCRtpParameters,
) -> impl Iterator<Item = (u8, String)> + '_ {
    params
        .header_extensions
        .iter()
        .map(|h| (h.id as u8, h.uri.clone()))
}

/// A fresh ECDSA P-256 DTLS certificate, or `None` (then rtc makes one per connection).
pub(super) fn dtls_certificate() -> Option<rtc::peer_connection::certificate::RTCCertificate> {
    let provider = rtc::crypto::default_provider().ok()?;
    let params =
        rtc::peer_connection::certificate::CertificateParams::new(vec!["sportello".to_owned()])
            .ok()?;
    rtc::peer_connection::certificate::RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        params,
    )
    .ok()
}

/// The DTLS fingerprint line of an SDP: it identifies the client's peer connection.
fn fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(str::trim)
        .find(|l| l.starts_with("a=fingerprint:"))
}

fn bad_sdp(e: impl std::fmt::Display) -> MediaError {
    MediaError::BadSdp(e.to_string())
}

impl Engine {
    /// A client's offer: a new connection, or a renegotiation (ICE restart) of its existing one.
    pub fn offer(
        &mut self,
        now: Instant,
        call: &str,
        who: Participant,
        sdp: String,
        held: bool,
    ) -> Result<Answer, MediaError> {
        let desc = RTCSessionDescription::offer(sdp).map_err(bad_sdp)?;
        let parsed = desc.unmarshal().map_err(bad_sdp)?;
        let kinds: Vec<&str> = parsed
            .media_descriptions
            .iter()
            .map(|m| m.media_name.media.as_str())
            .collect();
        let audio = kinds.iter().filter(|k| **k == "audio").count();
        let video = kinds.iter().filter(|k| **k == "video").count();
        let want = if who.role == MediaRole::Monitor { 2 } else { 1 };
        if audio != want || video != want {
            return Err(MediaError::BadSdp(format!(
                "expected {want} audio and {want} video sections, got {audio} audio and {video} video"
            )));
        }

        if let Some(id) = self.find_peer(call, &who) {
            let same_client = self.peers.get(&id).is_some_and(|p| {
                p.pc.remote_description()
                    .is_some_and(|d| fingerprint(&d.sdp) == fingerprint(&desc.sdp))
            });
            if !same_client {
                // A new peer connection on the client (a reloaded page, a restarted bot): it
                // replaces the old one.
                self.leave(call, Some(&who));
                return self.offer(now, call, who, desc.sdp, held);
            }
        }
        if let Some(id) = self.find_peer(call, &who) {
            // A renegotiation on the same connection: the client restarted ICE.
            let peer = self.peers.get_mut(&id).expect("peer indexed");
            peer.pc.set_remote_description(now, desc).map_err(bad_sdp)?;
            let answer = peer.pc.create_answer(None).map_err(bad_sdp)?;
            peer.pc
                .set_local_description(now, answer)
                .map_err(bad_sdp)?;
            let sdp = peer
                .pc
                .local_description()
                .map(|d| d.sdp)
                .ok_or_else(|| MediaError::Internal("no local description".into()))?;
            let candidates = self.local_candidates(0);
            self.process(now, id);
            return Ok(Answer { sdp, candidates });
        }

        let ufrag = demux::new_ufrag(self.cfg.loop_index);
        let pwd = demux::new_pwd();
        let setting = SettingEngineBuilder::new()
            .with_lite(true)
            .with_ice_credentials(ufrag.clone(), pwd)
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .build();
        let mut media =
            crate::chain::media_engine().map_err(|e| MediaError::Internal(e.to_string()))?;
        let registry = crate::chain::interceptors(&mut media)
            .map_err(|e| MediaError::Internal(e.to_string()))?;
        let config = match &self.certificate {
            Some(c) => RTCConfigurationBuilder::new()
                .with_certificates(vec![c.clone()])
                .build(),
            None => RTCConfigurationBuilder::new().build(),
        };
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(setting)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| MediaError::Internal(e.to_string()))?;

        // What this connection sends: the other party's media, or both parties' for a monitor.
        let sources: &[MediaRole] = match who.role {
            MediaRole::Kiosk => &[MediaRole::Operator],
            MediaRole::Operator => &[MediaRole::Kiosk],
            MediaRole::Monitor => &[MediaRole::Kiosk, MediaRole::Operator],
        };
        let mut planned = Vec::new();
        for &source in sources {
            for (kind, _, clock) in crate::chain::KINDS {
                let (track, ssrc) = crate::chain::local_track(
                    format!("sportello-{}", source.as_str()),
                    format!("{}-{}", source.as_str(), kind_name(kind)),
                    kind,
                );
                let sender_id = pc
                    .add_track(track)
                    .map_err(|e| MediaError::Internal(e.to_string()))?;
                planned.push((source, kind, sender_id, ssrc, clock));
            }
        }

        pc.set_remote_description(now, desc).map_err(bad_sdp)?;
        let candidates = self.local_candidates(0);
        for c in &candidates {
            pc.add_local_candidate(RTCIceCandidateInit {
                candidate: c.candidate.clone(),
                sdp_mid: c.sdp_mid.clone(),
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: None,
                ..Default::default()
            })
            .map_err(|e| MediaError::Internal(e.to_string()))?;
        }
        let answer = pc.create_answer(None).map_err(bad_sdp)?;
        pc.set_local_description(now, answer).map_err(bad_sdp)?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| MediaError::Internal("no local description".into()))?;

        let mut outbound = Vec::new();
        for (source, kind, sender_id, ssrc, clock) in planned {
            let Some(mut sender) = pc.rtp_sender(sender_id) else {
                continue;
            };
            let params = sender.get_parameters();
            let pt_by_mime = params
                .rtp_parameters
                .codecs
                .iter()
                .map(|c| (c.rtp_codec.mime_type.to_ascii_lowercase(), c.payload_type))
                .collect();
            let ext_uris = extensions(&params.rtp_parameters).collect();
            outbound.push(Outbound {
                source,
                kind,
                sender_id,
                ssrc,
                pt_by_mime,
                ext_uris,
                rewriter: StreamRewriter::new(clock),
                ext_map: None,
                packets: 0,
                bytes: 0,
            });
        }

        let peer = Peer {
            call: Arc::from(call),
            who,
            pc,
            ufrag,
            inbound: HashMap::new(),
            outbound,
            addrs: Vec::new(),
            state: RTCPeerConnectionState::New,
            ice: RTCIceConnectionState::New,
            early_dtls: Vec::new(),
            trouble_since: Some(now),
            failed_reported: false,
            scheduled: None,
            rx_packets: 0,
            rx_bytes: 0,
        };
        let id = self.insert_peer(peer, held);
        self.process(now, id);
        Ok(Answer { sdp, candidates })
    }

    fn local_candidates(&self, mline: u16) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut make = |network: &str, addr: SocketAddr, tcp: bool| {
            let host = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: addr.ip().to_string(),
                    port: addr.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type: if tcp {
                    rtc::ice::tcp_type::TcpType::Passive
                } else {
                    Default::default()
                },
            };
            if let Ok(c) = host.new_candidate_host() {
                if let Ok(init) = RTCIceCandidate::from(&c).to_json() {
                    out.push(Candidate {
                        candidate: init.candidate,
                        sdp_mid: Some(mline.to_string()),
                        sdp_mline_index: Some(mline),
                    });
                }
            }
        };
        if let Some(udp) = self.cfg.udp {
            make("udp", udp, false);
        }
        if let Some(tcp) = self.cfg.tcp {
            make("tcp", tcp, true);
        }
        out
    }

    /// A client's trickled candidate. The SFU is ICE-lite: it learns client addresses from their
    /// checks, so a well-formed candidate is accepted and kept only for the record.
    pub fn candidate(
        &mut self,
        call: &str,
        who: &Participant,
        candidate: Candidate,
    ) -> Result<(), MediaError> {
        let id = self.find_peer(call, who).ok_or(MediaError::NoConnection)?;
        let peer = self.peers.get_mut(&id).expect("peer indexed");
        if candidate.candidate.trim().is_empty() {
            // End of candidates.
            return Ok(());
        }
        peer.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: None,
                ..Default::default()
            })
            .map_err(|e| MediaError::BadCandidate(e.to_string()))
    }
}
