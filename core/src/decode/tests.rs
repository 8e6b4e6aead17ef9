//! Chunks are written with rmp's encoder, value by value, so the decoder is checked against
//! bytes it did not produce. The end-to-end tests in tests/host drive the built library.
use super::*;
use fanout_contract::view::{DEPTH_PLACEHOLDER, MAX_KEY_TEXT};
use rmp::encode;
use serde_json::{Value, json};

#[derive(Default)]
struct Chunk(Vec<u8>);

impl Chunk {
    fn event_time(&mut self, secs: u32, nanos: u32) -> &mut Self {
        encode::write_ext_meta(&mut self.0, 8, 0).unwrap();
        self.0.extend_from_slice(&secs.to_be_bytes());
        self.0.extend_from_slice(&nanos.to_be_bytes());
        self
    }
    fn v1(&mut self, secs: u32, body: &[(&str, &str)]) -> &mut Self {
        encode::write_array_len(&mut self.0, 2).unwrap();
        self.event_time(secs, 0);
        self.map(body)
    }
    fn v2(
        &mut self,
        secs: u32,
        nanos: u32,
        meta: &[(&str, &str)],
        body: &[(&str, &str)],
    ) -> &mut Self {
        encode::write_array_len(&mut self.0, 2).unwrap();
        encode::write_array_len(&mut self.0, 2).unwrap();
        self.event_time(secs, nanos);
        self.map(meta);
        self.map(body)
    }
    fn map(&mut self, entries: &[(&str, &str)]) -> &mut Self {
        encode::write_map_len(&mut self.0, entries.len() as u32).unwrap();
        for (k, v) in entries {
            encode::write_str(&mut self.0, k).unwrap();
            encode::write_str(&mut self.0, v).unwrap();
        }
        self
    }
}

#[test]
fn decodes_both_layouts_in_one_chunk() {
    let mut c = Chunk::default();
    c.v1(100, &[("log", "legacy")]);
    c.v2(200, 7, &[("otel", "x")], &[("log", "v2")]);
    let d = decode_chunk(c.0.clone()).unwrap();
    assert_eq!(d.records.len(), 2);
    let (first, second) = (d.records.get(0).unwrap(), d.records.get(1).unwrap());
    assert_eq!(first.time, EventTime::new(100, 0));
    assert!(first.metadata.is_empty());
    assert_eq!(first.body.to_json_map()["log"], "legacy");
    assert_eq!(second.time, EventTime::new(200, 7));
    assert_eq!(second.metadata.to_json_map()["otel"], "x");
    assert_eq!(second.body.to_json_map()["log"], "v2");
    assert_eq!(d.anomalies, Anomalies::default());
}

#[test]
fn integer_and_float_timestamps() {
    let mut buf = Vec::new();
    encode::write_array_len(&mut buf, 2).unwrap();
    encode::write_uint(&mut buf, 1_700_000_000).unwrap();
    encode::write_map_len(&mut buf, 0).unwrap();
    encode::write_array_len(&mut buf, 2).unwrap();
    encode::write_f64(&mut buf, 1_700_000_000.5).unwrap();
    encode::write_map_len(&mut buf, 0).unwrap();
    let d = decode_chunk(buf.clone()).unwrap();
    assert_eq!(
        d.records.get(0).unwrap().time,
        EventTime::new(1_700_000_000, 0)
    );
    assert_eq!(
        d.records.get(1).unwrap().time,
        EventTime::new(1_700_000_000, 500_000_000)
    );
}

#[test]
fn group_markers_are_skipped_not_emitted() {
    let mut c = Chunk::default();
    for secs in [0xFFFF_FFFF, 0xFFFF_FFFE] {
        encode::write_array_len(&mut c.0, 2).unwrap();
        encode::write_array_len(&mut c.0, 2).unwrap();
        c.event_time(secs, 0);
        c.map(&[("resource", "r")]);
        c.map(&[("scope", "s")]);
    }
    c.v2(5, 0, &[], &[("log", "inside group")]);
    encode::write_array_len(&mut c.0, 2).unwrap();
    encode::write_sint(&mut c.0, -1).unwrap();
    c.map(&[]);
    let d = decode_chunk(c.0.clone()).unwrap();
    assert_eq!(d.records.len(), 1);
    assert_eq!(d.anomalies.group_markers, 3);
    assert_eq!(d.anomalies.skipped_records(), 0);
}

#[test]
fn non_map_bodies_are_counted_and_the_rest_survives() {
    let mut c = Chunk::default();
    encode::write_array_len(&mut c.0, 2).unwrap();
    c.event_time(1, 0);
    encode::write_str(&mut c.0, "not a map").unwrap();
    encode::write_str(&mut c.0, "stray").unwrap();
    c.v1(2, &[("log", "ok")]);
    let d = decode_chunk(c.0.clone()).unwrap();
    assert_eq!(d.records.len(), 1);
    assert_eq!(d.anomalies.non_map_bodies, 1);
    assert_eq!(d.anomalies.not_events, 1);
    assert!(
        d.anomalies
            .describe()
            .unwrap()
            .contains("1 records whose body is not a map")
    );
}

