//! The forwarding bench's report: the figures of every phase run, as text for `BENCHMARKS.md`,
//! then one JSON object with the headline figures as the last line.

use super::phases::{mib, FwdResult, LatResult, MemResult};
use super::{relay, Config, FPS, LAT_PPF, PKT};

/// The figures of the phases that ran.
#[derive(Default)]
pub struct Results {
    pub relay_batched: Option<relay::RelayResult>,
    pub relay_single: Option<relay::RelayResult>,
    pub relay_wakeups: Option<relay::RelayResult>,
    pub memory: Option<MemResult>,
    pub forward: Option<FwdResult>,
    pub latency: Option<LatResult>,
}

/// The fraction of all cores busy above which the latency phase says the machine was saturated.
const SATURATED: f64 = 0.8;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

impl Results {
    pub fn print(&self, cfg: &Config) {
        println!();
        println!(
            "Media plane, loopback, {} cores, window {:.1} s{}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cfg.secs.as_secs_f64(),
            if cfg.quick {
                " (QUICK: smoke run, figures not meaningful)"
            } else {
                ""
            }
        );
        println!();
        let ceiling = self.relay_batched.as_ref().map(|r| r.per_core());
        for r in [&self.relay_batched, &self.relay_single]
            .into_iter()
            .flatten()
        {
            let how = if r.batch > 1 {
                format!("recvmmsg/sendmmsg x{}", r.batch)
            } else {
                "recv_from/send_to per packet".to_owned()
            };
            println!(
                "plain relay, {how}, {PKT} B: {:>9.0} packets/s per core ({:.2} µs/packet; {} relayed in {:.2} CPU s over {:.1} s; sink got {})",
                r.per_core(),
                1e6 / r.per_core(),
                r.relayed,
                r.cpu_s,
                r.wall_s,
                r.sunk
            );
        }
        if let Some(r) = &self.relay_wakeups {
            println!(
                "plain relay woken for every datagram ({:.0}/s, {PKT} B): {:.1} µs of CPU per datagram ({} relayed in {:.3} CPU s over {:.1} s): the floor of one wake-up, one receive and one send on this machine",
                r.relayed as f64 / r.wall_s.max(1e-9),
                1e6 / r.per_core(),
                r.relayed,
                r.cpu_s,
                r.wall_s
            );
        }
        if let Some(f) = &self.forward {
            let w = &f.window;
            println!();
            println!(
                "SFU forwarding, SRTP in and out, 1200 B: {:>9.0} packets/s per core of the SFU [target >= 100,000: {}]",
                f.per_core(),
                verdict(f.per_core() >= 100_000.0)
            );
            println!(
                "  {:.2} µs of SFU CPU per packet: loop {:.2} µs + reader {:.2} µs; loop thread alone {:.0} packets/s per core",
                w.cpu_s() * 1e6 / w.forwarded.max(1) as f64,
                w.loop_s * 1e6 / w.forwarded.max(1) as f64,
                w.reader_s * 1e6 / w.forwarded.max(1) as f64,
                w.forwarded as f64 / w.loop_s.max(1e-9)
            );
            if let Some(c) = ceiling {
                println!(
                    "  = {:.3} of the recvmmsg/sendmmsg relay ceiling",
                    f.per_core() / c
                );
            }
            if let Some(r) = &self.relay_single {
                println!(
                    "  = {:.3} of the recv_from/send_to relay",
                    f.per_core() / r.per_core()
                );
            }
            println!(
                "  {} kiosks x {} packets x {FPS} fps = {} packets/s offered; forwarded {:.0}/s over {:.1} s; loop busy {:.0}%, reader {:.0}%{}",
                f.calls,
                f.ppf,
                f.offered_pps,
                w.forwarded as f64 / w.wall_s,
                w.wall_s,
                100.0 * w.loop_s / w.wall_s,
                100.0 * w.reader_s / w.wall_s,
                if f.missing > 0 { format!("; {} receivers never got video", f.missing) } else { String::new() }
            );
            println!(
                "  clients (other process) in the window: sent {} received {} ({:.2}% short), {:.2} cores",
                f.clients.sent,
                f.clients.received,
                100.0 * (f.clients.sent as f64 - f.clients.received as f64) / f.clients.sent.max(1) as f64,
                f.clients.cpu_s / f.clients.wall_s.max(1e-9),
            );
            println!("  {}", f.drops.describe());
        }
        if let Some(l) = &self.latency {
            let w = &l.window;
            println!();
            println!(
                "Latency added by the SFU at {} packets/s ({} kiosks x {LAT_PPF} x 1200 B x {FPS} fps; SFU threads {:.0}% of a core: loop {:.0}%, reader {:.0}%):",
                l.offered_pps,
                l.calls,
                100.0 * w.cpu_s() / w.wall_s,
                100.0 * w.loop_s / w.wall_s,
                100.0 * w.reader_s / w.wall_s
            );
            println!(
                "  SFU socket in → out (tap):        {} [target p99 < 1 ms: {}]",
                l.tap.ms(),
                verdict(l.tap.n > 0 && l.tap.p99 < 1000.0)
            );
            println!("  plain relay, same rate, same way: {}", l.relay.ms());
            println!(
                "  client send → client receive:    {}",
                l.clients.latency_us.ms()
            );
            println!(
                "  tap: {} packets out without a match; clients sent {} received {}, {:.2} cores{}",
                l.tap_unmatched,
                l.clients.sent,
                l.clients.received,
                l.clients.cpu_s / l.clients.wall_s.max(1e-9),
                if l.missing > 0 {
                    format!("; {} receivers never got video", l.missing)
                } else {
                    String::new()
                }
            );
            println!("  {}", l.drops.describe());
            if let Some(busy) = l.machine_busy {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                println!(
                    "  the machine: {:.0}% of its {cores} cores busy over the window{}",
                    100.0 * busy,
                    if busy >= SATURATED {
                        " (saturated: the SFU queues for a CPU behind the load generator, and the \
                         tap measures that wait; on this machine the figure needs a lower rate \
                         or the clients elsewhere)"
                    } else {
                        ""
                    }
                );
            }
        }
        if let Some(m) = &self.memory {
            println!();
            println!(
                "Memory, {} calls at the default kiosk rates (set up in {:.1} s{}); SFU process: RSS {:.1} MiB, heap {:.1} MiB with no calls",
                m.calls,
                m.setup_s,
                if m.missing > 0 { format!(", {} receivers without video", m.missing) } else { String::new() },
                mib(m.rss_empty),
                mib(m.heap_empty)
            );
            for (i, &(at, rss, heap)) in m.samples.iter().enumerate() {
                let per =
                    |now: u64, base: u64| (now as f64 - base as f64) / m.calls as f64 / 1024.0;
                let last = i + 1 == m.samples.len();
                println!(
                    "  +{at:>4.1} s: RSS {:.1} MiB = {:.0} KiB per call, heap {:.1} MiB = {:.0} KiB per call{}",
                    mib(rss),
                    per(rss, m.rss_empty),
                    mib(heap),
                    per(heap, m.heap_empty),
                    if last {
                        format!(" [target < 1 MiB per call: {}]", verdict(per(rss, m.rss_empty) < 1024.0))
                    } else {
                        String::new()
                    }
                );
            }
            let w = &m.window;
            println!(
                "  SFU CPU over {:.1} s: {:.2}% of a core for {} calls = {:.3}% of a core per call ({:.0} packets/s forwarded)",
                w.wall_s,
                100.0 * w.cpu_s() / w.wall_s,
                m.calls,
                100.0 * w.cpu_s() / w.wall_s / m.calls as f64,
                w.forwarded as f64 / w.wall_s
            );
            if let Some(r) = &self.relay_wakeups {
                let per_call = w.forwarded as f64 / w.wall_s.max(1e-9) / m.calls as f64;
                println!(
                    "  for reference: at {per_call:.0} packets/s per call, one wake-up of the plain relay per packet would cost {:.3}% of a core per call",
                    100.0 * per_call / r.per_core()
                );
            }
        }
    }
}

