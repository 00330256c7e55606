//! The forwarding engine on the sans-I/O harness (`harness/`): `rtc` client peers and the
//! [`sfu::engine::Engine`] on a simulated clock and network, with fixed seeds, so each test is
//! exact, repeatable and fast. A kiosk and an operator join (with the time of every join step),
//! also when the handshake loses datagrams; hold and resume keep the streams continuous; a call's
//! costs per second are counted; keyframe requests under loss reach the sender within the
//! engine's rate limit; NACK recovers 5% loss on every leg over many seeds; a peer that leaves leaves nothing behind; and the same seed gives the
//! same run.

mod harness;

use std::time::{Duration, Instant};

use harness::{ClientId, Direction, Harness, Incoming, Link, MediaPlan};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use sfu::{MediaEvent, MediaRole};

/// The engine's `PLI_MIN_INTERVAL` (private in `engine.rs`): how often a sender may be asked for
/// a keyframe for one stream, unless a join or a resume forces it.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);

const CALL: &str = "call-1";

/// A kiosk and an operator in [`CALL`], each on its own links.
fn call(h: &mut Harness, kiosk: (Link, Link), operator: (Link, Link)) -> (ClientId, ClientId) {
    let k = h.join(
        CALL,
        "kiosk:k1",
        MediaRole::Kiosk,
        MediaPlan::default(),
        kiosk.0,
        kiosk.1,
    );
    let o = h.join(
        CALL,
        "operator:o1",
        MediaRole::Operator,
        MediaPlan::default(),
        operator.0,
        operator.1,
    );
    (k, o)
}

/// Both parties have put together a keyframe from the other.
fn both_see_video(h: &Harness, k: ClientId, o: ClientId) -> bool {
    [k, o].iter().all(|&c| {
        h.client(c)
            .track(RtpCodecKind::Video)
            .is_some_and(|t| !t.keyframes.is_empty())
    })
}

fn clean() -> (Link, Link) {
    (Link::default(), Link::default())
}

/// Every packet of `t` follows the previous one: sequence numbers one apart and timestamps
/// never going back. On a clean link, anything else is a jump made by the SFU.
fn assert_continuous(t: &Incoming) {
    for w in t.arrivals.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert_eq!(
            b.seq,
            a.seq.wrapping_add(1),
            "{}: sequence jump {} → {} at {:?}",
            t.track_id,
            a.seq,
            b.seq,
            b.at - a.at
        );
        assert!(
            b.ts.wrapping_sub(a.ts) < 0x8000_0000,
            "{}: timestamp back {} → {}",
            t.track_id,
            a.ts,
            b.ts
        );
        assert_eq!(a.ssrc, b.ssrc, "{}: one SSRC for the receiver", t.track_id);
    }
}

#[test]
fn a_kiosk_and_an_operator_join_and_media_flows_both_ways() {
    let wall = Instant::now();
    let mut h = Harness::new(1);
    let (k, o) = call(&mut h, clean(), clean());
    assert!(
        h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)),
        "no video both ways after 5 s (simulated): kiosk {}, operator {}",
        h.join_steps(k),
        h.join_steps(o)
    );
    h.run_for(Duration::from_secs(2));

    for (name, c) in [("kiosk", k), ("operator", o)] {
        let steps = h.join_steps(c);
        println!("join steps of the {name} (20 ms each way, no loss): {steps}");
        // Generous bounds: a 40 ms round trip, ICE and DTLS on a clean path.
        let within = |d: Option<Duration>, max_ms: u64, what: &str| {
            let d = d.unwrap_or_else(|| panic!("{name}: {what} never happened"));
            assert!(
                d <= Duration::from_millis(max_ms),
                "{name}: {what} after {d:?}"
            );
        };
        within(steps.ice_connected, 500, "ICE connected");
        within(steps.dtls_connected, 1000, "DTLS done");
        within(steps.sfu_connected, 1000, "the SFU's connected event");
        within(steps.first_rtp_forwarded, 1500, "the first RTP forwarded");
        within(steps.first_keyframe, 1500, "the first keyframe");
    }

    // Each receives the other's audio and video, on the tracks the SFU named after the source,
    // with nothing lost or reordered on a clean path.
    for (rx, from) in [(k, "operator"), (o, "kiosk")] {
        let c = h.client(rx);
        for (kind, name, min) in [
            (RtpCodecKind::Audio, "audio", 80),
            (RtpCodecKind::Video, "video", 100),
        ] {
            let t = c.track(kind).unwrap_or_else(|| panic!("no {name} track"));
            assert_eq!(t.track_id, format!("{from}-{name}"));
            assert!(
                t.arrivals.len() >= min,
                "{}: {} packets",
                t.track_id,
                t.arrivals.len()
            );
            assert_continuous(t);
        }
    }
    let connected = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, MediaEvent::Connected { .. }))
        .count();
    assert_eq!(connected, 2, "one connected event per participant");
    let c = h.counters();
    assert_eq!(c.dropped_unknown, 0, "{c:?}");
    assert_eq!(c.dropped_held, 0, "{c:?}");
    assert!(c.rtp_out > 0 && c.rtp_in >= c.rtp_out / 2, "{c:?}");
    println!("wall time: {:?}", wall.elapsed());
}

