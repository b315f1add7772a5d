//! [`LogBuffer`]: appends, reads, acknowledgements and segment lifecycle.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::commit::{GroupCommit, SyncPoint};
use super::engine::{
    check_max_bytes, BufferEngine, BufferStats, SyncPolicy, ACK_PERSIST_INTERVAL, DEFAULT_MAX_BYTES,
};
use super::error::{BufferError, FrameDamage};
use super::ledger;
use super::lock::DirLock;
use super::record::{self, MAX_RECORD_BYTES};
use super::recovery::{self, RecoveryReport};
use super::segment::{segment_name, Segment};
use super::storage::{FileHandle, StdStorage, Storage};

/// Bounds and durability of a [`LogBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// The most bytes the retained segments may hold; an append that would exceed it is
    /// refused with [`BufferError::Full`]. Space is freed a whole segment at a time, once
    /// every record in it is acknowledged. Default 1 GiB.
    pub max_bytes: u64,
    /// A segment that has reached this size is closed and a new one started. Default
    /// 64 MiB.
    pub segment_bytes: u64,
    /// When appends become durable. Default `IntervalMs(100)`.
    pub sync: SyncPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: 64 << 20,
            sync: SyncPolicy::default(),
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), BufferError> {
        check_max_bytes(self.max_bytes)?;
        if self.segment_bytes == 0 || self.segment_bytes > self.max_bytes {
            return Err(BufferError::InvalidConfig {
                field: "segment_bytes",
                reason: "must be greater than zero and at most max_bytes",
            });
        }
        Ok(())
    }
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    /// The newest segment's file, open for appending; `None` until the next append
    /// creates one (new buffer, or every segment deleted).
    active: Option<FileHandle>,
    next_seq: u64,
    /// Every record below it is acknowledged. Never inside a gap left by quarantine.
    watermark: u64,
    /// Acknowledged records above the watermark. Bounded: each is a retained record,
    /// and retained records are bounded by `max_bytes`.
    acked: BTreeSet<u64>,
    bytes: u64,
    persisted_watermark: u64,
    ledger_written_at: Instant,
    synced_at: Instant,
    /// When the oldest append not yet covered by a sync returned (`IntervalMs` only):
    /// the background thread syncs at this plus the interval.
    unsynced_since: Option<Instant>,
    /// The background thread has been woken to persist the watermark and has not yet
    /// started on it (so acknowledgements wake it once per round, not once each).
    release_requested: bool,
    /// Records below it were on disk at open and had their checksums verified by
    /// recovery; reads verify the checksums of the others only, so each record is
    /// verified once.
    verified_below: u64,
}

impl State {
    /// Moves the watermark over acknowledged records and over gaps (records lost to
    /// quarantine can never be read or acknowledged, and must not pin the log).
    fn advance_watermark(&mut self) {
        loop {
            if self.acked.remove(&self.watermark) {
                self.watermark += 1;
                continue;
            }
            match self.segments.iter().find(|s| s.end_seq() > self.watermark) {
                Some(s) if s.first_seq > self.watermark => self.watermark = s.first_seq,
                None if self.watermark < self.next_seq => self.watermark = self.next_seq,
                _ => return,
            }
        }
    }

    fn sync_point(&self) -> SyncPoint {
        let file = self
            .active
            .clone()
            .zip(self.segments.back().map(|s| s.path.clone()));
        (file, self.next_seq)
    }

    /// Whether the oldest segment is fully acknowledged and can go once the watermark
    /// is persisted. (An empty newest segment exists only inside an append, which holds
    /// the lock; it is never deletable, as its name is the next segment's.)
    fn front_deletable(&self) -> bool {
        self.segments.front().is_some_and(|s| {
            s.end_seq() <= self.watermark && !(self.segments.len() == 1 && s.offsets.is_empty())
        })
    }
}

/// The frames one read takes from one segment, planned under the state lock and read
/// without it.
struct ReadChunk {
    path: PathBuf,
    /// The sequence number of the first frame.
    first_seq: u64,
    /// Where each frame starts, then where the last one ends.
    bounds: Vec<u64>,
    /// The sequence numbers to return (sorted); the others are acknowledged.
    wanted: Vec<u64>,
}

/// What wakes the background thread.
#[derive(Debug, Default)]
struct Signal {
    stop: bool,
    kicked: bool,
    /// Tests only: the background thread panics at its next wake-up.
    #[cfg(test)]
    fail: bool,
}

