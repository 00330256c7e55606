//! Media through the whole server: the headless kiosk and operator bot negotiate real WebRTC
//! connections with the SFU over the WebSocket (`media.offer`, `media.candidate`), exchange audio
//! and video, follow `call.hold`/`call.resume`, a supervisor monitors with `monitor.start`, the
//! operator receives `media.stats`, and bad input gets the protocol's error codes.

mod common;

use std::time::Duration;

use common::centre::{available, call, event, ok, on_call, refused, request_call, Centre, Op};
use kiosk_client::media::{ClientOptions, ClientStats, MediaClient};
use protocol::media::{MediaCandidate, MediaOffer};
use protocol::{ErrorCode, Event, Request};

const ANAGRAFE: &[(&str, u8)] = &[("anagrafe", 5)];
const T: Duration = Duration::from_secs(10);

async fn grows(c: &MediaClient, what: impl Fn(&ClientStats) -> u64, by: u64) {
    let before = what(&c.stats());
    if let Err(s) = c.wait_for(T, |s| what(s) >= before + by).await {
        panic!("did not grow by {by} from {before}: {s:#?}");
    }
}

fn video(s: &ClientStats) -> u64 {
    s.packets("video")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_media_both_ways_and_hold_pauses_it() {
    let c = Centre::start_memory(&[Op::new("op-a", ANAGRAFE, 3)], &["k1"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    let mut k = c.kiosk("k1").await;
    ok(op.session(), available()).await;
    let id = request_call(&mut k, "anagrafe").await;

    // No media before the conversation.
    let early = k.start_media(ClientOptions::default()).await;
    assert_eq!(
        refused(early.map(|_| serde_json::Value::Null)),
        ErrorCode::Conflict
    );

    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;

    let kiosk_media = k.start_media(ClientOptions::default()).await.unwrap();
    let op_media = op.start_media(&id, ClientOptions::default()).await.unwrap();
    grows(&kiosk_media, video, 30).await;
    grows(&kiosk_media, |s| s.packets("audio"), 20).await;
    grows(&op_media, video, 30).await;
    grows(&op_media, |s| s.packets("audio"), 20).await;

    // The operator gets media.stats for the call.
    let stats = event(op.session(), |e| {
        matches!(e, Event::MediaStats(s) if s.call_id == id
            && s.directions.iter().any(|d| d.from == "kiosk" && d.packets > 0))
    })
    .await;
    let Event::MediaStats(stats) = stats else {
        unreachable!()
    };
    assert!(!stats.held);

    // Hold pauses both directions; resume restarts them with continuous sequence numbers.
    ok(op.session(), Request::CallHold(call(&id))).await;
    on_call(k.session(), "call.held", &id).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (k0, o0) = (video(&kiosk_media.stats()), video(&op_media.stats()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        video(&kiosk_media.stats()),
        k0,
        "nothing reaches the held booth"
    );
    assert_eq!(
        video(&op_media.stats()),
        o0,
        "nothing leaves the held booth"
    );
    ok(op.session(), Request::CallResume(call(&id))).await;
    grows(&kiosk_media, video, 20).await;
    grows(&op_media, video, 20).await;
    for t in op_media.stats().tracks.values() {
        assert!(t.max_seq_jump <= 2, "continuous across hold: {t:?}");
    }

    // Ending the call closes the media.
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = video(&op_media.stats());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        video(&op_media.stats()),
        after,
        "no media after the call ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_monitors_a_call_silently() {
    let c = Centre::start_memory(&[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    let mut k = c.kiosk("k1").await;
    let mut sup = c.supervisor().await;
    ok(op.session(), available()).await;
    let id = request_call(&mut k, "anagrafe").await;
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    let kiosk_media = k.start_media(ClientOptions::default()).await.unwrap();
    let op_media = op.start_media(&id, ClientOptions::default()).await.unwrap();

    // Without monitor.start a supervisor may not offer.
    let no =
        kiosk_client::media::start_media(&sup.requester(), &id, ClientOptions::monitor()).await;
    assert_eq!(
        refused(no.map(|_| serde_json::Value::Null)),
        ErrorCode::Conflict
    );
    // A kiosk may not pretend to monitor.
    let r = k
        .session()
        .request(&Request::MediaOffer(MediaOffer {
            call_id: id.clone(),
            sdp: op_media.offer().to_owned(),
            monitor: true,
        }))
        .await;
    assert_eq!(refused(r), ErrorCode::Invalid);

    ok(&sup, Request::MonitorStart(call(&id))).await;
    let mon = kiosk_client::media::start_media(&sup.requester(), &id, ClientOptions::monitor())
        .await
        .unwrap();
    grows(&mon, |s| s.packets_from("kiosk-video"), 20).await;
    grows(&mon, |s| s.packets_from("operator-video"), 20).await;
    assert_eq!(mon.stats().sent_packets, 0);
    // The monitor gets the call's media.stats too.
    event(
        &mut sup,
        |e| matches!(e, Event::MediaStats(s) if s.call_id == id),
    )
    .await;
    // The parties see only each other.
    grows(&kiosk_media, video, 10).await;
    assert_eq!(kiosk_media.stats().packets_from("kiosk-"), 0);

    ok(&sup, Request::MonitorStop(call(&id))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = mon.stats().packets_from("kiosk-video");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        mon.stats().packets_from("kiosk-video"),
        after,
        "monitor closed"
    );
    grows(&op_media, video, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_booth_operator_gets_each_booth_on_its_own_connection() {
    let c =
        Centre::start_memory(&[Op::new("op-a", ANAGRAFE, 3)], &["k1", "k2", "k3"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    ok(op.session(), available()).await;
    let mut legs = Vec::new();
    let mut kiosks = Vec::new();
    for (i, name) in ["k1", "k2", "k3"].iter().enumerate() {
        let mut k = c.kiosk(name).await;
        let id = request_call(&mut k, "anagrafe").await;
        on_call(op.session(), "call.offered", &id).await;
        ok(op.session(), Request::CallAccept(call(&id))).await;
        let size = 500 + 100 * i;
        let km = k
            .start_media(ClientOptions {
                video_packet_size: size,
                ..Default::default()
            })
            .await
            .unwrap();
        let om = op.start_media(&id, ClientOptions::default()).await.unwrap();
        kiosks.push((k, km));
        legs.push((id, om, size as u64));
    }
    for (id, om, size) in &legs {
        grows(om, video, 20).await;
        let s = om.stats();
        let t = s.tracks.values().find(|t| t.kind == "video").unwrap();
        assert_eq!(
            t.bytes / t.packets,
            *size,
            "call {id} carries its own booth"
        );
    }
    // Holding one booth pauses only that one.
    let (held_id, held, _) = &legs[1];
    ok(op.session(), Request::CallHold(call(held_id))).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let frozen = video(&held.stats());
    grows(&legs[0].1, video, 20).await;
    grows(&legs[2].1, video, 20).await;
    assert_eq!(video(&held.stats()), frozen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_requests_get_clear_errors() {
    let c = Centre::start_memory(&[Op::new("op-a", ANAGRAFE, 2)], &["k1", "k2"], |_| {}).await;
    let mut op = c.operator("op-a").await;
    let mut k1 = c.kiosk("k1").await;
    let mut k2 = c.kiosk("k2").await;
    ok(op.session(), available()).await;
    let id1 = request_call(&mut k1, "anagrafe").await;
    on_call(op.session(), "call.offered", &id1).await;
    ok(op.session(), Request::CallAccept(call(&id1))).await;
    let id2 = request_call(&mut k2, "anagrafe").await;
    on_call(op.session(), "call.offered", &id2).await;
    ok(op.session(), Request::CallAccept(call(&id2))).await;
    let m1 = k1.start_media(ClientOptions::default()).await.unwrap();
    let o1 = op
        .start_media(&id1, ClientOptions::default())
        .await
        .unwrap();
    grows(&o1, video, 10).await;

    let offer = |call_id: &str, sdp: &str| {
        Request::MediaOffer(MediaOffer {
            call_id: call_id.into(),
            sdp: sdp.into(),
            monitor: false,
        })
    };
    // Bad SDP.
    let r = k2.session().request(&offer(&id2, "v=0 garbage")).await;
    assert_eq!(refused(r), ErrorCode::Invalid);
    // Unknown call.
    let r = k2
        .session()
        .request(&offer("no-such-call", m1.offer()))
        .await;
    assert_eq!(refused(r), ErrorCode::NotFound);
    // Another kiosk's call.
    let r = k2.session().request(&offer(&id1, m1.offer())).await;
    assert_eq!(refused(r), ErrorCode::Forbidden);
    // A candidate for another kiosk's call, and for a call without a connection yet.
    let cand = |call_id: &str| {
        Request::MediaCandidate(MediaCandidate {
            call_id: call_id.into(),
            candidate: m1.candidates()[0].candidate.clone(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        })
    };
    assert_eq!(
        refused(k2.session().request(&cand(&id1)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(k2.session().request(&cand(&id2)).await),
        ErrorCode::NotFound
    );
    let garbage = Request::MediaCandidate(MediaCandidate {
        call_id: id1.clone(),
        candidate: "candidate:nonsense".into(),
        sdp_mid: None,
        sdp_mline_index: None,
    });
    assert_eq!(
        refused(k1.session().request(&garbage).await),
        ErrorCode::Invalid
    );
    // A malformed media.offer (no sdp) is invalid at the frame level.
    let r = k2
        .session()
        .request_raw(serde_json::json!({"type": "media.offer", "call_id": id2}))
        .await;
    assert_eq!(refused(r), ErrorCode::Invalid);
    // None of it touched the call that works.
    grows(&o1, video, 20).await;
    grows(&m1, video, 20).await;
}

/// An operator and a kiosk in conversation, with media flowing both ways.
async fn connected_pair(
    c: &Centre,
    op_id: &str,
    kiosk: &str,
) -> (
    kiosk_client::OperatorBot,
    kiosk_client::HeadlessKiosk,
    String,
    MediaClient,
    MediaClient,
) {
    let mut op = c.operator(op_id).await;
    let mut k = c.kiosk(kiosk).await;
    ok(op.session(), available()).await;
    let id = request_call(&mut k, "anagrafe").await;
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    let km = k.start_media(ClientOptions::default()).await.unwrap();
    let om = op.start_media(&id, ClientOptions::default()).await.unwrap();
    grows(&km, video, 10).await;
    grows(&om, video, 10).await;
    (op, k, id, km, om)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_after_a_network_change_keeps_the_media_flowing() {
    let c = Centre::start_memory(&[Op::new("op-a", ANAGRAFE, 1)], &["k1"], |_| {}).await;
    let (_op, mut k, id, km, om) = connected_pair(&c, "op-a", "k1").await;
    // The kiosk moves to a new address (a new socket) and restarts ICE on the same connection.
    kiosk_client::media::restart_ice(&k.session().requester(), &id, &km, false)
        .await
        .unwrap();
    grows(&km, video, 30).await;
    grows(&om, video, 30).await;
    for t in om.stats().tracks.values() {
        assert!(t.max_seq_jump <= 5, "no reset after the restart: {t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_ends_when_a_party_s_media_is_gone_past_the_grace() {
    let c = Centre::start_memory(
        &[Op::new("op-a", ANAGRAFE, 1), Op::new("op-b", ANAGRAFE, 1)],
        &["k1", "k2"],
        |cfg| cfg.media.grace_s = 2,
    )
    .await;
    // A kiosk whose client closes its connection.
    let (mut op, mut k, id, km, _om) = connected_pair(&c, "op-a", "k1").await;
    km.close();
    let ended = on_call(op.session(), "call.ended", &id).await;
    let Event::CallEnded(ended) = ended else {
        unreachable!()
    };
    assert_eq!(ended.reason, "completed");
    on_call(k.session(), "call.ended", &id).await;

    // A kiosk that vanishes without a word (crash, cable pulled).
    let (mut op2, _k2, id2, km2, _om2) = connected_pair(&c, "op-b", "k2").await;
    km2.vanish();
    let t0 = std::time::Instant::now();
    let ended = op2
        .session()
        .wait_for(Duration::from_secs(40), |e| {
            e.kind() == "call.ended" && common::centre::call_of(e) == Some(id2.as_str())
        })
        .await;
    assert!(
        ended.is_ok(),
        "the call ends after the ICE timeout and the grace"
    );
    eprintln!("vanished kiosk: call ended after {:?}", t0.elapsed());
}
