//! A bot operator: goes available, accepts each offer after a short delay, exchanges real media
//! with the kiosk, and carries out what the scenario drew for the call: a hold, a transfer back
//! to the queue halfway through, or a document identification followed by a certificate printed
//! on the kiosk's printer. Then it ends the call and wraps up. Each call runs in its own task;
//! the session's reader hands each task the events about its call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiosk_client::media::{CallMedia, ClientOptions};
use kiosk_client::{ClientError, Requester, Session};
use protocol::incall::{
    IdentityConfirm, IdentityMethod, IdentityRequest, PrintRequest, PrintState,
};
use protocol::{CallRef, CallTransfer, Event, PresenceSet, PresenceState, Request};
use tokio::sync::{mpsc, watch};

use super::ledger::{Direction, Ledger};
use crate::scenario::PlannedCall;

/// How often a side looks for its first video packet.
const JOIN_POLL: Duration = Duration::from_millis(5);
/// How long a side waits for its first video packet.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one in-call step (scan, identification, printing) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What an operator needs to know.
#[derive(Clone)]
pub struct OperatorConfig {
    /// Delay between `call.offered` and `call.accept`.
    pub accept_delay: Duration,
    /// Wrap-up length before `wrapup.done`.
    pub wrapup: Duration,
    /// How long a held call stays on hold.
    pub hold: Duration,
    /// The service a transfer goes back to.
    pub service: String,
    /// A resident of the registry, identified in certificate calls.
    pub fiscal_code: String,
    /// Media options.
    pub media: ClientOptions,
}

fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ClientError>(),
        Some(ClientError::Refused {
            code: protocol::ErrorCode::Conflict,
            ..
        })
    )
}

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>;

fn call_of(event: &Event) -> Option<&str> {
    Some(match event {
        Event::CallEnded(e) => &e.call_id,
        Event::CallOfferRevoked(e) => &e.call_id,
        Event::MediaReconnect(e) => &e.call_id,
        Event::IdentityProgress(e) => &e.call_id,
        Event::IdentityVerified(e) => &e.call_id,
        Event::IdentityFailed(e) => &e.call_id,
        Event::PrintUpdate(e) => &e.call_id,
        _ => return None,
    })
}

/// Logs in, connects and goes available.
pub async fn connect(
    base: &str,
    ws: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Session> {
    let token = kiosk_client::OperatorBot::login(base, username, password).await?;
    let (session, _) = Session::connect(
        ws,
        protocol::Auth {
            token,
            resume: None,
            capabilities: Vec::new(),
        },
    )
    .await?;
    session
        .request(&Request::PresenceSet(PresenceSet {
            state: PresenceState::Available,
            reason: None,
        }))
        .await?;
    Ok(session)
}

/// The operator's loop, until `stop` turns true and its calls are over.
pub async fn run(
    name: String,
    mut session: Session,
    config: OperatorConfig,
    ledger: Arc<Ledger>,
    mut stop: watch::Receiver<bool>,
) {
    let routes: Routes = Arc::default();
    loop {
        let stopping = *stop.borrow();
        if stopping && routes.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            break;
        }
        let event = tokio::select! {
            event = session.next_event(Duration::from_millis(500)) => event,
            _ = stop.changed(), if !stopping => continue,
        };
        let event = match event {
            Ok(event) => event,
            Err(ClientError::Timeout) => continue,
            Err(e) => {
                ledger.error(format!("operator {name}: {e}"));
                return;
            }
        };
        match event {
            Event::CallOffered(offer) => {
                let (tx, rx) = mpsc::unbounded_channel();
                // A call transferred back to this operator has a second task; the first one's
                // clean-up must not remove the second one's route.
                let mine = tx.clone();
                routes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(offer.call_id.clone(), tx);
                let task = CallTask {
                    call_id: offer.call_id,
                    requester: session.requester(),
                    config: config.clone(),
                    ledger: ledger.clone(),
                    events: rx,
                    media: None,
                    waiting_video: false,
                };
                let routes = routes.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let call_id = task.call_id.clone();
                    let ledger = task.ledger.clone();
                    if let Err(e) = task.run().await {
                        ledger.error(format!("operator {name}, call {call_id}: {e}"));
                    }
                    let mut routes = routes.lock().unwrap_or_else(|e| e.into_inner());
                    if routes
                        .get(&call_id)
                        .is_some_and(|tx| tx.same_channel(&mine))
                    {
                        routes.remove(&call_id);
                    }
                });
            }
            Event::StateSync(_) => {
                let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
                for tx in routes.values() {
                    let _ = tx.send(event.clone());
                }
            }
            event => {
                if let Some(call_id) = call_of(&event) {
                    if let Some(tx) = routes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(call_id)
                    {
                        let _ = tx.send(event);
                    }
                }
            }
        }
    }
    session.close().await;
}

