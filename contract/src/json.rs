//! JSON text: strings escaped exactly as serde_json escapes them, and numbers spelt as it spells
//! them, written straight into a buffer. Strings are looked at a word (8 bytes) at a time;
//! invalid UTF-8 becomes U+FFFD; NaN and infinities, which JSON cannot say, become `null`.

/// Writes `text` as an escaped JSON string.
pub fn write_str(text: &str, out: &mut Vec<u8>) {
    write_text(text.as_bytes(), out);
}

/// What [`write_text`] must look at in a byte: 0 for bytes copied as they are, `b'u'` for
/// control characters (`\u00XX`), the escape letter for `"`, `\\` and the usual controls, and
/// `NON_ASCII` for bytes of a multi-byte character (which need UTF-8 validation).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\x08' as usize] = b'b';
    table[b'\t' as usize] = b't';
    table[b'\n' as usize] = b'n';
    table[b'\x0c' as usize] = b'f';
    table[b'\r' as usize] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    let mut b = 0x80;
    while b < 0x100 {
        table[b] = NON_ASCII;
        b += 1;
    }
    table
};
const NON_ASCII: u8 = 1;

/// Writes msgpack string bytes as a JSON string, escaped as serde_json escapes them, in one
/// pass: ASCII text (the common case) is never validated separately, UTF-8 is checked once
/// from the first byte above 0x7f, and text that is not UTF-8 is repaired with U+FFFD.
/// Measured: validating and escaping in two passes (`from_utf8`, then serde_json) was ~15 % of
/// the pipeline on small records; serde_json only escapes `&str`.
pub fn write_text(bytes: &[u8], out: &mut Vec<u8>) {
    let opening = out.len();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut utf8_checked = false;
    let mut at = 0;
    while at < bytes.len() {
        // Eight bytes at a time while none needs a look (most text).
        while let Some(word) = bytes.get(at..at + 8) {
            if needs_look(
                u64::from_le_bytes(word.try_into().unwrap_or_default()),
                !utf8_checked,
            ) {
                break;
            }
            at += 8;
        }
        // The last few bytes (all of most keys and short values) as one word.
        if at + 8 > bytes.len() && !needs_look(last_word(bytes, at), !utf8_checked) {
            break;
        }
        let Some(&byte) = bytes.get(at) else { break };
        match ESCAPE[byte as usize] {
            0 => {}
            NON_ASCII => {
                // Everything before is ASCII, so `at` starts a character.
                if !utf8_checked {
                    if std::str::from_utf8(&bytes[at..]).is_err() {
                        out.truncate(opening);
                        // Repaired, it is UTF-8: this call does not come back here.
                        write_text(String::from_utf8_lossy(bytes).as_bytes(), out);
                        return;
                    }
                    utf8_checked = true;
                }
            }
            escape => {
                out.extend_from_slice(&bytes[copied..at]);
                out.push(b'\\');
                if escape == b'u' {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"u00");
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0xf)]);
                } else {
                    out.push(escape);
                }
                copied = at + 1;
            }
        }
        at += 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// The bytes of `bytes` from `at` (fewer than eight) in one word, with bytes before them or
/// spaces: read without a copy of variable length.
#[inline]
fn last_word(bytes: &[u8], at: usize) -> u64 {
    let len = bytes.len();
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    if len >= 8 {
        u64::from_le_bytes(bytes[len - 8..].try_into().unwrap_or_default())
    } else if len >= 4 {
        u64::from(u32_at(0)) | u64::from(u32_at(len - 4)) << 32
    } else {
        bytes[at.min(len)..]
            .iter()
            .fold(u64::from_le_bytes([b' '; 8]), |word, &b| {
                word << 8 | u64::from(b)
            })
    }
}

/// Whether any of the eight bytes in `word` is a control character, `"` or `\\` (or, with
/// `non_ascii`, above 0x7f): the usual word-at-a-time tests for a zero or a small byte.
fn needs_look(word: u64, non_ascii: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote =
        (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(word ^ (ONES * u64::from(b'"')));
    let backslash =
        (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(word ^ (ONES * u64::from(b'\\')));
    let high = if non_ascii { word } else { 0 };
    (below_space | quote | backslash | high) & HIGH != 0
}

/// A float as serde_json spells it (zmij, its shortest form), `null` when not finite.
pub fn write_float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An integer.
pub fn write_int(n: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_spelt_as_serde_json_spells_them() {
        let floats = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.5e-7,
            123456789.125,
            1e21,
            1e300,
            -2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1700000000.25,
        ];
        for f in floats {
            let mut ours = Vec::new();
            write_float(f, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&f).unwrap(), "{f}");
        }
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut ours = Vec::new();
            write_float(f, &mut ours);
            assert_eq!(ours, b"null");
        }
        let mut ours = Vec::new();
        write_int(i64::MIN, &mut ours);
        assert_eq!(ours, serde_json::to_vec(&i64::MIN).unwrap());
    }

    #[test]
    fn text_is_escaped_exactly_as_serde_json_escapes_it() {
        let mut samples: Vec<Vec<u8>> = vec![
            b"plain".to_vec(),
            b"".to_vec(),
            b"quote \" backslash \\ slash / tab \t nl \n cr \r bs \x08 ff \x0c".to_vec(),
            (0u8..0x80).collect(),
            "caf\u{e9} \u{1F600} \u{2028} \"x\"".as_bytes().to_vec(),
            b"ascii then \xff\xfe broken \n".to_vec(),
            b"\xc3".to_vec(),
            "\u{e9}\u{0}".as_bytes().to_vec(),
        ];
        samples.push((0u8..=255).collect());
        // Every length a string's last word is read in a different way, with a byte that
        // needs a look at every place (the first or last of a multi-byte character too).
        for len in 0..=20 {
            for at in 0..len {
                for special in [
                    &b"\""[..],
                    b"\\",
                    b"\n",
                    b"\x1f",
                    b"\x7f",
                    b"\xff",
                    "\u{e9}".as_bytes(),
                ] {
                    let mut bytes = vec![b'a'; len];
                    bytes.splice(at..(at + special.len()).min(len), special.iter().copied());
                    samples.push(bytes);
                }
            }
        }
        for bytes in samples {
            let mut ours = Vec::new();
            write_text(&bytes, &mut ours);
            let expected = serde_json::to_vec(&String::from_utf8_lossy(&bytes)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&expected),
                "{bytes:?}"
            );
        }
    }
}
