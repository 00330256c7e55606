//! Every certificate kind against the demo registry, with `as_of` dates around moves, births, marriages
//! and deaths, a deceased person's family, the family of 8 with accented names, bollo and exemptions.

mod common;

use certificates::kinds::{build_content, Block, ContentOptions, ContestualePart};
use certificates::registry::demo::{cases, DemoRegistry};
use certificates::registry::Registry;
use certificates::{CertError, CertificateKind as K, IssueRequest};
use common::*;
use time::macros::date;

fn content(
    kind: K,
    code: &str,
    as_of: Option<time::Date>,
) -> Result<certificates::kinds::CertificateContent, CertError> {
    let r = DemoRegistry::embedded().unwrap();
    let p = r.person(&cf(code))?;
    build_content(
        kind,
        &p,
        &r,
        &ContentOptions {
            as_of,
            parts: vec![],
        },
        NOW.date(),
    )
}

fn field(c: &certificates::kinds::CertificateContent, key: &str) -> String {
    c.fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn names(c: &certificates::kinds::CertificateContent) -> Vec<String> {
    c.members.iter().map(|m| m.given_names.clone()).collect()
}

#[test]
fn every_kind_issues_for_someone_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let trust = issuer.trust_list();
    let plan: Vec<(K, &str, Option<&str>)> = vec![
        (K::Residenza, LUCA, None),
        (K::ResidenzaAllaData, LUCA, Some("2015-03-09")),
        (K::StatoFamiglia, LUCA, None),
        (K::StatoFamigliaAllaData, LUCA, Some("2019-05-13")),
        (K::StatoFamigliaDecesso, cases::GIUSEPPE_BIANCHI, None),
        (K::StatoFamigliaParentela, LUCA, None),
        (K::Cittadinanza, LUCA, None),
        (K::StatoLibero, cases::MARCO_GALLI, None),
        (K::EsistenzaInVita, LUCA, None),
        (K::CumulativoFamiglia, cases::NICOLO_DALO, None),
        (K::Contestuale, LUCA, None),
        (K::ResidenzaProvenienza, cases::ROBERTO_COLOMBO, None),
        (K::EstremiCartaIdentita, LUCA, None),
        (K::ResidenzaAire, cases::GIORGIA_MARINI, None),
        (K::StatoCivile, LUCA, None),
        (K::StatoFamigliaAire, cases::ANTONIO_FERRARO, None),
        (K::ResidenzaConvivenza, cases::ADA_SARTORI, None),
        (K::ContrattoConvivenza, cases::SERGIO_BERTOLI, None),
        (K::AnagraficoNascita, cases::GIULIA_CONTI, None),
        (K::AnagraficoMatrimonio, cases::MARIA_GRECO, None),
        (K::Nascita, LUCA, None),
        (K::Matrimonio, LUCA, None),
        (K::Morte, cases::GIUSEPPE_BIANCHI, None),
        (K::UnioneCivile, cases::ALESSANDRO_FONTANA, None),
    ];
    assert_eq!(plan.len(), K::ALL.len());
    for (kind, code, as_of) in plan {
        let doc = issue(&issuer, kind, code, as_of).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(doc.pdf.starts_with(b"%PDF-1.7"), "{kind}");
        let v = certificates::verify_text(&doc.stamp, &trust, NOW)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let c = &v.stamp.claims.certificate;
        assert_eq!(c.kind, kind.code());
        assert_eq!(c.fiscal_code, code);
        assert_eq!(c.document_id, doc.document_id);
        assert_eq!(c.text_sha256, doc.text_sha256);
        assert!(v.development, "the default signer is the development key");
        assert_eq!(v.stamp.claims.issuer, "034027");
        // Civil-status kinds are exempt by law; birth (both kinds) and death do not expire.
        assert_eq!(
            doc.fees.exemption.is_some(),
            kind.is_civil_status(),
            "{kind}"
        );
        assert_eq!(
            doc.valid_until.is_none(),
            matches!(kind, K::Nascita | K::AnagraficoNascita | K::Morte),
            "{kind}"
        );
        let text = pdf_text(&doc.pdf, dir.path());
        assert!(
            text.contains("Il presente certificato non può essere prodotto agli organi della"),
            "{kind}: {text}"
        );
        assert!(text.contains(&doc.document_id), "{kind}");
        assert!(
            text.contains("Contrassegno elettronico ai sensi dell'art. 23-ter"),
            "{kind}"
        );
        assert!(
            text.contains("NON VALIDO"),
            "{kind}: the development warning is printed"
        );
    }
    // Every issue was audited.
    assert_eq!(
        certificates::audit_verify(&dir.path().join("audit.log"))
            .unwrap()
            .records,
        24
    );
}

