//! The protocol state of one WebSocket connection, as a core that does no I/O.
//!
//! The driver feeds it what arrives (`handle_text`, `handle_binary`, `handle_activity`), the passage
//! of time (`handle_timeout`) and shutdown (`begin_drain`, `close_now`), and drains what to do with
//! `poll_output`. Everything the protocol says about the opening handshake, framing, errors and the
//! heartbeat lives here, so tests can run it exactly with a fake clock. With `[turn]` it also hands
//! out TURN credentials: in the `auth` reply, then in an `ice.servers` event every half of their
//! lifetime, so a long session always holds credentials good for a new call.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use protocol::{
    parse_client_frame, Auth, AuthOk, ClientFrame, ErrorCode, Event, FrameError, Request, Role,
    ServerFrame, CLOSE_GOING_AWAY, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_MESSAGE_TOO_BIG,
    CLOSE_TOO_MANY_SESSIONS, CLOSE_UNAUTHORIZED, MAX_FRAME_BYTES,
};

use crate::accounts::Principal;
use crate::ws::turn::TurnIssuer;

/// Fixed settings of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Time allowed for the `auth` frame.
    pub auth_timeout: Duration,
    /// Ping interval; silence for twice this closes the socket.
    pub heartbeat: Duration,
    /// Largest accepted text frame, in bytes.
    pub max_frame: usize,
    /// Requests per second a session may send on average.
    pub rate_per_s: u32,
    /// Requests a session may send in a burst.
    pub rate_burst: u32,
}

impl Settings {
    /// The protocol's settings with the given heartbeat.
    pub fn with_heartbeat(heartbeat: Duration) -> Self {
        Settings {
            auth_timeout: Duration::from_secs(protocol::AUTH_TIMEOUT_S),
            heartbeat,
            max_frame: MAX_FRAME_BYTES,
            rate_per_s: 20,
            rate_burst: 40,
        }
    }

    /// These settings with a request rate limit.
    pub fn with_rate(self, rate_per_s: u32, rate_burst: u32) -> Self {
        Settings {
            rate_per_s: rate_per_s.max(1),
            rate_burst: rate_burst.max(1),
            ..self
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this text frame.
    Text(String),
    /// Send a WebSocket ping.
    Ping,
    /// Send a close frame with this code and reason, then end the connection. Nothing follows.
    Close {
        /// The close code.
        code: u16,
        /// A short reason.
        reason: String,
    },
    /// A request that the application layer (call lifecycle and the rest) must answer with
    /// [`Connection::reply`]. Boxed: a request is far larger than the other outputs.
    Dispatch(Box<ClientFrame>),
}

/// An authenticated session, as the opener returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The session id.
    pub session_id: String,
    /// Who the socket is.
    pub principal: Principal,
    /// Whether an earlier session was resumed.
    pub resumed: bool,
}

/// Checks `auth` frames and opens sessions. The server's implementation checks tokens against the
/// account directory and registers the session.
pub trait SessionOpener {
    /// Opens (or resumes) a session, or says why not.
    fn open(&mut self, now: Instant, auth: &Auth) -> Result<Opened, (ErrorCode, String)>;
}

#[derive(Debug)]
enum State {
    AwaitingAuth { deadline: Instant },
    Open(Open),
    Closed,
}

#[derive(Debug)]
struct Open {
    opened: Opened,
    last_seen: Instant,
    next_ping: Instant,
    drain_deadline: Option<Instant>,
    /// Request tokens left, and when they were last refilled.
    tokens: f64,
    refilled: Instant,
}

/// TURN credentials of one connection: the issuer, the wall clock at a known instant (so the
/// core keeps taking `Instant`s), and when the session's next `ice.servers` is due.
#[derive(Debug)]
struct Turn {
    issuer: TurnIssuer,
    base: Instant,
    base_unix_s: u64,
    next_refresh: Option<Instant>,
}

impl Turn {
    fn unix_at(&self, now: Instant) -> u64 {
        self.base_unix_s + now.saturating_duration_since(self.base).as_secs()
    }

