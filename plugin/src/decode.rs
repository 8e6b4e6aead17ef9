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
use serde_json::{Number, Value};

use crate::record::{EventTime, LogEvent, Map};

/// Deepest nesting kept. Half of serde_json's parse limit (128), which common JSON peers share:
/// destinations wrap records in envelopes (Datadog: an array of objects), and a body that
/// passes the peer's limit only without its envelope would make the whole request fail.
pub const MAX_DEPTH: usize = 64;

/// Longest text kept for a map key that is not a string (its JSON, cut). Bounding it at every
/// level matters: a chain of maps used as keys would otherwise double in length per level as
/// each level escapes the quotes of the one inside.
pub const MAX_KEY_TEXT: usize = 256;

/// Most elements reserved up front for an array or map, whatever it claims: a claim is checked
/// against the bytes left, but each byte can become a 32–100 byte value, so a container that
/// claims a million elements grows as they are actually read instead of reserving ~100 MB on
/// the promise.
const MAX_PREALLOCATED: usize = 1024;

/// Put in place of a value nested deeper than [`MAX_DEPTH`].
pub const DEPTH_PLACEHOLDER: &str = "[fanout: nested deeper than 64 levels]";

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
    /// Values replaced by [`DEPTH_PLACEHOLDER`].
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
        }
    }
}

impl std::error::Error for DecodeError {}

/// The events of one chunk plus what had to be skipped or altered.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<LogEvent>,
    pub anomalies: Anomalies,
}

/// Heap a decoded value takes besides its bytes of text: the `Value` itself plus, in a map, the
/// key's `String` and the index entry.
const VALUE_OVERHEAD: u64 = std::mem::size_of::<Value>() as u64 + 16;
const MAP_ENTRY_OVERHEAD: u64 = std::mem::size_of::<String>() as u64 + 16;

/// About how many bytes of memory the decoded records of `chunk` will hold (at least its own
/// length), found by walking its msgpack once without building anything: every value costs a
/// `Value`, every map entry a key and an index slot, text its bytes. Small values expand a lot
/// (an empty map is one byte of msgpack and ~100 bytes decoded), so the in-flight limit must be
/// charged with this, not with the chunk's size. Iterative, allocation-free and bounded by the
/// bytes present: safe on Fluent Bit's small flush stack and against lengths a chunk only
/// claims. Broken framing ends the walk; the decoder reports it.
pub fn decoded_size_estimate(data: &[u8]) -> u64 {
    let mut reader = Reader {
        buf: data,
        pos: 0,
        anomalies: Anomalies::default(),
    };
    let mut total = 0u64;
    while reader.pos < data.len() {
        let Ok(marker) = reader.marker() else { break };
        total += VALUE_OVERHEAD;
        let remaining = (data.len() - reader.pos) as u64;
        if let Ok(Some(n)) = reader.map_len(marker) {
            // Each entry takes at least two bytes of msgpack: a claimed count beyond that is
            // not there.
            total += (n as u64).min(remaining / 2) * MAP_ENTRY_OVERHEAD;
            continue;
        }
        if let Ok(Some(n)) = reader.array_len(marker) {
            total += (n as u64).min(remaining) * 8;
            continue;
        }
        // A scalar: its text (or number) bytes.
        let start = reader.pos;
        if reader.skip_scalar(marker).is_err() {
            break;
        }
        total += (reader.pos - start) as u64;
    }
    total.max(data.len() as u64)
}

/// Decodes one chunk. See the module documentation for the error policy.
pub fn decode_chunk(data: &[u8]) -> Result<Decoded, DecodeError> {
    let mut reader = Reader {
        buf: data,
        pos: 0,
        anomalies: Anomalies::default(),
    };
    // Small records are ~30 bytes in msgpack; this avoids most regrowth without over-reserving.
    let mut events = Vec::with_capacity((data.len() / 64 + 1).min(64 * MAX_PREALLOCATED));
    while reader.pos < data.len() {
        if let Some(event) = reader.read_entry()? {
            events.push(event);
        }
    }
    Ok(Decoded {
        events,
        anomalies: reader.anomalies,
    })
}

