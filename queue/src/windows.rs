//! Rolling 15-minute and "today" metric windows per service.
//!
//! Counts are kept in one bucket per minute for the rolling window and one bucket for the current local
//! day, so the definitions of `queue.md` (offered, answered, abandoned, service level, ASA, AHT) can be
//! computed for either window from the same sums.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use jiff::tz::TimeZone;

use crate::model::Time;

/// The rolling window length.
pub const ROLLING: Duration = Duration::from_secs(15 * 60);
const MINUTE_MS: u64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// Sums over a window for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Bucket {
    /// Calls that entered the queue.
    pub offered: u64,
    /// Calls accepted.
    pub answered: u64,
    /// Calls accepted within the service-level threshold.
    pub answered_in_sl: u64,
    /// Calls abandoned, not counting short abandons.
    pub abandoned: u64,
    /// Abandons shorter than the short-abandon limit, counted apart.
    pub abandoned_short: u64,
    /// Abandons after the service-level threshold.
    pub abandoned_after_sl: u64,
    /// Calls transferred out.
    pub transferred: u64,
    /// Sum of waits of answered calls, in milliseconds.
    pub wait_ms_sum: u64,
    /// Calls handled to the end of wrap-up.
    pub handled: u64,
    /// Sum of handle times, in milliseconds.
    pub handle_ms_sum: u64,
}

impl Bucket {
    fn add(&mut self, o: &Bucket) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.answered_in_sl += o.answered_in_sl;
        self.abandoned += o.abandoned;
        self.abandoned_short += o.abandoned_short;
        self.abandoned_after_sl += o.abandoned_after_sl;
        self.transferred += o.transferred;
        self.wait_ms_sum += o.wait_ms_sum;
        self.handled += o.handled;
        self.handle_ms_sum += o.handle_ms_sum;
    }

    /// Answered within T ÷ (answered + abandoned after T); 1.0 when the denominator is zero.
    pub fn service_level(&self) -> f64 {
        let denom = self.answered + self.abandoned_after_sl;
        if denom == 0 {
            1.0
        } else {
            self.answered_in_sl as f64 / denom as f64
        }
    }

    /// Mean answer time of answered calls, if any.
    pub fn asa(&self) -> Option<Duration> {
        (self.answered > 0).then(|| Duration::from_millis(self.wait_ms_sum / self.answered))
    }

    /// Mean handle time of handled calls, if any.
    pub fn aht(&self) -> Option<Duration> {
        (self.handled > 0).then(|| Duration::from_millis(self.handle_ms_sum / self.handled))
    }
}

/// The windows of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceWindows {
    minutes: VecDeque<(u64, Bucket)>,
    day: i64,
    today: Bucket,
}

/// The tenant-local day number of `t` (days since 1970-01-01 in the tenant's civil time), following
/// the zone's daylight-saving rules.
pub fn local_day(t: Time, tz: &TimeZone) -> i64 {
    let ms = t.as_millis() as i64;
    let offset_ms = jiff::Timestamp::from_millisecond(ms)
        .map(|ts| i64::from(tz.to_offset(ts).seconds()) * 1000)
        .unwrap_or(0);
    (ms + offset_ms).div_euclid(DAY_MS)
}

/// The UTC time at which local day `day` starts (local midnight, or the first instant of the day
/// when a transition skips midnight).
pub fn day_start(day: i64, tz: &TimeZone) -> Time {
    let start = jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(day))
        .and_then(|date| date.to_zoned_datetime(tz.clone()))
        .map(|zoned| zoned.timestamp().as_millisecond())
        .unwrap_or(day * DAY_MS);
    Time(start.max(0) as u64)
}

