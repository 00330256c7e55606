//! Connection limits (issue 15, rows 2, 3 and 15), against the real server on port 0 with short
//! timeouts and small caps from the configuration:
//!
//! - an idle connection, half-sent headers, a half-sent body, an idle kept-alive connection and a
//!   stalled TLS handshake are closed by the server, on both listeners;
//! - one address past its connection cap is refused while another address, `/healthz` and the
//!   admin listener still answer, and the public listener's total cap leaves the admin listener
//!   working;
//! - WebSocket upgrades past the per-address cap get `429 rate_limited`;
//! - one kiosk token past the per-principal session cap gets `rate_limited` and close code 4429;
//! - a trusted proxy (`limits.trusted_proxies`) is not capped per address at accept, and the
//!   WebSocket cap counts the client it names in `X-Forwarded-For`, which an untrusted peer cannot
//!   do.
//!
//! Timing is only checked to be "closed by the timeout, not never": a generous bound several times
//! the configured timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};

/// Far more than the 1 s timeouts the tests configure, far less than "never".
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

/// A TCP connection to `to` from the loopback address `from` (127.0.0.1, 127.0.0.2, …).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes the connection and returns what it sent; panics if it is still
/// open after [`CLOSED_WITHIN`]. A reset counts as closed.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {CLOSED_WITHIN:?}; it sent {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// One `GET path` with `Connection: close` over a fresh connection from `from`; the whole answer.
async fn get_from(from: &str, to: SocketAddr, path: &str) -> String {
    let mut stream = connect_from(from, to).await;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: sportello\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    read_until_closed(&mut stream).await
}

async fn short_timeouts() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.header_timeout_s = 1;
        c.limits.body_timeout_s = 1;
    })
    .await
}

#[tokio::test]
async fn an_idle_connection_is_closed_on_both_listeners() {
    let t = short_timeouts().await;
    for addr in [t.server.addr, t.server.admin_addr] {
        let mut idle = connect_from("127.0.0.1", addr).await;
        assert_eq!(read_until_closed(&mut idle).await, "", "{addr}");
    }
}

#[tokio::test]
async fn half_sent_headers_are_closed() {
    let t = short_timeouts().await;
    for addr in [t.server.addr, t.server.admin_addr] {
        let mut half = connect_from("127.0.0.1", addr).await;
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: sportello\r\nX-Slow: ")
            .await
            .unwrap();
        let answer = read_until_closed(&mut half).await;
        assert!(!answer.contains("200 OK"), "{addr}: {answer}");
    }
    // A client that trickles its head byte by byte is held to the same deadline.
    let mut slow = connect_from("127.0.0.1", t.server.addr).await;
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: sportello\r\nX-Slow: yes"
            .iter()
            .cycle()
        {
            if slow.write_all(&[*b]).await.is_err() {
                return slow;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!("cycle never ends")
    });
    let mut slow = tokio::time::timeout(CLOSED_WITHIN, trickle)
        .await
        .expect("the trickling client is cut off")
        .unwrap();
    read_until_closed(&mut slow).await;
}

