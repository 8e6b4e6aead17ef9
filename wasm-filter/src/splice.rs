//! The fast path for JSON records: most records only gain keys, so the module appends the
//! serialized metadata to the host's JSON text instead of parsing the record into values and
//! writing it again.
//!
//! A record takes this path when the filter knows something about the pod and the record has
//! none of what would change it otherwise: no `kubernetes` key of its own (it would be moved
//! aside), no raw CRI line to split, no JSON object in `log`/`message` to merge. One scan with
//! serde_json (no values built) checks that the text is a JSON object and finds those keys;
//! anything unusual — invalid JSON, an escape where a decision needs the text — goes to the
//! full path, which gives the same record. The record's own bytes are kept as the host wrote
//! them, numbers included, and so are escapes inside its strings, which the scan does not
//! decode (a lone surrogate `\ud800` the host wrote goes back to it unchanged, where the full
//! path would mark the record as invalid JSON). Invalid UTF-8 takes the full path.
//!
//! The metadata depends only on the tag and the Downward API files, so it is serialized once per
//! tag and kept until the files are read again.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::enrich::{self, KUBERNETES};
use crate::podinfo::{Config, PodInfo};

/// The metadata of one tag, serialized: what a record of that tag gains.
pub struct Prepared {
    /// `"kubernetes":{…}`.
    kubernetes: Vec<u8>,
    /// `"service":"…"` and the like, each added unless the record has that key.
    service_tags: Vec<(TopKey, Vec<u8>)>,
}

impl Prepared {
    /// The metadata for `tag`, or `None` when nothing is known about the pod (records are
    /// then left as they are, by the full path).
    pub fn new(tag: &str, pod: &PodInfo, config: &Config) -> Option<Prepared> {
        let kubernetes = enrich::kubernetes_map(tag, pod, &config.annotations_exclude)?;
        let labels = match kubernetes.get("labels") {
            Some(serde_json::Value::Object(labels)) if config.service_tags => {
                enrich::service_tags(labels)
            }
            _ => Vec::new(),
        };
        let service_tags = labels
            .into_iter()
            .filter_map(|(field, value)| {
                let key = TopKey::of(field)?;
                Some((key, member(field, &value)))
            })
            .collect();
        Some(Prepared {
            kubernetes: member(KUBERNETES, &kubernetes),
            service_tags,
        })
    }
}

/// `"key":value`, serialized.
fn member(key: &str, value: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and strings and string maps always serialize.
    let _ = serde_json::to_writer(&mut out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut out, value);
    out
}

/// Writes `record` with `prepared`'s metadata appended into `out` and returns true, or returns
/// false (with `out` untouched) when the record needs the full path.
pub fn splice(record: &[u8], prepared: &Prepared, config: &Config, out: &mut Vec<u8>) -> bool {
    let Some(scan) = Scan::of(record, config) else {
        return false;
    };
    if scan.has(TopKey::Kubernetes) || scan.needs_full_path {
        return false;
    }
    let Some(close) = record.iter().rposition(|&b| b == b'}') else {
        return false;
    };
    out.extend_from_slice(&record[..close]);
    if scan.members > 0 {
        out.push(b',');
    }
    out.extend_from_slice(&prepared.kubernetes);
    for (key, member) in &prepared.service_tags {
        if !scan.has(*key) {
            out.push(b',');
            out.extend_from_slice(member);
        }
    }
    out.push(b'}');
    true
}

/// Whether two byte strings are equal, eight bytes at a time: the tag is compared on every
/// record, and wasi-libc's `memcmp` (what `==` on slices calls) takes a byte per iteration,
/// which an interpreter pays for dearly.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = a_words.remainder() == b_words.remainder();
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().unwrap_or_default());
    tails_equal && a_words.zip(b_words).all(|(x, y)| word(x) == word(y))
}

/// Top-level keys the filter's decisions depend on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TopKey {
    Kubernetes,
    Stream,
    Logtag,
    Log,
    Message,
    Service,
    Env,
    Version,
}

