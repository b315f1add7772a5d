//! The limits of the public event contract, in one place.
//!
//! The validator enforces these on the way in; consumers (the processor, or any service
//! reading the topics) apply the same rules to records that never passed the validator,
//! through [`Event::check_content`](crate::model::Event::check_content), and size their
//! own storage and arithmetic by them. Nothing else in the code base holds a copy.
//!
//! # Why these bounds
//!
//! - **Characters.** PostgreSQL refuses U+0000 in `text` and `jsonb`, so no string of an
//!   event may hold it ([`is_forbidden_in_text`]). Identifiers become keys, set members
//!   and label values downstream; control characters and line separators in them spoof
//!   logs and make composite names ambiguous ([`is_forbidden_in_identifier`]), and an
//!   experiment flag is rendered as `flag=variant`, so it may not hold `=` either
//!   ([`is_forbidden_in_flag`]).
//! - **Lengths** are counted in characters (Unicode scalar values), so a value takes at
//!   most four times as many bytes. Every identifier used as a database key stays below
//!   PostgreSQL's B-tree row limit (about 2,700 bytes) only while [`MAX_ID_CHARS`] stays
//!   well below 300.
//! - **Amounts and counts** are bounded so that one event's values fit 64-bit integers
//!   with room to spare: an amount in micro-units is at most [`MAX_AMOUNT`] × 10⁶ = 10¹⁷,
//!   about 92 times below `i64::MAX` (about 9.2 × 10¹⁸), and an order's purchased units
//!   are at most [`MAX_ITEMS`] × [`MAX_QUANTITY`] = 10⁹. Sums over many events can still
//!   reach the limit, so consumers add them with checked or saturating arithmetic.

use crate::error::{path_key, ErrorCode, ValidationError};

/// Longest `user_id`, `anonymous_id`, `session_id`, `product_id` (also in `items[]`),
/// `order_id`, `cart_id`, `coupon`, `list_id`, experiment flag and variant, in
/// characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest `category`, `brand` and `variant`, in characters.
pub const MAX_LABEL_CHARS: usize = 256;
/// Longest `search.query`, in characters.
pub const MAX_QUERY_CHARS: usize = 1024;
/// Longest `context.user_agent`, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 1024;
/// Longest `context.page_url` and `context.referrer`, in characters.
pub const MAX_URL_CHARS: usize = 4096;
/// Longest `context.locale`, in characters (BCP 47 tags are at most 35 in practice).
pub const MAX_LOCALE_CHARS: usize = 35;
/// Most entries in `context.experiments`.
pub const MAX_EXPERIMENTS: usize = 64;
/// Most entries in `purchase.items`.
pub const MAX_ITEMS: usize = 1000;

/// Largest amount (`price`, `total`, `discount`, `tax`, `shipping`, `items[].price`), in
/// the event's own currency. Large enough for orders in currencies with small units
/// (IDR, VND), small enough that the amount in micro-units fits an `i64` many times over.
pub const MAX_AMOUNT: f64 = 1e11;
/// Largest `quantity` of a cart event and of an order's item.
pub const MAX_QUANTITY: u64 = 1_000_000;
/// Largest `position` of a product view (its place in the list it was shown in).
pub const MAX_POSITION: u64 = 1_000_000;
/// Largest `results_count` of a search.
pub const MAX_RESULTS_COUNT: u64 = 1_000_000_000;

// The reasons for the bounds above, checked at compile time: one event's amount in
// micro-units, and an order's units, fit an `i64` with room to spare; an identifier of
// 4-byte characters, twice over (a composite key), fits a PostgreSQL B-tree row.
const _: () = assert!(MAX_AMOUNT * 1e6 < i64::MAX as f64 / 90.0);
const _: () = assert!((MAX_ITEMS as u64) * MAX_QUANTITY < i64::MAX as u64 / 1_000_000);
const _: () = assert!(MAX_RESULTS_COUNT < i64::MAX as u64 / 1_000_000);
const _: () = assert!(MAX_ID_CHARS * 4 * 2 < 2700);

/// Whether `c` is refused in every string of an event: U+0000 (NUL) only.
///
/// JSON can carry it as the escape `\u0000`; PostgreSQL cannot store it.
pub fn is_forbidden_in_text(c: char) -> bool {
    c == '\0'
}

/// Whether `c` is refused in identifiers: the C0 controls U+0000–U+001F (TAB, CR and LF
/// included), U+007F, the C1 controls U+0080–U+009F, and the line and paragraph
/// separators U+2028 and U+2029.
pub fn is_forbidden_in_identifier(c: char) -> bool {
    matches!(c, '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}')
}

/// Whether `c` is refused in experiment flag names: the identifier rule
/// ([`is_forbidden_in_identifier`]) plus `=`, because consumers render an experiment as
/// `flag=variant`.
pub fn is_forbidden_in_flag(c: char) -> bool {
    is_forbidden_in_identifier(c) || c == '='
}

