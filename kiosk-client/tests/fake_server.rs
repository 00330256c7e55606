//! The clients against a small scripted WebSocket server on loopback (not the Sportello server): the
//! socket paths — auth, reply routing, event buffering, pings, close codes, network cuts, resume, the
//! bot's accept policy and the binary's exit codes — without waiting for the real call handling.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiosk_client::{ClientError, HeadlessKiosk, OperatorBot, Policy, Session, REASON_GONE};
use protocol::{Auth, ErrorCode, Event, Request};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// How a connection to the fake server ended, as the server saw it.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The client sent a close frame with this code.
    Closed(Option<u16>),
    /// The TCP stream ended without a close frame.
    Eof,
    /// The server closed it.
    ByServer,
}

#[derive(Debug)]
enum Report {
    Pong,
    Ended(Ending),
    Frame(Value),
}

struct Fake {
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<Report>,
}

impl Fake {
    fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.addr)
    }

    async fn report(&mut self, mut pred: impl FnMut(&Report) -> bool) -> Report {
        loop {
            let r = tokio::time::timeout(Duration::from_secs(5), self.reports.recv())
                .await
                .expect("a report in time")
                .expect("server alive");
            if pred(&r) {
                return r;
            }
        }
    }
}

async fn start() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(ServerState::default());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    serve(ws, tx, shared).await;
                }
            });
        }
    });
    Fake { addr, reports: rx }
}

