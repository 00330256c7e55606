//! The supervisor's reports page `/supervisor/reports/` and the wallboard's "today" tiles in real
//! headless Chromium, driven by playwright-core (the Node.js script below, run from
//! `console-web/tests/` so it shares `harness.mjs` and its `node_modules/`).
//!
//! An in-process centre (three kiosks, two operators, the supervisor `sup`) is given a realistic
//! month of history through the server's own history sink (about 60 calls over the last 30 days,
//! answered and abandoned, with dispositions, ratings, and certificates on the kiosk and web
//! channels, plus kiosk certificates earlier in the year), flushed to its SQLite database. Then the
//! supervisor logs in on `/supervisor/`: the wallboard shows today's certificates and average rating
//! as the reports API gives them. The wallboard's link opens the reports page with the month so
//! far; its total row equals the API's `total` for the same query; grouping by operator redraws the
//! table with both operators; a 30-day period is chosen; the three charts are there with their
//! accessible names (`role="img"` and an `aria-label` with the figures); both CSV buttons download a
//! file whose first line is the CSV header; a reversed period is refused in the alert region; an
//! expired token brings back the login form. axe-core finds no serious or critical violation at
//! 1280 px nor at a phone's width, and the page does not scroll sideways on a phone. Every page runs
//! under the server's Content-Security-Policy without a violation. Screenshots go to
//! `target/tmp/screenshots/`, or `docs/screenshots/supervisor-reports.png` and
//! `supervisor-reports-phone.png` with `UPDATE_SCREENSHOTS=1`.
//!
//! A missing Chromium or Node.js fails the test (it never skips).

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::centre::{Centre, Op};
use history::{CallFacts, CertificateFacts, Event, FeedbackFacts, WrapupFacts};
use protocol::Role;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const KIOSKS: [&str; 3] = ["municipio", "biblioteca", "centro-torri"];
const OPERATORS: [&str; 2] = ["rossi", "bianchi"];
const DISPOSITIONS: [&str; 5] = [
    "certificato_rilasciato",
    "informazioni",
    "pratica_avviata",
    "rinviato_allo_sportello",
    "non_risolto",
];
const KINDS: [&str; 3] = ["residenza", "stato_famiglia", "cittadinanza"];
const DAY_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;

