//! Buffer tests: round trips, restarts, damaged files, injected faults, group commit,
//! and a model-based property test.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use proptest::prelude::*;

use super::*;

/// Fault switches and counters shared by a [`FaultyStorage`] and its files.
#[derive(Debug, Default)]
struct Faults {
    /// Writes store half their bytes, then fail with "no space left on device"...
    enospc: AtomicBool,
    /// ...after this many more writes succeed.
    writes_before_enospc: AtomicUsize,
    /// `sync_data` fails with an I/O error.
    eio_on_sync: AtomicBool,
    /// `sync_data` takes a couple of milliseconds, like a real disk (so that appenders
    /// really do overlap with a sync in progress, even on tmpfs).
    slow_sync: AtomicBool,
    /// Every `sync_data` and `read_range` takes this many milliseconds (a disk
    /// under load).
    slow_io_ms: std::sync::atomic::AtomicU64,
    syncs: AtomicUsize,
}

impl Faults {
    fn stall(&self) {
        let ms = self.slow_io_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

#[derive(Debug)]
struct FaultyStorage {
    faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: FileHandle,
    faults: Arc<Faults>,
}

impl StorageFile for FaultyFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let spared = self
            .faults
            .writes_before_enospc
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if self.faults.enospc.load(Ordering::SeqCst) && !spared {
            self.inner.write_all(&buf[..buf.len() / 2])?;
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        self.inner.write_all(buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        self.faults.stall();
        if self.faults.slow_sync.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if self.faults.eio_on_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected EIO"));
        }
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdStorage.create_dir_all(dir)
    }
    fn open_append(&self, path: &Path) -> io::Result<FileHandle> {
        Ok(Arc::new(FaultyFile {
            inner: StdStorage.open_append(path)?,
            faults: Arc::clone(&self.faults),
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdStorage.read(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.faults.stall();
        StdStorage.read_range(path, offset, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdStorage.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdStorage.remove(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdStorage.exists(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdStorage.list_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdStorage.sync_dir(dir)
    }
    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        StdStorage.modified(path)
    }
}

fn config(sync: SyncPolicy) -> LogConfig {
    LogConfig {
        max_bytes: 1 << 20,
        segment_bytes: 256,
        sync,
    }
}

fn open(dir: &Path, sync: SyncPolicy) -> (LogBuffer, RecoveryReport) {
    LogBuffer::open(dir, config(sync)).expect("open")
}

fn open_faulty(dir: &Path, cfg: LogConfig) -> (LogBuffer, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let storage = Arc::new(FaultyStorage {
        faults: Arc::clone(&faults),
    });
    let (log, _) = LogBuffer::open_with(dir, cfg, storage).expect("open");
    (log, faults)
}

fn payload(i: u64) -> Vec<u8> {
    format!("event number {i:04} with some padding").into_bytes()
}

fn append_n(log: &LogBuffer, n: u64) -> std::ops::Range<u64> {
    let payloads: Vec<Vec<u8>> = (0..n).map(payload).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    log.append(&refs).expect("append")
}

fn read_all(log: &LogBuffer) -> Vec<(u64, Vec<u8>)> {
    log.read(0, usize::MAX, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|(seq, b)| (seq, b.to_vec()))
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Waits for `done`: the background thread deletes acknowledged segments
/// asynchronously. The limit is generous because it waits for `fsync`s, which take
/// seconds on a disk shared with builds.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            out.push((path.clone(), fs::read(&path).expect("read")));
        }
    }
    out.sort();
    out
}

/// A panicked background thread (with `panic = "unwind"`) is reported, so that the
/// ingestor's health can list it; a closed buffer's stopped thread is not a dead one.
#[test]
fn a_dead_background_thread_is_reported_and_a_closed_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), SyncPolicy::IntervalMs(10));
    assert!(log.background_alive());
    log.fail_background();
    eventually("the background thread's death is seen", || {
        !log.background_alive()
    });
    let other = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(other.path(), SyncPolicy::IntervalMs(10));
    log.close().expect("close");
    assert!(log.background_alive(), "stopped on purpose, not dead");
}

#[test]
fn a_second_open_of_a_directory_in_use_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), SyncPolicy::Never);
    append_n(&log, 3);
    let before = snapshot(dir.path());
    let err = LogBuffer::open(dir.path(), config(SyncPolicy::Never)).expect_err("in use");
    assert!(err.is_locked(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("pid={}", std::process::id())) && message.contains("host="),
        "{message}"
    );
    assert!(
        matches!(repair(dir.path()), Err(BufferError::Locked { .. })),
        "repair refuses a live buffer"
    );
    assert_eq!(snapshot(dir.path()), before, "nothing was touched");
    drop(log);
    let (log, report) = open(dir.path(), SyncPolicy::Never);
    assert_eq!(report.entries, 3);
    drop(log);
    repair(dir.path()).expect("repair once closed");
}

