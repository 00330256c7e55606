//! A minimal client of Janus's WebSocket API (subprotocol `janus-protocol`) and its `videocall`
//! plugin, for `compare-janus`: one 1:1 call between two fresh headless
//! [`MediaClient`]s, the caller ("kiosk") and the callee ("operator").
//!
//! Each side has a WebSocket connection of its own carrying one Janus session (`create`) with one
//! handle on `janus.plugin.videocall` (`attach`), kept alive with a `keepalive` every
//! [`KEEPALIVE`]. The callee `register`s first, as an operator already waiting would. Then, timed
//! from before the caller's session exists: the caller registers, makes its offer and sends `call`
//! with it; the callee gets `incomingcall` with Janus's offer, answers it as a
//! [`MediaClient::start_answering_on`] and sends `accept` with the answer; the caller gets
//! `accepted` with Janus's answer. Both send `trickle` `{"completed": true}` (their one host
//! candidate is in their SDP already), and Janus, in half-trickle mode, puts its candidates in its
//! SDP too. [`call`] returns once both sides received their first video packet, which is the
//! call's join time. [`JanusCall::hangup`] sends `hangup`, waits for both sides' `hangup` event,
//! then `detach`es and `destroy`s both sessions.
//!
//! Janus never gathers loopback candidates, and a client on `127.0.0.1` cannot reach a Janus
//! candidate on another local address (ICE fails), so the media sockets bind `media_ip`, the
//! address Janus gathers candidates on (`testkit::janus::Janus::media_ip` for a private Janus).
//! Janus keeps only component 1 of the candidates in our SDPs (`rtc` also lists a component-2
//! copy, which rtcp-mux makes useless): its log warns "Failed to add some remote candidates
//! (added 1, expected 2)", which is harmless.
//!
//! Every frame received is parsed: a reply (`ack`, `success`, `error`) completes the request with
//! the same `transaction`; anything else (`event`, `webrtcup`, `media`, `hangup`, `slowlink`,
//! `detached`, `timeout`) is queued for the side's driver to read in order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use sfu::client::{ClientOptions, ClientStats, MediaClient};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The plugin a call goes through.
pub const PLUGIN: &str = "janus.plugin.videocall";
/// How often a session sends `keepalive` (Janus drops a session silent for 60 s by default).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// How long one request may wait for Janus's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One 1:1 videocall through Janus, in conversation. Dropping it closes both WebSocket
/// connections, which makes Janus end the call and the sessions; [`JanusCall::hangup`] ends it
/// the orderly way.
pub struct JanusCall {
    /// The caller's media ("kiosk").
    pub caller: MediaClient,
    /// The callee's media ("operator").
    pub callee: MediaClient,
    /// From before the caller's session was created until both sides had received their first
    /// video packet.
    pub join: Duration,
    /// The caller's and the callee's registered usernames.
    pub usernames: (String, String),
    caller_session: Session,
    callee_session: Session,
}

impl std::fmt::Debug for JanusCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JanusCall")
            .field("join", &self.join)
            .field("usernames", &self.usernames)
            .finish_non_exhaustive()
    }
}

