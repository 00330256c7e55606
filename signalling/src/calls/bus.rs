//! Events across nodes: what one node raises for a principal reaches that principal's sessions on
//! every node.
//!
//! Queue effects already reach every node (each node reads every committed batch and delivers to
//! its own sessions). Everything else a node raises for a client — in-call events, device events to
//! a kiosk agent, a media node's statistics — goes through [`queue::Shared`]'s bus when the
//! deployment has more than one node (a Redis store):
//!
//! - [`crate::calls::hub::EventHub::send`] delivers to the sessions here at once and hands the
//!   frame to [`run_publisher`], which publishes a [`BusMessage::Event`] tagged with this node's id;
//! - [`run_listener`] delivers every `Event` published by *another* node to the sessions here, and
//!   hands `Media` messages (a media node's events) to `calls::media`.
//!
//! With the in-memory store there is one node and no bus: the publisher is never started.

use std::sync::Arc;

use protocol::{Capability, Role};
use queue::Shared;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::events::Recipient;
use crate::shutdown::Phase;
use crate::state::AppState;

/// One message on the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusMessage {
    /// A frame for every session of a principal (only the sessions with `cap`, when given and
    /// some session declared it).
    Event {
        /// The node that raised it (and already delivered it to its own sessions).
        from: String,
        /// The principal's role.
        role: Role,
        /// The principal's id.
        id: String,
        /// The device capability the frame is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cap: Option<Capability>,
        /// The frame, as sent on the socket.
        frame: String,
    },
    /// An event of a media node's SFU (`medianode::api::NodeEvent` as JSON).
    Media {
        /// The media node.
        from: String,
        /// The event.
        event: serde_json::Value,
    },
}

/// A frame waiting to be published.
#[derive(Debug)]
pub struct Outgoing {
    pub(crate) to: Recipient,
    pub(crate) cap: Option<Capability>,
    pub(crate) frame: Arc<str>,
}

/// Frames waiting for the bus before the hub drops new ones (while Redis is unreachable).
pub const BACKLOG: usize = 16_384;

/// Publishes what this node's hub hands over, in order, until the hub is dropped.
pub async fn run_publisher(state: AppState, mut rx: mpsc::Receiver<Outgoing>) {
    let from = state.routing.node.to_string();
    while let Some(out) = rx.recv().await {
        let msg = BusMessage::Event {
            from: from.clone(),
            role: out.to.role,
            id: out.to.id,
            cap: out.cap,
            frame: out.frame.to_string(),
        };
        let Ok(text) = serde_json::to_string(&msg) else {
            continue;
        };
        publish(&state, &text).await;
    }
}

/// Publishes one message, retrying briefly while the store is unavailable (a Redis failover).
pub async fn publish(state: &AppState, text: &str) {
    let r = &state.routing;
    for attempt in 0..20u32 {
        match r.shared.publish(&r.tenant, text).await {
            Ok(()) => return,
            Err(e) if attempt == 19 => {
                tracing::warn!(error = %e, "an event could not be published to the other nodes");
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Delivers what other nodes publish to this node's sessions, until the server stops.
pub async fn run_listener(state: AppState) {
    let mut phase = state.shutdown.subscribe();
    let me = state.routing.node.to_string();
    loop {
        let r = &state.routing;
        let mut rx = match r.shared.listen(&r.tenant).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen to the other nodes' events; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
                }
            }
        };
        loop {
            let received = tokio::select! {
                m = rx.recv() => m,
                _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
            };
            let text = match received {
                Ok(t) => t,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "fell behind the other nodes' events");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let Ok(msg) = serde_json::from_str::<BusMessage>(&text) else {
                tracing::debug!("an undecodable message on the bus");
                continue;
            };
            match msg {
                BusMessage::Event {
                    from,
                    role,
                    id,
                    cap,
                    frame,
                } if from != me => {
                    let to = Recipient { role, id };
                    let frame: Arc<str> = Arc::from(frame);
                    match cap {
                        Some(c) => state.events.send_device_local(&to, c, &frame),
                        None => state.events.send_local(&to, &frame),
                    };
                }
                BusMessage::Event { .. } => {}
                BusMessage::Media { from, event } => {
                    // In a task of its own: a slow media node must not hold up the events for
                    // clients behind it.
                    let state = state.clone();
                    tokio::spawn(async move {
                        super::media::on_node_event(&state, &from, event).await;
                    });
                }
            }
        }
    }
}
