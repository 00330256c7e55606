//! The clients follow `media.reconnect` against a small scripted WebSocket server (not the Sportello
//! server) whose media nodes are two real SFUs on loopback. A headless kiosk, a spawned operator bot
//! with media and a supervisor's monitor start media on node A; the script moves the call to node B
//! (and ends it on A, as a dead node would), sends `media.reconnect`, and each client must offer
//! again from a new peer connection (new ICE ufrag and DTLS fingerprint, no candidate of the old
//! one) and get media flowing through node B. Then again, back to A, with a reason this version does
//! not know, and once more while the kiosk follows its call.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiosk_client::media::{CallMedia, ClientOptions, ClientStats};
use kiosk_client::{CallOutcome, HeadlessKiosk, OperatorBot, Policy, Session};
use protocol::{Auth, Event};
use serde_json::{json, Value};
use sfu::{Candidate, MediaConfig, MediaEvent, MediaRole, Participant, Sfu};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(15);
const CALL: &str = "c1";

/// A frame a client sent, with the role of its connection.
#[derive(Debug, Clone)]
struct Sent {
    role: String,
    frame: Value,
}

struct Shared {
    /// The media nodes.
    nodes: Vec<Sfu>,
    /// The node that carries the call now.
    current: AtomicUsize,
    /// Every connection's outgoing queue, for pushed events.
    peers: Mutex<Vec<mpsc::UnboundedSender<Message>>>,
    /// Every frame received, in order per connection.
    sent: Mutex<Vec<Sent>>,
}

struct Script {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _events: Vec<mpsc::UnboundedReceiver<MediaEvent>>,
}

impl Script {
    fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.addr)
    }

    /// Sends `frame` to every connection.
    fn push(&self, frame: Value) {
        let text = frame.to_string();
        for peer in self.shared.peers.lock().unwrap().iter() {
            let _ = peer.send(Message::Text(text.clone().into()));
        }
    }

    /// Places the call on node `to`, ends it on the node it leaves (as if that node died), and sends
    /// `media.reconnect` to everyone.
    fn move_call(&self, to: usize, reason: &str) {
        let from = self.shared.current.swap(to, Ordering::SeqCst);
        self.shared.nodes[from].end_call(CALL);
        self.push(json!({"type": "media.reconnect", "call_id": CALL, "reason": reason}));
    }

    /// The frames of `kind` sent so far by `role`.
    fn sent(&self, role: &str, kind: &str) -> Vec<Value> {
        self.shared
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.role == role && s.frame["type"] == kind)
            .map(|s| s.frame.clone())
            .collect()
    }

    /// The frames sent so far by `role`, in order.
    fn all_sent(&self, role: &str) -> Vec<Value> {
        self.shared
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.frame.clone())
            .collect()
    }
}

async fn start() -> Script {
    let mut nodes = Vec::new();
    let mut events = Vec::new();
    for _ in 0..2 {
        let (sfu, rx) = Sfu::start(
            MediaConfig {
                loops: 1,
                grace: Duration::from_secs(10),
                stats_interval: Duration::from_secs(1),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("a media node starts");
        nodes.push(sfu);
        events.push(rx);
    }
    let shared = Arc::new(Shared {
        nodes,
        current: AtomicUsize::new(0),
        peers: Mutex::new(Vec::new()),
        sent: Mutex::new(Vec::new()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = shared.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let shared = accepting.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    serve(ws, shared).await;
                }
            });
        }
    });
    Script {
        addr,
        shared,
        _events: events,
    }
}

