//! The [`BufferEngine`] contract, checked the same way for every engine.
//!
//! Each check is a generic function taking a way to open an engine in a directory;
//! [`conformance_tests!`] instantiates all of them for one engine. Engine-specific
//! behaviour (corruption, group commit, segment deletion) is tested in `tests.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;

fn payload(i: u64) -> Vec<u8> {
    format!("record {i:05} with a little padding").into_bytes()
}

fn append_n<E: BufferEngine>(engine: &E, from: u64, n: u64) -> std::ops::Range<u64> {
    let payloads: Vec<Vec<u8>> = (from..from + n).map(payload).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    engine.append(&refs).expect("append")
}

fn read_all<E: BufferEngine>(engine: &E) -> Vec<(u64, Vec<u8>)> {
    engine
        .read(0, usize::MAX, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|(seq, b)| (seq, b.to_vec()))
        .collect()
}

/// Appends, retrying while the buffer is full: acknowledgements free space
/// asynchronously (the log's background thread deletes acknowledged segments).
fn append_when_room<E: BufferEngine>(engine: &E, payloads: &[&[u8]]) -> std::ops::Range<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match engine.append(payloads) {
            Ok(range) => return range,
            Err(err) if err.is_full() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(err) => panic!("no room after the acknowledgements: {err}"),
        }
    }
}

fn seqs<E: BufferEngine>(engine: &E) -> Vec<u64> {
    read_all(engine).into_iter().map(|r| r.0).collect()
}

pub(super) fn round_trip<E: BufferEngine>(open: impl Fn(&Path) -> E) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    assert_eq!(engine.append(&[]).expect("empty append"), 0..0);
    assert_eq!(engine.append(&[b"a", b"bb"]).expect("append"), 0..2);
    assert_eq!(engine.append(&[b"ccc"]).expect("append"), 2..3);
    assert_eq!(
        read_all(&engine),
        vec![
            (0, b"a".to_vec()),
            (1, b"bb".to_vec()),
            (2, b"ccc".to_vec())
        ]
    );
    // Record limit, and reading from the middle.
    let some = engine.read(1, 1, usize::MAX).expect("read");
    assert_eq!(some.len(), 1);
    assert_eq!((some[0].0, &some[0].1[..]), (1, &b"bb"[..]));
    assert!(engine.read(0, 0, usize::MAX).expect("read").is_empty());
    assert!(engine.read(3, 10, usize::MAX).expect("read").is_empty());
    // The byte budget stops before the first record that does not fit, but the first
    // record is always returned.
    assert_eq!(engine.read(0, 10, 0).expect("read").len(), 1);
    assert_eq!(engine.read(2, 10, 1).expect("read").len(), 1);
    assert_eq!(engine.read(0, 10, 3).expect("read").len(), 2);
    assert_eq!(engine.read(0, 10, 2).expect("read").len(), 1);

    engine.ack(0).expect("ack");
    engine.ack(0).expect("a repeated ack is harmless");
    assert_eq!(seqs(&engine), vec![1, 2]);
    assert!(matches!(
        engine.ack(3),
        Err(BufferError::UnknownSequence {
            seq: 3,
            next_seq: 3
        })
    ));
    assert!(matches!(
        engine.append(&[b"ok", &vec![0; MAX_RECORD_BYTES as usize + 1]]),
        Err(BufferError::RecordTooLarge { .. })
    ));
    assert_eq!(engine.stats().next_seq, 3, "a refused batch uses no number");
    engine.ack(1).expect("ack");
    engine.ack(2).expect("ack");
    assert!(read_all(&engine).is_empty());
    engine.sync().expect("sync");
}

pub(super) fn out_of_order_acks<E: BufferEngine>(open: impl Fn(&Path) -> E) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    append_n(&engine, 0, 10);
    for seq in [3, 1, 2, 9, 2] {
        engine.ack(seq).expect("ack");
    }
    assert_eq!(seqs(&engine), vec![0, 4, 5, 6, 7, 8]);
    // Reads from inside and below acknowledged runs skip them.
    let from_one: Vec<u64> = engine
        .read(1, 2, usize::MAX)
        .expect("read")
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(from_one, vec![4, 5]);
    assert_eq!(engine.stats().oldest_unacked_seq, Some(0));
    assert_eq!(engine.stats().entries, 6);
    engine.ack(0).expect("ack");
    assert_eq!(engine.stats().oldest_unacked_seq, Some(4));
    for seq in 4..9 {
        engine.ack(seq).expect("ack");
    }
    assert!(read_all(&engine).is_empty());
    assert_eq!(engine.stats().oldest_unacked_seq, None);
    assert_eq!(engine.append(&[b"next"]).expect("append"), 10..11);
    assert_eq!(seqs(&engine), vec![10]);
}