#[test]
fn residence_as_of_around_a_move_and_a_marriage() {
    let on = |d| {
        field(
            &content(K::ResidenzaAllaData, LUCA, Some(d)).unwrap(),
            "ind",
        )
    };
    assert_eq!(on(date!(2012 - 06 - 15)), "Via Farini n. 10");
    assert_eq!(on(date!(2012 - 06 - 16)), "Strada della Repubblica n. 45");
    assert_eq!(on(date!(2015 - 03 - 09)), "Strada della Repubblica n. 45");
    assert_eq!(on(date!(2015 - 03 - 10)), "Via Emilia Est n. 112 int. 4");
    assert_eq!(
        field(&content(K::Residenza, LUCA, None).unwrap(), "ind"),
        "Via Emilia Est n. 112 int. 4"
    );
    // Giulia lived in Reggio nell'Emilia until the wedding day.
    assert!(matches!(
        content(
            K::ResidenzaAllaData,
            cases::GIULIA_CONTI,
            Some(date!(2012 - 06 - 15))
        ),
        Err(CertError::NotIssuable(_))
    ));
    // A date in the future is refused, and the kind needs a date.
    assert!(matches!(
        content(K::ResidenzaAllaData, LUCA, Some(date!(2030 - 01 - 01))),
        Err(CertError::MissingInput(_))
    ));
    assert!(matches!(
        content(K::ResidenzaAllaData, LUCA, None),
        Err(CertError::MissingInput(_))
    ));
}

#[test]
fn family_as_of_around_births_and_marriage() {
    let fam = |d| names(&content(K::StatoFamigliaAllaData, LUCA, Some(d)).unwrap());
    assert_eq!(
        fam(date!(2012 - 06 - 15)),
        ["Giorgio", "Anna Maria", "Luca"],
        "still on his parents' sheet"
    );
    assert_eq!(fam(date!(2012 - 06 - 16)), ["Luca", "Giulia"]);
    assert_eq!(fam(date!(2016 - 01 - 19)), ["Luca", "Giulia"]);
    assert_eq!(fam(date!(2016 - 01 - 20)), ["Luca", "Giulia", "Sofia"]);
    assert_eq!(fam(date!(2019 - 05 - 13)), ["Luca", "Giulia", "Sofia"]);
    assert_eq!(
        fam(date!(2019 - 05 - 14)),
        ["Luca", "Giulia", "Sofia", "Matteo"]
    );
    assert_eq!(
        names(&content(K::StatoFamiglia, LUCA, None).unwrap()),
        ["Luca", "Giulia", "Sofia", "Matteo"]
    );
    // Matteo was not yet born the day before.
    assert!(matches!(
        content(
            K::ResidenzaAllaData,
            cases::MATTEO_ROSSI,
            Some(date!(2019 - 05 - 13))
        ),
        Err(CertError::NotIssuable(_))
    ));
    // Kinship only on the kind that certifies it.
    let c = content(K::StatoFamigliaParentela, LUCA, None).unwrap();
    assert_eq!(c.members[0].relationship, "intestatario scheda");
    assert_eq!(c.members[1].relationship, "coniuge");
    let plain = content(K::StatoFamiglia, LUCA, None).unwrap();
    assert!(plain.members.iter().all(|m| m.relationship.is_empty()));
}

