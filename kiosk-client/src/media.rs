//! Real WebRTC media for the headless kiosk and the operator bot.
//!
//! [`start_media`] negotiates one peer connection with the server's SFU for a call — `media.offer`,
//! the answer, then our candidates as `media.candidate` — and returns the running
//! [`MediaClient`], which sends synthetic audio and video (VP8-framed packets carrying their send
//! time, Opus silence) and measures what it receives.
//!
//! [`CallMedia`] is the same media for a client that follows the server: when the call's media is
//! placed on another media node, the server sends `media.reconnect`, and [`CallMedia::handle`]
//! closes the peer connection, starts a new one (a new [`MediaClient`]: a new socket, new ICE
//! credentials and a new DTLS fingerprint) and sends its fresh `media.offer` and candidates. It does
//! not read events itself (the session's owner does): [`crate::HeadlessKiosk`] and a spawned
//! [`crate::OperatorBot`] feed it theirs.
//!
//! **TURN.** Every new peer connection (the first, and each one after `media.reconnect`) takes the
//! session's current ICE servers and policy ([`crate::Requester::ice`]: the `auth` reply's, or the
//! latest `ice.servers` event's), unless the caller's [`ClientOptions`] name servers of their own.
//! [`MediaClient`] then gathers a relay candidate on each `turn:` server (`docs/turn.md`), and with
//! policy `relay` only those, as a browser does.

use protocol::media::{MediaCandidate, MediaOffer};
use protocol::{ErrorCode, Event, Request};

pub use sfu::client::{ClientOptions, ClientStats, MediaClient, RelayInfo, TrackStats};

use crate::session::Requester;
use crate::ClientError;

/// How many times [`CallMedia::reconnect`] sends the new offer when the server answers
/// `unavailable` (the call's new media node is not ready yet).
const RECONNECT_ATTEMPTS: u32 = 4;

/// `options` with the session's current ICE servers and policy, unless they name servers of
/// their own.
pub fn with_session_ice(requester: &Requester, options: ClientOptions) -> ClientOptions {
    if !options.ice_servers.is_empty() {
        return options;
    }
    let ice = requester.ice();
    options.with_ice(ice.servers, ice.policy)
}

/// Negotiates media for `call_id` over `requester`'s session and starts sending, through the
/// session's TURN servers when it has any (see the module docs).
pub async fn start_media(
    requester: &Requester,
    call_id: &str,
    options: ClientOptions,
) -> Result<MediaClient, ClientError> {
    Ok(start_on_node(requester, call_id, options).await?.0)
}

/// [`start_media`], and the media node that answered (with media nodes).
async fn start_on_node(
    requester: &Requester,
    call_id: &str,
    options: ClientOptions,
) -> Result<(MediaClient, Option<String>), ClientError> {
    let monitor = options.monitor;
    let client = MediaClient::start(with_session_ice(requester, options))
        .await
        .map_err(|e| ClientError::Connect(format!("media socket: {e}")))?;
    let node = negotiate(
        requester,
        call_id,
        &client,
        client.offer().to_owned(),
        monitor,
    )
    .await?;
    Ok((client, node))
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
    negotiate(requester, call_id, client, offer, monitor)
        .await
        .map(|_| ())
}

/// Why a client that has media for `call_id` on `node` (the node that answered its offer) must
/// offer again after `event`: a `media.reconnect` for the call (its reason), or a `state.sync`
/// that puts the call's media on another node (`"resync"`: a `media.reconnect` was missed).
pub fn offer_again_reason<'a>(
    event: &'a Event,
    call_id: &str,
    node: Option<&str>,
) -> Option<&'a str> {
    if let Some(r) = reconnect_reason(event, call_id) {
        return Some(r);
    }
    let Event::StateSync(sync) = event else {
        return None;
    };
    let now = sync
        .calls
        .iter()
        .find(|c| c.call_id == call_id)?
        .media_node
        .as_deref()?;
    (node.is_some_and(|n| n != now)).then_some("resync")
}

/// Whether `event` is a `media.reconnect` for `call_id`; its reason if so.
pub fn reconnect_reason<'a>(event: &'a Event, call_id: &str) -> Option<&'a str> {
    match event {
        Event::MediaReconnect(r) if r.call_id == call_id => Some(r.reason.as_str()),
        _ => None,
    }
}

/// One call's media that follows `media.reconnect`: the current [`MediaClient`], and how many
/// times it was replaced.
///
/// Feed it the session's events with [`CallMedia::handle`] (or call [`CallMedia::reconnect`]);
/// events about other calls, and other events, are left alone. Stats start again from zero with
/// each new connection: read them from [`CallMedia::client`] after the reconnect.
pub struct CallMedia {
    requester: Requester,
    call_id: String,
    options: ClientOptions,
    client: MediaClient,
    reconnects: u64,
    last_reason: Option<String>,
    /// The media node that answered the current connection's offer (with media nodes).
    node: Option<String>,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("call_id", &self.call_id)
            .field("monitor", &self.options.monitor)
            .field("reconnects", &self.reconnects)
            .field("last_reason", &self.last_reason)
            .finish_non_exhaustive()
    }
}

impl CallMedia {
    /// Negotiates media for `call_id` over `requester`'s session, like [`start_media`]
    /// (`options.monitor` for a supervisor's monitor, after `monitor.start`).
    pub async fn start(
        requester: &Requester,
        call_id: &str,
        options: ClientOptions,
    ) -> Result<CallMedia, ClientError> {
        let (client, node) = start_on_node(requester, call_id, options.clone()).await?;
        Ok(CallMedia {
            requester: requester.clone(),
            call_id: call_id.to_owned(),
            options,
            client,
            reconnects: 0,
            last_reason: None,
            node,
        })
    }

