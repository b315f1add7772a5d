//! A small read-only view over simd-json's tape.
//!
//! simd-json parses a document into a flat "tape" of nodes in document order, where a
//! container node records how many nodes it spans. Walking the tape directly keeps
//! validation allocation-free (no map per object, no vector per array) and lets us see
//! every key, which is how duplicate keys are detected.
//!
//! The rules read an object through an [`Index`]: one pass over its members files each
//! key the rules know under its [`Field`] (matched by length and first byte, then one
//! comparison) and detects duplicate keys at the same time: a bit per known field, and a
//! comparison among the few unknown keys only. Lookups are then a slot read.

use simd_json::tape::Node;
use simd_json::StaticNode;

/// One JSON value: a slice of the tape starting at its node.
#[derive(Clone, Copy)]
pub(crate) struct Json<'t, 'i> {
    nodes: &'t [Node<'i>],
}

/// The JSON types, as named in error messages.
pub(crate) fn type_name(value: Json<'_, '_>) -> &'static str {
    match value.node() {
        Node::String(_) => "a string",
        Node::Object { .. } => "an object",
        Node::Array { .. } => "an array",
        Node::Static(StaticNode::Null) => "null",
        Node::Static(StaticNode::Bool(_)) => "a boolean",
        Node::Static(_) => "a number",
    }
}

/// How many tape nodes the value starting at `node` occupies.
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

