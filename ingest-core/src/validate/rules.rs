//! The rules of the public event contract, one function per event type.
//!
//! Each rule reads fields from the tape view and returns the facts routing needs (event
//! id, partition key). Optional fields set to `null` count as absent, because JavaScript
//! and Python clients commonly serialise "no value" that way. Unknown fields are never
//! looked at: they travel to Kafka untouched.

use std::borrow::Cow;
use std::net::IpAddr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::currency::is_iso4217;
use super::json::{type_name, Json};
use super::Limits;
use crate::error::{ErrorCode, ValidationError};
use crate::event::EventKind;

/// Longest `user_id`, `anonymous_id`, `session_id`, `product_id`, `order_id`, `cart_id`,
/// `coupon`, experiment flag and variant, in characters.
pub(crate) const MAX_ID_CHARS: usize = 128;
/// Longest `category` and `brand`, in characters.
pub(crate) const MAX_LABEL_CHARS: usize = 256;
/// Longest `search.query`, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 1024;
/// Longest `context.user_agent`, in characters.
pub(crate) const MAX_USER_AGENT_CHARS: usize = 1024;
/// Longest `context.page_url` and `context.referrer`, in characters.
pub(crate) const MAX_URL_CHARS: usize = 4096;
/// Longest `context.locale`, in characters (BCP 47 tags are at most 35 in practice).
pub(crate) const MAX_LOCALE_CHARS: usize = 35;
/// Most entries in `context.experiments`.
pub(crate) const MAX_EXPERIMENTS: usize = 64;
/// Most entries in `purchase.items`.
pub(crate) const MAX_ITEMS: usize = 1000;

/// What validation learnt about an event that routing needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts<'i> {
    pub(crate) kind: EventKind,
    pub(crate) event_id: Option<Uuid>,
    /// `user_id`, else `anonymous_id`: the Kafka key.
    pub(crate) partition_key: &'i str,
}

