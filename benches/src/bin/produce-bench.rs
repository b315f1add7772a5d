//! Library-level throughput against a real broker, each tool with the same messages:
//!
//! - `ingest-core`: an embedded `Ingestor` submits events and waits for each receipt at
//!   the `--ack` level (memory queue, or the disk buffer with `--buffer-dir`);
//! - `rdkafka`: the ceiling, a raw librdkafka producer loop with exactly the producer
//!   properties the ingestor uses, the same keys, values and headers;
//! - `write-input`: writes the same values one per line, for `kcat -P`;
//! - `storefront`: fills the four event topics with storefront traffic (for the
//!   processor benchmark);
//! - `consume`: a bare consumer that reads topics from the start to their end, the
//!   processor's ceiling.
//!
//! ```text
//! produce-bench ingest-core --brokers B --topic T [--events N] [--size 300]
//!               [--ack accepted|persisted|delivered] [--batch 1] [--buffer-dir DIR]
//! produce-bench rdkafka --brokers B --topic T [--events N] [--size 300]
//! produce-bench write-input --out FILE [--events N] [--size 300]
//! produce-bench storefront --brokers B [--events N] [--users N] [--products N]
//! produce-bench consume --brokers B --topics a,b,c [--events N]
//! ```
//!
//! Every mode prints one summary line and, with `--json FILE`, appends a JSON line.

use std::collections::VecDeque;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use ingest_benches::report::append_json;
use ingest_benches::storefront::{fixed_size_view, Storefront};
use ingest_benches::topics::prefix_topics;
use ingest_core::config::{BufferSync, BufferType};
use ingest_core::{Ack, Error, EventKind, IngestConfig, Ingestor};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

// The edge agent's and the processor's allocator (librdkafka's too, through mimalloc's
// `override`), for both sides of every comparison.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Library-level Kafka throughput: ingest-core vs its ceilings")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Name of this run in the results.
    #[arg(long, global = true, default_value = "")]
    label: String,
    /// Append the result as one JSON line to FILE.
    #[arg(long, global = true)]
    json: Option<String>,
    /// Events to send or read.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    events: u64,
    /// Size of each event in bytes.
    #[arg(long, global = true, default_value_t = 300)]
    size: usize,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// An embedded ingestor: submit, then wait for the receipts.
    IngestCore {
        #[arg(long)]
        brokers: String,
        /// Topic of the product views.
        #[arg(long)]
        topic: String,
        /// Acknowledgement level each receipt is waited for.
        #[arg(long, default_value = "delivered")]
        ack: Ack,
        /// Events per submission (NDJSON batches above 1).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Disk buffer directory (log engine, default sync); memory only without it.
        #[arg(long)]
        buffer_dir: Option<String>,
        /// Receipts in flight before the oldest is awaited.
        #[arg(long, default_value_t = 200_000)]
        window: usize,
    },
    /// A raw librdkafka producer loop with the ingestor's producer properties.
    Rdkafka {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Send without keys (as kcat without -K and Kafka's perf tool do): the sticky
        /// partitioner then fills one partition's batch at a time.
        #[arg(long)]
        keyless: bool,
    },
    /// The same keys and values, `KEY<TAB>VALUE` per line, for `kcat -P -K '\t'`.
    WriteInput {
        #[arg(long)]
        out: String,
    },
    /// Storefront traffic into the event topics (created when missing), delivered.
    Storefront {
        #[arg(long)]
        brokers: String,
        /// Topics are PREFIX-product-views, PREFIX-cart-events, ...; the default names
        /// without it.
        #[arg(long)]
        topic_prefix: Option<String>,
        /// Distinct shoppers.
        #[arg(long, default_value_t = 10_000)]
        users: u64,
        /// Distinct products.
        #[arg(long, default_value_t = 2_000)]
        products: u64,
    },
    /// Creates the topic of `ingest-core` and `rdkafka` runs (10 partitions) and the
    /// other configured topics, unless they exist.
    CreateTopic {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
    },
    /// Prints the ingestor's producer properties for the peers: `-X` and `key=value` on
    /// separate lines for kcat, or with `--java` the Java client's equivalents one per line.
    Properties {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        java: bool,
    },
    /// Prints the sum of the end offsets of a topic's partitions (its records so far),
    /// to check what a peer tool says it delivered.
    EndOffsets {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
    },
    /// Read topics from the start to their current end.
    Consume {
        #[arg(long)]
        brokers: String,
        /// Comma-separated topics.
        #[arg(
            long,
            default_value = "product-views,cart-events,purchases,search-events"
        )]
        topics: String,
    },
}

