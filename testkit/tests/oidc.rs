//! The test OpenID provider (`testkit::oidc`): a whole authorization code flow with PKCE over
//! HTTP, the ID token's claims and signature (checked against the provider's JWKS with `ring`),
//! PKCE and redirect URIs enforced, the cancel button, and each tamper mode.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use testkit::oidc::{demo_accounts, OidcProvider, Tamper, FISCAL_NUMBER_CLAIM, SPID_L2};

/// The relying party's callback as a test server on some port would send it.
const CALLBACK: &str = "http://127.0.0.1:41234/servizi/auth/callback";

struct Endpoints {
    authorization: String,
    token: String,
    jwks: Value,
}

async fn endpoints(http: &reqwest::Client, op: &OidcProvider) -> Endpoints {
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", op.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], op.issuer());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let jwks = http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Endpoints {
        authorization: discovery["authorization_endpoint"]
            .as_str()
            .unwrap()
            .to_owned(),
        token: discovery["token_endpoint"].as_str().unwrap().to_owned(),
        jwks,
    }
}

/// A fresh random-looking value for state, nonce and the PKCE verifier.
fn fresh(label: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(format!(
        "{label}{n}{t}{}",
        std::process::id()
    )))
}

struct Request {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn authorize(ep: &Endpoints, redirect_uri: &str, pkce: bool) -> Request {
    let (state, nonce, verifier) = (fresh("state"), fresh("nonce"), fresh("verifier"));
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", testkit::oidc::CLIENT_ID),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile"),
        ("state", &state),
        ("nonce", &nonce),
        ("acr_values", SPID_L2),
    ];
    if pkce {
        params.push(("code_challenge", &challenge));
        params.push(("code_challenge_method", "S256"));
    }
    let url = reqwest::Url::parse_with_params(&ep.authorization, &params)
        .unwrap()
        .to_string();
    Request {
        url,
        state,
        nonce,
        verifier,
    }
}

