//! The compatibility levels of a schema registry's subjects (`BACKWARD`, `FULL`, ...).
//! Apart from the registry client (feature `avro`) so that a configuration naming a
//! level is read and checked without it.

/// A compatibility level of a subject, as the registry names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// A new schema reads data written with the latest one (the default).
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// The latest schema reads data written with a new one.
    Forward,
    /// Every earlier schema does.
    ForwardTransitive,
    /// Both backward and forward.
    Full,
    /// Both, against every earlier schema.
    FullTransitive,
    /// No check.
    None,
}

#[cfg_attr(not(feature = "avro"), allow(dead_code))]
impl Compatibility {
    /// The registry's name of the level (`BACKWARD`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }

    /// Reads a level by its registry name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Compatibility> {
        Some(match name.to_ascii_uppercase().as_str() {
            "BACKWARD" => Compatibility::Backward,
            "BACKWARD_TRANSITIVE" => Compatibility::BackwardTransitive,
            "FORWARD" => Compatibility::Forward,
            "FORWARD_TRANSITIVE" => Compatibility::ForwardTransitive,
            "FULL" => Compatibility::Full,
            "FULL_TRANSITIVE" => Compatibility::FullTransitive,
            "NONE" => Compatibility::None,
            _ => return None,
        })
    }

    pub(crate) fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    pub(crate) fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }
}
