//! The citizens' side of the web channel (`docs/web.md`):
//!
//! - `GET /servizi/login[?provider=NAME]`: to the provider, with a pending sign-in in the store
//!   and a short cookie tying the callback to this browser;
//! - `GET /servizi/auth/callback`: checks `state` (once, and against the cookie), completes the
//!   code flow, starts a session (`HttpOnly`, `SameSite=Lax`, `Secure` under TLS) and goes back to
//!   `/servizi/`; a failed or cancelled sign-in gets a page that says what happened;
//! - `POST /servizi/logout`: ends the session (same-origin only);
//! - `GET /api/v1/web/me`, `GET /api/v1/web/services`;
//! - the certificates (`certificates`): `POST|GET /api/v1/web/certificates` and the PDFs.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use certificates::{CertError, CertificateKind, FiscalCode};
use protocol::ErrorCode;
use queue::Time;
use serde::Deserialize;

use super::oidc::SignInError;
use super::session::{Session, SessionError, COOKIE, SIGNIN_COOKIE};
use crate::error::AppError;
use crate::state::AppState;

pub mod certificates_api;
mod pages;
pub mod schema;

use schema::{
    Cost, FamilyMember, Me, ProviderInfo, ServiceExemption, ServiceKind, ServiceLink, Services,
};

/// This module's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/servizi/login", get(login))
        .route("/servizi/auth/callback", get(callback))
        .route("/servizi/logout", post(logout))
        .route("/api/v1/web/me", get(me))
        .route("/api/v1/web/services", get(services))
        .merge(certificates_api::routes())
}

/// The value of cookie `name` in the request.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether cookies must carry `Secure`: under TLS, or behind a proxy serving `https://`.
fn secure(state: &AppState) -> bool {
    state.config.tls.is_some()
        || state
            .web
            .settings
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// A `Set-Cookie` value.
fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// This site's origin as the browser sees it: `[web] public_url`, or the request's scheme and
/// `Host`.
fn origin(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(url) = &state.web.settings.public_url {
        let url = url.trim_end_matches('/');
        // The origin is scheme://authority, without a path.
        let after = url.find("://").map(|i| i + 3)?;
        let end = url[after..].find('/').map_or(url.len(), |i| after + i);
        return Some(url[..end].to_owned());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}"))
}

/// State-changing requests must come from this site's own pages: their `Origin` is this origin
/// (with a TLS-terminating proxy in front, the host must match).
pub(super) fn same_origin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let refused = || {
        AppError::new(
            ErrorCode::Forbidden,
            "richiesta da un'altra origine / cross-origin request refused",
        )
    };
    let sent = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .ok_or_else(refused)?;
    let ours = origin(state, headers).ok_or_else(refused)?;
    let authority = |o: &str| o.split_once("://").map(|(_, a)| a.to_ascii_lowercase());
    let matches = if state.web.settings.public_url.is_some() {
        sent.eq_ignore_ascii_case(&ours)
    } else {
        authority(sent).is_some() && authority(sent) == authority(&ours)
    };
    if matches {
        Ok(())
    } else {
        Err(refused())
    }
}

/// The redirect URI registered with the providers.
fn redirect_uri(state: &AppState, headers: &HeaderMap) -> Option<String> {
    match &state.web.settings.public_url {
        Some(url) => Some(format!(
            "{}/servizi/auth/callback",
            url.trim_end_matches('/')
        )),
        None => origin(state, headers).map(|o| format!("{o}/servizi/auth/callback")),
    }
}

/// The signed-in session of the request, or `401 unauthorized`.
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Session), AppError> {
    let token = cookie(headers, COOKIE)
        .ok_or_else(|| AppError::unauthorized("accesso richiesto / sign-in required"))?;
    match state.web.sessions.get(&token, Time::now()).await {
        Ok(s) => Ok((token, s)),
        Err(SessionError::None) | Err(SessionError::Budget(_)) => Err(AppError::unauthorized(
            "sessione scaduta: accedi di nuovo / session expired: sign in again",
        )),
        Err(SessionError::Store(e)) => Err(store_unavailable(e)),
    }
}

pub(super) fn store_unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "web sessions: store unavailable");
    AppError::new(
        ErrorCode::Unavailable,
        "servizio momentaneamente non disponibile / service unavailable, retry",
    )
}

