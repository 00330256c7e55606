//! A bot kiosk: its screen session places the calls the dispatcher hands it, follows them, gives
//! up when the caller's patience runs out, and exchanges real media with the operator; its agent
//! session (capabilities `printer` and `scanner`) uploads a document scan when asked and
//! acknowledges print jobs as the kiosk agent would (`received`, `printing`, `printed`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiosk_client::media::{CallMedia, ClientOptions};
use kiosk_client::{ClientError, Requester, Session};
use protocol::incall::{IdentityMethod, IdentityScan, PrintState, PrintStatus};
use protocol::{Auth, CallRef, CallRequest, Capability, Event, Request};
use tokio::sync::mpsc;

use super::ledger::{CallRecord, Direction, Ledger};
use crate::scenario::PlannedCall;

/// How often a side looks for its first video packet.
const JOIN_POLL: Duration = Duration::from_millis(5);
/// How long a side waits for its first video packet.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What a kiosk needs to know.
#[derive(Clone)]
pub struct KioskConfig {
    /// HTTP base URL.
    pub base: String,
    /// The service asked for.
    pub service: String,
    /// The citizen's language.
    pub language: String,
    /// Media options.
    pub media: ClientOptions,
    /// A PNG for the document identification.
    pub scan: Arc<Vec<u8>>,
}

/// Connects a kiosk's two sessions.
pub async fn connect(ws: &str, token: &str) -> Result<(Session, Session), ClientError> {
    let auth = |capabilities: Vec<Capability>| Auth {
        token: token.to_owned(),
        resume: None,
        capabilities,
    };
    let (screen, _) = Session::connect(ws, auth(Vec::new())).await?;
    let (agent, _) =
        Session::connect(ws, auth(vec![Capability::Printer, Capability::Scanner])).await?;
    Ok((screen, agent))
}

/// The screen's loop: one planned call at a time from `calls`, until the channel closes. Each
/// finished call is reported on `done` (the kiosk's index) so the dispatcher can use it again.
pub async fn screen(
    index: usize,
    kiosk_id: String,
    mut session: Session,
    config: KioskConfig,
    ledger: Arc<Ledger>,
    mut calls: mpsc::Receiver<PlannedCall>,
    done: mpsc::UnboundedSender<usize>,
) {
    while let Some(plan) = calls.recv().await {
        if let Err(e) = place(&kiosk_id, &mut session, &config, &ledger, plan).await {
            ledger.error(format!("kiosk {kiosk_id}: {e}"));
            if session.is_closed() {
                return;
            }
        }
        let _ = done.send(index);
    }
    session.close().await;
}

