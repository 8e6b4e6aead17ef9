//! Borrowed views of the msgpack values inside a chunk, and their JSON text.
//!
//! Records are never turned into owned maps: a [`ValueRef`] points into the chunk's bytes, a
//! [`MapRef`] walks a map's entries in place, and [`write_json`] transcodes a value straight
//! into a request buffer. Keys and strings are borrowed; nothing is allocated per field except
//! for the rare value that needs repair (invalid UTF-8, a map key that is not a string).
//!
//! Views are only made over bytes [`crate::decode`] has validated, but nothing here relies on
//! it for safety: a value that does not parse simply ends the walk (`None`), it never panics.
//!
//! JSON mapping (the same as Fluent Bit's own msgpack-to-JSON where JSON can say it): binary
//! is written as a string, invalid UTF-8 becomes U+FFFD, NaN and infinities become `null`, an
//! EventTime nested in a body becomes fractional seconds, other extension values `null`, and a
//! container nested deeper than [`MAX_DEPTH`] becomes [`DEPTH_PLACEHOLDER`].

use std::borrow::Cow;

use rmp::Marker;

use crate::time::EventTime;

/// Deepest nesting kept. Half of serde_json's parse limit (128), which common JSON peers share:
/// destinations wrap records in envelopes (Datadog: an array of objects), and a body that
/// passes the peer's limit only without its envelope would make the whole request fail.
/// A record's body is at depth 1, its values at depth 2.
pub const MAX_DEPTH: usize = 64;

/// Longest text kept for a map key that is not a string (its JSON, cut). Bounding it at every
/// level matters: a chain of maps used as keys would otherwise double in length per level as
/// each level escapes the quotes of the one inside.
pub const MAX_KEY_TEXT: usize = 256;

/// Put in place of a value nested deeper than [`MAX_DEPTH`].
pub const DEPTH_PLACEHOLDER: &str = "[fanout: nested deeper than 64 levels]";

/// Depth of the values of a record's body (the body itself is at depth 1).
pub const FIELD_DEPTH: usize = 2;

/// One msgpack value, borrowed from the chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A str or bin value's bytes (not necessarily UTF-8).
    Str(&'a [u8]),
    Array(ArrayRef<'a>),
    Map(MapRef<'a>),
    Ext(i8, &'a [u8]),
}

/// A map's entries, in the order they were written (duplicates included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapRef<'a> {
    len: usize,
    /// From the first key on (possibly beyond the map's end).
    bytes: &'a [u8],
}

/// An array's elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayRef<'a> {
    len: usize,
    bytes: &'a [u8],
}

impl<'a> ValueRef<'a> {
    /// The value's text if it is a string (repaired if not UTF-8).
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match self {
            ValueRef::Str(bytes) => Some(text_of(bytes)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, ValueRef::Null)
    }

    /// Text as it should appear in a message, a tag or a stream name: strings as they are,
    /// everything else as JSON (`depth` is where the value sits, for the nesting limit).
    pub fn to_text(&self, depth: usize) -> Cow<'a, str> {
        match self.as_str() {
            Some(text) => text,
            None => {
                let mut out = Vec::new();
                write_json(*self, depth, &mut out);
                Cow::Owned(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// This value as an owned JSON value (for tests, previews and rare paths).
    pub fn to_json_value(&self, depth: usize) -> serde_json::Value {
        let mut out = Vec::new();
        write_json(*self, depth, &mut out);
        serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
    }
}

impl<'a> MapRef<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries in order: (key, value).
    pub fn iter(&self) -> MapIter<'a> {
        MapIter {
            left: self.len,
            bytes: self.bytes,
        }
    }

    /// Where the map's entries start in the chunk: two maps of one chunk are the same map
    /// exactly when this is equal.
    pub(crate) fn address(&self) -> usize {
        self.bytes.as_ptr() as usize
    }

    /// The value of the last entry whose key text is `name` (later duplicates win, as they did
    /// when a map was built from the entries). Values of other keys are skipped, not read.
    pub fn get(&self, name: &str) -> Option<ValueRef<'a>> {
        let mut bytes = self.bytes;
        let mut found = None;
        for _ in 0..self.len {
            let matches = match read(&mut bytes)? {
                ValueRef::Str(text) => text == name.as_bytes(),
                other => Key::Other(other).is(name),
            };
            if matches {
                found = peek(bytes);
            }
            skip_values(&mut bytes, 1)?;
        }
        found
    }
}

impl<'a> ArrayRef<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            left: self.len,
            bytes: self.bytes,
        }
    }
}

