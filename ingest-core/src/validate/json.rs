//! A small read-only view over simd-json's tape.
//!
//! simd-json parses a document into a flat "tape" of nodes in document order, where a
//! container node records how many nodes it spans. Walking the tape directly keeps
//! validation allocation-free (no map per object, no vector per array) and lets us see
//! every key, which is how duplicate keys are detected.

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

    /// The value of `key` in an object (the first one; duplicates are rejected earlier).
    pub(crate) fn get(&self, key: &str) -> Option<Json<'t, 'i>> {
        self.members()?.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Finds the first object, at any depth, that holds the same key twice, and returns
    /// that key.
    pub(crate) fn find_duplicate_key(&self) -> Option<&'i str> {
        self.duplicate_in_subtree()
    }

    fn duplicate_in_subtree(&self) -> Option<&'i str> {
        if let Some(members) = self.members() {
            // Objects of events are small: a quadratic scan beats hashing below ~32 keys.
            let n = self.len();
            if n > 32 {
                let mut keys: Vec<&str> = members.clone().map(|(k, _)| k).collect();
                keys.sort_unstable();
                if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
                    return Some(w[0]);
                }
            } else {
                let mut seen: [&str; 32] = [""; 32];
                for (i, (key, _)) in members.clone().enumerate() {
                    if seen[..i].contains(&key) {
                        return Some(key);
                    }
                    seen[i] = key;
                }
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