fn ok(id: &Value, extra: Value) -> Message {
    let mut v = extra;
    if v.is_null() {
        v = json!({});
    }
    v["type"] = json!("ok");
    v["id"] = id.clone();
    Message::Text(v.to_string().into())
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

/// State shared by the fake server's connections.
#[derive(Default)]
struct ServerState {
    /// Sessions opened so far (for their ids).
    sessions: AtomicU32,
    /// Set by `test.forget`: resumed kiosk sessions then have no call (it ended meanwhile).
    forgotten: AtomicBool,
}

/// One connection of the fake server. Kiosk token `kiosk`, operator token `op`; anything else is
/// refused like the real server does.
async fn serve(
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    reports: mpsc::UnboundedSender<Report>,
    shared: Arc<ServerState>,
) {
    let mut role = "";
    let mut offers_left = 0u32;
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(_)) | None => {
                let _ = reports.send(Report::Ended(Ending::Eof));
                return;
            }
        };
        let frame: Value = match msg {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            Message::Pong(_) => {
                let _ = reports.send(Report::Pong);
                continue;
            }
            Message::Close(f) => {
                let _ = reports.send(Report::Ended(Ending::Closed(f.map(|f| u16::from(f.code)))));
                let _ = ws.close(None).await;
                // Drain until the stream ends.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            _ => continue,
        };
        let _ = reports.send(Report::Frame(frame.clone()));
        let id = frame["id"].clone();
        let kind = frame["type"].as_str().unwrap_or_default().to_owned();
        let mut out: Vec<Message> = Vec::new();
        match kind.as_str() {
            "auth" => {
                let token = frame["token"].as_str().unwrap_or_default();
                role = match token {
                    "kiosk" => "kiosk",
                    "op" => "operator",
                    _ => "",
                };
                if role.is_empty() {
                    let _ = ws
                        .send(text(json!({"type":"error","id":id,"code":"unauthorized","message":"bad token"})))
                        .await;
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(4401),
                            reason: "authentication failed".into(),
                        })))
                        .await;
                    let _ = reports.send(Report::Ended(Ending::ByServer));
                    return;
                }
                let resumed = frame["resume"].is_string();
                let n = shared.sessions.fetch_add(1, Ordering::Relaxed);
                let session_id = frame["resume"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("s{n}"));
                out.push(ok(
                    &id,
                    json!({"session_id": session_id, "role": role, "principal_id": if role == "kiosk" {"municipio"} else {"maria.rossi"}, "heartbeat_s": 15, "resumed": resumed}),
                ));
                let calls = if resumed && role == "kiosk" {
                    if shared.forgotten.load(Ordering::Relaxed) {
                        json!([])
                    } else {
                        json!([{"call_id":"c1","state":"waiting","service":"anagrafe","language":"it","waited_s":3,"position":1}])
                    }
                } else {
                    json!([])
                };
                let mut sync = json!({"type":"state.sync","calls": calls});
                if resumed && role == "operator" {
                    sync["operator_state"] = json!({"operator_id":"maria.rossi","state":"available"});
                }
                out.push(text(sync));
                // A ping right away: the client must answer it while nobody waits for anything.
                out.push(Message::Ping(vec![1, 2, 3].into()));
            }
            "ping" => out.push(ok(&id, Value::Null)),
            "call.request" => {
                out.push(ok(&id, json!({"call_id": "c1"})));
                out.push(text(json!({"type":"queue.update","call_id":"c1","position":2,"estimated_wait_s":null})));
                out.push(text(json!({"type":"media.stats","call_id":"c1"})));
                out.push(text(json!({"type":"queue.update","call_id":"c1","position":1,"estimated_wait_s":30})));
                if frame["service"] == "instant" {
                    out.push(text(json!({"type":"call.assigned","call_id":"c1","operator":{"id":"maria.rossi","display_name":"Maria Rossi"}})));
                    out.push(text(json!({"type":"call.ended","call_id":"c1","reason":"completed"})));
                }
            }
            "test.forget" => {
                shared.forgotten.store(true, Ordering::Relaxed);
                out.push(ok(&id, Value::Null));
            }
            "call.cancel" => {
                out.push(ok(&id, Value::Null));
                out.push(text(json!({"type":"call.ended","call_id":"c1","reason":"abandoned"})));
            }
            "test.assign_and_complete" => {
                out.push(ok(&id, Value::Null));
                out.push(text(json!({"type":"call.assigned","call_id":"c1","operator":{"id":"maria.rossi","display_name":"Maria Rossi"}})));
                out.push(text(json!({"type":"call.held","call_id":"c1"})));
                out.push(text(json!({"type":"call.resumed","call_id":"c1"})));
                out.push(text(json!({"type":"call.ended","call_id":"c1","reason":"completed"})));
            }
            "test.close" => {
                out.push(ok(&id, Value::Null));
                out.push(Message::Close(Some(CloseFrame {
                    code: CloseCode::from(4409),
                    reason: "superseded".into(),
                })));
            }
            "presence.set" if role == "operator" => {
                out.push(ok(&id, Value::Null));
                if frame["state"] == "available" {
                    offers_left = 2;
                    for c in ["c1", "c2"] {
                        out.push(text(json!({"type":"call.offered","call_id":c,"kiosk":{"id":"municipio","name":"Municipio","location":"Parma"},"service":"anagrafe","language":"it","waited_s":1,"expires_in_s":10})));
                    }
                }
            }
            "call.accept" if offers_left > 0 => {
                offers_left -= 1;
                let call = frame["call_id"].clone();
                out.push(ok(&id, Value::Null));
                out.push(text(json!({"type":"call.connected","call_id":call,"kiosk":{"id":"municipio","name":"Municipio","location":"Parma"}})));
            }
            "call.end" => {
                let call = frame["call_id"].clone();
                out.push(ok(&id, Value::Null));
                out.push(text(json!({"type":"call.ended","call_id":call,"reason":"completed"})));
            }
            "wrapup.done" => {
                let call = frame["call_id"].clone();
                out.push(ok(&id, Value::Null));
                out.push(text(json!({"type":"wrapup.ended","call_id":call})));
            }
            "slow" => {} // never answered
            _ => out.push(text(json!({"type":"error","id":id,"code":"invalid","message":format!("unknown message type {kind:?}")}))),
        }
        for m in out {
            let closing = matches!(m, Message::Close(_));
            if ws.send(m).await.is_err() {
                return;
            }
            if closing {
                let _ = reports.send(Report::Ended(Ending::ByServer));
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
        }
    }
}

const T: Duration = Duration::from_secs(5);

fn kiosk_auth() -> Auth {
    Auth {
        token: "kiosk".into(),
        resume: None,
        capabilities: vec![],
    }
}

