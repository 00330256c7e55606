//! Sportello wire protocol, version 1: the HTTP bodies and WebSocket frames shared by the server and
//! every client (kiosk screen, kiosk agent, operator console, supervisor dashboard, bots, load test).
//!
//! The contract lives in `docs/protocol.md`. This crate is deliberately small: it knows the envelope
//! (requests with an `id`, replies, events), the error codes and the message bodies, and nothing about
//! sockets, queues or media.
//!
//! ```
//! use protocol::{parse_client_frame, ClientFrame, Request};
//! let frame = parse_client_frame(r#"{"type":"auth","id":"1","token":"t"}"#).unwrap();
//! assert!(matches!(frame, ClientFrame { request: Request::Auth(_), .. }));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod calls;
pub mod ice;
pub mod incall;
pub mod media;
pub mod outcome;

pub use calls::{
    CallAssigned, CallConnected, CallCreated, CallEnded, CallOfferRevoked, CallOffered, CallRef,
    CallRequest, CallRequeued, CallTransfer, KioskInfo, MediaNodeMetrics, MetricsSnapshot,
    OperatorCall, OperatorInfo, OperatorMetrics, OperatorSetState, OperatorStateEvent, PresenceSet,
    PresenceState, QueueUpdate, ServiceMetrics, StateSync, SyncedCall, WindowMetrics,
};
pub use ice::{IceServer, IceServers, IceTransportPolicy};

/// The largest text frame a peer may send, in bytes. Larger frames are refused with `invalid` and
/// the socket is closed.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The WebSocket close code used when authentication fails or does not arrive in time.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

/// The WebSocket close code used when the server goes away (shutdown, drain deadline, superseded
/// session). It is the standard "going away" code.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// The WebSocket close code used after a frame over [`MAX_FRAME_BYTES`] (the standard "message too
/// big" code).
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// The WebSocket close code used when the server cannot serve the session right now (the queue store
/// is down, or the client fell too far behind on events). The client reconnects with `resume`.
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// The WebSocket close code used when a client stops answering pings.
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4408;

/// The WebSocket close code used when the same session was resumed on another socket.
pub const CLOSE_SUPERSEDED: u16 = 4409;

/// The WebSocket close code used when `auth` is refused because its principal already holds as
/// many sessions as the server allows (the reply is `rate_limited`). Retry later, or resume.
pub const CLOSE_TOO_MANY_SESSIONS: u16 = 4429;

/// Seconds a client has to send its `auth` frame after the socket opens.
pub const AUTH_TIMEOUT_S: u64 = 5;

/// The error codes of the protocol, used both in WebSocket `error` replies and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No token, or a bad or expired one.
    Unauthorized,
    /// The role or the principal may not do this to that object.
    Forbidden,
    /// No such object.
    NotFound,
    /// A malformed or unknown message or field.
    Invalid,
    /// Not allowed in the object's current state.
    Conflict,
    /// Too many requests.
    RateLimited,
    /// A dependency is down; the client may retry.
    Unavailable,
    /// A bug. The message carries a correlation id that is also logged.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that carries this code on the HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Invalid => 400,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every HTTP error: `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The protocol error code.
    pub code: ErrorCode,
    /// A human-readable explanation (English), or a correlation id for `internal`.
    pub message: String,
}

/// Who a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A kiosk (its screen or its agent), authenticated by device token.
    Kiosk,
    /// An operator, authenticated by password then token.
    Operator,
    /// A supervisor, authenticated by password then token.
    Supervisor,
}

impl Role {
    /// The role as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Kiosk => "kiosk",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
        }
    }
}

/// `POST /api/v1/login` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The account's user name.
    pub username: String,
    /// The account's password.
    pub password: String,
}

/// `POST /api/v1/login` success body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// A signed bearer token for HTTP and the WebSocket `auth` frame.
    pub token: String,
    /// The account's role.
    pub role: Role,
    /// When the token expires, RFC 3339 in UTC.
    pub expires_at: String,
    /// Extension: a refresh token for `POST /api/v1/refresh`, which gives a new `token` without the
    /// password until `refresh_expires_at` (the length of a shift), or until `POST /api/v1/logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Extension: when the refresh token expires, RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<String>,
}

/// `POST /api/v1/refresh` (extension): a refresh token from [`LoginResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The `refresh_token` of the login.
    pub refresh_token: String,
}

