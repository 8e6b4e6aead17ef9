//! `event_format msgpack`: decoding the record, and encoding the result so the host can
//! carry it.
//!
//! The host copies the returned buffer as a C string, so output is cut at the first 0x00
//! byte. Values whose normal encoding holds one are rewritten: integers and floats as their
//! decimal text, strings whose 16-bit length has a zero low byte get one trailing space, NUL
//! characters become U+FFFD. Some shapes cannot be written without a zero byte at all — maps and
//! arrays of 16 or more entries, strings of 64 KiB or more — and then [`encode_zero_free`] says
//! so and the caller sends an explicit marker record instead. JSON mode has none of this.

use fanout_contract::view;
use serde_json::Value;

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

/// Decodes one msgpack value (the record body) into JSON values, with the mapping every part
/// of flb-fanout uses (`fanout_contract::view`): an EventTime becomes fractional seconds, other
/// extension values `null`, a container nested deeper than the limit the placeholder text.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut cursor = bytes;
    let value = view::read(&mut cursor)
        .ok_or_else(|| DecodeError("truncated or invalid msgpack".into()))?;
    let mut json = Vec::new();
    // The record's body sits at depth 1, as the core's records do.
    view::write_json(value, 1, &mut json);
    serde_json::from_slice(&json).map_err(|e| DecodeError(e.to_string()))
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
    use serde_json::{Map, json};

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

    /// The mapping every part of flb-fanout uses: an EventTime nested in the body is fractional
    /// seconds, other extension values `null`, binary a string, and a container nested deeper
    /// than the limit the placeholder, with the rest of the record kept.
    #[test]
    fn values_map_to_json_as_everywhere_else() {
        let mut buf = vec![0x84];
        buf.extend([0xa4, b't', b'i', b'm', b'e', 0xd7, 0x00]);
        buf.extend(1_700_000_000u32.to_be_bytes());
        buf.extend(250_000_000u32.to_be_bytes());
        buf.extend([0xa3, b'e', b'x', b't', 0xd4, 0x05, 0x01]);
        buf.extend([0xa3, b'b', b'i', b'n', 0xc4, 0x02, b'o', b'k']);
        buf.extend([0xa4, b'd', b'e', b'e', b'p']);
        buf.extend(std::iter::repeat_n(0x91u8, 100));
        buf.push(0x01);
        let value = decode(&buf).unwrap();
        assert_eq!(value["time"], json!(1_700_000_000.25));
        assert_eq!(value["ext"], Value::Null);
        assert_eq!(value["bin"], "ok");
        let mut deep = &value["deep"];
        let mut levels = 0;
        while let Some(inner) = deep.as_array() {
            deep = &inner[0];
            levels += 1;
        }
        assert_eq!(deep, &json!(fanout_contract::view::DEPTH_PLACEHOLDER));
        assert_eq!(levels, fanout_contract::view::MAX_DEPTH - 2);
    }

    #[test]
    fn bad_msgpack_is_an_error() {
        assert!(decode(&[0x82, 0xa1, b'a']).is_err());
        assert!(decode(&[0xc1]).is_err());
    }
}
