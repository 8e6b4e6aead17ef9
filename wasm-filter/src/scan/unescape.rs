//! Reading JSON string escapes: a string checked and unescaped in one pass, eight bytes a step
//! ([`unescape`]: what a [`super::Capture`] does, and how escaped keys are read).

use super::{Failure, HIGHS, ONES, Strictness, hex4, unicode_escape, word_at};

/// Flags the bytes of `word` that end a run of a string being unescaped: `"`, `\`, a control
/// character. The lowest flag is exact.
#[inline(always)]
pub(super) fn stops(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// The string starting at `at` (its opening quote), unescaped into `out` (replacing what it
/// held): the index past its closing quote, and whether it may hold a byte of 0x80 or more (the
/// flag may also be set by bytes just past the string). One pass both checks the string, as
/// [`super::string`] does, and unescapes it. `out` is first sized for all of `text` from `at`
/// on: where the string's end is known, pass `text` cut there.
pub fn unescape(text: &[u8], at: usize, out: &mut Vec<u8>) -> Result<(usize, bool), Failure> {
    // The text is never longer than its escaped form: room for it, and for a whole word written
    // past its end, is made once; words are copied eight bytes at a time, a stop or not, and the
    // length is cut back to the text at the end.
    out.clear();
    out.resize(text.len() - at + 8, 0);
    let (mut at, mut to, mut seen) = (at + 1, 0, 0u64);
    loop {
        if at + 8 <= text.len() {
            let word = word_at(text, at);
            out[to..to + 8].copy_from_slice(&word.to_le_bytes());
            seen |= word;
            let stops = stops(word);
            if stops == 0 {
                at += 8;
                to += 8;
                continue;
            }
            let skip = (stops.trailing_zeros() / 8) as usize;
            at += skip;
            to += skip;
        } else {
            while let Some(&b) = text.get(at)
                && b >= 0x20
                && b != b'"'
                && b != b'\\'
            {
                seen |= u64::from(b);
                out[to] = b;
                at += 1;
                to += 1;
            }
        }
        match text.get(at) {
            Some(b'"') => {
                out.truncate(to);
                return Ok((at + 1, seen & HIGHS != 0));
            }
            Some(b'\\') => {
                let byte = SIMPLE_ESCAPES[usize::from(*text.get(at + 1).ok_or(Failure::Invalid)?)];
                if byte != 0 {
                    out[to] = byte;
                    at += 2;
                    to += 1;
                    continue;
                }
                // Structure lets a lone surrogate through; its text is the full path's to judge.
                unicode_escape(text, at, Strictness::Structure)?;
                let (ch, used) = unicode_char(text, at).ok_or(Failure::Unsure)?;
                let mut buf = [0u8; 4];
                let bytes = ch.encode_utf8(&mut buf).as_bytes();
                out[to..to + bytes.len()].copy_from_slice(bytes);
                at += used;
                to += bytes.len();
            }
            // A control character, or the text ended inside the string.
            _ => return Err(Failure::Invalid),
        }
    }
}

/// What each byte after a backslash stands for, 0 where it is not a one-byte escape.
const SIMPLE_ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table[b'b' as usize] = 0x08;
    table[b'f' as usize] = 0x0c;
    table[b'n' as usize] = b'\n';
    table[b'r' as usize] = b'\r';
    table[b't' as usize] = b'\t';
    table
};

/// The character a `\uXXXX` escape (or a surrogate pair of them) at `at` stands for, and how
/// many bytes it takes.
#[cold]
pub(super) fn unicode_char(raw: &[u8], at: usize) -> Option<(char, usize)> {
    if raw.get(at + 1) != Some(&b'u') {
        return None;
    }
    let unit = hex4(raw, at + 2)?;
    let (code, used) = match unit {
        0xD800..=0xDBFF => {
            if raw.get(at + 6..at + 8)? != b"\\u" {
                return None;
            }
            let low = hex4(raw, at + 8)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
            (code, 12)
        }
        0xDC00..=0xDFFF => return None,
        _ => (u32::from(unit), 6),
    };
    Some((char::from_u32(code)?, used))
}
