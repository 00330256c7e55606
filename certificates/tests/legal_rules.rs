//! The legal rules of issue 20, each read back from the printed PDF's text: the signature block (art. 3
//! c. 2 D.Lgs. 39/1993, no false claim of a digital signature), family certificates without kinship and
//! the kind with it (Circolari Min. Interno 11/1996 e 3/1997), past situations (art. 35 c. 4 DPR
//! 223/1989), the bollo paid with a marca, ANPR's wording for judicial and immigration uses, the
//! matrimonio annotation, the province in the header, divorziato/a, contestuale, morte, citizenship,
//! and the exemption and diritti rules.

mod common;

use std::sync::Arc;

use certificates::audit::AuditLog;
use certificates::exemptions::ExemptionTable;
use certificates::kinds::{build_content, ContentOptions};
use certificates::registry::demo::{cases, DemoRegistry};
use certificates::registry::Registry;
use certificates::{
    CertError, CertificateKind as K, IssueRequest, IssuedDocument, Issuer, IssuerConfig, Marca,
    Signer,
};
use common::*;
use time::macros::date;

/// The PDF's text with every run of white space made one space, so sentences wrapped by the layout
/// still match.
fn flat(doc: &IssuedDocument, dir: &std::path::Path) -> String {
    pdf_text(&doc.pdf, dir)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn with_exemption(kind: K, code: &str, exemption: &str) -> IssueRequest {
    let mut r = request(kind, code, None);
    r.exemption = Some(exemption.into());
    r
}

#[test]
fn the_signature_block_prints_the_responsible_name_and_no_false_signature_claim() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let mut req = request(K::Residenza, LUCA, None);
    req.officer_name = Some("  Mario Rossi ".into());
    let named = flat(&issuer.issue(&req, NOW).unwrap(), dir.path());
    assert!(
        named.contains("L'ufficiale d'anagrafe delegato: Mario Rossi"),
        "{named}"
    );
    assert!(named.contains("art. 3, comma 2, del D.Lgs. 39/1993"));
    assert!(named.contains("Servizi Demografici - Sportello virtuale"));
    let text = &named;
    assert!(
        !text.contains("firmat") && !text.contains("FIRMAT"),
        "no claim of a signature"
    );
    assert!(text.contains(
        "Contrassegno elettronico ai sensi dell'art. 23-ter, comma 5, del CAD (D.Lgs. 82/2005) e della Circolare AgID n. 62/2013"
    ));
    assert!(text
        .contains("L'originale informatico (PDF) reca il sigillo elettronico del Comune (PAdES)"));
    assert!(text.contains("https://sportello.comune.parma.it/verify/"));
    // Without a name: the office only, and no printed-name clause.
    let office = flat(
        &issue(&issuer, K::Residenza, LUCA, None).unwrap(),
        dir.path(),
    );
    assert!(!office.contains("delegato"), "{office}");
    assert!(!office.contains("D.Lgs. 39/1993"));
    assert!(office.contains("Servizi Demografici - Sportello virtuale"));
    assert!(!office.contains("firmat"));
    // Civil status: the ufficiale dello stato civile.
    let mut req = request(K::Nascita, LUCA, None);
    req.officer_name = Some("Anna Verdi".into());
    let civil = flat(&issuer.issue(&req, NOW).unwrap(), dir.path());
    assert!(
        civil.contains("L'ufficiale dello stato civile delegato: Anna Verdi"),
        "{civil}"
    );
    // The name is audited.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(log.contains("Mario Rossi"));
}

