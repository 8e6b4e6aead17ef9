//! `event_format msgpack`: decoding the record, and encoding the result so the host can
//! carry it.
//!
//! The host copies the returned buffer as a C string, so output is cut at the first 0x00
//! byte. Values whose normal encoding holds one are rewritten: integers and floats as their
//! decimal text, strings whose 16-bit length has a zero low byte get one trailing space, NUL
//! characters become U+FFFD. Some shapes cannot be written without a zero byte at all — maps and
//! arrays of 16 or more entries, strings of 64 KiB or more — and then [`encode_zero_free`] says
//! so and the caller sends an explicit marker record instead. JSON mode has none of this.

use rmp::Marker;
use serde_json::{Map, Number, Value};

use crate::depth::MAX_DEPTH;

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

/// Decodes one msgpack value (the record body) into JSON values.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut reader = Reader { buf: bytes, pos: 0 };
    let value = reader.value(0)?;
    Ok(value)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() - self.pos {
            return Err(DecodeError(format!(
                "truncated msgpack at byte {}",
                self.pos
            )));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn text(&mut self, len: usize) -> Result<Value, DecodeError> {
        Ok(Value::String(
            String::from_utf8_lossy(self.take(len)?).into_owned(),
        ))
    }

    fn float(f: f64) -> Value {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("msgpack nested too deeply".into()));
        }
        let marker = Marker::from_u8(self.take(1)?[0]);
        Ok(match marker {
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(v) => Value::from(v),
            Marker::FixNeg(v) => Value::from(v),
            Marker::U8 => Value::from(self.uint(1)?),
            Marker::U16 => Value::from(self.uint(2)?),
            Marker::U32 => Value::from(self.uint(4)?),
            Marker::U64 => Value::from(self.uint(8)?),
            Marker::I8 => Value::from(self.uint(1)? as u8 as i8),
            Marker::I16 => Value::from(self.uint(2)? as u16 as i16),
            Marker::I32 => Value::from(self.uint(4)? as u32 as i32),
            Marker::I64 => Value::from(self.uint(8)? as i64),
            Marker::F32 => Self::float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            Marker::F64 => Self::float(f64::from_bits(self.uint(8)?)),
            Marker::FixStr(n) => self.text(usize::from(n))?,
            Marker::Str8 | Marker::Bin8 => {
                let n = self.uint(1)? as usize;
                self.text(n)?
            }
            Marker::Str16 | Marker::Bin16 => {
                let n = self.uint(2)? as usize;
                self.text(n)?
            }
            Marker::Str32 | Marker::Bin32 => {
                let n = self.uint(4)? as usize;
                self.text(n)?
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = match marker {
                    Marker::FixArray(n) => usize::from(n),
                    Marker::Array16 => self.uint(2)? as usize,
                    _ => self.uint(4)? as usize,
                };
                // Reserve what the bytes left could hold, at most 1024: each element grows to
                // a 32+ byte value, so a claim is not worth reserving for up front.
                let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos).min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let n = match marker {
                    Marker::FixMap(n) => usize::from(n),
                    Marker::Map16 => self.uint(2)? as usize,
                    _ => self.uint(4)? as usize,
                };
                let mut map = Map::new();
                for _ in 0..n {
                    let key = match self.value(depth + 1)? {
                        Value::String(s) => s,
                        // Bounded at every level: maps used as keys would otherwise double in
                        // length per level of nesting (each escapes the one inside).
                        other => other.to_string().chars().take(256).collect(),
                    };
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                }
                Value::Object(map)
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16 => {
                let n = match marker {
                    Marker::FixExt1 => 1,
                    Marker::FixExt2 => 2,
                    Marker::FixExt4 => 4,
                    Marker::FixExt8 => 8,
                    _ => 16,
                };
                self.take(1 + n)?;
                Value::Null
            }
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let n = match marker {
                    Marker::Ext8 => self.uint(1)?,
                    Marker::Ext16 => self.uint(2)?,
                    _ => self.uint(4)?,
                } as usize;
                self.take(1 + n)?;
                Value::Null
            }
            Marker::Reserved => {
                return Err(DecodeError(format!(
                    "invalid msgpack byte at {}",
                    self.pos - 1
                )));
            }
        })
    }
}

