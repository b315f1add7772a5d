//! De-duplication: the ids of the events counted, per partition, in memory, with a
//! window and a hard cap; persisted as one compact row per partition and checkpoint.
//!
//! ## Why per partition, and why in memory
//!
//! Offsets already exclude replays: a record re-read after a crash or a rebalance can
//! never be counted twice, because results and offsets commit together. The ids only
//! have to catch *resends*: a client retrying, the edge agent's disk buffer delivering
//! again after a crash. A resend carries the same key, so it lands in the same partition
//! as the original; the ids of one partition are all that is needed to catch it. Kept in
//! memory they cost a hash probe per event instead of a PostgreSQL row.
//!
//! ## Keys
//!
//! An event's key is the 128-bit XXH3 hash of its de-duplication key (the `source`
//! header and the event id, see [`crate::pipeline`]): 16 bytes whatever a foreign
//! producer puts in the headers. Two different keys collide with probability 2⁻¹²⁸.
//!
//! ## The window, in stream time
//!
//! An id is filed under its *stream minute*: the later of the event's minute and the
//! minute of the partition's watermark when it was counted, so a resend found hours
//! after its event time (an agent that buffered through an outage) is still caught. After
//! each checkpoint the minutes older than `window_minutes` before the partition's
//! watermark are forgotten. The window is measured on the partition's own records, so a
//! replay of the same records keeps and forgets the same ids.
//!
//! A partition holds at most `max_ids_per_partition` ids: past it the oldest minutes are
//! forgotten before their window ends (`processor_dedup_window_truncated_total` counts
//! the ids dropped so). Memory is therefore bounded by
//! `partitions held × max_ids_per_partition × ~40 bytes`, and in steady state it is
//! `events per second × window × ~40 bytes` (docs/processor.md has the formula and
//! examples).
//!
//! ## Persistence
//!
//! Each checkpoint that counts new events writes, per partition, one `dedup_log` row
//! with their ids, keyed by the end offset of the committed range, in the same
//! transaction as the offsets: a partition's rows are exactly those of its committed
//! ranges. Loading a partition (an assignment, a failed checkpoint) reads its rows up to
//! its committed offset whose newest minute is still inside the window, and applies the
//! same window and cap. Rows past the window are deleted by the pruning job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::stream::{minute_of, TopicPartition};

/// An event's de-duplication key, hashed (see the module documentation).
pub type EventKey = u128;

/// The key of a de-duplication key string.
pub fn key_of(dedup_key: &str) -> EventKey {
    xxhash_rust::xxh3::xxh3_128(dedup_key.as_bytes())
}

/// The key of `event_id` sent by `source` (the record's `source` header): the key of
/// `<length of source>:<source>/<event_id>`, length-prefixed so that no two (source, id)
/// pairs share a key. Hashed as it is streamed, without building the string.
pub fn key_of_sourced(source: &str, event_id: &str) -> EventKey {
    // The length's decimal digits, written backwards into a buffer on the stack.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = source.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&digits[at..]);
    hasher.update(b":");
    hasher.update(source.as_bytes());
    hasher.update(b"/");
    hasher.update(event_id.as_bytes());
    hasher.digest128()
}

/// The stream minute an id is filed under: the later of its event minute and the
/// minute of the partition's watermark before it (`i64::MIN`: none yet). Minutes are
/// Unix seconds of the minute's start, as everywhere in the processor.
pub fn stream_minute(event_minute: i64, watermark_ms: i64) -> i64 {
    if watermark_ms == i64::MIN {
        event_minute
    } else {
        event_minute.max(minute_of(watermark_ms))
    }
}

/// How long ids are remembered, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes of stream time before the partition's watermark.
    pub minutes: i64,
    /// Ids per partition at most.
    pub max_ids_per_partition: usize,
}

impl Window {
    /// The oldest stream minute still inside the window of a partition whose watermark
    /// is `watermark_ms` (`None`: the partition has no watermark, nothing is outside).
    pub fn cutoff(&self, watermark_ms: i64) -> Option<i64> {
        (watermark_ms != i64::MIN)
            .then(|| minute_of(watermark_ms).saturating_sub(self.minutes * 60))
    }
}

/// Hashes an [`EventKey`] by its low 64 bits: keys are already uniform hashes.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for types other than u128; fold the bytes in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

type KeySet = HashSet<EventKey, BuildHasherDefault<KeyHasher>>;

/// The ids of one partition, by stream minute.
#[derive(Debug, Default, Clone)]
pub struct PartitionIds {
    minutes: BTreeMap<i64, KeySet>,
    len: usize,
}

impl PartitionIds {
    /// Whether `key` is held.
    pub fn contains(&self, key: EventKey) -> bool {
        // Newest first: a resend usually follows its original closely.
        self.minutes.values().rev().any(|set| set.contains(&key))
    }

