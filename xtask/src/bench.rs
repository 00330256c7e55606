//! `cargo xtask bench [--quick] [--only NAME[,NAME…]] [--no-write]`: runs every benchmark and the
//! standard load scenario, and rewrites the generated section of `BENCHMARKS.md`.
//!
//! Each benchmark ([`BENCHES`]: the `cargo bench` ones of `queue`, `signalling`, `certificates` and
//! `medianode`, and the `loadtest` programs) prints, as its last line on stdout, one JSON object
//! with its headline figures. This first builds the bench executables (one `cargo bench --no-run`
//! per package) and the release binaries, then runs each command in turn (its output goes to stderr
//! as it comes) and takes that last line. A command that fails or prints no JSON is reported in the
//! runs table and the others still run, and the whole command then exits with an error;
//! `compare-janus` is skipped, and says so, when `janus` is not installed.
//!
//! [`FIGURES`] is the one table of what is reported: per figure its benchmark, its key in the JSON
//! (`a/b` for a nested key, or the ratio of two keys), what it is, its unit and its target, from
//! `docs/design/targets.md` and the goals of issue 19. Keys a benchmark prints that the table does
//! not name are listed on one more row after its named figures ("other figures"), without a target.
//!
//! The section between [`BEGIN`] and [`END`] in `BENCHMARKS.md` is replaced as a whole (the markers
//! are created before the first `## ` heading when absent); everything else in the file is written
//! by hand and left as it is. It holds the machine (cores, CPU model, RAM, kernel, load average
//! before and after the run, date), the runs (command, result, seconds) and the figures (command,
//! figure, measured, target, ratio of measured to target with met/missed). `--only` rewrites the
//! section with the named benchmarks only; `--no-write` prints it and leaves the file alone;
//! `--quick` passes each program's short option or smaller sizes (the figures are then smoke
//! figures, and the section says so).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use Target::{AtLeast, AtMost, Below};

/// The first line of the generated section of `BENCHMARKS.md`.
pub const BEGIN: &str = "<!-- cargo xtask bench: begin -->";
/// The last line of the generated section of `BENCHMARKS.md`.
pub const END: &str = "<!-- cargo xtask bench: end -->";

/// Where the load programs write their reports (`--out`), under the project root.
const OUT_DIR: &str = "target/xtask-bench";

/// What runs a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    /// `cargo bench -p PACKAGE --bench BENCH`, built beforehand with `cargo bench --no-run` of the
    /// same package (cargo unifies features over the packages of one command, so building several
    /// packages at once would not build what each bench's own command runs).
    Cargo {
        package: &'static str,
        bench: &'static str,
    },
    /// The release `loadtest` binary, built beforehand with `cargo build --release`.
    Loadtest,
}

/// One benchmark command.
#[derive(Debug, Clone, Copy)]
struct Bench {
    /// Its name for `--only` and in the tables.
    name: &'static str,
    program: Program,
    /// Arguments always given (after `--bench BENCH` for cargo).
    args: &'static [&'static str],
    /// Arguments given only without `--quick`.
    full_args: &'static [&'static str],
    /// Arguments given only with `--quick`.
    quick_args: &'static [&'static str],
    /// Environment set only with `--quick`.
    quick_env: &'static [(&'static str, &'static str)],
    /// Whether it takes `--out DIR` (a load program writing its report).
    out: bool,
    /// A program that must be on the PATH, or the benchmark is skipped.
    needs: Option<&'static str>,
}

/// The defaults the entries of [`BENCHES`] start from.
const DEFAULTS: Bench = Bench {
    name: "",
    program: Program::Loadtest,
    args: &[],
    full_args: &[],
    quick_args: &[],
    quick_env: &[],
    out: false,
    needs: None,
};

/// A load program writing its report (`--out`).
const LOADTEST: Bench = Bench {
    out: true,
    ..DEFAULTS
};

/// Criterion's options for a short run.
const CRITERION_QUICK: &[&str] = &["--", "--warm-up-time", "1", "--measurement-time", "2"];