#[tokio::test]
async fn session_routes_replies_buffers_events_and_answers_pings() {
    let mut fake = start().await;
    let (mut s, ok) = Session::connect(&fake.ws_url(), kiosk_auth())
        .await
        .unwrap();
    assert_eq!(ok.principal_id, "municipio");
    assert_eq!(s.session_id(), ok.session_id);
    assert_eq!(s.role(), protocol::Role::Kiosk);
    fake.report(|r| matches!(r, Report::Pong)).await;

    let reply = s.request(&Request::Ping {}).await.unwrap();
    assert_eq!(reply["type"], "ok");
    let reply = s
        .request(&Request::CallRequest(protocol::CallRequest {
            service: "anagrafe".into(),
            language: "it".into(),
            priority: None,
        }))
        .await
        .unwrap();
    assert_eq!(reply["call_id"], "c1");

    // Waiting for the second update leaves state.sync and the first update, in order.
    let second = s
        .wait_for(T, |e| matches!(e, Event::QueueUpdate(u) if u.position == 1))
        .await
        .unwrap();
    assert!(matches!(second, Event::QueueUpdate(u) if u.estimated_wait_s == Some(30)));
    assert!(matches!(
        s.next_event(T).await.unwrap(),
        Event::StateSync(_)
    ));
    let rest = s.drain_events();
    assert!(
        matches!(&rest[..], [Event::QueueUpdate(u)] if u.position == 2 && u.estimated_wait_s.is_none())
    );
    let unknown = s.take_unknown();
    assert_eq!(unknown, vec![json!({"type":"media.stats","call_id":"c1"})]);
    assert!(matches!(
        s.next_event(Duration::from_millis(50)).await,
        Err(ClientError::Timeout)
    ));

    // Unknown and malformed requests get their error reply routed by id.
    let err = s.request_raw(json!({"type": "nope"})).await.unwrap_err();
    assert!(matches!(
        err,
        ClientError::Refused {
            code: ErrorCode::Invalid,
            ..
        }
    ));
    assert!(matches!(
        s.request_raw(json!([1])).await,
        Err(ClientError::InvalidArgument(_))
    ));

    s.close().await;
    fake.report(|r| matches!(r, Report::Ended(_))).await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_servers_code() {
    let fake = start().await;
    let err = Session::connect(
        &fake.ws_url(),
        Auth {
            token: "wrong".into(),
            resume: None,
            capabilities: vec![],
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        ClientError::Refused {
            code: ErrorCode::Unauthorized,
            ..
        }
    ));
    let err = Session::connect("ws://127.0.0.1:1/api/v1/ws", kiosk_auth())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)));
}

