//! TURN with time-limited credentials, end to end: a private coturn (`testkit::coturn`, Debian's
//! `turnserver` on loopback with `use-auth-secret`) and the `sportello` binary with a `[turn]`
//! section that shares its secret.
//!
//! - coturn accepts the credentials of the server's `auth` reply and of a later `ice.servers`
//!   refresh, and refuses credentials that expired or were signed with another secret (checked
//!   with coturn's own `turnutils_uclient`).
//! - With `policy = "relay"`, the kiosk page and the operator console (two headless Chromium pages,
//!   `console-web/tests/turn.mjs`) make a call in which each decodes the other's video, and each
//!   page's selected candidate pair has a local candidate of type `relay`; coturn's log shows the
//!   allocations of both principals. Once with `turn:` over UDP, once with only TURN over TCP (a
//!   network that blocks UDP) and once with only `turns:` (TLS, with the private coturn's
//!   self-signed certificate accepted by Chromium's `--ignore-certificate-errors`).
//! - A `[turn]` whose secret file is missing or empty stops the server at start with a clear error.
//!
//! A missing coturn, Chromium or Node.js fails the test (it never skips); `cargo xtask test`
//! installs them.

#[path = "common/browser.rs"]
mod browser;

#[path = "common/turn.rs"]
mod turn;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use turn::turn_config;

use browser::{run_node, CHROMIUM};
use kiosk_client::Session;
use protocol::{Auth, Event, IceServer, IceTransportPolicy};
use signalling::ws::turn::credentials;
use testkit::coturn::{Allocation, Coturn};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const SECRET: &str = "sportello-turn-test-secret-0123456789";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Asks coturn for an allocation in a blocking task.
async fn allocate(coturn: &std::sync::Arc<Coturn>, username: &str, password: &str) -> Allocation {
    let (coturn, username, password) = (coturn.clone(), username.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || coturn.allocate(&username, &password))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("turnutils_uclient: {e:#}"))
}

