//! The SFU under test, seen from the outside: an [`Sfu`] with one forwarding loop, the CPU time
//! of its own threads (`sfu-loop-0` and `sfu-udp-reader`, read from `/proc`), its forwarding
//! counters between two instants, and its drop counters over a phase.

use std::time::{Duration, Instant};

use sfu::{MediaConfig, Sfu};

use super::{sys, Config};

/// The SFU's threads: (tid, name).
pub type Threads = Vec<(u32, String)>;

/// Starts an SFU with one loop and finds its two threads (a previous phase's may still be winding
/// down: they stop within a second of their handle being dropped).
pub fn start_sfu(rt: &tokio::runtime::Runtime, cfg: &Config) -> (Sfu, Threads) {
    let old = sys::threads("sfu-");
    let (sfu, events) = rt
        .block_on(Sfu::start(
            MediaConfig {
                loops: 1,
                tcp: None,
                ..Default::default()
            },
            None,
        ))
        .expect("sfu starts");
    drop(events); // statistics are still computed every 2 s, as in production
                  // The threads name themselves once running.
    let deadline = Instant::now() + Duration::from_secs(2);
    let threads = loop {
        let new: Threads = sys::threads("sfu-")
            .into_iter()
            .filter(|t| !old.contains(t))
            .collect();
        if new.len() >= 2 || Instant::now() >= deadline {
            break new;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(nice) = cfg.sfu_nice {
        for (tid, _) in &threads {
            // SAFETY: plain syscall on a thread id of this process.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, *tid, nice) };
        }
    }
    if let Some(priority) = cfg.sfu_rt {
        if let Err(e) = rt.block_on(sfu.set_loop_priority(Some(priority))) {
            eprintln!("[sfu] the loop stays under the normal policy: {e}");
        }
    }
    (sfu, threads)
}

/// CPU of the SFU's own threads and its forwarding counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct SfuSnap {
    pub at: Instant,
    pub loop_ns: u64,
    pub reader_ns: u64,
    pub forwarded: u64,
}

pub fn snap(rt: &tokio::runtime::Runtime, sfu: &Sfu, threads: &Threads) -> SfuSnap {
    let forwarded = rt
        .block_on(sfu.stats())
        .iter()
        .flat_map(|c| c.directions.iter())
        .map(|d| d.packets)
        .sum();
    let mut s = SfuSnap {
        at: Instant::now(),
        loop_ns: 0,
        reader_ns: 0,
        forwarded,
    };
    for (tid, name) in threads {
        let ns = sys::task_cpu_ns(*tid);
        if name.starts_with("sfu-loop") {
            s.loop_ns += ns;
        } else {
            s.reader_ns += ns;
        }
    }
    s
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct SfuWindow {
    pub wall_s: f64,
    pub loop_s: f64,
    pub reader_s: f64,
    pub forwarded: u64,
}

impl SfuWindow {
    pub fn between(a: SfuSnap, b: SfuSnap) -> SfuWindow {
        SfuWindow {
            wall_s: b.at.duration_since(a.at).as_secs_f64(),
            loop_s: (b.loop_ns - a.loop_ns) as f64 / 1e9,
            reader_s: (b.reader_ns - a.reader_ns) as f64 / 1e9,
            forwarded: b.forwarded - a.forwarded,
        }
    }

    pub fn cpu_s(&self) -> f64 {
        self.loop_s + self.reader_s
    }
}

/// The SFU's packet counters over a whole phase (set-up and warm-up included): each phase starts
/// a fresh [`Sfu`] with fresh metrics and a fresh socket. Read a second after the window, since
/// the loop publishes its counters once a second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drops {
    pub rtp_in: u64,
    pub rtp_out: u64,
    pub loop_queue: u64,
    pub kernel: u64,
}

impl Drops {
    pub fn of(sfu: &Sfu) -> Drops {
        let m = sfu.metrics();
        Drops {
            rtp_in: m.packets.with_label_values(&["in"]).get(),
            rtp_out: m.packets.with_label_values(&["out"]).get(),
            loop_queue: m.dropped.with_label_values(&["overload"]).get(),
            kernel: sfu
                .udp_addr()
                .and_then(|a| sys::udp_drops(a.port()))
                .unwrap_or(0),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "SFU over the phase: rtp in {} out {}; dropped: loop queue full {}, kernel (socket buffer) {}",
            self.rtp_in, self.rtp_out, self.loop_queue, self.kernel
        )
    }
}
