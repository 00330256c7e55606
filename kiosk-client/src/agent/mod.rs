//! The kiosk agent: the service on the kiosk machine that drives the printer, the smart-card reader
//! and the document scanner for the server (`sportello-kiosk-agent`, `docs/kiosk-agent.md`).
//!
//! - [`config`]: the TOML configuration and its `SPORTELLO_AGENT_*` overrides.
//! - [`link`]: the connection (device token, capabilities, reconnect with resume).
//! - [`journal`] (**core**, no I/O), [`store`], [`cups`], [`printer`]: printing exactly once.
//! - [`card`]: CIE/CNS through PKCS#11; [`scanner`]: SANE or a file; [`api`]: the server's HTTP API.
//! - [`identity`]: the identification flows; [`local`]: the endpoint for the kiosk's screen.
//!
//! [`run`] wires them together until a shutdown signal.

pub mod api;
pub mod card;
pub mod config;
pub mod cups;
pub mod identity;
pub mod journal;
pub mod link;
pub mod local;
pub mod printer;
pub mod scanner;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use protocol::Event;
use serde_json::{json, Value};
use tokio::sync::watch;

use self::api::ServerApi;
use self::card::CardReader;
use self::config::AgentConfig;
use self::cups::Cups;
use self::identity::IdentityService;
use self::link::{Link, LinkSettings};
use self::local::{LocalChannel, LocalState, StatusFn};
use self::printer::{Fault, PrintService};
use self::scanner::ScanSource;
use crate::session::ConnectOptions;

/// How often finished jobs past the retention are removed from the journal.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The running agent's parts.
#[derive(Debug)]
struct Agent {
    printer: Option<Arc<PrintService>>,
    identity: Arc<IdentityService>,
}

impl Agent {
    /// Routes one event from the server.
    fn on_event(&self, event: Event) {
        match event {
            Event::PrintJob(job) => match &self.printer {
                Some(printer) => {
                    let printer = printer.clone();
                    tokio::spawn(async move { printer.on_job(job).await });
                }
                None => {
                    tracing::warn!(job_id = %job.job_id, "print job received but no printer is configured; ignored")
                }
            },
            Event::IdentityRequested(request) => self.identity.on_requested(request),
            Event::IdentityVerified(outcome) => {
                self.identity.cancel(&outcome.call_id, "identity verified")
            }
            // A wrong PIN keeps the card step open: the card flow waits for the PIN again.
            Event::IdentityFailed(outcome) if outcome.code.as_deref() == Some("pin_incorrect") => {
                tracing::debug!(call_id = %outcome.call_id, "wrong PIN reported; waiting for another")
            }
            Event::IdentityFailed(outcome) => self
                .identity
                .cancel(&outcome.call_id, "identification failed"),
            Event::CallEnded(ended) => self.identity.cancel(&ended.call_id, "call ended"),
            Event::ServerDraining { grace_s } => {
                tracing::info!(
                    grace_s,
                    "the server is draining; will reconnect when it closes"
                )
            }
            other => tracing::debug!(event = other.kind(), "event ignored"),
        }
    }
}