/// Every benchmark, in the order they run.
const BENCHES: &[Bench] = &[
    Bench {
        name: "certificates",
        program: Program::Cargo {
            package: "certificates",
            bench: "certificates",
        },
        quick_args: CRITERION_QUICK,
        ..DEFAULTS
    },
    Bench {
        name: "routing",
        program: Program::Cargo {
            package: "queue",
            bench: "routing",
        },
        quick_args: CRITERION_QUICK,
        quick_env: &[("EVALSHA_N", "20000"), ("EVALSHA_RUNS", "1")],
        ..DEFAULTS
    },
    Bench {
        name: "offer_latency",
        program: Program::Cargo {
            package: "queue",
            bench: "offer_latency",
        },
        quick_env: &[("SAMPLES", "500")],
        ..DEFAULTS
    },
    Bench {
        name: "ewt",
        program: Program::Cargo {
            package: "queue",
            bench: "ewt",
        },
        ..DEFAULTS
    },
    Bench {
        name: "sessions",
        program: Program::Cargo {
            package: "signalling",
            bench: "sessions",
        },
        quick_env: &[("SESSIONS", "1000"), ("ACTIVE", "100"), ("RUNS", "3")],
        ..DEFAULTS
    },
    Bench {
        name: "calls",
        program: Program::Cargo {
            package: "signalling",
            bench: "calls",
        },
        quick_env: &[("CALLS", "200")],
        ..DEFAULTS
    },
    Bench {
        name: "medianode_offer",
        program: Program::Cargo {
            package: "medianode",
            bench: "offer",
        },
        quick_env: &[("OFFERS", "50")],
        ..DEFAULTS
    },
    Bench {
        name: "forward",
        args: &["forward"],
        quick_args: &["--quick"],
        ..DEFAULTS
    },
    Bench {
        name: "load",
        args: &[
            "run",
            "--spawn",
            "target/release/sportello",
            "--kiosks",
            "12",
            "--operators",
            "4",
            "--seed",
            "1",
        ],
        full_args: &["--duration", "45"],
        quick_args: &["--duration", "15"],
        ..LOADTEST
    },
    Bench {
        name: "capacity",
        args: &["capacity", "--spawn", "target/release/sportello"],
        full_args: &[
            "--start", "16", "--step", "16", "--max", "320", "--step-s", "20",
        ],
        quick_args: &[
            "--start", "4", "--step", "4", "--max", "8", "--step-s", "10",
        ],
        ..LOADTEST
    },
    Bench {
        name: "janus",
        args: &[
            "compare-janus",
            "--spawn",
            "target/release/sportello",
            "--spawn-janus",
        ],
        full_args: &["--calls", "4", "--duration", "30"],
        quick_args: &["--calls", "2", "--duration", "10"],
        needs: Some("janus"),
        ..LOADTEST
    },
];

/// Where a figure is in a benchmark's JSON.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// A key, `a/b` for `{"a":{"b":…}}`.
    Path(&'static str),
    /// The ratio of two keys' numbers.
    Ratio(&'static str, &'static str),
}

/// A target: the measured value must be…
#[derive(Debug, Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    /// `true`.
    True,
}

/// One reported figure.
#[derive(Debug, Clone, Copy)]
struct Figure {
    /// The [`Bench::name`] that prints it.
    bench: &'static str,
    key: Key,
    what: &'static str,
    /// Shown after the measured value and the target (` ms`, `/s`…).
    unit: &'static str,
    target: Option<Target>,
}

const fn fig(
    bench: &'static str,
    key: &'static str,
    what: &'static str,
    unit: &'static str,
    target: Option<Target>,
) -> Figure {
    Figure {
        bench,
        key: Key::Path(key),
        what,
        unit,
        target,
    }
}

/// A figure that is the ratio of two keys of `bench`'s JSON.
const fn ratio(
    bench: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    what: &'static str,
    target: Option<Target>,
) -> Figure {
    Figure {
        bench,
        key: Key::Ratio(numerator, denominator),
        what,
        unit: "",
        target,
    }
}

