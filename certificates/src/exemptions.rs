//! The editable table of exemptions from the imposta di bollo and the diritti di segreteria, and of the
//! uses that change the certificate's wording.
//!
//! Each row is a *use* the requester declares (code, legal basis, use, printed text) and what it does:
//! - `bollo_exempt` (default true): the certificate owes no bollo; `false` is a use with the bollo due,
//!   e.g. immigration procedures;
//! - `diritti_exempt` (default false): no diritti di segreteria either (adoption: art. 82 L. 184/1983);
//! - `office_only` (default false): offered only to the office, never on a citizen-facing channel
//!   (ex-officio acts, art. 16 Tab. B; public competitions, L. 28/1999, which since L. 183/2011 no
//!   longer receive certificates);
//! - `art40_text`: printed instead of the art. 40, comma 02 sentence (ANPR's destinazioni d'uso for
//!   court proceedings and immigration).
//!
//! The comune edits `exemptions.json` without a new build:
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
    /// The use exempts from the imposta di bollo (false: a use with the bollo due).
    pub bollo_exempt: bool,
    /// The use exempts from the diritti di segreteria too.
    pub diritti_exempt: bool,
    /// Offered only to the office (operator or command line), refused on the web.
    pub office_only: bool,
    /// A use whose certificate prints ANPR's dedicated wording instead of the art. 40, comma 02
    /// DPR 445/2000 sentence.
    pub art40: Option<Art40Use>,
}

/// The uses for which ANPR prints a dedicated sentence instead of the art. 40, comma 02 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Art40Use {
    /// Court proceedings ("… RILASCIATO PER CAUSE GIUDIZIARIE").
    CauseGiudiziarie,
    /// Immigration procedures ("… NORME SULL'IMMIGRAZIONE").
    Immigrazione,
}

impl Art40Use {
    /// The sentence printed instead of [`crate::wording::MANDATORY_WORDING`].
    pub fn text(self) -> &'static str {
        match self {
            Art40Use::CauseGiudiziarie => crate::wording::ART40_JUDICIAL,
            Art40Use::Immigrazione => crate::wording::ART40_IMMIGRATION,
        }
    }
}

fn yes() -> bool {
    true
}

/// The wire shape of a table row (`use` is a Rust keyword, so the field is renamed).
#[derive(Deserialize, Serialize)]
struct Row {
    code: String,
    legal_basis: String,
    #[serde(rename = "use")]
    use_: String,
    text: String,
    #[serde(default = "yes")]
    bollo_exempt: bool,
    #[serde(default)]
    diritti_exempt: bool,
    #[serde(default)]
    office_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    art40: Option<Art40Use>,
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
                bollo_exempt: r.bollo_exempt,
                diritti_exempt: r.diritti_exempt,
                office_only: r.office_only,
                art40: r.art40,
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

    /// The rows to offer on a channel: all of them to the office, without the `office_only` ones to a
    /// citizen (the web).
    pub fn offered(&self, citizen_facing: bool) -> impl Iterator<Item = &Exemption> {
        self.entries
            .iter()
            .filter(move |e| !(citizen_facing && e.office_only))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_has_every_exemption_of_the_spec() {
        let t = ExemptionTable::embedded().unwrap();
        for code in [
            "b1",
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
            "l184_1983",
            "cause_giudiziarie",
            "immigrazione",
        ] {
            assert!(t.get(code).is_ok(), "{code}");
        }
        // Adoption exempts from diritti too; b16 and L. 28/1999 are for the office only; the immigration
        // use owes the bollo and changes the art. 40 wording.
        assert!(t.get("l184_1983").unwrap().diritti_exempt);
        assert!(!t.get("b13").unwrap().diritti_exempt);
        let offered: Vec<&str> = t.offered(true).map(|e| e.code.as_str()).collect();
        assert!(!offered.contains(&"b16") && !offered.contains(&"l28_1999"));
        assert!(t.offered(false).any(|e| e.code == "b16"));
        let imm = t.get("immigrazione").unwrap();
        assert!(!imm.bollo_exempt && imm.art40 == Some(Art40Use::Immigrazione));
        assert!(t.get("b9").unwrap().use_.contains("pensione estera"));
        assert!(t.get("nope").is_err());
        assert!(ExemptionTable::parse(
            "[{\"code\":\"\",\"legal_basis\":\"\",\"use\":\"\",\"text\":\"\"}]",
            "x"
        )
        .is_err());
    }
}
