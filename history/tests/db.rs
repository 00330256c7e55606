//! The history database on real SQLite files (and on a private PostgreSQL, see `postgres.rs`):
//! parts in any order and twice give the same rows; reports are exact; the history survives a
//! reopen; the purge keeps what the retention says; the writer keeps events in its outbox while
//! the database fails and writes them once it is back, also after a restart.

mod common;

use std::time::Duration;

use common::*;
use history::report::parse_day;
use history::{CallsBy, CertificatesBy, Db, Event, History, Metrics, Outbox, Period};

fn period(from: &str, to: &str) -> Period {
    Period::new(
        parse_day("from", from).unwrap(),
        parse_day("to", to).unwrap(),
    )
    .unwrap()
}

/// Six calls on two days, two kiosks and two operators, with dispositions, ratings and
/// certificates, in an order where parts come before their call.
pub fn month_of_calls() -> Vec<Event> {
    vec![
        rating("c1", 5),
        wrapup("c1", "certificato_rilasciato"),
        Event::Call(answered("c1", "2026-03-02", "k1", "anna", 20, 300)),
        certificate(
            "d1",
            Some("c1"),
            "2026-03-02",
            "kiosk",
            "residenza",
            "bollo",
        ),
        certificate(
            "d2",
            Some("c1"),
            "2026-03-02",
            "kiosk",
            "stato_famiglia",
            "esente",
        ),
        Event::Call(answered("c2", "2026-03-02", "k1", "bruno", 90, 100)),
        wrapup("c2", "informazioni"),
        rating("c2", 2),
        Event::Call(abandoned("c3", "2026-03-02", "k2", 70)),
        Event::Call(abandoned("c4", "2026-03-03", "k2", 3)),
        Event::Call(answered("c5", "2026-03-03", "k2", "anna", 10, 200)),
        wrapup("c5", "certificato_rilasciato"),
        certificate(
            "d3",
            Some("c5"),
            "2026-03-03",
            "kiosk",
            "residenza",
            "bollo",
        ),
        certificate("d4", None, "2026-03-03", "web", "residenza", "esente"),
        // A call in another month: outside the period.
        Event::Call(answered("c6", "2026-04-01", "k1", "anna", 10, 200)),
    ]
}

