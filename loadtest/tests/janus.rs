//! The Janus side of `compare-janus` against a real Janus (a private one from `testkit::janus`):
//! one `videocall` call between two headless media clients, then three at once. Each is held
//! ~3 s; both sides must receive video and audio with latency samples and next to no loss, and
//! hanging up must end the call on both sides and the Janus sessions.

use std::time::Duration;

use loadtest::janus::{self, JanusCall};
use sfu::client::{ClientOptions, ClientStats};
use testkit::janus::Janus;

/// How long a call is held before its figures are read.
const HOLD: Duration = Duration::from_secs(3);
/// How long setting up a call may take (it takes well under a second on loopback).
const SETUP: Duration = Duration::from_secs(10);

/// Checks what one side received during `HOLD` and returns its median video latency (µs).
fn check_side(call: &JanusCall, side: &str, stats: &ClientStats) -> u64 {
    let who = format!("{side} of {:?}", call.usernames);
    assert!(stats.connected, "{who} is not connected: {}", stats.state);
    // 30 fps × 2 packets and 50 audio packets a second are sent; allow a slow machine half of it.
    let secs = HOLD.as_secs();
    assert!(
        stats.packets("video") >= 30 * secs,
        "{who} got too little video: {stats:?}"
    );
    assert!(
        stats.packets("audio") >= 25 * secs,
        "{who} got too little audio: {stats:?}"
    );
    let mut latencies: Vec<u64> = stats
        .tracks
        .values()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    assert!(!latencies.is_empty(), "{who} has no latency samples");
    for track in stats.tracks.values() {
        let expected = track.reception.expected();
        let lost = track.reception.lost();
        assert!(
            lost * 100 <= expected.max(100),
            "{who} lost more than 1% of {}: {track:?}",
            track.track_id
        );
    }
    latencies.sort_unstable();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < 500_000,
        "{who}'s median one-way latency is {median} µs on loopback"
    );
    median
}

/// Holds the calls, checks both sides of each and prints their figures.
async fn hold_and_check(calls: &[JanusCall]) {
    tokio::time::sleep(HOLD).await;
    for call in calls {
        let caller = check_side(call, "caller", &call.caller.stats());
        let callee = check_side(call, "callee", &call.callee.stats());
        println!(
            "{:?}: join {:?}, median one-way video latency caller {:.2} ms, callee {:.2} ms",
            call.usernames,
            call.join,
            caller as f64 / 1000.0,
            callee as f64 / 1000.0
        );
        assert!(call.join < SETUP, "join took {:?}", call.join);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videocalls_through_a_private_janus_carry_media_both_ways_and_hang_up() {
    let janus = Janus::start().expect("a private Janus (apt-get install -y janus)");
    let url = janus.ws_url();
    let ip = janus.media_ip();

    // One call.
    let call = janus::call(&url, ip, "single", ClientOptions::default(), SETUP)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nJanus log:\n{}", janus.log()));
    hold_and_check(std::slice::from_ref(&call)).await;
    call.hangup()
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nJanus log:\n{}", janus.log()));
    janus.check().expect("Janus still runs");

    // Three at once.
    let calls = futures_util::future::join_all((0..3).map(|i| {
        let url = url.clone();
        async move {
            let name = format!("concurrent{i}");
            janus::call(&url, ip, &name, ClientOptions::default(), SETUP).await
        }
    }))
    .await;
    let calls: Vec<JanusCall> = calls
        .into_iter()
        .map(|c| c.unwrap_or_else(|e| panic!("{e:#}\nJanus log:\n{}", janus.log())))
        .collect();
    hold_and_check(&calls).await;
    for result in futures_util::future::join_all(calls.into_iter().map(JanusCall::hangup)).await {
        result.unwrap_or_else(|e| panic!("{e:#}\nJanus log:\n{}", janus.log()));
    }
    janus.check().expect("Janus still runs");

    let log = janus.log();
    assert!(!log.contains("[FATAL]"), "{log}");
}

#[tokio::test]
async fn a_janus_that_is_not_there_is_a_clear_error() {
    let port = testkit::free_port();
    let e = janus::call(
        &format!("ws://127.0.0.1:{port}"),
        std::net::Ipv4Addr::LOCALHOST.into(),
        "nobody",
        ClientOptions::default(),
        Duration::from_secs(2),
    )
    .await
    .expect_err("nothing listens there");
    let text = format!("{e:#}");
    assert!(text.contains("cannot connect to Janus"), "{text}");
    let e = janus::call(
        "ws://127.0.0.1:1",
        std::net::Ipv4Addr::LOCALHOST.into(),
        "bad name!",
        ClientOptions::default(),
        Duration::from_secs(2),
    )
    .await
    .expect_err("a bad name");
    assert!(format!("{e:#}").contains("name"), "{e:#}");
}
