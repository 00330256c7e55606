//! Reading the configuration: defaults, then the TOML file, then `SPORTELLO_…` environment
//! variables, then the flags, and the errors when that fails or the result is not valid.

use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

use super::{Config, FlagOverrides};

/// The prefix of every configuration environment variable. Nested keys use `__`, e.g.
/// `SPORTELLO_WS__HEARTBEAT_S=10` or `SPORTELLO_TLS__CERT=/etc/sportello/cert.pem`.
pub const ENV_PREFIX: &str = "SPORTELLO_";

/// Why configuration could not be loaded or is not valid. `Display` lists every problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sources could not be read or parsed into the configuration struct.
    #[error("cannot read configuration: {0}")]
    Load(String),
    /// The configuration was read but breaks one or more rules.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// Every problem, one per entry.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Load(problem) => vec![problem.clone()],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }
}

/// Loads the configuration from defaults, the optional file, the process environment and the flags,
/// in that order of precedence (later wins), then validates it.
pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
    load_with_env(file, flags, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests use this to stay hermetic).
pub fn load_with_env(
    file: Option<&Path>,
    flags: &FlagOverrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::Load(format!(
                "configuration file {} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    // Figment's Env provider reads the process environment; to keep tests hermetic the variables
    // are turned into a TOML-like dictionary here, with the same `__` nesting rule.
    figment = figment.merge(env_provider(env));
    figment = figment.merge(Serialized::defaults(flags));
    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Load(join_figment_errors(e)))?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn join_figment_errors(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn env_provider(
    env: impl IntoIterator<Item = (String, String)>,
) -> Serialized<figment::value::Dict> {
    use figment::value::{Dict, Value};
    let mut root = Dict::new();
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        // Only keys of this struct are read, so variables meant for other Sportello programs
        // (the kiosk agent, the load test) never make the server refuse to start.
        if !TOP_LEVEL_KEYS.contains(&path[0].as_str()) {
            continue;
        }
        // Values parse like TOML scalars and arrays (`10`, `true`, `[1,2]`); anything else is a string.
        let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
        insert_path(&mut root, &path, value);
    }
    return Serialized::defaults(root);

    fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
        match path {
            [] => {}
            [last] => {
                dict.insert(last.clone(), value);
            }
            [head, rest @ ..] => {
                let entry = dict
                    .entry(head.clone())
                    .or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                if let Value::Dict(_, inner) = entry {
                    insert_path(inner, rest, value);
                }
            }
        }
    }
}

/// The top-level keys of [`Config`], the only ones read from the environment.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "data_dir",
    "redis",
    "tenant",
    "municipality",
    "tls",
    "log",
    "auth",
    "ws",
    "limits",
    "shutdown",
    "queue",
    "certificates",
    "media",
    "identity",
    "mail",
    "demo",
    "operators",
    "supervisors",
    "kiosks",
    "cluster",
    "turn",
    "dispositions",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DemoFlags, NodeRole};
    use std::net::SocketAddr;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_loopback_with_demo_accounts() {
        let config = load_with_env(None, &FlagOverrides::default(), env(&[])).unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            config.admin_listen,
            "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.data_dir, PathBuf::from("./sportello-data"));
        assert_eq!(config.redis, None);
        assert!(config.demo_enabled());
    }

    #[test]
    fn precedence_is_flags_then_env_then_file_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sportello.toml");
        std::fs::write(
            &file,
            r#"
listen = "127.0.0.1:1001"
admin_listen = "127.0.0.1:2001"
data_dir = "/from/file"
tenant = "file"
[ws]
heartbeat_s = 11
kiosk_grace_s = 12
"#,
        )
        .unwrap();
        let vars = env(&[
            ("SPORTELLO_ADMIN_LISTEN", "127.0.0.1:2002"),
            ("SPORTELLO_DATA_DIR", "/from/env"),
            ("SPORTELLO_WS__HEARTBEAT_S", "21"),
            ("SPORTELLO_REDIS", "redis://127.0.0.1:6390/0"),
            ("SPORTELLO_MEDIA__LOOPS", "3"),
            ("SPORTELLO_IDENTITY__PEC_ATTEMPTS", "5"),
            ("SPORTELLO_MAIL__FROM", "anagrafe@example.org"),
            ("SPORTELLO_CLUSTER__ROLE", "signalling"),
            ("SPORTELLO_CLUSTER__NODE_ID", "sig-1"),
            ("SPORTELLO_DEMO__KIOSKS", "12"),
            ("SPORTELLO_DEMO__OPERATORS", "4"),
            ("SPORTELLO_KIOSK_TOKEN", "belongs to the kiosk agent"),
            ("OTHER_VAR", "ignored"),
        ]);
        let flags = FlagOverrides {
            data_dir: Some(PathBuf::from("/from/flag")),
            ..FlagOverrides::default()
        };
        let config = load_with_env(Some(&file), &flags, vars).unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:1001".parse::<SocketAddr>().unwrap(),
            "file"
        );
        assert_eq!(
            config.admin_listen,
            "127.0.0.1:2002".parse::<SocketAddr>().unwrap(),
            "env"
        );
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"), "flag");
        assert_eq!(config.tenant, "file");
        assert_eq!(config.ws.heartbeat_s, 21, "nested env");
        assert_eq!(config.ws.kiosk_grace_s, 12, "nested file");
        assert_eq!(config.ws.operator_grace_s, 30, "default");
        assert_eq!(config.redis.as_deref(), Some("redis://127.0.0.1:6390/0"));
        assert_eq!(
            config.media.loops, 3,
            "every section is read from the environment"
        );
        assert_eq!(config.identity.pec_attempts, 5);
        assert_eq!(config.mail.from, "anagrafe@example.org");
        assert_eq!(config.cluster.role, NodeRole::Signalling);
        assert_eq!(config.cluster.node_id.as_deref(), Some("sig-1"));
        assert_eq!((config.demo.kiosks, config.demo.operators), (12, 4));
    }

    #[test]
    fn every_problem_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            r#"