/// Makes one call through the Janus at `ws_url` between two fresh [`MediaClient`]s sending with
/// `options`, their sockets on `media_ip`; usernames `<name>-<n>-kiosk` and `<name>-<n>-operator`
/// (`n` unique in the process, so calls can run at once). Returns once both sides have received
/// their first video packet, or fails after `timeout` saying which step did not happen.
pub async fn call(
    ws_url: &str,
    media_ip: IpAddr,
    name: &str,
    options: ClientOptions,
    timeout: Duration,
) -> anyhow::Result<JanusCall> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("a call's name must be non-empty ASCII letters, digits, `-`, `_` or `.`: {name:?}");
    }
    if options.monitor {
        bail!("a Janus videocall party sends and receives: monitor options do not fit");
    }
    let deadline = Instant::now() + timeout;
    let n = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    let caller_name = format!("{name}-{n}-kiosk");
    let callee_name = format!("{name}-{n}-operator");
    let bind = SocketAddr::new(media_ip, 0);
    let step = |what: String| move |e: anyhow::Error| e.context(what);

    let mut callee_session = Session::open(ws_url, &callee_name, deadline)
        .await
        .map_err(step(format!("the callee {callee_name} cannot register")))?;

    let started = Instant::now();
    let mut caller_session = Session::open(ws_url, &caller_name, deadline)
        .await
        .map_err(step(format!("the caller {caller_name} cannot register")))?;
    let caller = MediaClient::start_on(bind, options.clone())
        .await
        .with_context(|| format!("the caller's media client on {bind}"))?;
    caller_session
        .message(
            json!({"request": "call", "username": callee_name}),
            Some(json!({"type": "offer", "sdp": caller.offer()})),
            "calling",
            deadline,
        )
        .await
        .map_err(step(format!("{caller_name} cannot call {callee_name}")))?;
    caller_session.trickle_completed(deadline).await?;

    let incoming = callee_session
        .wait_event("incomingcall", deadline)
        .await
        .map_err(step(format!("{callee_name} gets no incoming call")))?;
    let offer = jsep_sdp(&incoming, "offer")
        .with_context(|| format!("{callee_name}'s incomingcall event"))?;
    let callee = MediaClient::start_answering_on(bind, options, &offer)
        .await
        .with_context(|| format!("{callee_name} cannot answer Janus's offer"))?;
    callee_session
        .message(
            json!({"request": "accept"}),
            Some(json!({"type": "answer", "sdp": callee.local_description()})),
            "accepted",
            deadline,
        )
        .await
        .map_err(step(format!("{callee_name} cannot accept the call")))?;
    callee_session.trickle_completed(deadline).await?;

    let accepted = caller_session
        .wait_event("accepted", deadline)
        .await
        .map_err(step(format!("{caller_name}'s call is not accepted")))?;
    let answer =
        jsep_sdp(&accepted, "answer").with_context(|| format!("{caller_name}'s accepted event"))?;
    caller
        .set_answer(answer)
        .await
        .with_context(|| format!("{caller_name} cannot apply Janus's answer"))?;

    let left = deadline.saturating_duration_since(Instant::now());
    let got_video = |s: &ClientStats| s.packets("video") > 0;
    let (a, b) = tokio::join!(
        caller.wait_for(left, got_video),
        callee.wait_for(left, got_video)
    );
    let join = started.elapsed();
    match (a, b) {
        (Ok(_), Ok(_)) => {}
        (a, b) => {
            let show = |r: Result<ClientStats, ClientStats>| {
                let s = r.unwrap_or_else(|s| s);
                format!(
                    "{} ({} video, {} audio packets received, {} sent)",
                    s.state,
                    s.packets("video"),
                    s.packets("audio"),
                    s.sent_packets
                )
            };
            bail!(
                "no video on both sides within {timeout:?}: caller {caller_name} {}, callee \
                 {callee_name} {}; Janus said to the caller: {}; to the callee: {}",
                show(a),
                show(b),
                caller_session.seen(),
                callee_session.seen()
            );
        }
    }
    Ok(JanusCall {
        caller,
        callee,
        join,
        usernames: (caller_name, callee_name),
        caller_session,
        callee_session,
    })
}

static NEXT_CALL: AtomicU64 = AtomicU64::new(0);

