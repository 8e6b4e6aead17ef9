//! How deep a record may nest. Parsing and dropping a value recurse once per level, and WAMR's
//! default stack for a module is small, so anything deeper is refused before it is parsed
//! (msgpack in its decoder; JSON by [`json_exceeds`], a scan that does not recurse).

// Levels of arrays/maps a record may have: `fanout_contract::view::MAX_DEPTH`, the limit every
// part of flb-fanout keeps.

/// [`json_exceeds`], quick for the usual record: text with at most `max` opening brackets in
/// all cannot nest deeper, and counting them takes a few operations per eight bytes, where the
/// exact scan takes several per byte (an interpreter pays for each).
pub fn json_may_exceed(text: &[u8], max: usize) -> bool {
    opening_brackets_at_least(text) > max && json_exceeds(text, max)
}

/// At least the number of `{` and `[` bytes in `text` (a byte 0x7c or 0x5c right after one may
/// count too), a word at a time.
fn opening_brackets_at_least(text: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Flags every zero byte of `x`, and possibly a 0x01 byte above one (the borrow).
    let zero_bytes = |x: u64| (x.wrapping_sub(ONES) & !x & HIGHS).count_ones() as usize;
    let words = text.chunks_exact(8);
    let tail = words.remainder();
    let mut count = tail.iter().filter(|&&b| b == b'{' || b == b'[').count();
    for word in words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        count += zero_bytes(word ^ (ONES * u64::from(b'{')));
        count += zero_bytes(word ^ (ONES * u64::from(b'[')));
    }
    count
}

/// Whether JSON text opens more than `max` arrays/objects at once (brackets inside strings do
/// not count). Invalid JSON is left to the parser to report.
pub fn json_exceeds(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `text` with every array or object that opens at depth `max` or deeper (the record itself is
/// depth 1) replaced by `fanout_contract::view::DEPTH_PLACEHOLDER`, as the core writes a record
/// from msgpack: a record too deep keeps its other fields and is enriched like any other,
/// whichever event format the host uses. Strings are copied as they are; text that is not JSON
/// stays not JSON, for the parser to report.
pub fn cap_depth(text: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    // The depth of the container being left out, while one is.
    let mut skipping: Option<usize> = None;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if skipping.is_none() && depth >= max {
                        skipping = Some(depth);
                        out.push(b'"');
                        out.extend_from_slice(fanout_contract::view::DEPTH_PLACEHOLDER.as_bytes());
                        out.push(b'"');
                    }
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if skipping.is_some_and(|from| depth < from) {
                        skipping = None;
                        continue;
                    }
                }
                _ => {}
            }
        }
        if skipping.is_none() {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout_contract::view::{DEPTH_PLACEHOLDER, MAX_DEPTH};

    #[test]
    fn containers_at_the_limit_become_the_placeholder() {
        let capped = cap_depth(br#"{"a":[{"b":"[{"}],"c":[1,[2]],"d":3}"#, 3);
        assert_eq!(
            String::from_utf8(capped).unwrap(),
            format!(r#"{{"a":["{DEPTH_PLACEHOLDER}"],"c":[1,"{DEPTH_PLACEHOLDER}"],"d":3}}"#)
        );
        let shallow = br#"{"a":[1,{"b":"x\"]"}]}"#;
        assert_eq!(cap_depth(shallow, 4), shallow);
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let capped: serde_json::Value =
            serde_json::from_slice(&cap_depth(deep.as_bytes(), MAX_DEPTH)).unwrap();
        let (mut value, mut levels) = (&capped["x"], 0);
        while let Some(inner) = value.as_array() {
            value = &inner[0];
            levels += 1;
        }
        assert_eq!(
            (value.as_str(), levels),
            (Some(DEPTH_PLACEHOLDER), MAX_DEPTH - 2)
        );
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert!(!json_exceeds(br#"{"a":[[["x"]]]}"#, 4));
        assert!(json_exceeds(br#"{"a":[[[["x"]]]]}"#, 4));
        assert!(!json_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 2));
        assert!(json_exceeds("[".repeat(100_000).as_bytes(), MAX_DEPTH));
    }

    #[test]
    fn the_quick_check_agrees_with_the_exact_one() {
        for text in [
            "[".repeat(65),
            "[".repeat(64),
            format!("{{\"a\":{}1{}}}", "[".repeat(63), "]".repeat(63)),
            format!("{{\"a\":{}1{}}}", "[".repeat(64), "]".repeat(64)),
            format!("{{\"s\":\"{}\"}}", "{[".repeat(100)),
            "{\"a\":1}".to_owned(),
        ] {
            assert_eq!(
                json_may_exceed(text.as_bytes(), MAX_DEPTH),
                json_exceeds(text.as_bytes(), MAX_DEPTH),
                "{text}"
            );
        }
        // Never fewer than there are, wherever they fall in a word.
        for len in 0..40 {
            for at in 0..len {
                let mut text = vec![b'a'; len];
                text[at] = b'{';
                assert!(opening_brackets_at_least(&text) >= 1);
                text[at] = b'[';
                assert!(opening_brackets_at_least(&text) >= 1);
            }
            let all = vec![b'['; len];
            assert_eq!(opening_brackets_at_least(&all), len);
        }
    }
}