#[test]
fn family_certificates_print_no_kinship_and_the_parentela_kind_does() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let plain = [
        (K::StatoFamiglia, LUCA, None),
        (K::StatoFamigliaAllaData, LUCA, Some("2019-05-13")),
        (K::StatoFamigliaDecesso, cases::GIUSEPPE_BIANCHI, None),
        (K::CumulativoFamiglia, LUCA, None),
    ];
    for (kind, code, as_of) in plain {
        let doc = issue(&issuer, kind, code, as_of).unwrap();
        let text = flat(&doc, dir.path());
        assert!(!text.contains("Rapporto"), "{kind}: {text}");
        assert!(!text.contains("intestatario"), "{kind}");
        assert!(!text.contains("figli"), "{kind}");
        assert!(text.contains("Cognome e nome"), "{kind}");
        let v = certificates::verify_text(&doc.stamp, &issuer.trust_list(), NOW).unwrap();
        assert!(v
            .stamp
            .claims
            .certificate
            .members
            .iter()
            .all(|m| m.relationship.is_empty()));
    }
    let doc = issue(&issuer, K::StatoFamigliaParentela, LUCA, None).unwrap();
    let text = flat(&doc, dir.path());
    assert!(
        text.contains("CERTIFICATO DI STATO DI FAMIGLIA CON RAPPORTI DI PARENTELA"),
        "{text}"
    );
    for word in [
        "Rapporto",
        "intestatario scheda",
        "coniuge",
        "figlia",
        "figlio",
    ] {
        assert!(text.contains(word), "{word} missing: {text}");
    }
    // A single member: no kinship to certify.
    assert!(matches!(
        issue(
            &issuer,
            K::StatoFamigliaParentela,
            cases::ROBERTO_COLOMBO,
            None
        ),
        Err(CertError::NotIssuable(_))
    ));
    // A sheet without an intestatario (here made so by editing the data): refused.
    let mut data = DemoRegistry::embedded().unwrap().data().clone();
    for p in &mut data.people {
        for r in &mut p.residences {
            if r.relationship == "intestatario scheda" && p.fiscal_code.as_str() == LUCA {
                r.relationship = "convivente".into();
            }
        }
    }
    let r = DemoRegistry::from_data(data);
    let luca = r.person(&cf(LUCA)).unwrap();
    let refused = build_content(
        K::StatoFamigliaParentela,
        &luca,
        &r,
        &ContentOptions::default(),
        NOW.date(),
    );
    assert!(
        matches!(&refused, Err(CertError::NotIssuable(m)) if m.contains("senza intestatario")),
        "{refused:?}"
    );
}

#[test]
fn past_situations_need_a_reason_and_cite_art_35_comma_4() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let past = [
        (K::ResidenzaAllaData, LUCA, Some(date!(2015 - 03 - 09))),
        (K::StatoFamigliaAllaData, LUCA, Some(date!(2019 - 05 - 13))),
        (K::StatoFamigliaDecesso, cases::GIUSEPPE_BIANCHI, None),
    ];
    for (kind, code, as_of) in past {
        assert!(kind.is_past_situation());
        // No reason: refused on every channel, the command line too.
        let bare = IssueRequest::cli(kind, cf(code), as_of, None);
        assert!(
            matches!(issuer.issue(&bare, NOW), Err(CertError::MissingInput(m)) if m.contains("art. 35, comma 4")),
            "{kind}"
        );
        let mut at_kiosk = request(kind, code, as_of);
        at_kiosk.requester = kiosk();
        at_kiosk.reason = None;
        assert!(matches!(
            issuer.issue(&at_kiosk, NOW),
            Err(CertError::MissingInput(_))
        ));
        at_kiosk.reason = Some("pratica di successione".into());
        let text = flat(&issuer.issue(&at_kiosk, NOW).unwrap(), dir.path());
        assert!(
            text.contains("art. 35, comma 4, DPR 30 maggio 1989, n. 223"),
            "{kind}: the legal basis under the title: {text}"
        );
        assert!(
            text.contains(
                "rilasciato su motivata richiesta ai sensi dell'art. 35, comma 4, DPR 223/1989"
            ),
            "{kind}: {text}"
        );
    }
    // A current situation cites artt. 33 e 35 only.
    let text = flat(
        &issue(&issuer, K::Residenza, LUCA, None).unwrap(),
        dir.path(),
    );
    assert!(text.contains("(artt. 33 e 35 DPR 30 maggio 1989, n. 223)"));
    assert!(!text.contains("comma 4"));
}

