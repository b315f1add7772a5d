//! Test harness for the process-level tests (`tests/process.rs`): embeds an ingestor,
//! submits product views as fast as it can, and records, one per line in `--out`, the
//! `event_id` of every event that reached the requested acknowledgement level. The tests
//! stop it with SIGTERM or SIGKILL and check Kafka holds every recorded event.
//!
//! ```text
//! ingest-load --brokers HOST:PORT --topic-prefix P --ack accepted|persisted|delivered --out FILE
//!             [--events N] [--rate EVENTS_PER_SEC] [--users N]
//!             [--buffer-dir DIR [--buffer-type log|sled] [--sync always|interval|never]]
//!             [--message-timeout-ms MS] [--shutdown-timeout-ms MS]
//! ```
//!
//! Topics are `P-product-views` and `P-events-dlq` (created by the test). Events carry
//! `seq` (their submission number in this run) and `run` (the process id), so a test
//! can check each user's order. On SIGTERM, or after `--events`, it stops submitting,
//! shuts the ingestor down and exits 0 when nothing was lost (delivered, or kept in the
//! disk buffer for the next start), 3 otherwise. It prints one summary line on stderr.

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
    rate: u64,
    users: u64,
    buffer_dir: Option<String>,
    buffer_type: String,
    sync: String,
    message_timeout_ms: Option<u64>,
    shutdown_timeout_ms: u64,
}

fn number(flag: &str, value: &str) -> Result<u64, String> {
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

fn options() -> Result<Options, String> {
    let mut brokers = None;
    let mut topic_prefix = None;
    let mut ack = Ack::Accepted;
    let mut out = None;
    let mut events = u64::MAX;
    let mut rate = 0;
    let mut users = 50;
    let mut buffer_dir = None;
    let mut buffer_type = "log".to_owned();
    let mut sync = "interval".to_owned();
    let mut message_timeout_ms = None;
    let mut shutdown_timeout_ms = 30_000;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--brokers" => brokers = Some(value),
            "--topic-prefix" => topic_prefix = Some(value),
            "--ack" => ack = value.parse().map_err(|e| format!("--ack: {e}"))?,
            "--out" => out = Some(value),
            "--events" => events = number(&flag, &value)?,
            "--rate" => rate = number(&flag, &value)?,
            "--users" => users = number(&flag, &value)?.max(1),
            "--buffer-dir" => buffer_dir = Some(value),
            "--buffer-type" => buffer_type = value,
            "--sync" => sync = value,
            "--message-timeout-ms" => message_timeout_ms = Some(number(&flag, &value)?),
            "--shutdown-timeout-ms" => shutdown_timeout_ms = number(&flag, &value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Options {
        brokers: brokers.ok_or("--brokers is required")?,
        topic_prefix: topic_prefix.ok_or("--topic-prefix is required")?,
        ack,
        out: out.ok_or("--out is required")?,
        events,
        rate,
        users,
        buffer_dir,
        buffer_type,
        sync,
        message_timeout_ms,
        shutdown_timeout_ms,
    })
}

/// The configuration the options describe.
fn config(options: &Options) -> Result<IngestConfig, String> {
    let mut config = IngestConfig::default();
    config.kafka.brokers = options.brokers.clone();
    config.source = "ingest-load".to_owned();
    config.topics.product_view.name = format!("{}-product-views", options.topic_prefix);
    config.topics.dead_letter.name = format!("{}-events-dlq", options.topic_prefix);
    if let Some(ms) = options.message_timeout_ms {
        config.kafka.message_timeout_ms = ms;
    }
    if let Some(dir) = &options.buffer_dir {
        use ingest_core::config::{BufferSync, BufferType};
        config.buffer.dir = Some(dir.into());
        config.buffer.kind = match options.buffer_type.as_str() {
            "log" => BufferType::Log,
            "sled" => BufferType::Sled,
            other => return Err(format!("--buffer-type: unknown {other}")),
        };
        config.buffer.sync = match options.sync.as_str() {
            "always" => BufferSync::Always,
            "interval" => BufferSync::Interval,
            "never" => BufferSync::Never,
            other => return Err(format!("--sync: unknown {other}")),
        };
    }
    Ok(config)
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
    let ingestor = match config(&options).and_then(|config| {
        Ingestor::builder()
            .config(config)
            .build()
            .map_err(|e| e.to_string())
    }) {
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

    let run = std::process::id();
    let started = std::time::Instant::now();
    let mut backpressure: u64 = 0;
    let mut i: u64 = 0;
    while i < options.events {
        if options.rate > 0 {
            // Open loop at the given rate: wait for this event's slot.
            let due = Duration::from_secs_f64(i as f64 / options.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    biased;
                    _ = terminate.recv() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        tokio::select! {
            biased;
            _ = terminate.recv() => break,
            () = std::future::ready(()) => {}
        }
        let id = uuid::Uuid::now_v7();
        let body = format!(
            r#"{{"event_id":"{id}","user_id":"user-{}","product_id":"sku-{i}","seq":{i},"run":{run}}}"#,
            i % options.users
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
            Err(e) if e.is_backpressure() => {
                backpressure += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => {
                eprintln!("ingest-load: {e}");
                return ExitCode::from(2);
            }
        }
        if i.is_multiple_of(256) {
            // Let the receipt and writer tasks run.
            tokio::task::yield_now().await;
        }
    }
    let report = ingestor
        .shutdown(Duration::from_millis(options.shutdown_timeout_ms))
        .await;
    drop(acknowledged);
    // Receipt tasks still hold senders until their receipts resolve, which shutdown
    // guarantees; then the writer drains and ends.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    match report {
        Ok(report) => {
            eprintln!(
                "ingest-load: submitted {i}, backpressure {backpressure}, undelivered {}, kept_in_buffer {}, lost {}",
                report.undelivered,
                report.kept_in_buffer,
                report.lost()
            );
            if report.lost() == 0 {
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
