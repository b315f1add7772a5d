//! The rules of the public event contract, one function per event type.
//!
//! Each rule reads fields from the tape view and returns the facts routing needs (event
//! id, partition key). Optional fields set to `null` count as absent, because JavaScript
//! and Python clients commonly serialise "no value" that way. Unknown fields are never
//! looked at by the rules: they travel to Kafka untouched. The one rule that reads them
//! is that no string and no key of an event holds U+0000 ([`find_nul`]).

use std::borrow::Cow;
use std::net::IpAddr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::currency::is_iso4217;
use super::json::{type_name, Field, FieldSet, Index, Json};
use super::Limits;
use crate::contract::{
    check_experiment, check_identifier, has_forbidden_text, MAX_AMOUNT, MAX_EXPERIMENTS,
    MAX_ID_CHARS, MAX_ITEMS, MAX_LABEL_CHARS, MAX_LOCALE_CHARS, MAX_POSITION, MAX_QUANTITY,
    MAX_QUERY_CHARS, MAX_RESULTS_COUNT, MAX_URL_CHARS, MAX_USER_AGENT_CHARS, TEXT_NUL,
};
use crate::error::{path_key, quoted, render_path, ErrorCode, PathStep, ValidationError};
use crate::event::EventKind;

/// What validation learnt about an event that routing needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts<'i> {
    pub(crate) kind: EventKind,
    pub(crate) event_id: Option<Uuid>,
    /// `user_id`, else `anonymous_id`: the Kafka key.
    pub(crate) partition_key: &'i str,
    /// Whether `context.experiments` names at least one flag.
    pub(crate) has_experiments: bool,
    /// The contract version the event needs: the highest that introduced a field it
    /// sets ([`EventKind::schema_of`]).
    pub(crate) version: u8,
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

/// Why the indexed pass rejected an event.
enum Failure<'i> {
    /// A key appears twice in some object (not necessarily the first such key).
    Duplicate(&'i str),
    /// A rule failed; a duplicate key elsewhere in the event would take precedence.
    Rule(ValidationError),
}

impl From<ValidationError> for Failure<'_> {
    fn from(error: ValidationError) -> Self {
        Failure::Rule(error)
    }
}

/// One object's fields, indexed in one pass, with typed accessors that produce precise
/// errors.
#[derive(Clone, Copy)]
struct Fields<'t, 'i> {
    object: Index<'t, 'i>,
    scope: Scope,
}