#[test]
fn a_marca_paid_before_issuing_is_printed_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let marca = Marca::new("0123 4567 8901 23", date!(2025 - 06 - 30)).unwrap();
    let mut req = request(K::Residenza, LUCA, None);
    req.marca = Some(marca.clone());
    let doc = issuer.issue(&req, NOW).unwrap();
    let text = flat(&doc, dir.path());
    assert!(
        text.contains(
            "Imposta di bollo assolta mediante contrassegno telematico n. 01234567890123 del 30/06/2025"
        ),
        "{text}"
    );
    assert!(
        !text.contains("Spazio per la"),
        "no empty box for the marca"
    );
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (1600, 52));
    let v = certificates::verify_text(&doc.stamp, &issuer.trust_list(), NOW).unwrap();
    let c = &v.stamp.claims.certificate;
    assert!(c
        .fields
        .contains(&("mb".into(), "01234567890123 2025-06-30".into())));
    assert_eq!(c.exemption, None, "the bollo was due, and paid");
    // A marca on an exempt certificate is refused: by exemption, and for civil status by law.
    let mut exempt = with_exemption(K::Residenza, LUCA, "b9");
    exempt.marca = Some(marca.clone());
    assert!(matches!(
        issuer.issue(&exempt, NOW),
        Err(CertError::MissingInput(_))
    ));
    let mut civil = request(K::Nascita, LUCA, None);
    civil.marca = Some(marca);
    assert!(matches!(
        issuer.issue(&civil, NOW),
        Err(CertError::MissingInput(_))
    ));
    assert!(Marca::new("123", date!(2025 - 06 - 30)).is_err());
}

#[test]
fn the_marca_is_in_the_canonical_text() {
    let r = DemoRegistry::embedded().unwrap();
    let p = r.person(&cf(LUCA)).unwrap();
    let c = build_content(K::Residenza, &p, &r, &ContentOptions::default(), NOW.date()).unwrap();
    let paid = certificates::wording::bollo_paid("01234567890123", "30/06/2025");
    let text = certificates::issuer::canonical_text_of(
        &c,
        "034027-20250701-TEST0000",
        &certificates::issuer::Canonical {
            bollo: &paid,
            use_text: None,
            art40: certificates::wording::MANDATORY_WORDING,
            validity: "v",
            signatory: "L'ufficiale d'anagrafe delegato: Mario Rossi",
        },
    );
    assert!(text.contains("n. 01234567890123 del 30/06/2025"));
    assert!(text.ends_with("L'ufficiale d'anagrafe delegato: Mario Rossi"));
}

#[test]
fn judicial_and_immigration_uses_print_anprs_wording() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let forbidding = "non può essere prodotto agli organi della pubblica amministrazione";
    for code in ["dpr115_2002", "b3", "cause_giudiziarie"] {
        let doc = issuer
            .issue(&with_exemption(K::Residenza, LUCA, code), NOW)
            .unwrap();
        let text = flat(&doc, dir.path());
        assert!(
            text.contains("AI SENSI DELL'ART. 40, D.P.R. 445/2000 IL PRESENTE CERTIFICATO È RILASCIATO PER CAUSE GIUDIZIARIE"),
            "{code}: {text}"
        );
        assert!(!text.contains(forbidding), "{code}");
    }
    // Immigration owes the bollo: the box stays, the use is printed and signed.
    let doc = issuer
        .issue(&with_exemption(K::Residenza, LUCA, "immigrazione"), NOW)
        .unwrap();
    let text = flat(&doc, dir.path());
    assert!(text.contains(
        "CERTIFICATO RILASCIATO PER PROCEDIMENTI DISCIPLINATI DALLE NORME SULL'IMMIGRAZIONE"
    ));
    assert!(!text.contains(forbidding));
    assert!(text.contains("Spazio per la"), "{text}");
    assert_eq!(
        (
            doc.fees.bollo_cents,
            doc.fees.diritti_cents,
            doc.fees.exemption.clone()
        ),
        (1600, 52, None)
    );
    let v = certificates::verify_text(&doc.stamp, &issuer.trust_list(), NOW).unwrap();
    assert!(v
        .stamp
        .claims
        .certificate
        .fields
        .contains(&("uso".into(), "immigrazione".into())));
    // Any other use keeps the art. 40 sentence.
    let text = flat(
        &issuer
            .issue(&with_exemption(K::Residenza, LUCA, "b11"), NOW)
            .unwrap(),
        dir.path(),
    );
    assert!(text.contains(forbidding));
}