#[tokio::test]
async fn close_codes_are_recorded_and_requests_fail_closed() {
    let fake = start().await;
    let (s, _) = Session::connect(&fake.ws_url(), kiosk_auth())
        .await
        .unwrap();
    let requester = s.requester();
    let _ = s.request_raw(json!({"type": "test.close"})).await.unwrap();
    assert_eq!(s.wait_closed(T).await.unwrap(), Some(4409));
    assert_eq!(s.close_reason().as_deref(), Some("superseded"));
    assert!(matches!(
        requester.request(&Request::Ping {}).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn a_request_without_reply_times_out_and_a_normal_close_says_1000() {
    let mut fake = start().await;
    let options = kiosk_client::ConnectOptions {
        request_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (s, _) = Session::connect_with(&fake.ws_url(), kiosk_auth(), &options)
        .await
        .unwrap();
    assert!(matches!(
        s.request_raw(json!({"type": "slow"})).await,
        Err(ClientError::Timeout)
    ));
    s.close().await;
    let ended = fake.report(|r| matches!(r, Report::Ended(_))).await;
    assert!(matches!(ended, Report::Ended(Ending::Closed(Some(1000)))));
}

#[tokio::test]
async fn dropping_the_connection_is_an_eof_and_the_kiosk_resumes_with_its_events() {
    let mut fake = start().await;
    let mut kiosk = HeadlessKiosk::connect(&fake.ws_url(), "kiosk", vec![])
        .await
        .unwrap();
    let first_session = kiosk.auth_ok().session_id.clone();
    let call = kiosk.request_call("anagrafe", "it", Some(3)).await.unwrap();
    assert_eq!(call, "c1");
    let sent = fake
        .report(|r| matches!(r, Report::Frame(f) if f["type"] == "call.request"))
        .await;
    let Report::Frame(sent) = sent else {
        unreachable!()
    };
    assert_eq!(sent["priority"], 3);

    // Make sure the updates arrived, then cut the network.
    kiosk
        .session()
        .wait_for(T, |e| matches!(e, Event::QueueUpdate(u) if u.position == 1))
        .await
        .unwrap();
    kiosk.disconnect().await;
    assert!(matches!(
        fake.report(|r| matches!(r, Report::Ended(_))).await,
        Report::Ended(Ending::Eof)
    ));
    assert!(kiosk.session().is_closed());
    assert_eq!(kiosk.session().close_code(), None);

    let ok = kiosk.reconnect().await.unwrap();
    assert!(ok.resumed);
    assert_eq!(ok.session_id, first_session);
    let resumed = fake
        .report(|r| matches!(r, Report::Frame(f) if f["type"] == "auth"))
        .await;
    let Report::Frame(resumed) = resumed else {
        unreachable!()
    };
    assert_eq!(resumed["resume"], json!(first_session));

    // The first connection's position-2 update was carried over; the new state.sync lists the call.
    let _ = kiosk
        .session()
        .request_raw(json!({"type": "test.assign_and_complete"}))
        .await
        .unwrap();
    let outcome = kiosk.follow(T).await.unwrap();
    assert_eq!(outcome.reason, "completed");
    assert_eq!(outcome.operator.unwrap().display_name, "Maria Rossi");
    assert_eq!(outcome.last_position, Some(1));
    let kinds: Vec<&str> = outcome.updates.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        [
            "queue.update",
            "state.sync",
            "call.assigned",
            "call.held",
            "call.resumed",
            "call.ended"
        ]
    );
    kiosk.close().await;
}

#[tokio::test]
async fn cancelling_ends_the_call_as_abandoned() {
    let fake = start().await;
    let mut kiosk = HeadlessKiosk::connect(&fake.ws_url(), "kiosk", vec![])
        .await
        .unwrap();
    assert!(matches!(kiosk.cancel().await, Err(ClientError::NoCall)));
    kiosk.request_call("anagrafe", "it", None).await.unwrap();
    kiosk.cancel().await.unwrap();
    let outcome = kiosk.follow(T).await.unwrap();
    assert_eq!(outcome.reason, "abandoned");
    assert_eq!(outcome.last_position, Some(1));
    assert!(outcome.operator.is_none());
}

#[tokio::test]
async fn a_sync_without_the_call_after_resume_ends_it() {
    let fake = start().await;
    let mut kiosk = HeadlessKiosk::connect(&fake.ws_url(), "kiosk", vec![])
        .await
        .unwrap();
    kiosk.request_call("anagrafe", "it", None).await.unwrap();
    // The initial state.sync (no calls) predates the call: following must not end on it.
    assert!(matches!(
        kiosk.follow(Duration::from_millis(200)).await,
        Err(ClientError::Timeout)
    ));
    assert!(kiosk.tracker().unwrap().is_waiting());
    // The call ends while the kiosk is away; the resumed session's state.sync no longer lists it.
    kiosk
        .session()
        .request_raw(json!({"type": "test.forget"}))
        .await
        .unwrap();
    kiosk.disconnect().await;
    assert!(kiosk.reconnect().await.unwrap().resumed);
    let outcome = kiosk.follow(T).await.unwrap();
    assert_eq!(outcome.reason, REASON_GONE);
    assert!(outcome.ended_by_sync);
    assert_eq!(outcome.last_position, Some(1));
}

#[tokio::test]
async fn the_accept_policy_handles_several_calls_at_once() {
    let fake = start().await;
    let bot = OperatorBot::connect(
        &fake.ws_url(),
        "op",
        Policy::Accept {
            after: Duration::from_millis(20),
            talk: Some(Duration::from_millis(50)),
            wrapup: Some(Duration::from_millis(20)),
        },
    )
    .await
    .unwrap();
    assert_eq!(bot.operator_id(), "maria.rossi");
    bot.go_available().await.unwrap();
    let handle = bot.spawn();
    let stats = handle
        .wait_until(T, |s| s.wrapups_done == 2 && s.wrapups_ended == 2)
        .await
        .unwrap();
    assert_eq!(stats.offers, 2);
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.calls_ended_by_bot, 2);
    assert_eq!(stats.ended_by_reason.get("completed"), Some(&2));
    assert!(stats.current_calls.is_empty());
    assert_eq!(stats.errors, 0, "{:?}", stats.last_error);
    let mut bot = handle.stop().await.unwrap();
    bot.session().request(&Request::Ping {}).await.unwrap();
}

#[tokio::test]
async fn a_manual_bot_is_driven_through_its_session() {
    let fake = start().await;
    let mut bot = OperatorBot::connect(&fake.ws_url(), "op", Policy::Manual)
        .await
        .unwrap();
    bot.go_available().await.unwrap();
    let offer = bot.wait_offer(T).await.unwrap();
    assert_eq!(offer.call_id, "c1");
    bot.accept(&offer.call_id).await.unwrap();
    bot.session()
        .wait_for(
            T,
            |e| matches!(e, Event::CallConnected(c) if c.call_id == "c1"),
        )
        .await
        .unwrap();
    // The network blips: the next state.sync is the resumed session's, and the second offer, not
    // taken yet, is carried over.
    let again = bot.reconnect().await.unwrap();
    assert!(again.resumed);
    let sync = bot
        .session()
        .wait_for(T, |e| matches!(e, Event::StateSync(_)))
        .await
        .unwrap();
    assert!(matches!(sync, Event::StateSync(s) if s.operator_state.is_some()));
    assert_eq!(bot.wait_offer(T).await.unwrap().call_id, "c2");
    bot.disconnect().await;
    assert!(matches!(bot.accept("c2").await, Err(ClientError::Closed)));
    bot.reconnect().await.unwrap();
    bot.session().request(&Request::Ping {}).await.unwrap();
    bot.close().await;
}

#[tokio::test]
async fn login_errors_are_reported() {
    // Nothing listens there: a connection error, not a panic.
    let err = OperatorBot::login("http://127.0.0.1:1", "u", "p")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect(_)));
    assert!(matches!(
        OperatorBot::login("ftp://h", "u", "p").await,
        Err(ClientError::InvalidUrl(_))
    ));
}

