//! `loadtest compare-janus`: the same headless media clients through our server and through
//! Janus's `videocall` plugin, in one run, measured the same way.
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
//! `DIR/compare.json` has `ours`, `janus`, `ratios` (ours ÷ janus) and `notes` saying which figure
//! could not be taken and why; the last stdout line is the same object.

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

    let target = Target::open(&args.server, args.calls, args.calls)?;
    eprintln!(
        "loadtest compare-janus: {} calls through our server",
        args.calls
    );
    let ours = ours(&target, args.calls, hold, &mut notes).await?;
    drop(target);

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
    let janus = match janus_ws.zip(media_ip) {
        Some((ws, media_ip)) => {
            eprintln!("loadtest compare-janus: {} calls through Janus", args.calls);
            match janus_side(&ws, media_ip, janus_pid, args.calls, hold, &mut notes).await {
                Ok(side) => side,
                Err(e) => {
                    notes.push(format!("janus: every figure missing: {e:#}"));
                    Side::default()
                }
            }
        }
        None => Side::default(),
    };
    drop(janus_process);

    let mut ratios = serde_json::Map::new();
    for ((name, a), (_, b)) in ours.fields().into_iter().zip(janus.fields()) {
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        };
        ratios.insert(name.into(), json!(ratio));
    }
    let result = json!({
        "calls": args.calls,
        "duration_s": args.duration,
        "ours": ours,
        "janus": janus,
        "ratios": Value::Object(ratios),
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
    Ok(result.to_string())
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
