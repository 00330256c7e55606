//! The socket task: sends what the session asks, reads everything, routes each reply to the
//! request waiting for it and every event to the event buffer, and records how the connection
//! ended.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use protocol::{parse_server_frame, Event, ServerFrame, ServerMessage};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::events::Incoming;
use super::requester::{Command, IceConfig, Reply, Shared};
use super::CLOSE_WAIT;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The socket task: sends what the session asks, reads everything, routes replies and events, and
/// records how the connection ended.
pub(super) async fn run_socket(
    mut ws: Ws,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Incoming>,
    shared: Arc<Shared>,
) {
    let mut seq = 0u64;
    // Set once this side sent its close frame: how long to wait for the server's.
    let mut closing: Option<Instant> = None;
    loop {
        let close_deadline = closing.unwrap_or_else(Instant::now);
        tokio::select! {
            command = commands.recv(), if closing.is_none() => match command {
                Some(Command::Text(text)) => {
                    if let Err(e) = ws.send(Message::Text(text.into())).await {
                        tracing::debug!(error = %e, "sending failed; the connection is gone");
                        break;
                    }
                }
                Some(Command::Close) | None => {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    if ws.close(Some(frame)).await.is_err() {
                        break;
                    }
                    closing = Some(Instant::now() + CLOSE_WAIT);
                }
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    seq += 1;
                    dispatch(text.as_str(), seq, &events, &shared);
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                        // A close frame without a status is 1005 ("no status received").
                        None => (1005, String::new()),
                    };
                    tracing::debug!(code, %reason, "the server closed the connection");
                    shared.lock().close_frame = Some((code, reason));
                    // tungstenite answers the close; keep polling until the stream ends.
                }
                Some(Ok(Message::Binary(data))) => {
                    tracing::warn!(len = data.len(), "ignoring a binary frame from the server");
                }
                // Pings are answered by tungstenite while we read; pongs and raw frames need nothing.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the connection failed");
                    break;
                }
                None => break,
            },
            () = tokio::time::sleep_until(close_deadline), if closing.is_some() => break,
        }
    }
    shared.finish();
}

/// Routes one text frame from the server.
fn dispatch(text: &str, seq: u64, events: &mpsc::UnboundedSender<Incoming>, shared: &Shared) {
    let raw = || serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    let unrouted = match parse_server_frame(text) {
        Ok(ServerMessage::Frame(ServerFrame::Ok { id, body })) => route(shared, &id, seq, Ok(body)),
        Ok(ServerMessage::Frame(ServerFrame::Error {
            id: Some(id),
            code,
            message,
        })) => route(shared, &id, seq, Err((code, message))),
        Ok(ServerMessage::Frame(ServerFrame::Error { id: None, .. })) => true,
        Ok(ServerMessage::Frame(ServerFrame::Event(event))) => {
            if let Event::IceServers(fresh) = &event {
                *shared.ice.lock().unwrap_or_else(|e| e.into_inner()) = IceConfig {
                    servers: fresh.ice_servers.clone(),
                    policy: fresh.ice_transport_policy.unwrap_or_default(),
                };
            }
            let _ = events.send(Incoming::Event(seq, event));
            false
        }
        Ok(ServerMessage::Unknown(value)) => {
            let _ = events.send(Incoming::Unknown(value));
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable frame from the server");
            true
        }
    };
    if unrouted {
        let _ = events.send(Incoming::Unknown(raw()));
    }
}

/// Hands a reply to the request waiting for it; `true` when nobody waits for that id.
fn route(shared: &Shared, id: &str, seq: u64, reply: Reply) -> bool {
    let waiter = shared.lock().pending.remove(id);
    match waiter {
        Some(tx) => tx.send((seq, reply)).is_err(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::IceTransportPolicy;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;
    use tokio::sync::watch;

    use crate::session::requester::SharedState;

    #[test]
    fn an_ice_servers_event_replaces_the_sessions_ice_config_and_is_still_delivered() {
        let (closed, _) = watch::channel(false);
        let shared = Shared {
            state: Mutex::new(SharedState {
                pending: HashMap::new(),
                closed: false,
                close_frame: None,
            }),
            ice: Mutex::new(IceConfig::default()),
            next_id: AtomicU64::new(0),
            closed,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let frame = r#"{"type":"ice.servers","ice_servers":[{"urls":["turn:t.example:3478"],
            "username":"2000000000:k1","credential":"c2VjcmV0"}],"ice_transport_policy":"relay",
            "ice_servers_ttl_s":600}"#
            .replace('\n', "");
        dispatch(&frame, 7, &tx, &shared);
        let ice = shared.ice.lock().unwrap().clone();
        assert_eq!(ice.policy, IceTransportPolicy::Relay);
        assert_eq!(ice.servers[0].urls, ["turn:t.example:3478"]);
        assert_eq!(ice.servers[0].username.as_deref(), Some("2000000000:k1"));
        assert!(
            !format!("{ice:?}").contains("c2VjcmV0"),
            "no credential in Debug: {ice:?}"
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Incoming::Event(7, Event::IceServers(_)))
        ));
        // Without a policy: `all`.
        dispatch(
            r#"{"type":"ice.servers","ice_servers":[],"ice_servers_ttl_s":600}"#,
            8,
            &tx,
            &shared,
        );
        assert_eq!(*shared.ice.lock().unwrap(), IceConfig::default());
    }
}
