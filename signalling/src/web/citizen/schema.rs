//! The bodies of the citizens' API, typed so that the OpenAPI document (`GET
//! /api/v1/openapi.json`) is generated from the same code that answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::web::issue::{WebDocument, WebUsage};

/// `GET /api/v1/web/me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The signed-in citizen's fiscal code.
    pub fiscal_code: String,
    /// Given names: the registry's, else the identity provider's.
    pub given_name: Option<String>,
    /// Surname: the registry's, else the identity provider's.
    pub family_name: Option<String>,
    /// The other living members of the citizen's family sheet today (empty when not in the
    /// registry).
    pub family: Vec<FamilyMember>,
    /// Whether the registry knows the citizen (extension).
    pub in_registry: bool,
    /// The provider they signed in with, e.g. `spid` (extension).
    pub provider: String,
}

/// A member of the citizen's family sheet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FamilyMember {
    /// Fiscal code.
    pub fiscal_code: String,
    /// Given names and surname, as in the registry.
    pub name: String,
}

/// `GET /api/v1/web/services`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Services {
    /// The comune.
    pub municipality: String,
    /// The sign-in providers (`/servizi/login?provider=NAME`).
    pub providers: Vec<ProviderInfo>,
    /// The certificate kinds offered.
    pub certificates: Vec<ServiceKind>,
    /// The bollo exemptions a citizen may use (those kept for the office are left out).
    pub exemptions: Vec<ServiceExemption>,
    /// The comune's other online services (`[[web.links]]`).
    pub links: Vec<ServiceLink>,
}

/// A sign-in provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderInfo {
    /// Its name, e.g. `spid`.
    pub name: String,
    /// Its button's text, e.g. `SPID`.
    pub label: String,
}

/// A certificate kind as offered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceKind {
    /// The kind code.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// What it is for (Italian).
    pub purpose: String,
    /// What it is for (English).
    pub purpose_en: String,
    /// The law it rests on.
    pub legal_basis: String,
    /// Its validity, in words.
    pub validity: String,
    /// Its validity in months; absent when unlimited.
    pub validity_months: Option<u32>,
    /// Whether the bollo is due unless an exemption applies (false: civil status, exempt by law).
    pub bollo: bool,
    /// Whether a reason is required (past situations, art. 35 c. 4 DPR 223/1989).
    pub needs_reason: bool,
    /// Whether the date of the situation is asked for.
    pub needs_as_of: bool,
    /// What it costs.
    pub cost: Cost,
}

/// What a certificate costs, in euro cents.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cost {
    /// The imposta di bollo per sheet (0: exempt by law).
    pub bollo_cents: u32,
    /// The diritti di segreteria.
    pub diritti_cents: u32,
    /// The diritti when a bollo exemption applies; absent when the same.
    pub diritti_exempt_cents: Option<u32>,
    /// In words, Italian / English.
    pub text: String,
}

/// A bollo exemption a citizen may declare.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceExemption {
    /// Its code, for `usage.exemption`.
    pub code: String,
    /// The use, in a few words.
    pub label: String,
    /// The law it rests on.
    pub legal_basis: String,
    /// Whether it exempts from the bollo (false: a use that keeps it due).
    pub bollo_exempt: bool,
}

/// A link to another online service of the comune.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceLink {
    /// Italian label.
    pub label: String,
    /// English label.
    pub label_en: Option<String>,
    /// Where it goes.
    pub url: String,
}

/// `POST /api/v1/web/certificates`'s body (`web-channel.md`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitizenCertificateRequest {
    /// The kind code.
    pub kind: String,
    /// The subject: the citizen when absent, else a living member of their family sheet today.
    #[serde(default)]
    pub fiscal_code: Option<String>,
    /// The reason, where the kind needs one (past situations).
    #[serde(default)]
    pub reason: Option<String>,
    /// Bollo paid with a marca, or an exemption.
    pub usage: WebUsage,
    /// The date of a past situation (`YYYY-MM-DD`), for the kinds that need one (extension).
    #[serde(default)]
    pub as_of: Option<String>,
}

/// `GET /api/v1/web/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateList {
    /// The citizen's certificates still valid, newest first.
    pub certificates: Vec<WebDocument>,
}
