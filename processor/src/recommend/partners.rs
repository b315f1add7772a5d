//! A product's partner list, as `product_partners` keeps it: every partner with its
//! count, most counted first, ties by partner id in byte order. A fold
//! ([`super::fold`]) adds summed deltas to the lists its deltas touch; recommendations
//! read the first entries ([`super::Neighbours`]).

use std::cmp::Ordering;
use std::collections::HashMap;

/// `existing` (a stored list, any order) plus `deltas` (`(partner, delta)`), saturating,
/// ranked: most counted first, ties by partner id in byte order. Partners whose count
/// is not positive are left out. Borrows the ids: a fold merges lists of thousands of
/// partners, and copying each id would be most of its memory.
pub fn merge<'a>(
    existing: impl IntoIterator<Item = (&'a str, i64)>,
    deltas: &[(&'a str, i64)],
) -> Vec<(&'a str, i64)> {
    let mut counts: HashMap<&'a str, i64> = existing.into_iter().collect();
    for &(partner, delta) in deltas {
        let count = counts.entry(partner).or_insert(0);
        *count = count.saturating_add(delta);
    }
    let mut list: Vec<(&'a str, i64)> = counts.into_iter().filter(|(_, c)| *c > 0).collect();
    list.sort_unstable_by(rank);
    list
}

/// The order of a partner list: most counted first, ties by partner id in byte order.
pub fn rank<S: AsRef<str>>(x: &(S, i64), y: &(S, i64)) -> Ordering {
    y.1.cmp(&x.1)
        .then_with(|| x.0.as_ref().as_bytes().cmp(y.0.as_ref().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn deltas_add_to_the_stored_counts_and_the_list_is_ranked() {
        let stored = [("b", 3), ("c", 5), ("d", 1)];
        let merged = merge(stored, &[("a", 1), ("b", 2), ("e", 5)]);
        assert_eq!(merged, [("b", 5), ("c", 5), ("e", 5), ("a", 1), ("d", 1)]);
        // Saturating, and ties in byte order ("B" < "a").
        let merged = merge([("a", i64::MAX)], &[("a", 1), ("B", i64::MAX)]);
        assert_eq!(merged, [("B", i64::MAX), ("a", i64::MAX)]);
    }

    proptest! {
        #[test]
        fn merging_batches_one_by_one_equals_summing_them(
            batches in proptest::collection::vec(
                proptest::collection::btree_map("[a-e]{1,2}", 1i64..100, 0..8), 1..6)
        ) {
            let mut list: Vec<(String, i64)> = Vec::new();
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            for batch in &batches {
                let deltas: Vec<(&str, i64)> = batch.iter().map(|(p, d)| (p.as_str(), *d)).collect();
                let merged = merge(list.iter().map(|(p, c)| (p.as_str(), *c)), &deltas);
                list = merged.into_iter().map(|(p, c)| (p.to_owned(), c)).collect();
                for (p, d) in batch {
                    *want.entry(p.clone()).or_insert(0) += d;
                }
            }
            let mut ranked: Vec<(String, i64)> = want.into_iter().collect();
            ranked.sort_by(rank);
            prop_assert_eq!(list, ranked);
        }
    }
}
