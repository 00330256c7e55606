//! The `sportello` command line: `serve` (the default), `check-config`, `hash-password` and
//! `hash-token`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use signalling::accounts::{generate_secret, hash_password, hash_token, DEMO_CREDENTIALS_FILE};
use signalling::commands;
use signalling::config::{self, Config, DemoFlags, FlagOverrides, LogFlags, LogFormat, MediaFlags};
use signalling::server::{self, RunningServer};

/// Sportello: a real-time video contact centre for public administration.
#[derive(Debug, Parser)]
#[command(name = "sportello", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Validate a configuration and list every problem; exits non-zero when invalid.
    CheckConfig(ServeArgs),
    /// Read a password from standard input and print its argon2 hash for the configuration.
    HashPassword,
    /// Print the `sha256:` hash of a kiosk device token read from standard input; with `--new`,
    /// generate a fresh token and print both.
    HashToken {
        /// Generate a new random token instead of reading one.
        #[arg(long)]
        new: bool,
    },
    /// Verify a timbro digitale from a PDF, an image, a text file or the stamp text itself.
    /// Exits 0 when valid, 1 when not.
    Verify {
        /// The PDF, image or text file, or the stamp text (`IT1:…`).
        input: String,
        /// A trust list (JSON from /.well-known/sportello/trust-list.json); default: trust the
        /// data directory's signer.
        #[arg(long, value_name = "FILE")]
        trust_list: Option<PathBuf>,
        #[command(flatten)]
        common: ServeArgs,
    },
    /// The registry.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Certificates.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Intermediaries (patronati, banks, employers) of the web API: keys, scopes, quotas, and
    /// their audited requests.
    Intermediary {
        #[command(subcommand)]
        command: IntermediaryCommand,
    },
    /// Reports from the call history, as `GET /api/v1/reports/…` gives them (JSON or CSV).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Delete issued certificates (PDF and metadata in DATA_DIR/documents) older than the
    /// retention; the audit log keeps the record that they were issued. Run it from cron or a
    /// systemd timer.
    Purge {
        /// Keep documents issued within this many days (at least 1).
        #[arg(long, value_name = "DAYS")]
        documents_older_than_days: u64,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Calls: answered, abandoned, service level, ASA, AHT, dispositions, ratings, certificates.
    Calls(ReportArgs),
    /// Certificates by kind, channel and bollo or exemption.
    Certificates(ReportArgs),
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The first day, YYYY-MM-DD [default: the first of the month].
    #[arg(long, value_name = "DAY")]
    from: Option<String>,
    /// The last day, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DAY")]
    to: Option<String>,
    /// The grouping: day, month, service, kiosk, operator or disposition for calls [default:
    /// day]; kind, channel, fee, day, month or kiosk for certificates [default: kind].
    #[arg(long, value_name = "GROUP")]
    by: Option<String>,
    /// json or csv [default: json].
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    #[command(flatten)]
    common: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// List the registry's people: fiscal code, surname, names, birth date, one a line.
    List(ServeArgs),
}