#[test]
fn truncation_anywhere_is_an_error_never_a_panic() {
    let mut c = Chunk::default();
    c.v2(1, 2, &[("k", "v")], &[("log", "hello"), ("n", "1")]);
    for cut in 1..c.0.len() {
        assert!(
            matches!(
                decode_chunk(c.0[..cut].to_vec()),
                Err(DecodeError::Truncated { .. })
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn reserved_byte_is_rejected() {
    let err = decode_chunk(vec![0x92, 0xc1]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidMarker {
            offset: 1,
            byte: 0xc1
        }
    );
}

#[test]
fn lying_lengths_do_not_allocate_or_hang() {
    // A map claiming 4 billion entries in a 10-byte chunk.
    let mut buf = vec![0x92, 0x01, 0xdf];
    buf.extend_from_slice(&u32::MAX.to_be_bytes());
    buf.extend_from_slice(&[0xa1, b'k', 0x01]);
    assert!(matches!(
        decode_chunk(buf.clone()),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn deep_nesting_is_cut_without_recursion() {
    let depth = 10_000;
    let mut buf = vec![0x92, 0x01, 0x81, 0xa1, b'k'];
    buf.extend(std::iter::repeat_n(0x91u8, depth));
    buf.push(0xc0);
    let d = decode_chunk(buf.clone()).unwrap();
    assert_eq!(d.anomalies.too_deep_values, 1);
    let body = d.records.get(0).unwrap().body.to_json_map();
    let mut v = &body["k"];
    let mut levels = 0;
    while let Value::Array(items) = v {
        v = &items[0];
        levels += 1;
    }
    assert_eq!(v, &json!(DEPTH_PLACEHOLDER));
    assert!(levels < MAX_DEPTH);
}

#[test]
fn odd_values_become_json_with_counts() {
    let mut buf = vec![0x92, 0x01, 0x85];
    encode::write_str(&mut buf, "nan").unwrap();
    encode::write_f64(&mut buf, f64::NAN).unwrap();
    encode::write_str(&mut buf, "bin").unwrap();
    encode::write_bin(&mut buf, b"\xffab").unwrap();
    encode::write_str(&mut buf, "ext").unwrap();
    encode::write_ext_meta(&mut buf, 2, 5).unwrap();
    buf.extend_from_slice(b"zz");
    encode::write_uint(&mut buf, 7).unwrap();
    encode::write_str(&mut buf, "int key").unwrap();
    encode::write_str(&mut buf, "neg").unwrap();
    encode::write_sint(&mut buf, -300).unwrap();
    let d = decode_chunk(buf.clone()).unwrap();
    let body = d.records.get(0).unwrap().body.to_json_map();
    assert_eq!(body["nan"], Value::Null);
    assert_eq!(body["bin"], "\u{fffd}ab");
    assert_eq!(body["ext"], Value::Null);
    assert_eq!(body["7"], "int key");
    assert_eq!(body["neg"], -300);
    assert_eq!(d.anomalies.non_finite_floats, 1);
    assert_eq!(d.anomalies.invalid_utf8, 1);
    assert_eq!(d.anomalies.ext_values, 1);
}

#[test]
fn maps_used_as_keys_do_not_grow_exponentially() {
    // Found by the fuzzer (fuzz/targets/decode_chunk): 52 nested one-entry maps, each the
    // key of the one around it. Unbounded, the key text doubles per level.
    let mut buf = vec![0x92, 0x2a, 0x81];
    buf.extend(std::iter::repeat_n(0x81u8, 52));
    buf.extend(std::iter::repeat_n(0xa0u8, 53));
    buf.extend(std::iter::repeat_n(0xa0u8, 53));
    let d = decode_chunk(buf.clone()).unwrap();
    let body = d.records.get(0).unwrap().body;
    let (key, _) = body.iter().next().unwrap();
    assert!(key.text().len() <= MAX_KEY_TEXT, "{}", key.text().len());
    let mut json = Vec::new();
    body.write_json(&mut json);
    assert!(json.len() < 2 * MAX_KEY_TEXT, "{}", json.len());
}

#[test]
fn a_map_with_many_repeated_keys_is_decoded_in_linear_time() {
    // 300,000 distinct keys, then the first one again: neither the duplicate check nor
    // the de-duplicated walk may be quadratic (this would take hours).
    let n = 300_000u32;
    let mut buf = vec![0x92, 0x01, 0xdf];
    buf.extend_from_slice(&(n + 1).to_be_bytes());
    for i in 0..n {
        encode::write_str(&mut buf, &format!("k{i}")).unwrap();
        encode::write_uint(&mut buf, 1).unwrap();
    }
    encode::write_str(&mut buf, "k0").unwrap();
    encode::write_uint(&mut buf, 2).unwrap();
    let d = decode_chunk(buf).unwrap();
    let body = d.records.get(0).unwrap().body;
    assert_eq!(body.iter().count(), n as usize);
    assert_eq!(body.iter().next().unwrap().1, ValueRef::UInt(2));
    assert_eq!(body.get("k0"), Some(ValueRef::UInt(2)));
}

#[test]
fn estimate_bounds_the_copy_and_its_index() {
    let mut c = Chunk::default();
    c.v2(1, 2, &[], &[("log", "a")]);
    c.v2(1, 2, &[], &[("log", "b"), ("n", "1")]);
    // 2 events of 7 and 9 values (array, [time, meta], time, meta, body and its entries).
    assert_eq!(
        decoded_size_estimate(&c.0),
        c.0.len() as u64 + 16 / 3 * ENTRY_BYTES as u64 + 3 * SLOT_BYTES as u64
    );
    assert!(decoded_size_estimate(&c.0) >= c.0.len() as u64 + 2 * ENTRY_BYTES as u64);
}

#[test]
fn empty_chunk_is_empty() {
    let d = decode_chunk(Vec::new()).unwrap();
    assert!(d.records.is_empty());
}