#[test]
fn a_deceased_persons_family() {
    let c = content(K::StatoFamigliaDecesso, cases::GIUSEPPE_BIANCHI, None).unwrap();
    assert_eq!(c.as_of, Some(date!(2021 - 11 - 03)));
    assert_eq!(
        names(&c),
        ["Giuseppe", "Maria", "Elena"],
        "Paolo had left the sheet in 2018"
    );
    assert!(
        c.members.iter().all(|m| m.relationship.is_empty()),
        "no kinship on the family at death"
    );
    // Before Paolo left, and after the death with the widow as head.
    let before = names(
        &content(
            K::StatoFamigliaAllaData,
            cases::GIUSEPPE_BIANCHI,
            Some(date!(2018 - 03 - 31)),
        )
        .unwrap(),
    );
    assert_eq!(before, ["Giuseppe", "Maria", "Paolo", "Elena"]);
    let now = content(K::StatoFamigliaParentela, cases::MARIA_GRECO, None).unwrap();
    assert_eq!(names(&now), ["Maria", "Elena"]);
    assert_eq!(now.members[0].relationship, "intestatario scheda");
    assert_eq!(
        field(
            &content(K::StatoLibero, cases::MARIA_GRECO, None).unwrap(),
            "sc"
        ),
        "vedova"
    );
    // The dead are not alive, nor resident, and the family-at-death kind needs a death.
    for k in [K::EsistenzaInVita, K::Residenza, K::StatoFamiglia] {
        assert!(
            matches!(
                content(k, cases::GIUSEPPE_BIANCHI, None),
                Err(CertError::NotIssuable(_))
            ),
            "{k}"
        );
    }
    assert!(matches!(
        content(K::StatoFamigliaDecesso, LUCA, None),
        Err(CertError::NotIssuable(_))
    ));
    assert!(matches!(
        content(K::Morte, LUCA, None),
        Err(CertError::NotIssuable(_))
    ));
    let morte = content(K::Morte, cases::GIUSEPPE_BIANCHI, None).unwrap();
    assert_eq!(field(&morte, "dd"), "2021-11-03");
    assert!(field(&morte, "atto").contains("anno 2021"));
}

#[test]
fn the_family_of_eight_with_accented_names() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::StatoFamiglia, cases::NICOLO_DALO, None).unwrap();
    let v = certificates::verify_text(&doc.stamp, &issuer.trust_list(), NOW).unwrap();
    let c = &v.stamp.claims.certificate;
    assert_eq!(c.member_count, 8);
    assert!(
        !doc.reduced_stamp,
        "the full payload fits: QR version {}",
        doc.qr_version
    );
    assert_eq!(c.members.len(), 8);
    let given: Vec<&str> = c.members.iter().map(|m| m.given_names.as_str()).collect();
    assert_eq!(
        given,
        [
            "Nicolò",
            "Assunta Filomena",
            "Thérèse",
            "Mosè",
            "Zoè",
            "Niccolò",
            "Liù",
            "Noè"
        ]
    );
    assert_eq!(c.members[1].surname, "Dell'Orto");
    assert!(doc.qr_version <= 25, "QR version {}", doc.qr_version);
    let text = pdf_text(&doc.pdf, dir.path());
    for name in [
        "D'ALÒ Nicolò",
        "BÉLANGER Thérèse",
        "D'ALÒ Liù",
        "DELL'ORTO Assunta Filomena",
        "Lione (Francia)",
        "29/02/2000",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    eprintln!(
        "family of 8: stamp {} characters, QR version {} (ECC M), {} page(s), PDF {} bytes",
        doc.stamp.len(),
        doc.qr_version,
        doc.pages,
        doc.pdf.len()
    );
}

#[test]
fn bollo_and_exemption() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let bollo = issue(&issuer, K::Residenza, LUCA, None).unwrap();
    assert_eq!(
        (
            bollo.fees.diritti_cents,
            bollo.fees.bollo_cents,
            bollo.fees.exemption.clone()
        ),
        (52, 1600, None)
    );
    let text = pdf_text(&bollo.pdf, dir.path());
    assert!(text.contains("marca da bollo"), "{text}");
    assert!(text.contains("Diritti di segreteria: € 0,52"));

    let req = IssueRequest::cli(K::Residenza, cf(LUCA), None, Some("b9".into()));
    let exempt = issuer.issue(&req, NOW).unwrap();
    assert_eq!(
        (exempt.fees.diritti_cents, exempt.fees.bollo_cents),
        (26, 0)
    );
    assert_eq!(exempt.fees.exemption.as_deref(), Some("b9"));
    let text = pdf_text(&exempt.pdf, dir.path());
    assert!(
        text.contains("art. 9 della Tabella B allegata al DPR 642/1972"),
        "{text}"
    );
    assert!(!text.contains("Spazio per la"));
    let v = certificates::verify_text(&exempt.stamp, &issuer.trust_list(), NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.exemption.as_deref(), Some("b9"));

    let bad = IssueRequest::cli(K::Residenza, cf(LUCA), None, Some("nope".into()));
    assert!(matches!(
        issuer.issue(&bad, NOW),
        Err(CertError::UnknownExemption(_))
    ));
    let civil = issue(&issuer, K::Nascita, LUCA, None).unwrap();
    assert_eq!(civil.fees.exemption.as_deref(), Some("l405_1990"));
    assert!(pdf_text(&civil.pdf, dir.path()).contains("L. 405/1990"));
}

