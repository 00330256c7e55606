//! Login throttling, a pure core taking `now`. Failed logins are counted in fixed windows per
//! (user name, client address) and per client address:
//!
//! - a user name is locked only for the address that failed too often with it, so another address
//!   cannot lock a real operator out;
//! - an address with too many failures over all user names (password spraying) is refused for
//!   every name until its window passes.
//!
//! Both tables are bounded: stale entries are swept, and past the bound the oldest entry goes.
//! [`LogBudget`] bounds how many log lines failures may write.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The address a client is counted under: IPv4 as it is (IPv4-mapped IPv6 too), and IPv6 by its
/// /64 prefix, since one host commonly holds a whole /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            if v6.is_loopback() {
                return IpAddr::V6(v6);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The throttle's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Length of a counting window; a lock lasts until its window ends.
    pub window: Duration,
    /// Failures of one user name from one address that lock that name for that address.
    pub user_address_failures: u32,
    /// Failures from one address, over all user names, that lock the address.
    pub address_failures: u32,
    /// Entries kept in each table at most.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(300),
            user_address_failures: 10,
            address_failures: 50,
            max_entries: 65_536,
        }
    }
}

/// Whether a login attempt may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on. `clean` is true when the address has no failure in its current window: its password
    /// checks are served before those of addresses that failed.
    Allowed {
        /// No failure from this address in the current window.
        clean: bool,
    },
    /// This user name is locked for this address for `retry_after`.
    UserLocked {
        /// Time left in the window.
        retry_after: Duration,
    },
    /// This address is locked for every user name for `retry_after`.
    AddressLocked {
        /// Time left in the window.
        retry_after: Duration,
    },
}

/// What a recorded failure changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failure {
    /// Failures of this (user, address) in the window, this one included.
    pub user_address_count: u32,
    /// Failures of this address in the window, this one included.
    pub address_count: u32,
    /// This failure locked the user name for this address.
    pub user_locked: bool,
    /// This failure locked the address.
    pub address_locked: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    fn count_at(&self, now: Instant, window: Duration) -> u32 {
        if now.saturating_duration_since(self.start) >= window {
            0
        } else {
            self.count
        }
    }

    fn retry_after(&self, now: Instant, window: Duration) -> Duration {
        (self.start + window).saturating_duration_since(now)
    }
}

/// Counts failures per key in fixed windows, in a table of at most `max_entries` entries.
#[derive(Debug)]
struct Counter<K> {
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new() -> Self {
        Counter {
            windows: HashMap::new(),
        }
    }

    fn count(&self, now: Instant, key: &K, window: Duration) -> u32 {
        self.windows.get(key).map_or(0, |w| w.count_at(now, window))
    }

    fn retry_after(&self, now: Instant, key: &K, window: Duration) -> Duration {
        self.windows
            .get(key)
            .map_or(Duration::ZERO, |w| w.retry_after(now, window))
    }

