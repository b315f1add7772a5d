//! Validation and batch splitting, each next to its ceiling in the same run. Every
//! group reports events/s and MB/s.
//!
//! - `validate_<type>` (one group per event type, a realistic event of that type as
//!   sent to its typed endpoint): `Validator::validate` vs simd-json parsing the same
//!   bytes into a tape (`ceiling_simd_json_tape`: the parse validation cannot avoid)
//!   and vs serde_json building a `Value` (what a straightforward implementation
//!   would do).
//! - `batch_10000_ndjson` (10,000 events of the traffic mix, about 4 MB):
//!   `split_batch` alone, and split plus validation of every event, vs the ceiling
//!   `ceiling_lines_simd_json_tape` (cutting the body at newlines and parsing each line
//!   into a tape). Validation reads the clock once per batch, as `submit_batch` does.
//!
//! ```text
//! cargo bench -p ingest-benches --bench validation
//! cargo bench -p ingest-benches --bench validation -- --quick   # smoke run
//! ```

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ingest_core::{split_batch, EventKind, Limits, Validator};
use time::OffsetDateTime;

const BATCH_EVENTS: usize = 10_000;

fn single_event(c: &mut Criterion) {
    let validator = Validator::default();
    let mut buffers = simd_json::Buffers::default();
    let mut copy = Vec::new();
    for kind in EventKind::ALL {
        let body = Bytes::from(common::event(kind, 1));
        validator
            .validate(Some(kind), body.clone())
            .expect("the benchmark event is valid");
        let mut group = c.benchmark_group(format!("validate_{kind}"));
        common::short(&mut group);
        group.throughput(common::throughput(1, body.len()));
        // The ceiling copies the bytes and parses them with reused parser buffers, as
        // validation does, and stops there.
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
                    .validate(Some(kind), black_box(body.clone()))
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
}

fn batch(c: &mut Criterion) {
    let body = Bytes::from(common::mixed_ndjson(BATCH_EVENTS));
    let limits = Limits::default();
    assert!(
        body.len() <= limits.max_batch_bytes,
        "the benchmark batch fits the default limit"
    );
    let validator = Validator::default();
    let valid = split_batch(&body, &limits)
        .expect("splits")
        .into_iter()
        .filter(|e| validator.validate(None, e.clone()).is_ok())
        .count();
    assert_eq!(
        valid, BATCH_EVENTS,
        "every event of the benchmark batch is valid"
    );
    let mut group = c.benchmark_group(format!("batch_{BATCH_EVENTS}_ndjson"));
    common::short(&mut group);
    group.throughput(common::throughput(BATCH_EVENTS, body.len()));
    let mut buffers = simd_json::Buffers::default();
    let mut copy = Vec::new();
    group.bench_function("ceiling_lines_simd_json_tape", |b| {
        b.iter(|| {
            let mut events = 0;
            for line in black_box(&body[..]).split(|&b| b == b'\n') {
                copy.clear();
                copy.extend_from_slice(line);
                let tape =
                    simd_json::to_tape_with_buffers(&mut copy, &mut buffers).expect("valid JSON");
                events += usize::from(!tape.0.is_empty());
            }
            events
        });
    });
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
            let now = OffsetDateTime::now_utc();
            events
                .into_iter()
                .filter(|e| validator.validate_at(None, e.clone(), now).is_ok())
                .count()
        });
    });
    group.finish();
}

criterion_group!(benches, single_event, batch);
criterion_main!(benches);
