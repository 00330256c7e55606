//! Printing exactly once under kiosk-agent kills: the reliability run behind the target "print
//! jobs with random kiosk-agent kills, 1,000 jobs: 0 printed twice, 0 lost" (`BENCHMARKS.md`,
//! "Printing exactly once under agent kills").
//!
//! Everything is real except the people: an in-process `sportello` server (memory store) with one
//! operator (skill `anagrafe`, capacity 1) and one kiosk, a PDF queue on a private CUPS (testkit::cups)
//! ([`testkit::cups::PdfPrinter`]) and the `sportello-kiosk-agent` binary as a separate process
//! printing on it. A headless kiosk places a call, the operator bot accepts it, the citizen is
//! identified by paper document (this program uploads a PNG scan with the kiosk's token and sends
//! `identity.scan`, the operator confirms a resident of the demo registry), one `residenza` is
//! issued, and then `--jobs` `print.request`s for that document go out at `--rate` jobs/s, with at
//! most `--max-outstanding` jobs requested and not yet reported printed (so a slow printer or a
//! dead agent never builds an unbounded backlog).
//!
//! Meanwhile a chaos task SIGKILLs the agent after a random uptime (`--kill-every-ms MIN-MAX`) and
//! restarts it after a random pause (`--pause-ms MIN-MAX`); a share of the restarts
//! (`--fault-share`) sets `SPORTELLO_AGENT_FAULT=exit_after_print`, so that agent exits by itself
//! right after CUPS completed a job and before it journaled or reported it. Every random choice
//! comes from `--seed`. At each kill the journal records of the jobs not yet reported printed are
//! read, to tally which crash windows (`docs/kiosk-agent.md`) the kills hit.
//!
//! The operator's session collects `print.update`. Once every job is reported printed (or after
//! `--drain-timeout-s`), the chaos stops, a clean agent is started one last time, and the program
//! waits for every job to be reported printed, for CUPS to hold no pending job and for the agent
//! to have nothing unreported. Then it counts the PDFs in the printer's folder: testkit's PDF backend names each
//! `<title>-job_<cups id>.pdf`, and the agent's title is the job id (`lp -t <job_id>`). A job id in
//! two files was printed twice; a job id in no file, or never reported printed, was lost.
//!
//! It prints a summary and a final `RESULT {json}` line, and exits 1 if any job was lost or
//! printed twice (2 on a set-up error). The work folder (server data, agent journal, agent and
//! server logs) is kept on failure or with `--keep`.
//!
//! Needs root (the private `cupsd` of `testkit::cups` runs its backend as `lp`, like the agent
//! tests) and `cups printer-driver-cups-pdf cups-client cups-ipp-utils`. Run it with
//! `scripts/print-chaos.sh`, which builds the release agent and this example first.
//!
//! `--calibrate N` measures the printer alone instead: the issued PDF printed N times straight
//! through `lp` on a fresh queue, back to back (the throughput the agent cannot beat).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{free_port, loadavg};

use anyhow::{bail, Context as _};
use clap::Parser;
use kiosk_client::agent::config::AgentConfig;
use kiosk_client::agent::journal::{JobRecord, Phase};
use kiosk_client::{HeadlessKiosk, OperatorBot, Policy, Session};
use protocol::incall::{
    CertificateIssue, IdentityConfirm, IdentityMethod, IdentityRequest, IdentityScan, PrintRequest,
    PrintState, Usage,
};
use protocol::{CallRef, Event, PresenceSet, PresenceState, Request, Role};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use signalling::accounts::{hash_password, hash_token, Principal};
use signalling::config::{Config, KioskAccount, OperatorAccount};
use testkit::cups::PdfPrinter;
use tokio::sync::watch;

/// How long one step of the set-up may take.
const T: Duration = Duration::from_secs(20);
const KIOSK: &str = "chaos-kiosk";
const OPERATOR: &str = "chaos-op";
const KIOSK_TOKEN: &str = "print-chaos-device-token-0123456789abcdef";

