//! Server figures for `BENCHMARKS.md`, measured against the real `sportello` binary on loopback:
//!
//! 1. start-up to ready (in-memory default): spawn → first `200` from `/readyz`, median of runs;
//! 2. memory per idle WebSocket session: RSS of the server before and after opening N authenticated
//!    kiosk sessions (default 10,000);
//! 3. request → reply latency (`ping` → `ok`) with 1,000 sessions active, p50/p99.
//!
//! The last line on stdout is one JSON object: `startup_fresh_ms`, `startup_existing_ms`,
//! `idle_session_kib`, `request_reply_p50_ms`, `request_reply_p99_ms` and `request_reply_max_ms`.
//!
//! Run: `cargo bench -p signalling --bench sessions` (env `SESSIONS`, `ACTIVE`, `RUNS` override the
//! sizes). Run it on a quiet machine; the figures are medians, not assertions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn raise_fd_limit() {
    // SAFETY: plain libc calls on a stack struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Server {
    child: Child,
    base: String,
    data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data: tempfile::TempDir, extra: &[&str]) -> (Server, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .args(extra)
        .env("RUST_LOG", "warn")
        // Ten thousand sessions of one kiosk token from one address: a load test, not a client.
        .env("SPORTELLO_LIMITS__CONNECTIONS_PER_ADDRESS", "0")
        .env("SPORTELLO_LIMITS__WS_PER_ADDRESS", "0")
        .env("SPORTELLO_LIMITS__SESSIONS_PER_PRINCIPAL", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sportello");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("banner").unwrap();
        if let Some(rest) = line.trim_start().strip_prefix("listening on") {
            break rest.trim().trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let addr = base.trim_start_matches("http://").to_owned();
    loop {
        if readyz(&addr) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    (Server { child, base, data }, elapsed)
}

fn readyz(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful. Ignore args.
    raise_fd_limit();
    let runs = env_usize("RUNS", 7);
    let sessions = env_usize("SESSIONS", 10_000);
    let active = env_usize("ACTIVE", 1_000);

    // 1. Start-up to ready. The first run creates the data directory (hashing demo passwords).
    let mut fresh = Vec::new();
    let mut warm = Vec::new();
    let mut json = serde_json::Map::new();
    for _ in 0..runs {
        let (server, t) = spawn(tempfile::tempdir().unwrap(), &[]);
        fresh.push(t.as_secs_f64() * 1000.0);
        let data = std::mem::replace(&mut { server }.data, tempfile::tempdir().unwrap());
        let (_server, t) = spawn(data, &[]);
        warm.push(t.as_secs_f64() * 1000.0);
    }
    let (fresh, warm) = (median(fresh), median(warm));
    println!(
        "startup_to_ready_ms: fresh data dir median {fresh:.1} (n={runs}); existing data dir median {warm:.1}"
    );
    json.insert("startup_fresh_ms".into(), fresh.into());
    json.insert("startup_existing_ms".into(), warm.into());

    // 2 and 3 share one server.
    let (server, _) = spawn(tempfile::tempdir().unwrap(), &[]);
    let creds: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.data.path().join("demo-credentials.json")).unwrap(),
    )
    .unwrap();
    let token = creds["kiosks"][0]["token"].as_str().unwrap().to_owned();
    let ws_url = format!("{}/api/v1/ws", server.base.replacen("http", "ws", 1));
    let pid = server.child.id();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_kib(pid);
        let mut sockets = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
            ws.send(Message::Text(
                format!(r#"{{"type":"auth","id":"1","token":"{token}"}}"#).into(),
            ))
            .await
            .unwrap();
            let reply = ws.next().await.unwrap().unwrap();
            assert!(reply.to_text().unwrap().contains("\"ok\""));
            sockets.push(ws);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        let per_session = (after.saturating_sub(before)) as f64 / sessions as f64;
        println!(
            "idle_ws_sessions: {sessions} sessions, server RSS {before} KiB -> {after} KiB, {per_session:.1} KiB per session"
        );
        json.insert("idle_session_kib".into(), per_session.into());

        // 3. Request → reply with `active` sessions each sending one ping every 100 ms.
        let mut tasks = Vec::new();
        for (n, ws) in sockets.drain(..active.min(sessions)).enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut ws = ws;
                // Spread the sessions over the 100 ms period so the load is steady, not a burst.
                tokio::time::sleep(Duration::from_micros((n as u64 * 100_000) / active as u64)).await;
                let mut samples = Vec::new();
                for i in 0..50u32 {
                    let sent = Instant::now();
                    ws.send(Message::Text(format!(r#"{{"type":"ping","id":"{i}"}}"#).into()))
                        .await
                        .unwrap();
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(_))) => break,
                            Some(Ok(_)) => continue,
                            _ => return samples,
                        }
                    }
                    samples.push(sent.elapsed().as_micros() as u64);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                samples
            }));
        }
        let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for task in tasks {
            for s in task.await.unwrap() {
                hist.record(s).unwrap();
            }
        }
        println!(
            "request_reply_us: {active} active sessions, {} samples, p50 {} p99 {} max {}",
            hist.len(),
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.max()
        );
        let ms = |us: u64| us as f64 / 1000.0;
        json.insert("request_reply_p50_ms".into(), ms(hist.value_at_quantile(0.5)).into());
        json.insert("request_reply_p99_ms".into(), ms(hist.value_at_quantile(0.99)).into());
        json.insert("request_reply_max_ms".into(), ms(hist.max()).into());
    });
    println!("{}", serde_json::Value::Object(json));
}
