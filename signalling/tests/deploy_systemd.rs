//! The systemd units of `deploy/systemd/` (the server in each role) and the kiosk agent's unit
//! (`deploy/kiosk-agent/`), checked with systemd's own tool, offline:
//!
//! - `systemd-analyze verify` accepts each unit with no complaint about it, once its `Exec*=`
//!   binary points at one that exists here (the built `sportello`, the built agent or `/bin/true`);
//! - `systemd-analyze security --offline=true` rates each unit at or under the exposure recorded in
//!   [`RECORDED`] (and in `deploy/systemd/README.md`), and the server units `OK` at worst;
//! - the server units' command line is one the binary accepts: the same arguments, with
//!   `check-config` for `serve` and the example configuration, validate;
//! - the drop-in `deploy/systemd/realtime-loops.conf` on the units that run the SFU verifies, lets
//!   the service choose `SCHED_RR` (`sched_setscheduler` allowed, real-time not restricted) and
//!   keeps the exposure `OK`.
//!
//! Needs `systemd-analyze` (Debian's `systemd`; `cargo xtask test` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The exposure each unit reached when it was written, and the most the test accepts (the score
/// plus a small margin, on `systemd-analyze security`'s 0–10 scale). A new unit needs a line here.
const RECORDED: &[(&str, f64, f64)] = &[
    // (unit file, score recorded, threshold)
    ("sportello.service", 1.1, 1.5),
    ("sportello-signalling.service", 1.1, 1.5),
    ("sportello-media.service", 1.1, 1.5),
    ("sportello-kiosk-agent.service", 3.5, 4.0),
];