#[test]
fn append_read_ack_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert_eq!(report.entries, 0);
    assert_eq!(log.append(&[b"a", b"bb"]).expect("append"), 0..2);
    assert_eq!(log.append(&[b"ccc"]).expect("append"), 2..3);
    assert_eq!(
        read_all(&log),
        vec![
            (0, b"a".to_vec()),
            (1, b"bb".to_vec()),
            (2, b"ccc".to_vec())
        ]
    );
    assert_eq!(log.read(1, 1, usize::MAX).expect("read").len(), 1);
    // The byte budget stops after the first record that fits, but never returns nothing.
    assert_eq!(log.read(0, 10, 1).expect("read").len(), 1);
    assert_eq!(log.read(0, 10, 3).expect("read").len(), 2);
    assert_eq!(log.read(0, 0, usize::MAX).expect("read").len(), 0);

    log.ack(0).expect("ack");
    assert_eq!(read_all(&log)[0].0, 1);
    let stats = log.stats();
    assert_eq!(
        (stats.entries, stats.oldest_unacked_seq, stats.next_seq),
        (2, Some(1), 3)
    );
    assert!(matches!(
        log.ack(3),
        Err(BufferError::UnknownSequence {
            seq: 3,
            next_seq: 3
        })
    ));
    assert!(log
        .append(&[&vec![0; MAX_RECORD_BYTES as usize + 1]])
        .is_err());
}

#[test]
fn sequence_numbers_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), SyncPolicy::Always);
        append_n(&log, 20);
        for seq in 0..5 {
            log.ack(seq).expect("ack");
        }
    }
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert_eq!(
        (report.entries, report.acked_watermark, report.next_seq),
        (15, 5, 20)
    );
    assert_eq!(log.append(&[b"next"]).expect("append"), 20..21);
    assert_eq!(read_all(&log).first().map(|r| r.0), Some(5));

    // Even with every segment acknowledged and deleted, numbering continues.
    for seq in 5..21 {
        log.ack(seq).expect("ack");
    }
    eventually("every segment deleted", || {
        segment_files(dir.path()).is_empty()
    });
    drop(log);
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert_eq!((report.entries, report.next_seq), (0, 21));
    assert_eq!(log.append(&[b"x"]).expect("append"), 21..22);
}

#[test]
fn reopen_after_drop_without_sync_recovers_everything_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = {
        let (log, _) = open(dir.path(), SyncPolicy::Never);
        append_n(&log, 30);
        read_all(&log)
    };
    let (log, report) = open(dir.path(), SyncPolicy::Never);
    assert_eq!(report.entries, 30);
    assert_eq!(report.torn_bytes_truncated, 0);
    assert!(report.quarantined.is_empty());
    assert_eq!(read_all(&log), written);
}

#[test]
fn torn_tail_is_truncated_and_the_rest_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), SyncPolicy::Always);
        append_n(&log, 20);
    }
    let last = segment_files(dir.path()).pop().expect("a segment");
    let len = fs::metadata(&last).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open")
        .set_len(len - 3)
        .expect("truncate");

    let before = inspect(dir.path()).expect("inspect");
    assert_eq!(before.damaged.len(), 1);
    assert!(before.damaged[0].torn_tail);

    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert!(report.quarantined.is_empty());
    assert_eq!(report.entries, 19);
    assert!(report.torn_bytes_truncated > 0);
    let records = read_all(&log);
    assert_eq!(records.len(), 19);
    assert_eq!(records.last().map(|r| r.0), Some(18));
    // The torn record's number was never durably handed out; it is assigned again.
    assert_eq!(log.append(&[b"after"]).expect("append"), 19..20);
    assert!(inspect(dir.path()).expect("inspect").is_clean());
}

