//! Identification at the kiosk: `identity.requested` for a card (`cie`, `cns`) or a paper document
//! (`document`). One task per call; a new request for the same call replaces the running one, and
//! the call's end (or its identification's outcome) cancels it.
//!
//! - Card: find the card, take the PIN (reader's PIN pad, or `POST /v1/pin` from the screen within
//!   `pin_timeout_s`), sign the nonce, send `identity.card` or `identity.card_error`.
//! - Document: wait for `POST /v1/scan` from the screen or `scan_delay_s`, scan, upload the image,
//!   send `identity.scan`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::incall::{IdentityMethod, IdentityRequested, IdentityScan};
use protocol::Request;
use serde_json::{json, Value};
use tokio::task::AbortHandle;

use super::api::ServerApi;
use super::card::{CardError, CardReader};
use super::link::Link;
use super::local::LocalChannel;
use super::scanner::ScanSource;

/// How long an identification message may wait for a connection.
const SEND_PATIENCE: Duration = Duration::from_secs(60);

/// The identification side of the agent.
pub struct IdentityService {
    card: Option<Arc<CardReader>>,
    scanner: Option<ScanSource>,
    channel: Arc<LocalChannel>,
    link: Link,
    api: ServerApi,
    pin_timeout: Duration,
    scan_delay: Duration,
    tasks: Mutex<HashMap<String, AbortHandle>>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("card", &self.card)
            .field("scanner", &self.scanner)
            .finish_non_exhaustive()
    }
}