/// The same join on paths that reorder (10 ms of jitter each way): ICE can take a retry longer
/// when a nomination overtakes the client's answer to the SFU's own check (the lite agent then
/// answers the nomination with a check of its own instead of a response, and the client asks
/// again 200 ms later), so the bounds are wider.
#[test]
fn join_steps_on_paths_that_reorder() {
    for seed in [7, 8, 9] {
        let mut h = Harness::new(seed);
        let jittery = Link::default().with_jitter(Duration::from_millis(10));
        let (k, o) = call(&mut h, (jittery, jittery), (jittery, jittery));
        assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
        for (name, c) in [("kiosk", k), ("operator", o)] {
            let steps = h.join_steps(c);
            println!("seed {seed}, {name} (20–30 ms each way): {steps}");
            assert!(steps
                .ice_connected
                .is_some_and(|d| d <= Duration::from_secs(1)));
            assert!(steps
                .first_keyframe
                .is_some_and(|d| d <= Duration::from_secs(2)));
        }
    }
}

/// A browser (the controlling ICE agent) starts DTLS as soon as its own check is answered, and
/// nominates at once; its answer to the SFU's check may arrive after both. The SFU then answers
/// the nomination at once, keeps the early DTLS records, and completes the handshake when its
/// check succeeds, rather than waiting for the client's retransmissions (a nomination left
/// unanswered and a dropped ClientHello cost ~50 ms each with Chrome, ~1 s with rtc's timers).
#[test]
fn a_join_does_not_wait_when_the_sfus_check_is_answered_last() {
    let late = Link::default().with_stun_response_delay(Duration::from_millis(60));
    let mut h = Harness::new(11);
    let (k, o) = call(&mut h, (late, Link::default()), (late, Link::default()));
    assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
    for (name, c) in [("kiosk", k), ("operator", o)] {
        let steps = h.join_steps(c);
        println!("{name}, the client's answers 60 ms late: {steps}");
        // 20 ms each way: check, answer and nomination by 40 ms, the SFU's check answered at
        // 100 ms, the handshake's two round trips after that.
        let done = steps.sfu_connected.expect("the SFU connects");
        assert!(
            done <= Duration::from_millis(300),
            "{name}: the SFU connected {done:?} after the offer"
        );
    }
}

/// The last packet of `t` that arrived by `until`, and the first one after `from`.
fn around(t: &Incoming, until: Instant, from: Instant) -> (harness::Arrival, harness::Arrival) {
    let last = t
        .arrivals
        .iter()
        .rev()
        .find(|a| a.at <= until)
        .copied()
        .unwrap_or_else(|| panic!("{}: nothing before the hold", t.track_id));
    let first = t
        .arrivals
        .iter()
        .find(|a| a.at > from)
        .copied()
        .unwrap_or_else(|| panic!("{}: nothing after the resume", t.track_id));
    (last, first)
}

