//! `loadtest run`: a load run against one deployment.
//!
//! Kiosks and operators are the project's headless clients ([`kiosk_client`]) with real WebRTC
//! media through the SFU: every video packet carries its send time and a sequence number, so the
//! receiving side measures one-way latency and loss per direction (the clients share this
//! machine's clock). The calls come from [`crate::scenario::plan`]: Poisson arrivals spread over
//! the free kiosks (an arrival that finds every kiosk busy is counted as blocked), lognormal
//! conversations, and the drawn shares of abandons, holds, transfers and certificates printed on
//! the kiosk's printer (the bot kiosk agent acknowledges the print).
//!
//! The run stops arrivals after `--duration`, lets the calls in progress finish (at most
//! `--drain-s`), then compares its own counts with the server's `sportello_calls_total` and the
//! supervisor's `metrics.snapshot` (differences over the run), and writes `report.json`,
//! `report.md` and `report.svg` ([`crate::report`]). A progress line on stderr shows the elapsed
//! time, calls in progress, answered calls and the p95 wait.

mod kiosk;
mod ledger;
mod operator;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kiosk_client::media::ClientOptions;
use kiosk_client::{ClientError, Session};
use protocol::{Auth, Event, MetricsSnapshot, Request};
use tokio::sync::{mpsc, watch};

pub use ledger::{CallRecord, Counts, Direction, Ledger, MediaResult};
pub use operator::connect as connect_operator;

use crate::report::{self, Report, ServerFigures, TimePoint};
use crate::scenario::{self, Mix, PlannedCall, Shape};
use crate::server::{self, ServerArgs, Target, Usage};
use crate::stats::Samples;

/// `loadtest run`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Where report.json, report.md and report.svg go.
    #[arg(long)]
    pub out: PathBuf,
}

/// The load's parameters (shared by `run` and `capacity`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Bot kiosks (each places one call at a time).
    #[arg(long, default_value_t = 12)]
    pub kiosks: usize,
    /// Bot operators.
    #[arg(long, default_value_t = 4)]
    pub operators: usize,
    /// Seconds during which callers arrive.
    #[arg(long, default_value_t = 45.0)]
    pub duration: f64,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mean arrivals per second (Poisson). Default: 2.2 × operators ÷ (handle + wrap-up), about
    /// 2.2 calls in progress per operator (the demo operators take 1 to 3 at once).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Mean conversation length, seconds (lognormal).
    #[arg(long, default_value_t = 10.0)]
    pub handle_mean_s: f64,
    /// Coefficient of variation of the conversation length.
    #[arg(long, default_value_t = 0.5)]
    pub handle_cv: f64,
    /// Share of callers who give up if unanswered after their patience.
    #[arg(long, default_value_t = 0.1)]
    pub abandon: f64,
    /// Mean patience of those callers, seconds (exponential).
    #[arg(long, default_value_t = 3.0)]
    pub patience_mean_s: f64,
    /// Share of calls put on hold once.
    #[arg(long, default_value_t = 0.1)]
    pub hold: f64,
    /// Seconds on hold.
    #[arg(long, default_value_t = 1.0)]
    pub hold_s: f64,
    /// Share of calls transferred back to the queue halfway through.
    #[arg(long, default_value_t = 0.05)]
    pub transfer: f64,
    /// Share of calls with a document identification and a certificate printed at the kiosk.
    #[arg(long, default_value_t = 0.1)]
    pub certificate: f64,
    /// The service the kiosks ask for.
    #[arg(long, default_value = "anagrafe")]
    pub service: String,
    /// The callers' language.
    #[arg(long, default_value = "it")]
    pub language: String,
    /// Milliseconds between an offer and the operator's accept.
    #[arg(long, default_value_t = 200)]
    pub accept_delay_ms: u64,
    /// Seconds of wrap-up after each call.
    #[arg(long, default_value_t = 1.0)]
    pub wrapup_s: f64,
    /// The service-level threshold, seconds (the server's default is 60).
    #[arg(long, default_value_t = 60.0)]
    pub sl_threshold_s: f64,
    /// At most this many seconds for the calls in progress to finish after the arrivals stop.
    #[arg(long, default_value_t = 90.0)]
    pub drain_s: f64,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl LoadArgs {
    /// The scenario's shape.
    pub fn shape(&self) -> Shape {
        let rate = self.rate.unwrap_or_else(|| {
            2.2 * self.operators.max(1) as f64 / (self.handle_mean_s + self.wrapup_s).max(0.1)
        });
        Shape {
            rate_per_s: rate,
            handle_mean_s: self.handle_mean_s,
            handle_cv: self.handle_cv,
            patience_mean_s: self.patience_mean_s,
            hold_s: self.hold_s,
            mix: Mix {
                abandon: self.abandon,
                hold: self.hold,
                transfer: self.transfer,
                certificate: self.certificate,
            },
        }
    }

    fn validate(&self) -> Result<()> {
        if self.kiosks == 0 || self.operators == 0 {
            bail!("a run needs at least one kiosk and one operator");
        }
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 86_400.0) {
            bail!("--duration must be within 0–86400 s");
        }
        if !(self.wrapup_s.is_finite() && self.wrapup_s >= 0.0) {
            bail!("--wrapup-s must be 0 or more");
        }
        if !(self.drain_s.is_finite() && self.drain_s >= 0.0) {
            bail!("--drain-s must be 0 or more");
        }
        self.shape().validate()
    }
}

