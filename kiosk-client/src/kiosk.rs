//! A kiosk without a screen: authenticates with its device token, places, cancels and follows one
//! call, and can lose and resume its connection (also against another node of a cluster). Its
//! call's media can follow the server's `media.reconnect` ([`HeadlessKiosk::start_call_media`]).

use std::time::Duration;

use protocol::{Auth, AuthOk, CallCreated, CallRef, CallRequest, Capability, Event, Request};
use tokio::time::Instant;

use crate::media::CallMedia;
use crate::session::{ConnectOptions, Session};
use crate::tracker::{CallOutcome, CallTracker};
use crate::ClientError;

/// A kiosk client with its device token.
///
/// It remembers its session id, so [`HeadlessKiosk::reconnect`] resumes the same session, and the
/// call it requested, so [`HeadlessKiosk::cancel`] and [`HeadlessKiosk::follow`] need no argument.
/// Events not yet taken when the connection is dropped are carried over to the next connection, in
/// front of the new ones, except `state.sync`: the new session's own `state.sync` supersedes it.
pub struct HeadlessKiosk {
    ws_url: String,
    token: String,
    capabilities: Vec<Capability>,
    options: ConnectOptions,
    session: Session,
    auth: AuthOk,
    call_id: Option<String>,
    /// The arrival number, in the current session, of the `call.request` reply: a `state.sync` that
    /// arrived before it predates the call. 0 after a reconnect, when every `state.sync` is current.
    call_seq: u64,
    tracker: Option<CallTracker>,
    /// The call's media kept by the kiosk, which follows `media.reconnect`.
    media: Option<CallMedia>,
}

impl std::fmt::Debug for HeadlessKiosk {
    // Written by hand so the device token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadlessKiosk")
            .field("ws_url", &self.ws_url)
            .field("capabilities", &self.capabilities)
            .field("session", &self.session)
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

impl HeadlessKiosk {
    /// Connects to `ws_url` (the WebSocket endpoint, see [`crate::ws_url`]) with the kiosk's device
    /// token, declaring `capabilities` (empty: the session gets every kiosk event).
    pub async fn connect(
        ws_url: &str,
        token: &str,
        capabilities: Vec<Capability>,
    ) -> Result<HeadlessKiosk, ClientError> {
        Self::connect_with(ws_url, token, capabilities, ConnectOptions::default()).await
    }

    /// [`HeadlessKiosk::connect`] with explicit [`ConnectOptions`].
    pub async fn connect_with(
        ws_url: &str,
        token: &str,
        capabilities: Vec<Capability>,
        options: ConnectOptions,
    ) -> Result<HeadlessKiosk, ClientError> {
        let auth = Auth {
            token: token.to_owned(),
            resume: None,
            capabilities: capabilities.clone(),
        };
        let (session, auth_ok) = Session::connect_with(ws_url, auth, &options).await?;
        Ok(HeadlessKiosk {
            ws_url: ws_url.to_owned(),
            token: token.to_owned(),
            capabilities,
            options,
            session,
            auth: auth_ok,
            call_id: None,
            call_seq: 0,
            tracker: None,
            media: None,
        })
    }

    /// Negotiates real media for the kiosk's current call (see [`crate::media::start_media`]).
    pub async fn start_media(
        &self,
        options: crate::media::ClientOptions,
    ) -> Result<crate::media::MediaClient, ClientError> {
        let call_id = self.call_id.as_deref().ok_or(ClientError::NoCall)?;
        crate::media::start_media(&self.session.requester(), call_id, options).await
    }

    /// Negotiates real media for the kiosk's current call and keeps it in the kiosk, which then
    /// follows `media.reconnect` for that call: [`HeadlessKiosk::follow`] and
    /// [`HeadlessKiosk::wait_media_reconnect`] offer again from a new peer connection when it
    /// arrives. Media kept from an earlier call is closed first. Read it with
    /// [`HeadlessKiosk::media`].
    pub async fn start_call_media(
        &mut self,
        options: crate::media::ClientOptions,
    ) -> Result<(), ClientError> {
        let call_id = self.call_id.clone().ok_or(ClientError::NoCall)?;
        self.stop_media();
        let media = CallMedia::start(&self.session.requester(), &call_id, options).await?;
        self.media = Some(media);
        Ok(())
    }

