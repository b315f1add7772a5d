//! An order's lines, as Segment's `products` and GA4's `items` both send them: read
//! from the sender's objects, written as the native `items[]`, summed when the order
//! states no total.

use serde_json::value::RawValue;

use super::fields::{number, raw_type_name, Amount, Fields, Ident};
use super::values::join;
use super::writer::ObjectWriter;
use super::MapError;

/// The keys a line writes itself.
const LINE_KEYS: [&str; 3] = ["product_id", "quantity", "price"];

/// One line of a native order (`items[]`): `product_id`, `quantity` (1 when absent)
/// and `price` read from the sender's product, and its other fields (name, brand,
/// variant, ...) kept beside them.
pub(super) struct OrderLine<'a> {
    product_id: Ident<'a>,
    quantity: Amount<'a>,
    price: Option<Amount<'a>>,
    rest: Fields<'a>,
}

impl<'a> OrderLine<'a> {
    /// The lines of the array `products` found at `path`. `product_id` takes the
    /// product's identifier out of its members (each format names it its own way).
    ///
    /// # Errors
    ///
    /// A product that is not an object (`invalid_type`), a repeated key in one, and
    /// what `product_id` or the reading of `quantity` and `price` refuses.
    pub(super) fn read_all(
        products: Vec<&'a RawValue>,
        path: &str,
        product_id: impl Fn(&mut Fields<'a>, &str) -> Result<Ident<'a>, MapError>,
    ) -> Result<Vec<Self>, MapError> {
        let mut lines = Vec::with_capacity(products.len());
        for (index, product) in products.into_iter().enumerate() {
            let path = format!("{path}[{index}]");
            if !product.get().starts_with('{') {
                return Err(MapError::field(
                    ingest_core::ErrorCode::InvalidType,
                    path.clone(),
                    format!("{path} must be an object, not {}", raw_type_name(product)),
                ));
            }
            let mut product = Fields::read(product, || path.clone())?;
            let id = product_id(&mut product, &path)?;
            lines.push(OrderLine::read(product, id, &path)?);
        }
        Ok(lines)
    }

    /// `path` is the product's path in the sender's payload.
    fn read(mut product: Fields<'a>, product_id: Ident<'a>, path: &str) -> Result<Self, MapError> {
        let mut amount = |key: &str| {
            product
                .take(key)
                .map(|raw| number(raw, || join(path, key)))
                .transpose()
        };
        let quantity = amount("quantity")?.unwrap_or(Amount::Read(1.into()));
        let price = amount("price")?;
        Ok(OrderLine {
            product_id,
            quantity,
            price,
            rest: product,
        })
    }

    /// The sum of `price × quantity` over `lines`, rounded to micro-units (the
    /// precision the processor stores amounts in), for an order that states no total;
    /// `None` when a line has no price.
    pub(super) fn total(lines: &[OrderLine<'_>]) -> Option<Amount<'static>> {
        let mut total = 0.0;
        for line in lines {
            total += line.price.as_ref()?.as_f64()? * line.quantity.as_f64()?;
        }
        serde_json::Number::from_f64((total * 1e6).round() / 1e6).map(Amount::Read)
    }

    /// Writes `"items": [...]`.
    pub(super) fn write_all(lines: &[OrderLine<'_>], out: &mut ObjectWriter) {
        out.open_array("items");
        for line in lines {
            out.open_element();
            out.ident("product_id", &line.product_id);
            out.amount("quantity", &line.quantity);
            if let Some(price) = &line.price {
                out.amount("price", price);
            }
            // A sender's key never displaces a native one (GA4's items may hold a
            // `product_id` of their own beside `item_id`).
            out.members(&line.rest, |key| LINE_KEYS.contains(&key));
            out.close();
        }
        out.close();
    }
}