/// One library-level run.
#[derive(Debug, Serialize)]
struct Throughput {
    label: String,
    tool: &'static str,
    events: u64,
    bytes: u64,
    seconds: f64,
    events_per_s: f64,
    mb_per_s: f64,
}

impl Throughput {
    fn new(label: &str, tool: &'static str, events: u64, bytes: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Throughput {
            label: label.to_owned(),
            tool,
            events,
            bytes,
            seconds,
            events_per_s: events as f64 / seconds,
            mb_per_s: bytes as f64 / seconds / 1e6,
        }
    }
}

/// The run id in every event id: distinct per process so that repeated runs into the
/// same topic stay apart.
fn run_id() -> u64 {
    u64::from(std::process::id()) << 32
        | u64::from(ingest_common::clock::since_epoch().subsec_nanos())
}

fn ingest_config(brokers: &str, topic: &str, buffer_dir: Option<&str>) -> IngestConfig {
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.to_owned();
    config.source = "produce-bench".to_owned();
    config.topics.product_view.name = topic.to_owned();
    if let Some(dir) = buffer_dir {
        config.buffer.dir = Some(dir.into());
        config.buffer.kind = BufferType::Log;
        config.buffer.sync = BufferSync::Interval;
    }
    config
}

/// Submits `events` product views of `size` bytes (in batches of `batch`) and waits for
/// every receipt at `ack`, keeping `window` receipts in flight.
async fn ingest_core(
    ingestor: &Ingestor,
    events: u64,
    size: usize,
    batch: usize,
    ack: Ack,
    window: usize,
) -> Result<u64, String> {
    let run = run_id();
    let mut pending = VecDeque::with_capacity(window.min(1 << 20));
    let mut seq = 0u64;
    let mut bytes = 0u64;
    while seq < events {
        let count = (batch as u64).min(events - seq);
        let body = if batch == 1 {
            fixed_size_view(run, seq, size)
        } else {
            let mut body = Vec::with_capacity(count as usize * (size + 1));
            for i in 0..count {
                body.extend_from_slice(&fixed_size_view(run, seq + i, size));
                body.push(b'\n');
            }
            body
        };
        bytes += count * size as u64;
        let body = Bytes::from(body);
        let receipt = loop {
            let submitted = if batch == 1 {
                ingestor.submit(EventKind::ProductView, body.clone())
            } else {
                ingestor.submit_batch(body.clone()).map(|b| b.receipt)
            };
            match submitted {
                Ok(receipt) => break receipt,
                // Backpressure: wait for the oldest receipt (or a moment) and retry.
                Err(Error::QueueFull { .. }) => match pending.pop_front() {
                    Some(oldest) => wait(&oldest, ack).await?,
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                },
                Err(error) => return Err(format!("submit: {error}")),
            }
        };
        seq += count;
        if ack != Ack::Accepted {
            pending.push_back(receipt);
            if pending.len() >= window {
                if let Some(oldest) = pending.pop_front() {
                    wait(&oldest, ack).await?;
                }
            }
        }
    }
    for receipt in pending {
        wait(&receipt, ack).await?;
    }
    Ok(bytes)
}

async fn wait(receipt: &ingest_core::Receipt, ack: Ack) -> Result<(), String> {
    receipt.wait(ack).await.map_err(|e| format!("receipt: {e}"))
}

fn run_ingest_core(
    args: &Args,
    brokers: &str,
    topic: &str,
    ack: Ack,
    batch: usize,
    buffer_dir: Option<&str>,
    window: usize,
) -> Result<Throughput, String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let ingestor = Ingestor::builder()
            .config(ingest_config(brokers, topic, buffer_dir))
            .build()
            .map_err(|e| format!("ingestor: {e}"))?;
        // Connect and warm up outside the measurement.
        warm_up(&ingestor, args.size).await?;
        let started = Instant::now();
        let bytes =
            ingest_core(&ingestor, args.events, args.size, batch.max(1), ack, window).await?;
        let elapsed = started.elapsed();
        let _ = ingestor.shutdown(Duration::from_secs(30)).await;
        Ok(Throughput::new(
            &args.label,
            "ingest-core",
            args.events,
            bytes,
            elapsed,
        ))
    })
}

