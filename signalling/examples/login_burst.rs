//! The login-burst benchmark of issue 15 (rows 1 and 6): the memory of a `sportello` process under
//! a burst of failed logins, and how long a real operator's login takes during it.
//!
//! It starts the release binary (`--bin`, default `target/release/sportello`) on loopback port 0
//! with demo accounts in a fresh data directory, then:
//!
//! 1. times `--alone` real logins of a demo operator from 127.0.0.1, one after the other, with
//!    nothing else going on;
//! 2. reads the process's resident memory at rest (`VmRSS` of `/proc/PID/status`);
//! 3. sends `--junk` failed logins, `--in-flight` at a time, from `--addresses` source addresses
//!    (127.0.0.2, 127.0.0.3, …; one quarter name a real operator with a wrong password, the rest
//!    unknown names), while the operator logs in again and again from 127.0.0.1, and samples the
//!    resident memory every 10 ms;
//! 4. reports the answers to the junk, the peak resident memory above rest, the memory once the
//!    burst is over, and the operator's login times (p50, p99, max) and answers.
//!
//! Build the binary first, then run this example in release too:
//!
//! ```text
//! cargo build --release -p signalling --bin sportello
//! cargo run --release -p signalling --example login_burst -- --addresses 32
//! cargo run --release -p signalling --example login_burst -- --addresses 1
//! ```
//!
//! The server's `[auth]` limits can be changed through the environment, e.g.
//! `SPORTELLO_AUTH__LOGIN_CONCURRENCY=4`. The last line is `RESULT {json}`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// The `sportello` binary.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/sportello"))]
    bin: String,
    /// Failed logins in the burst.
    #[arg(long, default_value_t = 300)]
    junk: usize,
    /// Failed logins in flight at once.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Source addresses of the failed logins (127.0.0.2 onwards), 1 to 250.
    #[arg(long, default_value_t = 32)]
    addresses: u8,
    /// Real logins timed before the burst, alone.
    #[arg(long, default_value_t = 20)]
    alone: usize,
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn client_from(ip: [u8; 4]) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()?)
}

async fn login(client: &reqwest::Client, url: &str, user: &str, password: &str) -> u16 {
    match client
        .post(url)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
    {
        Ok(res) => {
            let status = res.status().as_u16();
            let _ = res.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

fn millis(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=250).contains(&args.addresses),
        "--addresses must be 1 to 250"
    );
    anyhow::ensure!(
        std::path::Path::new(&args.bin).is_file(),
        "{} does not exist: cargo build --release -p signalling --bin sportello",
        args.bin
    );
    let dir = tempfile::tempdir()?;
    let server = testkit::SportelloProcess::start(
        &args.bin,
        &["--data-dir".as_ref(), dir.path().as_os_str()],
        &[],
    );
    let pid = server.child.id();
    let url = format!("{}/api/v1/login", server.base);
    let creds: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("demo-credentials.json")).context("demo credentials")?,
    )?;
    let operators: Vec<(String, String)> = creds["operators"]
        .as_array()
        .context("operators")?
        .iter()
        .map(|o| {
            (
                o["username"].as_str().unwrap_or_default().to_owned(),
                o["password"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let (user, password) = operators.first().context("a demo operator")?.clone();
    let own = client_from([127, 0, 0, 1])?;

    // 1. A real login alone.
    let mut alone = hdrhistogram::Histogram::<u64>::new(3)?;
    for _ in 0..args.alone {
        let started = Instant::now();
        let status = login(&own, &url, &user, &password).await;
        anyhow::ensure!(status == 200, "a real login alone answered {status}");
        alone.record(started.elapsed().as_micros() as u64)?;
    }

    // 2. Memory at rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = rss_kib(pid, "VmRSS:");

    // 3. The burst, the operator's logins and the memory samples.
    let done = Arc::new(AtomicBool::new(false));
    let peak_kib = Arc::new(AtomicU64::new(idle_kib));
    let sampler = tokio::spawn({
        let (done, peak_kib) = (done.clone(), peak_kib.clone());
        async move {
            while !done.load(Ordering::SeqCst) {
                peak_kib.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let operator = tokio::spawn({
        let (done, own, url, user, password) = (
            done.clone(),
            own.clone(),
            url.clone(),
            user.clone(),
            password.clone(),
        );
        async move {
            let mut times = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            let mut answers = BTreeMap::<u16, usize>::new();
            while !done.load(Ordering::SeqCst) {
                let started = Instant::now();
                let status = login(&own, &url, &user, &password).await;
                let _ = times.record(started.elapsed().as_micros() as u64);
                *answers.entry(status).or_default() += 1;
            }
            (times, answers)
        }
    });
    let clients: Vec<reqwest::Client> = (0..args.addresses)
        .map(|n| client_from([127, 0, 0, 2 + n]))
        .collect::<anyhow::Result<_>>()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let burst_started = Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..args.junk {
        let permit = slots.clone().acquire_owned().await?;
        let client = clients[n % clients.len()].clone();
        let url = url.clone();
        let name = if n % 4 == 0 {
            operators[n / 4 % operators.len()].0.clone()
        } else {
            format!("junk-{n}")
        };
        burst.spawn(async move {
            let status = login(&client, &url, &name, "not the password").await;
            drop(permit);
            status
        });
    }
    let mut junk_answers = BTreeMap::<u16, usize>::new();
    while let Some(status) = burst.join_next().await {
        *junk_answers.entry(status?).or_default() += 1;
    }
    let burst_s = burst_started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let (times, answers) = operator.await?;
    sampler.await?;
    let after_kib = rss_kib(pid, "VmRSS:");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled_kib = rss_kib(pid, "VmRSS:");
    let peak_kib = peak_kib.load(Ordering::SeqCst);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "burst: {} failed logins, {} in flight, from {} addresses, in {burst_s:.2} s; answers {junk_answers:?}",
        args.junk, args.in_flight, args.addresses
    );
    println!(
        "memory: {:.1} MiB at rest, peak {:.1} MiB (+{:.1}), {:.1} MiB right after, {:.1} MiB 2 s later",
        mib(idle_kib),
        mib(peak_kib),
        mib(peak_kib.saturating_sub(idle_kib)),
        mib(after_kib),
        mib(settled_kib)
    );
    println!(
        "real login alone: p50 {:.1} ms, max {:.1} ms ({} logins)",
        millis(&alone, 0.5),
        alone.max() as f64 / 1000.0,
        alone.len()
    );
    println!(
        "real login during the burst: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} logins, answers {answers:?})",
        millis(&times, 0.5),
        millis(&times, 0.99),
        times.max() as f64 / 1000.0,
        times.len()
    );
    let result = json!({
        "junk": args.junk,
        "in_flight": args.in_flight,
        "addresses": args.addresses,
        "burst_s": burst_s,
        "junk_answers": junk_answers,
        "rss_idle_mib": mib(idle_kib),
        "rss_peak_mib": mib(peak_kib),
        "rss_peak_above_idle_mib": mib(peak_kib.saturating_sub(idle_kib)),
        "rss_after_mib": mib(after_kib),
        "rss_settled_mib": mib(settled_kib),
        "alone_p50_ms": millis(&alone, 0.5),
        "alone_max_ms": alone.max() as f64 / 1000.0,
        "during_p50_ms": millis(&times, 0.5),
        "during_p99_ms": millis(&times, 0.99),
        "during_max_ms": times.max() as f64 / 1000.0,
        "during_logins": times.len(),
        "during_answers": answers,
    });
    println!("RESULT {result}");
    drop(server);
    Ok(())
}
