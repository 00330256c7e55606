//! The forwarding bench's media clients and the process they run in. The headless
//! [`MediaClient`]s run in a child process (`loadtest forward --child-plan <json>`: this
//! executable re-executed), so every byte and every CPU second the parent measures is the SFU's.
//! Parent and child speak one JSON object per line: the child sends each client's offer
//! ([`Up::Offer`]) and the parent answers with the SFU's answer ([`Down::Answer`]); then the parent
//! opens a measurement window ([`Down::Mark`]) and asks for the clients' view of it
//! ([`Down::Report`]). [`Clients`] is the parent's side.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sfu::client::{ClientOptions, MediaClient};
use sfu::{Candidate, MediaRole, Participant, Sfu};

use super::tap::Tap;
use super::{sys, Summary, PKT};

/// Video and audio of one client, as the child builds its [`ClientOptions`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Opts {
    pub ppf: usize,
    pub size: usize,
    pub fps: u32,
    pub audio: bool,
}

impl Opts {
    pub fn kiosk_default() -> Opts {
        let d = ClientOptions::default();
        Opts {
            ppf: d.video_packets_per_frame,
            size: d.video_packet_size,
            fps: d.fps,
            audio: d.audio,
        }
    }

    /// Sends nothing, receives everything.
    pub fn silent() -> Opts {
        Opts {
            ppf: 1,
            size: PKT,
            fps: 0,
            audio: false,
        }
    }

    fn options(self) -> ClientOptions {
        ClientOptions {
            video_packets_per_frame: self.ppf,
            video_packet_size: self.size,
            fps: self.fps,
            audio: self.audio,
            ..ClientOptions::default()
        }
    }
}

/// What the child runs: `calls` kiosk–operator pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub calls: usize,
    pub kiosk: Opts,
    pub operator: Opts,
}

/// Child → parent, one JSON object per line on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Up {
    Offer {
        call: usize,
        role: MediaRole,
        sdp: String,
        candidates: Vec<Candidate>,
    },
    /// Every receiver has video (`missing` did not within the timeout).
    Ready {
        missing: usize,
    },
    Marked,
    Report(ClientReport),
}

/// Parent → child, one JSON object per line on stdin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Down {
    Answer {
        sdp: String,
    },
    /// Start the measurement window.
    Mark,
    /// End it and report.
    Report,
}

/// The clients' view of the window since [`Down::Mark`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientReport {
    pub sent: u64,
    pub received: u64,
    pub cpu_s: f64,
    pub wall_s: f64,
    /// One-way send → receive latency of synthetic video packets, µs.
    pub latency_us: Summary,
}

fn say(up: &Up) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(up).expect("json"));
    let _ = out.flush();
}

fn hear(lines: &mut impl Iterator<Item = io::Result<String>>) -> Option<Down> {
    let line = lines.next()?.ok()?;
    serde_json::from_str(&line).ok()
}

/// The client process: start the clients, negotiate through the parent, then answer marks and
/// reports until stdin closes.
pub fn run_child(plan: &str) {
    let plan: Plan = serde_json::from_str(plan).expect("plan");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(serve(plan));
}

struct Pair {
    kiosk: MediaClient,
    operator: MediaClient,
}

