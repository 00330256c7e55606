//! The OpenID Connect relying party: citizens sign in with SPID or CIE through an OIDC provider
//! (`[web.oidc]`, `docs/web.md`).
//!
//! Authorization code flow with PKCE (S256), `state` and `nonce`, scopes `openid profile`, and
//! `acr_values` when configured. The `openidconnect` crate does discovery, the code exchange and
//! the ID token's checks (signature against the provider's keys, `iss`, `aud`, `azp`, expiry,
//! `nonce`); this module adds what SPID and CIE need on top: the fiscal number from a configurable
//! claim without its `TINIT-` prefix, and the authentication level.
//!
//! Discovery is lazy and cached for an hour, so a provider that is down at start-up does not stop
//! the server: signing in then says the provider cannot be reached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::OidcProviderSettings;

/// How long discovered metadata (endpoints and keys) is kept before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Time allowed for each request to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The prefix SPID and CIE put before an Italian fiscal number.
const TINIT: &str = "TINIT-";

/// A sign-in that failed, with what to tell the citizen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    /// The citizen cancelled at the provider, or the provider refused (`error` in the callback).
    Cancelled(String),
    /// The provider cannot be reached or answered nonsense.
    Unavailable(String),
    /// The answer did not pass the checks (token, state, nonce, claims).
    Rejected(String),
    /// No such provider is configured.
    UnknownProvider(String),
}

impl std::fmt::Display for SignInError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignInError::Cancelled(s) => write!(f, "cancelled: {s}"),
            SignInError::Unavailable(s) => write!(f, "provider unavailable: {s}"),
            SignInError::Rejected(s) => write!(f, "rejected: {s}"),
            SignInError::UnknownProvider(s) => write!(f, "unknown provider {s:?}"),
        }
    }
}

/// What the relying party keeps between the redirect to the provider and the callback (in the
/// store, under the `state`, so the callback may reach any node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The provider's name.
    pub provider: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The redirect URI used (the code exchange repeats it).
    pub redirect_uri: String,
}

/// Who signed in, from a checked ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    /// The provider's name.
    pub provider: String,
    /// The fiscal code, upper case, without `TINIT-`.
    pub fiscal_code: String,
    /// `given_name`, if the provider gave it.
    pub given_name: Option<String>,
    /// `family_name`, if the provider gave it.
    pub family_name: Option<String>,
    /// `acr`, the authentication level.
    pub acr: Option<String>,
}

/// The providers and the HTTP client that talks to them.
pub struct RelyingParty {
    providers: Vec<Provider>,
    http: openidconnect::reqwest::Client,
}

struct Provider {
    settings: OidcProviderSettings,
    secret: Option<String>,
    metadata: Mutex<Option<(Arc<CoreProviderMetadata>, Instant)>>,
}

