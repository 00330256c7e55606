//! The kiosk agent (`sportello-kiosk-agent`) as a separate process for the end-to-end tests, and
//! the fixtures they share: a resident of the demo registry with a PEC address, a scanned image,
//! a real signer whose stamps `sportello verify` accepts.
//! Included with `#[path = "common/agent.rs"] mod agent;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certificates::registry::demo::DemoRegistry;
use testkit::agent::{AgentProcess, FAULT_ENV};
use testkit::cups::PdfPrinter;
use testkit::softhsm::Card;
use time::{Duration as Days, OffsetDateTime};

/// How long the agent helpers wait for one thing.
const T: Duration = Duration::from_secs(10);

/// The `sportello-kiosk-agent` of this build, `target/<profile>/sportello-kiosk-agent`.
pub fn agent_bin() -> PathBuf {
    testkit::agent::sibling_bin("sportello-kiosk-agent").unwrap_or_else(|e| {
        panic!("{e:#}: run `cargo build -p kiosk-client` (cargo xtask test builds it)")
    })
}

/// Two residents of the demo registry, alive: one with a registered PEC address, one without.
pub fn residents() -> (
    certificates::registry::Person,
    certificates::registry::Person,
) {
    let reg = DemoRegistry::embedded().unwrap();
    let today = OffsetDateTime::now_utc().date();
    let alive: Vec<_> = reg
        .data()
        .people
        .iter()
        .filter(|p| p.death.is_none() && p.residence_on(today).is_some())
        .cloned()
        .collect();
    let with = alive.iter().find(|p| p.pec.is_some()).unwrap().clone();
    let without = alive.iter().find(|p| p.pec.is_none()).unwrap().clone();
    (with, without)
}

/// A resident with a registered PEC address.
pub fn resident() -> certificates::registry::Person {
    residents().0
}

/// The six-digit code in a PEC mail's text.
pub fn pec_code_in(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body}"))
        .to_owned()
}

/// The kiosk agent as a separate process ([`testkit::agent::AgentProcess`]) on a configuration
/// for the real server: a PDF queue, a scan file, a card reader when a card is given.
pub struct Agent {
    process: AgentProcess,
    /// The agent's local API, `http://127.0.0.1:<port>`.
    pub local: String,
}

impl Agent {
    pub fn new(
        dir: &Path,
        server: &str,
        token: &str,
        printer: &PdfPrinter,
        card: Option<&Card>,
        scan: &Path,
    ) -> Agent {
        let port = testkit::free_port();
        let config = dir.join("agent.toml");
        let mut toml = format!(
            "server = {server:?}\ntoken = {:?}\nprinter = {:?}\ncups_server = {:?}\nscan_file = {:?}\n\
             journal_dir = {:?}\nlocal_listen = \"127.0.0.1:{port}\"\nscan_delay_s = 30\n\
             pin_timeout_s = 30\n",
            token,
            printer.name(),
            printer.server(),
            scan,
            dir.join("journal"),
        );
        let mut process =
            AgentProcess::new(agent_bin(), &config, dir.join("agent.log")).local_port(port);
        if let Some(card) = card {
            toml.push_str(&format!("pkcs11_module = {:?}\n", card.module()));
            process = process.env("SOFTHSM2_CONF", card.conf());
        }
        std::fs::write(&config, toml).unwrap();
        Agent {
            local: process.local().to_owned(),
            process,
        }
    }

    /// Starts the agent, with the fault hook `fault` (`SPORTELLO_AGENT_FAULT`) if given.
    pub fn start(&mut self, fault: Option<&str>) {
        let env: Vec<(&str, &str)> = fault.map(|f| (FAULT_ENV, f)).into_iter().collect();
        self.process.start(&env).unwrap();
    }

    /// Waits until the agent says (`GET /v1/status`) it is connected to the server.
    pub async fn connected(&self) {
        if let Err(e) = self.process.wait_connected(T).await {
            panic!("{e:#}");
        }
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits for the process to exit by itself (the fault hook), returning its code.
    pub async fn exited(&mut self) -> Option<i32> {
        match self.process.wait_exit(T * 3).await {
            Ok(status) => status.code(),
            Err(e) => panic!("{e:#}"),
        }
    }

    pub fn logs(&self) -> String {
        self.process.log()
    }

    /// Hands the PIN to the agent as the kiosk screen would (loopback only), retrying until the
    /// agent waits for it.
    pub async fn pin(&self, call_id: &str, pin: &str) {
        if let Err(e) = self.process.pin(call_id, pin, T).await {
            panic!("{e:#}");
        }
    }
}

/// A real signer (not the development key), valid from yesterday for a year: its key and
/// certificate files in `dir`, and a `sportello` configuration file using them (for `serve` and
/// for `verify`).
pub struct RealSigner {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub config: PathBuf,
}

impl RealSigner {
    pub fn create(dir: &Path) -> RealSigner {
        let now = OffsetDateTime::now_utc();
        let (key_pem, cert_pem) = certificates::signer::generate_signer_pem(
            "Ufficiale d'anagrafe (prova)",
            now - Days::days(1),
            now + Days::days(365),
        )
        .unwrap();
        let key = dir.join("signer-key.pem");
        let cert = dir.join("signer-cert.pem");
        std::fs::write(&key, key_pem).unwrap();
        std::fs::write(&cert, cert_pem).unwrap();
        let config = dir.join("sportello.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[certificates.signer]\nkey = {key:?}\ncertificate = {cert:?}\n",
                dir.join("cli-data")
            ),
        )
        .unwrap();
        RealSigner { key, cert, config }
    }

    /// `sportello verify <pdf>` with this signer trusted: asserts it is valid, returns the output.
    pub fn verify(&self, bin: &str, pdf: &Path) -> String {
        let out = Command::new(bin)
            .arg("verify")
            .arg(pdf)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("VALIDO / VALID"), "{text}");
        text
    }
}

/// A PNG standing in for a scanned identity document, written into `dir`
/// ([`testkit::images::scan_file`]).
pub fn scan_image(dir: &Path) -> PathBuf {
    testkit::images::scan_file(dir)
}