    /// Files `key` under `minute`.
    pub fn insert(&mut self, minute: i64, key: EventKey) {
        if self.minutes.entry(minute).or_default().insert(key) {
            self.len += 1;
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the minutes before `cutoff` (if any), then the oldest minutes while more
    /// than `max_ids` are held. Returns the ids forgotten for the cap (not the window).
    pub fn prune(&mut self, cutoff: Option<i64>, max_ids: usize) -> usize {
        if let Some(cutoff) = cutoff {
            let kept = self.minutes.split_off(&cutoff);
            let gone: usize = self.minutes.values().map(HashSet::len).sum();
            self.minutes = kept;
            self.len -= gone;
        }
        let mut truncated = 0;
        while self.len > max_ids {
            let Some((_, set)) = self.minutes.pop_first() else {
                break;
            };
            self.len -= set.len();
            truncated += set.len();
        }
        truncated
    }
}

/// The ids of every partition this instance reads.
#[derive(Debug, Default)]
pub struct SeenIds {
    partitions: HashMap<TopicPartition, PartitionIds>,
}

impl SeenIds {
    /// Whether `key` was counted in `tp`.
    pub fn contains(&self, tp: &TopicPartition, key: EventKey) -> bool {
        self.partitions.get(tp).is_some_and(|p| p.contains(key))
    }

    /// The ids counted in `tp`, if any.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionIds> {
        self.partitions.get(tp)
    }

    /// Replaces the ids of `tp` (loaded from PostgreSQL).
    pub fn load(&mut self, tp: TopicPartition, ids: PartitionIds) {
        self.partitions.insert(tp, ids);
    }

    /// Forgets `tp` (revoked).
    pub fn forget(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }

    /// Adds the ids a committed checkpoint counted in `tp`, then applies the window
    /// (against the partition's committed watermark) and the cap. Returns the ids
    /// dropped for the cap.
    pub fn commit(
        &mut self,
        tp: &TopicPartition,
        ids: &[(i64, EventKey)],
        watermark_ms: i64,
        window: Window,
    ) -> usize {
        let partition = self.partitions.entry(tp.clone()).or_default();
        for &(minute, key) in ids {
            partition.insert(minute, key);
        }
        partition.prune(window.cutoff(watermark_ms), window.max_ids_per_partition)
    }

    /// Ids held in all partitions.
    pub fn len(&self) -> usize {
        self.partitions.values().map(PartitionIds::len).sum()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Format version of a `dedup_log` row's `ids`.
const FORMAT_V1: u8 = 1;

/// Encodes ids with their minutes into a `dedup_log` row's `ids`: a version byte, then
/// per minute its value (i64), its id count (u32) and the ids (u128), little-endian.
/// Returns the oldest and newest minute with the bytes (`None` for no ids).
pub fn encode(ids: &[(i64, EventKey)]) -> Option<(i64, i64, Vec<u8>)> {
    let mut by_minute: BTreeMap<i64, Vec<EventKey>> = BTreeMap::new();
    for &(minute, key) in ids {
        by_minute.entry(minute).or_default().push(key);
    }
    let oldest = *by_minute.keys().next()?;
    let newest = *by_minute.keys().next_back()?;
    let mut bytes = Vec::with_capacity(1 + by_minute.len() * 12 + ids.len() * 16);
    bytes.push(FORMAT_V1);
    for (minute, keys) in &by_minute {
        bytes.extend_from_slice(&minute.to_le_bytes());
        // A checkpoint holds far fewer than 2³² events (`checkpoint.max_pending_events`).
        let count = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&count.to_le_bytes());
        for key in keys.iter().take(count as usize) {
            bytes.extend_from_slice(&key.to_le_bytes());
        }
    }
    Some((oldest, newest, bytes))
}

/// A `dedup_log` row's `ids` that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("de-duplication log row: {0}")]
pub struct Corrupt(&'static str);

/// Decodes a `dedup_log` row's `ids` into `into`.
///
/// # Errors
///
/// [`Corrupt`] when the bytes are not in the format of [`encode`] (an unknown version,
/// a count past the end); nothing is added then.
pub fn decode_into(bytes: &[u8], into: &mut PartitionIds) -> Result<(), Corrupt> {
    let (&version, mut rest) = bytes.split_first().ok_or(Corrupt("empty"))?;
    if version != FORMAT_V1 {
        return Err(Corrupt("unknown format version"));
    }
    let mut decoded: Vec<(i64, EventKey)> = Vec::new();
    while !rest.is_empty() {
        let (minute, tail) = rest
            .split_first_chunk::<8>()
            .ok_or(Corrupt("truncated minute"))?;
        let (count, tail) = tail
            .split_first_chunk::<4>()
            .ok_or(Corrupt("truncated count"))?;
        let minute = i64::from_le_bytes(*minute);
        let count = u32::from_le_bytes(*count) as usize;
        // Checked before reading: a count never makes the loop run past the bytes.
        let size = count.checked_mul(16).ok_or(Corrupt("count too large"))?;
        if size > tail.len() {
            return Err(Corrupt("count past the end"));
        }
        let (keys, tail) = tail.split_at(size);
        for key in keys.chunks_exact(16) {
            let key: [u8; 16] = key.try_into().map_err(|_| Corrupt("short id"))?;
            decoded.push((minute, u128::from_le_bytes(key)));
        }
        rest = tail;
    }
    for (minute, key) in decoded {
        into.insert(minute, key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("views", 0)
    }

    #[test]
    fn keys_differ_by_source_and_id() {
        assert_eq!(key_of("5:store/abc"), key_of("5:store/abc"));
        assert_ne!(key_of("5:store/abc"), key_of("5:store/abd"));
        assert_ne!(key_of("abc"), key_of("5:store/abc"));
    }

    proptest! {
        /// Keys are stored (`dedup_log`): the streamed form must hash exactly the string
        /// earlier versions built, or a resend after an upgrade would count twice.
        #[test]
        fn a_sourced_key_is_the_key_of_its_prefixed_string(source in "\\PC{0,40}", id in "\\PC{0,40}") {
            prop_assert_eq!(
                key_of_sourced(&source, &id),
                key_of(&format!("{}:{source}/{id}", source.len()))
            );
        }
    }

    #[test]
    fn ids_are_filed_by_stream_minute() {
        assert_eq!(stream_minute(600, i64::MIN), 600);
        // Behind the watermark (an event buffered through an outage): the watermark's.
        assert_eq!(stream_minute(600, 3_600_000 + 59_999), 3_600);
        assert_eq!(stream_minute(7_200, 3_600_000), 7_200);
    }

    #[test]
    fn the_window_forgets_minutes_behind_the_watermark() {
        let window = Window {
            minutes: 10,
            max_ids_per_partition: 1_000,
        };
        let mut seen = SeenIds::default();
        seen.commit(&tp(), &[(0, 1), (60, 2), (600, 3)], 600_000, window);
        assert!(seen.contains(&tp(), 1) && seen.contains(&tp(), 3));
        assert!(!seen.contains(&TopicPartition::new("views", 1), 1));
        // The watermark moves to minute 660: minute 0 is now outside the window.
        let truncated = seen.commit(&tp(), &[(660, 4)], 660_000, window);
        assert_eq!(truncated, 0);
        assert!(!seen.contains(&tp(), 1));
        assert!(seen.contains(&tp(), 2) && seen.contains(&tp(), 4));
        assert_eq!(seen.len(), 3);
        // No watermark: nothing is outside the window.
        assert_eq!(window.cutoff(i64::MIN), None);
    }

    #[test]
    fn the_cap_drops_the_oldest_minutes_first_and_counts_them() {
        let window = Window {
            minutes: 1_000,
            max_ids_per_partition: 3,
        };
        let mut seen = SeenIds::default();
        let truncated = seen.commit(&tp(), &[(0, 1), (0, 2), (60, 3), (120, 4)], 120_000, window);
        assert_eq!(truncated, 2, "minute 0 dropped whole");
        assert!(!seen.contains(&tp(), 1) && !seen.contains(&tp(), 2));
        assert!(seen.contains(&tp(), 3) && seen.contains(&tp(), 4));
        // The same id twice is held once.
        seen.commit(&tp(), &[(120, 4)], 120_000, window);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn corrupt_rows_are_refused_whole() {
        let mut ids = PartitionIds::default();
        assert_eq!(decode_into(&[], &mut ids), Err(Corrupt("empty")));
        assert_eq!(
            decode_into(&[2], &mut ids),
            Err(Corrupt("unknown format version"))
        );
        let (_, _, mut bytes) = encode(&[(60, 7), (120, 8)]).expect("ids");
        bytes.pop();
        assert_eq!(
            decode_into(&bytes, &mut ids),
            Err(Corrupt("count past the end"))
        );
        // A count claiming 2³²−1 ids in a few bytes allocates nothing.
        let mut huge = vec![FORMAT_V1];
        huge.extend_from_slice(&0i64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_into(&huge, &mut ids),
            Err(Corrupt("count past the end"))
        );
        assert!(ids.is_empty(), "nothing added from a corrupt row");
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_the_same_ids(
            ids in proptest::collection::vec((0i64..50, any::<u128>()), 1..200)
        ) {
            let minutes: Vec<(i64, EventKey)> = ids.iter().map(|&(m, k)| (m * 60, k)).collect();
            let (oldest, newest, bytes) = encode(&minutes).expect("ids");
            prop_assert_eq!(oldest, minutes.iter().map(|x| x.0).min().unwrap_or(0));
            prop_assert_eq!(newest, minutes.iter().map(|x| x.0).max().unwrap_or(0));
            let mut decoded = PartitionIds::default();
            decode_into(&bytes, &mut decoded).expect("decodes");
            let mut direct = PartitionIds::default();
            for &(m, k) in &minutes {
                direct.insert(m, k);
            }
            prop_assert_eq!(decoded.len(), direct.len());
            for &(_, k) in &minutes {
                prop_assert!(decoded.contains(k));
            }
            // The same window and cap give the same ids whichever way they were built.
            let a = decoded.prune(Some(20 * 60), 50);
            let b = direct.prune(Some(20 * 60), 50);
            prop_assert_eq!(a, b);
            prop_assert_eq!(decoded.len(), direct.len());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut ids = PartitionIds::default();
            let _ = decode_into(&bytes, &mut ids);
        }
    }
}
