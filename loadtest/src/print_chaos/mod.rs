//! `loadtest print-chaos`: printing exactly once under kiosk-agent kills, the reliability run
//! behind the target "print jobs with random kiosk-agent kills, 1,000 jobs: 0 printed twice, 0
//! lost" (`BENCHMARKS.md`, "Printing exactly once under agent kills").
//!
//! Everything is real except the people: a `sportello` process ([`server`]: memory store, demo
//! accounts, loopback ports, its own data directory in the work folder) where the demo operator
//! `laura.verdi` (skill `anagrafe`, capacity 1) answers the demo kiosk `municipio`, a PDF queue on
//! a private CUPS ([`testkit::cups::PdfPrinter`]) and the `sportello-kiosk-agent` binary as a
//! separate process ([`testkit::agent::AgentProcess`]) printing on it with the kiosk's token. A
//! headless kiosk places a call, the operator bot accepts it, the citizen is identified by paper
//! document (this program uploads a PNG scan with the kiosk's token and sends `identity.scan`, the
//! operator confirms a resident of the demo registry), one `residenza` is issued, and then
//! `--jobs` `print.request`s for that document go out at `--rate` jobs/s, with at most
//! `--max-outstanding` jobs requested and not yet reported printed (so a slow printer or a dead
//! agent never builds an unbounded backlog).
//!
//! Meanwhile a chaos task ([`chaos`]) SIGKILLs the agent after a random uptime (`--kill-every-ms
//! MIN-MAX`) and restarts it after a random pause (`--pause-ms MIN-MAX`); a share of the restarts
//! (`--fault-share`) sets `SPORTELLO_AGENT_FAULT=exit_after_print`, so that agent exits by itself
//! right after CUPS completed a job and before it journaled or reported it. Every random choice
//! comes from `--seed`. At each kill the journal records of the jobs not yet reported printed are
//! read, to tally which crash windows (`docs/kiosk-agent.md`) the kills hit.
//!
//! The operator's session collects `print.update`. Once every job is reported printed (or after
//! `--drain-timeout-s`), the chaos stops, a clean agent is started one last time, and the program
//! waits for every job to be reported printed, for CUPS to hold no pending job and for the agent
//! to have nothing unreported. Then it counts the PDFs in the printer's folder ([`tally`]):
//! testkit's PDF backend names each `<title>-job_<cups id>.pdf`, and the agent's title is the job
//! id (`lp -t <job_id>`). A job id in two files was printed twice; a job id in no file, or never
//! reported printed, was lost.
//!
//! It prints a summary and a `RESULT {json}` line, then, as its last line, one JSON object with
//! the headline figures (`jobs`, `printed_twice`, `lost`, `jobs_per_s`, …), and exits 1 if any
//! job was lost or printed twice (2 on a set-up error). The work folder (server data and
//! configuration, agent journal, agent and server logs) is kept on failure or with `--keep`.
//!
//! Needs root (the private `cupsd` of `testkit::cups` runs its backend as `lp`, like the agent
//! tests) and `cups printer-driver-cups-pdf cups-client cups-ipp-utils`. Run it with
//! `scripts/print-chaos.sh`, which builds the release `loadtest`, `sportello` and
//! `sportello-kiosk-agent` first.
//!
//! `--calibrate N` measures the printer alone instead: the issued PDF printed N times straight
//! through `lp` on a fresh queue, back to back (the throughput the agent cannot beat).

mod chaos;
mod server;
mod tally;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kiosk_client::agent::config::AgentConfig;
use protocol::incall::{PrintRequest, PrintState};
use protocol::{Event, Request};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use testkit::agent::{sibling_bin, AgentProcess};
use testkit::cups::PdfPrinter;
use testkit::{free_port, loadavg};
use tokio::sync::watch;

use chaos::{start_agent, Chaos, ChaosStats, Seen};
use server::Server;
use tally::{pdf_files, Counts};

/// How long one step of the set-up may take.
const T: Duration = Duration::from_secs(20);

/// A `MIN-MAX` range of milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Millis {
    min: u64,
    max: u64,
}

impl std::str::FromStr for Millis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let num = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?}: expected MIN-MAX in milliseconds"))
        };
        let (min, max) = (num(a)?, num(b)?);
        if min > max {
            return Err(format!("{s:?}: MIN is above MAX"));
        }
        Ok(Millis { min, max })
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl Millis {
    fn pick(&self, rng: &mut StdRng) -> Duration {
        Duration::from_millis(rng.gen_range(self.min..=self.max))
    }
}