/// A device capability a kiosk session may declare in `auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The session drives the kiosk's printer and receives `print.job`.
    Printer,
    /// The session reads CIE/CNS cards.
    CardReader,
    /// The session drives the document scanner.
    Scanner,
}

/// The `auth` request: the first frame of every socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    /// A login token (operator, supervisor) or a kiosk device token.
    pub token: String,
    /// A session id from an earlier `auth` reply, to resume it within the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// Device capabilities of a kiosk session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
}

/// The body of the `ok` reply to `auth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthOk {
    /// The session id, to be passed as `resume` after a reconnect.
    pub session_id: String,
    /// The principal's role.
    pub role: Role,
    /// The principal's id: operator or supervisor user name, or kiosk id.
    pub principal_id: String,
    /// The server pings at this interval; a client silent for twice this is disconnected.
    pub heartbeat_s: u64,
    /// Whether an earlier session was resumed (extension; absent means false).
    #[serde(default)]
    pub resumed: bool,
    /// The ICE servers (STUN/TURN, with time-limited TURN credentials) the client passes to its
    /// peer connections (extension; absent when the server has no `[turn]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Vec<IceServer>>,
    /// The ICE transport policy the client must use (extension; absent means `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_transport_policy: Option<IceTransportPolicy>,
    /// How long the TURN credentials of `ice_servers` stay valid, in seconds (extension; present
    /// with `ice_servers`). The server sends fresh ones in `ice.servers` every half of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_servers_ttl_s: Option<u64>,
}

/// Every request a client may send, tagged by `type`.
///
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Request {
    /// `auth`: opens (or resumes) the session. Only valid as the first frame.
    #[serde(rename = "auth")]
    Auth(Auth),
    /// `ping` (extension): an application-level liveness check, answered with `ok`.
    #[serde(rename = "ping")]
    Ping {},
    /// `call.request` (kiosk): joins the queue; `ok {"call_id"}`.
    #[serde(rename = "call.request")]
    CallRequest(CallRequest),
    /// `call.cancel` (kiosk): abandons the kiosk's own call.
    #[serde(rename = "call.cancel")]
    CallCancel(CallRef),
    /// `presence.set` (operator).
    #[serde(rename = "presence.set")]
    PresenceSet(PresenceSet),
    /// `call.accept` (operator): takes an offer.
    #[serde(rename = "call.accept")]
    CallAccept(CallRef),
    /// `call.reject` (operator): declines an offer; the call keeps its age.
    #[serde(rename = "call.reject")]
    CallReject(CallRef),
    /// `call.hold` (operator).
    #[serde(rename = "call.hold")]
    CallHold(CallRef),
    /// `call.resume` (operator).
    #[serde(rename = "call.resume")]
    CallResume(CallRef),
    /// `call.transfer` (operator): to a service or an operator.
    #[serde(rename = "call.transfer")]
    CallTransfer(CallTransfer),
    /// `call.end` (operator): ends the conversation and starts wrap-up.
    #[serde(rename = "call.end")]
    CallEnd(CallRef),
    /// `wrapup.done` (operator), with a disposition (extension).
    #[serde(rename = "wrapup.done")]
    WrapupDone(outcome::WrapupDone),
    /// `metrics.subscribe` (supervisor): `metrics.snapshot` at least every 2 s.
    #[serde(rename = "metrics.subscribe")]
    MetricsSubscribe {},
    /// `metrics.unsubscribe` (extension, supervisor): stops the snapshots.
    #[serde(rename = "metrics.unsubscribe")]
    MetricsUnsubscribe {},
    /// `operator.set_state` (supervisor): forces an operator's presence.
    #[serde(rename = "operator.set_state")]
    OperatorSetState(OperatorSetState),
    /// `media.offer` (kiosk, operator, monitoring supervisor): `ok {"sdp"}` with the SFU's answer.
    #[serde(rename = "media.offer")]
    MediaOffer(media::MediaOffer),
    /// `media.candidate` (same): a trickled ICE candidate.
    #[serde(rename = "media.candidate")]
    MediaCandidate(media::MediaCandidate),
    /// `monitor.start` (supervisor): may then `media.offer` with `"monitor":true`.
    #[serde(rename = "monitor.start")]
    MonitorStart(CallRef),
    /// `monitor.stop` (supervisor): closes the monitor's connection.
    #[serde(rename = "monitor.stop")]
    MonitorStop(CallRef),
    /// `identity.request` (operator).
    #[serde(rename = "identity.request")]
    IdentityRequest(incall::IdentityRequest),
    /// `identity.card` (kiosk agent).
    #[serde(rename = "identity.card")]
    IdentityCard(incall::IdentityCard),
    /// `identity.card_error` (extension, kiosk agent).
    #[serde(rename = "identity.card_error")]
    IdentityCardError(incall::IdentityCardError),
    /// `identity.pec_start` (kiosk).
    #[serde(rename = "identity.pec_start")]
    IdentityPecStart(incall::IdentityPecStart),
    /// `identity.pec_code` (kiosk).
    #[serde(rename = "identity.pec_code")]
    IdentityPecCode(incall::IdentityPecCode),
    /// `identity.scan` (kiosk).
    #[serde(rename = "identity.scan")]
    IdentityScan(incall::IdentityScan),
    /// `identity.confirm` (operator).
    #[serde(rename = "identity.confirm")]
    IdentityConfirm(incall::IdentityConfirm),
    /// `identity.reject` (extension, operator).
    #[serde(rename = "identity.reject")]
    IdentityReject(incall::IdentityReject),
    /// `certificate.issue` (operator).
    #[serde(rename = "certificate.issue")]
    CertificateIssue(incall::CertificateIssue),
    /// `certificate.preview` (extension, operator): the same body as `certificate.issue`.
    #[serde(rename = "certificate.preview")]
    CertificatePreview(incall::CertificateIssue),
    /// `print.request` (operator).
    #[serde(rename = "print.request")]
    PrintRequest(incall::PrintRequest),
    /// `print.status` (kiosk agent).
    #[serde(rename = "print.status")]
    PrintStatus(incall::PrintStatus),
    /// `feedback.submit` (extension, kiosk): the citizen's rating of an ended call.
    #[serde(rename = "feedback.submit")]
    FeedbackSubmit(outcome::FeedbackSubmit),
}