/// The buffer holds personal data: its directory (created here, with its parent) is
/// private to the owner, and so is every file in it (segments, ledger, lock,
/// quarantine copies), whatever the umask.
#[cfg(unix)]
#[test]
fn buffer_directories_and_files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("spool").join("buffer");
    {
        let (log, _) = open(&dir, SyncPolicy::Always);
        append_n(&log, 40);
    }
    // Damage a segment so recovery writes quarantine files too.
    let segments = segment_files(&dir);
    assert!(segments.len() >= 3, "test needs several segments");
    let mut bytes = fs::read(&segments[1]).expect("read");
    bytes[16 + payload(0).len() + 20] ^= 0x40;
    fs::write(&segments[1], &bytes).expect("write");
    let (log, report) = open(&dir, SyncPolicy::Always);
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    drop(log);

    let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    for created in [
        root.path().join("spool"),
        dir.clone(),
        dir.join(QUARANTINE_DIR),
    ] {
        assert_eq!(mode(&created), 0o700, "{}", created.display());
    }
    let mut files = 0;
    for sub in [dir.clone(), dir.join(QUARANTINE_DIR)] {
        for entry in fs::read_dir(&sub).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                // A segment rewritten by the test itself keeps the test's mode.
                if path != segments[1] {
                    assert_eq!(mode(&path), 0o600, "{}", path.display());
                    files += 1;
                }
            }
        }
    }
    // Segments, the ledger, the lock file and two quarantine files at least.
    assert!(files >= 6, "{files} files checked");
}

/// A symbolic link planted in the directory in place of a segment (or the ledger, or
/// the lock file) is refused with an error naming it, by recovery, `inspect` and
/// `repair` alike; the file it points at is neither read as a segment nor truncated.
#[cfg(unix)]
#[test]
fn symbolic_links_in_the_buffer_are_refused_and_their_targets_left_alone() {
    let root = tempfile::tempdir().expect("tempdir");
    let precious = root.path().join("precious.txt");
    let content = b"not a segment: recovery would call this damage and truncate it\n";
    fs::write(&precious, content).expect("write");

    for planted in ["00000000000000000000.seg", ledger::LEDGER_FILE, LOCK_FILE] {
        let dir = root.path().join(format!("buffer-{planted}"));
        fs::create_dir(&dir).expect("mkdir");
        let link = dir.join(planted);
        std::os::unix::fs::symlink(&precious, &link).expect("symlink");

        let err = LogBuffer::open(&dir, config(SyncPolicy::Always)).expect_err("a link");
        let text = err.to_string();
        assert!(
            text.contains("symbolic link") && text.contains(planted),
            "{planted}: {text}"
        );
        if planted != LOCK_FILE {
            // The offline tools take the lock too, so only other links reach them.
            for err in [
                inspect(&dir).expect_err("inspect"),
                repair(&dir).expect_err("repair"),
            ] {
                assert!(err.to_string().contains("symbolic link"), "{err}");
            }
        }
        assert_eq!(fs::read(&precious).expect("read"), content, "{planted}");
        assert!(fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink());
    }
}