    /// The call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The current peer connection (a new one after each reconnect).
    pub fn client(&self) -> &MediaClient {
        &self.client
    }

    /// How many times the media was offered again after `media.reconnect` (answered offers).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The reason of the last `media.reconnect` followed, if any.
    pub fn last_reason(&self) -> Option<&str> {
        self.last_reason.as_deref()
    }

    /// The session to offer on from now on (after the socket was resumed on a new connection).
    pub fn set_requester(&mut self, requester: Requester) {
        self.requester = requester;
    }

    /// Whether `event` asks this call's media to offer again: a `media.reconnect` for this call,
    /// or a `state.sync` that puts its media on another node than the one that answered.
    pub fn wants(&self, event: &Event) -> bool {
        offer_again_reason(event, &self.call_id, self.node.as_deref()).is_some()
    }

    /// Follows `event` if it asks this call's media to offer again (see [`CallMedia::wants`] and
    /// [`CallMedia::reconnect`]); returns whether it did. Anything else is ignored.
    pub async fn handle(&mut self, event: &Event) -> Result<bool, ClientError> {
        match offer_again_reason(event, &self.call_id, self.node.as_deref()) {
            Some(reason) => {
                let reason = reason.to_owned();
                self.reconnect(&reason).await.map(|()| true)
            }
            None => Ok(false),
        }
    }

    /// Closes the current peer connection and negotiates a new one: a new [`MediaClient`] (same
    /// options, so the same kind of local tracks, and `monitor` again for a monitor), a fresh
    /// `media.offer`, then its candidates. The old connection's candidates are never sent again.
    /// An `unavailable` answer is retried a few times. On failure the new, unanswered connection
    /// stays current, and `reconnect` may be called again.
    pub async fn reconnect(&mut self, reason: &str) -> Result<(), ClientError> {
        tracing::debug!(call_id = %self.call_id, %reason, "media.reconnect: offering again");
        self.last_reason = Some(reason.to_owned());
        self.client.close();
        let client = MediaClient::start(with_session_ice(&self.requester, self.options.clone()))
            .await
            .map_err(|e| ClientError::Connect(format!("media socket: {e}")))?;
        // The old connection goes away here (its driver was told to close).
        self.client = client;
        let mut attempt = 0;
        loop {
            let result = negotiate(
                &self.requester,
                &self.call_id,
                &self.client,
                self.client.offer().to_owned(),
                self.options.monitor,
            )
            .await;
            match result {
                Err(ClientError::Refused {
                    code: ErrorCode::Unavailable,
                    ..
                }) if attempt + 1 < RECONNECT_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e),
                Ok(node) => {
                    self.node = node;
                    break;
                }
            }
        }
        self.reconnects += 1;
        Ok(())
    }

    /// Stops following and gives back the current peer connection.
    pub fn into_client(self) -> MediaClient {
        self.client
    }

    /// Closes the current peer connection.
    pub fn close(&self) {
        self.client.close();
    }
}

async fn negotiate(
    requester: &Requester,
    call_id: &str,
    client: &MediaClient,
    offer: String,
    monitor: bool,
) -> Result<Option<String>, ClientError> {
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
    Ok(reply
        .get("media_node")
        .and_then(|n| n.as_str())
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::media::MediaReconnect;
    use protocol::CallRef;

    #[test]
    fn only_a_reconnect_for_the_call_counts() {
        let ev = |call: &str, reason: &str| {
            Event::MediaReconnect(MediaReconnect {
                call_id: call.into(),
                reason: reason.into(),
            })
        };
        assert_eq!(
            reconnect_reason(&ev("c1", "node_lost"), "c1"),
            Some("node_lost")
        );
        assert_eq!(
            reconnect_reason(&ev("c1", "whatever"), "c1"),
            Some("whatever")
        );
        assert_eq!(reconnect_reason(&ev("c2", "node_lost"), "c1"), None);
        let held = Event::CallHeld(CallRef {
            call_id: "c1".into(),
        });
        assert_eq!(reconnect_reason(&held, "c1"), None);
    }

    #[test]
    fn a_sync_that_moves_the_media_means_offer_again() {
        let sync = |node: Option<&str>| {
            Event::StateSync(protocol::StateSync {
                calls: vec![protocol::SyncedCall {
                    call_id: "c1".into(),
                    state: "connected".into(),
                    service: "anagrafe".into(),
                    language: "it".into(),
                    kiosk: None,
                    operator: None,
                    waited_s: 3,
                    expires_in_s: None,
                    position: None,
                    estimated_wait_s: None,
                    estimated_wait_low_s: None,
                    estimated_wait_high_s: None,
                    media_node: node.map(str::to_owned),
                }],
                operator_state: None,
                dispositions: None,
            })
        };
        let on = Some("m1@a");
        assert_eq!(
            offer_again_reason(&sync(Some("m2@b")), "c1", on),
            Some("resync")
        );
        assert_eq!(
            offer_again_reason(&sync(Some("m1@b")), "c1", on),
            Some("resync")
        );
        assert_eq!(offer_again_reason(&sync(Some("m1@a")), "c1", on), None);
        // No media nodes (one process), or an answer that named none: nothing to compare.
        assert_eq!(offer_again_reason(&sync(None), "c1", on), None);
        assert_eq!(offer_again_reason(&sync(Some("m2@b")), "c1", None), None);
        assert_eq!(offer_again_reason(&sync(Some("m2@b")), "c2", on), None);
    }
}
