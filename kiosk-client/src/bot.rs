//! Operator bots: an operator that logs in over HTTP, connects, and answers offers by a [`Policy`]
//! — for end-to-end tests now, and for the load test.
//!
//! With [`Policy::Manual`] a test drives the operator itself through [`OperatorBot::session`] and the
//! helper methods. With the other policies [`OperatorBot::spawn`] runs the bot in a task: every offer
//! is handled on its own (one small task per call), so a bot with a capacity above one holds several
//! calls at once. The task's counters are shared through [`BotHandle`]. A bot made
//! [`OperatorBot::with_media`] follows `media.reconnect` for its calls (counted in
//! [`BotStats::media_reconnects`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use protocol::{
    Auth, AuthOk, CallOffered, CallRef, ErrorBody, ErrorCode, Event, LoginRequest, LoginResponse,
    PresenceSet, PresenceState, Request,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::session::{ConnectOptions, Requester, Session};
use crate::ClientError;

/// The disposition bots close their wrap-ups with: one of the server's default dispositions
/// (`informazioni`, an information call). A server configured without it refuses the bots'
/// `wrapup.done`, and their wrap-ups end by timeout.
pub const BOT_DISPOSITION: &str = "informazioni";

/// How a spawned bot answers offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// The bot does nothing by itself; a test drives it through [`OperatorBot::session`]. Spawned,
    /// it only counts events.
    Manual,
    /// Accept each `call.offered` after `after`. With `talk`, send `call.end` after talking that
    /// long (otherwise keep the call until someone else ends it); then, with `wrapup`, send
    /// `wrapup.done` after that long, unless the wrap-up ended by itself first.
    Accept {
        /// Delay between the offer and `call.accept`.
        after: Duration,
        /// Conversation length before `call.end`; `None` never ends calls.
        talk: Option<Duration>,
        /// Wrap-up length before `wrapup.done`; `None` leaves the wrap-up to the server's timeout.
        wrapup: Option<Duration>,
    },
    /// Reject every offer at once.
    Reject,
    /// Let every offer expire.
    Ignore,
}

/// What a spawned bot did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotStats {
    /// `call.offered` events received.
    pub offers: u64,
    /// Successful `call.accept` requests.
    pub accepted: u64,
    /// Successful `call.reject` requests.
    pub rejected: u64,
    /// `call.ended` events received (for this operator's calls, whatever the reason).
    pub ended: u64,
    /// `call.ended` events by reason.
    pub ended_by_reason: BTreeMap<String, u64>,
    /// `call.offer_revoked` events received.
    pub revoked: u64,
    /// `call.offer_revoked` events by reason.
    pub revoked_by_reason: BTreeMap<String, u64>,
    /// Successful `call.end` requests.
    pub calls_ended_by_bot: u64,
    /// Successful `wrapup.done` requests.
    pub wrapups_done: u64,
    /// `wrapup.ended` events received.
    pub wrapups_ended: u64,
    /// Calls connected to this operator now (accepted or `call.connected`, and not ended).
    pub current_calls: BTreeSet<String>,
    /// The operator's last known state (`available`, `paused`, `offline`, `wrapup`), from
    /// `operator.state` or `state.sync`.
    pub operator_state: Option<String>,
    /// Requests that failed unexpectedly.
    pub errors: u64,
    /// The last unexpected failure.
    pub last_error: Option<String>,
    /// Whether the connection is gone (the bot's loop then stops).
    pub disconnected: bool,
    /// Calls for which media was negotiated (bots made [`OperatorBot::with_media`]).
    pub media_calls: u64,
    /// Video RTP packets received over all media calls (counted when each conversation ends).
    pub media_video_packets: u64,
    /// Audio RTP packets received, likewise.
    pub media_audio_packets: u64,
    /// `media.reconnect` events received for this operator's calls.
    pub media_reconnect_events: u64,
    /// Times a call's media was offered again, from a new peer connection, after `media.reconnect`
    /// (answered offers).
    pub media_reconnects: u64,
}

/// An operator client.
pub struct OperatorBot {
    session: Session,
    policy: Policy,
    ws_url: String,
    token: String,
    options: ConnectOptions,
    media: Option<crate::media::ClientOptions>,
}

