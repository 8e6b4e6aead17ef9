//! Any tag and record through the `k8s-metadata` filter's record path, in JSON and msgpack
//! mode: it never panics (a panic in the module is a trap in the host) and always answers with
//! one NUL-terminated result.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&[u8], &[u8])| {
    let (tag, record) = data;
    let mut out = Vec::new();
    k8s_metadata::filter(tag, Some(record), record.len() as u32, &mut out);
    assert_eq!(out.last(), Some(&0));
    assert_eq!(out.iter().filter(|b| **b == 0).count(), 1, "exactly one NUL, at the end");
});
