//! Tests of `cargo xtask bench`: reading the JSON, numbers and targets, the tables and rewriting
//! `BENCHMARKS.md`.

use serde_json::{Map, Value};

use super::figures::Target::{AtLeast, AtMost, Below};
use super::figures::{lookup, value_of, Key, Target, FIGURES};
use super::machine::civil_from_days;
use super::report::number;
use super::run::last_json;
use super::*;

fn figures(json: &str) -> Map<String, Value> {
    last_json(json).expect("a JSON object")
}

#[test]
fn last_json_takes_the_last_non_empty_line() {
    let out = "routing/redis time: [1 2 3]\n{\"not\":\"this\"}\n\
               {\"redis_decisions_per_s\":8000.5,\"median_error\":{\"0.6\":0.39}}\n\n";
    let map = figures(out);
    assert_eq!(
        lookup(&map, "redis_decisions_per_s").and_then(Value::as_f64),
        Some(8000.5)
    );
    assert_eq!(
        lookup(&map, "median_error/0.6").and_then(Value::as_f64),
        Some(0.39)
    );
    assert!(lookup(&map, "median_error/0.8").is_none());
    // A flat key with a slash in it, as call_cost prints them.
    let map = figures("{\"engine_us_per_datagram/1\":4.8}\n");
    assert_eq!(
        lookup(&map, "engine_us_per_datagram/1").and_then(Value::as_f64),
        Some(4.8)
    );
    assert!(last_json("figures: 3\n").is_err());
    assert!(last_json("[1, 2]\n").is_err());
    assert!(last_json("").is_err());
    assert!(last_json("{\"a\":1}\ntrailing words\n").is_err());
}

#[test]
fn numbers_targets_and_ratios() {
    assert_eq!(number(77_812.4), "77,812");
    assert_eq!(number(1_234_567.0), "1,234,567");
    assert_eq!(number(141.94), "142");
    assert_eq!(number(12.0), "12");
    assert_eq!(number(0.3894), "0.389");
    assert_eq!(number(0.0043), "0.0043");
    assert_eq!(AtLeast(100_000.0).shown("/s"), "≥ 100,000/s");
    assert_eq!(
        AtLeast(20_000.0).ratio(&serde_json::json!(8000)),
        "0.4 (**missed**)"
    );
    assert_eq!(Below(1.0).ratio(&serde_json::json!(0.5)), "0.5 (met)");
    assert_eq!(Below(1.0).ratio(&serde_json::json!(1.0)), "1 (**missed**)");
    assert_eq!(AtMost(1.0).ratio(&serde_json::json!(1.0)), "1 (met)");
    assert_eq!(Target::True.ratio(&Value::Bool(true)), "met");
    assert_eq!(Below(1.0).ratio(&Value::Null), "—");
    let map = figures(r#"{"sfu_pps_per_core":60000,"relay_pps_per_core":200000}"#);
    let ratio = value_of(&map, Key::Ratio("sfu_pps_per_core", "relay_pps_per_core"));
    assert_eq!(ratio.as_f64(), Some(0.3));
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_789), (2026, 12, 2));
}

#[test]
fn every_figure_names_a_benchmark_and_names_are_unique() {
    for f in FIGURES {
        assert!(BENCHES.iter().any(|b| b.name == f.bench), "{}", f.bench);
    }
    let mut seen = names();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), BENCHES.len());
    assert!(parse_options(&["--only".into(), "routing,ewt".into()]).is_ok());
    assert!(parse_options(&["--only".into(), "nonesuch".into()]).is_err());
}

fn sample_section() -> String {
    let machine = Machine {
        cores: "2".into(),
        cpu: "AMD EPYC".into(),
        ram: "7.8 GiB".into(),
        kernel: "6.1.0".into(),
        load_before: "1.00 0.50 0.25".into(),
        load_after: "2.00 1.00 0.50".into(),
        date: "2026-12-02 10:00 UTC".into(),
    };
    let bench = BENCHES.iter().find(|b| b.name == "routing").unwrap();
    let runs = vec![
        Run {
            bench: "routing",
            command: command_line(bench, false),
            outcome: Outcome::Figures(figures(
                r#"{"redis_c50_decisions_per_s":8000,"redis_benchmark_evalsha_per_s":42000,"redis_c50_to_evalsha_ratio":0.19,"memory_decisions_per_s":745000,"extra_us":3.5,"more_ms":1500}"#,
            )),
            seconds: 61.0,
        },
        Run {
            bench: "ewt",
            command: "cargo bench -p queue --bench ewt".into(),
            outcome: Outcome::Failed("failed (exit status: 101)".into()),
            seconds: 2.0,
        },
        Run {
            bench: "janus",
            command: "target/release/loadtest compare-janus".into(),
            outcome: Outcome::Skipped("janus is not installed".into()),
            seconds: 0.0,
        },
    ];
    render_section(&machine, &Options::default(), &runs)
}

#[test]
fn the_section_has_the_machine_runs_and_figures() {
    let section = sample_section();
    assert!(section.starts_with(BEGIN) && section.ends_with(END));
    assert!(section.contains("| CPU | AMD EPYC |"));
    assert!(section.contains(
        "| ewt | `cargo bench -p queue --bench ewt` | **failed**: failed (exit status: 101) | 2 |"
    ));
    assert!(section.contains("skipped: janus is not installed"));
    assert!(section.contains(
        "| `cargo bench -p queue --bench routing` | routing decisions per second, Redis store, \
         50 callers on one tenant (`redis_c50_decisions_per_s`) | 8,000/s | ≥ 20,000/s | 0.4 (**missed**) |"
    ));
    // The command on the first row of its benchmark only.
    assert!(section.contains(
        "|  | Redis routing, 50 callers, as a fraction of EVALSHA `-c 50` \
         (`redis_c50_to_evalsha_ratio`) | 0.19 | ≥ 0.25 | 0.76 (**missed**) |"
    ));
    // Keys the table does not name are still listed.
    assert!(section.contains("|  | other figures | `extra_us` 3.5, `more_ms` 1,500 | — | — |"));
}

#[test]
fn rewrite_replaces_only_the_section_and_is_idempotent() {
    let doc = "# Benchmarks\n\nHand-written intro.\n\n## Queue\n\nHand-written table.\n";
    let section = sample_section();
    let once = rewrite(doc, &section);
    assert!(once
        .starts_with("# Benchmarks\n\nHand-written intro.\n\n<!-- cargo xtask bench: begin -->"));
    assert!(once.contains(&format!("{END}\n\n## Queue\n\nHand-written table.\n")));
    assert_eq!(rewrite(&once, &section), once);
    // A new run replaces the old section and nothing else.
    let other = section.replace("8,000/s", "9,000/s");
    let twice = rewrite(&once, &other);
    assert_eq!(twice, once.replace("8,000/s", "9,000/s"));
    assert_eq!(twice.matches(BEGIN).count(), 1);
    assert_eq!(twice.matches(END).count(), 1);
    // No heading at all: appended.
    assert!(rewrite("# B\n\ntext\n", &section).ends_with(&format!("{END}\n")));
}