pub(super) fn reopen_keeps_unacked_and_never_reuses<E: BufferEngine>(open: impl Fn(&Path) -> E) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = open(dir.path());
        append_n(&engine, 0, 20);
        for seq in (0..5).chain([10]) {
            engine.ack(seq).expect("ack");
        }
        engine.sync().expect("sync");
    }
    let engine = open(dir.path());
    let stats = engine.stats();
    assert_eq!(stats.next_seq, 20);
    assert_eq!(stats.oldest_unacked_seq, Some(5));
    let records = read_all(&engine);
    // Every unacknowledged record is back, intact. An acknowledgement above the
    // lowest unacknowledged record may be forgotten (redelivery, never loss).
    let unacked: Vec<(u64, Vec<u8>)> = (5..20)
        .filter(|&s| s != 10)
        .map(|s| (s, payload(s)))
        .collect();
    let without_ten: Vec<(u64, Vec<u8>)> = records.iter().filter(|r| r.0 != 10).cloned().collect();
    assert_eq!(without_ten, unacked);
    assert!(stats.entries == 14 || stats.entries == 15);
    assert_eq!(stats.entries, records.len() as u64);
    assert_eq!(engine.append(&[b"next"]).expect("append"), 20..21);

    // With every record acknowledged (and its space reclaimed), numbering continues.
    for seq in 5..21 {
        engine.ack(seq).expect("ack");
    }
    assert_eq!(engine.stats().entries, 0);
    drop(engine);
    let engine = open(dir.path());
    let stats = engine.stats();
    assert_eq!((stats.entries, stats.next_seq), (0, 21));
    assert_eq!(stats.oldest_unacked_seq, None);
    assert!(read_all(&engine).is_empty());
    assert_eq!(engine.append(&[b"x"]).expect("append"), 21..22);

    // Unsynced records written before a clean close are kept too.
    append_n(&engine, 22, 5);
    drop(engine);
    let engine = open(dir.path());
    assert_eq!(seqs(&engine), (21..27).collect::<Vec<_>>());
}

/// `open_bounded(dir, max_bytes)` opens an engine whose bound is `max_bytes`.
pub(super) fn full_is_refused_before_writing<E: BufferEngine>(
    open_bounded: impl Fn(&Path, u64) -> E,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open_bounded(dir.path(), 4096);
    let record = [7u8; 100];
    let mut appended = 0u64;
    let err = loop {
        match engine.append(&[&record, &record]) {
            Ok(range) => {
                assert_eq!(range, appended..appended + 2);
                appended += 2;
                assert!(appended < 100, "a 4 KiB buffer cannot hold this many");
            }
            Err(err) => break err,
        }
    };
    assert!(err.is_full(), "{err}");
    assert!(matches!(err, BufferError::Full { .. }));
    assert!(appended > 0);
    let before = engine.stats();
    assert!(before.bytes <= 4096);
    assert_eq!(
        before.next_seq, appended,
        "the refused append used no number"
    );
    let contents = read_all(&engine);
    assert_eq!(
        contents,
        (0..appended)
            .map(|s| (s, record.to_vec()))
            .collect::<Vec<_>>()
    );
    let err = engine.append(&[&record[..]; 3]).expect_err("still full");
    assert!(err.is_full());
    assert_eq!(engine.stats(), before);
    assert_eq!(read_all(&engine), contents);

    // Acknowledging everything makes room again, and numbering continues.
    let next = before.next_seq;
    for seq in 0..next {
        engine.ack(seq).expect("ack");
    }
    assert_eq!(engine.stats().entries, 0);
    assert_eq!(
        append_when_room(&engine, &[&record, &record]),
        next..next + 2
    );
    // Filled again and drained again.
    while engine.append(&[&record]).is_ok() {}
    let stats = engine.stats();
    for seq in next..stats.next_seq {
        engine.ack(seq).expect("ack");
    }
    assert_eq!(
        append_when_room(&engine, &[&record]),
        stats.next_seq..stats.next_seq + 1
    );
}

