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
//! [`FIGURES`](figures::FIGURES) is the one table of what is reported: per figure its benchmark, its key in the JSON
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
//!
//! What runs is in `programs`, running one benchmark and reading its JSON in `run`, the figures
//! and their targets in `figures`, the machine in `machine`, and the generated section in `report`.

mod figures;
mod machine;
mod programs;
mod report;
mod run;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use machine::{loadavg, Machine};
use programs::{build, command_line, Bench, Program, BENCHES};
use report::{render_section, rewrite};
use run::{run, Outcome, Run};

/// The first line of the generated section of `BENCHMARKS.md`.
pub const BEGIN: &str = "<!-- cargo xtask bench: begin -->";
/// The last line of the generated section of `BENCHMARKS.md`.
pub const END: &str = "<!-- cargo xtask bench: end -->";

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
