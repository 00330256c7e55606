//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the web channel's APIs, generated from
//! the code with `utoipa`.
//!
//! Every path is annotated on its handler (`web::intermediary`, `web::citizen`), with the typed
//! bodies the handlers answer with. Security schemes: `intermediary_key` (bearer API key), `citizen_session` (the
//! session cookie) and `supervisor_token` (the login's bearer token).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{ErrorBody, IntermediaryCertificateRequest, RequestsReport};
use crate::web::citizen::schema;
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
        crate::web::citizen::me,
        crate::web::citizen::services,
        crate::web::citizen::certificates_api::request,
        crate::web::citizen::certificates_api::list,
        crate::web::citizen::certificates_api::document,
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
        schema::CitizenCertificateRequest,
        schema::CertificateList,
        schema::Me,
        schema::FamilyMember,
        schema::Services,
        schema::ProviderInfo,
        schema::ServiceKind,
        schema::Cost,
        schema::ServiceExemption,
        schema::ServiceLink,
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