async fn serve(plan: Plan) {
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut pairs = Vec::new();
    for call in 0..plan.calls {
        let mut clients = Vec::new();
        for (role, opts) in [
            (MediaRole::Kiosk, plan.kiosk),
            (MediaRole::Operator, plan.operator),
        ] {
            let c = MediaClient::start(opts.options()).await.expect("client");
            say(&Up::Offer {
                call,
                role,
                sdp: c.offer().to_owned(),
                candidates: c.candidates().to_vec(),
            });
            let Some(Down::Answer { sdp }) = hear(&mut lines) else {
                panic!("expected an answer");
            };
            c.set_answer(sdp).await.expect("answer applies");
            clients.push(c);
        }
        let operator = clients.pop().expect("operator");
        let kiosk = clients.pop().expect("kiosk");
        pairs.push(Pair { kiosk, operator });
    }
    sys::raise_udp_rcvbufs(|a| a.ip().is_loopback());

    // Ready once each receiver whose peer sends video has some.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing = pairs
            .iter()
            .map(|p| {
                usize::from(plan.kiosk.fps > 0 && p.operator.stats().packets("video") == 0)
                    + usize::from(plan.operator.fps > 0 && p.kiosk.stats().packets("video") == 0)
            })
            .sum::<usize>();
        if missing == 0 || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    say(&Up::Ready { missing });

    let clients = || pairs.iter().flat_map(|p| [&p.kiosk, &p.operator]);
    // Per client: sent, received, latency samples already taken per track.
    let mut mark: Vec<(u64, u64, HashMap<String, usize>)> = Vec::new();
    let mut mark_at = (Instant::now(), sys::process_cpu_s());
    while let Some(cmd) = hear(&mut lines) {
        match cmd {
            Down::Mark => {
                mark = clients()
                    .map(|c| {
                        let s = c.stats();
                        let lat = s
                            .tracks
                            .iter()
                            .map(|(k, t)| (k.clone(), t.latencies_us.len()))
                            .collect();
                        (
                            s.sent_packets,
                            s.tracks.values().map(|t| t.packets).sum(),
                            lat,
                        )
                    })
                    .collect();
                mark_at = (Instant::now(), sys::process_cpu_s());
                say(&Up::Marked);
            }
            Down::Report => {
                let mut r = ClientReport {
                    cpu_s: sys::process_cpu_s() - mark_at.1,
                    wall_s: mark_at.0.elapsed().as_secs_f64(),
                    ..Default::default()
                };
                let mut lat = Vec::new();
                for (c, (sent0, recv0, lat0)) in clients().zip(&mark) {
                    let s = c.stats();
                    r.sent += s.sent_packets - sent0;
                    r.received += s.tracks.values().map(|t| t.packets).sum::<u64>() - recv0;
                    for (k, t) in &s.tracks {
                        let from = lat0.get(k).copied().unwrap_or(0);
                        lat.extend(
                            t.latencies_us[from.min(t.latencies_us.len())..]
                                .iter()
                                .map(|&v| v as f64),
                        );
                    }
                }
                r.latency_us = Summary::of(lat);
                say(&Up::Report(r));
            }
            Down::Answer { .. } => panic!("unexpected answer"),
        }
    }
    for c in clients() {
        c.close();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The running client process, from the parent's side.
pub struct Clients {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
}

impl Clients {
    /// Re-executes this program as `loadtest forward --child-plan <plan>`.
    pub fn spawn(plan: &Plan) -> Clients {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("forward")
            .arg("--child-plan")
            .arg(serde_json::to_string(plan).expect("json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("client process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Clients {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, d: &Down) {
        let w = self.stdin.as_mut().expect("stdin open");
        writeln!(w, "{}", serde_json::to_string(d).expect("json")).expect("write to clients");
        w.flush().expect("flush");
    }

    fn recv(&mut self) -> Up {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from clients");
        assert!(!line.is_empty(), "the client process exited");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad line from clients ({e}): {line}"))
    }

    /// Negotiates every client through `sfu` (the tap, if any, takes call 0) until all are up.
    /// Returns the number of receivers that got no video.
    pub fn negotiate(
        &mut self,
        rt: &tokio::runtime::Runtime,
        sfu: &Sfu,
        tap: Option<&Tap>,
    ) -> usize {
        loop {
            match self.recv() {
                Up::Offer {
                    call,
                    role,
                    sdp,
                    candidates,
                } => {
                    let call_id = format!("bench-{call}");
                    let who = Participant {
                        principal: format!("{}:{call}", role.as_str()),
                        role,
                    };
                    let answer = rt
                        .block_on(sfu.offer(&call_id, who.clone(), sdp, false))
                        .expect("the SFU answers");
                    for c in candidates {
                        rt.block_on(sfu.candidate(&call_id, who.clone(), c))
                            .expect("candidate");
                    }
                    let sdp = match tap {
                        Some(tap) if call == 0 => tap.redirect(&answer.sdp, role),
                        _ => answer.sdp,
                    };
                    self.send(&Down::Answer { sdp });
                }
                Up::Ready { missing } => return missing,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    pub fn mark(&mut self) {
        self.send(&Down::Mark);
        assert!(matches!(self.recv(), Up::Marked));
    }

    pub fn report(&mut self) -> ClientReport {
        self.send(&Down::Report);
        match self.recv() {
            Up::Report(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stdin = None; // EOF: the child closes its clients and exits
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