pub async fn check_reports(db: &Db) {
    let march = period("2026-03-01", "2026-03-31");
    let r = db.calls_report(&march, CallsBy::Day).await.unwrap();
    assert_eq!(r.rows.len(), 31);
    let d2 = r.rows.iter().find(|r| r.key == "2026-03-02").unwrap();
    assert_eq!((d2.calls, d2.answered, d2.abandoned), (3, 2, 1));
    // c1 within 60 s; c2 answered after; c3 abandoned after: 1 ÷ (2 + 1).
    assert_eq!(d2.service_level, 0.3333);
    assert_eq!(d2.asa_s, 55.0);
    assert_eq!(d2.aht_s, 200.0);
    assert_eq!((d2.ratings, d2.rating_avg), (2, Some(3.5)));
    assert_eq!(d2.dispositions["certificato_rilasciato"], 1);
    assert_eq!(d2.dispositions["informazioni"], 1);
    assert_eq!(d2.certificates["residenza"], 1);
    assert_eq!(d2.certificates["stato_famiglia"], 1);
    let d3 = r.rows.iter().find(|r| r.key == "2026-03-03").unwrap();
    assert_eq!(
        (d3.calls, d3.answered, d3.abandoned, d3.abandoned_short),
        (2, 1, 0, 1)
    );
    assert_eq!(d3.service_level, 1.0);
    // The web certificate is in no call.
    assert_eq!(d3.certificates.get("residenza"), Some(&1));
    assert_eq!((r.total.calls, r.total.answered), (5, 3));
    assert_eq!(r.total.rating_avg, Some(3.5));

    let by_op = db.calls_report(&march, CallsBy::Operator).await.unwrap();
    let keys: Vec<&str> = by_op.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["", "anna", "bruno"]);
    assert_eq!(by_op.rows[1].answered, 2);
    assert_eq!(by_op.rows[1].rating_avg, Some(5.0));
    assert_eq!(by_op.rows[0].abandoned + by_op.rows[0].abandoned_short, 2);

    let by_kiosk = db.calls_report(&march, CallsBy::Kiosk).await.unwrap();
    assert_eq!(by_kiosk.rows.len(), 2);
    assert_eq!(by_kiosk.rows[1].key, "k2");
    assert_eq!(by_kiosk.rows[1].calls, 3);

    let by_disp = db.calls_report(&march, CallsBy::Disposition).await.unwrap();
    let rel = by_disp
        .rows
        .iter()
        .find(|r| r.key == "certificato_rilasciato")
        .unwrap();
    assert_eq!((rel.calls, rel.aht_s), (2, 250.0));

    let by_month = db
        .calls_report(&period("2026-02-15", "2026-04-30"), CallsBy::Month)
        .await
        .unwrap();
    let months: Vec<(&str, u64)> = by_month
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.calls))
        .collect();
    assert_eq!(months, [("2026-02", 0), ("2026-03", 5), ("2026-04", 1)]);

    let certs = db
        .certificates_report(&march, CertificatesBy::Kind, 10_000)
        .await
        .unwrap();
    let res = certs.rows.iter().find(|r| r.key == "residenza").unwrap();
    assert_eq!((res.issued, res.bollo, res.esente), (3, 2, 1));
    assert_eq!(res.channels["web"], 1);
    assert_eq!(certs.total.issued, 4);
    assert_eq!(certs.total.exemptions["pensione"], 2);
    let by_channel = db
        .certificates_report(&march, CertificatesBy::Channel, 10_000)
        .await
        .unwrap();
    let channels: Vec<(&str, u64)> = by_channel
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.issued))
        .collect();
    assert_eq!(channels, [("kiosk", 3), ("web", 1)]);
}

async fn sqlite(dir: &std::path::Path) -> Db {
    Db::open(&history::db::sqlite_url(dir), "default")
        .await
        .unwrap()
}

#[tokio::test]
async fn parts_in_any_order_and_twice_give_exact_reports() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(dir.path()).await;
    let events = month_of_calls();
    db.apply(&events).await.unwrap();
    // Replayed (an outbox after a crash), and in the reverse order: the same rows.
    let mut reversed = events.clone();
    reversed.reverse();
    db.apply(&reversed).await.unwrap();
    check_reports(&db).await;
    let row = db.call_row("c1").await.unwrap().unwrap();
    assert_eq!(row.disposition.as_deref(), Some("certificato_rilasciato"));
    assert_eq!((row.rating, row.handle_ms), (Some(5), Some(300_000)));
    assert_eq!(row.operators.as_deref(), Some("anna"));
}

#[tokio::test]
async fn the_history_survives_a_reopen_and_the_purge_keeps_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(dir.path()).await;
    db.apply(&month_of_calls()).await.unwrap();
    db.close().await;
    let db = sqlite(dir.path()).await;
    check_reports(&db).await;
    assert_eq!(db.count_calls().await.unwrap(), 6);
    // Keep from 2026-03-03; free text only from 2026-04-01.
    assert_eq!(db.purge("2026-03-03", "2026-04-01").await.unwrap(), 3);
    assert_eq!(db.count_calls().await.unwrap(), 3);
    assert!(db.call_row("c1").await.unwrap().is_none());
    let c5 = db.call_row("c5").await.unwrap().unwrap();
    assert_eq!(
        (c5.notes, c5.disposition.as_deref()),
        (None, Some("certificato_rilasciato"))
    );
    let certs = db
        .certificates_report(&period("2026-03-01", "2026-03-31"), CertificatesBy::Kind, 1)
        .await
        .unwrap();
    assert_eq!(certs.total.issued, 2);
}

