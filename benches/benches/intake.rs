//! The agent's Segment and GA4 translation next to the native path it feeds, per event,
//! in the same run: the CPU each format costs before delivery.
//!
//! - `segment_batch_100`: a Segment batch of 100 storefront events
//!   (`intake::segment_batch`, then validation of each translated event, as the
//!   endpoint does), vs the same events as a native NDJSON batch (`split_batch` and
//!   validation: the native endpoint's work, the ceiling).
//! - `ga4_request_25`: a GA4 request of 25 events (`intake::ga4_collect` and
//!   validation) vs a native NDJSON batch of the same 25 events.
//!
//! ```text
//! cargo bench -p ingest-benches --bench intake
//! ```

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_agent::intake::{self, Mapped};
use ingest_benches::intake_format;
use ingest_benches::storefront::{Event, Storefront};
use ingest_core::{split_batch, Limits, Validator};

fn events(n: usize) -> Vec<Event> {
    let mut shop = Storefront::new(1, 0, 42);
    (0..n).map(|_| shop.next_event()).collect()
}

fn ndjson(events: &[Event]) -> Bytes {
    let mut body = Vec::new();
    for event in events {
        body.extend_from_slice(&event.body);
        body.push(b'\n');
    }
    Bytes::from(body)
}

/// Validates what a translation gave, as the endpoint does; returns how many passed.
fn validate_mapped(validator: &Validator, mapped: Vec<Result<Mapped, intake::MapError>>) -> usize {
    mapped
        .into_iter()
        .filter(|m| match m {
            Ok(Mapped::Event { kind, json }) => validator
                .validate(Some(*kind), Bytes::from(json.clone()))
                .is_ok(),
            _ => false,
        })
        .count()
}

fn validate_native(validator: &Validator, limits: &Limits, body: &Bytes) -> usize {
    split_batch(body, limits)
        .expect("splits")
        .into_iter()
        .filter(|e| validator.validate(None, e.clone()).is_ok())
        .count()
}

fn segment(c: &mut Criterion) {
    let events = events(100);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let messages: Vec<String> = events
        .iter()
        .map(|e| intake_format::segment_message(e, &now).to_string())
        .collect();
    let body = format!(r#"{{"batch":[{}],"sentAt":"{now}"}}"#, messages.join(","));
    let native = ndjson(&events);
    let (validator, limits) = (Validator::default(), Limits::default());
    let translated = intake::segment_batch(body.as_bytes(), 1000).expect("a batch");
    assert_eq!(
        validate_mapped(&validator, translated),
        100,
        "every event maps"
    );
    assert_eq!(validate_native(&validator, &limits, &native), 100);

    let mut group = c.benchmark_group("segment_batch_100");
    common::short(&mut group);
    group.throughput(common::throughput(100, body.len()));
    group.bench_function("native_ndjson_ceiling", |b| {
        b.iter(|| validate_native(&validator, &limits, black_box(&native)));
    });
    group.bench_function("segment", |b| {
        b.iter(|| {
            let mapped = intake::segment_batch(black_box(body.as_bytes()), 1000).expect("a batch");
            validate_mapped(&validator, mapped)
        });
    });
    group.finish();
}

fn ga4(c: &mut Criterion) {
    let events = events(25);
    let request = serde_json::json!({
        "client_id": "1.2",
        "user_id": "user-1",
        "events": events.iter().map(intake_format::ga4_event).collect::<Vec<_>>(),
    })
    .to_string();
    let native = ndjson(&events);
    let (validator, limits) = (Validator::default(), Limits::default());
    let translated = intake::ga4_collect(request.as_bytes(), 1000).expect("a request");
    assert!(
        validate_mapped(&validator, translated) >= 25,
        "every event maps"
    );

    let mut group = c.benchmark_group("ga4_request_25");
    common::short(&mut group);
    group.throughput(common::throughput(25, request.len()));
    group.bench_function("native_ndjson_ceiling", |b| {
        b.iter(|| validate_native(&validator, &limits, black_box(&native)));
    });
    group.bench_function("ga4", |b| {
        b.iter(|| {
            let mapped =
                intake::ga4_collect(black_box(request.as_bytes()), 1000).expect("a request");
            validate_mapped(&validator, mapped)
        });
    });
    group.finish();
}

criterion_group!(benches, segment, ga4);
criterion_main!(benches);
