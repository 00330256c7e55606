//! Estimated-wait accuracy: a discrete-event simulation of a contact centre against the real queue.
//!
//! The simulation drives a [`Queue`] over the [`MemoryStore`] on a fake clock ([`Time`]), exactly as the
//! server would: kiosks enqueue calls (Poisson arrivals over three services), operators with different
//! skills and capacities accept offers after a short random delay (and now and then reject one), talk for
//! a lognormal handle time, wrap up for a random time (the queue's own 30 s timeout ends the long ones),
//! and some callers give up and cancel. The server's timer is modelled by a `tick` every second and a
//! node `heartbeat` every five.
//!
//! For every call it records the estimate the kiosk was told in the enqueue batch (the
//! `QueueUpdate.estimated_wait` of that call) and the actual wait, `accepted_at − enqueued_at`. After a
//! warm-up of 200 calls it reports, per load level and seed:
//!
//! - `queued`: calls that had to wait and were told an estimate; `med err` is the median of
//!   `|est − actual| / max(actual, 10 s)` over the answered ones (the target of `targets.md` is < 25 %),
//!   `pos1 med` and `pos2+ med` split it by the position the call was told (first in line, or behind
//!   others), `p90 err` is its 90th percentile and `bias` the median signed error (positive: an
//!   over-estimate); `coverage` is the share of those whose actual wait fell inside the interval
//!   told with the estimate (`QueueUpdate.interval`, ends included) and `width s` the median width
//!   of that interval in seconds;
//! - `unknown`: calls told "unknown" (no eligible operator online);
//! - `at once`: calls offered within the enqueue itself, so no estimate was shown; `all med` is the
//!   median error over every answered call counting those as an estimate of 0 s;
//! - `aband`: calls cancelled before an operator accepted them; `mean wait` the mean actual wait (s).
//!
//! `EWT_DEBUG=1` prints the queue every ten simulated minutes and every refused command on stderr.
//!
//! Each load level runs with three seeds; the last line per level is the median of the three.
//!
//! The last line on stdout is one JSON object with the medians per load level, keyed by the load:
//! `{"median_error":{"0.6":…,"0.8":…,"0.95":…},"p90_error":{…},"bias":{…},"coverage":{…},
//! "interval_width_median_s":{…}}` (fractions, not percentages, except the width in seconds).
//!
//! Run: `cargo bench -p queue --bench ewt` (env `CALLS` overrides the calls reported per run, 4,000
//! by default, and `SEEDS` how many of the three seeds run, e.g. `CALLS=1000 SEEDS=1` for a short
//! run).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use queue::{
    CallId, Effect, EndReason, KioskId, Language, MemoryStore, NewCall, NodeId, OperatorId,
    OperatorLogin, Presence, Queue, QueueConfig, Service, Tenant, Time,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Calls before this index are warm-up and not reported.
const WARMUP: usize = 200;
/// Calls reported after the warm-up, per run (`CALLS` overrides).
const MEASURED: usize = 4000;
/// The relative error divides by at least this many seconds, so waits of a few seconds do not explode.
const FLOOR_S: f64 = 10.0;
/// Load levels (offered work ÷ operator capacity).
const LOADS: [f64; 3] = [0.6, 0.8, 0.95];
/// Seeds; every figure is reproducible.
const SEEDS: [u64; 3] = [11, 22, 33];
/// Share of callers who may give up, and their mean patience.
const IMPATIENT: f64 = 0.2;
const PATIENCE_MEAN_S: f64 = 240.0;
/// Share of offers an operator rejects.
const REJECT: f64 = 0.02;

struct ServiceDef {
    name: &'static str,
    /// Share of arrivals.
    weight: f64,
    /// Mean talk time in seconds (lognormal).
    talk_mean_s: f64,
    /// Coefficient of variation of the talk time.
    talk_cv: f64,
}

