//! `loadtest forward`: the media plane's figures for `BENCHMARKS.md` ("Media plane (SFU)"),
//! measured in one run on one machine. Formerly `cargo bench -p sfu --bench forward`.
//!
//! 1. **plain UDP relay ceiling** ([`relay`]): a relay thread moves 1200-byte datagrams between
//!    loopback sockets with `recvmmsg`/`sendmmsg` (batches of 32, no crypto) while a blaster thread
//!    feeds it; the figure is packets relayed per CPU second of the relay thread
//!    (`CLOCK_THREAD_CPUTIME_ID`). The same with one `recv_from` + one `send_to` per packet for
//!    reference. The SFU pays batched syscalls like the first: `recvmmsg` on the socket connected
//!    to each established peer and `sendmmsg` on the shared media socket, though its wake-ups go
//!    through tokio's readiness (and one `epoll` set of its connected sockets) and the relay's do
//!    not.
//!    And the relay woken for every datagram ([`relay::wakeups`], 1,000 datagrams/s, about what
//!    one loop receives from a handful of calls at kiosk rates): its CPU per datagram
//!    (`relay_wakeup_us`) is the floor of one wake-up, one receive and one send on this machine,
//!    under any media server that wakes once per datagram; the memory phase turns it into a
//!    cost per call for reference.
//! 2. **memory per call** ([`phases`]): resident set and malloc heap of this process before and
//!    after N kiosk–operator calls at the default kiosk rates
//!    ([`sfu::client::ClientOptions::default`]). The clients run in a child process ([`clients`]:
//!    this executable re-executed as `loadtest forward --child-plan …`), so every byte and every
//!    CPU second measured here is the SFU's. Sampled until the per-stream NACK send buffers have
//!    filled. Also the SFU's CPU per call at those rates.
//! 3. **SFU forwarding with SRTP**: [`sfu::Sfu`] with one loop ([`probe`]); kiosks send 1200-byte
//!    VP8 packets to receive-only operators; packets forwarded per CPU second of the SFU's own
//!    threads (`sfu-loop-0` + `sfu-udp-reader`, from `/proc/self/task/*/schedstat`), SRTP decrypt
//!    and encrypt included, and as a fraction of the relay ceiling. In the driver measured, the
//!    reader thread takes `recvmmsg` batches of up to 32 from the shared media socket, which after
//!    ICE carries only first checks and the packets of peers without a connected socket; once
//!    ICE validates a peer, the loop opens a UDP socket on the media port connected to it and
//!    reads it itself (`recvmmsg`, the sockets watched by one `epoll` set), so an established
//!    peer's packets never cross threads. The loop sends the output of each batch it read
//!    (`sendmmsg` on the shared socket) before reading the next.
//! 4. **latency added at 50% load**: offered load is half of figure 3 (so the SFU's threads use
//!    about half a core), in 5-packet frames at 200 fps per kiosk. One call runs through a tap
//!    ([`tap`]) in this process: it stamps each video packet just before handing it to the SFU's
//!    media port and reads the kernel's receive timestamp (`SO_TIMESTAMPNS`) of the same packet
//!    (same sequence number and timestamp: the SFU does not rewrite them for a call's first
//!    source) on the way out. The plain relay is measured the same way at the same packet rate.
//!    The clients' end-to-end figure (send time in the payload → receiver's `poll_read`) is
//!    reported too, and how busy the whole machine was (`latency_machine_busy`, from
//!    `/proc/stat`): from 0.8 of all cores the SFU queues for a CPU behind the load generator,
//!    and the report says the figure is the machine's.
//!
//! Run: `cargo run --release -p loadtest -- forward` (about 75 s); `--quick` (or `QUICK=1`) for a
//! smoke run of ~8 s. Options, each with the environment variable of the old bench as its
//! default ([`Args`]): `--secs`/`SECS` (measurement window), `--calls`/`CALLS` (calls in the
//! memory phase), `--fwd-calls`/`FWD_CALLS` and `--fwd-pps`/`FWD_PPS` (kiosks and total offered
//! packets/s in phase 3), `--lat-pps`/`LAT_PPS` (offered packets/s in phase 4),
//! `--sfu-nice`/`SFU_NICE` (e.g. `-15`: raise the SFU threads' priority over the clients and
//! anything else on a shared machine), `--sfu-rt`/`SFU_RT` (e.g. `10`: the SFU's loop under
//! `SCHED_RR` at that priority, `Sfu::set_loop_priority`), `--no-gso`/`NO_GSO=true` (the SFU sends
//! datagram by datagram, without UDP segmentation), `--only`/`ONLY` (comma-separated subset of `relay`,
//! `memory`, `forward`, `latency`). The figures are measurements, not assertions: run it on a
//! quiet machine. The report ([`report`]) ends with one JSON line of headline figures:
//! `sfu_pps_per_core`, `relay_pps_per_core`, `sfu_relay_ratio`, `latency_p99_ms` (the SFU's added
//! p99 at half load), `relay_latency_p99_ms`, `memory_per_call_kib`, and a few more.
//!
//! Work-arounds for what the SFU does not expose: right after the SFU starts, its shared UDP
//! socket is found through `/proc/self/fd` and its receive buffer raised to 8 MiB, and so are the
//! clients' sockets (in their process). The driver itself asks for 4 MiB of receive and send
//! buffer on the shared socket and on every connected peer socket (`SO_RCVBUFFORCE`, so a process
//! without `CAP_NET_ADMIN` gets at most `net.core.rmem_max`, by default ~208 KiB: a burst of about
//! a hundred 1200-byte packets); the connected peer sockets, opened later, keep the driver's size.
//! The kernel's drop counter reported is the sum over every socket on the media port.

