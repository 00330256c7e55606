//! Citizens sign in on the web channel through a real OpenID provider (the npm package
//! `oidc-provider`, configured like a SPID/CIE gateway: `testkit::oidc`), driven over HTTP as a
//! browser would: `/servizi/login` → the provider's login form → `/servizi/auth/callback` → a
//! session cookie → `/api/v1/web/me`. Then every way a sign-in must fail: a tampered ID token
//! (signature, nonce, audience, issuer, expiry), a replayed `state`, a callback in another
//! browser, a cancelled sign-in, an expired session, and cross-origin POSTs.

mod common;

use common::web::{cookie_value, Site};
use common::TestServer;
use reqwest::header::{COOKIE, ORIGIN};
use serde_json::Value;
use testkit::oidc::Tamper;

#[tokio::test]
async fn a_citizen_signs_in_and_sees_their_family() {
    let site = Site::start(|_| {}).await;
    let session = site.sign_in("luca").await;
    let (status, me) = site.me(&session).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["fiscal_code"], "RSSLCU85D12G337O");
    assert_eq!(me["in_registry"], true);
    assert_eq!(me["provider"], "spid");
    let family = me["family"].as_array().unwrap();
    assert!(!family.is_empty(), "{me}");
    assert!(family
        .iter()
        .all(|m| m["fiscal_code"] != "RSSLCU85D12G337O"));

    // Someone the registry does not know is signed in too, and told so.
    let stranger = site.sign_in("giuseppe").await;
    let (status, me) = site.me(&stranger).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["in_registry"], false, "{me}");
    assert_eq!(me["family_name"], "Verdi");
    assert_eq!(me["family"], serde_json::json!([]));

    // No cookie, or a made-up one: 401.
    assert_eq!(site.me("made-up").await.0, 401);
    let r = site
        .http
        .get(site.t.url("/api/v1/web/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_bad_id_token_signs_nobody_in() {
    let site = Site::start(|_| {}).await;
    for mode in [
        Tamper::Signature,
        Tamper::Nonce,
        Tamper::Audience,
        Tamper::Issuer,
        Tamper::Expired,
    ] {
        let started = site.begin().await;
        site.provider.tamper(mode).await.unwrap();
        let back = site
            .provider
            .sign_in(&started.authorize, "luca")
            .await
            .unwrap();
        let r = site.callback(&back, Some(&started.signin_cookie)).await;
        assert_eq!(r.status(), 401, "{mode:?}");
        assert!(cookie_value(&r, "sportello_web").is_none(), "{mode:?}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Non è stato possibile verificare l'accesso"),
            "{mode:?}: {page}"
        );
        assert!(page.contains("We could not verify the sign-in"), "{page}");
    }
    // The provider is fine again: the next sign-in works (keys read again after the bad signature).
    site.sign_in("luca").await;
}

#[tokio::test]
async fn a_state_is_used_once_and_only_by_its_browser() {
    let site = Site::start(|_| {}).await;
    // Another browser (no cookie, or another sign-in's cookie) cannot complete this sign-in.
    let started = site.begin().await;
    let other = site.begin().await;
    let back = site
        .provider
        .sign_in(&started.authorize, "luca")
        .await
        .unwrap();
    let r = site.callback(&back, None).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Accesso scaduto"));
    let r = site.callback(&back, Some(&other.signin_cookie)).await;
    assert_eq!(r.status(), 400);

    // A completed callback replayed finds its state gone.
    let started = site.begin().await;
    let back = site
        .provider
        .sign_in(&started.authorize, "luca")
        .await
        .unwrap();
    let r = site.callback(&back, Some(&started.signin_cookie)).await;
    assert_eq!(r.status(), 303);
    let again = site.callback(&back, Some(&started.signin_cookie)).await;
    assert_eq!(again.status(), 400);
    assert!(cookie_value(&again, "sportello_web").is_none());
    assert!(again.text().await.unwrap().contains("già stato usato"));

    // A link with no state at all.
    let r = site
        .callback(&site.t.url("/servizi/auth/callback?code=x"), None)
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Collegamento non valido"));
}

#[tokio::test]
async fn a_cancelled_sign_in_says_so() {
    let site = Site::start(|_| {}).await;
    let started = site.begin().await;
    let back = site.provider.cancel(&started.authorize).await.unwrap();
    assert!(back.contains("error=access_denied"), "{back}");
    let r = site.callback(&back, Some(&started.signin_cookie)).await;
    assert_eq!(r.status(), 401);
    assert!(cookie_value(&r, "sportello_web").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("Accesso annullato") && page.contains("Sign-in cancelled"));
}

