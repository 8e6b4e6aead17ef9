//! The record model every destination shares: one decoded Fluent Bit event.

use crate::json::Object;
use crate::time::EventTime;
use fanout_contract::job_end;
use fanout_contract::view::{self, FIELD_DEPTH, Key, ValueRef};

/// Message keys tried, in order, when no `message_key` is configured. `log` is what Docker,
/// CRI and FireLens produce; `message` is what structured loggers write.
pub const DEFAULT_MESSAGE_KEYS: [&str; 2] = ["log", "message"];

/// A record body or metadata map: its entries in the chunk, through the index the decoder made
/// of them (one [`Slot`] per key: where its text and value are).
///
/// When a key appears more than once (possible in msgpack, never in JSON), the map behaves as
/// if built from the entries in order: the key keeps its first place and its last value. The
/// decoder resolves that for string keys; a map with a key of another type (rare: its JSON
/// text stands for it, and may equal another key's) is resolved when read.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    slots: &'a [Slot],
    /// Some key is not a string.
    other_keys: bool,
    /// [`key_bit`] of every key: a name whose bit is not set is not a key here.
    key_mask: u64,
}

/// One of 64 bits standing for a key (from its length and first and last bytes). Most lookups
/// are for names a record does not have (reserved attributes, template fallbacks): the mask
/// answers them without comparing keys.
pub(crate) fn key_bit(key: &[u8]) -> u64 {
    let (first, last) = match key {
        [] => (0, 0),
        [only] => (*only, *only),
        [first, .., last] => (*first, *last),
    };
    let h = (key.len() as u32).wrapping_mul(0x9e37_79b1)
        ^ u32::from(first).wrapping_mul(0x85eb_ca6b)
        ^ u32::from(last).wrapping_mul(0xc2b2_ae35);
    1u64 << ((h ^ (h >> 15) ^ (h >> 27)) & 63)
}

/// Where one key and its value sit in a chunk.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    /// The key's text (a string key) or the key value's marker (any other key).
    pub key: u32,
    pub key_len: u32,
    /// The value's marker.
    pub value: u32,
    pub string_key: bool,
}

impl<'a> Fields<'a> {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn key(&self, slot: &Slot) -> Option<Key<'a>> {
        let start = slot.key as usize;
        if slot.string_key {
            return self
                .bytes
                .get(start..start + slot.key_len as usize)
                .map(Key::Str);
        }
        let mut at = self.bytes.get(start..)?;
        view::read(&mut at).map(Key::Other)
    }

    fn value(&self, slot: &Slot) -> Option<ValueRef<'a>> {
        view::peek(self.bytes.get(slot.value as usize..)?)
    }

    fn key_is(&self, slot: &Slot, name: &str) -> bool {
        if slot.string_key {
            let start = slot.key as usize;
            return slot.key_len as usize == name.len()
                && self.bytes.get(start..start + name.len()) == Some(name.as_bytes());
        }
        self.key(slot).is_some_and(|k| k.is(name))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<ValueRef<'a>> {
        if self.other_keys {
            return self.iter().find(|(k, _)| k.is(key)).map(|(_, v)| v);
        }
        if self.key_mask & key_bit(key.as_bytes()) == 0 {
            return None;
        }
        let slot = self.slots.iter().find(|slot| self.key_is(slot, key))?;
        self.value(slot)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        if !self.other_keys && self.key_mask & key_bit(key.as_bytes()) == 0 {
            return false;
        }
        self.slots.iter().any(|slot| self.key_is(slot, key))
    }

    /// The entries, each key once.
    pub fn iter(&self) -> FieldsIter<'a> {
        if !self.other_keys {
            return FieldsIter::Indexed(*self, 0);
        }
        // Rare, and possibly hostile: linear.
        let mut unique: Vec<(Key<'a>, ValueRef<'a>)> = Vec::new();
        let mut seen: std::collections::HashMap<std::borrow::Cow<'a, str>, usize> =
            std::collections::HashMap::new();
        for slot in self.slots {
            let (Some(key), Some(value)) = (self.key(slot), self.value(slot)) else {
                continue;
            };
            match seen.entry(key.text()) {
                std::collections::hash_map::Entry::Occupied(at) => unique[*at.get()].1 = value,
                std::collections::hash_map::Entry::Vacant(at) => {
                    at.insert(unique.len());
                    unique.push((key, value));
                }
            }
        }
        FieldsIter::Deduplicated(unique.into_iter())
    }
    /// The map as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = Object::start(out);
        for (key, value) in self.iter() {
            object.value(key, value);
        }
        object.end();
    }

    /// The map as an owned JSON object (tests, `preview`).
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.iter()
            .map(|(k, v)| {
                (
                    k.text().into_owned(),
                    crate::json::to_json_value(v, FIELD_DEPTH),
                )
            })
            .collect()
    }
}

