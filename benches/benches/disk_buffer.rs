//! The disk buffer's two engines, `log` ([`LogBuffer`]) and `sled` (`SledBuffer`, with
//! the `sled-buffer` feature), next to plain file I/O on the same disk in the same run. Every group reports
//! events/s and MB/s; records are cart events of about 300 bytes.
//!
//! - `disk_append_<n>`: appends of `n` records (1, 100, 1,000: one event, a typical
//!   batch, a large batch) with `SyncPolicy::Never`, so only the write path is timed.
//!   Ceiling `ceiling_write_all`: one `write_all` of the same payload bytes to a file.
//! - `disk_sync_<n>`: the same appends made durable: `SyncPolicy::Always` (the append
//!   returns after one `fdatasync` shared by the whole group commit), `IntervalMs(100)`
//!   and `Never`. Ceiling `ceiling_write_fdatasync`: `write_all` then `fdatasync`.
//! - `disk_replay_<n>`: opening a buffer that holds `n` records (recovery included) and
//!   reading every record back in order, as the forwarder does after a restart (1,024
//!   records or 4 MiB per read). Ceiling `ceiling_read`: reading a file holding the same
//!   payload bytes. The files are in the page cache, so this is the CPU side of replay.
//! - `disk_ack_under_load`: one acknowledgement (`LogBuffer::ack`, what every delivery
//!   report does) timed while the buffer is busy: a writer appends batches of 100
//!   records (`IntervalMs(100)`, 1 MiB segments, so segments roll and become deletable
//!   every few thousand acks) and a reader reads 1,024 records or 4 MiB at a time from
//!   the oldest unacknowledged record, as the forwarder does. Acks go in order. The
//!   run also prints the distribution of the individual acks, one stable line:
//!   `ack_latency_under_load mean_us=.. p50_us=.. p99_us=.. p99.9_us=.. p99.99_us=..
//!   max_us=.. acks=..`.
//!
//! Before the groups run, the suite writes 100,000 records to each engine, syncs, and
//! prints the space they take, one stable line per engine, e.g.
//!
//! ```text
//! bytes_on_disk_per_payload_byte engine=log value=1.054 apparent=1.054 records=100000 payload_bytes=29646340
//! ```
//!
//! `value` counts allocated blocks, `apparent` file lengths. The same figures are written
//! to `target/criterion/disk_buffer/bytes_on_disk.json`.
//!
//! Buffers live in temporary directories under the cargo target directory (a regular
//! disk, never tmpfs); an append group starts a fresh buffer (untimed) whenever the
//! current one passes 64 MiB, so the runs neither fill the disk nor hit `max_bytes`.
//!
//! ```text
//! cargo bench -p ingest-benches --bench disk_buffer
//! cargo bench -p ingest-benches --bench disk_buffer -- --quick   # smoke run
//! cargo bench -p ingest-benches --bench disk_buffer -- disk_sync  # one family
//! ```

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ingest_core::buffer::{BufferEngine, LogBuffer, LogConfig, SyncPolicy};
#[cfg(feature = "sled-buffer")]
use ingest_core::buffer::{SledBuffer, SledConfig};
use tempfile::TempDir;

/// A buffer is replaced by a fresh one once it holds this much.
const RESET_BYTES: u64 = 64 << 20;
/// Room for the largest run between resets.
const MAX_BYTES: u64 = 1 << 30;
/// The forwarder's read size.
const READ_RECORDS: usize = 1024;
const READ_BYTES: usize = 4 << 20;
/// Records written for the space figure.
const FOOTPRINT_RECORDS: usize = 100_000;
/// Records in a replay.
const REPLAY_RECORDS: usize = 100_000;

/// An append that has not returned after this long is taken for a hang.
const HANG: Duration = Duration::from_secs(60);

/// When the running append started (milliseconds since [`epoch`]), or 0 when none runs.
static APPEND_STARTED: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Ends the run with an explanation if an append hangs, instead of waiting forever:
/// sled 0.34 can deadlock under sustained writes (spacejam/sled#1412).
fn start_watchdog() {
    epoch();
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_secs(1));
        let started = APPEND_STARTED.load(Ordering::Relaxed);
        let now = epoch().elapsed().as_millis() as u64;
        if started != 0 && now.saturating_sub(started) > HANG.as_millis() as u64 {
            eprintln!(
                "an append has not returned for {HANG:?}: the engine hangs (sled 0.34 can \
                 deadlock under sustained writes, spacejam/sled#1412); stopping the run"
            );
            std::process::exit(2);
        }
    });
}

