//! The fast path for JSON records: the module writes the host's JSON text back with the
//! metadata appended, and with the members of a JSON log line merged in, instead of parsing the
//! record into values and writing it again.
//!
//! A record takes this path when [`crate::scan`] finds it is one JSON object and it has none of
//! what the fast path leaves to the full one: a `kubernetes` key of its own (moved aside by the
//! full path), a raw CRI line to split, two `log` or two `message` keys. `merge_log` is done
//! here: the `log` (else `message`) string is unescaped by the record's scan as it passes it,
//! scanned as a JSON object with serde_json's rules for values, and its members are copied after
//! the record's own — but not `kubernetes`, nor a key the record has (the record wins). Anything
//! the scanner is unsure of (a number serde_json may find out of range, escaped keys to compare,
//! a key twice in the log line, more than [`MAX_MERGED_MEMBERS`] members, deep nesting) goes to
//! the full path, which gives the same record.
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
use crate::scan::{self, Capture, Failure, Member, Strictness};

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
                let key = TopKey::of(field.as_bytes(), scan::key_word_of(field.as_bytes()))?;
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
pub struct Scratch {
    record: Vec<Member>,
    /// `log` and `message`, unescaped by the record's scan when they may hold an object.
    captures: [Capture; 2],
    log_line: Vec<u8>,
    merged: Vec<Member>,
    /// Per merged member: whether it is written (not `kubernetes`, not a key the record has).
    keep: Vec<bool>,
    key: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            record: Vec::new(),
            captures: [
                Capture::new(b"log", may_hold_an_object),
                Capture::new(b"message", may_hold_an_object),
            ],
            log_line: Vec::new(),
            merged: Vec::new(),
            keep: Vec::new(),
            key: Vec::new(),
        }
    }
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
    let scanned = if config.merge_log {
        scan::object_capturing(
            record,
            0,
            Strictness::Structure,
            &mut scratch.record,
            &mut scratch.captures,
        )
    } else {
        scan::object(record, 0, Strictness::Structure, &mut scratch.record)
    };
    let Ok(scanned) = scanned else {
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
        if let Some(capture) = scratch
            .captures
            .iter_mut()
            .find(|capture| capture.member == Some(index))
        {
            // Unescaped by the record's scan already.
            std::mem::swap(&mut scratch.log_line, &mut capture.text);
        } else if !scratch.record[index].key_escaped {
            // The scan looked at it and found it cannot hold an object.
            continue;
        } else {
            // A key written with an escape, which the scan does not capture.
            let value = scratch.record[index].value.clone();
            if !may_hold_an_object(&record[value.clone()]) {
                continue;
            }
            // Cut at the string's end: the unescaper makes room for all the text it is given.
            scan::unescape(&record[..value.end], value.start, &mut scratch.log_line)
                .map_err(|_| ())?;
        }
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

/// The most members a log line may have and still be merged here: keys that share a hash bit
/// are compared pair by pair, so that cost is bounded by sending longer lines to the full path.
pub const MAX_MERGED_MEMBERS: usize = 128;

/// Marks which merged members are written (`scratch.keep`): not `kubernetes` (pod identity is
/// never the application's to say), not a key the record has (minus the merged one, when it is
/// not kept). Returns the [`TopKey`]s the merged members bring, or `None` for the full path (a
/// key to compare holds an escape, the log line has a key twice, or more than
/// [`MAX_MERGED_MEMBERS`]).
///
/// Keys are told apart by a bit of a 64-bit set first (a hash of the key's length and its first
/// and last words: most keys share their bit with no other), then by their length and first
/// word, then byte for byte.
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
        ..
    } = scratch;
    if merged.len() > MAX_MERGED_MEMBERS {
        return None;
    }
    let compared = |index: usize| index != source || keep_log;
    let mut own_bits = 0u64;
    for (index, member) in own.iter().enumerate() {
        if compared(index) {
            if member.key_escaped {
                return None;
            }
            own_bits |= key_bit(member, record);
        }
    }
    keep.clear();
    let mut merged_bits = 0u64;
    let mut present = 0;
    for (index, member) in merged.iter().enumerate() {
        if member.key_escaped {
            return None;
        }
        let bit = key_bit(member, log_line);
        let top = TopKey::of(member.key_body(log_line), member.key_word);
        let written = top != Some(TopKey::Kubernetes)
            && (own_bits & bit == 0
                || !own
                    .iter()
                    .enumerate()
                    .any(|(at, other)| compared(at) && same_key(other, record, member, log_line)));
        // A key twice in the log line: the full path keeps the last one. An equal key earlier
        // had the same fate, so only the written ones need looking for.
        if written
            && merged_bits & bit != 0
            && merged[..index]
                .iter()
                .any(|other| same_key(other, log_line, member, log_line))
        {
            return None;
        }
        merged_bits |= bit;
        if let (true, Some(top)) = (written, top) {
            present |= top.bit();
        }
        keep.push(written);
    }
    Some(present)
}

