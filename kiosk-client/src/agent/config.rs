//! The agent's configuration: a TOML file (`/etc/sportello/kiosk-agent.toml`), then
//! `SPORTELLO_AGENT_<FIELD>` environment variables for some fields, then [`AgentConfig::validate`].
//! Unknown keys are refused, so a typo is an error rather than a silently ignored setting.
//!
//! See `docs/kiosk-agent.md` and `deploy/kiosk-agent/agent.example.toml` for every field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use protocol::Capability;
use serde::Deserialize;

use super::cups::valid_printer_name;

/// The default journal folder (systemd's `StateDirectory=sportello-kiosk-agent`).
pub const DEFAULT_JOURNAL_DIR: &str = "/var/lib/sportello-kiosk-agent";

/// The default local endpoint.
pub const DEFAULT_LOCAL_LISTEN: &str = "127.0.0.1:7480";

/// The image format asked of `scanimage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanFormat {
    /// `--format=png` (lossless; large for colour A4).
    #[default]
    Png,
    /// `--format=jpeg` (much smaller; needs sane-utils ≥ 1.0.27).
    Jpeg,
}

impl ScanFormat {
    /// The `scanimage --format` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanFormat::Png => "png",
            ScanFormat::Jpeg => "jpeg",
        }
    }
}

/// The kiosk agent's configuration. Every field is documented in `docs/kiosk-agent.md`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The server's base URL (`https://sportello.example.it`, `http://127.0.0.1:8080`); the
    /// WebSocket endpoint and the HTTP API are derived from it.
    pub server: String,
    /// The kiosk's device token. Prefer `token_file` (or `SPORTELLO_AGENT_TOKEN`).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the device token (surrounding whitespace ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for an `https` server, besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The CUPS queue to print on. Absent: the agent declares no `printer` capability.
    #[serde(default)]
    pub printer: Option<String>,
    /// The CUPS scheduler (`host[:port]` or a domain socket path). Default: `CUPS_SERVER`, else
    /// `/run/cups/cups.sock`, else `localhost:631`.
    #[serde(default)]
    pub cups_server: Option<String>,
    /// The PKCS#11 module of the card reader (the CIE/CNS middleware, or SoftHSM2 in tests).
    /// Absent: no `card_reader` capability.
    #[serde(default)]
    pub pkcs11_module: Option<PathBuf>,
    /// The SANE device to scan with (`scanimage -d <device>`; list them with `scanimage -L`).
    #[serde(default)]
    pub scanner_device: Option<String>,
    /// An image file (PNG or JPEG) uploaded instead of scanning, for tests and demos.
    #[serde(default)]
    pub scan_file: Option<PathBuf>,
    /// `png` (default) or `jpeg`.
    #[serde(default)]
    pub scan_format: ScanFormat,
    /// Scan resolution in dpi (default 300).
    #[serde(default = "default_scan_resolution")]
    pub scan_resolution: u32,
    /// Where print jobs are journaled (default `/var/lib/sportello-kiosk-agent`).
    #[serde(default = "default_journal_dir")]
    pub journal_dir: PathBuf,
    /// Days a finished job stays in the journal, so a re-sent job id is still recognised (default
    /// 30).
    #[serde(default = "default_retention_days")]
    pub journal_retention_days: u64,
    /// The local endpoint for the kiosk screen (default `127.0.0.1:7480`); loopback only.
    #[serde(default = "default_local_listen")]
    pub local_listen: SocketAddr,
    /// The origin allowed by CORS on the local endpoint (default: the server URL's origin).
    #[serde(default)]
    pub screen_origin: Option<String>,
    /// Seconds to wait for the PIN from the screen (default 120).
    #[serde(default = "default_pin_timeout_s")]
    pub pin_timeout_s: u64,
    /// Seconds after which the document is scanned if the screen did not trigger it (default 20).
    #[serde(default = "default_scan_delay_s")]
    pub scan_delay_s: u64,
}

impl std::fmt::Debug for AgentConfig {
    // By hand, so the token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .field("printer", &self.printer)
            .field("cups_server", &self.cups_server)
            .field("pkcs11_module", &self.pkcs11_module)
            .field("scanner_device", &self.scanner_device)
            .field("scan_file", &self.scan_file)
            .field("scan_format", &self.scan_format)
            .field("scan_resolution", &self.scan_resolution)
            .field("journal_dir", &self.journal_dir)
            .field("journal_retention_days", &self.journal_retention_days)
            .field("local_listen", &self.local_listen)
            .field("screen_origin", &self.screen_origin)
            .field("pin_timeout_s", &self.pin_timeout_s)
            .field("scan_delay_s", &self.scan_delay_s)
            .finish()
    }
}

