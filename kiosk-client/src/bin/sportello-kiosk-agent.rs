//! `sportello-kiosk-agent`: the service on the kiosk machine that drives the printer, the card
//! reader and the scanner for the Sportello server (`docs/kiosk-agent.md`).
//!
//! `sportello-kiosk-agent --config /etc/sportello/kiosk-agent.toml` runs until SIGTERM or SIGINT;
//! `--check` validates the configuration and exits. Logs go to stderr (journald under systemd);
//! `RUST_LOG` sets the level (default `info`). Exit codes: 0 after a signal or a good `--check`, 1
//! on configuration or start-up errors.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kiosk_client::agent;

#[derive(Debug, Parser)]
#[command(
    name = "sportello-kiosk-agent",
    version,
    about = "The Sportello kiosk agent: prints, reads CIE/CNS cards and scans documents for the server."
)]
struct Cli {
    /// The configuration file (TOML). SPORTELLO_AGENT_* variables override some of its fields.
    #[arg(
        long,
        short = 'c',
        env = "SPORTELLO_AGENT_CONFIG",
        value_name = "PATH",
        default_value = "/etc/sportello/kiosk-agent.toml"
    )]
    config: PathBuf,

    /// Validate the configuration (and read the token) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let config = match agent::check_config(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        println!(
            "{}: OK (capabilities {:?})",
            cli.config.display(),
            config.capabilities()
        );
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        agent::run(config, shutdown).await
    });
    // A card operation may still block a thread (a PIN pad waiting for the citizen): do not wait
    // for it long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