impl JanusCall {
    /// Hangs up from the caller's side, waits until both sides got Janus's `hangup` event, then
    /// detaches both handles and destroys both sessions. The media clients are closed.
    pub async fn hangup(self) -> anyhow::Result<()> {
        let JanusCall {
            caller,
            callee,
            usernames: (caller_name, callee_name),
            mut caller_session,
            mut callee_session,
            ..
        } = self;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        caller_session
            .message(json!({"request": "hangup"}), None, "hangup", deadline)
            .await
            .with_context(|| format!("{caller_name} cannot hang up"))?;
        callee_session
            .wait_event("hangup", deadline)
            .await
            .with_context(|| format!("{callee_name} is not told of the hangup"))?;
        caller.close();
        callee.close();
        for (session, who) in [(caller_session, caller_name), (callee_session, callee_name)] {
            session
                .close(deadline)
                .await
                .with_context(|| format!("{who}'s session does not end cleanly"))?;
        }
        Ok(())
    }
}

/// The `sdp` of a `jsep` of type `kind` in a Janus event.
fn jsep_sdp(event: &Value, kind: &str) -> anyhow::Result<String> {
    let jsep = event
        .get("jsep")
        .ok_or_else(|| anyhow!("no jsep in {}", brief(event)))?;
    let typ = jsep.get("type").and_then(Value::as_str).unwrap_or("");
    if typ != kind {
        bail!("expected a jsep {kind}, got {typ:?}");
    }
    jsep.get("sdp")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("a jsep {kind} without sdp"))
}

/// The videocall result's `event` name of a plugin event, if it is one.
fn videocall_event(frame: &Value) -> Option<&str> {
    frame
        .pointer("/plugindata/data/result/event")
        .and_then(Value::as_str)
}

/// A plugin error in a frame (`error_code` and `error` of the plugin's data), if any.
fn plugin_error(frame: &Value) -> Option<String> {
    let data = frame.pointer("/plugindata/data")?;
    let code = data.get("error_code")?;
    let text = data.get("error").and_then(Value::as_str).unwrap_or("");
    Some(format!("videocall error {code}: {text}"))
}