#[test]
fn matrimonio_names_the_dissolution_that_applies() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let religious = flat(
        &issue(&issuer, K::Matrimonio, cases::MARCO_GALLI, None).unwrap(),
        dir.path(),
    );
    assert!(
        religious.contains(
            "Annotazioni: cessazione degli effetti civili del matrimonio in data 20/10/2016"
        ),
        "{religious}"
    );
    assert!(!religious.contains("scioglimento"));
    let civil = flat(
        &issue(&issuer, K::Matrimonio, cases::STEFANO_FERRI, None).unwrap(),
        dir.path(),
    );
    assert!(
        civil.contains("Annotazioni: scioglimento del matrimonio in data 15/02/2019"),
        "{civil}"
    );
    assert!(!civil.contains("cessazione"));
}

#[test]
fn the_header_names_the_real_province() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let text = flat(
        &issue(&issuer, K::Residenza, LUCA, None).unwrap(),
        dir.path(),
    );
    assert!(
        text.contains("Provincia di Parma (PR) - Codice ISTAT 034027"),
        "{text}"
    );
    // A comune not named like its province.
    let mut data = DemoRegistry::embedded().unwrap().data().clone();
    data.comune.name = "Fidenza".into();
    data.comune.istat_code = "034014".into();
    data.comune.belfiore = "B034".into();
    let doc = issuer_over(dir.path(), data.clone())
        .issue(&request(K::Residenza, LUCA, None), NOW)
        .unwrap();
    let text = flat(&doc, dir.path());
    assert!(text.contains("COMUNE DI FIDENZA"), "{text}");
    assert!(text.contains("Provincia di Parma (PR) - Codice ISTAT 034014"));
    assert!(!text.contains("Provincia di Fidenza"));
    // Older data without the province's name: the abbreviation only.
    data.comune.province_name = None;
    let dir2 = tempfile::tempdir().unwrap();
    let doc = issuer_over(dir2.path(), data)
        .issue(&request(K::Residenza, LUCA, None), NOW)
        .unwrap();
    let text = flat(&doc, dir2.path());
    assert!(text.contains("(PR) - Codice ISTAT 034014"));
    assert!(!text.contains("Provincia di"), "{text}");
}

fn issuer_over(dir: &std::path::Path, data: certificates::registry::RegistryData) -> Issuer {
    let config = IssuerConfig::default();
    Issuer::from_parts(
        Arc::new(DemoRegistry::from_data(data)),
        Signer::from_config(&config.signer, dir, NOW).unwrap(),
        ExemptionTable::embedded().unwrap(),
        AuditLog::open(&dir.join("audit-over.log")).unwrap(),
        config,
        vec![],
    )
    .unwrap()
}

#[test]
fn marital_status_contestuale_morte_and_citizenship_wording() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let libero = flat(
        &issue(&issuer, K::StatoLibero, cases::MARCO_GALLI, None).unwrap(),
        dir.path(),
    );
    assert!(libero.contains("è di stato civile divorziato"), "{libero}");
    let libera = flat(
        &issue(&issuer, K::StatoLibero, cases::PAOLA_LOMBARDI, None).unwrap(),
        dir.path(),
    );
    assert!(libera.contains("è di stato civile divorziata"), "{libera}");

    // Contestuale: the birth data once, the Italian citizenship first.
    let contestuale = flat(
        &issue(&issuer, K::Contestuale, cases::YOUSSEF_EL_AMRANI, None).unwrap(),
        dir.path(),
    );
    assert_eq!(
        contestuale.matches("10/10/1979").count(),
        1,
        "{contestuale}"
    );
    assert!(contestuale.contains("è di cittadinanza italiana, marocchina"));

    // Morte: residence and marital status at death.
    let morte = flat(
        &issue(&issuer, K::Morte, cases::GIUSEPPE_BIANCHI, None).unwrap(),
        dir.path(),
    );
    assert!(
        morte.contains(
            "Alla data del decesso risultava residente in questo Comune in Borgo Felino n. 3"
        ),
        "{morte}"
    );
    assert!(morte.contains("Stato civile alla data del decesso: coniugato"));

    // Cittadinanza of a dual citizen: the Italian citizenship alone (ANPR; art. 19 L. 218/1995).
    let cit = flat(
        &issue(&issuer, K::Cittadinanza, cases::YOUSSEF_EL_AMRANI, None).unwrap(),
        dir.path(),
    );
    assert!(cit.contains("è cittadino italiano"), "{cit}");
    assert!(!cit.contains("marocchina"));
}

