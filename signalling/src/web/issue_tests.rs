//! Unit tests of the web issue's pure parts: the request check, the usage body, the list rules.

use super::*;

const FC: &str = "BCCDNC54L18F839R";

fn offered() -> (Vec<String>, Vec<String>) {
    (vec!["b5".into(), "b8_1".into()], vec!["b16".into()])
}

fn req(kind: &str, usage: WebUsage) -> WebRequest {
    WebRequest {
        kind: kind.into(),
        fiscal_code: FC.into(),
        reason: None,
        usage,
        as_of: None,
    }
}

fn marca(id: &str, date: &str) -> WebUsage {
    WebUsage::Bollo {
        bollo: true,
        marca: Some(WebMarca {
            id: id.into(),
            issued_at: date.into(),
        }),
    }
}

fn checked(r: &WebRequest) -> Result<Checked, Refusal> {
    let (o, f) = offered();
    check(r, &o, &f)
}

#[test]
fn usage_bodies_of_the_contract_parse() {
    let u: WebUsage = serde_json::from_str(
        r#"{"bollo":true,"marca":{"id":"01234567890123","issued_at":"2026-11-30"}}"#,
    )
    .unwrap();
    assert_eq!(u, marca("01234567890123", "2026-11-30"));
    let u: WebUsage = serde_json::from_str(r#"{"exemption":"b5"}"#).unwrap();
    assert_eq!(
        u,
        WebUsage::Exemption {
            exemption: "b5".into()
        }
    );
    let u: WebUsage = serde_json::from_str(r#"{"bollo":true}"#).unwrap();
    assert_eq!(
        u,
        WebUsage::Bollo {
            bollo: true,
            marca: None
        }
    );
    assert!(serde_json::from_str::<WebUsage>(r#"{"nothing":1}"#).is_err());
    // The serialized form is the same shape.
    assert_eq!(
        serde_json::to_value(marca("01234567890123", "2026-11-30")).unwrap(),
        serde_json::json!({"bollo":true,"marca":{"id":"01234567890123","issued_at":"2026-11-30"}})
    );
}

#[test]
fn a_registry_kind_with_a_marca_or_an_offered_exemption_passes() {
    let c = checked(&req("residenza", marca("01234567890123", "2026-11-30"))).unwrap();
    assert_eq!(c.kind, CertificateKind::Residenza);
    assert_eq!(c.marca.unwrap().id, "01234567890123");
    assert_eq!(c.exemption, None);
    let c = checked(&req(
        "residenza",
        WebUsage::Exemption {
            exemption: " B5 ".into(),
        },
    ))
    .unwrap();
    assert_eq!(c.exemption.as_deref(), Some("B5"));
    assert!(c.marca.is_none());
}

#[test]
fn bad_usages_are_invalid_and_office_exemptions_forbidden() {
    let code = |r: &WebRequest| checked(r).unwrap_err().code;
    // The bollo on the web is paid with a marca.
    assert_eq!(
        code(&req(
            "residenza",
            WebUsage::Bollo {
                bollo: true,
                marca: None
            }
        )),
        ErrorCode::Invalid
    );
    assert_eq!(
        code(&req(
            "residenza",
            WebUsage::Bollo {
                bollo: false,
                marca: None
            }
        )),
        ErrorCode::Invalid
    );
    assert_eq!(
        code(&req("residenza", marca("0123", "2026-11-30"))),
        ErrorCode::Invalid
    );
    assert_eq!(
        code(&req("residenza", marca("01234567890123", "30/11/2026"))),
        ErrorCode::Invalid
    );
    assert_eq!(
        code(&req(
            "residenza",
            WebUsage::Exemption {
                exemption: "zz".into()
            }
        )),
        ErrorCode::Invalid
    );
    assert_eq!(
        code(&req(
            "residenza",
            WebUsage::Exemption {
                exemption: "b16".into()
            }
        )),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(&req("nessuno", marca("01234567890123", "2026-11-30"))),
        ErrorCode::Invalid
    );
    let mut bad_fc = req("residenza", marca("01234567890123", "2026-11-30"));
    bad_fc.fiscal_code = "../../etc".into();
    assert_eq!(code(&bad_fc), ErrorCode::Invalid);
}

#[test]
fn civil_status_needs_no_marca_and_past_situations_need_a_reason() {
    let c = checked(&req(
        "nascita",
        WebUsage::Bollo {
            bollo: true,
            marca: None,
        },
    ))
    .unwrap();
    assert!(c.marca.is_none() && c.exemption.is_none());
    let past = CertificateKind::ALL
        .iter()
        .copied()
        .find(|k| k.is_past_situation())
        .unwrap();
    let mut r = req(past.code(), marca("01234567890123", "2026-11-30"));
    assert_eq!(checked(&r).unwrap_err().code, ErrorCode::Invalid);
    r.reason = Some("   ".into());
    assert_eq!(checked(&r).unwrap_err().code, ErrorCode::Invalid);
    r.reason = Some("pratica di successione".into());
    if past.needs_as_of() {
        r.as_of = Some("2020-01-31".into());
    }
    assert_eq!(
        checked(&r).unwrap().reason.as_deref(),
        Some("pratica di successione")
    );
}

fn meta(valid_until: Option<&str>) -> DocumentMeta {
    DocumentMeta {
        fiscal_code: FC.into(),
        channel: Some("web".into()),
        web_user: Some(FC.into()),
        kind: Some("residenza".into()),
        issued_at: Some(1_764_720_000),
        valid_until: valid_until.map(str::to_owned),
        marca_id: Some("01234567890123".into()),
        ..DocumentMeta::default()
    }
}

#[test]
fn the_list_keeps_documents_valid_today() {
    let doc = listed(
        "034027-20261203-AAAAAAAA",
        &meta(Some("2027-06-03")),
        "2027-06-03",
    )
    .unwrap();
    assert_eq!(
        doc.pdf_url,
        "/api/v1/web/documents/034027-20261203-AAAAAAAA.pdf"
    );
    assert_eq!(doc.bollo.marca.as_deref(), Some("01234567890123"));
    assert_eq!(doc.issued_at, "2025-12-03T00:00:00Z");
    assert!(listed("x", &meta(Some("2027-06-03")), "2027-06-04").is_none());
    assert!(listed("x", &meta(None), "2099-01-01").is_some());
}

#[test]
fn a_document_belongs_to_who_asked_for_it_only() {
    let citizen = WebActor::Citizen {
        fiscal_code: FC.into(),
        provider: "spid".into(),
    };
    let other = WebActor::Citizen {
        fiscal_code: "BCCGLI52B57G337R".into(),
        provider: "spid".into(),
    };
    let patronato = WebActor::Intermediary {
        name: "patronato".into(),
        reason: "pensione".into(),
        consent_ref: "D-1".into(),
    };
    assert!(owns(&citizen, &meta(None)));
    assert!(!owns(&other, &meta(None)));
    assert!(!owns(&patronato, &meta(None)));
    let by_patronato = DocumentMeta {
        channel: Some("intermediary".into()),
        web_user: None,
        intermediary: Some("patronato".into()),
        ..meta(None)
    };
    assert!(owns(&patronato, &by_patronato));
    assert!(!owns(&citizen, &by_patronato));
    // A kiosk document is nobody's on the web.
    let kiosk = DocumentMeta {
        channel: None,
        operator: "op1".into(),
        web_user: None,
        ..meta(None)
    };
    assert!(!owns(&citizen, &kiosk));
}

#[test]
fn refusals_are_audited_with_the_identity_and_the_channel() {
    let patronato = WebActor::Intermediary {
        name: "patronato".into(),
        reason: "pensione".into(),
        consent_ref: "D-1".into(),
    };
    let e = refusal_event(
        &patronato,
        &req("residenza", marca("01234567890123", "2026-11-30")),
        &Refusal::new(ErrorCode::Conflict, "used"),
    );
    assert_eq!(e.action, "certificate.refused");
    assert_eq!(e.actor.intermediary.as_deref(), Some("patronato"));
    assert_eq!(e.actor.consent_ref.as_deref(), Some("D-1"));
    assert_eq!(e.reason.as_deref(), Some("pensione"));
    assert!(e
        .details
        .contains(&("channel".to_owned(), "intermediary".to_owned())));
    assert!(e
        .details
        .contains(&("code".to_owned(), "conflict".to_owned())));
    assert!(e
        .details
        .contains(&("marca_id".to_owned(), "01234567890123".to_owned())));
}

#[test]
fn the_index_lists_what_was_indexed_and_refuses_odd_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = citizen_dir(tmp.path(), FC).unwrap();
    assert!(dir.starts_with(tmp.path()));
    assert!(citizen_dir(tmp.path(), "../../../etc/passwd").is_none());
    assert_eq!(indexed_ids(&dir).unwrap(), Vec::<String>::new());
    index_document(Some(&dir), "034027-20261203-AAAAAAAA").unwrap();
    index_document(Some(&dir), "034027-20261203-AAAAAAAA").unwrap();
    assert!(index_document(Some(&dir), "../x").is_err());
    assert_eq!(
        indexed_ids(&dir).unwrap(),
        vec!["034027-20261203-AAAAAAAA".to_owned()]
    );
}

#[test]
fn a_past_situation_needs_its_date_and_a_reason() {
    let (offered, office) = offered();
    let mut r = req(
        "residenza_alla_data",
        WebUsage::Exemption {
            exemption: "b5".into(),
        },
    );
    r.reason = Some("pratica di successione".into());
    let e = check(&r, &offered, &office).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("as_of"), "{}", e.message);
    r.as_of = Some("2019-31-02".into());
    assert_eq!(
        check(&r, &offered, &office).unwrap_err().code,
        ErrorCode::Invalid
    );
    r.as_of = Some("2019-03-02".into());
    let ok = check(&r, &offered, &office).unwrap();
    assert_eq!(ok.as_of.map(|d| d.to_string()), Some("2019-03-02".into()));
}
