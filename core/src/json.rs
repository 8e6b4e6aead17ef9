//! Writing a JSON object field by field straight into a buffer, without building a map.

use serde::Serialize;

use crate::escape;
use crate::view::{self, FIELD_DEPTH, Key, ValueRef};

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
        escape::write_str(key, self.out);
        self.out.push(b':');
        // Strings and numbers always serialize; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }

    /// A string field.
    pub fn text(&mut self, key: &str, value: &str) {
        self.separator();
        escape::write_str(key, self.out);
        self.out.push(b':');
        escape::write_str(value, self.out);
    }

    /// A field whose JSON value `write` writes.
    pub fn raw(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
        self.separator();
        escape::write_str(key, self.out);
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
