//! `sportello-kiosk`: a headless kiosk for municipal IT and demos.
//!
//! `call` places a call with the kiosk's device token and prints one line per event until it ends;
//! `follow` connects as another session of the kiosk and prints its events until interrupted. Exit
//! codes of `call`: 0 when the call ends `completed`, 2 when it ends otherwise (cancelled,
//! abandoned, kiosk lost, …, or interrupted), 1 on errors. See the crate's README.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand, ValueEnum};
use kiosk_client::{
    describe_event, describe_unknown, ws_url, CallOutcome, ClientError, ConnectOptions,
    HeadlessKiosk,
};
use protocol::{Capability, ErrorCode, Event};
use serde_json::Value;
use tokio::time::Instant;

/// How long the binary keeps trying to resume a lost connection (the kiosk grace period is 30 s).
const RESUME_WINDOW: Duration = Duration::from_secs(25);

/// How long to wait for `call.ended` after cancelling on Ctrl-C.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "sportello-kiosk",
    version,
    about = "A headless Sportello kiosk: place a call and follow it, or watch a kiosk's events."
)]
struct Cli {
    /// The server's base URL (the WebSocket endpoint is derived from it).
    #[arg(
        long,
        env = "SPORTELLO_SERVER",
        value_name = "URL",
        help = "The server's base URL, e.g. http://127.0.0.1:8080 or https://sportello.example.it \
                (the WebSocket endpoint /api/v1/ws is derived from it)"
    )]
    server: String,

    /// The kiosk's device token. Prefer SPORTELLO_KIOSK_TOKEN or --token-file: command lines are
    /// visible to other users of the machine.
    #[arg(
        long,
        env = "SPORTELLO_KIOSK_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// A file holding the kiosk's device token (surrounding whitespace is ignored). It wins over
    /// --token and SPORTELLO_KIOSK_TOKEN.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// Extra CA certificates (PEM) to trust for `https` servers, besides the public roots.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,

    /// Declare a device capability for this session (repeatable). Print jobs and identity requests
    /// then come to this session instead of the kiosk's others.
    #[arg(long = "capability", value_enum, value_name = "CAPABILITY")]
    capabilities: Vec<CapabilityArg>,

    /// Print the server's events as raw JSON lines on stdout (notes go to stderr).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CapabilityArg {
    /// The kiosk's printer.
    Printer,
    /// The CIE/CNS card reader.
    #[value(name = "card_reader", alias = "card-reader")]
    CardReader,
    /// The document scanner.
    Scanner,
}

impl From<CapabilityArg> for Capability {
    fn from(c: CapabilityArg) -> Self {
        match c {
            CapabilityArg::Printer => Capability::Printer,
            CapabilityArg::CardReader => Capability::CardReader,
            CapabilityArg::Scanner => Capability::Scanner,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Place a call and print its events until it ends.
    Call {
        /// The service, e.g. anagrafe or stato_civile.
        #[arg(long)]
        service: String,
        /// The citizen's language.
        #[arg(long, default_value = "it")]
        language: String,
        /// Priority 0–9, higher first.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9))]
        priority: Option<u8>,
        /// Cancel the call if it is still waiting after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        cancel_after: Option<f64>,
    },
    /// Connect as another session of the kiosk and print its events until interrupted.
    Follow,
}

/// Ctrl-C (and, on Unix, SIGTERM from a service manager). The handlers are installed when this is
/// created, so an interrupt that arrives early is not lost.
struct Interrupt {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    ctrl_c: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>,
}

impl Interrupt {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Interrupt {
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupt {
                ctrl_c: Box::pin(tokio::signal::ctrl_c()),
            })
        }
    }

    /// Resolves when an interrupt arrives (cancel-safe).
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (&mut self.ctrl_c).await;
        }
    }
}

/// Where lines go: events on stdout; notes on stdout, or on stderr with `--json`.
struct Output {
    json: bool,
}

impl Output {
    fn event(&self, event: &Event) {
        if self.json {
            println!("{}", event.to_json());
        } else {
            println!("{}", describe_event(event));
        }
        let _ = std::io::stdout().flush();
    }