impl std::fmt::Debug for OperatorBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written by hand so the token never reaches a log.
        f.debug_struct("OperatorBot")
            .field("ws_url", &self.ws_url)
            .field("session", &self.session)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OperatorBot {
    /// Logs in with `POST {base}/api/v1/login` and returns the token. `http_base_url` is the server's
    /// base URL (`http(s)://host:port`; a `ws(s)://…/api/v1/ws` URL works too). A `401` is
    /// [`ClientError::Refused`] with [`ErrorCode::Unauthorized`].
    pub async fn login(
        http_base_url: &str,
        username: &str,
        password: &str,
    ) -> Result<String, ClientError> {
        Self::login_with(
            http_base_url,
            username,
            password,
            &ConnectOptions::default(),
        )
        .await
        .map(|response| response.token)
    }

    /// [`OperatorBot::login`] with explicit options, returning the whole login response.
    pub async fn login_with(
        http_base_url: &str,
        username: &str,
        password: &str,
        options: &ConnectOptions,
    ) -> Result<LoginResponse, ClientError> {
        let base = crate::http_base_url(http_base_url)?;
        let client = crate::tls::http_client(options.extra_ca_pem.as_deref())?;
        let url = format!("{base}/api/v1/login");
        let response = client
            .post(&url)
            .json(&LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            })
            .send()
            .await
            .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| ClientError::Protocol(format!("unexpected login response: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => Err(ClientError::Refused {
                code: error.code,
                message: error.message,
            }),
            Err(_) if status.as_u16() == 401 => Err(ClientError::Refused {
                code: ErrorCode::Unauthorized,
                message: "login refused".into(),
            }),
            Err(_) => Err(ClientError::Protocol(format!(
                "login answered HTTP {status}"
            ))),
        }
    }

    /// Connects to `ws_url` (the WebSocket endpoint, see [`crate::ws_url`]) with a login token.
    pub async fn connect(
        ws_url: &str,
        token: &str,
        policy: Policy,
    ) -> Result<OperatorBot, ClientError> {
        Self::connect_with(ws_url, token, policy, &ConnectOptions::default()).await
    }

    /// [`OperatorBot::connect`] with explicit [`ConnectOptions`].
    pub async fn connect_with(
        ws_url: &str,
        token: &str,
        policy: Policy,
        options: &ConnectOptions,
    ) -> Result<OperatorBot, ClientError> {
        let auth = Auth {
            token: token.to_owned(),
            resume: None,
            capabilities: Vec::new(),
        };
        let (session, _) = Session::connect_with(ws_url, auth, options).await?;
        Ok(OperatorBot {
            session,
            policy,
            ws_url: ws_url.to_owned(),
            token: token.to_owned(),
            options: options.clone(),
            media: None,
        })
    }

    /// A spawned bot with [`Policy::Accept`] also negotiates real media for each call it accepts
    /// (sending synthetic audio and video) and counts what it receives.
    pub fn with_media(mut self, options: crate::media::ClientOptions) -> Self {
        self.media = Some(options);
        self
    }

    /// Negotiates media for one of this operator's calls (see [`crate::media::start_media`]).
    pub async fn start_media(
        &self,
        call_id: &str,
        options: crate::media::ClientOptions,
    ) -> Result<crate::media::MediaClient, ClientError> {
        crate::media::start_media(&self.session.requester(), call_id, options).await
    }

    /// Negotiates media for one of this operator's calls as a [`crate::media::CallMedia`], which
    /// follows `media.reconnect` when the events read from [`OperatorBot::session`] are given to
    /// [`crate::media::CallMedia::handle`] (see also [`OperatorBot::wait_media_reconnect`]).
    pub async fn start_call_media(
        &self,
        call_id: &str,
        options: crate::media::ClientOptions,
    ) -> Result<crate::media::CallMedia, ClientError> {
        crate::media::CallMedia::start(&self.session.requester(), call_id, options).await
    }

    /// Waits for the next `media.reconnect` about `media`'s call (other events stay buffered) and
    /// offers again from a new peer connection. Returns the number of reconnects so far.
    pub async fn wait_media_reconnect(
        &mut self,
        media: &mut crate::media::CallMedia,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        let event = self
            .session
            .wait_for(timeout, |event| media.wants(event))
            .await?;
        media.handle(&event).await?;
        Ok(media.reconnects())
    }

    /// Drops the socket without a close frame (a network cut) and reconnects to the same URL with
    /// `resume` set to the previous session id. Returns the new `auth` reply; its `resumed` says
    /// whether the server still had the session. Events not yet taken are carried over, in front of
    /// the new ones, except `state.sync` (the new session's own supersedes it).
    pub async fn reconnect(&mut self) -> Result<AuthOk, ClientError> {
        let url = self.ws_url.clone();
        self.reconnect_to(&url).await
    }

    /// Like [`OperatorBot::reconnect`], against another server (another node of the cluster). On
    /// failure the bot stays disconnected and can try again.
    pub async fn reconnect_to(&mut self, ws_url: &str) -> Result<AuthOk, ClientError> {
        self.session.cut().await;
        let auth = Auth {
            token: self.token.clone(),
            resume: Some(self.session.session_id().to_owned()),
            capabilities: Vec::new(),
        };
        let (mut session, auth_ok) = Session::connect_with(ws_url, auth, &self.options).await?;
        self.session.carry_over_into(&mut session);
        self.session = session;
        self.ws_url = ws_url.to_owned();
        Ok(auth_ok)
    }

    /// Drops the socket without a close frame and stays disconnected (for tests past the grace
    /// period). [`OperatorBot::reconnect`] works afterwards.
    pub async fn disconnect(&mut self) {
        self.session.cut().await;
    }

    /// Closes the connection normally (close frame 1000).
    pub async fn close(self) {
        self.session.close().await;
    }

    /// The session, to send requests and read events directly (the way [`Policy::Manual`] is used).
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The `auth` reply.
    pub fn auth_ok(&self) -> &AuthOk {
        self.session.auth_ok()
    }

    /// The operator's user name.
    pub fn operator_id(&self) -> &str {
        self.session.principal_id()
    }

    /// The bot's policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Sends `presence.set {"state":"available"}`.
    pub async fn go_available(&self) -> Result<(), ClientError> {
        self.set_presence(PresenceState::Available, None).await
    }

    /// Sends `presence.set` with this state and optional reason.
    pub async fn set_presence(
        &self,
        state: PresenceState,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        self.session
            .request(&Request::PresenceSet(PresenceSet { state, reason }))
            .await
            .map(|_| ())
    }

    /// Waits for the next `call.offered` (other events stay buffered).
    pub async fn wait_offer(&mut self, timeout: Duration) -> Result<CallOffered, ClientError> {
        match self
            .session
            .wait_for(timeout, |e| matches!(e, Event::CallOffered(_)))
            .await?
        {
            Event::CallOffered(offer) => Ok(offer),
            other => Err(ClientError::Protocol(format!(
                "expected call.offered, got {}",
                other.kind()
            ))),
        }
    }

    /// Sends `call.accept`.
    pub async fn accept(&self, call_id: &str) -> Result<(), ClientError> {
        self.call_request(Request::CallAccept, call_id).await
    }

    /// Sends `call.reject`.
    pub async fn reject(&self, call_id: &str) -> Result<(), ClientError> {
        self.call_request(Request::CallReject, call_id).await
    }

    /// Sends `call.hold`.
    pub async fn hold(&self, call_id: &str) -> Result<(), ClientError> {
        self.call_request(Request::CallHold, call_id).await
    }

    /// Sends `call.resume`.
    pub async fn resume(&self, call_id: &str) -> Result<(), ClientError> {
        self.call_request(Request::CallResume, call_id).await
    }

    /// Sends `call.end`.
    pub async fn end_call(&self, call_id: &str) -> Result<(), ClientError> {
        self.call_request(Request::CallEnd, call_id).await
    }

    /// Sends `wrapup.done` with the disposition [`BOT_DISPOSITION`].
    pub async fn wrapup_done(&self, call_id: &str) -> Result<(), ClientError> {
        self.wrapup_done_with(call_id, BOT_DISPOSITION, None).await
    }

    /// Sends `wrapup.done` with a disposition and optional notes.
    pub async fn wrapup_done_with(
        &self,
        call_id: &str,
        disposition: &str,
        notes: Option<&str>,
    ) -> Result<(), ClientError> {
        self.session
            .request(&Request::WrapupDone(protocol::outcome::WrapupDone {
                call_id: call_id.to_owned(),
                disposition: Some(disposition.to_owned()),
                notes: notes.map(str::to_owned),
            }))
            .await
            .map(|_| ())
    }

    async fn call_request(
        &self,
        make: fn(CallRef) -> Request,
        call_id: &str,
    ) -> Result<(), ClientError> {
        self.session
            .request(&make(CallRef {
                call_id: call_id.to_owned(),
            }))
            .await
            .map(|_| ())
    }

    /// Runs the policy loop in a task. The loop ends on [`BotHandle::stop`], when the handle is
    /// dropped, or when the connection is gone.
    pub fn spawn(self) -> BotHandle {
        let (stats_tx, stats_rx) = watch::channel(BotStats::default());
        let stats_tx = Arc::new(stats_tx);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run_bot(self, stats_tx, stop_rx));
        BotHandle {
            stats: stats_rx,
            stop: Some(stop_tx),
            task,
        }
    }
}

