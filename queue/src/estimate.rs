//! Estimated waits: when will each waiting call be answered?
//!
//! The estimate learns from recent history: per service, a fixed window of the last [`WINDOW`] talk
//! times (accept → end) and wrap-up times (end → wrap-up done), and per tenant the last answer delays
//! (offer → accept) and a decayed rate of callers giving up. They are kept in [`History`], inside
//! the tenant's `Meta`, so both stores share them.
//!
//! [`TenantState::estimate_waits`] projects the queue forward, [`REPLICAS`] times over with different
//! draws from those windows, exactly as routing would serve it:
//! - every capacity slot of an available operator frees at a drawn time: a call in progress after its
//!   *residual* talk time given how long it has already lasted (drawn from the recent talk times longer
//!   than that), plus a wrap-up when a wrap-up blocks that operator; an offer after its residual answer
//!   delay, a talk and a wrap-up; an operator blocked by a wrap-up when it ends (a residual wrap-up,
//!   at most its timeout);
//! - the waiting calls, in routing order, each take the earliest-freeing slot of an eligible operator;
//!   the call is answered an answer delay later, and its slot is refilled by its own talk and wrap-up.
//!
//! A waiting call that would give up before its turn leaves its slot to the next one. A call's
//! [`Estimate`] is the [`QUANTILE`] (the median) of its projected waits: the kiosk's error is
//! relative, and the waits are skewed to the right, so a point below the mean is right more often.
//! Beside it goes an interval, the [`INTERVAL`] quantiles (10th to 90th percentile): the projections
//! are calibrated (in `benches/ewt.rs` about three actual waits in four fall inside it), while the
//! spread of the first waits, the first of several calls of random length to end, keeps any single
//! figure from being close for most callers. The draws come from a fixed hash of (replica, draw), so
//! the estimate is a pure function of the state and `now`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::{blocked_by_wrapup, eligible_level, TenantState};
use crate::model::{CallId, CallState, Presence, QueueConfig, Service, Time, WrapupPolicy};

/// Samples kept per window.
pub const WINDOW: usize = 256;
/// Projections per estimate.
pub const REPLICAS: usize = 64;
/// The quantile of the projected waits told to the kiosk as the estimate (per mille).
pub const QUANTILE: usize = 500;
/// The quantiles of the projected waits told as the interval, low and high (per mille).
pub const INTERVAL: (usize, usize) = (100, 900);
/// The memory of [`Rate`], in observations.
const RATE_MEMORY: f64 = 256.0;
/// Share of the mean (numerator, denominator) still expected of a call that outlived every sample.
const OVERRUN_SHARE: (u64, u64) = (3, 10);

/// The last [`WINDOW`] values of one quantity, in milliseconds; the oldest is overwritten first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Window {
    /// The values, in no particular order.
    #[serde(default)]
    v: Vec<u32>,
    /// Where the next value goes once the window is full.
    #[serde(default)]
    next: usize,
}

impl Window {
    /// Adds a value (capped at `u32::MAX` ms, about 49 days).
    pub fn push(&mut self, d: Duration) {
        let ms = u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        if self.v.len() < WINDOW {
            self.v.push(ms);
        } else {
            self.v[self.next % WINDOW] = ms;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    fn sorted(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.v.iter().map(|&x| u64::from(x)).collect();
        v.sort_unstable();
        v
    }
}

/// Recent handle times of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceHistory {
    /// Accept → end of the conversation (hold included).
    #[serde(default)]
    pub talk: Window,
    /// End of the conversation → wrap-up done (or timed out).
    #[serde(default)]
    pub wrap: Window,
}

/// What the estimate learns from: bounded windows of recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct History {
    /// Per service.
    #[serde(default)]
    pub services: BTreeMap<Service, ServiceHistory>,
    /// Offer → accept, over every service.
    #[serde(default)]
    pub answer: Window,
    /// How often waiting callers give up, over every service.
    #[serde(default)]
    pub abandon: Rate,
}

