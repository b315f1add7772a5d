//! The contract's content rules on decoded events ([`Event::check_content`]), for
//! records from producers that never passed the validator.

use crate::contract::{
    check_experiment, check_identifier, has_forbidden_text, MAX_AMOUNT, MAX_EXPERIMENTS,
    MAX_ID_CHARS, MAX_ITEMS, MAX_LABEL_CHARS, MAX_LOCALE_CHARS, MAX_QUANTITY, MAX_QUERY_CHARS,
    MAX_RESULTS_COUNT, MAX_URL_CHARS, MAX_USER_AGENT_CHARS, TEXT_NUL,
};
use crate::error::{render_path, ErrorCode, PathStep, ValidationError};

use super::{Cart, CartAction, Common, Context, Event, ProductView, Purchase, Search};

impl Event {
    /// Checks the decoded event against the contract's content rules, as the validator
    /// applies them on the way in ([`crate::contract`]):
    ///
    /// - no string of the model holds U+0000: every field, `context` included, and the
    ///   keys and string values of `search.filters` at any depth;
    /// - identifiers (`user_id`, `anonymous_id`, `session_id`, `product_id` also in
    ///   `items`, `order_id`, `cart_id`, `coupon`, experiment variants) pass
    ///   [`check_identifier`], experiment flags also
    ///   refuse `=`;
    /// - strings are within their field's length;
    /// - one of `user_id` and `anonymous_id` is present;
    /// - amounts are finite, ≥ 0 and at most [`MAX_AMOUNT`]; counts are within their
    ///   field's range; `purchase.items` holds 1 to [`MAX_ITEMS`] entries, and
    ///   `context.experiments` at most [`MAX_EXPERIMENTS`];
    /// - a cart event has the `product_id` and `quantity` its `action` requires.
    ///
    /// It is what a consumer runs on records from producers that never passed the
    /// validator. Syntax rules the validator also enforces (`timestamp`, `currency`,
    /// `event_id`, `context.ip`), the timestamp's skew and the rules on the whole
    /// document (size, depth, duplicate keys, U+0000 in fields the model does not hold)
    /// are not repeated here. An event the validator accepted always passes.
    ///
    /// # Errors
    ///
    /// The first broken rule, as the validator reports it: `invalid_value`, `too_long` or
    /// `missing_field` with the field path (`items[2].price`), the event's type set.
    ///
    /// # Examples
    ///
    /// ```
    /// use ingest_core::model::Event;
    /// use ingest_core::{ErrorCode, EventKind};
    ///
    /// // A record from another producer: valid JSON, but its user_id holds U+0000.
    /// let value = br#"{"user_id":"u\u0000","product_id":"sku-1"}"#;
    /// let event = Event::decode(EventKind::ProductView, value)?;
    /// let error = event.check_content().unwrap_err();
    /// assert_eq!(error.code(), ErrorCode::InvalidValue);
    /// assert_eq!(error.field_path(), Some("user_id"));
    ///
    /// let fine = Event::decode(EventKind::ProductView, br#"{"user_id":"u","product_id":"p"}"#)?;
    /// assert!(fine.check_content().is_ok());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn check_content(&self) -> Result<(), ValidationError> {
        let checked = match self {
            Event::ProductView(e) => e.check_content(),
            Event::Cart(e) => e.check_content(),
            Event::Purchase(e) => e.check_content(),
            Event::Search(e) => e.check_content(),
        };
        checked.map_err(|error| error.with_event_kind(self.kind()))
    }
}

impl Common {
    fn check_content(&self) -> Result<(), ValidationError> {
        opt_text("event_id", self.event_id.as_deref(), 64)?;
        opt_identifier("user_id", self.user_id.as_deref())?;
        opt_identifier("anonymous_id", self.anonymous_id.as_deref())?;
        if self.identity().is_none() {
            return Err(ValidationError::field(
                ErrorCode::MissingField,
                "user_id",
                "one of user_id or anonymous_id is required",
            ));
        }
        opt_identifier("session_id", self.session_id.as_deref())?;
        opt_text("timestamp", self.timestamp.as_deref(), 64)?;
        match &self.context {
            Some(context) => context.check_content(),
            None => Ok(()),
        }
    }
}