/// A running bot: its counters, and the way to stop it. Dropping the handle stops the bot too.
#[derive(Debug)]
pub struct BotHandle {
    stats: watch::Receiver<BotStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<OperatorBot>,
}

impl BotHandle {
    /// A snapshot of the counters.
    pub fn stats(&self) -> BotStats {
        self.stats.borrow().clone()
    }

    /// The calls connected to the operator now.
    pub fn current_calls(&self) -> Vec<String> {
        self.stats.borrow().current_calls.iter().cloned().collect()
    }

    /// Waits until `pred` holds for the counters; returns them then.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl FnMut(&BotStats) -> bool,
    ) -> Result<BotStats, ClientError> {
        let mut stats = self.stats.clone();
        let waited = tokio::time::timeout(timeout, stats.wait_for(pred))
            .await
            .map(|found| found.map(|stats| stats.clone()));
        match waited {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(stats)) => Ok(stats),
        }
    }

    /// Whether the bot's loop ended (stopped, or the connection is gone).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the loop (calls in progress are left as they are: the per-call tasks are aborted) and
    /// gives the bot back, with its session and any events not consumed. `None` if the task
    /// panicked.
    pub async fn stop(mut self) -> Option<OperatorBot> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.ok()
    }
}

/// What the loop tells a call's task.
#[derive(Debug, Clone, Default)]
struct CallSignal {
    revoked: bool,
    ended: Option<String>,
    wrapup_ended: bool,
    /// `media.reconnect` events for the call so far, and the last one's reason.
    reconnects: u64,
    reconnect_reason: String,
}

