//! Decoder for the chunks Fluent Bit passes to an output's flush callback.
//!
//! A chunk is a plain concatenation of msgpack values, one per record, no header. Each record
//! is either the legacy `[timestamp, body]` (Fluent Bit ≤ 2.0, Fluentd forward clients) or
//! `[[timestamp, metadata], body]` (2.1+); the layout is decided per record. Timestamps are
//! EventTime (ext type 0: big-endian u32 seconds, u32 nanoseconds), a non-negative integer or a
//! float. Since 3.1 a chunk may carry group markers: records whose timestamp is EventTime with
//! seconds 0xFFFFFFFF (start) or 0xFFFFFFFE (end), or the integers -1/-2; they are skipped.
//!
//! Error policy: a record that is well-formed msgpack but not a usable event (body not a map,
//! bad timestamp, wrong shape) is skipped and counted in [`Anomalies`]; the rest of the chunk
//! still decodes. A chunk whose msgpack framing is broken (truncated, reserved byte) cannot be
//! walked any further and is rejected whole with a [`DecodeError`] — retrying would not fix it.
//!
//! Nothing here recurses without bound: values nested deeper than [`MAX_DEPTH`] are replaced
//! by a placeholder and skipped iteratively, and claimed lengths never size an allocation
//! beyond what the remaining bytes could hold.

use rmp::Marker;

use crate::record::{ENTRY_BYTES, Entry, Records, SLOT_BYTES, Slot, key_bit};
use crate::time::EventTime;
use fanout_contract::view::{self, FIELD_DEPTH, MAX_DEPTH, Shape, ValueRef};

/// Most records reserved for up front, whatever the chunk's size suggests.
const MAX_PREALLOCATED: usize = 64 * 1024;

/// What was wrong with a chunk that was nevertheless decoded. Every field counts records or
/// values; [`Anomalies::skipped_records`] is what did not become an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Group start/end markers (expected from OpenTelemetry inputs; skipped, not an error).
    pub group_markers: u64,
    /// Records whose body was not a map.
    pub non_map_bodies: u64,
    /// Records whose timestamp was negative, out of range or of an unknown type.
    pub invalid_timestamps: u64,
    /// Top-level values that were not a `[time, body]` pair.
    pub not_events: u64,
    /// Values replaced by [`fanout_contract::view::DEPTH_PLACEHOLDER`].
    pub too_deep_values: u64,
    /// NaN or infinite floats, sent as `null` (JSON has no spelling for them).
    pub non_finite_floats: u64,
    /// Strings or binary values that were not UTF-8; invalid bytes became U+FFFD.
    pub invalid_utf8: u64,
    /// msgpack extension values other than timestamps, sent as `null`.
    pub ext_values: u64,
}

impl Anomalies {
    pub fn skipped_records(&self) -> u64 {
        self.non_map_bodies + self.invalid_timestamps + self.not_events
    }

    /// Values that were kept but altered on the way to JSON.
    pub fn altered_values(&self) -> u64 {
        self.too_deep_values + self.non_finite_floats + self.invalid_utf8 + self.ext_values
    }

