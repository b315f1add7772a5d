//! The product catalog and currency rates, cached in memory (loaded from PostgreSQL by
//! [`crate::store::Store::load_catalog`] and reloaded when its time to live has passed).

use std::collections::HashMap;

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
    /// (`round(amount × rate × 10⁶)`), or `None` when there is no rate for `currency`.
    pub fn to_reporting_micros(&self, amount: f64, currency: &str) -> Option<i64> {
        let rate = if currency.eq_ignore_ascii_case(&self.reporting_currency) {
            1.0
        } else {
            *self.rates.get(&currency.to_ascii_uppercase())?
        };
        Some((amount * rate * 1_000_000.0).round() as i64)
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
        c.insert_product("p", "P", Some("shoes".to_owned()));
        assert_eq!(c.product("p").map(|p| p.name.as_str()), Some("P"));
        assert_eq!(c.len(), 1);
    }
}
