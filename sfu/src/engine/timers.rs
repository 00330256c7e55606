//! Timers: the earliest deadline of the loop's connections, running the ones that are due, and
//! the grace period after which a connection that is failed, disconnected or not yet connected is
//! reported as failed.

use std::cmp::Reverse;
use std::time::Instant;

use rtc::sansio::Protocol;

use super::Engine;
use crate::MediaEvent;

impl Engine {
    /// The earliest instant [`Engine::handle_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded
            }
            peer.scheduled = None;
            self.counters.timer_fires += 1;
            let _ = peer.pc.handle_timeout(now);
            self.process(now, id);
        }
    }

    /// Connections that have been failed, disconnected or unconnected for longer than the grace
    /// period are reported once as [`MediaEvent::Failed`].
    pub fn check_failures(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            if peer.failed_reported {
                continue;
            }
            if let Some(since) = peer.trouble_since {
                if now.saturating_duration_since(since) >= self.cfg.grace {
                    peer.failed_reported = true;
                    self.events.push(MediaEvent::Failed {
                        call_id: peer.call.to_string(),
                        who: peer.who.clone(),
                    });
                }
            }
        }
    }
}
