//! Any bytes as a Fluent Bit chunk: the decoder returns events or an error, never panics,
//! and every event it returns serializes to JSON that parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = fanout::decode::decode_chunk(data) {
        for event in decoded.events {
            let json = serde_json::to_vec(&event.body).expect("bodies serialize");
            let _: serde_json::Value = serde_json::from_slice(&json).expect("and parse back");
        }
    }
});