    /// The media kept by [`HeadlessKiosk::start_call_media`], if any.
    pub fn media(&self) -> Option<&CallMedia> {
        self.media.as_ref()
    }

    /// How many times the kept media followed `media.reconnect` (0 without kept media).
    pub fn media_reconnects(&self) -> u64 {
        self.media.as_ref().map_or(0, CallMedia::reconnects)
    }

    /// Closes and forgets the kept media.
    pub fn stop_media(&mut self) {
        if let Some(media) = self.media.take() {
            media.close();
        }
    }

    /// Waits for the next `media.reconnect` about the kept media's call (other events stay
    /// buffered), offers again from a new peer connection, and returns the number of reconnects
    /// so far. [`ClientError::NoCall`] without kept media.
    pub async fn wait_media_reconnect(&mut self, timeout: Duration) -> Result<u64, ClientError> {
        let media = self.media.as_mut().ok_or(ClientError::NoCall)?;
        let event = self
            .session
            .wait_for(timeout, |event| media.wants(event))
            .await?;
        media.handle(&event).await?;
        Ok(media.reconnects())
    }

    /// The current session, for requests and events the kiosk API does not cover. After
    /// [`HeadlessKiosk::disconnect`] it is a closed session that still holds the undelivered events.
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The reply to the last successful `auth`.
    pub fn auth_ok(&self) -> &AuthOk {
        &self.auth
    }

    /// The kiosk id.
    pub fn kiosk_id(&self) -> &str {
        &self.auth.principal_id
    }

    /// The WebSocket URL of the current (or last) connection.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The call requested last, if any.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// The tracker of the call requested last, as [`HeadlessKiosk::follow`] left it.
    pub fn tracker(&self) -> Option<&CallTracker> {
        self.tracker.as_ref()
    }

    /// Sends `call.request` and remembers the call. `language` is e.g. `"it"`; `priority` is 0–9.
    pub async fn request_call(
        &mut self,
        service: &str,
        language: &str,
        priority: Option<u8>,
    ) -> Result<String, ClientError> {
        let request = Request::CallRequest(CallRequest {
            service: service.to_owned(),
            language: language.to_owned(),
            priority,
        });
        let (seq, body) = self.session.request_stamped(&request).await?;
        let created: CallCreated = serde_json::from_value(body.clone()).map_err(|e| {
            ClientError::Protocol(format!("unexpected call.request reply {body}: {e}"))
        })?;
        self.call_id = Some(created.call_id.clone());
        self.call_seq = seq;
        self.tracker = Some(CallTracker::new(created.call_id.clone()));
        Ok(created.call_id)
    }

    /// Sends `call.cancel` for the remembered call. The call stays remembered: its `call.ended`
    /// (reason `abandoned`) can still be followed.
    pub async fn cancel(&mut self) -> Result<(), ClientError> {
        let call_id = self.call_id.clone().ok_or(ClientError::NoCall)?;
        self.session
            .request(&Request::CallCancel(CallRef { call_id }))
            .await
            .map(|_| ())
    }

    /// Drops the socket without a close frame (a network cut) and reconnects to the same URL with
    /// `resume` set to the previous session id. Returns the new `auth` reply; its `resumed` says
    /// whether the server still had the session. The next `state.sync` in [`HeadlessKiosk::session`]
    /// is the new session's.
    pub async fn reconnect(&mut self) -> Result<AuthOk, ClientError> {
        let url = self.ws_url.clone();
        self.reconnect_to(&url).await
    }

    /// Like [`HeadlessKiosk::reconnect`], against another server (another node of the cluster).
    /// On failure the kiosk stays disconnected and can try again.
    pub async fn reconnect_to(&mut self, ws_url: &str) -> Result<AuthOk, ClientError> {
        self.session.cut().await;
        let auth = Auth {
            token: self.token.clone(),
            resume: Some(self.auth.session_id.clone()),
            capabilities: self.capabilities.clone(),
        };
        let (mut session, auth_ok) = Session::connect_with(ws_url, auth, &self.options).await?;
        self.session.carry_over_into(&mut session);
        self.session = session;
        if let Some(media) = &mut self.media {
            media.set_requester(self.session.requester());
        }
        self.ws_url = ws_url.to_owned();
        self.auth = auth_ok.clone();
        // Every state.sync of the new session was sent while the call existed.
        self.call_seq = 0;
        Ok(auth_ok)
    }