    /// Half the credentials' lifetime: a session refreshes them this often.
    fn refresh_every(&self) -> Duration {
        Duration::from_secs((self.issuer.ttl_s() / 2).max(1))
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    settings: Settings,
    state: State,
    out: VecDeque<Output>,
    turn: Option<Turn>,
}

impl Connection {
    /// A connection whose socket opened at `now`.
    pub fn new(now: Instant, settings: Settings) -> Self {
        Connection {
            settings,
            state: State::AwaitingAuth {
                deadline: now + settings.auth_timeout,
            },
            out: VecDeque::new(),
            turn: None,
        }
    }

    /// This connection with TURN credentials from `issuer` (none when `None`); `now` is the
    /// instant at which the wall clock read `now_unix_s`.
    pub fn with_turn(mut self, issuer: Option<TurnIssuer>, now: Instant, now_unix_s: u64) -> Self {
        self.turn = issuer.map(|issuer| Turn {
            issuer,
            base: now,
            base_unix_s: now_unix_s,
            next_refresh: None,
        });
        self
    }

    /// The open session, once authenticated.
    pub fn session(&self) -> Option<&Opened> {
        match &self.state {
            State::Open(open) => Some(&open.opened),
            _ => None,
        }
    }

    /// Whether the connection has ended (a `Close` was emitted).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitingAuth { deadline } => Some(*deadline),
            State::Open(open) => {
                let silent = open.last_seen + self.settings.heartbeat * 2;
                let mut next = open.next_ping.min(silent);
                if let Some(drain) = open.drain_deadline {
                    next = next.min(drain);
                }
                if let Some(refresh) = self.turn.as_ref().and_then(|t| t.next_refresh) {
                    next = next.min(refresh);
                }
                Some(next)
            }
            State::Closed => None,
        }
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::AwaitingAuth { deadline } => {
                if now >= *deadline {
                    self.close(CLOSE_UNAUTHORIZED, "authentication timeout");
                }
            }
            State::Open(open) => {
                if open.drain_deadline.is_some_and(|d| now >= d) {
                    self.close(CLOSE_GOING_AWAY, "server shutting down");
                } else if now >= open.last_seen + self.settings.heartbeat * 2 {
                    self.close(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout");
                } else if now >= open.next_ping {
                    open.next_ping = now + self.settings.heartbeat;
                    self.out.push_back(Output::Ping);
                }
            }
            State::Closed => {}
        }
        self.refresh_turn(now);
    }

    /// Sends fresh TURN credentials when half of the last ones' lifetime has passed.
    fn refresh_turn(&mut self, now: Instant) {
        let State::Open(open) = &self.state else {
            return;
        };
        let Some(turn) = &mut self.turn else {
            return;
        };
        if turn.next_refresh.is_some_and(|due| now >= due) {
            turn.next_refresh = Some(now + turn.refresh_every());
            let servers = turn
                .issuer
                .ice_servers(&open.opened.principal.id, turn.unix_at(now));
            self.send(ServerFrame::Event(Event::IceServers(servers)));
        }
    }

    /// Something arrived from the client that is not a text or binary frame (ping, pong).
    pub fn handle_activity(&mut self, now: Instant) {
        if let State::Open(open) = &mut self.state {
            open.last_seen = now;
        }
    }

    /// A binary frame of `len` bytes arrived. The protocol is text only.
    pub fn handle_binary(&mut self, now: Instant, len: usize) {
        if len > self.settings.max_frame {
            self.too_big(len);
            return;
        }
        match &mut self.state {
            State::AwaitingAuth { .. } => {
                self.send(ServerFrame::error(
                    None,
                    ErrorCode::Invalid,
                    "binary frames are not part of the protocol; send auth as a text frame",
                ));
                self.close(CLOSE_UNAUTHORIZED, "authentication required");
            }
            State::Open(open) => {
                open.last_seen = now;
                self.send(ServerFrame::error(
                    None,
                    ErrorCode::Invalid,
                    "binary frames are not part of the protocol",
                ));
            }
            State::Closed => {}
        }
    }