async fn warm_up(ingestor: &Ingestor, size: usize) -> Result<(), String> {
    let receipt = ingestor
        .submit(
            EventKind::ProductView,
            Bytes::from(fixed_size_view(0, 0, size)),
        )
        .map_err(|e| format!("submit: {e}"))?;
    tokio::time::timeout(Duration::from_secs(30), receipt.wait(Ack::Delivered))
        .await
        .map_err(|_| "warm-up event not delivered in 30 s: is Kafka running?".to_owned())?
        .map_err(|e| format!("warm-up: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// Counts delivery reports of the raw loop.
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn run_rdkafka(
    args: &Args,
    brokers: &str,
    topic: &str,
    keyless: bool,
) -> Result<Throughput, String> {
    let settings = ingest_config(brokers, topic, None)
        .validate()
        .map_err(|e| format!("settings: {e}"))?;
    let mut config = ClientConfig::new();
    for (key, value) in settings.producer_properties() {
        config.set(key, value);
    }
    let context = Counting {
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    };
    let producer: ThreadedProducer<Counting> = config
        .create_with_context(context)
        .map_err(|e| format!("producer: {e}"))?;
    let run = run_id();
    let received_at = "2026-11-24T10:00:00.000Z";
    let send = |seq: u64| -> Result<(), String> {
        let value = fixed_size_view(run, seq, args.size);
        let id = ingest_benches::storefront::event_id(run, seq).to_string();
        let key = user_key(seq);
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "event_type",
                value: Some("product_view"),
            })
            .insert(Header {
                key: "event_id",
                value: Some(&id),
            })
            .insert(Header {
                key: "received_at",
                value: Some(received_at),
            })
            .insert(Header {
                key: "source",
                value: Some("produce-bench"),
            })
            .insert(Header {
                key: "schema",
                value: Some("json:product_view/v1"),
            });
        let mut record = BaseRecord::to(topic).payload(&value).headers(headers);
        if !keyless {
            record = record.key(&key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => return Err(format!("send: {error}")),
            }
        }
    };
    send(u64::MAX)?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("warm-up: {e}; is Kafka running?"))?;
    let started = Instant::now();
    for seq in 0..args.events {
        send(seq)?;
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| format!("flush: {e}"))?;
    let elapsed = started.elapsed();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} records failed"));
    }
    Ok(Throughput::new(
        &args.label,
        "rdkafka",
        args.events,
        args.events * args.size as u64,
        elapsed,
    ))
}

/// The key of event `seq`: its `user_id`, as the ingestor keys records.
fn user_key(seq: u64) -> String {
    format!("user-{}", seq % 10_000)
}

fn write_input(args: &Args, out: &str) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut writer = std::io::BufWriter::new(file);
    let run = run_id();
    for seq in 0..args.events {
        writer
            .write_all(user_key(seq).as_bytes())
            .and_then(|()| writer.write_all(b"\t"))
            .and_then(|()| writer.write_all(&fixed_size_view(run, seq, args.size)))
            .and_then(|()| writer.write_all(b"\n"))
            .map_err(|e| format!("{out}: {e}"))?;
    }
    writer.flush().map_err(|e| format!("{out}: {e}"))
}

fn run_storefront(
    args: &Args,
    brokers: &str,
    topic_prefix: Option<&str>,
    (users, products): (u64, u64),
) -> Result<Throughput, String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let mut config = IngestConfig::default();
        config.kafka.brokers = brokers.to_owned();
        config.source = "produce-bench".to_owned();
        if let Some(prefix) = topic_prefix {
            prefix_topics(&mut config, prefix);
        }
        create_topics(&config).await?;
        let ingestor = Ingestor::builder()
            .config(config)
            .build()
            .map_err(|e| format!("ingestor: {e}"))?;
        let mut shop = Storefront::new(run_id(), 0, 42).with_shape(users, products);
        let started = Instant::now();
        let mut bytes = 0;
        let mut sent = 0;
        let mut pending = VecDeque::new();
        while sent < args.events {
            let mut body = Vec::with_capacity(100 * 450);
            for _ in 0..100.min(args.events - sent) {
                let event = shop.next_event();
                bytes += event.body.len() as u64;
                body.extend_from_slice(&event.body);
                body.push(b'\n');
                sent += 1;
            }
            let body = Bytes::from(body);
            let receipt = loop {
                match ingestor.submit_batch(body.clone()) {
                    Ok(batch) => break batch.receipt,
                    Err(Error::QueueFull { .. }) => match pending.pop_front() {
                        Some(oldest) => wait(&oldest, Ack::Delivered).await?,
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    },
                    Err(error) => return Err(format!("submit: {error}")),
                }
            };
            pending.push_back(receipt);
        }
        for receipt in pending {
            wait(&receipt, Ack::Delivered).await?;
        }
        let elapsed = started.elapsed();
        let _ = ingestor.shutdown(Duration::from_secs(30)).await;
        Ok(Throughput::new(
            &args.label,
            "storefront",
            sent,
            bytes,
            elapsed,
        ))
    })
}

