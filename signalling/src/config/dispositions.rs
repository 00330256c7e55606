//! `[[dispositions]]`: the outcomes an operator chooses from when closing a wrap-up
//! (`wrapup.done {"disposition"}`), each a code with an Italian and an English label. Without the
//! section the five defaults apply; `dispositions = []` turns dispositions off (then `wrapup.done`
//! needs none).

use serde::{Deserialize, Serialize};

/// The most dispositions a configuration may list (the console shows them all as buttons).
pub const MAX_DISPOSITIONS: usize = 20;

/// One disposition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispositionSetting {
    /// The code sent in `wrapup.done` and kept with the call: lowercase letters, digits, `_`, `-`
    /// and `.`, at most 64 characters, never `none` (what a timed-out wrap-up records).
    pub code: String,
    /// The Italian label.
    pub label: String,
    /// The English label.
    pub label_en: String,
}

impl DispositionSetting {
    fn new(code: &str, label: &str, label_en: &str) -> Self {
        DispositionSetting {
            code: code.into(),
            label: label.into(),
            label_en: label_en.into(),
        }
    }

    /// The disposition as listed in the operator's `state.sync`.
    pub fn to_wire(&self) -> protocol::outcome::Disposition {
        protocol::outcome::Disposition {
            code: self.code.clone(),
            label: self.label.clone(),
            label_en: self.label_en.clone(),
        }
    }
}

/// The dispositions of a configuration without `[[dispositions]]`.
pub fn default_dispositions() -> Vec<DispositionSetting> {
    vec![
        DispositionSetting::new(
            "certificato_rilasciato",
            "Certificato rilasciato",
            "Certificate issued",
        ),
        DispositionSetting::new("informazioni", "Informazioni fornite", "Information given"),
        DispositionSetting::new("pratica_avviata", "Pratica avviata", "Application started"),
        DispositionSetting::new(
            "rinviato_allo_sportello",
            "Rinviato allo sportello fisico",
            "Referred to the service desk",
        ),
        DispositionSetting::new("non_risolto", "Non risolto", "Not resolved"),
    ]
}

/// What is wrong with a list of dispositions.
pub fn problems(list: &[DispositionSetting]) -> Vec<String> {
    let mut problems = Vec::new();
    if list.len() > MAX_DISPOSITIONS {
        problems.push(format!(
            "dispositions: {} listed, at most {MAX_DISPOSITIONS}",
            list.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in list {
        if !super::is_name(&d.code) {
            problems.push(format!(
                "dispositions: code {:?} must be 1 to 64 of a-z, 0-9, '_', '-', '.'",
                d.code
            ));
        }
        if d.code == protocol::outcome::DISPOSITION_NONE {
            problems.push(
                "dispositions: the code \"none\" is what a timed-out wrap-up records; use another"
                    .into(),
            );
        }
        if !seen.insert(d.code.as_str()) {
            problems.push(format!("dispositions: code {:?} is listed twice", d.code));
        }
        for (what, label) in [("label", &d.label), ("label_en", &d.label_en)] {
            let count = label.chars().count();
            if label.trim().is_empty() || count > 80 || label.chars().any(char::is_control) {
                problems.push(format!(
                    "dispositions: {what} of {:?} must be 1 to 80 characters on one line",
                    d.code
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_cover_the_issue() {
        let list = default_dispositions();
        assert!(problems(&list).is_empty());
        let codes: Vec<&str> = list.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "certificato_rilasciato",
                "informazioni",
                "pratica_avviata",
                "rinviato_allo_sportello",
                "non_risolto"
            ]
        );
    }

    #[test]
    fn bad_codes_and_labels_are_listed() {
        let d = DispositionSetting::new;
        let list = vec![
            d("ok", "Bene", "Fine"),
            d("ok", "Ancora", "Again"),
            d("Non Valido", "X", "X"),
            d("none", "Nessuno", "None"),
            d("vuoto", " ", "Empty"),
        ];
        let found = problems(&list);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.iter().any(|p| p.contains("listed twice")));
        assert!(found.iter().any(|p| p.contains("\"Non Valido\"")));
        assert!(found.iter().any(|p| p.contains("\"none\"")));
        assert!(found.iter().any(|p| p.contains("label of \"vuoto\"")));
        let many: Vec<_> = (0..=MAX_DISPOSITIONS)
            .map(|i| d(&format!("c{i}"), "L", "L"))
            .collect();
        assert_eq!(problems(&many).len(), 1);
    }
}