/// A shape msgpack cannot encode without a 0x00 byte.
#[derive(Debug, PartialEq, Eq)]
pub struct NeedsZeroByte(pub &'static str);

/// Encodes `value` with no 0x00 byte anywhere (see the module documentation).
pub fn encode_zero_free(value: &Value, out: &mut Vec<u8>) -> Result<(), NeedsZeroByte> {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            let start = out.len();
            if let Some(u) = n.as_u64() {
                let _ = rmp::encode::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                let _ = rmp::encode::write_sint(out, i);
            } else {
                let _ = rmp::encode::write_f64(out, n.as_f64().unwrap_or(0.0));
            }
            if out[start..].contains(&0) {
                out.truncate(start);
                string(&n.to_string(), out)?;
            }
        }
        Value::String(s) => string(s, out)?,
        Value::Array(items) => {
            if items.len() >= 16 {
                return Err(NeedsZeroByte("an array of 16 or more items"));
            }
            out.push(0x90 | items.len() as u8);
            for item in items {
                encode_zero_free(item, out)?;
            }
        }
        Value::Object(map) => {
            if map.len() >= 16 {
                return Err(NeedsZeroByte("a map of 16 or more keys"));
            }
            out.push(0x80 | map.len() as u8);
            for (k, v) in map {
                string(k, out)?;
                encode_zero_free(v, out)?;
            }
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) -> Result<(), NeedsZeroByte> {
    let mut text = if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    };
    if text.len() >= 256 && text.len() % 256 == 0 {
        text.push(' ');
    }
    let len = text.len();
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=255 => out.extend_from_slice(&[0xd9, len as u8]),
        256..=65535 => out.extend_from_slice(&[0xda, (len >> 8) as u8, len as u8]),
        _ => return Err(NeedsZeroByte("a string of 64 KiB or more")),
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The record to send when the real one needs a zero byte: a small map carrying the reason and
/// the record as JSON text (cut below 64 KiB), so nothing vanishes silently.
pub fn marker_record(reason: &str, record_json: &str, out: &mut Vec<u8>) {
    let mut json = record_json.to_owned();
    if json.len() > 65_000 {
        let mut cut = 65_000;
        while !json.is_char_boundary(cut) {
            cut -= 1;
        }
        json.truncate(cut);
    }
    let marker = Value::Object(
        [
            (
                "k8s_metadata_error".to_string(),
                Value::String(reason.to_owned()),
            ),
            ("log".to_string(), Value::String(json)),
        ]
        .into_iter()
        .collect(),
    );
    // Two keys and strings below 64 KiB always encode zero-free.
    let _ = encode_zero_free(&marker, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_without_zero_bytes() {
        let value = json!({"a": 0, "b": 256, "c": 1.5, "d": "x".repeat(512), "e": [true, null, -1], "f": "nul\u{0}"});
        let mut out = Vec::new();
        encode_zero_free(&value, &mut out).unwrap();
        assert!(!out.contains(&0), "no zero byte");
        let back = decode(&out).unwrap();
        assert_eq!(back["a"], "0");
        assert_eq!(back["b"], "256");
        assert_eq!(back["c"], "1.5");
        assert_eq!(back["d"].as_str().unwrap().len(), 513);
        assert_eq!(back["e"], json!([true, null, -1]));
        assert_eq!(back["f"], "nul\u{fffd}");
    }

    #[test]
    fn shapes_that_need_a_zero_byte_are_refused() {
        let big: Map<String, Value> = (0..16).map(|i| (format!("k{i}"), json!(i + 1))).collect();
        assert!(encode_zero_free(&Value::Object(big), &mut Vec::new()).is_err());
        assert!(encode_zero_free(&json!("y".repeat(70_000)), &mut Vec::new()).is_err());
        let mut out = Vec::new();
        marker_record("why", &"z".repeat(100_000), &mut out);
        assert!(!out.contains(&0));
        assert_eq!(decode(&out).unwrap()["k8s_metadata_error"], "why");
    }

    #[test]
    fn maps_used_as_keys_stay_small() {
        let mut buf = vec![0x81];
        buf.extend(std::iter::repeat_n(0x81u8, 50));
        buf.extend(std::iter::repeat_n(0xa0u8, 102));
        let value = decode(&buf).unwrap();
        assert!(value.as_object().unwrap().keys().next().unwrap().len() <= 256 * 4);
    }

    #[test]
    fn bad_msgpack_is_an_error() {
        assert!(decode(&[0x82, 0xa1, b'a']).is_err());
        assert!(decode(&[0xc1]).is_err());
    }
}
