//! The product-pair deltas of one checkpoint as one compact `pair_log` row, and their
//! sum over many rows for the fold ([`super::fold`]).
//!
//! A checkpoint used to upsert one `product_pairs` row per pair its events made (about
//! six per product view): most of a checkpoint's time. Now it writes one row holding all
//! of its deltas, in the same transaction as the offsets, and the fold adds many rows'
//! deltas to `product_pairs` at once, off the consume path. Pairs repeat across
//! checkpoints, so a fold writes each pair once however many checkpoints counted it.
//!
//! ## Format
//!
//! Counts are symmetric (a view or an order always counts both directions), so a row
//! holds each unordered pair once, `a < b`. A version byte, then a zstd frame of: the
//! number of distinct product ids (u32) and each id (u16 length, UTF-8 bytes), the
//! number of pairs (u32) and each pair (kind u8: 0 co-view, 1 co-purchase; the indices
//! of `a` and `b` (u32 each); the delta (i64)), all little-endian. Reading checks every
//! length against the bytes and caps the decompressed size, so a damaged row is refused,
//! never trusted.

use std::collections::HashMap;

use crate::fast_hash::FastMap;

/// Kind of a product pair count.
pub const CO_VIEW: &str = "view";
/// Kind of a product pair count.
pub const CO_PURCHASE: &str = "purchase";

/// Format version of a row's `deltas`.
const FORMAT_V1: u8 = 1;

/// Decompressed size of one row at most (a checkpoint's deltas are bounded by
/// `checkpoint.max_pending_events` and the pair bounds: far below this).
const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// Decompresses a row's frame, at most [`MAX_DECOMPRESSED_BYTES`].
fn decompress(frame: &[u8]) -> Result<Vec<u8>, Corrupt> {
    crate::compressed::decompress(frame, MAX_DECOMPRESSED_BYTES)
        .map_err(|_| Corrupt("not a zstd frame within the size bound"))
}

