//! `deploy/kubernetes/` (kustomize), checked with the tools of its ecosystem:
//!
//! - `kubectl kustomize deploy/kubernetes` renders it (kubectl 1.32 with kustomize v5.5 here;
//!   Debian's kubectl 1.20, with kustomize v2.0.3, renders the same objects);
//! - every rendered object validates against the Kubernetes schemas with
//!   `kubernetes-validate --strict` (PyPI's, in `<workspace>/target/tools/venv`, put there by
//!   `cargo xtask deps`), which refuses unknown fields (checked on a wrong object first);
//! - the invariants: probes on `/healthz` and `/readyz` on the admin port the command line binds,
//!   `terminationGracePeriodSeconds` ≥ preStop + `[shutdown] drain_s` + 10 s, PodDisruptionBudgets
//!   that select the signalling and media pods, media nodes on the node's network with their
//!   public address from `status.hostIP`, WebSocket timeouts on the Ingress, the configuration
//!   mounted from deploy/config's files, no Secret committed, and every sportello container's
//!   command line accepted by `sportello check-config` with the rendered configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sportello");
/// The Kubernetes version the objects are validated against (besides kubernetes-validate's
/// newest): kubectl's here.
const KUBERNETES_VERSION: &str = "1.32.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn venv_bin(name: &str) -> PathBuf {
    let path = root().join("target/tools/venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run cargo xtask deps (it installs PyPI's kubernetes-validate there)",
        path.display()
    );
    path
}

/// `kubectl kustomize deploy/kubernetes`, as YAML.
fn render() -> Vec<u8> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("deploy/kubernetes"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({e}): run cargo xtask deps (apt-get install kubernetes-client)")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The rendered objects, through the venv's python (kubernetes-validate brings PyYAML).
fn objects(yaml: &[u8]) -> Vec<Value> {
    use std::io::Write as _;
    let mut child = Command::new(venv_bin("python3"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the rendered YAML does not parse");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Runs kubernetes-validate --strict on `file`, for `version` (None: its newest).
fn validate(file: &Path, version: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(venv_bin("kubernetes-validate"));
    cmd.arg("--strict").arg("--no-warn");
    if let Some(version) = version {
        cmd.args(["-k", version]);
    }
    cmd.arg(file).output().unwrap()
}

#[test]
fn kustomize_renders_and_every_object_validates_strictly() {
    let dir = tempfile::tempdir().unwrap();
    // The validator must refuse what is wrong: an unknown field in a Deployment.
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  \
         selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      \
         containers: [{name: c, image: i, probe: {}}]\n",
    )
    .unwrap();
    assert!(
        !validate(&wrong, Some(KUBERNETES_VERSION)).status.success(),
        "kubernetes-validate --strict accepted an unknown field"
    );

    let yaml = render();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &yaml).unwrap();
    for version in [Some(KUBERNETES_VERSION), None] {
        let out = validate(&file, version);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate --strict ({version:?}) failed:\n{report}"
        );
        let passed = report.matches("passed for resource").count();
        eprintln!("kubernetes-validate {version:?}: {passed} objects passed");
    }
    let objects = objects(&yaml);
    let passed = String::from_utf8_lossy(&validate(&file, Some(KUBERNETES_VERSION)).stdout)
        .matches("passed for resource")
        .count();
    assert_eq!(passed, objects.len(), "every object is validated");
    for needed in [
        ("Namespace", "sportello"),
        ("Deployment", "sportello-signalling"),
        ("Service", "sportello-signalling"),
        ("Ingress", "sportello"),
        ("DaemonSet", "sportello-media"),
        ("StatefulSet", "redis"),
        ("StatefulSet", "sentinel"),
        ("DaemonSet", "coturn"),
        ("PodDisruptionBudget", "sportello-signalling"),
        ("PodDisruptionBudget", "sportello-media"),
    ] {
        find(&objects, needed.0, needed.1);
    }
    for o in &objects {
        assert_ne!(
            o["kind"], "Secret",
            "a Secret is committed: {}",
            o["metadata"]
        );
        if o["kind"] != "Namespace" {
            assert_eq!(o["metadata"]["namespace"], "sportello", "{}", o["metadata"]);
        }
    }
}

/// The sportello workloads: (kind, name, pod template).
fn sportello_workloads(objects: &[Value]) -> Vec<(String, String, Value)> {
    objects
        .iter()
        .filter(|o| {
            o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "sportello"
        })
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
                o["spec"]["template"].clone(),
            )
        })
        .collect()
}