/// A map key: a string (borrowed) or, rarely, another value whose JSON text stands for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Key<'a> {
    Str(&'a [u8]),
    Other(ValueRef<'a>),
}

impl<'a> Key<'a> {
    /// Whether this key's text is `name`. A string key is compared byte for byte: a key that
    /// is not UTF-8 matches no name (it would take a name spelled with U+FFFD).
    pub fn is(&self, name: &str) -> bool {
        match self {
            Key::Str(bytes) => *bytes == name.as_bytes(),
            Key::Other(_) => self.text() == name,
        }
    }

    /// The key of a record's field as text: a string as it is (repaired if not UTF-8), any
    /// other value as its JSON, at most [`MAX_KEY_TEXT`] bytes.
    pub fn text(&self) -> Cow<'a, str> {
        self.text_at(FIELD_DEPTH)
    }

    /// The text of a key sitting at `depth` (a map used as a key is nested like a value).
    pub fn text_at(&self, depth: usize) -> Cow<'a, str> {
        match self {
            Key::Str(bytes) => text_of(bytes),
            Key::Other(value) => {
                let mut out = Vec::new();
                write_json(*value, depth, &mut out);
                let mut text = String::from_utf8_lossy(&out).into_owned();
                if text.len() > MAX_KEY_TEXT {
                    let mut cut = MAX_KEY_TEXT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                Cow::Owned(text)
            }
        }
    }

    /// Writes the key, sitting at `depth`, as a JSON string.
    pub fn write_json(&self, depth: usize, out: &mut Vec<u8>) {
        match self {
            Key::Str(bytes) => write_text(bytes, out),
            Key::Other(_) => write_str(&self.text_at(depth), out),
        }
    }
}

pub struct MapIter<'a> {
    left: usize,
    bytes: &'a [u8],
}

impl<'a> Iterator for MapIter<'a> {
    type Item = (Key<'a>, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = match read(&mut self.bytes) {
            Some(ValueRef::Str(bytes)) => Key::Str(bytes),
            Some(other) => Key::Other(other),
            None => return self.stop(),
        };
        match read(&mut self.bytes) {
            Some(value) => Some((key, value)),
            None => self.stop(),
        }
    }
}

impl<'a> MapIter<'a> {
    fn stop(&mut self) -> Option<(Key<'a>, ValueRef<'a>)> {
        self.left = 0;
        None
    }
}

pub struct ArrayIter<'a> {
    left: usize,
    bytes: &'a [u8],
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<ValueRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let value = read(&mut self.bytes);
        if value.is_none() {
            self.left = 0;
        }
        value
    }
}

/// Bytes as text, borrowed when they are UTF-8 (the check is cheaper than the lossy walk).
fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

// ---- msgpack primitives, shared with the decoder ----

/// Takes `n` bytes off the front of `bytes`.
pub fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if n > bytes.len() {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

fn be<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    take(bytes, N)?.try_into().ok()
}

pub fn read_u8(bytes: &mut &[u8]) -> Option<u8> {
    be::<1>(bytes).map(|b| b[0])
}
pub fn read_u16(bytes: &mut &[u8]) -> Option<u16> {
    be(bytes).map(u16::from_be_bytes)
}
pub fn read_u32(bytes: &mut &[u8]) -> Option<u32> {
    be(bytes).map(u32::from_be_bytes)
}
pub fn read_u64(bytes: &mut &[u8]) -> Option<u64> {
    be(bytes).map(u64::from_be_bytes)
}

/// What follows a marker: how it is laid out.
pub enum Shape {
    /// A scalar whose payload is this many bytes after the marker's length bytes.
    Scalar(usize),
    Array(usize),
    Map(usize),
    /// An extension value: payload length (the type byte comes first, not counted).
    Ext(usize),
    /// A str or bin value of this many bytes.
    Text(usize),
}

