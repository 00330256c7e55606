//! The monitoring artefacts of `deploy/`, checked with the tools their ecosystem uses:
//!
//! - `deploy/prometheus/alerts.yml` passes `promtool check rules`, and its unit tests
//!   (`alerts_test.yml`) pass `promtool test rules`; every alert has a severity, Italian and
//!   English summaries and descriptions, and a runbook section in `docs/monitoring.md`;
//! - the Grafana dashboards (`deploy/grafana/dashboards/*.json`) are what Grafana loads (uid,
//!   title, schema version, panels with the `prometheus` datasource and targets), and the
//!   provisioning files point at that datasource and folder;
//! - against real servers (a signalling node and a media node sharing a real Redis, after a real
//!   call with real media, whose quality figures the media node must have observed), a private Prometheus scrapes them under the deployments' job names
//!   (`sportello-signalling`, `sportello-media`) and loads the alert rules: every rule evaluates
//!   without error, every dashboard expression is accepted by the query API, and every metric
//!   name the rules and dashboards use is served by a node's `/metrics` (Prometheus's own `up`
//!   is the one exception) and has series in Prometheus. Every `sportello_*` metric served is
//!   documented in `docs/monitoring.md`. Once Redis is killed, both nodes report
//!   `sportello_redis_up 0`.
//!
//! `promtool` and `prometheus` come from `<workspace>/target/tools/bin/` (`cargo xtask deps`), or
//! from `PATH` (`testkit::prometheus::tool`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::centre::{available_operator, call, demo_credentials, ok, on_call};
use futures_util::{SinkExt as _, StreamExt as _};
use kiosk_client::media::ClientOptions;
use kiosk_client::HeadlessKiosk;
use protocol::Request;
use serde_json::Value;
use testkit::prometheus::{tool, Prometheus, ScrapeJob};
use testkit::SportelloProcess;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

/// The scrape job names the compose and Kubernetes deployments use.
const SIGNALLING_JOB: &str = "sportello-signalling";
const MEDIA_JOB: &str = "sportello-media";

const DASHBOARDS: [&str; 2] = ["contact-centre.json", "platform.json"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str]) {
    let promtool = tool("promtool").unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(root().join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

/// The alerts of `alerts.yml` by name, each with the text of its block (the file is ours and
/// regular: one `- alert:` per rule).
fn alert_blocks() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    text.split("- alert: ")
        .skip(1)
        .map(|block| {
            let name = block.lines().next().unwrap().trim().to_owned();
            (name, block.to_owned())
        })
        .collect()
}

/// The anchors GitHub gives the headings of `docs/monitoring.md`.
fn doc_anchors() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_is_labelled_bilingual_and_has_a_runbook_section() {
    let alerts = alert_blocks();
    let anchors = doc_anchors();
    let wanted = [
        "SportelloServiceLevelLow",
        "SportelloLongestWaitHigh",
        "SportelloNodeDown",
        "SportelloMediaNodeOverloaded",
        "SportelloRedisUnreachable",
        "SportelloPrintJobsStuck",
        "SportelloCertificateFailures",
        "SportelloAuditChainBroken",
    ];
    for name in wanted {
        assert!(alerts.contains_key(name), "no alert {name} in alerts.yml");
    }
    let tests = std::fs::read_to_string(root().join("deploy/prometheus/alerts_test.yml")).unwrap();
    for (name, block) in &alerts {
        for field in [
            "expr:",
            "for:",
            "severity:",
            "summary:",
            "summary_en:",
            "description:",
            "description_en:",
        ] {
            assert!(block.contains(field), "alert {name} has no {field}");
        }
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "alert {name}: severity is critical or warning"
        );
        let anchor = name.to_lowercase();
        assert!(
            block.contains(&format!("runbook: \"docs/monitoring.md#{anchor}\"")),
            "alert {name}: runbook annotation docs/monitoring.md#{anchor}"
        );
        assert!(
            anchors.contains(&anchor),
            "docs/monitoring.md has no section {name} (#{anchor})"
        );
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "alerts_test.yml does not test {name}"
        );
    }
}

