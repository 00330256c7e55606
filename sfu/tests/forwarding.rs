//! The SFU end to end on loopback with headless Rust clients (real DTLS-SRTP over real UDP):
//! kiosk ⇄ operator media, hold/resume, a silent monitor, a three-booth operator, bad input.

use std::time::Duration;

use sfu::client::{ClientOptions, ClientStats, MediaClient};
use sfu::{MediaConfig, MediaError, MediaEvent, MediaRole, Participant, Sfu};
use tokio::sync::mpsc::UnboundedReceiver;

const T: Duration = Duration::from_secs(10);

async fn sfu() -> (Sfu, UnboundedReceiver<MediaEvent>) {
    Sfu::start(
        MediaConfig {
            loops: 2,
            grace: Duration::from_secs(3),
            stats_interval: Duration::from_millis(500),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("sfu starts")
}

fn who(principal: &str, role: MediaRole) -> Participant {
    Participant {
        principal: principal.into(),
        role,
    }
}

async fn join(sfu: &Sfu, call: &str, p: Participant, opts: ClientOptions) -> MediaClient {
    let client = MediaClient::start(opts).await.expect("client");
    let answer = sfu
        .offer(call, p.clone(), client.offer().to_owned(), false)
        .await
        .expect("answer");
    assert!(answer.sdp.contains("a=ice-lite"), "{}", answer.sdp);
    assert!(!answer.candidates.is_empty());
    client.set_answer(answer.sdp).await.expect("answer applies");
    for c in client.candidates() {
        sfu.candidate(call, p.clone(), c.clone())
            .await
            .expect("candidate");
    }
    client
}

async fn grows(c: &MediaClient, what: impl Fn(&ClientStats) -> u64, by: u64) -> u64 {
    let before = what(&c.stats());
    let s = c
        .wait_for(T, |s| what(s) >= before + by)
        .await
        .unwrap_or_else(|s| panic!("did not grow by {by} from {before}: {s:#?}"));
    what(&s)
}

#[tokio::test]
async fn kiosk_and_operator_exchange_audio_and_video() {
    let (sfu, _events) = sfu().await;
    let kiosk = join(
        &sfu,
        "c1",
        who("kiosk:a", MediaRole::Kiosk),
        ClientOptions::default(),
    )
    .await;
    let op = join(
        &sfu,
        "c1",
        who("operator:m", MediaRole::Operator),
        ClientOptions::default(),
    )
    .await;
    grows(&kiosk, |s| s.packets("video"), 30).await;
    grows(&kiosk, |s| s.packets("audio"), 20).await;
    grows(&op, |s| s.packets("video"), 30).await;
    grows(&op, |s| s.packets("audio"), 20).await;
    let s = op.stats();
    assert!(
        s.packets_from("kiosk-") > 0,
        "tracks named by source: {:?}",
        s.tracks.keys()
    );
    let lat: Vec<u64> = s
        .tracks
        .values()
        .flat_map(|t| t.latencies_us.clone())
        .collect();
    assert!(!lat.is_empty(), "synthetic video carries a send time");

    let stats = sfu.stats().await;
    let call = stats
        .iter()
        .find(|c| c.call_id == "c1")
        .expect("stats for c1");
    let k2o = call
        .directions
        .iter()
        .find(|d| d.from == "kiosk" && d.to == "operator")
        .expect("kiosk → operator");
    assert!(k2o.packets > 0 && k2o.bytes > 0, "{call:?}");
    assert_eq!(call.connected.len(), 2, "{call:?}");
    // Each peer's datagrams come in on a socket connected to it.
    assert_eq!(sfu.metrics().peer_sockets.get(), 2);
    // Every datagram of an established call reaches its connection.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dropped = sfu.metrics().dropped.with_label_values(&["unknown"]).get();
    assert_eq!(
        dropped, 0,
        "datagrams from the clients were dropped as unknown"
    );
}

#[tokio::test]
async fn hold_stops_the_flow_and_resume_restarts_it_without_a_gap() {
    let (sfu, _events) = sfu().await;
    let kiosk = join(
        &sfu,
        "c2",
        who("kiosk:a", MediaRole::Kiosk),
        ClientOptions::default(),
    )
    .await;
    let op = join(
        &sfu,
        "c2",
        who("operator:m", MediaRole::Operator),
        ClientOptions::default(),
    )
    .await;
    grows(&kiosk, |s| s.packets("video"), 20).await;
    grows(&op, |s| s.packets("video"), 20).await;

    sfu.set_held("c2", true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (k0, o0) = (kiosk.stats().packets("video"), op.stats().packets("video"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (k1, o1) = (kiosk.stats().packets("video"), op.stats().packets("video"));
    assert_eq!(k0, k1, "nothing reaches the held booth");
    assert_eq!(o0, o1, "nothing leaves the held booth");

    sfu.set_held("c2", false);
    grows(&kiosk, |s| s.packets("video"), 20).await;
    grows(&op, |s| s.packets("video"), 20).await;
    for c in [&kiosk, &op] {
        for t in c.stats().tracks.values() {
            assert!(
                t.max_seq_jump <= 2,
                "sequence numbers continue across hold: {t:?}"
            );
            assert_eq!(t.ts_backwards, 0, "timestamps never go back: {t:?}");
        }
    }
}

#[tokio::test]
async fn a_monitor_receives_both_parties_and_sends_nothing() {
    let (sfu, _events) = sfu().await;
    let kiosk = join(
        &sfu,
        "c3",
        who("kiosk:a", MediaRole::Kiosk),
        ClientOptions::default(),
    )
    .await;
    let op = join(
        &sfu,
        "c3",
        who("operator:m", MediaRole::Operator),
        ClientOptions::default(),
    )
    .await;
    let mon = join(
        &sfu,
        "c3",
        who("supervisor:s", MediaRole::Monitor),
        ClientOptions::monitor(),
    )
    .await;
    grows(&mon, |s| s.packets_from("kiosk-video"), 20).await;
    grows(&mon, |s| s.packets_from("operator-video"), 20).await;
    grows(&mon, |s| s.packets_from("kiosk-audio"), 10).await;
    grows(&mon, |s| s.packets_from("operator-audio"), 10).await;
    assert_eq!(mon.stats().sent_packets, 0);
    // The parties still get only each other.
    assert_eq!(kiosk.stats().packets_from("kiosk-"), 0);
    assert_eq!(op.stats().packets_from("operator-"), 0);

    sfu.leave("c3", who("supervisor:s", MediaRole::Monitor));
    tokio::time::sleep(Duration::from_millis(300)).await;
    grows(&op, |s| s.packets("video"), 10).await;
}

#[tokio::test]
async fn a_three_booth_operator_receives_three_separate_streams() {
    let (sfu, _events) = sfu().await;
    let mut kiosks = Vec::new();
    let mut legs = Vec::new();
    for i in 0..3 {
        let call = format!("booth-{i}");
        // Each booth sends a different frame size so the streams are told apart.
        let opts = ClientOptions {
            video_packet_size: 400 + 100 * i,
            ..Default::default()
        };
        kiosks.push(
            join(
                &sfu,
                &call,
                who(&format!("kiosk:{i}"), MediaRole::Kiosk),
                opts,
            )
            .await,
        );
        legs.push(
            join(
                &sfu,
                &call,
                who("operator:m", MediaRole::Operator),
                ClientOptions::default(),
            )
            .await,
        );
    }
    for (i, leg) in legs.iter().enumerate() {
        grows(leg, |s| s.packets("video"), 20).await;
        let s = leg.stats();
        let size = 400 + 100 * i as u64;
        let video = s
            .tracks
            .values()
            .find(|t| t.kind == "video")
            .expect("video");
        assert_eq!(
            video.bytes / video.packets,
            size,
            "booth {i} gets its own kiosk"
        );
    }
    for k in &kiosks {
        grows(k, |s| s.packets("video"), 20).await;
    }
    // Holding one booth leaves the others flowing.
    sfu.set_held("booth-1", true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = legs[1].stats().packets("video");
    grows(&legs[0], |s| s.packets("video"), 20).await;
    grows(&legs[2], |s| s.packets("video"), 20).await;
    assert_eq!(legs[1].stats().packets("video"), held);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_leaves_other_calls_alone() {
    let (sfu, _events) = sfu().await;
    let kiosk = join(
        &sfu,
        "good",
        who("kiosk:a", MediaRole::Kiosk),
        ClientOptions::default(),
    )
    .await;
    let op = join(
        &sfu,
        "good",
        who("operator:m", MediaRole::Operator),
        ClientOptions::default(),
    )
    .await;

    let bad = sfu
        .offer(
            "other",
            who("kiosk:b", MediaRole::Kiosk),
            "not sdp".into(),
            false,
        )
        .await;
    assert!(matches!(bad, Err(MediaError::BadSdp(_))), "{bad:?}");
    // An offer without video.
    let audio_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n";
    let bad = sfu
        .offer(
            "other",
            who("kiosk:b", MediaRole::Kiosk),
            audio_only.into(),
            false,
        )
        .await;
    assert!(matches!(bad, Err(MediaError::BadSdp(_))), "{bad:?}");

    let c = kiosk.candidates()[0].clone();
    let r = sfu
        .candidate("no-such-call", who("kiosk:a", MediaRole::Kiosk), c.clone())
        .await;
    assert_eq!(r, Err(MediaError::NoConnection));
    let r = sfu
        .candidate("good", who("kiosk:zzz", MediaRole::Kiosk), c)
        .await;
    assert_eq!(
        r,
        Err(MediaError::NoConnection),
        "a candidate for a connection that is not yours"
    );
    let garbage = sfu::Candidate {
        candidate: "candidate:garbage".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    let r = sfu
        .candidate("good", who("kiosk:a", MediaRole::Kiosk), garbage)
        .await;
    assert!(matches!(r, Err(MediaError::BadCandidate(_))), "{r:?}");

    // Stray datagrams at the media port.
    let stray = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sfu.udp_addr().unwrap();
    for _ in 0..50 {
        stray.send_to(&[0x80; 200], port).unwrap();
        stray.send_to(&[0u8; 40], port).unwrap();
    }
    grows(&kiosk, |s| s.packets("video"), 30).await;
    grows(&op, |s| s.packets("video"), 30).await;
}

#[tokio::test]
async fn a_connection_that_never_comes_up_is_reported_failed_after_the_grace() {
    let (sfu, mut events) = sfu().await;
    let client = MediaClient::start(ClientOptions::default()).await.unwrap();
    // Negotiate, but never give the client the answer: no checks ever reach the SFU.
    sfu.offer(
        "lonely",
        who("kiosk:a", MediaRole::Kiosk),
        client.offer().to_owned(),
        false,
    )
    .await
    .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(e) = events.recv().await {
            if let MediaEvent::Failed { call_id, who } = e {
                return (call_id, who);
            }
        }
        panic!("events closed")
    })
    .await
    .expect("reported within the grace + 1 s tick");
    assert_eq!(failed.0, "lonely");
    assert_eq!(failed.1.role, MediaRole::Kiosk);
}

/// A UDP relay between one client and the SFU that drops `loss` (per mille, changeable while it
/// runs) of the packets each way and delays each by up to `jitter` (a stand-in for tc netem, which
/// needs a network namespace). Returns the address the client must use instead of the SFU's, and
/// the count of packets dropped.
async fn lossy_link(
    sfu: std::net::SocketAddr,
    loss: std::sync::Arc<std::sync::atomic::AtomicU64>,
    jitter: Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let dropped = Arc::new(AtomicU64::new(0));
    use tokio::net::UdpSocket;
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let client = Arc::new(std::sync::Mutex::new(None::<std::net::SocketAddr>));
    let relay =
        |loss: Arc<AtomicU64>,
         dropped: Arc<AtomicU64>,
         from: Arc<UdpSocket>,
         to: Arc<UdpSocket>,
         dest: Box<dyn Fn(std::net::SocketAddr) -> Option<std::net::SocketAddr> + Send>| async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, src)) = from.recv_from(&mut buf).await else {
                    return;
                };
                let Some(dst) = dest(src) else { continue };
                if rand::random::<f64>() * 1000.0 < loss.load(Ordering::Relaxed) as f64 {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let data = buf[..n].to_vec();
                let to = to.clone();
                let delay = jitter.mul_f64(rand::random::<f64>());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = to.send_to(&data, dst).await;
                });
            }
        };
    let c1 = client.clone();
    tokio::spawn(relay(
        loss.clone(),
        dropped.clone(),
        front.clone(),
        back.clone(),
        Box::new(move |src| {
            *c1.lock().unwrap() = Some(src);
            Some(sfu)
        }),
    ));
    let c2 = client.clone();
    tokio::spawn(relay(
        loss,
        dropped.clone(),
        back,
        front,
        Box::new(move |_| *c2.lock().unwrap()),
    ));
    (addr, dropped)
}

#[tokio::test]
async fn video_survives_five_percent_loss_and_jitter_with_nack_recovery() {
    let (sfu, _events) = sfu().await;
    let udp = sfu.udp_addr().unwrap();
    let mut clients = Vec::new();
    let mut links = Vec::new();
    // Clean while the connections come up, then 5% each way (50‰).
    let loss = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for p in [
        who("kiosk:a", MediaRole::Kiosk),
        who("operator:m", MediaRole::Operator),
    ] {
        let client = MediaClient::start(ClientOptions::default()).await.unwrap();
        let answer = sfu
            .offer("lossy", p, client.offer().to_owned(), false)
            .await
            .unwrap();
        // Each client reaches the SFU only through its own lossy link.
        let (link, dropped) = lossy_link(udp, loss.clone(), Duration::from_millis(50)).await;
        links.push(dropped);
        let sdp = answer.sdp.replace(
            &format!("{} {}", udp.ip(), udp.port()),
            &format!("{} {}", link.ip(), link.port()),
        );
        client.set_answer(sdp).await.unwrap();
        clients.push(client);
    }
    let (kiosk, op) = (&clients[0], &clients[1]);
    // 8 s of 30 fps two-packet frames: ~480 video packets each way, ~10% lost before recovery.
    kiosk
        .wait_for(Duration::from_secs(15), |s| s.packets("video") > 0)
        .await
        .expect("connects through the links");
    op.wait_for(Duration::from_secs(15), |s| s.packets("video") > 0)
        .await
        .expect("connects through the links");
    loss.store(50, std::sync::atomic::Ordering::Relaxed);
    let before: Vec<(u64, u64)> = [kiosk, op]
        .iter()
        .map(|c| {
            let s = c.stats();
            let r = &s
                .tracks
                .values()
                .find(|t| t.kind == "video")
                .unwrap()
                .reception;
            (r.expected(), r.received())
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let dropped: u64 = links
        .iter()
        .map(|d| d.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(dropped > 40, "the links really dropped packets ({dropped})");
    for ((name, c), (e0, r0)) in [("kiosk", kiosk), ("operator", op)].into_iter().zip(before) {
        let s = c.stats();
        let v = s
            .tracks
            .values()
            .find(|t| t.kind == "video")
            .expect("video");
        let r = &v.reception;
        // Only what was sent while the links were lossy.
        let (expected, received) = (r.expected() - e0, r.received() - r0);
        let lost = 1.0 - received as f64 / expected as f64;
        eprintln!(
            "{name}: expected {expected} received {received} lost after NACK {:.2}% duplicates {}",
            lost * 100.0,
            r.duplicates
        );
        assert!(expected > 200, "{name}: video keeps flowing: {v:?}");
        // Two 5% legs lose ~10% without recovery; retransmissions bring it well under that.
        assert!(
            lost < 0.03,
            "{name}: NACK recovers most loss ({:.1}% left)",
            lost * 100.0
        );
    }
}

#[tokio::test]
async fn an_idle_connection_costs_few_wakeups() {
    let (sfu, _events) = Sfu::start(
        MediaConfig {
            loops: 1,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let quiet = ClientOptions {
        fps: 0,
        audio: false,
        ..Default::default()
    };
    let kiosk = join(
        &sfu,
        "idle",
        who("kiosk:a", MediaRole::Kiosk),
        quiet.clone(),
    )
    .await;
    let _op = join(&sfu, "idle", who("operator:m", MediaRole::Operator), quiet).await;
    kiosk.wait_for(T, |s| s.connected).await.expect("connects");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wakeups = || sfu.metrics().loop_wakeups.with_label_values(&["0"]).get();
    let w0 = wakeups();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_s = (wakeups() - w0) as f64 / 3.0;
    eprintln!("idle call: {per_s:.1} loop wake-ups per second");
    // Two idle connections: ICE keepalives, RTCP reports and the 1 s housekeeping tick, not a
    // timer spinning.
    assert!(per_s < 50.0, "{per_s} wake-ups/s for an idle call");
}

#[tokio::test]
async fn keyframe_requests_reach_the_sender_on_join_and_from_the_receiver() {
    let (sfu, _events) = sfu().await;
    let kiosk = join(
        &sfu,
        "kf",
        who("kiosk:a", MediaRole::Kiosk),
        ClientOptions::default(),
    )
    .await;
    let op = join(
        &sfu,
        "kf",
        who("operator:m", MediaRole::Operator),
        ClientOptions::default(),
    )
    .await;
    grows(&op, |s| s.packets("video"), 10).await;
    // The operator's connection coming up made the SFU ask the kiosk for a keyframe (browsers
    // would otherwise show nothing until their next periodic keyframe).
    kiosk
        .wait_for(T, |s| s.keyframe_requests >= 1)
        .await
        .expect("a keyframe request on join");
    tokio::time::sleep(Duration::from_millis(600)).await; // past the PLI throttle
    let before = kiosk.stats().keyframe_requests;
    op.request_keyframe();
    kiosk
        .wait_for(T, |s| s.keyframe_requests > before)
        .await
        .expect("the operator's PLI is relayed to the kiosk");
}
