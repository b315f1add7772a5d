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

    /// The schema identifier carried in the `schema` header of every record
    /// (`json:<type>/v<version>`), so consumers can tell encodings and versions apart.
    pub const fn schema(self) -> &'static str {
        match self {
            EventKind::ProductView => "json:product_view/v1",
            EventKind::Cart => "json:cart/v1",
            EventKind::Purchase => "json:purchase/v1",
            EventKind::Search => "json:search/v1",
        }
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
