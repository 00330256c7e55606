//! The multi-node shape end to end, on the local cluster of `deploy/local-cluster/` (Redis with a
//! replica and three sentinels, 2 signalling and 2 media nodes, all real processes on loopback):
//!
//! - a kiosk on signalling node A and an operator on node B exchange real media through a media
//!   node; kill -9 of that node moves the call's media to the other one (`media.reconnect`), and
//!   both decode again within 10 s with the same call id: with the headless Rust clients, and with
//!   two headless Chromium pages (`console-web/tests/media.mjs`);
//! - a Sentinel failover (`SENTINEL FAILOVER`, then kill -9 of the master) during a call loses no
//!   call, and new calls join afterwards;
//! - SIGTERM on a media node with a call moves the call and the node exits within its drain (plus
//!   the process's own exit);
//! - kill -9 of a signalling node: its kiosk resumes on the other node and keeps its call.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::centre::{available_operator, call, event, ok, on_call};
use kiosk_client::media::{CallMedia, ClientOptions, ClientStats};
use kiosk_client::{HeadlessKiosk, OperatorBot, Session};
use protocol::{Event, Request};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const DRAIN_S: u64 = 4;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster/local-cluster")
}

/// One cluster at a time: each is nine processes, and the recovery bounds are about one call's
/// media, not about two clusters fighting over two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running local cluster; stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    info: Value,
    creds: Value,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    async fn start() -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script())
            .arg("start")
            .args(["--dir".as_ref(), dir.path().as_os_str()])
            .args(["--bin", BIN, "--drain-s", &DRAIN_S.to_string()])
            .output()
            .expect("run deploy/local-cluster/local-cluster");
        assert!(
            out.status.success(),
            "local-cluster start failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("cluster.json")).unwrap())
                .unwrap();
        let creds: Value =
            serde_json::from_slice(&std::fs::read(info["credentials"].as_str().unwrap()).unwrap())
                .unwrap();
        Cluster {
            dir,
            info,
            creds,
            _turn: turn,
        }
    }

    fn signalling(&self, i: usize) -> String {
        self.info["signalling"][i]["url"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn ws(&self, i: usize) -> String {
        format!("{}/api/v1/ws", self.signalling(i).replacen("http", "ws", 1))
    }

    fn pid(&self, name: &str) -> i32 {
        self.info["pids"][name].as_i64().unwrap() as i32
    }

    fn kiosk_token(&self, i: usize) -> String {
        self.creds["kiosks"][i]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn operator(&self, i: usize) -> (String, String) {
        let o = &self.creds["operators"][i];
        (
            o["username"].as_str().unwrap().to_owned(),
            o["password"].as_str().unwrap().to_owned(),
        )
    }

    fn add_media(&self, name: &str) -> Value {
        let out = Command::new(script())
            .args(["add-media", name])
            .args(["--dir".as_ref(), self.dir.path().as_os_str()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "add-media: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn sentinel(&self, args: &[&str]) -> String {
        let s = self.info["redis"]["sentinels"][0].as_str().unwrap();
        let port = s.rsplit(':').next().unwrap();
        let out = Command::new("redis-cli")
            .args(["-p", port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn master_port(&self) -> String {
        self.sentinel(&["SENTINEL", "get-master-addr-by-name", "sportello"])
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the sentinels name a master other than `old`.
    async fn new_master(&self, old: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.master_port();
            if !now.is_empty() && now != old {
                return now;
            }
            assert!(Instant::now() < deadline, "no failover away from {old}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .args(["--dir".as_ref(), self.dir.path().as_os_str()])
            .output();
    }
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a pid this test's cluster started.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn exited(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) != 0 }
}

/// The media node with `calls` calls, by its metrics.
async fn node_with_call(nodes: &[Value]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for n in nodes {
            let url = format!("{}/metrics", n["admin"].as_str().unwrap());
            if let Ok(r) = reqwest::get(&url).await {
                let text = r.text().await.unwrap_or_default();
                if text
                    .lines()
                    .any(|l| l.starts_with("sportello_node_media_calls ") && !l.ends_with(" 0"))
                {
                    return n.clone();
                }
            }
        }
        assert!(Instant::now() < deadline, "no media node reports the call");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn video(s: &ClientStats) -> u64 {
    s.packets("video")
}

/// Waits until `m` receives `by` more video packets.
async fn decodes(m: &CallMedia, by: u64, within: Duration) {
    let before = video(&m.client().stats());
    if let Err(s) = m
        .client()
        .wait_for(within, |s| video(s) >= before + by)
        .await
    {
        panic!("no video on {}: {s:#?}", m.call_id());
    }
}

/// Waits for `media.reconnect` for the call on `s`, follows it, and returns its reason.
async fn follow(s: &mut Session, m: &mut CallMedia) -> String {
    let id = m.call_id().to_owned();
    let e = s
        .wait_for(
            Duration::from_secs(20),
            |e| matches!(e, Event::MediaReconnect(r) if r.call_id == id),
        )
        .await
        .expect("media.reconnect");
    assert!(m.handle(&e).await.expect("offer again"));
    m.last_reason().unwrap_or_default().to_owned()
}

/// A kiosk on `kiosk_node` and an operator on `op_node` in a call with media both ways.
async fn call_with_media(
    c: &Cluster,
    kiosk: usize,
    operator: usize,
    kiosk_node: usize,
    op_node: usize,
) -> (HeadlessKiosk, OperatorBot, String, CallMedia, CallMedia) {
    let (user, password) = c.operator(operator);
    let mut op = available_operator(&c.signalling(op_node), &c.ws(op_node), &user, &password).await;
    let mut k = HeadlessKiosk::connect(&c.ws(kiosk_node), &c.kiosk_token(kiosk), vec![])
        .await
        .unwrap();
    let id = k.request_call("anagrafe", "it", None).await.unwrap();
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;
    let km = CallMedia::start(&k.session().requester(), &id, ClientOptions::default())
        .await
        .unwrap();
    let om = CallMedia::start(&op.session().requester(), &id, ClientOptions::default())
        .await
        .unwrap();
    decodes(&km, 30, Duration::from_secs(10)).await;
    decodes(&om, 30, Duration::from_secs(10)).await;
    (k, op, id, km, om)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_three_nodes_survives_its_media_node_dying() {
    let c = Cluster::start().await;
    let (mut k, mut op, id, mut km, mut om) = call_with_media(&c, 0, 0, 0, 1).await;
    let media: Vec<Value> = c.info["media"].as_array().unwrap().clone();
    let placed = node_with_call(&media).await;

    // The wallboard shows both media nodes, one carrying the call.
    let sup = &c.creds["supervisors"][0];
    let sup_token = OperatorBot::login(
        &c.signalling(0),
        sup["username"].as_str().unwrap(),
        sup["password"].as_str().unwrap(),
    )
    .await
    .unwrap();
    let (mut sup, _) = Session::connect(
        &c.ws(0),
        protocol::Auth {
            token: sup_token,
            resume: None,
            capabilities: vec![],
        },
    )
    .await
    .unwrap();
    ok(&sup, Request::MetricsSubscribe {}).await;
    event(&mut sup, |e| {
        matches!(e, Event::MetricsSnapshot(s) if s.media_nodes.len() == 2
            && s.media_nodes.iter().map(|n| n.calls).sum::<u64>() == 1)
    })
    .await;
    let name = placed["id"].as_str().unwrap().to_owned();

    // kill -9 of the media node: both parties are told to offer again, to the other node.
    let killed = Instant::now();
    kill(c.pid(&name), libc::SIGKILL);
    let (rk, ro) = tokio::join!(follow(k.session(), &mut km), follow(op.session(), &mut om));
    assert_eq!((rk.as_str(), ro.as_str()), ("node_lost", "node_lost"));
    tokio::join!(
        decodes(&km, 30, Duration::from_secs(10)),
        decodes(&om, 30, Duration::from_secs(10))
    );
    let recovered = killed.elapsed();
    eprintln!("media recovered {recovered:?} after kill -9 of {name}");
    assert!(
        recovered < Duration::from_secs(10),
        "decoding again took {recovered:?}"
    );
    let other = node_with_call(&media).await;
    assert_ne!(other["id"], placed["id"]);

    // Same call: the operator still holds it and can put it on hold.
    ok(op.session(), Request::CallHold(call(&id))).await;
    on_call(k.session(), "call.held", &id).await;
    ok(op.session(), Request::CallResume(call(&id))).await;
    on_call(k.session(), "call.resumed", &id).await;

    // A kiosk that misses the next move (its event is left unread, as if its socket were down)
    // learns it from the `state.sync` of its next connection, and offers again.
    let spare = c.add_media("media-c");
    kill(c.pid(other["id"].as_str().unwrap()), libc::SIGKILL);
    follow(op.session(), &mut om).await;
    k.reconnect_to(&c.ws(1)).await.unwrap();
    let sync = event(k.session(), |e| matches!(e, Event::StateSync(_))).await;
    km.set_requester(k.session().requester());
    assert!(
        km.handle(&sync).await.unwrap(),
        "the sync names another node: {sync:?}"
    );
    assert_eq!(km.last_reason(), Some("resync"));
    tokio::join!(
        decodes(&km, 30, Duration::from_secs(10)),
        decodes(&om, 30, Duration::from_secs(10))
    );
    assert_eq!(node_with_call(&[spare]).await["id"], "media-c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_drains_and_a_dead_signalling_node_lose_no_call() {
    let c = Cluster::start().await;
    let (mut k, mut op, id, mut km, mut om) = call_with_media(&c, 0, 0, 0, 1).await;
    // New calls go to the other operators (this one has room for more, and ranks first).
    ok(
        op.session(),
        Request::PresenceSet(protocol::PresenceSet {
            state: protocol::PresenceState::Paused,
            reason: None,
        }),
    )
    .await;

    // A Sentinel failover, then kill -9 of the new master: the call goes on, and new calls join.
    for round in 0..2 {
        let old = c.master_port();
        if round == 0 {
            c.sentinel(&["SENTINEL", "FAILOVER", "sportello"]);
        } else {
            let name = format!("redis-{old}");
            kill(c.pid(&name), libc::SIGKILL);
        }
        let started = Instant::now();
        c.new_master(&old).await;
        // Requests may answer `unavailable` for the seconds of the failover, then work.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match op.session().request(&Request::CallHold(call(&id))).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "hold after failover: {e:?}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        eprintln!(
            "failover round {round}: requests work again after {:?}",
            started.elapsed()
        );
        on_call(k.session(), "call.held", &id).await;
        ok(op.session(), Request::CallResume(call(&id))).await;
        on_call(k.session(), "call.resumed", &id).await;
        decodes(&km, 30, Duration::from_secs(10)).await;
        // A new call joins through the new master.
        let (mut k2, mut op2, id2, km2, _om2) = call_with_media(&c, 1, 1, 1, 0).await;
        assert_ne!(id2, id);
        ok(op2.session(), Request::CallEnd(call(&id2))).await;
        on_call(k2.session(), "call.ended", &id2).await;
        km2.close();
    }

    // The failovers moved no media: the heartbeats that could not be written meanwhile do not
    // count a media node as gone.
    let moved = k
        .session()
        .wait_for(Duration::from_millis(500), |e| {
            matches!(e, Event::MediaReconnect(_))
        })
        .await;
    assert!(
        moved.is_err(),
        "a failover moved the call's media: {moved:?}"
    );

    // SIGTERM on the call's media node: the call moves to a fresh node, and the node exits
    // within its drain.
    let spare = c.add_media("media-c");
    let mut media: Vec<Value> = c.info["media"].as_array().unwrap().clone();
    media.push(spare);
    let placed = node_with_call(&media).await;
    let name = placed["id"].as_str().unwrap().to_owned();
    let pid = placed["pid"].as_i64().unwrap() as i32;
    let termed = Instant::now();
    kill(pid, libc::SIGTERM);
    let (rk, ro) = tokio::join!(follow(k.session(), &mut km), follow(op.session(), &mut om));
    assert_eq!(
        (rk.as_str(), ro.as_str()),
        ("node_draining", "node_draining")
    );
    tokio::join!(
        decodes(&km, 30, Duration::from_secs(10)),
        decodes(&om, 30, Duration::from_secs(10))
    );
    while !exited(pid) {
        assert!(
            termed.elapsed() < Duration::from_secs(DRAIN_S + 2),
            "{name} still runs after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{name} drained and exited after {:?}", termed.elapsed());

    // kill -9 of the kiosk's signalling node: it resumes on the other one and keeps its call.
    kill(c.pid("signalling-a"), libc::SIGKILL);
    k.reconnect_to(&c.ws(1)).await.unwrap();
    let Event::StateSync(sync) = event(k.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert_eq!(sync.calls.len(), 1, "{sync:?}");
    assert_eq!(sync.calls[0].call_id, id);
    km.set_requester(k.session().requester());
    decodes(&km, 30, Duration::from_secs(10)).await;
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(k.session(), "call.ended", &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_decode_each_other_again_after_their_media_node_dies() {
    browser::require_chromium();
    browser::ensure_node_modules(&browser::tests_dir(), &["playwright-core", "axe-core"]).await;
    let c = Cluster::start().await;
    let (user, password) = c.operator(0);
    let signal = c.dir.path().join("decoding.json");
    let args: Vec<String> = vec![
        "--base".into(),
        c.signalling(1),
        "--kiosk-base".into(),
        c.signalling(0),
        "--kiosk-token".into(),
        c.kiosk_token(0),
        "--username".into(),
        user,
        "--password".into(),
        password,
        "--mode".into(),
        "udp".into(),
        "--chromium".into(),
        browser::CHROMIUM.into(),
        "--signal-file".into(),
        signal.to_string_lossy().into_owned(),
        "--timeout-s".into(),
        "90".into(),
    ];
    let script = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        browser::run_node("media.mjs", &args, &[], Duration::from_secs(150)).await
    });
    // Both pages decode: kill the call's media node.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !signal.exists() {
        assert!(
            !script.is_finished() && Instant::now() < deadline,
            "the pages never decoded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let media: Vec<Value> = c.info["media"].as_array().unwrap().clone();
    let placed = node_with_call(&media).await;
    kill(c.pid(placed["id"].as_str().unwrap()), libc::SIGKILL);
    let result = script.await.unwrap();
    let r = &result["reconnect"];
    assert_eq!(r["kiosk_reasons"][0], "node_lost", "{result}");
    assert_eq!(r["operator_reasons"][0], "node_lost", "{result}");
    assert_eq!(r["call_id"], result["call_id"], "{result}");
    let ms = r["signal_to_decoding_ms"].as_f64().unwrap();
    eprintln!("browsers decode again {ms} ms after the kill");
    assert!(ms < 10_000.0, "{result}");
}