impl RelyingParty {
    /// The relying party of these providers; reads each client secret file.
    pub fn new(settings: &[OidcProviderSettings]) -> anyhow::Result<RelyingParty> {
        let providers = settings
            .iter()
            .map(|s| {
                let secret = match &s.client_secret_file {
                    Some(f) => Some(
                        std::fs::read_to_string(f)
                            .map_err(|e| {
                                anyhow::anyhow!("web.oidc {:?}: {}: {e}", s.name, f.display())
                            })?
                            .trim()
                            .to_owned(),
                    ),
                    None => None,
                };
                Ok(Provider {
                    settings: s.clone(),
                    secret,
                    metadata: Mutex::new(None),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Redirects are not followed: the flow's redirects are the browser's, and following them
        // from the server would open the relying party to SSRF.
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(RelyingParty { providers, http })
    }

    /// The configured providers, in order.
    pub fn providers(&self) -> impl Iterator<Item = &OidcProviderSettings> {
        self.providers.iter().map(|p| &p.settings)
    }

    /// Whether any provider is configured.
    pub fn enabled(&self) -> bool {
        !self.providers.is_empty()
    }

    fn provider(&self, name: Option<&str>) -> Result<&Provider, SignInError> {
        match name {
            None => self.providers.first(),
            Some(n) => self.providers.iter().find(|p| p.settings.name == n),
        }
        .ok_or_else(|| SignInError::UnknownProvider(name.unwrap_or_default().to_owned()))
    }

    async fn metadata(&self, p: &Provider) -> Result<Arc<CoreProviderMetadata>, SignInError> {
        let mut cached = p.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(m.clone());
            }
        }
        let issuer = IssuerUrl::new(p.settings.issuer.clone())
            .map_err(|e| SignInError::Unavailable(format!("issuer URL: {e}")))?;
        let m = Arc::new(
            CoreProviderMetadata::discover_async(issuer, &self.http)
                .await
                .map_err(|e| SignInError::Unavailable(format!("discovery: {e}")))?,
        );
        *cached = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    /// Forgets a provider's metadata, so the next sign-in reads its keys again (after a token
    /// signed with a key that was not known).
    async fn forget(&self, p: &Provider) {
        *p.metadata.lock().await = None;
    }

    /// Starts a sign-in: the provider's authorization URL, the `state` to keep the pending sign-in
    /// under, and the pending sign-in.
    pub async fn start(
        &self,
        provider: Option<&str>,
        redirect_uri: &str,
    ) -> Result<(String, String, PendingSignIn), SignInError> {
        let p = self.provider(provider)?;
        let metadata = self.metadata(p).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(p.settings.client_id.clone()),
            p.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| SignInError::Unavailable(format!("redirect URI: {e}")))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        for acr in acr_values(&p.settings) {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr));
        }
        let (url, state, nonce) = request.url();
        Ok((
            url.to_string(),
            state.secret().clone(),
            PendingSignIn {
                provider: p.settings.name.clone(),
                pkce_verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                redirect_uri: redirect_uri.to_owned(),
            },
        ))
    }

    /// Completes a sign-in: exchanges the code, checks the ID token and reads who signed in.
    pub async fn finish(
        &self,
        pending: &PendingSignIn,
        code: &str,
    ) -> Result<SignedIn, SignInError> {
        let p = self.provider(Some(&pending.provider))?;
        match self.exchange(p, pending, code).await {
            Err(SignInError::Rejected(e)) if e.contains("signature") => {
                // The provider may have rotated its keys: read them again for the next sign-in.
                self.forget(p).await;
                Err(SignInError::Rejected(e))
            }
            other => other,
        }
    }

    async fn exchange(
        &self,
        p: &Provider,
        pending: &PendingSignIn,
        code: &str,
    ) -> Result<SignedIn, SignInError> {
        let metadata = self.metadata(p).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(p.settings.client_id.clone()),
            p.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(
            RedirectUrl::new(pending.redirect_uri.clone())
                .map_err(|e| SignInError::Unavailable(format!("redirect URI: {e}")))?,
        );
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Unavailable(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    SignInError::Rejected(format!("token endpoint refused the code: {r}"))
                }
                other => SignInError::Unavailable(format!("token endpoint: {other}")),
            })?;
        let _ = response.access_token();
        let id_token = response
            .id_token()
            .ok_or_else(|| SignInError::Rejected("the provider sent no ID token".into()))?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| SignInError::Rejected(format!("ID token: {e}")))?;
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned());
        check_acr(&p.settings, acr.as_deref())?;
        // The token passed every check: its payload is the one just verified, read again here for
        // the claims the core types do not model (the fiscal number's name is configurable).
        let raw = payload(&id_token.to_string())
            .map_err(|e| SignInError::Rejected(format!("ID token payload: {e}")))?;
        let fiscal_code = fiscal_number(&raw, &p.settings.fiscal_number_claim)?;
        let text = |key: &str| {
            raw.get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .filter(|s| !s.trim().is_empty())
        };
        Ok(SignedIn {
            provider: p.settings.name.clone(),
            fiscal_code,
            given_name: text("given_name"),
            family_name: text("family_name"),
            acr,
        })
    }
}