/// Where a field sits, rendered into a path only when an error needs it.
#[derive(Clone, Copy)]
enum Path {
    Top(&'static str),
    In(&'static str, &'static str),
    Item(&'static str, usize, &'static str),
}

impl Path {
    fn render(self) -> Cow<'static, str> {
        match self {
            Path::Top(field) => Cow::Borrowed(field),
            Path::In(parent, field) => Cow::Owned(format!("{parent}.{field}")),
            Path::Item(array, index, field) => Cow::Owned(format!("{array}[{index}].{field}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Path::Top(f) | Path::In(_, f) | Path::Item(_, _, f) => f,
        }
    }
}

fn error(code: ErrorCode, path: Path, message: impl Into<String>) -> ValidationError {
    ValidationError::field(code, path.render(), message)
}

/// Which object a field belongs to.
#[derive(Clone, Copy)]
enum Scope {
    Top,
    In(&'static str),
    Item(&'static str, usize),
}

impl Scope {
    fn at(self, field: &'static str) -> Path {
        match self {
            Scope::Top => Path::Top(field),
            Scope::In(parent) => Path::In(parent, field),
            Scope::Item(array, index) => Path::Item(array, index, field),
        }
    }
}

/// One object's fields, with typed accessors that produce precise errors.
#[derive(Clone, Copy)]
struct Fields<'t, 'i> {
    object: Json<'t, 'i>,
    scope: Scope,
}

impl<'t, 'i> Fields<'t, 'i> {
    /// The field's value, `None` when absent or `null`.
    fn value(&self, field: &'static str) -> Option<Json<'t, 'i>> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    fn required(&self, field: &'static str) -> Result<Json<'t, 'i>, ValidationError> {
        self.value(field).ok_or_else(|| {
            error(
                ErrorCode::MissingField,
                self.scope.at(field),
                format!("{field} is required"),
            )
        })
    }

    fn opt_str(
        &self,
        field: &'static str,
        max_chars: usize,
    ) -> Result<Option<&'i str>, ValidationError> {
        self.value(field)
            .map(|v| string(v, self.scope.at(field), max_chars))
            .transpose()
    }

    fn req_str(&self, field: &'static str, max_chars: usize) -> Result<&'i str, ValidationError> {
        string(self.required(field)?, self.scope.at(field), max_chars)
    }

    /// A required identifier: a non-empty string of at most [`MAX_ID_CHARS`].
    fn req_id(&self, field: &'static str) -> Result<&'i str, ValidationError> {
        let id = self.req_str(field, MAX_ID_CHARS)?;
        non_empty(id, self.scope.at(field))
    }

    fn opt_id(&self, field: &'static str) -> Result<Option<&'i str>, ValidationError> {
        self.opt_str(field, MAX_ID_CHARS)?
            .map(|id| non_empty(id, self.scope.at(field)))
            .transpose()
    }

    fn opt_amount(&self, field: &'static str) -> Result<Option<f64>, ValidationError> {
        self.value(field)
            .map(|v| amount(v, self.scope.at(field)))
            .transpose()
    }

    fn req_amount(&self, field: &'static str) -> Result<f64, ValidationError> {
        amount(self.required(field)?, self.scope.at(field))
    }

    fn opt_count(&self, field: &'static str, min: i128) -> Result<Option<i128>, ValidationError> {
        self.value(field)
            .map(|v| count(v, self.scope.at(field), min))
            .transpose()
    }

    fn req_count(&self, field: &'static str, min: i128) -> Result<i128, ValidationError> {
        count(self.required(field)?, self.scope.at(field), min)
    }

    fn opt_object(&self, field: &'static str) -> Result<Option<Json<'t, 'i>>, ValidationError> {
        match self.value(field) {
            Some(v) if v.is_object() => Ok(Some(v)),
            Some(v) => Err(wrong_type(v, self.scope.at(field), "an object")),
            None => Ok(None),
        }
    }

    fn opt_currency(&self, field: &'static str) -> Result<Option<&'i str>, ValidationError> {
        let Some(code) = self.opt_str(field, 3 + 1)? else {
            return Ok(None);
        };
        if is_iso4217(code) {
            Ok(Some(code))
        } else {
            Err(error(
                ErrorCode::InvalidCurrency,
                self.scope.at(field),
                format!("{code:?} is not an ISO 4217 currency code"),
            ))
        }
    }

    fn req_currency(&self, field: &'static str) -> Result<&'i str, ValidationError> {
        self.required(field)?;
        self.opt_currency(field).map(|c| c.unwrap_or_default())
    }
}

fn wrong_type(value: Json<'_, '_>, path: Path, expected: &str) -> ValidationError {
    error(
        ErrorCode::InvalidType,
        path,
        format!(
            "{} must be {expected}, not {}",
            path.name(),
            type_name(value)
        ),
    )
}

fn string<'i>(
    value: Json<'_, 'i>,
    path: Path,
    max_chars: usize,
) -> Result<&'i str, ValidationError> {
    let s = value
        .as_str()
        .ok_or_else(|| wrong_type(value, path, "a string"))?;
    // Bytes bound characters from above, so only long strings need counting.
    if s.len() > max_chars && s.chars().count() > max_chars {
        return Err(error(
            ErrorCode::TooLong,
            path,
            format!("{} is longer than {max_chars} characters", path.name()),
        ));
    }
    Ok(s)
}

fn non_empty(s: &str, path: Path) -> Result<&str, ValidationError> {
    if s.is_empty() {
        Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must not be empty", path.name()),
        ))
    } else {
        Ok(s)
    }
}

fn amount(value: Json<'_, '_>, path: Path) -> Result<f64, ValidationError> {
    let n = value
        .as_f64()
        .ok_or_else(|| wrong_type(value, path, "a number"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be a finite number >= 0, got {n}", path.name()),
        ));
    }
    Ok(n)
}

fn count(value: Json<'_, '_>, path: Path, min: i128) -> Result<i128, ValidationError> {
    match value.as_integer() {
        Some(Ok(n)) if n >= min => Ok(n),
        Some(Ok(n)) => Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be >= {min}, got {n}", path.name()),
        )),
        Some(Err(())) => Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be a whole number", path.name()),
        )),
        None => Err(wrong_type(value, path, "an integer")),
    }
}