/// Reads the length bytes after `marker` and says what follows; `None` when the bytes end
/// early or the marker is the reserved 0xc1.
pub fn shape(marker: Marker, bytes: &mut &[u8]) -> Option<Shape> {
    Some(match marker {
        Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
            Shape::Scalar(0)
        }
        Marker::U8 | Marker::I8 => Shape::Scalar(1),
        Marker::U16 | Marker::I16 => Shape::Scalar(2),
        Marker::U32 | Marker::I32 | Marker::F32 => Shape::Scalar(4),
        Marker::U64 | Marker::I64 | Marker::F64 => Shape::Scalar(8),
        Marker::FixStr(n) => Shape::Text(usize::from(n)),
        Marker::Str8 | Marker::Bin8 => Shape::Text(usize::from(read_u8(bytes)?)),
        Marker::Str16 | Marker::Bin16 => Shape::Text(usize::from(read_u16(bytes)?)),
        Marker::Str32 | Marker::Bin32 => Shape::Text(read_u32(bytes)? as usize),
        Marker::FixArray(n) => Shape::Array(usize::from(n)),
        Marker::Array16 => Shape::Array(usize::from(read_u16(bytes)?)),
        Marker::Array32 => Shape::Array(read_u32(bytes)? as usize),
        Marker::FixMap(n) => Shape::Map(usize::from(n)),
        Marker::Map16 => Shape::Map(usize::from(read_u16(bytes)?)),
        Marker::Map32 => Shape::Map(read_u32(bytes)? as usize),
        Marker::FixExt1 => Shape::Ext(1),
        Marker::FixExt2 => Shape::Ext(2),
        Marker::FixExt4 => Shape::Ext(4),
        Marker::FixExt8 => Shape::Ext(8),
        Marker::FixExt16 => Shape::Ext(16),
        Marker::Ext8 => Shape::Ext(usize::from(read_u8(bytes)?)),
        Marker::Ext16 => Shape::Ext(usize::from(read_u16(bytes)?)),
        Marker::Ext32 => Shape::Ext(read_u32(bytes)? as usize),
        Marker::Reserved => return None,
    })
}

/// Skips `count` whole values without recursion: containers add their elements to the count.
pub fn skip_values(bytes: &mut &[u8], mut count: u64) -> Option<()> {
    while count > 0 {
        count -= 1;
        if let Some((_, rest)) = short_text(bytes) {
            *bytes = rest;
            continue;
        }
        let marker = Marker::from_u8(read_u8(bytes)?);
        match shape(marker, bytes)? {
            Shape::Scalar(n) | Shape::Text(n) => {
                take(bytes, n)?;
            }
            Shape::Ext(n) => {
                take(bytes, n + 1)?;
            }
            Shape::Array(n) => count += n as u64,
            Shape::Map(n) => count += 2 * n as u64,
        }
    }
    Some(())
}

/// A fixstr or str8 value at the front of `bytes` and what follows it, read straight from its
/// marker; `None` for anything else. Nested maps (`kubernetes`, its `labels`) are walked by
/// every convention tag and template several times a record, and their keys and values are
/// nearly all short strings.
#[inline]
fn short_text(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (start, len) = match *bytes.first()? {
        marker @ 0xa0..=0xbf => (1, usize::from(marker & 0x1f)),
        0xd9 => (2, usize::from(*bytes.get(1)?)),
        _ => return None,
    };
    let end = start + len;
    Some((bytes.get(start..end)?, bytes.get(end..)?))
}

/// Reads one value off the front of `bytes` (skipping over a container's contents).
pub fn read<'a>(bytes: &mut &'a [u8]) -> Option<ValueRef<'a>> {
    if let Some((text, rest)) = short_text(bytes) {
        *bytes = rest;
        return Some(ValueRef::Str(text));
    }
    let marker = Marker::from_u8(read_u8(bytes)?);
    Some(match shape(marker, bytes)? {
        Shape::Text(n) => ValueRef::Str(take(bytes, n)?),
        Shape::Array(n) => {
            let start = *bytes;
            skip_values(bytes, n as u64)?;
            ValueRef::Array(ArrayRef {
                len: n,
                bytes: start,
            })
        }
        Shape::Map(n) => {
            let start = *bytes;
            skip_values(bytes, 2 * n as u64)?;
            ValueRef::Map(MapRef {
                len: n,
                bytes: start,
            })
        }
        Shape::Ext(n) => {
            let kind = read_u8(bytes)? as i8;
            ValueRef::Ext(kind, take(bytes, n)?)
        }
        Shape::Scalar(_) => match marker {
            Marker::Null => ValueRef::Null,
            Marker::True => ValueRef::Bool(true),
            Marker::False => ValueRef::Bool(false),
            Marker::FixPos(v) => ValueRef::UInt(u64::from(v)),
            Marker::FixNeg(v) => ValueRef::Int(i64::from(v)),
            Marker::U8 => ValueRef::UInt(u64::from(read_u8(bytes)?)),
            Marker::U16 => ValueRef::UInt(u64::from(read_u16(bytes)?)),
            Marker::U32 => ValueRef::UInt(u64::from(read_u32(bytes)?)),
            Marker::U64 => ValueRef::UInt(read_u64(bytes)?),
            Marker::I8 => ValueRef::Int(i64::from(read_u8(bytes)? as i8)),
            Marker::I16 => ValueRef::Int(i64::from(read_u16(bytes)? as i16)),
            Marker::I32 => ValueRef::Int(i64::from(read_u32(bytes)? as i32)),
            Marker::I64 => ValueRef::Int(read_u64(bytes)? as i64),
            Marker::F32 => ValueRef::Float(f64::from(f32::from_bits(read_u32(bytes)?))),
            Marker::F64 => ValueRef::Float(f64::from_bits(read_u64(bytes)?)),
            _ => return None,
        },
    })
}