impl ServiceWindows {
    /// Adds to the buckets of `now`.
    pub fn record(&mut self, now: Time, tz: &TimeZone, f: impl Fn(&mut Bucket)) {
        let minute = now.as_millis() / MINUTE_MS;
        let oldest = minute.saturating_sub(ROLLING.as_secs() / 60 - 1);
        while self.minutes.front().is_some_and(|(m, _)| *m < oldest) {
            self.minutes.pop_front();
        }
        match self.minutes.back_mut() {
            Some((m, b)) if *m == minute => f(b),
            // A node with a slightly late clock may record into an older minute: fold it into the newest.
            Some((m, b)) if *m > minute => f(b),
            _ => {
                let mut b = Bucket::default();
                f(&mut b);
                self.minutes.push_back((minute, b));
            }
        }
        let day = local_day(now, tz);
        if day > self.day {
            self.day = day;
            self.today = Bucket::default();
        }
        f(&mut self.today);
    }

    /// Sums over the last 15 minutes before `now`.
    pub fn rolling(&self, now: Time) -> Bucket {
        let minute = now.as_millis() / MINUTE_MS;
        let oldest = minute.saturating_sub(ROLLING.as_secs() / 60 - 1);
        let mut sum = Bucket::default();
        for (_, b) in self
            .minutes
            .iter()
            .filter(|(m, _)| *m >= oldest && *m <= minute)
        {
            sum.add(b);
        }
        sum
    }

    /// Sums over the tenant-local day of `now`.
    pub fn today(&self, now: Time, tz: &TimeZone) -> Bucket {
        if self.day == local_day(now, tz) {
            self.today
        } else {
            Bucket::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_window_forgets_after_15_minutes_and_day_resets() {
        let mut w = ServiceWindows::default();
        let rome = crate::model::rome();
        let t0 = Time::from_secs(1_700_000_000);
        w.record(t0, &rome, |b| b.offered += 1);
        w.record(t0.plus(Duration::from_secs(600)), &rome, |b| b.offered += 1);
        assert_eq!(w.rolling(t0.plus(Duration::from_secs(700))).offered, 2);
        assert_eq!(
            w.rolling(t0.plus(Duration::from_secs(15 * 60 + 60)))
                .offered,
            1
        );
        assert_eq!(w.today(t0, &rome).offered, 2);
        assert_eq!(
            w.today(t0.plus(Duration::from_secs(86_400)), &rome).offered,
            0
        );
        assert_eq!(Bucket::default().service_level(), 1.0);
    }
}

#[cfg(test)]
mod civil_time_tests {
    use super::*;

    fn at(rfc3339: &str) -> Time {
        let ts: jiff::Timestamp = rfc3339.parse().unwrap();
        Time(ts.as_millisecond() as u64)
    }

    #[test]
    fn today_follows_cet_and_cest() {
        let rome = crate::model::rome();
        // 22:30 UTC is 23:30 in winter (same day) and 00:30 in summer (the next day).
        let winter = at("2026-01-15T22:30:00Z");
        let summer = at("2026-07-15T22:30:00Z");
        assert_eq!(
            local_day(winter, &rome),
            local_day(at("2026-01-15T12:00:00Z"), &rome)
        );
        assert_eq!(
            local_day(summer, &rome),
            local_day(at("2026-07-16T12:00:00Z"), &rome)
        );
        // Local midnight is 23:00 UTC in winter and 22:00 UTC in summer.
        let jan16 = local_day(at("2026-01-16T12:00:00Z"), &rome);
        let jul16 = local_day(at("2026-07-16T12:00:00Z"), &rome);
        assert_eq!(day_start(jan16, &rome), at("2026-01-15T23:00:00Z"));
        assert_eq!(day_start(jul16, &rome), at("2026-07-15T22:00:00Z"));
        // The spring-forward day is 23 hours long.
        let mar29 = local_day(at("2026-03-29T12:00:00Z"), &rome);
        let len = day_start(mar29 + 1, &rome).as_millis() - day_start(mar29, &rome).as_millis();
        assert_eq!(len, 23 * 3_600_000);
    }
}