const SERVICES: [ServiceDef; 3] = [
    ServiceDef {
        name: "anagrafe",
        weight: 0.5,
        talk_mean_s: 240.0,
        talk_cv: 0.6,
    },
    ServiceDef {
        name: "tributi",
        weight: 0.3,
        talk_mean_s: 180.0,
        talk_cv: 0.6,
    },
    ServiceDef {
        name: "servizi-sociali",
        weight: 0.2,
        talk_mean_s: 360.0,
        talk_cv: 0.6,
    },
];

/// An operator group: how many, skills as (service index, level), capacity.
struct Team {
    count: usize,
    skills: &'static [(usize, u8)],
    capacity: u8,
}

const TEAMS: [Team; 6] = [
    Team {
        count: 6,
        skills: &[(0, 8)],
        capacity: 1,
    },
    Team {
        count: 4,
        skills: &[(1, 8)],
        capacity: 1,
    },
    Team {
        count: 2,
        skills: &[(2, 8)],
        capacity: 1,
    },
    Team {
        count: 3,
        skills: &[(0, 8), (1, 5)],
        capacity: 1,
    },
    Team {
        count: 2,
        skills: &[(1, 5), (2, 8)],
        capacity: 2,
    },
    Team {
        count: 1,
        skills: &[(0, 5), (1, 5), (2, 5)],
        capacity: 1,
    },
];

