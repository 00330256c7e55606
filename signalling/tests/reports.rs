//! The call history and its reports end to end: calls driven through the protocol (holds, a
//! certificate after PEC identification, dispositions, ratings, a short abandon), then the
//! reports read over HTTP in JSON and CSV and from `sportello report`, with exact counts,
//! averages and groupings; the figures agree with the queue's own metrics for the day; the
//! history survives a restart (SQLite in the data directory); and on PostgreSQL (a private
//! server) two nodes on one Redis report the calls of both.

#[path = "common/agent.rs"]
mod agent;
mod common;

use std::time::Duration;

use agent::{pec_code_in, residents};
use common::centre::{available, call, ok, on_call, refused, request_call, Centre, Op, T};
use kiosk_client::{HeadlessKiosk, OperatorBot};
use protocol::incall::*;
use protocol::outcome::{FeedbackSubmit, WrapupDone};
use protocol::{ErrorCode, Request, Role};
use serde_json::Value;
use testkit::smtp::SmtpSink;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const ANAGRAFE: &[(&str, u8)] = &[("anagrafe", 5)];

fn rate(id: &str, rating: u8, comment: Option<&str>) -> Request {
    Request::FeedbackSubmit(FeedbackSubmit {
        call_id: id.into(),
        rating,
        comment: comment.map(str::to_owned),
    })
}

fn done(id: &str, disposition: &str) -> Request {
    Request::WrapupDone(WrapupDone::with(id, disposition))
}

/// A call from `k` that `op` (available) answers; its id.
async fn answered(k: &mut HeadlessKiosk, op: &mut OperatorBot) -> String {
    let id = request_call(k, "anagrafe").await;
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(k.session(), "call.assigned", &id).await;
    id
}

/// Ends `id`, closes its wrap-up with `disposition`, and lets the kiosk rate it.
async fn close(
    k: &mut HeadlessKiosk,
    op: &mut OperatorBot,
    id: &str,
    disposition: &str,
    rating: u8,
) {
    ok(op.session(), Request::CallEnd(call(id))).await;
    on_call(k.session(), "call.ended", id).await;
    ok(op.session(), done(id, disposition)).await;
    on_call(op.session(), "wrapup.ended", id).await;
    ok(k.session(), rate(id, rating, Some("grazie"))).await;
}

/// Identifies the citizen by PEC code in call `id` and issues a residenza certificate.
async fn certificate(sink: &SmtpSink, k: &mut HeadlessKiosk, op: &mut OperatorBot, id: &str) {
    let (citizen, _) = residents();
    ok(
        op.session(),
        Request::IdentityRequest(IdentityRequest {
            call_id: id.into(),
            method: IdentityMethod::Pec,
        }),
    )
    .await;
    on_call(k.session(), "identity.progress", id).await;
    ok(
        k.session(),
        Request::IdentityPecStart(IdentityPecStart {
            call_id: id.into(),
            fiscal_code: citizen.fiscal_code.to_string(),
        }),
    )
    .await;
    let address = citizen.pec.clone().unwrap();
    let deadline = tokio::time::Instant::now() + T;
    let code = loop {
        if let Some(m) = sink
            .messages()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t.contains(&address)))
        {
            break pec_code_in(&m.body_text());
        }
        assert!(tokio::time::Instant::now() < deadline, "no PEC mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ok(
        k.session(),
        Request::IdentityPecCode(IdentityPecCode {
            call_id: id.into(),
            code,
        }),
    )
    .await;
    on_call(op.session(), "identity.verified", id).await;
    ok(
        op.session(),
        Request::CertificateIssue(CertificateIssue {
            call_id: id.into(),
            kind: "residenza".into(),
            fiscal_code: None,
            as_of: None,
            usage: Usage::Bollo { bollo: true },
            reason: None,
            marca: None,
            parts: vec![],
        }),
    )
    .await;
}

