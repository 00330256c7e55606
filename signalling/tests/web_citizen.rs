//! A signed-in citizen gets certificates on the web channel, through the real sign-in of
//! `common::web` (a real OpenID provider): a residenza paid with a marca (the same marca again:
//! `409`), one for a member of their family, none for a stranger (`403`, audited), the PDF to
//! them only, their list, the session's hourly budget (`429` with `retry_after_s`), and no
//! cross-origin requests.

mod common;

use common::web::Site;
use serde_json::{json, Value};

/// Luca Rossi's family in the demo registry (testkit's `demo_accounts`).
const LUCA: &str = "RSSLCU85D12G337O";
/// Marco Galli: in the registry, not in Luca's family.
const STRANGER: &str = "GLLMRC72A18A944W";

async fn post_certificate(site: &Site, session: &str, body: Value) -> (u16, Value) {
    let r = site
        .post(session, "/api/v1/web/certificates")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn marca(id: &str) -> Value {
    json!({"bollo": true, "marca": {"id": id, "issued_at": "2026-11-30"}})
}

#[tokio::test]
async fn a_citizen_gets_certificates_for_self_and_family_only() {
    let site = Site::start(|_| {}).await;
    let session = site.sign_in("luca").await;

    // A residenza with a marca: issued, with the marca recorded.
    let (status, issued) = post_certificate(
        &site,
        &session,
        json!({"kind": "residenza", "usage": marca("01234567890123")}),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["fiscal_code"], LUCA);
    assert_eq!(issued["bollo"]["marca"], "01234567890123");
    let pdf_url = issued["pdf_url"].as_str().unwrap().to_owned();

    // The same marca again: 409, whoever asks.
    let (status, body) = post_certificate(
        &site,
        &session,
        json!({"kind": "cittadinanza", "usage": marca("01234567890123")}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");

    // The stamp is the kiosk's: the verification API reads the document it names.
    let r = site
        .http
        .post(site.t.url("/api/v1/verify"))
        .json(&json!({"stamp": issued["stamp"]}))
        .send()
        .await
        .unwrap();
    let verified: Value = r.json().await.unwrap();
    assert_eq!(
        verified["document"]["certificate"]["document_id"], issued["document_id"],
        "{verified}"
    );
    assert_eq!(verified["document"]["certificate"]["fiscal_code"], LUCA);

    // The PDF: to Luca, not to anyone else, not without a session.
    let r = site.get(&session, &pdf_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.bytes().await.unwrap().starts_with(b"%PDF-"));
    let other = site.sign_in("marco").await;
    assert_eq!(
        site.get(&other, &pdf_url).send().await.unwrap().status(),
        404
    );
    let r = site.http.get(site.t.url(&pdf_url)).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A member of the family.
    let (_, me) = site.me(&session).await;
    let member = me["family"][0]["fiscal_code"].as_str().unwrap().to_owned();
    let (status, issued_member) = post_certificate(
        &site,
        &session,
        json!({"kind": "residenza", "fiscal_code": member, "usage": {"exemption": "b9"}}),
    )
    .await;
    assert_eq!(status, 201, "{issued_member}");
    assert_eq!(issued_member["fiscal_code"], member.as_str());
    assert_eq!(issued_member["bollo"]["exemption"], "b9");

    // A stranger: 403, and the refusal is in the audit log with the citizen's identity.
    let (status, body) = post_certificate(
        &site,
        &session,
        json!({"kind": "residenza", "fiscal_code": STRANGER, "usage": {"exemption": "b9"}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    let mut audited = false;
    for _ in 0..50 {
        let log = std::fs::read_to_string(site.t.dir.path().join("audit.log")).unwrap_or_default();
        audited = log
            .lines()
            .any(|l| l.contains("certificate.refused") && l.contains(STRANGER) && l.contains(LUCA));
        if audited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(audited, "the refusal is audited");

    // An exemption only the office may apply: 403.
    let (status, answer) = post_certificate(
        &site,
        &session,
        json!({"kind": "residenza", "usage": {"exemption": "b16"}}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    // An unknown kind, a malformed marca: 400.
    for body in [
        json!({"kind": "nope", "usage": {"exemption": "b9"}}),
        json!({"kind": "residenza", "usage": {"bollo": true, "marca": {"id": "12", "issued_at": "2026-11-30"}}}),
    ] {
        let (status, answer) = post_certificate(&site, &session, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["code"], "invalid");
    }

    // The list: both of Luca's certificates, not the one refused.
    let r = site
        .get(&session, "/api/v1/web/certificates")
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    let ids: Vec<&str> = list["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["document_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&issued["document_id"].as_str().unwrap()));
    assert!(ids.contains(&issued_member["document_id"].as_str().unwrap()));
    // Marco sees none of them.
    let r = site
        .get(&other, "/api/v1/web/certificates")
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["certificates"], json!([]));
}

#[tokio::test]
async fn requests_need_our_origin_and_stay_within_the_budget() {
    let site = Site::start(|c| c.web.requests_per_hour = 2).await;
    let session = site.sign_in("luca").await;
    let body = json!({"kind": "residenza", "usage": {"exemption": "b9"}});
    // From another site's page: refused before anything else.
    let r = site
        .http
        .post(site.t.url("/api/v1/web/certificates"))
        .header("cookie", format!("sportello_web={session}"))
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Not signed in.
    let r = site
        .http
        .post(site.t.url("/api/v1/web/certificates"))
        .header("origin", site.t.server.base_url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    for _ in 0..2 {
        let (status, answer) = post_certificate(&site, &session, body.clone()).await;
        assert_eq!(status, 201, "{answer}");
    }
    let r = site
        .post(&session, "/api/v1/web/certificates")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["code"], "rate_limited");
    let retry = answer["retry_after_s"].as_u64().unwrap();
    assert!((1..=3600).contains(&retry), "{answer}");
}