impl<'t, 'i> Fields<'t, 'i> {
    /// Indexes `object` (see [`Json::index`]).
    fn index(object: Json<'t, 'i>, scope: Scope, deferred: FieldSet) -> Result<Self, Failure<'i>> {
        let object = object.index(deferred).map_err(Failure::Duplicate)?;
        Ok(Fields { object, scope })
    }

    /// The field's value, `None` when absent or `null`.
    fn value(&self, field: Field) -> Option<Json<'t, 'i>> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    fn required(&self, field: Field) -> Result<Json<'t, 'i>, ValidationError> {
        self.value(field).ok_or_else(|| {
            error(
                ErrorCode::MissingField,
                self.scope.at(field.name()),
                format!("{} is required", field.name()),
            )
        })
    }

    fn opt_str(&self, field: Field, max_chars: usize) -> Result<Option<&'i str>, ValidationError> {
        self.value(field)
            .map(|v| string(v, self.scope.at(field.name()), max_chars))
            .transpose()
    }

    fn req_str(&self, field: Field, max_chars: usize) -> Result<&'i str, ValidationError> {
        string(
            self.required(field)?,
            self.scope.at(field.name()),
            max_chars,
        )
    }

    /// A required identifier: a string of at most [`MAX_ID_CHARS`] (`too_long`) that
    /// [`check_identifier`] accepts (`invalid_value`).
    fn req_id(&self, field: Field) -> Result<&'i str, ValidationError> {
        let id = self.req_str(field, MAX_ID_CHARS)?;
        identifier(id, self.scope.at(field.name()))
    }

    fn opt_id(&self, field: Field) -> Result<Option<&'i str>, ValidationError> {
        self.opt_str(field, MAX_ID_CHARS)?
            .map(|id| identifier(id, self.scope.at(field.name())))
            .transpose()
    }

    fn opt_amount(&self, field: Field) -> Result<Option<f64>, ValidationError> {
        self.value(field)
            .map(|v| amount(v, self.scope.at(field.name())))
            .transpose()
    }

    fn req_amount(&self, field: Field) -> Result<f64, ValidationError> {
        amount(self.required(field)?, self.scope.at(field.name()))
    }

    fn opt_count(&self, field: Field, min: u64, max: u64) -> Result<Option<i128>, ValidationError> {
        self.value(field)
            .map(|v| count(v, self.scope.at(field.name()), min, max))
            .transpose()
    }

    fn req_count(&self, field: Field, min: u64, max: u64) -> Result<i128, ValidationError> {
        count(self.required(field)?, self.scope.at(field.name()), min, max)
    }

    fn opt_object(&self, field: Field) -> Result<Option<Json<'t, 'i>>, ValidationError> {
        match self.value(field) {
            Some(v) if v.is_object() => Ok(Some(v)),
            Some(v) => Err(wrong_type(v, self.scope.at(field.name()), "an object")),
            None => Ok(None),
        }
    }

    fn opt_currency(&self, field: Field) -> Result<Option<&'i str>, ValidationError> {
        let Some(code) = self.opt_str(field, 3 + 1)? else {
            return Ok(None);
        };
        if is_iso4217(code) {
            Ok(Some(code))
        } else {
            Err(error(
                ErrorCode::InvalidCurrency,
                self.scope.at(field.name()),
                format!("{} is not an ISO 4217 currency code", quoted(code)),
            ))
        }
    }

    fn req_currency(&self, field: Field) -> Result<&'i str, ValidationError> {
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

fn identifier(s: &str, path: Path) -> Result<&str, ValidationError> {
    check_identifier(s).map(|()| s).map_err(|reason| {
        error(
            ErrorCode::InvalidValue,
            path,
            format!("{} {reason}", path.name()),
        )
    })
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
    if n > MAX_AMOUNT {
        return Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be at most {MAX_AMOUNT:e}, got {n:e}", path.name()),
        ));
    }
    Ok(n)
}

fn count(value: Json<'_, '_>, path: Path, min: u64, max: u64) -> Result<i128, ValidationError> {
    let too_large = |shown: String| {
        error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be at most {max}, got {shown}", path.name()),
        )
    };
    match value.as_integer() {
        Some(Ok(n)) if n < i128::from(min) => Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be >= {min}, got {n}", path.name()),
        )),
        Some(Ok(n)) if n > i128::from(max) => Err(too_large(n.to_string())),
        Some(Ok(n)) => Ok(n),
        // A float beyond the range of whole numbers (integers past 64 bits read as one).
        Some(Err(())) if value.as_f64().is_some_and(|f| f > max as f64) => Err(too_large(format!(
            "{:e}",
            value.as_f64().unwrap_or_default()
        ))),
        Some(Err(())) => Err(error(
            ErrorCode::InvalidValue,
            path,
            format!("{} must be a whole number", path.name()),
        )),
        None => Err(wrong_type(value, path, "an integer")),
    }
}

/// The top-level fields whose objects the rules index themselves: `context` always,
/// `items` for purchases (for other types [`check_indexed`] scans it after the rules).
const TOP_DEFERRED: FieldSet = FieldSet::of(&[Field::Context, Field::Items]);