/// How long the background thread waits after a failed sync, ledger write or deletion
/// before trying again.
const MAINTENANCE_RETRY: Duration = Duration::from_secs(1);

/// Where an append started, so a failed one can be undone.
struct Rollback {
    segments: usize,
    back: Option<(usize, u64)>,
    next_seq: u64,
    bytes: u64,
}

/// A segmented, append-only log of records on disk, with consecutive sequence numbers,
/// out-of-order acknowledgement and a bound on its size. See the [module
/// documentation](super) for the format and guarantees.
///
/// All methods take `&self` and are safe to call from many threads. An open buffer
/// holds an exclusive lock on its directory (see [`BufferError::Locked`]) and one
/// background thread, `ingest-buffer`, which keeps the [`SyncPolicy::IntervalMs`]
/// promise when no append comes, persists the acknowledgement watermark and deletes
/// acknowledged segments, so that [`LogBuffer::ack`] does no file I/O.
#[derive(Debug)]
pub struct LogBuffer {
    log: Arc<Log>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
    /// Released (set to `None`) by [`LogBuffer::close`] or on drop, after the thread
    /// has stopped and the ledger is written.
    lock: Mutex<Option<DirLock>>,
}

/// The buffer's shared core: what the caller's threads and the background thread use.
#[derive(Debug)]
struct Log {
    dir: PathBuf,
    config: LogConfig,
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
    commit: GroupCommit,
    /// Serialises ledger writes and segment deletions, which run without the state
    /// lock so that appends, reads and acknowledgements do not wait behind fsyncs.
    releasing: Mutex<()>,
    signal: Mutex<Signal>,
    wake: Condvar,
}

impl LogBuffer {
    /// Opens (creating if needed) the buffer in `dir` on the real file system,
    /// recovering whatever a previous process left there.
    ///
    /// # Errors
    ///
    /// [`BufferError::InvalidConfig`] for a bad configuration, [`BufferError::Io`] when
    /// the directory cannot be read or repaired. Damaged records are not an error: they
    /// are quarantined and listed in the [`RecoveryReport`].
    pub fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<(LogBuffer, RecoveryReport), BufferError> {
        Self::open_with(dir, config, Arc::new(StdStorage))
    }

