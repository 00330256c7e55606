//! Real WebRTC media for the headless kiosk and the operator bot.
//!
//! [`start_media`] negotiates one peer connection with the server's SFU for a call — `media.offer`,
//! the answer, then our candidates as `media.candidate` — and returns the running
//! [`MediaClient`], which sends synthetic audio and video (VP8-framed packets carrying their send
//! time, Opus silence) and measures what it receives.

use protocol::media::{MediaCandidate, MediaOffer};
use protocol::Request;

pub use sfu::client::{ClientOptions, ClientStats, MediaClient, TrackStats};

use crate::session::Requester;
use crate::ClientError;

/// Negotiates media for `call_id` over `requester`'s session and starts sending.
pub async fn start_media(
    requester: &Requester,
    call_id: &str,
    options: ClientOptions,
) -> Result<MediaClient, ClientError> {
    let monitor = options.monitor;
    let client = MediaClient::start(options)
        .await
        .map_err(|e| ClientError::Connect(format!("media socket: {e}")))?;
    negotiate(
        requester,
        call_id,
        &client,
        client.offer().to_owned(),
        monitor,
    )
    .await?;
    Ok(client)
}

/// After a network change: moves the client to a new local address, restarts ICE and sends the new
/// offer for the same call (the SFU renegotiates the same connection).
pub async fn restart_ice(
    requester: &Requester,
    call_id: &str,
    client: &MediaClient,
    monitor: bool,
) -> Result<(), ClientError> {
    let offer = client
        .restart_ice()
        .await
        .map_err(|e| ClientError::Connect(format!("media socket: {e}")))?;
    negotiate(requester, call_id, client, offer, monitor).await
}

async fn negotiate(
    requester: &Requester,
    call_id: &str,
    client: &MediaClient,
    offer: String,
    monitor: bool,
) -> Result<(), ClientError> {
    let reply = requester
        .request(&Request::MediaOffer(MediaOffer {
            call_id: call_id.to_owned(),
            sdp: offer,
            monitor,
        }))
        .await?;
    let sdp = reply
        .get("sdp")
        .and_then(|s| s.as_str())
        .ok_or_else(|| ClientError::Protocol("media.offer reply without \"sdp\"".into()))?;
    client
        .set_answer(sdp.to_owned())
        .await
        .map_err(|e| ClientError::Protocol(format!("the SFU's answer does not apply: {e}")))?;
    for c in client.candidates() {
        requester
            .request(&Request::MediaCandidate(MediaCandidate {
                call_id: call_id.to_owned(),
                candidate: c.candidate.clone(),
                sdp_mid: c.sdp_mid.clone(),
                sdp_mline_index: c.sdp_mline_index,
            }))
            .await?;
    }
    Ok(())
}