impl Request {
    /// The request types this version understands.
    pub const TYPES: &'static [&'static str] = &[
        "auth",
        "ping",
        "call.request",
        "call.cancel",
        "presence.set",
        "call.accept",
        "call.reject",
        "call.hold",
        "call.resume",
        "call.transfer",
        "call.end",
        "wrapup.done",
        "metrics.subscribe",
        "metrics.unsubscribe",
        "operator.set_state",
        "media.offer",
        "media.candidate",
        "monitor.start",
        "monitor.stop",
        "identity.request",
        "identity.card",
        "identity.card_error",
        "identity.pec_start",
        "identity.pec_code",
        "identity.scan",
        "identity.confirm",
        "identity.reject",
        "certificate.issue",
        "certificate.preview",
        "print.request",
        "print.status",
        "feedback.submit",
    ];

    /// The request's wire `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Auth(_) => "auth",
            Request::Ping {} => "ping",
            Request::CallRequest(_) => "call.request",
            Request::CallCancel(_) => "call.cancel",
            Request::PresenceSet(_) => "presence.set",
            Request::CallAccept(_) => "call.accept",
            Request::CallReject(_) => "call.reject",
            Request::CallHold(_) => "call.hold",
            Request::CallResume(_) => "call.resume",
            Request::CallTransfer(_) => "call.transfer",
            Request::CallEnd(_) => "call.end",
            Request::WrapupDone(_) => "wrapup.done",
            Request::MetricsSubscribe {} => "metrics.subscribe",
            Request::MetricsUnsubscribe {} => "metrics.unsubscribe",
            Request::OperatorSetState(_) => "operator.set_state",
            Request::MediaOffer(_) => "media.offer",
            Request::MediaCandidate(_) => "media.candidate",
            Request::MonitorStart(_) => "monitor.start",
            Request::MonitorStop(_) => "monitor.stop",
            Request::IdentityRequest(_) => "identity.request",
            Request::IdentityCard(_) => "identity.card",
            Request::IdentityCardError(_) => "identity.card_error",
            Request::IdentityPecStart(_) => "identity.pec_start",
            Request::IdentityPecCode(_) => "identity.pec_code",
            Request::IdentityScan(_) => "identity.scan",
            Request::IdentityConfirm(_) => "identity.confirm",
            Request::IdentityReject(_) => "identity.reject",
            Request::CertificateIssue(_) => "certificate.issue",
            Request::CertificatePreview(_) => "certificate.preview",
            Request::PrintRequest(_) => "print.request",
            Request::PrintStatus(_) => "print.status",
            Request::FeedbackSubmit(_) => "feedback.submit",
        }
    }

    /// The request as a JSON frame with this `id`, as a client sends it.
    pub fn to_frame(&self, id: &str) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("id".into(), Value::from(id));
        }
        value.to_string()
    }
}