fn ok(id: &Value, mut body: Value) -> Message {
    if body.is_null() {
        body = json!({});
    }
    body["type"] = json!("ok");
    body["id"] = id.clone();
    Message::Text(body.to_string().into())
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn error(id: &Value, code: &str, message: impl std::fmt::Display) -> Message {
    text(json!({"type": "error", "id": id, "code": code, "message": message.to_string()}))
}

/// One connection: kiosk token `kiosk`, operator token `op`, supervisor token `sup`.
async fn serve(ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, shared: Arc<Shared>) {
    let (push_tx, mut pushed) = mpsc::unbounded_channel();
    shared.peers.lock().unwrap().push(push_tx);
    let (mut sink, mut stream) = ws.split();
    let mut role = String::new();
    loop {
        let out = tokio::select! {
            m = pushed.recv() => match m {
                Some(m) => vec![m],
                None => break,
            },
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let frame: Value = serde_json::from_str(t.as_str()).unwrap();
                    shared.sent.lock().unwrap().push(Sent { role: role.clone(), frame: frame.clone() });
                    respond(&shared, &mut role, &frame).await
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            },
        };
        for m in out {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    }
}

async fn respond(shared: &Shared, role: &mut String, frame: &Value) -> Vec<Message> {
    let id = &frame["id"];
    let kind = frame["type"].as_str().unwrap_or_default();
    let principal = match role.as_str() {
        "kiosk" => "municipio",
        "operator" => "maria.rossi",
        _ => "laura.verdi",
    };
    let node = &shared.nodes[shared.current.load(Ordering::SeqCst)];
    let who = || Participant {
        principal: format!("{role}:{principal}"),
        role: match role.as_str() {
            "kiosk" => MediaRole::Kiosk,
            "operator" => MediaRole::Operator,
            _ => MediaRole::Monitor,
        },
    };
    match kind {
        "auth" => {
            *role = match frame["token"].as_str().unwrap_or_default() {
                "kiosk" => "kiosk",
                "op" => "operator",
                _ => "supervisor",
            }
            .to_owned();
            let principal = match role.as_str() {
                "kiosk" => "municipio",
                "operator" => "maria.rossi",
                _ => "laura.verdi",
            };
            vec![
                ok(
                    id,
                    json!({"session_id": format!("s-{role}"), "role": role, "principal_id": principal, "heartbeat_s": 15, "resumed": false}),
                ),
                text(json!({"type": "state.sync", "calls": []})),
            ]
        }
        "call.request" => vec![
            ok(id, json!({"call_id": CALL})),
            text(
                json!({"type": "call.assigned", "call_id": CALL, "operator": {"id": "maria.rossi", "display_name": "Maria Rossi"}}),
            ),
        ],
        "presence.set" => {
            let mut out = vec![ok(id, Value::Null)];
            if frame["state"] == "available" {
                out.push(text(
                    json!({"type": "call.offered", "call_id": CALL, "kiosk": {"id": "municipio", "name": "Municipio", "location": "Parma"}, "service": "anagrafe", "language": "it", "waited_s": 1, "expires_in_s": 10}),
                ));
            }
            out
        }
        "call.accept" => vec![
            ok(id, Value::Null),
            text(
                json!({"type": "call.connected", "call_id": CALL, "kiosk": {"id": "municipio", "name": "Municipio", "location": "Parma"}}),
            ),
        ],
        "monitor.start" | "monitor.stop" | "wrapup.done" => vec![ok(id, Value::Null)],
        "media.offer" => {
            let sdp = frame["sdp"].as_str().unwrap_or_default().to_owned();
            match node.offer(CALL, who(), sdp, false).await {
                Ok(answer) => vec![ok(id, json!({"sdp": answer.sdp}))],
                Err(e) => vec![error(id, "invalid", e)],
            }
        }
        "media.candidate" => {
            let candidate = Candidate {
                candidate: frame["candidate"].as_str().unwrap_or_default().to_owned(),
                sdp_mid: frame["sdp_mid"].as_str().map(str::to_owned),
                sdp_mline_index: frame["sdp_mline_index"].as_u64().map(|i| i as u16),
            };
            match node.candidate(CALL, who(), candidate).await {
                Ok(()) => vec![ok(id, Value::Null)],
                Err(e) => vec![error(id, "not_found", e)],
            }
        }
        other => vec![error(
            id,
            "invalid",
            format!("unknown message type {other:?}"),
        )],
    }
}

/// The value of the first `a=<attribute>:` line of an SDP.
fn attribute<'a>(sdp: &'a str, name: &str) -> &'a str {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no a={name} in the offer:\n{sdp}"))
        .trim()
}