async fn create_topics(config: &IngestConfig) -> Result<(), String> {
    let settings = config.validate().map_err(|e| format!("settings: {e}"))?;
    ingest_core::ensure_topics(&settings, Duration::from_secs(30))
        .await
        .map(drop)
        .map_err(|e| format!("creating topics: {e}"))
}

fn create_topic(brokers: &str, topic: &str) -> Result<(), String> {
    runtime()?.block_on(create_topics(&ingest_config(brokers, topic, None)))
}

/// The Java producer's names for the settings that shape throughput; the rest of
/// librdkafka's properties have no Java equivalent or keep the same default.
const JAVA_PROPERTIES: [&str; 6] = [
    "bootstrap.servers",
    "acks",
    "enable.idempotence",
    "compression.type",
    "linger.ms",
    "batch.size",
];

fn print_properties(brokers: &str, topic: &str, java: bool) -> Result<(), String> {
    let settings = ingest_config(brokers, topic, None)
        .validate()
        .map_err(|e| format!("settings: {e}"))?;
    for (key, value) in settings.producer_properties() {
        if java {
            if JAVA_PROPERTIES.contains(&key) {
                println!("{key}={value}");
            }
        } else if key != "bootstrap.servers" {
            println!("-X\n{key}={value}");
        }
    }
    Ok(())
}

fn print_end_offsets(brokers: &str, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let mut total = 0i64;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .map_err(|e| format!("watermarks of {topic}: {e}"))?;
        total += high;
    }
    println!("{total}");
    Ok(())
}

fn run_consume(args: &Args, brokers: &str, topics: &str) -> Result<Throughput, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-consumer-{}", run_id()))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for topic in topics.split(',').filter(|t| !t.is_empty()) {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                .map_err(|e| format!("watermarks of {topic}: {e}"))?;
            if high > low {
                remaining.insert((topic.to_owned(), partition.id()), high);
                assignment
                    .add_partition_offset(topic, partition.id(), Offset::Offset(low))
                    .map_err(|e| format!("assignment: {e}"))?;
            }
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assign: {e}"))?;
    let started = Instant::now();
    let (mut events, mut bytes) = (0u64, 0u64);
    let deadline = started + Duration::from_secs(600);
    while !remaining.is_empty() && events < args.events {
        if Instant::now() > deadline {
            return Err(format!(
                "still {} partitions unread after 600 s",
                remaining.len()
            ));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(|e| format!("poll: {e}"))?;
        events += 1;
        bytes += message.payload_len() as u64;
        let key = (message.topic().to_owned(), message.partition());
        if remaining
            .get(&key)
            .is_some_and(|&end| message.offset() + 1 >= end)
        {
            remaining.remove(&key);
        }
    }
    Ok(Throughput::new(
        &args.label,
        "bare-consumer",
        events,
        bytes,
        started.elapsed(),
    ))
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("produce-bench: {error}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.size < 200 {
        eprintln!("produce-bench: --size must be at least 200 bytes");
        return ExitCode::from(2);
    }
    let result = match &args.mode {
        Mode::IngestCore {
            brokers,
            topic,
            ack,
            batch,
            buffer_dir,
            window,
        } => run_ingest_core(
            &args,
            brokers,
            topic,
            *ack,
            *batch,
            buffer_dir.as_deref(),
            *window,
        ),
        Mode::Rdkafka {
            brokers,
            topic,
            keyless,
        } => run_rdkafka(&args, brokers, topic, *keyless),
        Mode::WriteInput { out } => return exit(write_input(&args, out)),
        Mode::Storefront {
            brokers,
            topic_prefix,
            users,
            products,
        } => run_storefront(&args, brokers, topic_prefix.as_deref(), (*users, *products)),
        Mode::CreateTopic { brokers, topic } => {
            return exit(create_topic(brokers, topic));
        }
        Mode::Properties {
            brokers,
            topic,
            java,
        } => return exit(print_properties(brokers, topic, *java)),
        Mode::EndOffsets { brokers, topic } => return exit(print_end_offsets(brokers, topic)),
        Mode::Consume { brokers, topics } => run_consume(&args, brokers, topics),
    };
    match result {
        Ok(result) => {
            eprintln!(
                "{} ({}): {} events in {:.2} s, {:.0} events/s, {:.1} MB/s",
                result.label,
                result.tool,
                result.events,
                result.seconds,
                result.events_per_s,
                result.mb_per_s
            );
            if let Some(path) = &args.json {
                if let Err(error) = append_json(path, &result) {
                    eprintln!("produce-bench: writing {path}: {error}");
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("produce-bench: {error}");
            ExitCode::from(1)
        }
    }
}
