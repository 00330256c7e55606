//! The accounts of the configuration file: `[[operators]]`, `[[supervisors]]` and `[[kiosks]]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An operator account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorAccount {
    /// Login name, also the operator id.
    pub username: String,
    /// Name shown to citizens and supervisors.
    #[serde(default)]
    pub display_name: String,
    /// Argon2 PHC string from `sportello hash-password`.
    pub password_hash: String,
    /// Services the operator handles, with a level from 1 (can) to 10 (expert).
    pub skills: BTreeMap<String, u8>,
    /// Languages spoken, as ISO 639-1 codes.
    pub languages: Vec<String>,
    /// Calls held at once, connected plus on hold, 1 to 6.
    #[serde(default = "default_capacity")]
    pub capacity: u8,
}

fn default_capacity() -> u8 {
    1
}

/// A supervisor account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorAccount {
    /// Login name, also the supervisor id.
    pub username: String,
    /// Name shown in the dashboard.
    #[serde(default)]
    pub display_name: String,
    /// Argon2 PHC string from `sportello hash-password`.
    pub password_hash: String,
}

/// A kiosk (device) account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskAccount {
    /// Kiosk id, e.g. `municipio`.
    pub id: String,
    /// Name shown to operators, e.g. "Municipio — atrio".
    pub name: String,
    /// Where it stands (address or description).
    #[serde(default)]
    pub location: String,
    /// Services offered on the kiosk's screen by default.
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// `sha256:<hex>` of the device token, from `sportello hash-token`.
    pub token_hash: String,
}

fn default_services() -> Vec<String> {
    vec!["anagrafe".into(), "stato_civile".into()]
}