/// A rate of events per millisecond of exposure, as two exponentially decayed sums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Rate {
    /// Decayed count of events.
    pub events: f64,
    /// Decayed milliseconds of exposure.
    pub exposure_ms: f64,
}

impl Rate {
    /// Adds one observation: `exposure` in which the event did or did not happen.
    pub fn record(&mut self, exposure: Duration, event: bool) {
        let keep = 1.0 - 1.0 / RATE_MEMORY;
        self.events = self.events * keep + f64::from(u8::from(event));
        self.exposure_ms = self.exposure_ms * keep + exposure.as_millis() as f64;
    }

    /// Events per millisecond (zero before any exposure).
    pub fn per_ms(&self) -> f64 {
        if self.exposure_ms > 0.0 {
            self.events / self.exposure_ms
        } else {
            0.0
        }
    }
}

impl History {
    /// Records a handled call: its talk and its wrap-up.
    pub fn record_handled(&mut self, service: &Service, talk: Duration, wrap: Duration) {
        let h = self.services.entry(service.clone()).or_default();
        h.talk.push(talk);
        h.wrap.push(wrap);
    }

    /// Records the end of a wait: answered, or abandoned by the caller.
    pub fn record_wait(&mut self, wait: Duration, abandoned: bool) {
        self.abandon.record(wait, abandoned);
    }

    /// Records an answered offer's delay.
    pub fn record_answer(&mut self, delay: Duration) {
        self.answer.push(delay);
    }
}

/// A sorted sample of one quantity, to draw from.
#[derive(Debug, Clone)]
struct Dist {
    v: Vec<u64>,
    /// Where the samples above zero start: the draws of a quantity that has not started yet (most
    /// draws) need no search.
    positive: usize,
    /// The mean of the samples, for a quantity that outlived them all.
    mean: u64,
}

impl Dist {
    /// From samples sorted in ascending order.
    fn new(v: Vec<u64>) -> Self {
        debug_assert!(v.is_sorted());
        let positive = v.partition_point(|&x| x == 0);
        let mean = v
            .iter()
            .sum::<u64>()
            .checked_div(v.len() as u64)
            .unwrap_or(0);
        Dist { v, positive, mean }
    }

    /// Whether it holds no sample.
    fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// A draw of what remains of a quantity that has already lasted `elapsed` ms: a sample longer than
    /// that, less `elapsed`. `u` in [0, 1) picks the sample. Past every sample, a share of the mean.
    fn residual(&self, elapsed: u64, u: f64) -> u64 {
        let v = &self.v;
        if v.is_empty() {
            return 0;
        }
        let i = if elapsed == 0 {
            self.positive
        } else {
            v.partition_point(|&x| x <= elapsed)
        };
        if i == v.len() {
            return self.mean * OVERRUN_SHARE.0 / OVERRUN_SHARE.1;
        }
        let n = v.len() - i;
        let k = ((u * n as f64) as usize).min(n - 1);
        v[i + k] - elapsed
    }
}

/// The talk and wrap-up distributions of a service.
struct ServiceDists {
    talk: Dist,
    wrap: Dist,
}

/// A uniform number in [0, 1) from a hash of `(replica, draw)` (SplitMix64's finaliser).
fn unit(replica: usize, draw: u64) -> f64 {
    let mut z = ((replica as u64) << 40 ^ draw).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How a slot frees, before the draws.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// Free at this time.
    At(u64),
    /// Offered at `since`: an answer delay, a talk and a wrap-up of `service`.
    Offered { service: usize, since: u64 },
    /// Talking since `since`: the rest of a talk and a wrap-up of `service`.
    Talking { service: usize, since: u64 },
    /// Blocked by wrap-ups: the latest of these `(service, ended_at, until)` ends (see `blocks`).
    Blocked { first: usize, count: usize },
}

