//! The WebSocket endpoint `/api/v1/ws`: a thin tokio driver around [`connection::Connection`].

pub mod connection;
pub mod turn;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use protocol::{CLOSE_GOING_AWAY, CLOSE_SUPERSEDED, CLOSE_TRY_AGAIN};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::Instrument as _;

use crate::calls::{self, SessionCtx};
use crate::client_addr::ClientAddr;
use crate::shutdown::Phase;
use crate::state::{AppState, StateOpener};
use connection::{Connection, Output, Settings};

/// The transport-level limit. Frames between the protocol limit (64 KiB) and this one are read and
/// refused with `invalid`; larger ones cannot be read at all and close the socket with 1009.
const TRANSPORT_MAX_MESSAGE: usize = 1 << 20;

/// Initial read buffer per socket; it grows for larger frames.
const READ_BUFFER: usize = 4 * 1024;

/// `GET /api/v1/ws`: upgrades and runs the session. A client address (the forwarded one behind a
/// trusted proxy, see [`crate::client_addr`]) that holds `limits.ws_per_address` sockets already
/// gets `429 rate_limited` instead.
pub async fn endpoint(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let client = client
        .map(|Extension(ClientAddr(ip))| ip)
        .or_else(|| peer.map(|Extension(ConnectInfo(peer))| peer.ip()));
    // Without a peer address (a router driven without a socket) there is nothing to count.
    let slot = match client {
        Some(client) => match state.limits.ws.try_acquire(client) {
            Ok(slot) => Some(slot),
            Err(_) => {
                tracing::debug!(%client, "websocket refused: too many from this address");
                return crate::error::AppError::new(
                    protocol::ErrorCode::RateLimited,
                    format!(
                        "more than {} WebSocket connections from this address",
                        state.limits.ws.per_address()
                    ),
                )
                .into_response();
            }
        },
        None => None,
    };
    // tungstenite's default buffers are 128 KiB each way, which would cost over 100 KiB per idle
    // session. Frames here are small JSON, so small buffers that grow on demand are enough.
    ws.max_message_size(TRANSPORT_MAX_MESSAGE)
        .max_frame_size(TRANSPORT_MAX_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            let tasks = state.ws_tasks.clone();
            // The session's log lines carry the client's address (behind a trusted proxy, the
            // forwarded one).
            let span = match client {
                Some(client) => tracing::info_span!("ws", %client),
                None => tracing::info_span!("ws"),
            };
            tasks.track_future(
                async move {
                    run(socket, state).await;
                    drop(slot);
                }
                .instrument(span),
            )
        })
}