// Parsed once at start-up: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum CertificateCommand {
    /// Issue a certificate to a PDF, signed with the data directory's key (training and tests).
    Issue {
        /// The kind, e.g. residenza, stato_famiglia, nascita.
        #[arg(long)]
        kind: String,
        /// The subject's fiscal code.
        #[arg(long)]
        fiscal_code: String,
        /// The as-of date (YYYY-MM-DD) for "alla data" kinds.
        #[arg(long)]
        as_of: Option<String>,
        /// An exemption code from the exemption table; without it the bollo is due.
        #[arg(long)]
        exemption: Option<String>,
        /// The reason for the request, audited (required for "alla data" kinds).
        #[arg(long)]
        reason: Option<String>,
        /// The 14-digit identifier of the marca da bollo that pays the bollo (with --marca-date);
        /// a marca pays for one certificate only.
        #[arg(long, value_name = "ID")]
        marca_id: Option<String>,
        /// The date printed on the marca da bollo (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        marca_date: Option<String>,
        /// A part of a contestuale certificate (repeat it; default: every part that applies).
        #[arg(long = "part", value_name = "PART")]
        parts: Vec<String>,
        /// Where to write the PDF.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        common: ServeArgs,
    },
    /// List every certificate kind with its title, legal basis, validity and rules.
    Kinds(ServeArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; exits non-zero on any edit, deletion or reordering.
    Verify {
        /// The log file; default DATA_DIR/audit.log.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        common: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum IntermediaryCommand {
    /// Add an intermediary and print its API key (shown once; only its hash is stored).
    Add {
        /// Its name (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// What it may do: certificates (comma-separated or repeated).
        #[arg(long, required = true)]
        scopes: Vec<String>,
        /// Requests per day (Europe/Rome) [default: 1000].
        #[arg(long, value_name = "N")]
        quota_per_day: Option<u32>,
        #[command(flatten)]
        common: ServeArgs,
    },
    /// List the intermediaries: name, scopes, quota, created, state.
    List(ServeArgs),
    /// Revoke an intermediary's key at once, on every node.
    Revoke {
        /// Its name.
        name: String,
        #[command(flatten)]
        common: ServeArgs,
    },
    /// Print an intermediary's audited requests, one JSON object a line.
    Requests {
        /// Its name.
        name: String,
        /// First day (YYYY-MM-DD, Europe/Rome).
        #[arg(long)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD, Europe/Rome).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        common: ServeArgs,
    },
}

#[derive(Debug, Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file (see sportello.example.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin listener address for /metrics [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Data directory [default: ./sportello-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Redis URL for shared state; absent means the embedded in-memory store.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The call history's database (sqlite://PATH or postgres://USER:PASSWORD@HOST/DB)
    /// [default: SQLite in the data directory].
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Allow demo accounts on a non-loopback address (closed training networks only).
    #[arg(long)]
    allow_demo_on_network: bool,
    /// Media UDP address (one port for all calls): IP:PORT, auto or off [default: auto].
    #[arg(long, value_name = "ADDR")]
    media_udp: Option<String>,
    /// Media ICE-TCP address: IP:PORT, auto or off [default: auto].
    #[arg(long, value_name = "ADDR")]
    media_tcp: Option<String>,
    /// The IP advertised in media candidates (behind a 1:1 NAT).
    #[arg(long, value_name = "IP")]
    media_public_ip: Option<std::net::IpAddr>,
    /// What this process runs: all (one process), signalling or media (several nodes on --redis)
    /// [default: all].
    #[arg(long, value_name = "ROLE")]
    role: Option<config::NodeRole>,
    /// This node's id, unique in the deployment [default: a fresh one per start].
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Media nodes: the internal API's listener [default: 127.0.0.1:9091].
    #[arg(long, value_name = "ADDR")]
    internal_listen: Option<SocketAddr>,
}

