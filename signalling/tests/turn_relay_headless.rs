//! TURN for the headless Rust clients, end to end: a private coturn (`testkit::coturn`) and the
//! `sportello` binary with `[turn]` and `policy = "relay"`. The headless kiosk and the operator bot
//! (`kiosk-client`'s `HeadlessKiosk`, `OperatorBot` and `CallMedia`, on `sfu::client`) take the
//! `auth` reply's ICE servers, allocate on coturn and make a call whose media goes through it both
//! ways:
//!
//! - each client's offer carries only `relay` candidates (no host candidate), each client has one
//!   allocation whose relayed address is in coturn's relay port range, it receives its media
//!   through the allocation (hundreds of datagrams) and nothing directly, and audio and video flow
//!   both ways;
//! - coturn's log shows, for both principals (the kiosk id and the operator's user name), a
//!   successful ALLOCATE, CREATE_PERMISSION and CHANNEL_BIND;
//! - once over `turn:` UDP (where the session's credentials are refreshed by `ice.servers`, and the
//!   kiosk's re-offer after the refresh allocates with the fresh user name), once over `turn:` TCP
//!   only.
//!
//! And the TURN client against the real coturn with no server in between: credentials signed with
//! another secret are refused with a clear error (HTTP-like 401, "wrong or expired credentials")
//! within seconds, over UDP and TCP; a TURN port where nothing listens fails fast; with policy
//! `all` the client still starts, on its host candidate, and reports why TURN failed.
//!
//! A missing coturn fails the test (it never skips); `cargo xtask test` installs it.

#[path = "common/browser.rs"]
mod browser;

#[path = "common/turn.rs"]
mod turn;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use turn::turn_config;

use kiosk_client::media::{CallMedia, ClientOptions, ClientStats, MediaClient};
use kiosk_client::{HeadlessKiosk, OperatorBot, Policy};
use protocol::{Event, IceServer, IceTransportPolicy};
use signalling::ws::turn::credentials;
use testkit::coturn::Coturn;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const SECRET: &str = "sportello-turn-headless-secret-0123456789";
const T: Duration = Duration::from_secs(20);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The user name of the TURN entry of `servers`.
fn turn_user(servers: &[IceServer]) -> String {
    servers
        .iter()
        .find_map(|s| s.username.clone())
        .unwrap_or_else(|| panic!("no TURN credentials in {servers:?}"))
}

/// Media flows both ways: audio and video from the other party.
fn flowing(s: &ClientStats) -> bool {
    s.connected && s.packets("video") >= 60 && s.packets("audio") >= 30
}

/// `media` went through coturn only: one allocation over `transport` in coturn's relay range,
/// relay candidates only, media received through it and nothing directly.
fn assert_relayed(who: &str, media: &MediaClient, coturn: &Coturn, transport: &str) {
    let s = media.stats();
    assert!(s.turn_errors.is_empty(), "{who}: {:?}", s.turn_errors);
    assert_eq!(s.relays.len(), 1, "{who}: {:?}", s.relays);
    let relay = &s.relays[0];
    assert_eq!(relay.transport, transport, "{who}: {relay:?}");
    assert_eq!(relay.server.port(), coturn.port(), "{who}: {relay:?}");
    let (first, last) = coturn.relay_ports();
    assert!(
        (first..=last).contains(&relay.relayed.port()),
        "{who}: relayed address {} outside coturn's relay ports {first}-{last}",
        relay.relayed
    );
    let candidates = media.candidates();
    assert!(!candidates.is_empty(), "{who}");
    for c in candidates {
        assert!(c.candidate.contains("typ relay"), "{who}: {}", c.candidate);
        assert!(
            c.candidate.contains(&relay.relayed.port().to_string()),
            "{who}: {}",
            c.candidate
        );
    }
    assert!(
        !media.offer().contains("typ host"),
        "{who}: {}",
        media.offer()
    );
    assert!(
        s.relay_received > 200 && s.relay_sent > 200,
        "{who}: too little through the relay: {s:?}"
    );
    assert_eq!(s.direct_received, 0, "{who}: media arrived directly: {s:?}");
}

/// coturn's log shows `what` succeeding for `principal` (its user names end in `:{principal}`).
fn assert_logged(coturn: &Coturn, principal: &str, what: &str) {
    let log = coturn.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!(":{principal}>")) && l.contains(what)),
        "coturn's log shows no {what:?} for {principal}:\n{log}"
    );
}