/// A Janus API error (`"janus": "error"`), if the frame is one.
fn api_error(frame: &Value) -> Option<String> {
    if frame.get("janus").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let code = frame.pointer("/error/code").cloned().unwrap_or(Value::Null);
    let reason = frame
        .pointer("/error/reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!("Janus error {code}: {reason}"))
}

/// A frame shortened for error messages (no SDP bodies).
fn brief(frame: &Value) -> String {
    let mut f = frame.clone();
    if let Some(sdp) = f.pointer_mut("/jsep/sdp") {
        *sdp = Value::String("…".to_owned());
    }
    let text = f.to_string();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One WebSocket connection with one Janus session and one videocall handle, registered under a
/// username.
struct Session {
    username: String,
    session_id: u64,
    handle_id: u64,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: mpsc::UnboundedReceiver<Value>,
    /// Short forms of the events read so far, for error messages.
    seen: Vec<String>,
    next_tx: u64,
    io: JoinHandle<()>,
    keepalive: Option<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.io.abort();
        if let Some(k) = &self.keepalive {
            k.abort();
        }
    }
}

impl Session {
    /// Connects, creates a session, attaches to the videocall plugin and registers `username`.
    async fn open(ws_url: &str, username: &str, deadline: Instant) -> anyhow::Result<Session> {
        let mut request = ws_url
            .into_client_request()
            .with_context(|| format!("bad Janus WebSocket URL {ws_url:?}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = tokio::time::timeout_at(deadline, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| anyhow!("connecting to {ws_url} timed out"))?
            .with_context(|| format!("cannot connect to Janus at {ws_url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let (event_tx, events) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let replies = pending.clone();
        let io = tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = outgoing.recv() => {
                        let Some(message) = next else { break };
                        let close = matches!(message, Message::Close(_));
                        if sink.send(message).await.is_err() || close {
                            break;
                        }
                    }
                    frame = stream.next() => {
                        let text = match frame {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                            Some(Ok(_)) => continue,
                        };
                        let Ok(value) = serde_json::from_str::<Value>(&text) else {
                            continue;
                        };
                        route(value, &replies, &event_tx);
                    }
                }
            }
            // Fail whoever still waits for a reply.
            replies.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        let mut session = Session {
            username: username.to_owned(),
            session_id: 0,
            handle_id: 0,
            out,
            pending,
            events,
            seen: Vec::new(),
            next_tx: 0,
            io,
            keepalive: None,
        };
        let created = session
            .request(json!({"janus": "create"}), deadline)
            .await?;
        session.session_id = id_of(&created).context("create")?;
        let attached = session
            .request(json!({"janus": "attach", "plugin": PLUGIN}), deadline)
            .await?;
        session.handle_id = id_of(&attached).context("attach")?;
        session.keepalive = Some(session.spawn_keepalive());
        session
            .message(
                json!({"request": "register", "username": username}),
                None,
                "registered",
                deadline,
            )
            .await?;
        Ok(session)
    }

    /// Sends `keepalive` every [`KEEPALIVE`] (the replies are not awaited).
    fn spawn_keepalive(&self) -> JoinHandle<()> {
        let out = self.out.clone();
        let session_id = self.session_id;
        let username = self.username.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                n += 1;
                let frame = json!({
                    "janus": "keepalive",
                    "session_id": session_id,
                    "transaction": format!("{username}-keepalive-{n}"),
                });
                if out.send(Message::text(frame.to_string())).is_err() {
                    return;
                }
            }
        })
    }

    /// Sends a Janus API request (adding `transaction`, and the session and handle once known)
    /// and waits for its reply: `success` or `ack`, or the error.
    async fn request(&mut self, mut body: Value, deadline: Instant) -> anyhow::Result<Value> {
        self.next_tx += 1;
        let transaction = format!("{}-{}", self.username, self.next_tx);
        body["transaction"] = json!(transaction);
        if self.session_id != 0 {
            body["session_id"] = json!(self.session_id);
        }
        if self.handle_id != 0 {
            body["handle_id"] = json!(self.handle_id);
        }
        let what = body["janus"].as_str().unwrap_or("?").to_owned();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(transaction.clone(), tx);
        self.out
            .send(Message::text(body.to_string()))
            .map_err(|_| anyhow!("the connection to Janus is closed ({what})"))?;
        let reply_by = deadline.min(Instant::now() + REPLY_TIMEOUT);
        let reply = match tokio::time::timeout_at(reply_by, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => bail!("the connection to Janus closed before it answered {what}"),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&transaction);
                bail!("Janus did not answer {what} in time");
            }
        };
        if let Some(e) = api_error(&reply) {
            bail!("{what}: {e}");
        }
        Ok(reply)
    }

    /// Sends a videocall request (with a `jsep` if given) and waits for the plugin's `expect`
    /// event, or its error.
    async fn message(
        &mut self,
        body: Value,
        jsep: Option<Value>,
        expect: &str,
        deadline: Instant,
    ) -> anyhow::Result<Value> {
        let mut frame = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            frame["jsep"] = jsep;
        }
        self.request(frame, deadline).await?;
        self.wait_event(expect, deadline).await
    }

    /// Waits for the videocall event `name`; fails on a plugin error, on a `hangup` that was not
    /// asked for, or at `deadline`. Other events are skipped (and remembered for error messages).
    async fn wait_event(&mut self, name: &str, deadline: Instant) -> anyhow::Result<Value> {
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => bail!(
                    "the connection to Janus closed while waiting for {name}; events: {}",
                    self.seen()
                ),
                Err(_) => bail!("no {name} event in time; events: {}", self.seen()),
            };
            self.seen.push(brief(&frame));
            if let Some(e) = plugin_error(&frame) {
                bail!("waiting for {name}: {e}");
            }
            let event = videocall_event(&frame);
            if event == Some(name) {
                return Ok(frame);
            }
            if event == Some("hangup") || (frame["janus"] == "hangup" && name != "hangup") {
                bail!(
                    "the call was hung up while waiting for {name}: {}",
                    brief(&frame)
                );
            }
        }
    }

    /// Tells Janus that all our candidates are known (they are in our SDP).
    async fn trickle_completed(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.request(
            json!({"janus": "trickle", "candidate": {"completed": true}}),
            deadline,
        )
        .await
        .with_context(|| format!("{}'s trickle", self.username))?;
        Ok(())
    }

    /// Detaches the handle, destroys the session and closes the connection.
    async fn close(mut self, deadline: Instant) -> anyhow::Result<()> {
        self.request(json!({"janus": "detach"}), deadline).await?;
        self.handle_id = 0;
        self.request(json!({"janus": "destroy"}), deadline).await?;
        // A close frame, and the connection's end once it is sent (dropping aborts the task).
        let _ = self.out.send(Message::Close(None));
        let _ = tokio::time::timeout_at(deadline, &mut self.io).await;
        Ok(())
    }

    /// The events read so far, for error messages.
    fn seen(&self) -> String {
        if self.seen.is_empty() {
            "(none)".to_owned()
        } else {
            self.seen.join(", ")
        }
    }
}

