//! Clients of the Sportello wire protocol (`docs/protocol.md`), for kiosks, tests, demos and load
//! tests.
//!
//! - [`Session`]: one authenticated WebSocket connection. A background task owns the socket, routes
//!   replies to the request that waits for them and buffers events, so a caller can wait for one
//!   event without losing the others.
//! - [`HeadlessKiosk`]: a kiosk authenticated with its device token that places, cancels and follows
//!   one call, and can drop and resume its connection (also against another node).
//! - [`OperatorBot`]: an operator that logs in over HTTP and answers offers by a [`Policy`], alone in
//!   a task ([`BotHandle`]) or driven by hand through its session.
//! - [`CallTracker`]: the pure state machine that follows a kiosk's call from its events.
//! - [`describe_event`]: one English line per event, as the `sportello-kiosk` binary prints them.
//!
//! The message types are those of the `protocol` crate; this crate adds no wire types of its own.

#![warn(missing_docs)]

pub mod agent;
mod bot;
mod describe;
mod kiosk;
pub mod media;
mod session;
mod tls;
mod tracker;
mod url;

pub use bot::{BotHandle, BotStats, OperatorBot, Policy, BOT_DISPOSITION};
pub use describe::{describe_event, describe_unknown, format_wait};
pub use kiosk::HeadlessKiosk;
pub use session::{ConnectOptions, IceConfig, Requester, Session};
pub use tracker::{CallOutcome, CallStatus, CallTracker, REASON_GONE};
pub use url::{http_base_url, ws_url};

use protocol::ErrorCode;

/// Everything that can go wrong in a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection could not be opened (DNS, TCP, TLS, WebSocket handshake, HTTP transport).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server answered with an `error` reply (or an HTTP error body).
    #[error("refused ({code}): {message}")]
    Refused {
        /// The protocol error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// No reply or event arrived in time.
    #[error("timed out")]
    Timeout,
    /// The connection is closed (by the server, by the network, or by this client). See
    /// [`Session::close_code`].
    #[error("connection closed")]
    Closed,
    /// The server sent something this client cannot make sense of.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A URL that is not `http(s)://` or `ws(s)://`.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The caller asked for something that needs a call, and there is none.
    #[error("no call has been requested")]
    NoCall,
    /// Local configuration could not be used (for example an unreadable CA file).
    #[error("configuration: {0}")]
    Config(String),
    /// The caller passed an argument this client cannot send (for example a raw request that is not
    /// a JSON object).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