#[test]
fn the_exemption_table_is_editable_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("exemptions.json"),
        r#"[{"code":"x1","legal_basis":"Delibera 1/2025","use":"prova","text":"Esente per delibera di prova."}]"#,
    )
    .unwrap();
    let issuer = issuer(dir.path());
    let req = IssueRequest::cli(K::Residenza, cf(LUCA), None, Some("x1".into()));
    let doc = issuer.issue(&req, NOW).unwrap();
    assert!(pdf_text(&doc.pdf, dir.path()).contains("Esente per delibera di prova."));
    let b9 = IssueRequest::cli(K::Residenza, cf(LUCA), None, Some("b9".into()));
    assert!(matches!(
        issuer.issue(&b9, NOW),
        Err(CertError::UnknownExemption(_))
    ));
}

#[test]
fn marital_status_citizenship_and_provenance() {
    assert_eq!(
        field(
            &content(K::StatoLibero, cases::MARCO_GALLI, None).unwrap(),
            "sc"
        ),
        "divorziato"
    );
    assert!(
        matches!(
            content(K::StatoLibero, LUCA, None),
            Err(CertError::NotIssuable(_))
        ),
        "married"
    );
    assert!(
        matches!(
            content(K::StatoLibero, cases::ALESSANDRO_FONTANA, None),
            Err(CertError::NotIssuable(_))
        ),
        "civil union"
    );
    let m = content(K::Matrimonio, cases::MARCO_GALLI, None).unwrap();
    assert!(
        field(&m, "ann").starts_with("cessazione degli effetti civili"),
        "{:?}",
        m.fields
    );
    assert!(matches!(
        content(K::Cittadinanza, cases::IOANA_POPESCU, None),
        Err(CertError::NotIssuable(_))
    ));
    assert_eq!(
        field(
            &content(K::Cittadinanza, cases::YOUSSEF_EL_AMRANI, None).unwrap(),
            "cit"
        ),
        "italiana"
    );
    assert_eq!(
        field(
            &content(K::CumulativoFamiglia, cases::YOUSSEF_EL_AMRANI, None).unwrap(),
            "cit"
        ),
        "italiana, marocchina"
    );
    let p = content(K::ResidenzaProvenienza, cases::IOANA_POPESCU, None).unwrap();
    assert_eq!(
        (field(&p, "prov"), field(&p, "dal")),
        ("Romania".into(), "2014-02-03".into())
    );
    let p = content(K::ResidenzaProvenienza, cases::ROBERTO_COLOMBO, None).unwrap();
    assert_eq!(
        (field(&p, "prov"), field(&p, "dal")),
        ("Milano (MI)".into(), "2008-07-01".into())
    );
    // Luca moved within the comune: his registration dates from birth.
    let p = content(K::ResidenzaProvenienza, LUCA, None).unwrap();
    assert_eq!(
        (field(&p, "prov"), field(&p, "dal")),
        ("nascita".into(), "1985-04-12".into())
    );
    assert!(
        matches!(
            content(K::Nascita, cases::GIULIA_CONTI, None),
            Err(CertError::NotIssuable(_))
        ),
        "born elsewhere"
    );
    let card = content(K::EstremiCartaIdentita, LUCA, None).unwrap();
    assert!(field(&card, "ci").starts_with("CA"));
}

#[test]
fn emigration_ends_residence() {
    assert!(matches!(
        content(K::Residenza, cases::FRANCESCA_MORETTI, None),
        Err(CertError::NotIssuable(_))
    ));
    let c = content(
        K::ResidenzaAllaData,
        cases::FRANCESCA_MORETTI,
        Some(date!(2019 - 01 - 01)),
    )
    .unwrap();
    assert_eq!(field(&c, "ind"), "Via Università n. 4");
    assert!(matches!(
        content(
            K::ResidenzaAllaData,
            cases::FRANCESCA_MORETTI,
            Some(date!(2020 - 09 - 01))
        ),
        Err(CertError::NotIssuable(_))
    ));
}