    /// Like [`LogBuffer::open`], on the given [`Storage`].
    ///
    /// # Errors
    ///
    /// As [`LogBuffer::open`].
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<(LogBuffer, RecoveryReport), BufferError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let lock = DirLock::acquire(&dir)?;
        let recovered = recovery::recover(storage.as_ref(), &dir)?;
        let now = Instant::now();
        let mut state = State {
            bytes: recovered.segments.iter().map(|s| s.len).sum(),
            segments: recovered.segments.into(),
            active: None,
            next_seq: recovered.next_seq,
            watermark: recovered.watermark,
            acked: BTreeSet::new(),
            persisted_watermark: recovered.watermark,
            ledger_written_at: now,
            synced_at: now,
            unsynced_since: None,
            release_requested: false,
            verified_below: recovered.next_seq,
        };
        state.advance_watermark();
        // Writing the ledger now replaces a damaged or missing one and records the
        // normalised watermark before anything else can happen.
        ledger::write(storage.as_ref(), &dir, state.watermark)?;
        state.persisted_watermark = state.watermark;
        if let Some(back) = state.segments.back() {
            let file = storage
                .open_append(&back.path)
                .map_err(|e| BufferError::io("opening", &back.path, e))?;
            state.active = Some(file);
        }
        let mut report = recovered.report;
        let log = Arc::new(Log {
            commit: GroupCommit::new(state.next_seq),
            dir,
            config,
            storage,
            state: Mutex::new(state),
            releasing: Mutex::new(()),
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
        });
        // A crash between persisting the watermark and deleting the segments it covers
        // leaves them behind; finish the job now rather than at the next ack.
        log.release(false)?;
        let stats = log.stats();
        report.entries = stats.entries;
        report.bytes = stats.bytes;
        report.next_seq = stats.next_seq;
        report.segments = stats.segments;
        report.acked_watermark = log.lock_any().watermark;
        let maintenance = {
            let dir = log.dir.clone();
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name("ingest-buffer".to_owned())
                .spawn(move || log.maintain())
                .map_err(|e| BufferError::io("starting the background thread of", dir, e))?
        };
        Ok((
            LogBuffer {
                log,
                maintenance: Mutex::new(Some(maintenance)),
                lock: Mutex::new(Some(lock)),
            },
            report,
        ))
    }

    /// Appends `payloads` as consecutive records and returns their sequence numbers.
    /// Returns once the [`SyncPolicy`] is satisfied.
    ///
    /// # Errors
    ///
    /// [`BufferError::Full`] (nothing written) when the records do not fit in
    /// `max_bytes`; [`BufferError::RecordTooLarge`] (nothing written);
    /// [`BufferError::Io`] when a write fails: the partial write is cut away and the
    /// log stays usable (`is_full()` tells a full disk apart). A failed sync poisons
    /// the buffer ([`BufferError::Poisoned`] afterwards) until it is reopened.
    pub fn append(&self, payloads: &[&[u8]]) -> Result<Range<u64>, BufferError> {
        self.log.append(payloads)
    }

    /// Reads up to `max_records` records, in order, starting at `from_seq`, skipping
    /// acknowledged ones. Payloads add up to at most `max_bytes`, except that the first
    /// record is always returned, so one large record cannot stall a reader. The
    /// files are read without holding the buffer's lock: appends and
    /// acknowledgements go on meanwhile.
    ///
    /// # Errors
    ///
    /// [`BufferError::Io`] when a segment cannot be read, [`BufferError::Corrupt`] when
    /// a record fails verification (the disk changed under the buffer; reopen to
    /// quarantine it).
    pub fn read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, BufferError> {
        self.log.read(from_seq, max_records, max_bytes)
    }

    /// Marks record `seq` as delivered. Acknowledgements may arrive in any order and
    /// more than once. This does no file I/O: the background thread persists the
    /// watermark (at most 100 ms after it moves) and deletes the segments whose
    /// records are all acknowledged, after the watermark covering them is persisted
    /// (it is woken as soon as one is). [`LogBuffer::sync`] does both at once.
    ///
    /// # Errors
    ///
    /// [`BufferError::UnknownSequence`] for a sequence number never assigned;
    /// [`BufferError::Poisoned`] after a failed sync.
    pub fn ack(&self, seq: u64) -> Result<(), BufferError> {
        self.log.ack(seq)
    }

    /// Makes every record appended so far durable, persists the watermark and deletes
    /// the segments it covers.
    ///
    /// # Errors
    ///
    /// [`BufferError::Io`] when the sync, the ledger write or a deletion fails; a
    /// failed sync poisons the buffer until it is reopened.
    pub fn sync(&self) -> Result<(), BufferError> {
        self.log.sync()
    }

    /// Whether the background thread (`ingest-buffer`) runs, or was stopped by
    /// [`LogBuffer::close`]; `false` once it died from a panic.
    pub fn background_alive(&self) -> bool {
        self.maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|thread| !thread.is_finished())
    }

    /// Tests only: makes the background thread panic at its next wake-up.
    #[cfg(test)]
    pub(crate) fn fail_background(&self) {
        let mut signal = self
            .log
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        signal.fail = true;
        self.log.wake.notify_one();
    }

    /// The buffer's current size and position.
    pub fn stats(&self) -> BufferStats {
        self.log.stats()
    }

    /// Syncs everything (as [`LogBuffer::sync`]), stops the background thread and
    /// releases the directory, so that another buffer (in this process or another) can
    /// open it while this value still exists. Every later call fails with
    /// [`BufferError::Poisoned`]; [`LogBuffer::stats`] keeps answering. Dropping the
    /// buffer does the same without the sync of the records.
    ///
    /// # Errors
    ///
    /// As [`LogBuffer::sync`]; the buffer is closed even then.
    pub fn close(&self) -> Result<(), BufferError> {
        let synced = self.log.sync();
        self.log.commit.poison("the buffer was closed".to_owned());
        self.shut();
        synced
    }

    /// Stops the background thread, persists the watermark and releases the lock.
    fn shut(&self) {
        {
            let mut signal = self
                .log
                .signal
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            signal.stop = true;
            self.log.wake.notify_one();
        }
        let thread = self
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        // Persisting the watermark on a clean shutdown spares redelivering what was
        // acknowledged since the last periodic write; failure only means redelivery.
        let log = &self.log;
        let _releasing = log.releasing.lock().unwrap_or_else(PoisonError::into_inner);
        let watermark = {
            let state = log.lock_any();
            (state.watermark != state.persisted_watermark).then_some(state.watermark)
        };
        if let Some(watermark) = watermark {
            match ledger::write(log.storage.as_ref(), &log.dir, watermark) {
                Ok(()) => log.lock_any().persisted_watermark = watermark,
                Err(err) => {
                    tracing::warn!(error = %err, "disk buffer could not persist its watermark on close");
                }
            }
        }
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// The directory the buffer lives in.
    pub fn dir(&self) -> &Path {
        &self.log.dir
    }
}