/// Routes one received frame: a reply to its waiting request, anything else to the events.
fn route(frame: Value, replies: &Pending, events: &mpsc::UnboundedSender<Value>) {
    let kind = frame.get("janus").and_then(Value::as_str).unwrap_or("");
    let is_reply = matches!(kind, "ack" | "success" | "error");
    if is_reply {
        if let Some(tx) = frame
            .get("transaction")
            .and_then(Value::as_str)
            .and_then(|t| replies.lock().unwrap_or_else(|e| e.into_inner()).remove(t))
        {
            let _ = tx.send(frame);
            return;
        }
        if kind != "error" {
            // A keepalive's ack, or a reply nobody waits for any more.
            return;
        }
    }
    let _ = events.send(frame);
}

/// `data.id` of a `success` reply.
fn id_of(reply: &Value) -> anyhow::Result<u64> {
    reply
        .pointer("/data/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("no data.id in {}", brief(reply)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_go_to_their_request_and_the_rest_to_events() {
        let pending: Pending = Arc::default();
        let (tx, mut events) = mpsc::unbounded_channel();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        pending.lock().unwrap().insert("a-1".into(), reply_tx);
        route(json!({"janus": "ack", "transaction": "a-1"}), &pending, &tx);
        assert_eq!(reply_rx.try_recv().unwrap()["janus"], "ack");
        // The event that follows the ack of a message carries the same transaction: an event.
        let event = json!({"janus": "event", "transaction": "a-1", "plugindata": {"plugin": PLUGIN,
            "data": {"videocall": "event", "result": {"event": "registered", "username": "x"}}}});
        route(event, &pending, &tx);
        let got = events.try_recv().unwrap();
        assert_eq!(videocall_event(&got), Some("registered"));
        // A keepalive's ack is dropped; an unexpected error is an event.
        route(json!({"janus": "ack", "transaction": "k-1"}), &pending, &tx);
        assert!(events.try_recv().is_err());
        route(
            json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}}),
            &pending,
            &tx,
        );
        let e = events.try_recv().unwrap();
        assert_eq!(
            api_error(&e).as_deref(),
            Some("Janus error 458: No such session")
        );
    }

    #[test]
    fn jsep_errors_and_briefs() {
        let e = json!({"janus": "event", "jsep": {"type": "offer", "sdp": "v=0\r\n"}});
        assert_eq!(jsep_sdp(&e, "offer").unwrap(), "v=0\r\n");
        assert!(jsep_sdp(&e, "answer").is_err());
        assert!(jsep_sdp(&json!({}), "offer").is_err());
        assert!(brief(&e).contains('…'), "the SDP is cut: {}", brief(&e));
        let err = json!({"plugindata": {"data": {"videocall": "event", "error_code": 476,
            "error": "Username 'x' already taken"}}});
        assert_eq!(
            plugin_error(&err).as_deref(),
            Some("videocall error 476: Username 'x' already taken")
        );
    }
}