/// Checks one event. `expected` is the kind implied by the endpoint (single-event
/// submissions); batch elements pass `None` and must carry a `type` field.
pub(crate) fn check_event<'i>(
    root: Json<'_, 'i>,
    expected: Option<EventKind>,
    limits: &Limits,
    now: OffsetDateTime,
) -> Result<Facts<'i>, ValidationError> {
    if !root.is_object() {
        return Err(ValidationError::new(
            ErrorCode::NotAnObject,
            format!("an event must be a JSON object, not {}", type_name(root)),
        ));
    }
    if let Some(key) = root.find_duplicate_key() {
        return Err(ValidationError::field(
            ErrorCode::DuplicateField,
            key.to_owned(),
            format!("key {key:?} appears more than once in one object"),
        ));
    }
    let fields = Fields {
        object: root,
        scope: Scope::Top,
    };

    let kind = event_kind(&fields, expected)?;
    // From here on the type is known: errors carry it (for metrics and dead letters).
    check_typed(&fields, kind, limits, now).map_err(|e| e.with_event_kind(kind))
}

/// The rules that apply once the event's type is known.
fn check_typed<'i>(
    fields: &Fields<'_, 'i>,
    kind: EventKind,
    limits: &Limits,
    now: OffsetDateTime,
) -> Result<Facts<'i>, ValidationError> {
    let event_id = fields
        .opt_str("event_id", 64)?
        .map(|id| {
            Uuid::try_parse(id).map_err(|_| {
                error(
                    ErrorCode::InvalidEventId,
                    Path::Top("event_id"),
                    format!("{id:?} is not a UUID"),
                )
            })
        })
        .transpose()?;
    let user_id = fields.opt_id("user_id")?;
    let anonymous_id = fields.opt_id("anonymous_id")?;
    let partition_key = user_id.or(anonymous_id).ok_or_else(|| {
        error(
            ErrorCode::MissingField,
            Path::Top("user_id"),
            "one of user_id or anonymous_id is required",
        )
    })?;
    fields.opt_id("session_id")?;
    check_timestamp(fields, limits, now)?;
    if let Some(context) = fields.opt_object("context")? {
        check_context(context)?;
    }

    match kind {
        EventKind::ProductView => check_product_view(fields)?,
        EventKind::Cart => check_cart(fields)?,
        EventKind::Purchase => check_purchase(fields)?,
        EventKind::Search => check_search(fields)?,
    }
    Ok(Facts {
        kind,
        event_id,
        partition_key,
    })
}

fn event_kind(
    fields: &Fields<'_, '_>,
    expected: Option<EventKind>,
) -> Result<EventKind, ValidationError> {
    let declared = fields.opt_str("type", 32)?;
    match (declared, expected) {
        (None, Some(kind)) => Ok(kind),
        (None, None) => Err(error(
            ErrorCode::MissingField,
            Path::Top("type"),
            "type is required for events in a batch (product_view, cart, purchase or search)",
        )),
        (Some(name), expected) => {
            let kind: EventKind = name.parse()?;
            match expected {
                Some(want) if want != kind => Err(error(
                    ErrorCode::TypeMismatch,
                    Path::Top("type"),
                    format!("type {name:?} was sent to the {want} endpoint"),
                )),
                _ => Ok(kind),
            }
        }
    }
}

fn check_timestamp(
    fields: &Fields<'_, '_>,
    limits: &Limits,
    now: OffsetDateTime,
) -> Result<(), ValidationError> {
    let Some(text) = fields.opt_str("timestamp", 64)? else {
        return Ok(());
    };
    let path = Path::Top("timestamp");
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        error(
            ErrorCode::InvalidTimestamp,
            path,
            format!("{text:?} is not an RFC 3339 date-time (e.g. 2026-11-24T10:00:00Z)"),
        )
    })?;
    let ahead = at - now;
    if ahead > limits.max_future_skew {
        return Err(error(
            ErrorCode::TimestampOutOfRange,
            path,
            format!(
                "{text} is {}s in the future; at most {}s is allowed",
                ahead.whole_seconds(),
                limits.max_future_skew.as_secs()
            ),
        ));
    }
    if -ahead > limits.max_past_age {
        return Err(error(
            ErrorCode::TimestampOutOfRange,
            path,
            format!(
                "{text} is {}s in the past; at most {}s is allowed",
                (-ahead).whole_seconds(),
                limits.max_past_age.as_secs()
            ),
        ));
    }
    Ok(())
}