#[test]
fn damage_in_a_middle_segment_is_quarantined_inspected_and_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), SyncPolicy::Always);
        append_n(&log, 40);
    }
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3, "test needs several segments");
    let victim = &segments[1];
    let victim_name = victim
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    let mut bytes = fs::read(victim).expect("read");
    let frame = 16 + payload(0).len();
    // Flip a payload byte of the second frame.
    bytes[frame + 20] ^= 0x40;
    fs::write(victim, &bytes).expect("write");

    // Inspection reports the damage and modifies nothing.
    let files_before = snapshot(dir.path());
    let report = inspect(dir.path()).expect("inspect");
    assert_eq!(snapshot(dir.path()), files_before);
    assert!(!dir.path().join(QUARANTINE_DIR).exists());
    assert_eq!(report.damaged.len(), 1);
    let damage = &report.damaged[0];
    assert_eq!(
        (damage.segment.as_str(), damage.offset),
        (victim_name.as_str(), frame as u64)
    );
    assert!(matches!(damage.reason, FrameDamage::Checksum { .. }));
    assert!(!damage.torn_tail);

    // Repair quarantines it; a second inspection is clean.
    let repaired = repair(dir.path()).expect("repair");
    assert!(repaired.is_clean(), "{repaired:?}");
    assert!(inspect(dir.path()).expect("inspect").is_clean());
    let quarantined: Vec<_> = fs::read_dir(dir.path().join(QUARANTINE_DIR))
        .expect("quarantine dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(quarantined.len(), 2, "the bytes and a report");
    let text = quarantined
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| fs::read_to_string(p).expect("report"))
        .expect("a report");
    assert!(text.contains(&victim_name) && text.contains(&format!("offset: {frame}")));

    // Opening now finds a gap: the first record of the victim survives, later segments
    // are intact, and the gap does not pin the watermark.
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert!(report.quarantined.is_empty());
    let records = read_all(&log);
    let victim_first = segments[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u64>().ok())
        .expect("seq");
    let third_first = segments[2]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u64>().ok())
        .expect("seq");
    let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
    assert!(seqs.contains(&victim_first));
    assert!(!seqs.contains(&(victim_first + 1)));
    assert!(seqs.contains(&third_first) && seqs.contains(&39));
    for (seq, bytes) in &records {
        assert_eq!(bytes, &payload(*seq));
    }
    for seq in seqs {
        log.ack(seq).expect("ack");
    }
    assert_eq!(log.stats().entries, 0);
    eventually("every segment deleted", || {
        segment_files(dir.path()).is_empty()
    });
}

#[test]
fn recovery_quarantines_damage_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), SyncPolicy::Always);
        append_n(&log, 40);
    }
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = fs::read(&first).expect("read");
    bytes[4] ^= 0x01; // the first frame's checksum
    fs::write(&first, &bytes).expect("write");
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert_eq!(report.quarantined.len(), 1);
    let range = &report.quarantined[0];
    assert_eq!(range.offset, 0);
    assert_eq!(range.len, bytes.len() as u64);
    assert_eq!(fs::read(&range.copy).expect("copy"), bytes);
    // The emptied segment is gone; the others are intact.
    assert!(!first.exists());
    let lost = (bytes.len() / (16 + payload(0).len())) as u64;
    assert_eq!(report.entries, 40 - lost);
    assert_eq!(
        log.stats().oldest_unacked_seq,
        read_all(&log).first().map(|r| r.0)
    );
}

#[test]
fn full_buffer_refuses_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        max_bytes: 200,
        segment_bytes: 100,
        sync: SyncPolicy::Always,
    };
    let (log, _) = LogBuffer::open(dir.path(), cfg).expect("open");
    log.append(&[&[0; 84], &[1; 84]]).expect("fits exactly");
    let files = snapshot(dir.path());
    let err = log.append(&[b"x"]).expect_err("full");
    assert!(err.is_full());
    assert!(matches!(
        err,
        BufferError::Full {
            used_bytes: 200,
            requested_bytes: 17,
            max_bytes: 200
        }
    ));
    assert_eq!(snapshot(dir.path()), files);
    assert_eq!(log.stats().next_seq, 2);
    // Acknowledging frees whole segments, and space with them (the background thread
    // deletes the segment without waiting for another call).
    log.ack(0).expect("ack");
    eventually("the first segment deleted", || log.stats().segments == 1);
    assert_eq!(log.append(&[b"x"]).expect("append"), 2..3);
}

