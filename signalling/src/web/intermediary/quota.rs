//! Intermediaries' daily quotas, counted across nodes.
//!
//! A day is a calendar day in Europe/Rome (jiff's bundled time-zone database, so CET/CEST need no
//! system files). Each intermediary has one counter per day, a shared record
//! (`queue::Shared`, namespace [`NS_QUOTA`], key `NAME:YYYY-MM-DD`) raised by compare-and-set: a
//! node reads the count, and writes count + 1 only if the record still holds what it read, else
//! reads again. So on the in-memory store and on Redis alike no more than `quota_per_day`
//! requests pass in a day, whichever nodes they reach. A request counts once it is authenticated,
//! in scope and well-formed, whether the certificate is then issued or refused (a refused issue
//! still cost the registry and the signer); a store that cannot be reached refuses
//! (`unavailable`) rather than lets requests through uncounted.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use queue::{AnyShared, Shared, Tenant, Time};

/// The shared-records namespace of the daily counters.
pub const NS_QUOTA: &str = "intermediary_quota";
/// How long a day's counter is kept (it is read only on its day).
const KEEP: Duration = Duration::from_secs(2 * 24 * 3600);
/// Compare-and-set attempts before giving up (`unavailable`).
const ATTEMPTS: usize = 32;

fn rome() -> TimeZone {
    TimeZone::get("Europe/Rome").unwrap_or(TimeZone::UTC)
}

/// The calendar day of `now` in Europe/Rome, `YYYY-MM-DD`.
pub fn rome_day(now: Timestamp) -> String {
    now.to_zoned_datetime(rome()).date().to_string()
}

/// Whole seconds from `now` to the next midnight in Europe/Rome (at least 1).
pub fn seconds_to_midnight(now: Timestamp) -> u64 {
    let tz = rome();
    let next = now
        .to_zoned_datetime(tz.clone())
        .date()
        .tomorrow()
        .and_then(|d| d.to_zoned_datetime(tz))
        .map(|z| z.timestamp());
    match next {
        Ok(next) => {
            let ns = next.as_nanosecond() - now.as_nanosecond();
            u64::try_from(ns.div_euclid(1_000_000_000) + i128::from(ns % 1_000_000_000 != 0))
                .unwrap_or(1)
                .max(1)
        }
        Err(_) => 86_400,
    }
}

/// What taking one request from the quota gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Within the quota: this request is the `n`th of the day.
    Within(u32),
    /// Over the quota: retry after this many seconds (the next local midnight).
    Over {
        /// Seconds to the next midnight in Europe/Rome.
        retry_after_s: u64,
    },
}

/// Takes one request of `name`'s quota for the day of `now`.
pub async fn take(
    shared: &AnyShared,
    tenant: &Tenant,
    name: &str,
    quota_per_day: u32,
    now: Timestamp,
) -> Result<Taken, queue::Error> {
    let key = format!("{name}:{}", rome_day(now));
    for _ in 0..ATTEMPTS {
        let seen = shared.get(tenant, NS_QUOTA, &key, Time::now()).await?;
        let used: u32 = seen.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
        if used >= quota_per_day {
            return Ok(Taken::Over {
                retry_after_s: seconds_to_midnight(now),
            });
        }
        let next = (used + 1).to_string();
        if shared
            .swap(
                tenant,
                NS_QUOTA,
                &key,
                seen.as_deref(),
                &next,
                KEEP,
                Time::now(),
            )
            .await?
        {
            return Ok(Taken::Within(used + 1));
        }
    }
    Err(queue::Error::Contention(format!("quota counter {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_day_and_the_wait_follow_rome_time() {
        // 22:30 UTC in winter is 23:30 in Rome: 30 minutes to midnight.
        assert_eq!(rome_day(ts("2026-01-15T22:30:00Z")), "2026-01-15");
        assert_eq!(seconds_to_midnight(ts("2026-01-15T22:30:00Z")), 1800);
        // 22:30 UTC in summer is already 00:30 of the next day in Rome.
        assert_eq!(rome_day(ts("2026-07-15T22:30:00Z")), "2026-07-16");
        assert_eq!(
            seconds_to_midnight(ts("2026-07-15T22:30:00Z")),
            23 * 3600 + 1800
        );
        // The day the clocks go forward has 23 hours.
        assert_eq!(seconds_to_midnight(ts("2026-03-28T23:00:00Z")), 23 * 3600);
        // A fraction of a second rounds up.
        assert_eq!(seconds_to_midnight(ts("2026-01-15T22:59:59.5Z")), 1);
    }

    #[tokio::test]
    async fn no_more_than_the_quota_passes_in_a_day() {
        let shared = AnyShared::Memory(queue::MemoryShared::new());
        let tenant = Tenant::new("t").unwrap();
        let now = ts("2026-01-15T10:00:00Z");
        for n in 1..=3 {
            assert_eq!(
                take(&shared, &tenant, "inca", 3, now).await.unwrap(),
                Taken::Within(n)
            );
        }
        assert_eq!(
            take(&shared, &tenant, "inca", 3, now).await.unwrap(),
            Taken::Over {
                retry_after_s: 13 * 3600
            }
        );
        // Another intermediary, and the next day, have their own counts.
        assert_eq!(
            take(&shared, &tenant, "acli", 3, now).await.unwrap(),
            Taken::Within(1)
        );
        let tomorrow = ts("2026-01-15T23:00:00Z");
        assert_eq!(
            take(&shared, &tenant, "inca", 3, tomorrow).await.unwrap(),
            Taken::Within(1)
        );
    }

    /// Two nodes, each with its own connection to one Redis, take from one quota at once: exactly
    /// the quota passes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_sharing_a_redis_pass_exactly_the_quota() {
        let redis = testkit::RedisServer::start().await;
        let node = || async {
            let store = queue::RedisStore::connect(&redis.url(), queue::QueueConfig::default())
                .await
                .unwrap();
            AnyShared::Redis(queue::RedisShared::new(store))
        };
        let (a, b) = (node().await, node().await);
        let tenant = Tenant::new("t").unwrap();
        let now = ts("2026-01-15T10:00:00Z");
        let race = |shared: AnyShared| {
            let tenant = tenant.clone();
            tokio::spawn(async move {
                let mut within = 0;
                for _ in 0..15 {
                    if let Taken::Within(_) = take(&shared, &tenant, "inca", 20, now).await.unwrap()
                    {
                        within += 1;
                    }
                }
                within
            })
        };
        let (x, y) = (race(a.clone()), race(b));
        let passed = x.await.unwrap() + y.await.unwrap();
        assert_eq!(passed, 20);
        assert!(matches!(
            take(&a, &tenant, "inca", 20, now).await.unwrap(),
            Taken::Over { .. }
        ));
    }
}