#[derive(Deserialize)]
struct LoginQuery {
    provider: Option<String>,
}

/// `GET /servizi/login`.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if !state.web.rp.enabled() {
        return pages::failure(pages::Failure::NotConfigured);
    }
    let Some(redirect) = redirect_uri(&state, &headers) else {
        return pages::failure(pages::Failure::BadLink);
    };
    let (url, csrf, pending) = match state.web.rp.start(q.provider.as_deref(), &redirect).await {
        Ok(started) => started,
        Err(e) => {
            tracing::warn!(error = %e, "web sign-in cannot start");
            return pages::failure(pages::Failure::from(&e));
        }
    };
    if let Err(e) = state
        .web
        .sessions
        .put_signin(&csrf, &pending, Time::now())
        .await
    {
        tracing::error!(error = %e, "cannot keep a pending web sign-in");
        return pages::failure(pages::Failure::Unavailable);
    }
    let mut response = Redirect::to(&url).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            SIGNIN_COOKIE,
            &csrf,
            "/servizi/auth",
            super::session::SIGNIN_TTL.as_secs(),
        ),
    );
    response
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /servizi/auth/callback`.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let clear = set_cookie(&state, SIGNIN_COOKIE, "", "/servizi/auth", 0);
    let mut response = finish(&state, &headers, q).await;
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}

async fn finish(state: &AppState, headers: &HeaderMap, q: CallbackQuery) -> Response {
    let Some(csrf) = q.state.filter(|s| !s.is_empty()) else {
        return pages::failure(pages::Failure::BadLink);
    };
    // The callback must come back to the browser that started the sign-in: without this, someone
    // could sign a victim in as themselves with their own code (login CSRF).
    if cookie(headers, SIGNIN_COOKIE).as_deref() != Some(csrf.as_str()) {
        tracing::info!("web sign-in callback without its browser's cookie");
        return pages::failure(pages::Failure::Expired);
    }
    let now = Time::now();
    let pending = match state.web.sessions.take_signin(&csrf, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return pages::failure(pages::Failure::Expired),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a pending web sign-in");
            return pages::failure(pages::Failure::Unavailable);
        }
    };
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        tracing::info!(%error, %detail, provider = %pending.provider, "web sign-in ended by the provider");
        return pages::failure(pages::Failure::from(&SignInError::Cancelled(error)));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return pages::failure(pages::Failure::BadLink);
    };
    let user = match state.web.rp.finish(&pending, &code).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, provider = %pending.provider, "web sign-in refused");
            return pages::failure(pages::Failure::from(&e));
        }
    };
    tracing::info!(provider = %user.provider, acr = ?user.acr, "citizen signed in on the web");
    let token = match state.web.sessions.create(user, now).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a web session");
            return pages::failure(pages::Failure::Unavailable);
        }
    };
    let mut response = Redirect::to("/servizi/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            state,
            COOKIE,
            &token,
            "/",
            state.web.sessions.max().as_secs(),
        ),
    );
    response
}

/// `POST /servizi/logout`.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    same_origin(&state, &headers)?;
    if let Some(token) = cookie(&headers, COOKIE) {
        state
            .web
            .sessions
            .end(&token, Time::now())
            .await
            .map_err(store_unavailable)?;
    }
    let mut response = Redirect::to("/servizi/").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, COOKIE, "", "/", 0));
    Ok(response)
}

/// The citizen's record and the other members of their family today, from the registry (`None`:
/// not in this registry).
pub(super) async fn family_of(
    state: &AppState,
    fiscal_code: &str,
) -> Result<
    Option<(
        certificates::registry::Person,
        Vec<certificates::registry::Person>,
    )>,
    AppError,
> {
    let issuer = state.issuer.clone();
    let fc = fiscal_code.to_owned();
    tokio::task::spawn_blocking(move || {
        let fc = FiscalCode::parse(&fc)?;
        let person = match issuer.registry().person(&fc) {
            Ok(p) => p,
            Err(CertError::PersonNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let today = certificates::issuer::italian_time(time::OffsetDateTime::now_utc()).date();
        let family = match person.residence_on(today) {
            Some(r) if person.death.is_none() => {
                let members = issuer.registry().family_members(&r.family_id)?;
                certificates::registry::family_on(&members, &r.family_id, today, false)
                    .into_iter()
                    .map(|m| m.person)
                    .filter(|p| p.fiscal_code != person.fiscal_code && p.death.is_none())
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(Some((person, family)))
    })
    .await
    .map_err(AppError::internal)?
    .map_err(|e: CertError| {
        tracing::error!(error = %e, "registry lookup for the web failed");
        AppError::new(
            ErrorCode::Unavailable,
            "anagrafe non raggiungibile / registry unavailable, retry",
        )
    })
}

/// The signed-in citizen and their family today.
#[utoipa::path(get, path = "/api/v1/web/me", tag = "citizen",
    security(("citizen_session" = [])),
    responses(
        (status = 200, description = "The citizen", body = Me),
        (status = 401, description = "Not signed in", body = crate::web::intermediary::ErrorBody),
        (status = 503, description = "The registry cannot be reached", body = crate::web::intermediary::ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, AppError> {
    let (_, session) = signed_in(&state, &headers).await?;
    let user = &session.user;
    let found = family_of(&state, &user.fiscal_code).await?;
    Ok(Json(match found {
        Some((person, family)) => Me {
            fiscal_code: user.fiscal_code.clone(),
            given_name: Some(person.given_names.clone()),
            family_name: Some(person.surname.clone()),
            family: family
                .iter()
                .map(|p| FamilyMember {
                    fiscal_code: p.fiscal_code.as_str().to_owned(),
                    name: format!("{} {}", p.given_names, p.surname),
                })
                .collect(),
            in_registry: true,
            provider: user.provider.clone(),
        },
        None => Me {
            fiscal_code: user.fiscal_code.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            family: Vec::new(),
            in_registry: false,
            provider: user.provider.clone(),
        },
    }))
}

/// What a kind is for, in a few words (Italian, English).
fn purpose(kind: CertificateKind) -> (&'static str, &'static str) {
    match kind.code() {
        "residenza" => ("Dove risiedi oggi.", "Where you live today."),
        "residenza_alla_data" => (
            "Dove risiedevi a una data passata.",
            "Where you lived on a past date.",
        ),
        "stato_famiglia" => (
            "Chi compone oggi la tua famiglia anagrafica.",
            "Who is on your family sheet today.",
        ),
        "stato_famiglia_alla_data" => (
            "Chi componeva la famiglia anagrafica a una data passata.",
            "Who was on the family sheet on a past date.",
        ),
        "stato_famiglia_decesso" => (
            "La famiglia anagrafica di una persona alla data della sua morte.",
            "A person's family sheet on the day they died.",
        ),
        "stato_famiglia_parentela" => (
            "La famiglia anagrafica con i rapporti di parentela.",
            "The family sheet with the kinship of each member.",
        ),
        "cittadinanza" => ("La tua cittadinanza.", "Your citizenship."),
        "stato_libero" => (
            "Che non sei sposato/a né unito/a civilmente.",
            "That you are not married or in a civil union.",
        ),
        "esistenza_in_vita" => (
            "Che sei in vita (pensioni, pratiche all'estero).",
            "That you are alive (pensions, matters abroad).",
        ),
        "cumulativo_famiglia" => (
            "Residenza, cittadinanza e famiglia in un solo certificato.",
            "Residence, citizenship and family in one certificate.",
        ),
        "contestuale" => (
            "Più dati in un solo certificato (residenza, cittadinanza, stato civile…).",
            "Several facts in one certificate (residence, citizenship, marital status…).",
        ),
        "residenza_provenienza" => (
            "La residenza, con il comune da cui provieni.",
            "Your residence, with the comune you moved from.",
        ),
        "estremi_carta_identita" => (
            "Gli estremi della tua carta d'identità.",
            "The details of your identity card.",
        ),
        "residenza_aire" => (
            "L'iscrizione all'AIRE (italiani residenti all'estero).",
            "Registration in AIRE (Italians living abroad).",
        ),
        "stato_civile" => ("Il tuo stato civile oggi.", "Your marital status today."),
        "stato_famiglia_aire" => (
            "La famiglia iscritta all'AIRE.",
            "The family registered in AIRE.",
        ),
        "residenza_convivenza" => (
            "La residenza in una convivenza anagrafica (istituti, case di riposo…).",
            "Residence in an institutional household (care homes, convents…).",
        ),
        "contratto_convivenza" => (
            "Il contratto di convivenza registrato (solo alle due parti).",
            "The registered cohabitation contract (to its two parties only).",
        ),
        "anagrafico_nascita" => (
            "I dati di nascita registrati in anagrafe.",
            "Your birth data as recorded in the registry.",
        ),
        "anagrafico_matrimonio" => (
            "I dati del matrimonio registrati in anagrafe.",
            "Your marriage data as recorded in the registry.",
        ),
        "unione_civile" => (
            "L'unione civile dall'atto di stato civile.",
            "The civil union, from the civil-status record.",
        ),
        "nascita" => ("Estratto dell'atto di nascita.", "Birth record."),
        "matrimonio" => ("Estratto dell'atto di matrimonio.", "Marriage record."),
        "morte" => ("Estratto dell'atto di morte.", "Death record."),
        _ => (kind.title(), kind.title()),
    }
}

/// The services offered: sign-in providers, certificate kinds (what each is for, validity,
/// cost), the exemptions a citizen may use, and links to the comune's other services. Public.
#[utoipa::path(get, path = "/api/v1/web/services", tag = "citizen",
    responses((status = 200, description = "The catalogue", body = Services)))]
pub async fn services(State(state): State<AppState>) -> Json<Services> {
    use certificates::issuer::{BOLLO_CENTS, FEE_EXEMPT_CENTS, FEE_WITH_BOLLO_CENTS};
    let diritti = &state.config.certificates.civil_status_diritti;
    let euro = |c: u32| format!("€ {},{:02}", c / 100, c % 100);
    let certificates = CertificateKind::ALL
        .iter()
        .map(|&kind| {
            let (purpose_it, purpose_en) = purpose(kind);
            let cost = match diritti.cents(kind) {
                Some(c) => Cost {
                    bollo_cents: 0,
                    diritti_cents: c,
                    diritti_exempt_cents: None,
                    text: format!(
                        "Esente da bollo; diritti {} / No stamp duty; fee {}",
                        euro(c),
                        euro(c)
                    ),
                },
                None => Cost {
                    bollo_cents: BOLLO_CENTS,
                    diritti_cents: FEE_WITH_BOLLO_CENTS,
                    diritti_exempt_cents: Some(FEE_EXEMPT_CENTS),
                    text: format!(
                        "Marca da bollo € 16,00 e diritti {} (con esenzione: diritti {}) / \
                         € 16.00 stamp duty and a {} fee ({} when exempt)",
                        euro(FEE_WITH_BOLLO_CENTS),
                        euro(FEE_EXEMPT_CENTS),
                        euro(FEE_WITH_BOLLO_CENTS),
                        euro(FEE_EXEMPT_CENTS),
                    ),
                },
            };
            ServiceKind {
                kind: kind.code().into(),
                title: kind.title().into(),
                purpose: purpose_it.into(),
                purpose_en: purpose_en.into(),
                legal_basis: kind.legal_basis().into(),
                validity: if kind.expires() {
                    "6 mesi / 6 months"
                } else {
                    "illimitata / unlimited"
                }
                .into(),
                validity_months: kind.expires().then_some(6),
                bollo: !kind.is_civil_status(),
                needs_reason: kind.is_past_situation(),
                needs_as_of: kind.needs_as_of(),
                cost,
            }
        })
        .collect();
    let exemptions = state
        .issuer
        .exemptions()
        .offered(true)
        .map(|e| ServiceExemption {
            code: e.code.clone(),
            label: e.use_.clone(),
            legal_basis: e.legal_basis.clone(),
            bollo_exempt: e.bollo_exempt,
        })
        .collect();
    let providers = state
        .web
        .rp
        .providers()
        .map(|p| ProviderInfo {
            name: p.name.clone(),
            label: p.label(),
        })
        .collect();
    let links = state
        .web
        .settings
        .links
        .iter()
        .map(|l| ServiceLink {
            label: l.label.clone(),
            label_en: l.label_en.clone(),
            url: l.url.clone(),
        })
        .collect();
    Json(Services {
        municipality: state.config.municipality.clone(),
        providers,
        certificates,
        exemptions,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_says_what_it_is_for_in_both_languages() {
        for kind in CertificateKind::ALL {
            let (it, en) = purpose(kind);
            assert_ne!(it, kind.title(), "{} has no purpose", kind.code());
            assert_ne!(it, en, "{}", kind.code());
        }
    }
}
