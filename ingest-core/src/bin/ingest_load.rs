//! Test harness for the process-level tests (`tests/process.rs`): embeds an ingestor,
//! submits product views as fast as it can, and records, one per line in `--out`, the
//! `event_id` of every event that reached the requested acknowledgement level. The tests
//! stop it with SIGTERM or SIGKILL and check Kafka holds every recorded event.
//!
//! ```text
//! ingest-load --brokers HOST:PORT --topic-prefix P --ack accepted|persisted|delivered --out FILE [--events N]
//! ```
//!
//! Topics are `P-product-views` and `P-events-dlq` (created by the test). On SIGTERM it
//! stops submitting, shuts the ingestor down (30 s deadline) and exits 0 when nothing
//! was left undelivered, 3 otherwise.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use ingest_core::{Ack, EventKind, IngestConfig, Ingestor};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

struct Options {
    brokers: String,
    topic_prefix: String,
    ack: Ack,
    out: String,
    events: u64,
}

fn options() -> Result<Options, String> {
    let mut brokers = None;
    let mut topic_prefix = None;
    let mut ack = Ack::Accepted;
    let mut out = None;
    let mut events = u64::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--brokers" => brokers = Some(value),
            "--topic-prefix" => topic_prefix = Some(value),
            "--ack" => ack = value.parse().map_err(|e| format!("--ack: {e}"))?,
            "--out" => out = Some(value),
            "--events" => events = value.parse().map_err(|e| format!("--events: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Options {
        brokers: brokers.ok_or("--brokers is required")?,
        topic_prefix: topic_prefix.ok_or("--topic-prefix is required")?,
        ack,
        out: out.ok_or("--out is required")?,
        events,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ingest-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = IngestConfig::default();
    config.kafka.brokers = options.brokers.clone();
    config.source = "ingest-load".to_owned();
    config.topics.product_view.name = format!("{}-product-views", options.topic_prefix);
    config.topics.dead_letter.name = format!("{}-events-dlq", options.topic_prefix);
    let ingestor = match Ingestor::builder().config(config).build() {
        Ok(ingestor) => ingestor,
        Err(e) => {
            eprintln!("ingest-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = match OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.out)
    {
        Ok(file) => file,
        Err(e) => {
            eprintln!("ingest-load: {}: {e}", options.out);
            return ExitCode::from(2);
        }
    };

    // One writer, unbuffered: a line is in the kernel as soon as it is written, so it
    // survives SIGKILL of this process.
    let (acknowledged, mut lines) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(id) = lines.recv().await {
            if out.write_all(format!("{id}\n").as_bytes()).is_err() {
                break;
            }
        }
    });
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ingest-load: SIGTERM handler: {e}");
            return ExitCode::from(2);
        }
    };

    let mut i: u64 = 0;
    while i < options.events {
        tokio::select! {
            biased;
            _ = terminate.recv() => break,
            () = std::future::ready(()) => {}
        }
        let id = uuid::Uuid::now_v7();
        let body = format!(
            r#"{{"event_id":"{id}","user_id":"user-{}","product_id":"sku-{i}","seq":{i}}}"#,
            i % 50
        );
        match ingestor.submit(EventKind::ProductView, Bytes::from(body)) {
            Ok(receipt) => {
                if options.ack == Ack::Accepted {
                    let _ = acknowledged.send(id.to_string());
                } else {
                    let acknowledged = acknowledged.clone();
                    let ack = options.ack;
                    tokio::spawn(async move {
                        if receipt.wait(ack).await.is_ok() {
                            let _ = acknowledged.send(id.to_string());
                        }
                    });
                }
                i += 1;
            }
            Err(e) if e.is_backpressure() => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => {
                eprintln!("ingest-load: {e}");
                return ExitCode::from(2);
            }
        }
        if i % 256 == 0 {
            // Let the receipt and writer tasks run.
            tokio::task::yield_now().await;
        }
    }
    let report = ingestor.shutdown(Duration::from_secs(30)).await;
    drop(acknowledged);
    // Receipt tasks still hold senders until their receipts resolve, which shutdown
    // guarantees; then the writer drains and ends.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    match report {
        Ok(report) => {
            eprintln!(
                "ingest-load: submitted {i}, undelivered {}",
                report.undelivered
            );
            if report.undelivered == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("ingest-load: shutdown: {e}");
            ExitCode::from(3)
        }
    }
}
