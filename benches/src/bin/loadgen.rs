//! Load generator: sends realistic storefront traffic to an edge agent (or any server
//! with its paths) over HTTP/1.1 keep-alive or HTTP/2 (h2c), records every request's
//! latency in an HDR histogram, and can check afterwards that Kafka holds every event the
//! server acknowledged.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8088 --connections 100 --duration 10
//!         [--rate REQ_PER_S] [--batch N] [--gzip] [--http2 --streams S]
//!         [--ack accepted|persisted|delivered] [--api-key KEY] [--warmup S]
//!         [--label NAME] [--json FILE] [--verify-kafka BROKERS] [--topics a,b,c,d]
//!         [--ignore-retry-after]
//! ```
//!
//! Without `--rate` every connection sends its next request as soon as the answer
//! arrives (closed loop). With `--rate` requests are scheduled at fixed times and latency
//! is measured from the scheduled time, so a stalled server shows up as latency instead
//! of silently lowering the offered load.
//!
//! A 429 or 503 answer with `Retry-After` makes that connection wait as asked before its
//! next request, as a storefront SDK would (`--ignore-retry-after` sends again at once);
//! the wait counts in the measured time, so the rate is what the server sustained.
//!
//! Bodies are generated before the run and only their event ids are rewritten per request
//! (16 hex digits per event), so the generator's own cost stays small next to the
//! server's. Gzip bodies are compressed before the run and sent again in a cycle, so their
//! event ids repeat; with `--verify-kafka` they are compressed per request instead.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingest_benches::intake_format;
use ingest_benches::report::{Latency, LoadResult, Verification};
use ingest_benches::storefront::{endpoint, Event, Storefront};
use ingest_benches::verify::{high_watermarks, kafka_event_seqs, Watermarks};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
#[command(about = "Storefront traffic over HTTP with latency histograms")]
struct Args {
    /// Base URL of the server (http only; h2c with --http2).
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    url: String,
    /// TCP connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (connections warm, caches filled).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Requests per second over all connections; closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Events per request: 1 sends single events to the per-type endpoints, more sends
    /// NDJSON batches to /api/events/batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Compress bodies with gzip (Content-Encoding: gzip).
    #[arg(long)]
    gzip: bool,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Ingest-Ack header to send.
    #[arg(long)]
    ack: Option<String>,
    /// API key (Authorization: Bearer KEY).
    #[arg(long)]
    api_key: Option<String>,
    /// Name of this run in the results.
    #[arg(long, default_value = "load")]
    label: String,
    /// Append the result as one JSON line to FILE.
    #[arg(long)]
    json: Option<String>,
    /// After the run, read the event topics from BROKERS and check every acknowledged
    /// event is there.
    #[arg(long)]
    verify_kafka: Option<String>,
    /// Event topics to verify, comma-separated.
    #[arg(
        long,
        default_value = "product-views,cart-events,purchases,search-events"
    )]
    topics: String,
    /// Seconds to wait for acknowledged events to appear in Kafka.
    #[arg(long, default_value_t = 60)]
    verify_timeout: u64,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the storefront generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Send again at once after a 429 or 503 instead of waiting its `Retry-After`
    /// (a client that does not back off).
    #[arg(long)]
    ignore_retry_after: bool,
    /// Run id: the high half of every event id (default: derived from the clock).
    #[arg(long)]
    run: Option<u64>,
    /// The shape of the requests: the agent's own endpoints, Segment's tracking API
    /// (`/v1/batch`, or `/v1/track` for --batch 1; the event id as `messageId`), or
    /// GA4's Measurement Protocol (`/mp/collect`, one user per request; no event ids,
    /// so not with --verify-kafka).
    #[arg(long, value_enum, default_value_t = Format::Native)]
    format: Format,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Native,
    Segment,
    Ga4,
}

/// Bodies generated before the run, one template per pool slot.
struct Template {
    path: String,
    body: Vec<u8>,
    /// Byte offsets of the 16 hex digits that hold each event's sequence number.
    seq_offsets: Vec<usize>,
    /// Pre-compressed body (gzip without verification).
    gzipped: Option<Bytes>,
}

/// What one worker saw.
struct Outcome {
    histogram: Histogram<u64>,
    requests: u64,
    ok_requests: u64,
    events_acked: u64,
    payload_bytes: u64,
    errors: BTreeMap<String, u64>,
    acked_seqs: Vec<u64>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            requests: 0,
            ok_requests: 0,
            events_acked: 0,
            payload_bytes: 0,
            errors: BTreeMap::new(),
            acked_seqs: Vec::new(),
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.histogram.add(&other.histogram).expect("same bounds");
        self.requests += other.requests;
        self.ok_requests += other.ok_requests;
        self.events_acked += other.events_acked;
        self.payload_bytes += other.payload_bytes;
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
        self.acked_seqs.extend(other.acked_seqs);
    }
}