#[test]
fn enospc_leaves_the_log_consistent_and_appendable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, faults) = open_faulty(dir.path(), config(SyncPolicy::Always));
    append_n(&log, 3);
    let before = snapshot(dir.path());
    faults.enospc.store(true, Ordering::SeqCst);
    // Large enough to roll into new segments mid-batch.
    let payloads: Vec<Vec<u8>> = (0..20).map(payload).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let err = log.append(&refs).expect_err("no space");
    assert!(err.is_full(), "{err}");
    assert!(matches!(err, BufferError::Io { .. }));
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(log.stats().next_seq, 3);

    // Fail the second write of the batch, after it rolled to a new segment: the first
    // segment's part must be cut back too and the new segment removed.
    faults.writes_before_enospc.store(1, Ordering::SeqCst);
    let err = log.append(&refs).expect_err("no space");
    assert!(err.is_full(), "{err}");
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(log.stats().next_seq, 3);
    assert_eq!(read_all(&log).len(), 3);

    faults.enospc.store(false, Ordering::SeqCst);
    assert_eq!(log.append(&refs).expect("append"), 3..23);
    drop(log);
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert_eq!((report.entries, report.torn_bytes_truncated), (23, 0));
    assert_eq!(read_all(&log).len(), 23);
}

#[test]
fn failed_sync_poisons_until_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, faults) = open_faulty(dir.path(), config(SyncPolicy::Always));
    append_n(&log, 2);
    faults.eio_on_sync.store(true, Ordering::SeqCst);
    let err = log.append(&[b"x"]).expect_err("sync fails");
    assert!(
        matches!(err, BufferError::Io { .. }) && !err.is_full(),
        "{err}"
    );
    faults.eio_on_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        log.append(&[b"y"]),
        Err(BufferError::Poisoned { .. })
    ));
    drop(log);
    let (log, report) = open(dir.path(), SyncPolicy::Always);
    assert_eq!(report.entries, 3);
    assert_eq!(log.append(&[b"z"]).expect("append"), 3..4);
}

#[test]
fn segments_are_deleted_once_fully_acknowledged_and_not_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), SyncPolicy::Always);
    append_n(&log, 20);
    let segments = segment_files(dir.path());
    let second_first: u64 = segments[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("seq");
    for seq in 0..second_first - 1 {
        log.ack(seq).expect("ack");
    }
    // Long enough for the background thread to persist the watermark.
    std::thread::sleep(super::engine::ACK_PERSIST_INTERVAL * 3);
    assert!(
        segments[0].exists(),
        "one record of the first segment is unacknowledged"
    );
    log.ack(second_first - 1).expect("ack");
    eventually("the first segment deleted", || !segments[0].exists());
    assert!(segments[1].exists());
    assert_eq!(log.stats().segments, segments.len() - 1);
}

/// The background thread, woken by the first acknowledgement and waiting for the
/// ledger's 100 ms, finds the segment deletable when it wakes (later acks do not wake
/// it again) and deletes it. (It used to take "deletable now" for a moment in the
/// future and spin.)
#[test]
fn a_segment_acknowledged_while_the_ledger_write_waits_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), SyncPolicy::Never);
    append_n(&log, 20);
    let segments = segment_files(dir.path());
    let second_first: u64 = segments[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("seq");
    log.ack(0).expect("ack");
    // The thread takes the wake-up and waits for the ledger's interval.
    std::thread::sleep(std::time::Duration::from_millis(20));
    for seq in 1..second_first {
        log.ack(seq).expect("ack");
    }
    eventually("the first segment deleted", || !segments[0].exists());
    assert_eq!(log.stats().segments, segments.len() - 1);
}

#[test]
fn out_of_order_acks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), SyncPolicy::Never);
    append_n(&log, 10);
    for seq in [3, 1, 2, 9, 2] {
        log.ack(seq).expect("ack");
    }
    let seqs: Vec<u64> = read_all(&log).iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![0, 4, 5, 6, 7, 8]);
    assert_eq!(log.stats().oldest_unacked_seq, Some(0));
    assert_eq!(log.stats().entries, 6);
    log.ack(0).expect("ack");
    assert_eq!(log.stats().oldest_unacked_seq, Some(4));
    // Acknowledgements above the watermark are not persisted: they are redelivered.
    drop(log);
    let (log, report) = open(dir.path(), SyncPolicy::Never);
    assert_eq!(report.acked_watermark, 4);
    let seqs: Vec<u64> = read_all(&log).iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8, 9]);
}

