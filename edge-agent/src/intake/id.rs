//! Event ids for translated events.
//!
//! The native `event_id` is a UUID and the de-duplication key downstream. A sender id
//! that already is a UUID is used as it is. Anything else (analytics.js sends
//! `ajs-next-...`, other SDKs their own formats) becomes a UUIDv8 whose 122 free bits are
//! the XXH3-128 hash of a namespace and the id, so the same message sent twice gets the
//! same event id and different messages get different ones (a collision needs about
//! 2^61 ids). When one message becomes several events, the index of each is hashed in
//! (see `ga4.rs`).

use uuid::{Builder, Uuid};
use xxhash_rust::xxh3::Xxh3;

/// Namespaces, so equal ids from different senders (or roles) never meet.
pub(super) const SEGMENT: &str = "segment-message-id";
pub(super) const GA4: &str = "ga4-event";

/// A UUIDv8 from `namespace` and `parts`. Each part is hashed with its length, so
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub(super) fn derive(namespace: &str, parts: &[&[u8]]) -> Uuid {
    let mut hasher = Xxh3::new();
    for part in std::iter::once(namespace.as_bytes()).chain(parts.iter().copied()) {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Builder::from_custom_bytes(hasher.digest128().to_be_bytes()).into_uuid()
}

/// Segment's `messageId`: itself when it parses as a UUID (in its canonical lower-case
/// hyphenated form), else derived from it.
pub(super) fn segment(message_id: &str) -> Uuid {
    Uuid::try_parse(message_id).unwrap_or_else(|_| derive(SEGMENT, &[message_id.as_bytes()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_kept_and_other_ids_derived() {
        let uuid = "5D1F0E8A-3C1B-4B7E-9F4A-0C2D3E4F5A6B";
        assert_eq!(
            segment(uuid).to_string(),
            "5d1f0e8a-3c1b-4b7e-9f4a-0c2d3e4f5a6b"
        );
        let a = segment("ajs-next-1733461200000-abc");
        assert_eq!(a, segment("ajs-next-1733461200000-abc"));
        assert_ne!(a, segment("ajs-next-1733461200000-abd"));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn parts_are_delimited() {
        assert_ne!(derive(GA4, &[b"ab", b"c"]), derive(GA4, &[b"a", b"bc"]));
        assert_ne!(derive(GA4, &[b"x"]), derive(SEGMENT, &[b"x"]));
    }
}