/// Print jobs with random kiosk-agent kills; counts jobs printed twice and jobs lost.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many print jobs to request.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Print requests per second at most (the pace of the operator's requests). The default is
    /// what cups-pdf alone prints on a 2-core VM (`--calibrate`: 4–5 jobs/s).
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Jobs requested and not yet reported printed, at most; the next request waits below it.
    #[arg(long, default_value_t = 8)]
    max_outstanding: usize,
    /// Agent uptime before each SIGKILL, a random duration in this range (milliseconds).
    #[arg(long, default_value = "500-4000")]
    kill_every_ms: Millis,
    /// Pause between a kill (or a fault-hook exit) and the restart (milliseconds).
    #[arg(long, default_value = "50-1000")]
    pause_ms: Millis,
    /// Share of restarts with `SPORTELLO_AGENT_FAULT=exit_after_print` (0 to 1).
    #[arg(long, default_value_t = 0.25)]
    fault_share: f64,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// No kills at all (a baseline run).
    #[arg(long)]
    no_chaos: bool,
    /// The `sportello-kiosk-agent` binary (default: beside this executable).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// The `sportello` binary (default: beside this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// After the last request, how long to keep the chaos going while waiting for the last jobs.
    #[arg(long, default_value_t = 600)]
    drain_timeout_s: u64,
    /// After the chaos, how long the clean agent may take to report every job printed.
    #[arg(long, default_value_t = 300)]
    final_timeout_s: u64,
    /// The work folder (server data, journal, logs); default a new temporary folder.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the temporary work folder even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Measure the printer alone: print the certificate N times through `lp`, then exit.
    #[arg(long)]
    calibrate: Option<usize>,
}

/// Runs the print chaos program: 0 when no job was printed twice or lost, 1 when one was, 2 on a
/// set-up error or an interruption.
pub async fn main(args: Args) -> ExitCode {
    let outcome = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted (SIGINT)"),
            _ = term.recv() => bail!("interrupted (SIGTERM)"),
        }
    }
    .await;
    // The run's future is dropped by now, and with it the agent and the server (killed) and the
    // printer (removed).
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("print-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn say(start: Instant, text: impl std::fmt::Display) {
    eprintln!("[{:>8.3}s] {text}", start.elapsed().as_secs_f64());
}