/// A parsed client frame: the request and its client-chosen id.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    /// The client-chosen request id, echoed in the reply.
    pub id: String,
    /// The request.
    pub request: Request,
}

/// Why a client frame was refused. Every variant maps to the `invalid` error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is not a JSON object.
    #[error("frame is not a JSON object: {0}")]
    Malformed(String),
    /// The frame has no string `type`.
    #[error("frame has no string \"type\"")]
    MissingType,
    /// The frame's `type` is not a request this server knows.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The request has no string `id`.
    #[error("request has no string \"id\"")]
    MissingId,
    /// A known request with missing or malformed fields.
    #[error("bad fields for {kind:?}: {detail}")]
    BadFields {
        /// The request type.
        kind: String,
        /// What serde said was wrong.
        detail: String,
    },
    /// A text field holds a control character (NUL, ESC, CR, LF…; CR and LF only in an `sdp`) or
    /// a Unicode direction control (U+202E…), which other clients, logs and terminals would act on.
    #[error("text field {field:?} of {kind:?} holds a control character (U+{code:04X})")]
    ControlCharacter {
        /// The request type.
        kind: String,
        /// The field's name.
        field: String,
        /// The character's code point.
        code: u32,
    },
}

/// Whether `c` may not appear in a client's text: a control character (C0, DEL, C1) or one of
/// the Unicode controls that reorder or hide text (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069).
pub fn is_hidden_control(c: char) -> bool {
    c.is_control()
        || matches!(
            u32::from(c),
            0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069
        )
}

/// The first forbidden character in the strings of `value` (see [`is_hidden_control`]), with the
/// name of the field holding it. CR and LF are allowed in `sdp` fields only (SDP lines end in
/// CRLF).
fn first_control(field: &str, value: &Value) -> Option<(String, char)> {
    match value {
        Value::String(text) => {
            let multiline = field == "sdp";
            text.chars()
                .find(|&c| is_hidden_control(c) && !(multiline && matches!(c, '\r' | '\n')))
                .map(|c| (field.to_owned(), c))
        }
        Value::Array(items) => items.iter().find_map(|v| first_control(field, v)),
        Value::Object(map) => map.iter().find_map(|(k, v)| first_control(k, v)),
        _ => None,
    }
}

impl FrameError {
    /// The protocol error code for this failure (always `invalid`).
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Invalid
    }
}

/// Parses one client text frame. On failure it also returns the request id when one could be read,
/// so the error reply can carry it.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, (Option<String>, FrameError)> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| (None, FrameError::Malformed(e.to_string())))?;
    let Value::Object(map) = value else {
        return Err((None, FrameError::Malformed("expected an object".into())));
    };
    let id = map.get("id").and_then(Value::as_str).map(str::to_owned);
    let kind = match map.get("type").and_then(Value::as_str) {
        Some(kind) => kind.to_owned(),
        None => return Err((id, FrameError::MissingType)),
    };
    if !Request::TYPES.contains(&kind.as_str()) {
        return Err((id, FrameError::UnknownType(kind)));
    }
    let Some(id) = id else {
        return Err((None, FrameError::MissingId));
    };
    if let Some((field, c)) = map.iter().find_map(|(k, v)| first_control(k, v)) {
        return Err((
            Some(id),
            FrameError::ControlCharacter {
                kind,
                field,
                code: u32::from(c),
            },
        ));
    }
    let request: Request = serde_json::from_value(Value::Object(map)).map_err(|e| {
        (
            Some(id.clone()),
            FrameError::BadFields {
                kind,
                detail: e.to_string(),
            },
        )
    })?;
    Ok(ClientFrame { id, request })
}

