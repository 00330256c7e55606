//! Benchmarks for the certificate targets: stamps signed per second per core, verification of a stamp
//! from text, and a full issue (registry read, PDF/A, stamp, audit append with fsync).
//!
//! The last line on stdout is one JSON object with criterion's estimates: `stamps_signed_per_s`
//! (one thread, so per core), `stamp_sign_us`, `stamp_verify_us`, `issue_residenza_ms` and
//! `issue_stato_famiglia_8_ms`; a bench that did not run in this run (filtered out, or criterion's
//! test mode) is `null`.
//!
//! Run with `cargo bench -p certificates --bench certificates` (criterion's options after `--`,
//! e.g. `-- --warm-up-time 1 --measurement-time 2` for a short run).

use std::time::SystemTime;

use criterion::{criterion_group, Criterion, Throughput};
use serde_json::json;

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

fn main() {
    let started = SystemTime::now();
    certificates_benches();
    Criterion::default().configure_from_args().final_summary();

    let time = |group, bench| testkit::criterion_estimate_ns(group, bench, started);
    let sign = time("stamp", "sign_family_of_8");
    println!(
        "{}",
        json!({
            "stamps_signed_per_s": sign.map(|ns| 1e9 / ns),
            "stamp_sign_us": sign.map(|ns| ns / 1e3),
            "stamp_verify_us": time("stamp", "verify_text_family_of_8").map(|ns| ns / 1e3),
            "issue_residenza_ms": time("issue", "residenza").map(|ns| ns / 1e6),
            "issue_stato_famiglia_8_ms": time("issue", "stato_famiglia_8").map(|ns| ns / 1e6),
        })
    );
}
