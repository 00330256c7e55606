//! `loadtest compare-janus`: the same headless media clients through our server and through
//! Janus's `videocall` plugin, in one run, measured the same way; then, on each side, one call
//! between two headless Chromium pages ([`browser`]).
//!
//! For each side, `--calls` 1:1 calls are set up one after another (each client sends the
//! default synthetic stream: 30 frames/s of two ~1000-byte VP8-framed packets, and Opus silence),
//! then held together for `--duration` seconds. Figures, per side:
//! - `cpu_per_call_pct`: the server's CPU during the hold ÷ (calls × hold seconds), in percent
//!   of one core (`/proc/PID` with `--server-pid`/`--janus-pid`, or our server's
//!   `process_cpu_seconds_total`);
//! - `join_ms_p50`: from the first request of a call (our `call.request`; Janus's session
//!   `create`) to both clients receiving the other's video; on our side the operator accepts at
//!   once;
//! - `latency_ms_p99`: one-way, both directions, over the hold;
//! - `kbps`: received payload bitrate per client;
//! - `loss_ratio`: video sequence numbers missing at the end ÷ expected.
//!
//! The browser calls (unless `--no-browsers`; by default when Chromium, node and the scripts'
//! npm packages are found) come after the headless ones on each side: one 1:1 call held for
//! `--duration`, with its server CPU, its join times to the first decoded frame and to more than
//! 10, and the video bitrate received (see [`browser`]). Our side's runs on a fresh server when
//! `--spawn` is given.
//!
//! `DIR/compare.json` has `ours`, `janus`, `ratios` (ours ÷ janus), `browser` (`ours`, `janus`,
//! `ratios`), `goals` (issue 19's: CPU per call at least 5× cheaper than Janus's, and joining
//! faster, for each kind of client, met or not) and `notes` saying which figure could not be taken
//! and why; the last stdout line is the same object. The browser scripts' own results are in
//! `DIR/browser-ours.json` and `DIR/browser-janus.json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kiosk_client::media::{CallMedia, ClientOptions, MediaClient};
use kiosk_client::{ClientError, Session};
use protocol::{Auth, CallRef, CallRequest, Event, Request};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub mod browser;

use crate::run::MediaResult;
use crate::server::{self, ServerArgs, Target};
use crate::stats::Samples;

/// `loadtest compare-janus`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Janus's WebSocket API (`ws://127.0.0.1:8188`), started by the caller.
    #[arg(long, required_unless_present = "spawn_janus")]
    pub janus: Option<String>,
    /// Janus's process id, for its CPU.
    #[arg(long)]
    pub janus_pid: Option<u32>,
    /// The address of this machine Janus gathers its candidates on (Janus offers no loopback
    /// candidates); the Janus clients' media sockets bind it. With --spawn-janus, the one it chose.
    #[arg(long, required_unless_present = "spawn_janus")]
    pub janus_media_ip: Option<std::net::IpAddr>,
    /// Start a private Janus instead (testkit's: its own folder, loopback ports).
    #[arg(long, conflicts_with = "janus")]
    pub spawn_janus: bool,
    /// Calls held at once on each side.
    #[arg(long, default_value_t = 4)]
    pub calls: usize,
    /// Seconds the calls are held.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Where compare.json goes.
    #[arg(long)]
    pub out: PathBuf,
    /// Also one call between two headless Chromium pages on each side, and fail if Chromium,
    /// node or the scripts' npm packages are missing (by default the browser calls run when they
    /// are found, and a note says why not otherwise).
    #[arg(long, conflicts_with = "no_browsers")]
    pub browsers: bool,
    /// No browser calls.
    #[arg(long)]
    pub no_browsers: bool,
    /// Chromium for the browser calls (default: $CHROMIUM, else /usr/bin/chromium).
    #[arg(long)]
    pub chromium: Option<PathBuf>,
}

