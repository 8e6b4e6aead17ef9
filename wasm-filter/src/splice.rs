//! The fast path for JSON records: the module writes the host's JSON text back with the
//! metadata appended, and with the members of a JSON log line merged in, instead of parsing the
//! record into values and writing it again.
//!
//! A record takes this path when [`crate::scan`] finds it is one JSON object and it has none of
//! what the fast path leaves to the full one: a `kubernetes` key of its own (moved aside by the
//! full path), a raw CRI line to split, two `log` or two `message` keys. `merge_log` is done
//! here: the `log` (else `message`) string is unescaped once, scanned as a JSON object with
//! serde_json's rules for values, and its members are copied after the record's own — but not
//! `kubernetes`, nor a key the record has (the record wins). Anything the scanner is unsure of (a
//! number serde_json may find out of range, escaped keys to compare, a key twice in the log
//! line, deep nesting) goes to the full path, which gives the same record.
//!
//! The record's own bytes are kept as the host wrote them, numbers included, and so are escapes
//! inside its strings, which the scan does not decode (a lone surrogate `\ud800` the host wrote
//! goes back to it unchanged, where the full path would mark the record as invalid JSON).
//! Merged members are copied as the application wrote them (unescaped once, from inside the
//! `log` string). Invalid UTF-8 takes the full path.
//!
//! The metadata depends only on the tag and the Downward API files, so it is serialized once per
//! tag and kept until the files are read again.

use crate::enrich::{self, KUBERNETES};
use crate::podinfo::{Config, PodInfo};
use crate::scan::{self, Failure, Member, Strictness};

/// The metadata of one tag, serialized: what a record of that tag gains.
pub struct Prepared {
    /// `"kubernetes":{…}`, or `None` when nothing is known about the pod.
    kubernetes: Option<Vec<u8>>,
    /// `"service":"…"` and the like, each added unless the record has that key.
    service_tags: Vec<(TopKey, Vec<u8>)>,
}