#[test]
fn contestuale_parts_and_homonyms_and_long_names() {
    let r = DemoRegistry::embedded().unwrap();
    let p = r.person(&cf(LUCA)).unwrap();
    let opts = ContentOptions {
        as_of: None,
        parts: vec![ContestualePart::Nascita, ContestualePart::StatoCivile],
    };
    let c = build_content(K::Contestuale, &p, &r, &opts, NOW.date()).unwrap();
    assert_eq!(field(&c, "parti"), "nascita,stato_civile");
    assert_eq!(field(&c, "sc"), "coniugato");
    // The birth data are in the subject lines, not printed again in the body.
    assert!(c.subject_lines()[1].contains("Parma (PR) il 12/04/1985"));
    assert!(!c
        .body
        .iter()
        .any(|b| matches!(b, Block::Text(t) if t.contains("12/04/1985"))));

    let a = content(K::Residenza, cases::MARIO_ROSSI_1, None).unwrap();
    let b = content(K::Residenza, cases::MARIO_ROSSI_2, None).unwrap();
    assert_ne!(field(&a, "ind"), field(&b, "ind"));
    assert!(cf(cases::MARIO_ROSSI_2).is_omocodic());
    assert_eq!(
        cf(cases::MARIO_ROSSI_2).without_omocodia(),
        cf(cases::MARIO_ROSSI_1)
    );

    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::Contestuale, cases::LONG_NAMES, None).unwrap();
    let text = pdf_text(&doc.pdf, dir.path());
    assert!(
        text.contains("DELLA ROVERE CASTELBARCO VISCONTI SIMONETTA"),
        "{text}"
    );
}

#[test]
fn who_may_ask() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let req = |kind, subject: &str, requester, reason: Option<&str>, as_of| IssueRequest {
        kind,
        fiscal_code: cf(subject),
        as_of,
        parts: vec![],
        exemption: None,
        reason: reason.map(Into::into),
        marca: None,
        officer_name: None,
        requester,
    };
    // Own certificate and a family member's: allowed on the web.
    assert!(issuer
        .issue(&req(K::Residenza, LUCA, web(LUCA), None, None), NOW)
        .is_ok());
    assert!(issuer
        .issue(
            &req(K::Residenza, cases::MATTEO_ROSSI, web(LUCA), None, None),
            NOW
        )
        .is_ok());
    // Someone else's: not on the web.
    assert!(matches!(
        issuer.issue(
            &req(K::Residenza, cases::ROBERTO_COLOMBO, web(LUCA), None, None),
            NOW
        ),
        Err(CertError::NotAllowed(_))
    ));
    // At a kiosk the operator must record a reason for someone outside the family.
    let kiosk = kiosk();
    assert!(matches!(
        issuer.issue(
            &req(
                K::Residenza,
                cases::ROBERTO_COLOMBO,
                kiosk.clone(),
                None,
                None
            ),
            NOW
        ),
        Err(CertError::MissingInput(_))
    ));
    assert!(issuer
        .issue(
            &req(
                K::Residenza,
                cases::ROBERTO_COLOMBO,
                kiosk.clone(),
                Some("delega scritta"),
                None
            ),
            NOW
        )
        .is_ok());
    // "Alla data" needs a reason.
    let d = Some(date!(2015 - 01 - 01));
    assert!(matches!(
        issuer.issue(
            &req(K::ResidenzaAllaData, LUCA, kiosk.clone(), None, d),
            NOW
        ),
        Err(CertError::MissingInput(_))
    ));
    assert!(issuer
        .issue(
            &req(
                K::ResidenzaAllaData,
                LUCA,
                kiosk.clone(),
                Some("pratica successione"),
                d
            ),
            NOW
        )
        .is_ok());
    // An unidentified requester gets nothing.
    let mut anon = kiosk;
    anon.citizen = None;
    assert!(matches!(
        issuer.issue(&req(K::Residenza, LUCA, anon, None, None), NOW),
        Err(CertError::NotAllowed(_))
    ));
    // The audit trail holds who, for whom, how and in which call.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(
        log.contains("\"call_id\":\"call-1\"")
            && log.contains("\"identification\":\"cie\"")
            && log.contains("delega scritta")
    );
}

#[test]
fn kind_codes_parse() {
    for k in K::ALL {
        assert_eq!(k.code().parse::<K>().unwrap(), k);
    }
    assert!("residenza-alla-data".parse::<K>().is_ok());
    assert!(matches!(
        "passaporto".parse::<K>(),
        Err(CertError::UnknownKind(_))
    ));
}

