//! The input of the processor benches: record values of the workspace's seeded
//! storefront traffic (`testkit::storefront`) as the processor reads them, decoded
//! events, and the aggregation of one checkpoint.
#![allow(dead_code)] // each bench target uses a different part of this module

use std::collections::HashMap;

use ingest_core::model::Event;
use ingest_core::EventKind;
use processor::aggregate::{Aggregator, Incoming, Rollup, SessionRules, TopicPartition};
use processor::catalog::Catalog;
use processor::dedup::SeenIds;
use testkit::storefront::Storefront;

/// Events per measured batch.
pub(crate) const EVENTS: usize = 10_000;

/// 2026-11-24T10:00:00Z, the first event's time; one event per 10 ms after it.
const T0_MS: i64 = 1_795_514_400_000;

/// The storefront's run and seed: every bench run measures the same events.
const RUN: u64 = 0xB0_0C;
const SEED: u64 = 0x5EED;

/// The storefront's products (`sku-0` to `sku-1999`).
const PRODUCTS: usize = 2_000;

/// `n` record values of the storefront's traffic with their type.
pub(crate) fn records(n: usize) -> Vec<(EventKind, Vec<u8>)> {
    let mut shop = Storefront::new(RUN, 0, SEED);
    (0..n)
        .map(|_| {
            let event = shop.next_event();
            let kind = EventKind::from_name(event.kind.as_str()).expect("a contract type");
            (kind, event.body)
        })
        .collect()
}

/// `n` decoded events as the consume loop holds them (eight partitions per topic).
pub(crate) fn incoming(n: usize) -> Vec<Incoming> {
    records(n)
        .into_iter()
        .enumerate()
        .map(|(i, (kind, value))| {
            let event = Event::decode(kind, &value).expect("valid");
            let id = format!("event-{i}");
            Incoming {
                source: TopicPartition::new(kind.as_str(), (i % 8) as i32),
                key: processor::dedup::key_of(&format!("9:bench-src/{id}")),
                event_id: id,
                event_time_ms: T0_MS + i as i64 * 10,
                event,
            }
        })
        .collect()
}

/// The catalog of the generated products and one rate.
pub(crate) fn catalog() -> Catalog {
    let mut catalog = Catalog::new("EUR");
    for sku in 0..PRODUCTS {
        catalog.insert_product(&format!("sku-{sku}"), "Product", Some("shoes".to_owned()));
    }
    catalog.insert_rate("USD", 0.92);
    catalog
}

/// One checkpoint's aggregation of `events`, from empty committed state (the
/// processor's defaults).
pub(crate) fn aggregate(catalog: &Catalog, events: &[Incoming]) -> Rollup {
    let rules = SessionRules {
        timeout_ms: 1_800_000,
        retention_ms: 86_400_000,
        max_times: 1_000,
        recent_products: 20,
        pair_window: 5,
        order_items_paired: 25,
    };
    let committed = SeenIds::default();
    let mut aggregator = Aggregator::new(
        catalog,
        300,
        rules,
        HashMap::new(),
        &committed,
        Default::default(),
        Default::default(),
    );
    for event in events {
        aggregator.add(event);
    }
    aggregator.finish()
}
