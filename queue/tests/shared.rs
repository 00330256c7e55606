//! One conformance suite for [`queue::Shared`], run against [`MemoryShared`] and [`RedisShared`] (on a
//! real `redis-server`).
//!
//! Redis expires records itself, on its own clock, so the suite runs on the real clock for both: times
//! are `Time::now()`, records meant to expire get a short time to live and the test sleeps well past
//! it, and records meant to stay get a long one. Nothing asserts how long anything took.

use std::sync::Arc;
use std::time::Duration;

use queue::{MemoryShared, QueueConfig, RedisShared, RedisStore, Shared, Tenant, Time};
use testkit::RedisServer;

/// Long enough never to run out during a test.
const LONG: Duration = Duration::from_secs(600);
/// Short enough to wait out.
const SHORT: Duration = Duration::from_millis(200);
/// Comfortably past [`SHORT`].
const PAST_SHORT: Duration = Duration::from_millis(700);
/// How long a bus message may take to arrive before the test fails.
const DELIVERY: Duration = Duration::from_secs(20);

fn tenant(name: &str) -> Tenant {
    Tenant::new(format!("{name}-{}", std::process::id())).expect("tenant")
}

/// Two nodes' views of the same shared state.
struct Nodes<S> {
    a: S,
    b: S,
}

async fn records<S: Shared>(n: &Nodes<S>) {
    let t = tenant("records");
    let (a, b) = (&n.a, &n.b);
    // put / get, seen by the other node.
    a.put(&t, "ns", "k1", "v1", LONG, Time::now())
        .await
        .unwrap();
    assert_eq!(
        b.get(&t, "ns", "k1", Time::now()).await.unwrap().as_deref(),
        Some("v1")
    );
    a.put(&t, "ns", "k1", "v2", LONG, Time::now())
        .await
        .unwrap();
    assert_eq!(
        b.get(&t, "ns", "k1", Time::now()).await.unwrap().as_deref(),
        Some("v2")
    );
    assert_eq!(b.get(&t, "ns", "nope", Time::now()).await.unwrap(), None);
    // Keys may contain ':'; namespaces are separate.
    a.put(&t, "ns", "a:b", "colon", LONG, Time::now())
        .await
        .unwrap();
    a.put(&t, "other", "k1", "elsewhere", LONG, Time::now())
        .await
        .unwrap();
    assert_eq!(
        b.get(&t, "ns", "a:b", Time::now())
            .await
            .unwrap()
            .as_deref(),
        Some("colon")
    );
    // Tenants are separate.
    let t2 = tenant("records-other");
    assert_eq!(b.get(&t2, "ns", "k1", Time::now()).await.unwrap(), None);

    // put_new claims once, on either node.
    assert!(a
        .put_new(&t, "claims", "job", "a", LONG, Time::now())
        .await
        .unwrap());
    assert!(!b
        .put_new(&t, "claims", "job", "b", LONG, Time::now())
        .await
        .unwrap());
    assert_eq!(
        b.get(&t, "claims", "job", Time::now())
            .await
            .unwrap()
            .as_deref(),
        Some("a")
    );

    // swap: compare and set, against a value or absence.
    assert!(!b
        .swap(&t, "ns", "k1", Some("v1"), "v3", LONG, Time::now())
        .await
        .unwrap());
    assert!(b
        .swap(&t, "ns", "k1", Some("v2"), "v3", LONG, Time::now())
        .await
        .unwrap());
    assert!(!a
        .swap(&t, "ns", "k1", None, "v4", LONG, Time::now())
        .await
        .unwrap());
    assert!(a
        .swap(&t, "ns", "fresh", None, "f", LONG, Time::now())
        .await
        .unwrap());
    assert_eq!(
        a.get(&t, "ns", "k1", Time::now()).await.unwrap().as_deref(),
        Some("v3")
    );

    // list: every live record of the namespace, in key order.
    assert_eq!(
        b.list(&t, "ns", Time::now()).await.unwrap(),
        vec![
            ("a:b".to_owned(), "colon".to_owned()),
            ("fresh".to_owned(), "f".to_owned()),
            ("k1".to_owned(), "v3".to_owned()),
        ]
    );
    assert_eq!(
        b.list(&t, "other", Time::now()).await.unwrap(),
        vec![("k1".to_owned(), "elsewhere".to_owned())]
    );
    assert!(b.list(&t, "empty", Time::now()).await.unwrap().is_empty());

    // delete.
    assert!(b.delete(&t, "ns", "fresh", Time::now()).await.unwrap());
    assert!(!a.delete(&t, "ns", "fresh", Time::now()).await.unwrap());
    assert_eq!(a.get(&t, "ns", "fresh", Time::now()).await.unwrap(), None);
    assert_eq!(b.list(&t, "ns", Time::now()).await.unwrap().len(), 2);
}