#[test]
fn exemptions_diritti_and_channels() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    // Adoption: no bollo and no diritti (art. 82 L. 184/1983).
    let doc = issuer
        .issue(&with_exemption(K::StatoFamiglia, LUCA, "l184_1983"), NOW)
        .unwrap();
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (0, 0));
    let text = flat(&doc, dir.path());
    assert!(text.contains("Diritti di segreteria: esenti."), "{text}");
    assert!(text.contains("art. 82 della L. 184/1983"));
    // Art. 13 (interdizione, amministrazione di sostegno), art. 1 (electoral), art. 9 (pensione estera).
    for (code, words) in [
        ("b13", "amministrazione di sostegno"),
        ("b1", "uso elettorale"),
        ("b9", "uso pensione estera"),
    ] {
        let doc = issuer
            .issue(&with_exemption(K::Residenza, LUCA, code), NOW)
            .unwrap();
        assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (0, 26));
        let text = flat(&doc, dir.path());
        assert!(text.contains(words), "{code}: {text}");
    }
    // b16 and L. 28/1999 are not offered on the web; the office may still use them.
    for code in ["b16", "l28_1999"] {
        let mut r = with_exemption(K::Residenza, LUCA, code);
        r.requester = web(LUCA);
        assert!(
            matches!(issuer.issue(&r, NOW), Err(CertError::NotAllowed(_))),
            "{code}"
        );
        r.requester = kiosk();
        assert!(issuer.issue(&r, NOW).is_ok(), "{code}");
        assert!(issuer.exemptions().offered(false).any(|e| e.code == code));
        assert!(!issuer.exemptions().offered(true).any(|e| e.code == code));
    }
    let mut r = with_exemption(K::Residenza, LUCA, "b11");
    r.requester = web(LUCA);
    assert!(issuer.issue(&r, NOW).is_ok());
}