impl TenantState {
    /// Estimated waits of every waiting call (`None`: no eligible operator online). See the module.
    pub fn estimate_waits(
        &self,
        cfg: &QueueConfig,
        now: Time,
    ) -> HashMap<CallId, Option<Estimate>> {
        let waiting = self.waiting_in_order(cfg, now);
        let mut out = HashMap::new();
        if waiting.is_empty() {
            return out;
        }
        let t = now.as_millis();

        // The services in play and their distributions (a point at the AHT before any history).
        let mut index: BTreeMap<&Service, usize> = BTreeMap::new();
        for c in self.calls.values() {
            let n = index.len();
            index.entry(&c.service).or_insert(n);
        }
        let mut dists: Vec<ServiceDists> = Vec::with_capacity(index.len());
        let mut order: Vec<(&Service, usize)> = index.iter().map(|(s, i)| (*s, *i)).collect();
        order.sort_by_key(|(_, i)| *i);
        for (s, _) in order {
            let h = self.meta.history.services.get(s);
            let talk = match h {
                Some(h) if !h.talk.is_empty() => Dist::new(h.talk.sorted()),
                _ => Dist::new(vec![self.aht(cfg, s).as_millis() as u64]),
            };
            let wrap = match h {
                Some(h) if !h.wrap.is_empty() => Dist::new(h.wrap.sorted()),
                // Before any history the AHT covers the wrap-up (and a wrap-up under way runs to its
                // timeout: see `Pending::Blocked`).
                _ => Dist::new(vec![]),
            };
            dists.push(ServiceDists { talk, wrap });
        }
        let answer = if self.meta.history.answer.is_empty() {
            Dist::new(vec![0])
        } else {
            Dist::new(self.meta.history.answer.sorted())
        };
        let wrap_cap = cfg.wrapup.as_millis() as u64;
        let hazard = self.meta.history.abandon.per_ms();

        // The slots of available operators, as pending work.
        let mut op_index: HashMap<&crate::model::OperatorId, usize> = HashMap::new();
        let mut ops: Vec<&crate::model::Operator> = Vec::new();
        for op in self.operators.values() {
            if op.presence == Presence::Available {
                op_index.insert(&op.operator_id, ops.len());
                ops.push(op);
            }
        }
        let blocking = cfg.wrapup_policy == WrapupPolicy::BlockWhenIdle;
        let mut pending: Vec<Vec<Pending>> = vec![Vec::new(); ops.len()];
        let mut wrapups: Vec<Vec<(usize, u64, u64)>> = vec![Vec::new(); ops.len()];
        for c in self.calls.values() {
            let Some(&o) = c.state.operator().and_then(|id| op_index.get(id)) else {
                continue;
            };
            let service = index[&c.service];
            match &c.state {
                CallState::Waiting => {}
                CallState::Offered { .. } => pending[o].push(Pending::Offered {
                    service,
                    since: c.since.as_millis(),
                }),
                CallState::Connected { .. } | CallState::Held { .. } => {
                    let since = c.accepted_at.unwrap_or(c.since).as_millis();
                    pending[o].push(Pending::Talking { service, since });
                }
                CallState::WrapUp { until, .. } => {
                    let ended = c.ended_at.unwrap_or(c.since).as_millis();
                    wrapups[o].push((service, ended, until.as_millis()));
                }
            }
        }
        let mut blocks: Vec<(usize, u64, u64)> = Vec::new();
        for (o, op) in ops.iter().enumerate() {
            let idle_wrapup = blocked_by_wrapup(op, cfg) && !wrapups[o].is_empty();
            let free = if idle_wrapup {
                let first = blocks.len();
                blocks.extend(wrapups[o].iter().copied());
                Pending::Blocked {
                    first,
                    count: wrapups[o].len(),
                }
            } else {
                Pending::At(t)
            };
            let cap = usize::from(op.capacity).max(pending[o].len());
            pending[o].resize(cap, free);
        }

        // Eligible operators per waiting call.
        let eligible: Vec<Vec<usize>> = waiting
            .iter()
            .map(|c| {
                ops.iter()
                    .enumerate()
                    .filter(|(_, op)| eligible_level(op, c).is_some())
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let services: Vec<usize> = waiting.iter().map(|c| index[&c.service]).collect();
        // Calls with the same eligible operators share one heap of those operators' slots, so a
        // call takes its slot in O(log slots) rather than by scanning every eligible slot.
        let mut class_of: HashMap<&[usize], usize> = HashMap::new();
        let mut class_ops: Vec<&[usize]> = Vec::new();
        let call_class: Vec<Option<usize>> = eligible
            .iter()
            .map(|e| {
                (!e.is_empty()).then(|| {
                    *class_of.entry(e.as_slice()).or_insert_with(|| {
                        class_ops.push(e.as_slice());
                        class_ops.len() - 1
                    })
                })
            })
            .collect();
        let mut op_classes: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
        for (c, members) in class_ops.iter().enumerate() {
            for &o in *members {
                op_classes[o].push(c);
            }
        }
        let mut heaps: Vec<BinaryHeap<Reverse<(u64, usize, usize)>>> =
            vec![BinaryHeap::new(); class_ops.len()];

        let mut waits: Vec<Vec<u64>> = vec![Vec::with_capacity(REPLICAS); waiting.len()];
        let mut slots: Vec<Vec<u64>> = pending.iter().map(|p| vec![0; p.len()]).collect();
        let (mut ends, mut wraps) = (slots.clone(), slots.clone());
        for r in 0..REPLICAS {
            // Draw numbers: slot draws first, then three per waiting call.
            let mut draw = 0u64;
            let mut next = || {
                draw += 1;
                unit(r, draw)
            };
            for (o, ps) in pending.iter().enumerate() {
                // When each slot's conversation ends, and the wrap-up that follows it.
                for (j, p) in ps.iter().enumerate() {
                    let (end, wrap) = match *p {
                        Pending::At(at) => (at, 0),
                        Pending::Offered { service, since } => {
                            let d = &dists[service];
                            let at = t + answer.residual(t.saturating_sub(since), next());
                            let at = at + d.talk.residual(0, next());
                            (at, d.wrap.residual(0, next()).min(wrap_cap))
                        }
                        Pending::Talking { service, since } => {
                            let d = &dists[service];
                            let at = t + d.talk.residual(t.saturating_sub(since), next());
                            (at, d.wrap.residual(0, next()).min(wrap_cap))
                        }
                        Pending::Blocked { first, count } => {
                            let at = blocks[first..first + count]
                                .iter()
                                .map(|&(service, ended, until)| {
                                    let el = t.saturating_sub(ended);
                                    let wrap = &dists[service].wrap;
                                    if wrap.is_empty() {
                                        until.max(t)
                                    } else {
                                        (t + wrap.residual(el, next())).min(until.max(t))
                                    }
                                })
                                .max()
                                .unwrap_or(t);
                            (at, 0)
                        }
                    };
                    ends[o][j] = end;
                    wraps[o][j] = wrap;
                }
                // A wrap-up holds the operator only when no other call of theirs is still going.
                for j in 0..ps.len() {
                    let e = ends[o][j];
                    let last =
                        blocking && !ends[o].iter().enumerate().any(|(i, &x)| i != j && x > e);
                    slots[o][j] = e + if last { wraps[o][j] } else { 0 };
                }
            }
            for (c, heap) in heaps.iter_mut().enumerate() {
                heap.clear();
                heap.extend(class_ops[c].iter().flat_map(|&o| {
                    slots[o]
                        .iter()
                        .enumerate()
                        .map(move |(j, &at)| Reverse((at, o, j)))
                }));
            }
            for (k, class) in call_class.iter().enumerate() {
                // The earliest-freeing eligible slot, the lowest operator and slot index on a tie.
                // A heap entry is stale once its slot has been given a later time.
                let best = class.and_then(|c| {
                    let heap = &mut heaps[c];
                    while let Some(&Reverse((at, o, j))) = heap.peek() {
                        if slots[o][j] == at {
                            return Some((at, o, j));
                        }
                        heap.pop();
                    }
                    None
                });
                #[cfg(test)]
                assert_eq!(best, scan_earliest(&eligible[k], &slots), "the heap's pick");
                let Some((at, o, j)) = best else { continue };
                let free = at.max(t);
                let d = &dists[services[k]];
                let answered = free + answer.residual(0, next());
                waits[k].push(answered - t);
                // A caller who gives up first leaves the slot to the next (its own estimate is for
                // when it is answered). Past about 700 the exponential underflows to zero anyway,
                // through libm's slow path.
                let exponent = -hazard * (free - t) as f64;
                let stays = if exponent < -700.0 {
                    0.0
                } else {
                    exponent.exp()
                };
                if next() >= stays {
                    continue;
                }
                let end = answered + d.talk.residual(0, next());
                let wrap = d.wrap.residual(0, next()).min(wrap_cap);
                let last =
                    blocking && !slots[o].iter().enumerate().any(|(i, &x)| i != j && x > end);
                let freed = end + if last { wrap } else { 0 };
                slots[o][j] = freed;
                for &c in &op_classes[o] {
                    heaps[c].push(Reverse((freed, o, j)));
                }
            }
        }
        for (k, call) in waiting.iter().enumerate() {
            out.insert(call.call_id.clone(), summarise(&mut waits[k]));
        }
        out
    }
}

/// The earliest-freeing slot among `eligible` operators' `slots` as `(at, operator, slot)`, the
/// lowest operator and slot on a tie, by scanning them all: the oracle of the heaps' pick.
#[cfg(test)]
fn scan_earliest(eligible: &[usize], slots: &[Vec<u64>]) -> Option<(u64, usize, usize)> {
    eligible
        .iter()
        .filter_map(|&o| {
            let (j, at) = slots[o].iter().enumerate().min_by_key(|(_, at)| **at)?;
            Some((*at, o, j))
        })
        .min()
}

/// What a waiting call is told: a point and an interval, from its replayed waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// The point estimate, whole seconds rounded up.
    pub wait: Duration,
    /// The interval's low end, whole seconds rounded down; never above `wait`.
    pub low: Duration,
    /// The interval's high end, whole seconds rounded up; never below `wait`.
    pub high: Duration,
}

/// The estimate from one call's replayed waits (ms, in any order; sorted here), or `None` when there
/// are none: the [`QUANTILE`] as the point, the [`INTERVAL`] quantiles as the interval, widened to
/// hold the point if they do not.
fn summarise(w: &mut [u64]) -> Option<Estimate> {
    if w.is_empty() {
        return None;
    }
    w.sort_unstable();
    let point = quantile(w, QUANTILE);
    let low = quantile(w, INTERVAL.0).min(point);
    let high = quantile(w, INTERVAL.1).max(point);
    // Whole seconds, so the kiosk is not flooded with updates that differ by milliseconds; rounded
    // outwards, so the interval still holds the point.
    Some(Estimate {
        wait: Duration::from_secs(point.div_ceil(1000)),
        low: Duration::from_secs(low / 1000),
        high: Duration::from_secs(high.div_ceil(1000)),
    })
}

/// The `per_mille` quantile of sorted, non-empty `w` (the lower one when it falls between two).
fn quantile(w: &[u64], per_mille: usize) -> u64 {
    w[(w.len() - 1) * per_mille / 1000]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Command;
    use crate::effect::Effect;
    use crate::model::{KioskId, Language, NewCall, NodeId, OperatorId, OperatorLogin};

    #[test]
    fn a_window_keeps_the_last_values() {
        let mut w = Window::default();
        for s in 0..(WINDOW as u64 + 2) {
            w.push(Duration::from_secs(s));
        }
        assert_eq!(w.len(), WINDOW);
        let v = w.sorted();
        assert_eq!(v[0], 2000);
        assert_eq!(v[WINDOW - 1], (WINDOW as u64 + 1) * 1000);
    }

    #[test]
    fn residuals_come_from_the_longer_samples() {
        let d = Dist::new(vec![10, 20, 30, 40]);
        assert_eq!(d.residual(0, 0.5), 30);
        assert_eq!(d.residual(15, 0.0), 5);
        assert_eq!(d.residual(15, 0.99), 25);
        // Past every sample: 3/10 of the mean (25).
        assert_eq!(d.residual(45, 0.3), 7);
        assert_eq!(Dist::new(vec![]).residual(5, 0.5), 0);
        // Zero samples are no longer than zero: a quantity not yet started draws above them.
        let z = Dist::new(vec![0, 0, 10, 30]);
        assert_eq!((z.residual(0, 0.0), z.residual(0, 0.99)), (10, 30));
        assert_eq!(Dist::new(vec![0, 0]).residual(0, 0.5), 0);
    }

    #[test]
    fn the_estimate_is_the_median_inside_the_10th_to_90th_percentile() {
        let secs = Duration::from_secs;
        // Eleven replays of 1..=11 s, in any order: the median is the 6th, the 10th percentile the
        // 2nd, the 90th the 10th.
        let mut w: Vec<u64> = (1..=11).rev().map(|s| s * 1000).collect();
        assert_eq!(
            summarise(&mut w),
            Some(Estimate {
                wait: secs(6),
                low: secs(2),
                high: secs(10),
            })
        );
        // Whole seconds: the point and the high end rounded up, the low end down.
        let mut w = vec![2_200, 1_500, 2_700];
        assert_eq!(
            summarise(&mut w),
            Some(Estimate {
                wait: secs(3),
                low: secs(1),
                high: secs(3),
            })
        );
        let mut w = vec![12_345];
        assert_eq!(
            summarise(&mut w),
            Some(Estimate {
                wait: secs(13),
                low: secs(12),
                high: secs(13),
            })
        );
        assert_eq!(summarise(&mut []), None);
    }

    #[test]
    fn the_abandon_rate_is_events_per_exposure() {
        let mut r = Rate::default();
        assert_eq!(r.per_ms(), 0.0);
        r.record(Duration::from_secs(1), true);
        r.record(Duration::from_secs(3), false);
        let keep = 1.0 - 1.0 / RATE_MEMORY;
        assert_eq!(r.per_ms(), keep / (1000.0 * keep + 3000.0));
    }

    /// A node lease longer than the scenarios, so no step finds the node dead.
    fn long_lease() -> QueueConfig {
        QueueConfig {
            node_lease: Duration::from_secs(3600),
            ..QueueConfig::default()
        }
    }

    /// Operator `id`, available for calls of `s` in Italian, one at a time.
    fn login(id: &str, s: &Service) -> Command {
        Command::OperatorOnline(OperatorLogin {
            operator_id: OperatorId::new(id).unwrap(),
            skills: [(s.clone(), 5)].into(),
            languages: vec![Language::new("it").unwrap()],
            capacity: 1,
            node: NodeId::new("n1").unwrap(),
            presence: Presence::Available,
        })
    }

    /// A call `id` of `s` in Italian, its kiosk named like it.
    fn enqueue(id: &str, s: &Service) -> Command {
        Command::Enqueue(NewCall {
            call_id: CallId::new(id).unwrap(),
            kiosk_id: KioskId::new(id).unwrap(),
            kiosk_node: NodeId::new("n1").unwrap(),
            service: s.clone(),
            language: Language::new("it").unwrap(),
            priority: 0,
        })
    }

    fn accept(op: &str, call: &str) -> Command {
        Command::Accept {
            operator_id: OperatorId::new(op).unwrap(),
            call_id: CallId::new(call).unwrap(),
        }
    }

    #[test]
    fn a_call_waits_for_the_rest_of_a_talk_its_wrap_up_and_an_answer() {
        let cfg = long_lease();
        let s = Service::new("s").unwrap();
        let mut st = TenantState::default();
        // One sample each: talks last 200 s, wrap-ups 10 s, answers 2 s.
        st.meta
            .history
            .record_handled(&s, Duration::from_secs(200), Duration::from_secs(10));
        st.meta.history.record_answer(Duration::from_secs(2));
        let at = |x: u64| Time::from_secs(x);
        let enqueue = |id: &str| enqueue(id, &s);
        st.apply(&cfg, at(0), login("a", &s)).unwrap();
        st.apply(&cfg, at(0), enqueue("c1")).unwrap();
        st.apply(&cfg, at(0), accept("a", "c1")).unwrap();
        // At 50 s: 150 s of talk left, 10 s of wrap-up, then 2 s to answer.
        let fx = st.apply(&cfg, at(50), enqueue("c2")).unwrap();
        let told: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::QueueUpdate { estimated_wait, .. } => Some(*estimated_wait),
                _ => None,
            })
            .collect();
        assert_eq!(told, [Some(Duration::from_secs(162))]);
        // One sample of each: every replay agrees, so the interval is the point.
        let interval: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::QueueUpdate { interval, .. } => Some(*interval),
                _ => None,
            })
            .collect();
        let s162 = Duration::from_secs(162);
        assert_eq!(interval, [Some((s162, s162))]);
        // c3 waits for c2's turn too: 212 s, then a 200 s talk, a 10 s wrap-up and an answer.
        let fx = st.apply(&cfg, at(60), enqueue("c3")).unwrap();
        let c3 = fx.iter().find_map(|e| match e {
            Effect::QueueUpdate {
                call_id,
                estimated_wait,
                ..
            } if call_id.as_str() == "c3" => Some(*estimated_wait),
            _ => None,
        });
        assert_eq!(c3, Some(Some(Duration::from_secs(364))));
    }

    #[test]
    fn with_spread_history_the_interval_holds_the_estimate_and_repeats_exactly() {
        let cfg = long_lease();
        let s = Service::new("s").unwrap();
        let mut st = TenantState::default();
        // Talks of 60..=250 s, wrap-ups of 5..=24 s, answers of 1..=5 s.
        for i in 0..20u64 {
            st.meta.history.record_handled(
                &s,
                Duration::from_secs(60 + 10 * i),
                Duration::from_secs(5 + i),
            );
            st.meta
                .history
                .record_answer(Duration::from_secs(1 + i % 5));
        }
        let at = |x: u64| Time::from_secs(x);
        let enqueue = |id: &str| enqueue(id, &s);
        // Two operators on a call each (since 0 s and 40 s), three calls waiting behind them.
        for (op, call, t) in [("a", "c1", 0), ("b", "c2", 40)] {
            st.apply(&cfg, at(t), login(op, &s)).unwrap();
            st.apply(&cfg, at(t), enqueue(call)).unwrap();
            st.apply(&cfg, at(t), accept(op, call)).unwrap();
        }
        for (i, call) in ["c3", "c4", "c5"].into_iter().enumerate() {
            st.apply(&cfg, at(50 + i as u64), enqueue(call)).unwrap();
        }
        let now = at(60);
        let first = st.estimate_waits(&cfg, now);
        // A pure function of the state and the time: the same figures again, and from a copy.
        assert_eq!(st.estimate_waits(&cfg, now), first);
        assert_eq!(st.clone().estimate_waits(&cfg, now), first);
        let got: Vec<(u64, u64, u64)> = ["c3", "c4", "c5"]
            .into_iter()
            .map(|c| {
                let e = first[&CallId::new(c).unwrap()].unwrap();
                assert!(e.low <= e.wait && e.wait <= e.high, "{c}: {e:?}");
                assert!(
                    e.low < e.high,
                    "{c}: history that varies gives a real interval"
                );
                (e.low.as_secs(), e.wait.as_secs(), e.high.as_secs())
            })
            .collect();
        // (low, estimate, high) in seconds: the draws are fixed, so these are exact.
        assert_eq!(got, [(43, 98, 157), (107, 161, 222), (189, 274, 342)]);
        // Later in line, later answered.
        assert!(got[0].1 < got[1].1 && got[1].1 < got[2].1, "{got:?}");
    }

    /// Random days on two services and two languages, driven by commands (operators of mixed skills,
    /// languages and capacities; calls arriving, answered, ended, wrapped up, abandoned): every
    /// estimate's slot picks are checked against a scan of every eligible slot (`scan_earliest`,
    /// asserted inside `estimate_waits` under test), and the estimates stay exact repeats.
    #[test]
    fn the_heaps_pick_the_slots_a_scan_picks_in_random_days() {
        use rand::{Rng, SeedableRng};
        let cfg = long_lease();
        let services = [Service::new("a").unwrap(), Service::new("b").unwrap()];
        let languages = [Language::new("it").unwrap(), Language::new("de").unwrap()];
        let mut estimated = 0;
        for seed in 0..120 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut st = TenantState::default();
            for i in 0..40u64 {
                let s = &services[rng.gen_range(0..2)];
                st.meta.history.record_handled(
                    s,
                    Duration::from_secs(rng.gen_range(30..400)),
                    Duration::from_secs(rng.gen_range(0..40)),
                );
                st.meta.history.record_answer(Duration::from_secs(i % 7));
                st.meta
                    .history
                    .record_wait(Duration::from_secs(60), i % 5 == 0);
            }
            let mut t = 1_000u64;
            for i in 0..rng.gen_range(2..7) {
                let login = crate::core::tests::random_login(
                    &mut rng,
                    i,
                    &services,
                    &languages,
                    Presence::Available,
                );
                st.apply(&cfg, Time::from_secs(t), Command::OperatorOnline(login))
                    .unwrap();
            }
            for n in 0..120 {
                t += rng.gen_range(0..30);
                let now = Time::from_secs(t);
                let cmd = match rng.gen_range(0..10) {
                    0..=3 => Command::Enqueue(NewCall {
                        call_id: CallId::new(format!("c{n}")).unwrap(),
                        kiosk_id: KioskId::new(format!("k{n}")).unwrap(),
                        kiosk_node: NodeId::new("n1").unwrap(),
                        service: services[rng.gen_range(0..2)].clone(),
                        language: languages[rng.gen_range(0..2)].clone(),
                        priority: rng.gen_range(0..2),
                    }),
                    r => {
                        // Move a random call on: answer an offer, end a talk, finish a wrap-up, or
                        // let a waiting caller give up.
                        let calls: Vec<_> = st.calls.values().collect();
                        if calls.is_empty() {
                            continue;
                        }
                        let c = calls[rng.gen_range(0..calls.len())];
                        let (call_id, kiosk_id) = (c.call_id.clone(), c.kiosk_id.clone());
                        match (&c.state, r) {
                            (CallState::Offered { operator, .. }, _) => Command::Accept {
                                operator_id: operator.clone(),
                                call_id,
                            },
                            (CallState::Connected { operator, .. }, _) => Command::End {
                                operator_id: operator.clone(),
                                call_id,
                            },
                            (CallState::WrapUp { operator, .. }, _) => Command::WrapupDone {
                                operator_id: operator.clone(),
                                call_id,
                            },
                            (CallState::Waiting, 9) => Command::Cancel { kiosk_id, call_id },
                            _ => Command::Tick,
                        }
                    }
                };
                // Some commands do not fit the state (a late answer to an expired offer): they are
                // refused, and change nothing.
                let _ = st.apply(&cfg, now, cmd);
                let waits = st.estimate_waits(&cfg, now);
                assert_eq!(st.estimate_waits(&cfg, now), waits, "seed {seed}, step {n}");
                estimated += waits.values().filter(|e| e.is_some()).count();
            }
        }
        assert!(
            estimated > 1_000,
            "{estimated} estimates: too few to compare the picks"
        );
    }
}
