//! The internal API end to end: a real SFU on loopback behind `medianode::router`, driven through
//! `MediaNodeClient` by headless DTLS-SRTP clients (`sfu::client`), plus requests that must be
//! refused (unsigned, another secret, a stale or future time, tampered) and nodes that cannot be
//! reached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use medianode::api::{ErrorBody, NodeEvent};
use medianode::auth::{self, Secret};
use medianode::{router, MediaNodeClient};
use sfu::client::{ClientOptions, ClientStats, MediaClient};
use sfu::{MediaConfig, MediaError, MediaEvent, MediaRole, Participant, Sfu};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long anything that should happen may take before the test fails (not a performance bound).
const T: Duration = Duration::from_secs(10);

struct Node {
    sfu: Sfu,
    events: UnboundedReceiver<MediaEvent>,
    addr: SocketAddr,
    secret: Arc<Secret>,
}

impl Node {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self) -> MediaNodeClient {
        MediaNodeClient::new(&self.url(), self.secret.clone()).expect("client")
    }
}

async fn node() -> Node {
    let (sfu, events) = Sfu::start(
        MediaConfig {
            loops: 2,
            grace: Duration::from_secs(3),
            stats_interval: Duration::from_millis(500),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("sfu starts");
    let secret = Arc::new(Secret::random());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let app = router(sfu.clone(), secret.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Node {
        sfu,
        events,
        addr,
        secret,
    }
}

fn who(principal: &str, role: MediaRole) -> Participant {
    Participant {
        principal: principal.into(),
        role,
    }
}

/// Negotiates one participant through the media node's API.
async fn join(api: &MediaNodeClient, call: &str, p: Participant) -> MediaClient {
    let client = MediaClient::start(ClientOptions::default())
        .await
        .expect("client");
    let answer = api
        .offer(call, p.clone(), client.offer().to_owned(), false)
        .await
        .expect("answer");
    assert!(answer.sdp.contains("a=ice-lite"), "{}", answer.sdp);
    assert!(!answer.candidates.is_empty(), "the answer's candidates");
    client.set_answer(answer.sdp).await.expect("answer applies");
    for c in client.candidates() {
        api.candidate(call, p.clone(), c.clone())
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

/// Polls the node's load until `ok` holds.
async fn load_until(api: &MediaNodeClient, ok: impl Fn(&sfu::MediaLoad) -> bool) -> sfu::MediaLoad {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let load = api.load().await.expect("load");
        if ok(&load) {
            return load;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "load never got there: {load:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kiosk and operator of call `call` on `node`, with media flowing both ways.
async fn call(node: &Node, call: &str) -> (MediaClient, MediaClient) {
    let api = node.client();
    let kiosk = join(&api, call, who("kiosk:a", MediaRole::Kiosk)).await;
    let op = join(&api, call, who("operator:m", MediaRole::Operator)).await;
    grows(&kiosk, |s| s.packets("video"), 30).await;
    grows(&kiosk, |s| s.packets("audio"), 20).await;
    grows(&op, |s| s.packets("video"), 30).await;
    grows(&op, |s| s.packets("audio"), 20).await;
    (kiosk, op)
}

#[tokio::test]
async fn a_call_negotiated_through_the_internal_api_carries_media() {
    let mut node = node().await;
    let api = node.client();
    let (kiosk, op) = call(&node, "c1").await;
    assert!(op.stats().packets_from("kiosk-") > 0);
    assert!(kiosk.stats().packets_from("operator-") > 0);

    // The SFU's events, as a media node publishes them, come back the same.
    let mut connected = Vec::new();
    while connected.len() < 2 {
        let e = tokio::time::timeout(T, node.events.recv())
            .await
            .expect("events in time")
            .expect("events");
        let json = serde_json::to_string(&NodeEvent::from(e)).unwrap();
        if let MediaEvent::Connected { call_id, who } =
            MediaEvent::from(serde_json::from_str::<NodeEvent>(&json).unwrap())
        {
            assert_eq!(call_id, "c1");
            connected.push(who.role);
        }
    }
    connected.sort_by_key(|r| r.as_str());
    assert_eq!(connected, [MediaRole::Kiosk, MediaRole::Operator]);

    // Stats, health and load through the API.
    let stats = api.stats().await.expect("stats");
    let c1 = stats.iter().find(|c| c.call_id == "c1").expect("c1");
    assert_eq!(c1.connected.len(), 2, "{c1:?}");
    assert!(c1
        .directions
        .iter()
        .any(|d| d.from == "kiosk" && d.to == "operator" && d.packets > 0));
    assert_eq!(api.health().await, Ok(2));
    let load = load_until(&api, |l| {
        l.calls == 1 && l.connections == 2 && l.packets_per_s > 0.0
    })
    .await;
    assert_eq!(load.loops, 2);
    assert!((0.0..=1.0).contains(&load.busy_ratio), "{load:?}");
    assert!(load.busiest_loop >= load.busy_ratio, "{load:?}");
    // The API reports the SFU's figures (the rates may have moved on since).
    let direct = node.sfu.load();
    assert_eq!(
        (direct.loops, direct.calls, direct.connections),
        (load.loops, load.calls, load.connections)
    );

    // Hold and resume through the API.
    api.set_held("c1", true).await.expect("hold");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = op.stats().packets("video");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(op.stats().packets("video"), before, "nothing flows on hold");
    api.set_held("c1", false).await.expect("resume");
    grows(&op, |s| s.packets("video"), 20).await;
    grows(&kiosk, |s| s.packets("video"), 20).await;

    // The operator leaves, then the call ends.
    api.leave("c1", who("operator:m", MediaRole::Operator))
        .await
        .expect("leave");
    load_until(&api, |l| l.connections == 1).await;
    api.end_call("c1").await.expect("end");
    load_until(&api, |l| l.calls == 0 && l.connections == 0).await;
    assert!(api.stats().await.expect("stats").is_empty());
    // Ending it again is harmless.
    api.end_call("c1").await.expect("end again");
}

/// Sends `body` to `path` with `header` (or none) and returns the status and the error code.
async fn raw(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    body: &str,
    header: Option<String>,
) -> (u16, Option<String>) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", node.url()))
        .body(body.to_owned());
    if let Some(h) = header {
        req = req.header(auth::HEADER, h);
    }
    let resp = req.send().await.expect("the node answers");
    let status = resp.status().as_u16();
    let code = resp.json::<ErrorBody>().await.ok().map(|b| b.error.code);
    (status, code)
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_and_change_nothing() {
    let node = node().await;
    let (kiosk, op) = call(&node, "c1").await;
    let end = r#"{"call_id":"c1"}"#;
    let held = r#"{"call_id":"c1","held":true}"#;
    let now = auth::now_ms();
    let post = reqwest::Method::POST;
    let sign = |secret: &Secret, path: &str, body: &str, t: u64| {
        Some(auth::sign(secret, "POST", path, body.as_bytes(), t))
    };
    let other = Secret::random();
    let refused = (401, Some("unauthorized".to_owned()));
    let cases = [
        ("unsigned", "/internal/v1/end", end, None),
        (
            "another secret",
            "/internal/v1/end",
            end,
            sign(&other, "/internal/v1/end", end, now),
        ),
        (
            "stale",
            "/internal/v1/end",
            end,
            sign(&node.secret, "/internal/v1/end", end, now - 60_000),
        ),
        (
            "from the future",
            "/internal/v1/end",
            end,
            sign(&node.secret, "/internal/v1/end", end, now + 60_000),
        ),
        (
            "signed for another route",
            "/internal/v1/end",
            end,
            sign(&node.secret, "/internal/v1/stats", end, now),
        ),
        (
            "another body",
            "/internal/v1/end",
            end,
            sign(&node.secret, "/internal/v1/end", r#"{"call_id":"c2"}"#, now),
        ),
        (
            "malformed",
            "/internal/v1/end",
            end,
            Some("t=1,sig=zz".to_owned()),
        ),
        ("unsigned hold", "/internal/v1/held", held, None),
        (
            "stale hold",
            "/internal/v1/held",
            held,
            sign(&node.secret, "/internal/v1/held", held, now - 31_000),
        ),
        ("unsigned unknown route", "/nowhere", end, None),
    ];
    for (what, path, body, header) in cases {
        assert_eq!(
            raw(&node, post.clone(), path, body, header).await,
            refused,
            "{what}"
        );
    }
    // Reading needs a signature too.
    assert_eq!(
        raw(&node, reqwest::Method::GET, "/internal/v1/stats", "", None).await,
        refused
    );
    // A client with another secret is refused, and told so.
    let wrong = MediaNodeClient::new(&node.url(), Arc::new(other)).unwrap();
    let r = wrong.end_call("c1").await;
    assert!(
        matches!(&r, Err(MediaError::Internal(m)) if m.contains("refused")),
        "{r:?}"
    );
    assert!(matches!(wrong.stats().await, Err(MediaError::Internal(_))));

    // Nothing happened: the call still has both parties, unheld, and media flows.
    grows(&op, |s| s.packets("video"), 20).await;
    grows(&kiosk, |s| s.packets("video"), 20).await;
    let stats = node.client().stats().await.expect("stats");
    let c1 = stats.iter().find(|c| c.call_id == "c1").expect("c1");
    assert_eq!(c1.connected.len(), 2, "{c1:?}");
    assert!(!c1.held);

    // A rightly signed hold is done once; the same request captured and sent again is refused.
    let h = sign(&node.secret, "/internal/v1/held", held, auth::now_ms());
    assert_eq!(
        raw(&node, post.clone(), "/internal/v1/held", held, h.clone()).await,
        (200, None)
    );
    node.client().set_held("c1", false).await.expect("resume");
    assert_eq!(
        raw(&node, post.clone(), "/internal/v1/held", held, h).await,
        refused,
        "a replay"
    );
    let stats = node.client().stats().await.expect("stats");
    assert!(!stats.iter().find(|c| c.call_id == "c1").expect("c1").held);

    // The same request, rightly signed, is done.
    let h = sign(&node.secret, "/internal/v1/end", end, auth::now_ms());
    assert_eq!(
        raw(&node, post, "/internal/v1/end", end, h).await,
        (200, None)
    );
    assert!(node.client().stats().await.expect("stats").is_empty());
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let node = node().await;
    let api = node.client();
    let kiosk = who("kiosk:b", MediaRole::Kiosk);
    let r = api
        .offer("c9", kiosk.clone(), "not sdp".into(), false)
        .await;
    assert!(matches!(r, Err(MediaError::BadSdp(_))), "{r:?}");
    let r = api.offer("", kiosk.clone(), "not sdp".into(), false).await;
    assert!(matches!(r, Err(MediaError::BadSdp(_))), "{r:?}");
    let c = sfu::Candidate {
        candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    assert_eq!(
        api.candidate("no-such-call", kiosk.clone(), c).await,
        Err(MediaError::NoConnection)
    );
    // A garbled candidate for a real connection.
    let client = MediaClient::start(ClientOptions::default()).await.unwrap();
    api.offer("c9", kiosk.clone(), client.offer().to_owned(), false)
        .await
        .expect("answer");
    let garbage = sfu::Candidate {
        candidate: "candidate:garbage".into(),
        sdp_mid: None,
        sdp_mline_index: None,
    };
    let r = api.candidate("c9", kiosk.clone(), garbage).await;
    assert!(matches!(r, Err(MediaError::BadCandidate(_))), "{r:?}");

    // Signed but malformed requests.
    let signed = |method: &str, path: &str, body: &str| {
        Some(auth::sign(
            &node.secret,
            method,
            path,
            body.as_bytes(),
            auth::now_ms(),
        ))
    };
    let post = reqwest::Method::POST;
    for body in ["", "{", "[]", r#"{"call_id":"c9"}"#, r#"{"call_id":1}"#] {
        assert_eq!(
            raw(
                &node,
                post.clone(),
                "/internal/v1/leave",
                body,
                signed("POST", "/internal/v1/leave", body)
            )
            .await,
            (400, Some("invalid".into())),
            "{body:?}"
        );
    }
    let body = r#"{"call_id":"c9","principal":"kiosk:b","role":"citizen"}"#;
    assert_eq!(
        raw(
            &node,
            post.clone(),
            "/internal/v1/leave",
            body,
            signed("POST", "/internal/v1/leave", body)
        )
        .await,
        (400, Some("invalid".into()))
    );
    let long = "x".repeat(300);
    let body = format!(r#"{{"call_id":"{long}"}}"#);
    assert_eq!(
        raw(
            &node,
            post.clone(),
            "/internal/v1/end",
            &body,
            signed("POST", "/internal/v1/end", &body)
        )
        .await,
        (400, Some("invalid".into()))
    );
    let big = format!(r#"{{"call_id":"{}"}}"#, "x".repeat(300 * 1024));
    assert_eq!(
        raw(
            &node,
            post.clone(),
            "/internal/v1/end",
            &big,
            signed("POST", "/internal/v1/end", &big)
        )
        .await,
        (413, Some("invalid".into()))
    );
    assert_eq!(
        raw(
            &node,
            post,
            "/internal/v1/nowhere",
            "{}",
            signed("POST", "/internal/v1/nowhere", "{}")
        )
        .await,
        (404, Some("not_found".into()))
    );
    // The node still works.
    assert_eq!(api.health().await, Ok(1));
    drop(client);
}

#[tokio::test]
async fn an_unreachable_node_is_unavailable() {
    let secret = Arc::new(Secret::random());
    // A port that nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = MediaNodeClient::new(&format!("http://127.0.0.1:{port}"), secret.clone()).unwrap();
    let r = tokio::time::timeout(T, closed.end_call("c1"))
        .await
        .expect("a refused connection fails at once");
    assert_eq!(r, Err(MediaError::Unavailable));
    let r = tokio::time::timeout(
        T,
        closed.offer("c1", who("kiosk:a", MediaRole::Kiosk), "v=0".into(), false),
    )
    .await
    .expect("in time");
    assert!(matches!(r, Err(MediaError::Unavailable)), "{r:?}");
    assert!(matches!(
        tokio::time::timeout(T, closed.load())
            .await
            .expect("in time"),
        Err(MediaError::Unavailable)
    ));

    // A node that accepts connections and never answers: the request timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let slow = MediaNodeClient::with_timeouts(
        &format!("http://{addr}"),
        secret.clone(),
        Duration::from_millis(500),
        Duration::from_millis(500),
    )
    .unwrap();
    let r = tokio::time::timeout(T, slow.health())
        .await
        .expect("the request times out");
    assert_eq!(r, Err(MediaError::Unavailable));
    hold.abort();

    // URLs that are not an http(s) base are refused up front.
    for bad in ["not a url", "ftp://127.0.0.1:1", "http://127.0.0.1:1/?x=1"] {
        assert!(
            matches!(
                MediaNodeClient::new(bad, secret.clone()),
                Err(MediaError::Internal(_))
            ),
            "{bad}"
        );
    }
}