/// A `pair_log` row that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("product pair log row: {0}")]
pub struct Corrupt(&'static str);

/// Summed product-pair deltas, each unordered pair once and product ids interned: a
/// checkpoint's (counted by [`PairSums::count`], written by [`PairSums::encode`]) or
/// many rows' (read by [`PairSums::add`], for the fold). Counting a pair costs no
/// allocation once both products are known.
#[derive(Debug, Default, Clone)]
pub struct PairSums {
    ids: FastMap<String, u32>,
    names: Vec<String>,
    sums: HashMap<(u8, u32, u32), i64>,
}

/// The number of a pair kind in the format.
fn kind_number(kind: &str) -> Option<u8> {
    match kind {
        CO_VIEW => Some(0),
        CO_PURCHASE => Some(1),
        _ => None,
    }
}

impl PairSums {
    fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.ids.get(id) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(id.to_owned());
        self.ids.insert(id.to_owned(), i);
        i
    }

    /// Adds `delta` to the unordered pair `{a, b}` of `kind` ([`CO_VIEW`] or
    /// [`CO_PURCHASE`]). A product paired with itself, an unknown kind and an id longer
    /// than the format holds (65,535 bytes; the contract allows far less) are left out.
    pub fn count(&mut self, kind: &str, a: &str, b: &str, delta: i64) {
        let Some(kind) = kind_number(kind) else {
            return;
        };
        if a == b || a.len() > usize::from(u16::MAX) || b.len() > usize::from(u16::MAX) {
            return;
        }
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        let key = (kind, self.intern(a), self.intern(b));
        let sum = self.sums.entry(key).or_insert(0);
        *sum = sum.saturating_add(delta);
    }

    /// The sums as one `pair_log` row: the number of unordered pairs and the bytes.
    /// `None` when every sum is 0.
    pub fn encode(&self) -> Option<(i64, Vec<u8>)> {
        let mut body_pairs: Vec<u8> = Vec::with_capacity(self.sums.len() * 17);
        let mut count: u32 = 0;
        for (&(kind, a, b), &delta) in &self.sums {
            if delta == 0 {
                continue;
            }
            body_pairs.push(kind);
            body_pairs.extend_from_slice(&a.to_le_bytes());
            body_pairs.extend_from_slice(&b.to_le_bytes());
            body_pairs.extend_from_slice(&delta.to_le_bytes());
            count += 1;
        }
        if count == 0 {
            return None;
        }
        let mut body = Vec::with_capacity(8 + self.names.len() * 16 + body_pairs.len());
        body.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for name in &self.names {
            // Ids longer than u16 are never interned ([`PairSums::count`]) nor read.
            body.extend_from_slice(&(name.len() as u16).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
        }
        body.extend_from_slice(&count.to_le_bytes());
        body.extend_from_slice(&body_pairs);
        // Level 1: the row is written once and read once; speed matters more than size.
        let compressed = crate::compressed::compress(&body)?;
        let mut bytes = Vec::with_capacity(1 + compressed.len());
        bytes.push(FORMAT_V1);
        bytes.extend_from_slice(&compressed);
        Some((i64::from(count), bytes))
    }

    /// Adds one row's deltas.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] when the bytes are not in the format of [`PairSums::encode`]; nothing of the
    /// row is added then.
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), Corrupt> {
        let (&version, compressed) = bytes.split_first().ok_or(Corrupt("empty"))?;
        if version != FORMAT_V1 {
            return Err(Corrupt("unknown format version"));
        }
        let body = decompress(compressed)?;
        let mut reader = Reader(&body);
        let n_ids = reader.u32()? as usize;
        let mut names: Vec<&str> = Vec::new();
        for _ in 0..n_ids {
            let len = reader.u16()? as usize;
            let bytes = reader.take(len)?;
            names.push(std::str::from_utf8(bytes).map_err(|_| Corrupt("id not UTF-8"))?);
        }
        let n_pairs = reader.u32()? as usize;
        // Checked before reading: the count never makes the loop run past the bytes.
        if n_pairs.checked_mul(17) != Some(reader.0.len()) {
            return Err(Corrupt("pair count does not match the bytes"));
        }
        let mut parsed: Vec<(u8, &str, &str, i64)> = Vec::with_capacity(n_pairs);
        for _ in 0..n_pairs {
            let kind = reader.u8()?;
            let a = reader.u32()? as usize;
            let b = reader.u32()? as usize;
            let delta = reader.i64()?;
            if kind > 1 {
                return Err(Corrupt("unknown pair kind"));
            }
            let (Some(a), Some(b)) = (names.get(a), names.get(b)) else {
                return Err(Corrupt("pair names an id out of range"));
            };
            parsed.push((kind, a, b, delta));
        }
        for (kind, a, b, delta) in parsed {
            let (a, b) = (self.intern(a), self.intern(b));
            let sum = self.sums.entry((kind, a, b)).or_insert(0);
            *sum = sum.saturating_add(delta);
        }
        Ok(())
    }

    /// Distinct unordered pairs summed.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// Whether nothing was summed.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// The sums per product list, both directions: `(kind, a) → [(b, delta)]`, sorted
    /// by `(kind, a)` (so that two writers lock rows in the same order), each list by
    /// partner.
    pub fn lists(&self) -> Vec<PartnerDeltas<'_>> {
        let mut lists: HashMap<(u8, u32), Vec<(u32, i64)>> = HashMap::new();
        for (&(kind, a, b), &delta) in &self.sums {
            if delta == 0 {
                continue;
            }
            lists.entry((kind, a)).or_default().push((b, delta));
            lists.entry((kind, b)).or_default().push((a, delta));
        }
        let name = |i: u32| self.names[i as usize].as_str();
        let mut out: Vec<PartnerDeltas<'_>> = lists
            .into_iter()
            .map(|((kind, a), deltas)| {
                let mut deltas: Vec<(&str, i64)> =
                    deltas.into_iter().map(|(b, d)| (name(b), d)).collect();
                deltas.sort_unstable();
                PartnerDeltas {
                    kind: if kind == 0 { CO_VIEW } else { CO_PURCHASE },
                    product: name(a),
                    deltas,
                }
            })
            .collect();
        out.sort_unstable_by(|x, y| (x.kind, x.product).cmp(&(y.kind, y.product)));
        out
    }

    /// The sums as rows of ordered pairs, both directions, sorted by `(kind, a, b)`:
    /// `(kind, a, b, delta)`.
    #[cfg(test)]
    pub fn rows(&self) -> Vec<(&'static str, &str, &str, i64)> {
        let mut rows = Vec::with_capacity(self.sums.len() * 2);
        for (&(kind, a, b), &delta) in &self.sums {
            if delta == 0 {
                continue;
            }
            let kind = if kind == 0 { CO_VIEW } else { CO_PURCHASE };
            let (a, b) = (
                self.names[a as usize].as_str(),
                self.names[b as usize].as_str(),
            );
            rows.push((kind, a, b, delta));
            rows.push((kind, b, a, delta));
        }
        rows.sort_unstable();
        rows
    }
}