/// A call between the headless kiosk and the operator bot through coturn over `transport`.
async fn relayed_call(urls: fn(&Coturn) -> Vec<String>, transport: &str, ttl_s: u64) {
    let coturn = Coturn::start(SECRET).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let config = turn_config(dir.path(), SECRET, &urls(&coturn), ttl_s, "relay");
    let s = browser::MediaServer::start_with(BIN, &["--config".as_ref(), config.as_os_str()]);
    let ws = s.server.ws_url();

    let mut kiosk = HeadlessKiosk::connect(&ws, &s.kiosk_token, Vec::new())
        .await
        .unwrap();
    let kiosk_ice = kiosk.session().requester().ice();
    assert_eq!(kiosk_ice.policy, IceTransportPolicy::Relay);
    assert_eq!(kiosk_ice.servers[0].urls, urls(&coturn));
    let token = OperatorBot::login(&s.server.base, &s.username, &s.password)
        .await
        .unwrap();
    let mut op = OperatorBot::connect(&ws, &token, Policy::Manual)
        .await
        .unwrap();
    op.go_available().await.unwrap();

    let id = kiosk.request_call("anagrafe", "it", None).await.unwrap();
    let offer = op.wait_offer(T).await.unwrap();
    assert_eq!(offer.call_id, id);
    op.accept(&id).await.unwrap();
    kiosk
        .session()
        .wait_for(
            T,
            |e| matches!(e, Event::CallAssigned(a) if a.call_id == id),
        )
        .await
        .unwrap();

    let started = Instant::now();
    let mut kiosk_media =
        CallMedia::start(&kiosk.session().requester(), &id, ClientOptions::default())
            .await
            .unwrap();
    let op_media = op
        .start_call_media(&id, ClientOptions::default())
        .await
        .unwrap();
    let k = kiosk_media.client().wait_for(T, flowing).await;
    let o = op_media.client().wait_for(T, flowing).await;
    let (k, o) = (
        k.unwrap_or_else(|s| panic!("kiosk: {s:#?}")),
        o.unwrap_or_else(|s| panic!("operator: {s:#?}")),
    );
    eprintln!(
        "media both ways through coturn ({transport}) after {:?}: kiosk {} video/{} audio, operator {} video/{} audio",
        started.elapsed(),
        k.packets("video"),
        k.packets("audio"),
        o.packets("video"),
        o.packets("audio")
    );
    // Let a few hundred datagrams go through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_relayed("kiosk", kiosk_media.client(), &coturn, transport);
    assert_relayed("operator", op_media.client(), &coturn, transport);

    let kiosk_id = kiosk.kiosk_id().to_owned();
    for principal in [kiosk_id.as_str(), s.username.as_str()] {
        assert_logged(&coturn, principal, "ALLOCATE processed, success");
        assert_logged(&coturn, principal, "CREATE_PERMISSION processed, success");
        assert_logged(&coturn, principal, "CHANNEL_BIND processed, success");
    }

    if ttl_s <= 20 {
        // Fresh credentials arrive every ttl/2; the next peer connection (a re-offer, as after
        // `media.reconnect`) allocates with them.
        let first_user = turn_user(&kiosk_ice.servers);
        let event = kiosk
            .session()
            .wait_for(Duration::from_secs(ttl_s + 5), |e| {
                matches!(e, Event::IceServers(_))
            })
            .await
            .unwrap();
        let Event::IceServers(fresh) = event else {
            unreachable!()
        };
        let fresh_user = turn_user(&fresh.ice_servers);
        assert_ne!(fresh_user, first_user);
        assert_eq!(
            turn_user(&kiosk.session().requester().ice().servers),
            fresh_user,
            "the session keeps the refreshed servers"
        );
        kiosk_media.reconnect("test").await.unwrap();
        kiosk_media
            .client()
            .wait_for(T, flowing)
            .await
            .unwrap_or_else(|s| panic!("kiosk after the re-offer: {s:#?}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_relayed(
            "kiosk after the re-offer",
            kiosk_media.client(),
            &coturn,
            transport,
        );
        let log = coturn.log();
        assert!(
            log.lines().any(|l| l.contains(&format!("<{fresh_user}>"))
                && l.contains("ALLOCATE processed, success")),
            "no allocation with the refreshed user name {fresh_user}:\n{log}"
        );
        let o = op_media.client().stats();
        assert!(o.connected, "{o:?}");
    }

    kiosk_media.close();
    op_media.close();
    coturn.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_kiosk_and_operator_bot_talk_through_coturn_over_udp_only() {
    relayed_call(|c| vec![c.udp_url()], "udp", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_kiosk_and_operator_bot_talk_through_coturn_over_tcp_only() {
    relayed_call(|c| vec![c.tcp_url()], "tcp", 3600).await;
}

/// Client options with one TURN entry of `urls`, `username` and `credential`.
fn turn_options(
    urls: Vec<String>,
    username: &str,
    credential: &str,
    policy: IceTransportPolicy,
) -> ClientOptions {
    ClientOptions::default().with_ice(
        vec![IceServer {
            urls,
            username: Some(username.to_owned()),
            credential: Some(credential.to_owned()),
        }],
        policy,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_client_gets_an_allocation_or_a_clear_refusal_from_coturn() {
    let coturn = Coturn::start(SECRET).unwrap_or_else(|e| panic!("{e:#}"));
    let good = credentials(SECRET.as_bytes(), "probe", unix_now(), 600);
    let foreign = credentials(b"another-secret", "probe", unix_now(), 600);

    for url in [coturn.udp_url(), coturn.tcp_url()] {
        // The server's credentials: a relay candidate, and nothing else.
        let client = MediaClient::start(turn_options(
            vec![url.clone()],
            &good.username,
            &good.credential,
            IceTransportPolicy::Relay,
        ))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        let s = client.stats();
        assert_eq!(s.relays.len(), 1, "{url}: {s:?}");
        assert_eq!(client.candidates().len(), 1);
        assert!(client.candidates()[0].candidate.contains("typ relay"));
        client.close();

        // Credentials of another secret: refused, with the reason, in seconds.
        let started = Instant::now();
        let e = MediaClient::start(turn_options(
            vec![url.clone()],
            &foreign.username,
            &foreign.credential,
            IceTransportPolicy::Relay,
        ))
        .await
        .expect_err("coturn refuses credentials of another secret");
        let text = e.to_string();
        eprintln!("{url}: refused in {:?}: {text}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(4), "{url}: {text}");
        assert!(
            text.contains("401") && text.contains("wrong or expired credentials"),
            "{url}: {text}"
        );
        assert!(text.contains(&url), "{url}: {text}");
    }
    assert!(coturn.log().contains("401"), "{}", coturn.log());

    // Nothing listens on the TURN port: UDP (ICMP port unreachable) and TCP (refused) fail fast.
    let closed = testkit::free_port();
    for url in [
        format!("turn:127.0.0.1:{closed}?transport=udp"),
        format!("turn:127.0.0.1:{closed}?transport=tcp"),
    ] {
        let started = Instant::now();
        let e = MediaClient::start(turn_options(
            vec![url.clone()],
            &good.username,
            &good.credential,
            IceTransportPolicy::Relay,
        ))
        .await
        .expect_err("no TURN server");
        eprintln!("{url}: failed in {:?}: {e}", started.elapsed());
        assert!(
            started.elapsed() < ClientOptions::default().turn_timeout + Duration::from_secs(1),
            "{url}: {e}"
        );
        assert!(e.to_string().contains("no TURN allocation"), "{url}: {e}");
    }

    // Policy `all`: a TURN server that refuses leaves the host candidate, and says why.
    let client = MediaClient::start(turn_options(
        vec![
            coturn.udp_url(),
            "turns:127.0.0.1:5349?transport=tcp".to_owned(),
        ],
        &foreign.username,
        &foreign.credential,
        IceTransportPolicy::All,
    ))
    .await
    .unwrap();
    let s = client.stats();
    assert!(s.relays.is_empty(), "{s:?}");
    assert_eq!(s.turn_errors.len(), 1, "{:?}", s.turn_errors);
    assert!(s.turn_errors[0].contains("401"), "{:?}", s.turn_errors);
    assert_eq!(client.candidates().len(), 1);
    assert!(client.candidates()[0].candidate.contains("typ host"));
    coturn.check().unwrap();
}
