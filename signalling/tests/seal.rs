//! The seal as the `sportello` binary configures it (`[certificates.seal]`): `certificate issue`
//! with a real timestamp authority (`testkit::tsa`) writes a PAdES B-T PDF, which `sportello
//! verify` reports with its time stamp; a bad `[certificates.seal]` stops start-up with the
//! reason.
//!
//! Needs `openssl` (the test TSA).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
const LUCA_ROSSI: &str = "RSSLCU85D12G337O";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[test]
fn the_cli_seals_pades_b_t_and_verify_reports_the_time_stamp() {
    let tsa = testkit::tsa::Tsa::start().expect("a test TSA");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sportello.toml");
    std::fs::write(
        &config,
        format!(
            "[certificates.seal]\ntsa_url = {:?}\ntsa_ca_file = {}\n",
            tsa.url(),
            toml_path(&tsa.ca_file())
        ),
    )
    .unwrap();
    let pdf = dir.path().join("residenza.pdf");
    let issued = Command::new(BIN)
        .args([
            "certificate",
            "issue",
            "--kind",
            "residenza",
            "--fiscal-code",
            LUCA_ROSSI,
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--out")
        .arg(&pdf)
        .output()
        .unwrap();
    assert!(issued.status.success(), "{}", text(&issued));
    assert_eq!(tsa.served(), 1);

    let verified = Command::new(BIN)
        .arg("verify")
        .arg(&pdf)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let report = text(&verified);
    assert!(report.contains("PAdES seal valid"), "{report}");
    assert!(report.contains("livello / level B-T"), "{report}");
    assert!(
        report.contains("Marca temporale valida / time stamp valid"),
        "{report}"
    );
    assert!(report.contains(testkit::tsa::TSA_NAME), "{report}");

    // A verifier that trusts another TSA root says the time stamp does not verify.
    let other = testkit::tsa::Tsa::start().unwrap();
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        format!(
            "[certificates.seal]\ntsa_url = {:?}\ntsa_ca_file = {}\n",
            other.url(),
            toml_path(&other.ca_file())
        ),
    )
    .unwrap();
    let verified = Command::new(BIN)
        .arg("verify")
        .arg(&pdf)
        .arg("--config")
        .arg(&strict)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let report = text(&verified);
    assert!(!verified.status.success(), "{report}");
    assert!(
        report.contains("Marca temporale NON valida / time stamp NOT valid"),
        "{report}"
    );
}

/// Runs `sportello` (serve) with `config` and returns its output once it exits; a server that
/// keeps running is killed and the test fails.
fn serve_until_exit(dir: &Path, config: &Path) -> Output {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "sportello started with a bad [certificates.seal]: {}",
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_seal_configuration_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sportello.toml");
    let cases = [
        (
            "[certificates.seal]\nkey_file = \"/etc/sportello/seal.key\"\n".to_owned(),
            "con key_file configurare anche certificate",
        ),
        (
            "[certificates.seal]\ntsa_url = \"https://tsa.example/\"\ntsa_policy = \"policy\"\n"
                .to_owned(),
            "tsa_policy",
        ),
        (
            "[certificates.seal]\ntsa_optional = true\n".to_owned(),
            "richiedono tsa_url",
        ),
        (
            format!(
                "[certificates.seal]\ntsa_url = \"https://tsa.example/\"\ntsa_ca_file = {}\n",
                toml_path(&dir.path().join("missing-ca.pem"))
            ),
            "tsa_ca_file",
        ),
    ];
    for (toml, reason) in cases {
        std::fs::write(&config, &toml).unwrap();
        let out = serve_until_exit(dir.path(), &config);
        let said = text(&out);
        assert!(!out.status.success(), "{toml}: {said}");
        assert!(said.contains("[certificates.seal]"), "{toml}: {said}");
        assert!(said.contains(reason), "{toml}: {said}");
        // `check-config` says the same, without starting.
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{toml}: {said}");
        assert!(said.contains("certificates.seal"), "{toml}: {said}");
        assert!(said.contains(reason), "{toml}: {said}");
    }
    // A key that does not match its certificate is found only by opening it: at start.
    let make = |name: &str| {
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(dir.path().join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.path().join(format!("{name}.pem")))
            .output()
            .expect("openssl runs");
        assert!(made.status.success(), "{}", text(&made));
    };
    make("seal");
    make("other");
    let (key, other) = (dir.path().join("seal.key"), dir.path().join("other.pem"));
    std::fs::write(
        &config,
        format!(
            "[certificates.seal]\nkey_file = {}\ncertificate = {}\n",
            toml_path(&key),
            toml_path(&other)
        ),
    )
    .unwrap();
    let out = serve_until_exit(dir.path(), &config);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("[certificates.seal]"), "{said}");
    assert!(said.contains("non corrisponde al certificato"), "{said}");
}