/// Why a call task stopped early.
enum Stop {
    /// The call ended by someone else's doing (or the operator's session is gone).
    Ended,
    /// The kiosk hung up: the call is in wrap-up.
    HungUp,
    /// Something failed.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Self {
        Stop::Failed(e.into())
    }
}

struct CallTask {
    call_id: String,
    requester: Requester,
    config: OperatorConfig,
    ledger: Arc<Ledger>,
    events: mpsc::UnboundedReceiver<Event>,
    media: Option<(CallMedia, Instant)>,
    waiting_video: bool,
}

impl CallTask {
    async fn run(mut self) -> anyhow::Result<()> {
        let result = self.converse().await;
        if let Some((m, since)) = self.media.take() {
            self.ledger
                .media(Direction::KioskToOperator, m.client(), since);
            m.close();
        }
        let result = match result {
            // A request refused because the kiosk hung up meanwhile (`conflict`): the call's end
            // is on its way.
            Err(Stop::Failed(e)) if is_conflict(&e) => {
                Err(self.ended_meanwhile().await.unwrap_or(Stop::Failed(e)))
            }
            other => other,
        };
        match result {
            Ok(()) | Err(Stop::Ended) => Ok(()),
            Err(Stop::HungUp) => self.wrap_up().await,
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// How the call ended, if its `call.ended` arrives within a second.
    async fn ended_meanwhile(&mut self) -> Option<Stop> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let wait = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(wait, self.events.recv()).await {
                Ok(Some(Event::CallEnded(e))) => {
                    return Some(if e.reason == "completed" {
                        Stop::HungUp
                    } else {
                        Stop::Ended
                    })
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn call(&self) -> CallRef {
        CallRef {
            call_id: self.call_id.clone(),
        }
    }

    async fn converse(&mut self) -> Result<(), Stop> {
        tokio::time::sleep(self.config.accept_delay).await;
        match self
            .requester
            .request(&Request::CallAccept(self.call()))
            .await
        {
            Ok(_) => {}
            // The caller gave up, or the offer went elsewhere: nothing to do.
            Err(ClientError::Refused { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let accepted = Instant::now();
        tracing::debug!(call_id = %self.call_id, "accepted");
        self.ledger.count(|c| c.answered += 1);
        // The kiosk records its plan right after its request's reply; wait for it briefly.
        let plan = self.plan().await;
        let second_leg = {
            let mut transferred_before = false;
            self.ledger.update(&self.call_id, |r| {
                transferred_before = r.transferred;
                r.accepted.get_or_insert(accepted);
            });
            transferred_before
        };
        let started = Instant::now();
        let media =
            CallMedia::start(&self.requester, &self.call_id, self.config.media.clone()).await?;
        self.media = Some((media, started));
        self.waiting_video = true;

        let talk = if second_leg {
            plan.handle / 2
        } else {
            plan.handle
        };
        let deadline = accepted + talk;
        if plan.certificate && !second_leg {
            self.certificate().await?;
        }
        if plan.hold {
            self.pause_until(accepted + talk / 3).await?;
            self.requester
                .request(&Request::CallHold(self.call()))
                .await?;
            self.ledger.count(|c| c.held += 1);
            self.ledger.update(&self.call_id, |r| r.held = true);
            self.pause_until(Instant::now() + self.config.hold).await?;
            self.requester
                .request(&Request::CallResume(self.call()))
                .await?;
        }
        if plan.transfer && !second_leg {
            self.pause_until(accepted + talk / 2).await?;
            // Marked first, so the operator who takes it next knows it is the second leg.
            self.ledger.update(&self.call_id, |r| r.transferred = true);
            self.requester
                .request(&Request::CallTransfer(CallTransfer {
                    call_id: self.call_id.clone(),
                    service: Some(self.config.service.clone()),
                    operator_id: None,
                }))
                .await?;
            self.ledger.count(|c| {
                c.transferred += 1;
                c.offered += 1;
            });
            return Ok(());
        }
        self.pause_until(deadline).await?;
        match self.requester.request(&Request::CallEnd(self.call())).await {
            Ok(_) => {}
            // The kiosk hung up first.
            Err(ClientError::Refused { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some((m, since)) = self.media.take() {
            self.ledger
                .media(Direction::KioskToOperator, m.client(), since);
            m.close();
        }
        self.wrap_up().await.map_err(Stop::Failed)
    }

    /// Wraps up after `wrapup`.
    async fn wrap_up(&self) -> anyhow::Result<()> {
        tokio::time::sleep(self.config.wrapup).await;
        match self
            .requester
            .request(&Request::WrapupDone(protocol::outcome::WrapupDone::with(
                self.call_id.clone(),
                kiosk_client::BOT_DISPOSITION,
            )))
            .await
        {
            // The wrap-up may have ended by itself.
            Ok(_) | Err(ClientError::Refused { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn plan(&self) -> PlannedCall {
        for _ in 0..200 {
            if let Some(plan) = self.ledger.plan(&self.call_id) {
                return plan;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.ledger.error(format!(
            "call {}: no plan recorded by its kiosk",
            self.call_id
        ));
        PlannedCall {
            index: usize::MAX,
            at: Duration::ZERO,
            handle: Duration::from_secs(5),
            patience: None,
            hold: false,
            transfer: false,
            certificate: false,
        }
    }

    /// Identification by document, a `residenza` certificate, and its print job reported printed.
    async fn certificate(&mut self) -> Result<(), Stop> {
        let call_id = self.call_id.clone();
        self.requester
            .request(&Request::IdentityRequest(IdentityRequest {
                call_id: call_id.clone(),
                method: IdentityMethod::Document,
            }))
            .await?;
        self.wait_event(
            "identity.progress scan_received",
            |e| matches!(e, Event::IdentityProgress(p) if p.step == "scan_received"),
        )
        .await?;
        self.requester
            .request(&Request::IdentityConfirm(IdentityConfirm {
                call_id: call_id.clone(),
                fiscal_code: self.config.fiscal_code.clone(),
                document_type: "carta_identita".into(),
                document_number: "CA00000LT".into(),
            }))
            .await?;
        self.wait_event("identity.verified", |e| {
            matches!(e, Event::IdentityVerified(_))
        })
        .await?;
        let issuing = Instant::now();
        let issued = self
            .requester
            .request(&crate::demo::issue_residenza(&call_id))
            .await?;
        self.ledger.count(|c| c.certificates += 1);
        self.ledger.update(&call_id, |r| r.certificate = true);
        let document_id = issued["document_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("certificate.issue answered without document_id"))?
            .to_owned();
        let job = self
            .requester
            .request(&Request::PrintRequest(PrintRequest {
                call_id: call_id.clone(),
                document_id,
                copies: 1,
            }))
            .await?;
        let job_id = job["job_id"].as_str().unwrap_or_default().to_owned();
        self.wait_event("print.update printed", |e| {
            matches!(e, Event::PrintUpdate(u) if u.job_id == job_id && u.state == PrintState::Printed)
        })
        .await?;
        let ms = issuing.elapsed().as_secs_f64() * 1000.0;
        self.ledger.count(|c| c.printed += 1);
        self.ledger.update(&call_id, |r| {
            r.printed = true;
            r.print_ms = Some(ms);
        });
        Ok(())
    }

    /// Follows the call's events (media reconnects, the first video) until `until`.
    async fn pause_until(&mut self, until: Instant) -> Result<(), Stop> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let wait = if self.waiting_video {
                JOIN_POLL.min(until - now)
            } else {
                until - now
            };
            match tokio::time::timeout(wait, self.events.recv()).await {
                Ok(Some(event)) => self.follow(event).await?,
                Ok(None) => return Err(Stop::Ended),
                Err(_) => self.check_video(),
            }
        }
    }

    /// Waits for the call's event that `pred` accepts, following the others.
    async fn wait_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<(), Stop> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Stop::Failed(anyhow::anyhow!(
                    "call {}: no {what} within {STEP_TIMEOUT:?}",
                    self.call_id
                )));
            }
            let wait = if self.waiting_video {
                JOIN_POLL
            } else {
                deadline - now
            };
            match tokio::time::timeout(wait, self.events.recv()).await {
                Ok(Some(event)) if pred(&event) => return Ok(()),
                Ok(Some(Event::IdentityFailed(f))) => {
                    return Err(Stop::Failed(anyhow::anyhow!(
                        "call {}: identification failed: {}",
                        self.call_id,
                        f.reason
                    )))
                }
                Ok(Some(event)) => self.follow(event).await?,
                Ok(None) => return Err(Stop::Ended),
                Err(_) => self.check_video(),
            }
        }
    }

    async fn follow(&mut self, event: Event) -> Result<(), Stop> {
        if let Event::CallEnded(e) = &event {
            tracing::debug!(call_id = %self.call_id, reason = %e.reason, "call ended");
            return Err(if e.reason == "completed" {
                Stop::HungUp
            } else {
                Stop::Ended
            });
        }
        if let Some((m, _)) = self.media.as_mut() {
            if m.handle(&event).await? {
                self.waiting_video = true;
            }
        }
        self.check_video();
        Ok(())
    }

    fn check_video(&mut self) {
        if !self.waiting_video {
            return;
        }
        let Some((m, since)) = &self.media else {
            return;
        };
        if m.client().stats().packets("video") > 0 {
            self.waiting_video = false;
            let at = Instant::now();
            self.ledger.update(&self.call_id, |r| {
                r.operator_video.get_or_insert(at);
            });
        } else if since.elapsed() > JOIN_TIMEOUT {
            self.waiting_video = false;
            self.ledger
                .error(format!("call {}: the operator got no video", self.call_id));
        }
    }
}
