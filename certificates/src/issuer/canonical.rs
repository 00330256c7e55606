//! The canonical text the stamp's digest covers, and the stamp's certificate claim.

use crate::dates::iso;
use crate::kinds::CertificateContent;
use crate::stamp::{CertificateClaim, MemberClaim, CLAIM_VERSION};
use crate::wording::{self, MANDATORY_WORDING};

/// The canonical text whose SHA-256 the stamp signs, with the bollo due, the art. 40 sentence and no
/// signatory line (kept for callers of the first format; [`Issuer::issue`] uses [`canonical_text_of`]).
pub fn canonical_text(
    content: &CertificateContent,
    document_id: &str,
    exemption_text: Option<&str>,
    validity: &str,
) -> String {
    canonical_text_of(
        content,
        document_id,
        &Canonical {
            bollo: exemption_text.unwrap_or(wording::BOLLO_DUE_SHORT),
            use_text: None,
            art40: MANDATORY_WORDING,
            validity,
            signatory: "",
        },
    )
}

/// What the canonical text holds beyond the content.
#[derive(Debug, Clone, Copy)]
pub struct Canonical<'a> {
    /// The bollo line: the exemption text, the marca paid, or the bollo due.
    pub bollo: &'a str,
    /// A declared use with the bollo due ("Uso: …").
    pub use_text: Option<&'a str>,
    /// The art. 40 sentence, or the dedicated wording of the use.
    pub art40: &'a str,
    /// The validity sentence.
    pub validity: &'a str,
    /// The signature line (the responsible person, or the office); empty for none.
    pub signatory: &'a str,
}

/// The canonical text whose SHA-256 the stamp signs: everything the certificate states, one item a line.
pub fn canonical_text_of(content: &CertificateContent, document_id: &str, c: &Canonical) -> String {
    let mut lines = vec![
        format!("tipo: {}", content.kind.code()),
        format!("documento: {document_id}"),
    ];
    lines.extend(content.subject_lines());
    lines.extend(content.body_lines());
    if let Some(u) = c.use_text {
        lines.push(u.to_owned());
    }
    lines.push(c.bollo.to_owned());
    lines.push(c.art40.to_owned());
    lines.push(c.validity.to_owned());
    if !c.signatory.is_empty() {
        lines.push(c.signatory.to_owned());
    }
    lines.join("\n")
}

pub(super) fn claim_of(
    content: &CertificateContent,
    document_id: &str,
    exemption: Option<String>,
    text_sha256: &str,
    development: bool,
) -> CertificateClaim {
    CertificateClaim {
        version: CLAIM_VERSION,
        document_id: document_id.into(),
        kind: content.kind.code().into(),
        fiscal_code: content.subject.fiscal_code.clone(),
        surname: content.subject.surname.clone(),
        given_names: content.subject.given_names.clone(),
        birth_date: content.subject.birth_date.clone(),
        birth_place: content.subject.birth_place.clone(),
        as_of: content.as_of.map(iso),
        fields: content.fields.clone(),
        members: content
            .members
            .iter()
            .map(|m| MemberClaim {
                surname: m.surname.clone(),
                given_names: m.given_names.clone(),
                birth_date: m.birth_date.clone(),
                relationship: m.relationship.clone(),
            })
            .collect(),
        member_count: content.members.len() as u64,
        exemption,
        text_sha256: text_sha256.into(),
        development,
        reduced: false,
    }
}