pub enum FieldsIter<'a> {
    Indexed(Fields<'a>, usize),
    Deduplicated(std::vec::IntoIter<(Key<'a>, ValueRef<'a>)>),
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = (Key<'a>, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            FieldsIter::Indexed(fields, next) => {
                let slot = fields.slots.get(*next)?;
                *next += 1;
                Some((fields.key(slot)?, fields.value(slot)?))
            }
            FieldsIter::Deduplicated(entries) => entries.next(),
        }
    }
}

/// One log event as Fluent Bit stores it: timestamp, metadata (empty before 2.1) and body,
/// borrowed from its chunk.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub time: EventTime,
    pub metadata: Fields<'a>,
    pub body: Fields<'a>,
}

impl<'a> Record<'a> {
    /// The first of `keys` present in the body, with its value.
    pub fn message<'k, K: AsRef<str>>(&self, keys: &'k [K]) -> Option<(&'k str, ValueRef<'a>)> {
        keys.iter()
            .find_map(|key| self.body.get(key.as_ref()).map(|v| (key.as_ref(), v)))
    }

    /// If this record claims to be job-wrapper's end-of-job record — its message is JSON that
    /// starts like the wrapper's, or (after a `merge_log`) it has `"job_wrapper": "end"` — the
    /// token it carries (`Some(None)` when it carries none). Anything can print such a line;
    /// only the token, which the wrapper makes after the command has exited, tells the real
    /// one apart.
    pub fn job_end_claim<K: AsRef<str>>(&self, message_keys: &[K]) -> Option<Option<String>> {
        let text = |v: Option<ValueRef<'a>>| v.and_then(|v| v.as_str());
        if text(self.body.get(job_end::KEY)).as_deref() == Some(job_end::VALUE) {
            return Some(text(self.body.get(job_end::TOKEN_KEY)).map(|t| t.into_owned()));
        }
        let message = self.message(message_keys)?.1.as_str()?;
        if !message.starts_with(job_end::PREFIX) {
            return None;
        }
        let parsed: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&message).ok();
        Some(
            parsed
                .as_ref()
                .and_then(|m| m.get(job_end::TOKEN_KEY))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        )
    }
}

/// Where one event sits in its chunk: its time and the ranges of [`Records::slots`] that index
/// its metadata and body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub time: EventTime,
    pub metadata: (u32, u32),
    pub body: (u32, u32),
    /// The metadata / body map has a key that is not a string.
    pub metadata_other_keys: bool,
    pub body_other_keys: bool,
    /// [`key_bit`]s of the metadata's / body's keys.
    pub metadata_keys: u64,
    pub body_keys: u64,
}

/// A decoded chunk: its bytes and where each event and field sits in them. Events are read in
/// place.
#[derive(Debug, Default)]
pub struct Records {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    slots: Vec<Slot>,
}

/// Heap one event's index entry takes, and one field's (for the in-flight memory limit).
pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

impl Records {
    pub(crate) fn new(bytes: Vec<u8>, entries: Vec<Entry>, slots: Vec<Slot>) -> Records {
        Records {
            bytes,
            entries,
            slots,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, n: usize) -> Option<Record<'_>> {
        let entry = self.entries.get(n)?;
        let fields = |(first, count): (u32, u32), other_keys, key_mask| Fields {
            bytes: &self.bytes,
            slots: self
                .slots
                .get(first as usize..first as usize + count as usize)
                .unwrap_or_default(),
            other_keys,
            key_mask,
        };
        Some(Record {
            time: entry.time,
            metadata: fields(
                entry.metadata,
                entry.metadata_other_keys,
                entry.metadata_keys,
            ),
            body: fields(entry.body, entry.body_other_keys, entry.body_keys),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len()).filter_map(|n| self.get(n))
    }
}

/// The decoded records of one flush, shared read-only by every destination. A resend's batch
/// for a destination that already has some of the records is a [`Batch::subset`]: the same
/// records, shared, with the positions it carries — never a copy of them.
#[derive(Debug)]
pub struct Batch {
    pub tag: String,
    records: std::sync::Arc<Records>,
    /// Positions in `records` this batch carries; all of them when `None`.
    selection: Option<Vec<usize>>,
}

impl Batch {
    pub fn new(tag: String, records: Records) -> Batch {
        Batch {
            tag,
            records: std::sync::Arc::new(records),
            selection: None,
        }
    }