#[test]
fn civil_status_diritti_come_from_the_comunes_table() {
    // Default: the current behaviour, 0,26 €.
    let dir = tempfile::tempdir().unwrap();
    let doc = issue(&issuer(dir.path()), K::Nascita, LUCA, None).unwrap();
    assert_eq!(doc.fees.diritti_cents, 26);
    // Existing configurations without the table still load; a partial table keeps the defaults.
    let config: IssuerConfig = serde_json::from_str(
        r#"{"office": "Ufficio di prova", "civil_status_diritti": {"nascita": 0, "morte": 100}}"#,
    )
    .unwrap();
    assert_eq!(config.civil_status_diritti.matrimonio, 26);
    let old: IssuerConfig = serde_json::from_str(r#"{"office": "Ufficio di prova"}"#).unwrap();
    assert_eq!(old.civil_status_diritti, Default::default());
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open(dir.path(), &config, NOW).unwrap();
    let nascita = issue(&issuer, K::Nascita, LUCA, None).unwrap();
    assert_eq!(nascita.fees.diritti_cents, 0);
    assert!(flat(&nascita, dir.path()).contains("Diritti di segreteria: esenti."));
    let morte = issue(&issuer, K::Morte, cases::GIUSEPPE_BIANCHI, None).unwrap();
    assert_eq!(morte.fees.diritti_cents, 100);
    assert!(flat(&morte, dir.path()).contains("Diritti di segreteria: € 1,00."));
    // Registry kinds keep L. 604/1962 Tab. D.
    assert_eq!(
        issue(&issuer, K::Residenza, LUCA, None)
            .unwrap()
            .fees
            .diritti_cents,
        52
    );
}

#[test]
fn anpr_catalogue_aire_stato_civile_and_unione_civile() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    // AIRE: registered abroad, no longer resident.
    let aire = issue(&issuer, K::ResidenzaAire, cases::GIORGIA_MARINI, None).unwrap();
    let text = flat(&aire, dir.path());
    assert!(text.contains("CERTIFICATO DI RESIDENZA AIRE"), "{text}");
    assert!(text.contains("(L. 27 ottobre 1988, n. 470"));
    assert!(text.contains(
        "risulta iscritta nell'Anagrafe degli italiani residenti all'estero (AIRE) di questo Comune dal 15/03/2021, con residenza in Calle de Alcalá 120, Madrid (Spagna)"
    ));
    assert_eq!((aire.fees.bollo_cents, aire.fees.diritti_cents), (1600, 52));
    assert!(matches!(
        issue(&issuer, K::Residenza, cases::GIORGIA_MARINI, None),
        Err(CertError::NotIssuable(_))
    ));
    assert!(matches!(
        issue(&issuer, K::ResidenzaAire, LUCA, None),
        Err(CertError::NotIssuable(_))
    ));
    // Stato civile: the current status, whatever it is.
    let sc = flat(
        &issue(&issuer, K::StatoCivile, cases::ALESSANDRO_FONTANA, None).unwrap(),
        dir.path(),
    );
    assert!(sc.contains("è di stato civile unito civilmente"), "{sc}");
    let sc = flat(
        &issue(&issuer, K::StatoCivile, LUCA, None).unwrap(),
        dir.path(),
    );
    assert!(sc.contains("è di stato civile coniugato"), "{sc}");
    // Unione civile: a civil-status certificate (L. 76/2016), exempt from bollo.
    let uc = issue(&issuer, K::UnioneCivile, cases::ALESSANDRO_FONTANA, None).unwrap();
    assert_eq!(uc.fees.exemption.as_deref(), Some("l405_1990"));
    assert!(uc.valid_until.is_some(), "a union can be dissolved");
    let text = flat(&uc, dir.path());
    assert!(
        text.contains(
            "ha costituito unione civile con Marchetti Davide in Parma (PR) il 30/09/2017"
        ),
        "{text}"
    );
    assert!(text.contains("L'UFFICIALE DELLO STATO CIVILE"));
    assert!(text.contains("L. 20 maggio 2016, n. 76"));
    assert!(matches!(
        issue(&issuer, K::UnioneCivile, LUCA, None),
        Err(CertError::NotIssuable(_))
    ));
}

#[test]
fn stato_famiglia_aire_prints_the_aire_family_without_kinship() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::StatoFamigliaAire, cases::ANTONIO_FERRARO, None).unwrap();
    let text = flat(&doc, dir.path());
    assert!(
        text.contains("CERTIFICATO DI STATO DI FAMIGLIA AIRE"),
        "{text}"
    );
    assert!(text.contains(
        "(art. 7, comma 1, lett. a), L. 27 ottobre 1988, n. 470 - DPR 6 settembre 1989, n. 323)"
    ));
    assert!(text.contains(
        "risulta iscritto nell'Anagrafe degli italiani residenti all'estero (AIRE) di questo Comune con residenza in Avenida Santa Fe 1234, Buenos Aires (Argentina) e che la famiglia iscritta nell'AIRE è così composta:"
    ), "{text}");
    for member in [
        "FERRARO Antonio",
        "BASSI Carla",
        "FERRARO Martina",
        "Buenos Aires (Argentina)",
    ] {
        assert!(text.contains(member), "{member}: {text}");
    }
    assert!(!text.contains("Rapporto") && !text.contains("coniuge") && !text.contains("figlia"));
    // A registry certificate: bollo and diritti, six months, the art. 40 sentence.
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (1600, 52));
    assert!(doc.valid_until.is_some());
    assert!(text.contains("validità di sei mesi"));
    assert!(text.contains("non può essere prodotto agli organi della pubblica amministrazione"));
    assert!(text.contains("L'UFFICIALE D'ANAGRAFE"));
    let v = issuer.verify_text(&doc.stamp, NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.member_count, 3);
    assert!(matches!(
        issue(&issuer, K::StatoFamigliaAire, LUCA, None),
        Err(CertError::NotIssuable(m)) if m.contains("AIRE")
    ));
}