/// One side's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// Server CPU per call, percent of one core.
    pub cpu_per_call_pct: Option<f64>,
    /// Join median, ms.
    pub join_ms_p50: Option<f64>,
    /// One-way latency p99, ms.
    pub latency_ms_p99: Option<f64>,
    /// Received kbit/s per client.
    pub kbps: Option<f64>,
    /// Video loss.
    pub loss_ratio: Option<f64>,
}

impl Side {
    fn fields(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("cpu_per_call_pct", self.cpu_per_call_pct),
            ("join_ms_p50", self.join_ms_p50),
            ("latency_ms_p99", self.latency_ms_p99),
            ("kbps", self.kbps),
            ("loss_ratio", self.loss_ratio),
        ]
    }
}

/// `loadtest compare-janus`'s entry point.
pub async fn main(args: Args) -> ExitCode {
    crate::init_logging();
    crate::finish("compare-janus", execute(&args).await)
}

async fn execute(args: &Args) -> Result<String> {
    if args.calls == 0 || !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--calls and --duration must be above 0");
    }
    std::fs::create_dir_all(&args.out)?;
    let mut notes = Vec::new();
    let hold = Duration::from_secs_f64(args.duration);
    let tools = if args.no_browsers {
        notes.push("browser: every figure missing: --no-browsers".to_owned());
        None
    } else {
        match browser::Tools::find(args.chromium.as_deref()) {
            Ok(tools) => Some(tools),
            Err(e) if args.browsers => bail!("--browsers: {e}"),
            Err(e) => {
                notes.push(format!("browser: every figure missing: {e}"));
                None
            }
        }
    };

    let target = Target::open(&args.server, args.calls, args.calls)?;
    eprintln!(
        "loadtest compare-janus: {} calls through our server",
        args.calls
    );
    let ours = ours(&target, args.calls, hold, &mut notes).await?;
    let browser_ours = match &tools {
        Some(tools) => {
            let run = ours_browser(tools, target, args).await;
            browser_figures("ours", run, args, &mut notes)?
        }
        None => {
            drop(target);
            browser::BrowserSide::default()
        }
    };

    let janus_process;
    let (janus_ws, janus_pid, media_ip) = if args.spawn_janus {
        match testkit::janus::Janus::start() {
            Ok(j) => {
                let found = (Some(j.ws_url()), Some(j.pid()), Some(j.media_ip()));
                janus_process = Some(j);
                found
            }
            Err(e) => {
                janus_process = None;
                notes.push(format!(
                    "janus: every figure missing: Janus could not start: {e}"
                ));
                (None, None, None)
            }
        }
    } else {
        janus_process = None;
        if let Some(ws) = &args.janus {
            crate::target::check(ws, args.server.test_hosts)?;
        }
        (args.janus.clone(), args.janus_pid, args.janus_media_ip)
    };
    let mut browser_janus = browser::BrowserSide::default();
    let janus = match janus_ws.zip(media_ip) {
        Some((ws, media_ip)) => {
            eprintln!("loadtest compare-janus: {} calls through Janus", args.calls);
            let side =
                match janus_side(&ws, media_ip, janus_pid, args.calls, hold, &mut notes).await {
                    Ok(side) => side,
                    Err(e) => {
                        notes.push(format!("janus: every figure missing: {e:#}"));
                        Side::default()
                    }
                };
            if let Some(tools) = &tools {
                eprintln!("loadtest compare-janus: one Chromium call through Janus");
                let run = browser::janus(tools, &ws, media_ip, janus_pid, args.duration).await;
                browser_janus = browser_figures("janus", run, args, &mut notes)?;
            }
            side
        }
        None => Side::default(),
    };
    drop(janus_process);

    let browser = json!({
        "ours": browser_ours,
        "janus": browser_janus,
        "ratios": ratios(&browser_ours.fields(), &browser_janus.fields()),
    });
    let goals = goals(&ours, &janus, &browser_ours, &browser_janus);
    let result = json!({
        "calls": args.calls,
        "duration_s": args.duration,
        "ours": ours,
        "janus": janus,
        "ratios": ratios(&ours.fields(), &janus.fields()),
        "browser": browser,
        "goals": goals,
        "notes": notes,
    });
    std::fs::write(
        args.out.join("compare.json"),
        serde_json::to_string_pretty(&result)? + "\n",
    )?;
    for note in result["notes"].as_array().into_iter().flatten() {
        eprintln!(
            "loadtest compare-janus: {}",
            note.as_str().unwrap_or_default()
        );
    }
    for line in summary(&result) {
        eprintln!("loadtest compare-janus: {line}");
    }
    Ok(result.to_string())
}