listen = "0.0.0.0:8080"
tenant = "Bad Tenant"
redis = "http://nope"
[ws]
heartbeat_s = 0
[[operators]]
username = "Maria"
password_hash = "plain"
skills = { anagrafe = 11 }
languages = ["ita"]
capacity = 9
[[kiosks]]
id = "k1"
name = ""
token_hash = "md5:abc"
"#,
        )
        .unwrap();
        let err = load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).unwrap_err();
        let problems = err.problems();
        let expect = [
            "tenant",
            "redis",
            "ws.heartbeat_s",
            "username must be",
            "password_hash",
            "level 11",
            "\"ita\"",
            "capacity 9",
            "name must not be empty",
            "token_hash",
        ];
        for needle in expect {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "no problem mentions {needle:?}: {problems:#?}"
            );
        }
        // Accounts are configured, so demo mode is off and 0.0.0.0 is allowed.
        assert!(!problems.iter().any(|p| p.contains("loopback")));
    }

    #[test]
    fn demo_accounts_are_refused_off_loopback_unless_allowed() {
        let flags = FlagOverrides {
            listen: Some("0.0.0.0:8080".parse::<SocketAddr>().unwrap()),
            ..FlagOverrides::default()
        };
        let err = load_with_env(None, &flags, env(&[])).unwrap_err();
        assert!(err.problems().iter().any(|p| p.contains("loopback")));
        let allowed = FlagOverrides {
            demo: Some(DemoFlags {
                allow_non_loopback: true,
            }),
            ..flags
        };
        assert!(load_with_env(None, &allowed, env(&[])).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typo.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").unwrap();
        let err = load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        std::fs::write(&file, "listen = 5\n").unwrap();
        assert!(load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).is_err());
        let missing = dir.path().join("missing.toml");
        let err = load_with_env(Some(&missing), &FlagOverrides::default(), env(&[])).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn typos_in_the_certificates_section_are_errors() {
        // A misspelt signer key must not fall back silently to the development key.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typo.toml");
        for text in [
            "[certificates.signer]\nkeyy = \"/etc/key.pem\"\n",
            "[certificates]\nverify_ulr = \"https://x/\"\n",
            "[certificates.registry]\ntype = \"http\"\nbase_url = \"https://x\"\ntimeout = 5\n",
        ] {
            std::fs::write(&file, text).unwrap();
            let err = load_with_env(Some(&file), &FlagOverrides::default(), env(&[]));
            assert!(err.is_err(), "{text}");
        }
        std::fs::write(
            &file,
            "[certificates.registry]\ntype = \"http\"\nbase_url = \"https://x\"\ntimeout_ms = 5\n",
        )
        .unwrap();
        assert!(load_with_env(Some(&file), &FlagOverrides::default(), env(&[])).is_ok());
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sportello.example.toml");
        let config = load_with_env(Some(&example), &FlagOverrides::default(), env(&[]));
        assert!(config.is_ok(), "{:?}", config.err().map(|e| e.problems()));
    }
}
