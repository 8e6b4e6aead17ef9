//! Any bytes as a Fluent Bit chunk: the decoder returns events or an error, never panics,
//! and every event it returns reads in place and writes JSON that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = fanout_core::decode::decode_chunk(data.to_vec()) {
        for event in decoded.records.iter() {
            for fields in [event.body, event.metadata] {
                let mut json = Vec::new();
                fields.write_json(&mut json);
                let _: serde_json::Value = serde_json::from_slice(&json).expect("JSON that parses");
                for (key, value) in fields.iter() {
                    let _ = fields.get(&key.text());
                    let _ = value.to_text(fanout_contract::view::FIELD_DEPTH);
                }
            }
        }
    }
});
