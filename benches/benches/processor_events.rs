//! The processor's per-event CPU work, next to a ceiling in the same run: 10,000 events
//! of the storefront mix (60% views, 20% searches, 15% cart, 5% purchases).
//!
//! - `decode`: `Event::decode` and the content check (`Event::check_content`) of every
//!   record value, as the consume loop does, vs `ceiling_serde_value` (serde_json
//!   building a generic `Value` of the same bytes: the parse any typed decode pays at
//!   least).
//! - `aggregate`: the decoded events folded into one checkpoint's rollup (windows,
//!   de-duplication, sessions, enrichment, top lists, members, pairs), from empty state.
//!
//! Allocations per event are counted by the `processor_allocations` bench.
//!
//! ```text
//! cargo bench -p ingest-benches --bench processor_events
//! cargo bench -p ingest-benches --bench processor_events -- --quick   # smoke run
//! ```

mod common;
mod processor_input;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ingest_core::model::Event;

fn decode(c: &mut Criterion) {
    let input = processor_input::records(processor_input::EVENTS);
    let bytes: usize = input.iter().map(|(_, v)| v.len()).sum();
    let mut group = c.benchmark_group("processor_decode");
    common::short(&mut group);
    group.throughput(common::throughput(input.len(), bytes));
    group.bench_function("decode_and_check", |b| {
        b.iter(|| {
            for (kind, value) in &input {
                let event = Event::decode(*kind, value).expect("valid");
                event.check_content().expect("storable");
                black_box(event);
            }
        })
    });
    group.bench_function("ceiling_serde_value", |b| {
        b.iter(|| {
            for (_, value) in &input {
                let value: serde_json::Value = serde_json::from_slice(value).expect("JSON");
                black_box(value);
            }
        })
    });
    group.finish();
}

fn aggregate(c: &mut Criterion) {
    let incoming = processor_input::incoming(processor_input::EVENTS);
    let catalog = processor_input::catalog();
    let mut group = c.benchmark_group("processor_aggregate");
    common::short(&mut group);
    group.throughput(criterion::Throughput::Elements(incoming.len() as u64));
    group.bench_function("aggregate", |b| {
        b.iter(|| black_box(processor_input::aggregate(&catalog, &incoming)))
    });
    group.finish();
}

criterion_group!(benches, decode, aggregate);
criterion_main!(benches);
