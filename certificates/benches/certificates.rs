//! Benchmarks for the certificate targets: stamps signed per second per core, verification of a stamp
//! from text, and a full issue (registry read, PDF/A, stamp, audit append with fsync).
//!
//! Run with `cargo bench -p certificates --bench certificates`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use certificates::registry::demo::cases;
use certificates::{stamp, CertificateKind, FiscalCode, IssueRequest, Issuer, IssuerConfig};

fn benches(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().expect("temporary directory");
    let issuer = Issuer::open(dir.path(), &IssuerConfig::default(), now).expect("issuer");
    let luca = FiscalCode::parse(cases::LUCA_ROSSI).expect("fiscal code");
    let dalo = FiscalCode::parse(cases::NICOLO_DALO).expect("fiscal code");
    let doc = issuer
        .issue(
            &IssueRequest::cli(CertificateKind::StatoFamiglia, dalo.clone(), None, None),
            now,
        )
        .expect("issue");
    let claims = stamp::decode(&doc.stamp).expect("decode").claims;
    let trust = issuer.trust_list();

    let mut g = c.benchmark_group("stamp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_family_of_8", |b| {
        b.iter(|| stamp::sign(&claims, issuer.signer()).expect("sign"))
    });
    g.bench_function("verify_text_family_of_8", |b| {
        b.iter(|| stamp::verify_text(&doc.stamp, &trust, now).expect("verify"))
    });
    g.finish();

    let mut g = c.benchmark_group("issue");
    g.sample_size(30);
    g.bench_function("residenza", |b| {
        b.iter(|| {
            issuer
                .issue(
                    &IssueRequest::cli(CertificateKind::Residenza, luca.clone(), None, None),
                    now,
                )
                .expect("issue")
        })
    });
    g.bench_function("stato_famiglia_8", |b| {
        b.iter(|| {
            issuer
                .issue(
                    &IssueRequest::cli(CertificateKind::StatoFamiglia, dalo.clone(), None, None),
                    now,
                )
                .expect("issue")
        })
    });
    g.finish();
}

criterion_group!(certificates_benches, benches);
criterion_main!(certificates_benches);