/// `--agent-bin`/`--server-bin`, or the binary beside this executable; it must exist.
fn binary(given: &Option<PathBuf>, name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.clone(),
        None => sibling_bin(name).unwrap_or_else(|_| {
            std::env::current_exe()
                .map(|exe| exe.with_file_name(name))
                .unwrap_or_else(|_| PathBuf::from(name))
        }),
    };
    if !path.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p {package} --bin {name}` (or pass its path)",
            path.display()
        );
    }
    Ok(path)
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let start = Instant::now();
    if args.jobs == 0 || args.rate <= 0.0 || args.max_outstanding == 0 {
        bail!("--jobs, --rate and --max-outstanding must be positive");
    }
    if !(0.0..=1.0).contains(&args.fault_share) {
        bail!("--fault-share must be 0 to 1");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let server_bin = binary(&args.server_bin, "sportello", "signalling")?;
    let agent_bin = binary(&args.agent_bin, "sportello-kiosk-agent", "kiosk-client")?;
    let (work, temp) = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            (dir.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("print-chaos-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    say(start, format!("work folder {}", work.display()));

    let server = Server::start(&server_bin, &work)?;
    say(start, format!("server on {}", server.base));

    let mut call = server::open_call(&server, start).await?;
    if let Some(n) = args.calibrate {
        server::calibrate(&server, &call, &work, n.max(1), start).await?;
        return Ok(true);
    }

    let printer = Arc::new(PdfPrinter::create()?);
    say(
        start,
        format!(
            "printer {} → {}",
            printer.name(),
            printer.out_dir().display()
        ),
    );
    let journal = work.join("journal");
    let config_path = work.join("agent.toml");
    let toml = format!(
        "server = {:?}\ntoken = {:?}\nprinter = {:?}\ncups_server = {:?}\n\
         journal_dir = {:?}\nlocal_listen = \"127.0.0.1:{}\"\n",
        server.base,
        server.kiosk_token,
        printer.name(),
        printer.server(),
        journal,
        free_port(),
    );
    let problems = AgentConfig::from_toml(&toml)
        .map_err(|e| anyhow::anyhow!(e))?
        .validate();
    if !problems.is_empty() {
        bail!("agent configuration: {problems:?}");
    }
    std::fs::write(&config_path, &toml)?;
    let agent = Arc::new(Mutex::new(
        AgentProcess::new(agent_bin, config_path, work.join("agent.log")).fresh_local_port(),
    ));
    start_agent(&mut agent.lock().unwrap(), false, "first start")?;
    wait_connected(&agent).await?;
    say(start, "agent connected");

    // The operator's session: every print.update, by job.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (printed_tx, mut printed_rx) = watch::channel(0usize);
    let requester = call.op.session().requester();
    let collector = {
        let seen = seen.clone();
        let mut op = call.op;
        tokio::spawn(async move {
            loop {
                match op.session().next_event(Duration::from_secs(1)).await {
                    Ok(Event::PrintUpdate(u)) => {
                        let mut s = seen.lock().unwrap();
                        if u.state == PrintState::Printed {
                            s.printed_at
                                .entry(u.job_id.clone())
                                .or_insert_with(Instant::now);
                        }
                        s.updates
                            .entry(u.job_id.clone())
                            .or_default()
                            .push((u.state, u.detail.clone()));
                        printed_tx.send_replace(s.printed_at.len());
                    }
                    Ok(Event::CallEnded(e)) => {
                        eprintln!("print-chaos: the operator's call ended unexpectedly: {e:?}")
                    }
                    Ok(_) | Err(kiosk_client::ClientError::Timeout) => {}
                    Err(e) => {
                        eprintln!("print-chaos: the operator's session failed: {e:?}");
                        return;
                    }
                }
            }
        })
    };
    // The kiosk screen: keeps the call up; counts the jobs it got while no agent was connected.
    let screen_jobs = Arc::new(Mutex::new(0usize));
    let screen = {
        let count = screen_jobs.clone();
        let mut kiosk = call.kiosk;
        tokio::spawn(async move {
            loop {
                match kiosk.session().next_event(Duration::from_secs(1)).await {
                    Ok(Event::PrintJob(_)) => *count.lock().unwrap() += 1,
                    Ok(Event::CallEnded(e)) => {
                        eprintln!("print-chaos: the kiosk's call ended unexpectedly: {e:?}")
                    }
                    Ok(_) | Err(kiosk_client::ClientError::Timeout) => {}
                    Err(e) => {
                        eprintln!("print-chaos: the kiosk's session failed: {e:?}");
                        return;
                    }
                }
            }
        })
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let chaos = (!args.no_chaos).then(|| {
        tokio::spawn(
            Chaos {
                agent: agent.clone(),
                seen: seen.clone(),
                journal: journal.clone(),
                printer: printer.clone(),
                kill_every: args.kill_every_ms,
                pause: args.pause_ms,
                fault_share: args.fault_share,
                rng: StdRng::seed_from_u64(seed),
                start,
            }
            .run(stop_rx),
        )
    });
    say(
        start,
        format!(
            "sending {} print.request at ≤ {}/s, ≤ {} outstanding; chaos {}; seed {seed}; load {}",
            args.jobs,
            args.rate,
            args.max_outstanding,
            if args.no_chaos {
                "off".to_owned()
            } else {
                format!(
                    "kill after {} ms, pause {} ms, fault hook on {:.0}% of restarts",
                    args.kill_every_ms,
                    args.pause_ms,
                    args.fault_share * 100.0
                )
            },
            loadavg()
        ),
    );

    // The operator's requests, paced.
    let load_before = loadavg();
    let first_request = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut request_errors = 0usize;
    let mut last_progress = Instant::now();
    let mut i = 0usize;
    while i < args.jobs {
        while seen.lock().unwrap().outstanding() >= args.max_outstanding {
            let _ = tokio::time::timeout(Duration::from_secs(1), printed_rx.changed()).await;
        }
        tick.tick().await;
        let request = Request::PrintRequest(PrintRequest {
            call_id: call.call_id.clone(),
            document_id: call.document_id.clone(),
            copies: 1,
        });
        match requester.request(&request).await {
            Ok(reply) => {
                let job_id = reply["job_id"]
                    .as_str()
                    .context("no job_id in the print.request reply")?
                    .to_owned();
                seen.lock().unwrap().sent.insert(job_id, i);
                i += 1;
            }
            Err(e) => {
                request_errors += 1;
                say(start, format!("print.request {i} failed ({e:?}); retrying"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(30) {
            last_progress = Instant::now();
            let printed = seen.lock().unwrap().printed_at.len();
            say(
                start,
                format!(
                    "{i} requested, {printed} reported printed; load {}",
                    loadavg()
                ),
            );
        }
    }
    say(start, format!("all {} requested; draining", args.jobs));

    // Keep the chaos going until every job is reported printed, or the drain timeout.
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_timeout_s);
    let mut all_during_chaos = false;
    loop {
        let (printed, sent) = {
            let s = seen.lock().unwrap();
            (
                s.sent
                    .keys()
                    .filter(|id| s.printed_at.contains_key(*id))
                    .count(),
                s.sent.len(),
            )
        };
        if printed == sent {
            all_during_chaos = true;
            break;
        }
        if Instant::now() >= drain_deadline {
            say(
                start,
                format!("drain timeout: {printed} of {sent} reported printed"),
            );
            break;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), printed_rx.changed()).await;
    }
    let chaos_done = Instant::now();
    stop_tx.send_replace(true);
    let stats = match chaos {
        Some(task) => task.await.context("the chaos task failed")?,
        None => ChaosStats {
            starts: 1,
            ..ChaosStats::default()
        },
    };
    say(
        start,
        format!(
            "chaos stopped: {} SIGKILLs, {} fault-hook exits, {} starts ({} with the hook)",
            stats.kills, stats.fault_exits, stats.starts, stats.fault_starts
        ),
    );

    // One last clean agent, then everything must be reported and nothing pending anywhere.
    {
        let mut a = agent.lock().unwrap();
        if a.kill().is_some() {
            a.mark("print-chaos: stopped at the end of the chaos");
        }
        start_agent(&mut a, false, "final clean start")?;
    }
    wait_connected(&agent).await?;
    let final_deadline = Instant::now() + Duration::from_secs(args.final_timeout_s);
    loop {
        let missing = seen.lock().unwrap().outstanding();
        if missing == 0 {
            break;
        }
        if Instant::now() >= final_deadline {
            say(
                start,
                format!("final timeout: {missing} jobs never reported printed"),
            );
            break;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), printed_rx.changed()).await;
    }
    let last_printed = seen
        .lock()
        .unwrap()
        .printed_at
        .values()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    // Quiet: CUPS has no pending job, the agent nothing pending or unreported, for 3 s in a row.
    let quiet_deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<Instant> = None;
    let mut agent_final: Value;
    loop {
        let pending = printer
            .jobs_pending()
            .map(|p| p.len())
            .unwrap_or(usize::MAX);
        let local = agent.lock().unwrap().local().to_owned();
        let status = testkit::agent::status(&local).await.unwrap_or(Value::Null);
        let agent_idle = status["printer"]["pending_jobs"]
            .as_array()
            .is_some_and(Vec::is_empty)
            && status["printer"]["unreported"] == 0;
        agent_final = status;
        if pending == 0 && agent_idle {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(3) {
                break;
            }
        } else {
            quiet_since = None;
        }
        if Instant::now() >= quiet_deadline {
            say(
                start,
                format!("not quiet after 60 s: CUPS pending {pending}, agent {agent_final}"),
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Count.
    let files = pdf_files(printer.out_dir())?;
    let finished = printer.printed().len();
    let cups_completed = printer.jobs_completed();
    let seen_now = seen.lock().unwrap();
    let counts = Counts::of(&files, &seen_now);
    let jobs = seen_now.sent.len();
    let run_s = last_printed.duration_since(first_request).as_secs_f64();
    let chaos_s = chaos_done.duration_since(first_request).as_secs_f64();
    let wall_s = start.elapsed().as_secs_f64();
    let jobs_per_s = jobs as f64 / run_s.max(1e-9);
    let passed = counts.twice.is_empty()
        && counts.lost.is_empty()
        && counts.unexpected.is_empty()
        && jobs == args.jobs;
    let uptime_median = {
        let mut u = stats.uptimes_ms.clone();
        u.sort_unstable();
        u.get(u.len() / 2).copied().unwrap_or(0)
    };

    println!();
    println!(
        "print-chaos: {jobs} jobs, seed {seed}, ≤ {}/s, ≤ {} outstanding; load average {} → {}",
        args.rate,
        args.max_outstanding,
        load_before,
        loadavg()
    );
    println!(
        "  agent process: {} starts ({} with the fault hook), {} SIGKILLs ({} of them of a hooked agent), \
         {} fault-hook exits, {} other exits {:?}; median uptime {} ms",
        stats.starts,
        stats.fault_starts,
        stats.kills,
        stats.kills_of_fault_agents,
        stats.fault_exits,
        stats.other_exits.len(),
        stats.other_exits,
        uptime_median
    );
    println!("  jobs not yet reported printed at each kill/exit, by journal phase:");
    for (window, n) in &stats.windows {
        println!("    {n:>6}  {window}");
    }
    println!(
        "  PDFs: {} files ({} complete by the EOF check, {finished} finished per testkit); \
         CUPS lists {cups_completed} completed",
        files.len(),
        files.len() - counts.incomplete
    );
    println!(
        "  printed twice: {}; lost: {} (no file {}, never reported printed {}); unexpected files: {}",
        counts.twice.len(),
        counts.lost.len(),
        counts.no_file.len(),
        counts.not_reported.len(),
        counts.unexpected.len()
    );
    println!(
        "  jobs reported failed at some point: {}; print.request errors: \
         {request_errors}; print.job seen by the screen: {}",
        counts.failed_reports,
        *screen_jobs.lock().unwrap()
    );
    println!(
        "  first request → last printed {run_s:.1} s = {jobs_per_s:.2} jobs/s; chaos ran {chaos_s:.1} s \
         ({}); wall {wall_s:.1} s",
        match (args.no_chaos, all_during_chaos) {
            (true, _) => "no kills: --no-chaos",
            (false, true) => "every job printed under chaos",
            (false, false) => "the last jobs printed after it stopped",
        }
    );
    println!("  final agent status: {agent_final}");
    if !passed {
        let agent_log = agent.lock().unwrap().log();
        counts.print_failures(&seen_now, &agent_log, &server.log());
    }
    let result = json!({
        "jobs": jobs,
        "passed": passed,
        "printed_twice": counts.twice.len(),
        "lost": counts.lost.len(),
        "lost_no_file": counts.no_file.len(),
        "lost_not_reported": counts.not_reported.len(),
        "unexpected_files": counts.unexpected.len(),
        "pdf_files": files.len(),
        "agent_starts": stats.starts,
        "fault_hook_starts": stats.fault_starts,
        "sigkills": stats.kills,
        "fault_hook_exits": stats.fault_exits,
        "other_exits": stats.other_exits.len(),
        "windows_at_kills": stats.windows,
        "failed_reports": counts.failed_reports,
        "request_errors": request_errors,
        "seed": seed,
        "rate": args.rate,
        "max_outstanding": args.max_outstanding,
        "kill_every_ms": args.kill_every_ms.to_string(),
        "pause_ms": args.pause_ms.to_string(),
        "fault_share": args.fault_share,
        "run_s": (run_s * 10.0).round() / 10.0,
        "wall_s": (wall_s * 10.0).round() / 10.0,
        "jobs_per_s": (jobs_per_s * 100.0).round() / 100.0,
    });
    println!("RESULT {result}");
    // The headline figures, the last line (read by `cargo xtask bench`).
    println!(
        "{}",
        json!({
            "jobs": jobs,
            "printed_twice": counts.twice.len(),
            "lost": counts.lost.len(),
            "jobs_per_s": result["jobs_per_s"],
            "sigkills": stats.kills,
            "fault_hook_exits": stats.fault_exits,
            "passed": passed,
        })
    );
    let _ = std::io::stdout().flush();
    drop(counts);
    drop(seen_now);

    collector.abort();
    screen.abort();
    agent.lock().unwrap().kill();
    drop(printer);
    drop(server);
    match temp {
        Some(t) if passed && !args.keep => drop(t),
        Some(t) => {
            let kept = t.keep();
            eprintln!("print-chaos: work folder kept: {}", kept.display());
        }
        None => {}
    }
    Ok(passed)
}

/// Waits until the agent is connected to the server; the error carries its log's tail.
async fn wait_connected(agent: &Arc<Mutex<AgentProcess>>) -> anyhow::Result<()> {
    let local = agent.lock().unwrap().local().to_owned();
    let connected = testkit::agent::wait_connected(&local, T).await;
    connected.with_context(|| format!("log tail:\n{}", agent.lock().unwrap().log_tail()))
}