/// Where each unit expects its binary once installed; the test points these at real files.
const INSTALLED_BINARIES: &[&str] = &["/usr/bin/sportello", "/usr/local/bin/sportello-kiosk-agent"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every unit file the test checks: `deploy/systemd/*.service` and the kiosk agent's.
fn units() -> Vec<PathBuf> {
    let root = workspace();
    let mut units: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/systemd"))
        .expect("deploy/systemd/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "service"))
        .collect();
    units.sort();
    units.push(root.join("deploy/kiosk-agent/sportello-kiosk-agent.service"));
    units
}

/// The binary that stands in for an installed one: the built `sportello`, the built agent when
/// it sits beside it, or `/bin/true` (verify only needs an executable file).
fn stand_in(installed: &str) -> PathBuf {
    let sportello = PathBuf::from(env!("CARGO_BIN_EXE_sportello"));
    match installed.rsplit('/').next() {
        Some("sportello") => sportello,
        Some(name) => {
            let beside = sportello.with_file_name(name);
            if beside.is_file() {
                beside
            } else {
                PathBuf::from("/bin/true")
            }
        }
        None => PathBuf::from("/bin/true"),
    }
}

/// The unit's text with each installed binary path in an `Exec*=` line replaced by its stand-in.
fn rewrite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_string();
        if line.starts_with("Exec") {
            for installed in INSTALLED_BINARIES {
                let with_space = format!("={installed} ");
                if line.contains(&with_space) {
                    let replacement = format!("={} ", stand_in(installed).display());
                    line = line.replace(&with_space, &replacement);
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn systemd_analyze() -> Command {
    let mut command = Command::new("systemd-analyze");
    command
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C.UTF-8");
    command
}

/// Fails with the package to install when `systemd-analyze` is missing.
fn require_systemd_analyze() {
    match systemd_analyze().arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "systemd-analyze --version failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!(
            "systemd-analyze is not available ({error}): install Debian's `systemd` package \
             (apt-get install systemd), or run `cargo xtask test`, which installs it"
        ),
    }
}

/// The overall exposure and its rating from `systemd-analyze security`'s last lines:
/// "→ Overall exposure level for NAME: 1.1 OK 🙂".
fn overall_exposure(stdout: &str) -> Option<(f64, String)> {
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    let mut words = rest.split_whitespace();
    let score = words.next()?.parse().ok()?;
    let rating = words.next()?.to_string();
    Some((score, rating))
}

/// `systemd-analyze verify` of the unit file `copy`: a problem when it fails or says anything
/// about the unit (what it says about other units is printed).
fn verify(copy: &Path, name: &str) -> Option<String> {
    let output = systemd_analyze()
        .args(["verify", "--man=no"])
        .arg(copy)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = copy.file_name().and_then(|f| f.to_str()).unwrap_or(name);
    if !output.status.success() || stderr.lines().any(|l| l.contains(file)) {
        return Some(format!(
            "{name}: systemd-analyze verify ({}):\n{stderr}",
            output.status
        ));
    }
    if !stderr.trim().is_empty() {
        eprintln!("{name}: verify said, about other units:\n{stderr}");
    }
    None
}

#[test]
fn units_verify_and_score_within_the_recorded_exposure() {
    require_systemd_analyze();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut scores = Vec::new();
    let mut problems = Vec::new();

    for unit in units() {
        let name = unit
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a unit file name")
            .to_string();
        let Some(&(_, recorded, threshold)) = RECORDED.iter().find(|(n, _, _)| *n == name) else {
            problems.push(format!(
                "{name}: no recorded exposure; add it to RECORDED and to the README"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&unit).expect("the unit file");
        assert!(
            text.lines().any(|line| line.starts_with("ExecStart=")
                && INSTALLED_BINARIES
                    .iter()
                    .any(|bin| line.starts_with(&format!("ExecStart={bin} ")))),
            "{name}: ExecStart= names none of the installed paths {INSTALLED_BINARIES:?}"
        );
        let copy = dir.path().join(&name);
        std::fs::write(&copy, rewrite(&text)).expect("the unit's copy");

        problems.extend(verify(&copy, &name));

        // security: the overall exposure, at most the threshold (systemd's --threshold counts in
        // tenths of the printed score).
        let tenths = (threshold * 10.0).round() as u32;
        let output = systemd_analyze()
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--threshold={tenths}"))
            .arg(&copy)
            .output()
            .expect("systemd-analyze security");
        let stdout = String::from_utf8_lossy(&output.stdout);
        match overall_exposure(&stdout) {
            None => problems.push(format!(
                "{name}: no overall exposure in systemd-analyze security's output ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )),
            Some((score, rating)) => {
                println!(
                    "{name}: exposure {score:.1} {rating} (recorded {recorded:.1}, threshold \
                     {threshold:.1})"
                );
                if score > threshold || !output.status.success() {
                    problems.push(format!(
                        "{name}: exposure {score:.1} {rating} is over the threshold {threshold:.1} \
                         ({}); the ✗ lines:\n{}",
                        output.status,
                        stdout
                            .lines()
                            .filter(|l| l.starts_with('✗'))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
                let server = text.contains("/usr/bin/sportello ");
                if server && !matches!(rating.as_str(), "OK" | "SAFE") {
                    problems.push(format!("{name}: a server unit rated {rating}, not OK"));
                }
                scores.push((name.clone(), score, rating));
            }
        }
    }

    println!(
        "systemd-analyze over {} units in {:.2?}",
        scores.len(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert_eq!(
        scores.len(),
        RECORDED.len(),
        "every recorded unit was scored"
    );
}

/// The server units' `ExecStart=` arguments are ones `sportello` accepts: run as `check-config`
/// with the example configuration and a scratch data directory (and a Redis URL for the roles that
/// need one; check-config does not connect), they validate.
#[test]
fn server_units_command_lines_are_accepted_by_the_binary() {
    let root = workspace();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut checked = 0;
    for unit in units() {
        let text = std::fs::read_to_string(&unit).expect("the unit file");
        let Some(exec) = text
            .lines()
            .find_map(|line| line.strip_prefix("ExecStart=/usr/bin/sportello "))
        else {
            continue;
        };
        let mut args: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
        assert_eq!(args.first().map(String::as_str), Some("serve"), "{unit:?}");
        args[0] = "check-config".into();
        let mut role = None;
        for i in 1..args.len() {
            match args[i - 1].as_str() {
                "--config" => args[i] = root.join("sportello.example.toml").display().to_string(),
                "--data-dir" => args[i] = dir.path().join("data").display().to_string(),
                "--role" => role = Some(args[i].clone()),
                _ => {}
            }
        }
        let role = role.unwrap_or_else(|| panic!("{unit:?}: ExecStart= names no --role"));
        if role != "all" {
            args.extend(["--redis".into(), "redis://127.0.0.1:1".into()]);
        }
        let output = Command::new(env!("CARGO_BIN_EXE_sportello"))
            .args(&args)
            .output()
            .expect("sportello check-config");
        assert!(
            output.status.success(),
            "{unit:?}: sportello {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "one server unit per role");
}

/// The units the SFU runs in, each with `deploy/systemd/realtime-loops.conf` applied as systemd
/// applies a drop-in (its assignments after the unit's own), pass `verify`, stay `OK` under the
/// threshold, and really open what `[media] loop_priority` needs: without `sched_setscheduler`
/// the server would only log that the priority was refused.
#[test]
fn the_realtime_drop_in_lets_the_media_loops_use_sched_rr() {
    require_systemd_analyze();
    let root = workspace();
    let drop_in = std::fs::read_to_string(root.join("deploy/systemd/realtime-loops.conf"))
        .expect("deploy/systemd/realtime-loops.conf");
    assert!(
        drop_in.contains("LimitRTPRIO=10") && drop_in.contains("LOOP_PRIORITY=10"),
        "the drop-in's rlimit and the priority it sets go together"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut problems = Vec::new();
    for name in ["sportello.service", "sportello-media.service"] {
        let text =
            std::fs::read_to_string(root.join("deploy/systemd").join(name)).expect("the unit file");
        let copy = dir.path().join(name);
        std::fs::write(&copy, format!("{}\n{drop_in}", rewrite(&text))).expect("the merged unit");
        problems.extend(verify(&copy, &format!("{name} + realtime-loops.conf")));
        let output = systemd_analyze()
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&copy)
            .output()
            .expect("systemd-analyze security");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = |key: &str| {
            stdout
                .lines()
                .find(|l| l.contains(key))
                .unwrap_or_default()
                .to_string()
        };
        let filter = line("SystemCallFilter=~@resources");
        if !filter.contains("sched_setscheduler is allowed") {
            problems.push(format!(
                "{name} + drop-in: sched_setscheduler stays filtered: {filter}"
            ));
        }
        let realtime = line("RestrictRealtime=");
        if !realtime.contains("may acquire realtime") {
            problems.push(format!(
                "{name} + drop-in: real-time still restricted: {realtime}"
            ));
        }
        match overall_exposure(&stdout) {
            Some((score, rating)) if score <= 1.5 && rating == "OK" => {
                println!("{name} + realtime-loops.conf: exposure {score:.1} {rating}")
            }
            other => problems.push(format!(
                "{name} + drop-in: exposure {other:?}, not OK ≤ 1.5"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn overall_exposure_is_parsed() {
    let out = "✓ UMask=   Files created by service are accessible only by service's own user\n\n\
               → Overall exposure level for sportello.service: 1.1 OK 🙂\n";
    assert_eq!(overall_exposure(out), Some((1.1, "OK".to_string())));
    assert_eq!(overall_exposure("nothing"), None);
}
