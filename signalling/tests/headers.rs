//! Browser hardening on every response (issue 15, rows 8 and 9): the Content-Security-Policy of
//! each page, `X-Frame-Options`, `nosniff`, `Referrer-Policy` on pages, API answers, errors, the
//! document and scan routes and the admin listener; HSTS only under TLS; and no test hook in the
//! served JavaScript.

mod common;

use common::*;
use signalling::headers::{CSP_CONSOLE, CSP_DEFAULT, CSP_KIOSK, CSP_VERIFY, HSTS};

/// Asserts the headers every response carries, with `csp` as its policy, and returns the response.
fn hardened(res: &reqwest::Response, csp: &str, what: &str) {
    let h = res.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name} ({})", res.status()))
            .to_owned()
    };
    assert_eq!(get("content-security-policy"), csp, "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
}

#[tokio::test]
async fn every_response_of_both_listeners_carries_the_security_headers() {
    let t = TestServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |url: String| http.get(url).send();

    // Pages, each with its policy; the console cannot be framed by anyone.
    for (path, csp) in [
        ("/console/", CSP_CONSOLE),
        ("/console/app.js", CSP_CONSOLE),
        ("/kiosk/", CSP_KIOSK),
        ("/supervisor/", CSP_DEFAULT),
        ("/verify/", CSP_VERIFY),
        ("/servizi/", CSP_DEFAULT),
        ("/servizi/servizi.js", CSP_DEFAULT),
        ("/media-test/", CSP_DEFAULT),
        ("/lib/sportello.js", CSP_DEFAULT),
    ] {
        let res = get(t.url(path)).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        hardened(&res, csp, path);
        assert!(res.headers().get("strict-transport-security").is_none());
    }
    let console = get(t.url("/console/")).await.unwrap();
    let csp = console.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));

    // A redirect, API JSON, an API error, a 404, the document and scan routes.
    let res = get(t.url("/console")).await.unwrap();
    assert_eq!(res.status(), 308);
    hardened(&res, CSP_CONSOLE, "redirect");
    let res = get(t.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
    hardened(&res, CSP_DEFAULT, "healthz");
    let res = http
        .post(t.url("/api/v1/login"))
        .json(&serde_json::json!({"username": "nobody", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    hardened(&res, CSP_DEFAULT, "login");
    let res = get(t.url("/no/such/thing")).await.unwrap();
    assert_eq!(res.status(), 404);
    hardened(&res, CSP_DEFAULT, "404");
    let operator = t.operator_token().await;
    let res = http
        .get(t.url("/api/v1/documents/034027-20260101-NOPE.pdf"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    hardened(&res, CSP_DEFAULT, "document");
    let res = http
        .get(t.url("/api/v1/calls/c1/scans/s1"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    hardened(&res, CSP_DEFAULT, "scan");

    // The admin listener.
    for path in ["/metrics", "/healthz", "/nope"] {
        let res = get(t.admin_url(path)).await.unwrap();
        hardened(&res, CSP_DEFAULT, path);
    }
}

#[tokio::test]
async fn no_test_hook_is_served() {
    let t = TestServer::start().await;
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../console-web");
    let mut served = 0;
    for folder in [
        "kiosk",
        "console",
        "supervisor",
        "lib",
        "verify",
        "servizi",
        "media-test",
    ] {
        for entry in std::fs::read_dir(web.join(folder)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !(name.ends_with(".js") || name.ends_with(".html")) {
                continue;
            }
            let res = reqwest::get(t.url(&format!("/{folder}/{name}")))
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{folder}/{name}");
            let body = res.text().await.unwrap();
            for hook in ["kioskTest", "consoleTest", "supervisorTest"] {
                assert!(!body.contains(hook), "{folder}/{name} ships {hook}");
            }
            served += 1;
        }
    }
    assert!(served >= 10, "only {served} files");
}

#[tokio::test]
async fn hsts_only_under_tls() {
    let (t, certified, _dir) = TestServer::start_tls(|_| {}).await;
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", t.server.addr)
        .build()
        .unwrap();
    let port = t.server.addr.port();
    for path in ["/kiosk/", "/healthz", "/nope"] {
        let res = client
            .get(format!("https://localhost:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["strict-transport-security"], HSTS, "{path}");
        assert_eq!(res.headers()["x-frame-options"], "DENY", "{path}");
    }
}