#[test]
fn hold_stops_both_directions_and_resume_continues_the_streams_without_a_jump() {
    let wall = Instant::now();
    let mut h = Harness::new(2);
    let (k, o) = call(&mut h, clean(), clean());
    assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
    h.run_for(Duration::from_secs(1));

    let held_at = h.now();
    h.set_held(CALL, true);
    h.run_for(Duration::from_millis(2500));
    let resumed_at = h.now();
    let requests_before: Vec<usize> = [k, o]
        .iter()
        .map(|&c| h.client(c).log.keyframe_requests.len())
        .collect();
    h.set_held(CALL, false);
    h.run_for(Duration::from_secs(2));

    // What was on the way when the call was held still arrives: 20 ms of delay.
    let in_flight = Duration::from_millis(25);
    assert!(h.counters().dropped_held > 0);
    for (rx, clock) in [
        (k, RtpCodecKind::Audio),
        (k, RtpCodecKind::Video),
        (o, RtpCodecKind::Audio),
        (o, RtpCodecKind::Video),
    ] {
        let t = h.client(rx).track(clock).expect("a track");
        let rate = if clock == RtpCodecKind::Audio {
            48_000.0
        } else {
            90_000.0
        };
        let during = t
            .arrivals
            .iter()
            .filter(|a| a.at > held_at + in_flight && a.at <= resumed_at)
            .count();
        assert_eq!(during, 0, "{}: forwarded while held", t.track_id);
        let (last, first) = around(t, held_at + in_flight, resumed_at);
        let gap = first.at - last.at;
        let ticks = first.ts.wrapping_sub(last.ts);
        let expected = gap.as_secs_f64() * rate;
        println!(
            "{}: seq {} → {}, ts +{ticks} over {gap:?} (expected ≈ {expected:.0})",
            t.track_id, last.seq, first.seq
        );
        assert_eq!(first.seq, last.seq.wrapping_add(1), "{}", t.track_id);
        // Both ends of the gap crossed the same 20 ms link, so the timestamp advances by the
        // time between them at the engine, to within a few milliseconds of the codec clock.
        assert!(
            (ticks as f64 - expected).abs() <= rate * 0.005,
            "{}: timestamp advanced {ticks}, expected ≈ {expected:.0}",
            t.track_id
        );
        assert_continuous(t);
    }
    // On resume the engine asks both senders for a keyframe at once, and the receivers get one.
    for (i, &sender) in [k, o].iter().enumerate() {
        let log = &h.client(sender).log;
        let asked = log.keyframe_requests[requests_before[i]..]
            .first()
            .copied()
            .expect("a keyframe request on resume");
        assert!(asked - resumed_at <= Duration::from_millis(50), "{asked:?}");
    }
    for rx in [k, o] {
        let t = h.client(rx).track(RtpCodecKind::Video).expect("video");
        let key = t
            .keyframes
            .iter()
            .find(|&&at| at > resumed_at)
            .expect("a keyframe after the resume");
        assert!(*key - resumed_at <= Duration::from_millis(150));
    }
    println!("wall time: {:?}", wall.elapsed());
}

/// A receiver on a lossy downlink: NACKs (answered by the engine's retransmission buffer)
/// recover most of the loss; what they do not recover breaks the picture, and then the
/// receiver's PLIs reach the sender through the engine no more often than the engine's limit,
/// and keyframes repair the picture. With `must_break`, the loss has to break the picture at
/// least once, so the keyframe path is exercised.
/// The share of `t`'s video packets sent from `from` on that arrived in the end (retransmissions
/// included). Sequence numbers count as offsets from the first, so wrapping and reordering do not
/// matter.
fn delivered_since(t: &Incoming, from: Instant) -> f64 {
    let late: Vec<u16> = t
        .arrivals
        .iter()
        .filter(|a| a.at > from)
        .map(|a| a.seq)
        .collect();
    let base = late[0];
    let mut offsets: Vec<i32> = late
        .iter()
        .map(|s| s.wrapping_sub(base) as i16 as i32)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let expected = offsets[offsets.len() - 1] - offsets[0] + 1;
    offsets.len() as f64 / expected as f64
}