/// The figures of every benchmark, with their targets (`docs/design/targets.md`, and the goals of
/// issue 19 where they are stricter or new: stamps, the Redis ratio, the load run). One line each:
/// benchmark, key, what, unit, target.
#[rustfmt::skip]
const FIGURES: &[Figure] = &[
    // SFU forwarding (`loadtest forward`).
    fig("forward", "sfu_pps_per_core", "SRTP packets forwarded per second per core of the SFU", "/s", Some(AtLeast(100_000.0))),
    fig("forward", "relay_pps_per_core", "plain recvmmsg/sendmmsg relay, packets per second per core (reference)", "/s", None),
    ratio("forward", "sfu_pps_per_core", "relay_pps_per_core", "SFU forwarding as a fraction of the plain relay", Some(AtLeast(0.5))),
    fig("forward", "latency_p99_ms", "latency added by the SFU at 50% load, p99", " ms", Some(Below(1.0))),
    fig("forward", "relay_latency_p99_ms", "latency added by the plain relay, p99 (reference)", " ms", None),
    fig("forward", "memory_per_call_kib", "memory per active call", " KiB", Some(Below(1024.0))),
    // Queue.
    fig("routing", "redis_decisions_per_s", "routing decisions per second, Redis store, one client", "/s", Some(AtLeast(20_000.0))),
    fig("routing", "redis_benchmark_evalsha_per_s", "`redis-benchmark -c 50` EVALSHA of an INCR script, same run (reference)", "/s", None),
    fig("routing", "redis_to_evalsha_ratio", "Redis routing as a fraction of EVALSHA `-c 50`", "", Some(AtLeast(0.25))),
    fig("routing", "memory_decisions_per_s", "routing decisions per second, memory store", "/s", None),
    fig("offer_latency", "memory_offer_p99_ms", "offer-eligible → offer delivered, memory store, p99 (worse scenario)", " ms", Some(Below(5.0))),
    fig("offer_latency", "redis_offer_p99_ms", "offer-eligible → offer delivered, Redis store, p99 (worse scenario)", " ms", Some(Below(10.0))),
    fig("ewt", "median_error/0.6", "estimated wait, median relative error at utilisation 0.6", "", Some(Below(0.25))),
    fig("ewt", "median_error/0.8", "estimated wait, median relative error at utilisation 0.8", "", Some(Below(0.25))),
    fig("ewt", "median_error/0.95", "estimated wait, median relative error at utilisation 0.95", "", Some(Below(0.25))),
    // Server.
    fig("sessions", "startup_fresh_ms", "start-up to ready, fresh data directory (median)", " ms", Some(Below(1000.0))),
    fig("sessions", "startup_existing_ms", "start-up to ready, existing data directory (median)", " ms", Some(Below(1000.0))),
    fig("sessions", "idle_session_kib", "server memory per idle WebSocket session", " KiB", Some(Below(30.0))),
    fig("sessions", "request_reply_p99_ms", "request → reply with the active sessions, p99", " ms", Some(Below(5.0))),
    fig("calls", "memory_offered_p99_ms", "`call.request` → `call.offered` over the wire, memory store, p99", " ms", Some(Below(5.0))),
    fig("calls", "redis_offered_p99_ms", "`call.request` → `call.offered` over the wire, Redis store, p99", " ms", Some(Below(10.0))),
    fig("medianode_offer", "internal_hop_p50_ms", "extra latency of a media node's internal API, median", " ms", None),
    // Certificates (criterion's estimates, not percentiles).
    fig("certificates", "stamps_signed_per_s", "stamps signed per second per core (family of 8)", "/s", Some(AtLeast(20_000.0))),
    fig("certificates", "stamp_verify_us", "verifying a stamp from text (criterion's estimate)", " µs", Some(Below(1000.0))),
    fig("certificates", "issue_residenza_ms", "issue a residenza (criterion's estimate; the target is on the p99)", " ms", Some(Below(20.0))),
    fig("certificates", "issue_stato_famiglia_8_ms", "issue a stato di famiglia of 8 (criterion's estimate; the target is on the p99)", " ms", Some(Below(20.0))),
    // The standard load scenario (`loadtest run`).
    fig("load", "join_ms_p95", "call → both sides in the call, p95", " ms", Some(AtMost(1500.0))),
    fig("load", "loss_ratio", "media packet loss", "", Some(AtMost(0.01))),
    fig("load", "latency_ms_p99", "media latency, p99", " ms", Some(AtMost(150.0))),
    fig("load", "server_cpu_per_call_pct", "server CPU per call", "% of a core", Some(AtMost(0.5))),
    fig("load", "counts_match", "every call counted once on both sides", "", Some(Target::True)),
    // Capacity and the Janus comparison report figures without targets.
    fig("capacity", "max_calls", "largest load that held every objective", " calls", None),
    fig("janus", "ratios/cpu_per_call_pct", "server CPU per call, ours ÷ Janus", "", None),
];