#[test]
fn the_rest_of_anprs_catalogue_reads_the_registry() {
    // Stato di famiglia AIRE: the AIRE family sheet, with the daughter registered abroad; no kinship.
    let c = content(K::StatoFamigliaAire, cases::CARLA_BASSI, None).unwrap();
    assert_eq!(names(&c), ["Antonio", "Carla", "Martina"]);
    assert!(c.members.iter().all(|m| m.relationship.is_empty()));
    assert_eq!(field(&c, "stato"), "Argentina");
    assert_eq!(field(&c, "ind"), "Avenida Santa Fe 1234, Buenos Aires");
    // Refused for a resident, and for an AIRE registration on no family sheet.
    for code in [LUCA, cases::GIORGIA_MARINI] {
        assert!(
            matches!(
                content(K::StatoFamigliaAire, code, None),
                Err(CertError::NotIssuable(_))
            ),
            "{code}"
        );
    }
    // Before emigrating, the Ferraros were a resident family: the AIRE sheet did not exist then.
    let r = DemoRegistry::embedded().unwrap();
    let antonio = r.person(&cf(cases::ANTONIO_FERRARO)).unwrap();
    assert!(matches!(
        build_content(
            K::StatoFamigliaAire,
            &antonio,
            &r,
            &ContentOptions::default(),
            date!(1990 - 05 - 01)
        ),
        Err(CertError::NotIssuable(_))
    ));

    // Residenza in convivenza: the convivenza's name and kind; only the subject.
    let c = content(K::ResidenzaConvivenza, cases::ADA_SARTORI, None).unwrap();
    assert_eq!(field(&c, "conv"), "Casa di riposo Villa Serena");
    assert_eq!(field(&c, "ind"), "Via Po n. 30");
    assert!(c.members.is_empty());
    for code in [LUCA, cases::ANTONIO_FERRARO] {
        assert!(matches!(
            content(K::ResidenzaConvivenza, code, None),
            Err(CertError::NotIssuable(_))
        ));
    }
    // The family kinds are refused to a member of a convivenza (it is no family); before moving in,
    // she had a family sheet of her own.
    for k in [
        K::StatoFamiglia,
        K::StatoFamigliaParentela,
        K::CumulativoFamiglia,
    ] {
        assert!(
            matches!(
                content(k, cases::ADA_SARTORI, None),
                Err(CertError::NotIssuable(m)) if m.contains("convivenza anagrafica")
            ),
            "{k}"
        );
    }
    assert_eq!(
        names(
            &content(
                K::StatoFamigliaAllaData,
                cases::ADA_SARTORI,
                Some(date!(2022 - 01 - 31))
            )
            .unwrap()
        ),
        ["Ada"]
    );
    assert!(matches!(
        content(
            K::StatoFamigliaAllaData,
            cases::ADA_SARTORI,
            Some(date!(2022 - 02 - 01))
        ),
        Err(CertError::NotIssuable(_))
    ));

    // Contratto di convivenza: both parties, the dates and the regime.
    for (code, partner) in [
        (cases::SERGIO_BERTOLI, "Zanetti Elisa"),
        (cases::ELISA_ZANETTI, "Bertoli Sergio"),
    ] {
        let c = content(K::ContrattoConvivenza, code, None).unwrap();
        assert_eq!(field(&c, "con"), partner);
        assert_eq!(field(&c, "stip"), "2020-02-14");
        assert_eq!(field(&c, "reg"), "2020-02-20");
        assert_eq!(field(&c, "rp"), "comunione dei beni");
    }
    assert!(matches!(
        content(K::ContrattoConvivenza, LUCA, None),
        Err(CertError::NotIssuable(m)) if m.contains("contratto di convivenza")
    ));

    // Anagrafico di nascita: from the anagrafe, for someone born elsewhere (the civil-status kind is
    // refused); for an AIRE registration born in Italy; refused for one born abroad.
    let c = content(K::AnagraficoNascita, cases::GIULIA_CONTI, None).unwrap();
    assert_eq!(field(&c, "reg"), "APR");
    assert!(matches!(
        content(K::Nascita, cases::GIULIA_CONTI, None),
        Err(CertError::NotIssuable(_))
    ));
    let c = content(K::AnagraficoNascita, cases::ANTONIO_FERRARO, None).unwrap();
    assert_eq!(field(&c, "reg"), "AIRE");
    assert!(field(&c, "atto").contains("anno 1960"), "{:?}", c.fields);
    assert!(matches!(
        content(K::AnagraficoNascita, cases::MARTINA_FERRARO, None),
        Err(CertError::NotIssuable(m)) if m.contains("nato/a all'estero")
    ));
    // Neither resident nor in the AIRE (emigrated to Milano), or dead: refused.
    for code in [cases::FRANCESCA_MORETTI, cases::GIUSEPPE_BIANCHI] {
        assert!(matches!(
            content(K::AnagraficoNascita, code, None),
            Err(CertError::NotIssuable(_))
        ));
    }

    // Anagrafico di matrimonio: a marriage celebrated elsewhere and ended by the spouse's death.
    let c = content(K::AnagraficoMatrimonio, cases::MARIA_GRECO, None).unwrap();
    assert_eq!(field(&c, "con"), "Bianchi Giuseppe");
    assert_eq!(field(&c, "dm"), "1968-05-25");
    assert_eq!(field(&c, "ann"), "decesso del coniuge 2021-11-03");
    assert_eq!(field(&c, "sc"), "vedova");
    assert!(matches!(
        content(K::Matrimonio, cases::MARIA_GRECO, None),
        Err(CertError::NotIssuable(_))
    ));
    // Married before emigrating: issued to the AIRE registration.
    let c = content(K::AnagraficoMatrimonio, cases::ANTONIO_FERRARO, None).unwrap();
    assert_eq!(field(&c, "dm"), "1988-06-25");
    // Free status, a civil union, no marriage: refused.
    for code in [
        cases::MATTEO_ROSSI,
        cases::ALESSANDRO_FONTANA,
        cases::MARTINA_FERRARO,
    ] {
        assert!(
            matches!(
                content(K::AnagraficoMatrimonio, code, None),
                Err(CertError::NotIssuable(_))
            ),
            "{code}"
        );
    }
}

