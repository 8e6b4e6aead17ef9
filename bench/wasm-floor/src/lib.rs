//! The floor `bench/wasm_filter.py` measures `k8s-metadata.wasm` against: a `filter_wasm`
//! module that returns each record unchanged. Built for `wasm32-wasip1` like the real module,
//! so it exports the same `malloc`/`free` (`.cargo/config.toml`) and the host copies records in
//! and out the same way; what is left is filter_wasm's own cost (record to JSON, into the
//! interpreter, back out, JSON to record).
//!
//! `passthrough_with_keys` also appends, without looking at the record, the keys k8s-metadata
//! adds to the benchmark's records: what those keys cost the host to read back, so what is left
//! above it is the module's own work.
//!
//! `passthrough_with_merged` appends, besides those keys, the members of a JSON object the
//! record's `log` holds, unescaped once without checking anything (`\uXXXX` left as it is): a
//! record of about the size k8s-metadata hands back when it merges a JSON log line, so what the
//! host pays to read the bigger record back is in the floor, and what is left above it is the
//! module's own work on JSON lines. Its one pass over the line is as tight as the interpreter
//! allows (eight bytes a step), so interpreted it is also the least any merging module costs.

use std::cell::RefCell;

thread_local! {
    /// The answer, kept until the next call: the host copies it after the call returns.
    static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What k8s-metadata adds to a record of `bench/wasm_filter.py` (its pod files and tag).
const BENCH_KEYS: &[u8] = br#","kubernetes":{"pod_name":"report-28190012-x7k2p","namespace_name":"batch","container_name":"report","docker_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","labels":{"app":"report","tags.datadoghq.com/env":"prod"}},"env":"prod"}"#;

/// `record` (JSON text, `{…}`) with `keys` (`,"k":v…}`) in place of its closing brace, or as it
/// is, NUL-terminated in the answer buffer; with `merged`, the members of the object in `log`
/// come before the keys.
fn answer(record: &[u8], keys: Option<&[u8]>, merged: bool) -> *const u8 {
    ANSWER.with_borrow_mut(|answer| {
        answer.clear();
        match (keys, record.iter().rposition(|&b| b == b'}')) {
            (Some(keys), Some(close)) => {
                answer.extend_from_slice(&record[..close]);
                if merged {
                    merge_log(record, answer);
                }
                answer.extend_from_slice(keys);
            }
            _ => answer.extend_from_slice(record),
        }
        answer.push(0);
        answer.as_ptr()
    })
}

/// Appends `,` and the members of the object `"log":"{…}"` holds, unescaped once; nothing when
/// `log` does not hold an object.
///
/// Written as tight as an interpreter allows, so that it is a bound and not a straw man: eight
/// bytes a step (a word with no `\\` or `"` is stored whole), the output sized once, nothing
/// checked. Any module that merges a JSON log line must at least do this much.
fn merge_log(record: &[u8], out: &mut Vec<u8>) {
    let Some(object) = log_object(record) else {
        return;
    };
    let start = out.len();
    // Room for the text (never longer than its escaped form) and a whole word past it.
    out.resize(start + 1 + record.len() - object + 8, 0);
    out[start] = b',';
    let (mut at, mut to) = (object + 1, start + 1);
    loop {
        if at + 8 <= record.len() {
            let word = word_at(record, at);
            out[to..to + 8].copy_from_slice(&word.to_le_bytes());
            let stops = zero_bytes(word ^ (ONES * u64::from(b'\\')))
                | zero_bytes(word ^ (ONES * u64::from(b'"')));
            if stops == 0 {
                at += 8;
                to += 8;
                continue;
            }
            let run = (stops.trailing_zeros() / 8) as usize;
            at += run;
            to += run;
        } else {
            while at < record.len() && !matches!(record[at], b'\\' | b'"') {
                out[to] = record[at];
                at += 1;
                to += 1;
            }
        }
        match (record.get(at), record.get(at + 1)) {
            // `\uXXXX` is left as it is: the backslash and the `u` are copied.
            (Some(b'\\'), Some(b'u')) => {
                out[to] = b'\\';
                out[to + 1] = b'u';
                at += 2;
                to += 2;
            }
            (Some(b'\\'), Some(&escaped)) => {
                out[to] = escaped;
                at += 2;
                to += 1;
            }
            // The end of the `log` string: the object's closing brace is the byte before.
            (Some(b'"'), _) if to > start + 1 => {
                out.truncate(to - 1);
                return;
            }
            _ => break,
        }
    }
    out.truncate(start);
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// Flags (0x80) the zero bytes of `x`; only the lowest flag is exact.
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & (ONES * 0x80)
}

fn word_at(text: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&text[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// The index of the `{` in `"log":"{`, looked for quote to quote, eight bytes a step.
fn log_object(record: &[u8]) -> Option<usize> {
    const LOG: &[u8] = br#""log":"{"#;
    let mut at = 0;
    while at + LOG.len() <= record.len() {
        let quotes = zero_bytes(word_at(record, at) ^ (ONES * u64::from(b'"')));
        if quotes == 0 {
            at += 8;
            continue;
        }
        let quote = at + (quotes.trailing_zeros() / 8) as usize;
        if record.get(quote..quote + LOG.len()) == Some(LOG) {
            return Some(quote + LOG.len() - 1);
        }
        at = quote + 1;
    }
    None
}

/// The exports, in a private module like k8s-metadata's: only the host calls them.
mod abi {
    use super::{BENCH_KEYS, answer};

    /// The record the host passed, or `{}` if it passed none.
    fn record<'a>(record: *const u8, record_len: u32) -> &'a [u8] {
        if record.is_null() {
            return b"{}";
        }
        // SAFETY: the host copied `record_len` bytes of record into module memory at `record`;
        // they stay valid for the duration of the call, which is as long as the slice is used.
        unsafe { std::slice::from_raw_parts(record, record_len as usize) }
    }

    /// `function_name passthrough`.
    #[unsafe(no_mangle)]
    pub extern "C" fn passthrough(
        _tag: *const u8,
        _tag_len: u32,
        _time_sec: u32,
        _time_nsec: u32,
        record_ptr: *const u8,
        record_len: u32,
    ) -> *const u8 {
        answer(record(record_ptr, record_len), None, false)
    }

    /// `function_name passthrough_with_keys`.
    #[unsafe(no_mangle)]
    pub extern "C" fn passthrough_with_keys(
        _tag: *const u8,
        _tag_len: u32,
        _time_sec: u32,
        _time_nsec: u32,
        record_ptr: *const u8,
        record_len: u32,
    ) -> *const u8 {
        answer(record(record_ptr, record_len), Some(BENCH_KEYS), false)
    }

    /// `function_name passthrough_with_merged`.
    #[unsafe(no_mangle)]
    pub extern "C" fn passthrough_with_merged(
        _tag: *const u8,
        _tag_len: u32,
        _time_sec: u32,
        _time_nsec: u32,
        record_ptr: *const u8,
        record_len: u32,
    ) -> *const u8 {
        answer(record(record_ptr, record_len), Some(BENCH_KEYS), true)
    }
}

#[cfg(test)]
mod tests {
    use super::merge_log;

    #[test]
    fn the_members_of_the_object_in_log_are_appended_unescaped_once() {
        let record = br#"{"time":"t","log":"{\"a\":1,\"b\":\"x\\\"y \\\\ \\u00e9\",\"c\":{\"d\":[]}}","z":0}"#;
        let mut out = Vec::new();
        merge_log(record, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#","a":1,"b":"x\"y \\ \u00e9","c":{"d":[]}"#
        );
        let mut none = Vec::new();
        merge_log(br#"{"log":"plain text"}"#, &mut none);
        assert!(none.is_empty());
    }
}
