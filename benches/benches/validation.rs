//! Validation and batch splitting, each next to its ceiling in the same run:
//!
//! - one event: `Validator::validate` vs simd-json parsing the same bytes into a tape
//!   (the parse validation cannot avoid; the ceiling) and vs serde_json building a
//!   `Value` (what a straightforward implementation would do);
//! - a 1,000-event NDJSON batch: `split_batch` alone (finding the events), and split
//!   plus validation of every event.
//!
//! `cargo bench -p ingest-benches --bench validation`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest_core::{split_batch, EventKind, Limits, Validator};

/// A realistic product view with context, about 450 bytes.
const PRODUCT_VIEW: &str = r#"{"event_id":"0190c6a4-5a5e-7d5e-8b5e-0123456789ab","user_id":"user-4711","session_id":"s-99","timestamp":null,"product_id":"sku-12345","category":"shoes","brand":"Acme","price":89.95,"currency":"EUR","context":{"user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15","ip":"203.0.113.7","page_url":"https://shop.example/p/sku-12345","referrer":"https://www.example.org/","locale":"de-DE","experiments":{"checkout_v2":"treatment"}}}"#;

const PURCHASE: &str = r#"{"type":"purchase","user_id":"user-4711","order_id":"o-1","items":[{"product_id":"sku-1","quantity":1,"price":19.99},{"product_id":"sku-2","quantity":2,"price":5.5}],"total":30.99,"currency":"EUR"}"#;

fn single_event(c: &mut Criterion) {
    let body = Bytes::from_static(PRODUCT_VIEW.as_bytes());
    let validator = Validator::default();
    let mut group = c.benchmark_group("single_event");
    group.throughput(Throughput::Bytes(body.len() as u64));
    // The ceiling copies the bytes and parses them with reused parser buffers, as
    // validation does, and stops there.
    let mut buffers = simd_json::Buffers::default();
    let mut copy = Vec::with_capacity(body.len());
    group.bench_function("ceiling_simd_json_tape", |b| {
        b.iter(|| {
            copy.clear();
            copy.extend_from_slice(black_box(&body));
            let tape =
                simd_json::to_tape_with_buffers(&mut copy, &mut buffers).expect("valid JSON");
            black_box(tape.0.len())
        });
    });
    group.bench_function("validate", |b| {
        b.iter(|| {
            validator
                .validate(Some(EventKind::ProductView), black_box(body.clone()))
                .expect("valid")
        });
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| {
            serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("valid JSON")
        });
    });
    group.finish();
}

fn batch(c: &mut Criterion) {
    let lines: Vec<String> = (0..1000)
        .map(|i| {
            if i % 10 == 0 {
                PURCHASE.to_owned()
            } else {
                PRODUCT_VIEW
                    .replacen("{", r#"{"type":"product_view","#, 1)
                    .replace(
                        "0190c6a4-5a5e-7d5e-8b5e-0123456789ab",
                        &format!("0190c6a4-5a5e-7d5e-8b5e-{i:012}"),
                    )
            }
        })
        .collect();
    let body = Bytes::from(lines.join("\n"));
    let limits = Limits::default();
    let validator = Validator::default();
    let valid = split_batch(&body, &limits)
        .expect("splits")
        .into_iter()
        .filter(|e| validator.validate(None, e.clone()).is_ok())
        .count();
    assert_eq!(valid, 1000, "every event of the benchmark batch is valid");
    let mut group = c.benchmark_group("batch_1000_ndjson");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("split", |b| {
        b.iter(|| {
            split_batch(black_box(&body), &limits)
                .expect("splits")
                .len()
        });
    });
    group.bench_function("split_and_validate", |b| {
        b.iter(|| {
            let events = split_batch(black_box(&body), &limits).expect("splits");
            events
                .into_iter()
                .filter(|e| validator.validate(None, e.clone()).is_ok())
                .count()
        });
    });
    group.finish();
}

criterion_group!(benches, single_event, batch);
criterion_main!(benches);