/// Wrap-up as operators do it: uniform in this range; the queue ends it at `QueueConfig::wrapup` (30 s).
const WRAP_S: (f64, f64) = (5.0, 40.0);
/// Offer-to-accept delay of an operator, uniform in this range.
const ACCEPT_S: (f64, f64) = (1.0, 6.0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick,
    Arrival,
    Accept { op: usize, call: usize },
    Reject { op: usize, call: usize },
    End { op: usize, call: usize },
    WrapDone { op: usize, call: usize },
    Cancel { call: usize },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Told {
    /// No `QueueUpdate` for the call in its enqueue batch (it was offered at once).
    Nothing,
    /// "Unknown".
    Unknown,
    /// An estimate in seconds, the position it was given with, and the interval (low, high, s).
    Secs(f64, u32, (f64, f64)),
}

struct CallRec {
    service: usize,
    enqueued: Time,
    told: Told,
    accepted: Option<Time>,
    gone: bool,
}

struct Sim {
    q: Queue<MemoryStore>,
    tenant: Tenant,
    node: NodeId,
    rng: StdRng,
    now: Time,
    seq: u64,
    events: BinaryHeap<Reverse<(Time, u64, Ev)>>,
    ops: Vec<OperatorId>,
    calls: Vec<CallRec>,
    services: Vec<Service>,
    lang: Language,
    /// Arrivals per second.
    arrival_rate: f64,
    /// Print the queue every ten simulated minutes on stderr (`EWT_DEBUG=1`).
    debug: bool,
    /// Calls reported after the warm-up.
    measured: usize,
}

fn call_id(i: usize) -> CallId {
    CallId::new(format!("c{i}")).expect("call id")
}

fn call_index(id: &CallId) -> usize {
    id.as_str()[1..].parse().expect("call index")
}

fn op_index(id: &OperatorId) -> usize {
    id.as_str()[2..].parse().expect("operator index")
}

impl Sim {
    async fn new(load: f64, seed: u64, measured: usize) -> Sim {
        let q = Queue::new(MemoryStore::new(QueueConfig::default()).expect("config"));
        let mut sim = Sim {
            q,
            tenant: Tenant::new("comune-sim").expect("tenant"),
            node: NodeId::new("n1").expect("node"),
            rng: StdRng::seed_from_u64(seed),
            now: Time::from_secs(1_700_000_000),
            seq: 0,
            events: BinaryHeap::new(),
            ops: Vec::new(),
            calls: Vec::new(),
            services: SERVICES
                .iter()
                .map(|s| Service::new(s.name).expect("service"))
                .collect(),
            lang: Language::new("it").expect("language"),
            arrival_rate: 0.0,
            debug: std::env::var_os("EWT_DEBUG").is_some(),
            measured,
        };
        let mut capacity = 0.0;
        for team in &TEAMS {
            for _ in 0..team.count {
                let id = OperatorId::new(format!("op{}", sim.ops.len())).expect("operator");
                let skills: BTreeMap<Service, u8> = team
                    .skills
                    .iter()
                    .map(|(s, l)| (sim.services[*s].clone(), *l))
                    .collect();
                let login = OperatorLogin {
                    operator_id: id.clone(),
                    skills,
                    languages: vec![sim.lang.clone()],
                    capacity: team.capacity,
                    node: sim.node.clone(),
                    presence: Presence::Available,
                };
                sim.q
                    .operator_online(&sim.tenant, sim.now, login)
                    .await
                    .expect("operator online");
                sim.ops.push(id);
                capacity += f64::from(team.capacity);
            }
        }
        // Work per call: talk, wrap-up as ended by the queue (at most 30 s) and the offer before accept.
        let wrap = mean_capped_uniform(WRAP_S, 30.0);
        let accept = (ACCEPT_S.0 + ACCEPT_S.1) / 2.0;
        let work: f64 = SERVICES
            .iter()
            .map(|s| s.weight * (s.talk_mean_s + wrap + accept))
            .sum();
        sim.arrival_rate = load * capacity / work;
        sim.schedule(0.0, Ev::Tick);
        let first = sim.exp(1.0 / sim.arrival_rate);
        sim.schedule(first, Ev::Arrival);
        sim
    }

    fn schedule(&mut self, after_s: f64, ev: Ev) {
        let at = self.now.plus(Duration::from_secs_f64(after_s.max(0.0)));
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    fn exp(&mut self, mean: f64) -> f64 {
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        -mean * u.ln()
    }

    fn uniform(&mut self, r: (f64, f64)) -> f64 {
        self.rng.gen_range(r.0..r.1)
    }

    fn lognormal(&mut self, mean: f64, cv: f64) -> f64 {
        let s2 = (1.0 + cv * cv).ln();
        let mu = mean.ln() - s2 / 2.0;
        // Box–Muller.
        let u1: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.gen();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (mu + s2.sqrt() * z).exp()
    }

    fn pick_service(&mut self) -> usize {
        let mut x: f64 = self.rng.gen();
        for (i, s) in SERVICES.iter().enumerate() {
            if x < s.weight {
                return i;
            }
            x -= s.weight;
        }
        SERVICES.len() - 1
    }

    /// Reacts to a committed batch as the server and the simulated people would.
    fn handle(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Offer {
                    call_id,
                    operator_id,
                    ..
                } => {
                    let (op, call) = (op_index(operator_id), call_index(call_id));
                    let delay = self.uniform(ACCEPT_S);
                    if self.rng.gen_bool(REJECT) {
                        self.schedule(delay, Ev::Reject { op, call });
                    } else {
                        self.schedule(delay, Ev::Accept { op, call });
                    }
                }
                Effect::Assigned {
                    call_id,
                    operator_id,
                    ..
                } => {
                    let (op, call) = (op_index(operator_id), call_index(call_id));
                    self.calls[call].accepted = Some(self.now);
                    let d = &SERVICES[self.calls[call].service];
                    let talk = self.lognormal(d.talk_mean_s, d.talk_cv);
                    self.schedule(talk, Ev::End { op, call });
                }
                Effect::CallEnded {
                    call_id,
                    reason: EndReason::Abandoned | EndReason::KioskLost,
                    operator_id: None,
                    ..
                } => self.calls[call_index(call_id)].gone = true,
                _ => {}
            }
        }
    }

    fn resolved(&self) -> bool {
        self.calls.len() >= WARMUP + self.measured
            && self.calls.iter().all(|c| c.gone || c.accepted.is_some())
    }

    async fn run(&mut self) {
        while let Some(Reverse((at, _, ev))) = self.events.pop() {
            self.now = at;
            let (t, now) = (self.tenant.clone(), self.now);
            let res = match ev {
                Ev::Tick => {
                    if self.resolved() {
                        return;
                    }
                    self.schedule(1.0, Ev::Tick);
                    if self.debug && now.as_millis() % 600_000 == 0 {
                        let snap = self.q.snapshot(&t, now).await.expect("snapshot");
                        let w: Vec<_> = snap.services.iter().map(|s| s.waiting).collect();
                        let busy: Vec<_> = snap
                            .operators
                            .iter()
                            .map(|o| format!("{}:{}/{}", o.state.label(), o.load, o.capacity))
                            .collect();
                        eprintln!(
                            "t={} calls={} waiting={w:?} ops={busy:?}",
                            now.as_millis() / 1000,
                            self.calls.len()
                        );
                    }
                    if now.as_millis() % 5000 < 1000 {
                        let node = self.node.clone();
                        let a = self.q.heartbeat(&t, now, &node).await.expect("heartbeat");
                        self.handle(&a.effects);
                    }
                    self.q.tick(&t, now).await
                }
                Ev::Arrival => {
                    let i = self.calls.len();
                    if i + 1 < WARMUP + self.measured {
                        let next = self.exp(1.0 / self.arrival_rate);
                        self.schedule(next, Ev::Arrival);
                    }
                    let service = self.pick_service();
                    self.calls.push(CallRec {
                        service,
                        enqueued: now,
                        told: Told::Nothing,
                        accepted: None,
                        gone: false,
                    });
                    if self.rng.gen_bool(IMPATIENT) {
                        let patience = self.exp(PATIENCE_MEAN_S);
                        self.schedule(patience, Ev::Cancel { call: i });
                    }
                    let id = call_id(i);
                    let call = NewCall {
                        call_id: id.clone(),
                        kiosk_id: KioskId::new(format!("k{i}")).expect("kiosk"),
                        kiosk_node: self.node.clone(),
                        service: self.services[service].clone(),
                        language: self.lang.clone(),
                        priority: 0,
                    };
                    let applied = self.q.enqueue(&t, now, call).await.expect("enqueue");
                    for e in &applied.effects {
                        if let Effect::QueueUpdate {
                            call_id,
                            estimated_wait,
                            interval,
                            position,
                            ..
                        } = e
                        {
                            if call_id == &id {
                                self.calls[i].told = match (estimated_wait, interval) {
                                    (Some(d), Some((l, h))) => Told::Secs(
                                        d.as_secs_f64(),
                                        *position,
                                        (l.as_secs_f64(), h.as_secs_f64()),
                                    ),
                                    (Some(d), None) => panic!("an estimate {d:?} with no interval"),
                                    (None, _) => Told::Unknown,
                                };
                            }
                        }
                    }
                    Ok(applied)
                }
                Ev::Accept { op, call } => {
                    let op = self.ops[op].clone();
                    self.q.accept(&t, now, &op, &call_id(call)).await
                }
                Ev::Reject { op, call } => {
                    let op = self.ops[op].clone();
                    self.q.reject(&t, now, &op, &call_id(call)).await
                }
                Ev::End { op, call } => {
                    let wrap = self.uniform(WRAP_S);
                    self.schedule(wrap, Ev::WrapDone { op, call });
                    let op = self.ops[op].clone();
                    self.q.end(&t, now, &op, &call_id(call)).await
                }
                Ev::WrapDone { op, call } => {
                    let op = self.ops[op].clone();
                    self.q.wrapup_done(&t, now, &op, &call_id(call)).await
                }
                Ev::Cancel { call } => {
                    let c = &self.calls[call];
                    if c.accepted.is_some() || c.gone {
                        continue;
                    }
                    let kiosk = KioskId::new(format!("k{call}")).expect("kiosk");
                    self.q.cancel(&t, now, &kiosk, &call_id(call)).await
                }
            };
            // A late accept of a cancelled call, or a wrap-up the queue already ended, is refused: fine.
            match res {
                Ok(applied) => self.handle(&applied.effects),
                Err(e) if self.debug => eprintln!("{ev:?} at {}: {e}", now.as_millis()),
                Err(_) => {}
            }
        }
    }
}

