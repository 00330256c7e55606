//! `deploy/compose/` and the root `Dockerfile`, checked with the tools of their ecosystem:
//!
//! - `docker-compose config -q` (Debian's docker-compose 1.29) accepts the file, with and without
//!   `.env.example`;
//! - every host path the file mounts exists, and the secret files it names are the ones
//!   `make-secrets.sh` creates (they are never committed);
//! - every sportello service's command line, with its environment and its mounted configuration
//!   files, passes `sportello check-config`; the stop grace period outlasts `[shutdown] drain_s`;
//! - Prometheus scrapes every node's admin port under the jobs `sportello-signalling` and
//!   `sportello-media`, and loads the alert rules from where compose mounts them (`promtool check
//!   config` accepts it, with the rules of deploy/prometheus);
//! - the Dockerfile builds a package and binary that exist, copies every workspace member and only
//!   paths that exist and that `.dockerignore` lets into the build context.
//!
//! No Docker daemon is needed (the test machines have none), so the image itself is not built.
//! The rendered YAML is read through `python3`'s `yaml` module, a dependency of docker-compose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn compose_dir() -> PathBuf {
    root().join("deploy/compose")
}

/// Runs `docker-compose -f deploy/compose/docker-compose.yml [--env-file F] config [extra]`.
fn compose_config(env_file: Option<&Path>, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-f")
        .arg(compose_dir().join("docker-compose.yml"))
        .current_dir(compose_dir());
    if let Some(env_file) = env_file {
        cmd.arg("--env-file").arg(env_file);
    }
    // The host's own variables must not leak into the interpolation.
    for (key, _) in std::env::vars() {
        if key.starts_with("SPORTELLO_") || key.ends_with("_PORT") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("config").args(extra).output().unwrap_or_else(|e| {
        panic!("cannot run docker-compose ({e}): run cargo xtask deps (apt-get install docker-compose)")
    })
}

/// YAML text to JSON, through python3's yaml module (docker-compose's own dependency).
fn yaml_to_json(yaml: &[u8]) -> Value {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with the yaml module, which docker-compose brings)");
    child.stdin.take().unwrap().write_all(yaml).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 could not read the YAML");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The compose file as docker-compose renders it, with `.env.example`.
fn rendered() -> Value {
    let out = compose_config(Some(&compose_dir().join(".env.example")), &[]);
    assert!(
        out.status.success(),
        "docker-compose config failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_to_json(&out.stdout)
}

/// The services built from the repository's Dockerfile.
fn sportello_services(config: &Value) -> BTreeMap<String, Value> {
    config["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect()
}

/// Runs make-secrets.sh into a temporary folder and returns it (secrets in `s/`, TLS in `t/`).
fn made_secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(compose_dir().join("make-secrets.sh"))
        .arg(dir.path().join("s"))
        .arg(dir.path().join("t"))
        .args(["--host", "sportello.test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-secrets.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn docker_compose_config_accepts_the_file() {
    for env_file in [None, Some(compose_dir().join(".env.example"))] {
        let out = compose_config(env_file.as_deref(), &["-q"]);
        assert!(
            out.status.success(),
            "docker-compose config -q (env file {env_file:?}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = rendered();
    let services: BTreeSet<&str> = config["services"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for needed in [
        "redis-master",
        "redis-replica",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "signalling-a",
        "signalling-b",
        "media-a",
        "media-b",
        "nginx",
        "coturn",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains(needed),
            "no service {needed}: {services:?}"
        );
    }
}

#[test]
fn every_mounted_host_path_exists_and_secrets_are_made_not_committed() {
    let config = rendered();
    let mut mounts = 0;
    for (name, service) in config["services"].as_object().unwrap() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            // docker-compose 1.29 renders "SOURCE:TARGET[:MODE]"; a named volume's source has no '/'.
            let text = volume.as_str().expect("short volume syntax");
            let source = text.split(':').next().unwrap();
            if !source.starts_with('/') {
                assert!(
                    config["volumes"].get(source).is_some(),
                    "{name}: volume {source} is not declared"
                );
                continue;
            }
            mounts += 1;
            assert!(
                Path::new(source).exists(),
                "{name} mounts {source}, which does not exist"
            );
            assert!(
                Path::new(source).starts_with(root().join("deploy")),
                "{name} mounts {source}, outside deploy/"
            );
        }
    }
    assert!(mounts >= 10, "only {mounts} bind mounts");

    // The secrets: files under deploy/compose/secrets/, which holds only its .gitignore.
    let secrets_dir = compose_dir().join("secrets");
    let ignore = std::fs::read_to_string(secrets_dir.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    let made = made_secrets();
    let mut named = BTreeSet::new();
    for (name, secret) in config["secrets"].as_object().unwrap() {
        let file = Path::new(secret["file"].as_str().unwrap());
        assert_eq!(
            file.parent().unwrap(),
            secrets_dir,
            "secret {name} is not in secrets/"
        );
        let base = file.file_name().unwrap().to_str().unwrap().to_owned();
        let created = made.path().join("s").join(&base);
        let text = std::fs::read_to_string(&created)
            .unwrap_or_else(|_| panic!("make-secrets.sh does not create {base}"));
        assert!(
            text.trim().len() >= 32,
            "{base} is too short for the server"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&created).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{base}");
        named.insert(base);
    }
    for needed in ["token-secret", "cluster-secret", "turn-secret"] {
        assert!(named.contains(needed), "no compose secret for {needed}");
    }
    if Command::new("openssl").arg("version").output().is_ok() {
        for file in ["fullchain.pem", "privkey.pem"] {
            assert!(made.path().join("t").join(file).is_file(), "tls/{file}");
        }
    }
}

/// Maps a path inside a container to the host file compose puts there (bind mounts and secrets).
fn host_path(service: &Value, config: &Value, secrets: &Path, inside: &str) -> Option<PathBuf> {
    for volume in service["volumes"].as_array().into_iter().flatten() {
        let mut parts = volume.as_str()?.split(':');
        let (source, target) = (parts.next()?, parts.next()?);
        if source.starts_with('/') && target == inside {
            return Some(PathBuf::from(source));
        }
    }
    let name = inside.strip_prefix("/run/secrets/")?;
    let file = config["secrets"][name]["file"].as_str()?;
    Some(secrets.join(Path::new(file).file_name()?))
}

#[test]
fn every_sportello_command_line_passes_check_config() {
    let config = rendered();
    let made = made_secrets();
    let secrets = made.path().join("s");
    let services = sportello_services(&config);
    assert_eq!(services.len(), 4, "{:?}", services.keys());
    for (name, service) in &services {
        let command: Vec<String> = service["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: command is not a list"))
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(command[0], "serve", "{name}: {command:?}");
        // Every path argument that is mounted from the host becomes that host path.
        let mut args = vec!["check-config".to_owned()];
        for arg in &command[1..] {
            args.push(
                host_path(service, &config, &secrets, arg)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| arg.clone()),
            );
        }
        let config_arg = command.iter().position(|a| a == "--config").unwrap() + 1;
        assert!(
            Path::new(&args[config_arg]).starts_with(root().join("deploy/config")),
            "{name}: --config {} is not one of deploy/config's files",
            command[config_arg]
        );
        let mut cmd = Command::new(BIN);
        cmd.args(&args).env_clear().env("PATH", "/usr/bin:/bin");
        for (key, value) in service["environment"].as_object().unwrap() {
            let value = value.as_str().unwrap_or_default();
            let value = host_path(service, &config, &secrets, value)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| value.to_owned());
            cmd.env(key, value);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{name}: sportello {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{name}: {}", String::from_utf8_lossy(&out.stdout).trim());

        // Docker waits stop_grace_period after SIGTERM: more than the drain, with a margin.
        let grace = service["stop_grace_period"].as_str().unwrap();
        let grace_s: u64 = grace.trim_end_matches('s').parse().unwrap();
        let drain_s = drain_s(&root().join(&args[config_arg]));
        assert!(
            grace_s >= drain_s + 10,
            "{name}: stop_grace_period {grace} is not drain_s {drain_s} + 10 s"
        );
        assert_eq!(service["stop_signal"], "SIGTERM", "{name}");
    }
}

/// `[shutdown] drain_s` of a configuration file, as the server reads it.
fn drain_s(file: &Path) -> u64 {
    let env = [("SPORTELLO_REDIS".to_owned(), "redis://r:6379/0".to_owned())];
    signalling::config::load_with_env(Some(file), &Default::default(), env)
        .unwrap_or_else(|e| panic!("{}: {:?}", file.display(), e.problems()))
        .shutdown
        .drain_s
}

#[test]
fn prometheus_scrapes_every_node_with_the_alerts_job_names() {
    let config = rendered();
    let prometheus: Value =
        yaml_to_json(&std::fs::read(compose_dir().join("prometheus.yml")).unwrap());
    assert_eq!(
        prometheus["rule_files"],
        serde_json::json!(["/etc/prometheus/alerts.yml"])
    );
    let mounts: Vec<&str> = config["services"]["prometheus"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let alerts = root().join("deploy/prometheus/alerts.yml");
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with(&format!("{}:/etc/prometheus/alerts.yml", alerts.display()))),
        "{mounts:?}"
    );
    let grafana: Vec<&str> = config["services"]["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (host, inside) in [
        ("deploy/grafana/provisioning", "/etc/grafana/provisioning"),
        ("deploy/grafana/dashboards", "/var/lib/grafana/dashboards"),
    ] {
        let want = format!("{}:{inside}", root().join(host).display());
        assert!(grafana.iter().any(|m| m.starts_with(&want)), "{grafana:?}");
    }

    // promtool accepts the file, with the rule file where compose mounts it from.
    let promtool = [
        root().join("target/tools/bin/promtool"),
        PathBuf::from("/usr/bin/promtool"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .expect("promtool is missing: run cargo xtask deps");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("prometheus.yml");
    let text = std::fs::read_to_string(compose_dir().join("prometheus.yml")).unwrap();
    std::fs::write(
        &copy,
        text.replace("/etc/prometheus/alerts.yml", &alerts.display().to_string()),
    )
    .unwrap();
    let out = Command::new(promtool)
        .args(["check", "config"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut jobs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for job in prometheus["scrape_configs"].as_array().unwrap() {
        let targets = job["static_configs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["targets"].as_array().unwrap())
            .map(|t| t.as_str().unwrap().to_owned());
        jobs.entry(job["job_name"].as_str().unwrap().to_owned())
            .or_default()
            .extend(targets);
    }
    for (name, service) in sportello_services(&config) {
        let command: Vec<&str> = service["command"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let role = command[command.iter().position(|a| *a == "--role").unwrap() + 1];
        let admin = command[command.iter().position(|a| *a == "--admin-listen").unwrap() + 1];
        let port = admin.rsplit(':').next().unwrap();
        let job = format!("sportello-{role}");
        let target = format!("{name}:{port}");
        assert!(
            jobs.get(&job).is_some_and(|t| t.contains(&target)),
            "job {job} does not scrape {target}: {jobs:?}"
        );
    }
}

#[test]
fn the_dockerfile_builds_a_real_binary_from_paths_that_exist() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let metadata = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(metadata.status.success());
    let metadata: Value = serde_json::from_slice(&metadata.stdout).unwrap();

    // The build command names a package and one of its binaries.
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build line");
    let word_after = |flag: &str| {
        let words: Vec<&str> = build.split_whitespace().collect();
        words[words.iter().position(|w| *w == flag).unwrap() + 1].to_owned()
    };
    let (package, bin) = (word_after("-p"), word_after("--bin"));
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    let found = metadata["packages"].as_array().unwrap().iter().any(|p| {
        p["name"] == package.as_str()
            && p["targets"].as_array().unwrap().iter().any(|t| {
                t["name"] == bin.as_str() && t["kind"].as_array().unwrap().contains(&"bin".into())
            })
    });
    assert!(found, "no binary {bin} in package {package}");

    // COPY sources (not --from) exist and are let into the context; every member is copied.
    let mut copied = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        if rest.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let path = root().join(source);
            assert!(
                path.exists(),
                "Dockerfile copies {source}, which does not exist"
            );
            assert!(
                allowed_by_dockerignore(&ignore, source),
                "Dockerfile copies {source}, which .dockerignore leaves out"
            );
            copied.push(path);
        }
    }
    for member in metadata["packages"].as_array().unwrap() {
        let manifest = Path::new(member["manifest_path"].as_str().unwrap());
        let dir = manifest.parent().unwrap();
        assert!(
            copied.iter().any(|c| dir.starts_with(c)),
            "the Dockerfile does not copy the workspace member {}",
            dir.display()
        );
    }
    for needed in [
        "USER 10001",
        "VOLUME",
        "EXPOSE",
        "ENTRYPOINT",
        "debian:bookworm-slim",
    ] {
        assert!(
            dockerfile.contains(needed),
            "the Dockerfile has no {needed}"
        );
    }
    assert!(dockerfile.contains("FROM rust:"), "a rust builder stage");
}

/// Whether `.dockerignore` (a `*` followed by `!path` exceptions, as ours is written) lets `source`
/// into the build context: the last matching rule wins.
fn allowed_by_dockerignore(ignore: &str, source: &str) -> bool {
    let source = source.trim_end_matches('/');
    let mut allowed = true;
    for rule in ignore.lines().map(str::trim) {
        if rule.is_empty() || rule.starts_with('#') {
            continue;
        }
        let (keep, pattern) = match rule.strip_prefix('!') {
            Some(p) => (true, p.trim_end_matches('/')),
            None => (false, rule.trim_end_matches('/')),
        };
        let matches = pattern == "*"
            || source == pattern
            || source.starts_with(&format!("{pattern}/"))
            || (pattern.starts_with(&format!("{source}/")) && keep);
        if matches && !pattern.starts_with("**") {
            allowed = keep;
        }
    }
    allowed
}
