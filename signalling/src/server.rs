//! Starting and stopping the server: binds the public and admin listeners (TLS when configured),
//! runs the background tasks, and shuts down gracefully on request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::accounts::{directory_for, DemoCredentials};
use crate::config::Config;
use crate::limits::{HeadDeadline, LimitAcceptor};
use crate::metrics::Metrics;
use crate::routing::Routing;
use crate::sessions::Graces;
use crate::shutdown::{left_running, Phase, Shutdown};
use crate::state::{AppState, SessionHub};
use crate::tokens::{TokenIssuer, TOKEN_SECRET_FILE};

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the public listener is bound.
    pub addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    /// Whether the public listener speaks TLS.
    pub tls: bool,
    /// Demo credentials, when demo accounts are on.
    pub demo: Option<DemoCredentials>,
    /// The shared state (tests inspect it).
    pub state: AppState,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// The public base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The shutdown signal.
    pub fn shutdown(&self) -> &Shutdown {
        &self.state.shutdown
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task failed")?
    }
}

/// Builds the state, binds the listeners and starts serving. Returns once the listeners are bound,
/// so callers (tests, the binary) know the real ports.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    crate::datadir::ensure_dir(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let secret_file = config
        .auth
        .token_secret_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(TOKEN_SECRET_FILE));
    let tokens =
        TokenIssuer::load_or_create(&secret_file, config.auth.token_ttl_s, &config.tenant)?
            .with_access_ttl(config.auth.access_ttl_s);
    let directory_config = config.clone();
    let (directory, demo) = tokio::task::spawn_blocking(move || directory_for(&directory_config))
        .await
        .context("account set-up panicked")??;

    let tls = match &config.tls {
        Some(tls) => Some(load_tls(&tls.cert, &tls.key)?),
        None => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "serving plain HTTP on a non-loopback address: configure [tls] or put a TLS proxy in front"
        );
    }

    let public = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    public.set_nonblocking(true)?;
    let admin = std::net::TcpListener::bind(config.admin_listen)
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    admin.set_nonblocking(true)?;
    let addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;

    let issuer_data_dir = config.data_dir.clone();
    let issuer_config = config.certificates.clone();
    let issuer = tokio::task::spawn_blocking(move || {
        certificates::Issuer::open(
            &issuer_data_dir,
            &issuer_config,
            time::OffsetDateTime::now_utc(),
        )
    })
    .await
    .context("certificate set-up panicked")?
    .context(
        "cannot open the certificates service (registry, signer key, seal key and timestamp \
         authority, audit log)",
    )?;
    if issuer.signer().trust_entry().development {
        tracing::warn!(
            "no [certificates.signer] configured: stamping with the development key; \
             every certificate says it is not valid"
        );
    }
    let metrics = Metrics::new();
    let nofile = crate::limits::raise_nofile();
    let limits = Arc::new(crate::limits::Limits::new(
        &config.limits,
        nofile,
        &metrics.registry,
    ));
    tracing::info!(
        nofile = ?nofile,
        public_connections = limits.public.open_cap(),
        "file-descriptor limit"
    );
    let mut routing = Routing::open(&config, &metrics.registry).await?;
    let history = crate::reports::open(&config, &metrics.registry).await?;
    routing.outcomes.attach(history.clone());
    {
        let info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("sportello_node_info", "This node's role and id (always 1)."),
            &["role", "node"],
        )?;
        metrics.registry.register(Box::new(info.clone()))?;
        info.with_label_values(&[config.cluster.role.as_str(), routing.node.as_str()])
            .set(1);
    }
    let media_config = config
        .media
        .sfu_config(config.listen)
        .map_err(|e| anyhow::anyhow!(e))?;
    let (media, media_events) = match config.cluster.role {
        crate::config::NodeRole::Signalling => {
            let secret = crate::media_node::load_secret(&config)?;
            let cluster = Arc::new(crate::calls::placement::Cluster::new(
                secret,
                config.cluster.heartbeat_ms,
                &metrics.registry,
            )?);
            (
                crate::calls::media::MediaPlane::with_backend(
                    crate::calls::media::Backend::Remote(cluster),
                ),
                None,
            )
        }
        _ => {
            let (sfu, events) = sfu::Sfu::start(media_config, Some(&metrics.registry))
                .await
                .context("cannot start the media plane (check media.udp / media.tcp)")?;
            config.media.apply_loop_settings(&sfu).await;
            (crate::calls::media::MediaPlane::new(sfu), Some(events))
        }
    };
    let incall = in_call(&config, &routing).await?;
    let login = crate::login::LoginGuard::new(&config.auth);
    let web = {
        let (shared, tenant) = incall.store().shared();
        crate::web::WebChannel::new(&config.web, shared.clone(), tenant.clone())
            .context("cannot set up the web channel ([web])")?
    };
    let state = AppState {
        incall: Arc::new(incall),
        sessions: Arc::new(SessionHub::with_per_principal(
            Graces {
                kiosk: Duration::from_secs(config.ws.kiosk_grace_s),
                operator: Duration::from_secs(config.ws.operator_grace_s),
                supervisor: Duration::from_secs(config.ws.supervisor_grace_s),
            },
            config.limits.sessions_per_principal as usize,
        )),
        config: Arc::new(config),
        directory: Arc::new(directory),
        tokens: Arc::new(tokens),
        metrics,
        shutdown: Shutdown::new(),
        ws_tasks: TaskTracker::new(),
        routing,
        events: Arc::new(crate::calls::hub::EventHub::new()),
        issuer: Arc::new(issuer),
        media: Arc::new(media),
        login: Arc::new(login),
        limits,
        revocations: Arc::default(),
        web: Arc::new(web),
    };

    // Subscribe before serving, so no batch committed by a request can be missed.
    let effects = state
        .routing
        .queue
        .subscribe(&state.routing.tenant)
        .await
        .context("cannot subscribe to queue events")?;
    if matches!(state.routing.queue.store(), queue::AnyStore::Redis(_)) {
        // Other nodes may hold the sessions an event here is for, and the other way round.
        if let Some(rx) = state.events.connect_bus() {
            tokio::spawn(crate::calls::bus::run_publisher(state.clone(), rx));
        }
        tokio::spawn(crate::calls::bus::run_listener(state.clone()));
    }
    if let Some(events) = media_events {
        tokio::spawn(crate::calls::media::run_events(state.clone(), events));
    }
    if let Some(cluster) = state.media.cluster() {
        tokio::spawn(crate::calls::placement::run(state.clone(), cluster.clone()));
    }
    tokio::spawn(crate::calls::incall::run_resends(state.clone()));
    tokio::spawn(crate::calls::live::run(state.clone()));
    tokio::spawn(crate::revocation::run(state.clone()));
    tokio::spawn(crate::reports::run_purge(
        history,
        state.config.history.clone(),
        state.shutdown.clone(),
    ));
    let task = tokio::spawn(serve(state.clone(), public, admin, tls.clone(), effects));
    Ok(RunningServer {
        addr,
        admin_addr,
        tls: tls.is_some(),
        demo,
        state,
        task,
    })
}