#[tokio::test]
async fn sessions_expire_and_sign_out_needs_our_origin() {
    let site = Site::start(|c| {
        c.web.session_idle_s = 1;
        c.web.session_max_s = 1;
    })
    .await;
    let session = site.sign_in("luca").await;
    assert_eq!(site.me(&session).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        site.me(&session).await.0,
        401,
        "the session outlived its limit"
    );

    let site = Site::start(|_| {}).await;
    let session = site.sign_in("luca").await;
    let logout = |origin: Option<&str>| {
        let mut r = site
            .http
            .post(site.t.url("/servizi/logout"))
            .header(COOKIE, format!("sportello_web={session}"));
        if let Some(o) = origin {
            r = r.header(ORIGIN, o);
        }
        r.send()
    };
    // Another site's page, or a request with no Origin, cannot sign the citizen out.
    for origin in [Some("http://evil.example"), None] {
        let r = logout(origin).await.unwrap();
        assert_eq!(r.status(), 403, "{origin:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "forbidden");
        assert_eq!(site.me(&session).await.0, 200);
    }
    let ours = site.t.server.base_url();
    let r = logout(Some(&ours)).await.unwrap();
    assert_eq!(r.status(), 303);
    let (_, attrs) = cookie_value(&r, "sportello_web").unwrap();
    assert!(attrs.contains("Max-Age=0"), "{attrs}");
    assert_eq!(site.me(&session).await.0, 401, "signed out");
}

#[tokio::test]
async fn services_are_public_and_sign_in_needs_a_provider() {
    let site = Site::start(|_| {}).await;
    let r = site
        .http
        .get(site.t.url("/api/v1/web/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let services: Value = r.json().await.unwrap();
    assert_eq!(services["providers"][0]["name"], "spid");
    assert_eq!(services["providers"][0]["label"], "SPID");
    let kinds = services["certificates"].as_array().unwrap();
    let residenza = kinds.iter().find(|k| k["kind"] == "residenza").unwrap();
    assert_eq!(residenza["validity_months"], 6);
    assert_eq!(residenza["bollo"], true);
    let nascita = kinds.iter().find(|k| k["kind"] == "nascita").unwrap();
    assert_eq!(nascita["bollo"], false);
    let codes: Vec<&str> = services["exemptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"b9"), "{codes:?}");
    assert!(
        !codes.contains(&"b16"),
        "office-only exemptions are not offered: {codes:?}"
    );
    assert!(!services["links"].as_array().unwrap().is_empty());

    // No provider configured: the sign-in page says so.
    let t = TestServer::start().await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(t.url("/servizi/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("Accesso non disponibile"));
    // An unknown provider name.
    let r = site
        .http
        .get(site.t.url("/servizi/login?provider=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn each_provider_signs_in_through_its_own_issuer() {
    // A second provider, "cie", beside the site's "spid".
    let dir = tempfile::tempdir().unwrap();
    let cie = testkit::oidc::OidcProvider::start(
        dir.path(),
        "http://127.0.0.1:0/servizi/auth/callback",
        &testkit::oidc::demo_accounts(),
    )
    .unwrap();
    let secret = dir.path().join("cie-secret");
    std::fs::write(&secret, cie.client_secret()).unwrap();
    let site = Site::start(|c| {
        c.web.oidc.push(signalling::config::OidcProviderSettings {
            name: "cie".into(),
            issuer: cie.issuer(),
            client_id: cie.client_id().to_owned(),
            client_secret_file: Some(secret),
            ..Default::default()
        })
    })
    .await;
    let r = site
        .http
        .get(site.t.url("/servizi/login?provider=cie"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (signin_cookie, _) = cookie_value(&r, "sportello_signin").unwrap();
    let authorize = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&cie.issuer()), "{authorize}");
    let back = cie.sign_in(&authorize, "marco").await.unwrap();
    let r = site.callback(&back, Some(&signin_cookie)).await;
    assert_eq!(r.status(), 303);
    let (session, _) = cookie_value(&r, "sportello_web").unwrap();
    let (_, me) = site.me(&session).await;
    assert_eq!(me["provider"], "cie");
    assert_eq!(me["fiscal_code"], "GLLMRC72A18A944W");
    // The code of one provider is no good at the other: the spid sign-in of the same browser
    // cannot be completed with a code minted by cie.
    let started = site.begin().await;
    let cie_start = site
        .http
        .get(site.t.url("/servizi/login?provider=cie"))
        .send()
        .await
        .unwrap();
    let cie_authorize = cie_start.headers()["location"].to_str().unwrap().to_owned();
    let cie_back = cie.sign_in(&cie_authorize, "luca").await.unwrap();
    let code = reqwest::Url::parse(&cie_back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let spid_state = reqwest::Url::parse(&started.authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let forged = site.t.url(&format!(
        "/servizi/auth/callback?code={code}&state={spid_state}"
    ));
    let r = site.callback(&forged, Some(&started.signin_cookie)).await;
    assert_eq!(r.status(), 401);
    assert!(cookie_value(&r, "sportello_web").is_none());
}