/// The options of one run.
#[derive(Debug, Default)]
struct Options {
    quick: bool,
    write: bool,
    only: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        write: true,
        ..Options::default()
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-write" => options.write = false,
            "--only" => {
                let names = args.next().context("--only needs NAME[,NAME…]")?;
                options.only.extend(
                    names
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                );
            }
            other => bail!("unknown bench argument {other}; usage: {USAGE}"),
        }
    }
    for name in &options.only {
        if !BENCHES.iter().any(|b| b.name == name) {
            bail!("no benchmark named {name}; names: {}", names().join(" "));
        }
    }
    Ok(options)
}

/// The usage line of `cargo xtask bench`.
pub const USAGE: &str = "cargo xtask bench [--quick] [--only NAME[,NAME…]] [--no-write]";

/// The benchmarks' names, for `--only`.
pub fn names() -> Vec<&'static str> {
    BENCHES.iter().map(|b| b.name).collect()
}

/// `cargo xtask bench` with its arguments.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let options = parse_options(args)?;
    let selected: Vec<&Bench> = BENCHES
        .iter()
        .filter(|b| options.only.is_empty() || options.only.iter().any(|n| n == b.name))
        .collect();
    let started = Instant::now();
    let loadtest_built = build(&selected);
    // After the build, so the load average is the machine's, not the compiler's.
    let mut machine = Machine::read();
    let mut outcomes = Vec::new();
    for bench in selected {
        let command = command_line(bench, options.quick);
        eprintln!("xtask: == bench {}: {command} ==", bench.name);
        let began = Instant::now();
        let result = if let Some(missing) = bench.needs.filter(|n| !super::have(n)) {
            Outcome::Skipped(format!("{missing} is not installed"))
        } else if bench.program == Program::Loadtest && !loadtest_built {
            Outcome::Failed("not run: the release build of loadtest failed".into())
        } else {
            run(root, bench, options.quick)
        };
        let seconds = began.elapsed().as_secs_f64();
        match &result {
            Outcome::Figures(_) => eprintln!("xtask: bench {} ok in {seconds:.0} s", bench.name),
            Outcome::Failed(why) | Outcome::Skipped(why) => {
                eprintln!("xtask: bench {}: {why}", bench.name)
            }
        }
        outcomes.push(Run {
            bench: bench.name,
            command,
            outcome: result,
            seconds,
        });
    }
    machine.load_after = loadavg();
    let section = render_section(&machine, &options, &outcomes);
    println!("{section}");
    if options.write {
        let path = root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).context("cannot read BENCHMARKS.md")?;
        std::fs::write(&path, rewrite(&doc, &section)).context("cannot write BENCHMARKS.md")?;
        eprintln!("xtask: BENCHMARKS.md rewritten between its bench markers");
    }
    eprintln!(
        "xtask: benchmarks done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .map(|r| r.bench)
        .collect();
    if !failed.is_empty() {
        bail!("benchmark(s) failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Builds what the selected benchmarks run, before any of them is timed: each package's bench
/// executables (`cargo bench --no-run`; a failure here shows again in each bench's own run) and the
/// release `sportello` and `loadtest` binaries. Returns whether the latter built (or were not
/// needed).
fn build(selected: &[&Bench]) -> bool {
    let mut packages: Vec<(&str, Vec<&str>)> = Vec::new();
    for bench in selected {
        if let Program::Cargo { package, bench } = bench.program {
            match packages.iter_mut().find(|(p, _)| *p == package) {
                Some((_, benches)) => benches.push(bench),
                None => packages.push((package, vec![bench])),
            }
        }
    }
    for (package, benches) in packages {
        let mut args = vec!["bench", "--no-run", "-p", package];
        for bench in benches {
            args.extend(["--bench", bench]);
        }
        if let Err(e) = super::step(&format!("build {package} benches"), || super::cargo(&args)) {
            eprintln!("xtask: {e:#}; running its benches anyway");
        }
    }
    if !selected.iter().any(|b| b.program == Program::Loadtest) {
        return true;
    }
    let built = super::step("build release binaries", || {
        super::cargo(&[
            "build",
            "--release",
            "-p",
            "signalling",
            "--bin",
            "sportello",
            "-p",
            "loadtest",
            "--bin",
            "loadtest",
        ])
    });
    if let Err(e) = &built {
        eprintln!("xtask: {e:#}");
    }
    built.is_ok()
}

/// The environment and arguments of `bench`'s command.
fn invocation(bench: &Bench, quick: bool) -> (Vec<(&'static str, &'static str)>, Vec<String>) {
    let env = if quick {
        bench.quick_env.to_vec()
    } else {
        Vec::new()
    };
    let mode = if quick {
        bench.quick_args
    } else {
        bench.full_args
    };
    let mut args: Vec<String> = match bench.program {
        Program::Cargo { package, bench } => ["bench", "-p", package, "--bench", bench]
            .map(String::from)
            .to_vec(),
        Program::Loadtest => Vec::new(),
    };
    args.extend(bench.args.iter().chain(mode).map(|a| a.to_string()));
    if bench.out {
        args.push("--out".into());
        args.push(format!("{OUT_DIR}/{}", bench.name));
    }
    (env, args)
}

fn program_path(program: Program) -> String {
    match program {
        Program::Cargo { .. } => "cargo".into(),
        Program::Loadtest => "target/release/loadtest".into(),
    }
}

/// The command as one would type it at the project root.
fn command_line(bench: &Bench, quick: bool) -> String {
    let (env, args) = invocation(bench, quick);
    let mut words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    words.push(program_path(bench.program));
    words.extend(args);
    words.join(" ")
}

/// What became of one benchmark.
#[derive(Debug, Clone)]
enum Outcome {
    /// The JSON object of its last line.
    Figures(Map<String, Value>),
    Failed(String),
    Skipped(String),
}

/// One benchmark's run.
#[derive(Debug, Clone)]
struct Run {
    bench: &'static str,
    command: String,
    outcome: Outcome,
    seconds: f64,
}

/// Runs `bench` from `root`, passing its output on to stderr as it comes, and reads its last line.
fn run(root: &Path, bench: &Bench, quick: bool) -> Outcome {
    let (env, args) = invocation(bench, quick);
    let program = match bench.program {
        Program::Cargo { .. } => std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        Program::Loadtest => root.join(program_path(bench.program)).display().to_string(),
    };
    if bench.out {
        let _ = std::fs::create_dir_all(root.join(OUT_DIR).join(bench.name));
    }
    let child = Command::new(&program)
        .args(&args)
        .envs(env)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot start {program}: {e}")),
    };
    let mut stdout = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
    match child.wait() {
        Ok(status) if status.success() => match last_json(&stdout) {
            Ok(figures) => Outcome::Figures(figures),
            Err(e) => Outcome::Failed(e),
        },
        Ok(status) => Outcome::Failed(format!("failed ({status})")),
        Err(e) => Outcome::Failed(format!("cannot wait for {program}: {e}")),
    }
}

/// The JSON object on the last non-empty line of a benchmark's standard output.
fn last_json(stdout: &str) -> Result<Map<String, Value>, String> {
    let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Err("printed nothing".into());
    };
    match serde_json::from_str::<Value>(line.trim()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("its last line is JSON but not an object".into()),
        Err(_) => Err("printed no JSON object on its last line".into()),
    }
}

/// The value at `a/b/…` in `map`.
fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('/');
    let mut value = map.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// Every leaf of `map` as (`a/b/…`, value), in the JSON's order.
fn leaves(map: &Map<String, Value>) -> Vec<(String, &Value)> {
    fn walk<'a>(prefix: &str, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}/{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => out.push((prefix.to_owned(), value)),
        }
    }
    let mut out = Vec::new();
    for (k, v) in map {
        walk(k, v, &mut out);
    }
    out
}

