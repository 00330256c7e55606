//! Bodies of the in-call actions: identification (`identity.*`), certificates (`certificate.*`) and
//! printing (`print.*`). See `docs/protocol.md`, "In-call actions".

use serde::{Deserialize, Serialize};

/// How the citizen is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMethod {
    /// Carta d'identità elettronica: the card's authentication certificate and a signature.
    Cie,
    /// Carta nazionale dei servizi: as CIE.
    Cns,
    /// A one-time code mailed to the citizen's registered PEC address.
    Pec,
    /// A paper identity document scanned at the kiosk and confirmed by the operator.
    Document,
}

impl IdentityMethod {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMethod::Cie => "cie",
            IdentityMethod::Cns => "cns",
            IdentityMethod::Pec => "pec",
            IdentityMethod::Document => "document",
        }
    }

    /// Whether the method reads a smart card.
    pub fn is_card(self) -> bool {
        matches!(self, IdentityMethod::Cie | IdentityMethod::Cns)
    }
}

/// `identity.request` (operator): asks the kiosk to identify the citizen by `method`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRequest {
    /// The call.
    pub call_id: String,
    /// The method.
    pub method: IdentityMethod,
}

/// `identity.requested` (to the kiosk): the method and the nonce a card must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRequested {
    /// The call.
    pub call_id: String,
    /// The method.
    pub method: IdentityMethod,
    /// A fresh random nonce (base64url, 32 bytes). A card signs its UTF-8 text.
    pub nonce: String,
}

/// `identity.card` (kiosk agent): the card's certificate chain and its signature over the nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityCard {
    /// The call.
    pub call_id: String,
    /// Base64 DER certificates: the card's authentication certificate first, then intermediates.
    pub certificate_chain: Vec<String>,
    /// Base64 signature over the UTF-8 bytes of the nonce with SHA-256 (RSA PKCS#1 v1.5, or ECDSA
    /// P-256 as `r‖s` or DER).
    pub signature: String,
}

/// `identity.card_error` (extension, kiosk agent): the card could not be read or signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityCardError {
    /// The call.
    pub call_id: String,
    /// `pin_incorrect`, `pin_locked`, `no_card`, `timeout` or `card_error`.
    pub reason: String,
    /// PIN tries left, when the card says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries_left: Option<u32>,
}

/// `identity.pec_start` (kiosk): mail a one-time code to this citizen's registered PEC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityPecStart {
    /// The call.
    pub call_id: String,
    /// The citizen's fiscal code.
    pub fiscal_code: String,
}

/// The reply to `identity.pec_start` (extension fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PecSent {
    /// The address the code went to, masked (`m***@pec.example.it`).
    pub sent_to: String,
    /// Seconds the code stays valid.
    pub expires_in_s: u64,
}

/// `identity.pec_code` (kiosk): the code the citizen read in their PEC mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityPecCode {
    /// The call.
    pub call_id: String,
    /// The six digits.
    pub code: String,
}

/// `identity.scan` (kiosk): a document scan was uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityScan {
    /// The call.
    pub call_id: String,
    /// From `POST /api/v1/calls/{call_id}/scans`.
    pub scan_id: String,
}

/// `identity.confirm` (operator): the scanned document matches the citizen on camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityConfirm {
    /// The call.
    pub call_id: String,
    /// The citizen's fiscal code.
    pub fiscal_code: String,
    /// `carta_identita`, `passaporto`, `patente`… (free text, audited).
    pub document_type: String,
    /// The document's number.
    pub document_number: String,
}

/// `identity.reject` (extension, operator): the scanned document does not match, or the operator
/// stops an identification in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityReject {
    /// The call.
    pub call_id: String,
    /// Why (audited, shown to the kiosk).
    pub reason: String,
}

/// The identified citizen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Codice fiscale.
    pub fiscal_code: String,
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// `YYYY-MM-DD`, when known.
    pub birth_date: Option<String>,
}

/// `identity.verified` (kiosk and operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityVerified {
    /// The call.
    pub call_id: String,
    /// The method.
    pub method: IdentityMethod,
    /// The citizen.
    pub subject: Subject,
}

/// `identity.failed` (kiosk and operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityFailed {
    /// The call.
    pub call_id: String,
    /// A human-readable reason (Italian, shown as is).
    pub reason: String,
    /// The method (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<IdentityMethod>,
    /// A stable code for clients (extension): `pin_incorrect`, `pin_locked`, `no_card`,
    /// `untrusted_card`, `card_expired`, `bad_signature`, `no_fiscal_code`, `wrong_code`,
    /// `code_expired`, `too_many_attempts`, `not_in_registry`, `no_pec`, `rejected`, `timeout`,
    /// `card_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// PIN tries or code attempts left (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// `identity.progress` (extension, kiosk and operator): a step of an identification in progress,
/// so the kiosk screen can prompt the citizen and the console can show the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProgress {
    /// The call.
    pub call_id: String,
    /// The method.
    pub method: IdentityMethod,
    /// `requested` (prompt the citizen), `pec_sent`, `scan_received`.
    pub step: String,
    /// For `pec_sent`: the masked address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
    /// For `scan_received`: the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_id: Option<String>,
    /// For `scan_received`: where the operator fetches the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_url: Option<String>,
}

/// The use of a certificate: the bollo is due, or an exemption from the table applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Usage {
    /// `{"bollo":true}`.
    Bollo {
        /// Always true.
        bollo: bool,
    },
    /// `{"exemption":"<code>"}`.
    Exemption {
        /// A code of the exemption table.
        exemption: String,
    },
}

