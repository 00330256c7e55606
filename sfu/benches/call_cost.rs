//! What calls cost the forwarding engine alone, without sockets, syscalls or a runtime: N calls
//! (a kiosk and an operator each, 50 audio packets and 30 two-packet video frames per second
//! from each client) on the sans-I/O harness of `sfu/tests/harness/`, simulated for a while
//! after they are up, with the thread CPU time spent inside the engine's datagram and timer
//! handling measured (the clients' time is not counted).
//!
//! `cargo bench -p sfu --bench call_cost` (`CALLS=1,25` and `SECONDS=20` override; `FPS`,
//! `PACKETS_PER_FRAME`, `PACKET_SIZE` and `AUDIO=0|1` change the clients' media). Prints a
//! line per call count and, last, one JSON object: the engine's CPU per call in % of a core and
//! per datagram in µs. Set beside `loadtest`'s server CPU per call, this splits a call's cost
//! between the engine (rtc's pipeline and ours) and everything around it.

// The harness is shared with the tests, which use all of it.
#[allow(unused_imports)]
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::{Harness, Link, MediaPlan};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use sfu::MediaRole;

struct Run {
    calls: usize,
    cpu_per_call_pct: f64,
    us_per_datagram: f64,
    datagrams_per_call_s: f64,
    timers_per_call_s: f64,
}

/// The clients' media: [`MediaPlan::default`] (kiosk rates), or what `FPS`, `PACKETS_PER_FRAME`,
/// `PACKET_SIZE` and `AUDIO` (0 or 1) ask for, e.g. the 1200-byte packets of `loadtest forward`.
fn plan() -> MediaPlan {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let d = MediaPlan::default();
    MediaPlan {
        audio: env("AUDIO").map_or(d.audio, |a| a != 0),
        fps: env("FPS").map_or(d.fps, |f| f as u32),
        packets_per_frame: env("PACKETS_PER_FRAME").unwrap_or(d.packets_per_frame),
        packet_size: env("PACKET_SIZE").unwrap_or(d.packet_size),
        ..d
    }
}

fn run(calls: usize, secs: u64) -> Run {
    let mut h = Harness::new(5);
    let link = Link::default().with_jitter(Duration::from_millis(3));
    let mut clients = Vec::new();
    for c in 0..calls {
        let call = format!("call-{c}");
        for (who, role) in [
            (format!("kiosk:k{c}"), MediaRole::Kiosk),
            (format!("operator:o{c}"), MediaRole::Operator),
        ] {
            clients.push(h.join(&call, &who, role, plan(), link, link));
        }
    }
    let up = h.run_until(Duration::from_secs(10), |h| {
        clients.iter().all(|&c| {
            h.client(c)
                .track(RtpCodecKind::Video)
                .is_some_and(|t| !t.keyframes.is_empty())
        })
    });
    assert!(up, "{calls} calls did not all come up within 10 s");
    h.run_for(Duration::from_secs(2));
    let datagrams = |h: &Harness| {
        clients
            .iter()
            .map(|&c| h.link_counts(c, harness::Direction::Up).sent)
            .sum::<u64>()
    };
    let (cpu0, d0, t0) = (h.engine_cpu, datagrams(&h), h.counters().timer_fires);
    h.run_for(Duration::from_secs(secs));
    let cpu = (h.engine_cpu - cpu0).as_secs_f64();
    let d = (datagrams(&h) - d0) as f64;
    let timers = (h.counters().timer_fires - t0) as f64;
    let per_call_s = |x: f64| x / calls as f64 / secs as f64;
    Run {
        calls,
        cpu_per_call_pct: per_call_s(cpu) * 100.0,
        us_per_datagram: cpu / d * 1e6,
        datagrams_per_call_s: per_call_s(d),
        timers_per_call_s: per_call_s(timers),
    }
}

fn main() {
    let calls: Vec<usize> = std::env::var("CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 25]);
    let secs: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut json = Vec::new();
    for &n in &calls {
        let r = run(n, secs);
        println!(
            "{} call(s), {secs} s simulated: engine CPU {:.3}% of a core per call, {:.1} µs per \
             datagram in ({:.0} datagrams and {:.0} connection timers per call per second)",
            r.calls,
            r.cpu_per_call_pct,
            r.us_per_datagram,
            r.datagrams_per_call_s,
            r.timers_per_call_s
        );
        json.push(format!(
            "\"engine_cpu_per_call_pct/{n}\":{:.4},\"engine_us_per_datagram/{n}\":{:.2},\
             \"datagrams_per_call_s/{n}\":{:.1},\"timers_per_call_s/{n}\":{:.1}",
            r.cpu_per_call_pct, r.us_per_datagram, r.datagrams_per_call_s, r.timers_per_call_s
        ));
    }
    println!("{{{}}}", json.join(","));
}
