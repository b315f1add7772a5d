//! "Viewed together" and "bought together" counts, and recommendations from them.
//!
//! Each user keeps the most recent distinct products they viewed and bought (bounded,
//! newest first), committed with the checkpoint. A view of product P adds one to the
//! co-view count of P with each of the user's `pair_window` most recent other views,
//! both ways; an order adds one to the co-purchase count of each of its products with
//! the order's other products and with the user's `pair_window` most recent other
//! purchases, both ways. The window, and the number of an order's products that take
//! part (its first `order_items_paired` distinct ones), bound the pair counts written
//! per event. A user's recommendations score every product B by the co-view counts of (A, B) over their
//! recent views A, plus twice the co-purchase counts over their recent purchases A, and
//! leave out what they recently bought. Only the top `partners_per_product` partners of
//! each product A (by count, ties by product id) take part: an item-to-item neighbour
//! list, so the cost of a user's recommendations is bounded by their recent products,
//! not by the catalog. Views and orders of one user come from one partition each, in
//! order, so the counts do not depend on how topics are interleaved.
//!
//! Checkpoints log the pair deltas ([`pair_log`]); [`fold`] adds them to the counts in
//! the background. [`publisher`] publishes the recommendations of the users noted in
//! [`active_users`] to Kafka.

pub mod active_users;
pub mod fold;
pub mod pair_log;
pub mod partners;
pub mod publisher;

use std::collections::HashMap;

// Defined beside the row format that encodes them, so that pair_log.rs stands alone
// (the fuzz targets, fuzz/, compile it without the rest of the processor).
pub use pair_log::{CO_PURCHASE, CO_VIEW};

/// One user's recent products, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent {
    /// Recently viewed, distinct.
    pub viewed: Vec<String>,
    /// Recently bought, distinct.
    pub bought: Vec<String>,
}

/// A product recommended to a user.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recommendation {
    /// The product.
    pub product_id: String,
    /// Co-view count plus twice the co-purchase count, over the user's recent products.
    pub score: i64,
}

/// The most counted partners of some products, per kind: `(partner, count)`, most
/// counted first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Neighbours {
    viewed_with: HashMap<String, Vec<(String, i64)>>,
    bought_with: HashMap<String, Vec<(String, i64)>>,
}

impl Neighbours {
    /// Appends `b` with `count` to the list of `a` for `kind` ([`CO_VIEW`] or
    /// [`CO_PURCHASE`]; anything else is ignored).
    pub fn push(&mut self, kind: &str, a: String, b: String, count: i64) {
        let lists = match kind {
            CO_VIEW => &mut self.viewed_with,
            CO_PURCHASE => &mut self.bought_with,
            _ => return,
        };
        lists.entry(a).or_default().push((b, count));
    }

    fn of(&self, kind: &str, a: &str) -> &[(String, i64)] {
        let lists = if kind == CO_PURCHASE {
            &self.bought_with
        } else {
            &self.viewed_with
        };
        lists.get(a).map_or(&[], Vec::as_slice)
    }
}

/// The top `n` recommendations of a user with `recent` products: each partner B of
/// their recent views A scores the co-view count (A, B), each partner of their recent
/// purchases twice the co-purchase count; what they recently bought is left out; ties
/// by product id in byte order.
pub fn score(recent: &Recent, neighbours: &Neighbours, n: usize) -> Vec<Recommendation> {
    let mut scores: HashMap<&str, i64> = HashMap::new();
    for (kind, a) in recent.seeds() {
        let weight = if kind == CO_PURCHASE { 2 } else { 1 };
        for (b, count) in neighbours.of(kind, a) {
            if !recent.bought.iter().any(|p| p == b) {
                *scores.entry(b.as_str()).or_default() += weight * count;
            }
        }
    }
    let mut ranked: Vec<(&str, i64)> = scores.into_iter().collect();
    ranked.sort_unstable_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(y.0)));
    ranked.truncate(n);
    ranked
        .into_iter()
        .map(|(product_id, score)| Recommendation {
            product_id: product_id.to_owned(),
            score,
        })
        .collect()
}

fn push_front(list: &mut Vec<String>, product: &str, max: usize) {
    list.retain(|p| p != product);
    list.insert(0, product.to_owned());
    list.truncate(max);
}

impl Recent {
    /// Whether it holds no product.
    pub fn is_empty(&self) -> bool {
        self.viewed.is_empty() && self.bought.is_empty()
    }

    /// The `(kind, product)` neighbour lists the user's recommendations draw on.
    pub fn seeds(&self) -> Vec<(&'static str, &str)> {
        let viewed = self.viewed.iter().map(|p| (CO_VIEW, p.as_str()));
        let bought = self.bought.iter().map(|p| (CO_PURCHASE, p.as_str()));
        viewed.chain(bought).collect()
    }

    /// Records a view (keeping `max` views), calling `pair(product, other)` once for
    /// each co-view pair to count: the product with each of the `window` most recent
    /// other views (a count is symmetric: one call stands for both directions).
    pub fn view(
        &mut self,
        product: &str,
        max: usize,
        window: usize,
        mut pair: impl FnMut(&str, &str),
    ) {
        for other in self.viewed.iter().filter(|p| *p != product).take(window) {
            pair(product, other);
        }
        push_front(&mut self.viewed, product, max);
    }

