//! `cargo xtask fuzz [--seconds N] [target…]`: builds the fuzz crate (`fuzz/`, outside the
//! workspace) with libFuzzer's coverage instrumentation on the stable toolchain, then runs each
//! target for `N` seconds on a scratch copy of its committed corpus (`fuzz/corpus/<target>`).
//!
//! cargo-fuzz needs nightly only for `-Zsanitizer`; coverage itself comes from LLVM's
//! `sancov-module` pass, which stable rustc runs through `-Cpasses` and `-Cllvm-args`, and
//! `libfuzzer-sys` builds libFuzzer with the C++ compiler. The build goes with `--target <host>`
//! so the flags reach the targets and their dependencies but not build scripts or proc macros,
//! as cargo-fuzz does. Everything lands under `target/fuzz`. A crash, timeout or out-of-memory
//! fails the run and names the input libFuzzer saved (`target/fuzz/artifacts/<target>/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The fuzz targets: one binary each in `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &[
    "client_frame",
    "sdp_offer",
    "stamp",
    "scan_image",
    "registry_json",
    "journal",
];

/// The coverage instrumentation cargo-fuzz uses, without the nightly-only sanitizer.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing";

/// Longest a single input may run before libFuzzer calls it a hang.
const INPUT_TIMEOUT_S: u32 = 25;

/// `cargo xtask fuzz` with its arguments.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 60;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let n = args.next().context("--seconds needs a number")?;
            seconds = n.parse().with_context(|| format!("--seconds {n}"))?;
        } else if TARGETS.contains(&arg.as_str()) {
            targets.push(arg.as_str());
        } else {
            bail!(
                "unknown fuzz argument {arg}; targets: {}",
                TARGETS.join(" ")
            );
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    run(root, &targets, seconds)
}

/// Builds the targets, then runs each of `targets` for `seconds`.
pub fn run(root: &Path, targets: &[&str], seconds: u32) -> Result<()> {
    let started = std::time::Instant::now();
    let bin_dir = build(root)?;
    eprintln!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for target in targets {
        run_one(root, &bin_dir, target, seconds)?;
    }
    Ok(())
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host")
}

/// Builds every target; returns the folder of the binaries. Not `--locked`: `fuzz/Cargo.lock`
/// pins what it has, and a dependency added to a workspace crate is resolved into it.
fn build(root: &Path) -> Result<PathBuf> {
    let triple = host_triple()?;
    let target_dir = root.join("target/fuzz");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--profile", "fuzz", "--bins", "--target"])
        .arg(&triple)
        .arg("--manifest-path")
        .arg(root.join("fuzz/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .context("cannot run cargo build for fuzz/")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    Ok(target_dir.join(triple).join("fuzz"))
}

fn run_one(root: &Path, bin_dir: &Path, target: &str, seconds: u32) -> Result<()> {
    let work = root.join("target/fuzz/work").join(target);
    let corpus = work.join("corpus");
    let artifacts = root.join("target/fuzz/artifacts").join(target);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let seeds = root.join("fuzz/corpus").join(target);
    for entry in std::fs::read_dir(&seeds).with_context(|| format!("{}", seeds.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), corpus.join(entry.file_name()))?;
    }
    let log = work.join("libfuzzer.log");
    eprintln!(
        "xtask: fuzzing {target} for {seconds} s (log: {})",
        log.display()
    );
    let started = std::time::Instant::now();
    let mut artifact_prefix = artifacts.clone().into_os_string();
    artifact_prefix.push("/");
    let mut prefix_arg = std::ffi::OsString::from("-artifact_prefix=");
    prefix_arg.push(&artifact_prefix);
    let status = Command::new(bin_dir.join(target))
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(prefix_arg)
        .arg(&corpus)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(work.join("stdout.log"))?)
        .stderr(std::fs::File::create(&log)?)
        .status()
        .with_context(|| format!("cannot run {}", bin_dir.join(target).display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let execs = stat(&text, "stat::number_of_executed_units:");
    let cov = text
        .lines()
        .rev()
        .find_map(|l| l.split(" cov: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?");
    let inputs = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    eprintln!(
        "xtask: fuzz {target}: {} execs in {:.0} s, cov {cov}, {inputs} corpus inputs, {}",
        execs.unwrap_or("?"),
        started.elapsed().as_secs_f64(),
        if status.success() {
            "no crash"
        } else {
            "FAILED"
        }
    );
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        let run_began = std::time::SystemTime::now() - started.elapsed();
        let found: Vec<String> = std::fs::read_dir(&artifacts)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= run_began)
            })
            .map(|e| e.path().display().to_string())
            .collect();
        bail!(
            "fuzz target {target} failed ({status}); saved input(s): {}; reproduce with {} <file>",
            found.join(", "),
            bin_dir.join(target).display()
        );
    }
    Ok(())
}

fn stat<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}
