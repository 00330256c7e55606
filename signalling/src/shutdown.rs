//! Shutdown as a shared signal: running, draining until a deadline (SIGTERM), or stopping now
//! (SIGINT, or a second signal). Every service watches it.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The server's lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serving normally.
    Running,
    /// Not accepting new connections; open sessions may continue until the deadline.
    Draining {
        /// When remaining sessions are closed.
        deadline: Instant,
    },
    /// Closing everything at once.
    Stopping,
}

/// The sending side, held by whoever decides to shut down (signal handlers, tests).
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<Phase>,
}

impl Shutdown {
    /// A signal in the running phase.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Phase::Running);
        Shutdown { tx }
    }

    /// Starts draining with this grace period. A drain already under way keeps its deadline.
    pub fn drain(&self, grace: Duration) {
        self.tx.send_if_modified(|phase| match phase {
            Phase::Running => {
                *phase = Phase::Draining {
                    deadline: Instant::now() + grace,
                };
                true
            }
            _ => false,
        });
    }

    /// Stops at once.
    pub fn stop_now(&self) {
        self.tx.send_if_modified(|phase| {
            if *phase == Phase::Stopping {
                false
            } else {
                *phase = Phase::Stopping;
                true
            }
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }

    /// A receiver that sees every phase change.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits until the phase is no longer `Running` and returns it.
pub async fn left_running(rx: &mut watch::Receiver<Phase>) -> Phase {
    match rx.wait_for(|p| *p != Phase::Running).await {
        Ok(phase) => *phase,
        // The sender is gone: nobody can ask for a drain any more, so stop.
        Err(_) => Phase::Stopping,
    }
}
