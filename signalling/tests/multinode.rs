//! Several `sportello` processes sharing one Redis: a kiosk on one process and an operator on the
//! other run a call together; events cross processes; when the kiosk's process is killed (SIGKILL),
//! the kiosk resumes on the surviving process and keeps its call.
//!
//! The processes share the configuration and the data directory, so they know the same accounts
//! (here the demo accounts) and accept the same login tokens.

mod common;

use std::time::Duration;

use common::centre::{available_operator, call, demo_credentials, event, ok, on_call};
use kiosk_client::{HeadlessKiosk, OperatorBot};
use protocol::{Event, Request};
use testkit::SportelloProcess;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

/// Starts a node on this data directory and Redis, with short grace periods so the dead node's
/// clients are cleaned up within the test.
fn node(data_dir: &std::path::Path, redis: &str) -> SportelloProcess {
    SportelloProcess::start(
        BIN,
        &[
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--redis".as_ref(),
            redis.as_ref(),
        ],
        &[
            ("SPORTELLO_WS__KIOSK_GRACE_S", "2"),
            ("SPORTELLO_WS__OPERATOR_GRACE_S", "2"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_two_processes_survives_the_kiosk_node_dying() {
    let redis = testkit::RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = node(dir.path(), &redis.url());
    let b = node(dir.path(), &redis.url());
    let creds = demo_credentials(dir.path());
    let kiosk_token = creds["kiosks"][0]["token"].as_str().unwrap().to_owned();
    let (user, password) = (
        creds["operators"][0]["username"].as_str().unwrap(),
        creds["operators"][0]["password"].as_str().unwrap(),
    );

    // The operator logs in on A but connects to B: the token is valid on every node.
    let mut op = available_operator(&a.base, &b.ws_url(), user, password).await;

    // The kiosk is on A; the offer reaches the operator on B, the assignment reaches the kiosk on A.
    let mut kiosk = HeadlessKiosk::connect(&a.ws_url(), &kiosk_token, vec![])
        .await
        .unwrap();
    let id = kiosk.request_call("anagrafe", "it", None).await.unwrap();
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    let Event::CallAssigned(assigned) = on_call(kiosk.session(), "call.assigned", &id).await else {
        unreachable!()
    };
    assert_eq!(assigned.operator.id, user);
    ok(op.session(), Request::CallHold(call(&id))).await;
    on_call(kiosk.session(), "call.held", &id).await;

    // A second kiosk on A waits while the operator pauses; it will never come back.
    ok(
        op.session(),
        Request::PresenceSet(protocol::PresenceSet {
            state: protocol::PresenceState::Paused,
            reason: None,
        }),
    )
    .await;
    let other_token = creds["kiosks"][1]["token"].as_str().unwrap().to_owned();
    let mut gone = HeadlessKiosk::connect(&a.ws_url(), &other_token, vec![])
        .await
        .unwrap();
    let gone_id = gone.request_call("anagrafe", "it", None).await.unwrap();
    on_call(gone.session(), "queue.update", &gone_id).await;

    // A dies without a word. The kiosk resumes on B and keeps its call.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let again = kiosk.reconnect_to(&b.ws_url()).await.unwrap();
    assert_eq!(
        again.principal_id,
        creds["kiosks"][0]["id"].as_str().unwrap()
    );
    let Event::StateSync(sync) = event(kiosk.session(), |e| matches!(e, Event::StateSync(_))).await
    else {
        unreachable!()
    };
    assert_eq!(sync.calls.len(), 1, "{sync:?}");
    assert_eq!(sync.calls[0].call_id, id);
    assert_eq!(sync.calls[0].state, "on_hold");

    // Once A's node lease (10 s) and the grace period (2 s) have run out, any node cleans up after
    // A: the kiosk that never came back is abandoned, the call that moved to B lives on.
    let sup_token = {
        let sup = &creds["supervisors"][0];
        OperatorBot::login(
            &b.base,
            sup["username"].as_str().unwrap(),
            sup["password"].as_str().unwrap(),
        )
        .await
        .unwrap()
    };
    let (mut sup, _) = kiosk_client::Session::connect(
        &b.ws_url(),
        protocol::Auth {
            token: sup_token,
            resume: None,
            capabilities: vec![],
        },
    )
    .await
    .unwrap();
    ok(&sup, Request::MetricsSubscribe {}).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = event(&mut sup, |e| matches!(e, Event::MetricsSnapshot(_))).await;
        let Event::MetricsSnapshot(s) = snapshot else {
            unreachable!()
        };
        let anagrafe = s.services.iter().find(|x| x.service == "anagrafe").unwrap();
        if anagrafe.abandoned + anagrafe.abandoned_short == 1 {
            assert_eq!(anagrafe.waiting, 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead node's waiting call was never cleaned up: {s:?}"
        );
    }
    ok(op.session(), Request::CallResume(call(&id))).await;
    on_call(kiosk.session(), "call.resumed", &id).await;
    ok(op.session(), Request::CallEnd(call(&id))).await;
    let Event::CallEnded(ended) = on_call(kiosk.session(), "call.ended", &id).await else {
        unreachable!()
    };
    assert_eq!(ended.reason, "completed");
    ok(op.session(), common::centre::wrapup(&id)).await;
    on_call(op.session(), "wrapup.ended", &id).await;
    drop(gone);
}

/// A kiosk with a session on each of two nodes (its screen on A, its agent on B), and an operator
/// with a console on each: the lost-client rules apply only when the last session is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_two_nodes_are_lost_only_when_the_last_one_goes() {
    let redis = testkit::RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &redis.url());
    let b = node(dir.path(), &redis.url());
    let creds = demo_credentials(dir.path());
    let kiosk_token = creds["kiosks"][0]["token"].as_str().unwrap().to_owned();
    let (user, password) = (
        creds["operators"][0]["username"].as_str().unwrap(),
        creds["operators"][0]["password"].as_str().unwrap(),
    );
    let token = OperatorBot::login(&a.base, user, password).await.unwrap();
    let mut op = available_operator(&a.base, &a.ws_url(), user, password).await;
    let mut screen = HeadlessKiosk::connect(&a.ws_url(), &kiosk_token, vec![])
        .await
        .unwrap();
    let id = screen.request_call("anagrafe", "it", None).await.unwrap();
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(screen.session(), "call.assigned", &id).await;

    // The agent authenticates on B last (so the call follows B), and the operator opens a second
    // console on B; then both go away for good.
    let auth = |token: &str| protocol::Auth {
        token: token.to_owned(),
        resume: None,
        capabilities: vec![],
    };
    let (agent, _) = kiosk_client::Session::connect(&b.ws_url(), auth(&kiosk_token))
        .await
        .unwrap();
    let (console, _) = kiosk_client::Session::connect(&b.ws_url(), auth(&token))
        .await
        .unwrap();
    agent.close().await;
    console.close().await;
    // Past the grace (2 s) and B's retry: the screen on A and the console on A keep the call.
    tokio::time::sleep(Duration::from_secs(6)).await;
    ok(op.session(), Request::CallHold(call(&id))).await;
    on_call(screen.session(), "call.held", &id).await;
    ok(op.session(), Request::CallResume(call(&id))).await;
    on_call(screen.session(), "call.resumed", &id).await;

    // The last kiosk session goes: now the rules apply, and the call ends as kiosk_lost.
    screen.close().await;
    let ended = event(
        op.session(),
        |e| matches!(e, Event::CallEnded(c) if c.call_id == id),
    )
    .await;
    let Event::CallEnded(ended) = ended else {
        unreachable!()
    };
    assert_eq!(ended.reason, "kiosk_lost");
}
