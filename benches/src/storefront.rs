//! Storefront traffic for the load tools: the workspace's seeded generator
//! ([`testkit::storefront`]) with its event types as `ingest-core`'s, and the edge
//! agent's endpoint of each.
//!
//! Every event carries an `event_id` that encodes the run and the event's number
//! ([`event_id`]), so a verifier can pick this run's events out of a shared topic and
//! check each one without keeping the bodies.

use ingest_core::EventKind;
use testkit::storefront::EventType;

pub use testkit::storefront::{event_id, fixed_size_view};

/// The path of the edge agent's endpoint for one event of `kind`.
pub fn endpoint(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ProductView => "/api/events/product-view",
        EventKind::Cart => "/api/events/cart",
        EventKind::Purchase => "/api/events/purchase",
        EventKind::Search => "/api/events/search",
    }
}

/// One generated event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its type.
    pub kind: EventKind,
    /// Its number in the run.
    pub seq: u64,
    /// The JSON document, with `type` and `event_id` set.
    pub body: Vec<u8>,
}

/// A deterministic storefront (see [`testkit::storefront::Storefront`]).
#[derive(Debug, Clone)]
pub struct Storefront(testkit::storefront::Storefront);

impl Storefront {
    /// A storefront for run `run` (the high half of every `event_id`) whose event
    /// numbers start at `first_seq`; `seed` picks the sequence of shoppers' actions.
    pub fn new(run: u64, first_seq: u64, seed: u64) -> Self {
        Storefront(testkit::storefront::Storefront::new(run, first_seq, seed))
    }

    /// The same storefront with `users` shoppers and a catalog of `products` (see
    /// [`testkit::storefront::Storefront::with_shape`]; the defaults are 10,000 and 2,000).
    pub fn with_shape(self, users: u64, products: u64) -> Self {
        Storefront(self.0.with_shape(users, products))
    }

    /// The run this storefront's event ids belong to.
    pub fn run(&self) -> u64 {
        self.0.run()
    }

    /// The next event, of a type drawn from the storefront mix.
    pub fn next_event(&mut self) -> Event {
        convert(self.0.next_event())
    }
}

fn convert(event: testkit::storefront::Event) -> Event {
    let kind = match event.kind {
        EventType::ProductView => EventKind::ProductView,
        EventType::Cart => EventKind::Cart,
        EventType::Purchase => EventKind::Purchase,
        EventType::Search => EventKind::Search,
    };
    Event {
        kind,
        seq: event.seq,
        body: event.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_core::Validator;

    #[test]
    fn every_generated_event_is_valid_and_has_its_id() {
        let validator = Validator::default();
        let mut shop = Storefront::new(7, 100, 42);
        let mut kinds = std::collections::HashSet::new();
        for i in 0..2_000u64 {
            let event = shop.next_event();
            assert_eq!(event.seq, 100 + i);
            kinds.insert(event.kind);
            let valid = validator
                .validate(Some(event.kind), bytes::Bytes::from(event.body.clone()))
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&event.body)));
            assert_eq!(valid.event_id(), event_id(7, event.seq));
        }
        assert_eq!(kinds.len(), 4, "the mix has every type");
    }

    #[test]
    fn same_seed_same_events() {
        let a: Vec<_> = {
            let mut shop = Storefront::new(1, 0, 9);
            (0..50).map(|_| shop.next_event().body).collect()
        };
        let mut shop = Storefront::new(1, 0, 9);
        let b: Vec<_> = (0..50).map(|_| shop.next_event().body).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn fixed_size_views_have_the_size_and_are_valid() {
        let body = fixed_size_view(3, 12, 300);
        assert_eq!(body.len(), 300);
        Validator::default()
            .validate(Some(EventKind::ProductView), bytes::Bytes::from(body))
            .expect("valid");
    }
}
