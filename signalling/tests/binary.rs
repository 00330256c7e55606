//! The `sportello` binary as a newcomer runs it: start on embedded defaults, read the banner,
//! answer health, readiness and a demo login; `check-config`, `hash-password`, `hash-token`;
//! SIGTERM drains and exits cleanly, SIGINT stops at once.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

struct Proc {
    child: Child,
    banner: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary in `dir` (as working directory, so the default ./sportello-data lands there),
/// reads its banner until the last demo kiosk line.
fn start(dir: &std::path::Path, extra: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let mut kiosks = 0;
    while kiosks < 3 {
        let line = lines.next().expect("banner line").unwrap();
        if line.trim_start().starts_with("kiosk ") {
            kiosks += 1;
        }
        banner.push(line);
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, banner }
}

fn banner_value<'a>(banner: &'a [String], prefix: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {banner:#?}"))
        .trim()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn runs_on_embedded_defaults_and_answers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start(dir.path(), &[]);
    let base = banner_value(&proc.banner, "listening on")
        .trim_end_matches('/')
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert!(proc.banner.iter().any(|l| l.contains("in-memory")));

    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The banner's demo credentials and the file agree, and they log in.
    let creds: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("sportello-data/demo-credentials.json")).unwrap(),
    )
    .unwrap();
    let op = &creds["operators"][0];
    let username = op["username"].as_str().unwrap();
    let password = op["password"].as_str().unwrap();
    assert!(proc
        .banner
        .iter()
        .any(|l| l.contains(username) && l.contains(password)));
    let res = client
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // SIGTERM drains (no sessions open, so at once) and exits 0.
    signal(&proc.child, "TERM");
    let status = wait_exit(&mut proc.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");

    // A restart on the same data directory keeps the credentials.
    let proc2 = start(dir.path(), &[]);
    assert!(proc2
        .banner
        .iter()
        .any(|l| l.contains(username) && l.contains(password)));
}

#[tokio::test]
async fn sigint_stops_at_once_even_with_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = start(dir.path(), &[]);
    let base = banner_value(&proc.banner, "listening on")
        .trim_end_matches('/')
        .to_owned();
    let ws_url = format!("{}/api/v1/ws", base.replacen("http", "ws", 1));
    let (_ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    signal(&proc.child, "INT");
    let status = wait_exit(&mut proc.child, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

#[test]
fn demo_accounts_are_refused_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(stderr.contains("--allow-demo-on-network"), "{stderr}");
}

#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "tenant = \"NO SPACES\"\n[ws]\nheartbeat_s = 0\n[auth]\ntoken_ttl_s = 1\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["tenant", "ws.heartbeat_s", "auth.token_ttl_s"] {
        assert!(stderr.contains(needle), "{needle} missing in {stderr}");
    }

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../sportello.example.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hash_commands_produce_configuration_values() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3greta\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert!(signalling::accounts::verify_password_hash(
        "s3greta",
        hash.trim()
    ));

    let out = Command::new(BIN)
        .args(["hash-token", "--new"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .trim();
    assert!(text.contains(&signalling::accounts::hash_token(token)));
}

#[tokio::test]
async fn a_configured_deployment_without_demo_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sportello.toml");
    let hash = signalling::accounts::hash_password("passw0rd-lunga");
    let token_hash = signalling::accounts::hash_token("kiosk-device-token-123");
    std::fs::write(
        &file,
        format!(
            r#"
[[operators]]
username = "op1"
password_hash = "{hash}"
skills = {{ anagrafe = 5 }}
languages = ["it"]
capacity = 2
[[kiosks]]
id = "k1"
name = "Chiosco 1"
token_hash = "{token_hash}"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&file)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        assert!(!line.contains("Demo accounts"));
        if let Some(rest) = line.trim_start().strip_prefix("listening on") {
            base = Some(rest.trim().trim_end_matches('/').to_owned());
        }
        if line.trim_start().starts_with("data") {
            break;
        }
    }
    let base = base.unwrap();
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": "op1", "password": "passw0rd-lunga"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!dir
        .path()
        .join("sportello-data/demo-credentials.json")
        .exists());
    let _ = child.kill();
    let _ = child.wait();
}