#[test]
fn group_commit_shares_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        max_bytes: 1 << 24,
        segment_bytes: 1 << 20,
        sync: SyncPolicy::Always,
    };
    let (log, faults) = open_faulty(dir.path(), cfg);
    faults.slow_sync.store(true, Ordering::SeqCst);
    let syncs_before = faults.syncs.load(Ordering::SeqCst);
    let log = Arc::new(log);
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..PER_THREAD {
                    let body = format!("thread {t} record {i}");
                    seqs.extend(log.append(&[body.as_bytes()]).expect("append"));
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    seqs.sort_unstable();
    let appends = THREADS * PER_THREAD;
    assert_eq!(seqs, (0..appends as u64).collect::<Vec<_>>());
    let syncs = faults.syncs.load(Ordering::SeqCst) - syncs_before;
    assert!(
        syncs >= 1 && syncs < appends,
        "{syncs} syncs for {appends} appends"
    );
}

#[test]
fn interval_policy_syncs_when_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |sync| LogConfig {
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        sync,
    };
    let (log, faults) = open_faulty(dir.path(), cfg(SyncPolicy::IntervalMs(0)));
    let before = faults.syncs.load(Ordering::SeqCst);
    append_n(&log, 1);
    append_n(&log, 1);
    assert_eq!(faults.syncs.load(Ordering::SeqCst) - before, 2);
    drop(log);

    // Not due yet: the append returns unsynced, and an explicit sync covers it.
    let (log, faults) = open_faulty(dir.path(), cfg(SyncPolicy::IntervalMs(3_600_000)));
    let before = faults.syncs.load(Ordering::SeqCst);
    append_n(&log, 5);
    assert_eq!(faults.syncs.load(Ordering::SeqCst), before, "not due yet");
    log.sync().expect("sync");
    assert_eq!(faults.syncs.load(Ordering::SeqCst) - before, 1);
}

/// The power-loss bound of `IntervalMs`: every append is synced at most one interval
/// after it returns, also when no append follows it (the last records of a burst), and
/// an idle buffer does not sync at all. Counted through the fault-injecting storage.
#[test]
fn interval_policy_syncs_the_end_of_a_burst_without_another_append() {
    use std::time::{Duration, Instant};
    const INTERVAL: Duration = Duration::from_millis(200);
    // How late a sync may be on a loaded test machine (thread wake-up, other builds).
    const SLACK: Duration = Duration::from_millis(800);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        max_bytes: 1 << 24,
        segment_bytes: 1 << 22,
        sync: SyncPolicy::IntervalMs(INTERVAL.as_millis() as u64),
    };
    let (log, faults) = open_faulty(dir.path(), cfg);
    let syncs = || faults.syncs.load(Ordering::SeqCst);
    let wait_for_sync = |after: usize, since: Instant| -> Duration {
        while syncs() == after {
            assert!(
                since.elapsed() < INTERVAL + SLACK,
                "no sync within {:?} of the last append",
                INTERVAL + SLACK
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        since.elapsed()
    };

    // A single append right after opening: not due, so it returns unsynced...
    let before = syncs();
    append_n(&log, 3);
    let appended = Instant::now();
    assert_eq!(syncs(), before, "the append itself does not sync");
    // ...and the buffer syncs it by itself one interval later, not before.
    let took = wait_for_sync(before, appended);
    assert!(
        took >= INTERVAL - Duration::from_millis(5),
        "synced after {took:?}"
    );
    assert_eq!(syncs(), before + 1);

    // A burst of appends for a few intervals: syncs keep to the interval (not one per
    // append), and the burst's last append is synced without another append.
    let before = syncs();
    let started = Instant::now();
    let mut appends = 0;
    while started.elapsed() < INTERVAL * 4 {
        append_n(&log, 1);
        appends += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let during = syncs() - before;
    assert!(
        (2..=6).contains(&during),
        "{during} syncs for {appends} appends over {:?}",
        INTERVAL * 4
    );
    // The burst's last append may have synced itself; one more right after an
    // explicit sync is synced without another append: by the background thread (which
    // may already be awake for a due time computed before the explicit sync, so the
    // sync can come at once under load).
    log.sync().expect("sync");
    let before = syncs();
    append_n(&log, 1);
    let appended = Instant::now();
    wait_for_sync(before, appended);

    // Idle: nothing left unsynced, so no more syncs.
    let idle = syncs();
    std::thread::sleep(INTERVAL * 3);
    assert_eq!(syncs(), idle, "an idle buffer does not sync");
}

/// A slow disk holds up only the thread doing the I/O: acknowledgements (librdkafka's
/// delivery-report thread) and appends go on while a read copies files and while the
/// ledger is written and acknowledged segments are deleted.
#[test]
fn slow_disk_io_does_not_hold_up_acks_or_appends() {
    use std::time::{Duration, Instant};
    const SLOW: Duration = Duration::from_millis(400);
    const QUICK: Duration = Duration::from_millis(150);
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, faults) = open_faulty(dir.path(), config(SyncPolicy::Never));
    append_n(&log, 40);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3, "test needs several segments");
    let second_first: u64 = segments[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("seq");
    faults
        .slow_io_ms
        .store(SLOW.as_millis() as u64, Ordering::SeqCst);
    let log = Arc::new(log);
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.read(0, usize::MAX, usize::MAX).expect("read").len())
    };
    // Let the reader get into its (slow) file read.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    // Acknowledging the whole first segment makes the ledger due and the segment
    // deletable: both are slow I/O, and neither may happen on this thread.
    for seq in 0..second_first {
        log.ack(seq).expect("ack");
    }
    log.append(&[b"meanwhile"]).expect("append");
    let took = started.elapsed();
    assert!(
        took < QUICK,
        "acks and an append took {took:?} behind a slow read and a slow ledger write"
    );
    assert_eq!(reader.join().expect("reader"), 40);
    eventually("the first segment deleted", || !segments[0].exists());
    faults.slow_io_ms.store(0, Ordering::SeqCst);
}

