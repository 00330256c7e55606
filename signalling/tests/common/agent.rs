//! The kiosk agent (`sportello-kiosk-agent`) as a separate process for the end-to-end tests, and
//! the fixtures they share: a resident of the demo registry with a PEC address, a scanned image,
//! a real signer whose stamps `sportello verify` accepts.
//! Included with `#[path = "common/agent.rs"] mod agent;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certificates::registry::demo::DemoRegistry;
use testkit::cups::PdfPrinter;
use testkit::softhsm::Card;
use time::{Duration as Days, OffsetDateTime};

/// How long the agent helpers wait for one thing.
const T: Duration = Duration::from_secs(10);

pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("sportello-kiosk-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p kiosk-client` (cargo xtask test builds it)",
        bin.display()
    );
    bin
}

/// A free loopback port (`testkit::free_port`).
pub fn free_port() -> u16 {
    testkit::free_port()
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

/// The kiosk agent as a separate process.
pub struct Agent {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    pub local: String,
    env: Vec<(String, PathBuf)>,
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
        let port = free_port();
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
        let mut env = vec![];
        if let Some(card) = card {
            toml.push_str(&format!("pkcs11_module = {:?}\n", card.module()));
            env.push(("SOFTHSM2_CONF".to_owned(), card.conf().to_path_buf()));
        }
        std::fs::write(&config, toml).unwrap();
        Agent {
            child: None,
            config,
            log: dir.join("agent.log"),
            local: format!("http://127.0.0.1:{port}"),
            env,
        }
    }

    pub fn start(&mut self, fault: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(agent_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match fault {
            Some(f) => cmd.env("SPORTELLO_AGENT_FAULT", f),
            None => cmd.env_remove("SPORTELLO_AGENT_FAULT"),
        };
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Waits until the agent says (`GET /v1/status`) it is connected to the server.
    pub async fn connected(&self) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if let Ok(r) = http.get(format!("{}/v1/status", self.local)).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if v["connected"] == true {
                        return;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not connect\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself (the fault hook), returning its code.
    pub async fn exited(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + T * 3;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return status.code();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not exit\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Hands the PIN to the agent as the kiosk screen would (loopback only), retrying until the
    /// agent waits for it.
    pub async fn pin(&self, call_id: &str, pin: &str) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let r = http
                .post(format!("{}/v1/pin", self.local))
                .json(&serde_json::json!({"call_id": call_id, "pin": pin}))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never took the PIN\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.logs());
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

/// A PNG standing in for a scanned identity document.
pub fn scan_image(dir: &Path) -> PathBuf {
    let path = dir.join("documento.png");
    let img = image::RgbImage::from_fn(320, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    img.save(&path).unwrap();
    path
}