    /// Counts one failure; returns the count in the current window.
    fn bump(&mut self, now: Instant, key: K, window: Duration, max_entries: usize) -> u32 {
        if !self.windows.contains_key(&key) && self.windows.len() >= max_entries.max(1) {
            self.windows
                .retain(|_, w| now.saturating_duration_since(w.start) < window);
            while self.windows.len() >= max_entries.max(1) {
                let oldest = self
                    .windows
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(oldest) => self.windows.remove(&oldest),
                    None => break,
                };
            }
        }
        let entry = self.windows.entry(key).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.saturating_duration_since(entry.start) >= window {
            *entry = Window {
                start: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
        entry.count
    }

    fn remove(&mut self, key: &K) {
        self.windows.remove(key);
    }

    fn len(&self) -> usize {
        self.windows.len()
    }
}

/// Failed-login counters per (user name, address) and per address.
#[derive(Debug)]
pub struct LoginThrottle {
    limits: Limits,
    pairs: Counter<(String, IpAddr)>,
    addresses: Counter<IpAddr>,
}

impl LoginThrottle {
    /// A throttle with these limits.
    pub fn new(limits: Limits) -> Self {
        LoginThrottle {
            limits,
            pairs: Counter::new(),
            addresses: Counter::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether an attempt for `user` from `address` (a [`client_key`]) may go on now.
    pub fn check(&self, now: Instant, user: &str, address: IpAddr) -> Verdict {
        let window = self.limits.window;
        let from_address = self.addresses.count(now, &address, window);
        if from_address >= self.limits.address_failures {
            return Verdict::AddressLocked {
                retry_after: self.addresses.retry_after(now, &address, window),
            };
        }
        let pair = (user.to_owned(), address);
        if self.pairs.count(now, &pair, window) >= self.limits.user_address_failures {
            return Verdict::UserLocked {
                retry_after: self.pairs.retry_after(now, &pair, window),
            };
        }
        Verdict::Allowed {
            clean: from_address == 0,
        }
    }

    /// Records a failed attempt for `user` from `address`.
    pub fn failed(&mut self, now: Instant, user: &str, address: IpAddr) -> Failure {
        let Limits {
            window,
            user_address_failures,
            address_failures,
            max_entries,
        } = self.limits;
        let user_address_count =
            self.pairs
                .bump(now, (user.to_owned(), address), window, max_entries);
        let address_count = self.addresses.bump(now, address, window, max_entries);
        Failure {
            user_address_count,
            address_count,
            user_locked: user_address_count == user_address_failures,
            address_locked: address_count == address_failures,
        }
    }

    /// Records a success, which clears the failures of this user name from this address (not the
    /// address's own count: logging into one's own account does not reset a spraying count).
    pub fn succeeded(&mut self, user: &str, address: IpAddr) {
        self.pairs.remove(&(user.to_owned(), address));
    }

    /// Entries held (pairs, addresses).
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.addresses.len())
    }

