//! The floor `bench/wasm_filter.py` measures `k8s-metadata.wasm` against: a `filter_wasm`
//! module that returns each record unchanged. Built for `wasm32-wasip1` like the real module,
//! so it exports the same `malloc`/`free` (`.cargo/config.toml`) and the host copies records in
//! and out the same way; what is left is filter_wasm's own cost (record to JSON, into the
//! interpreter, back out, JSON to record).

use std::cell::RefCell;

thread_local! {
    /// The answer, kept until the next call: the host copies it after the call returns.
    static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The export, in a private module like k8s-metadata's: only the host calls it.
mod abi {
    use super::ANSWER;

    /// `function_name passthrough`.
    #[unsafe(no_mangle)]
    pub extern "C" fn passthrough(
        _tag: *const u8,
        _tag_len: u32,
        _time_sec: u32,
        _time_nsec: u32,
        record: *const u8,
        record_len: u32,
    ) -> *const u8 {
        let record = if record.is_null() {
            &b"{}"[..]
        } else {
            // SAFETY: the host copied `record_len` bytes of record into module memory at `record`;
            // they stay valid for the duration of the call.
            unsafe { std::slice::from_raw_parts(record, record_len as usize) }
        };
        ANSWER.with_borrow_mut(|answer| {
            answer.clear();
            answer.extend_from_slice(record);
            answer.push(0);
            answer.as_ptr()
        })
    }
}