/// One call, from `call.request` to `call.ended`.
async fn place(
    kiosk_id: &str,
    session: &mut Session,
    config: &KioskConfig,
    ledger: &Ledger,
    plan: PlannedCall,
) -> anyhow::Result<()> {
    // Events of an earlier call are stale now.
    session.drain_events();
    let requested = Instant::now();
    let reply = session
        .request(&Request::CallRequest(CallRequest {
            service: config.service.clone(),
            language: config.language.clone(),
            priority: None,
        }))
        .await?;
    let call_id = reply["call_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("call.request answered without call_id: {reply}"))?
        .to_owned();
    ledger.count(|c| c.offered += 1);
    let patience = plan.patience;
    ledger.open(
        &call_id,
        CallRecord {
            plan,
            kiosk: kiosk_id.to_owned(),
            requested,
            first_estimate_s: None,
            answered: None,
            accepted: None,
            kiosk_video: None,
            operator_video: None,
            ended: None,
            abandoned: false,
            held: false,
            transferred: false,
            certificate: false,
            printed: false,
            print_ms: None,
        },
    );
    let mut media: Option<(CallMedia, Instant)> = None;
    let mut waiting_video = false;
    let mut answered = false;
    let mut cancelled = false;
    let mut estimate_seen = false;
    // A call never outlives this: the operator's plan ends it well before.
    let give_up = requested + Duration::from_secs(3600);
    loop {
        let now = Instant::now();
        if !answered && !cancelled {
            if let Some(p) = patience {
                if now >= requested + p {
                    cancelled = true;
                    match session
                        .request(&Request::CallCancel(CallRef {
                            call_id: call_id.clone(),
                        }))
                        .await
                    {
                        // Counted by how it ends: `abandoned`, or `completed` when an operator
                        // had answered in the meantime (the kiosk then hung up).
                        Ok(_) => {}
                        // Answered in the meantime: the call goes on.
                        Err(ClientError::Refused { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    continue;
                }
            }
        }
        if now >= give_up {
            anyhow::bail!("call {call_id} never ended");
        }
        let timeout = if waiting_video {
            JOIN_POLL
        } else {
            match patience {
                Some(p) if !answered && !cancelled => (requested + p)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
                _ => Duration::from_millis(500),
            }
        };
        if waiting_video {
            if let Some((m, since)) = &media {
                if m.client().stats().packets("video") > 0 {
                    waiting_video = false;
                    let at = Instant::now();
                    ledger.update(&call_id, |r| {
                        r.kiosk_video.get_or_insert(at);
                    });
                } else if since.elapsed() > JOIN_TIMEOUT {
                    waiting_video = false;
                    ledger.error(format!(
                        "call {call_id}: the kiosk got no video within {JOIN_TIMEOUT:?} of its offer"
                    ));
                }
            }
        }
        let event = match session.next_event(timeout).await {
            Ok(event) => event,
            Err(ClientError::Timeout) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some((m, _)) = media.as_mut() {
            if m.wants(&event) {
                m.handle(&event).await?;
                waiting_video = true;
                continue;
            }
        }
        match event {
            Event::QueueUpdate(u) if u.call_id == call_id && !estimate_seen => {
                estimate_seen = true;
                ledger.update(&call_id, |r| r.first_estimate_s = u.estimated_wait_s);
            }
            Event::CallAssigned(a) if a.call_id == call_id => {
                let at = Instant::now();
                answered = true;
                ledger.update(&call_id, |r| {
                    r.answered.get_or_insert(at);
                });
                if cancelled || media.is_some() {
                    // Answered just as the caller gave up (the call ends at once), or answered
                    // again after a transfer: the kiosk's connection stays for the next operator.
                    continue;
                }
                let started = Instant::now();
                let m =
                    CallMedia::start(&session.requester(), &call_id, config.media.clone()).await?;
                media = Some((m, started));
                waiting_video = true;
            }
            Event::CallEnded(e) if e.call_id == call_id => {
                let at = Instant::now();
                if let Some((m, since)) = media.take() {
                    ledger.media(Direction::OperatorToKiosk, m.client(), since);
                    m.close();
                }
                match e.reason.as_str() {
                    "abandoned" => {
                        ledger.count(|c| c.abandoned += 1);
                        ledger.update(&call_id, |r| r.abandoned = true);
                    }
                    "completed" => ledger.count(|c| c.completed += 1),
                    _ => {}
                }
                ledger.update(&call_id, |r| r.ended = Some((at, e.reason.clone())));
                return Ok(());
            }
            _ => {}
        }
    }
}

/// The agent's loop: answers document identifications with a scan and print jobs with their
/// states, until the session closes.
pub async fn agent(mut session: Session, config: KioskConfig, token: String, ledger: Arc<Ledger>) {
    let http = reqwest::Client::new();
    loop {
        let event = match session.next_event(Duration::from_secs(3600)).await {
            Ok(event) => event,
            Err(ClientError::Timeout) => continue,
            Err(_) => return,
        };
        let result = match event {
            Event::IdentityRequested(r) if r.method == IdentityMethod::Document => {
                scan(&http, &session.requester(), &config, &token, &r.call_id).await
            }
            Event::PrintJob(job) => print(&session.requester(), &job.job_id).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            ledger.error(format!("kiosk agent: {e}"));
        }
    }
}

async fn scan(
    http: &reqwest::Client,
    requester: &Requester,
    config: &KioskConfig,
    token: &str,
    call_id: &str,
) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/calls/{call_id}/scans", config.base);
    let response = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(config.scan.as_ref().clone())
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let scan_id = match (status.as_u16(), body["scan_id"].as_str()) {
        (201, Some(id)) => id.to_owned(),
        _ => anyhow::bail!("scan upload answered {status}: {body}"),
    };
    requester
        .request(&Request::IdentityScan(IdentityScan {
            call_id: call_id.to_owned(),
            scan_id,
        }))
        .await?;
    Ok(())
}

async fn print(requester: &Requester, job_id: &str) -> anyhow::Result<()> {
    // A job re-sent before our `received` arrived is acknowledged again: harmless.
    for state in [
        PrintState::Received,
        PrintState::Printing,
        PrintState::Printed,
    ] {
        requester
            .request(&Request::PrintStatus(PrintStatus {
                job_id: job_id.to_owned(),
                state,
                detail: None,
            }))
            .await?;
    }
    Ok(())
}
