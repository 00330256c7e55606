//! Timers: the earliest deadline of the loop's connections, running the ones that are due, and
//! the grace period after which a connection that is failed, disconnected or not yet connected is
//! reported as failed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rtc::sansio::Protocol;

use super::peers::PeerId;
use super::Engine;
use crate::MediaEvent;

/// How late a connected connection's timer may run when no datagram wakes the loop first.
///
/// A connected connection's timers are rtc's periodic ones (NACK and transport-wide feedback
/// every 100 ms, RTCP reports, ICE keepalives), none of which needs to be exact. They run at the
/// first wake-up after their deadline, which during a call is almost always a datagram's (each
/// client sends audio every 20 ms), so they cost no wake-up of their own; the loop wakes for them
/// only if nothing else came within this slack. A joining connection's timers (ICE checks, DTLS
/// retransmissions) stay exact.
pub const TIMER_SLACK: Duration = Duration::from_millis(20);

impl Engine {
    /// The instant the driver has to wake at for [`Engine::handle_timeout`]: the earliest
    /// deadline of a connection not connected, or that of a connected one plus
    /// [`TIMER_SLACK`]. The driver also calls [`Engine::handle_timeout`] on every other
    /// wake-up, which runs whatever is due by then.
    pub fn next_deadline(&self) -> Option<Instant> {
        let exact = self.timers.peek().map(|Reverse((t, _))| *t);
        let lazy = self
            .lazy_timers
            .peek()
            .map(|Reverse((t, _))| *t + TIMER_SLACK);
        exact.into_iter().chain(lazy).min()
    }

    /// Runs the timers whose deadline is `now` or earlier, earliest first.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = pop_due(&mut self.timers, &mut self.lazy_timers, now) {
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

type Deadlines = BinaryHeap<Reverse<(Instant, PeerId)>>;

/// The earlier of the two heaps' first deadlines, taken off its heap, if it is due by `now`.
fn pop_due(a: &mut Deadlines, b: &mut Deadlines, now: Instant) -> Option<(Instant, PeerId)> {
    let first = |h: &Deadlines| h.peek().map(|Reverse(e)| *e).filter(|(t, _)| *t <= now);
    let heap = match (first(a), first(b)) {
        (Some(x), Some(y)) if y < x => b,
        (Some(_), _) => a,
        (None, Some(_)) => b,
        (None, None) => return None,
    };
    heap.pop().map(|Reverse(e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_deadlines_come_off_both_heaps_earliest_first() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut exact: Deadlines = [(at(5), 1), (at(30), 2)].map(Reverse).into();
        let mut lazy: Deadlines = [(at(2), 3), (at(10), 4), (at(40), 5)].map(Reverse).into();
        let mut order = Vec::new();
        while let Some((_, id)) = pop_due(&mut exact, &mut lazy, at(30)) {
            order.push(id);
        }
        assert_eq!(order, vec![3, 1, 4, 2]);
        assert_eq!(pop_due(&mut exact, &mut lazy, at(39)), None);
        assert_eq!(pop_due(&mut exact, &mut lazy, at(40)), Some((at(40), 5)));
    }
}