fn keyframes_under_loss(seed: u64, loss: f64, must_break: bool) {
    let wall = Instant::now();
    let mut h = Harness::new(seed);
    let (k, o) = call(&mut h, clean(), clean());
    assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
    h.run_for(Duration::from_secs(1));

    // From now on the operator's downlink loses packets (and reorders a little).
    let lossy = Link::default()
        .with_loss(loss)
        .with_jitter(Duration::from_millis(5));
    h.set_link(o, Direction::Down, lossy);
    let t0 = h.now();
    let asked_before = h.counters().keyframes_asked;
    let span = Duration::from_secs(8);
    h.run_for(span);

    let rx = h.client(o).track(RtpCodecKind::Video).expect("video");
    let plis_sent = rx.plis_sent.iter().filter(|&&t| t > t0).count();
    let breaks: Vec<Instant> = rx.breaks.iter().copied().filter(|&t| t > t0).collect();
    let keyframes: Vec<Instant> = rx.keyframes.iter().copied().filter(|&t| t > t0).collect();
    let requests: Vec<Instant> = h
        .client(k)
        .log
        .keyframe_requests
        .iter()
        .copied()
        .filter(|&t| t > t0)
        .collect();
    let link = h.net.counts(o, Direction::Down);
    let delivered = delivered_since(rx, t0 + Duration::from_millis(100));
    println!(
        "loss {:.0}% (seed {seed}): {} of {} datagrams lost on the downlink; video delivered \
         {:.1}% after NACK; {} picture breaks, {plis_sent} PLIs sent by the receiver, {} reached \
         the engine, {} reached the sender; {} keyframes put together; wall time {:?}",
        loss * 100.0,
        link.lost,
        link.sent,
        delivered * 100.0,
        breaks.len(),
        h.counters().keyframes_asked - asked_before,
        requests.len(),
        keyframes.len(),
        wall.elapsed()
    );

    assert!(link.lost > 0, "the link lost nothing");
    assert!(
        delivered > 1.0 - loss / 2.0,
        "NACK recovered too little: {delivered}"
    );
    assert!(
        !must_break || !breaks.is_empty(),
        "the loss never broke the picture: the keyframe path was not exercised"
    );
    if !breaks.is_empty() {
        assert!(plis_sent > 0, "the receiver never asked for a keyframe");
        assert!(
            h.counters().keyframes_asked > asked_before,
            "no PLI reached the engine"
        );
        assert!(!requests.is_empty(), "no PLI reached the sender");
        assert!(!keyframes.is_empty(), "no keyframe arrived under loss");
    }
    // The uplink is clean with a fixed delay: the sender sees the engine's spacing exactly.
    for w in requests.windows(2) {
        assert!(
            w[1] - w[0] >= PLI_MIN_INTERVAL,
            "two keyframe requests {:?} apart",
            w[1] - w[0]
        );
    }
    let allowed = (span.as_millis() / PLI_MIN_INTERVAL.as_millis()) as usize + 1;
    assert!(requests.len() <= allowed, "{} requests", requests.len());
    assert!(
        requests.len() <= plis_sent,
        "the engine asks at most as often as the receiver"
    );
    // Every broken picture is repaired by a keyframe within a second and a half (the limit, a
    // round trip, and a lost keyframe or two), except one that broke at the very end.
    for b in &breaks {
        if *b + Duration::from_millis(1500) > h.now() {
            continue;
        }
        assert!(
            keyframes
                .iter()
                .any(|&kf| kf > *b && kf - *b <= Duration::from_millis(1500)),
            "the picture broken at {:?} was not repaired",
            *b - t0
        );
    }
    assert!(
        !rx.waiting
            || breaks
                .last()
                .is_some_and(|&b| b + Duration::from_millis(1500) > h.now()),
        "the picture is still broken at the end"
    );
}

#[test]
fn keyframe_requests_under_ten_percent_loss_reach_the_sender_within_the_limit() {
    keyframes_under_loss(3, 0.10, true);
}

#[test]
fn keyframe_requests_under_five_and_twenty_percent_loss() {
    keyframes_under_loss(4, 0.05, false);
    keyframes_under_loss(5, 0.20, true);
}