    /// A frame larger than the transport accepts at all arrived (the driver could not read it).
    pub fn handle_oversized(&mut self) {
        self.too_big(self.settings.max_frame + 1);
    }

    /// A text frame arrived.
    pub fn handle_text(&mut self, now: Instant, text: &str, opener: &mut dyn SessionOpener) {
        if self.is_closed() {
            return;
        }
        if text.len() > self.settings.max_frame {
            self.too_big(text.len());
            return;
        }
        match &mut self.state {
            State::AwaitingAuth { .. } => self.handle_auth(now, text, opener),
            State::Open(open) => {
                open.last_seen = now;
                // Every frame costs a token, readable or not, so garbage cannot flood either.
                let elapsed = now.saturating_duration_since(open.refilled).as_secs_f64();
                open.refilled = now;
                open.tokens = (open.tokens + elapsed * f64::from(self.settings.rate_per_s))
                    .min(f64::from(self.settings.rate_burst));
                if open.tokens < 1.0 {
                    let id = parse_client_frame(text)
                        .map(|f| f.id)
                        .unwrap_or_else(|(id, _)| id.unwrap_or_default());
                    self.send(ServerFrame::error(
                        (!id.is_empty()).then_some(id),
                        ErrorCode::RateLimited,
                        format!(
                            "more than {} requests per second; slow down",
                            self.settings.rate_per_s
                        ),
                    ));
                    return;
                }
                open.tokens -= 1.0;
                match parse_client_frame(text) {
                    Ok(frame) => self.handle_request(frame),
                    Err((id, error)) => self.refuse(id, error),
                }
            }
            State::Closed => {}
        }
    }