    fn unknown(&self, value: &Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", describe_unknown(value));
        }
        let _ = std::io::stdout().flush();
    }

    fn note(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sportello-kiosk: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let token = read_token(&cli)?;
    let ws = ws_url(&cli.server).map_err(|e| anyhow!("--server: {e}"))?;
    let mut options = ConnectOptions::default();
    if let Some(path) = &cli.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        options.extra_ca_pem = Some(pem);
    }
    let capabilities: Vec<Capability> = cli.capabilities.iter().map(|&c| c.into()).collect();
    let out = Output { json: cli.json };
    let mut interrupt = Interrupt::install()?;

    let interrupted_exit = match cli.command {
        Command::Call { .. } => ExitCode::from(2),
        Command::Follow => ExitCode::SUCCESS,
    };
    let connecting = HeadlessKiosk::connect_with(&ws, &token, capabilities, options);
    let mut kiosk = tokio::select! {
        kiosk = connecting => kiosk.map_err(|e| explain(e, &ws))?,
        () = interrupt.recv() => {
            out.note("interrupted");
            return Ok(interrupted_exit);
        }
    };
    out.note(&format!("connected to {ws} as kiosk {}", kiosk.kiosk_id()));

    match cli.command {
        Command::Call {
            service,
            language,
            priority,
            cancel_after,
        } => {
            let cancel_after = match cancel_after {
                Some(s) if !(s.is_finite() && s >= 0.0) => {
                    return Err(anyhow!("--cancel-after must be a number of seconds ≥ 0"))
                }
                Some(s) => Some(Duration::from_secs_f64(s)),
                None => None,
            };
            let call = CallArgs {
                service: &service,
                language: &language,
                priority,
                cancel_after,
            };
            place_call(&mut kiosk, &out, &ws, call, &mut interrupt).await
        }
        Command::Follow => follow(&mut kiosk, &out, &ws, &mut interrupt).await,
    }
}

/// The token from --token-file, else --token / SPORTELLO_KIOSK_TOKEN.
fn read_token(cli: &Cli) -> anyhow::Result<String> {
    let token = match (&cli.token_file, &cli.token) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim()
            .to_owned(),
        (None, Some(token)) => token.trim().to_owned(),
        (None, None) => {
            return Err(anyhow!(
                "no kiosk token: pass --token-file PATH, set SPORTELLO_KIOSK_TOKEN, or pass --token"
            ))
        }
    };
    if token.is_empty() {
        return Err(anyhow!("the kiosk token is empty"));
    }
    Ok(token)
}

/// An error as a sentence for the operator of the command (never with the token in it).
fn explain(error: ClientError, ws: &str) -> anyhow::Error {
    match error {
        ClientError::Refused {
            code: ErrorCode::Unauthorized,
            message,
        } => anyhow!("the server at {ws} refused the kiosk token (unauthorized: {message})"),
        ClientError::Refused { code, message } => {
            anyhow!("the server at {ws} refused the request ({code}: {message})")
        }
        ClientError::Timeout => anyhow!("the server at {ws} did not answer in time"),
        ClientError::Closed => anyhow!("the server at {ws} closed the connection"),
        other => anyhow!("{other}"),
    }
}

fn exit_for(outcome: &CallOutcome) -> ExitCode {
    if outcome.reason == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// What `call` asks for.
struct CallArgs<'a> {
    service: &'a str,
    language: &'a str,
    priority: Option<u8>,
    cancel_after: Option<Duration>,
}

