//! Writes records a foreign producer could write (NUL and control characters, amounts
//! past the contract's limits, 100 KB strings, values that are not JSON, headers that are
//! not UTF-8; see `testkit::hostile`) to the default event topics, straight to Kafka, so
//! that a running processor can be seen dead-lettering them and carrying on:
//!
//! ```text
//! cargo run -p processor --example hostile -- 127.0.0.1:19092
//! cargo run -p processor --example hostile -- 127.0.0.1:19092 VIEWS CART PURCHASES SEARCHES
//! ```
//!
//! The four topic names, in that order, replace the defaults when given.
//! `scripts/demo --hostile` runs it before the storefront traffic;
//! `scripts/test-monitoring` on its own topics.

const DEFAULT_TOPICS: [&str; 4] = ["product-views", "cart-events", "purchases", "search-events"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let brokers = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let topics: Vec<&str> = match &args[1.min(args.len())..] {
        [] => DEFAULT_TOPICS.to_vec(),
        named @ [_, _, _, _] => named.iter().map(String::as_str).collect(),
        other => {
            eprintln!(
                "hostile: give all four topics (views, cart, purchases, searches) or none, not {}",
                other.len()
            );
            std::process::exit(2);
        }
    };
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats as RFC 3339");
    let records = testkit::hostile::records(&timestamp);
    let raw: Vec<testkit::RawRecord> = records.into_iter().map(|h| h.record).collect();
    testkit::produce_raw(&brokers, &topics, &raw);
    println!(
        "{} hostile records written to {brokers} ({}); each goes to the processor's dead-letter topic",
        raw.len(),
        topics.join(", ")
    );
}