async fn expiry<S: Shared>(n: &Nodes<S>) {
    let t = tenant("expiry");
    let (a, b) = (&n.a, &n.b);
    a.put(&t, "ttl", "short", "s", SHORT, Time::now())
        .await
        .unwrap();
    assert!(a
        .put_new(&t, "ttl", "claim", "c", SHORT, Time::now())
        .await
        .unwrap());
    assert!(a
        .swap(&t, "ttl", "swapped", None, "w", SHORT, Time::now())
        .await
        .unwrap());
    a.put(&t, "ttl", "long", "l", LONG, Time::now())
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    for k in ["short", "claim", "swapped"] {
        assert_eq!(b.get(&t, "ttl", k, Time::now()).await.unwrap(), None, "{k}");
    }
    assert_eq!(
        b.list(&t, "ttl", Time::now()).await.unwrap(),
        vec![("long".to_owned(), "l".to_owned())]
    );
    // An expired record is absent for every operation.
    assert!(!b.delete(&t, "ttl", "short", Time::now()).await.unwrap());
    assert!(b
        .put_new(&t, "ttl", "claim", "again", LONG, Time::now())
        .await
        .unwrap());
    assert!(b
        .swap(&t, "ttl", "swapped", None, "again", LONG, Time::now())
        .await
        .unwrap());
    // A put renews the time to live.
    a.put(&t, "ttl", "renewed", "1", SHORT, Time::now())
        .await
        .unwrap();
    a.put(&t, "ttl", "renewed", "2", LONG, Time::now())
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        b.get(&t, "ttl", "renewed", Time::now())
            .await
            .unwrap()
            .as_deref(),
        Some("2")
    );
}

/// The error code of a call that must fail.
fn code<T: std::fmt::Debug>(r: Result<T, queue::Error>) -> &'static str {
    r.unwrap_err().code()
}

async fn bad_names<S: Shared>(n: &Nodes<S>) {
    let t = tenant("names");
    let s = &n.a;
    let now = Time::now();
    let long = "x".repeat(201);
    for (ns, key) in [
        ("", "k"),
        ("a:b", "k"),
        ("n\ts", "k"),
        (long.as_str(), "k"),
        ("ns", ""),
        ("ns", "a\nb"),
        ("ns", long.as_str()),
    ] {
        let what = format!("{ns:?} {key:?}");
        assert_eq!(
            code(s.put(&t, ns, key, "v", LONG, now).await),
            "invalid",
            "put {what}"
        );
        assert_eq!(
            code(s.put_new(&t, ns, key, "v", LONG, now).await),
            "invalid",
            "put_new {what}"
        );
        assert_eq!(
            code(s.swap(&t, ns, key, None, "v", LONG, now).await),
            "invalid",
            "swap {what}"
        );
        assert_eq!(code(s.get(&t, ns, key, now).await), "invalid", "get {what}");
        assert_eq!(
            code(s.delete(&t, ns, key, now).await),
            "invalid",
            "delete {what}"
        );
    }
    for ns in ["", "a:b", "n\ts", long.as_str()] {
        let e = s.list(&t, ns, now).await.unwrap_err();
        assert_eq!(e.code(), "invalid", "list {ns:?}");
    }
    // Any text is a value.
    s.put(&t, "ns", "k", "line\nbreak\0and nul", LONG, now)
        .await
        .unwrap();
    assert_eq!(
        s.get(&t, "ns", "k", now).await.unwrap().as_deref(),
        Some("line\nbreak\0and nul")
    );
}

async fn recv(rx: &mut queue::BusReceiver) -> Arc<str> {
    tokio::time::timeout(DELIVERY, rx.recv())
        .await
        .expect("a bus message in time")
        .expect("bus open")
}

async fn bus<S: Shared>(n: &Nodes<S>) {
    let t = tenant("bus");
    let (a, b) = (&n.a, &n.b);
    // Sent before anybody listens: nobody gets it.
    a.publish(&t, "before").await.unwrap();
    let mut on_a = a.listen(&t).await.unwrap();
    let mut on_b = b.listen(&t).await.unwrap();
    // Publishers on both nodes, one after the other: every listener gets all of it, in order.
    let mut sent = Vec::new();
    for i in 0..100 {
        let m = format!("m{i}");
        if i % 2 == 0 { a } else { b }
            .publish(&t, &m)
            .await
            .unwrap();
        sent.push(m);
    }
    for rx in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 0..sent.len() {
            got.push(recv(rx).await.to_string());
        }
        assert_eq!(got, sent);
    }
    // A listener that comes later does not get older messages, only newer ones.
    let mut late = b.listen(&t).await.unwrap();
    // Another tenant's bus is separate.
    let other = tenant("bus-other");
    let mut other_rx = a.listen(&other).await.unwrap();
    a.publish(&other, "elsewhere").await.unwrap();
    a.publish(&t, "after").await.unwrap();
    assert_eq!(&*recv(&mut late).await, "after");
    assert_eq!(&*recv(&mut on_a).await, "after");
    assert_eq!(&*recv(&mut on_b).await, "after");
    assert_eq!(&*recv(&mut other_rx).await, "elsewhere");
    // A listener on the other node created later, too.
    let mut late_a = a.listen(&t).await.unwrap();
    b.publish(&t, "last").await.unwrap();
    assert_eq!(&*recv(&mut late_a).await, "last");
    assert_eq!(&*recv(&mut late).await, "last");
}

async fn suite<S: Shared>(n: Nodes<S>) {
    records(&n).await;
    expiry(&n).await;
    bad_names(&n).await;
    bus(&n).await;
}

#[tokio::test]
async fn memory_shared_conforms() {
    let s = MemoryShared::new();
    suite(Nodes { a: s.clone(), b: s }).await;
}

#[tokio::test]
async fn redis_shared_conforms() {
    let server = RedisServer::start().await;
    // Two stores, as two nodes would have, each with its own connection and bus reader.
    let node = || async {
        let store = RedisStore::connect(&server.url(), QueueConfig::default())
            .await
            .expect("connect");
        RedisShared::new(store)
    };
    suite(Nodes {
        a: node().await,
        b: node().await,
    })
    .await;
}