#[test]
fn anprs_checks_on_aire_registrations() {
    use certificates::registry::AireRegistration;
    let abroad = |from| AireRegistration {
        from,
        to: None,
        address: "Rue de Rivoli 10, Parigi".into(),
        country: "Francia".into(),
        origin: "emigrazione all'estero".into(),
        family_id: None,
        relationship: None,
    };
    let build = |data: &certificates::registry::RegistryData, kind, code: &str| {
        let r = DemoRegistry::from_data(data.clone());
        let p = r.person(&cf(code)).unwrap();
        build_content(kind, &p, &r, &ContentOptions::default(), NOW.date())
    };
    let mut data = DemoRegistry::embedded().unwrap().data().clone();
    for p in &mut data.people {
        match p.fiscal_code.as_str() {
            // Already in the AIRE on the wedding day: the marriage is not the anagrafe's to certify.
            cases::ANTONIO_FERRARO => p.aire[0].from = date!(1988 - 01 - 01),
            // Left Italy after the contract was registered, and left Italy before it was.
            cases::SERGIO_BERTOLI | cases::ELISA_ZANETTI => {
                let left = if p.fiscal_code.as_str() == cases::SERGIO_BERTOLI {
                    date!(2021 - 01 - 01)
                } else {
                    date!(2020 - 02 - 01)
                };
                p.residences.last_mut().unwrap().to = Some(left);
                p.aire.push(abroad(left));
            }
            _ => {}
        }
    }
    assert!(matches!(
        build(&data, K::AnagraficoMatrimonio, cases::ANTONIO_FERRARO),
        Err(CertError::NotIssuable(m)) if m.contains("alla data del matrimonio")
    ));
    let sergio = build(&data, K::ContrattoConvivenza, cases::SERGIO_BERTOLI).unwrap();
    assert_eq!(field(&sergio, "reg"), "2020-02-20");
    assert!(matches!(
        build(&data, K::ContrattoConvivenza, cases::ELISA_ZANETTI),
        Err(CertError::NotIssuable(m)) if m.contains("dopo l'espatrio")
    ));
    // Residenza in convivenza is never issued to an AIRE registration.
    assert!(matches!(
        build(&data, K::ResidenzaConvivenza, cases::SERGIO_BERTOLI),
        Err(CertError::NotIssuable(m)) if m.contains("AIRE")
    ));
}

#[test]
fn the_certificates_doc_lists_every_kind() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/certificates.md"
    ))
    .unwrap();
    for k in K::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", k.code())),
            "docs/certificates.md has no row for {k}"
        );
    }
}
