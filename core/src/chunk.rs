//! Chunks written from JSON events as Fluent Bit 2.1+ writes them, and decoded: the records
//! `preview`, the playground, tests and benchmarks start from.

use crate::record::{Batch, Records};
use crate::time::EventTime;

/// Appends one event to a chunk in Fluent Bit's 2.1+ layout: `[[EventTime, {}], body]`.
pub fn write_event(chunk: &mut Vec<u8>, time: EventTime, body: &serde_json::Value) {
    // Writes into a Vec cannot fail.
    let _ = rmp::encode::write_array_len(chunk, 2);
    let _ = rmp::encode::write_array_len(chunk, 2);
    let _ = rmp::encode::write_ext_meta(chunk, 8, 0);
    chunk.extend_from_slice(&(time.secs as u32).to_be_bytes());
    chunk.extend_from_slice(&time.nanos.to_be_bytes());
    let _ = rmp::encode::write_map_len(chunk, 0);
    let _ = rmp_serde::encode::write(chunk, body);
}

impl Records {
    /// Records made from JSON objects, through a real chunk (tests, `preview`, benchmarks):
    /// each `(time, body)` is written as Fluent Bit 2.1+ writes it and decoded.
    pub fn from_json(events: &[(EventTime, serde_json::Value)]) -> Records {
        let mut chunk = Vec::new();
        for (time, body) in events {
            write_event(&mut chunk, *time, body);
        }
        crate::decode::decode_chunk(chunk)
            .map(|decoded| decoded.records)
            .unwrap_or_default()
    }
}

impl Batch {
    /// A batch of JSON bodies, all at `time` (tests, `preview`, benchmarks).
    pub fn from_json(tag: &str, time: EventTime, bodies: &[serde_json::Value]) -> Batch {
        let events: Vec<(EventTime, serde_json::Value)> =
            bodies.iter().map(|b| (time, b.clone())).collect();
        Batch::new(tag.to_owned(), Records::from_json(&events))
    }
}
