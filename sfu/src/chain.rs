//! The interceptor chain of every peer connection (SFU side and headless client alike).
//!
//! What `rtc`'s `register_default_interceptors` gives, with a smaller NACK send buffer, plus the
//! [`KeyframeRequests`](crate::keyframes::KeyframeRequests) interceptor:
//! - NACK: the generator asks senders to resend what was lost; the responder resends from a buffer
//!   of the last [`NACK_BUFFER`] packets per outgoing video stream. The default 1024 would hold
//!   about 1.2 MiB per stream once full; 256 packets cover ~2.5 s of a kiosk's video, far longer
//!   than a retransmission is useful.
//! - Transport-wide congestion control feedback to every sender, so browsers raise their bitrate.
//! - Sender and receiver reports.

use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder, Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind};
use rtc::shared::error::Result;

use crate::keyframes::{KeyframeRequests, SLOT};

/// Packets kept per outgoing video stream to answer NACKs (a power of two, as `rtc` requires).
pub const NACK_BUFFER: u16 = 256;

/// Registers the feedback the chain needs on `media` and returns the chain.
pub fn interceptors(media: &mut MediaEngine) -> Result<Registry> {
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new()
        .with(
            Slot::NackResponder,
            NackResponderBuilder::new().with_size(NACK_BUFFER).build(),
        )
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build());
    let registry = configure_twcc_receiver_only(registry, media)?;
    let registry = configure_rtcp_reports(registry);
    Ok(registry.with(Slot::from(SLOT), KeyframeRequests::default()))
}