fn default_scan_resolution() -> u32 {
    300
}
fn default_journal_dir() -> PathBuf {
    PathBuf::from(DEFAULT_JOURNAL_DIR)
}
fn default_retention_days() -> u64 {
    30
}
fn default_local_listen() -> SocketAddr {
    DEFAULT_LOCAL_LISTEN.parse().expect("a valid address")
}
fn default_pin_timeout_s() -> u64 {
    120
}
fn default_scan_delay_s() -> u64 {
    20
}

/// The environment variables read by [`AgentConfig::apply_env`], with the field each sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SPORTELLO_AGENT_SERVER", "server"),
    ("SPORTELLO_AGENT_TOKEN", "token"),
    ("SPORTELLO_AGENT_TOKEN_FILE", "token_file"),
    ("SPORTELLO_AGENT_CA_FILE", "ca_file"),
    ("SPORTELLO_AGENT_PRINTER", "printer"),
    ("SPORTELLO_AGENT_CUPS_SERVER", "cups_server"),
    ("SPORTELLO_AGENT_PKCS11_MODULE", "pkcs11_module"),
    ("SPORTELLO_AGENT_SCANNER_DEVICE", "scanner_device"),
    ("SPORTELLO_AGENT_SCAN_FILE", "scan_file"),
    ("SPORTELLO_AGENT_JOURNAL_DIR", "journal_dir"),
    ("SPORTELLO_AGENT_LOCAL_LISTEN", "local_listen"),
    ("SPORTELLO_AGENT_SCREEN_ORIGIN", "screen_origin"),
    ("SPORTELLO_AGENT_PIN_TIMEOUT_S", "pin_timeout_s"),
    ("SPORTELLO_AGENT_SCAN_DELAY_S", "scan_delay_s"),
];

