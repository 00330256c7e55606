//! A real OpenID provider for the tests of the web channel: `console-web/tests/oidc-provider.mjs`
//! (the npm package `oidc-provider`, configured like a SPID/CIE OpenID Connect gateway) run by
//! `node` on a free loopback port, stopped when dropped.
//!
//! **What it offers.** One confidential client (`client_secret_basic`), the authorization code
//! flow with PKCE S256 required, scopes `openid profile`, and ID tokens (RS256) that carry
//! `https://attributes.eid.gov.it/fiscal_number` (`TINIT-<fiscal code>`), `given_name`,
//! `family_name`, `nonce` and `acr` (the first requested `acr_values`, else SPID level 1). Its
//! login page is a plain HTML form with no JavaScript and no consent screen: a browser or an HTTP
//! client posts `login=NAME` to sign in as a [`TestAccount`], or the cancel form to end the flow
//! with `access_denied`. [`OidcProvider::sign_in`] and [`OidcProvider::cancel`] do that over HTTP.
//! The script's header documents its URLs and field names.
//!
//! **Any port for the relying party.** A redirect URI given with port 0
//! (`http://127.0.0.1:0/servizi/auth/callback`) accepts that URI on any port of `127.0.0.1`,
//! because a `sportello` under test binds port 0 and learns its port only after it started.
//!
//! **Tampering.** [`OidcProvider::tamper`] makes the next token response's ID token bad in one
//! way ([`Tamper`]): for the relying party's checks of signature, nonce, audience, issuer and
//! expiry.
//!
//! **Failures.** `node` missing, the npm package missing (run `npm ci` in `console-web/tests`),
//! or the process dying while starting: [`OidcProvider::start`] fails with the reason and the
//! tail of node's output. A start that does not answer within 20 s is stopped and tried again on
//! another port, three times at most (node was seen to stall before listening, rarely, on a
//! loaded machine). Starting, watching and stopping the process is testkit's common daemon
//! code (`testkit/src/daemon.rs`).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::daemon::{log_tail, retry_taken_port, wait_ready, Launch, Watched};

/// How long the provider may take to answer its discovery document.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one start may take before it is stopped and tried again on another port: once in a
/// few dozen concurrent starts on a loaded machine, node was seen to stall before listening.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts tried before giving up.
const ATTEMPTS: usize = 3;
/// The log lines a failure report quotes.
const TAIL: usize = 30;
const INSTALL: &str = "install Node.js (apt-get install -y nodejs npm), then run `npm ci` in \
                       console-web/tests (cargo xtask test does both)";
/// The name of the client the provider knows.
pub const CLIENT_ID: &str = "sportello";
/// The claim that carries the fiscal number, as SPID and CIE name it.
pub const FISCAL_NUMBER_CLAIM: &str = "https://attributes.eid.gov.it/fiscal_number";
/// SPID's level 2, the `acr_values` the relying party asks for.
pub const SPID_L2: &str = "https://www.spid.gov.it/SpidL2";

/// A person who can sign in at the test provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAccount {
    /// What to type in the login form's `login` field (also the token's `sub`).
    pub login: String,
    /// The fiscal code, without `TINIT-` (the provider adds it).
    pub fiscal_code: String,
    /// `given_name`.
    pub given_name: String,
    /// `family_name`.
    pub family_name: String,
}

impl TestAccount {
    /// An account.
    pub fn new(login: &str, fiscal_code: &str, given_name: &str, family_name: &str) -> TestAccount {
        TestAccount {
            login: login.to_owned(),
            fiscal_code: fiscal_code.to_owned(),
            given_name: given_name.to_owned(),
            family_name: family_name.to_owned(),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "login": self.login,
            "fiscal_code": self.fiscal_code,
            "given_name": self.given_name,
            "family_name": self.family_name,
        })
    }
}

/// The demo registry's people (`certificates/src/registry/demo.rs`, `cases`) the web tests sign
/// in as:
/// - `luca`: Luca Rossi (`RSSLCU85D12G337O`), with a family: his wife Giulia Conti
///   (`CNTGLI87R45H223S`) and their children, e.g. Matteo Rossi (`RSSMTT19E14G337O`);
/// - `marco`: Marco Galli (`GLLMRC72A18A944W`), outside Luca's family (a stranger to him);
/// - `giuseppe`: Giuseppe Verdi (`VRDGPP80A01H501U`), a valid fiscal code that is not in the
///   registry.
pub fn demo_accounts() -> Vec<TestAccount> {
    vec![
        TestAccount::new("luca", "RSSLCU85D12G337O", "Luca", "Rossi"),
        TestAccount::new("marco", "GLLMRC72A18A944W", "Marco", "Galli"),
        TestAccount::new("giuseppe", "VRDGPP80A01H501U", "Giuseppe", "Verdi"),
    ]
}