/// The scenario of `forwarding.rs`'s socket test (5% loss each way on both parties' links, with
/// jitter up to 50 ms, for 8 s once video flows) without sockets or a busy machine, over many
/// seeds: NACK must recover both legs of each direction in every one of them. That socket test
/// once lost 12.9% in CI, as if nothing was recovered; a seed that stalls here would reproduce it.
#[test]
fn nack_recovers_five_percent_loss_on_every_leg_over_many_seeds() {
    let mut worst = (1.0f64, 0u64);
    for seed in 0..40 {
        let mut h = Harness::new(100 + seed);
        let (k, o) = call(&mut h, clean(), clean());
        assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
        let lossy = Link::default()
            .with_loss(0.05)
            .with_jitter(Duration::from_millis(50));
        for c in [k, o] {
            for d in [Direction::Up, Direction::Down] {
                h.set_link(c, d, lossy);
            }
        }
        let t0 = h.now();
        h.run_for(Duration::from_secs(8));
        let lost: u64 = [k, o]
            .iter()
            .flat_map(|&c| [Direction::Up, Direction::Down].map(|d| h.net.counts(c, d).lost))
            .sum();
        assert!(
            lost > 40,
            "seed {seed}: the links lost only {lost} datagrams"
        );
        for (name, c) in [("kiosk", k), ("operator", o)] {
            let rx = h.client(c).track(RtpCodecKind::Video).expect("video");
            let delivered = delivered_since(rx, t0 + Duration::from_millis(100));
            if delivered < worst.0 {
                worst = (delivered, seed);
            }
            assert!(
                delivered > 0.97,
                "seed {seed}: the {name} got {:.1}% of the video after NACK",
                delivered * 100.0
            );
        }
    }
    println!(
        "NACK over 5% loss on every leg: worst delivery {:.2}% (seed {})",
        worst.0 * 100.0,
        worst.1
    );
}

#[test]
fn a_peer_that_leaves_leaves_no_connection_behind() {
    let mut h = Harness::new(6);
    let (k, o) = call(&mut h, clean(), clean());
    assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
    assert_eq!(h.engine.peer_count(), 2);
    assert_eq!(h.engine.call_count(), 1);
    let kiosk_addr = h.client(k).addr;

    let left_at = h.now();
    h.leave(k);
    assert_eq!(h.engine.peer_count(), 1, "the kiosk's connection is gone");
    assert_eq!(
        h.engine.call_count(),
        1,
        "the operator is still in the call"
    );
    assert!(
        h.learned
            .iter()
            .any(|&(_, a, valid)| a == kiosk_addr && !valid),
        "the kiosk's address is forgotten"
    );
    h.run_for(Duration::from_secs(2));
    let t = h.client(o).track(RtpCodecKind::Video).expect("video");
    assert!(
        t.arrivals
            .iter()
            .all(|a| a.at <= left_at + Duration::from_millis(25)),
        "the operator still receives the kiosk"
    );

    h.leave(o);
    assert_eq!(h.engine.peer_count(), 0);
    assert_eq!(h.engine.call_count(), 0);
    // The timers of the gone connections fire once and are not renewed.
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.engine.next_deadline(), None, "a timer is left");
    let out = h.counters().rtp_out;
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.counters().rtp_out, out);
    assert_eq!(h.engine.drain_transmits().count(), 0);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let mut h = Harness::new(7);
        let jittery = Link::default().with_jitter(Duration::from_millis(10));
        let (k, o) = call(&mut h, (jittery, jittery), (jittery, jittery));
        h.run_for(Duration::from_secs(1));
        let lossy = jittery.with_loss(0.1);
        for c in [k, o] {
            h.set_link(c, Direction::Up, lossy);
            h.set_link(c, Direction::Down, lossy);
        }
        h.run_for(Duration::from_secs(3));
        let steps = [k, o].map(|c| h.join_steps(c));
        let received = [k, o].map(|c| {
            let t = h.client(c).track(RtpCodecKind::Video);
            t.map(|t| (t.arrivals.len(), t.keyframes.len(), t.plis_sent.len()))
        });
        (format!("{} | {}", steps[0], steps[1]), received)
    };
    let (a, b) = (run(), run());
    println!(
        "seed 7, 10 ms jitter: {}; then 10% loss both ways: {:?}",
        a.0, a.1
    );
    assert_eq!(a, b);
}

