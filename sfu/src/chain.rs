//! The codecs and the interceptor chain of every peer connection (SFU side and headless client
//! alike): Opus and VP8 only, so whatever one party sends the other can receive.
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
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
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

/// The codecs: Opus (111) and VP8 (96); an offer's own payload type numbers win in the answer.
pub fn media_engine() -> Result<MediaEngine> {
    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
            payload_type: 96,
        },
        RtpCodecKind::Video,
    )?;
    Ok(m)
}

/// The one codec of each kind: `(kind, MIME type, clock rate)`.
pub const KINDS: [(RtpCodecKind, &str, u32); 2] = [
    (RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000),
    (RtpCodecKind::Video, MIME_TYPE_VP8, 90_000),
];

/// `audio` or `video`.
pub fn kind_name(kind: RtpCodecKind) -> &'static str {
    match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    }
}

/// A track to send, of `kind`, on a fresh random SSRC; returns the track and its SSRC.
pub fn local_track(
    stream_id: String,
    track_id: String,
    kind: RtpCodecKind,
) -> (MediaStreamTrack, u32) {
    let (_, mime, clock) = KINDS
        .iter()
        .copied()
        .find(|(k, _, _)| *k == kind)
        .unwrap_or(KINDS[1]);
    let ssrc = rand::random::<u32>();
    let label = track_id.replace('-', " ");
    let track = MediaStreamTrack::new(
        stream_id,
        track_id,
        label,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate: clock,
                ..Default::default()
            },
            ..Default::default()
        }],
    );
    (track, ssrc)
}