/// Events the server sends without a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Event {
    /// `server.draining` (extension): the server is shutting down. The session stays usable for
    /// `grace_s` seconds; the client should reconnect (with `resume`) to another node or later.
    #[serde(rename = "server.draining")]
    ServerDraining {
        /// Seconds until the server closes the socket.
        grace_s: u64,
    },
    /// `state.sync` (extension): the principal's calls as they are now, after `auth`.
    #[serde(rename = "state.sync")]
    StateSync(StateSync),
    /// `ice.servers` (extension): fresh TURN credentials for a long session.
    #[serde(rename = "ice.servers")]
    IceServers(IceServers),
    /// `queue.update` (kiosk).
    #[serde(rename = "queue.update")]
    QueueUpdate(QueueUpdate),
    /// `call.assigned` (kiosk).
    #[serde(rename = "call.assigned")]
    CallAssigned(CallAssigned),
    /// `call.held` (kiosk, and the operator's other sessions).
    #[serde(rename = "call.held")]
    CallHeld(CallRef),
    /// `call.resumed` (kiosk, and the operator's other sessions).
    #[serde(rename = "call.resumed")]
    CallResumed(CallRef),
    /// `call.ended` (kiosk and operator).
    #[serde(rename = "call.ended")]
    CallEnded(CallEnded),
    /// `call.requeued` (extension, kiosk).
    #[serde(rename = "call.requeued")]
    CallRequeued(CallRequeued),
    /// `call.offered` (operator).
    #[serde(rename = "call.offered")]
    CallOffered(CallOffered),
    /// `call.offer_revoked` (operator).
    #[serde(rename = "call.offer_revoked")]
    CallOfferRevoked(CallOfferRevoked),
    /// `call.connected` (operator).
    #[serde(rename = "call.connected")]
    CallConnected(CallConnected),
    /// `wrapup.ended` (extension, operator): the wrap-up of a call finished (by `wrapup.done` or
    /// by its timeout).
    #[serde(rename = "wrapup.ended")]
    WrapupEnded(CallRef),
    /// `operator.state` (extension, operator).
    #[serde(rename = "operator.state")]
    OperatorState(OperatorStateEvent),
    /// `metrics.snapshot` (supervisor).
    #[serde(rename = "metrics.snapshot")]
    MetricsSnapshot(MetricsSnapshot),
    /// `media.candidate`: one of the SFU's candidates (they are also in its answer).
    #[serde(rename = "media.candidate")]
    MediaCandidate(media::MediaCandidate),
    /// `media.stats`: a call's media figures, to its operator and monitoring supervisors.
    #[serde(rename = "media.stats")]
    MediaStats(media::MediaStats),
    /// `media.reconnect` (extension, kiosk, operator and monitoring supervisors): the call's media
    /// moved to another media node; offer again from a new peer connection.
    #[serde(rename = "media.reconnect")]
    MediaReconnect(media::MediaReconnect),
    /// `identity.requested` (kiosk sessions with the device, or all of them).
    #[serde(rename = "identity.requested")]
    IdentityRequested(incall::IdentityRequested),
    /// `identity.progress` (extension, kiosk and operator).
    #[serde(rename = "identity.progress")]
    IdentityProgress(incall::IdentityProgress),
    /// `identity.verified` (kiosk and operator).
    #[serde(rename = "identity.verified")]
    IdentityVerified(incall::IdentityVerified),
    /// `identity.failed` (kiosk and operator).
    #[serde(rename = "identity.failed")]
    IdentityFailed(incall::IdentityFailed),
    /// `certificate.issued` (extension, kiosk).
    #[serde(rename = "certificate.issued")]
    CertificateIssued(incall::CertificateIssuedEvent),
    /// `print.job` (the kiosk's printer sessions).
    #[serde(rename = "print.job")]
    PrintJob(incall::PrintJob),
    /// `print.update` (operator, and the kiosk as an extension).
    #[serde(rename = "print.update")]
    PrintUpdate(incall::PrintUpdate),
}