/// Our side's browser call: on a fresh server when this run starts them, so that nothing left
/// over from the headless calls (their operators' sessions) can take or delay its offer.
async fn ours_browser(tools: &browser::Tools, target: Target, args: &Args) -> Result<Value> {
    let target = if target.is_spawned() {
        drop(target);
        Target::open(&args.server, 1, 1).context("a fresh server for the browser call")?
    } else {
        target
    };
    eprintln!("loadtest compare-janus: one Chromium call through our server");
    browser::ours(tools, &target, args.duration).await
}

/// Ours ÷ Janus for each figure both sides have (Janus's not 0).
fn ratios(ours: &[(&'static str, Option<f64>)], janus: &[(&'static str, Option<f64>)]) -> Value {
    let mut ratios = serde_json::Map::new();
    for ((name, a), (_, b)) in ours.iter().zip(janus) {
        let ratio = match (a, b) {
            (Some(a), Some(b)) if *b != 0.0 => Some(a / b),
            _ => None,
        };
        ratios.insert((*name).into(), json!(ratio));
    }
    Value::Object(ratios)
}

/// A browser run's figures, its result kept in `DIR/browser-<side>.json`; a failed run is a note.
fn browser_figures(
    side: &str,
    run: Result<Value>,
    args: &Args,
    notes: &mut Vec<String>,
) -> Result<browser::BrowserSide> {
    let value = match run {
        Ok(value) => value,
        Err(e) => {
            notes.push(format!("browser/{side}: every figure missing: {e:#}"));
            return Ok(browser::BrowserSide::default());
        }
    };
    std::fs::write(
        args.out.join(format!("browser-{side}.json")),
        serde_json::to_string_pretty(&value)? + "\n",
    )?;
    let figures = browser::BrowserSide::of(&value);
    for (name, figure) in figures.fields() {
        if figure.is_none() {
            notes.push(format!(
                "browser/{side}: {name} missing: not in the script's result"
            ));
        }
    }
    Ok(figures)
}

/// How much cheaper our CPU per call must be than Janus's (issue 19).
pub const CPU_GOAL: f64 = 5.0;

/// Issue 19's goals for each kind of client: `cpu_janus_over_ours` (Janus's CPU per call ÷ ours,
/// which must be at least [`CPU_GOAL`]) and whether each join time is below Janus's; `null` where
/// a figure is missing.
fn goals(
    ours: &Side,
    janus: &Side,
    browser_ours: &browser::BrowserSide,
    browser_janus: &browser::BrowserSide,
) -> Value {
    let cheaper = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b >= CPU_GOAL * a);
    let over =
        |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| (a > 0.0).then_some(b / a));
    let faster = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a < b);
    json!({
        "headless": {
            "cpu_janus_over_ours": over(ours.cpu_per_call_pct, janus.cpu_per_call_pct),
            "cpu_5x_cheaper": cheaper(ours.cpu_per_call_pct, janus.cpu_per_call_pct),
            "join_faster": faster(ours.join_ms_p50, janus.join_ms_p50),
        },
        "browser": {
            "cpu_janus_over_ours": over(browser_ours.cpu_per_call_pct, browser_janus.cpu_per_call_pct),
            "cpu_5x_cheaper": cheaper(browser_ours.cpu_per_call_pct, browser_janus.cpu_per_call_pct),
            "join_first_frame_faster": faster(browser_ours.join_first_frame_ms, browser_janus.join_first_frame_ms),
            "join_10_frames_faster": faster(browser_ours.join_10_frames_ms, browser_janus.join_10_frames_ms),
        },
    })
}