impl<'t, 'i> Json<'t, 'i> {
    /// The root value of a parsed tape. `None` for an empty tape (never produced by a
    /// successful parse, but cheap to rule out).
    pub(crate) fn root(nodes: &'t [Node<'i>]) -> Option<Self> {
        let first = nodes.first()?;
        let len = span(first).min(nodes.len());
        Some(Json {
            nodes: &nodes[..len],
        })
    }

    fn node(&self) -> &'t Node<'i> {
        // A `Json` is only ever built over a non-empty slice.
        &self.nodes[0]
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.node(), Node::Static(StaticNode::Null))
    }

    pub(crate) fn as_str(&self) -> Option<&'i str> {
        match self.node() {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a number, whatever its JSON representation.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self.node() {
            Node::Static(StaticNode::I64(n)) => Some(*n as f64),
            Node::Static(StaticNode::U64(n)) => Some(*n as f64),
            Node::Static(StaticNode::F64(n)) => Some(*n),
            _ => None,
        }
    }

    /// The value as a whole number: an integer literal, or a float without a fraction
    /// (`2.0`, as some serialisers write integers).
    pub(crate) fn as_integer(&self) -> Option<Result<i128, ()>> {
        match self.node() {
            Node::Static(StaticNode::I64(n)) => Some(Ok(i128::from(*n))),
            Node::Static(StaticNode::U64(n)) => Some(Ok(i128::from(*n))),
            Node::Static(StaticNode::F64(n)) if n.fract() == 0.0 && n.abs() < 9.0e18 => {
                Some(Ok(*n as i128))
            }
            Node::Static(StaticNode::F64(_)) => Some(Err(())),
            _ => None,
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        matches!(self.node(), Node::Object { .. })
    }

    /// The members of an object, in document order; `None` if not an object.
    pub(crate) fn members(&self) -> Option<Members<'t, 'i>> {
        match self.node() {
            Node::Object { len, .. } => Some(Members {
                rest: &self.nodes[1..],
                remaining: *len,
            }),
            _ => None,
        }
    }

    /// The elements of an array, in order; `None` if not an array.
    pub(crate) fn elements(&self) -> Option<Elements<'t, 'i>> {
        match self.node() {
            Node::Array { len, .. } => Some(Elements {
                rest: &self.nodes[1..],
                remaining: *len,
            }),
            _ => None,
        }
    }

    /// The number of elements of an array or members of an object.
    pub(crate) fn len(&self) -> usize {
        match self.node() {
            Node::Object { len, .. } | Node::Array { len, .. } => *len,
            _ => 0,
        }
    }

    /// Indexes an object's members by [`Field`] in one pass (any other value has none), checking on the way that no
    /// key appears twice in it, nor in any object nested in its values, except under the
    /// fields in `deferred` (whose objects the caller indexes itself).
    ///
    /// # Errors
    ///
    /// A repeated key: the first one met, which need not be the first in document order
    /// ([`find_duplicate_key`](Self::find_duplicate_key) finds that one).
    pub(crate) fn index(&self, deferred: FieldSet) -> Result<Index<'t, 'i>, &'i str> {
        let mut index = Index {
            nodes: self.nodes,
            slots: [0; Field::COUNT],
        };
        let Node::Object { len, .. } = self.node() else {
            return Ok(index);
        };
        let mut seen = FieldSet::EMPTY;
        let mut unknown: [&'i str; UNKNOWN_KEYS] = [""; UNKNOWN_KEYS];
        let mut unknown_count = 0;
        let mut at = 1;
        for _ in 0..*len {
            let Some(Node::String(key)) = self.nodes.get(at) else {
                break;
            };
            let value_at = at + 1;
            let Some(value) = self.nodes.get(value_at) else {
                break;
            };
            at = value_at + span(value);
            let field = Field::of(key);
            match field {
                Some(field) => {
                    if seen.contains(field) {
                        return Err(key);
                    }
                    seen.insert(field);
                    index.slots[field as usize] = value_at;
                }
                None if unknown_count < UNKNOWN_KEYS => {
                    if unknown[..unknown_count].contains(key) {
                        return Err(key);
                    }
                    unknown[unknown_count] = key;
                    unknown_count += 1;
                }
                None => {
                    unknown_count += 1;
                }
            }
            if matches!(value, Node::Object { .. } | Node::Array { .. })
                && !field.is_some_and(|f| deferred.contains(f))
            {
                let end = at.min(self.nodes.len());
                let nested = Json {
                    nodes: &self.nodes[value_at..end],
                };
                if let Some(dup) = nested.duplicate_in_subtree() {
                    return Err(dup);
                }
            }
        }
        // Past the small table of unknown keys, compare them all the slow way (objects
        // that large are rare in events).
        if unknown_count > UNKNOWN_KEYS {
            if let Some(dup) = self.duplicate_among_own_keys() {
                return Err(dup);
            }
        }
        Ok(index)
    }

    /// Finds the first object, at any depth, that holds the same key twice, and returns
    /// that key.
    pub(crate) fn find_duplicate_key(&self) -> Option<&'i str> {
        self.duplicate_in_subtree()
    }

    /// A key that appears twice among this object's own members (not nested ones).
    fn duplicate_among_own_keys(&self) -> Option<&'i str> {
        let members = self.members()?;
        // Objects of events are small: a quadratic scan beats hashing below ~32 keys.
        if self.len() > 32 {
            let mut keys: Vec<&str> = members.map(|(k, _)| k).collect();
            keys.sort_unstable();
            keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
        } else {
            let mut seen: [&str; 32] = [""; 32];
            for (i, (key, _)) in members.enumerate() {
                if seen[..i].contains(&key) {
                    return Some(key);
                }
                seen[i] = key;
            }
            None
        }
    }

    fn duplicate_in_subtree(&self) -> Option<&'i str> {
        if let Some(members) = self.members() {
            if let Some(dup) = self.duplicate_among_own_keys() {
                return Some(dup);
            }
            for (_, value) in members {
                if let Some(dup) = value.duplicate_in_subtree() {
                    return Some(dup);
                }
            }
        } else if let Some(elements) = self.elements() {
            for value in elements {
                if let Some(dup) = value.duplicate_in_subtree() {
                    return Some(dup);
                }
            }
        }
        None
    }
}

/// Iterator over an object's `(key, value)` pairs.
#[derive(Clone)]
pub(crate) struct Members<'t, 'i> {
    rest: &'t [Node<'i>],
    remaining: usize,
}

impl<'t, 'i> Iterator for Members<'t, 'i> {
    type Item = (&'i str, Json<'t, 'i>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (key_node, after_key) = self.rest.split_first()?;
        let Node::String(key) = key_node else {
            return None;
        };
        let value_node = after_key.first()?;
        let len = span(value_node).min(after_key.len());
        let (value, rest) = after_key.split_at(len);
        self.rest = rest;
        Some((key, Json { nodes: value }))
    }
}

/// Iterator over an array's elements.
#[derive(Clone)]
pub(crate) struct Elements<'t, 'i> {
    rest: &'t [Node<'i>],
    remaining: usize,
}

impl<'t, 'i> Iterator for Elements<'t, 'i> {
    type Item = Json<'t, 'i>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let first = self.rest.first()?;
        let len = span(first).min(self.rest.len());
        let (value, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Json { nodes: value })
    }
}

/// How many unknown keys of one object [`Json::index`] compares pairwise; past that it
/// falls back to sorting them.
const UNKNOWN_KEYS: usize = 16;

