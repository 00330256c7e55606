//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the web channel's APIs, generated from
//! the code with `utoipa`.
//!
//! The intermediaries' paths are annotated on their handlers. The citizens' paths of the contract
//! (`/api/v1/web/*`) are described here on small documented stub functions that are never routed
//! (the handlers live in `web::citizen`; their annotations can move onto them), with the bodies the
//! contract fixes. Security schemes: `intermediary_key` (bearer API key), `citizen_session` (the
//! session cookie) and `supervisor_token` (the login's bearer token).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{ErrorBody, IntermediaryCertificateRequest, RequestsReport};
use crate::web::issue::{WebBollo, WebDocument, WebIssued, WebMarca, WebUsage};

/// The name of the citizens' session cookie as documented (the citizen module sets it).
pub const CITIZEN_COOKIE: &str = "sportello_web";

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sportello: web channel API",
        version = "1",
        description = "Certificati anagrafici e di stato civile con timbro digitale, per i cittadini (SPID/CIE) e per gli intermediari convenzionati (patronati, banche, datori di lavoro). / Registry and civil-status certificates with a digital stamp, for citizens (SPID/CIE) and for intermediaries under an agreement with the comune. Errors use the protocol's body {\"code\",\"message\"}.",
        license(name = "EUPL-1.2", identifier = "EUPL-1.2")
    ),
    paths(
        super::post_certificate,
        super::get_document,
        super::get_own_requests,
        super::get_requests,
        web_me,
        web_services,
        web_certificates_post,
        web_certificates_get,
        web_document,
    ),
    components(schemas(
        WebUsage,
        WebMarca,
        WebIssued,
        WebBollo,
        WebDocument,
        ErrorBody,
        IntermediaryCertificateRequest,
        RequestsReport,
        super::requests::IntermediaryRequest,
        CitizenCertificateRequest,
        Me,
        FamilyMember,
        Services,
        ServiceKind,
        ServiceLink,
    )),
    modifiers(&Security),
    tags(
        (name = "intermediary", description = "Intermediari: chiave API, motivo e delega obbligatori / intermediaries: API key, reason and delegation required"),
        (name = "citizen", description = "Cittadini autenticati con SPID o CIE / citizens signed in with SPID or CIE"),
        (name = "supervisor", description = "Vista del supervisore / supervisor view"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "intermediary_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The intermediary's API key (`spk_…`), from `sportello intermediary add`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "citizen_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                CITIZEN_COOKIE,
                "The session cookie set by /servizi/auth/callback (HttpOnly); state-changing requests need a same-origin Origin header",
            ))),
        );
        components.add_security_scheme(
            "supervisor_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A supervisor's token from POST /api/v1/login"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, generated once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json().to_owned(),
    )
        .into_response()
}

/// The body of `POST /api/v1/web/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CitizenCertificateRequest {
    /// The kind code.
    pub kind: String,
    /// The subject: the citizen (default) or a member of their family sheet.
    #[serde(default)]
    pub fiscal_code: Option<String>,
    /// The reason, required for past situations.
    #[serde(default)]
    pub reason: Option<String>,
    /// Bollo paid with a marca, or an exemption.
    pub usage: WebUsage,
}

/// `GET /api/v1/web/me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The signed-in citizen's fiscal code.
    pub fiscal_code: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// The other members of the citizen's family sheet (empty when not in the registry).
    pub family: Vec<FamilyMember>,
}

/// A member of the citizen's family sheet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FamilyMember {
    /// Fiscal code.
    pub fiscal_code: String,
    /// Name as in the registry.
    pub name: String,
}

/// `GET /api/v1/web/services`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Services {
    /// The certificate kinds offered.
    pub certificates: Vec<ServiceKind>,
    /// Other services of the comune (configurable links).
    pub links: Vec<ServiceLink>,
}

/// A certificate kind as offered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceKind {
    /// The kind code.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// Its validity.
    pub validity: String,
    /// Whether the bollo is due (registry kinds) unless an exemption applies.
    pub bollo: bool,
}

/// A link to another service of the comune.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceLink {
    /// Its title, e.g. "Attività economiche".
    pub title: String,
    /// Where it is.
    pub url: String,
}

/// The signed-in citizen and their family.
#[utoipa::path(get, path = "/api/v1/web/me", tag = "citizen",
    security(("citizen_session" = [])),
    responses(
        (status = 200, description = "The citizen", body = Me),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn web_me() {}

/// The services offered: certificate kinds and links to the comune's other services.
#[utoipa::path(get, path = "/api/v1/web/services", tag = "citizen",
    security(("citizen_session" = [])),
    responses((status = 200, description = "The catalogue", body = Services)))]
#[allow(dead_code)]
fn web_services() {}

/// Issues a certificate for the citizen or a member of their family.
#[utoipa::path(post, path = "/api/v1/web/certificates", tag = "citizen",
    security(("citizen_session" = [])),
    request_body = CitizenCertificateRequest,
    responses(
        (status = 201, description = "Issued", body = WebIssued),
        (status = 400, description = "Invalid request (kind, fiscal code, usage, missing reason)", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not the citizen nor a member of their family, cross-origin, or an office-only exemption", body = ErrorBody),
        (status = 409, description = "The marca da bollo was already used", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn web_certificates_post() {}

/// The citizen's own certificates still valid, newest first.
#[utoipa::path(get, path = "/api/v1/web/certificates", tag = "citizen",
    security(("citizen_session" = [])),
    responses(
        (status = 200, description = "The list", body = [WebDocument]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn web_certificates_get() {}

/// A certificate's PDF, to the citizen who asked for it only.
#[utoipa::path(get, path = "/api/v1/web/documents/{document_id}.pdf", tag = "citizen",
    security(("citizen_session" = [])),
    params(("document_id" = String, Path, description = "The document id")),
    responses(
        (status = 200, description = "The stamped, sealed PDF", content_type = "application/pdf", body = String),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such document of this citizen", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn web_document() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_path() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
        for path in [
            "/api/v1/intermediary/certificates",
            "/api/v1/intermediary/documents/{document_id}.pdf",
            "/api/v1/intermediary-requests",
            "/api/v1/intermediary/requests",
            "/api/v1/web/me",
            "/api/v1/web/services",
            "/api/v1/web/certificates",
            "/api/v1/web/documents/{document_id}.pdf",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        for scheme in ["intermediary_key", "citizen_session", "supervisor_token"] {
            assert!(doc["components"]["securitySchemes"][scheme].is_object());
        }
        for schema in ["WebUsage", "WebIssued", "ErrorBody"] {
            assert!(doc["components"]["schemas"][schema].is_object());
        }
    }
}
