//! The row format of `user_state_log`: the state of a set of users, one entry each.
//!
//! ```text
//! row   := FORMAT_V1 body | FORMAT_ZSTD zstd-frame(body)
//! body  := entry*
//! entry := str(member) varint(n) zigzag(t0) zigzag(t1 - t0) … zigzag(tn-1 - tn-2)
//!          varint(k) str(viewed)*k varint(j) str(bought)*j
//! str   := varint(len) utf8-bytes
//! ```
//!
//! Times are sorted, so their differences are small: about two bytes a time instead of
//! eight; product ids repeat across users, which zstd takes care of. Every length is
//! checked against the bytes left before anything is reserved, so a corrupt or hostile
//! row can never make the reader allocate more than the row holds (decompressed within
//! a bound). This file depends only on [`crate::compressed`]: the fuzz targets (`fuzz/`)
//! compile the two on their own.

use std::fmt;

/// The first byte of a row whose body follows as it is.
pub const FORMAT_V1: u8 = 1;

/// The first byte of a row whose body follows as a zstd frame.
pub const FORMAT_ZSTD: u8 = 2;

/// The largest body a row may hold once decompressed: PostgreSQL's bound on a value.
pub const MAX_BODY_BYTES: usize = 1 << 30;

/// One user's stored state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUser {
    /// Event times (Unix ms), sorted.
    pub times: Vec<i64>,
    /// Recently viewed products, newest first.
    pub viewed: Vec<String>,
    /// Recently bought products, newest first.
    pub bought: Vec<String>,
}

/// Why a row cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt user_state_log row: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Builds one row.
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            buf: vec![FORMAT_V1],
        }
    }
}

impl Encoder {
    /// Appends one user's state (`times` sorted).
    pub fn push(&mut self, member: &str, times: &[i64], viewed: &[String], bought: &[String]) {
        put_str(&mut self.buf, member);
        put_varint(&mut self.buf, times.len() as u64);
        let mut previous = 0i64;
        for &t in times {
            put_varint(&mut self.buf, zigzag(t.wrapping_sub(previous)));
            previous = t;
        }
        for list in [viewed, bought] {
            put_varint(&mut self.buf, list.len() as u64);
            for product in list {
                put_str(&mut self.buf, product);
            }
        }
    }

    /// The row, compressed ([`FORMAT_ZSTD`]) unless that fails.
    pub fn finish(self) -> Vec<u8> {
        match crate::compressed::compress(&self.buf[1..]) {
            Some(frame) => {
                let mut row = Vec::with_capacity(frame.len() + 1);
                row.push(FORMAT_ZSTD);
                row.extend_from_slice(&frame);
                row
            }
            None => self.buf,
        }
    }
}

/// Reads a row: every entry, in order. Nothing is returned from a row with any fault.
///
/// # Errors
///
/// [`Corrupt`] for an unknown format, a truncated entry, a length past the end or a
/// string that is not UTF-8.
pub fn decode(row: &[u8]) -> Result<Vec<(String, StoredUser)>, Corrupt> {
    let Some((&format, rest)) = row.split_first() else {
        return Err(Corrupt("empty"));
    };
    match format {
        FORMAT_V1 => decode_body(rest),
        FORMAT_ZSTD => {
            let body = crate::compressed::decompress(rest, MAX_BODY_BYTES)
                .map_err(|_| Corrupt("not a zstd frame within the size bound"))?;
            decode_body(&body)
        }
        _ => Err(Corrupt("unknown format")),
    }
}

fn decode_body(mut rest: &[u8]) -> Result<Vec<(String, StoredUser)>, Corrupt> {
    let mut users = Vec::new();
    while !rest.is_empty() {
        let member = take_str(&mut rest)?;
        // Each time takes at least one byte.
        let n = take_len(&mut rest, 1)?;
        let mut times = Vec::with_capacity(n);
        let mut previous = 0i64;
        for _ in 0..n {
            previous = previous.wrapping_add(unzigzag(take_varint(&mut rest)?));
            times.push(previous);
        }
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let k = take_len(&mut rest, 1)?;
            list.reserve(k);
            for _ in 0..k {
                list.push(take_str(&mut rest)?);
            }
        }
        let [viewed, bought] = lists;
        users.push((
            member,
            StoredUser {
                times,
                viewed,
                bought,
            },
        ));
    }
    Ok(users)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn take_varint(rest: &mut &[u8]) -> Result<u64, Corrupt> {
    let mut value = 0u64;
    for (i, &byte) in rest.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(Corrupt("varint overflows 64 bits"));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Ok(value);
        }
    }
    Err(Corrupt("truncated varint"))
}

/// A count of items each at least `min_bytes` long, refused if the rest cannot hold
/// them.
fn take_len(rest: &mut &[u8], min_bytes: usize) -> Result<usize, Corrupt> {
    let n = take_varint(rest)?;
    match usize::try_from(n) {
        Ok(n) if n.saturating_mul(min_bytes) <= rest.len() => Ok(n),
        _ => Err(Corrupt("length past the end")),
    }
}