/// A key's bit in a 64-bit set: a hash of its length, its first eight bytes and (when longer)
/// its last eight, so keys alike but for their middle (`field_00`, `field_01`, …) still differ.
fn key_bit(member: &Member, text: &[u8]) -> u64 {
    let key = member.key_body(text);
    let last = if key.len() > 8 {
        scan::word_at(key, key.len() - 8)
    } else {
        0
    };
    let mixed = (member.key_word ^ last.rotate_left(29) ^ key.len() as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    1 << (mixed >> 58)
}

/// Whether two unescaped keys are the same: length, first word, then the bytes past it.
fn same_key(a: &Member, a_text: &[u8], b: &Member, b_text: &[u8]) -> bool {
    a.key.len() == b.key.len()
        && a.key_word == b.key_word
        && (a.key.len() <= 8 + 2 || same_bytes(a.key_body(a_text), b.key_body(b_text)))
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
    // Differences gathered without a branch per word.
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        diff |= scan::word_at(x, 0) ^ scan::word_at(y, 0);
    }
    // The last word, overlapping the one before when the length is not a multiple of eight.
    diff |= scan::word_at(a, n - 8) ^ scan::word_at(b, n - 8);
    diff == 0
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
    /// The key `key` (its text; `key_word` its first eight bytes, as [`Member::key_word`]) is,
    /// told by its length and first word (and the two bytes after it for `kubernetes`) rather
    /// than by comparing bytes, which wasi-libc's `memcmp` does one at a time.
    fn of(key: &[u8], key_word: u64) -> Option<TopKey> {
        const KUBERNETES: u64 = scan::key_word_of(b"kubernetes");
        const STREAM: u64 = scan::key_word_of(b"stream");
        const LOGTAG: u64 = scan::key_word_of(b"logtag");
        const LOG: u64 = scan::key_word_of(b"log");
        const MESSAGE: u64 = scan::key_word_of(b"message");
        const SERVICE: u64 = scan::key_word_of(b"service");
        const ENV: u64 = scan::key_word_of(b"env");
        const VERSION: u64 = scan::key_word_of(b"version");
        Some(match (key.len(), key_word) {
            (10, KUBERNETES) if key[8] == b'e' && key[9] == b's' => TopKey::Kubernetes,
            (6, STREAM) => TopKey::Stream,
            (6, LOGTAG) => TopKey::Logtag,
            (3, LOG) => TopKey::Log,
            (7, MESSAGE) => TopKey::Message,
            (7, SERVICE) => TopKey::Service,
            (3, ENV) => TopKey::Env,
            (7, VERSION) => TopKey::Version,
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
                // Cut at the key's end: the unescaper makes room for all the text it is given,
                // which for every escaped key would be the rest of the record.
                scan::unescape(&record[..member.key.end], member.key.start, key).ok()?;
                TopKey::of(key, scan::key_word(key, 0, key.len()))
            } else {
                TopKey::of(member.key_body(record), member.key_word)
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
mod tests;