impl TopKey {
    fn of(key: &str) -> Option<TopKey> {
        Some(match key {
            "kubernetes" => TopKey::Kubernetes,
            "stream" => TopKey::Stream,
            "logtag" => TopKey::Logtag,
            "log" => TopKey::Log,
            "message" => TopKey::Message,
            "service" => TopKey::Service,
            "env" => TopKey::Env,
            "version" => TopKey::Version,
            _ => return None,
        })
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// What one pass over a record's top level found.
struct Scan<'a> {
    present: u16,
    members: usize,
    /// Raw text of the `log` and `message` values (a third one, a duplicate key, sends the
    /// record to the full path). Not a Vec: an allocation per record costs as much as the scan.
    texts: [Option<(TopKey, &'a RawValue)>; 2],
    needs_full_path: bool,
}

impl<'a> Scan<'a> {
    /// `None` when the record is not a JSON object the full path would accept as it is.
    fn of(record: &'a [u8], config: &Config) -> Option<Scan<'a>> {
        // Records deeper than the limit get the full path's marker. (The scan itself would cope:
        // serde_json skips values with a loop and a heap stack, never recursing.)
        if crate::depth::json_may_exceed(record, crate::depth::MAX_DEPTH) {
            return None;
        }
        // Invalid UTF-8 takes the full path, which reports it; valid text is scanned as `str`,
        // so the scan does not check it again.
        let text = std::str::from_utf8(record).ok()?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut scan = deserializer.deserialize_map(ScanVisitor).ok()?;
        deserializer.end().ok()?;
        let cri_candidate =
            config.parse_cri && !scan.has(TopKey::Stream) && !scan.has(TopKey::Logtag);
        scan.needs_full_path |= scan.texts.iter().flatten().any(|(key, raw)| {
            let text = raw.get().as_bytes();
            (config.merge_log && may_hold_an_object(text))
                || (cri_candidate && *key == TopKey::Log && may_be_a_cri_line(text))
        });
        Some(scan)
    }

    fn has(&self, key: TopKey) -> bool {
        self.present & key.bit() != 0
    }
}

/// Whether a JSON string value (raw, quotes included) might start with `{` once unescaped
/// and trimmed, as `merge_log` checks. Unsure (an escape other than whitespace, a non-ASCII
/// character first) counts as yes: the full path decides.
fn may_hold_an_object(raw: &[u8]) -> bool {
    let Some(body) = raw.strip_prefix(b"\"") else {
        return false; // not a string: never merged
    };
    let mut rest = body;
    loop {
        match rest {
            [b' ' | b'\t' | b'\n' | b'\r', tail @ ..] => rest = tail,
            [b'\\', b'n' | b't' | b'r' | b'f', tail @ ..] => rest = tail,
            [b'{', ..] => return true,
            [b'\\', ..] => return true,
            [first, ..] if !first.is_ascii() => return true,
            _ => return false,
        }
    }
}

/// Whether a raw `log` value might be a CRI line (`2026-11-22T…`): it starts like a date, or
/// with an escape (the full path decides).
fn may_be_a_cri_line(raw: &[u8]) -> bool {
    let Some(body) = raw.strip_prefix(b"\"") else {
        return false;
    };
    let head = &body[..body.len().min(11)];
    match head.first() {
        Some(b'\\') => true,
        Some(digit) if digit.is_ascii_digit() => {
            head.contains(&b'\\') || (head.len() == 11 && head[4] == b'-' && head[10] == b'T')
        }
        _ => false,
    }
}

struct ScanVisitor;

impl<'de> Visitor<'de> for ScanVisitor {
    type Value = Scan<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan<'de>, A::Error> {
        let mut scan = Scan {
            present: 0,
            members: 0,
            texts: [None, None],
            needs_full_path: false,
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            scan.members += 1;
            match key {
                Some(key @ (TopKey::Log | TopKey::Message)) => {
                    scan.present |= key.bit();
                    let text = Some((key, map.next_value::<&RawValue>()?));
                    match scan.texts.iter_mut().find(|slot| slot.is_none()) {
                        Some(slot) => *slot = text,
                        None => scan.needs_full_path = true,
                    }
                }
                Some(key) => {
                    scan.present |= key.bit();
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(scan)
    }
}

/// Reads a key without allocating, keeping only whether it is one of [`TopKey`].
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<TopKey>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Option<TopKey>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(TopKey::of(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const TAG: &str = "kube.var.log.containers.report-1_batch_job-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log";

    fn pod() -> PodInfo {
        PodInfo {
            pod_name: Some("report-1".into()),
            namespace_name: Some("batch".into()),
            labels: [
                (
                    "tags.datadoghq.com/service".to_string(),
                    "nightly".to_string(),
                ),
                ("tags.datadoghq.com/env".to_string(), "prod".to_string()),
            ]
            .into_iter()
            .collect(),
            ..PodInfo::default()
        }
    }

    /// The record as the full path writes it.
    fn full(record: &str) -> Value {
        let mut map = serde_json::from_str::<Value>(record)
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        enrich::enrich(&mut map, TAG, &pod(), &Config::default());
        Value::Object(map)
    }

    fn spliced(record: &str) -> Option<Vec<u8>> {
        spliced_bytes(record.as_bytes())
    }

    fn spliced_bytes(record: &[u8]) -> Option<Vec<u8>> {
        let config = Config::default();
        let prepared = Prepared::new(TAG, &pod(), &config).unwrap();
        let mut out = Vec::new();
        splice(record, &prepared, &config, &mut out).then_some(out)
    }

    #[test]
    fn records_that_only_gain_keys_are_spliced_and_equal_the_full_path() {
        for record in [
            r#"{"time":"2026-11-22T02:00:00.1Z","stream":"stdout","_p":"F","log":"GET /x 200"}"#,
            r#"{}"#,
            r#" { "log" : "plain" , "n": 1.50e3, "big": 123456789012345678901234567890 } "#,
            r#"{"log":"  \n not json","service":"mine","nested":{"kubernetes":{"pod_name":"x"}}}"#,
            r#"{"l\u006fg":"escaped key, plain text","message":42}"#,
            r#"{"log":"2026-11-22 not a CRI line","stream":"stderr"}"#,
            r#"{"k8s_metadata_error":"printed by the app","log":"x"}"#,
        ] {
            let out = spliced(record).unwrap_or_else(|| panic!("spliced: {record}"));
            let value: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(value, full(record), "{record}");
        }
        // The record's own text is kept as the host wrote it.
        let out = spliced(r#"{"big":123456789012345678901234567890}"#).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with(r#"{"big":123456789012345678901234567890,"kubernetes":"#)
        );
    }

    #[test]
    fn records_the_filter_changes_otherwise_take_the_full_path() {
        for record in [
            r#"{"kubernetes":{"pod_name":"evil"}}"#,
            r#"{"k\u0075bernetes":"escaped"}"#,
            r#"{"log":"{\"level\":\"error\"}"}"#,
            r#"{"log":" \t {\"a\":1}"}"#,
            r#"{"message":"\u007b\"a\":1}"}"#,
            r#"{"log":"2026-11-22T09:00:00.1Z stdout F hello"}"#,
            r#"{"log":"ok","log":"{\"a\":1}"}"#,
            r#"{"log":"a","message":"b","log":"c"}"#,
            r#"["not", "an", "object"]"#,
            r#"{"unterminated":"#,
            r#"{"a":1} trailing"#,
            "{\"log\":\"\u{a0}{\\\"a\\\":1}\"}",
        ] {
            assert!(spliced(record).is_none(), "{record}");
        }
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        let tag = TAG.as_bytes();
        assert!(same_bytes(tag, tag));
        assert!(same_bytes(b"", b""));
        for i in 0..tag.len() {
            let mut other = tag.to_vec();
            other[i] ^= 1;
            assert!(!same_bytes(tag, &other), "byte {i}");
        }
        assert!(!same_bytes(tag, &tag[..tag.len() - 1]));
    }

    /// The scan checks the structure, not the escapes inside strings: what the host wrote is
    /// handed back with the metadata added (the full path would replace the record by an error
    /// marker). Invalid UTF-8 and control characters in strings go to the full path.
    #[test]
    fn escapes_are_the_hosts_and_stay_as_they_are() {
        let record = br#"{"a":"\ud800"}"#;
        let out = spliced_bytes(record).expect("spliced");
        assert!(out.starts_with(&record[..record.len() - 1]));
        assert!(out.ends_with(b"}"));
        for record in [
            &b"{\"a\":\"x\x01y\"}"[..],
            b"{\"\xff\":1}",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(spliced_bytes(record).is_none());
        }
    }

    #[test]
    fn nothing_known_about_the_pod_prepares_nothing() {
        assert!(Prepared::new("tail.0", &PodInfo::default(), &Config::default()).is_none());
    }

    #[test]
    fn service_tags_the_record_has_are_not_added() {
        let out = spliced(r#"{"env":"staging"}"#).unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["env"], "staging");
        assert_eq!(value["service"], "nightly");
        assert_eq!(value, full(r#"{"env":"staging"}"#));
        assert_eq!(
            value["kubernetes"],
            json!({"pod_name": "report-1", "namespace_name": "batch", "container_name": "job",
                   "docker_id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                   "labels": {"tags.datadoghq.com/env": "prod", "tags.datadoghq.com/service": "nightly"}})
        );
    }
}