/// The mean of a uniform draw from `r` capped at `cap`.
fn mean_capped_uniform(r: (f64, f64), cap: f64) -> f64 {
    if cap >= r.1 {
        return (r.0 + r.1) / 2.0;
    }
    let w = r.1 - r.0;
    let below = (cap - r.0) / w;
    below * (r.0 + cap) / 2.0 + (1.0 - below) * cap
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

/// Figures of one run.
#[derive(Debug, Clone, Copy)]
struct Report {
    queued: usize,
    med_err: f64,
    pos1_med: f64,
    pos2_med: f64,
    p90_err: f64,
    bias: f64,
    /// Share of the answered `queued` calls whose actual wait fell inside the interval told.
    coverage: f64,
    /// Median width of that interval, in seconds.
    width_med: f64,
    unknown: usize,
    at_once: usize,
    all_med: f64,
    abandoned: usize,
    mean_wait: f64,
}

fn report(calls: &[CallRec]) -> Report {
    let mut err = Vec::new();
    let mut signed = Vec::new();
    let mut all = Vec::new();
    let mut waits = Vec::new();
    let (mut pos1, mut pos2) = (Vec::new(), Vec::new());
    let (mut inside, mut widths) = (0usize, Vec::new());
    let (mut unknown, mut at_once, mut abandoned) = (0, 0, 0);
    for c in &calls[WARMUP..] {
        if matches!(c.told, Told::Unknown) {
            unknown += 1;
        }
        let Some(acc) = c.accepted else {
            abandoned += 1;
            continue;
        };
        let actual = acc.since(c.enqueued).as_secs_f64();
        waits.push(actual);
        let denom = actual.max(FLOOR_S);
        match c.told {
            Told::Secs(est, pos, (low, high)) => {
                assert!(
                    low <= est && est <= high,
                    "interval {low}–{high} s around {est} s"
                );
                inside += usize::from(low <= actual && actual <= high);
                widths.push(high - low);
                let e = (est - actual).abs() / denom;
                err.push(e);
                if pos == 1 {
                    pos1.push(e);
                } else {
                    pos2.push(e);
                }
                signed.push((est - actual) / denom);
                all.push((est - actual).abs() / denom);
            }
            Told::Nothing => {
                at_once += 1;
                all.push(actual / denom);
            }
            Told::Unknown => {}
        }
    }
    let mean_wait = waits.iter().sum::<f64>() / waits.len().max(1) as f64;
    Report {
        queued: err.len(),
        med_err: quantile(&mut err, 0.5),
        pos1_med: quantile(&mut pos1, 0.5),
        pos2_med: quantile(&mut pos2, 0.5),
        p90_err: quantile(&mut err, 0.9),
        bias: quantile(&mut signed, 0.5),
        coverage: inside as f64 / err.len().max(1) as f64,
        width_med: quantile(&mut widths, 0.5),
        unknown,
        at_once,
        all_med: quantile(&mut all, 0.5),
        abandoned,
        mean_wait,
    }
}

fn print_row(label: &str, r: &Report) {
    println!(
        "{label:>10} {:>7} {:>8.1}% {:>8.1}% {:>8.1}% {:>8.1}% {:>+7.1}% {:>8.1}% {:>8.0} {:>8} {:>8} {:>8.1}% {:>6} {:>9.1}",
        r.queued,
        100.0 * r.med_err,
        100.0 * r.pos1_med,
        100.0 * r.pos2_med,
        100.0 * r.p90_err,
        100.0 * r.bias,
        100.0 * r.coverage,
        r.width_med,
        r.unknown,
        r.at_once,
        100.0 * r.all_med,
        r.abandoned,
        r.mean_wait
    );
}

fn median3(rs: &[Report], f: impl Fn(&Report) -> f64) -> f64 {
    let mut v: Vec<f64> = rs.iter().map(f).collect();
    quantile(&mut v, 0.5)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let measured = env_usize("CALLS", MEASURED);
    let seeds = &SEEDS[..env_usize("SEEDS", SEEDS.len()).clamp(1, SEEDS.len())];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ops: usize = TEAMS.iter().map(|t| t.count).sum();
    let cap: u32 = TEAMS
        .iter()
        .map(|t| t.count as u32 * u32::from(t.capacity))
        .sum();
    println!(
        "EWT accuracy: MemoryStore, {ops} operators (capacity {cap}), {} services, lognormal talk (cv {}), \
         {WARMUP} warm-up + {measured} calls per run, error floor {FLOOR_S} s",
        SERVICES.len(),
        SERVICES[0].talk_cv
    );
    println!(
        "{:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9}",
        "run",
        "queued",
        "med err",
        "pos1 med",
        "pos2+ med",
        "p90 err",
        "bias",
        "coverage",
        "width s",
        "unknown",
        "at once",
        "all med",
        "aband",
        "mean wait"
    );
    // Per load level, keyed as `targets.md` and `BENCHMARKS.md` write it ("0.6", "0.95").
    let mut median_error = serde_json::Map::new();
    let mut p90_error = serde_json::Map::new();
    let mut bias = serde_json::Map::new();
    let mut coverage = serde_json::Map::new();
    let mut width = serde_json::Map::new();
    for load in LOADS {
        println!("load {load:.2}");
        let mut reports = Vec::new();
        for &seed in seeds {
            let r = rt.block_on(async {
                let mut sim = Sim::new(load, seed, measured).await;
                sim.run().await;
                report(&sim.calls)
            });
            print_row(&format!("seed {seed}"), &r);
            reports.push(r);
        }
        let m = Report {
            queued: median3(&reports, |r| r.queued as f64) as usize,
            med_err: median3(&reports, |r| r.med_err),
            pos1_med: median3(&reports, |r| r.pos1_med),
            pos2_med: median3(&reports, |r| r.pos2_med),
            p90_err: median3(&reports, |r| r.p90_err),
            bias: median3(&reports, |r| r.bias),
            coverage: median3(&reports, |r| r.coverage),
            width_med: median3(&reports, |r| r.width_med),
            unknown: median3(&reports, |r| r.unknown as f64) as usize,
            at_once: median3(&reports, |r| r.at_once as f64) as usize,
            all_med: median3(&reports, |r| r.all_med),
            abandoned: median3(&reports, |r| r.abandoned as f64) as usize,
            mean_wait: median3(&reports, |r| r.mean_wait),
        };
        print_row("median", &m);
        let verdict = if m.med_err < 0.25 { "met" } else { "NOT met" };
        println!(
            "  target median error < 25% after warm-up: {verdict} ({:.1}%)",
            100.0 * m.med_err
        );
        let key = load.to_string();
        put(&mut median_error, &key, m.med_err);
        put(&mut p90_error, &key, m.p90_err);
        put(&mut bias, &key, m.bias);
        put(&mut coverage, &key, m.coverage);
        put(&mut width, &key, m.width_med);
    }
    println!(
        "{}",
        serde_json::json!({
            "median_error": median_error,
            "p90_error": p90_error,
            "bias": bias,
            "coverage": coverage,
            "interval_width_median_s": width,
        })
    );
}

/// `map[key] = value`, with `null` for a figure that could not be computed (no call waited).
fn put(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: f64) {
    map.insert(
        key.to_owned(),
        serde_json::json!(value.is_finite().then_some(value)),
    );
}