async fn get(
    c: &Centre,
    path: &str,
    token: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut r = reqwest::Client::new().get(c.t.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

async fn report(c: &Centre, query: &str) -> Value {
    let (status, body, _) = get(
        c,
        &format!("/api/v1/reports/{query}"),
        Some(&c.token(Role::Supervisor, "sup")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn row<'a>(r: &'a Value, key: &str) -> &'a Value {
    r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"] == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {r}"))
}

fn today() -> String {
    let tz = jiff::tz::TimeZone::get("Europe/Rome").unwrap();
    tz.to_datetime(jiff::Timestamp::now()).date().to_string()
}

/// `sportello report ARGS --data-dir DIR`.
fn report_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("report")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn edit_mail(port: u16) -> impl FnOnce(&mut signalling::config::Config) {
    move |cfg| {
        cfg.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        cfg.mail.from = "Comune di Parma <sportello@comune.parma.it>".into();
    }
}

#[tokio::test]
async fn reports_are_exact_agree_with_the_queue_and_survive_a_restart() {
    let sink = SmtpSink::start().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let port = sink.port();
    let ops = [Op::new("op-a", ANAGRAFE, 2), Op::new("op-b", ANAGRAFE, 1)];
    let c = Centre::start_memory(&ops, &["k1", "k2"], |cfg| {
        edit_mail(port)(cfg);
        cfg.data_dir = dir.clone();
    })
    .await;
    let mut a = c.operator("op-a").await;
    let mut k1 = c.kiosk("k1").await;
    let mut k2 = c.kiosk("k2").await;
    ok(a.session(), available()).await;

    // 1: held and resumed, a certificate, closed with certificato_rilasciato, rated 5.
    let c1 = answered(&mut k1, &mut a).await;
    ok(a.session(), Request::CallHold(call(&c1))).await;
    on_call(k1.session(), "call.held", &c1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok(a.session(), Request::CallResume(call(&c1))).await;
    on_call(k1.session(), "call.resumed", &c1).await;
    certificate(&sink, &mut k1, &mut a, &c1).await;
    close(&mut k1, &mut a, &c1, "certificato_rilasciato", 5).await;
    // 2: closed with informazioni, rated 2.
    let c2 = answered(&mut k2, &mut a).await;
    close(&mut k2, &mut a, &c2, "informazioni", 2).await;
    // 3: op-b answers; the wrap-up is closed, no rating.
    let mut b = c.operator("op-b").await;
    ok(
        a.session(),
        Request::PresenceSet(protocol::PresenceSet {
            state: protocol::PresenceState::Paused,
            reason: Some("pausa".into()),
        }),
    )
    .await;
    ok(b.session(), available()).await;
    let c3 = answered(&mut k1, &mut b).await;
    ok(b.session(), Request::CallEnd(call(&c3))).await;
    on_call(k1.session(), "call.ended", &c3).await;
    ok(b.session(), done(&c3, "pratica_avviata")).await;
    on_call(b.session(), "wrapup.ended", &c3).await;
    // 4: a short abandon (nobody available).
    ok(
        b.session(),
        Request::PresenceSet(protocol::PresenceSet {
            state: protocol::PresenceState::Paused,
            reason: Some("pausa".into()),
        }),
    )
    .await;
    let c4 = request_call(&mut k2, "anagrafe").await;
    k2.cancel().await.unwrap();
    on_call(k2.session(), "call.ended", &c4).await;

    let day = today();
    let sup = c.token(Role::Supervisor, "sup");
    // By operator: exact counts and averages.
    let by_op = report(&c, &format!("calls?from={day}&to={day}&by=operator")).await;
    let op_a = row(&by_op, "op-a");
    assert_eq!(
        (op_a["calls"].as_u64(), op_a["answered"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(op_a["ratings"], 2);
    assert_eq!(op_a["rating_avg"], 3.5);
    assert_eq!(op_a["dispositions"]["certificato_rilasciato"], 1);
    assert_eq!(op_a["dispositions"]["informazioni"], 1);
    assert_eq!(op_a["certificates"]["residenza"], 1);
    let op_b = row(&by_op, "op-b");
    assert_eq!(
        (op_b["answered"].as_u64(), op_b["ratings"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(op_b["rating_avg"], Value::Null);
    let none = row(&by_op, "");
    assert_eq!(
        (none["abandoned"].as_u64(), none["abandoned_short"].as_u64()),
        (Some(0), Some(1))
    );

    // By day: the day's totals; they agree with the queue's own metrics for today.
    let by_day = report(&c, &format!("calls?from={day}&to={day}&by=day")).await;
    let total = &by_day["total"];
    assert_eq!(total["calls"], 4);
    let snap =
        c.t.server
            .state
            .routing
            .queue
            .snapshot(&c.t.server.state.routing.tenant, queue::Time::now())
            .await
            .unwrap();
    let q = &snap
        .services
        .iter()
        .find(|s| s.service.as_str() == "anagrafe")
        .unwrap()
        .today;
    assert_eq!(total["answered"].as_u64(), Some(q.answered));
    assert_eq!(total["abandoned"].as_u64(), Some(q.abandoned));
    assert_eq!(total["abandoned_short"].as_u64(), Some(q.abandoned_short));
    assert!((total["service_level"].as_f64().unwrap() - q.service_level).abs() < 1e-4);
    let secs = |d: Option<Duration>| d.unwrap().as_secs_f64();
    // The queue divides whole milliseconds (a mean of 0.67 ms is 0 ms); the report rounds to the
    // millisecond (0.001 s). The same sums, so at most one millisecond apart.
    const MS: f64 = 1.000_001e-3;
    assert!(
        (total["asa_s"].as_f64().unwrap() - secs(q.asa)).abs() <= MS,
        "{total} {q:?}"
    );
    assert!(
        (total["aht_s"].as_f64().unwrap() - secs(q.aht)).abs() <= MS,
        "{total} {q:?}"
    );

    // By disposition and kiosk; the call's row has its hold and timestamps.
    let by_disp = report(&c, &format!("calls?from={day}&to={day}&by=disposition")).await;
    assert_eq!(row(&by_disp, "pratica_avviata")["calls"], 1);
    assert_eq!(row(&by_disp, "")["calls"], 1);
    let sink_db =
        c.t.server
            .state
            .routing
            .outcomes
            .sink()
            .unwrap()
            .history()
            .db()
            .clone();
    let r1 = sink_db.call_row(&c1).await.unwrap().unwrap();
    assert_eq!(
        (r1.holds, r1.outcome.as_deref()),
        (Some(1), Some("completed"))
    );
    assert!(r1.held_ms.unwrap() >= 250, "{r1:?}");
    let (req, off, ans, end, wrap) = (
        r1.requested_at.unwrap(),
        r1.offered_at.unwrap(),
        r1.answered_at.unwrap(),
        r1.ended_at.unwrap(),
        r1.wrapup_at.unwrap(),
    );
    assert!(
        req <= off && off <= ans && ans < end && end <= wrap,
        "{r1:?}"
    );
    assert_eq!(r1.comment.as_deref(), Some("grazie"));

    // Certificates: by channel and fee.
    let certs = report(&c, &format!("certificates?from={day}&to={day}&by=channel")).await;
    assert_eq!(row(&certs, "kiosk")["issued"], 1);
    assert_eq!(certs["total"]["bollo"], 1);
    assert_eq!(certs["yearly_target"], 10_000);

    // CSV: a download with the same figures.
    let (status, csv, headers) = get(
        &c,
        &format!("/api/v1/reports/calls?from={day}&to={day}&by=kiosk&format=csv"),
        Some(&sup),
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("key,calls,answered,abandoned,abandoned_short,transfers,service_level,asa_s,aht_s,ratings,rating_avg,disposition:certificato_rilasciato,disposition:informazioni,disposition:pratica_avviata,certificates:residenza"), "{csv}");
    assert!(lines[1].starts_with("k1,2,2,0,0,0,"), "{csv}");
    assert!(lines[2].starts_with("k2,2,1,0,1,0,"), "{csv}");
    assert!(lines[3].starts_with("total,4,3,0,1,0,"), "{csv}");

    // Bad input and other roles.
    let (status, body, _) = get(&c, "/api/v1/reports/calls?by=week", Some(&sup)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"invalid\""));
    let (status, _, _) = get(&c, "/api/v1/reports/calls?from=2026-3-1", Some(&sup)).await;
    assert_eq!(status, 400);
    let (status, _, _) = get(
        &c,
        "/api/v1/reports/calls",
        Some(&c.token(Role::Operator, "op-a")),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = get(&c, "/api/v1/reports/certificates", None).await;
    assert_eq!(status, 401);
    // Rating through the protocol is not a report: nothing else changed it.
    assert_eq!(
        refused(k1.session().request(&rate(&c1, 1, None)).await),
        ErrorCode::Conflict
    );

    // A restart on the same data directory keeps the history.
    drop((a, b, k1, k2));
    let Centre { t, .. } = c;
    t.server.shutdown().stop_now();
    tokio::time::timeout(Duration::from_secs(15), t.server.wait())
        .await
        .expect("the server stops")
        .unwrap();
    let c = Centre::start_memory(&ops, &["k1", "k2"], |cfg| {
        edit_mail(port)(cfg);
        cfg.data_dir = dir.clone();
    })
    .await;
    let again = report(&c, &format!("calls?from={day}&to={day}&by=day")).await;
    assert_eq!(again["total"], by_day["total"]);
    drop(c);

    // `sportello report` reads the same on the same configuration.
    let out = report_cli(
        &dir,
        &["calls", "--by", "operator", "--from", &day, "--to", &day],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, by_op);
    let out = report_cli(
        &dir,
        &[
            "certificates",
            "--format",
            "csv",
            "--from",
            &day,
            "--to",
            &day,
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("key,issued,bollo,esente,kind:residenza"),
        "{text}"
    );
    let out = report_cli(&dir, &["calls", "--by", "week"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("week"));
}

#[tokio::test]
async fn two_nodes_on_postgres_report_the_calls_of_both() {
    let pg = tokio::task::spawn_blocking(testkit::postgres::PostgresServer::start)
        .await
        .unwrap()
        .expect("a private PostgreSQL");
    let url = pg.url();
    let redis = testkit::RedisServer::start().await;
    let ops = [Op::new("op-a", ANAGRAFE, 1), Op::new("op-b", ANAGRAFE, 1)];
    let node = |id: &'static str| {
        let url = url.clone();
        move |cfg: &mut signalling::config::Config| {
            cfg.history.database = Some(url);
            cfg.cluster.node_id = Some(id.into());
        }
    };
    let n1 = Centre::on(Some(redis.url()), &ops, &["k1", "k2"], node("n1")).await;
    let n2 = Centre::on(Some(redis.url()), &ops, &["k1", "k2"], node("n2")).await;
    // Kiosk and operator on different nodes, both ways.
    let mut a = n1.operator("op-a").await;
    let mut k2 = n2.kiosk("k2").await;
    ok(a.session(), available()).await;
    let first = answered(&mut k2, &mut a).await;
    close(&mut k2, &mut a, &first, "informazioni", 4).await;
    ok(
        a.session(),
        Request::PresenceSet(protocol::PresenceSet {
            state: protocol::PresenceState::Paused,
            reason: Some("pausa".into()),
        }),
    )
    .await;
    let mut b = n2.operator("op-b").await;
    let mut k1 = n1.kiosk("k1").await;
    ok(b.session(), available()).await;
    let second = answered(&mut k1, &mut b).await;
    close(&mut k1, &mut b, &second, "non_risolto", 1).await;

    // Each node's writer is asynchronous: wait for both, then either node reports both calls.
    for n in [&n1, &n2] {
        assert!(
            n.t.server
                .state
                .routing
                .outcomes
                .sink()
                .unwrap()
                .history()
                .flush(Duration::from_secs(10))
                .await
        );
    }
    let day = today();
    for n in [&n1, &n2] {
        let r = report(n, &format!("calls?from={day}&to={day}&by=operator")).await;
        assert_eq!(r["total"]["answered"], 2, "{r}");
        assert_eq!(r["total"]["ratings"], 2);
        assert_eq!(r["total"]["rating_avg"], 2.5);
        assert_eq!(row(&r, "op-a")["dispositions"]["informazioni"], 1);
        assert_eq!(row(&r, "op-b")["dispositions"]["non_risolto"], 1);
    }
    // The rows are in PostgreSQL itself.
    let n = pg
        .psql(
            &url,
            "select count(*) from history_calls where disposition is not null",
        )
        .unwrap();
    assert_eq!(n.trim(), "2");
}

/// A history database that is down at start does not stop the server or its calls: the history
/// waits in the outbox, and reports say the database is unavailable.
#[tokio::test]
async fn a_database_down_at_start_keeps_the_history_in_the_outbox() {
    let port = testkit::free_port();
    let ops = [Op::new("op-a", ANAGRAFE, 1)];
    let c = Centre::start_memory(&ops, &["k1"], |cfg| {
        cfg.history.database = Some(format!("postgres://sportello@127.0.0.1:{port}/sportello"));
    })
    .await;
    let mut a = c.operator("op-a").await;
    let mut k1 = c.kiosk("k1").await;
    ok(a.session(), available()).await;
    let id = answered(&mut k1, &mut a).await;
    close(&mut k1, &mut a, &id, "informazioni", 3).await;
    let sink = c.t.server.state.routing.outcomes.sink().unwrap();
    assert!(!sink.history().flush(Duration::from_secs(10)).await);
    let outbox = history::Outbox::open(c.t.server.state.config.data_dir.as_path())
        .await
        .unwrap();
    // The call's two records, the disposition and the rating.
    assert_eq!(outbox.len().await.unwrap(), 4);
    let (status, body, _) = get(
        &c,
        "/api/v1/reports/calls",
        Some(&c.token(Role::Supervisor, "sup")),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    let metrics = reqwest::get(c.t.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "sportello_history_outbox_events 4"),
        "{metrics}"
    );
}
