//! The processor's binary blobs stored in PostgreSQL: `dedup_log` ids
//! (`dedup::decode_into`), `pair_log` deltas (`PairSums::add`) and `user_state_log`
//! rows (`user_state::codec::decode`), read from arbitrary bytes, and written then read
//! back.
//!
//! The first byte chooses: even, the rest is a blob given to both readers; odd, the rest
//! describes values (ids with minutes; product pairs with deltas) that are encoded and
//! decoded.
//!
//! Invariants, beyond "no panic":
//! - A refused blob adds nothing; an accepted `dedup_log` blob adds at most
//!   `(len - 1) / 16` ids; an accepted `pair_log` row lists sorted partner lists; an
//!   accepted `user_state_log` row holds at most `(len - 1) / 4` users (an entry takes
//!   four bytes at least), none with more times or products than bytes.
//! - No single allocation is larger than the blob justifies (the `pair_log` reader
//!   decompresses with a bound; it must not reserve the bound up front).
//! - `encode` then `decode_into` gives back exactly the ids, by minute;
//!   `PairSums::count`, `encode` then `PairSums::add` gives back exactly the pair sums,
//!   each unordered pair once (both directions listed); a `user_state_log` row reads
//!   back as the users written, in order.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use ingest_fuzz::alloc::{largest, reset_largest, Counting};
use ingest_fuzz::dedup::{self, PartitionIds};
use ingest_fuzz::pair_log::{PairSums, CO_PURCHASE, CO_VIEW};
use ingest_fuzz::user_state_codec::{self as user_state, StoredUser};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

/// What decoding may allocate at once beyond what the blob's size justifies.
const ALLOWANCE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        arbitrary_blob(rest);
    } else {
        round_trip(rest);
    }
});

fn arbitrary_blob(blob: &[u8]) {
    reset_largest();
    let mut ids = PartitionIds::default();
    match dedup::decode_into(blob, &mut ids) {
        Ok(()) => {
            assert!(ids.len() <= blob.len().saturating_sub(1) / 16);
        }
        Err(_) => assert!(ids.is_empty(), "a refused blob added ids"),
    }
    let mut sums = PairSums::default();
    match sums.add(blob) {
        Ok(()) => {
            // Every list is sorted and names partners that exist.
            for list in sums.lists() {
                assert!(list.kind == CO_VIEW || list.kind == CO_PURCHASE);
                assert!(list.deltas.windows(2).all(|w| w[0].0 <= w[1].0));
            }
        }
        Err(_) => assert!(sums.is_empty(), "a refused row added sums"),
    }
    if let Ok(users) = user_state::decode(blob) {
        assert!(users.len() <= blob.len().saturating_sub(1) / 4);
        for (_, user) in &users {
            let items = user.times.len() + user.viewed.len() + user.bought.len();
            assert!(items < blob.len(), "{items} items from {} bytes", blob.len());
        }
    }
    let largest = largest();
    // A `pair_log` row is zstd-compressed: what it really holds may be larger than the
    // blob, and may be read (twice over, as a vector grows); what a header merely
    // declares may not be reserved.
    let holds = decompressed_len(blob);
    assert!(
        largest <= blob.len().saturating_mul(16) + holds.saturating_mul(2) + ALLOWANCE,
        "{largest} bytes allocated at once for a {}-byte blob holding {holds} bytes",
        blob.len()
    );
}

/// How many bytes the zstd frames after a `pair_log` version byte decompress to (up to
/// where they fail), counted without keeping them.
fn decompressed_len(blob: &[u8]) -> usize {
    let Some(compressed) = blob.get(1..) else {
        return 0;
    };
    let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(compressed) else {
        return 0;
    };
    let mut counted = Counted(0);
    let _ = std::io::copy(&mut decoder.take(300 << 20), &mut counted);
    counted.0
}

