//! Running one benchmark command, its output passed on to stderr, and reading the JSON object on
//! its last line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use super::programs::{invocation, program_path, Bench, Program, OUT_DIR};

/// What became of one benchmark.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// The JSON object of its last line.
    Figures(Map<String, Value>),
    Failed(String),
    Skipped(String),
}

/// One benchmark's run.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub(super) bench: &'static str,
    pub(super) command: String,
    pub(super) outcome: Outcome,
    pub(super) seconds: f64,
}

/// Runs `bench` from `root`, passing its output on to stderr as it comes, and reads its last line.
pub(super) fn run(root: &Path, bench: &Bench, quick: bool) -> Outcome {
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
pub(super) fn last_json(stdout: &str) -> Result<Map<String, Value>, String> {
    let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Err("printed nothing".into());
    };
    match serde_json::from_str::<Value>(line.trim()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("its last line is JSON but not an object".into()),
        Err(_) => Err("printed no JSON object on its last line".into()),
    }
}