/// Lets the kernel write back what earlier groups left dirty, so it does not land on
/// the first benchmark of a group that syncs.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// The cargo target directory (where criterion writes too).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The bench runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("the bench knows its own path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME").map_or_else(|| target_dir().join("criterion"), PathBuf::from)
}

fn scratch() -> TempDir {
    let base = target_dir().join("tmp");
    std::fs::create_dir_all(&base).expect("creating the scratch directory");
    tempfile::Builder::new()
        .prefix("disk-buffer-bench-")
        .tempdir_in(base)
        .expect("creating a temporary directory")
}

/// `n` distinct records of about 300 bytes.
fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| common::cart(i).into_bytes()).collect()
}

#[derive(Clone, Copy, Debug)]
enum Engine {
    Log,
    /// Only with the `sled-buffer` feature, like the engine itself.
    #[cfg(feature = "sled-buffer")]
    Sled,
}

impl Engine {
    #[cfg(feature = "sled-buffer")]
    const ALL: [Engine; 2] = [Engine::Log, Engine::Sled];
    #[cfg(not(feature = "sled-buffer"))]
    const ALL: [Engine; 1] = [Engine::Log];

    fn name(self) -> &'static str {
        match self {
            Engine::Log => "log",
            #[cfg(feature = "sled-buffer")]
            Engine::Sled => "sled",
        }
    }

    fn open(self, dir: &Path, sync: SyncPolicy) -> Box<dyn BufferEngine> {
        match self {
            Engine::Log => {
                let config = LogConfig {
                    max_bytes: MAX_BYTES,
                    sync,
                    ..LogConfig::default()
                };
                Box::new(LogBuffer::open(dir, config).expect("opening the log").0)
            }
            #[cfg(feature = "sled-buffer")]
            Engine::Sled => {
                let config = SledConfig {
                    max_bytes: MAX_BYTES,
                    sync,
                };
                Box::new(SledBuffer::open(dir, config).expect("opening sled"))
            }
        }
    }
}

/// What an append benchmark writes to: an engine or a plain file, in a temporary
/// directory replaced once it holds [`RESET_BYTES`].
enum Sink {
    Engine {
        engine: Engine,
        sync: SyncPolicy,
        buffer: Option<Box<dyn BufferEngine>>,
    },
    File {
        sync: bool,
        file: Option<File>,
    },
}

struct Target {
    sink: Sink,
    dir: Option<TempDir>,
    written: u64,
}

impl Target {
    fn engine(engine: Engine, sync: SyncPolicy) -> Self {
        Self::new(Sink::Engine {
            engine,
            sync,
            buffer: None,
        })
    }

    fn file(sync: bool) -> Self {
        Self::new(Sink::File { sync, file: None })
    }

    fn new(sink: Sink) -> Self {
        let mut target = Target {
            sink,
            dir: None,
            written: 0,
        };
        target.reset();
        target
    }

    /// Drops the current buffer or file and its directory, and opens a fresh one.
    fn reset(&mut self) {
        match &mut self.sink {
            Sink::Engine { buffer, .. } => *buffer = None,
            Sink::File { file, .. } => *file = None,
        }
        self.dir = None;
        let dir = scratch();
        match &mut self.sink {
            Sink::Engine {
                engine,
                sync,
                buffer,
            } => *buffer = Some(engine.open(dir.path(), *sync)),
            Sink::File { file, .. } => {
                *file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.path().join("data"))
                        .expect("creating the data file"),
                );
            }
        }
        self.dir = Some(dir);
        self.written = 0;
    }

    /// Appends every payload, durably if the sink says so; returns the time it took.
    /// `joined` is the same payloads as one slice, for the file ceilings.
    fn append(&mut self, payloads: &[&[u8]], joined: &[u8]) -> Duration {
        if self.written >= RESET_BYTES {
            self.reset();
        }
        let start = Instant::now();
        match &mut self.sink {
            Sink::Engine { buffer, .. } => {
                let buffer = buffer.as_ref().expect("the buffer is open");
                APPEND_STARTED.store(
                    (epoch().elapsed().as_millis() as u64).max(1),
                    Ordering::Relaxed,
                );
                buffer.append(payloads).expect("append");
                APPEND_STARTED.store(0, Ordering::Relaxed);
            }
            Sink::File { sync, file } => {
                let file = file.as_mut().expect("the file is open");
                file.write_all(joined).expect("write");
                if *sync {
                    file.sync_data().expect("fdatasync");
                }
            }
        }
        let elapsed = start.elapsed();
        self.written += joined.len() as u64;
        elapsed
    }
}

