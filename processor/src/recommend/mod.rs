//! "Viewed together" and "bought together" counts, and recommendations from them.
//!
//! Each user keeps the most recent distinct products they viewed and bought (bounded,
//! newest first), committed with the checkpoint. A view of product P adds one to the
//! co-view count of P with every product in the user's recent views, both ways; an
//! order adds one to the co-purchase count of each of its products with the user's
//! recent purchases and with the order's other products, both ways. A user's
//! recommendations score every product B by the co-view counts of (A, B) over their
//! recent views A, plus twice the co-purchase counts over their recent purchases A, and
//! leave out what they recently bought. Only the top `partners_per_product` partners of
//! each product A (by count, ties by product id) take part: an item-to-item neighbour
//! list, so the cost of a user's recommendations is bounded by their recent products,
//! not by the catalog. Views and orders of one user come from one partition each, in
//! order, so the counts do not depend on how topics are interleaved.
//!
//! [`publisher`] publishes the recommendations of active users to Kafka.

pub mod publisher;

/// Kind of a product pair count.
pub const CO_VIEW: &str = "view";
/// Kind of a product pair count.
pub const CO_PURCHASE: &str = "purchase";

/// One user's recent products, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent {
    /// Recently viewed, distinct.
    pub viewed: Vec<String>,
    /// Recently bought, distinct.
    pub bought: Vec<String>,
}

fn push_front(list: &mut Vec<String>, product: &str, max: usize) {
    list.retain(|p| p != product);
    list.insert(0, product.to_owned());
    list.truncate(max);
}

impl Recent {
    /// Records a view; returns the co-view pairs to count (both directions).
    pub fn view(&mut self, product: &str, max: usize) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for other in self.viewed.iter().filter(|p| *p != product) {
            pairs.push((product.to_owned(), other.clone()));
            pairs.push((other.clone(), product.to_owned()));
        }
        push_front(&mut self.viewed, product, max);
        pairs
    }

    /// Records an order of `products`; returns the co-purchase pairs to count.
    pub fn order(&mut self, products: &[&str], max: usize) -> Vec<(String, String)> {
        let mut distinct: Vec<&str> = products.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut pairs = Vec::new();
        for (i, product) in distinct.iter().enumerate() {
            let earlier = distinct[..i].iter().map(|p| (*p).to_owned());
            let recent = self
                .bought
                .iter()
                .filter(|p| !distinct.contains(&p.as_str()))
                .cloned();
            for other in earlier.chain(recent) {
                pairs.push(((*product).to_owned(), other.clone()));
                pairs.push((other, (*product).to_owned()));
            }
        }
        for product in distinct {
            push_front(&mut self.bought, product, max);
        }
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_pair_with_recent_views_and_orders_with_recent_purchases() {
        let mut r = Recent::default();
        assert!(r.view("a", 2).is_empty());
        assert_eq!(
            r.view("b", 2),
            vec![("b".into(), "a".into()), ("a".into(), "b".into())]
        );
        // Viewing a again pairs it with b only, and keeps the list distinct.
        assert_eq!(r.view("a", 2).len(), 2);
        assert_eq!(r.viewed, vec!["a", "b"]);
        r.view("c", 2);
        assert_eq!(r.viewed, vec!["c", "a"], "bounded");

        let pairs = r.order(&["y", "x", "x"], 5);
        assert_eq!(
            pairs,
            vec![("y".into(), "x".into()), ("x".into(), "y".into())]
        );
        let pairs = r.order(&["z"], 5);
        assert_eq!(pairs.len(), 4, "z with x and y");
        assert_eq!(r.bought, vec!["z", "y", "x"]);
    }
}
