//! The disk buffer's `log` engine on arbitrary files: the segment reader (`inspect`),
//! recovery (`repair`, and opening, which recovers) and reading what is left.
//!
//! The first byte holds flags: bit 0 "structured" (the rest describes records that the
//! target writes as valid frames and then damages, so the fuzzer gets past the
//! checksums), bit 1 two segments instead of one, bit 2 a ledger, bit 3 a ledger with a
//! wrong checksum. Then: the first segment's sequence number (u16), the ledger's
//! watermark (u16), where to split (u16), an XOR byte that damages one byte of the
//! structured files (raw: the second segment's distance in sequence numbers); then the
//! segment bytes (raw), or records as `len u8 | payload`.
//!
//! Invariants, beyond "no panic":
//! - No single allocation is larger than the files hold, plus a fixed allowance: a
//!   length field is never trusted before it is checked against the bytes.
//! - After `repair`, nothing is damaged, and the records that verified before are all
//!   still there.
//! - Opening recovers to a readable buffer: every retained record reads back, in
//!   sequence order, as many as its stats say; an append then reads back too.
//! - Undamaged structured segments read back exactly the records written.
#![no_main]

use std::fs;
use std::path::Path;

use ingest_core::buffer::{inspect, repair, LogBuffer, LogConfig, SyncPolicy};
use ingest_fuzz::alloc::{largest, reset_largest, Counting};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

/// What a run may allocate at once beyond the files' bytes (paths, reports, the
/// background thread's bookkeeping).
const ALLOWANCE: usize = 256 << 10;

const HEADER: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some(header) = data.get(..HEADER) else {
        return;
    };
    let body = &data[HEADER..];
    let flags = header[0];
    let structured = flags & 1 != 0;
    let two_segments = flags & 2 != 0;
    let ledger = flags & 4 != 0;
    let ledger_damaged = flags & 8 != 0;
    let first_seq = u64::from(u16::from_le_bytes([header[1], header[2]]));
    let watermark = u64::from(u16::from_le_bytes([header[3], header[4]]));
    let at = usize::from(u16::from_le_bytes([header[5], header[6]]));
    let xor = header[7];

    // tmpfs where there is one: recovery and the ledger sync files.
    let parent = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::Builder::new()
        .prefix("ingest-fuzz-buffer")
        .tempdir_in(parent)
        .expect("a temporary directory");
    let dir = dir.path();

    let mut written: Vec<Vec<u8>> = Vec::new();
    let segments: Vec<(u64, Vec<u8>)> = if structured {
        let mut records = Vec::new();
        let mut rest = body;
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            records.push(&tail[..len]);
            rest = &tail[len..];
        }
        let split = if two_segments {
            at % (records.len() + 1)
        } else {
            records.len()
        };
        let mut first = Vec::new();
        let mut second = Vec::new();
        for (i, payload) in records.iter().enumerate() {
            let seq = first_seq + i as u64;
            frame(
                seq,
                payload,
                if i < split { &mut first } else { &mut second },
            );
            written.push(payload.to_vec());
        }
        let mut segments = vec![(first_seq, first)];
        if two_segments {
            segments.push((first_seq + split as u64, second));
        }
        if xor != 0 {
            // Damage one byte somewhere in the files.
            let total: usize = segments.iter().map(|(_, b)| b.len()).sum();
            if total > 0 {
                let mut pos = usize::from(header[6]) * 251 % total;
                for (_, bytes) in &mut segments {
                    if pos < bytes.len() {
                        bytes[pos] ^= xor;
                        break;
                    }
                    pos -= bytes.len();
                }
                written.clear();
            }
        }
        segments
    } else if two_segments {
        let split = at % (body.len() + 1);
        vec![
            (first_seq, body[..split].to_vec()),
            (first_seq + u64::from(header[7]), body[split..].to_vec()),
        ]
    } else {
        vec![(first_seq, body.to_vec())]
    };
    let total: usize = segments.iter().map(|(_, b)| b.len()).sum();
    for (seq, bytes) in &segments {
        fs::write(dir.join(format!("{seq:020}.seg")), bytes).expect("writing a segment");
    }
    if ledger {
        let mut bytes = watermark.to_le_bytes().to_vec();
        let crc = crc32c::crc32c(&watermark.to_le_bytes()) ^ u32::from(ledger_damaged);
        bytes.extend_from_slice(&crc.to_le_bytes());
        fs::write(dir.join("ledger"), bytes).expect("writing the ledger");
    }

    reset_largest();
    let before = inspect(dir).expect("inspecting");
    let after = repair(dir).expect("repairing");
    check_allocations(total);
    assert!(
        after.damaged.is_empty(),
        "damage left after repair: {after:?}"
    );
    assert_eq!(
        after.entries, before.entries,
        "repair lost verified records"
    );

    reset_largest();
    let config = LogConfig {
        max_bytes: 64 << 20,
        segment_bytes: 1 << 20,
        sync: SyncPolicy::Never,
    };
    let (buffer, _report) = LogBuffer::open(dir, config).expect("opening after repair");
    let stats = buffer.stats();
    let records = buffer.read(0, usize::MAX, usize::MAX).expect("reading");
    check_allocations(total);
    assert_eq!(records.len() as u64, stats.entries, "stats: {stats:?}");
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "in sequence order"
    );
    if !written.is_empty() && (!ledger || ledger_damaged || watermark <= first_seq) {
        let read: Vec<&[u8]> = records.iter().map(|(_, p)| &p[..]).collect();
        let want: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
        assert_eq!(read, want, "undamaged records read back as written");
    }
    let seqs = buffer.append(&[b"after recovery"]).expect("appending");
    let back = buffer
        .read(seqs.start, 1, usize::MAX)
        .expect("reading the append");
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].0, &back[0].1[..]),
        (seqs.start, &b"after recovery"[..])
    );
    buffer.close().expect("closing");
});

/// A frame as the log writes it: `len u32 | CRC32C(seq ++ payload) u32 | seq u64 |
/// payload`, little-endian.
fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

fn check_allocations(file_bytes: usize) {
    let largest = largest();
    assert!(
        largest <= file_bytes + ALLOWANCE,
        "allocated {largest} bytes at once for {file_bytes} bytes of files"
    );
}
