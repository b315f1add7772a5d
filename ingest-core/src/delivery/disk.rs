//! What the disk path's three parties share: the spool (queue → buffer), the forwarder
//! (buffer → producer) and the producer's delivery reports (acknowledgements).
//!
//! ```text
//! submit → queue → Spool ── append (group commit) ──▶ BufferEngine ◀── ack ── delivery reports
//!                    │ Ack::Persisted                  │ read in order          ▲
//!                    └─ trackers by seq ─▶ DiskState ◀─┴─ Forwarder ── send ────┘
//! ```
//!
//! The buffer is the source of truth: a record leaves it only when Kafka has
//! acknowledged it. A record Kafka fails with a retryable error stays; the forwarder
//! rewinds to the oldest unacknowledged record and sends again from there, which keeps
//! each key's records in order (duplicates are possible: delivery is at least once).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Instant;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use tokio::sync::oneshot;

use super::receipt::Tracker;
use super::shutdown::ShutdownReport;
use super::throttle::LogThrottle;
use crate::buffer::{
    BufferEngine, FileHandle, LogBuffer, LogConfig, StdStorage, Storage, StorageFile,
};
#[cfg(feature = "sled-buffer")]
use crate::buffer::{SledBuffer, SledConfig};
use crate::config::{BufferType, DiskBufferSettings};
use crate::error::Error;
use crate::telemetry::{Telemetry, INGESTOR};

const NO_REWIND: u64 = u64::MAX;
/// Tracker map capacity kept however empty the map is (hashbrown's growth steps).
const SHRINK_ABOVE: usize = 4096;

/// A `flush` waiting for every record below `target` to be acknowledged.
pub(crate) struct FlushRequest {
    pub(crate) target: u64,
    pub(crate) deadline: Instant,
    pub(crate) done: oneshot::Sender<bool>,
}

/// The spool has persisted everything queued before the shutdown; the forwarder
/// delivers what it can by `deadline`.
pub(crate) struct ShutdownRequest {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) done: Option<oneshot::Sender<ShutdownReport>>,
}

#[derive(Default)]
pub(crate) struct Requests {
    pub(crate) flushes: Vec<FlushRequest>,
    pub(crate) shutdown: Option<ShutdownRequest>,
    /// The forwarder thread died: nobody serves these requests any more, so they are
    /// answered where they are made ([`DiskState::shutdown_without_forwarder`]).
    pub(crate) forwarder_gone: bool,
}

/// The message of receipts whose records are left in the buffer at shutdown.
pub(crate) const KEPT: &str =
    "not delivered before shutdown; kept in the disk buffer and delivered after the next start";

/// Metrics of the disk buffer.
pub(crate) struct BufferTelemetry {
    instance: String,
    pub(crate) bytes: Gauge,
    pub(crate) entries: Gauge,
    pub(crate) oldest_age: Gauge,
    pub(crate) replayed: Counter,
}

impl BufferTelemetry {
    fn new(max_bytes: u64, telemetry: &Telemetry) -> Self {
        let me = telemetry.instance();
        gauge!("ingest_buffer_max_bytes", INGESTOR => me.clone()).set(max_bytes as f64);
        BufferTelemetry {
            bytes: gauge!("ingest_buffer_bytes", INGESTOR => me.clone()),
            entries: gauge!("ingest_buffer_entries", INGESTOR => me.clone()),
            oldest_age: gauge!("ingest_buffer_oldest_age_seconds", INGESTOR => me.clone()),
            replayed: counter!("ingest_buffer_replayed_total", INGESTOR => me.clone()),
            instance: me,
        }
    }

    /// Counts dropped events; `reason` is one of `full`, `full_timeout`,
    /// `storage_error`, `rejected_by_kafka`, `undecodable`.
    pub(crate) fn dropped(&self, reason: &'static str, n: u64) {
        counter!("ingest_buffer_dropped_total", INGESTOR => self.instance.clone(), "reason" => reason)
            .increment(n);
    }
}

/// The real file system, timing every `fdatasync` into `ingest_buffer_fsync_seconds`.
#[derive(Debug)]
struct MeteredStorage {
    fsync: Histogram,
}

#[derive(Debug)]
struct MeteredFile {
    inner: FileHandle,
    fsync: Histogram,
}