/// A `MIN-MAX` range of milliseconds.
#[derive(Debug, Clone, Copy)]
struct Millis {
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
#[derive(Debug, Parser)]
#[command(name = "print_chaos")]
struct Args {
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
    /// The `sportello-kiosk-agent` binary (default: next to this example's profile folder,
    /// `target/<profile>/sportello-kiosk-agent`).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("print_chaos: cannot start tokio: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted (SIGINT)"),
            _ = term.recv() => bail!("interrupted (SIGTERM)"),
        }
    });
    // Dropping the runtime drops the tasks, hence the agent (killed) and the printer (removed).
    drop(runtime);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("print_chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn say(start: Instant, text: impl std::fmt::Display) {
    eprintln!("[{:>8.3}s] {text}", start.elapsed().as_secs_f64());
}

/// The agent process: started, killed and restarted by the chaos task.
struct Agent {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The local endpoint of the current process (a fresh port on every start).
    local: String,
    started_at: Instant,
}

impl Agent {
    fn start(&mut self, fault: bool, note: &str) -> anyhow::Result<()> {
        let port = free_port();
        self.local = format!("http://127.0.0.1:{port}");
        self.mark(&format!(
            "start{} ({note})",
            if fault {
                " with SPORTELLO_AGENT_FAULT=exit_after_print"
            } else {
                ""
            }
        ));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("SPORTELLO_AGENT_LOCAL_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if fault {
            cmd.env("SPORTELLO_AGENT_FAULT", "exit_after_print");
        } else {
            cmd.env_remove("SPORTELLO_AGENT_FAULT");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        self.started_at = Instant::now();
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL (`Child::kill`) and reap; the status, or `None` when no process ran.
    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// The exit status if the process ended by itself.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Appends a marker line to the agent's log, between its own lines.
    fn mark(&self, text: &str) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = writeln!(f, "==== print_chaos: {text} ====");
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET /v1/status` of the agent.
async fn agent_status(http: &reqwest::Client, local: &str) -> Option<Value> {
    let r = http
        .get(format!("{local}/v1/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

async fn wait_connected(
    http: &reqwest::Client,
    agent: &Arc<Mutex<Agent>>,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let local = agent.lock().unwrap().local.clone();
        if let Some(v) = agent_status(http, &local).await {
            if v["connected"] == true {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            let log = agent.lock().unwrap().logs();
            bail!(
                "the agent did not connect within {within:?}; log tail:\n{}",
                tail(&log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the operator saw of each job, shared by the collector and the rest.
#[derive(Default)]
struct Seen {
    /// Job id → index of the request (0-based), for the jobs this program requested.
    sent: HashMap<String, usize>,
    /// Job id → the states reported to the operator, in order, with their detail.
    updates: HashMap<String, Vec<(PrintState, Option<String>)>>,
    /// Job id → when it was reported printed.
    printed_at: HashMap<String, Instant>,
}

impl Seen {
    fn outstanding(&self) -> usize {
        self.sent
            .keys()
            .filter(|id| !self.printed_at.contains_key(*id))
            .count()
    }
}

/// Chaos figures.
#[derive(Debug, Default, Clone)]
struct ChaosStats {
    starts: usize,
    fault_starts: usize,
    kills: usize,
    kills_of_fault_agents: usize,
    fault_exits: usize,
    other_exits: Vec<String>,
    /// At each kill or exit: the journal phase of every job not yet reported printed.
    windows: BTreeMap<String, usize>,
    uptimes_ms: Vec<u64>,
}

/// The journal phase of `job_id` as a crash window name; `pending` are the CUPS jobs of the
/// queue not yet completed (a submitted job outside it was completed by CUPS).
fn window_of(journal: &Path, job_id: &str, pending: Option<&[u32]>) -> String {
    let path = journal.join("jobs").join(format!(
        "{}.json",
        kiosk_client::agent::store::file_stem(job_id)
    ));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return "not journaled yet".into();
    };
    let Ok(record) = serde_json::from_str::<JobRecord>(&text) else {
        return "unreadable record".into();
    };
    let unacked = !record.outbox.is_empty();
    match (&record.phase, unacked) {
        (Phase::Received, true) => "received, not acknowledged",
        (Phase::Received, false) => "received, waiting to be submitted",
        (Phase::Submitting, _) => "submitting (lp may have run)",
        (Phase::Submitted { cups_job }, _) => match pending {
            Some(pending) if !pending.contains(cups_job) => {
                "completed by CUPS, not journaled printed"
            }
            Some(_) => "submitted to CUPS, not completed",
            None => "submitted to CUPS (CUPS state unknown)",
        },
        (Phase::Printed { .. }, true) => "printed, not acknowledged",
        (Phase::Printed { .. }, false) => "printed and acknowledged",
        (Phase::Abandoned { .. }, _) => "abandoned",
    }
    .into()
}

struct Chaos {
    agent: Arc<Mutex<Agent>>,
    seen: Arc<Mutex<Seen>>,
    journal: PathBuf,
    printer: Arc<PdfPrinter>,
    kill_every: Millis,
    pause: Millis,
    fault_share: f64,
    rng: StdRng,
    start: Instant,
}

impl Chaos {
    fn tally_windows(&self, stats: &mut ChaosStats) {
        let open: Vec<String> = {
            let seen = self.seen.lock().unwrap();
            seen.sent
                .keys()
                .filter(|id| !seen.printed_at.contains_key(*id))
                .cloned()
                .collect()
        };
        let pending = self.printer.jobs_pending().ok();
        for id in open {
            *stats
                .windows
                .entry(window_of(&self.journal, &id, pending.as_deref()))
                .or_default() += 1;
        }
    }

    /// Kills and restarts the agent until `stop` says so.
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> ChaosStats {
        let mut stats = ChaosStats {
            starts: 1,
            ..ChaosStats::default()
        };
        let mut fault_now = false;
        loop {
            let uptime = self.kill_every.pick(&mut self.rng);
            let deadline = Instant::now() + uptime;
            // Wait for the deadline, an exit of the agent by itself, or the end.
            loop {
                if *stop.borrow() {
                    return stats;
                }
                let exited = self.agent.lock().unwrap().exited();
                if let Some(status) = exited {
                    let agent = self.agent.lock().unwrap();
                    let up = agent.started_at.elapsed().as_millis() as u64;
                    stats.uptimes_ms.push(up);
                    if status.code() == Some(3) && fault_now {
                        stats.fault_exits += 1;
                        agent.mark(&format!("the fault hook exited (status 3) after {up} ms"));
                    } else {
                        stats.other_exits.push(format!("{status}"));
                        agent.mark(&format!("UNEXPECTED EXIT {status} after {up} ms"));
                        say(self.start, format!("agent exited by itself: {status}"));
                    }
                    drop(agent);
                    self.tally_windows(&mut stats);
                    break;
                }
                if Instant::now() >= deadline {
                    let mut agent = self.agent.lock().unwrap();
                    let pid = agent.pid();
                    let up = agent.started_at.elapsed().as_millis() as u64;
                    agent.kill();
                    stats.kills += 1;
                    if fault_now {
                        stats.kills_of_fault_agents += 1;
                    }
                    stats.uptimes_ms.push(up);
                    agent.mark(&format!(
                        "SIGKILL #{} pid {pid:?} after {up} ms (+{:.3}s)",
                        stats.kills,
                        self.start.elapsed().as_secs_f64()
                    ));
                    drop(agent);
                    self.tally_windows(&mut stats);
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.changed() => {}
                }
            }
            let pause = self.pause.pick(&mut self.rng);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return stats;
            }
            fault_now = self.rng.gen_bool(self.fault_share);
            let started = self
                .agent
                .lock()
                .unwrap()
                .start(fault_now, &format!("restart #{}", stats.starts));
            match started {
                Ok(()) => {
                    stats.starts += 1;
                    if fault_now {
                        stats.fault_starts += 1;
                    }
                }
                Err(e) => say(self.start, format!("cannot restart the agent: {e:#}")),
            }
        }
    }
}

/// Waits for the first event matching `pred` on `s`.
async fn event(
    s: &mut Session,
    what: &str,
    pred: impl FnMut(&Event) -> bool,
) -> anyhow::Result<Event> {
    s.wait_for(T, pred)
        .await
        .map_err(|e| anyhow::anyhow!("no {what} within {T:?}: {e:?}"))
}

async fn ok(s: &Session, r: Request) -> anyhow::Result<Value> {
    let kind = r.kind();
    s.request(&r)
        .await
        .map_err(|e| anyhow::anyhow!("{kind} refused: {e:?}"))
}

/// A PNG standing in for the scanned identity document.
fn scan_png() -> anyhow::Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(320, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

fn server_config(data_dir: &Path) -> anyhow::Result<Config> {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    cfg.operators = vec![OperatorAccount {
        username: OPERATOR.into(),
        display_name: "Operatore chaos".into(),
        password_hash: hash_password(&format!("{:x}", rand::random::<u128>())),
        skills: BTreeMap::from([("anagrafe".to_owned(), 5)]),
        languages: vec!["it".into()],
        capacity: 1,
    }];
    cfg.kiosks = vec![KioskAccount {
        id: KIOSK.into(),
        name: "Chiosco chaos".into(),
        location: "Via della Stampa 1, Parma".into(),
        services: vec![],
        token_hash: hash_token(KIOSK_TOKEN),
    }];
    let problems = cfg.validate();
    if !problems.is_empty() {
        bail!("server configuration: {problems:?}");
    }
    Ok(cfg)
}

fn default_agent_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/print_chaos → target/<profile>/sportello-kiosk-agent
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("no profile folder above the executable")?;
    Ok(dir.join("sportello-kiosk-agent"))
}

/// A resident of the demo registry.
fn resident() -> anyhow::Result<String> {
    let reg = certificates::registry::demo::DemoRegistry::embedded()?;
    let today = time::OffsetDateTime::now_utc().date();
    let person = reg
        .data()
        .people
        .iter()
        .find(|p| p.death.is_none() && p.residence_on(today).is_some())
        .context("no resident in the demo registry")?;
    Ok(person.fiscal_code.to_string())
}

/// One file the PDF printer wrote: `<title>-job_<cups id>.pdf`.
struct PdfFile {
    name: String,
    title: String,
    complete: bool,
}

fn ends_with_eof(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| {
        let tail = &b[b.len().saturating_sub(64)..];
        tail.trim_ascii_end().ends_with(b"%%EOF")
    })
}

fn pdf_files(dir: &Path) -> anyhow::Result<Vec<PdfFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pdf") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let title = stem
            .rsplit_once("-job_")
            .map_or(stem, |(title, _)| title)
            .to_owned();
        files.push(PdfFile {
            complete: ends_with_eof(&path),
            name,
            title,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The set-up shared by the run and the calibration: a call in conversation with the citizen
/// identified by document and one residenza issued.
struct Call {
    op: OperatorBot,
    kiosk: HeadlessKiosk,
    call_id: String,
    document_id: String,
    operator_token: String,
}

async fn open_call(
    running: &signalling::server::RunningServer,
    start: Instant,
) -> anyhow::Result<Call> {
    let ws = format!("ws://{}/api/v1/ws", running.addr);
    let base = running.base_url();
    let principal = Principal {
        role: Role::Operator,
        id: OPERATOR.into(),
    };
    let operator_token = running
        .state
        .tokens
        .issue(&principal, signalling::tokens::unix_now())
        .0;
    let mut op = OperatorBot::connect(&ws, &operator_token, Policy::Manual).await?;
    event(op.session(), "state.sync", |e| {
        matches!(e, Event::StateSync(_))
    })
    .await?;
    ok(
        op.session(),
        Request::PresenceSet(PresenceSet {
            state: PresenceState::Available,
            reason: None,
        }),
    )
    .await?;

    let mut kiosk = HeadlessKiosk::connect(&ws, KIOSK_TOKEN, vec![]).await?;
    let call_id = kiosk.request_call("anagrafe", "it", None).await?;
    let id = call_id.clone();
    event(
        op.session(),
        "call.offered",
        |e| matches!(e, Event::CallOffered(o) if o.call_id == id),
    )
    .await?;
    let call = || CallRef {
        call_id: call_id.clone(),
    };
    ok(op.session(), Request::CallAccept(call())).await?;
    let id = call_id.clone();
    event(
        kiosk.session(),
        "call.assigned",
        |e| matches!(e, Event::CallAssigned(a) if a.call_id == id),
    )
    .await?;
    say(start, format!("call {call_id} answered"));

    // Identification by paper document: the scan is uploaded as the agent would.
    ok(
        op.session(),
        Request::IdentityRequest(IdentityRequest {
            call_id: call_id.clone(),
            method: IdentityMethod::Document,
        }),
    )
    .await?;
    let http = reqwest::Client::new();
    let uploaded = http
        .post(format!("{base}/api/v1/calls/{call_id}/scans"))
        .bearer_auth(KIOSK_TOKEN)
        .header("content-type", "image/png")
        .body(scan_png()?)
        .send()
        .await?;
    let status = uploaded.status();
    let body: Value = uploaded.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 201 {
        bail!("scan upload answered {status}: {body}");
    }
    let scan_id = body["scan_id"]
        .as_str()
        .context("no scan_id in the upload answer")?
        .to_owned();
    ok(
        kiosk.session(),
        Request::IdentityScan(IdentityScan {
            call_id: call_id.clone(),
            scan_id,
        }),
    )
    .await?;
    let id = call_id.clone();
    event(
        op.session(),
        "identity.progress scan_received",
        |e| matches!(e, Event::IdentityProgress(p) if p.call_id == id && p.step == "scan_received"),
    )
    .await?;
    let fiscal_code = resident()?;
    ok(
        op.session(),
        Request::IdentityConfirm(IdentityConfirm {
            call_id: call_id.clone(),
            fiscal_code: fiscal_code.clone(),
            document_type: "carta_identita".into(),
            document_number: "CA12345AB".into(),
        }),
    )
    .await?;
    let id = call_id.clone();
    event(
        op.session(),
        "identity.verified",
        |e| matches!(e, Event::IdentityVerified(v) if v.call_id == id),
    )
    .await?;
    say(
        start,
        format!("citizen {fiscal_code} identified by document"),
    );

    let issued = ok(
        op.session(),
        Request::CertificateIssue(CertificateIssue {
            call_id: call_id.clone(),
            kind: "residenza".into(),
            fiscal_code: None,
            as_of: None,
            usage: Usage::Bollo { bollo: true },
            reason: None,
        }),
    )
    .await?;
    let document_id = issued["document_id"]
        .as_str()
        .context("no document_id")?
        .to_owned();
    say(start, format!("residenza issued: document {document_id}"));
    Ok(Call {
        op,
        kiosk,
        call_id,
        document_id,
        operator_token,
    })
}

/// `--calibrate N`: the printer alone, through `lp`, on a fresh queue.
async fn calibrate(
    running: &signalling::server::RunningServer,
    call: &Call,
    work: &Path,
    n: usize,
    start: Instant,
) -> anyhow::Result<()> {
    let pdf = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/documents/{}.pdf",
            running.base_url(),
            call.document_id
        ))
        .bearer_auth(&call.operator_token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let file = work.join("certificate.pdf");
    std::fs::write(&file, &pdf)?;
    let printer = PdfPrinter::create()?;
    say(
        start,
        format!(
            "calibration on {} ({} bytes PDF)",
            printer.name(),
            pdf.len()
        ),
    );
    // One job alone: the latency of one print.
    let t0 = Instant::now();
    printer.print(&file, "calibration-single")?;
    printer
        .wait_printed_async(1, Duration::from_secs(120))
        .await?;
    let single = t0.elapsed();
    // N back to back: the throughput.
    let t1 = Instant::now();
    for i in 0..n {
        printer.print(&file, &format!("calibration-{i}"))?;
    }
    let submitted = t1.elapsed();
    printer
        .wait_printed_async(n + 1, Duration::from_secs(60 + 10 * n as u64))
        .await?;
    let all = t1.elapsed();
    let rate = n as f64 / all.as_secs_f64();
    println!(
        "calibration: one job alone {:.0} ms; {n} jobs back to back: submitted in {:.0} ms, \
         all printed in {:.1} s = {rate:.2} jobs/s ({:.0} ms per job); load average {}",
        single.as_secs_f64() * 1000.0,
        submitted.as_secs_f64() * 1000.0,
        all.as_secs_f64(),
        all.as_secs_f64() * 1000.0 / n as f64,
        loadavg()
    );
    println!(
        "{}",
        json!({"calibration": {"jobs": n, "single_ms": single.as_millis() as u64,
            "seconds": all.as_secs_f64(), "jobs_per_s": rate, "pdf_bytes": pdf.len()}})
    );
    Ok(())
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
    let log_file = std::fs::File::create(work.join("server.log"))?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sfu=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(Mutex::new(log_file))
        .with_ansi(false)
        .try_init();
    say(start, format!("work folder {}", work.display()));

    let running = signalling::server::start(server_config(&work.join("data"))?).await?;
    say(start, format!("server on {}", running.base_url()));

    let mut call = open_call(&running, start).await?;
    if let Some(n) = args.calibrate {
        calibrate(&running, &call, &work, n.max(1), start).await?;
        running.state.shutdown.stop_now();
        return Ok(true);
    }

    let agent_bin = match &args.agent_bin {
        Some(bin) => bin.clone(),
        None => default_agent_bin()?,
    };
    if !agent_bin.exists() {
        bail!(
            "{} is missing: `cargo build --release -p kiosk-client --bin sportello-kiosk-agent` \
             (or pass --agent-bin)",
            agent_bin.display()
        );
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
        "server = {:?}\ntoken = {KIOSK_TOKEN:?}\nprinter = {:?}\ncups_server = {:?}\n\
         journal_dir = {:?}\nlocal_listen = \"127.0.0.1:{}\"\n",
        running.base_url(),
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
    let agent = Arc::new(Mutex::new(Agent {
        bin: agent_bin,
        config: config_path,
        log: work.join("agent.log"),
        child: None,
        local: String::new(),
        started_at: Instant::now(),
    }));
    agent.lock().unwrap().start(false, "first start")?;
    let http = reqwest::Client::new();
    wait_connected(&http, &agent, T).await?;
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
                        eprintln!("print_chaos: the operator's call ended unexpectedly: {e:?}")
                    }
                    Ok(_) | Err(kiosk_client::ClientError::Timeout) => {}
                    Err(e) => {
                        eprintln!("print_chaos: the operator's session failed: {e:?}");
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
                        eprintln!("print_chaos: the kiosk's call ended unexpectedly: {e:?}")
                    }
                    Ok(_) | Err(kiosk_client::ClientError::Timeout) => {}
                    Err(e) => {
                        eprintln!("print_chaos: the kiosk's session failed: {e:?}");
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
            a.mark("stopped at the end of the chaos");
        }
        a.start(false, "final clean start")?;
    }
    wait_connected(&http, &agent, T).await?;
    let final_deadline = Instant::now() + Duration::from_secs(args.final_timeout_s);
    loop {
        let missing = {
            let s = seen.lock().unwrap();
            s.sent
                .keys()
                .filter(|id| !s.printed_at.contains_key(*id))
                .count()
        };
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
        let local = agent.lock().unwrap().local.clone();
        let status = agent_status(&http, &local).await.unwrap_or(Value::Null);
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
    let mut by_title: HashMap<&str, Vec<&PdfFile>> = HashMap::new();
    for f in &files {
        by_title.entry(f.title.as_str()).or_default().push(f);
    }
    let mut twice: Vec<&str> = by_title
        .iter()
        .filter(|(title, fs)| seen_now.sent.contains_key(**title) && fs.len() > 1)
        .map(|(title, _)| *title)
        .collect();
    twice.sort();
    let mut no_file: Vec<&str> = seen_now
        .sent
        .keys()
        .map(String::as_str)
        .filter(|id| !by_title.contains_key(id))
        .collect();
    no_file.sort();
    let mut not_reported: Vec<&str> = seen_now
        .sent
        .keys()
        .map(String::as_str)
        .filter(|id| !seen_now.printed_at.contains_key(*id))
        .collect();
    not_reported.sort();
    let lost: HashSet<&str> = no_file.iter().chain(&not_reported).copied().collect();
    let unexpected: Vec<&str> = files
        .iter()
        .filter(|f| !seen_now.sent.contains_key(&f.title))
        .map(|f| f.name.as_str())
        .collect();
    let incomplete = files.iter().filter(|f| !f.complete).count();
    let failed_reports: usize = seen_now
        .updates
        .values()
        .filter(|u| u.iter().any(|(s, _)| *s == PrintState::Failed))
        .count();
    let jobs = seen_now.sent.len();
    let run_s = last_printed.duration_since(first_request).as_secs_f64();
    let chaos_s = chaos_done.duration_since(first_request).as_secs_f64();
    let wall_s = start.elapsed().as_secs_f64();
    let jobs_per_s = jobs as f64 / run_s.max(1e-9);
    let passed = twice.is_empty() && lost.is_empty() && unexpected.is_empty() && jobs == args.jobs;
    let uptime_median = {
        let mut u = stats.uptimes_ms.clone();
        u.sort_unstable();
        u.get(u.len() / 2).copied().unwrap_or(0)
    };

    println!();
    println!(
        "print_chaos: {jobs} jobs, seed {seed}, ≤ {}/s, ≤ {} outstanding; load average {} → {}",
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
        files.len() - incomplete
    );
    println!(
        "  printed twice: {}; lost: {} (no file {}, never reported printed {}); unexpected files: {}",
        twice.len(),
        lost.len(),
        no_file.len(),
        not_reported.len(),
        unexpected.len()
    );
    println!(
        "  jobs reported failed at some point: {failed_reports}; print.request errors: \
         {request_errors}; print.job seen by the screen: {}",
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
        let log = agent.lock().unwrap().logs();
        let server_log = std::fs::read_to_string(work.join("server.log")).unwrap_or_default();
        for id in twice.iter().chain(lost.iter()).take(20) {
            let files: Vec<&str> = by_title
                .get(id)
                .map(|fs| fs.iter().map(|f| f.name.as_str()).collect())
                .unwrap_or_default();
            println!(
                "\n--- job {id}: files {files:?}; updates {:?}",
                seen_now.updates.get(*id)
            );
            for line in log
                .lines()
                .filter(|l| l.contains(id) || l.starts_with("===="))
            {
                if line.starts_with("====") {
                    continue;
                }
                println!("  agent: {line}");
            }
            for line in server_log.lines().filter(|l| l.contains(id)) {
                println!("  server: {line}");
            }
        }
        if !unexpected.is_empty() {
            println!("\nunexpected files: {unexpected:?}");
        }
    }
    let result = json!({
        "jobs": jobs,
        "passed": passed,
        "printed_twice": twice.len(),
        "lost": lost.len(),
        "lost_no_file": no_file.len(),
        "lost_not_reported": not_reported.len(),
        "unexpected_files": unexpected.len(),
        "pdf_files": files.len(),
        "agent_starts": stats.starts,
        "fault_hook_starts": stats.fault_starts,
        "sigkills": stats.kills,
        "fault_hook_exits": stats.fault_exits,
        "other_exits": stats.other_exits.len(),
        "windows_at_kills": stats.windows,
        "failed_reports": failed_reports,
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
    drop(seen_now);

    collector.abort();
    screen.abort();
    agent.lock().unwrap().kill();
    drop(printer);
    running.state.shutdown.stop_now();
    match temp {
        Some(t) if passed && !args.keep => drop(t),
        Some(t) => {
            let kept = t.keep();
            eprintln!("print_chaos: work folder kept: {}", kept.display());
        }
        None => {}
    }
    Ok(passed)
}
