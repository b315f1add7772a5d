//! Routing and batching: what ingest-core does between a body it received and the
//! producer client's queue, next to its ceilings in the same run. One group,
//! `route_1000`, over a 1,000-event NDJSON batch of the traffic mix (events/s and MB/s):
//!
//! - `ceiling_memcpy`: copying the same event bytes into a `Vec` (any pipeline touches
//!   each byte at least once).
//! - `split_validate`: `split_batch` plus validation of every event (see the
//!   `validation` suite).
//! - `split_validate_route`: the same plus the routing decisions the public API
//!   exposes: the topic of each event's type and its key (`user_id`, else
//!   `anonymous_id`), gathered as the list of records to send.
//! - `ingestor_submit_batch`: `Ingestor::submit_batch` (split, validate, route, build
//!   the records, admit them to the bounded queue) until the delivery thread has handed
//!   every record, with its headers, to the producer client (the queue is empty again).
//! - `ceiling_rdkafka_send`: a raw librdkafka producer with the same settings handed
//!   the same 1,000 records (same topics, keys and headers, worked out beforehand).
//!
//! The producers talk to librdkafka's in-process mock cluster (`test.mock.num.brokers`),
//! so the suite needs no Kafka; after each timed iteration the records are delivered
//! (untimed) so queues never fill. The producer's own batching and compression happen
//! on its threads and are part of the `delivery` suite, which needs a real broker.
//!
//! ```text
//! cargo bench -p ingest-benches --bench routing
//! cargo bench -p ingest-benches --bench routing -- --quick   # smoke run
//! ```

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ingest_core::{split_batch, Ack, IngestConfig, Ingestor, Validator};
use time::OffsetDateTime;

const EVENTS: usize = 1000;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn mock_config() -> IngestConfig {
    let mut config = IngestConfig::default();
    config
        .kafka
        .properties
        .insert("test.mock.num.brokers".to_owned(), "1".to_owned());
    config.source = "bench".to_owned();
    config
}

fn route(c: &mut Criterion) {
    let events = common::mixed_events(EVENTS);
    let body = Bytes::from(events.join("\n"));
    let payload_bytes: usize = events.iter().map(String::len).sum();
    let config = mock_config();
    let settings = config.validate().expect("valid configuration");
    let validator = Validator::new(settings.limits().clone());
    let limits = settings.limits().clone();

    let mut group = c.benchmark_group(format!("route_{EVENTS}"));
    common::short(&mut group);
    group.throughput(common::throughput(EVENTS, payload_bytes));

    let mut copy = Vec::with_capacity(payload_bytes);
    group.bench_function("ceiling_memcpy", |b| {
        b.iter(|| {
            copy.clear();
            for event in black_box(&events) {
                copy.extend_from_slice(event.as_bytes());
            }
            copy.len()
        });
    });

    group.bench_function("split_validate", |b| {
        b.iter(|| {
            let now = OffsetDateTime::now_utc();
            split_batch(black_box(&body), &limits)
                .expect("splits")
                .into_iter()
                .filter(|e| validator.validate_at(None, e.clone(), now).is_ok())
                .count()
        });
    });

    group.bench_function("split_validate_route", |b| {
        b.iter(|| {
            let now = OffsetDateTime::now_utc();
            let records: Vec<(&str, Bytes, Bytes)> = split_batch(black_box(&body), &limits)
                .expect("splits")
                .into_iter()
                .map(|e| {
                    let event = validator.validate_at(None, e, now).expect("valid");
                    (
                        settings.topic(event.kind()),
                        event.partition_key().clone(),
                        event.payload().clone(),
                    )
                })
                .collect();
            records.len()
        });
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ingestor = Ingestor::builder()
        .config(config.clone())
        .build()
        .expect("the ingestor starts");
    group.bench_function("ingestor_submit_batch", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let receipt = ingestor
                    .submit_batch(body.clone())
                    .expect("the batch is accepted");
                while ingestor.health().queue_events > 0 {
                    std::thread::yield_now();
                }
                timed += start.elapsed();
                runtime
                    .block_on(async {
                        tokio::time::timeout(DELIVERY_TIMEOUT, receipt.receipt.wait(Ack::Delivered))
                            .await
                    })
                    .expect("delivered in time")
                    .expect("delivered");
            }
            timed
        });
    });

    let routed = common::route(&settings, &events);
    let producer = common::raw_producer(&config);
    let mut sent = 0;
    group.bench_function("ceiling_rdkafka_send", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                common::raw_send_all(&producer, &routed);
                timed += start.elapsed();
                sent += routed.len();
                common::raw_wait_delivered(&producer, sent, DELIVERY_TIMEOUT);
            }
            timed
        });
    });
    group.finish();

    runtime
        .block_on(ingestor.shutdown(Duration::from_secs(10)))
        .expect("the ingestor stops");
}

criterion_group!(benches, route);
criterion_main!(benches);