struct CallTask {
    signal: watch::Sender<CallSignal>,
    task: JoinHandle<()>,
}

type Stats = Arc<watch::Sender<BotStats>>;

fn record_error(stats: &Stats, what: &str, call_id: &str, error: &ClientError) {
    tracing::debug!(%call_id, %error, "bot: {what} failed");
    stats.send_modify(|s| {
        s.errors += 1;
        s.last_error = Some(format!("{what} {call_id}: {error}"));
    });
}

/// Whether a refusal only says the call moved on already (so it is not worth an error).
fn is_stale(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Refused {
            code: ErrorCode::Conflict | ErrorCode::NotFound,
            ..
        }
    )
}

async fn run_bot(
    mut bot: OperatorBot,
    stats: Stats,
    mut stop: oneshot::Receiver<()>,
) -> OperatorBot {
    let mut calls: HashMap<String, CallTask> = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            event = bot.session.next_event(Duration::from_secs(3600)) => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(ClientError::Timeout) => continue,
            Err(_) => {
                stats.send_modify(|s| s.disconnected = true);
                break;
            }
        };
        calls.retain(|_, call| !call.task.is_finished());
        handle_event(&bot, &event, &stats, &mut calls);
    }
    for (_, call) in calls.drain() {
        call.task.abort();
    }
    bot
}

