//! Borrowed views of the msgpack values inside a chunk, and their JSON text.
//!
//! Records are never turned into owned maps: a [`ValueRef`] points into the chunk's bytes, a
//! [`MapRef`] walks a map's entries in place, and [`write_json`] transcodes a value straight
//! into a request buffer. Keys and strings are borrowed; nothing is allocated per field except
//! for the rare value that needs repair (invalid UTF-8, a map key that is not a string).
//!
//! Views are only made over bytes the core's decoder has validated, but nothing here relies on
//! it for safety: a value that does not parse simply ends the walk (`None`), it never panics.
//!
//! JSON mapping (the same as Fluent Bit's own msgpack-to-JSON where JSON can say it): binary
//! is written as a string, invalid UTF-8 becomes U+FFFD, NaN and infinities become `null`, an
//! EventTime nested in a body becomes fractional seconds, other extension values `null`, and a
//! container nested deeper than [`MAX_DEPTH`] becomes [`DEPTH_PLACEHOLDER`].

use std::borrow::Cow;

use rmp::Marker;

use crate::json::{write_float, write_int, write_str, write_text};

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
    pub fn address(&self) -> usize {
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

/// An EventTime extension's seconds and nanoseconds, if `payload` is one (type 0, 8 bytes).
pub fn event_time(kind: i8, payload: &[u8]) -> Option<(u32, u32)> {
    let bytes: [u8; 8] = payload.try_into().ok().filter(|_| kind == 0)?;
    let secs = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let nanos = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Some((secs, nanos))
}

/// An EventTime as fractional seconds, as it is written nested in a body.
pub fn event_time_seconds(secs: u32, nanos: u32) -> f64 {
    f64::from(secs) + f64::from(nanos) / 1e9
}

// ---- JSON ----

/// Writes `value`, sitting at `depth`, as JSON.
pub fn write_json(value: ValueRef<'_>, depth: usize, out: &mut Vec<u8>) {
    match value {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Bool(true) => out.extend_from_slice(b"true"),
        ValueRef::Bool(false) => out.extend_from_slice(b"false"),
        ValueRef::Int(n) => write_int(n, out),
        ValueRef::UInt(n) => write_int(n, out),
        ValueRef::Float(f) => write_float(f, out),
        ValueRef::Str(bytes) => write_text(bytes, out),
        ValueRef::Ext(kind, payload) => match event_time(kind, payload) {
            Some((secs, nanos)) => write_float(event_time_seconds(secs, nanos), out),
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

#[cfg(test)]
mod tests;
