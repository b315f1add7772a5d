//! [`SledBuffer`]: the disk buffer on the `sled` embedded database.

use std::convert::Infallible;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest_common::Backoff;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::engine::{
    check_max_bytes, BufferEngine, BufferStats, SyncPolicy, ACK_PERSIST_INTERVAL, DEFAULT_MAX_BYTES,
};
use super::error::BufferError;
use super::record::MAX_RECORD_BYTES;

const RECORDS_TREE: &str = "records";
const META_TREE: &str = "meta";
const NEXT_SEQ_KEY: &[u8] = b"next_seq";
const WATERMARK_KEY: &[u8] = b"watermark";

/// How long `open` waits for a database lock held by this process's previous
/// `SledBuffer` on the same directory. Dropping a `sled::Db` signals its I/O threads but
/// does not join them; the file lock goes when they exit, moments later (sled#1289).
const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Opens the database, retrying while its file lock is taken, for at most `wait`.
///
/// sled reports a taken lock as an `Other` I/O error whose text names it (it tries the
/// lock without blocking); every other error is returned at once. A lock still taken
/// after `wait` belongs to a live owner, usually another process.
fn open_when_unlocked(config: &sled::Config, wait: Duration) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + wait;
    let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(100));
    let mut failures = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(err))
                if err.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                failures += 1;
                let pause = backoff.jittered(failures);
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            }
            result => return result,
        }
    }
}

/// Bound and durability of a [`SledBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    /// The most payload bytes the unacknowledged records may hold; an append that would
    /// exceed it is refused with [`BufferError::Full`]. Space is freed record by record
    /// as they are acknowledged. The database's files are larger than this (keys,
    /// indexes, and log space not yet reclaimed). Default 1 GiB.
    pub max_bytes: u64,
    /// When appends become durable. Default `IntervalMs(100)`.
    pub sync: SyncPolicy,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            sync: SyncPolicy::default(),
        }
    }
}

impl SledConfig {
    fn validate(&self) -> Result<(), BufferError> {
        check_max_bytes(self.max_bytes)
    }
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    /// The lowest unacknowledged sequence number, or `next_seq` when there is none.
    watermark: u64,
    persisted_watermark: u64,
    watermark_written_at: Instant,
    /// Unacknowledged records and the sum of their payload lengths.
    entries: u64,
    bytes: u64,
    synced_at: Instant,
    /// Set by a failed flush: the database may have lost writes it accepted.
    poisoned: Option<String>,
}

/// The disk buffer on the `sled` embedded database: one entry per record, deleted on
/// acknowledgement. [`BufferEngine`] states the contract it keeps.
///
/// # Layout
///
/// The database in `<dir>` holds two trees:
///
/// - `records`: one entry per unacknowledged record, the key its sequence number as a
///   big-endian `u64` (so the tree's order is sequence order), the value its payload.
///   Acknowledging a record deletes its entry.
/// - `meta`: `next_seq` (big-endian `u64`), written in the same transaction as the
///   records of every append, so sequence numbers are never reused even after every
///   record is deleted; and `watermark` (big-endian `u64`), the lowest unacknowledged
///   sequence number, persisted lazily (at most every 100 ms while acknowledgements
///   arrive, on `sync` and on drop). It is informational: the `records` tree itself is
///   the truth about what is unacknowledged.
///
/// # Durability
///
/// With [`SyncPolicy::Always`] every append flushes the database before it returns
/// (concurrent appenders share flushes, as `sled` writes one log); with
/// [`SyncPolicy::IntervalMs`] an append flushes once the interval has passed and the
/// database's own flusher runs at that interval; with [`SyncPolicy::Never`] only
/// [`SledBuffer::sync`] and drop flush. Unlike the log, unflushed writes sit in the
/// process's memory, not the kernel's page cache, so with `Never` a process crash (not
/// only a machine crash) loses them.
///
/// # Concurrency
///
/// All methods take `&self` and are safe to call from many threads. Appends are
/// serialised (sequence numbers are assigned and written under one lock); flushes
/// happen outside it.
pub struct SledBuffer {
    dir: PathBuf,
    config: SledConfig,
    db: sled::Db,
    records: sled::Tree,
    meta: sled::Tree,
    state: Mutex<State>,
    /// Times each flush (`ingest_buffer_fsync_seconds` when the delivery path opened
    /// the buffer; a no-op handle otherwise).
    fsync: metrics::Histogram,
}