/// The digits of the low 64 bits of a hyphenated UUID: `xxxxxxxx-xxxx-xxxx-LLLL-LLLLLLLLLLLL`.
const LOW_HALF: [usize; 16] = [
    19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
];
const POOL: usize = 64;

/// The bodies every worker sends (with its own event ids written in), built before the
/// clock starts.
fn templates(args: &Args, run: u64) -> Vec<Template> {
    let mut shop = Storefront::new(run, 0, args.seed);
    let verify = args.verify_kafka.is_some();
    (0..POOL)
        .map(|slot| {
            let events: Vec<_> = (0..args.batch).map(|_| shop.next_event()).collect();
            let (path, body, seq_offsets) = match args.format {
                Format::Native => native_body(&events),
                Format::Segment => segment_body(&events),
                Format::Ga4 => ga4_body(&events, args.api_key.as_deref()),
            };
            let mut template = Template {
                path,
                body,
                seq_offsets,
                gzipped: None,
            };
            if args.gzip && !verify {
                // Ids from a range no worker uses (workers own index << 40 ..).
                let seq = (u64::MAX >> 1) + (slot * args.batch) as u64;
                template.gzipped = Some(body_for(&template, seq, true));
            }
            template
        })
        .collect()
}

/// The agent's own form: one event to its type's endpoint, or an NDJSON batch.
fn native_body(events: &[Event]) -> (String, Vec<u8>, Vec<usize>) {
    let mut body = Vec::new();
    let mut seq_offsets = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b'\n');
        }
        seq_offsets.push(body.len() + id_offset(&event.body, "event_id"));
        body.extend_from_slice(&event.body);
    }
    let path = match events {
        [one] => endpoint(one.kind),
        _ => "/api/events/batch",
    };
    (path.to_owned(), body, seq_offsets)
}

/// Segment's form: a `track` call, or `{"batch": [...]}` as analytics-node sends it.
fn segment_body(events: &[Event]) -> (String, Vec<u8>, Vec<usize>) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let messages: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&intake_format::segment_message(e, &now)).expect("JSON"))
        .collect();
    let (path, mut body) = match events {
        [_] => ("/v1/track", Vec::new()),
        _ => ("/v1/batch", b"{\"batch\":[".to_vec()),
    };
    let mut seq_offsets = Vec::with_capacity(events.len());
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        seq_offsets.push(body.len() + id_offset(message, "messageId"));
        body.extend_from_slice(message);
    }
    if events.len() > 1 {
        body.extend_from_slice(format!("],\"sentAt\":\"{now}\"}}").as_bytes());
    }
    (path.to_owned(), body, seq_offsets)
}

/// GA4's form: one Measurement Protocol request, all its events for the first event's
/// user (a request names one client).
fn ga4_body(events: &[Event], api_secret: Option<&str>) -> (String, Vec<u8>, Vec<usize>) {
    let first: serde_json::Value = serde_json::from_slice(&events[0].body).expect("JSON");
    let user = first["user_id"].as_str().unwrap_or("user-0");
    let request = serde_json::json!({
        "client_id": format!("{user}.bench"),
        "user_id": user,
        "events": events.iter().map(intake_format::ga4_event).collect::<Vec<_>>(),
    });
    let path = format!(
        "/mp/collect?measurement_id=G-BENCH&api_secret={}",
        api_secret.unwrap_or("none")
    );
    (
        path,
        serde_json::to_vec(&request).expect("JSON"),
        Vec::new(),
    )
}

