//! Issue 15, rows 1, 4, 5, 6 and the login half of 11, against the real server on port 0. Clients
//! take other loopback source addresses (127.0.0.2, …) to play an attacker next to the real
//! operator on 127.0.0.1. Where a burst has to meet full check slots, the test holds the slots
//! itself through the server's `HashGate`, so the outcome does not depend on timing. Figures
//! (memory, latency) come from `signalling/examples/login_burst.rs`, never from here.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// A client whose connections come from `ip`.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// One login: status, code and `Retry-After`.
async fn login(
    client: &reqwest::Client,
    t_url: &str,
    user: &str,
    password: &str,
) -> (u16, String, Option<u64>) {
    let res = client
        .post(t_url)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    (status, code, retry_after)
}

/// The server's limits for the tests that hold the slots: 2 checks, 8 waiting, 4 per address.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.auth.login_concurrency = 2;
        c.auth.login_queue = 8;
        c.auth.login_per_address = 4;
    })
    .await
}

/// Waits (10 s at most) until the gate shows this many checks running and logins waiting.
async fn wait_for_load(t: &TestServer, load: (usize, usize)) {
    for _ in 0..1000 {
        if t.server.state.login.gate.load() == load {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "gate load {:?}, expected {load:?}",
        t.server.state.login.gate.load()
    );
}

/// Waits for `n` of the logins in `set` to answer (10 s at most) and returns their answers.
async fn answers(
    set: &mut JoinSet<(u16, String, Option<u64>)>,
    n: usize,
) -> Vec<(u16, String, Option<u64>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let answer = tokio::time::timeout(Duration::from_secs(10), set.join_next())
            .await
            .expect("an answer within 10 s")
            .expect("a login left")
            .unwrap();
        out.push(answer);
    }
    out
}