/// The in-call actions' dependencies: card CAs, the mailer and the documents folder.
async fn in_call(
    config: &Config,
    routing: &Routing,
) -> anyhow::Result<crate::calls::incall::InCall> {
    let verifier = match &config.identity.ca_bundle {
        Some(path) => {
            let path = path.clone();
            let v = tokio::task::spawn_blocking(move || {
                certificates::identity::CardVerifier::from_file(&path)
            })
            .await?
            .map_err(|e| anyhow::anyhow!("identity.ca_bundle: {e}"))?;
            tracing::info!(cas = v.len(), "CIE/CNS identification enabled");
            Some(v)
        }
        None => {
            tracing::info!("CIE/CNS identification disabled: no identity.ca_bundle");
            None
        }
    };
    let mailer = match &config.mail.smtp_url {
        Some(url) => Some(
            crate::mail::Mailer::new(url, &config.mail.from, &config.municipality)
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        None => {
            tracing::info!("PEC identification disabled: no mail.smtp_url");
            None
        }
    };
    let i = &config.identity;
    let limits = crate::calls::incall::PecLimits {
        ttl: Duration::from_secs(i.pec_code_ttl_s),
        attempts: i.pec_attempts,
        resend: Duration::from_secs(i.pec_resend_s),
        per_hour: i.pec_per_hour,
    };
    let data_dir = config.data_dir.clone();
    let store =
        crate::calls::incall::InCallStore::new(routing.shared.clone(), routing.tenant.clone());
    let node = routing.node.to_string();
    tokio::task::spawn_blocking(move || {
        crate::calls::incall::InCall::new(store, node, limits, verifier, mailer, &data_dir)
    })
    .await?
    .context("cannot open the print jobs folder in the data directory")
}

async fn serve(
    state: AppState,
    public: std::net::TcpListener,
    admin: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    effects: queue::EffectReceiver,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let limits = state.limits.clone();
    let app = crate::http::app(state.clone())
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .into_make_service_with_connect_info::<SocketAddr>();
    // Every connection is counted per address and in all (refused past the caps), and must send a
    // whole request head within the header timeout; see `limits`.
    let counted = LimitAcceptor::new(limits.public.clone(), tls.is_none());
    let public_task = match tls {
        Some(tls) => {
            let tls = RustlsAcceptor::new(tls)
                .handshake_timeout(limits.header_timeout)
                .acceptor(counted);
            let mut server = axum_server::from_tcp(public)
                .acceptor(HeadDeadline::new(tls, limits.header_timeout))
                .handle(handle.clone());
            configure_http(server.http_builder(), limits.header_timeout);
            tokio::spawn(server.serve(app))
        }
        None => {
            let mut server = axum_server::from_tcp(public)
                .acceptor(HeadDeadline::new(counted, limits.header_timeout))
                .handle(handle.clone());
            configure_http(server.http_builder(), limits.header_timeout);
            tokio::spawn(server.serve(app))
        }
    };

    let mut admin_phase = state.shutdown.subscribe();
    let admin_handle = axum_server::Handle::new();
    let admin_app = crate::http::admin(state.clone())
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut admin_server = axum_server::from_tcp(admin)
        .acceptor(HeadDeadline::new(
            LimitAcceptor::new(limits.admin.clone(), true),
            limits.header_timeout,
        ))
        .handle(admin_handle.clone());
    configure_http(admin_server.http_builder(), limits.header_timeout);
    let admin_task = tokio::spawn(admin_server.serve(admin_app));
    // The admin listener stays up while draining so /readyz can say "not ready".
    tokio::spawn(async move {
        let _ = admin_phase.wait_for(|p| *p == Phase::Stopping).await;
        admin_handle.graceful_shutdown(Some(Duration::from_secs(1)));
    });

    let reaper = tokio::spawn(reap_sessions(state.clone()));
    let routing = tokio::spawn(state.routing.clone().run(state.shutdown.clone()));
    let delivery = tokio::spawn(crate::calls::deliver(state.clone(), effects));
    let snapshots = tokio::spawn(crate::calls::push_metrics(state.clone()));

    let mut phase_rx = state.shutdown.subscribe();
    let phase = left_running(&mut phase_rx).await;
    match phase {
        Phase::Draining { deadline } => {
            let grace = deadline.saturating_duration_since(Instant::now());
            tracing::info!(grace_s = grace.as_secs(), "draining: no new connections");
            handle.graceful_shutdown(Some(grace));
            state.ws_tasks.close();
            // Wait for the sessions to finish, for the deadline, or for a request to stop now.
            tokio::select! {
                _ = state.ws_tasks.wait() => {}
                _ = phase_rx.wait_for(|p| *p == Phase::Stopping) => {}
            }
            // Sockets close at the deadline; give them a moment to send their close frames.
            let _ = tokio::time::timeout(Duration::from_secs(1), state.ws_tasks.wait()).await;
        }
        Phase::Stopping | Phase::Running => {
            tracing::info!("stopping now");
            handle.shutdown();
            state.ws_tasks.close();
            let _ = tokio::time::timeout(Duration::from_secs(1), state.ws_tasks.wait()).await;
        }
    }
    state.shutdown.stop_now();
    reaper.abort();
    delivery.abort();
    snapshots.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), routing).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), public_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    if let Some(sink) = state.routing.outcomes.sink() {
        // What is still in the outbox is written at the next start.
        if !sink.history().flush(Duration::from_secs(3)).await {
            tracing::warn!("call history not fully written; kept in the outbox for the next start");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// HTTP/1 settings of both listeners: hyper's header timeout (with the timer it needs) bounds the
/// wait for each request head after the first on a kept-alive connection.
fn configure_http(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
}

/// Expires detached sessions past their grace period, once a second. When a principal's last
/// session on this node expires, the protocol's rules for a lost kiosk or operator apply.
async fn reap_sessions(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for expired in state.sessions.expire(Instant::now()) {
            tracing::info!(
                session = %expired.session_id,
                principal = %expired.principal.id,
                role = expired.principal.role.as_str(),
                "session expired after its grace period"
            );
            if !state.sessions.has_principal(&expired.principal) {
                tokio::spawn(crate::calls::principal_lost(
                    state.clone(),
                    expired.principal,
                ));
            }
        }
    }
}

/// Loads a PEM certificate chain and key into a rustls configuration (ring provider, HTTP/1.1 so
/// that WebSockets upgrade on the same port).
pub fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<RustlsConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{} is not a PEM private key", key.display()))?
        .with_context(|| format!("{} holds no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(server_config)))
}