/// Checks one event. `expected` is the kind implied by the endpoint (single-event
/// submissions); batch elements pass `None` and must carry a `type` field.
///
/// A key repeated in any object of the event is reported before any other error: the
/// first such object in document order (an object's own keys before its nested values).
/// The indexed pass finds duplicates while it reads the fields; when it fails for any
/// reason, the whole event is searched for that first duplicate before the failure is
/// reported, so a rule error never hides a duplicate.
///
/// An event that passes every rule is then searched for U+0000 in any string or key
/// ([`find_nul`]), but only when `may_hold_nul`: the caller found the escape `\u0000` in
/// the raw bytes, the only way JSON can carry that character.
pub(crate) fn check_event<'i>(
    root: Json<'_, 'i>,
    expected: Option<EventKind>,
    limits: &Limits,
    now: OffsetDateTime,
    may_hold_nul: bool,
) -> Result<Facts<'i>, ValidationError> {
    if !root.is_object() {
        return Err(ValidationError::new(
            ErrorCode::NotAnObject,
            format!("an event must be a JSON object, not {}", type_name(root)),
        ));
    }
    let failure = match check_indexed(root, expected, limits, now) {
        Ok(facts) => {
            return match find_nul(root, may_hold_nul) {
                Some(error) => Err(error.with_event_kind(facts.kind)),
                None => Ok(facts),
            }
        }
        Err(failure) => failure,
    };
    let duplicate = match failure {
        Failure::Rule(error) => match root.find_duplicate_key() {
            Some(key) => key,
            None => return Err(error),
        },
        Failure::Duplicate(key) => root.find_duplicate_key().unwrap_or(key),
    };
    Err(ValidationError::field(
        ErrorCode::DuplicateField,
        path_key(duplicate).into_owned(),
        format!(
            "key {} appears more than once in one object",
            quoted(duplicate)
        ),
    ))
}

/// The first string or object key of the event, at any depth and in unknown fields too,
/// that holds U+0000 (PostgreSQL refuses it), as an `invalid_value` error. `None` without
/// a search when `may_hold_nul` is false.
///
/// The field path is the value's path (`query`, `filters.color[1]`, `x.y`); for a key
/// holding U+0000 it is the key's path. Client-chosen keys in it are escaped and cut short
/// ([`render_path`]).
fn find_nul(root: Json<'_, '_>, may_hold_nul: bool) -> Option<ValidationError> {
    if !may_hold_nul {
        return None;
    }
    let mut steps = Vec::new();
    nul_in(root, &mut steps)
}

fn nul_in<'i>(value: Json<'_, 'i>, steps: &mut Vec<PathStep<'i>>) -> Option<ValidationError> {
    if let Some(s) = value.as_str() {
        if has_forbidden_text(s) {
            // The message names the value from its nearest key: `color[1]`, `query`.
            let named = steps
                .iter()
                .rposition(|step| matches!(step, PathStep::Key(_)))
                .unwrap_or(0);
            return Some(ValidationError::field(
                ErrorCode::InvalidValue,
                render_path(steps),
                format!("{} {TEXT_NUL}", render_path(&steps[named..])),
            ));
        }
    } else if let Some(members) = value.members() {
        for (key, member) in members {
            steps.push(PathStep::Key(key));
            if has_forbidden_text(key) {
                return Some(ValidationError::field(
                    ErrorCode::InvalidValue,
                    render_path(steps),
                    format!("object keys {TEXT_NUL}"),
                ));
            }
            if let Some(error) = nul_in(member, steps) {
                return Some(error);
            }
            steps.pop();
        }
    } else if let Some(elements) = value.elements() {
        for (index, element) in elements.enumerate() {
            steps.push(PathStep::Index(index));
            if let Some(error) = nul_in(element, steps) {
                return Some(error);
            }
            steps.pop();
        }
    }
    None
}

/// Every rule, reading each object through one indexing pass that also checks it (and
/// whatever it nests that no rule indexes) for duplicate keys.
fn check_indexed<'i>(
    root: Json<'_, 'i>,
    expected: Option<EventKind>,
    limits: &Limits,
    now: OffsetDateTime,
) -> Result<Facts<'i>, Failure<'i>> {
    let fields = Fields::index(root, Scope::Top, TOP_DEFERRED)?;
    let kind = event_kind(&fields, expected)?;
    // From here on the type is known: errors carry it (for metrics and dead letters).
    let facts = check_typed(&fields, kind, limits, now).map_err(|failure| match failure {
        Failure::Rule(error) => Failure::Rule(error.with_event_kind(kind)),
        duplicate => duplicate,
    })?;
    if kind != EventKind::Purchase {
        if let Some(dup) = fields
            .object
            .get(Field::Items)
            .and_then(|items| items.find_duplicate_key())
        {
            return Err(Failure::Duplicate(dup));
        }
    }
    Ok(facts)
}

