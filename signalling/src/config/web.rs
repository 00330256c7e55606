//! `[web]`: the web channel (`docs/web.md`): the OpenID Connect providers citizens sign in with
//! (`[web.oidc]`, or several `[[web.oidc]]`), the citizens' sessions, the links to the comune's
//! other online services, and the per-session request budget.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// The claim that carries the fiscal number in SPID and CIE ID tokens.
pub const DEFAULT_FISCAL_NUMBER_CLAIM: &str = "https://attributes.eid.gov.it/fiscal_number";

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// The providers (`[web.oidc]` for one, `[[web.oidc]]` for several). None: no sign-in, the
    /// portal says so.
    #[serde(deserialize_with = "one_or_many")]
    pub oidc: Vec<OidcProviderSettings>,
    /// The public URL the provider redirects back to, e.g. `https://servizi.comune.parma.it`
    /// (its `/servizi/auth/callback` is the redirect URI registered with the provider). Absent:
    /// the scheme and `Host` of the request that starts the sign-in.
    pub public_url: Option<String>,
    /// A session ends after this many seconds without a request.
    pub session_idle_s: u64,
    /// A session ends this many seconds after sign-in, whatever its use.
    pub session_max_s: u64,
    /// Certificate requests a session may make per hour (issued or refused).
    pub requests_per_hour: u32,
    /// Links to the comune's other online services, shown on the portal.
    pub links: Vec<WebLink>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            oidc: Vec::new(),
            public_url: None,
            session_idle_s: 30 * 60,
            session_max_s: 8 * 3600,
            requests_per_hour: 30,
            links: vec![
                WebLink {
                    label: "Attività economiche".into(),
                    label_en: Some("Business activities".into()),
                    url: "https://www.comune.parma.it/attivita-economiche".into(),
                },
                WebLink {
                    label: "Mobilità e permessi".into(),
                    label_en: Some("Mobility and permits".into()),
                    url: "https://www.comune.parma.it/mobilita".into(),
                },
            ],
        }
    }
}

/// One OpenID provider (`[[web.oidc]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcProviderSettings {
    /// A short name for `/servizi/login?provider=NAME`, e.g. `spid` or `cie`.
    pub name: String,
    /// What the sign-in button says, e.g. `SPID` (default: the name in capitals).
    pub label: Option<String>,
    /// The issuer; discovery reads `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The file holding the client secret (trimmed). Absent: a public client (PKCE only).
    pub client_secret_file: Option<PathBuf>,
    /// The ID-token claim with the fiscal number (its `TINIT-` prefix is removed).
    pub fiscal_number_claim: String,
    /// Requested authentication context classes, space-separated, e.g.
    /// `https://www.spid.gov.it/SpidL2`. When set, the ID token's `acr` must be one of them or a
    /// higher SPID level.
    pub acr_values: Option<String>,
}

impl Default for OidcProviderSettings {
    fn default() -> Self {
        OidcProviderSettings {
            name: "spid".into(),
            label: None,
            issuer: String::new(),
            client_id: String::new(),
            client_secret_file: None,
            fiscal_number_claim: DEFAULT_FISCAL_NUMBER_CLAIM.into(),
            acr_values: None,
        }
    }
}

impl OidcProviderSettings {
    /// The sign-in button's text.
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.name.to_uppercase())
    }
}

/// A link to another online service of the comune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebLink {
    /// The Italian label.
    pub label: String,
    /// The English label.
    #[serde(default)]
    pub label_en: Option<String>,
    /// Where it goes (`https://…` or a path on this site).
    pub url: String,
}

/// `[web.oidc]` (one table) or `[[web.oidc]]` (an array of tables).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OidcProviderSettings>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        // Many first: with `#[serde(default)]`, a struct also accepts an empty sequence, so an
        // empty array (the serialized defaults) would otherwise become one default provider.
        Many(Vec<OidcProviderSettings>),
        One(Box<OidcProviderSettings>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![*p],
        OneOrMany::Many(v) => v,
    })
}

impl WebSettings {
    /// The problems of this section, for `Config::validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for p in &self.oidc {
            let at = format!("web.oidc {:?}", p.name);
            if !super::is_name(&p.name) {
                problems.push(format!("{at}: name must be letters, digits, '-' or '_'"));
            }
            if !names.insert(p.name.clone()) {
                problems.push(format!("{at}: the name is used twice"));
            }
            if !(p.issuer.starts_with("https://") || p.issuer.starts_with("http://")) {
                problems.push(format!("{at}: issuer must be an http(s) URL"));
            }
            if p.client_id.trim().is_empty() {
                problems.push(format!("{at}: client_id is required"));
            }
            if p.fiscal_number_claim.trim().is_empty() {
                problems.push(format!("{at}: fiscal_number_claim must not be empty"));
            }
            if let Some(file) = &p.client_secret_file {
                match std::fs::read_to_string(file) {
                    Ok(s) if s.trim().is_empty() => {
                        problems.push(format!("{at}: {} is empty", file.display()))
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!(
                        "{at}: cannot read client_secret_file {}: {e}",
                        file.display()
                    )),
                }
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!("web.public_url: {url:?} is not an http(s) URL"));
            }
        }
        if self.session_idle_s == 0 || self.session_max_s < self.session_idle_s {
            problems.push(
                "web: session_idle_s must be at least 1 and session_max_s at least as long".into(),
            );
        }
        if self.requests_per_hour == 0 {
            problems.push("web.requests_per_hour must be at least 1".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_provider_as_a_table_or_several_as_an_array() {
        let one: WebSettings =
            toml::from_str("[oidc]\nissuer = \"https://id.example\"\nclient_id = \"sportello\"\n")
                .unwrap();
        assert_eq!(one.oidc.len(), 1);
        assert_eq!(one.oidc[0].name, "spid");
        assert_eq!(one.oidc[0].fiscal_number_claim, DEFAULT_FISCAL_NUMBER_CLAIM);
        let many: WebSettings = toml::from_str(
            "[[oidc]]\nname = \"spid\"\nissuer = \"https://a\"\nclient_id = \"x\"\n\
             [[oidc]]\nname = \"cie\"\nissuer = \"https://b\"\nclient_id = \"y\"\n",
        )
        .unwrap();
        assert_eq!(
            many.oidc
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["spid", "cie"]
        );
        assert!(many.problems().is_empty(), "{:?}", many.problems());
    }

    #[test]
    fn the_defaults_round_trip_without_a_provider() {
        // What the configuration loader does: the defaults serialized, then read back.
        let value = serde_json::to_value(WebSettings::default()).unwrap();
        let back: WebSettings = serde_json::from_value(value).unwrap();
        assert!(back.oidc.is_empty(), "{:?}", back.oidc);
        assert!(back.problems().is_empty(), "{:?}", back.problems());
        let empty: WebSettings = toml::from_str("oidc = []\n").unwrap();
        assert!(empty.oidc.is_empty());
    }

    #[test]
    fn problems_name_each_bad_field() {
        let bad: WebSettings = toml::from_str(
            "[[oidc]]\nname = \"a b\"\nissuer = \"ftp://x\"\nclient_id = \"\"\n\
             [[oidc]]\nname = \"a b\"\nissuer = \"https://x\"\nclient_id = \"c\"\n",
        )
        .unwrap();
        let p = bad.problems().join("\n");
        for needle in ["name must be", "used twice", "issuer must be", "client_id"] {
            assert!(p.contains(needle), "{needle} missing in {p}");
        }
    }
}