#[test]
fn residenza_in_convivenza_names_the_convivenza_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::ResidenzaConvivenza, cases::ADA_SARTORI, None).unwrap();
    let text = flat(&doc, dir.path());
    assert!(
        text.contains("CERTIFICATO DI RESIDENZA IN CONVIVENZA"),
        "{text}"
    );
    assert!(text.contains("(artt. 5, 33 e 35 DPR 30 maggio 1989, n. 223)"));
    assert!(text.contains(
        "risulta iscritta nell'Anagrafe della popolazione residente di questo Comune con residenza in Via Po n. 30, nella convivenza anagrafica «Casa di riposo Villa Serena» (convivenza per motivi di assistenza, art. 5 DPR 223/1989)."
    ), "{text}");
    // The other guest and the responsible person are not printed.
    assert!(!text.contains("GUIDI") && !text.contains("Ernesto"));
    assert!(!text.contains("responsabile della convivenza"));
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (1600, 52));
    assert!(text.contains("validità di sei mesi"));
    // The family kinds are refused, pointing to this one.
    assert!(matches!(
        issue(&issuer, K::StatoFamiglia, cases::ADA_SARTORI, None),
        Err(CertError::NotIssuable(m)) if m.contains("residenza in convivenza")
    ));
    assert!(matches!(
        issue(&issuer, K::ResidenzaConvivenza, LUCA, None),
        Err(CertError::NotIssuable(m)) if m.contains("convivenza anagrafica")
    ));
    // On the web a guest of the convivenza is not "family" of another guest.
    let mut r = request(K::ResidenzaConvivenza, cases::ADA_SARTORI, None);
    r.requester = web(cases::ERNESTO_GUIDI);
    assert!(matches!(
        issuer.issue(&r, NOW),
        Err(CertError::NotAllowed(_))
    ));
    r.requester = web(cases::ADA_SARTORI);
    assert!(issuer.issue(&r, NOW).is_ok());
}

#[test]
fn contratto_di_convivenza_prints_the_registration_and_goes_to_the_parties_only() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    let doc = issue(&issuer, K::ContrattoConvivenza, cases::SERGIO_BERTOLI, None).unwrap();
    let text = flat(&doc, dir.path());
    assert!(
        text.contains("CERTIFICATO DI CONTRATTO DI CONVIVENZA"),
        "{text}"
    );
    assert!(text.contains(
        "(L. 20 maggio 2016, n. 76, art. 1, commi 50-52 - artt. 5, 7 e 33 DPR 30 maggio 1989, n. 223)"
    ));
    assert!(text.contains(
        "risulta convivente di fatto con Zanetti Elisa dal 10/05/2019 (art. 1, comma 36, L. 76/2016) e che i conviventi hanno stipulato un contratto di convivenza in data 14/02/2020 (notaio Carlo Verdi di Parma), registrato nell'anagrafe di questo Comune il 20/02/2020 (art. 1, commi 50-52, L. 76/2016)."
    ), "{text}");
    assert!(text.contains(
        "Regime patrimoniale scelto nel contratto: comunione dei beni (art. 1, comma 53, lett. c), L. 76/2016)."
    ));
    assert!(!text.contains("Annotazioni"), "not resolved");
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (1600, 52));
    assert!(text.contains("validità di sei mesi"));

    // ANPR issues it to the parties only: the partner may ask, a third person may not.
    let mut r = request(K::ContrattoConvivenza, cases::SERGIO_BERTOLI, None);
    r.requester = web(cases::ELISA_ZANETTI);
    assert!(issuer.issue(&r, NOW).is_ok());
    r.requester = kiosk();
    r.reason = Some("richiesta di un terzo".into());
    assert!(matches!(
        issuer.issue(&r, NOW),
        Err(CertError::NotAllowed(m)) if m.contains("parti del contratto")
    ));

    // A resolved contract carries the annotation (L. 76/2016 art. 1 c. 59).
    let mut data = DemoRegistry::embedded().unwrap().data().clone();
    for p in &mut data.people {
        if let Some(c) = p.cohabitation_contracts.last_mut() {
            c.resolution = Some(certificates::registry::ContractResolution {
                date: date!(2024 - 09 - 30),
                cause: certificates::registry::ResolutionCause::Withdrawal,
            });
        }
    }
    let dir2 = tempfile::tempdir().unwrap();
    let doc = issuer_over(dir2.path(), data)
        .issue(
            &request(K::ContrattoConvivenza, cases::ELISA_ZANETTI, None),
            NOW,
        )
        .unwrap();
    let text = flat(&doc, dir2.path());
    assert!(text.contains(
        "Annotazioni: risoluzione del contratto per recesso unilaterale in data 30/09/2024 (art. 1, comma 59, L. 76/2016)."
    ), "{text}");
    assert!(matches!(
        issue(&issuer, K::ContrattoConvivenza, LUCA, None),
        Err(CertError::NotIssuable(_))
    ));
}