fn handle_event(
    bot: &OperatorBot,
    event: &Event,
    stats: &Stats,
    calls: &mut HashMap<String, CallTask>,
) {
    let signal = |calls: &HashMap<String, CallTask>, id: &str, f: &dyn Fn(&mut CallSignal)| {
        if let Some(call) = calls.get(id) {
            call.signal.send_modify(f);
        }
    };
    match event {
        Event::CallOffered(offer) => {
            stats.send_modify(|s| s.offers += 1);
            let requester = bot.session.requester();
            let call_id = offer.call_id.clone();
            match &bot.policy {
                Policy::Manual | Policy::Ignore => {}
                Policy::Reject => {
                    let stats = stats.clone();
                    let (signal, _) = watch::channel(CallSignal::default());
                    let task = tokio::spawn(reject_call(requester, call_id.clone(), stats));
                    calls.insert(call_id, CallTask { signal, task });
                }
                Policy::Accept {
                    after,
                    talk,
                    wrapup,
                } => {
                    let (signal, signal_rx) = watch::channel(CallSignal::default());
                    let plan = Plan {
                        after: *after,
                        talk: *talk,
                        wrapup: *wrapup,
                    };
                    let task = tokio::spawn(accept_call(
                        requester,
                        call_id.clone(),
                        plan,
                        bot.media.clone(),
                        signal_rx,
                        stats.clone(),
                    ));
                    if let Some(old) = calls.insert(call_id, CallTask { signal, task }) {
                        old.task.abort();
                    }
                }
            }
        }
        Event::CallOfferRevoked(revoked) => {
            stats.send_modify(|s| {
                s.revoked += 1;
                *s.revoked_by_reason
                    .entry(revoked.reason.clone())
                    .or_default() += 1;
            });
            signal(calls, &revoked.call_id, &|s| s.revoked = true);
        }
        Event::CallConnected(connected) => {
            stats.send_modify(|s| {
                s.current_calls.insert(connected.call_id.clone());
            });
        }
        Event::CallEnded(ended) => {
            stats.send_modify(|s| {
                s.ended += 1;
                *s.ended_by_reason.entry(ended.reason.clone()).or_default() += 1;
                s.current_calls.remove(&ended.call_id);
            });
            signal(calls, &ended.call_id, &|s| {
                s.ended = Some(ended.reason.clone())
            });
        }
        // Only for the calls this bot has a task for; another call's event is ignored.
        Event::MediaReconnect(reconnect) if calls.contains_key(&reconnect.call_id) => {
            stats.send_modify(|s| s.media_reconnect_events += 1);
            signal(calls, &reconnect.call_id, &|s| {
                s.reconnects += 1;
                s.reconnect_reason = reconnect.reason.clone();
            });
        }
        Event::WrapupEnded(call) => {
            stats.send_modify(|s| s.wrapups_ended += 1);
            signal(calls, &call.call_id, &|s| s.wrapup_ended = true);
        }
        Event::OperatorState(state) => {
            stats.send_modify(|s| s.operator_state = Some(state.state.clone()));
        }
        Event::StateSync(sync) => {
            if let Some(state) = &sync.operator_state {
                stats.send_modify(|s| s.operator_state = Some(state.state.clone()));
            }
        }
        _ => {}
    }
}

async fn reject_call(requester: Requester, call_id: String, stats: Stats) {
    let request = Request::CallReject(CallRef {
        call_id: call_id.clone(),
    });
    match requester.request(&request).await {
        Ok(_) => stats.send_modify(|s| s.rejected += 1),
        Err(e) if is_stale(&e) => {}
        Err(e) => record_error(&stats, "call.reject", &call_id, &e),
    }
}

/// The timings of [`Policy::Accept`].
#[derive(Debug, Clone, Copy)]
struct Plan {
    after: Duration,
    talk: Option<Duration>,
    wrapup: Option<Duration>,
}

/// Waits up to `limit` for `pred` to hold on the call's signal. `true` when it held (or the bot's
/// loop is gone, which also means: stop), `false` when the time ran out.
async fn signalled(
    signal: &mut watch::Receiver<CallSignal>,
    limit: Duration,
    pred: impl FnMut(&CallSignal) -> bool,
) -> bool {
    let waited = tokio::time::timeout(limit, signal.wait_for(pred))
        .await
        .map(|_| ());
    waited.is_ok()
}