    /// Whether no failure is held.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

/// What to do with one log line under a [`LogBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLine {
    /// Write the line; first write a summary of `suppressed` lines left out in earlier intervals
    /// when it is not zero.
    Write {
        /// Lines suppressed since the last summary.
        suppressed: u64,
    },
    /// Leave the line out (it is counted for the next summary).
    Suppress,
}

/// At most `max_lines` log lines per interval; the lines left out are counted and reported by the
/// first line written in a later interval.
#[derive(Debug)]
pub struct LogBudget {
    interval: Duration,
    max_lines: u32,
    start: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl LogBudget {
    /// A budget of `max_lines` lines per `interval`.
    pub fn new(interval: Duration, max_lines: u32) -> Self {
        LogBudget {
            interval,
            max_lines,
            start: None,
            lines: 0,
            suppressed: 0,
        }
    }

    /// Asks to write one line now.
    pub fn line(&mut self, now: Instant) -> LogLine {
        let expired = self
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if expired {
            self.start = Some(now);
            self.lines = 0;
        }
        if self.lines < self.max_lines {
            self.lines += 1;
            LogLine::Write {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            LogLine::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            window: Duration::from_secs(60),
            user_address_failures: 3,
            address_failures: 5,
            max_entries: 100,
        }
    }

    const ALLOWED_CLEAN: Verdict = Verdict::Allowed { clean: true };
    const ALLOWED_DIRTY: Verdict = Verdict::Allowed { clean: false };

    #[test]
    fn locks_a_user_only_for_the_address_that_failed() {
        let t0 = Instant::now();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let mut t = LoginThrottle::new(limits());
        assert_eq!(t.check(t0, "maria", a), ALLOWED_CLEAN);
        for n in 1..=3 {
            assert_ne!(
                t.check(t0, "maria", a),
                Verdict::UserLocked {
                    retry_after: Duration::ZERO
                }
            );
            let f = t.failed(t0, "maria", a);
            assert_eq!((f.user_address_count, f.user_locked), (n, n == 3));
            assert!(!f.address_locked);
        }
        let at = t0 + Duration::from_secs(20);
        assert_eq!(
            t.check(at, "maria", a),
            Verdict::UserLocked {
                retry_after: Duration::from_secs(40)
            }
        );
        // The same name from another address, and another name from the same address, go on.
        assert_eq!(t.check(at, "maria", b), ALLOWED_CLEAN);
        assert_eq!(t.check(at, "laura", a), ALLOWED_DIRTY);
        // The lock ends with its window, and counting starts again.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(t.check(later, "maria", a), ALLOWED_CLEAN);
        let f = t.failed(later, "maria", a);
        assert_eq!((f.user_address_count, f.address_count), (1, 1));
        assert_eq!(t.check(later, "maria", a), ALLOWED_DIRTY);
    }

    #[test]
    fn spraying_many_names_locks_the_address() {
        let t0 = Instant::now();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let mut t = LoginThrottle::new(limits());
        for n in 1..=5u32 {
            let user = format!("user{n}");
            assert!(matches!(t.check(t0, &user, a), Verdict::Allowed { .. }));
            let f = t.failed(t0, &user, a);
            assert_eq!(f.address_count, n);
            assert_eq!(f.address_locked, n == 5);
            assert!(!f.user_locked);
        }
        let at = t0 + Duration::from_secs(15);
        for user in ["user1", "user6", "maria"] {
            assert_eq!(
                t.check(at, user, a),
                Verdict::AddressLocked {
                    retry_after: Duration::from_secs(45)
                }
            );
            assert_eq!(t.check(at, user, b), ALLOWED_CLEAN);
        }
        assert_eq!(
            t.check(t0 + Duration::from_secs(60), "user6", a),
            ALLOWED_CLEAN
        );
    }

    #[test]
    fn success_clears_the_pair_but_not_the_address() {
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        let mut t = LoginThrottle::new(limits());
        for _ in 0..3 {
            t.failed(t0, "maria", a);
        }
        assert!(matches!(
            t.check(t0, "maria", a),
            Verdict::UserLocked { .. }
        ));
        t.succeeded("maria", a);
        assert_eq!(t.check(t0, "maria", a), ALLOWED_DIRTY);
        let f = t.failed(t0, "laura", a);
        assert_eq!((f.user_address_count, f.address_count), (1, 4));
    }

    #[test]
    fn failures_past_the_limit_do_not_lock_again() {
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        let mut t = LoginThrottle::new(limits());
        let locks: Vec<bool> = (0..5)
            .map(|_| t.failed(t0, "maria", a).user_locked)
            .collect();
        assert_eq!(locks, [false, false, true, false, false]);
    }

    #[test]
    fn tables_stay_bounded() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(Limits {
            max_entries: 4,
            ..limits()
        });
        for n in 0..10u8 {
            let at = t0 + Duration::from_secs(u64::from(n));
            t.failed(at, &format!("user{n}"), IpAddr::from([10, 0, 0, n]));
            assert!(t.len().0 <= 4 && t.len().1 <= 4, "{:?}", t.len());
        }
        // The newest entries are kept, the oldest went.
        assert_eq!(
            t.check(t0 + Duration::from_secs(9), "user9", ip("10.0.0.9")),
            ALLOWED_DIRTY
        );
        assert_eq!(
            t.check(t0 + Duration::from_secs(9), "user0", ip("10.0.0.0")),
            ALLOWED_CLEAN
        );
        // Stale entries are swept before anything fresh is evicted.
        let late = t0 + Duration::from_secs(600);
        t.failed(late, "maria", ip("10.0.0.1"));
        assert_eq!(t.len(), (1, 1));
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:bbbb::9")),
            client_key(ip("2001:db8:1:2:cccc::7"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::1")), ip("::1"));
    }

    #[test]
    fn log_budget_writes_max_lines_then_summarises() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(Duration::from_secs(60), 2);
        let lines: Vec<LogLine> = (0..5).map(|_| b.line(t0)).collect();
        assert_eq!(
            lines,
            [
                LogLine::Write { suppressed: 0 },
                LogLine::Write { suppressed: 0 },
                LogLine::Suppress,
                LogLine::Suppress,
                LogLine::Suppress,
            ]
        );
        assert_eq!(b.line(t0 + Duration::from_secs(59)), LogLine::Suppress);
        // The next interval's first line carries the count of lines left out.
        assert_eq!(
            b.line(t0 + Duration::from_secs(60)),
            LogLine::Write { suppressed: 4 }
        );
        assert_eq!(
            b.line(t0 + Duration::from_secs(61)),
            LogLine::Write { suppressed: 0 }
        );
    }
}
