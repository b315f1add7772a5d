//! Topic names for benchmark runs that must not mix with other traffic on a shared broker.

use ingest_core::IngestConfig;

/// Renames every topic of `config` (the four event topics, the dead-letter topic and the custom-events topic) to
/// `PREFIX-<name>`: `bench-product-views`, ...
pub fn prefix_topics(config: &mut IngestConfig, prefix: &str) {
    let topics = &mut config.topics;
    for topic in [
        &mut topics.product_view,
        &mut topics.cart,
        &mut topics.purchase,
        &mut topics.search,
        &mut topics.dead_letter,
        &mut topics.custom,
    ] {
        topic.name = format!("{prefix}-{}", topic.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_gets_the_prefix() {
        let mut config = IngestConfig::default();
        prefix_topics(&mut config, "run7");
        for (_, topic) in config.topics.all() {
            assert!(topic.name.starts_with("run7-"), "{}", topic.name);
        }
        assert_eq!(config.topics.cart.name, "run7-cart-events");
    }
}
