//! `loadtest`: see the library's documentation ([`loadtest`]) and `docs/loadtest.md`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadtest", about = "Sportello's load programs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A load run with headless kiosks and operators and real media; writes report.{json,md,svg}.
    Run(loadtest::run::Args),
    /// Load runs of rising concurrency until an objective breaks; prints the largest that held.
    Capacity(loadtest::capacity::Args),
    /// The same 1:1 media calls through our server and through Janus's videocall plugin.
    CompareJanus(loadtest::compare::Args),
    /// Printing exactly once while the kiosk agent is killed and restarted at random.
    PrintChaos(loadtest::print_chaos::Args),
    /// The SFU's forwarding rate and added latency against a plain UDP relay.
    Forward(loadtest::forward::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Forward(args) => loadtest::forward::main(args),
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("loadtest: cannot start the runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime.block_on(async move {
                match command {
                    Cmd::Run(args) => loadtest::run::main(args).await,
                    Cmd::Capacity(args) => loadtest::capacity::main(args).await,
                    Cmd::CompareJanus(args) => loadtest::compare::main(args).await,
                    Cmd::PrintChaos(args) => loadtest::print_chaos::main(args).await,
                    Cmd::Forward(_) => unreachable!("handled above"),
                }
            })
        }
    }
}
