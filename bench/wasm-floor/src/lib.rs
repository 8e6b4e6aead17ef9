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
//! module's own work on JSON lines.

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
fn merge_log(record: &[u8], out: &mut Vec<u8>) {
    const LOG: &[u8] = br#""log":"{"#;
    let Some(at) = record.windows(LOG.len()).position(|w| w == LOG) else {
        return;
    };
    let start = out.len();
    out.push(b',');
    let mut bytes = record[at + LOG.len()..].iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(b'u') => out.extend_from_slice(b"\\u"),
                Some(&escaped) => out.push(escaped),
                None => break,
            },
            // The end of the `log` string: the object's closing brace is the byte before.
            b'"' => {
                out.pop();
                return;
            }
            _ => out.push(b),
        }
    }
    out.truncate(start);
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
