//! The floor `bench/wasm_filter.py` measures `k8s-metadata.wasm` against: a `filter_wasm`
//! module that returns each record unchanged. Built for `wasm32-wasip1` like the real module,
//! so it exports the same `malloc`/`free` (`.cargo/config.toml`) and the host copies records in
//! and out the same way; what is left is filter_wasm's own cost (record to JSON, into the
//! interpreter, back out, JSON to record).
//!
//! `passthrough_with_keys` also appends, without looking at the record, the keys k8s-metadata
//! adds to the benchmark's records: what those keys cost the host to read back, so what is left
//! above it is the module's own work.

use std::cell::RefCell;

thread_local! {
    /// The answer, kept until the next call: the host copies it after the call returns.
    static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What k8s-metadata adds to a record of `bench/wasm_filter.py` (its pod files and tag).
const BENCH_KEYS: &[u8] = br#","kubernetes":{"pod_name":"report-28190012-x7k2p","namespace_name":"batch","container_name":"report","docker_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","labels":{"app":"report","tags.datadoghq.com/env":"prod"}},"env":"prod"}"#;

/// `record` (JSON text, `{…}`) with `keys` (`,"k":v…}`) in place of its closing brace, or as it
/// is, NUL-terminated in the answer buffer.
fn answer(record: &[u8], keys: Option<&[u8]>) -> *const u8 {
    ANSWER.with_borrow_mut(|answer| {
        answer.clear();
        match (keys, record.iter().rposition(|&b| b == b'}')) {
            (Some(keys), Some(close)) => {
                answer.extend_from_slice(&record[..close]);
                answer.extend_from_slice(keys);
            }
            _ => answer.extend_from_slice(record),
        }
        answer.push(0);
        answer.as_ptr()
    })
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
        answer(record(record_ptr, record_len), None)
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
        answer(record(record_ptr, record_len), Some(BENCH_KEYS))
    }
}
