//! How deep a record may nest. Parsing and dropping a value recurse once per level, and WAMR's
//! default stack for a module is small, so anything deeper is refused before it is parsed
//! (msgpack in its decoder; JSON by [`json_exceeds`], a scan that does not recurse).

/// Levels of arrays/maps a record may have.
pub const MAX_DEPTH: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert!(!json_exceeds(br#"{"a":[[["x"]]]}"#, 4));
        assert!(json_exceeds(br#"{"a":[[[["x"]]]]}"#, 4));
        assert!(!json_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 2));
        assert!(json_exceeds("[".repeat(100_000).as_bytes(), MAX_DEPTH));
    }
}