#[tokio::test]
async fn bad_periods_and_urls_are_refused() {
    assert!(Db::open("mysql://x/y", "t").await.is_err());
    let err = Db::open("postgres://nobody@127.0.0.1:1/x", "t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(!err.to_string().contains("secret"));
    assert_eq!(
        history::db::redacted("postgres://u:secret@h:5432/d"),
        "postgres://u:***@h:5432/d"
    );
}

/// Makes the database refuse every write to the calls table, as a failing database would.
async fn break_table(url: &str) {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("ALTER TABLE history_calls RENAME TO history_calls_away")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn mend_table(url: &str) {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("ALTER TABLE history_calls_away RENAME TO history_calls")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

pub async fn writer_keeps_events_while_the_database_fails(url: &str, data: &std::path::Path) {
    let db = Db::open(url, "default").await.unwrap();
    let (history, task) = History::start(
        db.clone(),
        Outbox::open(data).await.unwrap(),
        Metrics::unregistered(),
    );
    history.record(Event::Call(answered(
        "w1",
        "2026-03-02",
        "k1",
        "anna",
        5,
        60,
    )));
    assert!(history.flush(Duration::from_secs(10)).await);
    assert!(db.call_row("w1").await.unwrap().is_some());

    break_table(url).await;
    history.record(Event::Call(answered(
        "w2",
        "2026-03-02",
        "k1",
        "anna",
        5,
        60,
    )));
    history.record(wrapup("w2", "informazioni"));
    assert!(
        !history.flush(Duration::from_secs(10)).await,
        "a failing database is reported"
    );
    let outbox = Outbox::open(data).await.unwrap();
    assert_eq!(outbox.len().await.unwrap(), 2, "kept in the outbox");
    // The node stops while the database is down.
    drop(history);
    task.await.unwrap();
    assert_eq!(outbox.len().await.unwrap(), 2);

    mend_table(url).await;
    // Started again: the outbox is written first.
    let (history, _task) = History::start(
        db.clone(),
        Outbox::open(data).await.unwrap(),
        Metrics::unregistered(),
    );
    assert!(history.flush(Duration::from_secs(10)).await);
    let w2 = db.call_row("w2").await.unwrap().unwrap();
    assert_eq!(w2.disposition.as_deref(), Some("informazioni"));
    assert_eq!(outbox.len().await.unwrap(), 0);

    // And while it runs: a failure, then the retry writes by itself.
    break_table(url).await;
    history.record(rating("w2", 4));
    assert!(!history.flush(Duration::from_secs(10)).await);
    mend_table(url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let w2 = db.call_row("w2").await.unwrap().unwrap();
        if w2.rating == Some(4) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry never wrote the rating"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_outbox_keeps_what_sqlite_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data).unwrap();
    let url = history::db::sqlite_url(dir.path());
    writer_keeps_events_while_the_database_fails(&url, &data).await;
}

/// The same on a private PostgreSQL: exact reports, and the outbox while it fails.
#[tokio::test]
async fn postgres_gives_the_same_reports_and_the_outbox_covers_its_failures() {
    let pg = tokio::task::spawn_blocking(testkit::postgres::PostgresServer::start)
        .await
        .unwrap()
        .expect("a private PostgreSQL");
    let url = pg.create_database("reports").unwrap();
    let db = Db::open(&url, "default").await.unwrap();
    db.apply(&month_of_calls()).await.unwrap();
    db.apply(&month_of_calls()).await.unwrap();
    check_reports(&db).await;
    // A second tenant in the same database sees none of it.
    let other = Db::open(&url, "altro").await.unwrap();
    let march = period("2026-03-01", "2026-03-31");
    assert_eq!(
        other
            .calls_report(&march, CallsBy::Day)
            .await
            .unwrap()
            .total
            .calls,
        0
    );

    let url = pg.create_database("outbox").unwrap();
    let dir = tempfile::tempdir().unwrap();
    writer_keeps_events_while_the_database_fails(&url, dir.path()).await;
}