impl Event {
    /// The event's wire `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ServerDraining { .. } => "server.draining",
            Event::StateSync(_) => "state.sync",
            Event::IceServers(_) => "ice.servers",
            Event::QueueUpdate(_) => "queue.update",
            Event::CallAssigned(_) => "call.assigned",
            Event::CallHeld(_) => "call.held",
            Event::CallResumed(_) => "call.resumed",
            Event::CallEnded(_) => "call.ended",
            Event::CallRequeued(_) => "call.requeued",
            Event::CallOffered(_) => "call.offered",
            Event::CallOfferRevoked(_) => "call.offer_revoked",
            Event::CallConnected(_) => "call.connected",
            Event::WrapupEnded(_) => "wrapup.ended",
            Event::OperatorState(_) => "operator.state",
            Event::MetricsSnapshot(_) => "metrics.snapshot",
            Event::MediaCandidate(_) => "media.candidate",
            Event::MediaStats(_) => "media.stats",
            Event::MediaReconnect(_) => "media.reconnect",
            Event::IdentityRequested(_) => "identity.requested",
            Event::IdentityProgress(_) => "identity.progress",
            Event::IdentityVerified(_) => "identity.verified",
            Event::IdentityFailed(_) => "identity.failed",
            Event::CertificateIssued(_) => "certificate.issued",
            Event::PrintJob(_) => "print.job",
            Event::PrintUpdate(_) => "print.update",
        }
    }

    /// The event as a JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Every frame the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// `{"type":"ok","id",…}`: the success reply to a request; `body` fields are merged in.
    Ok {
        /// The request id.
        id: String,
        /// Extra reply fields (must be a JSON object or null).
        body: Value,
    },
    /// `{"type":"error","id","code","message"}`.
    Error {
        /// The request id, when the frame had a readable one.
        id: Option<String>,
        /// The error code.
        code: ErrorCode,
        /// A human-readable message.
        message: String,
    },
    /// An event.
    Event(Event),
}

impl ServerFrame {
    /// An `ok` reply with no extra fields.
    pub fn ok(id: impl Into<String>) -> Self {
        ServerFrame::Ok {
            id: id.into(),
            body: Value::Null,
        }
    }

    /// An `ok` reply whose body is the serialization of `body` (a struct with named fields).
    pub fn ok_with<T: Serialize>(id: impl Into<String>, body: &T) -> Self {
        ServerFrame::Ok {
            id: id.into(),
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    /// An `error` reply.
    pub fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            id,
            code,
            message: message.into(),
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        let value = match self {
            ServerFrame::Ok { id, body } => {
                let mut map = match body {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                map.insert("type".into(), Value::from("ok"));
                map.insert("id".into(), Value::from(id.as_str()));
                Value::Object(map)
            }
            ServerFrame::Error { id, code, message } => {
                let mut map = Map::new();
                map.insert("type".into(), Value::from("error"));
                if let Some(id) = id {
                    map.insert("id".into(), Value::from(id.as_str()));
                }
                map.insert("code".into(), Value::from(code.as_str()));
                map.insert("message".into(), Value::from(message.as_str()));
                Value::Object(map)
            }
            ServerFrame::Event(event) => serde_json::to_value(event).unwrap_or(Value::Null),
        };
        value.to_string()
    }
}

/// A frame as a client reads it (see [`parse_server_frame`]): one of the [`ServerFrame`]s this
/// version knows, or an event it does not know, kept as JSON so newer servers do not break it.
///
/// In a parsed [`ServerFrame::Ok`], `body` is the whole reply frame (its `type` and `id` included).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A reply or a known event.
    Frame(ServerFrame),
    /// An event this client version does not know.
    Unknown(Value),
}

/// Parses a frame from the server, as clients do.
pub fn parse_server_frame(text: &str) -> Result<ServerMessage, FrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or(FrameError::MissingType)?;
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    match kind {
        "ok" => Ok(ServerMessage::Frame(ServerFrame::Ok {
            id: id.ok_or(FrameError::MissingId)?,
            body: value,
        })),
        "error" => {
            let code = value
                .get("code")
                .cloned()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or(ErrorCode::Internal);
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(ServerMessage::Frame(ServerFrame::Error {
                id,
                code,
                message,
            }))
        }
        _ => match serde_json::from_value::<Event>(value.clone()) {
            Ok(event) => Ok(ServerMessage::Frame(ServerFrame::Event(event))),
            Err(_) => Ok(ServerMessage::Unknown(value)),
        },
    }
}

#[cfg(test)]
mod tests;
