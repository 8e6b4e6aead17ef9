//! Writing a JSON object field by field straight into a buffer, without building a map.

use serde::Serialize;

use fanout_contract::json;
use fanout_contract::view::{self, FIELD_DEPTH, Key, ValueRef};

pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn start(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    fn separator(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    pub fn field<V: Serialize + ?Sized>(&mut self, key: &str, value: &V) {
        self.separator();
        json::write_str(key, self.out);
        self.out.push(b':');
        // Strings and numbers always serialize; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }

    /// A string field.
    pub fn text(&mut self, key: &str, value: &str) {
        self.separator();
        json::write_str(key, self.out);
        self.out.push(b':');
        json::write_str(value, self.out);
    }

    /// A field whose JSON value `write` writes.
    pub fn raw(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
        self.separator();
        json::write_str(key, self.out);
        self.out.push(b':');
        write(self.out);
    }

    /// A record's own field, transcoded from the chunk.
    pub fn value(&mut self, key: Key<'_>, value: ValueRef<'_>) {
        self.separator();
        key.write_json(FIELD_DEPTH, self.out);
        self.out.push(b':');
        view::write_json(value, FIELD_DEPTH, self.out);
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// A value as an owned JSON value (tests, `preview`, the dead letter: paths where a record is
/// shown rather than sent).
pub fn to_json_value(value: ValueRef<'_>, depth: usize) -> serde_json::Value {
    let mut out = Vec::new();
    view::write_json(value, depth, &mut out);
    serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_fields_in_order() {
        let mut buf = Vec::new();
        let mut o = Object::start(&mut buf);
        o.field("a\"b", "x\ny");
        o.field("n", &3);
        o.end();
        assert_eq!(String::from_utf8(buf).unwrap(), r#"{"a\"b":"x\ny","n":3}"#);
    }
}