/// The requested authentication classes.
fn acr_values(settings: &OidcProviderSettings) -> Vec<String> {
    settings
        .acr_values
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The SPID level of an `acr`, 1 to 3.
fn spid_level(acr: &str) -> Option<u8> {
    match acr.trim_end_matches('/') {
        "https://www.spid.gov.it/SpidL1" => Some(1),
        "https://www.spid.gov.it/SpidL2" => Some(2),
        "https://www.spid.gov.it/SpidL3" => Some(3),
        _ => None,
    }
}

/// When classes were requested, the token's `acr` must be one of them or a higher SPID level.
fn check_acr(settings: &OidcProviderSettings, acr: Option<&str>) -> Result<(), SignInError> {
    let wanted = acr_values(settings);
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(acr) = acr else {
        return Err(SignInError::Rejected(
            "the ID token does not say how the citizen authenticated (acr)".into(),
        ));
    };
    let min_level = wanted.iter().filter_map(|w| spid_level(w)).min();
    let ok = wanted.iter().any(|w| w == acr)
        || matches!((min_level, spid_level(acr)), (Some(min), Some(got)) if got >= min);
    if ok {
        Ok(())
    } else {
        Err(SignInError::Rejected(format!(
            "authentication level {acr} is lower than required ({})",
            wanted.join(" ")
        )))
    }
}

/// The JSON payload of a compact JWT (not checked here: the caller verified the token).
fn payload(jwt: &str) -> Result<HashMap<String, serde_json::Value>, String> {
    let part = jwt.split('.').nth(1).ok_or("not a compact JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The fiscal code from the configured claim: `TINIT-` removed, upper case, checked.
fn fiscal_number(
    claims: &HashMap<String, serde_json::Value>,
    claim: &str,
) -> Result<String, SignInError> {
    let value = claims
        .get(claim)
        .and_then(|v| v.as_str())
        .ok_or_else(|| SignInError::Rejected(format!("the ID token has no {claim} claim")))?;
    let value = value.trim();
    let bare = value
        .strip_prefix(TINIT)
        .or_else(|| value.strip_prefix("tinit-"))
        .unwrap_or(value);
    certificates::FiscalCode::parse(bare)
        .map(|f| f.as_str().to_owned())
        .map_err(|e| SignInError::Rejected(format!("{claim}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(acr: Option<&str>) -> OidcProviderSettings {
        OidcProviderSettings {
            acr_values: acr.map(str::to_owned),
            ..OidcProviderSettings::default()
        }
    }

    #[test]
    fn the_fiscal_number_loses_its_tinit_prefix() {
        let claim = crate::config::web::DEFAULT_FISCAL_NUMBER_CLAIM;
        let claims: HashMap<_, _> = [(claim.to_owned(), json!("TINIT-RSSLCU85D12G337O"))].into();
        assert_eq!(
            fiscal_number(&claims, claim).unwrap(),
            "RSSLCU85D12G337O".to_owned()
        );
        let plain: HashMap<_, _> = [("cf".to_owned(), json!("rsslcu85d12g337o"))].into();
        assert_eq!(fiscal_number(&plain, "cf").unwrap(), "RSSLCU85D12G337O");
        assert!(matches!(
            fiscal_number(&plain, claim),
            Err(SignInError::Rejected(_))
        ));
        let bad: HashMap<_, _> = [("cf".to_owned(), json!("TINIT-NOTACODE"))].into();
        assert!(matches!(
            fiscal_number(&bad, "cf"),
            Err(SignInError::Rejected(_))
        ));
    }

    #[test]
    fn the_level_must_reach_the_requested_one() {
        let l2 = settings(Some("https://www.spid.gov.it/SpidL2"));
        assert!(check_acr(&l2, Some("https://www.spid.gov.it/SpidL2")).is_ok());
        assert!(check_acr(&l2, Some("https://www.spid.gov.it/SpidL3")).is_ok());
        assert!(check_acr(&l2, Some("https://www.spid.gov.it/SpidL1")).is_err());
        assert!(check_acr(&l2, None).is_err());
        assert!(check_acr(&settings(None), None).is_ok());
        let cie = settings(Some("urn:cie:level2"));
        assert!(check_acr(&cie, Some("urn:cie:level2")).is_ok());
        assert!(check_acr(&cie, Some("urn:cie:level1")).is_err());
    }

    #[test]
    fn a_payload_is_read_from_the_middle_part() {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"a":"b"}"#);
        assert_eq!(payload(&format!("x.{body}.y")).unwrap()["a"], json!("b"));
        assert!(payload("nodots").is_err());
    }
}