/// The calls, dispositions, ratings and certificates of the last 30 days (and kiosk certificates
/// on the 15th of the earlier months of the year), through the server's history sink.
async fn record_history(c: &Centre) {
    let sink =
        c.t.server
            .state
            .routing
            .outcomes
            .sink()
            .expect("the server keeps a history");
    let now = queue::Time::now().0;
    let mut docs = 0;
    let mut certificate = |sink: &signalling::reports::Sink,
                           at: u64,
                           channel: &str,
                           call: Option<(&str, &str, &str)>| {
        docs += 1;
        let exempt = docs % 3 == 0;
        sink.record(Event::Certificate(CertificateFacts {
            document_id: format!("doc-{docs}"),
            call_id: call
                .map(|(id, _, _)| id.to_owned())
                .filter(|id| !id.is_empty()),
            day: sink.day_of(queue::Time(at)),
            issued_at: at as i64,
            channel: channel.into(),
            kind: KINDS[docs % KINDS.len()].into(),
            fee: if exempt { "esente" } else { "bollo" }.into(),
            exemption: exempt.then(|| "uso_pensione".to_owned()),
            kiosk_id: call.map(|(_, k, _)| k.to_owned()),
            operator_id: call.map(|(_, _, o)| o.to_owned()),
        }));
    };
    // ~60 calls over the last 30 days, a few more today.
    for i in 0..66u64 {
        let back_days = if i >= 60 { 0 } else { i % 30 };
        let at = now - back_days * DAY_MS - (i % 7 + 1) * 7 * MINUTE_MS;
        let id = format!("call-{i:03}");
        let kiosk = KIOSKS[(i % 3) as usize];
        let operator = OPERATORS[(i / 3 % 2) as usize];
        let service = if i % 4 == 3 {
            "stato_civile"
        } else {
            "anagrafe"
        };
        let day = sink.day_of(queue::Time(at));
        let abandoned = i % 7 == 5;
        if abandoned {
            let wait = 20_000 + i * 3_000;
            sink.record(Event::Call(CallFacts {
                call_id: id,
                day,
                kiosk_id: kiosk.into(),
                service: service.into(),
                language: "it".into(),
                operator_id: None,
                operators: vec![],
                outcome: "abandoned".into(),
                requested_at: at as i64,
                offered_at: None,
                answered_at: None,
                accepted_at: None,
                ended_at: (at + wait) as i64,
                held_ms: 0,
                holds: 0,
                transfers: 0,
                wait_ms: wait as i64,
                sl_threshold_ms: 60_000,
                short_abandon: i % 3 == 0,
                wrapup_at: None,
                handle_ms: None,
            }));
            continue;
        }
        let wait = 8_000 + (i % 9) * 11_000;
        let answered = at + wait;
        let talk = (3 + i % 6) * MINUTE_MS;
        let ended = answered + talk;
        let wrapup = ended + 45_000;
        sink.record(Event::Call(CallFacts {
            call_id: id.clone(),
            day,
            kiosk_id: kiosk.into(),
            service: service.into(),
            language: "it".into(),
            operator_id: Some(operator.into()),
            operators: vec![operator.into()],
            outcome: "completed".into(),
            requested_at: at as i64,
            offered_at: Some((at + 1_000) as i64),
            answered_at: Some(answered as i64),
            accepted_at: Some(answered as i64),
            ended_at: ended as i64,
            held_ms: if i % 5 == 0 { 30_000 } else { 0 },
            holds: i64::from(i % 5 == 0),
            transfers: i64::from(i % 11 == 0),
            wait_ms: wait as i64,
            sl_threshold_ms: 60_000,
            short_abandon: false,
            wrapup_at: Some(wrapup as i64),
            handle_ms: Some((wrapup - answered) as i64),
        }));
        let disposition = DISPOSITIONS[(i % 5) as usize];
        sink.record(Event::Wrapup(WrapupFacts {
            call_id: id.clone(),
            disposition: disposition.into(),
            notes: None,
            at: wrapup as i64,
        }));
        if i % 4 != 1 {
            // Kiosks and operators differ: municipio best, centro-torri worst.
            let rating = 5 - (i % 3) as i64 - i64::from(i % 8 == 0);
            sink.record(Event::Feedback(FeedbackFacts {
                call_id: id.clone(),
                rating,
                comment: None,
                at: (wrapup + 10_000) as i64,
            }));
        }
        if disposition == "certificato_rilasciato" {
            certificate(
                sink,
                ended - MINUTE_MS,
                "kiosk",
                Some((&id, kiosk, operator)),
            );
        }
    }
    // Certificates on the web channel, and today one more.
    for d in (0..30u64).step_by(4) {
        certificate(sink, now - d * DAY_MS - 3 * MINUTE_MS, "web", None);
    }
    // Kiosk certificates earlier in the year: a few on the 15th of each earlier month.
    let today = sink.today();
    for month in 1..u8::from(today.month()) {
        let date =
            time::Date::from_calendar_date(today.year(), time::Month::try_from(month).unwrap(), 15)
                .unwrap();
        let at = date.midnight().assume_utc().unix_timestamp() as u64 * 1000 + 12 * 3_600_000;
        for _ in 0..(3 + month % 4) {
            certificate(sink, at, "kiosk", Some(("", KIOSKS[0], OPERATORS[0])));
        }
    }
    assert!(
        sink.history().flush(Duration::from_secs(20)).await,
        "the history was not written"
    );
}

