//! A short load scenario (`loadtest run`) against the real `sportello` binary: headless kiosks
//! and operators with real WebRTC media, every kind of call the scenario draws (abandons, holds,
//! transfers, certificates printed at the kiosk), and the bots' counts checked against the
//! server's `sportello_calls_total` and `metrics.snapshot`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: loadtest::run::Args,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_scenario_reports_every_figure_and_matches_the_servers_counts() {
    let out = tempfile::tempdir().unwrap();
    let cli = Cli::parse_from([
        "loadtest",
        "--spawn",
        env!("CARGO_BIN_EXE_sportello"),
        "--kiosks",
        "6",
        "--operators",
        "2",
        "--duration",
        "10",
        "--rate",
        "1.2",
        "--handle-mean-s",
        "1.5",
        "--wrapup-s",
        "0.3",
        "--abandon",
        "0.25",
        "--patience-mean-s",
        "0.5",
        "--hold",
        "0.3",
        "--hold-s",
        "0.3",
        "--transfer",
        "0.2",
        "--certificate",
        "0.3",
        "--seed",
        "4",
        "--quiet",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let report = loadtest::run::execute(&cli.args).await.unwrap();
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    println!("{md}");
    assert!(report.check.matches, "counts differ: {:?}", report.check);
    assert_eq!(report.check.rows.len(), 9, "both sources compared");
    let c = &report.calls.bots;
    assert!(c.offered >= 8, "{c:?}");
    assert!(c.answered >= 5, "{c:?}");
    assert!(c.certificates >= 1 && c.printed == c.certificates, "{c:?}");
    assert!(c.held >= 1, "{c:?}");
    assert_eq!(report.errors["count"], 0, "{}", report.errors);
    // Real media both ways.
    assert!(report.join_ms.n >= 3, "{:?}", report.join_ms);
    assert!(report.latency_ms.kiosk_to_operator.n > 100);
    assert!(report.latency_ms.operator_to_kiosk.n > 100);
    assert!(
        report.loss_ratio.is_some_and(|l| l < 0.05),
        "{:?}",
        report.loss_ratio
    );
    assert!(report.kbps.is_some_and(|k| k > 100.0), "{:?}", report.kbps);
    // The server's figures.
    assert!(report.server.cpu_s.is_some_and(|s| s > 0.0));
    assert!(report.server.cpu_per_call_pct.is_some());
    assert!(report.server.rss_mib_max.is_some_and(|m| m > 10.0));
    assert!(report.server.packets_forwarded.is_some_and(|p| p > 100.0));
    assert!(report.service_level.is_some());
    // The three files, and the headline line.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    for key in [
        "calls",
        "wait_s",
        "join_ms",
        "latency_ms",
        "loss_ratio",
        "service_level",
        "ewt_error_median",
        "server",
        "check",
    ] {
        assert!(json.get(key).is_some(), "report.json lacks {key}");
    }
    let svg = std::fs::read_to_string(out.path().join("report.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("Server CPU"),
        "report.svg"
    );
    let headline: serde_json::Value = serde_json::from_str(&report.headline_json()).unwrap();
    assert_eq!(headline["counts_match"], true);
}