fn dashboard(file: &str) -> Value {
    let path = root().join("deploy/grafana/dashboards").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of a dashboard: each target's `expr`, and the metric part of each
/// templating query (`label_values(<metric selector>, <label>)`).
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(selector, _)| selector.trim().to_owned())
            .unwrap_or_else(|| panic!("variable {}: not label_values(…): {q}", v["name"]));
        out.push(inner);
    }
    out
}

#[test]
fn dashboards_and_provisioning_are_what_grafana_loads() {
    let mut uids = BTreeSet::new();
    for file in DASHBOARDS {
        let d = dashboard(file);
        for field in ["uid", "title"] {
            assert!(
                d[field].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: no {field}"
            );
        }
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{file}: uid reused"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
            "{file}: schemaVersion"
        );
        assert!(
            d["id"].is_null(),
            "{file}: a provisioned dashboard has no id"
        );
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 10, "{file}: too few panels");
        let mut ids = BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without a title");
            assert!(
                p["id"].as_u64().is_some_and(|id| ids.insert(id)),
                "{file}: {title}: id"
            );
            for k in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][k].is_u64(), "{file}: {title}: gridPos.{k}");
            }
            assert!(
                p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24,
                "{file}: {title}: wider than the grid"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "prometheus",
                "{file}: {title}: datasource"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no targets");
            for t in targets {
                assert!(t["refId"].is_string(), "{file}: {title}: refId");
                assert_eq!(t["datasource"]["uid"], "prometheus", "{file}: {title}");
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{file}: {title}: expr"
                );
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            assert_eq!(v["datasource"]["uid"], "prometheus", "{file}: variable");
        }
        assert!(!dashboard_exprs(&d).is_empty());
    }
    let datasource = std::fs::read_to_string(
        root().join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    for needed in [
        "uid: prometheus",
        "type: prometheus",
        "url: http://prometheus:9090",
    ] {
        assert!(datasource.contains(needed), "datasource: {needed}");
    }
    let provider = std::fs::read_to_string(
        root().join("deploy/grafana/provisioning/dashboards/sportello.yml"),
    )
    .unwrap();
    for needed in ["type: file", "path: /var/lib/grafana/dashboards"] {
        assert!(provider.contains(needed), "dashboard provider: {needed}");
    }
}

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregations (`quantile` and the rest are always followed by `(`), keywords, label names of `by`/`without`/`on`/`ignoring`/`group_left`/
/// `group_right`, label matchers (`{…}`), strings or ranges (`[…]`).
fn names_in(expr: &str) -> BTreeSet<String> {
    // Strings, matchers and ranges out first (they hold label values, `$variables`, durations).
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' | '\'' | '`' => Some(c),
            '{' => Some('}'),
            '[' => Some(']'),
            _ => None,
        };
        match close {
            Some(end) => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == end && !escaped {
                        break;
                    }
                    escaped = d == '\\' && !escaped;
                }
                plain.push(' ');
            }
            None => plain.push(c),
        }
    }
    // Operators and aggregations (an aggregation may come before its `by (…)`, not its `(`).
    const KEYWORDS: [&str; 19] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let text: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (1, 0.8, 1e3) or a duration: skip the whole token.
            while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len()
            && (text[i].is_ascii_alphanumeric() || text[i] == '_' || text[i] == ':')
        {
            i += 1;
        }
        let word: String = text[start..i].iter().collect();
        let mut j = i;
        while j < text.len() && text[j].is_whitespace() {
            j += 1;
        }
        let call = j < text.len() && text[j] == '(';
        if GROUPING.contains(&word.as_str()) {
            if call {
                // Skip the label list.
                while j < text.len() && text[j] != ')' {
                    j += 1;
                }
                i = j + 1;
            }
            continue;
        }
        if call || KEYWORDS.contains(&word.to_lowercase().as_str()) {
            continue;
        }
        names.insert(word);
    }
    names
}