/// Row 1: a burst of wrong logins no longer starts a password check each. While every check slot
/// is taken, one address gets 4 logins waiting and every other login at once `429`; other
/// addresses fill the short queue and then get `503 unavailable` at once. Nothing else runs.
#[tokio::test]
async fn a_burst_of_wrong_logins_is_refused_at_once_past_the_bounds() {
    let t = server().await;
    let url = t.url("/api/v1/login");
    let gate = t.server.state.login.gate.clone();
    let held = [
        gate.acquire(IpAddr::from([192, 0, 2, 1]), true)
            .await
            .unwrap(),
        gate.acquire(IpAddr::from([192, 0, 2, 2]), true)
            .await
            .unwrap(),
    ];

    // 32 at once from one address: 4 wait, 28 are refused with 429 straight away.
    let attacker = client_from([127, 0, 0, 1]);
    let mut burst = JoinSet::new();
    for n in 0..32 {
        let (client, url) = (attacker.clone(), url.clone());
        burst.spawn(async move { login(&client, &url, &format!("junk{n}"), "wrong").await });
    }
    let refused = answers(&mut burst, 28).await;
    for (status, code, retry_after) in &refused {
        assert_eq!((*status, code.as_str()), (429, "rate_limited"));
        assert_eq!(*retry_after, Some(1));
    }
    wait_for_load(&t, (2, 4)).await;

    // 8 more addresses: 4 fill the queue, 4 get 503 at once.
    let mut others = JoinSet::new();
    for n in 10..18u8 {
        let (client, url) = (client_from([127, 0, 0, n]), url.clone());
        others.spawn(async move { login(&client, &url, "maria.rossi", "wrong").await });
    }
    for (status, code, retry_after) in answers(&mut others, 4).await {
        assert_eq!((status, code.as_str()), (503, "unavailable"));
        assert_eq!(retry_after, Some(1));
    }
    wait_for_load(&t, (2, 8)).await;
    assert_eq!(
        t.server
            .state
            .metrics
            .logins
            .with_label_values(&["busy"])
            .get(),
        32
    );

    // Once the slots are free, the 8 waiting logins are checked and answered 401.
    drop(held);
    for (status, code, _) in answers(&mut burst, 4).await {
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    for (status, code, _) in answers(&mut others, 4).await {
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
    }
    wait_for_load(&t, (0, 0)).await;
}

/// Row 6: a real operator's login waits behind no junk. Junk from addresses that already failed
/// waits in the second lane; the operator, from a clean address, takes the first free slot even
/// when the queue is full (the newest junk login gives up its place and gets 503).
#[tokio::test]
async fn a_real_login_is_served_before_queued_junk() {
    let t = server().await;
    let url = t.url("/api/v1/login");
    let real = t.demo().operators[0].clone();
    for n in [2, 3] {
        let (status, _, _) = login(&client_from([127, 0, 0, n]), &url, "nobody", "x").await;
        assert_eq!(status, 401);
    }
    let gate = t.server.state.login.gate.clone();
    let first = gate
        .acquire(IpAddr::from([192, 0, 2, 1]), true)
        .await
        .unwrap();
    let second = gate
        .acquire(IpAddr::from([192, 0, 2, 2]), true)
        .await
        .unwrap();

    let answered = Arc::new(AtomicUsize::new(0));
    let mut junk = JoinSet::new();
    for n in 0..8 {
        let client = client_from([127, 0, 0, 2 + (n % 2) as u8]);
        let (url, answered) = (url.clone(), answered.clone());
        junk.spawn(async move {
            let answer = login(&client, &url, &format!("junk{n}"), "wrong").await;
            answered.fetch_add(1, Ordering::SeqCst);
            answer
        });
    }
    wait_for_load(&t, (2, 8)).await;

    let operator = tokio::spawn({
        let (client, url) = (client_from([127, 0, 0, 1]), url.clone());
        async move { login(&client, &url, &real.username, &real.password).await }
    });
    let (status, code, _) = answers(&mut junk, 1).await.remove(0);
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    wait_for_load(&t, (2, 8)).await;

    // One slot frees: it goes to the operator, while 7 junk logins wait for the one slot left
    // cycling (the other stays held).
    drop(first);
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("the operator's login answers")
        .unwrap();
    assert_eq!(status, 200);
    // The 503 above, plus at most the junk the cycling slot served after the operator's check.
    let junk_answered = answered.load(Ordering::SeqCst);
    assert!(
        junk_answered <= 4,
        "the junk went first: {junk_answered} junk logins answered before the operator"
    );
    drop(second);
    for (status, _, _) in answers(&mut junk, 7).await {
        assert_eq!(status, 401);
    }
}

/// Row 4: ten wrong passwords for an operator from another address lock the operator's name for
/// that address only; the operator still logs in from their own.
#[tokio::test]
async fn failures_from_another_address_do_not_lock_the_operator_out() {
    let t = TestServer::start().await;
    let url = t.url("/api/v1/login");
    let real = &t.demo().operators[0];
    let attacker = client_from([127, 0, 0, 2]);
    for _ in 0..10 {
        let (status, _, _) = login(&attacker, &url, &real.username, "wrong").await;
        assert_eq!(status, 401);
    }
    // Locked for the attacker's address, even with the right password.
    let (status, code, retry_after) = login(&attacker, &url, &real.username, &real.password).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert!(retry_after.is_some_and(|s| (1..=300).contains(&s)));
    // Case does not get around the lock.
    let upper = real.username.to_uppercase();
    let (status, _, _) = login(&attacker, &url, &upper, "wrong").await;
    assert_eq!(status, 429);

    // The operator, from their own address, is not locked out.
    let own = client_from([127, 0, 0, 1]);
    let (status, _, _) = login(&own, &url, &real.username, &real.password).await;
    assert_eq!(status, 200);
    // Nor is a third address that makes a typo.
    let (status, _, _) = login(&client_from([127, 0, 0, 3]), &url, &real.username, "typo").await;
    assert_eq!(status, 401);
}

/// Row 5: 150 different user names from one address (password spraying). The first 50 failures
/// are answered 401, everything after is 429 for any name from that address, until the window
/// ends; other addresses are untouched.
#[tokio::test]
async fn spraying_many_user_names_from_one_address_is_refused() {
    let t = TestServer::start().await;
    let url = t.url("/api/v1/login");
    let sprayer = client_from([127, 0, 0, 2]);
    let real = &t.demo().operators[1];
    let mut statuses = Vec::new();
    for n in 0..150 {
        // Known names too: they count the same.
        let user = if n % 10 == 0 {
            real.username.clone()
        } else {
            format!("user{n}")
        };
        let (status, code, _) = login(&sprayer, &url, &user, "Password1!").await;
        assert!(
            matches!(
                (status, code.as_str()),
                (401, "unauthorized") | (429, "rate_limited")
            ),
            "{status} {code}"
        );
        statuses.push(status);
    }
    assert!(statuses[..50].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[50..].iter().all(|s| *s == 429), "{statuses:?}");
    // The sprayer cannot log in even with a right password; the operator can, elsewhere.
    let (status, _, _) = login(&sprayer, &url, &real.username, &real.password).await;
    assert_eq!(status, 429);
    let (status, _, _) = login(
        &client_from([127, 0, 0, 1]),
        &url,
        &real.username,
        &real.password,
    )
    .await;
    assert_eq!(status, 200);
}

/// Every log line written by the server in this test binary.
fn captured() -> &'static Mutex<Vec<u8>> {
    static LINES: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        Mutex::new(Vec::new())
    })
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        captured().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Row 11 (logins): failed logins, lockouts and refusals are logged with the user name (escaped)
/// and the address, up to `login_log_lines_per_minute` lines; the rest are left out.
#[tokio::test]
async fn failed_logins_and_lockouts_are_logged_at_a_bounded_volume() {
    let _ = captured();
    let t = TestServer::start_with(|c| {
        c.auth.login_failures_per_user_address = 3;
        c.auth.login_log_lines_per_minute = 6;
    })
    .await;
    let url = t.url("/api/v1/login");
    let client = client_from([127, 0, 0, 5]);
    let (status, _, _) = login(&client, &url, "evil\nfake=\"line\"", "x").await;
    assert_eq!(status, 401);
    for _ in 0..3 {
        let (status, _, _) = login(&client, &url, "maria.rossi", "wrong").await;
        assert_eq!(status, 401);
    }
    for _ in 0..5 {
        let (status, _, _) = login(&client, &url, "maria.rossi", "wrong").await;
        assert_eq!(status, 429);
    }

    let text = String::from_utf8(captured().lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("address=127.0.0.5"))
        .collect();
    let count = |what: &str| ours.iter().filter(|l| l.contains(what)).count();
    assert_eq!(ours.len(), 6, "{ours:#?}");
    assert_eq!(count("login failed"), 4, "{ours:#?}");
    assert_eq!(count("login locked"), 1, "{ours:#?}");
    assert_eq!(count("login refused"), 1, "{ours:#?}");
    assert_eq!(count(r#"user="maria.rossi""#), 5, "{ours:#?}");
    // The hostile name stays inside its field: escaped, on one line.
    assert_eq!(count(r#"user="evil\nfake=\"line\"""#), 1, "{ours:#?}");
    assert!(!text.lines().any(|l| l.starts_with("fake=")));
}

/// One login from `client` with `X-Forwarded-For: forwarded_for` (none when `None`): the status.
async fn login_forwarded(
    client: &reqwest::Client,
    url: &str,
    forwarded_for: Option<&str>,
    user: &str,
    password: &str,
) -> u16 {
    let mut request = client.post(url);
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Behind a trusted proxy (`limits.trusted_proxies`), the throttles and the log lines use the
/// client address the proxy forwards: one client's failures lock only that client out, and the
/// log names it. The same header from an untrusted peer is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_and_logged() {
    let _ = captured();
    let t = TestServer::start_with(|c| {
        c.auth.login_failures_per_address = 3;
        c.limits.trusted_proxies = vec!["127.0.0.6/32".parse().unwrap()];
    })
    .await;
    let url = t.url("/api/v1/login");
    let real = t.demo().operators[0].clone();
    let (user, password) = (real.username.as_str(), real.password.as_str());
    let proxy = client_from([127, 0, 0, 6]);
    let (a, b) = (Some("198.51.100.61"), Some("198.51.100.62"));
    for _ in 0..3 {
        assert_eq!(login_forwarded(&proxy, &url, a, user, "wrong").await, 401);
    }
    assert_eq!(login_forwarded(&proxy, &url, a, user, password).await, 429);
    // Another client through the same proxy, and the proxy's own address, are not locked out.
    assert_eq!(login_forwarded(&proxy, &url, b, user, password).await, 200);
    assert_eq!(
        login_forwarded(&proxy, &url, None, user, password).await,
        200
    );

    // An untrusted peer's header is ignored: its failures count for its own address.
    let untrusted = client_from([127, 0, 0, 7]);
    for _ in 0..3 {
        let claimed = Some("198.51.100.63");
        assert_eq!(
            login_forwarded(&untrusted, &url, claimed, user, "wrong").await,
            401
        );
    }
    let other_claim = Some("198.51.100.64");
    assert_eq!(
        login_forwarded(&untrusted, &url, other_claim, user, password).await,
        429
    );

    let text = String::from_utf8(captured().lock().unwrap().clone()).unwrap();
    // Failures, lockouts and refusals, by address (successful logins are logged too).
    let lines = |address: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("address={address}")))
            .filter(|l| {
                ["login failed", "login locked", "login refused"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .count()
    };
    assert!(lines("198.51.100.61") >= 4, "{text}");
    assert_eq!(lines("198.51.100.62"), 0, "{text}");
    assert_eq!(lines("127.0.0.6"), 0, "{text}");
    assert!(lines("127.0.0.7") >= 4, "{text}");
    assert_eq!(lines("198.51.100.63") + lines("198.51.100.64"), 0, "{text}");
}