fn query(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Exchanges the code of `callback` for tokens; the token endpoint's status and body.
async fn exchange(
    http: &reqwest::Client,
    op: &OidcProvider,
    ep: &Endpoints,
    callback: &str,
    verifier: &str,
) -> (u16, Value) {
    let code = query(callback, "code").expect("a code in the callback");
    let r = http
        .post(&ep.token)
        .basic_auth(op.client_id(), Some(op.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Signs in as `login` and returns the ID token with the request it answers.
async fn id_token(
    http: &reqwest::Client,
    op: &OidcProvider,
    ep: &Endpoints,
    login: &str,
) -> (String, Request) {
    let req = authorize(ep, CALLBACK, true);
    let callback = op.sign_in(&req.url, login).await.unwrap();
    assert!(callback.starts_with(CALLBACK), "{callback}");
    assert_eq!(
        query(&callback, "state").as_deref(),
        Some(req.state.as_str())
    );
    assert_eq!(query(&callback, "iss"), Some(op.issuer()));
    let (status, body) = exchange(http, op, ep, &callback, &req.verifier).await;
    assert_eq!(status, 200, "{body}");
    (body["id_token"].as_str().unwrap().to_owned(), req)
}

/// The token's header and claims, and whether its RS256 signature verifies with the JWKS.
fn decode(jwt: &str, jwks: &Value) -> (Value, Value, bool) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let json =
        |p: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap() };
    let (header, claims) = (json(parts[0]), json(parts[1]));
    assert_eq!(header["alg"], "RS256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's key in the JWKS");
    let component = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let public = ring::signature::RsaPublicKeyComponents {
        n: component("n"),
        e: component("e"),
    };
    let signed = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let valid = public
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &signature,
        )
        .is_ok();
    (header, claims, valid)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_code_flow_with_pkce_gives_an_id_token_with_the_spid_claims() {
    let dir = tempfile::tempdir().unwrap();
    let op = OidcProvider::start(
        dir.path(),
        "http://127.0.0.1:0/servizi/auth/callback",
        &demo_accounts(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let ep = endpoints(&http, &op).await;

    let (token, req) = id_token(&http, &op, &ep, "luca").await;
    let (_, claims, valid) = decode(&token, &ep.jwks);
    assert!(valid, "the ID token's signature verifies");
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["aud"], op.client_id());
    assert_eq!(claims["nonce"], req.nonce.as_str());
    assert_eq!(claims["sub"], "luca");
    assert_eq!(claims[FISCAL_NUMBER_CLAIM], "TINIT-RSSLCU85D12G337O");
    assert_eq!(claims["given_name"], "Luca");
    assert_eq!(claims["family_name"], "Rossi");
    assert_eq!(claims["acr"], SPID_L2);
    assert!(claims["exp"].as_i64().unwrap() > now(), "{claims}");

    // The same code a second time: refused.
    let req = authorize(&ep, CALLBACK, true);
    let callback = op.sign_in(&req.url, "marco").await.unwrap();
    let (status, _) = exchange(&http, &op, &ep, &callback, &req.verifier).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(&http, &op, &ep, &callback, &req.verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A wrong PKCE verifier: refused.
    let req = authorize(&ep, CALLBACK, true);
    let callback = op.sign_in(&req.url, "marco").await.unwrap();
    let (status, body) = exchange(&http, &op, &ep, &callback, &fresh("other")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // No PKCE at all: the provider sends the citizen back with an error.
    let req = authorize(&ep, CALLBACK, false);
    let callback = op.sign_in(&req.url, "luca").await.unwrap();
    assert_eq!(
        query(&callback, "error").as_deref(),
        Some("invalid_request")
    );

    // Cancel on the login page: access_denied.
    let req = authorize(&ep, CALLBACK, true);
    let callback = op.cancel(&req.url).await.unwrap();
    assert!(callback.starts_with(CALLBACK), "{callback}");
    assert_eq!(query(&callback, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        query(&callback, "state").as_deref(),
        Some(req.state.as_str())
    );

    // An unknown login: the form again, with 401.
    let req = authorize(&ep, CALLBACK, true);
    let e = op.sign_in(&req.url, "nobody").await.unwrap_err();
    assert!(format!("{e:#}").contains("401"), "{e:#}");

    // A redirect URI the client did not register (another path): no redirect at all.
    let req = authorize(&ep, "http://127.0.0.1:41234/elsewhere", true);
    let e = op.sign_in(&req.url, "luca").await.unwrap_err();
    assert!(format!("{e:#}").contains("redirect_uri"), "{e:#}");
    op.check().unwrap();
}

#[tokio::test]
async fn each_tamper_mode_spoils_the_next_id_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let op = OidcProvider::start(
        dir.path(),
        "http://127.0.0.1:0/servizi/auth/callback",
        &demo_accounts(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let ep = endpoints(&http, &op).await;

    for mode in [
        Tamper::Signature,
        Tamper::Nonce,
        Tamper::Audience,
        Tamper::Issuer,
        Tamper::Expired,
    ] {
        op.tamper(mode).await.unwrap();
        let (token, req) = id_token(&http, &op, &ep, "luca").await;
        let (_, claims, valid) = decode(&token, &ep.jwks);
        assert_eq!(claims[FISCAL_NUMBER_CLAIM], "TINIT-RSSLCU85D12G337O");
        let nonce_ok = claims["nonce"] == req.nonce.as_str();
        let aud_ok = claims["aud"] == op.client_id();
        let iss_ok = claims["iss"] == op.issuer();
        let fresh_ok = claims["exp"].as_i64().unwrap() > now();
        let seen = (valid, nonce_ok, aud_ok, iss_ok, fresh_ok);
        let expected = match mode {
            Tamper::Signature => (false, true, true, true, true),
            Tamper::Nonce => (true, false, true, true, true),
            Tamper::Audience => (true, true, false, true, true),
            Tamper::Issuer => (true, true, true, false, true),
            Tamper::Expired => (true, true, true, true, false),
            Tamper::None => unreachable!(),
        };
        assert_eq!(seen, expected, "{mode:?}: {claims}");

        // Once only: the next token is good again.
        let (token, req) = id_token(&http, &op, &ep, "luca").await;
        let (_, claims, valid) = decode(&token, &ep.jwks);
        assert!(valid, "{mode:?}: the next token is not tampered");
        assert_eq!(claims["nonce"], req.nonce.as_str());
    }

    // `none` clears a pending mode.
    op.tamper(Tamper::Audience).await.unwrap();
    op.tamper(Tamper::None).await.unwrap();
    let (token, _) = id_token(&http, &op, &ep, "luca").await;
    let (_, claims, valid) = decode(&token, &ep.jwks);
    assert!(valid);
    assert_eq!(claims["aud"], op.client_id());

    // A mode it does not know: a clear 400.
    let r = http
        .post(format!("{}/__test/tamper", op.issuer()))
        .json(&serde_json::json!({"mode": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("mode must be one of"));
}