/// Checks an identifier: not empty, at most [`MAX_ID_CHARS`] characters, no character
/// that [`is_forbidden_in_identifier`] refuses, and not only whitespace.
///
/// # Errors
///
/// A short reason meant to follow the field's name in a message, such as
/// `"must not be empty"` (so `user_id must not be empty`).
///
/// # Examples
///
/// ```
/// use ingest_core::contract::check_identifier;
///
/// assert!(check_identifier("sku-42").is_ok());
/// assert_eq!(check_identifier(""), Err("must not be empty"));
/// assert!(check_identifier("a\u{0}b").is_err());
/// assert!(check_identifier("  ").is_err());
/// ```
pub fn check_identifier(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err(ID_EMPTY);
    }
    // Bytes bound characters from above, so only long strings need counting.
    if s.len() > MAX_ID_CHARS && s.chars().count() > MAX_ID_CHARS {
        return Err(ID_TOO_LONG);
    }
    if let Some(c) = s.chars().find(|&c| is_forbidden_in_identifier(c)) {
        return Err(forbidden_reason(c));
    }
    if s.chars().all(char::is_whitespace) {
        return Err(ID_BLANK);
    }
    Ok(())
}

/// Checks an experiment flag name: [`check_identifier`], and no `=`.
pub(crate) fn check_flag(s: &str) -> Result<(), &'static str> {
    check_identifier(s)?;
    if s.contains('=') {
        return Err(FLAG_EQUALS);
    }
    Ok(())
}

/// Checks one `context.experiments` entry, for the validator and for
/// `Event::check_content` alike: the flag name follows [`check_flag`], the variant
/// (`Err` with its JSON type's name when it is not a string) [`check_identifier`]. The
/// error's field path shows the flag escaped and cut short: it is client text.
pub(crate) fn check_experiment(
    flag: &str,
    variant: Result<&str, &'static str>,
) -> Result<(), ValidationError> {
    let refuse = |message: String| {
        ValidationError::field(
            ErrorCode::InvalidValue,
            format!("context.experiments.{}", path_key(flag)),
            message,
        )
    };
    check_flag(flag).map_err(|reason| refuse(format!("experiment flag names {reason}")))?;
    let variant = variant.map_err(|type_name| {
        refuse(format!(
            "experiment variant names must be strings, not {type_name}"
        ))
    })?;
    check_identifier(variant).map_err(|reason| refuse(format!("experiment variant names {reason}")))
}

/// Whether `s` holds a character that [`is_forbidden_in_text`] refuses.
pub(crate) fn has_forbidden_text(s: &str) -> bool {
    // NUL is one byte in UTF-8 and appears in no other character's encoding.
    s.as_bytes().contains(&0)
}

/// Why a string holding `c` is refused, for a character the identifier rule refuses.
fn forbidden_reason(c: char) -> &'static str {
    if matches!(c, '\u{2028}' | '\u{2029}') {
        ID_SEPARATOR
    } else {
        ID_CONTROL
    }
}

const ID_EMPTY: &str = "must not be empty";
const ID_TOO_LONG: &str = "must be at most 128 characters long";
const ID_CONTROL: &str = "must not contain control characters (U+0000–U+001F, U+007F–U+009F)";
const ID_SEPARATOR: &str = "must not contain line or paragraph separators (U+2028, U+2029)";
const ID_BLANK: &str = "must not be only whitespace";
const FLAG_EQUALS: &str = "must not contain '='";

/// The reason given for a string holding U+0000, to follow the field's name.
pub(crate) const TEXT_NUL: &str = "must not contain U+0000 (NUL)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_for_too_long_names_the_limit() {
        assert!(ID_TOO_LONG.contains(&MAX_ID_CHARS.to_string()));
    }

    #[test]
    fn forbidden_characters() {
        for c in [
            '\0', '\t', '\n', '\r', '\u{1f}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}',
        ] {
            assert!(is_forbidden_in_identifier(c), "{c:?}");
            assert!(is_forbidden_in_flag(c), "{c:?}");
        }
        for c in ['\u{2028}', '\u{2029}'] {
            assert!(is_forbidden_in_identifier(c), "{c:?}");
        }
        for c in [' ', 'a', '-', '=', '\u{a0}', 'é', '\u{1F600}', '\u{fffd}'] {
            assert!(!is_forbidden_in_identifier(c), "{c:?}");
        }
        assert!(is_forbidden_in_flag('='));
        assert!(!is_forbidden_in_flag('-'));
        assert!(is_forbidden_in_text('\0'));
        for c in ['\t', '\u{1}', '\u{85}', '\u{2028}', '='] {
            assert!(!is_forbidden_in_text(c), "{c:?}");
        }
    }

    #[test]
    fn identifiers() {
        let ok = [
            "u",
            "sku-1",
            "a b",
            &"é".repeat(MAX_ID_CHARS),
            "user@example.com",
            "=x",
        ];
        for s in ok {
            assert_eq!(check_identifier(s), Ok(()), "{s:?}");
        }
        let refused = [
            ("", ID_EMPTY),
            (&*"x".repeat(MAX_ID_CHARS + 1), ID_TOO_LONG),
            ("a\0b", ID_CONTROL),
            ("a\tb", ID_CONTROL),
            ("line\n", ID_CONTROL),
            ("\u{85}", ID_CONTROL),
            ("a\u{2028}b", ID_SEPARATOR),
            (" ", ID_BLANK),
            (" \u{a0}\u{3000}", ID_BLANK),
        ];
        for (s, reason) in refused {
            assert_eq!(check_identifier(s), Err(reason), "{s:?}");
        }
        assert_eq!(check_flag("checkout_v2"), Ok(()));
        assert_eq!(check_flag("a=b"), Err(FLAG_EQUALS));
        assert_eq!(check_flag("a\tb"), Err(ID_CONTROL));
    }
}