/// `x` rounded to `digits` decimals.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

impl Results {
    /// The headline figures as one JSON object (absent phases are `null`): packets forwarded per
    /// core of the SFU and of the batched relay, their ratio, the p99 latency the SFU and the
    /// relay add at half load (ms), and memory and CPU per call.
    pub fn headline(&self, cfg: &Config) -> serde_json::Value {
        let relay = self.relay_batched.as_ref().map(|r| r.per_core());
        let sfu = self.forward.as_ref().map(|f| f.per_core());
        let latency = self.latency.as_ref();
        let memory = self.memory.as_ref().and_then(|m| {
            let &(_, rss, heap) = m.samples.last()?;
            let per = |now: u64, base: u64| (now as f64 - base as f64) / m.calls as f64 / 1024.0;
            Some((per(rss, m.rss_empty), per(heap, m.heap_empty), m))
        });
        serde_json::json!({
            "sfu_pps_per_core": sfu.map(|v| v.round()),
            "relay_pps_per_core": relay.map(|v| v.round()),
            "relay_single_pps_per_core": self.relay_single.as_ref().map(|r| r.per_core().round()),
            "relay_wakeup_us": self.relay_wakeups.as_ref().map(|r| round(1e6 / r.per_core(), 2)),
            "sfu_relay_ratio": sfu.zip(relay).map(|(s, r)| round(s / r, 3)),
            "latency_p50_ms": latency.filter(|l| l.tap.n > 0).map(|l| round(l.tap.p50 / 1e3, 3)),
            "latency_p99_ms": latency.filter(|l| l.tap.n > 0).map(|l| round(l.tap.p99 / 1e3, 3)),
            "latency_offered_pps": latency.map(|l| l.offered_pps),
            "latency_machine_busy": latency.and_then(|l| l.machine_busy).map(|b| round(b, 3)),
            "relay_latency_p99_ms": latency.map(|l| round(l.relay.p99 / 1e3, 3)),
            "memory_per_call_kib": memory.map(|(rss, _, _)| rss.round()),
            "heap_per_call_kib": memory.map(|(_, heap, _)| heap.round()),
            "cpu_per_call_pct": memory.map(|(_, _, m)| {
                round(100.0 * m.window.cpu_s() / m.window.wall_s / m.calls as f64, 3)
            }),
            "window_s": cfg.secs.as_secs_f64(),
            "quick": cfg.quick,
        })
    }
}