impl Context {
    fn check_content(&self) -> Result<(), ValidationError> {
        opt_text(
            "context.user_agent",
            self.user_agent.as_deref(),
            MAX_USER_AGENT_CHARS,
        )?;
        opt_text("context.page_url", self.page_url.as_deref(), MAX_URL_CHARS)?;
        opt_text("context.referrer", self.referrer.as_deref(), MAX_URL_CHARS)?;
        opt_text("context.locale", self.locale.as_deref(), MAX_LOCALE_CHARS)?;
        opt_text("context.ip", self.ip.as_deref(), 64)?;
        if self.experiments.len() > MAX_EXPERIMENTS {
            return Err(ValidationError::field(
                ErrorCode::InvalidValue,
                "context.experiments",
                format!("at most {MAX_EXPERIMENTS} experiments are allowed"),
            ));
        }
        for (flag, variant) in &self.experiments {
            check_experiment(flag, Ok(variant))?;
        }
        Ok(())
    }
}

impl ProductView {
    fn check_content(&self) -> Result<(), ValidationError> {
        self.common.check_content()?;
        identifier("product_id", &self.product_id)?;
        opt_text("category", self.category.as_deref(), MAX_LABEL_CHARS)?;
        opt_text("brand", self.brand.as_deref(), MAX_LABEL_CHARS)?;
        opt_amount("price", self.price)?;
        opt_text("currency", self.currency.as_deref(), 4)?;
        opt_text("variant", self.variant.as_deref(), MAX_LABEL_CHARS)?;
        opt_identifier("list_id", self.list_id.as_deref())
    }
}

impl Cart {
    fn check_content(&self) -> Result<(), ValidationError> {
        self.common.check_content()?;
        let (product_required, quantity_required) = match self.action {
            CartAction::Add | CartAction::Update => (true, true),
            CartAction::Remove => (true, false),
            CartAction::Clear => (false, false),
        };
        match &self.product_id {
            Some(product) => identifier("product_id", product)?,
            None if product_required => return Err(missing("product_id")),
            None => {}
        }
        match self.quantity {
            Some(quantity) => count("quantity", quantity, 0, MAX_QUANTITY)?,
            None if quantity_required => return Err(missing("quantity")),
            None => {}
        }
        opt_amount("price", self.price)?;
        opt_text("currency", self.currency.as_deref(), 4)?;
        opt_identifier("cart_id", self.cart_id.as_deref())
    }
}

impl Purchase {
    fn check_content(&self) -> Result<(), ValidationError> {
        self.common.check_content()?;
        identifier("order_id", &self.order_id)?;
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(ValidationError::field(
                ErrorCode::InvalidValue,
                "items",
                format!(
                    "items must hold 1 to {MAX_ITEMS} entries, not {}",
                    self.items.len()
                ),
            ));
        }
        for (index, item) in self.items.iter().enumerate() {
            identifier(&format!("items[{index}].product_id"), &item.product_id)?;
            count(
                &format!("items[{index}].quantity"),
                item.quantity,
                1,
                MAX_QUANTITY,
            )?;
            amount(&format!("items[{index}].price"), item.price)?;
        }
        amount("total", self.total)?;
        opt_text("currency", Some(&self.currency), 4)?;
        opt_amount("discount", self.discount)?;
        opt_amount("tax", self.tax)?;
        opt_amount("shipping", self.shipping)?;
        opt_identifier("coupon", self.coupon.as_deref())
    }
}

impl Search {
    fn check_content(&self) -> Result<(), ValidationError> {
        self.common.check_content()?;
        opt_text("query", Some(&self.query), MAX_QUERY_CHARS)?;
        if let Some(results) = self.results_count {
            count("results_count", results, 0, MAX_RESULTS_COUNT)?;
        }
        if let Some(filters) = &self.filters {
            let mut steps = vec![PathStep::Key("filters")];
            for (key, value) in filters {
                nul_in_json(key, value, &mut steps)?;
            }
        }
        Ok(())
    }
}

/// The last segment of a field path, which messages name (`items[0].price` → `price`).
fn name_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn missing(path: &'static str) -> ValidationError {
    ValidationError::field(ErrorCode::MissingField, path, format!("{path} is required"))
}