/// `GET path` as the supervisor: the JSON body.
async fn api(c: &Centre, token: &str, path: &str) -> Value {
    let res = reqwest::Client::new()
        .get(c.t.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// The total row the page showed (`{column: raw value}`) against the API's `total`.
fn assert_total(shown: &Value, total: &Value, what: &str) {
    let number = |v: &Value| v.as_f64();
    for (col, field) in [
        ("calls", "calls"),
        ("answered", "answered"),
        ("abandoned", "abandoned"),
        ("service_level", "service_level"),
        ("asa", "asa_s"),
        ("aht", "aht_s"),
        ("ratings", "ratings"),
        ("rating_avg", "rating_avg"),
    ] {
        let page: Option<f64> = shown[col].as_str().and_then(|s| s.parse().ok());
        let api = number(&total[field]);
        match (page, api) {
            (Some(p), Some(a)) => assert!((p - a).abs() < 1e-9, "{what}: {col} {p} ≠ {a}"),
            (None, None) => {}
            _ => panic!("{what}: {col}: page {shown} ≠ api {total}"),
        }
    }
}

/// Runs the script below with `args`; its last JSON line.
async fn run_script(args: &[&str], envs: &[(&str, &str)]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["--input-type=module", "-"])
        .args(args)
        .current_dir(browser::tests_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run node ({e}): install Node.js with `apt-get install -y nodejs`")
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(SCRIPT.as_bytes()).await.unwrap();
    drop(stdin);
    let limit = Duration::from_secs(240);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the reports script did not finish within {limit:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the reports script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result:\n{stdout}\n{stderr}"));
    eprintln!("reports script: {line}");
    serde_json::from_str(line).unwrap()
}

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

#[tokio::test]
async fn the_reports_page_is_served() {
    browser::assert_served(
        BIN,
        &[
            ("/supervisor/reports/", "text/html"),
            // Without the slash: redirected to the page.
            ("/supervisor/reports", "text/html"),
            ("/supervisor/reports/reports.js", "javascript"),
            ("/supervisor/reports/reports.css", "text/css"),
        ],
        &[
            "/supervisor/reports/../../tests/supervisor.mjs",
            "/supervisor/reports/nothing.js",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_reads_the_reports_and_todays_figures() {
    browser::require_chromium();
    let _turn = browser::ONE_AT_A_TIME.lock().await;
    browser::ensure_node_modules(&browser::tests_dir(), &["playwright-core", "axe-core"]).await;
    let ops: Vec<Op> = OPERATORS
        .iter()
        .map(|o| Op::new(o, &[("anagrafe", 5), ("stato_civile", 3)], 2))
        .collect();
    let c = Centre::start_memory(&ops, &KIOSKS, |_| {}).await;
    record_history(&c).await;
    let sink = c.t.server.state.routing.outcomes.sink().unwrap();
    let today = history::report::iso(sink.today());
    let from30 = history::report::iso(sink.today() - time::Duration::days(29));
    let token = c.token(Role::Supervisor, "sup");

    let shots = browser::screenshot_dir();
    let base = c.t.server.base_url();
    let result = run_script(
        &[
            "--base",
            &base,
            "--supervisor",
            "sup",
            "--supervisor-password",
            "correct horse battery staple",
            "--from30",
            &from30,
            "--chromium",
            browser::CHROMIUM,
        ],
        &[("SCREENSHOTS", "1"), ("SCREENSHOT_DIR", shots.as_str())],
    )
    .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["cspViolations"], serde_json::json!([]), "{result}");

    // The wallboard's tiles: today's certificates and average rating, as the API says.
    let certs_today = api(
        &c,
        &token,
        &format!("/api/v1/reports/certificates?from={today}&to={today}"),
    )
    .await;
    let calls_today = api(
        &c,
        &token,
        &format!("/api/v1/reports/calls?from={today}&to={today}"),
    )
    .await;
    let issued = certs_today["total"]["issued"].as_u64().unwrap();
    assert!(issued > 0, "{certs_today}");
    assert_eq!(
        result["today"]["certificates"],
        issued.to_string(),
        "{result}"
    );
    let avg = calls_today["total"]["rating_avg"]
        .as_f64()
        .expect("rated today");
    // Shown with one decimal, Italian style ("4,3").
    let shown: f64 = result["today"]["rating"]
        .as_str()
        .unwrap()
        .replace(',', ".")
        .parse()
        .unwrap();
    assert!((shown - avg).abs() <= 0.05 + 1e-9, "{avg}: {result}");
    let ratings = calls_today["total"]["ratings"].as_u64().unwrap();
    assert!(
        result["today"]["ratingsText"]
            .as_str()
            .unwrap_or_default()
            .contains(&ratings.to_string()),
        "{result}"
    );
    assert_eq!(result["wallboardAxe"]["serious"], 0, "{result}");

    // The month so far by day: the total row is the API's, and the CSV starts with its header.
    for (step, by) in [
        ("month", "day"),
        ("operator", "operator"),
        ("days30", "day"),
    ] {
        let shown = &result[step]["shown"];
        assert_eq!(shown["by"], by, "{step}: {result}");
        let path = format!(
            "/api/v1/reports/calls?from={}&to={}&by={by}",
            shown["from"].as_str().unwrap(),
            shown["to"].as_str().unwrap()
        );
        let report = api(&c, &token, &path).await;
        assert_total(&result[step]["total"], &report["total"], step);
        assert!(report["total"]["calls"].as_u64().unwrap() > 0, "{report}");
        let keys: Vec<&str> = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(result[step]["keys"], serde_json::json!(keys), "{step}");
    }
    assert_eq!(result["month"]["shown"]["to"], today.as_str(), "{result}");
    assert_eq!(
        result["days30"]["shown"]["from"],
        from30.as_str(),
        "{result}"
    );
    // Grouped by operator: both operators and the unanswered calls.
    let op_keys = result["operator"]["keys"].as_array().unwrap();
    for o in OPERATORS {
        assert!(op_keys.contains(&Value::from(o)), "{result}");
    }
    assert_eq!(result["operator"]["firstHead"], "Operatore", "{result}");

    // The three charts, with accessible names that carry their figures.
    let charts = &result["charts"];
    let daily = charts["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 1, "{result}");
    assert!(
        daily[0]
            .as_str()
            .unwrap()
            .starts_with("Chiamate e certificati per giorno"),
        "{result}"
    );
    let rating = charts["rating"].as_array().unwrap();
    assert_eq!(rating.len(), 2, "{result}");
    assert!(
        rating[0].as_str().unwrap().contains("municipio"),
        "{result}"
    );
    assert!(rating[1].as_str().unwrap().contains("rossi"), "{result}");
    let year = charts["year"].as_array().unwrap();
    assert_eq!(year.len(), 1, "{result}");
    assert!(
        year[0].as_str().unwrap().contains("obiettivo pro rata"),
        "{result}"
    );
    // The yearly chart sums the kiosk channel from 1 January.
    let year_report = api(
        &c,
        &token,
        &format!(
            "/api/v1/reports/certificates?from={}-01-01&to={today}&by=channel",
            &today[..4]
        ),
    )
    .await;
    let kiosk_year = year_report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "kiosk")
        .map(|r| r["issued"].as_u64().unwrap())
        .unwrap();
    assert_eq!(result["yearIssued"], kiosk_year.to_string(), "{result}");
    assert!(result["chartTables"].as_u64().unwrap() >= 3, "{result}");

    // Downloads: the CSV header first.
    assert!(
        result["csv"]["calls"]["firstLine"]
            .as_str()
            .unwrap()
            .starts_with("key,calls,answered,abandoned"),
        "{result}"
    );
    assert!(
        result["csv"]["calls"]["file"]
            .as_str()
            .unwrap()
            .starts_with("sportello-calls-"),
        "{result}"
    );
    assert!(
        result["csv"]["certificates"]["firstLine"]
            .as_str()
            .unwrap()
            .starts_with("key,"),
        "{result}"
    );

    // Errors, accessibility, and a phone's width.
    assert!(
        result["periodError"]
            .as_str()
            .unwrap()
            .contains("La data iniziale"),
        "{result}"
    );
    assert!(
        result["periodError"]
            .as_str()
            .unwrap()
            .contains("start date"),
        "{result}"
    );
    assert!(
        result["expired"]
            .as_str()
            .unwrap()
            .contains("Sessione scaduta"),
        "{result}"
    );
    assert_eq!(result["axe"]["serious"], 0, "{result}");
    assert_eq!(result["phoneAxe"]["serious"], 0, "{result}");
    assert_eq!(result["phoneOverflow"], false, "{result}");
}

/// The browser side, run by `node --input-type=module -` in `console-web/tests/`.
const SCRIPT: &str = r##"
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, axe, openPage, optionReader, report, shot, waitFor,
} from './harness.mjs';

const flag = optionReader();
const o = {
  base: flag('base', 'SPORTELLO_BASE').replace(/\/$/, ''),
  supervisor: flag('supervisor', 'SUPERVISOR_USERNAME'),
  supervisorPassword: flag('supervisor-password', 'SUPERVISOR_PASSWORD'),
  from30: flag('from30', 'FROM30'),
  timeoutS: Number(flag('timeout-s', 'REPORTS_TIMEOUT_S', '60')),
  chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
  screenshots: process.env.SCREENSHOTS === '1',
  shotDir: process.env.SCREENSHOT_DIR,
};

/** The calls table as the page shows it: its period and grouping, row keys and total row. */
async function table(side) {
  return side.page.evaluate(() => {
    const t = document.getElementById('calls-table');
    const total = {};
    for (const td of t.querySelectorAll('tfoot td[data-col]')) {
      if (td.dataset.value !== undefined) total[td.dataset.col] = td.dataset.value;
    }
    return {
      shown: JSON.parse(document.body.dataset.shown),
      keys: [...t.querySelectorAll('tbody tr[data-key]')].map((tr) => tr.dataset.key),
      total,
      firstHead: t.querySelector('thead th span')?.textContent,
    };
  });
}

/** Waits for load number `n` of the reports page. */
const loaded = (side, n) => waitFor(side, o, `did not load the reports (${n})`,
  (k) => document.body.dataset.busy === 'false' && Number(document.body.dataset.loads) >= k, n);

/** Clicks a CSV button and reads the download: its file name and first line. */
async function csv(side, button) {
  const [download] = await Promise.all([side.page.waitForEvent('download', { timeout: o.timeoutS * 1000 }), side.page.click(button)]);
  const file = download.suggestedFilename();
  const body = readFileSync(await download.path(), 'utf8');
  return { file, firstLine: body.split('\n')[0], lines: body.trim().split('\n').length };
}

async function main() {
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: FLAGS, timeout: o.timeoutS * 1000 });
  const sides = [];
  const result = { ok: false };
  try {
    // 1. The wallboard: log in, then today's tiles.
    const sup = await openPage(browser, o, 'supervisor', `${o.base}/supervisor/`, { width: 1280, height: 1000 });
    sides.push(sup);
    await waitFor(sup, o, 'did not show the login form', () => document.body.dataset.ready === 'true' && document.body.dataset.screen === 'login');
    await sup.page.fill('#username', o.supervisor);
    await sup.page.fill('#password', o.supervisorPassword);
    await sup.page.click('#login-submit');
    await waitFor(sup, o, 'received no snapshot', () => document.body.dataset.screen === 'board' && Number(document.body.dataset.snapshots) > 0);
    result.today = await waitFor(sup, o, 'shows no figures for today', () => {
      const c = document.querySelector('#today-certificates dd')?.textContent;
      const r = document.querySelector('#today-rating dd');
      if (!c || !/^\d/.test(c) || !r || !/^\d/.test(r.textContent)) return null;
      return {
        certificates: c,
        rating: r.firstChild.textContent,
        ratingsText: r.querySelector('.ratings span')?.textContent,
      };
    });
    result.wallboardAxe = await axe(sup);

    // 2. The wallboard's link opens the reports: this month by day.
    await sup.page.click('a[href="reports/"]');
    await waitFor(sup, o, 'did not open the reports', () => location.pathname === '/supervisor/reports/' && document.body.dataset.ready === 'true' && document.body.dataset.screen === 'reports');
    await loaded(sup, 1);
    result.month = await table(sup);

    // 3. Grouping by operator redraws the table.
    await sup.page.selectOption('#by', 'operator');
    await loaded(sup, 2);
    await waitFor(sup, o, 'did not group by operator', () => JSON.parse(document.body.dataset.shown).by === 'operator');
    result.operator = await table(sup);
    result.csv = { calls: await csv(sup, '#csv-calls'), certificates: await csv(sup, '#csv-certificates') };

    // 4. The last 30 days by day (typed in the date field, then "Mostra").
    await sup.page.selectOption('#by', 'day');
    await loaded(sup, 3);
    await sup.page.fill('#from', o.from30);
    await sup.page.click('#apply');
    await waitFor(sup, o, 'did not show the last 30 days', (f) => JSON.parse(document.body.dataset.shown).from === f, o.from30);
    await loaded(sup, 4);
    result.days30 = await table(sup);
    result.charts = await sup.page.evaluate(() => Object.fromEntries(['daily', 'rating', 'year'].map((c) => [c,
      [...document.querySelectorAll(`#chart-${c} svg[role="img"]`)]
        .filter((s) => s.querySelector('title')?.textContent)
        .map((s) => s.getAttribute('aria-label'))])));
    result.chartTables = await sup.page.evaluate(() => [...document.querySelectorAll('.chart-data table')]
      .filter((t) => t.querySelector('tbody tr')).length);
    result.yearIssued = await sup.page.evaluate(() => /Certificati rilasciati dai chioschi dal 1º gennaio al [^:]+: ([\d.]+)/
      .exec(document.querySelector('#chart-year svg').getAttribute('aria-label'))?.[1]?.replace(/\./g, ''));
    result.axe = await axe(sup);
    if (o.screenshots) {
      await sup.page.evaluate(() => document.activeElement?.blur());
      await sup.page.waitForTimeout(300);
      await sup.page.screenshot({ path: `${o.shotDir}/supervisor-reports.png`, fullPage: true });
    }

    // 5. A phone's width: no sideways scrolling, still axe-clean.
    await sup.page.setViewportSize({ width: 390, height: 844 });
    await sup.page.waitForTimeout(300);
    result.phoneOverflow = await sup.page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    result.phoneAxe = await axe(sup);
    await shot(sup, o, 'supervisor-reports-phone');
    await sup.page.setViewportSize({ width: 1280, height: 1000 });

    // 6. A reversed period is refused in the alert region.
    await sup.page.fill('#from', '2030-01-02');
    await sup.page.fill('#to', '2030-01-01');
    await sup.page.click('#apply');
    result.periodError = await waitFor(sup, o, 'showed no period error', () => {
      const e = document.getElementById('error');
      return !e.hidden && e.getAttribute('role') === 'alert' ? e.textContent : null;
    });

    // 7. An expired login brings back the login form.
    await sup.page.evaluate(() => sessionStorage.setItem('sportello.supervisor.token', 'expired'));
    await sup.page.click('.shortcut[data-period="this_month"]');
    result.expired = await waitFor(sup, o, 'did not ask to log in again', () => document.body.dataset.screen === 'login' && !document.getElementById('login-error').hidden
      ? document.getElementById('login-error').textContent : null);

    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(e instanceof Failure ? e.message : e.stack);
    for (const s of sides) console.error(await report(s));
    console.log(JSON.stringify({ ...result, ok: false, error: e.message }));
  } finally {
    await browser.close();
  }
}

await main();
"##;