/// Runs the agent with `config` until `shutdown` completes: opens the journal and resumes its jobs,
/// starts the local endpoint, connects to the server and keeps reconnecting.
///
/// `config` should have passed [`AgentConfig::validate`] (the binary runs [`check_config`]). Fails at
/// once (before connecting) when the token cannot be read, the journal folder cannot be opened (or
/// another agent holds it), or the local endpoint cannot listen.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        server = %config.server,
        capabilities = ?config.capabilities(),
        printer = ?config.printer,
        pkcs11_module = ?config.pkcs11_module,
        scanner_device = ?config.scanner_device,
        scan_file = ?config.scan_file,
        journal_dir = %config.journal_dir.display(),
        "kiosk agent starting"
    );
    let token = config.resolve_token().map_err(anyhow::Error::msg)?;
    let extra_ca_pem = match &config.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read ca_file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let api = ServerApi::new(&config.server, token.clone(), extra_ca_pem.as_deref())?;
    let ws_url = crate::ws_url(&config.server)?;
    let origin = config.screen_origin().map_err(anyhow::Error::msg)?;
    let fault = Fault::from_env();
    if let Some(fault) = fault {
        tracing::warn!(
            ?fault,
            "FAULT INJECTION is active ({}); tests only",
            printer::FAULT_ENV
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let printer = match &config.printer {
        Some(name) => {
            let cups = Cups::new(name, config.cups_server.as_deref());
            let service = PrintService::open(
                &config.journal_dir,
                cups,
                api.clone(),
                config.journal_retention_days,
                fault,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the print journal in {}: {e}",
                    config.journal_dir.display()
                )
            })?;
            Some(service)
        }
        None => None,
    };
    let card = config
        .pkcs11_module
        .as_deref()
        .map(|module| Arc::new(CardReader::new(module)));
    let scanner = match (&config.scanner_device, &config.scan_file) {
        (Some(device), _) => Some(ScanSource::Sane {
            device: device.clone(),
            format: config.scan_format,
            resolution: config.scan_resolution,
        }),
        (None, Some(file)) => Some(ScanSource::File(file.clone())),
        (None, None) => None,
    };
    let channel = LocalChannel::new();
    let link = Link::default();
    let identity = IdentityService::new(
        card,
        scanner,
        channel.clone(),
        link.clone(),
        api,
        Duration::from_secs(config.pin_timeout_s),
        Duration::from_secs(config.scan_delay_s),
    );
    let agent = Arc::new(Agent {
        printer: printer.clone(),
        identity: identity.clone(),
    });

    let status: StatusFn = {
        let link = link.clone();
        let printer = printer.clone();
        let identity = identity.clone();
        let channel = channel.clone();
        Arc::new(move || {
            let link = link.clone();
            let printer = printer.clone();
            let identity = identity.clone();
            let channel = channel.clone();
            Box::pin(async move {
                let printer = match printer {
                    Some(printer) => printer.status().await,
                    None => Value::Null,
                };
                json!({
                    "connected": link.is_connected(),
                    "printer": printer,
                    "card_reader": identity.card_status().await,
                    "scanner": identity.scanner_status(),
                    "pin_expected_for": channel.pin_expected_for(),
                    "scan_expected_for": channel.scan_expected_for(),
                })
            })
        })
    };
    let local_state = LocalState {
        channel,
        origin,
        status,
    };
    let listener = tokio::net::TcpListener::bind(config.local_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.local_listen))?;
    tracing::info!(
        listen = %config.local_listen,
        origin = %local_state.origin,
        "local endpoint listening"
    );
    let local = tokio::spawn({
        let stopped = stopped();
        async move {
            if let Err(e) = axum::serve(listener, local::router(local_state))
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "local endpoint failed");
            }
        }
    });

    if let Some(printer) = &printer {
        printer.start();
        tokio::spawn(printer.clone().run_reporter(link.clone()));
        let pruning = printer.clone();
        let stop = stopped();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(PRUNE_EVERY) => {
                        let pruning = pruning.clone();
                        let _ = tokio::task::spawn_blocking(move || pruning.prune()).await;
                    }
                }
            }
        });
    }

    let capabilities = config.capabilities();
    let settings = LinkSettings {
        ws_url,
        token,
        capabilities,
        options: ConnectOptions {
            extra_ca_pem,
            ..ConnectOptions::default()
        },
    };
    let connection = tokio::spawn({
        let agent = agent.clone();
        let link = link.clone();
        link::run(
            settings,
            link,
            move |event| agent.on_event(event),
            stopped(),
        )
    });

    shutdown.await;
    tracing::info!("kiosk agent stopping");
    let _ = stop_tx.send(true);
    let _ = connection.await;
    let _ = local.await;
    Ok(())
}

/// Loads and validates the configuration at `path` and reads the device token (what the binary's
/// `--check` does); returns the configuration, or every problem found.
pub fn check_config(path: &std::path::Path) -> Result<AgentConfig, String> {
    let config = AgentConfig::load(path)?;
    config.resolve_token()?;
    if config.printer.is_some() {
        cups::local_user().map_err(|e| format!("printer: {e}"))?;
    }
    Ok(config)
}