impl Prepared {
    /// The metadata for `tag`.
    pub fn new(tag: &str, pod: &PodInfo, config: &Config) -> Prepared {
        let Some(kubernetes) = enrich::kubernetes_map(tag, pod, &config.annotations_exclude) else {
            return Prepared {
                kubernetes: None,
                service_tags: Vec::new(),
            };
        };
        let labels = match kubernetes.get("labels") {
            Some(serde_json::Value::Object(labels)) if config.service_tags => {
                enrich::service_tags(labels)
            }
            _ => Vec::new(),
        };
        let service_tags = labels
            .into_iter()
            .filter_map(|(field, value)| {
                let key = TopKey::of(field.as_bytes())?;
                Some((key, member(field, &value)))
            })
            .collect();
        Prepared {
            kubernetes: Some(member(KUBERNETES, &kubernetes)),
            service_tags,
        }
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

/// Buffers kept from record to record, so the fast path allocates nothing once warm.
#[derive(Default)]
pub struct Scratch {
    record: Vec<Member>,
    log_line: Vec<u8>,
    merged: Vec<Member>,
    /// Per merged member: whether it is written (not `kubernetes`, not a key the record has).
    keep: Vec<bool>,
    keys: Vec<SeenKey>,
    key: Vec<u8>,
}

/// Writes `record` with `prepared`'s metadata (and its JSON log line merged) into `out` and
/// returns true, or returns false (with `out` untouched) when the record needs the full path.
pub fn splice(
    record: &[u8],
    prepared: &Prepared,
    config: &Config,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(scanned) = scan::object(record, 0, Strictness::Structure, &mut scratch.record) else {
        return false;
    };
    if !record[scanned.end..]
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        || (scanned.non_ascii && std::str::from_utf8(record).is_err())
    {
        return false;
    }
    let Some(top) = TopKeys::of(record, &scratch.record, &mut scratch.key) else {
        return false;
    };
    if top.has(TopKey::Kubernetes) {
        return false;
    }
    let cri_candidate = config.parse_cri && !top.has(TopKey::Stream) && !top.has(TopKey::Logtag);
    if cri_candidate
        && let Some(log) = top.log
        && may_be_a_cri_line(&record[scratch.record[log].value.clone()])
    {
        return false;
    }
    let merged = if config.merge_log {
        match merge_source(record, &top, scratch) {
            Ok(merged) => merged,
            Err(()) => return false,
        }
    } else {
        None
    };
    let mut present = top.present;
    if let Some(source) = merged {
        let Some(inner_present) = choose_merged(record, source, config.keep_log, scratch) else {
            return false;
        };
        present |= inner_present;
    }

    // Decided: write.
    let close = scanned.end - 1;
    let mut members = scratch.record.len();
    match merged {
        Some(source) if !config.keep_log => {
            out.push(b'{');
            let mut first = true;
            for (index, member) in scratch.record.iter().enumerate() {
                if index != source {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&record[member.span()]);
                }
            }
            members -= 1;
        }
        _ => out.extend_from_slice(&record[..close]),
    }
    let mut separate = |out: &mut Vec<u8>| {
        if members > 0 {
            out.push(b',');
        }
        members += 1;
    };
    if merged.is_some() {
        if let (true, Some(first), Some(last)) = (
            scratch.keep.iter().all(|keep| *keep),
            scratch.merged.first(),
            scratch.merged.last(),
        ) {
            // Every member merges (the usual line): one copy, separators as the line has them.
            separate(out);
            out.extend_from_slice(&scratch.log_line[first.key.start..last.value.end]);
        } else {
            for (member, keep) in scratch.merged.iter().zip(&scratch.keep) {
                if *keep {
                    separate(out);
                    out.extend_from_slice(&scratch.log_line[member.span()]);
                }
            }
        }
    }
    if let Some(kubernetes) = &prepared.kubernetes {
        separate(out);
        out.extend_from_slice(kubernetes);
    }
    for (key, member) in &prepared.service_tags {
        if present & key.bit() == 0 {
            separate(out);
            out.extend_from_slice(member);
        }
    }
    out.push(b'}');
    true
}

/// Which of `log` and `message` holds the JSON object to merge (its member index; its text
/// unescaped in `scratch.log_line`, its members in `scratch.merged`), `None` when neither does;
/// `Err` when the full path must decide.
fn merge_source(record: &[u8], top: &TopKeys, scratch: &mut Scratch) -> Result<Option<usize>, ()> {
    for index in [top.log, top.message].into_iter().flatten() {
        let raw = &record[scratch.record[index].value.clone()];
        if !may_hold_an_object(raw) {
            continue;
        }
        scratch.log_line.clear();
        scan::unescape(&raw[1..raw.len() - 1], &mut scratch.log_line).ok_or(())?;
        let text = &scratch.log_line;
        // `merge_log` trims the text (Unicode whitespace) before parsing it.
        let start = text
            .iter()
            .position(|b| !matches!(b, b'\t'..=b'\r' | b' '))
            .unwrap_or(text.len());
        match text.get(start) {
            Some(b'{') => {}
            Some(b) if !b.is_ascii() => return Err(()),
            _ => continue,
        }
        match scan::object(text, start, Strictness::Value, &mut scratch.merged) {
            Ok(scanned) => {
                let rest = &text[scanned.end..];
                if rest.iter().all(|b| matches!(b, b'\t'..=b'\r' | b' ')) {
                    return Ok(Some(index));
                }
                if !rest.is_ascii() {
                    return Err(());
                }
            }
            Err(Failure::Invalid) => {}
            Err(Failure::Unsure) => return Err(()),
        }
    }
    Ok(None)
}

/// Marks which merged members are written (`scratch.keep`): not `kubernetes` (pod identity is
/// never the application's to say), not a key the record has (minus the merged one, when it is
/// not kept). Returns the [`TopKey`]s the merged members bring, or `None` for the full path (a
/// key to compare holds an escape, or the log line has a key twice).
fn choose_merged(
    record: &[u8],
    source: usize,
    keep_log: bool,
    scratch: &mut Scratch,
) -> Option<u16> {
    let Scratch {
        record: own,
        log_line,
        merged,
        keep,
        keys,
        ..
    } = scratch;
    let mut seen = KeyFilter::default();
    keys.clear();
    for (index, member) in own.iter().enumerate() {
        if index == source && !keep_log {
            continue;
        }
        if member.key_escaped {
            return None;
        }
        let hash = key_hash(member.key_body(record));
        seen.insert(hash);
        keys.push(SeenKey {
            hash,
            in_record: true,
            index,
        });
    }
    keep.clear();
    let mut present = 0;
    for (index, member) in merged.iter().enumerate() {
        if member.key_escaped {
            return None;
        }
        let key = member.key_body(log_line);
        if same_bytes(key, KUBERNETES.as_bytes()) {
            keep.push(false);
            continue;
        }
        let hash = key_hash(key);
        if seen.contains(hash) {
            let earlier = keys.iter().find(|seen| {
                seen.hash == hash
                    && if seen.in_record {
                        same_bytes(own[seen.index].key_body(record), key)
                    } else {
                        same_bytes(merged[seen.index].key_body(log_line), key)
                    }
            });
            match earlier {
                Some(seen) if seen.in_record => {
                    keep.push(false);
                    continue;
                }
                Some(_) => return None,
                None => {}
            }
        }
        seen.insert(hash);
        keys.push(SeenKey {
            hash,
            in_record: false,
            index,
        });
        if let Some(top) = TopKey::of(key) {
            present |= top.bit();
        }
        keep.push(true);
    }
    Some(present)
}

/// A key met while choosing what merges: its hash, and where it is.
#[derive(Clone, Copy)]
pub(crate) struct SeenKey {
    hash: u16,
    /// A member of the record (else of the log line), at `index`.
    in_record: bool,
    index: usize,
}

/// A 10-bit hash of a key: its first and last eight bytes (all of a short key) and its length,
/// so keys that differ only in their middle (`field_00`, `field_01`, …) still differ.
fn key_hash(key: &[u8]) -> u16 {
    let (first, last) = if key.len() >= 8 {
        (scan::word_at(key, 0), scan::word_at(key, key.len() - 8))
    } else {
        let mut word = 0u64;
        for &b in key {
            word = word << 8 | u64::from(b);
        }
        (word, 0)
    };
    let mixed =
        (first ^ last.rotate_left(29) ^ key.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 54) as u16
}

/// A 1024-bit set of key hashes: most keys are told apart without comparing their bytes.
#[derive(Default)]
struct KeyFilter([u64; 16]);

impl KeyFilter {
    fn insert(&mut self, hash: u16) {
        self.0[usize::from(hash >> 6)] |= 1 << (hash & 63);
    }