/// A number as the tables show it: three significant digits, thousands separated by commas.
fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if x < 0.0 { format!("-{out}") } else { out };
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A JSON value as the tables show it, with `unit` after a number.
fn shown(value: &Value, unit: &str) -> String {
    match value {
        Value::Number(n) => format!("{}{unit}", number(n.as_f64().unwrap_or(f64::NAN))),
        Value::Null => "null (not measured)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Target {
    fn shown(self, unit: &str) -> String {
        match self {
            AtLeast(v) => format!("≥ {}{unit}", number(v)),
            AtMost(v) => format!("≤ {}{unit}", number(v)),
            Below(v) => format!("< {}{unit}", number(v)),
            Target::True => "true".into(),
        }
    }

    /// The ratio column: measured ÷ target and whether it is met.
    fn ratio(self, value: &Value) -> String {
        let verdict = |met: bool| if met { "met" } else { "**missed**" };
        match (self, value) {
            (Target::True, Value::Bool(b)) => verdict(*b).into(),
            (AtLeast(t) | AtMost(t) | Below(t), Value::Number(n)) => {
                let v = n.as_f64().unwrap_or(f64::NAN);
                let met = match self {
                    AtLeast(_) => v >= t,
                    AtMost(_) => v <= t,
                    _ => v < t,
                };
                format!("{} ({})", number(v / t), verdict(met))
            }
            _ => "—".into(),
        }
    }
}

/// A figure's value: a number, or the ratio of two.
fn value_of(figures: &Map<String, Value>, key: Key) -> Value {
    match key {
        Key::Path(path) => lookup(figures, path).cloned().unwrap_or(Value::Null),
        Key::Ratio(a, b) => {
            let num = |k| lookup(figures, k).and_then(Value::as_f64);
            match (num(a), num(b)) {
                (Some(a), Some(b)) if b != 0.0 => serde_json::json!(a / b),
                _ => Value::Null,
            }
        }
    }
}

fn key_text(key: Key) -> String {
    match key {
        Key::Path(path) => format!("`{path}`"),
        Key::Ratio(a, b) => format!("`{a}` ÷ `{b}`"),
    }
}

/// The machine a run was taken on.
#[derive(Debug, Clone, Default)]
struct Machine {
    cores: String,
    cpu: String,
    ram: String,
    kernel: String,
    load_before: String,
    load_after: String,
    date: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let ram = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map(|kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cores: cores.to_string(),
            cpu,
            ram,
            kernel,
            load_before: loadavg(),
            load_after: String::new(),
            date: utc_now(),
        }
    }
}

