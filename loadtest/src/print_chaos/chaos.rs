//! The print chaos run's chaos: the task that SIGKILLs the kiosk agent after a random uptime and
//! restarts it after a random pause (some restarts with the `exit_after_print` fault hook), and
//! what it records at each kill: the crash window (`docs/kiosk-agent.md`) of every job not yet
//! reported printed, read from the agent's journal and CUPS.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiosk_client::agent::journal::{JobRecord, Phase};
use protocol::incall::PrintState;
use rand::rngs::StdRng;
use rand::Rng as _;
use testkit::agent::{AgentProcess, FAULT_ENV};
use testkit::cups::PdfPrinter;
use tokio::sync::watch;

use super::{say, Millis};

/// The fault hook some restarts set: the agent exits (status 3) right after CUPS completed a job,
/// before it journaled or reported it.
const FAULT: &str = "exit_after_print";

/// Marks the agent's log and starts it, with the fault hook when `fault`.
pub fn start_agent(agent: &mut AgentProcess, fault: bool, note: &str) -> anyhow::Result<()> {
    agent.mark(&format!(
        "print-chaos: start{} ({note})",
        if fault {
            " with SPORTELLO_AGENT_FAULT=exit_after_print"
        } else {
            ""
        }
    ));
    let env: &[(&str, &str)] = if fault { &[(FAULT_ENV, FAULT)] } else { &[] };
    agent.start(env)
}

/// What the operator saw of each job, shared by the collector and the rest.
#[derive(Default)]
pub struct Seen {
    /// Job id → index of the request (0-based), for the jobs this program requested.
    pub sent: HashMap<String, usize>,
    /// Job id → the states reported to the operator, in order, with their detail.
    pub updates: HashMap<String, Vec<(PrintState, Option<String>)>>,
    /// Job id → when it was reported printed.
    pub printed_at: HashMap<String, Instant>,
}

impl Seen {
    /// Jobs requested and not yet reported printed.
    pub fn outstanding(&self) -> usize {
        self.sent
            .keys()
            .filter(|id| !self.printed_at.contains_key(*id))
            .count()
    }
}

/// Chaos figures.
#[derive(Debug, Default, Clone)]
pub struct ChaosStats {
    pub starts: usize,
    pub fault_starts: usize,
    pub kills: usize,
    pub kills_of_fault_agents: usize,
    pub fault_exits: usize,
    pub other_exits: Vec<String>,
    /// At each kill or exit: the journal phase of every job not yet reported printed.
    pub windows: BTreeMap<String, usize>,
    pub uptimes_ms: Vec<u64>,
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

/// The chaos task's state.
pub struct Chaos {
    pub agent: Arc<Mutex<AgentProcess>>,
    pub seen: Arc<Mutex<Seen>>,
    pub journal: PathBuf,
    pub printer: Arc<PdfPrinter>,
    pub kill_every: Millis,
    pub pause: Millis,
    pub fault_share: f64,
    pub rng: StdRng,
    pub start: Instant,
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
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> ChaosStats {
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
                    let up = agent.uptime().as_millis() as u64;
                    stats.uptimes_ms.push(up);
                    if status.code() == Some(3) && fault_now {
                        stats.fault_exits += 1;
                        agent.mark(&format!(
                            "print-chaos: the fault hook exited (status 3) after {up} ms"
                        ));
                    } else {
                        stats.other_exits.push(format!("{status}"));
                        agent.mark(&format!(
                            "print-chaos: UNEXPECTED EXIT {status} after {up} ms"
                        ));
                        say(self.start, format!("agent exited by itself: {status}"));
                    }
                    drop(agent);
                    self.tally_windows(&mut stats);
                    break;
                }
                if Instant::now() >= deadline {
                    let mut agent = self.agent.lock().unwrap();
                    let pid = agent.pid();
                    let up = agent.uptime().as_millis() as u64;
                    agent.kill();
                    stats.kills += 1;
                    if fault_now {
                        stats.kills_of_fault_agents += 1;
                    }
                    stats.uptimes_ms.push(up);
                    agent.mark(&format!(
                        "print-chaos: SIGKILL #{} pid {pid:?} after {up} ms (+{:.3}s)",
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
            let started = start_agent(
                &mut self.agent.lock().unwrap(),
                fault_now,
                &format!("restart #{}", stats.starts),
            );
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
