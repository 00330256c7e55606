//! `cargo xtask web-demo`: the web channel to try by hand, in one command.
//!
//! It starts the browser tests' OpenID provider (`console-web/tests/oidc-provider.mjs`, the npm
//! package `oidc-provider` configured like a SPID/CIE gateway) on `127.0.0.1:4444`, writes a
//! configuration under `target/web-demo/` whose `[web.oidc]` points at it, and runs `sportello`
//! (release build) on its embedded defaults plus that section. Open
//! `http://127.0.0.1:8080/servizi/`, press "Entra con SPID", and type one of the logins printed
//! (`luca` has a family in the demo registry; `marco` is someone else; `giuseppe` is not in the
//! registry). Ctrl-C stops both.

use std::path::Path;
use std::process::{Child, Command};

use anyhow::{Context, Result};

const PROVIDER_PORT: u16 = 4444;
const CLIENT_SECRET: &str = "sportello-web-demo-secret";
const ACCOUNTS: &str = r#"[
  {"login": "luca", "fiscal_code": "RSSLCU85D12G337O", "given_name": "Luca", "family_name": "Rossi"},
  {"login": "marco", "fiscal_code": "GLLMRC72A18A944W", "given_name": "Marco", "family_name": "Galli"},
  {"login": "giuseppe", "fiscal_code": "VRDGPP80A01H501U", "given_name": "Giuseppe", "family_name": "Verdi"}
]
"#;

/// Kills the provider when the demo ends, however it ends.
struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the demo until `sportello` exits.
pub fn run(root: &Path) -> Result<()> {
    let dir = root.join("target/web-demo");
    std::fs::create_dir_all(&dir)?;
    let accounts = dir.join("accounts.json");
    std::fs::write(&accounts, ACCOUNTS)?;
    let secret = dir.join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET)?;
    let issuer = format!("http://127.0.0.1:{PROVIDER_PORT}");
    let config = dir.join("sportello.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo xtask web-demo`.\n\
             data_dir = {data:?}\n\n\
             [[web.oidc]]\n\
             name = \"spid\"\n\
             label = \"SPID\"\n\
             issuer = \"{issuer}\"\n\
             client_id = \"sportello\"\n\
             client_secret_file = {secret:?}\n\
             acr_values = \"https://www.spid.gov.it/SpidL2\"\n",
            data = dir.join("data"),
            secret = secret,
        ),
    )?;
    let provider = Provider(
        Command::new("node")
            .arg(root.join("console-web/tests/oidc-provider.mjs"))
            .args(["--port", &PROVIDER_PORT.to_string(), "--issuer", &issuer])
            .args(["--client-id", "sportello", "--client-secret", CLIENT_SECRET])
            .args([
                "--redirect-uris",
                "http://127.0.0.1:8080/servizi/auth/callback",
            ])
            .arg("--accounts")
            .arg(&accounts)
            .spawn()
            .context("cannot run node (install nodejs)")?,
    );
    eprintln!(
        "xtask: test OpenID provider on {issuer} (logins: luca, marco, giuseppe)\n\
         xtask: the portal will be at http://127.0.0.1:8080/servizi/"
    );
    let status = Command::new("cargo")
        .args([
            "run",
            "--release",
            "-p",
            "signalling",
            "--bin",
            "sportello",
            "--",
        ])
        .arg("--config")
        .arg(&config)
        .status()
        .context("cannot run cargo")?;
    drop(provider);
    anyhow::ensure!(status.success(), "sportello exited with {status}");
    Ok(())
}
