//! `loadtest capacity`: load steps of rising concurrency until an objective breaks.
//!
//! Each step holds `N` calls in progress at once for `--step-s` seconds: `N` bot kiosks each
//! calling again as soon as their call ended (after `--think-ms`), and `N` bot operators, so a call
//! waits only for the operator's accept. With `--spawn` every step gets a fresh server sized to it,
//! so the server's figures belong to that step alone. A step breaks an objective when:
//! - the join p95 (request → both sides receive video) is above `--join-p95-ms` (1500);
//! - the video loss is above `--loss` (0.01);
//! - the one-way latency p99 is above `--latency-p99-ms` (150);
//! - the queue wait p95 is above `--wait-p95-s` (the target, 30 s by default);
//! - or no call got media at all.
//!
//! The largest `N` whose step held every objective is the answer. Each step's report goes to
//! `DIR/step-N/`, the steps and the answer to `DIR/capacity.json`; the last line on stdout is
//! `{"max_calls","broken_at","broken_by"}`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::json;

use crate::report::{self, Report};
use crate::run::{self, Arrivals, LoadArgs};
use crate::scenario;
use crate::server::{ServerArgs, Target};

/// `loadtest capacity`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Where the steps' reports and capacity.json go.
    #[arg(long)]
    pub out: PathBuf,
    /// Concurrent calls of the first step.
    #[arg(long, default_value_t = 2)]
    pub start: usize,
    /// Calls added at each step.
    #[arg(long, default_value_t = 2)]
    pub step: usize,
    /// Concurrent calls of the last step tried.
    #[arg(long, default_value_t = 64)]
    pub max: usize,
    /// Seconds per step.
    #[arg(long, default_value_t = 30.0)]
    pub step_s: f64,
    /// Pause between a kiosk's calls, ms.
    #[arg(long, default_value_t = 300)]
    pub think_ms: u64,
    #[command(flatten)]
    pub objectives: Objectives,
}

/// What a step must hold.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct Objectives {
    /// Join p95 at most this, ms.
    #[arg(long, default_value_t = 1500.0)]
    pub join_p95_ms: f64,
    /// Video loss at most this ratio.
    #[arg(long = "max-loss", default_value_t = 0.01)]
    pub loss: f64,
    /// One-way latency p99 at most this, ms.
    #[arg(long, default_value_t = 150.0)]
    pub latency_p99_ms: f64,
    /// Queue wait p95 at most this, s.
    #[arg(long, default_value_t = 30.0)]
    pub wait_p95_s: f64,
}

impl Objectives {
    /// The first objective `report` breaks, with the figure.
    pub fn broken(&self, report: &Report) -> Option<String> {
        let Some(join) = report.join_ms.p95 else {
            return Some("no_media: no call received video at both ends".into());
        };
        if join > self.join_p95_ms {
            return Some(format!("join_p95: {join:.0} ms > {} ms", self.join_p95_ms));
        }
        if let Some(loss) = report.loss_ratio {
            if loss > self.loss {
                return Some(format!("loss: {loss:.4} > {}", self.loss));
            }
        }
        if let Some(lat) = report.latency_ms.p99 {
            if lat > self.latency_p99_ms {
                return Some(format!(
                    "latency_p99: {lat:.1} ms > {} ms",
                    self.latency_p99_ms
                ));
            }
        }
        if let Some(wait) = report.wait_s.p95 {
            if wait > self.wait_p95_s {
                return Some(format!("wait_p95: {wait:.1} s > {} s", self.wait_p95_s));
            }
        }
        None
    }
}

/// `loadtest capacity`'s entry point.
pub async fn main(args: Args) -> ExitCode {
    crate::init_logging();
    crate::finish("capacity", execute(&args).await)
}

async fn execute(args: &Args) -> Result<String> {
    if args.start == 0 || args.step == 0 || args.max < args.start {
        bail!("--start and --step must be at least 1, and --max at least --start");
    }
    std::fs::create_dir_all(&args.out)?;
    let mut shared = if args.server.spawn.is_none() {
        Some(Target::open(&args.server, args.max, args.max)?)
    } else {
        None
    };
    let mut steps = Vec::new();
    let mut held = None;
    let mut broken = None;
    let mut n = args.start;
    while n <= args.max {
        let mut load = args.load.clone();
        load.kiosks = n;
        load.operators = n;
        load.duration = args.step_s;
        let mut own;
        let target = match shared.as_mut() {
            Some(t) => t,
            None => {
                own = Target::open(&args.server, n, n)?;
                &mut own
            }
        };
        // Enough draws for every kiosk to call back to back for the whole step.
        let per_kiosk = (args.step_s / load.handle_mean_s.max(0.5)).ceil() as usize * 4 + 4;
        let mut shape = load.shape();
        shape.rate_per_s = 1000.0;
        let draws = scenario::plan(
            &shape,
            Duration::from_secs_f64((n * per_kiosk) as f64 / 1000.0 + 0.001),
            load.seed.wrapping_add(n as u64),
        )?;
        eprintln!(
            "loadtest capacity: step {n} concurrent calls, {} s",
            args.step_s
        );
        let report = run::run_load(
            target,
            &load,
            Arrivals::Closed {
                calls: draws,
                think: Duration::from_millis(args.think_ms),
            },
        )
        .await?;
        report::write(&args.out.join(format!("step-{n}")), &report)?;
        eprintln!("{}", report.summary_line());
        let verdict = args.objectives.broken(&report);
        steps.push(json!({
            "calls": n,
            "concurrent_max": report.calls.concurrent_max,
            "join_ms_p95": report.join_ms.p95,
            "loss_ratio": report.loss_ratio,
            "latency_ms_p99": report.latency_ms.p99,
            "wait_s_p95": report.wait_s.p95,
            "server_cpu_per_call_pct": report.server.cpu_per_call_pct,
            "counts_match": report.check.matches,
            "broken_by": verdict,
        }));
        match verdict {
            Some(why) => {
                eprintln!("loadtest capacity: {n} calls break {why}");
                broken = Some((n, why));
                break;
            }
            None => held = Some(n),
        }
        n += args.step;
    }
    let broken_by = broken
        .as_ref()
        .map(|(_, why)| why.split(':').next().unwrap_or(why).to_owned());
    let result = json!({
        "max_calls": held.unwrap_or(0),
        "broken_at": broken.as_ref().map(|(n, _)| *n),
        "broken_by": broken_by,
    });
    let file = json!({
        "objectives": args.objectives,
        "steps": steps,
        "result": result,
        "broken_detail": broken.as_ref().map(|(_, why)| why.clone()),
    });
    std::fs::write(
        args.out.join("capacity.json"),
        serde_json::to_string_pretty(&file)? + "\n",
    )?;
    match held {
        Some(n) => {
            eprintln!(
            "loadtest capacity: the largest load that held every objective: {n} concurrent calls{}",
            if broken.is_none() { " (the largest tried)" } else { "" }
        )
        }
        None => eprintln!(
            "loadtest capacity: even {} concurrent calls break an objective",
            args.start
        ),
    }
    Ok(result.to_string())
}