impl IdentityService {
    /// The service; `card` and `scanner` are the configured devices.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        card: Option<Arc<CardReader>>,
        scanner: Option<ScanSource>,
        channel: Arc<LocalChannel>,
        link: Link,
        api: ServerApi,
        pin_timeout: Duration,
        scan_delay: Duration,
    ) -> Arc<Self> {
        Arc::new(IdentityService {
            card,
            scanner,
            channel,
            link,
            api,
            pin_timeout,
            scan_delay,
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// Handles `identity.requested`.
    pub fn on_requested(self: &Arc<Self>, request: IdentityRequested) {
        let call_id = request.call_id.clone();
        let method = request.method;
        let handle = match method {
            IdentityMethod::Cie | IdentityMethod::Cns => {
                let Some(card) = self.card.clone() else {
                    tracing::warn!(
                        call_id,
                        method = method.as_str(),
                        "identity: a card is requested but no pkcs11_module is configured"
                    );
                    return;
                };
                let service = self.clone();
                tokio::spawn(async move { service.card_flow(card, request).await })
            }
            IdentityMethod::Document => {
                let Some(scanner) = self.scanner.clone() else {
                    tracing::warn!(
                        call_id,
                        "identity: a scan is requested but no scanner is configured"
                    );
                    return;
                };
                let service = self.clone();
                tokio::spawn(async move { service.scan_flow(scanner, request).await })
            }
            IdentityMethod::Pec => {
                tracing::debug!(call_id, "identity: PEC is handled by the screen");
                return;
            }
        };
        let previous = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.retain(|_, task| !task.is_finished());
            tasks.insert(call_id.clone(), handle.abort_handle())
        };
        if let Some(previous) = previous {
            if !previous.is_finished() {
                tracing::info!(
                    call_id,
                    "identity: a new request replaces the one in progress"
                );
            }
            previous.abort();
        }
    }

    /// Stops whatever identification runs for `call_id` (the call ended, or its identification
    /// has an outcome).
    pub fn cancel(&self, call_id: &str, why: &str) {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call_id);
        if let Some(task) = task {
            if !task.is_finished() {
                tracing::info!(
                    call_id,
                    why,
                    "identity: stopping the identification in progress"
                );
                task.abort();
            }
        }
        self.channel.forget(call_id);
    }

    async fn send(&self, call_id: &str, request: Request, what: &str) {
        match self.link.request(&request, SEND_PATIENCE).await {
            Ok(_) => tracing::info!(call_id, "identity: {what} sent"),
            Err(e) => tracing::warn!(call_id, error = %e, "identity: {what} not accepted"),
        }
    }

    async fn card_failed(&self, call_id: &str, error: CardError) {
        let body = error.to_request(call_id);
        tracing::warn!(
            call_id,
            reason = %body.reason,
            tries_left = ?body.tries_left,
            "identity: card not usable: {error}"
        );
        self.send(
            call_id,
            Request::IdentityCardError(body),
            "identity.card_error",
        )
        .await;
    }

    async fn card_flow(self: Arc<Self>, card: Arc<CardReader>, request: IdentityRequested) {
        let call_id = request.call_id.as_str();
        tracing::info!(
            call_id,
            method = request.method.as_str(),
            "identity: card requested; looking for the card"
        );
        let probing = card.clone();
        let probe = match tokio::task::spawn_blocking(move || probing.probe()).await {
            Ok(Ok(probe)) => probe,
            Ok(Err(e)) => return self.card_failed(call_id, e).await,
            Err(e) => {
                return self
                    .card_failed(call_id, CardError::Card(e.to_string()))
                    .await
            }
        };
        tracing::info!(call_id, label = %probe.label, pin_pad = probe.protected_auth_path, "identity: card found");
        if probe.pin_locked {
            return self.card_failed(call_id, CardError::PinLocked).await;
        }
        // A wrong PIN leaves the server's step open with the same nonce: the citizen types it again
        // (the card's own retry counter is the limit), until it verifies, the card refuses, or the
        // wait times out.
        loop {
            let pin = if probe.protected_auth_path {
                tracing::info!(
                    call_id,
                    "identity: the PIN is typed on the reader's PIN pad"
                );
                None
            } else {
                tracing::info!(
                    call_id,
                    timeout_s = self.pin_timeout.as_secs(),
                    "identity: waiting for the PIN from the screen (POST /v1/pin)"
                );
                let waiting = self.channel.expect_pin(call_id);
                match tokio::time::timeout(self.pin_timeout, waiting).await {
                    Ok(Ok(pin)) => Some(pin),
                    Ok(Err(_)) => {
                        tracing::info!(call_id, "identity: the PIN wait was cancelled");
                        return;
                    }
                    Err(_) => {
                        self.channel.forget(call_id);
                        return self.card_failed(call_id, CardError::Timeout).await;
                    }
                }
            };
            tracing::info!(
                call_id,
                "identity: logging in to the card and signing the nonce"
            );
            let nonce = request.nonce.clone();
            let signing = card.clone();
            let attempt = probe.clone();
            let signed =
                tokio::task::spawn_blocking(move || signing.sign(&attempt, pin, &nonce)).await;
            match signed {
                Ok(Ok(identity)) => {
                    tracing::info!(
                        call_id,
                        key_type = identity.key_type,
                        certificate = %identity.label,
                        chain = identity.certificate_chain.len(),
                        "identity: nonce signed; sending the card certificate"
                    );
                    let body = identity.to_request(call_id);
                    self.send(call_id, Request::IdentityCard(body), "identity.card")
                        .await;
                    return;
                }
                Ok(Err(e @ CardError::PinIncorrect { .. })) if !probe.protected_auth_path => {
                    self.card_failed(call_id, e).await;
                }
                Ok(Err(e)) => return self.card_failed(call_id, e).await,
                Err(e) => {
                    return self
                        .card_failed(call_id, CardError::Card(e.to_string()))
                        .await
                }
            }
        }
    }

    async fn scan_flow(self: Arc<Self>, scanner: ScanSource, request: IdentityRequested) {
        let call_id = request.call_id.as_str();
        tracing::info!(
            call_id,
            source = %scanner.describe(),
            delay_s = self.scan_delay.as_secs(),
            "identity: document scan requested; waiting for the screen (POST /v1/scan) or the delay"
        );
        let waiting = self.channel.expect_scan(call_id);
        match tokio::time::timeout(self.scan_delay, waiting).await {
            Ok(Ok(())) => tracing::info!(call_id, "identity: scanning now (asked by the screen)"),
            Ok(Err(_)) => {
                tracing::info!(call_id, "identity: the scan wait was cancelled");
                return;
            }
            Err(_) => {
                self.channel.forget(call_id);
                tracing::info!(call_id, "identity: scanning now (delay elapsed)");
            }
        }
        let scan = match scanner.scan().await {
            Ok(scan) => scan,
            Err(e) => {
                tracing::error!(call_id, error = %e, "identity: SCANNER FAILED; nothing was sent (the operator can ask again)");
                return;
            }
        };
        tracing::info!(
            call_id,
            bytes = scan.bytes.len(),
            content_type = scan.content_type,
            "identity: scanned; uploading"
        );
        let scan_id = match self.api.upload_scan(call_id, &scan).await {
            Ok(scan_id) => scan_id,
            Err(e) => {
                tracing::error!(call_id, error = %e, "identity: the scan upload failed (the operator can ask again)");
                return;
            }
        };
        tracing::info!(call_id, scan_id, "identity: scan uploaded");
        let body = IdentityScan {
            call_id: call_id.to_owned(),
            scan_id,
        };
        self.send(call_id, Request::IdentityScan(body), "identity.scan")
            .await;
    }

    /// The card part of `GET /v1/status`.
    pub async fn card_status(&self) -> Value {
        let Some(card) = self.card.clone() else {
            return Value::Null;
        };
        let module = card.module().display().to_string();
        let probe = tokio::task::spawn_blocking(move || card.probe()).await;
        match probe {
            Ok(Ok(probe)) => json!({
                "module": module,
                "present": true,
                "label": probe.label,
                "pin_pad": probe.protected_auth_path,
                "pin_locked": probe.pin_locked,
            }),
            Ok(Err(CardError::NoCard)) => json!({"module": module, "present": false}),
            Ok(Err(e)) => json!({"module": module, "present": false, "error": e.to_string()}),
            Err(e) => json!({"module": module, "present": false, "error": e.to_string()}),
        }
    }

    /// The scanner part of `GET /v1/status`.
    pub fn scanner_status(&self) -> Value {
        match &self.scanner {
            Some(scanner) => json!({"source": scanner.describe()}),
            None => Value::Null,
        }
    }
}