impl PartialEq for PairSums {
    /// The same non-zero sums per pair of names, whatever order the ids were interned in.
    fn eq(&self, other: &PairSums) -> bool {
        fn named(sums: &PairSums) -> Vec<(u8, &str, &str, i64)> {
            let mut named: Vec<_> = sums
                .sums
                .iter()
                .filter(|(_, &delta)| delta != 0)
                .map(|(&(kind, a, b), &delta)| {
                    (
                        kind,
                        sums.names[a as usize].as_str(),
                        sums.names[b as usize].as_str(),
                        delta,
                    )
                })
                .collect();
            named.sort_unstable();
            named
        }
        named(self) == named(other)
    }
}

/// The summed deltas of one product's partner list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerDeltas<'a> {
    /// [`CO_VIEW`] or [`CO_PURCHASE`].
    pub kind: &'static str,
    /// The product whose list it is.
    pub product: &'a str,
    /// `(partner, delta)`, by partner.
    pub deltas: Vec<(&'a str, i64)>,
}

/// Reads little-endian values, refusing to run past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if n > self.0.len() {
            return Err(Corrupt("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        self.take(N)?.try_into().map_err(|_| Corrupt("truncated"))
    }

    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_frame_without_its_size_is_not_given_the_whole_bound_up_front() {
        // Streaming compression does not declare the content size; `zstd::bulk` then
        // reserved MAX_DECOMPRESSED_BYTES (256 MiB) for a row of a few bytes.
        let frame = zstd::stream::encode_all(&b"abc"[..], 1).expect("compressing");
        let body = decompress(&frame).expect("a valid frame");
        assert_eq!(body, b"abc");
        assert!(body.capacity() < 1 << 20, "capacity {}", body.capacity());
        // A frame header alone (what the fuzz target found) is refused.
        let mut row = vec![FORMAT_V1];
        row.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
        assert!(PairSums::default().add(&row).is_err());
    }

    /// The row of a checkpoint that counted `pairs` (`(kind, a, b, delta)`).
    fn row(pairs: &[(&'static str, &str, &str, i64)]) -> Option<(i64, Vec<u8>)> {
        let mut sums = PairSums::default();
        for &(kind, a, b, delta) in pairs {
            sums.count(kind, a, b, delta);
        }
        sums.encode()
    }

    #[test]
    fn rows_of_several_checkpoints_sum_to_both_directions() {
        let (n, a) = row(&[(CO_VIEW, "p1", "p2", 1), (CO_PURCHASE, "p1", "p3", 2)]).expect("pairs");
        assert_eq!(n, 2);
        // Either order names the same unordered pair.
        let (n, b) = row(&[(CO_VIEW, "p2", "p1", 3), (CO_VIEW, "p1", "p2", 1)]).expect("pairs");
        assert_eq!(n, 1, "each unordered pair once");
        let mut sums = PairSums::default();
        sums.add(&a).expect("row");
        sums.add(&b).expect("row");
        assert_eq!(
            sums.rows(),
            [
                (CO_PURCHASE, "p1", "p3", 2),
                (CO_PURCHASE, "p3", "p1", 2),
                (CO_VIEW, "p1", "p2", 5),
                (CO_VIEW, "p2", "p1", 5),
            ]
        );
        assert!(row(&[]).is_none());
        // A product with itself, an unknown kind and sums of 0 are nothing.
        assert!(row(&[(CO_VIEW, "p1", "p1", 1), ("other", "p1", "p2", 1)]).is_none());
        assert!(row(&[(CO_VIEW, "p1", "p2", 1), (CO_VIEW, "p2", "p1", -1)]).is_none());
    }

    #[test]
    fn damaged_rows_are_refused_whole() {
        let (_, mut bytes) = row(&[(CO_VIEW, "a", "b", 1)]).expect("pairs");
        let mut sums = PairSums::default();
        assert_eq!(sums.add(&[]), Err(Corrupt("empty")));
        assert_eq!(sums.add(&[9, 1, 2]), Err(Corrupt("unknown format version")));
        let last = bytes.len() - 1;
        bytes.truncate(last);
        assert!(sums.add(&bytes).is_err());
        // A well-formed frame whose counts lie.
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.push(b'x');
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut lying = vec![FORMAT_V1];
        lying.extend_from_slice(&zstd::bulk::compress(&body, 1).expect("compress"));
        assert_eq!(
            sums.add(&lying),
            Err(Corrupt("pair count does not match the bytes"))
        );
        assert!(sums.is_empty(), "nothing added from a damaged row");
    }

    proptest! {
        #[test]
        fn folding_rows_equals_summing_the_checkpoints(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..2, 0u8..6, 0u8..6, 1i64..5), 0..20), 1..6)
        ) {
            let mut want: BTreeMap<(&'static str, String, String), i64> = BTreeMap::new();
            let mut sums = PairSums::default();
            for batch in &batches {
                let pairs: Vec<(&'static str, String, String, i64)> = batch
                    .iter()
                    .filter(|(_, a, b, _)| a != b)
                    .map(|&(k, a, b, n)| {
                        (if k == 0 { CO_VIEW } else { CO_PURCHASE }, format!("p{a}"), format!("p{b}"), n)
                    })
                    .collect();
                let refs: Vec<(&'static str, &str, &str, i64)> =
                    pairs.iter().map(|(k, a, b, n)| (*k, a.as_str(), b.as_str(), *n)).collect();
                for &(k, a, b, n) in &refs {
                    *want.entry((k, a.to_owned(), b.to_owned())).or_insert(0) += n;
                    *want.entry((k, b.to_owned(), a.to_owned())).or_insert(0) += n;
                }
                if let Some((_, bytes)) = row(&refs) {
                    sums.add(&bytes).expect("own rows decode");
                }
            }
            let got: BTreeMap<(&'static str, String, String), i64> = sums
                .rows()
                .into_iter()
                .map(|(k, a, b, n)| ((k, a.to_owned(), b.to_owned()), n))
                .collect();
            prop_assert_eq!(&got, &want);
            // The same sums per product list, both directions, lists in (kind, product)
            // order and each by partner.
            let lists = sums.lists();
            let keys: Vec<(&str, &str)> = lists.iter().map(|l| (l.kind, l.product)).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(keys, sorted);
            prop_assert!(lists.iter().all(|l| l.deltas.windows(2).all(|w| w[0].0 < w[1].0)));
            let from_lists: BTreeMap<(&'static str, String, String), i64> = lists
                .iter()
                .flat_map(|l| {
                    l.deltas
                        .iter()
                        .map(|&(b, n)| ((l.kind, l.product.to_owned(), b.to_owned()), n))
                })
                .collect();
            prop_assert_eq!(from_lists, got);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut sums = PairSums::default();
            let _ = sums.add(&bytes);
            let mut framed = vec![FORMAT_V1];
            framed.extend_from_slice(&zstd::bulk::compress(&bytes, 1).expect("compress"));
            let _ = sums.add(&framed);
        }
    }
}
