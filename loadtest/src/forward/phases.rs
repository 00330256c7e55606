//! The forwarding bench's three SFU phases: memory per call at the default kiosk rates, the
//! forwarding rate per core of the SFU, and the latency the SFU adds at half that load (through
//! the [`Tap`], with the plain relay measured the same way at the same rate).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::clients::{ClientReport, Clients, Opts, Plan};
use super::probe::{snap, start_sfu, Drops, SfuWindow};
use super::tap::Tap;
use super::{relay, sys, Config, Summary, FPS, LAT_PPF, PKT};

pub struct MemResult {
    pub calls: usize,
    pub setup_s: f64,
    pub missing: usize,
    pub rss_empty: u64,
    pub heap_empty: u64,
    /// (seconds since ready, RSS, heap)
    pub samples: Vec<(f64, u64, u64)>,
    pub window: SfuWindow,
}

pub fn memory_phase(rt: &tokio::runtime::Runtime, cfg: &Config) -> MemResult {
    eprintln!(
        "[memory] {} calls at the default kiosk rates …",
        cfg.mem_calls
    );
    let (sfu, threads) = start_sfu(rt, cfg);
    std::thread::sleep(Duration::from_millis(200));
    let (rss_empty, heap_empty) = (sys::rss_bytes(), sys::heap_bytes());
    let started = Instant::now();
    let mut clients = Clients::spawn(&Plan {
        calls: cfg.mem_calls,
        kiosk: Opts::kiosk_default(),
        operator: Opts::kiosk_default(),
    });
    let missing = clients.negotiate(rt, &sfu, None);
    let setup_s = started.elapsed().as_secs_f64();
    let ready = Instant::now();
    let first = snap(rt, &sfu, &threads);
    let mut samples = Vec::new();
    for &at in &cfg.mem_samples {
        if let Some(d) = (ready + at).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        samples.push((
            ready.elapsed().as_secs_f64(),
            sys::rss_bytes(),
            sys::heap_bytes(),
        ));
        eprintln!(
            "[memory]   +{:>4.1} s: RSS {:.1} MiB, heap {:.1} MiB",
            ready.elapsed().as_secs_f64(),
            mib(samples.last().expect("pushed").1),
            mib(samples.last().expect("pushed").2)
        );
    }
    let window = SfuWindow::between(first, snap(rt, &sfu, &threads));
    drop(clients);
    drop(sfu);
    MemResult {
        calls: cfg.mem_calls,
        setup_s,
        missing,
        rss_empty,
        heap_empty,
        samples,
        window,
    }
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub struct FwdResult {
    pub calls: usize,
    pub ppf: usize,
    pub offered_pps: usize,
    pub missing: usize,
    pub window: SfuWindow,
    pub drops: Drops,
    pub clients: ClientReport,
}

impl FwdResult {
    pub fn per_core(&self) -> f64 {
        self.window.forwarded as f64 / self.window.cpu_s().max(1e-9)
    }
}

pub fn forward_phase(rt: &tokio::runtime::Runtime, cfg: &Config) -> FwdResult {
    let calls = cfg.fwd_calls.max(1);
    let ppf = (cfg.fwd_pps / calls / FPS as usize).max(1);
    let offered = ppf * FPS as usize * calls;
    eprintln!(
        "[forward] {calls} kiosks x {ppf} x 1200 B x {FPS} fps = {offered} packets/s offered …"
    );
    let (sfu, threads) = start_sfu(rt, cfg);
    let port = sfu.udp_addr().expect("udp").port();
    sys::raise_udp_rcvbufs(|a| a.port() == port);
    let mut clients = Clients::spawn(&Plan {
        calls,
        kiosk: Opts {
            ppf,
            size: PKT,
            fps: FPS,
            audio: false,
        },
        operator: Opts::silent(),
    });
    let missing = clients.negotiate(rt, &sfu, None);
    std::thread::sleep(cfg.warm);
    clients.mark();
    let a = snap(rt, &sfu, &threads);
    std::thread::sleep(cfg.secs);
    let b = snap(rt, &sfu, &threads);
    let report = clients.report();
    if !cfg.quick {
        std::thread::sleep(Duration::from_millis(1100)); // counters are published once a second
    }
    let r = FwdResult {
        calls,
        ppf,
        offered_pps: offered,
        missing,
        window: SfuWindow::between(a, b),
        drops: Drops::of(&sfu),
        clients: report,
    };
    eprintln!(
        "[forward]   {:.0} packets/s forwarded, {:.0} per SFU CPU second",
        r.window.forwarded as f64 / r.window.wall_s,
        r.per_core()
    );
    r
}

pub struct LatResult {
    pub offered_pps: usize,
    pub calls: usize,
    pub missing: usize,
    pub window: SfuWindow,
    pub tap: Summary,
    pub tap_unmatched: u64,
    pub drops: Drops,
    pub clients: ClientReport,
    pub relay: Summary,
    /// How busy the whole machine was during the window (fraction of all cores): near 1, the
    /// SFU waited for a CPU behind the load generator, and the tap measures that wait.
    pub machine_busy: Option<f64>,
}

pub fn latency_phase(rt: &tokio::runtime::Runtime, cfg: &Config, pps: usize) -> LatResult {
    let per_call = LAT_PPF * FPS as usize;
    let calls = pps.div_ceil(per_call).max(1);
    let offered = calls * per_call;
    eprintln!(
        "[latency] {calls} kiosks x {LAT_PPF} x 1200 B x {FPS} fps = {offered} packets/s offered …"
    );
    let (sfu, threads) = start_sfu(rt, cfg);
    let addr = sfu.udp_addr().expect("udp");
    sys::raise_udp_rcvbufs(|a| a.port() == addr.port());
    let tap = Tap::start(addr);
    let mut clients = Clients::spawn(&Plan {
        calls,
        kiosk: Opts {
            ppf: LAT_PPF,
            size: PKT,
            fps: FPS,
            audio: false,
        },
        operator: Opts::silent(),
    });
    let missing = clients.negotiate(rt, &sfu, Some(&tap));
    std::thread::sleep(cfg.warm);
    clients.mark();
    tap.recording.store(true, Ordering::Relaxed);
    let a = snap(rt, &sfu, &threads);
    let ticks = sys::machine_ticks();
    std::thread::sleep(cfg.secs);
    let machine_busy = sys::machine_busy(ticks, sys::machine_ticks());
    let b = snap(rt, &sfu, &threads);
    tap.recording.store(false, Ordering::Relaxed);
    let report = clients.report();
    let (lat, unmatched) = tap.finish();
    if !cfg.quick {
        std::thread::sleep(Duration::from_millis(1100)); // counters are published once a second
    }
    let drops = Drops::of(&sfu);
    drop(clients);
    drop(sfu);
    eprintln!("[latency] plain relay at {offered} packets/s …");
    let relay = relay::latency(offered, cfg.secs);
    LatResult {
        offered_pps: offered,
        calls,
        missing,
        window: SfuWindow::between(a, b),
        tap: Summary::of(lat),
        tap_unmatched: unmatched,
        drops,
        clients: report,
        relay,
        machine_busy,
    }
}