/// How [`OidcProvider::tamper`] spoils the next ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// One byte of the signature flipped.
    Signature,
    /// Another nonce, re-signed with the provider's key.
    Nonce,
    /// `aud` = `someone-else`, re-signed.
    Audience,
    /// `iss` = `https://not-the-issuer.example`, re-signed.
    Issuer,
    /// `exp` and `iat` an hour and two in the past, re-signed.
    Expired,
    /// No change (clears a pending mode).
    None,
}

impl Tamper {
    /// The mode's name in `POST /__test/tamper`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tamper::Signature => "signature",
            Tamper::Nonce => "nonce",
            Tamper::Audience => "audience",
            Tamper::Issuer => "issuer",
            Tamper::Expired => "expired",
            Tamper::None => "none",
        }
    }
}

/// The private provider (see the module docs), stopped when dropped.
pub struct OidcProvider {
    daemon: Watched,
    dir: PathBuf,
    port: u16,
    client_secret: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer())
            .field("pid", &self.daemon.pid())
            .finish_non_exhaustive()
    }
}

/// The provider's script, `console-web/tests/oidc-provider.mjs`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web/tests/oidc-provider.mjs")
}

/// Where the script's npm packages are.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web/tests/node_modules/oidc-provider")
}

impl OidcProvider {
    /// Starts the provider with its files (accounts, output) in `dir` (the caller's folder, e.g.
    /// a temporary one that outlives it), the client's one `redirect_uri` (port 0: any port of
    /// `127.0.0.1`, see the module docs) and the `accounts` that may sign in, and waits until its
    /// discovery document answers.
    pub fn start(
        dir: &Path,
        redirect_uri: &str,
        accounts: &[TestAccount],
    ) -> anyhow::Result<OidcProvider> {
        let script = script();
        if !script.is_file() {
            bail!(
                "the test OpenID provider's script {} is missing",
                script.display()
            );
        }
        if !package_dir().is_dir() {
            bail!(
                "the npm package oidc-provider is missing from {}: run `npm ci` in \
                 console-web/tests",
                package_dir().display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let accounts_file = dir.join("oidc-accounts.json");
        let list: Vec<_> = accounts.iter().map(TestAccount::to_json).collect();
        std::fs::write(&accounts_file, serde_json::to_vec_pretty(&list)?)
            .with_context(|| format!("write {}", accounts_file.display()))?;
        let mut secret = [0u8; 24];
        getrandom(&mut secret);
        let client_secret = hex(&secret);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .context("HTTP client for the test OpenID provider")?;
        retry_taken_port("testkit::oidc", ATTEMPTS, || {
            let port = crate::free_port();
            let mut command = Command::new("node");
            command
                .arg(&script)
                .args(["--port", &port.to_string()])
                .args(["--client-id", CLIENT_ID])
                .args(["--client-secret", &client_secret])
                .args(["--redirect-uris", redirect_uri])
                .arg("--accounts")
                .arg(&accounts_file);
            let daemon = Watched::spawn(
                "OpenID provider",
                dir,
                "oidc-provider.log",
                command,
                INSTALL,
            )?;
            let provider = OidcProvider {
                daemon,
                dir: dir.to_owned(),
                port,
                client_secret: client_secret.clone(),
                http: http.clone(),
            };
            match wait_ready(
                ATTEMPT_TIMEOUT.min(START_TIMEOUT),
                Duration::from_millis(50),
                || provider.check(),
                || discovery_answers(port),
            ) {
                Ok(true) => Ok(provider),
                // Retried like a taken port: dropping `provider` stops this one.
                Ok(false) => Err(Launch::PortTaken(format!(
                    "the test OpenID provider (pid {}) does not answer on 127.0.0.1:{port} within \
                     {ATTEMPT_TIMEOUT:?}; its output:\n{}",
                    provider.daemon.pid(),
                    provider.output_tail()
                ))),
                Err(e) if provider.output_tail().contains("EADDRINUSE") => {
                    Err(Launch::PortTaken(format!("{e:#}")))
                }
                Err(e) => Err(Launch::Failed(format!(
                    "the test OpenID provider died while starting: {e:#}"
                ))),
            }
        })
    }

    /// The issuer, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The client's id (`sportello`).
    pub fn client_id(&self) -> &str {
        CLIENT_ID
    }

    /// The client's secret (random per provider).
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// The provider's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The last lines of node's output.
    pub fn output_tail(&self) -> String {
        log_tail(&self.dir.join("oidc-provider.log"), TAIL)
    }

    /// `Ok` while the provider runs; how it ended, with the tail of its output, once it exited.
    pub fn check(&self) -> anyhow::Result<()> {
        self.daemon
            .check(|| format!("its output:\n{}", self.output_tail()))
    }

    /// Makes the next token response's ID token bad per `mode` (once).
    pub async fn tamper(&self, mode: Tamper) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/__test/tamper", self.issuer()))
            .json(&serde_json::json!({ "mode": mode.as_str() }))
            .send()
            .await
            .context("POST /__test/tamper")?;
        if !r.status().is_success() {
            let status = r.status();
            bail!(
                "POST /__test/tamper: {status} {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Drives the provider's side of a sign-in over HTTP, as a browser would: from
    /// `authorize_url` (where the relying party's login redirected, on this provider) through the
    /// login form with `login`, following the provider's redirects with its cookies, to the first
    /// redirect that leaves the provider. Returns that URL: the relying party's callback with
    /// `code`, `state` and `iss` (or `error` when the provider refused the request).
    pub async fn sign_in(&self, authorize_url: &str, login: &str) -> anyhow::Result<String> {
        self.drive(authorize_url, Some(login)).await
    }

    /// Like [`OidcProvider::sign_in`], but presses "Annulla / Cancel" on the login page: the
    /// returned callback URL carries `error=access_denied`.
    pub async fn cancel(&self, authorize_url: &str) -> anyhow::Result<String> {
        self.drive(authorize_url, None).await
    }

    async fn drive(&self, authorize_url: &str, login: Option<&str>) -> anyhow::Result<String> {
        let issuer = self.issuer();
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        let mut url = authorize_url.to_owned();
        let mut form: Option<(String, Vec<(&str, &str)>)> = None;
        for _ in 0..12 {
            if !url.starts_with(&format!("{issuer}/")) {
                return Ok(url);
            }
            let cookie = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let request = match form.take() {
                Some((action, fields)) => self.http.post(&action).form(&fields),
                None => self.http.get(&url),
            };
            let response = request
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .with_context(|| format!("request to the test OpenID provider: {url}"))?;
            for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
                let Some((name, value)) = set
                    .to_str()
                    .ok()
                    .and_then(|s| s.split(';').next())
                    .and_then(|kv| kv.split_once('='))
                else {
                    continue;
                };
                if value.is_empty() {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .context("a redirect without Location from the test OpenID provider")?;
                url = reqwest::Url::parse(&url)?.join(location)?.to_string();
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("the test OpenID provider answered {status} at {url}: {body}");
            }
            let (id, extra) = match login {
                Some(login) => ("login", vec![("login", login)]),
                None => ("cancel", vec![]),
            };
            let action = form_action(&body, id)
                .with_context(|| format!("no form `{id}` on the provider's page {url}: {body}"))?;
            url = reqwest::Url::parse(&url)?.join(&action)?.to_string();
            form = Some((url.clone(), extra));
        }
        bail!("the test OpenID provider's flow did not leave it within 12 steps (at {url})")
    }
}

/// The `action` of the form `<form id="ID" … action="…">` on the login page.
fn form_action(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("<form id=\"{id}\""))?;
    let tag = &html[start..start + html[start..].find('>')?];
    let after = &tag[tag.find("action=\"")? + 8..];
    Some(after[..after.find('"')?].replace("&#38;", "&"))
}

/// Whether `GET /.well-known/openid-configuration` on `port` answers 200.
fn discovery_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /.well-known/openid-configuration HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

fn getrandom(buf: &mut [u8]) {
    // SAFETY: getrandom(2) into a buffer of the given length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, buf.len() as isize, "getrandom");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