enum Timestamp {
    Event(EventTime),
    GroupMarker,
    Invalid,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    anomalies: Anomalies,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.buf.len(),
            });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn marker(&mut self) -> Result<Marker, DecodeError> {
        let offset = self.pos;
        let byte = self.u8()?;
        match Marker::from_u8(byte) {
            Marker::Reserved => Err(DecodeError::InvalidMarker { offset, byte }),
            marker => Ok(marker),
        }
    }

    /// Element count of an array marker, reading any length bytes that follow it.
    fn array_len(&mut self, marker: Marker) -> Result<Option<usize>, DecodeError> {
        Ok(match marker {
            Marker::FixArray(n) => Some(usize::from(n)),
            Marker::Array16 => Some(usize::from(self.u16()?)),
            Marker::Array32 => Some(self.u32()? as usize),
            _ => None,
        })
    }

    fn map_len(&mut self, marker: Marker) -> Result<Option<usize>, DecodeError> {
        Ok(match marker {
            Marker::FixMap(n) => Some(usize::from(n)),
            Marker::Map16 => Some(usize::from(self.u16()?)),
            Marker::Map32 => Some(self.u32()? as usize),
            _ => None,
        })
    }

    /// Length of the payload of a str/bin/ext marker (for ext: not counting the type byte).
    fn payload_len(&mut self, marker: Marker) -> Result<Option<usize>, DecodeError> {
        Ok(match marker {
            Marker::FixStr(n) => Some(usize::from(n)),
            Marker::Str8 | Marker::Bin8 | Marker::Ext8 => Some(usize::from(self.u8()?)),
            Marker::Str16 | Marker::Bin16 | Marker::Ext16 => Some(usize::from(self.u16()?)),
            Marker::Str32 | Marker::Bin32 | Marker::Ext32 => Some(self.u32()? as usize),
            Marker::FixExt1 => Some(1),
            Marker::FixExt2 => Some(2),
            Marker::FixExt4 => Some(4),
            Marker::FixExt8 => Some(8),
            Marker::FixExt16 => Some(16),
            _ => None,
        })
    }

    fn is_ext(marker: Marker) -> bool {
        matches!(
            marker,
            Marker::FixExt1
                | Marker::FixExt2
                | Marker::FixExt4
                | Marker::FixExt8
                | Marker::FixExt16
                | Marker::Ext8
                | Marker::Ext16
                | Marker::Ext32
        )
    }

    /// Reads one top-level entry; `None` when it was skipped (and counted).
    fn read_entry(&mut self) -> Result<Option<LogEvent>, DecodeError> {
        let marker = self.marker()?;
        if self.array_len(marker)? != Some(2) {
            self.skip_after_marker(marker)?;
            self.anomalies.not_events += 1;
            return Ok(None);
        }
        let head = self.marker()?;
        let (time, metadata) = match self.array_len(head)? {
            Some(2) => {
                let time_marker = self.marker()?;
                let time = self.timestamp_after_marker(time_marker)?;
                let meta_marker = self.marker()?;
                let metadata = match self.map_len(meta_marker)? {
                    Some(n) => self.map_body(n, 1)?,
                    None => {
                        // Not produced by any Fluent Bit encoder; keep the event, drop the junk.
                        self.skip_after_marker(meta_marker)?;
                        Map::new()
                    }
                };
                (time, metadata)
            }
            Some(n) => {
                self.skip_values(n as u64)?;
                (Timestamp::Invalid, Map::new())
            }
            None => (self.timestamp_after_marker(head)?, Map::new()),
        };
        let body_marker = self.marker()?;
        let time = match time {
            Timestamp::Event(time) => time,
            Timestamp::GroupMarker => {
                self.skip_after_marker(body_marker)?;
                self.anomalies.group_markers += 1;
                return Ok(None);
            }
            Timestamp::Invalid => {
                self.skip_after_marker(body_marker)?;
                self.anomalies.invalid_timestamps += 1;
                return Ok(None);
            }
        };
        match self.map_len(body_marker)? {
            Some(n) => Ok(Some(LogEvent {
                time,
                metadata,
                body: self.map_body(n, 1)?,
            })),
            None => {
                self.skip_after_marker(body_marker)?;
                self.anomalies.non_map_bodies += 1;
                Ok(None)
            }
        }
    }

    fn timestamp_after_marker(&mut self, marker: Marker) -> Result<Timestamp, DecodeError> {
        let signed = |v: i64| match v {
            -1 | -2 => Timestamp::GroupMarker,
            v if v < 0 => Timestamp::Invalid,
            v => Timestamp::Event(EventTime::new(v, 0)),
        };
        Ok(match marker {
            Marker::FixPos(v) => Timestamp::Event(EventTime::new(i64::from(v), 0)),
            Marker::U8 => Timestamp::Event(EventTime::new(i64::from(self.u8()?), 0)),
            Marker::U16 => Timestamp::Event(EventTime::new(i64::from(self.u16()?), 0)),
            Marker::U32 => Timestamp::Event(EventTime::new(i64::from(self.u32()?), 0)),
            Marker::U64 => match i64::try_from(self.u64()?) {
                Ok(v) => Timestamp::Event(EventTime::new(v, 0)),
                Err(_) => Timestamp::Invalid,
            },
            Marker::FixNeg(v) => signed(i64::from(v)),
            Marker::I8 => signed(i64::from(self.u8()? as i8)),
            Marker::I16 => signed(i64::from(self.u16()? as i16)),
            Marker::I32 => signed(i64::from(self.u32()? as i32)),
            Marker::I64 => signed(self.u64()? as i64),
            Marker::F32 => float_timestamp(f64::from(f32::from_bits(self.u32()?))),
            Marker::F64 => float_timestamp(f64::from_bits(self.u64()?)),
            m if Self::is_ext(m) => {
                let len = self.payload_len(m)?.unwrap_or(0);
                let ext_type = self.u8()? as i8;
                let payload = self.take(len)?;
                if ext_type != 0 || len != 8 {
                    Timestamp::Invalid
                } else {
                    let secs = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    let nanos =
                        u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    match secs {
                        0xFFFF_FFFF | 0xFFFF_FFFE => Timestamp::GroupMarker,
                        _ if nanos > 999_999_999 => Timestamp::Invalid,
                        _ => Timestamp::Event(EventTime::new(i64::from(secs), nanos)),
                    }
                }
            }
            other => {
                self.skip_after_marker(other)?;
                Timestamp::Invalid
            }
        })
    }

    fn map_body(&mut self, len: usize, depth: usize) -> Result<Map, DecodeError> {
        // Each entry takes at least two bytes, so a lying length cannot over-allocate.
        let mut map = Map::with_capacity(len.min(self.remaining() / 2).min(MAX_PREALLOCATED));
        for _ in 0..len {
            let key_marker = self.marker()?;
            let key = match self.value_after_marker(key_marker, depth + 1)? {
                Value::String(s) => s,
                other => key_text(&other),
            };
            let value_marker = self.marker()?;
            let value = self.value_after_marker(value_marker, depth + 1)?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn string(&mut self, len: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(len)?;
        Ok(Value::String(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                self.anomalies.invalid_utf8 += 1;
                String::from_utf8_lossy(bytes).into_owned()
            }
        }))
    }

    fn float(&mut self, f: f64) -> Value {
        match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => {
                self.anomalies.non_finite_floats += 1;
                Value::Null
            }
        }
    }

    fn value_after_marker(&mut self, marker: Marker, depth: usize) -> Result<Value, DecodeError> {
        let nested = matches!(
            marker,
            Marker::FixArray(_)
                | Marker::Array16
                | Marker::Array32
                | Marker::FixMap(_)
                | Marker::Map16
                | Marker::Map32
        );
        if nested && depth >= MAX_DEPTH {
            self.skip_after_marker(marker)?;
            self.anomalies.too_deep_values += 1;
            return Ok(Value::String(DEPTH_PLACEHOLDER.to_owned()));
        }
        Ok(match marker {
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(v) => Value::from(v),
            Marker::FixNeg(v) => Value::from(v),
            Marker::U8 => Value::from(self.u8()?),
            Marker::U16 => Value::from(self.u16()?),
            Marker::U32 => Value::from(self.u32()?),
            Marker::U64 => Value::from(self.u64()?),
            Marker::I8 => Value::from(self.u8()? as i8),
            Marker::I16 => Value::from(self.u16()? as i16),
            Marker::I32 => Value::from(self.u32()? as i32),
            Marker::I64 => Value::from(self.u64()? as i64),
            Marker::F32 => {
                let f = f64::from(f32::from_bits(self.u32()?));
                self.float(f)
            }
            Marker::F64 => {
                let f = f64::from_bits(self.u64()?);
                self.float(f)
            }
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let len = self.payload_len(marker)?.unwrap_or(0);
                self.string(len)?
            }
            // Fluent Bit's own msgpack-to-JSON writes binary as a string; do the same.
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let len = self.payload_len(marker)?.unwrap_or(0);
                self.string(len)?
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let len = self.array_len(marker)?.unwrap_or(0);
                let mut items = Vec::with_capacity(len.min(self.remaining()).min(MAX_PREALLOCATED));
                for _ in 0..len {
                    let m = self.marker()?;
                    items.push(self.value_after_marker(m, depth + 1)?);
                }
                Value::Array(items)
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let len = self.map_len(marker)?.unwrap_or(0);
                Value::Object(self.map_body(len, depth)?)
            }
            m if Self::is_ext(m) => {
                let len = self.payload_len(m)?.unwrap_or(0);
                let ext_type = self.u8()? as i8;
                let payload = self.take(len)?;
                if ext_type == 0 && len == 8 {
                    // An EventTime nested in a body: keep it as fractional seconds.
                    let secs = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    let nanos =
                        u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    self.float(EventTime::new(i64::from(secs), nanos).as_f64())
                } else {
                    self.anomalies.ext_values += 1;
                    Value::Null
                }
            }
            Marker::Reserved => unreachable!("marker() rejects reserved bytes"),
            _ => unreachable!("every msgpack marker is handled above"),
        })
    }

    /// Skips the rest of a value whose marker was already read.
    fn skip_after_marker(&mut self, marker: Marker) -> Result<(), DecodeError> {
        let pending = match marker {
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                self.array_len(marker)?.unwrap_or(0) as u64
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                2 * self.map_len(marker)?.unwrap_or(0) as u64
            }
            scalar => {
                self.skip_scalar(scalar)?;
                0
            }
        };
        self.skip_values(pending)
    }

    /// Skips `count` whole values without recursion: containers add their elements to the count.
    fn skip_values(&mut self, mut count: u64) -> Result<(), DecodeError> {
        while count > 0 {
            count -= 1;
            let marker = self.marker()?;
            match marker {
                Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                    count += self.array_len(marker)?.unwrap_or(0) as u64;
                }
                Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                    count += 2 * self.map_len(marker)?.unwrap_or(0) as u64;
                }
                scalar => self.skip_scalar(scalar)?,
            }
        }
        Ok(())
    }

    fn skip_scalar(&mut self, marker: Marker) -> Result<(), DecodeError> {
        let fixed = match marker {
            Marker::U8 | Marker::I8 => 1,
            Marker::U16 | Marker::I16 => 2,
            Marker::U32 | Marker::I32 | Marker::F32 => 4,
            Marker::U64 | Marker::I64 | Marker::F64 => 8,
            m => match self.payload_len(m)? {
                Some(len) => len + usize::from(Self::is_ext(m)),
                None => 0,
            },
        };
        self.take(fixed).map(|_| ())
    }
}