/// Joins whose handshakes lose datagrams (10% each way on every link, from the first datagram)
/// all complete: ICE retries its checks and DTLS resends a lost flight. Before the patched
/// `rtc-dtls` (`third_party/README.md`), a lost ServerHello flight was never resent and 17 of 40
/// of these joins stalled until the grace period.
#[test]
fn joins_complete_when_the_handshake_loses_datagrams() {
    let lossy = Link {
        loss: 0.1,
        ..Link::default()
    };
    let mut times = Vec::new();
    for seed in 1..=40u64 {
        let mut h = Harness::new(seed);
        let (k, o) = call(&mut h, (lossy, lossy), (lossy, lossy));
        let joined = h.run_until(Duration::from_secs(10), |h| both_see_video(h, k, o));
        assert!(
            joined,
            "seed {seed}: no video both ways 10 s into a join with 10% loss ({} and {})",
            h.join_steps(k),
            h.join_steps(o)
        );
        times.push(h.elapsed());
    }
    times.sort();
    println!(
        "joins with 10% loss each way: median {:?}, slowest {:?} (40 seeds)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// What one call costs the engine per second once it is up, in events (the harness has no CPU
/// clock worth reading): datagrams in, RTP and RTCP out, the connections' timers that fire, and
/// the instants the engine has work (the wake-ups a driver makes for it). Links with 3 ms of
/// jitter, so the two clients' packets do not arrive in lockstep. Timers are a small share of
/// the wake-ups: at kiosk rates a call's cost is one wake-up per datagram.
#[test]
fn per_call_costs_once_the_call_is_up() {
    let mut h = Harness::new(11);
    let link = Link::default().with_jitter(Duration::from_millis(3));
    let (k, o) = call(&mut h, (link, link), (link, link));
    assert!(h.run_until(Duration::from_secs(5), |h| both_see_video(h, k, o)));
    h.run_for(Duration::from_secs(2));
    let sent = |h: &Harness, dir| {
        [k, o]
            .map(|c| h.link_counts(c, dir).sent)
            .iter()
            .sum::<u64>()
    };
    let snap = |h: &Harness| {
        (
            sent(h, Direction::Up),
            sent(h, Direction::Down),
            h.rtp_forwarded_to(k) + h.rtp_forwarded_to(o),
            h.counters().timer_fires,
            h.packet_wakeups,
            h.timer_wakeups,
        )
    };
    let a = snap(&h);
    let secs = 10u64;
    h.run_for(Duration::from_secs(secs));
    let b = snap(&h);
    let per_s = |x: u64, y: u64| (y - x) as f64 / secs as f64;
    let inbound = per_s(a.0, b.0);
    let rtp_out = per_s(a.2, b.2);
    let rtcp_out = per_s(a.1, b.1) - rtp_out;
    let timers = per_s(a.3, b.3);
    let (packet_wakes, timer_wakes) = (per_s(a.4, b.4), per_s(a.5, b.5));
    println!(
        "one call, per second: {inbound:.0} datagrams in, {rtp_out:.0} RTP and {rtcp_out:.0} \
         other datagrams out, {timers:.0} connection timers fired, {packet_wakes:.0} wake-ups \
         for datagrams and {timer_wakes:.0} for timers alone"
    );
    // 50 audio packets and 30 two-packet video frames from each client (220 RTP), plus the
    // clients' RTCP; every RTP packet forwarded to the other party.
    assert!((220.0..260.0).contains(&inbound), "{inbound} datagrams in");
    assert!((215.0..=225.0).contains(&rtp_out), "{rtp_out} RTP out");
    // Receiver reports, TWCC feedback and sender reports: a few tens per second per call.
    assert!(rtcp_out < 60.0, "{rtcp_out} RTCP datagrams out per second");
    // Two connections' NACK, TWCC and report timers.
    assert!(timers < 40.0, "{timers} timers fired per second");
    // A connected connection's timers run at the datagrams' wake-ups (`TIMER_SLACK`): before
    // it, a tenth of the wake-ups were for timers alone (25 of 260 per second).
    assert!(
        timer_wakes < packet_wakes / 50.0,
        "{timer_wakes} timer wake-ups"
    );
}
