//! The product catalog and currency rates, cached in memory (loaded from PostgreSQL by
//! [`crate::store::Store::load_catalog`] and reloaded when its time to live has passed).

use std::collections::HashMap;

/// The largest amount one event converts to, in micro-units of the reporting currency
/// (10¹⁷, i.e. 100 billion units): far above any order, and low enough that 90 of them
/// fit in one counter. Larger conversions (an extreme rate) count as unconverted.
pub const MAX_REPORTING_MICROS: i64 = 100_000_000_000_000_000;

/// What the catalog says about a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Display name.
    pub name: String,
    /// Category, if any.
    pub category: Option<String>,
}

/// Products and conversion rates to the reporting currency.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    reporting_currency: String,
    products: HashMap<String, Product>,
    rates: HashMap<String, f64>,
}

impl Catalog {
    /// An empty catalog for `reporting_currency`.
    pub fn new(reporting_currency: &str) -> Self {
        Catalog {
            reporting_currency: reporting_currency.to_owned(),
            ..Catalog::default()
        }
    }

    /// Adds or replaces a product.
    pub fn insert_product(&mut self, id: &str, name: &str, category: Option<String>) {
        self.products.insert(
            id.to_owned(),
            Product {
                name: name.to_owned(),
                category,
            },
        );
    }

    /// Sets the rate of `currency` (units of the reporting currency per unit).
    pub fn insert_rate(&mut self, currency: &str, rate_to_reporting: f64) {
        self.rates.insert(currency.to_owned(), rate_to_reporting);
    }

    /// A product, if the catalog has it.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }

    /// Products held.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether no product is held.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// `amount` in `currency` as integer micro-units of the reporting currency
    /// (`round(amount × rate × 10⁶)`), or `None` when there is no rate for `currency`,
    /// or when the result is not a finite amount of at most [`MAX_REPORTING_MICROS`]
    /// (a cast would silently saturate it).
    pub fn to_reporting_micros(&self, amount: f64, currency: &str) -> Option<i64> {
        let rate = if currency.eq_ignore_ascii_case(&self.reporting_currency) {
            1.0
        } else {
            *self.rates.get(&currency.to_ascii_uppercase())?
        };
        let micros = (amount * rate * 1_000_000.0).round();
        (micros.is_finite() && (0.0..=MAX_REPORTING_MICROS as f64).contains(&micros))
            .then_some(micros as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_with_rates_and_knows_the_reporting_currency() {
        let mut c = Catalog::new("EUR");
        c.insert_rate("USD", 0.9);
        assert_eq!(c.to_reporting_micros(12.5, "EUR"), Some(12_500_000));
        assert_eq!(c.to_reporting_micros(10.0, "usd"), Some(9_000_000));
        assert_eq!(c.to_reporting_micros(10.0, "GBP"), None);
        assert_eq!(
            c.to_reporting_micros(1e11, "EUR"),
            Some(MAX_REPORTING_MICROS),
            "the contract's largest amount converts"
        );
        c.insert_rate("XXX", 1e12);
        assert_eq!(c.to_reporting_micros(1e11, "XXX"), None, "out of range");
        assert_eq!(c.to_reporting_micros(f64::MAX, "EUR"), None);
        c.insert_product("p", "P", Some("shoes".to_owned()));
        assert_eq!(c.product("p").map(|p| p.name.as_str()), Some("P"));
        assert_eq!(c.len(), 1);
    }
}