fn check_context(context: Json<'_, '_>) -> Result<(), ValidationError> {
    let fields = Fields {
        object: context,
        scope: Scope::In("context"),
    };
    fields.opt_str("user_agent", MAX_USER_AGENT_CHARS)?;
    fields.opt_str("page_url", MAX_URL_CHARS)?;
    fields.opt_str("referrer", MAX_URL_CHARS)?;
    fields.opt_str("locale", MAX_LOCALE_CHARS)?;
    if let Some(ip) = fields.opt_str("ip", 64)? {
        if ip.parse::<IpAddr>().is_err() {
            return Err(error(
                ErrorCode::InvalidValue,
                Path::In("context", "ip"),
                format!("{ip:?} is not an IPv4 or IPv6 address"),
            ));
        }
    }
    if let Some(experiments) = fields.opt_object("experiments")? {
        let path = Path::In("context", "experiments");
        if experiments.len() > MAX_EXPERIMENTS {
            return Err(error(
                ErrorCode::InvalidValue,
                path,
                format!("at most {MAX_EXPERIMENTS} experiments are allowed"),
            ));
        }
        for (flag, variant) in experiments.members().into_iter().flatten() {
            let variant_ok = variant
                .as_str()
                .is_some_and(|v| !v.is_empty() && v.chars().count() <= MAX_ID_CHARS);
            if flag.is_empty() || flag.chars().count() > MAX_ID_CHARS || !variant_ok {
                return Err(ValidationError::field(
                    ErrorCode::InvalidValue,
                    format!("context.experiments.{flag}"),
                    format!(
                        "experiments map flag names to variant names: non-empty strings of at most {MAX_ID_CHARS} characters"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_product_view(fields: &Fields<'_, '_>) -> Result<(), ValidationError> {
    fields.req_id("product_id")?;
    fields.opt_str("category", MAX_LABEL_CHARS)?;
    fields.opt_str("brand", MAX_LABEL_CHARS)?;
    fields.opt_amount("price")?;
    fields.opt_currency("currency")?;
    Ok(())
}

fn check_cart(fields: &Fields<'_, '_>) -> Result<(), ValidationError> {
    let action = fields.req_str("action", 16)?;
    match action {
        "add" | "update" => {
            fields.req_id("product_id")?;
            fields.req_count("quantity", 0)?;
        }
        "remove" => {
            fields.req_id("product_id")?;
            fields.opt_count("quantity", 0)?;
        }
        "clear" => {
            fields.opt_id("product_id")?;
            fields.opt_count("quantity", 0)?;
        }
        other => {
            return Err(error(
                ErrorCode::InvalidValue,
                Path::Top("action"),
                format!("{other:?} is not one of add, remove, update, clear"),
            ))
        }
    }
    fields.opt_amount("price")?;
    fields.opt_currency("currency")?;
    fields.opt_id("cart_id")?;
    Ok(())
}

fn check_purchase(fields: &Fields<'_, '_>) -> Result<(), ValidationError> {
    fields.req_id("order_id")?;
    let items = fields.required("items")?;
    let Some(elements) = items.elements() else {
        return Err(wrong_type(items, Path::Top("items"), "an array"));
    };
    if items.len() == 0 || items.len() > MAX_ITEMS {
        return Err(error(
            ErrorCode::InvalidValue,
            Path::Top("items"),
            format!(
                "items must hold 1 to {MAX_ITEMS} entries, not {}",
                items.len()
            ),
        ));
    }
    for (index, item) in elements.enumerate() {
        if !item.is_object() {
            return Err(ValidationError::field(
                ErrorCode::InvalidType,
                format!("items[{index}]"),
                format!("each item must be an object, not {}", type_name(item)),
            ));
        }
        let item = Fields {
            object: item,
            scope: Scope::Item("items", index),
        };
        item.req_id("product_id")?;
        item.req_count("quantity", 1)?;
        item.req_amount("price")?;
    }
    fields.req_amount("total")?;
    fields.req_currency("currency")?;
    fields.opt_amount("discount")?;
    fields.opt_amount("tax")?;
    fields.opt_amount("shipping")?;
    fields.opt_id("coupon")?;
    Ok(())
}

fn check_search(fields: &Fields<'_, '_>) -> Result<(), ValidationError> {
    fields.req_str("query", MAX_QUERY_CHARS)?;
    fields.opt_count("results_count", 0)?;
    fields.opt_object("filters")?;
    Ok(())
}