fn take_str(rest: &mut &[u8]) -> Result<String, Corrupt> {
    let len = take_len(rest, 1)?;
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(bytes.to_vec()).map_err(|_| Corrupt("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(times: &[i64], viewed: &[&str], bought: &[&str]) -> StoredUser {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        StoredUser {
            times: times.to_vec(),
            viewed: owned(viewed),
            bought: owned(bought),
        }
    }

    fn encoder(users: &[(String, StoredUser)]) -> Encoder {
        let mut encoder = Encoder::default();
        for (member, u) in users {
            encoder.push(member, &u.times, &u.viewed, &u.bought);
        }
        encoder
    }

    fn encode(users: &[(String, StoredUser)]) -> Vec<u8> {
        encoder(users).buf
    }

    #[test]
    fn repeated_product_ids_are_compressed() {
        let viewed: Vec<String> = (0..20).map(|i| format!("sku-{i:05}")).collect();
        let users: Vec<(String, StoredUser)> = (0..1_000)
            .map(|u| {
                let user = StoredUser {
                    times: vec![1_780_000_000_000 + u],
                    viewed: viewed.clone(),
                    bought: Vec::new(),
                };
                (format!("user-{u}"), user)
            })
            .collect();
        let plain = encode(&users);
        let compressed = encoder(&users).finish();
        assert_eq!(compressed[0], FORMAT_ZSTD);
        assert!(
            compressed.len() * 10 < plain.len(),
            "{} of {}",
            compressed.len(),
            plain.len()
        );
        assert_eq!(decode(&compressed).expect("a valid row"), users);
    }

    #[test]
    fn sorted_times_cost_about_two_bytes_each() {
        let times: Vec<i64> = (0..100).map(|i| 1_780_000_000_000 + i * 5_000).collect();
        let row = encode(&[("u-1".to_owned(), user(&times, &[], &[]))]);
        // Format byte, "u-1" with its length, the count, one full first time, 99 gaps.
        assert!(
            row.len() < 1 + 4 + 1 + 10 + 99 * 2 + 2,
            "{} bytes",
            row.len()
        );
        assert_eq!(decode(&row).expect("a valid row")[0].1.times, times);
    }

    #[test]
    fn a_row_with_any_fault_gives_nothing_and_a_cut_one_at_most_whole_entries() {
        let row = encode(&[
            ("a".to_owned(), user(&[1, 2], &["p"], &[])),
            ("b".to_owned(), user(&[3], &[], &["q"])),
        ]);
        let whole = decode(&row).expect("a valid row");
        for cut in 1..row.len() {
            // A cut between entries is a shorter row; anywhere else, nothing.
            if let Ok(users) = decode(&row[..cut]) {
                assert!(
                    users.len() < whole.len() && whole.starts_with(&users),
                    "cut at {cut}"
                );
            }
        }
        assert_eq!(
            decode(&[FORMAT_V1]).expect("a valid row"),
            Vec::new(),
            "no users is a row"
        );
        assert_eq!(decode(&[]), Err(Corrupt("empty")));
        assert_eq!(decode(&[9]), Err(Corrupt("unknown format")));
        assert_eq!(
            decode(&[FORMAT_ZSTD, 1, 2, 3]),
            Err(Corrupt("not a zstd frame within the size bound"))
        );
        // A count of 2^60 times in a 12-byte row is refused before anything is reserved.
        let mut huge = vec![FORMAT_V1, 1, b'u'];
        put_varint(&mut huge, 1 << 60);
        assert_eq!(decode(&huge), Err(Corrupt("length past the end")));
        assert_eq!(
            decode(&[FORMAT_V1, 2, 0xff, 0xfe, 0, 0, 0]),
            Err(Corrupt("string is not UTF-8"))
        );
        assert_eq!(
            decode(&[FORMAT_V1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(Corrupt("varint overflows 64 bits"))
        );
    }

    proptest! {
        #[test]
        fn rows_read_back_as_written(
            users in proptest::collection::vec(
                (
                    "\\PC{0,12}",
                    proptest::collection::vec(any::<i64>(), 0..20),
                    proptest::collection::vec("\\PC{0,8}", 0..5),
                    proptest::collection::vec("\\PC{0,8}", 0..5),
                ),
                0..8,
            )
        ) {
            let users: Vec<(String, StoredUser)> = users
                .into_iter()
                .map(|(m, mut times, viewed, bought)| {
                    times.sort_unstable();
                    (m, StoredUser { times, viewed, bought })
                })
                .collect();
            prop_assert_eq!(&decode(&encode(&users)).expect("a valid row"), &users);
            prop_assert_eq!(decode(&encoder(&users).finish()).expect("a valid row"), users);
        }
    }
}