/// Where the value of the string field `field` starts in `json`.
fn id_offset(json: &[u8], field: &str) -> usize {
    let key = format!("\"{field}\":\"");
    find(json, key.as_bytes()).expect("generated with an id") + key.len()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn write_seq(body: &mut [u8], at: usize, seq: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &offset) in LOW_HALF.iter().enumerate() {
        body[at + offset] = HEX[((seq >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("writing to memory");
    Bytes::from(encoder.finish().expect("writing to memory"))
}

/// One request's body with fresh event ids `first_seq..`.
fn body_for(template: &Template, first_seq: u64, gzip_each: bool) -> Bytes {
    if let Some(gzipped) = &template.gzipped {
        return gzipped.clone();
    }
    let mut body = template.body.clone();
    for (i, &at) in template.seq_offsets.iter().enumerate() {
        write_seq(&mut body, at, first_seq + i as u64);
    }
    if gzip_each {
        gzip(&body)
    } else {
        Bytes::from(body)
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }
}

impl Sender {
    /// Whether the connection is gone (the server closed it or it broke).
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }
}

/// The `Retry-After` of an answer, when given in seconds (the form servers use for
/// 429 and 503).
fn retry_after_of<B>(response: &hyper::Response<B>) -> Option<Duration> {
    let value = response.headers().get(hyper::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

async fn connect(args: &Args, authority: &str) -> Result<Sender, String> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    if args.http2 {
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(Sender::H1(sender))
    }
}

struct Plan {
    args: Args,
    authority: String,
    host: String,
    pool: Vec<Template>,
    /// Seconds between two requests of one worker (rate mode).
    interval: Option<Duration>,
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
    stopped: AtomicBool,
}

/// One worker: a connection (HTTP/1.1) or a stream slot on a shared connection (h2),
/// sending until the plan's end.
async fn worker(plan: Arc<Plan>, index: usize, mut sender: Sender) -> Outcome {
    let args = &plan.args;
    let mut outcome = Outcome::new();
    let pool = &plan.pool;
    let verify = args.verify_kafka.is_some();
    // Each worker owns the sequence numbers index << 40 .., so ids never collide.
    let mut next_seq = (index as u64) << 40;
    // Workers start at different templates so that a batch's events are not all alike.
    let mut slot = index;
    // Spread the workers' first requests over one interval in rate mode.
    let mut due = plan.start
        + plan
            .interval
            .map(|i| i.mul_f64(index as f64 / args.connections.max(1) as f64))
            .unwrap_or_default();
    let ack = args.ack.clone();
    let auth = args.api_key.as_ref().map(|k| format!("Bearer {k}"));
    while !plan.stopped.load(Ordering::Relaxed) {
        if plan.interval.is_some() {
            tokio::time::sleep_until(due.into()).await;
        }
        let template = &pool[slot % POOL];
        slot += 1;
        let first_seq = next_seq;
        next_seq += args.batch as u64;
        let body = body_for(template, first_seq, args.gzip && verify);
        let mut request = Request::post(template.path.as_str())
            .header(hyper::header::HOST, &plan.host)
            .header(
                hyper::header::CONTENT_TYPE,
                if args.batch == 1 || args.format != Format::Native {
                    "application/json"
                } else {
                    "application/x-ndjson"
                },
            );
        if args.gzip {
            request = request.header(hyper::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(ack) = &ack {
            request = request.header("ingest-ack", ack);
        }
        if let Some(auth) = auth.as_ref().filter(|_| args.format != Format::Ga4) {
            request = request.header(hyper::header::AUTHORIZATION, auth);
        }
        let request = request.body(Full::new(body)).expect("valid request");
        let sent = if plan.interval.is_some() {
            due
        } else {
            Instant::now()
        };
        let mut retry_after = None;
        let result = match sender.send(request).await {
            Ok(response) => {
                let status = response.status();
                retry_after = retry_after_of(&response);
                match response.into_body().collect().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(_) => Err(format!("status {}", status.as_u16())),
                    Err(e) => Err(format!("reading answer: {e}")),
                }
            }
            Err(e) => Err(format!("request: {e}")),
        };
        let done = Instant::now();
        if let Some(interval) = plan.interval {
            due += interval;
        }
        // Every acknowledged event counts for the Kafka check, measured or not.
        if verify && result.is_ok() {
            outcome
                .acked_seqs
                .extend(first_seq..first_seq + args.batch as u64);
        }
        if result.is_err() {
            // A client told to come back later waits as asked (a storefront SDK does;
            // asking again at once only takes cores from the server), and a closed
            // connection is replaced.
            if let Some(wait) = retry_after.filter(|_| !args.ignore_retry_after) {
                let until = (Instant::now() + wait).min(plan.stop_at);
                tokio::time::sleep_until(until.into()).await;
                if let Some(interval) = plan.interval {
                    // Rate mode: the requests due while waiting are not sent.
                    while due < until {
                        due += interval;
                    }
                }
            }
            if sender.is_closed() {
                match connect(args, &plan.authority).await {
                    Ok(fresh) => sender = fresh,
                    Err(e) => {
                        if done >= plan.measure_from && done <= plan.stop_at {
                            *outcome.errors.entry(e).or_default() += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        if done < plan.measure_from {
            continue;
        }
        if done > plan.stop_at {
            break;
        }
        outcome.requests += 1;
        let micros = done.saturating_duration_since(sent).as_micros() as u64;
        outcome.histogram.saturating_record(micros.max(1));
        match result {
            Ok(()) => {
                outcome.ok_requests += 1;
                outcome.events_acked += args.batch as u64;
                outcome.payload_bytes += template.body.len() as u64;
            }
            Err(error) => *outcome.errors.entry(error).or_default() += 1,
        }
    }
    outcome
}

fn run_load(args: &Args, run: u64) -> Result<(Outcome, Duration), String> {
    let authority = args
        .url
        .strip_prefix("http://")
        .ok_or("--url must start with http:// (TLS is not part of the benchmark)")?
        .trim_end_matches('/')
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let workers = if args.http2 {
            args.connections * args.streams.max(1)
        } else {
            args.connections
        };
        // Build the bodies and connect everything before the clock starts.
        let pool = templates(args, run);
        let mut senders = Vec::with_capacity(workers);
        for _ in 0..args.connections {
            let sender = connect(args, &authority).await?;
            match sender {
                Sender::H2(h2) => {
                    for _ in 0..args.streams.max(1) {
                        senders.push(Sender::H2(h2.clone()));
                    }
                }
                h1 => senders.push(h1),
            }
        }
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let stop_at = measure_from + Duration::from_secs_f64(args.duration);
        let plan = Arc::new(Plan {
            args: args.clone(),
            host: authority.clone(),
            authority,
            pool,
            interval: args
                .rate
                .map(|rate| Duration::from_secs_f64(workers as f64 / rate.max(0.001))),
            start,
            measure_from,
            stop_at,
            stopped: AtomicBool::new(false),
        });
        let tasks: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(index, sender)| tokio::spawn(worker(plan.clone(), index, sender)))
            .collect();
        tokio::time::sleep_until(stop_at.into()).await;
        plan.stopped.store(true, Ordering::Relaxed);
        let mut total = Outcome::new();
        for task in tasks {
            total.merge(task.await.map_err(|e| format!("worker: {e}"))?);
        }
        Ok((total, stop_at - measure_from))
    })
}

/// The topics to read back.
fn topics(args: &Args) -> Vec<&str> {
    args.topics.split(',').filter(|t| !t.is_empty()).collect()
}

fn verification(
    args: &Args,
    brokers: &str,
    run: u64,
    acked: &[u64],
    since: &Watermarks,
) -> Verification {
    let topics = topics(args);
    let deadline = Instant::now() + Duration::from_secs(args.verify_timeout);
    let mut found: HashMap<u64, u32>;
    // Delivery may trail the answers (`accepted`): read again until everything
    // acknowledged is there or the time is up.
    loop {
        found = kafka_event_seqs(brokers, &topics, run, since);
        let missing = acked.iter().filter(|s| !found.contains_key(s)).count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let acked_set: std::collections::HashSet<u64> = acked.iter().copied().collect();
    Verification {
        acknowledged: acked_set.len() as u64,
        in_kafka: found.len() as u64,
        missing: acked_set.iter().filter(|s| !found.contains_key(s)).count() as u64,
        duplicates: found
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum(),
        unacknowledged_in_kafka: found.keys().filter(|s| !acked_set.contains(s)).count() as u64,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.batch == 0 || args.connections == 0 {
        eprintln!("loadgen: --batch and --connections must be at least 1");
        return ExitCode::from(2);
    }
    if args.format == Format::Ga4 && args.verify_kafka.is_some() {
        eprintln!("loadgen: --format ga4 sends no event ids, so --verify-kafka cannot check it");
        return ExitCode::from(2);
    }
    let run = args
        .run
        .unwrap_or_else(|| ingest_common::clock::unix_nanos().max(1));
    // Where the topics end before the run: the read-back starts there.
    let since = args
        .verify_kafka
        .as_deref()
        .map(|brokers| high_watermarks(brokers, &topics(&args)))
        .unwrap_or_default();
    let (outcome, elapsed) = match run_load(&args, run) {
        Ok(result) => result,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return ExitCode::from(1);
        }
    };
    let seconds = elapsed.as_secs_f64();
    let histogram = &outcome.histogram;
    let verify = args
        .verify_kafka
        .as_deref()
        .map(|brokers| verification(&args, brokers, run, &outcome.acked_seqs, &since));
    let result = LoadResult {
        label: args.label.clone(),
        connections: args.connections as u64,
        http2: args.http2,
        batch: args.batch as u64,
        gzip: args.gzip,
        ack: args.ack.clone(),
        seconds,
        requests: outcome.requests,
        ok_requests: outcome.ok_requests,
        errors: outcome.errors.clone(),
        requests_per_s: outcome.ok_requests as f64 / seconds,
        events_per_s: outcome.events_acked as f64 / seconds,
        mb_per_s: outcome.payload_bytes as f64 / seconds / 1e6,
        latency_us: Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        },
        verification: verify,
    };
    eprintln!("{}", result.summary());
    if let Some(path) = &args.json {
        if let Err(error) = result.append_to(path) {
            eprintln!("loadgen: writing {path}: {error}");
            return ExitCode::from(1);
        }
    }
    match &result.verification {
        Some(v) if v.missing > 0 => ExitCode::from(3),
        _ if outcome.ok_requests == 0 => ExitCode::from(4),
        _ => ExitCode::SUCCESS,
    }
}
