//! Writing a JSON object field by field straight into a buffer, without building a map.

use serde::Serialize;

pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn start(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    pub fn field<V: Serialize + ?Sized>(&mut self, key: &str, value: &V) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        // Strings and JSON values always serialize; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, key);
        self.out.push(b':');
        let _ = serde_json::to_writer(&mut *self.out, value);
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