/// The load averages of the last 1, 5 and 15 minutes.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The current time, `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        (s % 3600) / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A table cell: no line breaks or pipes.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The generated section, markers included.
fn render_section(machine: &Machine, options: &Options, runs: &[Run]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s, "## Latest `cargo xtask bench` run\n");
    let mut how = String::from("cargo xtask bench");
    if options.quick {
        how.push_str(" --quick");
    }
    if !options.only.is_empty() {
        let _ = write!(how, " --only {}", options.only.join(","));
    }
    let _ = writeln!(
        s,
        "Written by `{how}` on {}; do not edit between the markers (the next run replaces it).{}\n",
        machine.date,
        if options.quick {
            " **Quick run**: short runs and small sizes, so these are smoke figures, not measurements."
        } else {
            ""
        }
    );
    let _ = writeln!(s, "| machine | |\n|---|---|");
    for (what, value) in [
        ("cores", &machine.cores),
        ("CPU", &machine.cpu),
        ("RAM", &machine.ram),
        ("kernel", &machine.kernel),
        ("load average before (1, 5, 15 min)", &machine.load_before),
        ("load average after", &machine.load_after),
        ("date", &machine.date),
    ] {
        let _ = writeln!(s, "| {what} | {} |", cell(value));
    }
    let _ = writeln!(
        s,
        "\n| benchmark | command | result | seconds |\n|---|---|---|---|"
    );
    for run in runs {
        let result = match &run.outcome {
            Outcome::Figures(_) => "ok".to_owned(),
            Outcome::Failed(why) => format!("**failed**: {why}"),
            Outcome::Skipped(why) => format!("skipped: {why}"),
        };
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} |",
            run.bench,
            cell(&run.command),
            cell(&result),
            number(run.seconds)
        );
    }
    let _ = writeln!(
        s,
        "\n| command | figure | measured | target | ratio |\n|---|---|---|---|---|"
    );
    for run in runs {
        let Outcome::Figures(figures) = &run.outcome else {
            continue;
        };
        let named: Vec<&Figure> = FIGURES.iter().filter(|f| f.bench == run.bench).collect();
        // The command once per benchmark, on its first row.
        let mut command = format!("`{}`", cell(&run.command));
        let mut row = |figure: String, measured: String, target: String, ratio: String| {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                std::mem::take(&mut command),
                cell(&figure),
                cell(&measured),
                cell(&target),
                cell(&ratio)
            );
        };
        for f in &named {
            let value = value_of(figures, f.key);
            row(
                format!("{} ({})", f.what, key_text(f.key)),
                shown(&value, f.unit),
                f.target.map_or("—".into(), |t| t.shown(f.unit)),
                f.target.map_or("—".into(), |t| t.ratio(&value)),
            );
        }
        // The keys the table does not name, on one row (their names carry their units).
        let others: Vec<String> = leaves(figures)
            .into_iter()
            .filter(|(key, _)| {
                !named
                    .iter()
                    .any(|f| matches!(f.key, Key::Path(p) if p == key))
            })
            .map(|(key, value)| format!("`{key}` {}", shown(value, "")))
            .collect();
        if !others.is_empty() {
            row(
                "other figures".into(),
                others.join(", "),
                "—".into(),
                "—".into(),
            );
        }
    }
    let _ = write!(s, "{END}");
    s
}