#[test]
fn metric_names_are_found_in_expressions() {
    let e = r#"sum by (le, route) (rate(sportello_http_request_duration_seconds_bucket{job=~"$job",instance=~"x|y"}[$__rate_interval])) > 0.5 and on (job) group_left (role) sportello_node_info or up{job="a"} * 8"#;
    assert_eq!(
        names_in(e),
        BTreeSet::from([
            "sportello_http_request_duration_seconds_bucket".to_owned(),
            "sportello_node_info".to_owned(),
            "up".to_owned()
        ])
    );
    assert_eq!(
        names_in("time() - max(some_other_metric offset 5m) > 1e3"),
        BTreeSet::from(["some_other_metric".to_owned()])
    );
    assert_eq!(
        names_in(r#"histogram_quantile(0.9, sum without (instance) (rate(x_bucket[1m])))"#),
        BTreeSet::from(["x_bucket".to_owned()])
    );
}

/// Substitutes Grafana's variables so an expression can be sent to Prometheus as it is.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${tenant}", ".*")
        .replace("$tenant", ".*")
        .replace("$service", ".*")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

/// The sample names of a `/metrics` text (`x_bucket`, `x_sum` and `x_count` for a histogram).
fn served_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The metric families a `/metrics` text declares (`# TYPE name kind`).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn host_port(metrics_url: &str) -> String {
    metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned()
}

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Waits until `url`'s text contains `needle` (a node's view of another, a first figure).
async fn wait_metric(url: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if scrape(url).await.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never showed {needle} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the sample `series` (name and labels exactly as served) in a `/metrics` text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the sample `series` at `url` is above zero.
async fn wait_positive(url: &str, series: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = sample(&scrape(url).await, series);
        if value.is_some_and(|v| v > 0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} at {url} still {value:?} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_dashboards_name_is_served_and_evaluates() {
    let mut redis = testkit::RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().as_os_str();
    let url = redis.url();
    // The signalling node first: it creates the cluster secret and the demo accounts.
    let signalling = SportelloProcess::start(
        BIN,
        &[
            "--role".as_ref(),
            "signalling".as_ref(),
            "--data-dir".as_ref(),
            data,
            "--redis".as_ref(),
            url.as_ref(),
        ],
        &[],
    );
    let media = SportelloProcess::start(
        BIN,
        &[
            "--role".as_ref(),
            "media".as_ref(),
            "--data-dir".as_ref(),
            data,
            "--redis".as_ref(),
            url.as_ref(),
            "--internal-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--media-udp".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--media-tcp".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        &[],
    );
    let sig_metrics = signalling.metrics.clone().expect("signalling metrics URL");
    let media_metrics = media.metrics.clone().expect("media node metrics URL");
    // The signalling node places calls only on media nodes it has read.
    wait_metric(&sig_metrics, "sportello_media_node_calls{").await;

    // One whole call, so the queue's counters, histograms and gauges have series: offered,
    // answered, handled; and a socket the server closes (a frame over the limit).
    let creds = demo_credentials(dir.path());
    let (user, password) = (
        creds["operators"][0]["username"].as_str().unwrap(),
        creds["operators"][0]["password"].as_str().unwrap(),
    );
    let mut op = available_operator(&signalling.base, &signalling.ws_url(), user, password).await;
    let kiosk_token = creds["kiosks"][0]["token"].as_str().unwrap();
    let mut kiosk = HeadlessKiosk::connect(&signalling.ws_url(), kiosk_token, vec![])
        .await
        .unwrap();
    let id = kiosk.request_call("anagrafe", "it", None).await.unwrap();
    on_call(op.session(), "call.offered", &id).await;
    ok(op.session(), Request::CallAccept(call(&id))).await;
    on_call(kiosk.session(), "call.assigned", &id).await;
    // Real media through the media node, until its quality figures have observations: the
    // receivers' loss reports and the keyframes asked of the senders. (The headless clients'
    // calls yield no round-trip measurement within this test, so that histogram is checked as
    // served, without requiring observations.)
    let kiosk_media = kiosk.start_media(ClientOptions::default()).await.unwrap();
    let op_media = op.start_media(&id, ClientOptions::default()).await.unwrap();
    for figure in [
        "sportello_media_loss_ratio_count",
        "sportello_media_keyframe_requests_total{direction=\"out\"}",
        "sportello_media_rtp_packets_total{direction=\"out\"}",
    ] {
        wait_positive(&media_metrics, figure).await;
    }
    drop((kiosk_media, op_media));
    ok(op.session(), Request::CallEnd(call(&id))).await;
    on_call(kiosk.session(), "call.ended", &id).await;
    ok(op.session(), common::centre::wrapup(&id)).await;
    on_call(op.session(), "wrapup.ended", &id).await;
    let (mut raw, _) = tokio_tungstenite::connect_async(signalling.ws_url())
        .await
        .unwrap();
    raw.send(tokio_tungstenite::tungstenite::Message::Text(
        "x".repeat(70 * 1024).into(),
    ))
    .await
    .unwrap();
    while let Some(Ok(m)) = raw.next().await {
        if m.is_close() {
            break;
        }
    }
    wait_metric(&sig_metrics, "sportello_handle_seconds_bucket{").await;
    wait_metric(&sig_metrics, "sportello_queue_service_level{").await;

    let jobs = [
        ScrapeJob::new(SIGNALLING_JOB, [host_port(&sig_metrics)]),
        ScrapeJob::new(MEDIA_JOB, [host_port(&media_metrics)]),
    ];
    let rule_files = [root().join("deploy/prometheus/alerts.yml")];
    // Starting waits for readiness by polling: off the runtime's workers.
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(&jobs, &rule_files))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}"));
    prometheus
        .wait_targets_up(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Every rule evaluated, without error.
    let rules = prometheus
        .wait_rules_evaluated(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rules {
        let name = r["name"].as_str().unwrap_or("?").to_owned();
        assert_eq!(
            r["health"], "ok",
            "rule {name}: {} ({})",
            r["lastError"], r["query"]
        );
        for m in names_in(r["query"].as_str().unwrap()) {
            used.entry(m)
                .or_default()
                .push(format!("alerts.yml: {name}"));
        }
    }
    assert_eq!(rules.len(), alert_blocks().len(), "every rule is loaded");

    // Both jobs have been scraped at least twice, so rates have two points.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for file in DASHBOARDS {
        let d = dashboard(file);
        for expr in dashboard_exprs(&d) {
            let query = concrete(&expr);
            prometheus
                .query(&query)
                .await
                .unwrap_or_else(|e| panic!("{file}: {query}: {e:#}"));
            for m in names_in(&query) {
                used.entry(m).or_default().push(file.to_owned());
            }
        }
    }

    let sig_text = scrape(&sig_metrics).await;
    let media_text = scrape(&media_metrics).await;
    let served: BTreeSet<String> = served_names(&sig_text)
        .union(&served_names(&media_text))
        .cloned()
        .collect();
    let in_prometheus = prometheus
        .metric_names()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| name.as_str() != "up" && !served.contains(name.as_str()))
        .map(|(name, by)| format!("{name} (used by {})", by.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics named by the rules or dashboards that no node serves:\n{}",
        missing.join("\n")
    );
    let no_series: Vec<&String> = used
        .keys()
        .filter(|name| !in_prometheus.contains(name.as_str()))
        .collect();
    assert!(
        no_series.is_empty(),
        "metrics without series in Prometheus: {no_series:?}"
    );
    // The jobs are the deployments' names, and each node is up under its own.
    for job in [SIGNALLING_JOB, MEDIA_JOB] {
        let up = prometheus
            .query(&format!("up{{job=\"{job}\"}} == 1"))
            .await
            .unwrap();
        assert_eq!(
            up["result"].as_array().map(Vec::len),
            Some(1),
            "{job}: {up}"
        );
    }

    // Every sportello_* family a node serves is documented.
    let docs = std::fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    let undocumented: Vec<String> = families(&sig_text)
        .union(&families(&media_text))
        .filter(|f| f.starts_with("sportello_") && !docs.contains(&format!("`{f}`")))
        .cloned()
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/monitoring.md: {undocumented:?}"
    );

    // Redis gone: both nodes say so, and Prometheus sees it.
    redis.kill();
    for url in [&sig_metrics, &media_metrics] {
        wait_metric(url, "\nsportello_redis_up 0\n").await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let down = prometheus
            .query("min by (job) (sportello_redis_up) == 0")
            .await
            .unwrap();
        if down["result"].as_array().map_or(0, Vec::len) == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not see Redis down from both jobs: {down}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prometheus);
    drop(kiosk);
    drop(op);
    drop(media);
    drop(signalling);
}
