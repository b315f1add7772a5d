//! `submit` → `Delivered` through a real Kafka broker, next to a raw librdkafka producer
//! loop with the same settings and the same records, in the same run. One group,
//! `submit_delivered_10000` (events/s and MB/s), each iteration sending 10,000 events
//! of the traffic mix (about 400 bytes on average, each with its `type` field) and
//! timing until Kafka acknowledged every one (`acks=all`, idempotent, lz4, the
//! default linger and batch sizes):
//!
//! - `ceiling_rdkafka`: a `BaseProducer` polled on the sending thread, given the records
//!   ingest-core would produce (same topics, keys, payloads and headers, worked out
//!   before timing), until every delivery report arrived.
//! - `ingestor_submit`: an [`Ingestor`] with the memory buffer, one `submit` per event,
//!   then waiting for every receipt to reach `Ack::Delivered`.
//! - `ingestor_submit_batch`: the same events as ten NDJSON batches of 1,000.
//!
//! The broker's address comes from `KAFKA_BOOTSTRAP`, as for the integration tests; the
//! suite fails when it is unset. It sends to its own topics (`bench-product-views`, …),
//! created when missing with ingest-core's `ensure_topics` and left on the broker.
//!
//! ```text
//! scripts/kafka start                        # prints the bootstrap address last
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench -p ingest-benches --bench delivery
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench -p ingest-benches --bench delivery -- --quick
//! ```

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ingest_core::{ensure_topics, Ack, EventKind, IngestConfig, Ingestor, Receipt};

const EVENTS: usize = 10_000;
const BATCH: usize = 1000;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

fn bootstrap() -> String {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => panic!(
            "KAFKA_BOOTSTRAP is not set. The delivery benchmark needs a running Kafka: start one with \
             `scripts/kafka start` (it prints the bootstrap address as its last line), then run \
             `KAFKA_BOOTSTRAP=<that address> cargo bench -p ingest-benches --bench delivery`."
        ),
    }
}

/// The default configuration with the benchmark's own topics.
fn config(brokers: String) -> IngestConfig {
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers;
    config.source = "bench".to_owned();
    ingest_benches::topics::prefix_topics(&mut config, "bench");
    config
}

fn wait_all(runtime: &tokio::runtime::Runtime, receipts: &[Receipt]) {
    runtime
        .block_on(async {
            let all = async {
                for receipt in receipts {
                    receipt.wait(Ack::Delivered).await.expect("delivered");
                }
            };
            tokio::time::timeout(DELIVERY_TIMEOUT, all).await
        })
        .expect("every event delivered in time");
}

/// Retries a submission the queue refused for back-pressure.
fn submit_retrying<T>(mut submit: impl FnMut() -> Result<T, ingest_core::Error>) -> T {
    loop {
        match submit() {
            Ok(receipt) => return receipt,
            Err(error) if error.is_backpressure() => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(error) => panic!("submission refused: {error}"),
        }
    }
}

fn delivery(c: &mut Criterion) {
    let config = config(bootstrap());
    let settings = config.validate().expect("valid configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime
        .block_on(ensure_topics(&settings, Duration::from_secs(30)))
        .expect("creating the benchmark topics (is Kafka at KAFKA_BOOTSTRAP running?)");

    let events = common::mixed_events(EVENTS);
    let payload_bytes: usize = events.iter().map(String::len).sum();
    let singles: Vec<(EventKind, Bytes)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (common::kind_of(i), Bytes::from(e.clone())))
        .collect();
    let batches: Vec<Bytes> = events
        .chunks(BATCH)
        .map(|chunk| Bytes::from(chunk.join("\n")))
        .collect();
    let routed = common::route(&settings, &events);

    let mut group = c.benchmark_group(format!("submit_delivered_{EVENTS}"));
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        // Iterations take tens of milliseconds: the same number per sample.
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    group.throughput(common::throughput(EVENTS, payload_bytes));

    let producer = common::raw_producer(&config);
    let mut sent = 0;
    group.bench_function("ceiling_rdkafka", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                common::raw_send_all(&producer, &routed);
                sent += routed.len();
                common::raw_wait_delivered(&producer, sent, DELIVERY_TIMEOUT);
            }
            start.elapsed()
        });
    });
    drop(producer);

    let ingestor = Ingestor::builder()
        .config(config.clone())
        .build()
        .expect("the ingestor starts");
    group.bench_function("ingestor_submit", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let receipts: Vec<Receipt> = singles
                    .iter()
                    .map(|(kind, body)| submit_retrying(|| ingestor.submit(*kind, body.clone())))
                    .collect();
                wait_all(&runtime, &receipts);
            }
            start.elapsed()
        });
    });
    group.bench_function("ingestor_submit_batch", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let receipts: Vec<Receipt> = batches
                    .iter()
                    .map(|body| {
                        let receipt = submit_retrying(|| ingestor.submit_batch(body.clone()));
                        assert!(receipt.rejected.is_empty(), "every event is valid");
                        receipt.receipt
                    })
                    .collect();
                wait_all(&runtime, &receipts);
            }
            start.elapsed()
        });
    });
    group.finish();
    runtime
        .block_on(ingestor.shutdown(Duration::from_secs(30)))
        .expect("the ingestor stops");
}

criterion_group!(benches, delivery);
criterion_main!(benches);
