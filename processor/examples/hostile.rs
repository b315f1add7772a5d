//! Writes records a foreign producer could write (NUL and control characters, amounts
//! past the contract's limits, 100 KB strings, values that are not JSON, headers that are
//! not UTF-8; see `testkit::hostile`) to the default event topics, straight to Kafka, so
//! that a running processor can be seen dead-lettering them and carrying on:
//!
//! ```text
//! cargo run -p processor --example hostile -- 127.0.0.1:19092
//! ```
//!
//! `scripts/demo --hostile` runs it before the storefront traffic.

fn main() {
    let brokers = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats as RFC 3339");
    let records = testkit::hostile::records(&timestamp);
    let raw: Vec<testkit::RawRecord> = records.into_iter().map(|h| h.record).collect();
    testkit::produce_raw(
        &brokers,
        &["product-views", "cart-events", "purchases", "search-events"],
        &raw,
    );
    println!(
        "{} hostile records written to {brokers}; each goes to the dead-letter topic (events-dlq)",
        raw.len()
    );
}