/// How the kiosks place calls.
#[derive(Debug, Clone)]
pub enum Arrivals {
    /// The plan's Poisson arrivals.
    Open(Vec<PlannedCall>),
    /// Every kiosk calls again as soon as its call ended (after `think`), drawing each call from
    /// the list in turn: a fixed number of concurrent calls.
    Closed {
        /// The calls' draws.
        calls: Vec<PlannedCall>,
        /// Pause between a kiosk's calls.
        think: Duration,
    },
}

/// `loadtest run`'s entry point.
pub async fn main(args: Args) -> ExitCode {
    crate::init_logging();
    match execute(&args).await {
        Ok(report) => {
            eprintln!("{}", report.summary_line());
            println!("{}", report.headline_json());
            if report.check.matches {
                ExitCode::SUCCESS
            } else {
                eprintln!("loadtest: the counts differ from the server's (see report.md)");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadtest run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load and writes the report files.
pub async fn execute(args: &Args) -> Result<Report> {
    args.load.validate()?;
    let mut target = Target::open(&args.server, args.load.kiosks, args.load.operators)?;
    let plan = scenario::plan(
        &args.load.shape(),
        Duration::from_secs_f64(args.load.duration),
        args.load.seed,
    )?;
    let report = run_load(&mut target, &args.load, Arrivals::Open(plan)).await?;
    report::write(&args.out, &report)?;
    eprintln!("loadtest: report in {}", args.out.display());
    Ok(report)
}

/// Sets up the bots, runs the arrivals and gathers every figure.
pub async fn run_load(target: &mut Target, load: &LoadArgs, arrivals: Arrivals) -> Result<Report> {
    load.validate()?;
    let http = reqwest::Client::new();
    let ledger = Arc::new(Ledger::new());
    let media = ClientOptions::default();
    let scan = Arc::new(testkit::images::scan_png());
    let fiscal_code = crate::demo::resident()?;

    // The supervisor's snapshots (counts before and after, waiting calls over time).
    let mut supervisor = match target.credentials.supervisors.first() {
        Some(login) => {
            Some(supervise(&target.base, &target.ws, &login.username, &login.password).await?)
        }
        None => None,
    };
    let snapshot_before = match supervisor.as_mut() {
        Some(s) => Some(next_snapshot(s).await?),
        None => None,
    };

    // Operators.
    let (stop_tx, stop_rx) = watch::channel(false);
    let op_config = operator::OperatorConfig {
        accept_delay: Duration::from_millis(load.accept_delay_ms),
        wrapup: Duration::from_secs_f64(load.wrapup_s),
        hold: Duration::from_secs_f64(load.hold_s),
        service: load.service.clone(),
        fiscal_code,
        media: media.clone(),
    };
    let mut operator_tasks = Vec::new();
    for login in target.credentials.operators.iter().take(load.operators) {
        let session = operator::connect(&target.base, &target.ws, &login.username, &login.password)
            .await
            .with_context(|| format!("operator {}", login.username))?;
        operator_tasks.push(tokio::spawn(operator::run(
            login.username.clone(),
            session,
            op_config.clone(),
            ledger.clone(),
            stop_rx.clone(),
        )));
    }

    // Kiosks.
    let kiosk_config = kiosk::KioskConfig {
        base: target.base.clone(),
        service: load.service.clone(),
        language: load.language.clone(),
        media,
        scan,
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut kiosk_inputs = Vec::new();
    let mut kiosk_tasks = Vec::new();
    for (index, account) in target
        .credentials
        .kiosks
        .iter()
        .take(load.kiosks)
        .enumerate()
    {
        let (screen, agent) = kiosk::connect(&target.ws, &account.token)
            .await
            .with_context(|| format!("kiosk {}", account.id))?;
        let (tx, rx) = mpsc::channel(1);
        kiosk_inputs.push(tx);
        kiosk_tasks.push(tokio::spawn(kiosk::screen(
            index,
            account.id.clone(),
            screen,
            kiosk_config.clone(),
            ledger.clone(),
            rx,
            done_tx.clone(),
        )));
        tokio::spawn(kiosk::agent(
            agent,
            kiosk_config.clone(),
            account.token.clone(),
            ledger.clone(),
        ));
    }
    drop(done_tx);

    let prom_before = match &target.metrics {
        Some(url) => Some(server::scrape(&http, url).await?),
        None => None,
    };
    let usage_before = usage(&http, target).await;
    // The sampler: the timeline and the progress line.
    let sampling = Arc::new(std::sync::Mutex::new(Vec::<TimePoint>::new()));
    let (sampler_stop, sampler_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample(
        http.clone(),
        target.pid,
        target.metrics.clone(),
        ledger.clone(),
        sampling.clone(),
        usage_before,
        load.quiet,
        sampler_rx,
    ));

    // The arrivals.
    let started = Instant::now();
    let mut free: Vec<usize> = (0..kiosk_inputs.len()).rev().collect();
    match arrivals {
        Arrivals::Open(plan) => {
            for call in plan {
                let at = started + call.at;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => break,
                        Some(k) = done_rx.recv() => free.push(k),
                    }
                }
                while let Ok(k) = done_rx.try_recv() {
                    free.push(k);
                }
                match free.pop() {
                    Some(k) => {
                        if kiosk_inputs[k].send(call).await.is_err() {
                            ledger.error(format!("kiosk {k} stopped"));
                        }
                    }
                    None => ledger.count(|c| c.blocked += 1),
                }
            }
        }
        Arrivals::Closed { calls, think } => {
            let end = started + Duration::from_secs_f64(load.duration);
            let mut draws = calls.into_iter();
            'arrivals: loop {
                while let Some(k) = free.pop() {
                    let Some(call) = draws.next() else {
                        break 'arrivals;
                    };
                    if kiosk_inputs[k].send(call).await.is_err() {
                        ledger.error(format!("kiosk {k} stopped"));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(end.into()) => break,
                    k = done_rx.recv() => match k {
                        Some(k) => {
                            tokio::time::sleep(think).await;
                            free.push(k);
                        }
                        None => break,
                    },
                }
            }
        }
    }
    tokio::time::sleep_until((started + Duration::from_secs_f64(load.duration)).into()).await;
    let arrivals_ended = Instant::now();

    // Let the calls in progress finish.
    drop(kiosk_inputs);
    let drain = Duration::from_secs_f64(load.drain_s);
    let kiosks_done =
        tokio::time::timeout(drain, futures_util::future::join_all(kiosk_tasks)).await;
    if kiosks_done.is_err() {
        ledger.error(format!(
            "calls still in progress {drain:?} after the arrivals stopped"
        ));
    }
    let _ = stop_tx.send(true);
    let wrapups = Duration::from_secs_f64(load.wrapup_s) + Duration::from_secs(15);
    if tokio::time::timeout(wrapups, futures_util::future::join_all(operator_tasks))
        .await
        .is_err()
    {
        ledger.error("operators still busy after the last call ended");
    }
    let ended = Instant::now();
    // One more snapshot period, so the server's figures include the last wrap-up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = sampler_stop.send(true);
    let _ = sampler.await;
    if let Some(status) = target.exited() {
        bail!("the server exited during the run ({status})");
    }

    let usage_after = usage(&http, target).await;
    let prom_after = match &target.metrics {
        Some(url) => Some(server::scrape(&http, url).await?),
        None => None,
    };
    let snapshot_after = match supervisor.as_mut() {
        Some(s) => Some(next_snapshot(s).await?),
        None => None,
    };
    if let Some(s) = supervisor {
        s.close().await;
    }
    let timeline = sampling.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let server = ServerFigures::from_samples(
        usage_before,
        usage_after,
        &timeline,
        prom_before.as_ref(),
        prom_after.as_ref(),
    );
    Ok(Report::build(report::Inputs {
        load: load.clone(),
        ledger: &ledger,
        server,
        prom: prom_before.as_ref().zip(prom_after.as_ref()),
        snapshots: snapshot_before.as_ref().zip(snapshot_after.as_ref()),
        timeline,
        arrivals_s: arrivals_ended.duration_since(started).as_secs_f64(),
        run_s: ended.duration_since(started).as_secs_f64(),
    }))
}

async fn usage(http: &reqwest::Client, target: &Target) -> Option<Usage> {
    if let Some(pid) = target.pid {
        if let Ok(u) = server::proc_usage(pid) {
            return Some(u);
        }
    }
    let url = target.metrics.as_ref()?;
    server::scrape_usage(&server::scrape(http, url).await.ok()?)
}

#[allow(clippy::too_many_arguments)]
async fn sample(
    http: reqwest::Client,
    pid: Option<u32>,
    metrics: Option<String>,
    ledger: Arc<Ledger>,
    out: Arc<std::sync::Mutex<Vec<TimePoint>>>,
    first: Option<Usage>,
    quiet: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = first;
    let mut last_at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now_usage = match pid.map(server::proc_usage) {
            Some(Ok(u)) => Some(u),
            _ => match &metrics {
                Some(url) => server::scrape(&http, url)
                    .await
                    .ok()
                    .and_then(|s| server::scrape_usage(&s)),
                None => None,
            },
        };
        let now = Instant::now();
        let cpu_pct = match (last, now_usage) {
            (Some(a), Some(b)) => {
                Some((b.cpu_s - a.cpu_s) / now.duration_since(last_at).as_secs_f64() * 100.0)
            }
            _ => None,
        };
        last = now_usage.or(last);
        last_at = now;
        let (waiting, talking) = ledger.in_progress();
        let records = ledger.records();
        let waits = Samples::new(records.iter().filter_map(CallRecord::wait_s));
        let counts = ledger.counts();
        let point = TimePoint {
            t_s: ledger.at(now),
            waiting,
            in_conversation: talking,
            answered: counts.answered,
            wait_p95_s: waits.quantile(0.95),
            server_cpu_pct: cpu_pct,
            server_rss_mib: now_usage.map(|u| u.rss_mib),
        };
        if !quiet {
            eprint!(
                "\r[{:>5.0} s] in progress {:>3} (waiting {:>3})  answered {:>5}  p95 wait {:>6}   ",
                point.t_s,
                waiting + talking,
                waiting,
                counts.answered,
                point
                    .wait_p95_s
                    .map_or("-".to_owned(), |w| format!("{w:.1} s"))
            );
        }
        out.lock().unwrap_or_else(|e| e.into_inner()).push(point);
    }
    if !quiet {
        eprintln!();
    }
}

/// A supervisor session subscribed to `metrics.snapshot`.
async fn supervise(base: &str, ws: &str, username: &str, password: &str) -> Result<Session> {
    let token = kiosk_client::OperatorBot::login(base, username, password)
        .await
        .with_context(|| format!("supervisor {username}"))?;
    let (session, _) = Session::connect(
        ws,
        Auth {
            token,
            resume: None,
            capabilities: Vec::new(),
        },
    )
    .await?;
    session.request(&Request::MetricsSubscribe {}).await?;
    Ok(session)
}

/// The next `metrics.snapshot` (they come every second), older ones dropped.
async fn next_snapshot(session: &mut Session) -> Result<MetricsSnapshot> {
    session.drain_events();
    loop {
        match session.next_event(Duration::from_secs(5)).await {
            Ok(Event::MetricsSnapshot(s)) => return Ok(s),
            Ok(_) => continue,
            Err(ClientError::Timeout) => bail!("no metrics.snapshot within 5 s"),
            Err(e) => return Err(e.into()),
        }
    }
}