mod clients;
mod phases;
mod probe;
mod relay;
mod report;
mod sys;
mod tap;

use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use report::Results;

/// Datagram size of the plain relay.
const PKT: usize = 1200;
/// `recvmmsg`/`sendmmsg` batch of the relay.
const BATCH: usize = 32;
/// Datagrams per second sent to the relay woken for each ([`relay::wakeups`]): about what one
/// forwarding loop receives from a handful of calls at kiosk rates (~220 datagrams/s per call).
const WAKEUP_PPS: usize = 1_000;
/// Receive buffer the bench gives the SFU's shared socket and the clients' sockets (the driver
/// asks for 4 MiB).
const RCVBUF: i32 = 8 << 20;
/// VP8's payload type in the clients' offers and the SFU's answers.
const VIDEO_PT: u8 = 96;
/// Frames per second of the kiosks in phases 3 and 4.
const FPS: u32 = 200;
/// Packets per video frame in phase 4.
const LAT_PPF: usize = 5;

/// The SFU's forwarding rate, added latency and memory per call against a plain UDP relay.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A smoke run of ~8 s whose figures mean nothing.
    #[arg(long, env = "QUICK")]
    quick: bool,
    /// Measurement window of each phase, seconds [default: 8, quick 1].
    #[arg(long, env = "SECS")]
    secs: Option<f64>,
    /// Calls in the memory phase [default: 50, quick 5].
    #[arg(long, env = "CALLS")]
    calls: Option<usize>,
    /// Kiosks in the forwarding phase.
    #[arg(long, env = "FWD_CALLS", default_value_t = 4)]
    fwd_calls: usize,
    /// Total packets/s offered in the forwarding phase [default: 40000, quick 8000].
    #[arg(long, env = "FWD_PPS")]
    fwd_pps: Option<usize>,
    /// Packets/s offered in the latency phase [default: half the forwarding phase's rate per core].
    #[arg(long, env = "LAT_PPS")]
    lat_pps: Option<usize>,
    /// Nice value of the SFU's threads, e.g. -15 (needs the privilege to raise priority).
    #[arg(long, env = "SFU_NICE", allow_negative_numbers = true)]
    sfu_nice: Option<i32>,
    /// Run the SFU's forwarding loop under `SCHED_RR` at this priority (1–99), through
    /// `Sfu::set_loop_priority` (needs `CAP_SYS_NICE`); not set: the normal policy, as the server
    /// runs today.
    #[arg(long, env = "SFU_RT")]
    sfu_rt: Option<u8>,
    /// Send datagram by datagram, without UDP segmentation (`[media] udp_gso = false`), to
    /// compare.
    #[arg(long, env = "NO_GSO")]
    no_gso: bool,
    /// Only these phases: relay, memory, forward, latency (comma-separated) [default: all].
    #[arg(long, env = "ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// Internal: run as the clients' process with this plan (JSON), speaking to the parent on
    /// standard input and output.
    #[arg(long, hide = true)]
    child_plan: Option<String>,
}