async fn run(socket: WebSocket, state: AppState) {
    let settings = Settings::with_heartbeat(Duration::from_secs(state.config.ws.heartbeat_s))
        .with_rate(state.config.ws.rate_per_s, state.config.ws.rate_burst);
    let turn = turn::TurnIssuer::load(state.config.turn.as_ref()).await;
    let opened_at = Instant::now();
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut conn = Connection::new(opened_at, settings).with_turn(turn, opened_at, unix_s);
    let (mut sink, mut stream) = socket.split();
    let mut phase = state.shutdown.subscribe();
    let mut attachment: Option<(String, u64)> = None;
    let mut kicked = tokio_util::sync::CancellationToken::new();
    // Set once the session is open: the socket's place in the event hub and its event channel.
    let mut ctx: Option<SessionCtx> = None;
    let mut events: Option<mpsc::Receiver<std::sync::Arc<str>>> = None;
    let mut overflow = tokio_util::sync::CancellationToken::new();
    let mut role_label = "pending";
    state
        .metrics
        .ws_sessions
        .with_label_values(&[role_label])
        .inc();

    // A socket opened while draining closes at once.
    apply_phase(&mut conn, *phase.borrow());

    loop {
        // Flush everything the core wants sent before waiting again.
        let mut closed = false;
        while let Some(output) = conn.poll_output() {
            let sent = match output {
                Output::Text(text) => {
                    state.metrics.ws_frames.with_label_values(&["out"]).inc();
                    sink.send(Message::Text(text.into())).await
                }
                Output::Ping => sink.send(Message::Ping(Vec::new().into())).await,
                Output::Close { code, reason } => {
                    state
                        .metrics
                        .ws_closes
                        .with_label_values(&[&code.to_string()])
                        .inc();
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    closed = true;
                    Ok(())
                }
                Output::Dispatch(frame) => {
                    let reply = match &ctx {
                        Some(ctx) => calls::handle(&state, ctx, *frame).await,
                        None => protocol::ServerFrame::error(
                            Some(frame.id),
                            protocol::ErrorCode::Unauthorized,
                            "authenticate first",
                        ),
                    };
                    conn.reply(reply);
                    Ok(())
                }
            };
            if sent.is_err() {
                closed = true;
            }
            if closed {
                break;
            }
        }
        if closed {
            break;
        }
        let deadline = conn
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        // Biased: events already queued for the client go out before the next request is read, so
        // a reply never overtakes an event that happened before the request arrived.
        tokio::select! {
            biased;
            Some(frame) = next_event(&mut events) => conn.deliver(frame.to_string()),
            message = stream.next() => {
                let now = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        state.metrics.ws_frames.with_label_values(&["in"]).inc();
                        let mut opener = StateOpener { state: &state, attached: None };
                        conn.handle_text(now, text.as_str(), &mut opener);
                        if let Some((attached, kick)) = opener.attached {
                            if let Some(opened) = conn.session() {
                                let role = opened.principal.role.as_str();
                                state.metrics.ws_sessions.with_label_values(&[role_label]).dec();
                                role_label = role;
                                state.metrics.ws_sessions.with_label_values(&[role_label]).inc();
                                tracing::info!(
                                    session = %attached.session_id,
                                    principal = %opened.principal.id,
                                    role,
                                    resumed = attached.resumed,
                                    "session opened"
                                );
                            }
                            let capabilities = state.sessions.capabilities(&attached.session_id);
                            attachment = Some((attached.session_id, attached.attachment));
                            kicked = kick;
                            if let Some(opened) = conn.session() {
                                let principal = opened.principal.clone();
                                let registration = state.events.register_with(&principal, &capabilities);
                                events = Some(registration.rx);
                                overflow = registration.overflow;
                                match calls::on_open(&state, &principal).await {
                                    Ok(sync) => conn.event(sync),
                                    Err(refusal) => {
                                        tracing::warn!(message = %refusal.message, "session set-up failed");
                                        conn.close_now(CLOSE_TRY_AGAIN, "session set-up failed; retry");
                                    }
                                }
                                calls::incall::on_socket(&state, &principal, registration.id, &capabilities);
                                ctx = Some(SessionCtx { principal, socket: registration.id });
                            }
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => conn.handle_binary(now, bytes.len()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => conn.handle_activity(now),
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(error)) => {
                        if is_capacity_error(&error) {
                            conn.handle_oversized();
                        } else {
                            tracing::debug!(%error, "websocket read failed");
                            break;
                        }
                    }
                }
            }
            _ = sleep_until(deadline.into()) => conn.handle_timeout(Instant::now()),
            changed = phase.changed() => {
                if changed.is_err() {
                    conn.close_now(CLOSE_GOING_AWAY, "server shutting down");
                } else {
                    apply_phase(&mut conn, *phase.borrow());
                }
            }
            _ = kicked.cancelled() => conn.close_now(CLOSE_SUPERSEDED, "session resumed on another socket"),
            _ = overflow.cancelled() => conn.close_now(CLOSE_TRY_AGAIN, "too many undelivered events; reconnect with resume"),
        }
    }

    state
        .metrics
        .ws_sessions
        .with_label_values(&[role_label])
        .dec();
    if let Some(ctx) = &ctx {
        state.events.unregister(ctx.socket);
    }
    if let Some((session_id, attachment)) = attachment {
        state
            .sessions
            .detach(Instant::now(), &session_id, attachment);
        tracing::info!(session = %session_id, "session detached");
    }
}

/// The next frame for the client, or never when the session has no event channel yet.
async fn next_event(
    events: &mut Option<mpsc::Receiver<std::sync::Arc<str>>>,
) -> Option<std::sync::Arc<str>> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn apply_phase(conn: &mut Connection, phase: Phase) {
    match phase {
        Phase::Running => {}
        Phase::Draining { deadline } => conn.begin_drain(Instant::now(), deadline),
        Phase::Stopping => conn.close_now(CLOSE_GOING_AWAY, "server shutting down"),
    }
}

fn is_capacity_error(error: &axum::Error) -> bool {
    // axum does not expose tungstenite's error type, so the capacity error is recognised by its
    // message ("Space limit exceeded: Message too long: …").
    let text = error.to_string();
    text.contains("Space limit exceeded") || text.contains("Message too long")
}
