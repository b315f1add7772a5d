//! Writing the native event as JSON text directly, in one buffer: strings escaped once,
//! the sender's untouched values copied as the bytes they arrived as.

use serde_json::value::RawValue;

use std::borrow::Cow;

use super::fields::{ident, literal, number, Amount, Fields, Ident};
use super::values::{join, As};
use super::MapError;

/// A JSON object being written. Keys are written as given: the caller writes each key
/// once per object.
pub(super) struct ObjectWriter {
    out: Vec<u8>,
    /// Per open object or array, innermost last: whether nothing is in it yet, and
    /// the byte that closes it.
    open: Vec<(bool, u8)>,
}

impl ObjectWriter {
    /// An empty object, with room for about `capacity` bytes.
    pub(super) fn new(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        ObjectWriter {
            out,
            open: vec![(true, b'}')],
        }
    }

    fn separator(&mut self) {
        if let Some((empty, _)) = self.open.last_mut() {
            if !*empty {
                self.out.push(b',');
            }
            *empty = false;
        }
    }

    fn escaped(&mut self, text: &str) {
        // Keys and ids rarely hold anything to escape: copied as they are then.
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.out.push(b'"');
            self.out.extend_from_slice(text.as_bytes());
            self.out.push(b'"');
        } else {
            // Writing a `str` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut self.out, text);
        }
    }

    /// One of the native contract's own keys: plain ASCII, nothing to escape.
    fn key(&mut self, key: &str) {
        debug_assert!(key
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
        self.separator();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// The members of `fields` whose keys `skip` does not name, as sent. A key read
    /// without unescaping (borrowed) had nothing to escape, so it is copied as it is.
    pub(super) fn members(&mut self, fields: &Fields<'_>, skip: impl Fn(&str) -> bool) {
        for (key, value) in fields.iter().filter(|(key, _)| !skip(key)) {
            self.separator();
            match key {
                Cow::Borrowed(key) => {
                    self.out.push(b'"');
                    self.out.extend_from_slice(key.as_bytes());
                    self.out.push(b'"');
                }
                Cow::Owned(key) => self.escaped(key),
            }
            self.out.push(b':');
            self.out.extend_from_slice(value.get().as_bytes());
        }
    }

    /// `"key":"value"`.
    pub(super) fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        self.escaped(value);
    }

    /// `"key":` and the sender's value as sent.
    pub(super) fn raw(&mut self, key: &str, value: &RawValue) {
        self.key(key);
        self.out.extend_from_slice(value.get().as_bytes());
    }

    /// `"key":` and an identifier, as a string.
    pub(super) fn ident(&mut self, key: &str, value: &Ident<'_>) {
        match value {
            Ident::Literal(raw) => self.raw(key, raw),
            Ident::Integer(i) => self.string(key, &i.to_string()),
        }
    }

    /// `"key":` and a number.
    pub(super) fn amount(&mut self, key: &str, value: &Amount<'_>) {
        match value {
            Amount::Sent(raw) => self.raw(key, raw),
            Amount::Read(number) => {
                self.key(key);
                self.out.extend_from_slice(number.to_string().as_bytes());
            }
        }
    }

    /// `"key":{`: the members written next are the inner object's, up to
    /// [`ObjectWriter::close`].
    pub(super) fn open_object(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'{');
        self.open.push((true, b'}'));
    }

    /// `"key":[`: each element is opened by [`ObjectWriter::open_element`].
    pub(super) fn open_array(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'[');
        self.open.push((true, b']'));
    }

    /// An object element of the array open innermost.
    pub(super) fn open_element(&mut self) {
        self.separator();
        self.out.push(b'{');
        self.open.push((true, b'}'));
    }

    /// Closes the innermost open object or array (never the root).
    pub(super) fn close(&mut self) {
        if self.open.len() > 1 {
            if let Some((_, closer)) = self.open.pop() {
                self.out.push(closer);
            }
        }
    }

    /// Members written by [`ObjectWriter::into_members`], written again here: what
    /// several events made from one message share is rendered once.
    pub(super) fn members_text(&mut self, members: &[u8]) {
        if !members.is_empty() {
            self.separator();
            self.out.extend_from_slice(members);
        }
    }

    /// The members written so far, without the object's braces (for
    /// [`ObjectWriter::members_text`]).
    pub(super) fn into_members(self) -> Vec<u8> {
        let mut out = self.finish();
        out.pop();
        out.remove(0);
        out
    }

    /// The object's text, every open object and array closed.
    pub(super) fn finish(mut self) -> Vec<u8> {
        while let Some((_, closer)) = self.open.pop() {
            self.out.push(closer);
        }
        self.out
    }
}

/// Moves `key` of the sender's object `from` (found at path `base`) to `native_key` of
/// the native object `to`, read as `read`: text as a [`literal`], an [`ident`] or a
/// [`number`]. Absent or `null` moves nothing. Returns whether it was there.
pub(super) fn carry(
    from: &mut Fields<'_>,
    key: &str,
    base: &str,
    read: As,
    to: &mut ObjectWriter,
    native_key: &str,
) -> Result<bool, MapError> {
    let Some(raw) = from.take(key) else {
        return Ok(false);
    };
    let path = || join(base, key);
    match read {
        As::Text => to.raw(native_key, literal(raw, path)?),
        As::Ident => to.ident(native_key, &ident(raw, path)?),
        As::Number => to.amount(native_key, &number(raw, path)?),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn writes_well_formed_json() {
        let raw: &RawValue = serde_json::from_str(r#"{"a" : [1, 2]}"#).expect("json");
        let mut w = ObjectWriter::new(64);
        w.string("s", "quote \" and \u{0} nul");
        w.string("plain", "é ok");
        w.raw("r", raw);
        w.amount(
            "n",
            &Amount::Read(serde_json::Number::from_f64(19.99).expect("finite")),
        );
        w.open_object("o");
        w.close();
        w.open_array("items");
        w.open_element();
        w.string("id", "p1");
        w.close();
        w.open_element();
        w.close();
        w.close();
        w.open_object("left open");
        w.open_array("a");
        let value: Value = serde_json::from_slice(&w.finish()).expect("well-formed");
        assert_eq!(
            value,
            json!({
                "s": "quote \" and \u{0} nul", "plain": "é ok", "r": {"a": [1, 2]}, "n": 19.99, "o": {},
                "items": [{"id": "p1"}, {}], "left open": {"a": []},
            })
        );
    }
}