#[test]
fn open_deletes_segments_a_persisted_watermark_covers() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), SyncPolicy::Never);
        append_n(&log, 20);
    }
    // As if the process died after persisting the watermark but before deleting.
    super::ledger::write(&StdStorage, dir.path(), 20).expect("ledger");
    let (log, report) = open(dir.path(), SyncPolicy::Never);
    assert_eq!(
        (report.entries, report.segments, report.next_seq),
        (0, 0, 20)
    );
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(log.append(&[b"x"]).expect("append"), 20..21);
}

#[test]
fn damaged_ledger_means_redelivery_not_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), SyncPolicy::Never);
        append_n(&log, 5);
        log.ack(0).expect("ack");
        log.sync().expect("sync");
    }
    fs::write(dir.path().join("ledger"), b"garbage").expect("write");
    assert!(!inspect(dir.path()).expect("inspect").is_clean());
    let (log, report) = open(dir.path(), SyncPolicy::Never);
    assert!(report.ledger_damaged);
    assert_eq!(read_all(&log).len(), 5);
    assert!(inspect(dir.path()).expect("inspect").is_clean());
}

#[test]
fn concurrent_appends_reads_and_acks_drain_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = LogBuffer::open(
        dir.path(),
        LogConfig {
            max_bytes: 1 << 20,
            segment_bytes: 512,
            sync: SyncPolicy::IntervalMs(1),
        },
    )
    .expect("open");
    let log = Arc::new(log);
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 200;
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..PER_WRITER {
                    log.append(&[&payload(i)]).expect("append");
                }
            })
        })
        .collect();
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut next = 0;
            while next < WRITERS * PER_WRITER {
                for (seq, bytes) in log.read(next, 16, 4096).expect("read") {
                    assert_eq!(seq, next, "records arrive in order, without gaps");
                    assert_eq!(bytes.len(), payload(0).len());
                    log.ack(seq).expect("ack");
                    next = seq + 1;
                }
                std::thread::yield_now();
            }
        })
    };
    for writer in writers {
        writer.join().expect("writer");
    }
    reader.join().expect("reader");
    let stats = log.stats();
    assert_eq!((stats.entries, stats.oldest_unacked_seq), (0, None));
    assert_eq!(stats.next_seq, WRITERS * PER_WRITER);
    eventually("every segment deleted", || {
        segment_files(dir.path()).is_empty()
    });
}

#[test]
fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        max_bytes: 10,
        segment_bytes: 100,
        sync: SyncPolicy::Never,
    };
    assert!(matches!(
        LogBuffer::open(dir.path(), cfg),
        Err(BufferError::InvalidConfig {
            field: "segment_bytes",
            ..
        })
    ));
}