async fn accept_call(
    requester: Requester,
    call_id: String,
    plan: Plan,
    media: Option<crate::media::ClientOptions>,
    mut signal: watch::Receiver<CallSignal>,
    stats: Stats,
) {
    let this_call = || CallRef {
        call_id: call_id.clone(),
    };
    // 1. Think, unless the offer goes away meanwhile.
    if signalled(&mut signal, plan.after, |s| s.revoked || s.ended.is_some()).await {
        return;
    }
    match requester.request(&Request::CallAccept(this_call())).await {
        Ok(_) => stats.send_modify(|s| {
            s.accepted += 1;
            s.current_calls.insert(call_id.clone());
        }),
        Err(e) => {
            if !(signal.borrow().revoked && is_stale(&e)) {
                record_error(&stats, "call.accept", &call_id, &e);
            }
            return;
        }
    }
    // With media: negotiate it for the conversation; it closes when this task ends. A
    // `media.reconnect` that came before the media started needs nothing more: the first offer
    // goes to wherever the server places the call's media now.
    let mut followed = signal.borrow().reconnects;
    let mut media = match media {
        Some(options) => {
            match crate::media::CallMedia::start(&requester, &call_id, options).await {
                Ok(media) => {
                    stats.send_modify(|s| s.media_calls += 1);
                    Some(media)
                }
                Err(e) => {
                    record_error(&stats, "media.offer", &call_id, &e);
                    None
                }
            }
        }
        None => None,
    };
    // Packets received by the connections replaced so far.
    let mut received = (0u64, 0u64);
    // 2. Talk, then end the call; or wait for someone else to end it. Meanwhile, offer the media
    // again after each `media.reconnect`.
    let deadline = plan.talk.map(crate::session::deadline_after);
    let ended_elsewhere = loop {
        let waiting = signal.wait_for(|s| s.ended.is_some() || s.reconnects > followed);
        let woke = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, waiting).await.ok(),
            None => Some(waiting.await),
        }
        .map(|r| r.map(|s| (s.ended.is_some(), s.reconnects, s.reconnect_reason.clone())));
        let reason = match woke {
            // The talk is over.
            None => break false,
            // The bot's loop is gone: stop as if the call ended.
            Some(Err(_)) | Some(Ok((true, _, _))) => break true,
            Some(Ok((false, reconnects, reason))) => {
                followed = reconnects;
                reason
            }
        };
        if let Some(media) = media.as_mut() {
            let before = media.client().stats();
            received.0 += before.packets("video");
            received.1 += before.packets("audio");
            match media.reconnect(&reason).await {
                Ok(()) => stats.send_modify(|s| s.media_reconnects += 1),
                Err(e) => record_error(&stats, "media.offer (reconnect)", &call_id, &e),
            }
        }
    };
    if let Some(media) = media {
        let last = media.client().stats();
        stats.send_modify(|s| {
            s.media_video_packets += received.0 + last.packets("video");
            s.media_audio_packets += received.1 + last.packets("audio");
        });
    }
    if !ended_elsewhere {
        match requester.request(&Request::CallEnd(this_call())).await {
            Ok(_) => stats.send_modify(|s| s.calls_ended_by_bot += 1),
            Err(e) if is_stale(&e) && signal.borrow().ended.is_some() => {}
            Err(e) => {
                record_error(&stats, "call.end", &call_id, &e);
                return;
            }
        }
    }
    // 3. Wrap up, unless the server ends the wrap-up first.
    let Some(wrapup) = plan.wrapup else {
        return;
    };
    if signalled(&mut signal, wrapup, |s| s.wrapup_ended).await {
        return;
    }
    let done = protocol::outcome::WrapupDone::with(call_id.clone(), BOT_DISPOSITION);
    match requester.request(&Request::WrapupDone(done)).await {
        Ok(_) => stats.send_modify(|s| s.wrapups_done += 1),
        // The wrap-up already ended, or the call left this operator without one (transfer).
        Err(e) if is_stale(&e) => {}
        Err(e) => record_error(&stats, "wrapup.done", &call_id, &e),
    }
}