    /// One human-readable summary of everything except group markers, or `None` when clean.
    pub fn describe(&self) -> Option<String> {
        let parts: Vec<String> = [
            (self.non_map_bodies, "records whose body is not a map"),
            (self.invalid_timestamps, "records with an invalid timestamp"),
            (self.not_events, "entries that are not [time, record] pairs"),
            (self.too_deep_values, "values nested too deeply (replaced)"),
            (self.non_finite_floats, "NaN/Inf floats (sent as null)"),
            (self.invalid_utf8, "strings with invalid UTF-8 (repaired)"),
            (self.ext_values, "msgpack ext values (sent as null)"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Why a chunk could not be decoded at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The chunk ended inside a value.
    Truncated { offset: usize },
    /// A byte that is not a msgpack marker (0xc1).
    InvalidMarker { offset: usize, byte: u8 },
    /// Over 4 GiB: beyond any chunk Fluent Bit makes, and beyond the index's offsets.
    TooLarge { len: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { offset } => {
                write!(
                    f,
                    "chunk is truncated: a value starting before byte {offset} runs past its end"
                )
            }
            DecodeError::InvalidMarker { offset, byte } => {
                write!(
                    f,
                    "chunk is not valid msgpack: byte 0x{byte:02x} at offset {offset}"
                )
            }
            DecodeError::TooLarge { len } => {
                write!(f, "chunk of {len} bytes is over 4 GiB")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The records of one chunk plus what had to be skipped or altered.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Records,
    pub anomalies: Anomalies,
}

/// About how many bytes of memory the decoded chunk `data` will hold (at most): its copy, an
/// index entry per event and an index slot per map entry, found by walking the chunk without
/// building anything. Iterative, allocation-free and bounded by the bytes present: safe on
/// Fluent Bit's small flush stack and against lengths a chunk only claims. Broken framing ends
/// the walk; the decoder reports it.
pub fn decoded_size_estimate(data: &[u8]) -> u64 {
    let mut rest = data;
    let (mut values, mut map_entries) = (0u64, 0u64);
    while let Some(byte) = view::read_u8(&mut rest) {
        values += 1;
        match view::shape(Marker::from_u8(byte), &mut rest) {
            Some(Shape::Map(n)) => map_entries += n as u64,
            Some(Shape::Array(_)) => {}
            Some(Shape::Scalar(n) | Shape::Text(n)) if view::take(&mut rest, n).is_some() => {}
            Some(Shape::Ext(n)) if view::take(&mut rest, n + 1).is_some() => {}
            _ => break,
        }
    }
    // Every event is at least three values: its array, its time and its body.
    data.len() as u64 + values / 3 * ENTRY_BYTES as u64 + map_entries * SLOT_BYTES as u64
}

/// Decodes one chunk: checks its framing, counts what JSON cannot carry as it is, and indexes
/// its events, which are then read in place. See the module documentation for the error policy.
pub fn decode_chunk(data: Vec<u8>) -> Result<Decoded, DecodeError> {
    if u32::try_from(data.len()).is_err() {
        return Err(DecodeError::TooLarge { len: data.len() });
    }
    let mut walker = Walker {
        data: &data,
        rest: &data,
        anomalies: Anomalies::default(),
        stack: Vec::new(),
        keys: Vec::new(),
        key_set: std::collections::HashMap::new(),
        slots: Vec::with_capacity((data.len() / 16 + 1).min(8 * MAX_PREALLOCATED)),
    };
    // Small records are ~30 bytes in msgpack; this avoids most regrowth without over-reserving.
    let mut entries = Vec::with_capacity((data.len() / 64 + 1).min(MAX_PREALLOCATED));
    while !walker.rest.is_empty() {
        if let Some(entry) = walker.entry()? {
            entries.push(entry);
        }
    }
    let (anomalies, slots) = (walker.anomalies, walker.slots);
    Ok(Decoded {
        records: Records::new(data, entries, slots),
        anomalies,
    })
}

enum Timestamp {
    Event(EventTime),
    GroupMarker,
    Invalid,
}

struct Walker<'a> {
    data: &'a [u8],
    rest: &'a [u8],
    anomalies: Anomalies,
    /// Values left in each open container (reused from value to value).
    stack: Vec<u64>,
    /// The current map's top-level string keys, to notice duplicates (reused).
    keys: Vec<(&'a [u8], usize)>,
    key_set: std::collections::HashMap<&'a [u8], usize>,
    /// Every map's index, in order.
    slots: Vec<Slot>,
}

impl<'a> Walker<'a> {
    fn offset(&self) -> usize {
        self.data.len() - self.rest.len()
    }

    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            offset: self.data.len(),
        }
    }

    fn marker(&mut self) -> Result<Marker, DecodeError> {
        let offset = self.offset();
        let byte = view::read_u8(&mut self.rest).ok_or_else(|| self.truncated())?;
        match Marker::from_u8(byte) {
            Marker::Reserved => Err(DecodeError::InvalidMarker { offset, byte }),
            marker => Ok(marker),
        }
    }

    fn shape(&mut self, marker: Marker) -> Result<Shape, DecodeError> {
        view::shape(marker, &mut self.rest).ok_or_else(|| self.truncated())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        view::take(&mut self.rest, n).ok_or_else(|| self.truncated())
    }

    /// Skips `count` values (after their container's marker), checking their framing.
    fn skip(&mut self, count: u64) -> Result<(), DecodeError> {
        let mut count = count;
        while count > 0 {
            count -= 1;
            let marker = self.marker()?;
            match self.shape(marker)? {
                Shape::Scalar(n) | Shape::Text(n) => {
                    self.take(n)?;
                }
                Shape::Ext(n) => {
                    self.take(n + 1)?;
                }
                Shape::Array(n) => count += n as u64,
                Shape::Map(n) => count += 2 * n as u64,
            }
        }
        Ok(())
    }

    /// Reads one top-level entry; `None` when it was skipped (and counted).
    fn entry(&mut self) -> Result<Option<Entry>, DecodeError> {
        let marker = self.marker()?;
        match self.shape(marker)? {
            Shape::Array(2) => {}
            shape => {
                self.skip_shape(shape)?;
                self.anomalies.not_events += 1;
                return Ok(None);
            }
        }
        let head_at = self.rest;
        let head = self.marker()?;
        let (time, metadata) = match self.shape(head)? {
            Shape::Array(2) => {
                let time = self.timestamp()?;
                let meta_marker = self.marker()?;
                let metadata = match self.shape(meta_marker)? {
                    Shape::Map(n) => Some(self.map(n)?),
                    shape => {
                        // Not produced by any Fluent Bit encoder; keep the event, drop the junk.
                        self.skip_shape(shape)?;
                        None
                    }
                };
                (time, metadata)
            }
            Shape::Array(n) => {
                self.skip(n as u64)?;
                (Timestamp::Invalid, None)
            }
            _ => {
                self.rest = head_at;
                (self.timestamp()?, None)
            }
        };
        let body_marker = self.marker()?;
        let body_shape = self.shape(body_marker)?;
        let time = match time {
            Timestamp::Event(time) => time,
            Timestamp::GroupMarker => {
                self.skip_shape(body_shape)?;
                self.anomalies.group_markers += 1;
                return Ok(None);
            }
            Timestamp::Invalid => {
                self.skip_shape(body_shape)?;
                self.anomalies.invalid_timestamps += 1;
                return Ok(None);
            }
        };
        match body_shape {
            Shape::Map(n) => {
                let (body, body_other_keys, body_keys) = self.map(n)?;
                let (metadata, metadata_other_keys, metadata_keys) =
                    metadata.unwrap_or(((0, 0), false, 0));
                Ok(Some(Entry {
                    time,
                    metadata,
                    body,
                    metadata_other_keys,
                    body_other_keys,
                    metadata_keys,
                    body_keys,
                }))
            }
            shape => {
                self.skip_shape(shape)?;
                self.anomalies.non_map_bodies += 1;
                Ok(None)
            }
        }
    }

    fn skip_shape(&mut self, shape: Shape) -> Result<(), DecodeError> {
        match shape {
            Shape::Scalar(n) | Shape::Text(n) => self.take(n).map(|_| ()),
            Shape::Ext(n) => self.take(n + 1).map(|_| ()),
            Shape::Array(n) => self.skip(n as u64),
            Shape::Map(n) => self.skip(2 * n as u64),
        }
    }

    /// Walks a record's body or metadata map of `n` entries (its marker read) and indexes it:
    /// a slot per distinct string key (a repeated key's slot takes the later value), a slot per
    /// other key. Returns the slots' range and whether some key is not a string.
    fn map(&mut self, n: usize) -> Result<((u32, u32), bool, u64), DecodeError> {
        let first = self.slots.len();
        let mut key_mask = 0u64;
        self.keys.clear();
        self.key_set.clear();
        let mut other_keys = false;
        for _ in 0..n {
            let key_start = self.rest;
            let key_at = self.offset();
            let marker = self.marker()?;
            let mut slot =
                if let Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 = marker {
                    let Shape::Text(len) = self.shape(marker)? else {
                        unreachable!("str markers have a text shape")
                    };
                    let text_at = self.offset();
                    let key = self.take(len)?;
                    self.check_text(key);
                    key_mask |= key_bit(key);
                    Slot {
                        key: text_at as u32,
                        key_len: len as u32,
                        value: 0,
                        string_key: true,
                    }
                } else {
                    other_keys = true;
                    self.rest = key_start;
                    self.value(FIELD_DEPTH)?;
                    Slot {
                        key: key_at as u32,
                        key_len: 0,
                        value: 0,
                        string_key: false,
                    }
                };
            slot.value = self.offset() as u32;
            self.value(FIELD_DEPTH)?;
            if slot.string_key {
                let start = slot.key as usize;
                let key = &self.data[start..start + slot.key_len as usize];
                if let Some(earlier) = self.earlier(key, self.slots.len()) {
                    self.slots[earlier].value = slot.value;
                    continue;
                }
            }
            self.slots.push(slot);
        }
        Ok((
            (first as u32, (self.slots.len() - first) as u32),
            other_keys,
            key_mask,
        ))
    }

    /// The slot of `key` if the current map already has it; otherwise remembers that `key` is
    /// at `slot`. Small maps compare in a list; a map with many keys switches to a hash map, so
    /// a hostile map of hundreds of thousands of keys costs linear time, not quadratic.
    fn earlier(&mut self, key: &'a [u8], slot: usize) -> Option<usize> {
        const LIST_MAX: usize = 32;
        if self.keys.len() < LIST_MAX {
            if let Some(&(_, at)) = self.keys.iter().find(|(k, _)| *k == key) {
                return Some(at);
            }
            self.keys.push((key, slot));
            return None;
        }
        if self.key_set.is_empty() {
            self.key_set.extend(self.keys.iter().copied());
        }
        match self.key_set.entry(key) {
            std::collections::hash_map::Entry::Occupied(at) => Some(*at.get()),
            std::collections::hash_map::Entry::Vacant(at) => {
                at.insert(slot);
                None
            }
        }
    }

    fn check_text(&mut self, bytes: &[u8]) {
        // ASCII (most text) is checked a word at a time without the UTF-8 decoder.
        if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() {
            self.anomalies.invalid_utf8 += 1;
        }
    }

    /// Walks one value at `depth` and everything in it, counting what JSON cannot carry as it
    /// is, without recursion.
    fn value(&mut self, depth: usize) -> Result<(), DecodeError> {
        // Most values in a record are strings: no walk needed.
        if let Some(&byte) = self.rest.first() {
            let len = match Marker::from_u8(byte) {
                Marker::FixStr(n) => Some(usize::from(n)),
                Marker::Str8 => self.rest.get(1).map(|&n| usize::from(n) + 1),
                _ => None,
            };
            if let Some(len) = len.filter(|len| *len < self.rest.len()) {
                let header = 1 + usize::from(byte == 0xd9);
                let text = &self.rest[header..=len];
                self.check_text(text);
                self.rest = &self.rest[len + 1..];
                return Ok(());
            }
        }
        self.stack.clear();
        let mut pending = 1u64;
        loop {
            if pending == 0 {
                match self.stack.pop() {
                    Some(outer) => {
                        pending = outer;
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            pending -= 1;
            let here = depth + self.stack.len();
            let marker = self.marker()?;
            match self.shape(marker)? {
                Shape::Text(n) => {
                    let bytes = self.take(n)?;
                    self.check_text(bytes);
                }
                Shape::Ext(n) => {
                    let kind = self.take(1)?[0] as i8;
                    let payload = self.take(n)?;
                    if EventTime::from_ext(kind, payload).is_none() {
                        self.anomalies.ext_values += 1;
                    }
                }
                Shape::Scalar(n) => {
                    let bytes = self.take(n)?;
                    let finite = match marker {
                        Marker::F32 => bytes
                            .try_into()
                            .map(|b| f32::from_be_bytes(b).is_finite())
                            .unwrap_or(true),
                        Marker::F64 => bytes
                            .try_into()
                            .map(|b| f64::from_be_bytes(b).is_finite())
                            .unwrap_or(true),
                        _ => true,
                    };
                    if !finite {
                        self.anomalies.non_finite_floats += 1;
                    }
                }
                shape @ (Shape::Array(_) | Shape::Map(_)) => {
                    let count = match shape {
                        Shape::Map(n) => 2 * n as u64,
                        Shape::Array(n) => n as u64,
                        _ => 0,
                    };
                    if here >= MAX_DEPTH {
                        // Written as a placeholder: nothing inside it is looked at again.
                        self.anomalies.too_deep_values += 1;
                        self.skip(count)?;
                    } else {
                        self.stack.push(pending);
                        pending = count;
                    }
                }
            }
        }
    }

    /// Reads a timestamp value.
    fn timestamp(&mut self) -> Result<Timestamp, DecodeError> {
        let at = self.rest;
        let marker = self.marker()?;
        let shape = self.shape(marker)?;
        if let Shape::Array(_) | Shape::Map(_) | Shape::Text(_) = shape {
            self.skip_shape(shape)?;
            return Ok(Timestamp::Invalid);
        }
        // A scalar or extension: its framing is checked, so it reads.
        let mut value_at = at;
        let value = view::read(&mut value_at).ok_or_else(|| self.truncated())?;
        self.rest = value_at;
        let signed = |v: i64| match v {
            -1 | -2 => Timestamp::GroupMarker,
            v if v < 0 => Timestamp::Invalid,
            v => Timestamp::Event(EventTime::new(v, 0)),
        };
        Ok(match value {
            ValueRef::UInt(v) => match i64::try_from(v) {
                Ok(v) => Timestamp::Event(EventTime::new(v, 0)),
                Err(_) => Timestamp::Invalid,
            },
            ValueRef::Int(v) => signed(v),
            ValueRef::Float(f) => float_timestamp(f),
            ValueRef::Ext(kind, payload) => match EventTime::from_ext(kind, payload) {
                Some(t) if t.secs == 0xFFFF_FFFF || t.secs == 0xFFFF_FFFE => Timestamp::GroupMarker,
                Some(t) if t.nanos > 999_999_999 => Timestamp::Invalid,
                Some(t) => Timestamp::Event(t),
                None => Timestamp::Invalid,
            },
            _ => Timestamp::Invalid,
        })
    }
}

fn float_timestamp(seconds: f64) -> Timestamp {
    match seconds {
        -1.0 | -2.0 => Timestamp::GroupMarker,
        s => EventTime::from_f64(s).map_or(Timestamp::Invalid, Timestamp::Event),
    }
}

#[cfg(test)]
mod tests;
