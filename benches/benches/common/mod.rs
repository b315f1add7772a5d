//! Realistic events shared by the suites: one generator per event type, a mixed
//! NDJSON batch, and the criterion settings that keep every suite short.
//!
//! Each suite includes this module and uses part of it.
#![allow(dead_code)] // each bench target uses a different part of this module

use std::time::Duration;

use criterion::{BenchmarkGroup, Throughput};
use ingest_core::EventKind;

/// A product view with a storefront's usual context (about 410 bytes).
pub(crate) fn product_view(i: usize) -> String {
    format!(
        r#"{{"event_id":"0190c6a4-5a5e-7d5e-8b5e-{i:012}","user_id":"user-{user}","session_id":"s-{session}","product_id":"sku-{sku}","category":"shoes","brand":"Acme","price":89.95,"currency":"EUR","context":{{"user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15","ip":"203.0.113.7","page_url":"https://shop.example/p/sku-{sku}","locale":"de-DE","experiments":{{"checkout_v2":"treatment"}}}}}}"#,
        user = i % 5_000,
        session = i % 700,
        sku = 10_000 + i % 2_000,
    )
}

/// An "add to cart" with a short context (about 300 bytes).
pub(crate) fn cart(i: usize) -> String {
    format!(
        r#"{{"event_id":"0190c6a4-5a5e-7d5e-8b5f-{i:012}","anonymous_id":"anon-{user}","session_id":"s-{session}","action":"add","product_id":"sku-{sku}","quantity":2,"price":19.99,"currency":"EUR","cart_id":"c-{session}","context":{{"ip":"198.51.100.23","page_url":"https://shop.example/p/sku-{sku}","locale":"fr-FR"}}}}"#,
        user = i % 5_000,
        session = i % 700,
        sku = 10_000 + i % 2_000,
    )
}

/// An order of three items with discount, tax and shipping (about 550 bytes).
pub(crate) fn purchase(i: usize) -> String {
    format!(
        r#"{{"event_id":"0190c6a4-5a5e-7d5e-8b60-{i:012}","user_id":"user-{user}","session_id":"s-{session}","order_id":"o-{i}","items":[{{"product_id":"sku-{sku}","quantity":1,"price":89.95}},{{"product_id":"sku-20001","quantity":2,"price":12.5}},{{"product_id":"sku-30002","quantity":1,"price":4.99}}],"total":109.94,"currency":"EUR","discount":10.0,"tax":17.56,"shipping":4.95,"coupon":"WINTER10","context":{{"user_agent":"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/133.0","ip":"192.0.2.44","page_url":"https://shop.example/checkout/done","locale":"de-DE","experiments":{{"checkout_v2":"control"}}}}}}"#,
        user = i % 5_000,
        session = i % 700,
        sku = 10_000 + i % 2_000,
    )
}

/// A search with filters and a results count (about 330 bytes).
pub(crate) fn search(i: usize) -> String {
    format!(
        r#"{{"event_id":"0190c6a4-5a5e-7d5e-8b61-{i:012}","user_id":"user-{user}","session_id":"s-{session}","query":"running shoes size {size}","results_count":{results},"filters":{{"brand":["Acme","Zenith"],"price_max":120,"in_stock":true}},"context":{{"ip":"203.0.113.9","page_url":"https://shop.example/search","locale":"en-GB"}}}}"#,
        user = i % 5_000,
        session = i % 700,
        size = 36 + i % 12,
        results = i % 240,
    )
}

/// Event number `i` of type `kind`, as sent to its typed endpoint (no `type` field).
pub(crate) fn event(kind: EventKind, i: usize) -> String {
    match kind {
        EventKind::ProductView => product_view(i),
        EventKind::Cart => cart(i),
        EventKind::Purchase => purchase(i),
        EventKind::Search => search(i),
    }
}

/// Event number `i` of type `kind` with its `type` field, as it appears in a batch.
pub(crate) fn typed_event(kind: EventKind, i: usize) -> String {
    let body = event(kind, i);
    format!(r#"{{"type":"{}",{}"#, kind.as_str(), &body[1..])
}

/// The kind of event number `i` in a storefront's traffic mix: 60% product views,
/// 20% searches, 15% cart changes, 5% purchases.
pub(crate) fn kind_of(i: usize) -> EventKind {
    match i % 20 {
        0 => EventKind::Purchase,
        1..=3 => EventKind::Cart,
        4..=7 => EventKind::Search,
        _ => EventKind::ProductView,
    }
}

/// `n` events of the traffic mix, each with its `type` field.
pub(crate) fn mixed_events(n: usize) -> Vec<String> {
    (0..n).map(|i| typed_event(kind_of(i), i)).collect()
}

/// `n` events of the traffic mix as one NDJSON body.
pub(crate) fn mixed_ndjson(n: usize) -> String {
    mixed_events(n).join("\n")
}

/// Throughput in events and bytes, so criterion prints both events/s and MB/s.
pub(crate) fn throughput(events: usize, bytes: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: events as u64,
        bytes: bytes as u64,
    }
}