/// The port of a candidate line (`candidate:… <component> udp <priority> <address> <port> typ …`).
fn port(candidate: &str) -> String {
    candidate
        .trim_start_matches("a=")
        .split_whitespace()
        .nth(5)
        .unwrap_or_else(|| panic!("not a candidate line: {candidate}"))
        .to_owned()
}

/// The ports of the `a=candidate` lines of an SDP.
fn offered_ports(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .map(port)
        .collect()
}

async fn receives(
    what: &str,
    stats: impl Fn() -> ClientStats,
    pred: impl Fn(&ClientStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let s = stats();
        if pred(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: media did not flow in time: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The n-th (1-based) `media.offer` of `role` and what `role` sent after it until the next offer:
/// the candidates must be those of that offer's connection only.
fn check_fresh_offer(script: &Script, role: &str, n: usize, monitor: bool) {
    let offers = script.sent(role, "media.offer");
    assert!(
        offers.len() >= n,
        "{role}: {} offers, wanted {n}",
        offers.len()
    );
    let (old, new) = (&offers[n - 2], &offers[n - 1]);
    let old_sdp = old["sdp"].as_str().unwrap();
    let new_sdp = new["sdp"].as_str().unwrap();
    assert_eq!(new["call_id"], CALL);
    assert_eq!(new["monitor"].as_bool().unwrap_or(false), monitor, "{new}");
    assert_ne!(
        attribute(old_sdp, "ice-ufrag"),
        attribute(new_sdp, "ice-ufrag"),
        "{role}: the re-offer must come from a new peer connection (ICE ufrag)"
    );
    assert_ne!(
        attribute(old_sdp, "fingerprint"),
        attribute(new_sdp, "fingerprint"),
        "{role}: the re-offer must come from a new peer connection (DTLS fingerprint)"
    );
    let new_ports = offered_ports(new_sdp);
    let old_ports = offered_ports(old_sdp);
    assert!(!new_ports.is_empty());
    assert!(
        new_ports.iter().all(|p| !old_ports.contains(p)),
        "a new socket"
    );
    // Every candidate after the new offer (up to the next one) is the new connection's.
    let frames = script.all_sent(role);
    let at = frames
        .iter()
        .position(|f| f == new)
        .expect("the offer is among the frames");
    let after: Vec<&Value> = frames[at + 1..]
        .iter()
        .take_while(|f| f["type"] != "media.offer")
        .filter(|f| f["type"] == "media.candidate")
        .collect();
    assert!(
        !after.is_empty(),
        "{role}: the new connection's candidates are trickled"
    );
    for c in after {
        let p = port(c["candidate"].as_str().unwrap());
        assert!(
            new_ports.contains(&p) && !old_ports.contains(&p),
            "{role}: candidate {c} is not the new connection's ({new_ports:?}; old {old_ports:?})"
        );
    }
}

#[tokio::test]
async fn kiosk_operator_and_monitor_offer_again_from_new_connections() {
    let script = start().await;
    let url = script.ws_url();

    // The operator: accepts the offer and negotiates media in its own task.
    let bot = OperatorBot::connect(
        &url,
        "op",
        Policy::Accept {
            after: Duration::ZERO,
            talk: None,
            wrapup: None,
        },
    )
    .await
    .unwrap()
    .with_media(ClientOptions::default());
    bot.go_available().await.unwrap();
    let bot = bot.spawn();
    bot.wait_until(T, |s| s.media_calls == 1).await.unwrap();

    // The kiosk keeps its media, so it follows media.reconnect.
    let mut kiosk = HeadlessKiosk::connect(&url, "kiosk", vec![]).await.unwrap();
    assert_eq!(
        kiosk.request_call("anagrafe", "it", None).await.unwrap(),
        CALL
    );
    kiosk
        .start_call_media(ClientOptions::default())
        .await
        .unwrap();

    // A supervisor's monitor, driven by hand.
    let (mut sup, _) = Session::connect(
        &url,
        Auth {
            token: "sup".into(),
            resume: None,
            capabilities: vec![],
        },
    )
    .await
    .unwrap();
    sup.request(&protocol::Request::MonitorStart(protocol::CallRef {
        call_id: CALL.into(),
    }))
    .await
    .unwrap();
    let mut monitor = CallMedia::start(&sup.requester(), CALL, ClientOptions::monitor())
        .await
        .unwrap();

    receives(
        "kiosk on node A",
        || kiosk.media().unwrap().client().stats(),
        |s| s.packets("video") > 30 && s.packets("audio") > 10,
    )
    .await;
    receives(
        "monitor on node A",
        || monitor.client().stats(),
        |s| s.packets("video") > 30,
    )
    .await;

    // An event for another call changes nothing for anyone.
    script.push(json!({"type": "media.reconnect", "call_id": "c9", "reason": "node_lost"}));

    // Node A dies: the call goes to node B.
    script.move_call(1, "node_lost");
    assert_eq!(kiosk.wait_media_reconnect(T).await.unwrap(), 1);
    assert_eq!(kiosk.media().unwrap().last_reason(), Some("node_lost"));
    let event = sup.wait_for(T, |e| monitor.wants(e)).await.unwrap();
    assert!(monitor.handle(&event).await.unwrap());
    let stats = bot
        .wait_until(T, |s| s.media_reconnects == 1)
        .await
        .unwrap();
    assert_eq!(stats.media_reconnect_events, 1, "c9 is not the bot's call");
    assert_eq!(stats.errors, 0, "{:?}", stats.last_error);

    receives(
        "kiosk on node B",
        || kiosk.media().unwrap().client().stats(),
        |s| s.connected && s.packets("video") > 30 && s.packets("audio") > 10,
    )
    .await;
    receives(
        "monitor on node B",
        || monitor.client().stats(),
        |s| s.packets("video") > 30,
    )
    .await;
    check_fresh_offer(&script, "kiosk", 2, false);
    check_fresh_offer(&script, "operator", 2, false);
    check_fresh_offer(&script, "supervisor", 2, true);
    // The c9 event is still buffered, untouched.
    assert!(kiosk
        .session()
        .drain_events()
        .iter()
        .any(|e| matches!(e, Event::MediaReconnect(r) if r.call_id == "c9")));

    // Again, back to node A, with a reason this version does not know.
    script.move_call(0, "rebalanced");
    assert_eq!(kiosk.wait_media_reconnect(T).await.unwrap(), 2);
    assert_eq!(kiosk.media().unwrap().last_reason(), Some("rebalanced"));
    bot.wait_until(T, |s| s.media_reconnects == 2)
        .await
        .unwrap();
    receives(
        "kiosk on node A again",
        || kiosk.media().unwrap().client().stats(),
        |s| s.connected && s.packets("video") > 30,
    )
    .await;
    check_fresh_offer(&script, "kiosk", 3, false);
    check_fresh_offer(&script, "operator", 3, false);

    // While the kiosk follows its call, a reconnect is followed on the way; then the call ends.
    script.move_call(1, "node_draining");
    script.push(json!({"type": "call.ended", "call_id": CALL, "reason": "completed"}));
    let outcome: CallOutcome = kiosk.follow(T).await.unwrap();
    assert_eq!(outcome.reason, "completed");
    assert_eq!(kiosk.media_reconnects(), 3);
    check_fresh_offer(&script, "kiosk", 4, false);
    assert!(bot.stop().await.is_some(), "the bot's task ended cleanly");
}