    fn handle_auth(&mut self, now: Instant, text: &str, opener: &mut dyn SessionOpener) {
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err((id, error)) => {
                let code = match error {
                    FrameError::UnknownType(_) | FrameError::MissingType => ErrorCode::Unauthorized,
                    FrameError::BadFields { ref kind, .. } if kind != "auth" => {
                        ErrorCode::Unauthorized
                    }
                    _ => ErrorCode::Invalid,
                };
                let message = match code {
                    ErrorCode::Unauthorized => "the first frame must be auth".to_owned(),
                    _ => error.to_string(),
                };
                self.send(ServerFrame::error(id, code, message));
                self.close(CLOSE_UNAUTHORIZED, "authentication required");
                return;
            }
        };
        let Request::Auth(auth) = &frame.request else {
            self.send(ServerFrame::error(
                Some(frame.id),
                ErrorCode::Unauthorized,
                "the first frame must be auth",
            ));
            self.close(CLOSE_UNAUTHORIZED, "authentication required");
            return;
        };
        match opener.open(now, auth) {
            Ok(opened) => {
                let ice = self.turn.as_mut().map(|turn| {
                    turn.next_refresh = Some(now + turn.refresh_every());
                    turn.issuer
                        .ice_servers(&opened.principal.id, turn.unix_at(now))
                });
                let reply = AuthOk {
                    session_id: opened.session_id.clone(),
                    role: opened.principal.role,
                    principal_id: opened.principal.id.clone(),
                    heartbeat_s: self.settings.heartbeat.as_secs().max(1),
                    resumed: opened.resumed,
                    ice_transport_policy: ice.as_ref().and_then(|i| i.ice_transport_policy),
                    ice_servers_ttl_s: ice.as_ref().map(|i| i.ice_servers_ttl_s),
                    ice_servers: ice.map(|i| i.ice_servers),
                };
                if opened.principal.role != Role::Kiosk && !auth.capabilities.is_empty() {
                    // Capabilities only mean something for kiosks; others' are ignored, not refused.
                }
                self.send(ServerFrame::ok_with(frame.id, &reply));
                self.state = State::Open(Open {
                    opened,
                    last_seen: now,
                    next_ping: now + self.settings.heartbeat,
                    drain_deadline: None,
                    tokens: f64::from(self.settings.rate_burst),
                    refilled: now,
                });
            }
            Err((code, message)) => {
                self.send(ServerFrame::error(Some(frame.id), code, message));
                if code == ErrorCode::RateLimited {
                    self.close(CLOSE_TOO_MANY_SESSIONS, "too many sessions");
                } else {
                    self.close(CLOSE_UNAUTHORIZED, "authentication failed");
                }
            }
        }
    }

    fn handle_request(&mut self, frame: ClientFrame) {
        match frame.request {
            Request::Auth(_) => self.send(ServerFrame::error(
                Some(frame.id),
                ErrorCode::Conflict,
                "this socket is already authenticated",
            )),
            Request::Ping {} => self.send(ServerFrame::ok(frame.id)),
            #[allow(unreachable_patterns)]
            _ => self.out.push_back(Output::Dispatch(Box::new(frame))),
        }
    }

    /// Sends the application's reply to a dispatched request.
    pub fn reply(&mut self, frame: ServerFrame) {
        if !self.is_closed() {
            self.send(frame);
        }
    }

    /// Sends a frame that is already JSON text (an event serialized once for many sessions).
    pub fn deliver(&mut self, text: String) {
        if matches!(self.state, State::Open(_)) {
            self.out.push_back(Output::Text(text));
        }
    }

    /// Sends an event to the client.
    pub fn event(&mut self, event: Event) {
        if matches!(self.state, State::Open(_)) {
            self.send(ServerFrame::Event(event));
        }
    }

    /// The server is draining: tell the client, and close at `deadline`. Sockets that never
    /// authenticated close at once.
    pub fn begin_drain(&mut self, now: Instant, deadline: Instant) {
        match &mut self.state {
            State::AwaitingAuth { .. } => self.close(CLOSE_GOING_AWAY, "server shutting down"),
            State::Open(open) => {
                if open.drain_deadline.is_none() {
                    open.drain_deadline = Some(deadline);
                    let grace_s = deadline.saturating_duration_since(now).as_secs();
                    self.send(ServerFrame::Event(Event::ServerDraining { grace_s }));
                }
            }
            State::Closed => {}
        }
    }

    /// Closes the connection now with `code` and `reason`.
    pub fn close_now(&mut self, code: u16, reason: &str) {
        self.close(code, reason);
    }

    fn refuse(&mut self, id: Option<String>, error: FrameError) {
        self.send(ServerFrame::error(id, error.code(), error.to_string()));
    }

    fn too_big(&mut self, len: usize) {
        if self.is_closed() {
            return;
        }
        self.send(ServerFrame::error(
            None,
            ErrorCode::Invalid,
            format!(
                "frame of {len} bytes exceeds the limit of {} bytes",
                self.settings.max_frame
            ),
        ));
        self.close(CLOSE_MESSAGE_TOO_BIG, "frame too large");
    }

    fn send(&mut self, frame: ServerFrame) {
        self.out.push_back(Output::Text(frame.to_json()));
    }

    fn close(&mut self, code: u16, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.out.push_back(Output::Close {
            code,
            reason: reason.to_owned(),
        });
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    struct FakeOpener;

    impl SessionOpener for FakeOpener {
        fn open(&mut self, _now: Instant, auth: &Auth) -> Result<Opened, (ErrorCode, String)> {
            if auth.token == "busy" {
                return Err((ErrorCode::RateLimited, "too many sessions".into()));
            }
            if auth.token == "good" {
                Ok(Opened {
                    session_id: "s1".into(),
                    principal: Principal {
                        role: Role::Operator,
                        id: "maria".into(),
                    },
                    resumed: auth.resume.is_some(),
                })
            } else {
                Err((ErrorCode::Unauthorized, "bad token".into()))
            }
        }
    }

    fn settings() -> Settings {
        Settings::with_heartbeat(Duration::from_secs(10))
    }

    fn drain(conn: &mut Connection) -> Vec<Output> {
        std::iter::from_fn(|| conn.poll_output()).collect()
    }

    fn json(output: &Output) -> Value {
        match output {
            Output::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    fn open(t0: Instant) -> Connection {
        let mut conn = Connection::new(t0, settings());
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"good"}"#,
            &mut FakeOpener,
        );
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["type"], "ok");
        conn
    }

    #[test]
    fn requests_beyond_the_rate_get_rate_limited_and_the_socket_stays() {
        let t0 = Instant::now();
        let mut conn = Connection::new(t0, settings().with_rate(2, 3));
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"good"}"#,
            &mut FakeOpener,
        );
        drain(&mut conn);
        let ping = |conn: &mut Connection, at: Instant, id: u32| {
            conn.handle_text(
                at,
                &format!(r#"{{"type":"ping","id":"{id}"}}"#),
                &mut FakeOpener,
            );
            json(&drain(conn)[0])
        };
        for i in 0..3 {
            assert_eq!(ping(&mut conn, t0, i)["type"], "ok", "burst of 3");
        }
        let refused = ping(&mut conn, t0, 9);
        assert_eq!(refused["code"], "rate_limited");
        assert_eq!(refused["id"], "9");
        assert!(!conn.is_closed());
        // Half a second refills one token at 2 per second.
        assert_eq!(
            ping(&mut conn, t0 + Duration::from_millis(500), 10)["type"],
            "ok"
        );
        assert_eq!(
            ping(&mut conn, t0 + Duration::from_millis(500), 11)["code"],
            "rate_limited"
        );
    }

    #[test]
    fn good_auth_opens_the_session() {
        let t0 = Instant::now();
        let mut conn = Connection::new(t0, settings());
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"good"}"#,
            &mut FakeOpener,
        );
        let out = drain(&mut conn);
        assert_eq!(out.len(), 1);
        let v = json(&out[0]);
        assert_eq!(v["type"], "ok");
        assert_eq!(v["id"], "1");
        assert_eq!(v["session_id"], "s1");
        assert_eq!(v["role"], "operator");
        assert_eq!(v["principal_id"], "maria");
        assert_eq!(v["heartbeat_s"], 10);
        assert!(conn.session().is_some());
    }

    #[test]
    fn bad_token_gets_unauthorized_and_4401() {
        let t0 = Instant::now();
        let mut conn = Connection::new(t0, settings());
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"bad"}"#,
            &mut FakeOpener,
        );
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "unauthorized");
        assert!(matches!(out[1], Output::Close { code: 4401, .. }));
        assert!(conn.is_closed());
    }

    #[test]
    fn a_principal_past_its_session_cap_gets_rate_limited_and_4429() {
        let t0 = Instant::now();
        let mut conn = Connection::new(t0, settings());
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"busy"}"#,
            &mut FakeOpener,
        );
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "rate_limited");
        assert!(matches!(out[1], Output::Close { code: 4429, .. }));
    }

    #[test]
    fn no_auth_in_five_seconds_closes_with_4401() {
        let t0 = Instant::now();
        let mut conn = Connection::new(t0, settings());
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        conn.handle_timeout(t0 + Duration::from_millis(4999));
        assert!(drain(&mut conn).is_empty());
        conn.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            drain(&mut conn),
            vec![Output::Close {
                code: 4401,
                reason: "authentication timeout".into()
            }]
        );
    }

    #[test]
    fn first_frame_not_auth_is_refused() {
        let t0 = Instant::now();
        for first in [
            r#"{"type":"ping","id":"1"}"#,
            r#"{"type":"call.request","id":"1"}"#,
        ] {
            let mut conn = Connection::new(t0, settings());
            conn.handle_text(t0, first, &mut FakeOpener);
            let out = drain(&mut conn);
            assert_eq!(json(&out[0])["code"], "unauthorized", "{first}");
            assert!(matches!(out[1], Output::Close { code: 4401, .. }));
        }
        let mut conn = Connection::new(t0, settings());
        conn.handle_text(t0, "{oops", &mut FakeOpener);
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "invalid");
        assert!(matches!(out[1], Output::Close { code: 4401, .. }));
    }

    #[test]
    fn unknown_types_and_malformed_json_get_invalid_and_stay_open() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        conn.handle_text(t0, r#"{"type":"no.such","id":"2"}"#, &mut FakeOpener);
        conn.handle_text(t0, "not json at all", &mut FakeOpener);
        conn.handle_text(t0, r#"{"type":"ping","id":"3"}"#, &mut FakeOpener);
        let out = drain(&mut conn);
        assert_eq!(out.len(), 3);
        let a = json(&out[0]);
        assert_eq!(
            (a["type"].as_str(), a["code"].as_str(), a["id"].as_str()),
            (Some("error"), Some("invalid"), Some("2"))
        );
        let b = json(&out[1]);
        assert_eq!(b["code"], "invalid");
        assert!(b.get("id").is_none());
        let c = json(&out[2]);
        assert_eq!(
            (c["type"].as_str(), c["id"].as_str()),
            (Some("ok"), Some("3"))
        );
        assert!(!conn.is_closed());
    }

    #[test]
    fn a_second_auth_is_a_conflict() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"9","token":"good"}"#,
            &mut FakeOpener,
        );
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "conflict");
    }

    #[test]
    fn oversized_frames_get_invalid_and_close() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        let big = format!(
            r#"{{"type":"ping","id":"1","pad":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        conn.handle_text(t0, &big, &mut FakeOpener);
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "invalid");
        assert!(matches!(out[1], Output::Close { code: 1009, .. }));
        // Exactly at the limit is accepted.
        let mut conn = open(t0);
        let pad = MAX_FRAME_BYTES - r#"{"type":"ping","id":"1","pad":""}"#.len();
        let exact = format!(r#"{{"type":"ping","id":"1","pad":"{}"}}"#, "x".repeat(pad));
        assert_eq!(exact.len(), MAX_FRAME_BYTES);
        conn.handle_text(t0, &exact, &mut FakeOpener);
        assert_eq!(json(&drain(&mut conn)[0])["type"], "ok");
    }

    #[test]
    fn heartbeat_pings_and_disconnects_silent_clients() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        let s = Duration::from_secs;
        assert_eq!(conn.poll_timeout(), Some(t0 + s(10)));
        conn.handle_timeout(t0 + s(10));
        assert_eq!(drain(&mut conn), vec![Output::Ping]);
        // A pong keeps the client alive.
        conn.handle_activity(t0 + s(11));
        conn.handle_timeout(t0 + s(20));
        assert_eq!(drain(&mut conn), vec![Output::Ping]);
        conn.handle_timeout(t0 + s(30));
        assert_eq!(drain(&mut conn), vec![Output::Ping]);
        // Silent since 11 s: at 31 s (2 × heartbeat) it is closed.
        conn.handle_timeout(t0 + s(31));
        assert!(matches!(
            drain(&mut conn)[..],
            [Output::Close { code: 4408, .. }]
        ));
    }

    #[test]
    fn drain_warns_then_closes_at_the_deadline() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        let s = Duration::from_secs;
        conn.begin_drain(t0, t0 + s(5));
        let out = drain(&mut conn);
        let v = json(&out[0]);
        assert_eq!(v["type"], "server.draining");
        assert_eq!(v["grace_s"], 5);
        conn.handle_activity(t0 + s(4));
        conn.handle_timeout(t0 + s(5));
        assert!(matches!(
            drain(&mut conn)[..],
            [Output::Close { code: 1001, .. }]
        ));
        // A socket still waiting for auth closes at once.
        let mut pending = Connection::new(t0, settings());
        pending.begin_drain(t0, t0 + s(5));
        assert!(matches!(
            drain(&mut pending)[..],
            [Output::Close { code: 1001, .. }]
        ));
    }

    #[test]
    fn binary_frames_are_invalid() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        conn.handle_binary(t0, 10);
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "invalid");
        assert!(!conn.is_closed());
    }

    fn turn_issuer(ttl_s: u64) -> TurnIssuer {
        let settings = crate::config::TurnSettings {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret_file: Some("/etc/sportello/turn.secret".into()),
            ttl_s,
            policy: protocol::IceTransportPolicy::Relay,
        };
        TurnIssuer::new(&settings, b"north-pole-secret").unwrap()
    }

    #[test]
    fn the_auth_reply_carries_turn_credentials_and_long_sessions_get_fresh_ones() {
        let t0 = Instant::now();
        let unix0 = 1_700_000_000;
        // Heartbeat 10 s; credentials for 600 s, refreshed every 300 s.
        let mut conn = Connection::new(t0, settings()).with_turn(Some(turn_issuer(600)), t0, unix0);
        // The socket opened 2 s before the auth frame.
        let t_auth = t0 + Duration::from_secs(2);
        conn.handle_text(
            t_auth,
            r#"{"type":"auth","id":"1","token":"good"}"#,
            &mut FakeOpener,
        );
        let v = json(&drain(&mut conn)[0]);
        assert_eq!(v["type"], "ok");
        assert_eq!(v["ice_transport_policy"], "relay");
        assert_eq!(v["ice_servers_ttl_s"], 600);
        let servers = v["ice_servers"].as_array().unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0]["urls"][0], "turn:127.0.0.1:3478?transport=udp");
        assert_eq!(servers[0]["username"], "1700000602:maria");
        let expected = crate::ws::turn::credentials(b"north-pole-secret", "maria", unix0 + 2, 600);
        assert_eq!(servers[0]["credential"], expected.credential.as_str());

        // Keep the client alive, and run the clock to just before half the lifetime.
        let mut at = t_auth;
        let mut refreshed = Vec::new();
        while at < t_auth + Duration::from_secs(700) {
            at += Duration::from_secs(5);
            conn.handle_activity(at);
            conn.handle_timeout(at);
            for out in drain(&mut conn) {
                if let Output::Text(_) = out {
                    refreshed.push((at, json(&out)));
                }
            }
            assert!(conn.poll_timeout().unwrap() <= at + Duration::from_secs(10));
        }
        assert!(!conn.is_closed());
        // At 302 s and 602 s after the auth (the first 5 s steps at or past 300 s and 600 s).
        assert_eq!(refreshed.len(), 2, "{refreshed:?}");
        let (when, event) = &refreshed[0];
        assert_eq!(*when, t_auth + Duration::from_secs(300));
        assert_eq!(event["type"], "ice.servers");
        assert_eq!(event["ice_transport_policy"], "relay");
        assert_eq!(event["ice_servers_ttl_s"], 600);
        assert_eq!(event["ice_servers"][0]["username"], "1700000902:maria");
        assert_eq!(
            refreshed[1].1["ice_servers"][0]["username"],
            "1700001202:maria"
        );
    }

    #[test]
    fn without_turn_the_auth_reply_has_no_ice_servers_and_no_refresh() {
        let t0 = Instant::now();
        let mut conn = open(t0);
        let at = t0 + Duration::from_secs(15);
        conn.handle_activity(at);
        conn.handle_timeout(at);
        assert!(drain(&mut conn).iter().all(|o| matches!(o, Output::Ping)));
        let mut conn = Connection::new(t0, settings());
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"good"}"#,
            &mut FakeOpener,
        );
        let v = json(&drain(&mut conn)[0]);
        assert!(v.get("ice_servers").is_none());
        assert!(v.get("ice_transport_policy").is_none());
        // A refused auth hands out nothing either.
        let mut conn = Connection::new(t0, settings()).with_turn(Some(turn_issuer(600)), t0, 0);
        conn.handle_text(
            t0,
            r#"{"type":"auth","id":"1","token":"bad"}"#,
            &mut FakeOpener,
        );
        let out = drain(&mut conn);
        assert_eq!(json(&out[0])["code"], "unauthorized");
        assert!(conn.poll_timeout().is_none());
    }
}