/// The text of a non-string map key: its JSON, at most [`MAX_KEY_TEXT`] bytes.
fn key_text(key: &Value) -> String {
    let mut text = key.to_string();
    if text.len() > MAX_KEY_TEXT {
        let mut cut = MAX_KEY_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn float_timestamp(seconds: f64) -> Timestamp {
    match seconds {
        -1.0 | -2.0 => Timestamp::GroupMarker,
        s => EventTime::from_f64(s).map_or(Timestamp::Invalid, Timestamp::Event),
    }
}

#[cfg(test)]
mod tests {
    //! Chunks are written with rmp's encoder, value by value, so the decoder is checked against
    //! bytes it did not produce. The end-to-end tests in tests/host drive the built library.
    use super::*;
    use rmp::encode;
    use serde_json::json;

    #[derive(Default)]
    struct Chunk(Vec<u8>);

    impl Chunk {
        fn event_time(&mut self, secs: u32, nanos: u32) -> &mut Self {
            encode::write_ext_meta(&mut self.0, 8, 0).unwrap();
            self.0.extend_from_slice(&secs.to_be_bytes());
            self.0.extend_from_slice(&nanos.to_be_bytes());
            self
        }
        fn v1(&mut self, secs: u32, body: &[(&str, &str)]) -> &mut Self {
            encode::write_array_len(&mut self.0, 2).unwrap();
            self.event_time(secs, 0);
            self.map(body)
        }
        fn v2(
            &mut self,
            secs: u32,
            nanos: u32,
            meta: &[(&str, &str)],
            body: &[(&str, &str)],
        ) -> &mut Self {
            encode::write_array_len(&mut self.0, 2).unwrap();
            encode::write_array_len(&mut self.0, 2).unwrap();
            self.event_time(secs, nanos);
            self.map(meta);
            self.map(body)
        }
        fn map(&mut self, entries: &[(&str, &str)]) -> &mut Self {
            encode::write_map_len(&mut self.0, entries.len() as u32).unwrap();
            for (k, v) in entries {
                encode::write_str(&mut self.0, k).unwrap();
                encode::write_str(&mut self.0, v).unwrap();
            }
            self
        }
    }

    #[test]
    fn decodes_both_layouts_in_one_chunk() {
        let mut c = Chunk::default();
        c.v1(100, &[("log", "legacy")]);
        c.v2(200, 7, &[("otel", "x")], &[("log", "v2")]);
        let d = decode_chunk(&c.0).unwrap();
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[0].time, EventTime::new(100, 0));
        assert!(d.events[0].metadata.is_empty());
        assert_eq!(d.events[0].body["log"], "legacy");
        assert_eq!(d.events[1].time, EventTime::new(200, 7));
        assert_eq!(d.events[1].metadata["otel"], "x");
        assert_eq!(d.anomalies, Anomalies::default());
    }

    #[test]
    fn integer_and_float_timestamps() {
        let mut buf = Vec::new();
        encode::write_array_len(&mut buf, 2).unwrap();
        encode::write_uint(&mut buf, 1_700_000_000).unwrap();
        encode::write_map_len(&mut buf, 0).unwrap();
        encode::write_array_len(&mut buf, 2).unwrap();
        encode::write_f64(&mut buf, 1_700_000_000.5).unwrap();
        encode::write_map_len(&mut buf, 0).unwrap();
        let d = decode_chunk(&buf).unwrap();
        assert_eq!(d.events[0].time, EventTime::new(1_700_000_000, 0));
        assert_eq!(d.events[1].time, EventTime::new(1_700_000_000, 500_000_000));
    }

    #[test]
    fn group_markers_are_skipped_not_emitted() {
        let mut c = Chunk::default();
        for secs in [0xFFFF_FFFF, 0xFFFF_FFFE] {
            encode::write_array_len(&mut c.0, 2).unwrap();
            encode::write_array_len(&mut c.0, 2).unwrap();
            c.event_time(secs, 0);
            c.map(&[("resource", "r")]);
            c.map(&[("scope", "s")]);
        }
        c.v2(5, 0, &[], &[("log", "inside group")]);
        encode::write_array_len(&mut c.0, 2).unwrap();
        encode::write_sint(&mut c.0, -1).unwrap();
        c.map(&[]);
        let d = decode_chunk(&c.0).unwrap();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.anomalies.group_markers, 3);
        assert_eq!(d.anomalies.skipped_records(), 0);
    }

    #[test]
    fn non_map_bodies_are_counted_and_the_rest_survives() {
        let mut c = Chunk::default();
        encode::write_array_len(&mut c.0, 2).unwrap();
        c.event_time(1, 0);
        encode::write_str(&mut c.0, "not a map").unwrap();
        encode::write_str(&mut c.0, "stray").unwrap();
        c.v1(2, &[("log", "ok")]);
        let d = decode_chunk(&c.0).unwrap();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.anomalies.non_map_bodies, 1);
        assert_eq!(d.anomalies.not_events, 1);
        assert!(
            d.anomalies
                .describe()
                .unwrap()
                .contains("1 records whose body is not a map")
        );
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_panic() {
        let mut c = Chunk::default();
        c.v2(1, 2, &[("k", "v")], &[("log", "hello"), ("n", "1")]);
        for cut in 1..c.0.len() {
            assert!(
                matches!(
                    decode_chunk(&c.0[..cut]),
                    Err(DecodeError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn reserved_byte_is_rejected() {
        let err = decode_chunk(&[0x92, 0xc1]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidMarker {
                offset: 1,
                byte: 0xc1
            }
        );
    }

    #[test]
    fn lying_lengths_do_not_allocate_or_hang() {
        // A map claiming 4 billion entries in a 10-byte chunk.
        let mut buf = vec![0x92, 0x01, 0xdf];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&[0xa1, b'k', 0x01]);
        assert!(matches!(
            decode_chunk(&buf),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_cut_without_recursion() {
        let depth = 10_000;
        let mut buf = vec![0x92, 0x01, 0x81, 0xa1, b'k'];
        buf.extend(std::iter::repeat_n(0x91u8, depth));
        buf.push(0xc0);
        let d = decode_chunk(&buf).unwrap();
        assert_eq!(d.anomalies.too_deep_values, 1);
        let mut v = &d.events[0].body["k"];
        let mut levels = 0;
        while let Value::Array(items) = v {
            v = &items[0];
            levels += 1;
        }
        assert_eq!(v, &json!(DEPTH_PLACEHOLDER));
        assert!(levels < MAX_DEPTH);
    }

    #[test]
    fn odd_values_become_json_with_counts() {
        let mut buf = vec![0x92, 0x01, 0x85];
        encode::write_str(&mut buf, "nan").unwrap();
        encode::write_f64(&mut buf, f64::NAN).unwrap();
        encode::write_str(&mut buf, "bin").unwrap();
        encode::write_bin(&mut buf, b"\xffab").unwrap();
        encode::write_str(&mut buf, "ext").unwrap();
        encode::write_ext_meta(&mut buf, 2, 5).unwrap();
        buf.extend_from_slice(b"zz");
        encode::write_uint(&mut buf, 7).unwrap();
        encode::write_str(&mut buf, "int key").unwrap();
        encode::write_str(&mut buf, "neg").unwrap();
        encode::write_sint(&mut buf, -300).unwrap();
        let d = decode_chunk(&buf).unwrap();
        let body = &d.events[0].body;
        assert_eq!(body["nan"], Value::Null);
        assert_eq!(body["bin"], "\u{fffd}ab");
        assert_eq!(body["ext"], Value::Null);
        assert_eq!(body["7"], "int key");
        assert_eq!(body["neg"], -300);
        assert_eq!(d.anomalies.non_finite_floats, 1);
        assert_eq!(d.anomalies.invalid_utf8, 1);
        assert_eq!(d.anomalies.ext_values, 1);
    }

    #[test]
    fn maps_used_as_keys_do_not_grow_exponentially() {
        // Found by the fuzzer (fuzz/targets/decode_chunk): 52 nested one-entry maps, each the
        // key of the one around it. Unbounded, the key text doubles per level.
        let mut buf = vec![0x92, 0x2a, 0x81];
        buf.extend(std::iter::repeat_n(0x81u8, 52));
        buf.extend(std::iter::repeat_n(0xa0u8, 53));
        buf.extend(std::iter::repeat_n(0xa0u8, 53));
        let d = decode_chunk(&buf).unwrap();
        let key = d.events[0].body.keys().next().unwrap();
        assert!(key.len() <= MAX_KEY_TEXT, "{}", key.len());
    }

    #[test]
    fn empty_chunk_is_empty() {
        let d = decode_chunk(&[]).unwrap();
        assert!(d.events.is_empty());
    }
}