/// The value at the front of `bytes`, without finding where it ends: a container is not
/// skipped over (reading a record's field by its index needs no end).
pub fn peek(bytes: &[u8]) -> Option<ValueRef<'_>> {
    let mut cursor = bytes;
    let marker = Marker::from_u8(read_u8(&mut cursor)?);
    match shape(marker, &mut cursor)? {
        Shape::Array(len) => Some(ValueRef::Array(ArrayRef { len, bytes: cursor })),
        Shape::Map(len) => Some(ValueRef::Map(MapRef { len, bytes: cursor })),
        _ => read(&mut &bytes[..]),
    }
}

/// An EventTime extension's time, if `payload` is one (type 0, 8 bytes).
pub fn event_time(kind: i8, payload: &[u8]) -> Option<EventTime> {
    let bytes: [u8; 8] = payload.try_into().ok().filter(|_| kind == 0)?;
    let secs = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let nanos = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Some(EventTime::new(i64::from(secs), nanos))
}

// ---- JSON ----

/// Writes `text` as an escaped JSON string.
pub fn write_str(text: &str, out: &mut Vec<u8>) {
    write_text(text.as_bytes(), out);
}

/// What [`write_text`] must look at in a byte: 0 for bytes copied as they are, `b'u'` for
/// control characters (`\u00XX`), the escape letter for `"`, `\\` and the usual controls, and
/// `NON_ASCII` for bytes of a multi-byte character (which need UTF-8 validation).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\x08' as usize] = b'b';
    table[b'\t' as usize] = b't';
    table[b'\n' as usize] = b'n';
    table[b'\x0c' as usize] = b'f';
    table[b'\r' as usize] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    let mut b = 0x80;
    while b < 0x100 {
        table[b] = NON_ASCII;
        b += 1;
    }
    table
};
const NON_ASCII: u8 = 1;

/// Writes msgpack string bytes as a JSON string, escaped as serde_json escapes them, in one
/// pass: ASCII text (the common case) is never validated separately, UTF-8 is checked once
/// from the first byte above 0x7f, and text that is not UTF-8 is repaired with U+FFFD.
/// Measured: validating and escaping in two passes (`from_utf8`, then serde_json) was ~15 % of
/// the pipeline on small records; serde_json only escapes `&str`.
pub fn write_text(bytes: &[u8], out: &mut Vec<u8>) {
    let opening = out.len();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut utf8_checked = false;
    let mut at = 0;
    while at < bytes.len() {
        // Eight bytes at a time while none needs a look (most text).
        while let Some(word) = bytes.get(at..at + 8) {
            if needs_look(
                u64::from_le_bytes(word.try_into().unwrap_or_default()),
                !utf8_checked,
            ) {
                break;
            }
            at += 8;
        }
        // The last few bytes (all of most keys and short values) as one word.
        if at + 8 > bytes.len() && !needs_look(last_word(bytes, at), !utf8_checked) {
            break;
        }
        let Some(&byte) = bytes.get(at) else { break };
        match ESCAPE[byte as usize] {
            0 => {}
            NON_ASCII => {
                // Everything before is ASCII, so `at` starts a character.
                if !utf8_checked {
                    if std::str::from_utf8(&bytes[at..]).is_err() {
                        out.truncate(opening);
                        // Repaired, it is UTF-8: this call does not come back here.
                        write_text(String::from_utf8_lossy(bytes).as_bytes(), out);
                        return;
                    }
                    utf8_checked = true;
                }
            }
            escape => {
                out.extend_from_slice(&bytes[copied..at]);
                out.push(b'\\');
                if escape == b'u' {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"u00");
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0xf)]);
                } else {
                    out.push(escape);
                }
                copied = at + 1;
            }
        }
        at += 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// The bytes of `bytes` from `at` (fewer than eight) in one word, with bytes before them or