#[tokio::test]
async fn a_half_sent_body_fails_and_the_connection_closes() {
    let t = short_timeouts().await;
    let mut half = connect_from("127.0.0.1", t.server.addr).await;
    half.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: sportello\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"username\":\"mar",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut half).await;
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "a request whose body never came cannot succeed: {answer}"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_its_response() {
    let t = short_timeouts().await;
    let mut stream = connect_from("127.0.0.1", t.server.addr).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sportello\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed() {
    let (t, _certified, _dir) = TestServer::start_tls(|c| c.limits.header_timeout_s = 1).await;
    let mut idle = connect_from("127.0.0.1", t.server.addr).await;
    read_until_closed(&mut idle).await;
    // Half a ClientHello: a TLS record header that promises more than comes.
    let mut half = connect_from("127.0.0.1", t.server.addr).await;
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    read_until_closed(&mut half).await;
}

#[tokio::test]
async fn one_address_past_its_cap_is_refused_while_others_and_healthz_are_served() {
    let cap = 5;
    let t = TestServer::start_with(|c| {
        c.limits.connections_per_address = cap;
        // Long enough that the held connections stay open for the whole test.
        c.limits.header_timeout_s = 120;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(connect_from("127.0.0.1", t.server.addr).await);
    }
    // The server counts a connection when it accepts it; wait until it has counted them all.
    let limits = t.server.state.limits.clone();
    let local = "127.0.0.1".parse().unwrap();
    tokio::time::timeout(CLOSED_WITHIN, async {
        while limits.public.open_from(local) < cap as usize {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held connections are accepted");

    let mut refused = connect_from("127.0.0.1", t.server.addr).await;
    let answer = read_until_closed(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("rate_limited"), "{answer}");

    // Another address is served, on the public and the admin listener.
    let other = get_from("127.0.0.2", t.server.addr, "/healthz").await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    let admin = get_from("127.0.0.1", t.server.admin_addr, "/healthz").await;
    assert!(admin.starts_with("HTTP/1.1 200"), "{admin}");
    let metrics = get_from("127.0.0.1", t.server.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(
            r#"sportello_connections_refused_total{listener="public",reason="address"} 1"#
        ),
        "{metrics}"
    );

    // A closed connection gives its place back.
    drop(held.pop());
    tokio::time::timeout(CLOSED_WITHIN, async {
        while limits.public.open_from(local) >= cap as usize {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed connection is given back");
    let again = get_from("127.0.0.1", t.server.addr, "/healthz").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

#[tokio::test]
async fn the_public_total_cap_leaves_the_admin_listener_answering() {
    let t = TestServer::start_with(|c| {
        c.limits.connections_per_address = 0;
        c.limits.max_connections = 4;
        c.limits.header_timeout_s = 120;
    })
    .await;
    assert_eq!(t.server.state.limits.public.open_cap(), 4);
    let mut held = Vec::new();
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        held.push(connect_from(from, t.server.addr).await);
    }
    let limits = t.server.state.limits.clone();
    tokio::time::timeout(CLOSED_WITHIN, async {
        while limits.public.open() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held connections are accepted");
    let mut refused = connect_from("127.0.0.5", t.server.addr).await;
    let answer = read_until_closed(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let admin = get_from("127.0.0.1", t.server.admin_addr, "/healthz").await;
    assert!(admin.starts_with("HTTP/1.1 200"), "{admin}");
}

#[tokio::test]
async fn websockets_past_the_per_address_cap_get_429() {
    let t = TestServer::start_with(|c| c.limits.ws_per_address = 2).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(t.connect().await);
    }
    match tokio_tungstenite::connect_async(t.ws_url()).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("rate_limited"), "{body}");
        }
        Err(other) => panic!("expected a 429 answer, got {other}"),
        Ok(_) => panic!("a third WebSocket from one address was accepted"),
    }
    // Another address still gets its WebSocket, and it works.
    let stream = connect_from("127.0.0.2", t.server.addr).await;
    let (mut ws, _) = tokio_tungstenite::client_async(t.ws_url(), stream)
        .await
        .unwrap();
    ws.send(Message::Text(
        serde_json::json!({"type":"auth","id":"1","token":t.kiosk_token()})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => break serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(reply["type"], "ok");
}

#[tokio::test]
async fn one_kiosk_token_past_the_session_cap_is_refused() {
    let cap = 3;
    let t = TestServer::start_with(|c| c.limits.sessions_per_principal = cap).await;
    let token = t.kiosk_token();
    let mut sessions = Vec::new();
    for _ in 0..cap {
        let mut ws = t.connect().await;
        assert_eq!(auth(&mut ws, &token).await["type"], "ok");
        sessions.push(ws);
    }
    let mut extra = t.connect().await;
    let refused = auth(&mut extra, &token).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "rate_limited");
    let close = recv_close(&mut extra).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4429);
    assert_eq!(u16::from(close.code), protocol::CLOSE_TOO_MANY_SESSIONS);

    // Another principal is not affected.
    let operator = t.operator_token().await;
    let mut ws = t.connect().await;
    assert_eq!(auth(&mut ws, &operator).await["type"], "ok");

    // Once one of the kiosk's sockets closes, a new session takes its place.
    let mut closing = sessions.pop().unwrap();
    closing.close(None).await.unwrap();
    while closing.next().await.is_some() {}
    let mut accepted = false;
    for _ in 0..50 {
        let mut ws = t.connect().await;
        if auth(&mut ws, &token).await["type"] == "ok" {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "a closed session did not make way for a new one");
}

/// A WebSocket upgrade from `from` with `X-Forwarded-For: forwarded_for`: the socket, or the
/// refusal's status.
async fn ws_from(
    t: &TestServer,
    from: &str,
    forwarded_for: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, u16> {
    use tungstenite::client::IntoClientRequest as _;
    let mut request = t.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    let stream = connect_from(from, t.server.addr).await;
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket from {from}: {e}"),
    }
}

#[tokio::test]
async fn a_trusted_proxy_is_not_capped_at_accept_and_its_clients_are_capped_apart() {
    let t = TestServer::start_with(|c| {
        c.limits.connections_per_address = 2;
        c.limits.ws_per_address = 1;
        c.limits.header_timeout_s = 120;
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let limits = t.server.state.limits.clone();
    // The proxy holds more connections than one address may: all accepted, counted in all only.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.1", t.server.addr).await);
    }
    tokio::time::timeout(CLOSED_WITHIN, async {
        while limits.public.open() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the proxy's connections are accepted");
    let through = get_from("127.0.0.1", t.server.addr, "/healthz").await;
    assert!(through.starts_with("HTTP/1.1 200"), "{through}");
    // Another peer is capped as before.
    let mut other = Vec::new();
    for _ in 0..2 {
        other.push(connect_from("127.0.0.2", t.server.addr).await);
    }
    tokio::time::timeout(CLOSED_WITHIN, async {
        while limits.public.open_from("127.0.0.2".parse().unwrap()) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the other peer's connections are accepted");
    let mut refused = connect_from("127.0.0.2", t.server.addr).await;
    assert!(read_until_closed(&mut refused)
        .await
        .starts_with("HTTP/1.1 429"));
    drop((held, other));

    // Through the proxy, the WebSocket cap counts each forwarded client.
    let _a = ws_from(&t, "127.0.0.1", "198.51.100.1").await.unwrap();
    assert_eq!(
        ws_from(&t, "127.0.0.1", "198.51.100.1").await.err(),
        Some(429)
    );
    assert_eq!(
        ws_from(&t, "127.0.0.1", "203.0.113.5, 198.51.100.1")
            .await
            .err(),
        Some(429)
    );
    let _b = ws_from(&t, "127.0.0.1", "198.51.100.2").await.unwrap();
    // From an untrusted peer the header is ignored: the peer is the client.
    let _c = ws_from(&t, "127.0.0.2", "198.51.100.3").await.unwrap();
    assert_eq!(
        ws_from(&t, "127.0.0.2", "198.51.100.4").await.err(),
        Some(429)
    );
    // A malformed header from the proxy leaves the proxy's own address.
    let _p = ws_from(&t, "127.0.0.1", "not-an-address").await.unwrap();
    assert_eq!(ws_from(&t, "127.0.0.1", "").await.err(), Some(429));
}