fn turn_entry(servers: &[IceServer]) -> (&str, &str) {
    let turn = servers
        .iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .unwrap_or_else(|| panic!("no TURN entry in {servers:?}"));
    (
        turn.username.as_deref().unwrap(),
        turn.credential.as_deref().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_the_servers_credentials_and_refuses_expired_or_foreign_ones() {
    let coturn = std::sync::Arc::new(Coturn::start(SECRET).unwrap_or_else(|e| panic!("{e:#}")));
    let dir = tempfile::tempdir().unwrap();
    // Credentials of 10 s, refreshed every 5 s.
    let config = turn_config(
        dir.path(),
        SECRET,
        &[coturn.udp_url(), coturn.tcp_url()],
        10,
        "relay",
    );
    let s = browser::MediaServer::start_with(BIN, &["--config".as_ref(), config.as_os_str()]);

    let auth = Auth {
        token: s.kiosk_token.clone(),
        resume: None,
        capabilities: Vec::new(),
    };
    let before = unix_now();
    let (mut session, ok) = Session::connect(&s.server.ws_url(), auth).await.unwrap();
    assert_eq!(ok.ice_transport_policy, Some(IceTransportPolicy::Relay));
    assert_eq!(ok.ice_servers_ttl_s, Some(10));
    let servers = ok
        .ice_servers
        .clone()
        .expect("ice_servers in the auth reply");
    assert_eq!(
        servers[0].urls,
        [coturn.udp_url(), coturn.tcp_url()],
        "{servers:?}"
    );
    let (username, password) = turn_entry(&servers);
    let (expiry, principal) = username.split_once(':').unwrap();
    assert_eq!(principal, ok.principal_id);
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (before + 10..=unix_now() + 10).contains(&expiry),
        "{username}"
    );
    assert_eq!(
        password,
        credentials(SECRET.as_bytes(), principal, expiry - 10, 10).credential
    );

    // coturn takes the server's credentials.
    assert_eq!(
        allocate(&coturn, username, password).await,
        Allocation::Accepted
    );
    // Expired ones (signed with the right secret) and ones signed with another secret are refused.
    let expired = credentials(SECRET.as_bytes(), principal, unix_now() - 120, 60);
    assert!(
        matches!(
            allocate(&coturn, &expired.username, &expired.credential).await,
            Allocation::Refused(_)
        ),
        "expired credentials were accepted"
    );
    let foreign = credentials(b"another-secret", principal, unix_now(), 600);
    assert!(
        matches!(
            allocate(&coturn, &foreign.username, &foreign.credential).await,
            Allocation::Refused(_)
        ),
        "credentials of another secret were accepted"
    );
    assert!(
        coturn.log().contains("401"),
        "coturn logged no 401 for the refused credentials:\n{}",
        coturn.log()
    );

    // A long session gets fresh credentials every half of their lifetime, and coturn takes them.
    let event = session
        .wait_for(Duration::from_secs(15), |e| {
            matches!(e, Event::IceServers(_))
        })
        .await
        .unwrap();
    let Event::IceServers(fresh) = event else {
        unreachable!()
    };
    assert_eq!(fresh.ice_transport_policy, Some(IceTransportPolicy::Relay));
    assert_eq!(fresh.ice_servers_ttl_s, 10);
    let (fresh_user, fresh_password) = turn_entry(&fresh.ice_servers);
    let fresh_expiry: u64 = fresh_user.split_once(':').unwrap().0.parse().unwrap();
    assert!(fresh_expiry >= expiry + 4, "{fresh_user} after {username}");
    assert_eq!(
        allocate(&coturn, fresh_user, fresh_password).await,
        Allocation::Accepted
    );
    // Wait until the first credentials expired: coturn refuses them, and takes the fresh ones.
    while unix_now() <= expiry + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(matches!(
        allocate(&coturn, username, password).await,
        Allocation::Refused(_)
    ));
    let newest = session
        .wait_for(Duration::from_secs(15), |e| {
            matches!(e, Event::IceServers(_))
        })
        .await
        .unwrap();
    let Event::IceServers(newest) = newest else {
        unreachable!()
    };
    let (newest_user, newest_password) = turn_entry(&newest.ice_servers);
    assert_ne!(newest_user, fresh_user);
    assert_eq!(
        allocate(&coturn, newest_user, newest_password).await,
        Allocation::Accepted
    );
    coturn.check().unwrap();
}

/// A call between the kiosk page and the console with `policy = "relay"` and the TURN URLs that
/// `urls` picks from `coturn`: each page decodes the other's video through a relay candidate
/// reached over `relay_protocol`, and coturn logs both principals' allocations.
async fn relay_call(urls: fn(&Coturn) -> Vec<String>, relay_protocol: &str) {
    browser::require_chromium();
    let _turn = browser::ONE_AT_A_TIME.lock().await;
    browser::ensure_node_modules(&browser::tests_dir(), &["playwright-core", "axe-core"]).await;
    let coturn = Coturn::start(SECRET).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let urls = urls(&coturn);
    let config = turn_config(dir.path(), SECRET, &urls, 3600, "relay");
    let s = browser::MediaServer::start_with(BIN, &["--config".as_ref(), config.as_os_str()]);
    let kiosk_id = {
        let auth = Auth {
            token: s.kiosk_token.clone(),
            resume: None,
            capabilities: Vec::new(),
        };
        let (_session, ok) = Session::connect(&s.server.ws_url(), auth).await.unwrap();
        ok.principal_id
    };

    let mut args = vec![
        "--base",
        &s.server.base,
        "--kiosk-token",
        &s.kiosk_token,
        "--username",
        &s.username,
        "--password",
        &s.password,
        "--chromium",
        CHROMIUM,
    ];
    if relay_protocol == "tls" {
        // The private coturn's certificate is self-signed.
        args.push("--insecure-tls");
    }
    let result = run_node("turn.mjs", &args, &[], Duration::from_secs(180)).await;
    coturn.check().unwrap();
    assert_eq!(result["ok"], true, "{result}");
    for side in ["kiosk", "console"] {
        let r = &result[side];
        assert!(
            r["framesDecoded"].as_u64().unwrap_or(0) > 10,
            "{side}: {result}"
        );
        let configs = r["config"].as_array().unwrap();
        assert!(!configs.is_empty(), "{side}: {result}");
        for c in configs {
            assert_eq!(c["iceTransportPolicy"], "relay", "{side}: {result}");
            assert_eq!(
                c["iceServers"][0]["urls"],
                serde_json::json!(urls),
                "{side}: {result}"
            );
        }
        let local = &r["pair"]["local"];
        assert_eq!(
            local["candidateType"], "relay",
            "{side}'s selected pair does not go through TURN: {result}"
        );
        assert_eq!(local["relayProtocol"], relay_protocol, "{side}: {result}");
    }
    // coturn relayed for both principals: the kiosk and the operator.
    let log = coturn.log();
    for principal in [kiosk_id, s.username.clone()] {
        assert!(
            log.lines().any(|l| l.contains(&format!(":{principal}>"))
                && l.contains("ALLOCATE processed, success")),
            "coturn's log shows no allocation of {principal}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_page_and_console_decode_each_other_through_coturn_only() {
    relay_call(|c| vec![c.udp_url(), c.tcp_url()], "udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_works_over_turn_tcp_when_udp_is_blocked() {
    relay_call(|c| vec![c.tcp_url()], "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_works_over_turns_tls() {
    relay_call(|c| vec![c.tls_url()], "tls").await;
}

#[tokio::test]
async fn a_missing_or_empty_turn_secret_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.secret");
    std::fs::write(&empty, "\n").unwrap();
    for (secret, expected) in [
        (dir.path().join("missing.secret"), "cannot read"),
        (empty, "is empty"),
    ] {
        let config = dir.path().join("sportello.toml");
        std::fs::write(
            &config,
            format!(
                "[turn]\nurls = [\"turn:127.0.0.1:3478?transport=udp\", \"http://nope\"]\nsecret_file = {:?}\n",
                secret.display().to_string()
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("turn.secret_file") && text.contains(expected),
            "{text}"
        );
        assert!(
            text.contains("must start with turn:, turns: or stun:"),
            "{text}"
        );
        // The environment overrides the file, as for every section.
        let out = Command::new(BIN)
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("SPORTELLO_TURN__TTL_S", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("turn.ttl_s: 1 must be between"), "{text}");
    }
}