async fn place_call(
    kiosk: &mut HeadlessKiosk,
    out: &Output,
    ws: &str,
    args: CallArgs<'_>,
    interrupt: &mut Interrupt,
) -> anyhow::Result<ExitCode> {
    let CallArgs {
        service,
        language,
        priority,
        cancel_after,
    } = args;
    let call_id = match kiosk.request_call(service, language, priority).await {
        Ok(id) => id,
        Err(ClientError::Refused {
            code: ErrorCode::Conflict,
            message,
        }) => {
            return Err(anyhow!(
                "this kiosk already has an active call (conflict: {message})"
            ))
        }
        Err(e) => return Err(explain(e, ws)),
    };
    out.note(&format!(
        "call {call_id} requested: service {service}, language {language}"
    ));

    let mut cancel_at = cancel_after.map(|d| Instant::now() + d);
    loop {
        let cancel_timer = async {
            match cancel_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = kiosk.follow_with(Duration::MAX, |e| out.event(e)) => match result {
                Ok(outcome) => return Ok(exit_for(&outcome)),
                Err(ClientError::Closed) => {
                    print_leftovers(kiosk, out);
                    tokio::select! {
                        result = reconnect(kiosk, out, ws) => result?,
                        () = interrupt.recv() => {
                            out.note("interrupted while reconnecting: the server ends the call after its grace period");
                            return Ok(ExitCode::from(2));
                        }
                    }
                }
                Err(e) => return Err(explain(e, ws)),
            },
            () = cancel_timer => {
                cancel_at = None;
                if kiosk.tracker().is_some_and(|t| t.is_waiting()) {
                    out.note("still waiting: cancelling the call");
                    cancel(kiosk, ws).await?;
                }
            }
            () = interrupt.recv() => {
                if kiosk.tracker().is_some_and(|t| t.is_waiting()) {
                    out.note("interrupted: cancelling the call");
                    cancel(kiosk, ws).await?;
                    match kiosk.follow_with(CANCEL_WAIT, |e| out.event(e)).await {
                        Ok(outcome) => return Ok(exit_for(&outcome)),
                        Err(e) => return Err(explain(e, ws)),
                    }
                }
                out.note("interrupted: the call is still in progress on the server");
                return Ok(ExitCode::from(2));
            }
        }
    }
}

async fn cancel(kiosk: &mut HeadlessKiosk, ws: &str) -> anyhow::Result<()> {
    match kiosk.cancel().await {
        Ok(()) => Ok(()),
        // The call moved on meanwhile (answered or ended); its events tell the rest.
        Err(ClientError::Refused {
            code: ErrorCode::Conflict | ErrorCode::NotFound,
            ..
        }) => Ok(()),
        Err(e) => Err(explain(e, ws)),
    }
}

/// Prints the events left in a closed session (such as `server.draining`) and how it closed.
fn print_leftovers(kiosk: &mut HeadlessKiosk, out: &Output) {
    let session = kiosk.session();
    for event in session.drain_events() {
        out.event(&event);
    }
    for value in session.take_unknown() {
        out.unknown(&value);
    }
    match (session.close_code(), session.close_reason()) {
        (Some(code), Some(reason)) if !reason.is_empty() => out.note(&format!(
            "connection closed by the server ({code}: {reason})"
        )),
        (Some(code), _) => out.note(&format!("connection closed by the server ({code})")),
        (None, _) => out.note("connection lost"),
    }
}

/// Resumes the session, retrying for [`RESUME_WINDOW`].
async fn reconnect(kiosk: &mut HeadlessKiosk, out: &Output, ws: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + RESUME_WINDOW;
    let mut delay = Duration::from_millis(250);
    loop {
        match kiosk.reconnect().await {
            Ok(auth) if auth.resumed => {
                out.note("reconnected: session resumed");
                return Ok(());
            }
            Ok(_) => {
                out.note("reconnected with a new session: the server no longer had the old one");
                return Ok(());
            }
            Err(
                e @ ClientError::Refused {
                    code: ErrorCode::Unauthorized | ErrorCode::Forbidden,
                    ..
                },
            ) => return Err(explain(e, ws)),
            Err(e) if Instant::now() >= deadline => {
                return Err(explain(e, ws).context("could not reconnect"))
            }
            Err(e) => {
                tracing::debug!(error = %e, "reconnect failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(4));
            }
        }
    }
}

async fn follow(
    kiosk: &mut HeadlessKiosk,
    out: &Output,
    ws: &str,
    interrupt: &mut Interrupt,
) -> anyhow::Result<ExitCode> {
    loop {
        // A short wait, so frames unknown to this client are printed without much delay too.
        let next = tokio::select! {
            next = kiosk.session().next_event(Duration::from_millis(500)) => next,
            () = interrupt.recv() => {
                out.note("interrupted");
                for event in kiosk.session().drain_events() {
                    out.event(&event);
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        match next {
            Ok(event) => out.event(&event),
            Err(ClientError::Timeout) => {}
            Err(ClientError::Closed) => {
                print_leftovers(kiosk, out);
                tokio::select! {
                    result = reconnect(kiosk, out, ws) => result?,
                    () = interrupt.recv() => {
                        out.note("interrupted");
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                continue;
            }
            Err(e) => return Err(explain(e, ws)),
        }
        for value in kiosk.session().take_unknown() {
            out.unknown(&value);
        }
    }
}