    /// Records an order of `products` (keeping `max` purchases); calls `pair(a, b)`
    /// once for each co-purchase pair to count (both directions): within the order, and with the `window` most recent
    /// other purchases. Only the order's first `max_items` distinct products (in item
    /// order) take part, so an order makes at most `n·(n−1)/2 + n·window` pairs
    /// (`n = max_items`) however many items it has.
    pub fn order(
        &mut self,
        products: &[&str],
        max: usize,
        window: usize,
        max_items: usize,
        mut pair: impl FnMut(&str, &str),
    ) {
        let mut distinct: Vec<&str> = Vec::with_capacity(max_items.min(products.len()));
        for product in products {
            if distinct.len() == max_items {
                break;
            }
            if !distinct.contains(product) {
                distinct.push(product);
            }
        }
        distinct.sort_unstable();
        for (i, product) in distinct.iter().enumerate() {
            for earlier in &distinct[..i] {
                pair(product, earlier);
            }
            let recent = self
                .bought
                .iter()
                .filter(|p| !distinct.contains(&p.as_str()))
                .take(window);
            for other in recent {
                pair(product, other);
            }
        }
        for product in distinct {
            push_front(&mut self.bought, product, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs a call reports, each as `(a, b)` in the order given.
    fn pairs_of(call: impl FnOnce(&mut dyn FnMut(&str, &str))) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        call(&mut |a: &str, b: &str| pairs.push((a.to_owned(), b.to_owned())));
        pairs
    }

    #[test]
    fn views_pair_with_recent_views_and_orders_with_recent_purchases() {
        let mut r = Recent::default();
        assert!(pairs_of(|f| r.view("a", 2, 5, f)).is_empty());
        assert_eq!(
            pairs_of(|f| r.view("b", 2, 5, f)),
            vec![("b".into(), "a".into())]
        );
        // Viewing a again pairs it with b only, and keeps the list distinct.
        assert_eq!(pairs_of(|f| r.view("a", 2, 5, f)).len(), 1);
        assert_eq!(r.viewed, vec!["a", "b"]);
        r.view("c", 2, 5, |_, _| {});
        assert_eq!(r.viewed, vec!["c", "a"], "bounded");

        let pairs = pairs_of(|f| r.order(&["y", "x", "x"], 5, 5, 25, f));
        assert_eq!(pairs, vec![("y".into(), "x".into())]);
        let pairs = pairs_of(|f| r.order(&["z"], 5, 5, 25, f));
        assert_eq!(pairs.len(), 2, "z with x and y");
        assert_eq!(r.bought, vec!["z", "y", "x"]);
    }

    #[test]
    fn an_order_pairs_only_its_first_distinct_products() {
        let mut r = Recent::default();
        let items: Vec<String> = (0..749).map(|i| format!("p{i:03}")).collect();
        let mut order: Vec<&str> = items.iter().map(String::as_str).collect();
        order.insert(1, "p000");
        let pairs = pairs_of(|f| r.order(&order, 20, 5, 25, f));
        assert_eq!(
            pairs.len(),
            25 * 24 / 2,
            "25 distinct products, each pair once"
        );
        assert!(pairs
            .iter()
            .all(|(a, b)| a.as_str() < "p025" && b.as_str() < "p025" && a != b));
        let next = pairs_of(|f| r.order(&["q"], 20, 5, 25, f));
        assert_eq!(next.len(), 5, "with the window of recent purchases");
    }

    #[test]
    fn pairs_reach_only_the_window_of_most_recent_products() {
        let mut r = Recent::default();
        for p in ["a", "b", "c", "d"] {
            r.view(p, 10, 2, |_, _| {});
        }
        let pairs = pairs_of(|f| r.view("e", 10, 2, f));
        assert_eq!(
            pairs,
            vec![("e".into(), "d".into()), ("e".into(), "c".into())]
        );
        assert_eq!(r.viewed.len(), 5, "the list keeps more than the window");
        r.order(&["x"], 10, 1, 25, |_, _| {});
        r.order(&["y"], 10, 1, 25, |_, _| {});
        let pairs = pairs_of(|f| r.order(&["z", "w"], 10, 1, 25, f));
        // w and z with each other, each with y only (x is outside the window).
        assert_eq!(pairs.len(), 3);
        assert!(!pairs.iter().any(|(a, b)| a == "x" || b == "x"));
    }

    #[test]
    fn scores_sum_views_and_twice_purchases_and_leave_out_what_was_bought() {
        let recent = Recent {
            viewed: vec!["a".into(), "b".into()],
            bought: vec!["c".into()],
        };
        let mut nb = Neighbours::default();
        nb.push(CO_VIEW, "a".into(), "x".into(), 5);
        nb.push(CO_VIEW, "a".into(), "c".into(), 9);
        nb.push(CO_VIEW, "b".into(), "x".into(), 1);
        nb.push(CO_VIEW, "b".into(), "y".into(), 4);
        nb.push(CO_PURCHASE, "c".into(), "y".into(), 1);
        nb.push(CO_PURCHASE, "c".into(), "z".into(), 3);
        // Lists of products the user did not touch do not count.
        nb.push(CO_VIEW, "q".into(), "w".into(), 100);
        nb.push("other", "a".into(), "w".into(), 100);
        let got: Vec<(String, i64)> = score(&recent, &nb, 10)
            .into_iter()
            .map(|r| (r.product_id, r.score))
            .collect();
        // x: 5 + 1; y: 4 + 2×1; z: 2×3; c was bought. Ties by id.
        assert_eq!(got, vec![("x".into(), 6), ("y".into(), 6), ("z".into(), 6)]);
        assert_eq!(score(&recent, &nb, 2).len(), 2, "top n");
        assert!(score(&Recent::default(), &nb, 10).is_empty());
    }
}