/// The figures and goals as readable lines, for stderr.
fn summary(result: &Value) -> Vec<String> {
    let num = |p: &str| {
        result
            .pointer(p)
            .and_then(Value::as_f64)
            .map_or("—".to_owned(), |v| format!("{v:.2}"))
    };
    let met = |p: &str| match result.pointer(p).and_then(Value::as_bool) {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    vec![
        format!(
            "headless: CPU per call ours {}% Janus {}% (Janus ÷ ours {}, goal ≥ {CPU_GOAL}: {}); \
             join p50 ours {} ms Janus {} ms (goal faster: {})",
            num("/ours/cpu_per_call_pct"),
            num("/janus/cpu_per_call_pct"),
            num("/goals/headless/cpu_janus_over_ours"),
            met("/goals/headless/cpu_5x_cheaper"),
            num("/ours/join_ms_p50"),
            num("/janus/join_ms_p50"),
            met("/goals/headless/join_faster"),
        ),
        format!(
            "Chromium: CPU per call ours {}% Janus {}% (Janus ÷ ours {}, goal ≥ {CPU_GOAL}: {}); \
             join to the first frame ours {} ms Janus {} ms (goal faster: {}); to 10 frames \
             ours {} ms Janus {} ms (goal faster: {}); video received ours {} Janus {} kbit/s",
            num("/browser/ours/cpu_per_call_pct"),
            num("/browser/janus/cpu_per_call_pct"),
            num("/goals/browser/cpu_janus_over_ours"),
            met("/goals/browser/cpu_5x_cheaper"),
            num("/browser/ours/join_first_frame_ms"),
            num("/browser/janus/join_first_frame_ms"),
            met("/goals/browser/join_first_frame_faster"),
            num("/browser/ours/join_10_frames_ms"),
            num("/browser/janus/join_10_frames_ms"),
            met("/goals/browser/join_10_frames_faster"),
            num("/browser/ours/kbps"),
            num("/browser/janus/kbps"),
        ),
    ]
}

/// The figures of held calls: each pair of clients with its join time.
fn figures(
    pairs: &[(&MediaClient, &MediaClient)],
    joins_ms: &[f64],
    held_s: f64,
    cpu_s: Option<f64>,
) -> Side {
    let results: Vec<MediaResult> = pairs
        .iter()
        .flat_map(|(a, b)| [a, b])
        .map(|c| MediaResult::of(&c.stats(), held_s))
        .collect();
    let latencies = Samples::new(results.iter().flat_map(|r| r.latencies_ms.iter().copied()));
    let expected: u64 = results.iter().map(|r| r.expected).sum();
    let lost: u64 = results.iter().map(|r| r.lost).sum();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let secs: f64 = results.iter().map(|r| r.secs).sum();
    Side {
        cpu_per_call_pct: cpu_s.map(|cpu| cpu / (pairs.len() as f64 * held_s) * 100.0),
        join_ms_p50: Samples::new(joins_ms.iter().copied()).quantile(0.5),
        latency_ms_p99: latencies.quantile(0.99),
        kbps: (secs > 0.0).then(|| bytes as f64 * 8.0 / secs / 1000.0),
        loss_ratio: (expected > 0).then(|| lost as f64 / expected as f64),
    }
}

/// CPU seconds of a process so far: /proc, else our metrics.
async fn cpu_now(http: &reqwest::Client, pid: Option<u32>, metrics: Option<&str>) -> Option<f64> {
    if let Some(Ok(u)) = pid.map(server::proc_usage) {
        return Some(u.cpu_s);
    }
    let scrape = server::scrape(http, metrics?).await.ok()?;
    server::scrape_usage(&scrape).map(|u| u.cpu_s)
}

/// Holds the calls for `hold` and returns the CPU the process used meanwhile.
async fn hold_and_measure(
    http: &reqwest::Client,
    pid: Option<u32>,
    metrics: Option<&str>,
    hold: Duration,
) -> (Option<f64>, f64) {
    // Let the calls settle (bandwidth estimation, first keyframes) before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_now(http, pid, metrics).await;
    let started = Instant::now();
    tokio::time::sleep(hold).await;
    let after = cpu_now(http, pid, metrics).await;
    let held = started.elapsed().as_secs_f64();
    (before.zip(after).map(|(b, a)| a - b), held)
}

async fn wait_video(client: &MediaClient, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if client.stats().packets("video") > 0 {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("no video within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Our side: kiosk i calls, an operator accepts at once, both send media.
async fn ours(
    target: &Target,
    calls: usize,
    hold: Duration,
    notes: &mut Vec<String>,
) -> Result<Side> {
    let http = reqwest::Client::new();
    let media = ClientOptions::default();
    // Operators accept every offer at once and hand over the call's media.
    let (accepted_tx, mut accepted_rx) = mpsc::unbounded_channel::<(String, CallMedia)>();
    let mut operator_tasks = Vec::new();
    for login in target.credentials.operators.iter().take(calls) {
        let session = crate::run::connect_operator(
            &target.base,
            &target.ws,
            &login.username,
            &login.password,
        )
        .await
        .with_context(|| format!("operator {}", login.username))?;
        let tx = accepted_tx.clone();
        let media = media.clone();
        operator_tasks.push(tokio::spawn(accept_all(session, media, tx)));
    }
    let mut kiosks = Vec::new();
    let mut joins = Vec::new();
    let mut operator_media: Vec<(String, CallMedia)> = Vec::new();
    for account in target.credentials.kiosks.iter().take(calls) {
        let (mut session, _) = Session::connect(
            &target.ws,
            Auth {
                token: account.token.clone(),
                resume: None,
                capabilities: Vec::new(),
            },
        )
        .await?;
        let requested = Instant::now();
        let reply = session
            .request(&Request::CallRequest(CallRequest {
                service: "anagrafe".into(),
                language: "it".into(),
                priority: None,
            }))
            .await?;
        let call_id = reply["call_id"].as_str().context("call_id")?.to_owned();
        let id = call_id.clone();
        session
            .wait_for(
                Duration::from_secs(10),
                |e| matches!(e, Event::CallAssigned(a) if a.call_id == id),
            )
            .await
            .context("call.assigned")?;
        let kiosk_media = CallMedia::start(&session.requester(), &call_id, media.clone()).await?;
        let op = loop {
            let (id, m) = tokio::time::timeout(Duration::from_secs(10), accepted_rx.recv())
                .await
                .context("the operator's media")?
                .context("operators gone")?;
            if id == call_id {
                break m;
            }
            operator_media.push((id, m));
        };
        let a = wait_video(kiosk_media.client(), Duration::from_secs(15)).await?;
        let b = wait_video(op.client(), Duration::from_secs(15)).await?;
        joins.push(a.max(b).duration_since(requested).as_secs_f64() * 1000.0);
        operator_media.push((call_id.clone(), op));
        kiosks.push((session, call_id, kiosk_media));
    }
    let metrics = target.metrics.as_deref();
    if target.pid.is_none() && metrics.is_none() {
        notes.push("ours: cpu_per_call_pct missing: neither --server-pid nor --metrics".into());
    }
    let (cpu, held) = hold_and_measure(&http, target.pid, metrics, hold).await;
    let pairs: Vec<(&MediaClient, &MediaClient)> = kiosks
        .iter()
        .map(|(_, id, k)| {
            let op = operator_media
                .iter()
                .find(|(oid, _)| oid == id)
                .map(|(_, m)| m.client())
                .expect("every call's operator media is kept");
            (k.client(), op)
        })
        .collect();
    let side = figures(&pairs, &joins, held, cpu);
    for (session, call_id, m) in kiosks {
        m.close();
        let _ = session
            .request(&Request::CallCancel(CallRef { call_id }))
            .await;
        session.close().await;
    }
    for (_, m) in operator_media {
        m.close();
    }
    for task in operator_tasks {
        task.abort();
    }
    Ok(side)
}

async fn accept_all(
    mut session: Session,
    media: ClientOptions,
    accepted: mpsc::UnboundedSender<(String, CallMedia)>,
) {
    loop {
        match session.next_event(Duration::from_secs(3600)).await {
            Ok(Event::CallOffered(o)) => {
                let call = CallRef {
                    call_id: o.call_id.clone(),
                };
                if session.request(&Request::CallAccept(call)).await.is_err() {
                    continue;
                }
                match CallMedia::start(&session.requester(), &o.call_id, media.clone()).await {
                    Ok(m) => {
                        let _ = accepted.send((o.call_id, m));
                    }
                    Err(e) => tracing::warn!(call_id = %o.call_id, "operator media: {e}"),
                }
            }
            Ok(_) | Err(ClientError::Timeout) => {}
            Err(_) => return,
        }
    }
}

/// Janus's side: the same clients through its videocall plugin.
async fn janus_side(
    ws: &str,
    media_ip: std::net::IpAddr,
    pid: Option<u32>,
    calls: usize,
    hold: Duration,
    notes: &mut Vec<String>,
) -> Result<Side> {
    let http = reqwest::Client::new();
    let mut held_calls = Vec::new();
    let mut joins = Vec::new();
    for i in 0..calls {
        let call = crate::janus::call(
            ws,
            media_ip,
            &format!("lt{}-{i}", std::process::id()),
            ClientOptions::default(),
            Duration::from_secs(20),
        )
        .await
        .with_context(|| format!("Janus call {i}"))?;
        joins.push(call.join.as_secs_f64() * 1000.0);
        held_calls.push(call);
    }
    if pid.is_none() {
        notes.push("janus: cpu_per_call_pct missing: no --janus-pid".into());
    }
    let (cpu, held) = hold_and_measure(&http, pid, None, hold).await;
    let pairs: Vec<(&MediaClient, &MediaClient)> =
        held_calls.iter().map(|c| (&c.caller, &c.callee)).collect();
    let side = figures(&pairs, &joins, held, cpu);
    for call in held_calls {
        if let Err(e) = call.hangup().await {
            tracing::debug!("janus hangup: {e}");
        }
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_say_met_missed_or_not_measured() {
        let side = |cpu: f64, join: f64| Side {
            cpu_per_call_pct: Some(cpu),
            join_ms_p50: Some(join),
            ..Side::default()
        };
        let b = |cpu: f64, first: f64| browser::BrowserSide {
            cpu_per_call_pct: Some(cpu),
            join_first_frame_ms: Some(first),
            join_10_frames_ms: None,
            kbps: None,
        };
        let g = goals(
            &side(1.0, 40.0),
            &side(5.0, 50.0),
            &b(2.0, 500.0),
            &b(4.0, 400.0),
        );
        assert_eq!(g["headless"]["cpu_janus_over_ours"], json!(5.0));
        assert_eq!(g["headless"]["cpu_5x_cheaper"], json!(true));
        assert_eq!(g["headless"]["join_faster"], json!(true));
        assert_eq!(g["browser"]["cpu_janus_over_ours"], json!(2.0));
        assert_eq!(g["browser"]["cpu_5x_cheaper"], json!(false));
        assert_eq!(g["browser"]["join_first_frame_faster"], json!(false));
        assert_eq!(g["browser"]["join_10_frames_faster"], Value::Null);
        let lines = summary(&json!({"goals": g}));
        assert!(lines[0].contains("goal ≥ 5: met"), "{}", lines[0]);
        assert!(lines[1].contains("goal ≥ 5: MISSED"), "{}", lines[1]);
        assert!(lines[1].contains("not measured"), "{}", lines[1]);
        let r = ratios(&b(2.0, 500.0).fields(), &b(4.0, 0.0).fields());
        assert_eq!(r["cpu_per_call_pct"], json!(0.5));
        assert_eq!(
            r["join_first_frame_ms"],
            Value::Null,
            "Janus's 0 gives no ratio"
        );
    }
}