fn bench_appends(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut target: Target,
    payloads: &[&[u8]],
    joined: &[u8],
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| target.append(payloads, joined))
                .sum::<Duration>()
        });
    });
}

fn append(c: &mut Criterion) {
    for n in [1, 100, 1000] {
        let records = records(n);
        let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let joined = records.concat();
        let mut group = c.benchmark_group(format!("disk_append_{n}"));
        common::short(&mut group);
        group.throughput(common::throughput(n, joined.len()));
        bench_appends(
            &mut group,
            "ceiling_write_all",
            Target::file(false),
            &payloads,
            &joined,
        );
        for engine in Engine::ALL {
            bench_appends(
                &mut group,
                engine.name(),
                Target::engine(engine, SyncPolicy::Never),
                &payloads,
                &joined,
            );
        }
        group.finish();
    }
}

fn sync(c: &mut Criterion) {
    for n in [1, 100, 1000] {
        settle();
        let records = records(n);
        let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let joined = records.concat();
        let mut group = c.benchmark_group(format!("disk_sync_{n}"));
        common::short(&mut group);
        group.throughput(common::throughput(n, joined.len()));
        bench_appends(
            &mut group,
            "ceiling_write_fdatasync",
            Target::file(true),
            &payloads,
            &joined,
        );
        for engine in Engine::ALL {
            for (policy, sync) in [
                ("always", SyncPolicy::Always),
                ("interval_100ms", SyncPolicy::IntervalMs(100)),
                ("never", SyncPolicy::Never),
            ] {
                bench_appends(
                    &mut group,
                    &format!("{}_{policy}", engine.name()),
                    Target::engine(engine, sync),
                    &payloads,
                    &joined,
                );
            }
        }
        group.finish();
    }
}

/// Writes `records` to a fresh buffer of `engine` in chunks of 1,000 and syncs it.
fn fill(engine: Engine, records: &[Vec<u8>]) -> TempDir {
    let dir = scratch();
    let buffer = engine.open(dir.path(), SyncPolicy::Never);
    for chunk in records.chunks(1000) {
        let payloads: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        buffer.append(&payloads).expect("append");
    }
    buffer.sync().expect("sync");
    drop(buffer);
    dir
}

/// Allocated and apparent bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut allocated = 0;
    let mut apparent = 0;
    for entry in std::fs::read_dir(dir).expect("listing the buffer directory") {
        let entry = entry.expect("reading a directory entry");
        let meta = entry.metadata().expect("reading file metadata");
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path());
            allocated += a;
            apparent += b;
        } else {
            allocated += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    (allocated, apparent)
}

/// Prints and records the bytes each engine takes on disk per byte of payload.
fn footprint(_: &mut Criterion) {
    start_watchdog();
    let records = records(FOOTPRINT_RECORDS);
    let payload_bytes: usize = records.iter().map(Vec::len).sum();
    let mut lines = Vec::new();
    for engine in Engine::ALL {
        let dir = fill(engine, &records);
        let (allocated, apparent) = disk_usage(dir.path());
        let value = allocated as f64 / payload_bytes as f64;
        let apparent_ratio = apparent as f64 / payload_bytes as f64;
        println!(
            "bytes_on_disk_per_payload_byte engine={} value={value:.3} apparent={apparent_ratio:.3} records={FOOTPRINT_RECORDS} payload_bytes={payload_bytes}",
            engine.name()
        );
        lines.push(format!(
            r#"  "{}": {{"value": {value:.4}, "apparent": {apparent_ratio:.4}, "records": {FOOTPRINT_RECORDS}, "payload_bytes": {payload_bytes}, "allocated_bytes": {allocated}, "apparent_bytes": {apparent}}}"#,
            engine.name()
        ));
    }
    let out = criterion_dir().join("disk_buffer");
    std::fs::create_dir_all(&out).expect("creating the criterion directory");
    let path = out.join("bytes_on_disk.json");
    std::fs::write(&path, format!("{{\n{}\n}}\n", lines.join(",\n")))
        .expect("writing bytes_on_disk.json");
    println!(
        "bytes_on_disk_per_payload_byte written to {}",
        path.display()
    );
}

