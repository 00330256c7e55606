//! `web::issue` for signed-in citizens, on a real server's state (the citizens' HTTP routes call
//! these functions): their own certificate and a family member's, a stranger refused (`forbidden`),
//! a marca used twice (`conflict`), an office-only exemption refused, the list of their valid
//! certificates, downloads to the one who asked only, and every step in the audit log with the
//! channel and the identity.

mod common;

use certificates::registry::family_on;
use common::*;
use protocol::ErrorCode;
use signalling::web::issue::{self, WebActor, WebMarca, WebRequest, WebUsage};

fn marca(id: &str) -> WebUsage {
    WebUsage::Bollo {
        bollo: true,
        marca: Some(WebMarca {
            id: id.into(),
            issued_at: "2026-11-30".into(),
        }),
    }
}

fn request(fiscal_code: &str, usage: WebUsage) -> WebRequest {
    WebRequest {
        kind: "residenza".into(),
        fiscal_code: fiscal_code.into(),
        reason: None,
        usage,
    }
}

/// A resident with another member on their family sheet today, and a resident outside it.
fn citizen_member_stranger(t: &TestServer) -> (String, String, String) {
    let registry = t.server.state.issuer.registry();
    let today = certificates::issuer::italian_time(time::OffsetDateTime::now_utc()).date();
    let residents: Vec<_> = registry
        .list()
        .unwrap()
        .into_iter()
        .filter(|p| p.resident && !p.deceased)
        .collect();
    for p in &residents {
        let person = registry.person(&p.fiscal_code).unwrap();
        let Some(home) = person.residence_on(today) else {
            continue;
        };
        let members = family_on(
            &registry.family_members(&home.family_id).unwrap(),
            &home.family_id,
            today,
            false,
        );
        let Some(other) = members
            .iter()
            .find(|m| m.person.fiscal_code != p.fiscal_code && m.person.alive_on(today))
        else {
            continue;
        };
        let stranger = residents
            .iter()
            .find(|s| {
                !members
                    .iter()
                    .any(|m| m.person.fiscal_code == s.fiscal_code)
            })
            .unwrap();
        return (
            p.fiscal_code.to_string(),
            other.person.fiscal_code.to_string(),
            stranger.fiscal_code.to_string(),
        );
    }
    panic!("the demo registry has families");
}

#[tokio::test]
async fn citizens_issue_list_and_download_their_certificates() {
    let t = TestServer::start().await;
    let state = &t.server.state;
    let (me, member, stranger) = citizen_member_stranger(&t);
    let citizen = WebActor::Citizen {
        fiscal_code: me.clone(),
        provider: "spid".into(),
    };

    // Their own residenza, paid with a marca.
    let own = issue::issue(state, &citizen, request(&me, marca("31313131313131")))
        .await
        .unwrap();
    assert_eq!(own.fiscal_code, me);
    assert_eq!(own.bollo.marca.as_deref(), Some("31313131313131"));
    assert_eq!(
        own.pdf_url,
        format!("/api/v1/web/documents/{}.pdf", own.document_id)
    );
    assert!(own.stamp.starts_with("IT1:"));
    // A family member's, exempt.
    let theirs = issue::issue(
        state,
        &citizen,
        request(
            &member,
            WebUsage::Exemption {
                exemption: "b5".into(),
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(theirs.bollo.exemption.as_deref(), Some("b5"));

    // A stranger's: forbidden. The same marca again: conflict. An office-only exemption: forbidden.
    let refused = issue::issue(state, &citizen, request(&stranger, marca("42424242424242")))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{}", refused.message);
    // The refused request did not spend its marca.
    issue::issue(state, &citizen, request(&me, marca("42424242424242")))
        .await
        .unwrap();
    let again = issue::issue(state, &citizen, request(&me, marca("31313131313131")))
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict);
    let table = state.issuer.exemptions();
    let office_only = table
        .offered(false)
        .find(|e| e.office_only)
        .expect("the shipped table has office-only uses");
    let refused = issue::issue(
        state,
        &citizen,
        request(
            &me,
            WebUsage::Exemption {
                exemption: office_only.code.clone(),
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden);

    // The list: the three they asked for, newest first; the member asked for none.
    let listed = issue::list_for_citizen(state, &me).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.windows(2).all(|w| w[0].issued_at >= w[1].issued_at));
    assert!(listed.iter().any(|d| d.document_id == own.document_id));
    assert!(listed
        .iter()
        .any(|d| d.document_id == theirs.document_id && d.fiscal_code == member));
    assert!(issue::list_for_citizen(state, &member)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        issue::list_for_citizen(state, "../../etc")
            .await
            .unwrap_err()
            .code,
        ErrorCode::Invalid
    );

    // Downloads: to the citizen who asked only.
    let pdf = issue::pdf_for(state, &citizen, &own.document_id)
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    let other = WebActor::Citizen {
        fiscal_code: member.clone(),
        provider: "cie".into(),
    };
    let intermediary = WebActor::Intermediary {
        name: "inca".into(),
        reason: "x".into(),
        consent_ref: "y".into(),
    };
    for who in [&other, &intermediary] {
        let e = issue::pdf_for(state, who, &theirs.document_id)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
    }
    assert_eq!(
        issue::pdf_for(state, &citizen, "../../audit.log")
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );

    // The audit log: issues, refusals and downloads with the channel and the identity.
    let records = certificates::audit_records(state.issuer.audit().path(), |r| {
        r.event.actor.web_user.as_deref() == Some(me.as_str())
    })
    .unwrap();
    let seen = |action: &str, code: Option<&str>| {
        records.iter().any(|r| {
            r.event.action == action
                && r.event.identification.as_deref() == Some("spid")
                && r.event.details.contains(&("channel".into(), "web".into()))
                && code.is_none_or(|c| r.event.details.contains(&("code".into(), c.into())))
        })
    };
    assert!(seen("certificate.issued", None));
    assert!(seen("certificate.refused", Some("forbidden")));
    assert!(seen("certificate.refused", Some("conflict")));
    assert!(seen("certificate.downloaded", None));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.event.action == "certificate.issued")
            .count(),
        3
    );
    let refused_download = certificates::audit_records(state.issuer.audit().path(), |r| {
        r.event.action == "certificate.download_refused"
            && r.event.actor.web_user.as_deref() == Some(member.as_str())
    })
    .unwrap();
    assert_eq!(refused_download.len(), 1);
}