/// The rules that apply once the event's type is known.
fn check_typed<'i>(
    fields: &Fields<'_, 'i>,
    kind: EventKind,
    limits: &Limits,
    now: OffsetDateTime,
) -> Result<Facts<'i>, Failure<'i>> {
    let event_id = fields
        .opt_str(Field::EventId, 64)?
        .map(|id| {
            Uuid::try_parse(id).map_err(|_| {
                error(
                    ErrorCode::InvalidEventId,
                    Path::Top("event_id"),
                    format!("{} is not a UUID", quoted(id)),
                )
            })
        })
        .transpose()?;
    let user_id = fields.opt_id(Field::UserId)?;
    let anonymous_id = fields.opt_id(Field::AnonymousId)?;
    let partition_key = user_id.or(anonymous_id).ok_or_else(|| {
        error(
            ErrorCode::MissingField,
            Path::Top("user_id"),
            "one of user_id or anonymous_id is required",
        )
    })?;
    fields.opt_id(Field::SessionId)?;
    check_timestamp(fields, limits, now)?;
    // `context` is deferred by the top-level index; absent or `null` it nests nothing,
    // and anything but an object is an error above.
    let has_experiments = match fields.opt_object(Field::Context)? {
        Some(context) => check_context(context)?,
        None => false,
    };

    let version = match kind {
        EventKind::ProductView => check_product_view(fields)?,
        EventKind::Cart => check_cart(fields).map(|()| 1)?,
        EventKind::Purchase => check_purchase(fields).map(|()| 1)?,
        EventKind::Search => check_search(fields).map(|()| 1)?,
    };
    Ok(Facts {
        kind,
        event_id,
        partition_key,
        has_experiments,
        version,
    })
}