/// A writer that counts what it is given.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn round_trip(rest: &[u8]) {
    // ids: (minute i8, key u8) pairs, so that minutes and keys repeat.
    let ids: Vec<(i64, u128)> = rest
        .chunks_exact(2)
        .map(|c| {
            (
                i64::from(c[0] as i8) * 60,
                u128::from(c[1]) * 0x0101_0101_0101_0101,
            )
        })
        .collect();
    match dedup::encode(&ids) {
        None => assert!(ids.is_empty()),
        Some((oldest, newest, bytes)) => {
            let want: BTreeSet<(i64, u128)> = ids.iter().copied().collect();
            assert_eq!(oldest, want.iter().map(|(m, _)| *m).min().expect("an id"));
            assert_eq!(newest, want.iter().map(|(m, _)| *m).max().expect("an id"));
            let mut decoded = PartitionIds::default();
            dedup::decode_into(&bytes, &mut decoded).expect("decoding what was encoded");
            let distinct: BTreeSet<u128> = want.iter().map(|(_, k)| *k).collect();
            for key in &distinct {
                assert!(decoded.contains(*key));
            }
            // The same key under two minutes counts twice, as inserting it would.
            assert_eq!(decoded.len(), want.len());
        }
    }

    // users: (member u2 + product u3 + bought bit, time step i8): each step adds a
    // time (sorted, as the processor keeps them) and a product to a user.
    let mut users: Vec<(String, StoredUser)> = Vec::new();
    for c in rest.chunks_exact(2) {
        let member = format!("u{}", c[0] & 0x03);
        let at = match users.iter().position(|(m, _)| *m == member) {
            Some(at) => at,
            None => {
                users.push((member, StoredUser::default()));
                users.len() - 1
            }
        };
        let user = &mut users[at].1;
        let last = user.times.last().copied().unwrap_or(i64::MIN / 2);
        user.times.push(last + i64::from(c[1] as i8).abs());
        let product = format!("p{}", (c[0] >> 2) & 0x07);
        if c[0] & 0x20 != 0 {
            user.bought.push(product);
        } else {
            user.viewed.push(product);
        }
    }
    let mut encoder = user_state::Encoder::default();
    for (member, user) in &users {
        encoder.push(member, &user.times, &user.viewed, &user.bought);
    }
    let row = encoder.finish();
    assert_eq!(
        user_state::decode(&row).expect("reading what was written"),
        users
    );

    // pairs: (kind bit + a u4 + b u3, delta i8) → product ids "p<n>", counted in
    // either order.
    let mut counted = PairSums::default();
    let mut deltas: BTreeMap<(&'static str, String, String), i64> = BTreeMap::new();
    for c in rest.chunks_exact(2) {
        let kind = if c[0] & 0x80 != 0 {
            CO_PURCHASE
        } else {
            CO_VIEW
        };
        let a = format!("p{}", (c[0] >> 3) & 0x0f);
        let b = format!("p{}", c[0] & 0x07);
        let delta = i64::from(c[1] as i8);
        counted.count(kind, &a, &b, delta);
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        let sum = deltas.entry((kind, a, b)).or_insert(0);
        *sum = sum.saturating_add(delta);
    }
    // What encode keeps: each unordered pair once, a ≠ b, delta ≠ 0.
    let kept: BTreeMap<(&str, &str, &str), i64> = deltas
        .iter()
        .filter(|((_, a, b), d)| a != b && **d != 0)
        .map(|((k, a, b), d)| ((*k, a.as_str(), b.as_str()), *d))
        .collect();
    match counted.encode() {
        None => assert!(kept.is_empty()),
        Some((count, bytes)) => {
            assert_eq!(count, kept.len() as i64);
            let mut sums = PairSums::default();
            sums.add(&bytes).expect("reading what was written");
            let mut got: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
            for list in sums.lists() {
                for (partner, delta) in list.deltas {
                    if list.product < partner {
                        got.insert((list.kind, list.product, partner), delta);
                    } else {
                        assert_eq!(
                            kept.get(&(list.kind, partner, list.product)),
                            Some(&delta),
                            "both directions carry the delta"
                        );
                    }
                }
            }
            assert_eq!(got, kept);
        }
    }
}
