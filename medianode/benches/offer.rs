//! What the internal API adds to a `media.offer`: the same offers answered by an SFU in this process
//! (`Sfu::offer`) and through a media node's internal API on loopback (`MediaNodeClient::offer`:
//! HMAC signing and checking, one HTTP round trip, JSON both ways).
//!
//! `cargo bench -p medianode --bench offer` (`OFFERS` overrides the count, 300 by default). Each
//! offer is a fresh call's first participant, so both paths do the same SFU work; the call is ended
//! after each offer. Prints p50 / p99 / max of both and the difference of the medians, then, as
//! the last line, one JSON object: `local_offer_p50_ms`, `local_offer_p99_ms`,
//! `remote_offer_p50_ms`, `remote_offer_p99_ms` and `internal_hop_p50_ms` (the difference of the
//! medians).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use medianode::{router, MediaNodeClient, Secret};
use sfu::client::{ClientOptions, MediaClient};
use sfu::{MediaConfig, MediaRole, Participant, Sfu};

fn kiosk() -> Participant {
    Participant {
        principal: "kiosk-1".into(),
        role: MediaRole::Kiosk,
    }
}

fn report(what: &str, h: &Histogram<u64>) {
    println!(
        "{what:<28} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   ({} offers)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let offers: usize = std::env::var("OFFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (sfu, mut events) = Sfu::start(
        MediaConfig {
            loops: 1,
            grace: Duration::from_secs(30),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("sfu starts");
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let secret = Arc::new(Secret::random());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(sfu.clone(), secret.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let api = MediaNodeClient::new(&url, secret).unwrap();

    // One client's offer, reused: the SFU answers each call's first offer afresh.
    let client = MediaClient::start(ClientOptions::default()).await.unwrap();
    let sdp = client.offer().to_owned();
    let mut local = Histogram::<u64>::new(3).unwrap();
    let mut remote = Histogram::<u64>::new(3).unwrap();
    for i in 0..offers + 20 {
        let (a, b) = (format!("l-{i}"), format!("r-{i}"));
        let t = Instant::now();
        sfu.offer(&a, kiosk(), sdp.clone(), false).await.unwrap();
        let l = t.elapsed();
        let t = Instant::now();
        api.offer(&b, kiosk(), sdp.clone(), false).await.unwrap();
        let r = t.elapsed();
        sfu.end_call(&a);
        sfu.end_call(&b);
        if i >= 20 {
            local.record(l.as_micros() as u64).unwrap();
            remote.record(r.as_micros() as u64).unwrap();
        }
    }
    report("offer, SFU in process", &local);
    report("offer, internal API", &remote);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let hop = ms(&remote, 0.5) - ms(&local, 0.5);
    println!("extra latency of the internal API, median: {hop:.3} ms");
    println!(
        "{}",
        serde_json::json!({
            "local_offer_p50_ms": ms(&local, 0.5),
            "local_offer_p99_ms": ms(&local, 0.99),
            "remote_offer_p50_ms": ms(&remote, 0.5),
            "remote_offer_p99_ms": ms(&remote, 0.99),
            "internal_hop_p50_ms": hop,
        })
    );
}
