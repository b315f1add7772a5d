//! The event types of the public contract.

use std::fmt;

/// The kind of an e-commerce event. Each kind has its own topic, endpoint and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A product page or tile was viewed (`product_view`).
    ProductView,
    /// A cart changed (`cart`): add, remove, update or clear.
    Cart,
    /// An order was placed (`purchase`).
    Purchase,
    /// A search was run (`search`).
    Search,
}

impl EventKind {
    /// All kinds, in a fixed order (index with [`EventKind::index`]).
    pub const ALL: [EventKind; 4] = [
        EventKind::ProductView,
        EventKind::Cart,
        EventKind::Purchase,
        EventKind::Search,
    ];

    /// The name used in the `type` field and the `event_type` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::ProductView => "product_view",
            EventKind::Cart => "cart",
            EventKind::Purchase => "purchase",
            EventKind::Search => "search",
        }
    }

    /// A dense index in `0..4`, for per-kind tables.
    pub const fn index(self) -> usize {
        match self {
            EventKind::ProductView => 0,
            EventKind::Cart => 1,
            EventKind::Purchase => 2,
            EventKind::Search => 3,
        }
    }

    /// The schema identifier of version 1 of the type's contract
    /// (`json:<type>/v1`), carried in the `schema` header of its records.
    pub const fn schema(self) -> &'static str {
        self.schema_of(1)
    }

    /// The latest version of the type's contract: `product_view` is at version 2
    /// (`variant`, `list_id`, `position`), the others at version 1.
    pub const fn latest_version(self) -> u8 {
        match self {
            EventKind::ProductView => 2,
            EventKind::Cart | EventKind::Purchase | EventKind::Search => 1,
        }
    }

    /// The schema identifier of `version` of the type's contract
    /// (`json:<type>/v<version>`), so consumers can tell encodings and versions apart.
    /// Versions past [`latest_version`](Self::latest_version) (and 0) give the latest.
    pub const fn schema_of(self, version: u8) -> &'static str {
        match (self, version) {
            (EventKind::ProductView, 1) => "json:product_view/v1",
            (EventKind::ProductView, _) => "json:product_view/v2",
            (EventKind::Cart, _) => "json:cart/v1",
            (EventKind::Purchase, _) => "json:purchase/v1",
            (EventKind::Search, _) => "json:search/v1",
        }
    }

    /// The version a JSON `schema` header names, if it is a version of this type this
    /// library knows (`json:product_view/v2` → 2).
    pub fn json_version(self, header: &str) -> Option<u8> {
        (1..=self.latest_version()).find(|&v| self.schema_of(v) == header)
    }

    /// The kind for a `type` value or an endpoint name; `product-view` is accepted as
    /// an alias of `product_view` because it is the endpoint's spelling.
    pub fn from_name(name: &str) -> Option<EventKind> {
        match name {
            "product_view" | "product-view" => Some(EventKind::ProductView),
            "cart" => Some(EventKind::Cart),
            "purchase" => Some(EventKind::Purchase),
            "search" => Some(EventKind::Search),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