impl Log {
    fn lock(&self) -> Result<MutexGuard<'_, State>, BufferError> {
        if let Some(reason) = self.commit.failure() {
            return Err(BufferError::Poisoned { reason });
        }
        self.state.lock().map_err(|_| BufferError::Poisoned {
            reason: "a thread panicked while updating the buffer".into(),
        })
    }

    /// For read-only snapshots, where a half-finished update is no worse than a stale
    /// one.
    fn lock_any(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, payloads: &[&[u8]]) -> Result<Range<u64>, BufferError> {
        if let Some(p) = payloads
            .iter()
            .find(|p| p.len() > MAX_RECORD_BYTES as usize)
        {
            return Err(BufferError::RecordTooLarge {
                len: p.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let requested_bytes: u64 = payloads.iter().map(|p| record::frame_len(p.len())).sum();
        let mut state = self.lock()?;
        if state.bytes + requested_bytes > self.config.max_bytes {
            return Err(BufferError::Full {
                used_bytes: state.bytes,
                requested_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        let start = state.next_seq;
        let rollback = Rollback {
            segments: state.segments.len(),
            back: state.segments.back().map(|s| (s.offsets.len(), s.len)),
            next_seq: state.next_seq,
            bytes: state.bytes,
        };
        if let Err(err) = self.write_frames(&mut state, payloads) {
            if let Err(undo) = self.rollback(&mut state, &rollback) {
                tracing::error!(error = %undo, "disk buffer could not undo a failed append");
                self.commit
                    .poison(format!("undoing a failed append failed: {undo}"));
            }
            return Err(err);
        }
        let end = state.next_seq;
        let sync_now = self.config.sync.is_due(state.synced_at.elapsed());
        let mut kick = false;
        if sync_now {
            state.synced_at = Instant::now();
            state.unsynced_since = None;
        } else if matches!(self.config.sync, SyncPolicy::IntervalMs(_))
            && state.unsynced_since.is_none()
        {
            // The first append the next sync must cover: the background thread syncs
            // one interval from now if no append does it first.
            state.unsynced_since = Some(Instant::now());
            kick = true;
        }
        drop(state);
        if sync_now {
            self.commit.wait_durable(end, || self.sync_point())?;
        }
        if kick {
            self.kick();
        }
        Ok(start..end)
    }

    fn sync_point(&self) -> Result<SyncPoint, BufferError> {
        Ok(self.lock()?.sync_point())
    }

    /// Writes the frames, one `write` per segment touched, rolling to a new segment
    /// when the current one has reached `segment_bytes`. The state is updated only for
    /// bytes that were written successfully.
    fn write_frames(&self, state: &mut State, payloads: &[&[u8]]) -> Result<(), BufferError> {
        let mut buf = Vec::new();
        let mut rest = payloads;
        while !rest.is_empty() {
            let needs_roll = match (state.segments.back(), &state.active) {
                (Some(back), Some(_)) => back.len >= self.config.segment_bytes,
                _ => true,
            };
            if needs_roll {
                self.roll(state)?;
            }
            let file = state
                .active
                .clone()
                .expect("a segment is open for appending after the roll check");
            let segment = state
                .segments
                .back_mut()
                .expect("an open segment is the newest retained segment");
            buf.clear();
            let mut offsets = Vec::new();
            let mut len = segment.len;
            let mut seq = segment.end_seq();
            while let Some((payload, tail)) = rest.split_first() {
                if !offsets.is_empty() && len >= self.config.segment_bytes {
                    break;
                }
                offsets.push(len);
                record::encode(seq, payload, &mut buf);
                len += record::frame_len(payload.len());
                seq += 1;
                rest = tail;
            }
            file.write_all(&buf)
                .map_err(|e| BufferError::io("appending to", &segment.path, e))?;
            segment.offsets.extend(offsets);
            segment.len = len;
            state.next_seq = seq;
            state.bytes += buf.len() as u64;
        }
        Ok(())
    }

    /// Closes the current segment (syncing it, so that only the newest segment is ever
    /// unsynced and the group commit has one file to flush) and creates the next one.
    fn roll(&self, state: &mut State) -> Result<(), BufferError> {
        if let (Some(file), Some(back)) = (state.active.take(), state.segments.back()) {
            if let Err(e) = file.sync_data() {
                self.commit.poison(format!("fdatasync failed: {e}"));
                return Err(BufferError::io("syncing", &back.path, e));
            }
        }
        let path = self.dir.join(segment_name(state.next_seq));
        let file = self
            .storage
            .open_append(&path)
            .map_err(|e| BufferError::io("creating", &path, e))?;
        // A file left behind under this name by an earlier failure holds nothing valid.
        file.set_len(0)
            .map_err(|e| BufferError::io("creating", &path, e))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| BufferError::io("syncing", &self.dir, e))?;
        state.segments.push_back(Segment {
            first_seq: state.next_seq,
            offsets: Vec::new(),
            len: 0,
            path,
        });
        state.active = Some(file);
        Ok(())
    }

    fn rollback(&self, state: &mut State, to: &Rollback) -> Result<(), BufferError> {
        while state.segments.len() > to.segments {
            let Some(segment) = state.segments.back() else {
                break;
            };
            if let Err(e) = self.storage.remove(&segment.path) {
                return Err(BufferError::io("removing", &segment.path, e));
            }
            state.segments.pop_back();
        }
        state.active = None;
        if let (Some((count, len)), Some(segment)) = (to.back, state.segments.back_mut()) {
            let file = self
                .storage
                .open_append(&segment.path)
                .map_err(|e| BufferError::io("opening", &segment.path, e))?;
            file.set_len(len)
                .map_err(|e| BufferError::io("truncating", &segment.path, e))?;
            segment.offsets.truncate(count);
            segment.len = len;
            state.active = Some(file);
        }
        state.next_seq = to.next_seq;
        state.bytes = to.bytes;
        Ok(())
    }

    fn read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, BufferError> {
        loop {
            let (chunks, verified_below) = self.plan_read(from_seq, max_records, max_bytes)?;
            let mut out = Vec::new();
            let mut vanished = false;
            for chunk in &chunks {
                match self.read_chunk(chunk, verified_below, &mut out) {
                    Ok(()) => {}
                    Err(BufferError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound
                            && !self.retains(&chunk.path) =>
                    {
                        // Deleted since the plan was made, so every record in it was
                        // acknowledged meanwhile: plan again from the new state.
                        vanished = true;
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
            if !vanished {
                return Ok(out);
            }
        }
    }

    fn retains(&self, path: &Path) -> bool {
        self.lock_any().segments.iter().any(|s| s.path == path)
    }

    /// Decides, under the state lock, which frames a read takes from which segment.
    fn plan_read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(Vec<ReadChunk>, u64), BufferError> {
        let state = self.lock()?;
        let mut chunks = Vec::new();
        let mut taken = 0;
        let mut budget = max_bytes;
        let mut seq = from_seq.max(state.watermark);
        for segment in &state.segments {
            if segment.end_seq() <= seq {
                continue;
            }
            let first = usize::try_from(seq.saturating_sub(segment.first_seq))
                .expect("an index into an in-memory offset table fits in usize");
            let mut last = first;
            let mut wanted = Vec::new();
            let mut full = false;
            for i in first..segment.offsets.len() {
                let record_seq = segment.first_seq + i as u64;
                if state.acked.contains(&record_seq) {
                    last = i + 1;
                    continue;
                }
                let size =
                    (segment.frame_end(i) - segment.offsets[i]) as usize - record::HEADER_LEN;
                if taken + wanted.len() >= max_records
                    || (!(taken == 0 && wanted.is_empty()) && size > budget)
                {
                    full = true;
                    break;
                }
                budget = budget.saturating_sub(size);
                wanted.push(record_seq);
                last = i + 1;
            }
            if !wanted.is_empty() {
                taken += wanted.len();
                let mut bounds = segment.offsets[first..last].to_vec();
                bounds.push(segment.frame_end(last - 1));
                chunks.push(ReadChunk {
                    path: segment.path.clone(),
                    first_seq: segment.first_seq + first as u64,
                    bounds,
                    wanted,
                });
            }
            if full {
                break;
            }
            seq = segment.end_seq();
        }
        Ok((chunks, state.verified_below))
    }

    /// Reads one chunk's frames in one read and appends the wanted records to `out`,
    /// sharing one allocation.
    fn read_chunk(
        &self,
        chunk: &ReadChunk,
        verified_below: u64,
        out: &mut Vec<(u64, Bytes)>,
    ) -> Result<(), BufferError> {
        let (Some(&start), Some(&end)) = (chunk.bounds.first(), chunk.bounds.last()) else {
            return Ok(());
        };
        let len = usize::try_from(end - start)
            .expect("the frames of one read were sized from in-memory records");
        let bytes = Bytes::from(
            self.storage
                .read_range(&chunk.path, start, len)
                .map_err(|e| BufferError::io("reading", &chunk.path, e))?,
        );
        let mut pos = 0;
        for (i, offset) in chunk.bounds[..chunk.bounds.len() - 1].iter().enumerate() {
            let expected = chunk.first_seq + i as u64;
            let corrupt = |damage| BufferError::Corrupt {
                segment: chunk.path.clone(),
                offset: *offset,
                damage,
            };
            let frame = if expected < verified_below {
                record::decode_unverified(&bytes[pos..])
            } else {
                record::decode(&bytes[pos..])
            }
            .map_err(corrupt)?;
            if frame.seq != expected {
                return Err(corrupt(FrameDamage::Sequence {
                    expected,
                    found: frame.seq,
                }));
            }
            let payload_start = pos + record::HEADER_LEN;
            pos += frame.encoded_len();
            if chunk.wanted.binary_search(&expected).is_ok() {
                out.push((expected, bytes.slice(payload_start..pos)));
            }
        }
        Ok(())
    }

    fn ack(&self, seq: u64) -> Result<(), BufferError> {
        let mut state = self.lock()?;
        if seq >= state.next_seq {
            return Err(BufferError::UnknownSequence {
                seq,
                next_seq: state.next_seq,
            });
        }
        let retained = state
            .segments
            .iter()
            .any(|s| (s.first_seq..s.end_seq()).contains(&seq));
        if seq >= state.watermark && retained {
            state.acked.insert(seq);
            state.advance_watermark();
        }
        let kick = !state.release_requested && state.watermark != state.persisted_watermark;
        if kick {
            state.release_requested = true;
        }
        drop(state);
        if kick {
            self.kick();
        }
        Ok(())
    }

    /// Persists the watermark when due (or `force`d, or before a deletion) and deletes
    /// the segments it fully covers. The file I/O runs without the state lock; the
    /// `releasing` lock keeps ledger writes in order.
    fn release(&self, force: bool) -> Result<(), BufferError> {
        let _releasing = self
            .releasing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (watermark, write) = {
            let mut state = self.lock()?;
            state.release_requested = false;
            let moved = state.watermark != state.persisted_watermark;
            let due = force
                || state.front_deletable()
                || state.ledger_written_at.elapsed() >= ACK_PERSIST_INTERVAL;
            (state.watermark, moved && due)
        };
        if write {
            ledger::write(self.storage.as_ref(), &self.dir, watermark)?;
            let mut state = self.lock()?;
            state.persisted_watermark = state.persisted_watermark.max(watermark);
            state.ledger_written_at = Instant::now();
        }
        let mut removed = {
            let mut state = self.lock()?;
            let mut removed = VecDeque::new();
            while state.front_deletable()
                && state
                    .segments
                    .front()
                    .is_some_and(|s| s.end_seq() <= state.persisted_watermark)
            {
                let Some(segment) = state.segments.pop_front() else {
                    break;
                };
                state.bytes -= segment.len;
                if state.segments.is_empty() {
                    state.active = None;
                }
                removed.push_back(segment);
            }
            removed
        };
        if removed.is_empty() {
            return Ok(());
        }
        while let Some(segment) = removed.front() {
            if let Err(e) = self.storage.remove(&segment.path) {
                let error = BufferError::io("removing", &segment.path, e);
                // Keep the ones not removed, in order, for the next round. Nothing
                // else touches the oldest segments: appends work at the other end,
                // reads skip acknowledged records.
                let mut state = self.lock_any();
                while let Some(segment) = removed.pop_back() {
                    state.bytes += segment.len;
                    state.segments.push_front(segment);
                }
                return Err(error);
            }
            removed.pop_front();
        }
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| BufferError::io("syncing", &self.dir, e))
    }

    fn sync(&self) -> Result<(), BufferError> {
        let target = {
            let mut state = self.lock()?;
            state.synced_at = Instant::now();
            state.unsynced_since = None;
            state.next_seq
        };
        self.commit.wait_durable(target, || self.sync_point())?;
        self.release(true)
    }

    fn stats(&self) -> BufferStats {
        let state = self.lock_any();
        let retained: u64 = state
            .segments
            .iter()
            .map(|s| s.end_seq().saturating_sub(s.first_seq.max(state.watermark)))
            .sum();
        BufferStats {
            entries: retained - state.acked.len() as u64,
            bytes: state.bytes,
            oldest_unacked_seq: (state.watermark < state.next_seq).then_some(state.watermark),
            next_seq: state.next_seq,
            segments: state.segments.len(),
        }
    }

    /// Wakes the background thread to look at what is due.
    fn kick(&self) {
        let mut signal = self.signal.lock().unwrap_or_else(PoisonError::into_inner);
        signal.kicked = true;
        self.wake.notify_one();
    }

    /// When the background thread next has work: a sync the interval policy owes,
    /// a watermark to persist, a segment to delete (`now`: at once). `None`: nothing
    /// until woken.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.commit.failure().is_some() {
            return None;
        }
        let state = self.lock_any();
        let sync = match (self.config.sync, state.unsynced_since) {
            (SyncPolicy::IntervalMs(ms), Some(since)) => {
                since.checked_add(Duration::from_millis(ms))
            }
            _ => None,
        };
        let release = if state.front_deletable() {
            Some(now)
        } else if state.watermark != state.persisted_watermark {
            Some(state.ledger_written_at + ACK_PERSIST_INTERVAL)
        } else {
            None
        };
        match (sync, release) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does what is due now.
    fn run_due(&self) -> Result<(), BufferError> {
        let target = {
            let mut state = self.lock()?;
            match (self.config.sync, state.unsynced_since) {
                (SyncPolicy::IntervalMs(ms), Some(since))
                    if since.elapsed() >= Duration::from_millis(ms) =>
                {
                    state.unsynced_since = None;
                    state.synced_at = Instant::now();
                    Some(state.next_seq)
                }
                _ => None,
            }
        };
        if let Some(target) = target {
            self.commit.wait_durable(target, || self.sync_point())?;
        }
        self.release(false)
    }

    /// The background thread: sleeps until something is due or it is woken, does it,
    /// and stops when the buffer is dropped.
    fn maintain(&self) {
        let mut signal = self.signal.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if signal.stop {
                return;
            }
            #[cfg(test)]
            if signal.fail {
                panic!("injected failure of the disk buffer's background thread");
            }
            if signal.kicked {
                signal.kicked = false;
            } else {
                let now = Instant::now();
                match self.next_due(now) {
                    Some(due) if due <= now => {}
                    Some(due) => {
                        signal = self
                            .wake
                            .wait_timeout(signal, due - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        continue;
                    }
                    None => {
                        signal = self
                            .wake
                            .wait(signal)
                            .unwrap_or_else(PoisonError::into_inner);
                        continue;
                    }
                }
            }
            drop(signal);
            let now = Instant::now();
            let result = if self.next_due(now).is_some_and(|due| due <= now) {
                self.run_due()
            } else {
                Ok(())
            };
            signal = self.signal.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = result {
                tracing::error!(dir = %self.dir.display(), %error, "disk buffer background sync or cleanup failed; retrying");
                if !signal.stop {
                    signal = self
                        .wake
                        .wait_timeout(signal, MAINTENANCE_RETRY)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl Drop for LogBuffer {
    fn drop(&mut self) {
        self.shut();
    }
}

impl BufferEngine for LogBuffer {
    fn append(&self, payloads: &[&[u8]]) -> Result<Range<u64>, BufferError> {
        LogBuffer::append(self, payloads)
    }

    fn read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, BufferError> {
        LogBuffer::read(self, from_seq, max_records, max_bytes)
    }

    fn ack(&self, seq: u64) -> Result<(), BufferError> {
        LogBuffer::ack(self, seq)
    }

    fn sync(&self) -> Result<(), BufferError> {
        LogBuffer::sync(self)
    }

    fn close(&self) -> Result<(), BufferError> {
        LogBuffer::close(self)
    }

    fn stats(&self) -> BufferStats {
        LogBuffer::stats(self)
    }

    fn background_alive(&self) -> bool {
        LogBuffer::background_alive(self)
    }
}