/// The field names the rules read, in any object of an event (top level, `context`,
/// `items[]`). The discriminant is the slot in an [`Index`] and the bit in a [`FieldSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Field {
    Type,
    EventId,
    UserId,
    AnonymousId,
    SessionId,
    Timestamp,
    Context,
    ProductId,
    Category,
    Brand,
    Price,
    Currency,
    Action,
    Quantity,
    CartId,
    OrderId,
    Items,
    Total,
    Discount,
    Tax,
    Shipping,
    Coupon,
    Query,
    ResultsCount,
    Filters,
    UserAgent,
    PageUrl,
    Referrer,
    Locale,
    Ip,
    Experiments,
    Variant,
    ListId,
    Position,
}

impl Field {
    /// Number of fields.
    pub(crate) const COUNT: usize = Field::Position as usize + 1;

    /// Every field, in discriminant order.
    #[cfg(test)]
    pub(crate) const ALL: [Field; Field::COUNT] = [
        Field::Type,
        Field::EventId,
        Field::UserId,
        Field::AnonymousId,
        Field::SessionId,
        Field::Timestamp,
        Field::Context,
        Field::ProductId,
        Field::Category,
        Field::Brand,
        Field::Price,
        Field::Currency,
        Field::Action,
        Field::Quantity,
        Field::CartId,
        Field::OrderId,
        Field::Items,
        Field::Total,
        Field::Discount,
        Field::Tax,
        Field::Shipping,
        Field::Coupon,
        Field::Query,
        Field::ResultsCount,
        Field::Filters,
        Field::UserAgent,
        Field::PageUrl,
        Field::Referrer,
        Field::Locale,
        Field::Ip,
        Field::Experiments,
        Field::Variant,
        Field::ListId,
        Field::Position,
    ];

    /// The field's JSON key.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::EventId => "event_id",
            Field::UserId => "user_id",
            Field::AnonymousId => "anonymous_id",
            Field::SessionId => "session_id",
            Field::Timestamp => "timestamp",
            Field::Context => "context",
            Field::ProductId => "product_id",
            Field::Category => "category",
            Field::Brand => "brand",
            Field::Price => "price",
            Field::Currency => "currency",
            Field::Action => "action",
            Field::Quantity => "quantity",
            Field::CartId => "cart_id",
            Field::OrderId => "order_id",
            Field::Items => "items",
            Field::Total => "total",
            Field::Discount => "discount",
            Field::Tax => "tax",
            Field::Shipping => "shipping",
            Field::Coupon => "coupon",
            Field::Query => "query",
            Field::ResultsCount => "results_count",
            Field::Filters => "filters",
            Field::UserAgent => "user_agent",
            Field::PageUrl => "page_url",
            Field::Referrer => "referrer",
            Field::Locale => "locale",
            Field::Ip => "ip",
            Field::Experiments => "experiments",
            Field::Variant => "variant",
            Field::ListId => "list_id",
            Field::Position => "position",
        }
    }

    /// The field named `key`, if the rules know it. Length and first byte pick the one
    /// candidate (two for `c` at lengths 7 and 8 and for `p` at 8, told apart by the
    /// second byte); one comparison confirms it.
    pub(crate) fn of(key: &str) -> Option<Field> {
        let bytes = key.as_bytes();
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        let candidate = match (bytes.len(), first) {
            (2, b'i') => Field::Ip,
            (3, b't') => Field::Tax,
            (4, b't') => Field::Type,
            (5, b'b') => Field::Brand,
            (5, b'p') => Field::Price,
            (5, b'i') => Field::Items,
            (5, b't') => Field::Total,
            (5, b'q') => Field::Query,
            (6, b'a') => Field::Action,
            (6, b'c') => Field::Coupon,
            (6, b'l') => Field::Locale,
            (7, b'u') => Field::UserId,
            (7, b'c') if second == b'o' => Field::Context,
            (7, b'c') => Field::CartId,
            (7, b'f') => Field::Filters,
            (7, b'v') => Field::Variant,
            (7, b'l') => Field::ListId,
            (8, b'e') => Field::EventId,
            (8, b'c') if second == b'a' => Field::Category,
            (8, b'c') => Field::Currency,
            (8, b'q') => Field::Quantity,
            (8, b'o') => Field::OrderId,
            (8, b'd') => Field::Discount,
            (8, b's') => Field::Shipping,
            (8, b'p') if second == b'a' => Field::PageUrl,
            (8, b'p') => Field::Position,
            (8, b'r') => Field::Referrer,
            (9, b't') => Field::Timestamp,
            (10, b's') => Field::SessionId,
            (10, b'p') => Field::ProductId,
            (10, b'u') => Field::UserAgent,
            (11, b'e') => Field::Experiments,
            (12, b'a') => Field::AnonymousId,
            (13, b'r') => Field::ResultsCount,
            _ => return None,
        };
        (candidate.name() == key).then_some(candidate)
    }
}

