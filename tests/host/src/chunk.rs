//! Builds chunks the way Fluent Bit's encoders lay them out, written with rmp's low-level
//! encoder directly (not with the plugin's code), from JSON values.

use rmp::encode;
use serde_json::Value;

/// Record layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[time, body]`: Fluent Bit ≤ 2.0 and Fluentd forward clients.
    V1,
    /// `[[time, metadata], body]`: Fluent Bit ≥ 2.1.
    V2,
}

/// Timestamp encodings Fluent Bit accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Time {
    /// msgpack ext type 0: u32 seconds, u32 nanoseconds, big-endian.
    Event(u32, u32),
    Int(u64),
    Float(f64),
}

#[derive(Clone, Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    records: usize,
}

impl Chunk {
    pub fn new() -> Chunk {
        Chunk::default()
    }

    pub fn record(mut self, layout: Layout, time: Time, metadata: &Value, body: &Value) -> Chunk {
        encode::write_array_len(&mut self.bytes, 2).unwrap();
        match layout {
            Layout::V1 => write_time(&mut self.bytes, time),
            Layout::V2 => {
                encode::write_array_len(&mut self.bytes, 2).unwrap();
                write_time(&mut self.bytes, time);
                write_value(&mut self.bytes, metadata);
            }
        }
        write_value(&mut self.bytes, body);
        self.records += 1;
        self
    }

    /// A 2.1+ record with an EventTime and empty metadata, like `dummy` produces.
    pub fn event(self, secs: u32, body: &Value) -> Chunk {
        self.record(
            Layout::V2,
            Time::Event(secs, 0),
            &Value::Object(Default::default()),
            body,
        )
    }

    /// OpenTelemetry group start (EventTime seconds 0xFFFFFFFF) and end (0xFFFFFFFE) markers
    /// around `inner`.
    pub fn group(mut self, attributes: &Value, inner: Chunk) -> Chunk {
        let empty = Value::Object(Default::default());
        self = self.record(Layout::V2, Time::Event(0xFFFF_FFFF, 0), &empty, attributes);
        self.bytes.extend_from_slice(&inner.bytes);
        self.records += inner.records;
        self.record(Layout::V2, Time::Event(0xFFFF_FFFE, 0), &empty, &empty)
    }

    /// Appends raw bytes (for malformed input).
    pub fn raw(mut self, bytes: &[u8]) -> Chunk {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn write_time(buf: &mut Vec<u8>, time: Time) {
    match time {
        Time::Event(secs, nanos) => {
            encode::write_ext_meta(buf, 8, 0).unwrap();
            buf.extend_from_slice(&secs.to_be_bytes());
            buf.extend_from_slice(&nanos.to_be_bytes());
        }
        Time::Int(secs) => {
            encode::write_uint(buf, secs).unwrap();
        }
        Time::Float(secs) => encode::write_f64(buf, secs).unwrap(),
    }
}

/// JSON → msgpack, with the smallest encodings, as Fluent Bit's packers do.
pub fn write_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => encode::write_nil(buf).unwrap(),
        Value::Bool(b) => encode::write_bool(buf, *b).unwrap(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                encode::write_uint(buf, u).unwrap();
            } else if let Some(i) = n.as_i64() {
                encode::write_sint(buf, i).unwrap();
            } else {
                encode::write_f64(buf, n.as_f64().unwrap()).unwrap();
            }
        }
        Value::String(s) => encode::write_str(buf, s).unwrap(),
        Value::Array(items) => {
            encode::write_array_len(buf, items.len() as u32).unwrap();
            items.iter().for_each(|v| write_value(buf, v));
        }
        Value::Object(map) => {
            encode::write_map_len(buf, map.len() as u32).unwrap();
            for (k, v) in map {
                encode::write_str(buf, k).unwrap();
                write_value(buf, v);
            }
        }
    }
}