pub(super) fn concurrent_appenders<E: BufferEngine + 'static>(open: impl Fn(&Path) -> E) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(open(dir.path()));
    const THREADS: u64 = 8;
    const BATCHES: u64 = 40;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                let mut ranges = Vec::new();
                for b in 0..BATCHES {
                    let n = (t + b) % 3 + 1;
                    let payloads: Vec<Vec<u8>> = (0..n)
                        .map(|i| format!("thread {t} batch {b} item {i}").into_bytes())
                        .collect();
                    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    let range = engine.append(&refs).expect("append");
                    assert_eq!(range.end - range.start, n);
                    ranges.push((range, payloads));
                }
                ranges
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    let mut ranges = Vec::new();
    for thread in threads {
        for (range, payloads) in thread.join().expect("appender") {
            for (seq, payload) in range.clone().zip(payloads) {
                assert!(expected.insert(seq, payload).is_none(), "{seq} given twice");
            }
            ranges.push(range);
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut next = 0;
    for range in &ranges {
        assert_eq!(range.start, next, "ranges are consecutive");
        next = range.end;
    }
    assert_eq!(engine.stats().next_seq, next);
    assert_eq!(engine.stats().entries, next);
    let records = read_all(&*engine);
    assert_eq!(records, expected.into_iter().collect::<Vec<_>>());
    // Paging through with small reads sees the same.
    let mut from = 0;
    let mut paged = 0;
    loop {
        let page = engine.read(from, 7, 200).expect("read");
        let Some(last) = page.last() else { break };
        for (i, (seq, _)) in page.iter().enumerate() {
            assert_eq!(*seq, from + i as u64);
        }
        from = last.0 + 1;
        paged += page.len() as u64;
    }
    assert_eq!(paged, next);
}

/// Checks the stats against a model after every step of a fixed workload.
pub(super) fn stats_agree<E: BufferEngine>(open: impl Fn(&Path) -> E) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let mut model: BTreeMap<u64, usize> = BTreeMap::new();
    let mut next = 0u64;
    let check = |engine: &E, model: &BTreeMap<u64, usize>, next: u64| {
        // Space is reclaimed at the latest by a sync.
        engine.sync().expect("sync");
        let stats = engine.stats();
        assert_eq!(stats.entries, model.len() as u64);
        assert_eq!(stats.next_seq, next);
        assert_eq!(stats.oldest_unacked_seq, model.keys().next().copied());
        let payload_bytes: u64 = model.values().map(|&l| l as u64).sum();
        assert!(stats.bytes >= payload_bytes);
        assert_eq!(stats.bytes == 0, model.is_empty(), "{stats:?}");
        let read: Vec<u64> = seqs(engine);
        assert_eq!(read, model.keys().copied().collect::<Vec<_>>());
    };
    check(&engine, &model, next);
    for round in 0..30u64 {
        let n = round % 4 + 1;
        let range = append_n(&engine, next, n);
        for seq in range {
            model.insert(seq, payload(seq).len());
        }
        next += n;
        check(&engine, &model, next);
        // Acknowledge an irregular selection, sometimes the oldest, sometimes not.
        let keys: Vec<u64> = model.keys().copied().collect();
        for (i, seq) in keys.into_iter().enumerate() {
            if (i as u64 + round).is_multiple_of(3) {
                engine.ack(seq).expect("ack");
                model.remove(&seq);
            }
        }
        check(&engine, &model, next);
    }
    for seq in model.keys().copied().collect::<Vec<_>>() {
        engine.ack(seq).expect("ack");
        model.remove(&seq);
    }
    check(&engine, &model, next);
}

/// Instantiates every conformance check for one engine, in a module `$name`.
/// `$open` opens the engine in a directory; `$bounded` does the same with a given
/// `max_bytes`.
macro_rules! conformance_tests {
    ($name:ident, open = $open:expr, bounded = $bounded:expr $(,)?) => {
        mod $name {
            use super::*;

            #[test]
            fn round_trip() {
                super::round_trip($open);
            }

            #[test]
            fn out_of_order_acks() {
                super::out_of_order_acks($open);
            }

            #[test]
            fn reopen_keeps_unacked_and_never_reuses() {
                super::reopen_keeps_unacked_and_never_reuses($open);
            }

            #[test]
            fn full_is_refused_before_writing() {
                super::full_is_refused_before_writing($bounded);
            }

            #[test]
            fn concurrent_appenders() {
                super::concurrent_appenders($open);
            }

            #[test]
            fn stats_agree() {
                super::stats_agree($open);
            }
        }
    };
}

conformance_tests!(
    log_engine,
    open = |dir: &Path| {
        let config = LogConfig {
            max_bytes: 1 << 20,
            segment_bytes: 512,
            sync: SyncPolicy::Always,
        };
        LogBuffer::open(dir, config).expect("open").0
    },
    bounded = |dir: &Path, max_bytes: u64| {
        let config = LogConfig {
            max_bytes,
            segment_bytes: max_bytes / 8,
            sync: SyncPolicy::Always,
        };
        LogBuffer::open(dir, config).expect("open").0
    },
);

#[cfg(feature = "sled-buffer")]
conformance_tests!(
    sled_engine,
    open = |dir: &Path| {
        let config = SledConfig {
            max_bytes: 1 << 20,
            sync: SyncPolicy::Always,
        };
        SledBuffer::open(dir, config).expect("open")
    },
    bounded = |dir: &Path, max_bytes: u64| {
        let config = SledConfig {
            max_bytes,
            sync: SyncPolicy::Always,
        };
        SledBuffer::open(dir, config).expect("open")
    },
);