/// `doc` with its generated section replaced by `section` (which carries the markers), or with
/// `section` inserted before the first `## ` heading (at the end when there is none).
fn rewrite(doc: &str, section: &str) -> String {
    if let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) {
        if begin < end {
            return format!("{}{section}{}", &doc[..begin], &doc[end + END.len()..]);
        }
    }
    let at = if doc.starts_with("## ") {
        Some(0)
    } else {
        doc.find("\n## ").map(|i| i + 1)
    };
    match at {
        Some(at) => format!("{}{section}\n\n{}", &doc[..at], &doc[at..]),
        None => format!("{}\n\n{section}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
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
                    r#"{"redis_decisions_per_s":8000,"redis_benchmark_evalsha_per_s":42000,"redis_to_evalsha_ratio":0.19,"memory_decisions_per_s":745000,"extra_us":3.5,"more_ms":1500}"#,
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
             one client (`redis_decisions_per_s`) | 8,000/s | ≥ 20,000/s | 0.4 (**missed**) |"
        ));
        // The command on the first row of its benchmark only.
        assert!(section.contains(
            "|  | Redis routing as a fraction of EVALSHA `-c 50` (`redis_to_evalsha_ratio`) | \
             0.19 | ≥ 0.25 | 0.76 (**missed**) |"
        ));
        // Keys the table does not name are still listed.
        assert!(section.contains("|  | other figures | `extra_us` 3.5, `more_ms` 1,500 | — | — |"));
    }

    #[test]
    fn rewrite_replaces_only_the_section_and_is_idempotent() {
        let doc = "# Benchmarks\n\nHand-written intro.\n\n## Queue\n\nHand-written table.\n";
        let section = sample_section();
        let once = rewrite(doc, &section);
        assert!(once.starts_with(
            "# Benchmarks\n\nHand-written intro.\n\n<!-- cargo xtask bench: begin -->"
        ));
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
}
