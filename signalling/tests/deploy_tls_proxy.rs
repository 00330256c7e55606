//! The TLS reverse-proxy example, `deploy/nginx/sportello.conf`, working: a real nginx
//! (`testkit::nginx`, Debian's 1.22) runs the file with only its upstream addresses, its ports and
//! its certificate paths replaced, in front of a real `sportello` on loopback, with a certificate
//! issued by a test CA. Through it: an HTTPS page with the server's headers and the proxy's HSTS,
//! plain HTTP redirected to HTTPS, a login, and a WebSocket upgraded and authenticated over WSS by a
//! client that trusts only the test CA.
//!
//! Behind the proxy, with `[limits] trusted_proxies` set to loopback, the client address is the
//! one nginx appends to `X-Forwarded-For`. The test client plays a further proxy in front, sending
//! its own `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for` appends its peer, 127.0.0.1,
//! which is trusted and skipped): two forwarded addresses are throttled apart, both for the login
//! throttle and the per-address WebSocket cap. Without `trusted_proxies`, the same spoofed header
//! changes nothing: every client is the proxy.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::auth;
use serde_json::Value;
use testkit::nginx::Nginx;
use testkit::SportelloProcess;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

/// A test CA and a certificate for `localhost` signed by it: (CA PEM, CA DER, leaf PEM, key PEM).
fn certificates() -> (String, Vec<u8>, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sportello test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (
        ca.pem(),
        ca.der().to_vec(),
        leaf.pem(),
        leaf_key.serialize_pem(),
    )
}

/// A TLS client configuration that trusts only `ca_der`.
fn trusting(ca_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `deploy/nginx/sportello.conf` with what differs on loopback replaced; every replaced text must
/// be there, so the test follows the file and fails when it changes shape.
fn site(dir: &Path, upstream: u16, https: u16, http: u16) -> String {
    let conf = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/sportello.conf"),
    )
    .unwrap();
    let mut conf = conf;
    for (from, to) in [
        (
            "server signalling-a:8080 ".to_owned(),
            format!("server 127.0.0.1:{upstream} "),
        ),
        (
            "server signalling-b:8080 ".to_owned(),
            format!("server 127.0.0.1:{upstream} "),
        ),
        ("listen 80;".to_owned(), format!("listen 127.0.0.1:{http};")),
        (
            "listen 443 ssl;".to_owned(),
            format!("listen 127.0.0.1:{https} ssl;"),
        ),
        (
            "/etc/nginx/tls/fullchain.pem".to_owned(),
            dir.join("fullchain.pem").display().to_string(),
        ),
        (
            "/etc/nginx/tls/privkey.pem".to_owned(),
            dir.join("privkey.pem").display().to_string(),
        ),
    ] {
        assert_eq!(
            conf.matches(from.as_str()).count(),
            1,
            "deploy/nginx/sportello.conf no longer has {from:?} once"
        );
        conf = conf.replace(&from, &to);
    }
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pages_and_a_websocket_through_the_nginx_example() {
    let data = tempfile::tempdir().unwrap();
    // As docs/operations.md says: the proxy is trusted to name the client.
    let server = SportelloProcess::start(
        BIN,
        &["--data-dir".as_ref(), data.path().as_os_str()],
        &[("SPORTELLO_LIMITS__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")],
    );
    let upstream: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let (ca_pem, ca_der, leaf_pem, key_pem) = certificates();
    let (https, http) = (testkit::free_port(), testkit::free_port());
    let nginx = Nginx::start(
        |dir| site(dir, upstream, https, http),
        &[
            ("fullchain.pem", leaf_pem.as_bytes()),
            ("privkey.pem", key_pem.as_bytes()),
        ],
        https,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", ([127, 0, 0, 1], https).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{https}");

    // A page over HTTPS: the server's own headers pass through, the proxy adds HSTS.
    let page = client.get(format!("{base}/kiosk/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", nginx.error_log_tail());
    let headers = page.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        headers.contains_key("content-security-policy"),
        "{headers:?}"
    );
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert!(page.text().await.unwrap().contains("<html"));

    // Plain HTTP only redirects to HTTPS.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{http}/console/"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 301);
    // ($host is the name without the port: behind a real address, 443.)
    assert_eq!(plain.headers()["location"], "https://127.0.0.1/console/");

    // A login through the proxy.
    let creds: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("demo-credentials.json")).unwrap())
            .unwrap();
    let operator = &creds["operators"][0];
    let login: Value = client
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({
            "username": operator["username"], "password": operator["password"]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("a token").to_owned();

    // The WebSocket, upgraded by nginx, over TLS that trusts only the test CA: an operator, and a
    // kiosk with its device token.
    let kiosk_token = creds["kiosks"][0]["token"].as_str().unwrap();
    for (token, role) in [(token.as_str(), "operator"), (kiosk_token, "kiosk")] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https))
            .await
            .unwrap();
        let (mut ws, response) = tokio_tungstenite::client_async_tls_with_config(
            format!("wss://localhost:{https}/api/v1/ws"),
            tcp,
            None,
            Some(tokio_tungstenite::Connector::Rustls(trusting(&ca_der))),
        )
        .await
        .unwrap_or_else(|e| panic!("WSS through nginx: {e}\n{}", nginx.error_log_tail()));
        assert_eq!(response.status(), 101);
        let ok = auth(&mut ws, token).await;
        assert_eq!(ok["type"], "ok", "{ok}");
        assert_eq!(ok["role"], role);
    }

    nginx.check().unwrap();
    let log = nginx.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("GET /api/v1/ws") && l.contains(" 101 ")),
        "no upgraded WebSocket in the access log:\n{log}"
    );
    drop(server);
}