    /// Drops the socket without a close frame and stays disconnected (for tests past the grace
    /// period). [`HeadlessKiosk::reconnect`] works afterwards.
    pub async fn disconnect(&mut self) {
        self.session.cut().await;
    }

    /// Closes the connection normally (close frame 1000). The kiosk cannot reconnect afterwards.
    pub async fn close(self) {
        self.session.close().await;
    }

    /// Consumes events until the remembered call ends, for at most `until`, tracking its state
    /// (waiting with position and estimated wait, assigned, held, resumed, requeued). Returns how
    /// it ended. Events about other things stay buffered in the session.
    ///
    /// The call also counts as ended, with reason [`crate::REASON_GONE`], when a `state.sync` sent
    /// after the call was created no longer lists it (it ended while the kiosk was away).
    /// [`ClientError::Timeout`] leaves the tracked state in [`HeadlessKiosk::tracker`].
    ///
    /// With media kept by [`HeadlessKiosk::start_call_media`], a `media.reconnect` for the call is
    /// followed on the way (a failed re-offer is logged; the call goes on being followed).
    pub async fn follow(&mut self, until: Duration) -> Result<CallOutcome, ClientError> {
        self.follow_with(until, |_| {}).await
    }

    /// [`HeadlessKiosk::follow`], calling `on_event` with each event about the call as it is applied.
    ///
    /// Cancel-safe: dropping the future (for example in a `tokio::select!` with a timer) loses no
    /// event and keeps the tracked state, so following can simply start again. The one exception
    /// is a drop while kept media is offering again after `media.reconnect`: that new connection
    /// may then stay unanswered; [`HeadlessKiosk::start_call_media`] negotiates afresh.
    pub async fn follow_with(
        &mut self,
        until: Duration,
        mut on_event: impl FnMut(&Event),
    ) -> Result<CallOutcome, ClientError> {
        let deadline = crate::session::deadline_after(until);
        loop {
            let tracker = self.tracker.as_mut().ok_or(ClientError::NoCall)?;
            if let Some(outcome) = tracker.outcome() {
                return Ok(outcome);
            }
            let call_seq = self.call_seq;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let media = self.media.as_mut();
            let (_, event) = self
                .session
                .wait_for_stamped(remaining, |seq, event| {
                    is_about(event, tracker.call_id(), seq, call_seq)
                        || media.as_ref().is_some_and(|m| m.wants(event))
                })
                .await?;
            if let Some(media) = self.media.as_mut().filter(|m| m.wants(&event)) {
                if let Err(e) = media.handle(&event).await {
                    tracing::warn!(error = %e, "kiosk: offering media again after media.reconnect failed");
                }
                continue;
            }
            if tracker.apply(&event) {
                on_event(&event);
            }
        }
    }
}

/// Whether `event` is about `call_id`, counting a `state.sync` only when it arrived after the call
/// was created (`seq > call_seq`; carried-over events have `seq` 0).
fn is_about(event: &Event, call_id: &str, seq: u64, call_seq: u64) -> bool {
    match event {
        Event::QueueUpdate(e) => e.call_id == call_id,
        Event::CallAssigned(e) => e.call_id == call_id,
        Event::CallHeld(e) | Event::CallResumed(e) => e.call_id == call_id,
        Event::CallRequeued(e) => e.call_id == call_id,
        Event::CallEnded(e) => e.call_id == call_id,
        Event::StateSync(_) => seq > call_seq,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{QueueUpdate, StateSync};

    #[test]
    fn only_state_syncs_after_the_call_count() {
        let sync = Event::StateSync(StateSync {
            calls: vec![],
            operator_state: None,
            dispositions: None,
        });
        assert!(!is_about(&sync, "c1", 1, 2));
        assert!(is_about(&sync, "c1", 3, 2));
        assert!(!is_about(&sync, "c1", 0, 0));
        assert!(is_about(&sync, "c1", 1, 0));
        let update = Event::QueueUpdate(QueueUpdate {
            call_id: "c1".into(),
            position: 1,
            estimated_wait_s: None,
            estimated_wait_low_s: None,
            estimated_wait_high_s: None,
        });
        assert!(is_about(&update, "c1", 0, 5));
        assert!(!is_about(&update, "c2", 9, 0));
    }
}