impl StorageFile for MeteredFile {
    fn write_all(&self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let started = Instant::now();
        let result = self.inner.sync_data();
        self.fsync.record(started.elapsed().as_secs_f64());
        result
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Storage for MeteredStorage {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        StdStorage.create_dir_all(dir)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<FileHandle> {
        Ok(Arc::new(MeteredFile {
            inner: StdStorage.open_append(path)?,
            fsync: self.fsync.clone(),
        }))
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        StdStorage.read(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        StdStorage.read_range(path, offset, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdStorage.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        StdStorage.remove(path)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        StdStorage.exists(path)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        StdStorage.list_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdStorage.sync_dir(dir)
    }
    fn modified(&self, path: &Path) -> std::io::Result<std::time::SystemTime> {
        StdStorage.modified(path)
    }
}

pub(crate) struct DiskState {
    pub(crate) engine: Box<dyn BufferEngine>,
    pub(crate) settings: DiskBufferSettings,
    /// Receipts of records in the buffer that have not been handed to the producer,
    /// by sequence number, while someone holds the receipt: a backlog of records whose
    /// submitters stopped waiting (the `accepted` level, an answered `persisted`, a
    /// timed-out `delivered`) costs no memory here. Records from before a restart have
    /// none.
    trackers: Mutex<HashMap<u64, Arc<Tracker>>>,
    /// Every record below it is in the buffer with its tracker registered: the
    /// forwarder reads no further.
    appended_end: AtomicU64,
    /// The lowest sequence number Kafka failed with a retryable error since the last
    /// rewind, or `NO_REWIND`.
    rewind_from: AtomicU64,
    forwarder: OnceLock<Thread>,
    pub(crate) requests: Mutex<Requests>,
    pub(crate) telemetry: BufferTelemetry,
    /// Throttles the per-record error lines of the disk path (one a second, with the
    /// count held back), so a damaged buffer or a refusing cluster does not flood the
    /// log; the counters still count every record.
    pub(crate) record_log: LogThrottle,
    /// Test-only fault: the forwarder panics at its next tick.
    #[cfg(test)]
    pub(crate) fail_forwarder: std::sync::atomic::AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DiskState {
    /// Opens (and recovers) the configured engine.
    pub(crate) fn open(
        settings: DiskBufferSettings,
        telemetry: &Telemetry,
    ) -> Result<DiskState, Error> {
        let engine = open_engine(&settings, telemetry)?;
        let next_seq = engine.stats().next_seq;
        Ok(DiskState {
            engine,
            trackers: Mutex::new(HashMap::new()),
            appended_end: AtomicU64::new(next_seq),
            rewind_from: AtomicU64::new(NO_REWIND),
            forwarder: OnceLock::new(),
            requests: Mutex::new(Requests::default()),
            telemetry: BufferTelemetry::new(settings.max_bytes, telemetry),
            record_log: LogThrottle::new(),
            settings,
            #[cfg(test)]
            fail_forwarder: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn set_forwarder(&self, thread: Thread) {
        let _ = self.forwarder.set(thread);
    }

    /// Wakes the forwarder (new records, a failure, a request).
    pub(crate) fn wake(&self) {
        if let Some(thread) = self.forwarder.get() {
            thread.unpark();
        }
    }

    pub(crate) fn appended_end(&self) -> u64 {
        self.appended_end.load(Ordering::Acquire)
    }

    /// Publishes records `..end` (the trackers still watched registered) to the
    /// forwarder.
    pub(crate) fn appended(
        &self,
        trackers: impl IntoIterator<Item = (u64, Arc<Tracker>)>,
        end: u64,
    ) {
        lock(&self.trackers).extend(trackers.into_iter().filter(|(_, t)| t.is_watched()));
        self.appended_end.store(end, Ordering::Release);
        self.wake();
    }

    /// Drops the trackers whose receipts are all gone since their records were
    /// appended, and gives back the map's memory once it is mostly empty (a backlog
    /// during an outage can have grown it to millions of entries).
    pub(crate) fn forget_unwatched(&self) {
        let mut trackers = lock(&self.trackers);
        trackers.retain(|_, tracker| tracker.is_watched());
        if trackers.capacity() > 4 * trackers.len() + SHRINK_ABOVE {
            trackers.shrink_to_fit();
        }
    }

    pub(crate) fn take_tracker(&self, seq: u64) -> Option<Arc<Tracker>> {
        lock(&self.trackers).remove(&seq)
    }

    /// A record that did not reach the producer keeps its receipt for the next try.
    pub(crate) fn restore_tracker(&self, seq: u64, tracker: Arc<Tracker>) {
        lock(&self.trackers).insert(seq, tracker);
    }

    /// Kafka acknowledged `seq`: it leaves the buffer.
    pub(crate) fn acked(&self, seq: u64) {
        if let Err(error) = self.engine.ack(seq) {
            // The record stays and is sent again: a duplicate, never a loss.
            if let Some(suppressed) = self.record_log.allow() {
                tracing::warn!(seq, %error, suppressed, "could not record an acknowledgement in the disk buffer");
            }
        }
    }

    /// Kafka failed `seq` with a retryable error: it stays in the buffer, its receipt
    /// waits for the resend, and the forwarder rewinds.
    pub(crate) fn redeliver(&self, seq: u64, tracker: Option<Arc<Tracker>>) {
        if let Some(tracker) = tracker {
            lock(&self.trackers).insert(seq, tracker);
        }
        self.rewind_from.fetch_min(seq, Ordering::AcqRel);
        self.wake();
    }

    /// Whether a rewind is pending, clearing it.
    pub(crate) fn take_rewind(&self) -> bool {
        self.rewind_from.swap(NO_REWIND, Ordering::AcqRel) != NO_REWIND
    }

    pub(crate) fn rewind_pending(&self) -> bool {
        self.rewind_from.load(Ordering::Acquire) != NO_REWIND
    }

    /// Fails every receipt still waiting (at shutdown: the records stay in the buffer
    /// for the next start).
    pub(crate) fn fail_waiting(&self, reason: &str) -> usize {
        let trackers: Vec<Arc<Tracker>> = lock(&self.trackers).drain().map(|(_, t)| t).collect();
        let n = trackers.len();
        for tracker in trackers {
            tracker.complete(Some((reason.to_owned(), true)));
        }
        n
    }

    pub(crate) fn requests(&self) -> MutexGuard<'_, Requests> {
        lock(&self.requests)
    }

    /// Called as the forwarder thread dies: waiting flushes fail (their senders drop)
    /// and a shutdown already asked for is answered here, so no caller waits forever.
    pub(crate) fn forwarder_died(&self) {
        let shutdown = {
            let mut requests = self.requests();
            requests.forwarder_gone = true;
            requests.flushes.clear();
            requests.shutdown.take()
        };
        if let Some(request) = shutdown {
            self.shutdown_without_forwarder(request);
        }
    }

    /// Answers a shutdown the dead forwarder cannot serve: everything unacknowledged
    /// stays in the buffer for the next start, and the receipts waiting for it fail.
    pub(crate) fn shutdown_without_forwarder(&self, request: ShutdownRequest) {
        self.fail_waiting(KEPT);
        if let Err(error) = self.engine.sync() {
            tracing::error!(%error, "disk buffer sync at shutdown failed");
        }
        let kept = usize::try_from(self.engine.stats().entries).unwrap_or(usize::MAX);
        tracing::error!(
            kept,
            "shutdown without the forwarder thread: the events stay in the disk buffer"
        );
        if let Some(done) = request.done {
            let _ = done.send(ShutdownReport {
                undelivered: kept,
                kept_in_buffer: kept,
                elapsed: request.started.elapsed(),
            });
        }
    }
}

fn open_engine(
    settings: &DiskBufferSettings,
    telemetry: &Telemetry,
) -> Result<Box<dyn BufferEngine>, Error> {
    let dir: &Path = &settings.dir;
    let fsync = histogram!("ingest_buffer_fsync_seconds", INGESTOR => telemetry.instance());
    let context = |what: &str| format!("{what} the disk buffer at {}", dir.display());
    match settings.kind {
        #[cfg(feature = "sled-buffer")]
        BufferType::Sled => {
            let mut engine = SledBuffer::open(
                dir,
                SledConfig {
                    max_bytes: settings.max_bytes,
                    sync: settings.sync,
                },
            )
            .map_err(|source| Error::Buffer {
                context: context("opening"),
                source,
            })?;
            engine.set_fsync_histogram(fsync);
            let stats = engine.stats();
            tracing::info!(dir = %dir.display(), entries = stats.entries, bytes = stats.bytes, "disk buffer (sled) opened");
            Ok(Box::new(engine))
        }
        // Validation refuses this already; settings built otherwise get the same error.
        #[cfg(not(feature = "sled-buffer"))]
        BufferType::Sled => Err(Error::Config(crate::config::sled_not_built())),
        BufferType::Log | BufferType::Memory => {
            let (engine, report) = LogBuffer::open_with(
                dir,
                LogConfig {
                    max_bytes: settings.max_bytes,
                    segment_bytes: settings.segment_bytes,
                    sync: settings.sync,
                },
                Arc::new(MeteredStorage { fsync }),
            )
            .map_err(|source| Error::Buffer {
                context: context("opening"),
                source,
            })?;
            // Recovery has logged each finding; count the damage for alerts.
            for range in &report.quarantined {
                counter!("ingest_buffer_quarantined_total", INGESTOR => telemetry.instance())
                    .increment(1);
                counter!("ingest_buffer_quarantined_bytes_total", INGESTOR => telemetry.instance())
                    .increment(range.len);
            }
            tracing::info!(
                dir = %dir.display(),
                entries = report.entries,
                bytes = report.bytes,
                segments = report.segments,
                "disk buffer opened; unacknowledged records are replayed first"
            );
            Ok(Box::new(engine))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::buffer::SyncPolicy;
    use crate::config::WhenFull;
    use crate::delivery::receipt::Receipt;

    fn state(dir: &Path) -> DiskState {
        DiskState::open(
            DiskBufferSettings {
                kind: BufferType::Log,
                dir: dir.to_path_buf(),
                max_bytes: 1 << 20,
                segment_bytes: 1 << 20,
                sync: SyncPolicy::Never,
                when_full: WhenFull::Block,
                full_timeout: Duration::from_secs(1),
            },
            &Telemetry::new(&[], "test".into()),
        )
        .expect("open")
    }

    #[test]
    fn only_watched_trackers_are_kept_and_an_emptied_map_gives_its_memory_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = state(dir.path());
        let watched = Tracker::new(1, true);
        let receipt = Receipt::new(watched.clone(), None);
        let backlog = 100_000;
        // One watched submission, then a backlog nobody waits for any more.
        disk.appended([(0, watched)], 1);
        disk.appended(
            (1..=backlog).map(|seq| {
                let tracker = Tracker::new(1, true);
                drop(Receipt::new(tracker.clone(), None));
                (seq, tracker)
            }),
            backlog + 1,
        );
        assert_eq!(
            lock(&disk.trackers).len(),
            1,
            "unwatched trackers are not kept"
        );

        // Receipts alive at append time and dropped later are forgotten by the sweep.
        let first = backlog + 1;
        let (trackers, receipts): (Vec<_>, Vec<_>) = (first..first + backlog)
            .map(|seq| {
                let tracker = Tracker::new(1, true);
                ((seq, tracker.clone()), Receipt::new(tracker, None))
            })
            .unzip();
        disk.appended(trackers, first + backlog);
        assert_eq!(lock(&disk.trackers).len(), 1 + backlog as usize);
        drop(receipts);
        disk.forget_unwatched();
        let trackers = lock(&disk.trackers);
        assert_eq!(trackers.keys().copied().collect::<Vec<_>>(), [0]);
        assert!(
            trackers.capacity() <= SHRINK_ABOVE + 4,
            "capacity {} kept after the backlog left",
            trackers.capacity()
        );
        drop(trackers);
        assert!(disk.take_tracker(0).is_some_and(|t| t.is_watched()));
        drop(receipt);
    }

    /// Counts the warnings and errors logged while it is the thread's subscriber.
    struct CountWarnings(Arc<AtomicU64>);

    impl tracing::Subscriber for CountWarnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() <= tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn per_record_errors_of_the_disk_path_are_throttled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = state(dir.path());
        let warnings = Arc::new(AtomicU64::new(0));
        let subscriber = CountWarnings(warnings.clone());
        tracing::subscriber::with_default(subscriber, || {
            // Acknowledgements the buffer refuses (never-assigned numbers), as a
            // confused or replayed stream of delivery reports would bring.
            for seq in 1_000..3_000 {
                disk.acked(seq);
            }
        });
        let logged = warnings.load(Ordering::Relaxed);
        // One line a second: two if the clock ticked over during the loop.
        assert!(
            (1..=2).contains(&logged),
            "{logged} lines for 2,000 failures"
        );
    }
}
