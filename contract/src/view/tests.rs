use super::*;
use rmp::encode;

fn value(bytes: &[u8]) -> ValueRef<'_> {
    let mut cursor = bytes;
    read(&mut cursor).unwrap()
}

fn json(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    write_json(value(bytes), FIELD_DEPTH, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn maps_walk_in_place_and_later_duplicates_win_on_lookup() {
    let mut buf = Vec::new();
    encode::write_map_len(&mut buf, 3).unwrap();
    encode::write_str(&mut buf, "a").unwrap();
    encode::write_array_len(&mut buf, 2).unwrap();
    encode::write_uint(&mut buf, 1).unwrap();
    encode::write_sint(&mut buf, -2).unwrap();
    encode::write_str(&mut buf, "b").unwrap();
    encode::write_bool(&mut buf, true).unwrap();
    encode::write_str(&mut buf, "a").unwrap();
    encode::write_str(&mut buf, "last").unwrap();
    let ValueRef::Map(map) = value(&buf) else {
        panic!("a map")
    };
    assert_eq!(map.len(), 3);
    assert_eq!(map.get("a"), Some(ValueRef::Str(b"last")));
    let first_a = map.iter().find(|(key, _)| key.is("a")).map(|(_, v)| v);
    assert!(matches!(first_a, Some(ValueRef::Array(_))));
    assert_eq!(map.get("b"), Some(ValueRef::Bool(true)));
    assert_eq!(map.get("c"), None);
    assert_eq!(json(&buf), r#"{"a":[1,-2],"b":true,"a":"last"}"#);
}

#[test]
fn json_repairs_what_json_cannot_say() {
    let mut buf = Vec::new();
    encode::write_array_len(&mut buf, 5).unwrap();
    encode::write_f64(&mut buf, f64::NAN).unwrap();
    buf.extend_from_slice(&[0xa2, 0xff, b'x']); // fixstr, invalid UTF-8
    encode::write_ext_meta(&mut buf, 8, 0).unwrap();
    buf.extend_from_slice(&1u32.to_be_bytes());
    buf.extend_from_slice(&500_000_000u32.to_be_bytes());
    encode::write_ext_meta(&mut buf, 1, 5).unwrap();
    buf.push(7);
    encode::write_bin(&mut buf, b"bin\n").unwrap();
    assert_eq!(json(&buf), "[null,\"\u{fffd}x\",1.5,null,\"bin\\n\"]");
}

#[test]
fn non_string_keys_become_their_json_text() {
    let mut buf = Vec::new();
    encode::write_map_len(&mut buf, 1).unwrap();
    encode::write_uint(&mut buf, 7).unwrap();
    encode::write_str(&mut buf, "seven").unwrap();
    assert_eq!(json(&buf), r#"{"7":"seven"}"#);
    let ValueRef::Map(map) = value(&buf) else {
        panic!("a map")
    };
    assert_eq!(map.get("7"), Some(ValueRef::Str(b"seven")));
}

#[test]
fn maps_used_as_keys_stop_at_the_depth_limit_and_the_key_length_limit() {
    // Each level is a one-entry map whose key is the next level: text would double per
    // level, and recursion would follow the chain, without both limits.
    let levels = 10_000;
    let mut buf = vec![0x81u8; levels];
    buf.extend(std::iter::repeat_n(0xa0u8, 2 * levels));
    let text = json(&buf);
    assert!(text.len() < 2 * MAX_KEY_TEXT, "{}", text.len());
}

#[test]
fn containers_past_the_depth_limit_become_a_placeholder() {
    let mut buf = Vec::new();
    for _ in 0..70 {
        encode::write_array_len(&mut buf, 1).unwrap();
    }
    encode::write_uint(&mut buf, 1).unwrap();
    let text = json(&buf);
    // Arrays at depths 2 to 63, then the placeholder (which has a '[' of its own).
    assert_eq!(text.matches('[').count(), MAX_DEPTH - FIELD_DEPTH + 1);
    assert!(text.contains(DEPTH_PLACEHOLDER));
}

#[test]
fn truncated_bytes_end_the_walk_without_panicking() {
    let mut buf = Vec::new();
    encode::write_map_len(&mut buf, 2).unwrap();
    encode::write_str(&mut buf, "a").unwrap();
    encode::write_str(&mut buf, "b").unwrap();
    let Some(ValueRef::Map(map)) = peek(&buf) else {
        panic!("a map, read without its end")
    };
    assert_eq!(map.iter().count(), 1);
    let mut cursor = &[0xc1u8][..];
    assert!(read(&mut cursor).is_none());
    let mut cursor = &[0xdbu8, 0, 0, 0, 9, b'x'][..];
    assert!(read(&mut cursor).is_none());
}