/// `certificate.issue` (operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIssue {
    /// The call.
    pub call_id: String,
    /// The kind code (`residenza`, `stato_famiglia`, `nascita`…).
    pub kind: String,
    /// The subject; defaults to the identified citizen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fiscal_code: Option<String>,
    /// `YYYY-MM-DD`, for "alla data" kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Bollo or exemption. Civil-status kinds are exempt by law whatever this says.
    pub usage: Usage,
    /// The stated reason (extension): required for "alla data" kinds and for a person outside the
    /// citizen's family sheet; audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The marca da bollo that pays the bollo (extension): its 14-digit identifier and date. With
    /// it the certificate says "imposta di bollo assolta" with the identifier and nothing is left
    /// to apply to the paper; a marca pays for one certificate only, across every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marca: Option<MarcaRef>,
    /// The parts of a `contestuale` certificate (extension): `nascita`, `residenza`,
    /// `cittadinanza`, `stato_civile`, `esistenza_in_vita`; absent or empty, every part that
    /// applies. Refused with `invalid` for any other kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

/// A marca da bollo: `{"id":"<14 digits>","date":"YYYY-MM-DD"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarcaRef {
    /// The 14-digit identifier printed on the marca.
    pub id: String,
    /// The date printed on the marca, `YYYY-MM-DD`.
    pub date: String,
}

/// The reply to `certificate.issue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIssued {
    /// The document id.
    pub document_id: String,
    /// The kind code.
    pub kind: String,
    /// `/api/v1/documents/{document_id}.pdf`.
    pub pdf_url: String,
    /// The stamp text (`IT1:…`).
    pub stamp: String,
    /// Pages.
    pub pages: u32,
    /// The subject's fiscal code (extension).
    #[serde(default)]
    pub fiscal_code: String,
    /// Whether a marca da bollo must be applied to the paper (extension).
    #[serde(default)]
    pub bollo_due: bool,
    /// Last day of validity, `YYYY-MM-DD`, absent for certificates that do not expire (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// The identifier of the marca that paid the bollo, when one did (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marca_id: Option<String>,
}

/// The reply to `certificate.preview` (extension): the PDF `certificate.issue` would make,
/// watermarked ANTEPRIMA / PREVIEW, with no number, stamp or seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatePreviewed {
    /// The kind code.
    pub kind: String,
    /// The subject's fiscal code.
    pub fiscal_code: String,
    /// Pages.
    pub pages: u32,
    /// Last day of validity if it were issued today, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// The PDF, Base64.
    pub pdf: String,
}

/// `certificate.issued` (extension, to the kiosk): a certificate was issued in its call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIssuedEvent {
    /// The call.
    pub call_id: String,
    /// The document id.
    pub document_id: String,
    /// The kind code.
    pub kind: String,
    /// Whether a marca da bollo must be applied.
    pub bollo_due: bool,
    /// Pages.
    pub pages: u32,
}

/// `print.request` (operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintRequest {
    /// The call.
    pub call_id: String,
    /// A document issued in this call.
    pub document_id: String,
    /// 1 to 5.
    #[serde(default = "one")]
    pub copies: u32,
}

fn one() -> u32 {
    1
}

/// The reply to `print.request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintCreated {
    /// The new job.
    pub job_id: String,
}

/// `print.job` (to the kiosk's printer sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJob {
    /// The job; the same id never prints twice.
    pub job_id: String,
    /// The document.
    pub document_id: String,
    /// `/api/v1/documents/{document_id}.pdf`, relative to the server.
    pub pdf_url: String,
    /// Copies.
    pub copies: u32,
    /// The call (extension).
    #[serde(default)]
    pub call_id: String,
}

/// The state of a print job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrintState {
    /// Journaled by the kiosk agent.
    Received,
    /// Handed to the printer.
    Printing,
    /// Out of the printer.
    Printed,
    /// The printer reported a problem (`detail` says which); the job is kept, and it may still be
    /// printed when the problem is fixed.
    Failed,
}

impl PrintState {
    /// The state as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PrintState::Received => "received",
            PrintState::Printing => "printing",
            PrintState::Printed => "printed",
            PrintState::Failed => "failed",
        }
    }
}

/// `print.status` (kiosk agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintStatus {
    /// The job.
    pub job_id: String,
    /// Its state.
    pub state: PrintState,
    /// The printer's reason (out of paper, offline…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `print.update` (operator, and the kiosk's screen as an extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintUpdate {
    /// The job.
    pub job_id: String,
    /// Its state.
    pub state: PrintState,
    /// The printer's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The call (extension).
    #[serde(default)]
    pub call_id: String,
    /// The document (extension).
    #[serde(default)]
    pub document_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_bollo_or_exemption() {
        let b: Usage = serde_json::from_str(r#"{"bollo":true}"#).unwrap();
        assert_eq!(b, Usage::Bollo { bollo: true });
        let e: Usage = serde_json::from_str(r#"{"exemption":"tab_b_art_9"}"#).unwrap();
        assert_eq!(
            e,
            Usage::Exemption {
                exemption: "tab_b_art_9".into()
            }
        );
        assert!(serde_json::from_str::<Usage>(r#"{"other":1}"#).is_err());
    }

    #[test]
    fn print_job_defaults() {
        let r: PrintRequest = serde_json::from_str(r#"{"call_id":"c","document_id":"d"}"#).unwrap();
        assert_eq!(r.copies, 1);
        let s: PrintStatus = serde_json::from_str(r#"{"job_id":"j","state":"printed"}"#).unwrap();
        assert_eq!(s.state, PrintState::Printed);
    }
}