fn opt_text(path: &str, value: Option<&str>, max_chars: usize) -> Result<(), ValidationError> {
    let Some(s) = value else {
        return Ok(());
    };
    length(path, s, max_chars)?;
    if has_forbidden_text(s) {
        return Err(ValidationError::field(
            ErrorCode::InvalidValue,
            path.to_owned(),
            format!("{} {TEXT_NUL}", name_of(path)),
        ));
    }
    Ok(())
}

/// `too_long` past `max_chars`, as the validator reports it.
fn length(path: &str, s: &str, max_chars: usize) -> Result<(), ValidationError> {
    if s.len() > max_chars && s.chars().count() > max_chars {
        return Err(ValidationError::field(
            ErrorCode::TooLong,
            path.to_owned(),
            format!("{} is longer than {max_chars} characters", name_of(path)),
        ));
    }
    Ok(())
}

fn identifier(path: &str, id: &str) -> Result<(), ValidationError> {
    // Too long is `too_long`, as the validator reports it; the rest `invalid_value`.
    length(path, id, MAX_ID_CHARS)?;
    check_identifier(id).map_err(|reason| {
        ValidationError::field(
            ErrorCode::InvalidValue,
            path.to_owned(),
            format!("{} {reason}", name_of(path)),
        )
    })
}

fn opt_identifier(path: &str, id: Option<&str>) -> Result<(), ValidationError> {
    id.map_or(Ok(()), |id| identifier(path, id))
}

fn amount(path: &str, n: f64) -> Result<(), ValidationError> {
    let message = if !n.is_finite() || n < 0.0 {
        format!("{} must be a finite number >= 0, got {n}", name_of(path))
    } else if n > MAX_AMOUNT {
        format!(
            "{} must be at most {MAX_AMOUNT:e}, got {n:e}",
            name_of(path)
        )
    } else {
        return Ok(());
    };
    Err(ValidationError::field(
        ErrorCode::InvalidValue,
        path.to_owned(),
        message,
    ))
}

fn opt_amount(path: &str, n: Option<f64>) -> Result<(), ValidationError> {
    n.map_or(Ok(()), |n| amount(path, n))
}

fn count(path: &str, n: u64, min: u64, max: u64) -> Result<(), ValidationError> {
    let message = if n < min {
        format!("{} must be >= {min}, got {n}", name_of(path))
    } else if n > max {
        format!("{} must be at most {max}, got {n}", name_of(path))
    } else {
        return Ok(());
    };
    Err(ValidationError::field(
        ErrorCode::InvalidValue,
        path.to_owned(),
        message,
    ))
}

/// U+0000 in `key` or anywhere in `value`, a member of the object at `steps`.
fn nul_in_json<'a>(
    key: &'a str,
    value: &'a serde_json::Value,
    steps: &mut Vec<PathStep<'a>>,
) -> Result<(), ValidationError> {
    steps.push(PathStep::Key(key));
    if has_forbidden_text(key) {
        return Err(ValidationError::field(
            ErrorCode::InvalidValue,
            render_path(steps),
            format!("object keys {TEXT_NUL}"),
        ));
    }
    nul_in_value(value, steps)?;
    steps.pop();
    Ok(())
}

fn nul_in_value<'a>(
    value: &'a serde_json::Value,
    steps: &mut Vec<PathStep<'a>>,
) -> Result<(), ValidationError> {
    match value {
        serde_json::Value::String(s) if has_forbidden_text(s) => {
            let named = steps
                .iter()
                .rposition(|step| matches!(step, PathStep::Key(_)))
                .unwrap_or(0);
            Err(ValidationError::field(
                ErrorCode::InvalidValue,
                render_path(steps),
                format!("{} {TEXT_NUL}", render_path(&steps[named..])),
            ))
        }
        serde_json::Value::Object(members) => {
            for (key, member) in members {
                nul_in_json(key, member, steps)?;
            }
            Ok(())
        }
        serde_json::Value::Array(elements) => {
            for (index, element) in elements.iter().enumerate() {
                steps.push(PathStep::Index(index));
                nul_in_value(element, steps)?;
                steps.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