    /// The records at `positions` (of this batch's full set), sharing them.
    pub fn subset(&self, positions: Vec<usize>) -> Batch {
        Batch {
            tag: self.tag.clone(),
            records: std::sync::Arc::clone(&self.records),
            selection: Some(positions),
        }
    }

    pub fn len(&self) -> usize {
        self.selection.as_ref().map_or(self.records.len(), Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `n`th record this batch carries.
    pub fn get(&self, n: usize) -> Option<Record<'_>> {
        match &self.selection {
            None => self.records.get(n),
            Some(positions) => positions.get(n).and_then(|&p| self.records.get(p)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len()).filter_map(|n| self.get(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::write_event;
    use serde_json::{Value, json};

    fn records(body: Value) -> Records {
        Records::from_json(&[(EventTime::new(1, 0), body)])
    }

    #[test]
    fn message_detection_prefers_the_first_configured_key() {
        let r = records(json!({"message": "structured", "log": "raw line"}));
        let e = r.get(0).unwrap();
        assert_eq!(e.message(&DEFAULT_MESSAGE_KEYS).unwrap().0, "log");
        assert_eq!(
            e.message(&["message"]).unwrap().1.as_str().unwrap(),
            "structured"
        );
        assert!(e.message(&["msg"]).is_none());
    }

    #[test]
    fn duplicate_keys_keep_their_first_place_and_last_value() {
        let mut chunk = Vec::new();
        write_event(&mut chunk, EventTime::new(1, 0), &json!({}));
        // Replace the empty body with {"a":1,"b":2,"a":3} written by hand.
        chunk.pop();
        chunk.extend_from_slice(&[0x83, 0xa1, b'a', 1, 0xa1, b'b', 2, 0xa1, b'a', 3]);
        let decoded = crate::decode::decode_chunk(chunk).unwrap();
        let record = decoded.records.get(0).unwrap();
        assert_eq!(record.body.get("a"), Some(ValueRef::UInt(3)));
        let mut out = Vec::new();
        record.body.write_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn job_end_claims_carry_the_token_if_any() {
        let keys = ["log", "message"];
        let claim = |body: Value| records(body).get(0).unwrap().job_end_claim(&keys);
        assert_eq!(
            claim(json!({"message": "{\"job_wrapper\":\"end\",\"exit_code\":3,\"token\":\"ab\"}"})),
            Some(Some("ab".to_owned()))
        );
        assert_eq!(
            claim(json!({"message": "{\"job_wrapper\":\"end\",\"exit_code\":0}"})),
            Some(None),
            "printed by anyone: a claim without a token"
        );
        assert_eq!(
            claim(json!({"log": "{\"job_wrapper\":\"end\" and then not JSON"})),
            Some(None)
        );
        assert_eq!(
            claim(json!({"log": "x", "job_wrapper": "end", "token": "cd"})),
            Some(Some("cd".to_owned()))
        );
        assert_eq!(claim(json!({"log": "job_wrapper end"})), None);
        assert_eq!(claim(json!({"log": 7})), None);
    }

    #[test]
    fn float_timestamps_keep_their_fraction() {
        let t = EventTime::from_f64(1700000000.25).unwrap();
        assert_eq!((t.secs, t.nanos), (1700000000, 250_000_000));
        assert_eq!(t.as_millis(), 1700000000250);
        assert!(EventTime::from_f64(f64::NAN).is_none());
        assert!(EventTime::from_f64(-1.0).is_none());
    }

    #[test]
    fn rfc3339_has_nanoseconds() {
        assert_eq!(
            EventTime::new(1700000000, 5).to_rfc3339(),
            "2023-11-14T22:13:20.000000005Z"
        );
    }
}