/// spaces: read without a copy of variable length.
#[inline]
fn last_word(bytes: &[u8], at: usize) -> u64 {
    let len = bytes.len();
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    if len >= 8 {
        u64::from_le_bytes(bytes[len - 8..].try_into().unwrap_or_default())
    } else if len >= 4 {
        u64::from(u32_at(0)) | u64::from(u32_at(len - 4)) << 32
    } else {
        bytes[at.min(len)..]
            .iter()
            .fold(u64::from_le_bytes([b' '; 8]), |word, &b| {
                word << 8 | u64::from(b)
            })
    }
}

/// Whether any of the eight bytes in `word` is a control character, `"` or `\\` (or, with
/// `non_ascii`, above 0x7f): the usual word-at-a-time tests for a zero or a small byte.
fn needs_look(word: u64, non_ascii: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote =
        (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(word ^ (ONES * u64::from(b'"')));
    let backslash =
        (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(word ^ (ONES * u64::from(b'\\')));
    let high = if non_ascii { word } else { 0 };
    (below_space | quote | backslash | high) & HIGH != 0
}

/// Writes `value`, sitting at `depth`, as JSON.
pub fn write_json(value: ValueRef<'_>, depth: usize, out: &mut Vec<u8>) {
    match value {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Bool(true) => out.extend_from_slice(b"true"),
        ValueRef::Bool(false) => out.extend_from_slice(b"false"),
        ValueRef::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        ValueRef::UInt(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        ValueRef::Float(f) => write_float(f, out),
        ValueRef::Str(bytes) => write_text(bytes, out),
        ValueRef::Ext(kind, payload) => match event_time(kind, payload) {
            Some(time) => write_float(time.as_f64(), out),
            None => out.extend_from_slice(b"null"),
        },
        ValueRef::Array(_) | ValueRef::Map(_) if depth >= MAX_DEPTH => {
            write_str(DEPTH_PLACEHOLDER, out)
        }
        ValueRef::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json(item, depth + 1, out);
            }
            out.push(b']');
        }
        ValueRef::Map(map) => {
            out.push(b'{');
            for (n, (key, value)) in map.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                key.write_json(depth + 1, out);
                out.push(b':');
                write_json(value, depth + 1, out);
            }
            out.push(b'}');
        }
    }
}