impl ServeArgs {
    fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            listen: self.listen,
            admin_listen: self.admin_listen,
            data_dir: self.data_dir.clone(),
            redis: self.redis.clone(),
            log: self.log_format.map(|format| LogFlags { format }),
            demo: self.allow_demo_on_network.then_some(DemoFlags {
                allow_non_loopback: true,
            }),
            media: (self.media_udp.is_some()
                || self.media_tcp.is_some()
                || self.media_public_ip.is_some())
            .then(|| MediaFlags {
                udp: self.media_udp.clone(),
                tcp: self.media_tcp.clone(),
                public_ip: self.media_public_ip,
            }),
            cluster: (self.role.is_some()
                || self.node_id.is_some()
                || self.internal_listen.is_some())
            .then(|| config::ClusterFlags {
                role: self.role,
                node_id: self.node_id.clone(),
                internal_listen: self.internal_listen,
            }),
            history: self
                .database
                .clone()
                .map(|database| config::HistoryFlags { database }),
        }
    }

    fn load(&self) -> Result<Config, config::ConfigError> {
        config::load(self.config.as_deref(), &self.overrides())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::CheckConfig(args)) => check_config(args),
        Some(Command::HashPassword) => hash_password_cmd(),
        Some(Command::HashToken { new }) => hash_token_cmd(new),
        Some(Command::Verify {
            input,
            trust_list,
            common,
        }) => with_config(&common, |config| {
            let valid = commands::verify(
                config,
                &input,
                trust_list.as_deref(),
                &mut std::io::stdout(),
            )?;
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }),
        Some(Command::Registry {
            command: RegistryCommand::List(common),
        }) => with_config(&common, |config| {
            commands::registry_list(config, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }),
        Some(Command::Certificate {
            command: CertificateCommand::Kinds(common),
        }) => with_config(&common, |_config| {
            commands::certificate_kinds(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }),
        Some(Command::Certificate {
            command:
                CertificateCommand::Issue {
                    kind,
                    fiscal_code,
                    as_of,
                    exemption,
                    reason,
                    marca_id,
                    marca_date,
                    parts,
                    out,
                    common,
                },
        }) => with_config(&common, |config| {
            let args = commands::IssueArgs {
                kind,
                fiscal_code,
                as_of,
                exemption,
                reason,
                marca_id,
                marca_date,
                parts,
            };
            let doc = commands::certificate_issue(config, &args, &out)?;
            println!(
                "{} {} {} -> {} ({} page(s){})",
                doc.document_id,
                doc.kind,
                doc.fiscal_code,
                out.display(),
                doc.pages,
                if doc.development {
                    ", development key: NOT VALID"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }),
        Some(Command::Purge {
            documents_older_than_days,
            dry_run,
            common,
        }) => with_config(&common, |config| {
            anyhow::ensure!(
                documents_older_than_days >= 1,
                "--documents-older-than-days must be at least 1"
            );
            let purged = commands::purge_documents(
                &config.data_dir.join("documents"),
                std::time::Duration::from_secs(documents_older_than_days * 86_400),
                std::time::SystemTime::now(),
                dry_run,
            )?;
            println!(
                "{} {} document(s) older than {documents_older_than_days} day(s)",
                if dry_run { "would delete" } else { "deleted" },
                purged.len()
            );
            for id in purged {
                println!("  {id}");
            }
            Ok(ExitCode::SUCCESS)
        }),
        Some(Command::Intermediary { command }) => intermediary_cmd(command),
        Some(Command::Report { command }) => {
            use signalling::reports::cli::{run, Which};
            let (which, args) = match command {
                ReportCommand::Calls(a) => (Which::Calls, a),
                ReportCommand::Certificates(a) => (Which::Certificates, a),
            };
            let query = signalling::reports::api::ReportQuery {
                from: args.from.clone(),
                to: args.to.clone(),
                by: args.by.clone(),
                format: args.format.clone(),
            };
            with_config(&args.common, |config| {
                let text = run(config, which, &query)?;
                println!("{}", text.trim_end());
                Ok(ExitCode::SUCCESS)
            })
        }
        Some(Command::Audit {
            command: AuditCommand::Verify { file, common },
        }) => with_config(&common, |config| {
            let summary = commands::audit_verify(config, file)?;
            println!(
                "audit log intact: {} record(s), head {}",
                summary.records, summary.head
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// `sportello intermediary …`.
fn intermediary_cmd(command: IntermediaryCommand) -> ExitCode {
    use signalling::web::intermediary::cli;
    let out = &mut std::io::stdout();
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        IntermediaryCommand::Add {
            name,
            scopes,
            quota_per_day,
            common,
        } => with_config(&common, |c| {
            done(cli::add(c, &name, &scopes, quota_per_day, out))
        }),
        IntermediaryCommand::List(common) => with_config(&common, |c| done(cli::list(c, out))),
        IntermediaryCommand::Revoke { name, common } => {
            with_config(&common, |c| done(cli::revoke(c, &name, out)))
        }
        IntermediaryCommand::Requests {
            name,
            from,
            to,
            common,
        } => with_config(&common, |c| {
            done(cli::requests(c, &name, from.as_deref(), to.as_deref(), out))
        }),
    }
}

/// Loads the configuration like `serve` does and runs `f`; errors print and exit 2.
fn with_config(args: &ServeArgs, f: impl FnOnce(&Config) -> anyhow::Result<ExitCode>) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sportello: {error}");
            return ExitCode::from(2);
        }
    };
    match f(&config) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sportello: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn check_config(args: ServeArgs) -> ExitCode {
    match args.load() {
        Ok(config) => {
            println!(
                "configuration is valid: {} operators, {} supervisors, {} kiosks{}",
                config.operators.len(),
                config.supervisors.len(),
                config.kiosks.len(),
                if config.demo_enabled() {
                    ", demo accounts on"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("configuration is not valid:");
            for problem in error.problems() {
                eprintln!("  - {problem}");
            }
            ExitCode::from(2)
        }
    }
}

fn read_stdin_line() -> String {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.trim_end_matches(['\r', '\n']).to_owned()
}

fn hash_password_cmd() -> ExitCode {
    let password = read_stdin_line();
    if password.is_empty() {
        eprintln!("give the password on standard input, e.g. `sportello hash-password < file`");
        return ExitCode::from(2);
    }
    println!("{}", hash_password(&password));
    ExitCode::SUCCESS
}

fn hash_token_cmd(new: bool) -> ExitCode {
    if new {
        let token = generate_secret();
        println!("token      = {token}");
        println!("token_hash = \"{}\"", hash_token(&token));
        return ExitCode::SUCCESS;
    }
    let token = read_stdin_line();
    if token.is_empty() {
        eprintln!("give the token on standard input, or use --new");
        return ExitCode::from(2);
    }
    println!("{}", hash_token(&token));
    ExitCode::SUCCESS
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sportello: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sportello: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sportello: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    if config.cluster.role == config::NodeRole::Media {
        return run_media(config).await;
    }
    let drain = std::time::Duration::from_secs(config.shutdown.drain_s);
    let data_dir = config.data_dir.clone();
    let store = match &config.redis {
        Some(url) => format!("redis ({})", redact(url)),
        None => "in-memory (one process)".to_owned(),
    };
    let running = server::start(config).await?;
    print_banner(&running, &store, &data_dir);
    let shutdown = running.shutdown().clone();
    tokio::spawn(async move {
        signals(shutdown, drain).await;
    });
    running.wait().await
}

/// A media node until SIGTERM (drain, move the calls, exit) or SIGINT (exit now).
async fn run_media(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let drain = std::time::Duration::from_secs(config.shutdown.drain_s);
    let store = config.redis.as_deref().map(redact).unwrap_or_default();
    let node = signalling::media_node::start(config).await?;
    let show = |a: Option<SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
    println!(
        "Sportello media node {}\n  listening on {}\n  media        udp {}   ice-tcp {}\n  \
         metrics      http://{}/metrics\n  store        redis ({store})",
        node.id,
        node.internal_url,
        show(node.sfu.udp_addr()),
        show(node.sfu.tcp_addr()),
        node.admin_addr,
    );
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    tokio::select! {
        _ = term.recv() => {
            tracing::info!(drain_s = drain.as_secs(), "SIGTERM: draining the media node");
            let now = tokio_util::sync::CancellationToken::new();
            let n = now.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                n.cancel();
            });
            node.drain(drain, now).await;
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: stopping the media node");
            node.stop().await;
        }
    }
    Ok(())
}

/// SIGTERM drains within the grace period; SIGINT, or a second signal, stops at once.
async fn signals(shutdown: signalling::shutdown::Shutdown, drain: std::time::Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {
            tracing::info!(drain_s = drain.as_secs(), "SIGTERM: draining");
            shutdown.drain(drain);
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: stopping");
            shutdown.stop_now();
            return;
        }
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("second signal: stopping now");
    shutdown.stop_now();
}

fn redact(url: &str) -> String {
    // Hide a password in redis://user:password@host.
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn print_banner(running: &RunningServer, store: &str, data_dir: &std::path::Path) {
    let base = running.base_url();
    let mut out = String::new();
    out.push_str(&format!(
        "Sportello {} — {}\n",
        env!("CARGO_PKG_VERSION"),
        running.state.config.municipality
    ));
    out.push_str(&format!("  listening on {base}/\n"));
    out.push_str(&format!(
        "  WebSocket    {}/api/v1/ws\n",
        base.replacen("http", "ws", 1)
    ));
    out.push_str(&format!("  login        POST {base}/api/v1/login\n"));
    out.push_str(&format!(
        "  health       {base}/healthz   ready: {base}/readyz\n"
    ));
    out.push_str(&format!(
        "  metrics      http://{}/metrics\n",
        running.admin_addr
    ));
    let show = |a: Option<SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
    match running.state.media.local() {
        Some(sfu) => out.push_str(&format!(
            "  media        udp {}   ice-tcp {}\n",
            show(sfu.udp_addr()),
            show(sfu.tcp_addr())
        )),
        None => out.push_str(&format!(
            "  media        on media nodes (role signalling, node {})\n",
            running.state.routing.node
        )),
    }
    out.push_str(&format!("  store        {store}\n"));
    out.push_str(&format!("  data         {}\n", data_dir.display()));
    out.push_str(&format!("  verify page  {base}/verify/\n"));
    let providers: Vec<String> = running
        .state
        .web
        .rp
        .providers()
        .map(|p| p.name.clone())
        .collect();
    out.push_str(&format!(
        "  web portal   {base}/servizi/   sign-in: {}\n",
        if providers.is_empty() {
            "off (configure [web.oidc], docs/web.md)".to_owned()
        } else {
            providers.join(", ")
        }
    ));
    let signer = running.state.issuer.signer().trust_entry();
    if signer.development {
        out.push_str(
            "  signer       DEVELOPMENT KEY: certificates are marked NON VALIDO / NOT VALID \
             (configure [certificates.signer])\n",
        );
    } else {
        out.push_str(&format!("  signer       {}\n", signer.subject));
    }
    let sealing = running.state.issuer.sealing();
    out.push_str(&format!(
        "  seal         PAdES {}, {}\n",
        match (sealing.tsa_url(), sealing.tsa_optional()) {
            (Some(url), false) => format!("B-T (TSA {url})"),
            (Some(url), true) => format!("B-T (TSA {url}; B-B when it fails)"),
            (None, _) => "B-B".to_owned(),
        },
        sealing
            .own_key_subject()
            .unwrap_or_else(|| "with the signer's key".to_owned())
    ));
    if let Some(demo) = &running.demo {
        out.push_str(&format!(
            "\nDemo accounts (random per data directory, also in {}):\n",
            data_dir.join(DEMO_CREDENTIALS_FILE).display()
        ));
        // A load run's hundreds of accounts stay in the file; the banner shows the first few.
        const SHOWN: usize = 5;
        for op in demo.operators.iter().take(SHOWN) {
            let detail = running
                .state
                .directory
                .operator(&op.username)
                .map(|o| {
                    let skills: Vec<String> =
                        o.skills.iter().map(|(s, l)| format!("{s} {l}")).collect();
                    format!(
                        "{}; languages {}; capacity {}",
                        skills.join(", "),
                        o.languages.join(", "),
                        o.capacity
                    )
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "  operator    {:<16} password {}   ({detail})\n",
                op.username, op.password
            ));
        }
        for sup in &demo.supervisors {
            out.push_str(&format!(
                "  supervisor  {:<16} password {}\n",
                sup.username, sup.password
            ));
        }
        for kiosk in demo.kiosks.iter().take(SHOWN) {
            out.push_str(&format!(
                "  kiosk       {:<16} token {}   ({})\n",
                kiosk.id, kiosk.token, kiosk.name
            ));
        }
        let more = (
            demo.operators.len().saturating_sub(SHOWN),
            demo.kiosks.len().saturating_sub(SHOWN),
        );
        if more != (0, 0) {
            out.push_str(&format!(
                "  … and {} more operators and {} more kiosks in the file\n",
                more.0, more.1
            ));
        }
    }
    print!("{out}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // The DTLS stack warns about every TLS extension it does not implement (browsers send several
    // in each handshake): quiet unless the operator asks for it by name.
    let level = if config.log.level.contains("rtc") {
        config.log.level.clone()
    } else {
        format!("{},rtc_dtls=error", config.log.level)
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