/// An operation of the model test.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    /// Acknowledge the n-th (modulo) unacknowledged record.
    Ack(usize),
    Read {
        from: u64,
        max_records: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..5).prop_map(Op::Append),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => (0u64..80, 1usize..12).prop_map(|(from, max_records)| Op::Read { from, max_records }),
        1 => Just(Op::Reopen),
    ]
}

/// The specification: records in order with an acknowledged flag; the front is popped
/// once acknowledged (that is the watermark).
#[derive(Debug, Default)]
struct Model {
    records: VecDeque<(u64, Vec<u8>, bool)>,
    next_seq: u64,
}

impl Model {
    fn read(&self, from: u64, max_records: usize) -> Vec<(u64, Vec<u8>)> {
        self.records
            .iter()
            .filter(|(seq, _, acked)| *seq >= from && !acked)
            .take(max_records)
            .map(|(seq, p, _)| (*seq, p.clone()))
            .collect()
    }

    fn ack(&mut self, n: usize) -> Option<u64> {
        let unacked = self.records.iter().filter(|r| !r.2).count();
        if unacked == 0 {
            return None;
        }
        let record = self.records.iter_mut().filter(|r| !r.2).nth(n % unacked)?;
        record.2 = true;
        let seq = record.0;
        while self.records.front().is_some_and(|r| r.2) {
            self.records.pop_front();
        }
        Some(seq)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig { max_bytes: 1 << 24, segment_bytes: 128, sync: SyncPolicy::Never };
        let mut log = LogBuffer::open(dir.path(), cfg).expect("open").0;
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(payloads) => {
                    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    let range = log.append(&refs).expect("append");
                    prop_assert_eq!(range.clone(), model.next_seq..model.next_seq + refs.len() as u64);
                    model.next_seq = range.end;
                    for (seq, p) in range.zip(payloads) {
                        model.records.push_back((seq, p, false));
                    }
                }
                Op::Ack(n) => {
                    if let Some(seq) = model.ack(n) {
                        log.ack(seq).expect("ack");
                    }
                }
                Op::Read { from, max_records } => {
                    let got: Vec<(u64, Vec<u8>)> = log
                        .read(from, max_records, usize::MAX)
                        .expect("read")
                        .into_iter()
                        .map(|(s, b)| (s, b.to_vec()))
                        .collect();
                    prop_assert_eq!(got, model.read(from, max_records));
                }
                Op::Reopen => {
                    drop(log);
                    let (reopened, report) = LogBuffer::open(dir.path(), cfg).expect("reopen");
                    log = reopened;
                    prop_assert!(report.quarantined.is_empty());
                    prop_assert_eq!(report.torn_bytes_truncated, 0);
                    // Acknowledgements above the watermark are forgotten.
                    for record in &mut model.records {
                        record.2 = false;
                    }
                }
            }
            // Acknowledged segments are deleted by the background thread; a sync
            // deletes them at once, so files and stats can be compared.
            log.sync().expect("sync");
            let stats = log.stats();
            prop_assert_eq!(stats.next_seq, model.next_seq);
            prop_assert_eq!(stats.entries, model.records.iter().filter(|r| !r.2).count() as u64);
            prop_assert_eq!(stats.oldest_unacked_seq, model.records.front().map(|r| r.0));
            prop_assert_eq!(stats.segments, segment_files(dir.path()).len());
            prop_assert!(stats.bytes >= 16 * stats.entries);
        }
        prop_assert_eq!(log.read(0, usize::MAX, usize::MAX).expect("read").len(), model.read(0, usize::MAX).len());
        prop_assert!(inspect(dir.path()).expect("inspect").is_clean());
    }
}

#[test]
fn reads_verify_records_appended_since_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), SyncPolicy::Never);
    append_n(&log, 1);
    let segment = dir.path().join(super::segment::segment_name(0));
    let mut bytes = fs::read(&segment).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&segment, &bytes).expect("damage");
    match log.read(0, 10, 1 << 20) {
        Err(BufferError::Corrupt {
            damage: FrameDamage::Checksum { .. },
            ..
        }) => {}
        other => panic!("expected a checksum error, got {other:?}"),
    }
}
