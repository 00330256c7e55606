//! Sportello's load programs, one binary (`loadtest`) with a subcommand each:
//!
//! - `run`: a load run against one deployment with headless kiosks and operators exchanging real
//!   WebRTC media through the SFU ([`run`], [`scenario`], [`report`]);
//! - `capacity`: load runs of rising size until an objective breaks ([`capacity`]);
//! - `compare-janus`: the same media clients through our server and through Janus's `videocall`
//!   plugin in one run ([`compare`], [`janus`]);
//! - `print-chaos`: printing exactly once under kiosk-agent kills ([`print_chaos`]);
//! - `forward`: the SFU's per-packet forwarding bench against a plain UDP relay ([`forward`]).
//!
//! Every program stops by itself and targets only loopback or the project's own test hosts
//! ([`target`]). Each prints, as its last line on stdout, one JSON object with its headline figures
//! (read by `cargo xtask bench`).

pub mod capacity;
pub mod chart;
pub mod compare;
pub mod demo;
pub mod forward;
pub mod janus;
pub mod print_chaos;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod stats;
pub mod target;

/// Logs to stderr, filtered by `RUST_LOG` (warnings by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Ends a load program: its headline JSON line last on stdout and exit 0, or the error on stderr
/// and exit 2.
pub fn finish(program: &str, result: anyhow::Result<String>) -> std::process::ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadtest {program}: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