/// Expands `$(VAR)` references as the kubelet does, with stand-ins for the downward API.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (key, value) in env {
        out = out.replace(&format!("$({key})"), value);
    }
    out
}

#[test]
fn sportello_pods_probe_drain_and_pass_check_config() {
    let objects = objects(&render());
    let workloads = sportello_workloads(&objects);
    assert_eq!(workloads.len(), 2, "{workloads:?}");
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for name in ["token-secret", "cluster-secret", "turn-secret"] {
        std::fs::write(secrets.join(name), "0123456789abcdef".repeat(4)).unwrap();
    }

    for (kind, name, template) in workloads {
        let spec = &template["spec"];
        let container = &spec["containers"][0];
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let role = args[args.iter().position(|a| a == "--role").unwrap() + 1].clone();

        // The configuration: a file of the ConfigMap generated from deploy/config.
        let config_path = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| Path::new(config_path).starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{name}: {config_path} is not mounted"));
        let volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let map_name = volume["configMap"]["name"].as_str().unwrap();
        assert!(
            map_name.starts_with("sportello-config-"),
            "{name}: {map_name}"
        );
        let map = find(&objects, "ConfigMap", map_name);
        let file_name = Path::new(config_path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let text = map["data"][file_name].as_str().unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(root().join("deploy/config").join(file_name)).unwrap(),
            "{name}: the ConfigMap is not deploy/config/{file_name}"
        );
        let config_file = dir.path().join(format!("{name}-{file_name}"));
        std::fs::write(&config_file, text).unwrap();

        // The environment, with stand-ins for the downward API.
        let mut env = BTreeMap::new();
        for var in container["env"].as_array().unwrap() {
            let key = var["name"].as_str().unwrap().to_owned();
            let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => format!("{name}-x7k2p"),
                Some("status.hostIP") => "10.0.0.21".to_owned(),
                Some(other) => panic!("{name}: unexpected fieldRef {other}"),
                None => expand(var["value"].as_str().unwrap(), &env),
            };
            let value = match value.strip_prefix("/run/secrets/sportello/") {
                Some(file) => secrets.join(file).display().to_string(),
                None => value,
            };
            env.insert(key, value);
        }
        if kind == "DaemonSet" {
            assert_eq!(spec["hostNetwork"], true, "{name}");
            assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet", "{name}");
            let public = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "SPORTELLO_MEDIA__PUBLIC_IP")
                .unwrap_or_else(|| panic!("{name}: no SPORTELLO_MEDIA__PUBLIC_IP"));
            assert_eq!(
                public["valueFrom"]["fieldRef"]["fieldPath"],
                "status.hostIP"
            );
        }

        let mut cmd_args: Vec<String> = args.iter().map(|a| expand(a, &env)).collect();
        assert_eq!(cmd_args[0], "serve", "{name}");
        cmd_args[0] = "check-config".into();
        let at = cmd_args.iter().position(|a| a == "--config").unwrap() + 1;
        cmd_args[at] = config_file.display().to_string();
        let run = |env: &BTreeMap<String, String>| {
            Command::new(BIN)
                .args(&cmd_args)
                .env_clear()
                .envs(env)
                .output()
                .unwrap()
        };
        let out = run(&env);
        // The signalling nodes refuse demo accounts on 0.0.0.0 until signalling.toml has accounts
        // or a trial sets SPORTELLO_DEMO__ALLOW_NON_LOOPBACK: that, and nothing else, may fail.
        let out = if out.status.success() || role != "signalling" {
            out
        } else {
            let problems = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                problems
                    .lines()
                    .skip(1)
                    .all(|l| l.contains("demo accounts are enabled")),
                "{name}: {problems}"
            );
            assert_eq!(env["SPORTELLO_DEMO__ALLOW_NON_LOOPBACK"], "false", "{name}");
            let mut trial = env.clone();
            trial.insert("SPORTELLO_DEMO__ALLOW_NON_LOOPBACK".into(), "true".into());
            run(&trial)
        };
        assert!(
            out.status.success(),
            "{name}: sportello {} failed:\n{}{}",
            cmd_args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let config =
            signalling::config::load_with_env(Some(&config_file), &Default::default(), env.clone())
                .unwrap();
        eprintln!(
            "{name} ({role}): {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );

        // Probes on the admin port that --admin-listen binds.
        let admin = &cmd_args[cmd_args.iter().position(|a| a == "--admin-listen").unwrap() + 1];
        let admin_port: u64 = admin.rsplit(':').next().unwrap().parse().unwrap();
        let port_named = |port: &Value| -> u64 {
            match port {
                Value::Number(n) => n.as_u64().unwrap(),
                Value::String(s) => container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == s.as_str())
                    .unwrap_or_else(|| panic!("{name}: no port {s}"))["containerPort"]
                    .as_u64()
                    .unwrap(),
                other => panic!("{name}: port {other}"),
            }
        };
        for (probe, path) in [
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
            ("startupProbe", "/healthz"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name}: {probe}");
            assert_eq!(port_named(&get["port"]), admin_port, "{name}: {probe} port");
        }

        // terminationGracePeriodSeconds covers preStop and the drain, with a margin.
        let pre_stop: Vec<&str> = container["lifecycle"]["preStop"]["exec"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no preStop"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(pre_stop[0], "sleep", "{name}: {pre_stop:?}");
        let sleep_s: u64 = pre_stop[1].parse().unwrap();
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        let drain_s = config.shutdown.drain_s;
        assert!(
            grace >= sleep_s + drain_s + 10,
            "{name}: terminationGracePeriodSeconds {grace} < preStop {sleep_s} s + drain_s {drain_s} + 10"
        );

        // A PodDisruptionBudget selects these pods.
        let labels = &template["metadata"]["labels"];
        let pdb = objects
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget")
            .find(|o| {
                o["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| labels[k] == *v)
            });
        assert!(
            pdb.is_some(),
            "{name}: no PodDisruptionBudget selects its pods"
        );

        // Hardened: non-root, no privilege escalation, no capabilities, read-only root.
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
        let sc = &container["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
        assert_eq!(
            annotations["prometheus.io/port"],
            admin_port.to_string(),
            "{name}"
        );
    }

    let signalling = find(&objects, "Deployment", "sportello-signalling");
    assert_eq!(signalling["spec"]["replicas"], 2);
    let ingress = find(&objects, "Ingress", "sportello");
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let value = ingress["metadata"]["annotations"]
            [format!("nginx.ingress.kubernetes.io/{timeout}")]
        .as_str()
        .unwrap_or_else(|| panic!("no {timeout}"));
        assert!(value.parse::<u64>().unwrap() >= 300, "{timeout} {value}");
    }
}

#[test]
fn the_prometheus_scrape_jobs_have_the_alerts_job_names() {
    let text = std::fs::read(root().join("deploy/kubernetes/prometheus-scrape.yml")).unwrap();
    let config = &objects(&text)[0];
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["sportello-signalling", "sportello-media"]);
    for job in config["scrape_configs"].as_array().unwrap() {
        let component = job["job_name"]
            .as_str()
            .unwrap()
            .strip_prefix("sportello-")
            .unwrap();
        let keep = &job["relabel_configs"][0];
        assert_eq!(keep["action"], "keep");
        assert_eq!(keep["regex"], component);
    }
}