fn replay(c: &mut Criterion) {
    let records = records(REPLAY_RECORDS);
    let joined = records.concat();
    let mut group = c.benchmark_group(format!("disk_replay_{REPLAY_RECORDS}"));
    common::short(&mut group);
    // A replay takes tens to hundreds of milliseconds: the same number of iterations
    // per sample keeps the group to seconds.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(common::throughput(REPLAY_RECORDS, joined.len()));

    let ceiling_dir = scratch();
    let data = ceiling_dir.path().join("data");
    std::fs::write(&data, &joined).expect("writing the ceiling's file");
    let mut into = Vec::with_capacity(joined.len());
    group.bench_function("ceiling_read", |b| {
        b.iter(|| {
            into.clear();
            File::open(&data)
                .expect("open")
                .read_to_end(&mut into)
                .expect("read");
            into.len()
        });
    });

    for engine in Engine::ALL {
        let dir = fill(engine, &records);
        group.bench_function(engine.name(), |b| {
            b.iter(|| {
                let buffer = engine.open(dir.path(), SyncPolicy::Never);
                let mut next = 0;
                let mut count = 0;
                loop {
                    let batch = buffer.read(next, READ_RECORDS, READ_BYTES).expect("read");
                    let Some((last, _)) = batch.last() else { break };
                    next = last + 1;
                    count += batch.len();
                }
                assert_eq!(count, REPLAY_RECORDS, "every record is read back");
                count
            });
        });
    }
    group.finish();
}

/// Records the writer of `disk_ack_under_load` keeps ahead of the acknowledgements.
const ACK_BACKLOG: u64 = 50_000;

fn ack_under_load(c: &mut Criterion) {
    settle();
    let dir = scratch();
    let config = LogConfig {
        max_bytes: MAX_BYTES,
        segment_bytes: 1 << 20,
        sync: SyncPolicy::IntervalMs(100),
    };
    let log = Arc::new(
        LogBuffer::open(dir.path(), config)
            .expect("opening the log")
            .0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (log, stop, acked) = (log.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let records = records(100);
            let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            while !stop.load(Ordering::Relaxed) {
                if log.stats().next_seq >= acked.load(Ordering::Relaxed) + ACK_BACKLOG {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                log.append(&payloads).expect("append");
            }
        })
    };
    let reader = {
        let (log, stop, acked) = (log.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let from = acked.load(Ordering::Relaxed);
                let batch = log.read(from, READ_RECORDS, READ_BYTES).expect("read");
                if batch.is_empty() {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    // Let the writer build its backlog before timing.
    while log.stats().next_seq < ACK_BACKLOG {
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut latencies = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
    let mut group = c.benchmark_group("disk_ack_under_load");
    common::short(&mut group);
    group.bench_function("log", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let seq = acked.load(Ordering::Relaxed);
                while log.stats().next_seq <= seq {
                    std::thread::yield_now();
                }
                let start = Instant::now();
                log.ack(seq).expect("ack");
                let took = start.elapsed();
                total += took;
                let _ = latencies.record(took.as_nanos() as u64);
                acked.store(seq + 1, Ordering::Relaxed);
            }
            total
        });
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    reader.join().expect("reader");
    let us = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "ack_latency_under_load mean_us={:.2} p50_us={:.1} p99_us={:.1} p99.9_us={:.1} p99.99_us={:.1} max_us={:.1} acks={}",
        latencies.mean() / 1000.0,
        us(0.5),
        us(0.99),
        us(0.999),
        us(0.9999),
        latencies.max() as f64 / 1000.0,
        latencies.len()
    );
}

criterion_group!(benches, footprint, append, sync, replay, ack_under_load);
criterion_main!(benches);