fn write_float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        // serde_json's spelling of floats (ryu), so output matches what it always was.
        let _ = serde_json::to_writer(&mut *out, &f);
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmp::encode;

    fn value(bytes: &[u8]) -> ValueRef<'_> {
        let mut cursor = bytes;
        read(&mut cursor).unwrap()
    }

    fn json(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_json(value(bytes), FIELD_DEPTH, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn maps_walk_in_place_and_later_duplicates_win_on_lookup() {
        let mut buf = Vec::new();
        encode::write_map_len(&mut buf, 3).unwrap();
        encode::write_str(&mut buf, "a").unwrap();
        encode::write_array_len(&mut buf, 2).unwrap();
        encode::write_uint(&mut buf, 1).unwrap();
        encode::write_sint(&mut buf, -2).unwrap();
        encode::write_str(&mut buf, "b").unwrap();
        encode::write_bool(&mut buf, true).unwrap();
        encode::write_str(&mut buf, "a").unwrap();
        encode::write_str(&mut buf, "last").unwrap();
        let ValueRef::Map(map) = value(&buf) else {
            panic!("a map")
        };
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("a"), Some(ValueRef::Str(b"last")));
        let first_a = map.iter().find(|(key, _)| key.is("a")).map(|(_, v)| v);
        assert!(matches!(first_a, Some(ValueRef::Array(_))));
        assert_eq!(map.get("b"), Some(ValueRef::Bool(true)));
        assert_eq!(map.get("c"), None);
        assert_eq!(json(&buf), r#"{"a":[1,-2],"b":true,"a":"last"}"#);
    }

    #[test]
    fn json_repairs_what_json_cannot_say() {
        let mut buf = Vec::new();
        encode::write_array_len(&mut buf, 5).unwrap();
        encode::write_f64(&mut buf, f64::NAN).unwrap();
        buf.extend_from_slice(&[0xa2, 0xff, b'x']); // fixstr, invalid UTF-8
        encode::write_ext_meta(&mut buf, 8, 0).unwrap();
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&500_000_000u32.to_be_bytes());
        encode::write_ext_meta(&mut buf, 1, 5).unwrap();
        buf.push(7);
        encode::write_bin(&mut buf, b"bin\n").unwrap();
        assert_eq!(json(&buf), "[null,\"\u{fffd}x\",1.5,null,\"bin\\n\"]");
    }

    #[test]
    fn text_is_escaped_exactly_as_serde_json_escapes_it() {
        let mut samples: Vec<Vec<u8>> = vec![
            b"plain".to_vec(),
            b"".to_vec(),
            b"quote \" backslash \\ slash / tab \t nl \n cr \r bs \x08 ff \x0c".to_vec(),
            (0u8..0x80).collect(),
            "caf\u{e9} \u{1F600} \u{2028} \"x\"".as_bytes().to_vec(),
            b"ascii then \xff\xfe broken \n".to_vec(),
            b"\xc3".to_vec(),
            "\u{e9}\u{0}".as_bytes().to_vec(),
        ];
        samples.push((0u8..=255).collect());
        // Every length a string's last word is read in a different way, with a byte that
        // needs a look at every place (the first or last of a multi-byte character too).
        for len in 0..=20 {
            for at in 0..len {
                for special in [
                    &b"\""[..],
                    b"\\",
                    b"\n",
                    b"\x1f",
                    b"\x7f",
                    b"\xff",
                    "\u{e9}".as_bytes(),
                ] {
                    let mut bytes = vec![b'a'; len];
                    bytes.splice(at..(at + special.len()).min(len), special.iter().copied());
                    samples.push(bytes);
                }
            }
        }
        for bytes in samples {
            let mut ours = Vec::new();
            write_text(&bytes, &mut ours);
            let expected = serde_json::to_vec(&String::from_utf8_lossy(&bytes)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&expected),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn non_string_keys_become_their_json_text() {
        let mut buf = Vec::new();
        encode::write_map_len(&mut buf, 1).unwrap();
        encode::write_uint(&mut buf, 7).unwrap();
        encode::write_str(&mut buf, "seven").unwrap();
        assert_eq!(json(&buf), r#"{"7":"seven"}"#);
        let ValueRef::Map(map) = value(&buf) else {
            panic!("a map")
        };
        assert_eq!(map.get("7"), Some(ValueRef::Str(b"seven")));
    }

    #[test]
    fn maps_used_as_keys_stop_at_the_depth_limit_and_the_key_length_limit() {
        // Each level is a one-entry map whose key is the next level: text would double per
        // level, and recursion would follow the chain, without both limits.
        let levels = 10_000;
        let mut buf = vec![0x81u8; levels];
        buf.extend(std::iter::repeat_n(0xa0u8, 2 * levels));
        let text = json(&buf);
        assert!(text.len() < 2 * MAX_KEY_TEXT, "{}", text.len());
    }

    #[test]
    fn containers_past_the_depth_limit_become_a_placeholder() {
        let mut buf = Vec::new();
        for _ in 0..70 {
            encode::write_array_len(&mut buf, 1).unwrap();
        }
        encode::write_uint(&mut buf, 1).unwrap();
        let text = json(&buf);
        // Arrays at depths 2 to 63, then the placeholder (which has a '[' of its own).
        assert_eq!(text.matches('[').count(), MAX_DEPTH - FIELD_DEPTH + 1);
        assert!(text.contains(DEPTH_PLACEHOLDER));
    }

    #[test]
    fn truncated_bytes_end_the_walk_without_panicking() {
        let mut buf = Vec::new();
        encode::write_map_len(&mut buf, 2).unwrap();
        encode::write_str(&mut buf, "a").unwrap();
        encode::write_str(&mut buf, "b").unwrap();
        let Some(ValueRef::Map(map)) = peek(&buf) else {
            panic!("a map, read without its end")
        };
        assert_eq!(map.iter().count(), 1);
        let mut cursor = &[0xc1u8][..];
        assert!(read(&mut cursor).is_none());
        let mut cursor = &[0xdbu8, 0, 0, 0, 9, b'x'][..];
        assert!(read(&mut cursor).is_none());
    }
}
