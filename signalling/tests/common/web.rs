//! The web channel's test site: a server whose `[web.oidc]` is a fresh real OpenID provider
//! (`testkit::oidc`), and a citizen's side of the flow over HTTP, as a browser would drive it.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use signalling::config::OidcProviderSettings;
use testkit::oidc::{demo_accounts, OidcProvider, SPID_L2};

use super::TestServer;

/// A server whose `[web.oidc]` is a fresh test provider.
pub struct Site {
    pub t: TestServer,
    pub provider: OidcProvider,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// What `/servizi/login` gave: the provider's URL and the browser-binding cookie.
pub struct Started {
    pub authorize: String,
    pub signin_cookie: String,
}

pub fn cookie_value(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, v.to_owned())
        })
}

impl Site {
    pub async fn start(edit: impl FnOnce(&mut signalling::config::Config)) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let provider = OidcProvider::start(
            dir.path(),
            "http://127.0.0.1:0/servizi/auth/callback",
            &demo_accounts(),
        )
        .unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, format!("{}\n", provider.client_secret())).unwrap();
        let t = TestServer::start_with(|c| {
            c.web.oidc = vec![OidcProviderSettings {
                name: "spid".into(),
                label: Some("SPID".into()),
                issuer: provider.issuer(),
                client_id: provider.client_id().to_owned(),
                client_secret_file: Some(secret),
                acr_values: Some(SPID_L2.into()),
                ..OidcProviderSettings::default()
            }];
            edit(c);
        })
        .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Site {
            t,
            provider,
            http,
            _dir: dir,
        }
    }

    pub async fn begin(&self) -> Started {
        let r = self
            .http
            .get(self.t.url("/servizi/login"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{:?}", r.text().await);
        let (signin_cookie, attrs) = cookie_value(&r, "sportello_signin").unwrap();
        assert!(
            attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax"),
            "{attrs}"
        );
        let authorize = r.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(
            authorize.starts_with(&self.provider.issuer()),
            "{authorize}"
        );
        for needle in [
            "code_challenge_method=S256",
            "code_challenge=",
            "nonce=",
            "state=",
            "acr_values=",
        ] {
            assert!(
                authorize.contains(needle),
                "{needle} missing in {authorize}"
            );
        }
        Started {
            authorize,
            signin_cookie,
        }
    }

    /// Back at the callback with the browser's cookie: the response.
    pub async fn callback(&self, url: &str, signin_cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(url);
        if let Some(c) = signin_cookie {
            request = request.header(COOKIE, format!("sportello_signin={c}"));
        }
        request.send().await.unwrap()
    }

    /// A full sign-in as `login`: the session cookie.
    pub async fn sign_in(&self, login: &str) -> String {
        let started = self.begin().await;
        let back = self
            .provider
            .sign_in(&started.authorize, login)
            .await
            .unwrap();
        let r = self.callback(&back, Some(&started.signin_cookie)).await;
        assert_eq!(r.status(), 303, "{:?}", r.headers());
        assert_eq!(r.headers()[LOCATION], "/servizi/");
        let (token, attrs) = cookie_value(&r, "sportello_web").unwrap();
        for needle in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(attrs.contains(needle), "{needle} missing in {attrs}");
        }
        assert!(
            !attrs.contains("Secure"),
            "plain HTTP: no Secure flag ({attrs})"
        );
        token
    }

    pub async fn me(&self, session: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.t.url("/api/v1/web/me"))
            .header(COOKIE, format!("sportello_web={session}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A request with the citizen's session cookie and this site's `Origin`.
    pub fn post(&self, session: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.t.url(path))
            .header(COOKIE, format!("sportello_web={session}"))
            .header(reqwest::header::ORIGIN, self.t.server.base_url())
    }

    /// A GET with the citizen's session cookie.
    pub fn get(&self, session: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.t.url(path))
            .header(COOKIE, format!("sportello_web={session}"))
    }
}