/// The settings of one run, `Args` with the defaults resolved.
struct Config {
    quick: bool,
    secs: Duration,
    warm: Duration,
    mem_calls: usize,
    mem_samples: Vec<Duration>,
    fwd_calls: usize,
    fwd_pps: usize,
    lat_pps: Option<usize>,
    sfu_nice: Option<i32>,
    sfu_rt: Option<u8>,
    only: Vec<String>,
}

impl Config {
    fn of(args: &Args) -> Self {
        let quick = args.quick;
        let secs = Duration::from_secs_f64(args.secs.unwrap_or(if quick { 1.0 } else { 8.0 }));
        let mem_samples = if quick {
            vec![Duration::from_secs(1)]
        } else {
            // 60 video packets/s per stream fill a 1024-packet NACK send buffer in ~17 s.
            [2, 10, 20, 25].map(Duration::from_secs).to_vec()
        };
        Config {
            quick,
            secs,
            warm: if quick {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(2)
            },
            mem_calls: args.calls.unwrap_or(if quick { 5 } else { 50 }),
            mem_samples,
            fwd_calls: args.fwd_calls,
            fwd_pps: args.fwd_pps.unwrap_or(if quick { 8_000 } else { 40_000 }),
            lat_pps: args.lat_pps,
            sfu_nice: args.sfu_nice,
            sfu_rt: args.sfu_rt,
            only: args
                .only
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    fn wants(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

/// Runs the bench (or, with `--child-plan`, the clients' process). The figures are measurements,
/// not assertions: it exits 0 unless the runtime cannot start.
pub fn main(args: Args) -> ExitCode {
    if let Some(plan) = &args.child_plan {
        clients::run_child(plan);
        return ExitCode::SUCCESS;
    }
    let cfg = Config::of(&args);
    sfu::udpio::set_segmentation(!args.no_gso);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest forward: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "sfu forward bench: {} cores, window {:.1} s{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cfg.secs.as_secs_f64(),
        if cfg.quick { ", quick" } else { "" }
    );

    let load_before = testkit::loadavg();
    let mut out = Results::default();
    if cfg.wants("relay") {
        eprintln!("[relay] recvmmsg/sendmmsg x{BATCH} …");
        out.relay_batched = Some(relay::throughput(BATCH, cfg.secs));
        eprintln!("[relay] recv_from/send_to …");
        out.relay_single = Some(relay::throughput(1, cfg.secs));
        eprintln!("[relay] woken for every datagram, {WAKEUP_PPS}/s …");
        out.relay_wakeups = Some(relay::wakeups(WAKEUP_PPS, cfg.secs));
    }
    if cfg.wants("memory") {
        out.memory = Some(phases::memory_phase(&rt, &cfg));
    }
    if cfg.wants("forward") {
        out.forward = Some(phases::forward_phase(&rt, &cfg));
    }
    if cfg.wants("latency") {
        let pps = cfg.lat_pps.unwrap_or_else(|| match &out.forward {
            Some(f) => (f.per_core() / 2.0) as usize,
            None => 20_000,
        });
        out.latency = Some(phases::latency_phase(&rt, &cfg, pps));
    }
    out.print(&cfg);
    println!();
    println!(
        "load average before: {load_before}; after: {}",
        testkit::loadavg()
    );
    // The headline figures, the last line (read by `cargo xtask bench`).
    println!("{}", out.headline(&cfg));
    ExitCode::SUCCESS
}

/// Percentiles of latency samples (in the samples' unit, µs here).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Summary {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Summary {
    /// From samples in any unit; the summary keeps the unit.
    fn of(mut v: Vec<f64>) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Summary {
            n: v.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: v[v.len() - 1],
        }
    }

    fn ms(&self) -> String {
        format!(
            "p50 {:.3} / p90 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms (n = {})",
            self.p50 / 1e3,
            self.p90 / 1e3,
            self.p99 / 1e3,
            self.p999 / 1e3,
            self.max / 1e3,
            self.n
        )
    }
}