/// A sportello behind the nginx example on loopback: the server (with `envs`), nginx, a client
/// that trusts the test CA, and the HTTPS port.
struct Proxied {
    data: tempfile::TempDir,
    server: SportelloProcess,
    nginx: Nginx,
    client: reqwest::Client,
    ca_der: Vec<u8>,
    https: u16,
}

impl Proxied {
    fn start(envs: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let server =
            SportelloProcess::start(BIN, &["--data-dir".as_ref(), data.path().as_os_str()], envs);
        let upstream: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
        let (ca_pem, ca_der, leaf_pem, key_pem) = certificates();
        let (https, http) = (testkit::free_port(), testkit::free_port());
        let nginx = Nginx::start(
            |dir| site(dir, upstream, https, http),
            &[
                ("fullchain.pem", leaf_pem.as_bytes()),
                ("privkey.pem", key_pem.as_bytes()),
            ],
            https,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("localhost", ([127, 0, 0, 1], https).into())
            .build()
            .unwrap();
        Proxied {
            data,
            server,
            nginx,
            client,
            ca_der,
            https,
        }
    }

    fn operator(&self) -> (String, String) {
        let creds: Value = serde_json::from_slice(
            &std::fs::read(self.data.path().join("demo-credentials.json")).unwrap(),
        )
        .unwrap();
        let operator = &creds["operators"][0];
        (
            operator["username"].as_str().unwrap().to_owned(),
            operator["password"].as_str().unwrap().to_owned(),
        )
    }

    /// A login through nginx, as from `forwarded_for`: the status.
    async fn login(&self, forwarded_for: &str, username: &str, password: &str) -> u16 {
        self.client
            .post(format!("https://localhost:{}/api/v1/login", self.https))
            .header("x-forwarded-for", forwarded_for)
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("login through nginx: {e}\n{}", self.nginx.error_log_tail()))
            .status()
            .as_u16()
    }

    /// A WebSocket upgrade through nginx, as from `forwarded_for`: the socket, or the refusal's
    /// status.
    async fn websocket(
        &self,
        forwarded_for: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        u16,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = format!("wss://localhost:{}/api/v1/ws", self.https)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded_for.parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.https))
            .await
            .unwrap();
        match tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            None,
            Some(tokio_tungstenite::Connector::Rustls(trusting(&self.ca_der))),
        )
        .await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("WSS through nginx: {e}\n{}", self.nginx.error_log_tail()),
        }
    }
}

/// The limits both servers run with: two WebSockets and three failed logins per address.
const SMALL_LIMITS: [(&str, &str); 2] = [
    ("SPORTELLO_LIMITS__WS_PER_ADDRESS", "2"),
    ("SPORTELLO_AUTH__LOGIN_FAILURES_PER_ADDRESS", "3"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_and_each_client_is_throttled_apart() {
    let mut envs = SMALL_LIMITS.to_vec();
    envs.push(("SPORTELLO_LIMITS__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]"));
    let p = Proxied::start(&envs);
    let (user, password) = p.operator();
    let (a, b) = ("198.51.100.1", "198.51.100.2");

    // The login throttle: three failures lock client a out, for every name; b logs in.
    for _ in 0..3 {
        assert_eq!(p.login(a, &user, "wrong").await, 401);
    }
    assert_eq!(p.login(a, &user, &password).await, 429);
    assert_eq!(p.login(a, "someone-else", "wrong").await, 429);
    assert_eq!(p.login(b, &user, &password).await, 200);
    // A further entry in front of a is still a: only the rightmost untrusted address counts.
    assert_eq!(
        p.login(&format!("203.0.113.9, {a}"), &user, &password)
            .await,
        429
    );

    // The WebSocket cap per address: a holds two, a third is refused; b still gets its own.
    let held_a = [p.websocket(a).await.unwrap(), p.websocket(a).await.unwrap()];
    assert_eq!(p.websocket(a).await.err(), Some(429));
    let held_b = p.websocket(b).await.expect("another client's WebSocket");
    // Closing one of a's gives its place back.
    let [first, second] = held_a;
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = p.websocket(a).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed WebSocket gives its place back");
    drop((second, held_b, again));

    p.nginx.check().unwrap();
    drop(p.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_a_spoofed_forwarded_for_changes_nothing() {
    let p = Proxied::start(&SMALL_LIMITS);
    let (user, password) = p.operator();
    let (a, b) = ("198.51.100.1", "198.51.100.2");

    // Every client is nginx's 127.0.0.1, whatever it claims: a's failures lock b out too.
    for _ in 0..3 {
        assert_eq!(p.login(a, &user, "wrong").await, 401);
    }
    assert_eq!(p.login(b, &user, &password).await, 429);

    let _held = [p.websocket(a).await.unwrap(), p.websocket(b).await.unwrap()];
    assert_eq!(p.websocket("203.0.113.9").await.err(), Some(429));

    p.nginx.check().unwrap();
    drop(p.server);
}
