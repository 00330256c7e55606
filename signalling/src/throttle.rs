//! Login throttling: after too many failed logins for one user name within a window, further
//! attempts are refused with `rate_limited` until the window passes. A pure core taking `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Counts failures per key in fixed windows.
#[derive(Debug)]
pub struct LoginThrottle {
    window: Duration,
    max_failures: u32,
    failures: HashMap<String, (Instant, u32)>,
}

/// Entries kept before stale ones are swept, so an attacker cycling names cannot grow memory.
const SWEEP_AT: usize = 10_000;

impl LoginThrottle {
    /// Allows `max_failures` failures per key per `window`.
    pub fn new(window: Duration, max_failures: u32) -> Self {
        LoginThrottle {
            window,
            max_failures,
            failures: HashMap::new(),
        }
    }

    /// Whether an attempt for `key` may proceed now.
    pub fn allowed(&self, now: Instant, key: &str) -> bool {
        match self.failures.get(key) {
            Some((start, count)) => {
                now.saturating_duration_since(*start) >= self.window || *count < self.max_failures
            }
            None => true,
        }
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, now: Instant, key: &str) {
        if self.failures.len() >= SWEEP_AT {
            let window = self.window;
            self.failures
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let entry = self.failures.entry(key.to_owned()).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Records a success, which clears the key's failures.
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(Duration::from_secs(60), 3);
        for _ in 0..3 {
            assert!(t.allowed(t0, "maria"));
            t.failed(t0, "maria");
        }
        assert!(!t.allowed(t0 + Duration::from_secs(59), "maria"));
        assert!(t.allowed(t0, "other"));
        assert!(t.allowed(t0 + Duration::from_secs(60), "maria"));
        t.failed(t0 + Duration::from_secs(60), "maria");
        assert!(t.allowed(t0 + Duration::from_secs(60), "maria"));
    }

    #[test]
    fn success_clears() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(Duration::from_secs(60), 1);
        t.failed(t0, "maria");
        assert!(!t.allowed(t0, "maria"));
        t.succeeded("maria");
        assert!(t.allowed(t0, "maria"));
    }
}