impl fmt::Debug for SledBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledBuffer")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn decode_seq(bytes: &[u8], what: &str) -> Result<u64, BufferError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        BufferError::sled(
            "decoding",
            sled::Error::Unsupported(format!("{what} of {} bytes, 8 expected", bytes.len())),
        )
    })?;
    Ok(u64::from_be_bytes(array))
}

fn read_meta(meta: &sled::Tree, key: &[u8]) -> Result<Option<u64>, BufferError> {
    meta.get(key)
        .map_err(|e| BufferError::sled("reading metadata", e))?
        .map(|v| decode_seq(&v, "metadata value"))
        .transpose()
}

impl SledBuffer {
    /// Opens (creating if needed) the buffer in `dir`, counting the unacknowledged
    /// records a previous process left there.
    ///
    /// # Errors
    ///
    /// [`BufferError::InvalidConfig`] for a bad configuration; [`BufferError::Sled`]
    /// when the database cannot be opened or read, for instance while another process,
    /// or another `SledBuffer` in this one, has it open. A `SledBuffer` just dropped
    /// releases the directory moments after its drop returns; `open` waits up to two
    /// seconds for that before giving up.
    pub fn open(dir: impl AsRef<Path>, config: SledConfig) -> Result<SledBuffer, BufferError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let flush_every_ms = match config.sync {
            // Appends flush themselves; the background flusher makes acknowledgements
            // durable in the meantime.
            SyncPolicy::Always => Some(500),
            SyncPolicy::IntervalMs(ms) => Some(ms.max(1)),
            SyncPolicy::Never => None,
        };
        // sled creates its files with the umask's modes; in a directory private to the
        // owner (0700) no other user reaches them all the same. A link in the
        // directory's place is refused, as the log engine refuses links.
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            let refused = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link (the disk buffer does not follow links); refusing it",
            );
            return Err(BufferError::io("opening", &dir, refused));
        }
        super::storage::create_private_dir_all(&dir)
            .map_err(|e| BufferError::io("creating", &dir, e))?;
        let db = open_when_unlocked(
            &sled::Config::new()
                .path(&dir)
                .flush_every_ms(flush_every_ms),
            LOCK_RELEASE_WAIT,
        )
        .map_err(|e| BufferError::sled("opening", e))?;
        let records = db
            .open_tree(RECORDS_TREE)
            .map_err(|e| BufferError::sled("opening the records tree", e))?;
        let meta = db
            .open_tree(META_TREE)
            .map_err(|e| BufferError::sled("opening the metadata tree", e))?;

        let stored_next = read_meta(&meta, NEXT_SEQ_KEY)?.unwrap_or(0);
        let stored_watermark = read_meta(&meta, WATERMARK_KEY)?.unwrap_or(0);
        let (mut entries, mut bytes) = (0u64, 0u64);
        let (mut first, mut last) = (None, None);
        for item in records.iter() {
            let (key, value) = item.map_err(|e| BufferError::sled("scanning records", e))?;
            let seq = decode_seq(&key, "record key")?;
            first.get_or_insert(seq);
            last = Some(seq);
            entries += 1;
            bytes += value.len() as u64;
        }
        let next_seq = stored_next
            .max(stored_watermark)
            .max(last.map_or(0, |s| s + 1));
        let watermark = first.unwrap_or(next_seq);
        let now = Instant::now();
        let buffer = SledBuffer {
            dir,
            config,
            db,
            records,
            meta,
            fsync: metrics::Histogram::noop(),
            state: Mutex::new(State {
                next_seq,
                watermark,
                persisted_watermark: stored_watermark,
                watermark_written_at: now,
                entries,
                bytes,
                synced_at: now,
                poisoned: None,
            }),
        };
        buffer.persist_watermark(&mut *buffer.lock()?, true)?;
        Ok(buffer)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, BufferError> {
        let state = self.state.lock().map_err(|_| BufferError::Poisoned {
            reason: "a thread panicked while updating the buffer".into(),
        })?;
        match &state.poisoned {
            Some(reason) => Err(BufferError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(state),
        }
    }

    /// For read-only snapshots, where a half-finished update is no worse than a stale
    /// one.
    fn lock_any(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Flushes the database; a failure poisons the buffer, because the database may
    /// have dropped writes it had accepted.
    fn flush(&self) -> Result<(), BufferError> {
        let started = Instant::now();
        let flushed = self.db.flush();
        self.fsync.record(started.elapsed().as_secs_f64());
        if let Err(err) = flushed {
            let mut state = self.lock_any();
            state.poisoned = Some(format!("flushing the database failed: {err}"));
            return Err(BufferError::sled("flushing", err));
        }
        Ok(())
    }

    /// Writes the watermark when it moved and is due (or `force`d).
    fn persist_watermark(&self, state: &mut State, force: bool) -> Result<(), BufferError> {
        if state.watermark == state.persisted_watermark
            || !(force || state.watermark_written_at.elapsed() >= ACK_PERSIST_INTERVAL)
        {
            return Ok(());
        }
        self.meta
            .insert(WATERMARK_KEY, &state.watermark.to_be_bytes()[..])
            .map_err(|e| BufferError::sled("writing the watermark", e))?;
        state.persisted_watermark = state.watermark;
        state.watermark_written_at = Instant::now();
        Ok(())
    }

    /// Appends `payloads` as consecutive records, atomically, and returns their
    /// sequence numbers. Returns once the [`SyncPolicy`] is satisfied.
    ///
    /// # Errors
    ///
    /// [`BufferError::Full`] (nothing written) when the unacknowledged payload bytes
    /// plus these would exceed `max_bytes`; [`BufferError::RecordTooLarge`] (nothing
    /// written) for a payload over [`MAX_RECORD_BYTES`]; [`BufferError::Sled`] when
    /// the write fails (nothing written) or the flush fails (the buffer is then
    /// poisoned until reopened).
    pub fn append(&self, payloads: &[&[u8]]) -> Result<Range<u64>, BufferError> {
        if let Some(p) = payloads
            .iter()
            .find(|p| p.len() > MAX_RECORD_BYTES as usize)
        {
            return Err(BufferError::RecordTooLarge {
                len: p.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let requested_bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
        let (range, flush) = {
            let mut state = self.lock()?;
            if state.bytes + requested_bytes > self.config.max_bytes {
                return Err(BufferError::Full {
                    used_bytes: state.bytes,
                    requested_bytes,
                    max_bytes: self.config.max_bytes,
                });
            }
            let start = state.next_seq;
            if payloads.is_empty() {
                return Ok(start..start);
            }
            let end = start + payloads.len() as u64;
            let mut batch = sled::Batch::default();
            for (seq, payload) in (start..end).zip(payloads) {
                batch.insert(&seq.to_be_bytes()[..], *payload);
            }
            let end_bytes = end.to_be_bytes();
            (&self.records, &self.meta)
                .transaction(|(records, meta)| {
                    records.apply_batch(&batch)?;
                    meta.insert(NEXT_SEQ_KEY, &end_bytes[..])?;
                    Ok::<_, ConflictableTransactionError<Infallible>>(())
                })
                .map_err(|err| match err {
                    TransactionError::Storage(e) => BufferError::sled("appending", e),
                    TransactionError::Abort(never) => match never {},
                })?;
            state.next_seq = end;
            state.entries += payloads.len() as u64;
            state.bytes += requested_bytes;
            let flush = self.config.sync.is_due(state.synced_at.elapsed());
            if flush {
                state.synced_at = Instant::now();
            }
            (start..end, flush)
        };
        if flush {
            self.flush()?;
        }
        Ok(range)
    }

    /// Reads up to `max_records` unacknowledged records, in order, starting at
    /// `from_seq`. Payloads add up to at most `max_bytes`, except that the first record
    /// is always returned, so one large record cannot stall a reader.
    ///
    /// # Errors
    ///
    /// [`BufferError::Sled`] when the database cannot be read.
    pub fn read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, BufferError> {
        drop(self.lock()?);
        let mut out = Vec::new();
        if max_records == 0 {
            return Ok(out);
        }
        let mut budget = max_bytes;
        for item in self.records.range(&from_seq.to_be_bytes()[..]..) {
            let (key, value) = item.map_err(|e| BufferError::sled("reading records", e))?;
            if !out.is_empty() && value.len() > budget {
                break;
            }
            budget = budget.saturating_sub(value.len());
            out.push((
                decode_seq(&key, "record key")?,
                Bytes::copy_from_slice(&value),
            ));
            if out.len() >= max_records {
                break;
            }
        }
        Ok(out)
    }

    /// Marks record `seq` as delivered by deleting it. Acknowledgements may arrive in
    /// any order and more than once. The deletion becomes durable with the next flush.
    ///
    /// # Errors
    ///
    /// [`BufferError::UnknownSequence`] for a sequence number never assigned;
    /// [`BufferError::Sled`] when the deletion or the watermark write fails.
    pub fn ack(&self, seq: u64) -> Result<(), BufferError> {
        let mut state = self.lock()?;
        if seq >= state.next_seq {
            return Err(BufferError::UnknownSequence {
                seq,
                next_seq: state.next_seq,
            });
        }
        let removed = self
            .records
            .remove(&seq.to_be_bytes()[..])
            .map_err(|e| BufferError::sled("deleting a record", e))?;
        if let Some(payload) = removed {
            state.entries -= 1;
            state.bytes -= payload.len() as u64;
            if seq == state.watermark {
                // Appends hold the lock too, so the first entry is the lowest
                // unacknowledged record.
                state.watermark = match self
                    .records
                    .first()
                    .map_err(|e| BufferError::sled("reading records", e))?
                {
                    Some((key, _)) => decode_seq(&key, "record key")?,
                    None => state.next_seq,
                };
            }
        }
        self.persist_watermark(&mut state, false)
    }

    /// Makes every record appended and every acknowledgement so far durable.
    ///
    /// # Errors
    ///
    /// [`BufferError::Sled`] when the watermark write or the flush fails; a failed flush
    /// poisons the buffer until it is reopened.
    pub fn sync(&self) -> Result<(), BufferError> {
        {
            let mut state = self.lock()?;
            state.synced_at = Instant::now();
            self.persist_watermark(&mut state, true)?;
        }
        self.flush()
    }

    /// The buffer's current size and position: `bytes` is the unacknowledged payload
    /// bytes (what `max_bytes` bounds) and `segments` is always zero.
    pub fn stats(&self) -> BufferStats {
        let state = self.lock_any();
        BufferStats {
            entries: state.entries,
            bytes: state.bytes,
            oldest_unacked_seq: (state.watermark < state.next_seq).then_some(state.watermark),
            next_seq: state.next_seq,
            segments: 0,
        }
    }

    /// The size of the database's files, as the database reports it.
    ///
    /// # Errors
    ///
    /// [`BufferError::Sled`] when the database cannot tell.
    pub fn size_on_disk(&self) -> Result<u64, BufferError> {
        self.db
            .size_on_disk()
            .map_err(|e| BufferError::sled("measuring", e))
    }

    /// The directory the buffer lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl SledBuffer {
    /// Times every flush into `histogram` from now on.
    pub(crate) fn set_fsync_histogram(&mut self, histogram: metrics::Histogram) {
        self.fsync = histogram;
    }
}

impl Drop for SledBuffer {
    fn drop(&mut self) {
        // Persisting the watermark and flushing on a clean shutdown spares redelivery;
        // failure only means redelivery (or, with `Never`, the loss `Never` accepts).
        let result = {
            let mut state = self.lock_any();
            self.persist_watermark(&mut state, true)
        }
        .and_then(|()| {
            self.db
                .flush()
                .map(drop)
                .map_err(|e| BufferError::sled("flushing", e))
        });
        if let Err(err) = result {
            tracing::warn!(error = %err, "disk buffer could not flush on close");
        }
    }
}

impl BufferEngine for SledBuffer {
    fn append(&self, payloads: &[&[u8]]) -> Result<Range<u64>, BufferError> {
        SledBuffer::append(self, payloads)
    }

    fn read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, BufferError> {
        SledBuffer::read(self, from_seq, max_records, max_bytes)
    }

    fn ack(&self, seq: u64) -> Result<(), BufferError> {
        SledBuffer::ack(self, seq)
    }

    fn sync(&self) -> Result<(), BufferError> {
        SledBuffer::sync(self)
    }

    fn stats(&self) -> BufferStats {
        SledBuffer::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max_bytes: u64) -> SledBuffer {
        SledBuffer::open(
            dir,
            SledConfig {
                max_bytes,
                sync: SyncPolicy::Never,
            },
        )
        .expect("open")
    }

    #[test]
    fn next_seq_survives_a_lost_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let buffer = open(dir.path(), 1 << 20);
            buffer.append(&[b"a", b"b", b"c"]).expect("append");
            for seq in 0..3 {
                buffer.ack(seq).expect("ack");
            }
            buffer.sync().expect("sync");
            // As if the process died before the watermark reached the disk.
            buffer.meta.remove(WATERMARK_KEY).expect("remove");
        }
        let buffer = open(dir.path(), 1 << 20);
        assert_eq!(buffer.stats().next_seq, 3);
        assert_eq!(buffer.append(&[b"d"]).expect("append"), 3..4);
    }

    #[test]
    fn space_is_payload_bytes_freed_per_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let buffer = open(dir.path(), 10);
            buffer.append(&[b"1234", b"5678"]).expect("append");
            let err = buffer.append(&[b"abc"]).expect_err("full");
            assert!(matches!(
                err,
                BufferError::Full {
                    used_bytes: 8,
                    requested_bytes: 3,
                    max_bytes: 10
                }
            ));
            buffer.append(&[b"ab"]).expect("fits exactly");
            buffer.ack(1).expect("ack");
            assert_eq!(buffer.stats().bytes, 6);
        }
        // Unacknowledged bytes are recounted on open.
        let buffer = open(dir.path(), 10);
        let stats = buffer.stats();
        assert_eq!((stats.bytes, stats.entries), (6, 2));
        assert_eq!(stats.oldest_unacked_seq, Some(0));
        assert_eq!(buffer.append(&[b"abcd"]).expect("fits again"), 3..4);
        assert_eq!(
            read_meta(&buffer.meta, NEXT_SEQ_KEY).expect("meta"),
            Some(4)
        );
    }

    #[test]
    fn watermark_is_persisted_on_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let buffer = open(dir.path(), 1 << 20);
        buffer.append(&[b"a", b"b", b"c"]).expect("append");
        buffer.ack(1).expect("ack");
        buffer.ack(0).expect("ack");
        buffer.sync().expect("sync");
        assert_eq!(
            read_meta(&buffer.meta, WATERMARK_KEY).expect("meta"),
            Some(2)
        );
    }

    #[test]
    fn open_waits_for_a_dropped_buffer_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = sled::Config::new().path(dir.path());
        let first = config.open().expect("first open");
        let taken = open_when_unlocked(&config, Duration::from_millis(50)).expect_err("locked");
        assert!(
            taken.to_string().contains("could not acquire lock"),
            "{taken}"
        );

        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        open_when_unlocked(&config, Duration::from_secs(10)).expect("opened once released");
        releaser.join().expect("releaser");

        // Back to back, as a restart within one process does.
        for round in 0..20 {
            let buffer = open(dir.path(), 1 << 20);
            buffer.append(&[b"x"]).expect("append");
            drop(buffer);
            assert_eq!(open(dir.path(), 1 << 20).stats().entries, round + 1);
        }
    }

    #[test]
    fn invalid_config_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = SledBuffer::open(
            dir.path(),
            SledConfig {
                max_bytes: 0,
                sync: SyncPolicy::Always,
            },
        )
        .expect_err("invalid");
        assert!(matches!(err, BufferError::InvalidConfig { .. }));
    }

    /// Disk use of both engines for the same records; run with `--ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn disk_use_compared_with_the_log() {
        fn dir_size(path: &Path) -> u64 {
            std::fs::read_dir(path)
                .expect("list")
                .map(|e| e.expect("entry").path())
                .map(|p| {
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        std::fs::metadata(&p).expect("metadata").len()
                    }
                })
                .sum()
        }
        const RECORDS: u64 = 100_000;
        let payloads: Vec<Vec<u8>> = (0..RECORDS)
            .map(|i| format!("{{\"event\":\"view\",\"n\":{i:08}}}").into_bytes())
            .collect();
        let payload_bytes: usize = payloads.iter().map(Vec::len).sum();
        let sled_dir = tempfile::tempdir().expect("tempdir");
        let log_dir = tempfile::tempdir().expect("tempdir");
        {
            let sled = open(sled_dir.path(), 1 << 30);
            let (log, _) = super::super::LogBuffer::open(
                log_dir.path(),
                super::super::LogConfig {
                    sync: SyncPolicy::Never,
                    ..Default::default()
                },
            )
            .expect("open");
            for chunk in payloads.chunks(100) {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                sled.append(&refs).expect("append");
                log.append(&refs).expect("append");
            }
            sled.sync().expect("sync");
            log.sync().expect("sync");
            println!(
                "{RECORDS} records, {payload_bytes} payload bytes: sled {} bytes on disk \
                 (size_on_disk {}), log {} bytes",
                dir_size(sled_dir.path()),
                sled.size_on_disk().expect("size"),
                dir_size(log_dir.path())
            );
            for seq in 0..RECORDS {
                sled.ack(seq).expect("ack");
                log.ack(seq).expect("ack");
            }
            sled.sync().expect("sync");
            log.sync().expect("sync");
            println!(
                "all acknowledged: sled {} bytes, log {} bytes",
                dir_size(sled_dir.path()),
                dir_size(log_dir.path())
            );
        }
        println!(
            "after close: sled {} bytes, log {} bytes",
            dir_size(sled_dir.path()),
            dir_size(log_dir.path())
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_is_private_and_a_link_in_its_place_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("dir");
        let dir = root.path().join("spool");
        drop(open(&dir, 1 << 20));
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let Err(refused) = SledBuffer::open(&link, SledConfig::default()) else {
            panic!("a link is refused");
        };
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
    }
}