    fn contains(&self, hash: u16) -> bool {
        self.0[usize::from(hash >> 6)] & (1 << (hash & 63)) != 0
    }
}

/// Whether two byte strings are equal, eight bytes at a time: the tag is compared on every
/// record, and wasi-libc's `memcmp` (what `==` on slices calls) takes a byte per iteration,
/// which an interpreter pays for dearly.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if scan::word_at(a, at) != scan::word_at(b, at) {
            return false;
        }
        at += 8;
    }
    // The last word, overlapping the one before when the length is not a multiple of eight.
    scan::word_at(a, n - 8) == scan::word_at(b, n - 8)
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
    fn of(key: &[u8]) -> Option<TopKey> {
        Some(match key {
            b"kubernetes" => TopKey::Kubernetes,
            b"stream" => TopKey::Stream,
            b"logtag" => TopKey::Logtag,
            b"log" => TopKey::Log,
            b"message" => TopKey::Message,
            b"service" => TopKey::Service,
            b"env" => TopKey::Env,
            b"version" => TopKey::Version,
            _ => return None,
        })
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The record's top-level keys that decide its path.
struct TopKeys {
    present: u16,
    /// The member holding `log`, and the one holding `message`, when each is a string.
    log: Option<usize>,
    message: Option<usize>,
}

impl TopKeys {
    /// `None` when `log` or `message` is there twice (the full path takes the last one).
    fn of(record: &[u8], members: &[Member], key: &mut Vec<u8>) -> Option<TopKeys> {
        let mut top = TopKeys {
            present: 0,
            log: None,
            message: None,
        };
        for (index, member) in members.iter().enumerate() {
            let found = if member.key_escaped {
                key.clear();
                scan::unescape(member.key_body(record), key)?;
                TopKey::of(key)
            } else {
                TopKey::of(member.key_body(record))
            };
            let Some(found) = found else { continue };
            let slot = match found {
                TopKey::Log => &mut top.log,
                TopKey::Message => &mut top.message,
                _ => {
                    top.present |= found.bit();
                    continue;
                }
            };
            if top.present & found.bit() != 0 {
                return None;
            }
            top.present |= found.bit();
            if record[member.value.start] == b'"' {
                *slot = Some(index);
            }
        }
        Some(top)
    }

    fn has(&self, key: TopKey) -> bool {
        self.present & key.bit() != 0
    }
}

/// Whether a JSON string value (raw, quotes included) might start with `{` once unescaped
/// and trimmed, as `merge_log` checks. Unsure (an escape other than whitespace, a non-ASCII
/// character first) counts as yes: the unescaped text decides.
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
    fn full_with(record: &[u8], pod: &PodInfo, config: &Config) -> Value {
        let mut map = serde_json::from_slice::<Value>(record)
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        enrich::enrich(&mut map, TAG, pod, config);
        Value::Object(map)
    }

    fn full(record: &str) -> Value {
        full_with(record.as_bytes(), &pod(), &Config::default())
    }

    fn spliced_with(record: &[u8], pod: &PodInfo, config: &Config) -> Option<Vec<u8>> {
        let prepared = Prepared::new(TAG, pod, config);
        let mut out = Vec::new();
        splice(record, &prepared, config, &mut Scratch::default(), &mut out).then_some(out)
    }

    fn spliced(record: &str) -> Option<Vec<u8>> {
        spliced_bytes(record.as_bytes())
    }

    fn spliced_bytes(record: &[u8]) -> Option<Vec<u8>> {
        spliced_with(record, &pod(), &Config::default())
    }

    /// Spliced, the record equals the full path's and has no key twice (the host would keep both).
    fn assert_same_as_full(record: &str, pod: &PodInfo, config: &Config) {
        let out = spliced_with(record.as_bytes(), pod, config)
            .unwrap_or_else(|| panic!("spliced: {record}"));
        let value: Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(value, full_with(record.as_bytes(), pod, config), "{record}");
        let mut raw_keys = Vec::new();
        let mut members = Vec::new();
        scan::object(&out, 0, Strictness::Structure, &mut members).unwrap();
        for member in &members {
            raw_keys.push(member.key_body(&out).to_vec());
        }
        let unique: std::collections::BTreeSet<_> = raw_keys.iter().collect();
        assert_eq!(
            unique.len(),
            raw_keys.len(),
            "a key twice: {}",
            String::from_utf8_lossy(&out)
        );
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

    /// JSON log lines, merged by the fast path exactly as the full path merges them, with every
    /// config that changes the merge.
    #[test]
    fn json_log_lines_are_merged_as_the_full_path_merges_them() {
        let no_keep = Config {
            keep_log: false,
            ..Config::default()
        };
        let no_tags = Config {
            service_tags: false,
            ..Config::default()
        };
        for record in [
            r#"{"time":"t","stream":"stdout","_p":"F","log":"{\"level\":\"info\",\"msg\":\"GET /x\",\"status\":200,\"ms\":12.5,\"ok\":true}"}"#,
            r#"{"stream":"stdout","log":"{\"http\":{\"method\":\"GET\",\"h\":{\"a\":[1,2,{\"b\":null}]}},\"tags\":[\"x\",1,2.5,true,null],\"e\":{},\"f\":[]}"}"#,
            r#"{"stream":"stdout","log":"{\"msg\":\"caf\u00e9 \\u00e9 \\u201cq\\u201d \\\"x\\\" tab\\there\\nnext \\ud83d\\ude00\",\"path\":\"C:\\\\tmp\"}"}"#,
            "{\"stream\":\"stdout\",\"log\":\"{\\\"lang\\\":\\\"\u{65e5}\u{672c}\u{8a9e} \u{2713} \u{1f600}\\\"}\"}",
            // The record wins; `kubernetes` is never merged; service tags the line has are kept.
            r#"{"stream":"stdout","level":"record's","log":"{\"level\":\"line's\",\"kubernetes\":{\"pod_name\":\"evil\"},\"service\":\"mine\",\"stream\":\"x\"}"}"#,
            // `log` holds no object: `message` is merged; a `log` object wins over `message`.
            r#"{"stream":"stdout","log":"plain","message":"{\"from\":\"message\"}"}"#,
            r#"{"stream":"stdout","log":"{\"from\":\"log\"}","message":"{\"from\":\"message\"}"}"#,
            r#"{"stream":"stdout","log":"{not json","message":"{\"from\":\"message\"}"}"#,
            r#"{"stream":"stdout","log":"{\"a\":1} trailing","message":"{\"b\":2}"}"#,
            // Whitespace around the object, escaped or not; the log line's own `log` key.
            r#"{"stream":"stdout","log":" \t\n{ \"a\" : 1 , \"log\" : \"inner\" } \r\n"}"#,
            r#"{"stream":"stdout","log":"\f{\"a\":1}\u000b"}"#,
            r#"{"stream":"stdout","log":"{}"}"#,
            // Not objects, or not valid: left as text.
            r#"{"stream":"stdout","log":"{\"a\":1,}"}"#,
            r#"{"stream":"stdout","log":"{\"a\":\"\\ud800\"}"}"#,
            r#"{"stream":"stdout","log":"{\"a\":\"raw\ttab\"}"}"#,
            r#"{"stream":"stdout","log":"[1,2]"}"#,
            r#"{"stream":"stdout","log":"{\"a\":01}"}"#,
            r#"{"log":"{\"a\":1}","stream":"stdout","logtag":"F"}"#,
        ] {
            for config in [&Config::default(), &no_keep, &no_tags] {
                assert_same_as_full(record, &pod(), config);
                assert_same_as_full(record, &PodInfo::default(), config);
            }
        }
    }

    #[test]
    fn records_the_filter_changes_otherwise_take_the_full_path() {
        for record in [
            r#"{"kubernetes":{"pod_name":"evil"}}"#,
            r#"{"k\u0075bernetes":"escaped"}"#,
            r#"{"log":"2026-11-22T09:00:00.1Z stdout F hello"}"#,
            r#"{"log":"ok","log":"{\"a\":1}"}"#,
            r#"{"log":"a","message":"b","log":"c"}"#,
            r#"["not", "an", "object"]"#,
            r#"{"unterminated":"#,
            r#"{"a":1} trailing"#,
            // Unsure: the full path decides.
            "{\"stream\":\"x\",\"log\":\"\u{a0}{\\\"a\\\":1}\"}",
            r#"{"stream":"x","log":"{\"a\":1e400}"}"#,
            r#"{"stream":"x","log":"{\"a\":1,\"a\":2}"}"#,
            r#"{"stream":"x","log":"{\"\\u0061\":1}"}"#,
            r#"{"stream":"x","l\u006fg":"{\"a\":1}","a":2}"#,
            r#"{"stream":"x","log":"{\"a\":1}\u00a0"}"#,
            r#"{"stream":"x","log":"\ud800{\"a\":1}"}"#,
        ] {
            assert!(spliced(record).is_none(), "{record}");
        }
        // Deeper than the limit, inside the log line.
        let deep = format!(
            r#"{{"stream":"x","log":"{{\"a\":{}1{}}}"}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(spliced(&deep).is_none());
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
    fn nothing_known_about_the_pod_adds_nothing_but_still_merges() {
        let config = Config::default();
        let prepared = Prepared::new("tail.0", &PodInfo::default(), &config);
        let run = |record: &str| {
            let mut out = Vec::new();
            assert!(splice(
                record.as_bytes(),
                &prepared,
                &config,
                &mut Scratch::default(),
                &mut out
            ));
            out
        };
        let out = run(r#"{"stream":"stdout","log":"{\"a\":1}"}"#);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"stream": "stdout", "log": "{\"a\":1}", "a": 1})
        );
        let plain = r#"{"stream":"stdout","log":"hello"}"#;
        assert_eq!(run(plain), plain.as_bytes());
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

    /// Many keys, some alike: the hash set never takes two keys for one.
    #[test]
    fn many_keys_merge_without_mixing_them_up() {
        let mut line = serde_json::Map::new();
        for n in 0..300 {
            line.insert(format!("k{n}"), json!(n));
            line.insert(format!("{n}k"), json!(n));
        }
        line.insert("stream".into(), json!("line's"));
        let record =
            json!({"stream": "stdout", "k7": "record's", "log": Value::Object(line).to_string()});
        assert_same_as_full(&record.to_string(), &pod(), &Config::default());
    }
}
