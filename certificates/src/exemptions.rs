//! The editable table of exemptions from the imposta di bollo.
//!
//! The comune edits `exemptions.json` (code, legal basis, use and the printed text) without a new build:
//! [`ExemptionTable::load_or_default`] reads `<data dir>/exemptions.json` when it exists and falls back to
//! the table shipped in `data/exemptions.json`. Civil-status certificates are exempt by law and do not
//! go through this table (see [`CIVIL_STATUS_EXEMPTION`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CertError;

const EMBEDDED: &str = include_str!("../data/exemptions.json");

/// One exemption: why a registry certificate does not owe the 16 EUR bollo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    /// Short code the requester or operator chooses, e.g. "b9".
    pub code: String,
    /// The legal basis, e.g. "DPR 642/1972, Tabella B, art. 9".
    pub legal_basis: String,
    /// The use in a few words, for menus.
    pub use_: String,
    /// The text printed on the certificate.
    pub text: String,
}

/// The wire shape of a table row (`use` is a Rust keyword, so the field is renamed).
#[derive(Deserialize, Serialize)]
struct Row {
    code: String,
    legal_basis: String,
    #[serde(rename = "use")]
    use_: String,
    text: String,
}

/// The exemption printed on civil-status certificates (L. 405/1990 art. 7).
pub const CIVIL_STATUS_EXEMPTION: (&str, &str, &str) = (
    "l405_1990",
    "L. 405/1990, art. 7",
    "Esente dall'imposta di bollo ai sensi dell'art. 7 della L. 405/1990 (certificato di stato civile).",
);

/// The table of exemptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionTable {
    entries: Vec<Exemption>,
}

impl ExemptionTable {
    /// The table shipped with the crate.
    pub fn embedded() -> Result<Self, CertError> {
        Self::parse(EMBEDDED, "data/exemptions.json")
    }

    /// Parses a table from JSON text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CertError> {
        let rows: Vec<Row> = serde_json::from_str(text).map_err(|e| CertError::InvalidData {
            path: origin.into(),
            reason: e.to_string(),
        })?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            if r.code.trim().is_empty() || r.text.trim().is_empty() {
                return Err(CertError::InvalidData {
                    path: origin.into(),
                    reason: "ogni esenzione deve avere codice e testo".into(),
                });
            }
            if entries.iter().any(|e: &Exemption| e.code == r.code) {
                return Err(CertError::InvalidData {
                    path: origin.into(),
                    reason: format!("codice duplicato: {}", r.code),
                });
            }
            entries.push(Exemption {
                code: r.code,
                legal_basis: r.legal_basis,
                use_: r.use_,
                text: r.text,
            });
        }
        Ok(ExemptionTable { entries })
    }

    /// Reads `path` if it exists, otherwise the shipped table.
    pub fn load_or_default(path: &Path) -> Result<Self, CertError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::embedded(),
            Err(e) => Err(CertError::io(path, e)),
        }
    }

    /// Looks an exemption up by code (case-insensitive).
    pub fn get(&self, code: &str) -> Result<&Exemption, CertError> {
        self.entries
            .iter()
            .find(|e| e.code.eq_ignore_ascii_case(code.trim()))
            .ok_or_else(|| CertError::UnknownExemption(code.chars().take(40).collect()))
    }

    /// Every exemption, in table order.
    pub fn entries(&self) -> &[Exemption] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_has_every_exemption_of_the_spec() {
        let t = ExemptionTable::embedded().unwrap();
        for code in [
            "b3",
            "b5",
            "b8",
            "b8bis",
            "b9",
            "b11",
            "b13",
            "b16",
            "b21bis",
            "b24",
            "b27bis",
            "l74_1987",
            "dpr115_2002",
            "l28_1999",
        ] {
            assert!(t.get(code).is_ok(), "{code}");
        }
        assert!(t.get("nope").is_err());
        assert!(ExemptionTable::parse(
            "[{\"code\":\"\",\"legal_basis\":\"\",\"use\":\"\",\"text\":\"\"}]",
            "x"
        )
        .is_err());
    }
}