impl AgentConfig {
    /// Parses TOML text (no environment, no validation).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Reads the file, applies the environment ([`AgentConfig::apply_env`]) and validates.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config = Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.apply_env(|name| std::env::var(name).ok())?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(format!(
                "{}: invalid configuration:\n  - {}",
                path.display(),
                problems.join("\n  - ")
            ))
        }
    }

    /// Overrides fields from `SPORTELLO_AGENT_*` variables ([`ENV_OVERRIDES`]), read through
    /// `lookup`. An empty value unsets an optional field. A token (or token file) from the
    /// environment replaces both `token` and `token_file` of the file.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        for (name, field) in ENV_OVERRIDES {
            let Some(value) = lookup(name) else { continue };
            let value = value.trim().to_owned();
            let opt = |v: &str| (!v.is_empty()).then(|| v.to_owned());
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name}: {v:?} is not a whole number"))
            };
            match *field {
                "server" => self.server = value,
                // A token from the environment replaces the file's, whichever form either has.
                "token" => {
                    self.token = opt(&value);
                    if self.token.is_some() {
                        self.token_file = None;
                    }
                }
                "token_file" => {
                    self.token_file = opt(&value).map(PathBuf::from);
                    if self.token_file.is_some() {
                        self.token = None;
                    }
                }
                "ca_file" => self.ca_file = opt(&value).map(PathBuf::from),
                "printer" => self.printer = opt(&value),
                "cups_server" => self.cups_server = opt(&value),
                "pkcs11_module" => self.pkcs11_module = opt(&value).map(PathBuf::from),
                "scanner_device" => self.scanner_device = opt(&value),
                "scan_file" => self.scan_file = opt(&value).map(PathBuf::from),
                "journal_dir" => self.journal_dir = PathBuf::from(value),
                "local_listen" => {
                    self.local_listen = value
                        .parse()
                        .map_err(|_| format!("{name}: {value:?} is not an address:port"))?
                }
                "screen_origin" => self.screen_origin = opt(&value),
                "pin_timeout_s" => self.pin_timeout_s = num(&value)?,
                "scan_delay_s" => self.scan_delay_s = num(&value)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Every problem with the configuration (empty: it is usable).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = crate::ws_url(&self.server) {
            problems.push(format!("server: {e}"));
        }
        match (&self.token, &self.token_file) {
            (None, None) => problems.push(
                "set token_file (or token, or SPORTELLO_AGENT_TOKEN): no device token".into(),
            ),
            (Some(_), Some(_)) => problems.push("set token or token_file, not both".into()),
            (Some(token), None) if token.trim().is_empty() => {
                problems.push("token is empty".into())
            }
            _ => {}
        }
        if let Some(printer) = &self.printer {
            if !valid_printer_name(printer) {
                problems.push(format!("printer: {printer:?} is not a CUPS queue name"));
            }
        }
        if self.scanner_device.is_some() && self.scan_file.is_some() {
            problems.push("set scanner_device or scan_file, not both".into());
        }
        if self.capabilities().is_empty() {
            problems.push(
                "nothing to drive: set printer, pkcs11_module, scanner_device or scan_file".into(),
            );
        }
        if !self.local_listen.ip().is_loopback() {
            problems.push(format!(
                "local_listen: {} is not a loopback address; the PIN must not leave the machine",
                self.local_listen
            ));
        }
        if let Err(e) = self.screen_origin() {
            problems.push(e);
        }
        if !(10..=600).contains(&self.pin_timeout_s) {
            problems.push("pin_timeout_s: must be 10 to 600".into());
        }
        if !(1..=600).contains(&self.scan_delay_s) {
            problems.push("scan_delay_s: must be 1 to 600".into());
        }
        if !(75..=1200).contains(&self.scan_resolution) {
            problems.push("scan_resolution: must be 75 to 1200 dpi".into());
        }
        if self.journal_retention_days == 0 {
            problems.push("journal_retention_days: must be at least 1".into());
        }
        problems
    }

    /// The capabilities declared in `auth`: `printer` with a printer, `card_reader` with a PKCS#11
    /// module, `scanner` with a scanner device or a scan file.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut capabilities = Vec::new();
        if self.printer.is_some() {
            capabilities.push(Capability::Printer);
        }
        if self.pkcs11_module.is_some() {
            capabilities.push(Capability::CardReader);
        }
        if self.scanner_device.is_some() || self.scan_file.is_some() {
            capabilities.push(Capability::Scanner);
        }
        capabilities
    }

    /// The device token: `token`, or the contents of `token_file`.
    pub fn resolve_token(&self) -> Result<String, String> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.trim().to_owned(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read token_file {}: {e}", file.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Err("no device token configured".into()),
        };
        if token.is_empty() {
            return Err("the device token is empty".into());
        }
        Ok(token)
    }

    /// The origin allowed on the local endpoint: `screen_origin`, or the server URL's origin
    /// (`scheme://host[:port]`).
    pub fn screen_origin(&self) -> Result<String, String> {
        let raw = match &self.screen_origin {
            Some(origin) => origin.clone(),
            None => crate::http_base_url(&self.server).map_err(|e| format!("server: {e}"))?,
        };
        let url =
            reqwest::Url::parse(raw.trim()).map_err(|e| format!("screen_origin: {raw:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("screen_origin: {raw:?} is not an http(s) origin"));
        }
        Ok(url.origin().ascii_serialization())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> AgentConfig {
        AgentConfig::from_toml(
            "server = \"https://sportello.example.it/base/\"\ntoken = \"t\"\nprinter = \"Kiosk\"\n",
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_derived_values() {
        let config = minimal();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.pin_timeout_s, 120);
        assert_eq!(config.scan_delay_s, 20);
        assert_eq!(config.local_listen.to_string(), "127.0.0.1:7480");
        assert_eq!(config.journal_dir, PathBuf::from(DEFAULT_JOURNAL_DIR));
        assert_eq!(config.capabilities(), vec![Capability::Printer]);
        assert_eq!(
            config.screen_origin().unwrap(),
            "https://sportello.example.it"
        );
        assert!(!format!("{config:?}").contains("\"t\""));
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../../deploy/kiosk-agent/agent.example.toml");
        let config = AgentConfig::from_toml(text).unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            config.capabilities(),
            vec![
                Capability::Printer,
                Capability::CardReader,
                Capability::Scanner
            ]
        );
        assert_eq!(config.scan_format, ScanFormat::Jpeg);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(AgentConfig::from_toml("server = \"http://h\"\nprinterr = \"x\"\n").is_err());
        let mut config = minimal();
        config.local_listen = "0.0.0.0:7480".parse().unwrap();
        config.printer = None;
        config.token_file = Some("/x".into());
        let problems = config.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn the_environment_overrides() {
        let mut config = minimal();
        config.token = None;
        config.token_file = Some("/etc/sportello/kiosk-agent.token".into());
        config
            .apply_env(|name| match name {
                "SPORTELLO_AGENT_TOKEN" => Some("secret".into()),
                "SPORTELLO_AGENT_PRINTER" => Some("".into()),
                "SPORTELLO_AGENT_PKCS11_MODULE" => Some("/usr/lib/x.so".into()),
                "SPORTELLO_AGENT_PIN_TIMEOUT_S" => Some("30".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.resolve_token().unwrap(), "secret");
        assert_eq!(config.token_file, None, "the environment's token wins");
        assert_eq!(config.printer, None);
        assert_eq!(config.pin_timeout_s, 30);
        assert_eq!(config.capabilities(), vec![Capability::CardReader]);
        assert!(config
            .apply_env(|name| (name == "SPORTELLO_AGENT_SCAN_DELAY_S").then(|| "x".into()))
            .is_err());
    }
}