/// A set of [`Field`]s, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSet(u64);

impl FieldSet {
    /// No field.
    pub(crate) const EMPTY: FieldSet = FieldSet(0);

    /// The set holding `fields`.
    pub(crate) const fn of(fields: &[Field]) -> FieldSet {
        let mut bits = 0;
        let mut i = 0;
        while i < fields.len() {
            bits |= 1 << fields[i] as u64;
            i += 1;
        }
        FieldSet(bits)
    }

    fn contains(self, field: Field) -> bool {
        self.0 & (1 << field as u64) != 0
    }

    fn insert(&mut self, field: Field) {
        self.0 |= 1 << field as u64;
    }
}

/// An object's members filed by [`Field`], built by [`Json::index`].
#[derive(Clone, Copy)]
pub(crate) struct Index<'t, 'i> {
    nodes: &'t [Node<'i>],
    /// Where each field's value starts in `nodes`; 0 (the object's own node) when absent.
    slots: [usize; Field::COUNT],
}

impl<'t, 'i> Index<'t, 'i> {
    /// The value of `field`, if the object has it.
    pub(crate) fn get(&self, field: Field) -> Option<Json<'t, 'i>> {
        let at = self.slots[field as usize];
        if at == 0 {
            return None;
        }
        let nodes = self.nodes.get(at..)?;
        let len = span(nodes.first()?).min(nodes.len());
        Some(Json {
            nodes: &nodes[..len],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_found_by_its_name_and_nothing_else_matches() {
        for field in Field::ALL {
            assert_eq!(Field::of(field.name()), Some(field), "{}", field.name());
            let mut near = field.name().to_owned();
            near.pop();
            near.push('!');
            assert_eq!(Field::of(&near), None, "{near}");
        }
        for key in [
            "", "t", "Type", "type ", "user_idx", "curr", "contexts", "cart-id",
        ] {
            assert_eq!(Field::of(key), None, "{key}");
        }
    }

    fn parse(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn index_finds_duplicates_in_own_keys_and_nested_values_but_not_deferred_ones() {
        let cases: [(&str, FieldSet, Result<(), &str>); 7] = [
            (r#"{"a":1,"user_id":"u"}"#, FieldSet::EMPTY, Ok(())),
            (
                r#"{"user_id":"u","user_id":"v"}"#,
                FieldSet::EMPTY,
                Err("user_id"),
            ),
            (r#"{"a":1,"b":2,"a":3}"#, FieldSet::EMPTY, Err("a")),
            (r#"{"x":[{"k":1,"k":2}]}"#, FieldSet::EMPTY, Err("k")),
            (
                r#"{"context":{"k":1,"k":2}}"#,
                FieldSet::of(&[Field::Context]),
                Ok(()),
            ),
            (r#"{"context":{"k":1,"k":2}}"#, FieldSet::EMPTY, Err("k")),
            (
                r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k0":0}"#,
                FieldSet::EMPTY,
                Err("k0"),
            ),
        ];
        for (text, deferred, want) in cases {
            let mut bytes = parse(text);
            let tape = simd_json::to_tape(&mut bytes).expect("valid JSON");
            let root = Json::root(&tape.0).expect("a value");
            let got = root.index(deferred).map(|_| ());
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn index_reads_the_values_of_known_fields() {
        let mut bytes =
            parse(r#"{"a":{"b":[1,2]},"user_id":"u","items":[{"price":2}],"tax":null}"#);
        let tape = simd_json::to_tape(&mut bytes).expect("valid JSON");
        let root = Json::root(&tape.0).expect("a value");
        let index = root.index(FieldSet::EMPTY).expect("no duplicates");
        assert_eq!(index.get(Field::UserId).and_then(|v| v.as_str()), Some("u"));
        assert_eq!(index.get(Field::Items).map(|v| v.len()), Some(1));
        assert!(index.get(Field::Tax).is_some_and(|v| v.is_null()));
        assert!(index.get(Field::Price).is_none());
    }
}
