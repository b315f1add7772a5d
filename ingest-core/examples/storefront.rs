//! A storefront's day in miniature: embeds ingest-core, sends realistic product views,
//! cart changes, purchases and searches (plus a few broken events) to Kafka, waits for
//! Kafka to acknowledge them, then reads the topics back and checks every event arrived.
//!
//! ```text
//! cargo run --release -p ingest-core --example storefront -- --brokers 127.0.0.1:19092 --events 20000
//! ```
//!
//! `scripts/demo` starts Kafka and runs this for you.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest_core::{ensure_topics, Ack, EventKind, IngestConfig, Ingestor};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testkit::storefront::{EventType, Storefront};

struct Options {
    brokers: String,
    events: usize,
    replication_factor: i32,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: "127.0.0.1:19092".to_owned(),
        events: 20_000,
        replication_factor: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--brokers" => options.brokers = value,
            "--events" => options.events = value.parse().map_err(|e| format!("--events: {e}"))?,
            "--replication-factor" => {
                options.replication_factor = value
                    .parse()
                    .map_err(|e| format!("--replication-factor: {e}"))?;
            }
            other => {
                return Err(format!(
                    "unknown flag {other}; expected --brokers, --events, --replication-factor"
                ))
            }
        }
    }
    Ok(options)
}

/// The ingest-core type of a generated event.
fn kind_of(event_type: EventType) -> EventKind {
    EventKind::from_name(event_type.as_str()).expect("the generator names the contract's types")
}

/// Reads the topics from the beginning until every id in `wanted` was seen (earlier
/// runs' records are skipped) or a minute passed; returns the wanted ids found.
fn read_back(
    brokers: &str,
    topics: &[String],
    wanted: &HashSet<String>,
) -> Result<HashSet<String>, Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "storefront-example-verify")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for p in metadata.topics()[0].partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut ids = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.len() < wanted.len() && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            let id = message.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "event_id")
                    .and_then(|h| h.value.map(<[u8]>::to_vec))
            });
            if let Some(id) = id.map(|id| String::from_utf8_lossy(&id).into_owned()) {
                if wanted.contains(&id) {
                    ids.insert(id);
                }
            }
        }
    }
    Ok(ids)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let mut config = IngestConfig::default();
    config.kafka.brokers = options.brokers.clone();
    config.source = "storefront-example".to_owned();
    for topic in [
        &mut config.topics.product_view,
        &mut config.topics.cart,
        &mut config.topics.purchase,
        &mut config.topics.search,
        &mut config.topics.dead_letter,
    ] {
        topic.replication_factor = options.replication_factor;
    }
    let settings = config.validate()?;
    for topic in ensure_topics(&settings, Duration::from_secs(30)).await? {
        println!(
            "topic {:<16} partitions {:>2}  replication {}  {}",
            topic.name,
            topic.partitions,
            topic.replication_factor,
            if topic.created {
                "(created)"
            } else {
                "(exists)"
            }
        );
    }

    let ingestor = Ingestor::builder().config(config.clone()).build()?;
    // Event ids are (run, number): a run of its own, so that reading back counts only
    // this run's events; the seed fixes which events they are.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut shop = Storefront::new(run, 0, 0x5eed_cafe_f00d);
    let started = Instant::now();
    let mut receipts = Vec::with_capacity(options.events);
    let mut sent = HashSet::new();
    for _ in 0..options.events {
        let event = shop.next_event();
        let (kind, body) = (kind_of(event.kind), event.body);
        let receipt = loop {
            match ingestor.submit(kind, Bytes::from(body.clone())) {
                Ok(receipt) => break receipt,
                Err(e) if e.is_backpressure() => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(id) = receipt.event_id() {
            sent.insert(id.to_string());
        }
        receipts.push(receipt);
    }
    let submitted = started.elapsed();

    // A browser with a bug: these are rejected, and land in the dead-letter topic.
    let broken = [
        (
            EventKind::Purchase,
            r#"{"user_id":"u1","order_id":"o-x","items":[],"total":1,"currency":"EUR"}"#,
        ),
        (
            EventKind::ProductView,
            r#"{"user_id":"u1","product_id":"sku-1","currency":"EURO"}"#,
        ),
        (
            EventKind::Cart,
            r#"{"user_id":"u1","action":"add","product_id":"sku-1""#,
        ),
    ];
    for (kind, body) in broken {
        let err = ingestor
            .submit(kind, Bytes::from_static(body.as_bytes()))
            .expect_err("rejected");
        println!("rejected {kind:<12} {err}");
    }

    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await?;
    }
    let delivered = started.elapsed();
    let report = ingestor.shutdown(Duration::from_secs(30)).await?;
    println!(
        "{} events submitted in {:.2?} ({:.0}/s); all acknowledged by Kafka after {:.2?}; undelivered at shutdown: {}",
        options.events,
        submitted,
        options.events as f64 / submitted.as_secs_f64(),
        delivered,
        report.undelivered
    );

    let topics: Vec<String> = EventKind::ALL
        .iter()
        .map(|k| settings.topic(*k).to_owned())
        .collect();
    let found = read_back(&options.brokers, &topics, &sent)?;
    let missing = sent.len() - found.len();
    println!(
        "read back {} of this run's {} events from Kafka; missing: {missing}",
        found.len(),
        sent.len()
    );
    if missing > 0 {
        return Err(format!("{missing} events missing").into());
    }
    Ok(())
}