/// Short measurements, so every suite runs in a minute or two (`--quick` is shorter).
pub(crate) fn short<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
}

/// One event ready for a raw producer: what ingest-core decides for it (topic, key,
/// header values), worked out once with ingest-core's own validation, so a ceiling
/// sends exactly the records the product sends.
pub(crate) struct Routed {
    /// The topic of its type.
    pub(crate) topic: String,
    /// `user_id`, else `anonymous_id`.
    pub(crate) key: bytes::Bytes,
    /// The event's bytes.
    pub(crate) payload: bytes::Bytes,
    /// `event_type` header.
    pub(crate) event_type: &'static str,
    /// `event_id` header.
    pub(crate) event_id: String,
    /// `schema` header.
    pub(crate) schema: &'static str,
}

/// Validates `events` (each naming its `type`) and routes them as `settings` would.
pub(crate) fn route(settings: &ingest_core::Settings, events: &[String]) -> Vec<Routed> {
    let validator = ingest_core::Validator::new(settings.limits().clone());
    events
        .iter()
        .map(|event| {
            let valid = validator
                .validate(None, bytes::Bytes::from(event.clone()))
                .expect("the benchmark events are valid");
            Routed {
                topic: settings.topic(valid.kind()).to_owned(),
                key: valid.partition_key().clone(),
                payload: valid.payload().clone(),
                event_type: valid.kind().as_str(),
                event_id: valid.event_id().hyphenated().to_string(),
                schema: valid.kind().schema(),
            }
        })
        .collect()
}

/// The librdkafka settings an ingestor with `config` gives its producer, for raw
/// producer ceilings: same brokers, idempotence, acks, compression, batching, timeouts
/// and queue bounds, plus the pass-through properties.
pub(crate) fn producer_config(config: &ingest_core::IngestConfig) -> rdkafka::ClientConfig {
    let settings = config.validate().expect("a valid benchmark configuration");
    let mut producer = rdkafka::ClientConfig::new();
    for (key, value) in settings.producer_properties() {
        producer.set(key, value);
    }
    producer.set("client.id", format!("{}-ceiling", config.kafka.client_id));
    producer
}

/// The headers ingest-core puts on an event's record (`received_at` and `source` are
/// the caller's).
pub(crate) fn headers(
    routed: &Routed,
    received_at: &str,
    source: &str,
) -> rdkafka::message::OwnedHeaders {
    use rdkafka::message::{Header, OwnedHeaders};
    OwnedHeaders::new_with_capacity(5)
        .insert(Header {
            key: "event_type",
            value: Some(routed.event_type),
        })
        .insert(Header {
            key: "event_id",
            value: Some(routed.event_id.as_str()),
        })
        .insert(Header {
            key: "received_at",
            value: Some(received_at),
        })
        .insert(Header {
            key: "source",
            value: Some(source),
        })
        .insert(Header {
            key: "schema",
            value: Some(routed.schema),
        })
}

/// A producer context that counts delivery reports, for raw producer ceilings.
#[derive(Default)]
pub(crate) struct Counting {
    /// Records acknowledged by the broker.
    pub(crate) delivered: std::sync::atomic::AtomicUsize,
    /// Records that failed.
    pub(crate) failed: std::sync::atomic::AtomicUsize,
}

impl rdkafka::ClientContext for Counting {}

impl rdkafka::producer::ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A raw producer with the ingestor's settings.
pub(crate) fn raw_producer(
    config: &ingest_core::IngestConfig,
) -> rdkafka::producer::BaseProducer<Counting> {
    producer_config(config)
        .create_with_context(Counting::default())
        .expect("creating the raw producer")
}

/// Hands every record to a raw producer, with the headers ingest-core would add,
/// polling when its queue is full. Returns when the last `send` returned.
pub(crate) fn raw_send_all(
    producer: &rdkafka::producer::BaseProducer<Counting>,
    routed: &[Routed],
) {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::BaseRecord;
    let received_at = "2026-11-24T10:00:00.000Z";
    for event in routed {
        let mut record = BaseRecord::to(&event.topic)
            .key(&event.key[..])
            .payload(&event.payload[..])
            .headers(headers(event, received_at, "bench"));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => panic!("the raw producer refused a record: {error}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
}

/// Waits until the raw producer has a report for `expected` records in all (counted
/// since it was created) and checks none failed.
pub(crate) fn raw_wait_delivered(
    producer: &rdkafka::producer::BaseProducer<Counting>,
    expected: usize,
    timeout: Duration,
) {
    use rdkafka::producer::Producer;
    use std::sync::atomic::Ordering;
    let deadline = std::time::Instant::now() + timeout;
    let context = producer.context();
    while context.delivered.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed)
        < expected
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the raw producer did not deliver {expected} records within {timeout:?}"
        );
        producer.poll(Duration::from_millis(1));
    }
    let _ = producer.flush(Duration::ZERO);
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "the raw producer failed to deliver records"
    );
}