/// The binary: a completed call exits 0, a cancelled one 2, a refused token 1 with a clear message,
/// and the token never shows up in the output.
#[tokio::test]
async fn the_binary_reports_outcomes_by_exit_code() {
    let fake = start().await;
    let bin = env!("CARGO_BIN_EXE_sportello-kiosk");
    let server = format!("http://{}", fake.addr);

    let out = tokio::process::Command::new(bin)
        .args([
            "--server",
            &server,
            "--token",
            "kiosk",
            "call",
            "--service",
            "anagrafe",
        ])
        .args(["--cancel-after", "0.3"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("queued: position 2, estimated wait unknown (no operator online)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("queued: position 1, estimated wait 30 s"),
        "{stdout}"
    );
    assert!(stdout.contains("call ended: abandoned"), "{stdout}");

    let out = tokio::process::Command::new(bin)
        .args([
            "--server",
            &server,
            "--json",
            "call",
            "--service",
            "anagrafe",
        ])
        .args(["--cancel-after", "0.3"])
        .env("SPORTELLO_KIOSK_TOKEN", "kiosk")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines only on stdout"))
        .collect();
    assert_eq!(lines.last().unwrap()["type"], "call.ended");

    let out = tokio::process::Command::new(bin)
        .args([
            "--server",
            &server,
            "--token",
            "s3cr3t-token",
            "call",
            "--service",
            "anagrafe",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the kiosk token"), "{stderr}");
    assert!(!stderr.contains("s3cr3t") && !String::from_utf8_lossy(&out.stdout).contains("s3cr3t"));

    let dir = std::env::temp_dir().join(format!("kiosk-token-{}", std::process::id()));
    std::fs::write(&dir, "kiosk\n").unwrap();
    let out = tokio::process::Command::new(bin)
        .args(["--server", &server, "--token-file"])
        .arg(&dir)
        .args(["call", "--service", "instant"])
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("answered by Maria Rossi (maria.rossi)"),
        "{stdout}"
    );
    assert!(stdout.contains("call ended: completed"), "{stdout}");
}

/// Ctrl-C while waiting cancels the call before exiting.
#[tokio::test]
async fn the_binary_cancels_a_waiting_call_on_interrupt() {
    use tokio::io::AsyncBufReadExt;

    let fake = start().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sportello-kiosk"))
        .args(["--server", &format!("http://{}", fake.addr)])
        .args(["call", "--service", "anagrafe"])
        .env("SPORTELLO_KIOSK_TOKEN", "kiosk")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        let done = line.starts_with("queued: position 1");
        seen.push(line);
        if done {
            break;
        }
    }
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    while let Some(line) = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        seen.push(line);
    }
    let code = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code.code(), Some(2), "{seen:?}");
    assert!(
        seen.iter().any(|l| l == "interrupted: cancelling the call"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("call ended: abandoned")),
        "{seen:?}"
    );
}
