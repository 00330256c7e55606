//! The HTTP registry adapter against a real HTTP server (axum on port 0) serving the demo data in the
//! documented wire format; issuing through it gives the same certificate content as the embedded registry.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use certificates::registry::demo::{cases, DemoRegistry};
use certificates::registry::http::HttpRegistry;
use certificates::registry::{Person, Registry};
use certificates::{
    CertError, CertificateKind as K, FiscalCode, Issuer, IssuerConfig, RegistryConfig,
};
use common::*;

fn front_office(demo: Arc<DemoRegistry>) -> Router {
    Router::new()
        .route(
            "/anagrafe/v1/comune",
            get(|State(d): State<Arc<DemoRegistry>>| async move { Json(d.comune().unwrap()) }),
        )
        .route(
            "/anagrafe/v1/people",
            get(|State(d): State<Arc<DemoRegistry>>| async move { Json(d.list().unwrap()) }),
        )
        .route(
            "/anagrafe/v1/people/{cf}",
            get(
                |State(d): State<Arc<DemoRegistry>>, Path(cf): Path<String>| async move {
                    let cf = FiscalCode::parse(&cf).map_err(|_| StatusCode::BAD_REQUEST)?;
                    d.person(&cf).map(Json).map_err(|_| StatusCode::NOT_FOUND)
                },
            ),
        )
        .route(
            "/anagrafe/v1/families/{id}/members",
            get(
                |State(d): State<Arc<DemoRegistry>>, Path(id): Path<String>| async move {
                    let members: Vec<Person> = d.family_members(&id).unwrap();
                    Json(members)
                },
            ),
        )
        .with_state(demo)
}

/// Starts the test front office on a port chosen by the OS and returns its base URL.
fn start_server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let demo = Arc::new(DemoRegistry::embedded().unwrap());
            axum::serve(listener, front_office(demo)).await.unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    format!("http://{addr}/anagrafe/v1")
}

#[test]
fn the_http_adapter_answers_like_the_embedded_registry() {
    let base = start_server();
    let http = HttpRegistry::new(&base, Duration::from_secs(5)).unwrap();
    let demo = DemoRegistry::embedded().unwrap();
    assert_eq!(http.comune().unwrap(), demo.comune().unwrap());
    assert_eq!(http.list().unwrap(), demo.list().unwrap());
    let luca = cf(LUCA);
    assert_eq!(http.person(&luca).unwrap(), demo.person(&luca).unwrap());
    let family = demo
        .person(&luca)
        .unwrap()
        .residences
        .last()
        .unwrap()
        .family_id
        .clone();
    assert_eq!(http.family_members(&family).unwrap().len(), 4);
    let nobody = FiscalCode::parse("RSSMRA80A01H501U").unwrap();
    assert!(matches!(
        http.person(&nobody),
        Err(CertError::PersonNotFound(_))
    ));

    // Issuing through the HTTP adapter, configured as the server would.
    let dir = tempfile::tempdir().unwrap();
    let config = IssuerConfig {
        registry: RegistryConfig::Http {
            base_url: base.clone(),
            timeout_ms: 5_000,
        },
        ..IssuerConfig::default()
    };
    let issuer = Issuer::open(dir.path(), &config, NOW).unwrap();
    let doc = issuer
        .issue(
            &request(K::StatoFamigliaDecesso, cases::GIUSEPPE_BIANCHI, None),
            NOW,
        )
        .unwrap();
    let v = issuer.verify_text(&doc.stamp, NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.member_count, 3);

    // The fields of the rest of ANPR's catalogue travel too: an AIRE family sheet, a convivenza, a
    // contract of cohabitation; and the certificates come out the same.
    for code in [
        cases::ANTONIO_FERRARO,
        cases::ADA_SARTORI,
        cases::SERGIO_BERTOLI,
    ] {
        assert_eq!(
            http.person(&cf(code)).unwrap(),
            demo.person(&cf(code)).unwrap()
        );
    }
    let aire_family = demo.person(&cf(cases::ANTONIO_FERRARO)).unwrap().aire[0]
        .family_id
        .clone()
        .unwrap();
    assert_eq!(http.family_members(&aire_family).unwrap().len(), 3);
    let doc = issuer
        .issue(
            &request(K::StatoFamigliaAire, cases::MARTINA_FERRARO, None),
            NOW,
        )
        .unwrap();
    let v = issuer.verify_text(&doc.stamp, NOW).unwrap();
    assert_eq!(v.stamp.claims.certificate.member_count, 3);
    let local_dir = tempfile::tempdir().unwrap();
    let embedded = Issuer::open(local_dir.path(), &IssuerConfig::default(), NOW).unwrap();
    for (kind, code) in [
        (K::ResidenzaConvivenza, cases::ADA_SARTORI),
        (K::ContrattoConvivenza, cases::ELISA_ZANETTI),
    ] {
        let over_http = issuer.issue(&request(kind, code, None), NOW).unwrap();
        let local = embedded.issue(&request(kind, code, None), NOW).unwrap();
        let fields = |d: &certificates::IssuedDocument, i: &Issuer| {
            i.verify_text(&d.stamp, NOW)
                .unwrap()
                .stamp
                .claims
                .certificate
                .fields
        };
        assert_eq!(
            fields(&over_http, &issuer),
            fields(&local, &embedded),
            "{kind}"
        );
    }
}

#[test]
fn records_without_the_newer_fields_still_read() {
    // A front office written before the AIRE family, the convivenza and the contracts existed sends
    // none of them: the record reads, with the fields empty.
    let old = r#"{
        "fiscal_code": "MRNGRG92S60G337U", "surname": "Marini", "given_names": "Giorgia", "sex": "F",
        "birth": {"date": "1992-11-20", "place": {"name": "Parma", "province": "PR", "country": "Italia"}},
        "citizenships": [{"citizenship": "italiana"}],
        "residences": [{"from": "2012-09-01", "to": "2021-03-15", "address": "Via Aurelio Saffi n. 9",
            "family_id": "F1", "relationship": "intestatario scheda", "origin": "costituzione nuova famiglia"}],
        "aire": [{"from": "2021-03-15", "address": "Calle de Alcalá 120, Madrid", "country": "Spagna",
            "origin": "emigrazione all'estero"}]
    }"#;
    let p: Person = serde_json::from_str(old).unwrap();
    assert!(p.cohabitation_contracts.is_empty());
    assert_eq!(p.residences[0].convivenza, None);
    assert_eq!(p.aire[0].family_id, None);
    // And the newer fields are left out of a record that has none, so older readers see no change.
    let text = serde_json::to_string(&p).unwrap();
    for key in ["convivenza", "cohabitation_contracts", "family_id\":null"] {
        assert!(!text.contains(key), "{key} in {text}");
    }
}

#[test]
fn an_unreachable_front_office_is_an_error() {
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let http =
        HttpRegistry::new("http://127.0.0.1:9/anagrafe/v1", Duration::from_millis(500)).unwrap();
    assert!(matches!(http.list(), Err(CertError::Registry(_))));
    assert!(HttpRegistry::new("ftp://example", Duration::from_secs(1)).is_err());
}
