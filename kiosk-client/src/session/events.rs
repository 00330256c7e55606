//! The event side of a session: the events and unknown frames the socket task hands over, buffered
//! so that waiting for one leaves the others, in arrival order, for later calls.

use std::collections::VecDeque;
use std::time::Duration;

use protocol::Event;
use serde_json::Value;
use tokio::sync::mpsc;

use super::deadline_after;
use crate::ClientError;

/// What the socket task hands to the session's event buffer.
pub(crate) enum Incoming {
    /// A known event, with the arrival number of its frame.
    Event(u64, Event),
    /// Anything else that is not a routed reply (see the [`session`](super) module docs).
    Unknown(Value),
}

/// The event side of a session: the channel from the socket task, the events that arrived but were
/// not taken yet (oldest first), and the unknown frames.
pub(crate) struct EventBuffer {
    rx: mpsc::UnboundedReceiver<Incoming>,
    buffered: VecDeque<(u64, Event)>,
    unknown: VecDeque<Value>,
}

impl EventBuffer {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Incoming>) -> Self {
        EventBuffer {
            rx,
            buffered: VecDeque::new(),
            unknown: VecDeque::new(),
        }
    }

    fn accept(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Event(seq, event) => self.buffered.push_back((seq, event)),
            Incoming::Unknown(value) => self.unknown.push_back(value),
        }
    }

    /// Moves everything that already arrived into the buffers.
    fn pump(&mut self) {
        while let Ok(incoming) = self.rx.try_recv() {
            self.accept(incoming);
        }
    }

    /// The first event, oldest first, for which `pred` holds; the others stay buffered in order.
    /// Cancel-safe: an event received before a cancellation is buffered, not lost.
    pub(crate) async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(u64, &Event) -> bool,
    ) -> Result<(u64, Event), ClientError> {
        self.pump();
        if let Some(i) = self.buffered.iter().position(|(s, e)| pred(*s, e)) {
            if let Some(found) = self.buffered.remove(i) {
                return Ok(found);
            }
        }
        let deadline = deadline_after(timeout);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(Incoming::Event(seq, event))) => {
                    if pred(seq, &event) {
                        return Ok((seq, event));
                    }
                    self.buffered.push_back((seq, event));
                }
                Ok(Some(unknown @ Incoming::Unknown(_))) => self.accept(unknown),
            }
        }
    }

    /// The first unknown frame, oldest first, for which `pred` holds.
    pub(crate) async fn wait_for_unknown(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        self.pump();
        if let Some(i) = self.unknown.iter().position(&mut pred) {
            if let Some(found) = self.unknown.remove(i) {
                return Ok(found);
            }
        }
        let deadline = deadline_after(timeout);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(Incoming::Unknown(value))) => {
                    if pred(&value) {
                        return Ok(value);
                    }
                    self.unknown.push_back(value);
                }
                Ok(Some(event @ Incoming::Event(..))) => self.accept(event),
            }
        }
    }

    /// Every event that arrived so far, oldest first, with its arrival number.
    pub(crate) fn drain(&mut self) -> Vec<(u64, Event)> {
        self.pump();
        self.buffered.drain(..).collect()
    }

    /// Every unknown frame that arrived so far, oldest first.
    pub(crate) fn take_unknown(&mut self) -> Vec<Value> {
        self.pump();
        self.unknown.drain(..).collect()
    }

    /// Puts events (from an earlier connection) in front of everything buffered, with arrival
    /// number 0.
    pub(crate) fn prepend(&mut self, events: Vec<Event>, unknown: Vec<Value>) {
        for event in events.into_iter().rev() {
            self.buffered.push_front((0, event));
        }
        for value in unknown.into_iter().rev() {
            self.unknown.push_front(value);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallRef, QueueUpdate};

    fn update(call: &str, position: u32) -> Event {
        Event::QueueUpdate(QueueUpdate {
            call_id: call.into(),
            position,
            estimated_wait_s: None,
            estimated_wait_low_s: None,
            estimated_wait_high_s: None,
        })
    }

    fn held(call: &str) -> Event {
        Event::CallHeld(CallRef {
            call_id: call.into(),
        })
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn wait_for_keeps_the_skipped_events_in_order() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        for (i, event) in [update("a", 3), update("a", 2), held("a"), update("a", 1)]
            .into_iter()
            .enumerate()
        {
            tx.send(Incoming::Event(i as u64 + 1, event)).unwrap();
        }
        let (seq, found) = buffer
            .wait_for(SHORT, |_, e| matches!(e, Event::CallHeld(_)))
            .await
            .unwrap();
        assert_eq!((seq, found), (3, held("a")));
        let (_, next) = buffer.wait_for(SHORT, |_, _| true).await.unwrap();
        assert_eq!(next, update("a", 3));
        let rest: Vec<Event> = buffer.drain().into_iter().map(|(_, e)| e).collect();
        assert_eq!(rest, vec![update("a", 2), update("a", 1)]);
        assert!(buffer.drain().is_empty());
    }

    #[tokio::test]
    async fn waiting_buffers_later_arrivals_and_times_out_without_losing_them() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(Incoming::Event(1, update("a", 2))).unwrap();
            tx.send(Incoming::Unknown(
                serde_json::json!({"type": "media.stats"}),
            ))
            .unwrap();
            tx.send(Incoming::Event(2, update("a", 1))).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(Incoming::Event(3, held("a"))).unwrap();
            tx
        });
        let (_, found) = buffer
            .wait_for(Duration::from_secs(5), |_, e| {
                matches!(e, Event::CallHeld(_))
            })
            .await
            .unwrap();
        assert_eq!(found, held("a"));
        assert!(matches!(
            buffer
                .wait_for(SHORT, |_, e| matches!(e, Event::CallEnded(_)))
                .await,
            Err(ClientError::Timeout)
        ));
        let _tx = sender.await.unwrap();
        let rest: Vec<Event> = buffer.drain().into_iter().map(|(_, e)| e).collect();
        assert_eq!(rest, vec![update("a", 2), update("a", 1)]);
        let unknown = buffer.take_unknown();
        assert_eq!(unknown, vec![serde_json::json!({"type": "media.stats"})]);
    }

    #[tokio::test]
    async fn a_closed_channel_still_yields_the_buffered_events_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        tx.send(Incoming::Event(1, update("a", 1))).unwrap();
        tx.send(Incoming::Event(2, held("a"))).unwrap();
        drop(tx);
        assert!(matches!(
            buffer
                .wait_for(SHORT, |_, e| matches!(e, Event::CallEnded(_)))
                .await,
            Err(ClientError::Closed)
        ));
        assert_eq!(
            buffer.wait_for(SHORT, |_, _| true).await.unwrap().1,
            update("a", 1)
        );
        assert_eq!(
            buffer.wait_for(SHORT, |_, _| true).await.unwrap().1,
            held("a")
        );
        assert!(matches!(
            buffer.wait_for(SHORT, |_, _| true).await,
            Err(ClientError::Closed)
        ));
    }

    #[tokio::test]
    async fn carried_over_events_come_first() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        tx.send(Incoming::Event(1, update("a", 1))).unwrap();
        buffer.pump();
        buffer.prepend(vec![update("a", 3), update("a", 2)], Vec::new());
        let all: Vec<(u64, Event)> = buffer.drain();
        assert_eq!(
            all,
            vec![
                (0, update("a", 3)),
                (0, update("a", 2)),
                (1, update("a", 1))
            ]
        );
    }

    #[tokio::test]
    async fn unknown_frames_can_be_waited_for_without_losing_events() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut buffer = EventBuffer::new(rx);
        tx.send(Incoming::Event(1, update("a", 1))).unwrap();
        tx.send(Incoming::Unknown(serde_json::json!({"type": "x", "n": 1})))
            .unwrap();
        tx.send(Incoming::Unknown(serde_json::json!({"type": "x", "n": 2})))
            .unwrap();
        let found = buffer
            .wait_for_unknown(SHORT, |v| v["n"] == 2)
            .await
            .unwrap();
        assert_eq!(found["n"], 2);
        assert_eq!(buffer.take_unknown().len(), 1);
        assert_eq!(buffer.drain().len(), 1);
    }
}