#[test]
fn the_anagrafico_birth_and_marriage_certificates_read_the_anagrafe_not_the_acts() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = issuer(dir.path());
    // Birth: from the anagrafe, for someone whose act is kept elsewhere; bollo due (an anagrafe
    // certificate, not a civil-status one); unlimited validity (art. 41 c. 1 DPR 445/2000).
    let doc = issue(&issuer, K::AnagraficoNascita, cases::GIULIA_CONTI, None).unwrap();
    let text = flat(&doc, dir.path());
    assert!(text.contains("CERTIFICATO ANAGRAFICO DI NASCITA"), "{text}");
    assert!(text.contains("(artt. 20, 33 e 35 DPR 30 maggio 1989, n. 223)"));
    assert!(text.contains(
        "è nata a Reggio nell'Emilia (RE) il 05/10/1987, come risulta dagli atti dell'Anagrafe della popolazione residente di questo Comune."
    ), "{text}");
    assert!(!text.contains("Estremi dell'atto"), "no act kept here");
    assert!(text.contains("L'UFFICIALE D'ANAGRAFE"));
    assert!(!text.contains("STATO CIVILE"));
    assert_eq!(doc.fees.exemption, None);
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (1600, 52));
    assert!(doc.valid_until.is_none());
    assert!(text.contains("validità illimitata"), "{text}");
    // For an AIRE registration born in Parma: the AIRE as source and the act's details.
    let text = flat(
        &issue(&issuer, K::AnagraficoNascita, cases::ANTONIO_FERRARO, None).unwrap(),
        dir.path(),
    );
    assert!(text.contains(
        "come risulta dagli atti dell'Anagrafe degli italiani residenti all'estero (AIRE) di questo Comune."
    ), "{text}");
    assert!(
        text.contains("Estremi dell'atto di nascita: atto n."),
        "{text}"
    );
    assert!(text.contains("anno 1960, Comune di Parma."));

    // Marriage: celebrated in Napoli, ended by the spouse's death; bollo due, six months.
    let doc = issue(&issuer, K::AnagraficoMatrimonio, cases::MARIA_GRECO, None).unwrap();
    let text = flat(&doc, dir.path());
    assert!(
        text.contains("CERTIFICATO ANAGRAFICO DI MATRIMONIO"),
        "{text}"
    );
    assert!(text.contains(
        "ha contratto matrimonio con Bianchi Giuseppe in Napoli (NA) il 25/05/1968, come risulta dagli atti dell'Anagrafe della popolazione residente di questo Comune."
    ), "{text}");
    assert!(text.contains("Annotazioni: decesso del coniuge in data 03/11/2021."));
    assert!(text.contains("Stato civile: vedova."));
    assert_eq!((doc.fees.bollo_cents, doc.fees.diritti_cents), (1600, 52));
    assert!(doc.valid_until.is_some());
    // A religious marriage's divorce is named as such here too.
    let text = flat(
        &issue(&issuer, K::AnagraficoMatrimonio, cases::MARCO_GALLI, None).unwrap(),
        dir.path(),
    );
    assert!(
        text.contains(
            "Annotazioni: cessazione degli effetti civili del matrimonio in data 20/10/2016."
        ),
        "{text}"
    );
    assert!(text.contains("Stato civile: divorziato."));
    assert!(matches!(
        issue(&issuer, K::AnagraficoMatrimonio, cases::ALESSANDRO_FONTANA, None),
        Err(CertError::NotIssuable(m)) if m.contains("unito civilmente")
    ));
}