fn event_kind(
    fields: &Fields<'_, '_>,
    expected: Option<EventKind>,
) -> Result<EventKind, ValidationError> {
    let declared = fields.opt_str(Field::Type, 32)?;
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
                    format!("type {} was sent to the {want} endpoint", quoted(name)),
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
    let Some(text) = fields.opt_str(Field::Timestamp, 64)? else {
        return Ok(());
    };
    let path = Path::Top("timestamp");
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        error(
            ErrorCode::InvalidTimestamp,
            path,
            format!(
                "{} is not an RFC 3339 date-time (e.g. 2026-11-24T10:00:00Z)",
                quoted(text)
            ),
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

/// Checks `context`; returns whether it names experiments.
fn check_context<'i>(context: Json<'_, 'i>) -> Result<bool, Failure<'i>> {
    let fields = Fields::index(context, Scope::In("context"), FieldSet::EMPTY)?;
    fields.opt_str(Field::UserAgent, MAX_USER_AGENT_CHARS)?;
    fields.opt_str(Field::PageUrl, MAX_URL_CHARS)?;
    fields.opt_str(Field::Referrer, MAX_URL_CHARS)?;
    fields.opt_str(Field::Locale, MAX_LOCALE_CHARS)?;
    if let Some(ip) = fields.opt_str(Field::Ip, 64)? {
        if ip.parse::<IpAddr>().is_err() {
            return Err(error(
                ErrorCode::InvalidValue,
                Path::In("context", "ip"),
                format!("{} is not an IPv4 or IPv6 address", quoted(ip)),
            )
            .into());
        }
    }
    if let Some(experiments) = fields.opt_object(Field::Experiments)? {
        let path = Path::In("context", "experiments");
        if experiments.len() > MAX_EXPERIMENTS {
            return Err(error(
                ErrorCode::InvalidValue,
                path,
                format!("at most {MAX_EXPERIMENTS} experiments are allowed"),
            )
            .into());
        }
        for (flag, variant) in experiments.members().into_iter().flatten() {
            check_experiment(flag, variant.as_str().ok_or_else(|| type_name(variant)))?;
        }
        return Ok(experiments.len() > 0);
    }
    Ok(false)
}

/// Returns the version the view needs: 2 when it sets a field version 2 added
/// (`variant`, `list_id`, `position`).
fn check_product_view(fields: &Fields<'_, '_>) -> Result<u8, ValidationError> {
    fields.req_id(Field::ProductId)?;
    fields.opt_str(Field::Category, MAX_LABEL_CHARS)?;
    fields.opt_str(Field::Brand, MAX_LABEL_CHARS)?;
    fields.opt_amount(Field::Price)?;
    fields.opt_currency(Field::Currency)?;
    let variant = fields.opt_str(Field::Variant, MAX_LABEL_CHARS)?;
    let list_id = fields.opt_id(Field::ListId)?;
    let position = fields.opt_count(Field::Position, 0, MAX_POSITION)?;
    let v2 = variant.is_some() || list_id.is_some() || position.is_some();
    Ok(if v2 { 2 } else { 1 })
}

fn check_cart(fields: &Fields<'_, '_>) -> Result<(), ValidationError> {
    let action = fields.req_str(Field::Action, 16)?;
    match action {
        "add" | "update" => {
            fields.req_id(Field::ProductId)?;
            fields.req_count(Field::Quantity, 0, MAX_QUANTITY)?;
        }
        "remove" => {
            fields.req_id(Field::ProductId)?;
            fields.opt_count(Field::Quantity, 0, MAX_QUANTITY)?;
        }
        "clear" => {
            fields.opt_id(Field::ProductId)?;
            fields.opt_count(Field::Quantity, 0, MAX_QUANTITY)?;
        }
        other => {
            return Err(error(
                ErrorCode::InvalidValue,
                Path::Top("action"),
                format!("{} is not one of add, remove, update, clear", quoted(other)),
            ))
        }
    }
    fields.opt_amount(Field::Price)?;
    fields.opt_currency(Field::Currency)?;
    fields.opt_id(Field::CartId)?;
    Ok(())
}

fn check_purchase<'i>(fields: &Fields<'_, 'i>) -> Result<(), Failure<'i>> {
    fields.req_id(Field::OrderId)?;
    let items = fields.required(Field::Items)?;
    let Some(elements) = items.elements() else {
        return Err(wrong_type(items, Path::Top("items"), "an array").into());
    };
    if items.len() == 0 || items.len() > MAX_ITEMS {
        return Err(Failure::Rule(error(
            ErrorCode::InvalidValue,
            Path::Top("items"),
            format!(
                "items must hold 1 to {MAX_ITEMS} entries, not {}",
                items.len()
            ),
        )));
    }
    for (index, item) in elements.enumerate() {
        if !item.is_object() {
            return Err(Failure::Rule(ValidationError::field(
                ErrorCode::InvalidType,
                format!("items[{index}]"),
                format!("each item must be an object, not {}", type_name(item)),
            )));
        }
        let item = Fields::index(item, Scope::Item("items", index), FieldSet::EMPTY)?;
        item.req_id(Field::ProductId)?;
        item.req_count(Field::Quantity, 1, MAX_QUANTITY)?;
        item.req_amount(Field::Price)?;
    }
    fields.req_amount(Field::Total)?;
    fields.req_currency(Field::Currency)?;
    fields.opt_amount(Field::Discount)?;
    fields.opt_amount(Field::Tax)?;
    fields.opt_amount(Field::Shipping)?;
    fields.opt_id(Field::Coupon)?;
    Ok(())
}

fn check_search(fields: &Fields<'_, '_>) -> Result<(), ValidationError> {
    fields.req_str(Field::Query, MAX_QUERY_CHARS)?;
    fields.opt_count(Field::ResultsCount, 0, MAX_RESULTS_COUNT)?;
    fields.opt_object(Field::Filters)?;
    Ok(())
}
