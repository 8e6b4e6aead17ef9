//! A JSON object scanner built for the interpreter: it checks that a text is one JSON object and
//! notes where each top-level member lies, without building values.
//!
//! Why not serde_json here: WAMR's interpreter pays for every wasm instruction, and a
//! serde_json pass (even into `IgnoredAny`) spends several per byte, where this one looks at
//! eight bytes of a string per step (`u64` word tricks) and decodes nothing. serde_json stays
//! the judge: everything this scanner is unsure of goes to the full path (serde_json parses,
//! the filter enriches, serde_json writes), and the tests and the fuzz target check that its
//! verdicts agree with serde_json's.
//!
//! Two strictnesses:
//! - [`Strictness::Structure`] is what serde_json checks when it skips a value: the grammar,
//!   escapes that exist, no control characters in strings, any `\uXXXX`. The host's JSON is
//!   checked this way (its escapes are handed back as it wrote them).
//! - [`Strictness::Value`] is what parsing into `serde_json::Value` accepts: also `\uXXXX`
//!   surrogates in pairs. Numbers serde_json might find out of range (an exponent, more than
//!   [`MAX_PLAIN_NUMBER`] characters) are left to it ([`Failure::Unsure`]). A JSON log line is
//!   checked this way before it is merged.
//!
//! [`object_capturing`] also unescapes the string values of keys the caller names as it passes
//! them ([`Capture`]): the `log` string that holds a JSON log line is then read once to both
//! check it and unescape it, not once for each. Each member keeps its key's first eight bytes
//! ([`Member::key_word`]), which tell most keys apart without reading them again.
//!
//! Nesting deeper than `fanout_contract::view::MAX_DEPTH` is left to the full path, which has the
//! rules for it. Bytes of 0x80 and up are allowed in strings and reported
//! ([`Scanned::non_ascii`]): the caller validates UTF-8 only when there are any.

use std::ops::Range;

use fanout_contract::view::MAX_DEPTH;

mod unescape;
pub use unescape::unescape;
use unescape::unicode_char;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Strictness {
    Structure,
    Value,
}

/// Why a text is not scanned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    /// Not one JSON object: serde_json rejects it too.
    Invalid,
    /// The full path decides (deep nesting, a number serde_json may not take).
    Unsure,
}

/// One top-level member: byte ranges in the scanned text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The key, quotes included.
    pub key: Range<usize>,
    /// The value, as written.
    pub value: Range<usize>,
    /// The key holds an escape (`\`): its raw bytes are not its text.
    pub key_escaped: bool,
    /// The key's first eight raw bytes (all of a shorter key), zero-padded: most keys are told
    /// apart by their length and this word, without reading them again.
    pub key_word: u64,
}

impl Member {
    /// The key's raw text, without quotes.
    pub fn key_body<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.key.start + 1..self.key.end - 1]
    }

    /// The whole member, `"key":value`, as written.
    pub fn span(&self) -> Range<usize> {
        self.key.start..self.value.end
    }
}

/// What a successful scan found besides the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Just past the object's closing brace.
    pub end: usize,
    /// Some string holds a byte of 0x80 or more (UTF-8 still to validate).
    pub non_ascii: bool,
}

/// The longest number a value scan takes as it is (serde_json's range is wider; longer ones go
/// to serde_json).
pub const MAX_PLAIN_NUMBER: usize = 300;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags the bytes of `word` that end a run of plain string content: `"`, `\`, a control
/// character, or a byte of 0x80 and up. The lowest flag is exact; flags above it may not be.
#[inline(always)]
fn string_stops(word: u64) -> u64 {
    unescape::stops(word) | (word & HIGHS)
}

/// The eight bytes at `at`, little-endian.
#[inline(always)]
pub fn word_at(text: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&text[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// The first eight of the `len` bytes at `at` (all of them when fewer), zero-padded, as
/// [`Member::key_word`] holds them.
#[inline(always)]
pub fn key_word(text: &[u8], at: usize, len: usize) -> u64 {
    if at + 8 <= text.len() {
        let word = word_at(text, at);
        if len >= 8 {
            word
        } else {
            word & ((1u64 << (len * 8)) - 1)
        }
    } else {
        let mut word = 0u64;
        for (index, &b) in text[at..at + len.min(8)].iter().enumerate() {
            word |= u64::from(b) << (index * 8);
        }
        word
    }
}

/// [`key_word`] of a key's whole text, at compile time.
pub const fn key_word_of(key: &[u8]) -> u64 {
    let mut word = 0u64;
    let mut index = 0;
    while index < key.len() && index < 8 {
        word |= (key[index] as u64) << (index * 8);
        index += 1;
    }
    word
}

/// The index of the first byte at or after `at` that ends plain string content.
#[inline(always)]
fn next_string_stop(text: &[u8], mut at: usize) -> usize {
    while at + 8 <= text.len() {
        let stops = string_stops(word_at(text, at));
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < text.len() {
        let b = text[at];
        if b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b) {
            return at;
        }
        at += 1;
    }
    at
}

#[inline(always)]
fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(at) {
        at += 1;
    }
    at
}

fn hex4(text: &[u8], at: usize) -> Option<u16> {
    let digits = text.get(at..at + 4)?;
    let mut value = 0u16;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        value = value << 4 | u16::from(nibble);
    }
    Some(value)
}

/// A string starting at `at` (its opening quote): the index past its closing quote, whether it
/// holds an escape, whether it holds a byte of 0x80 or more.
///
/// A word's flagged bytes are handled one after the other without reading the word again, so a
/// string dense with escapes (a JSON log line inside `log`) costs a few operations per escape.
#[inline(always)]
fn string(text: &[u8], at: usize, strictness: Strictness) -> Result<(usize, bool, bool), Failure> {
    let (mut at, mut escaped, mut non_ascii) = (at + 1, false, false);
    'words: while at + 8 <= text.len() {
        let mut stops = string_stops(word_at(text, at));
        while stops != 0 {
            let offset = (stops.trailing_zeros() / 8) as usize;
            let here = at + offset;
            match text[here] {
                b'"' => return Ok((here + 1, escaped, non_ascii)),
                b'\\' => {
                    escaped = true;
                    match text.get(here + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            if offset == 7 {
                                at = here + 2;
                                continue 'words;
                            }
                            // The backslash and the byte it escapes.
                            stops &= !(0xFFFF << (offset * 8));
                        }
                        _ => {
                            at = unicode_escape(text, here, strictness)?;
                            continue 'words;
                        }
                    }
                }
                b if b < 0x20 => return Err(Failure::Invalid),
                b => {
                    // High bytes; or a flag set by a borrow, which only a byte right after a
                    // quote or a backslash gets (both handled above).
                    non_ascii |= b >= 0x80;
                    stops &= !(0xFF << (offset * 8));
                }
            }
        }
        at += 8;
    }
    loop {
        at = next_string_stop(text, at);
        match text.get(at) {
            None => return Err(Failure::Invalid),
            Some(b'"') => return Ok((at + 1, escaped, non_ascii)),
            Some(b'\\') => {
                escaped = true;
                at = match text.get(at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at + 2,
                    _ => unicode_escape(text, at, strictness)?,
                };
            }
            Some(b) if *b < 0x20 => return Err(Failure::Invalid),
            Some(_) => {
                non_ascii = true;
                at += 1;
            }
        }
    }
}

/// A `\uXXXX` escape at `at` (its backslash; any other escape there is invalid): the index past
/// it. Structure checks the four hex digits; Value also that surrogates come in pairs, as
/// decoding it would ([`unicode_char`]).
#[cold]
fn unicode_escape(text: &[u8], at: usize, strictness: Strictness) -> Result<usize, Failure> {
    match strictness {
        Strictness::Structure if text.get(at + 1) == Some(&b'u') => {
            hex4(text, at + 2).map(|_| at + 6).ok_or(Failure::Invalid)
        }
        Strictness::Structure => Err(Failure::Invalid),
        Strictness::Value => unicode_char(text, at)
            .map(|(_, used)| at + used)
            .ok_or(Failure::Invalid),
    }
}

/// A number starting at `at`: the index past it.
#[inline(always)]
fn number(text: &[u8], start: usize, strictness: Strictness) -> Result<usize, Failure> {
    let digits = |mut at: usize| {
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        at
    };
    let mut at = start;
    if text.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match text.get(at) {
        Some(b'0') => at + 1,
        Some(b'1'..=b'9') => digits(at + 1),
        _ => return Err(Failure::Invalid),
    };
    if text.get(at) == Some(&b'.') {
        let after = digits(at + 1);
        if after == at + 1 {
            return Err(Failure::Invalid);
        }
        at = after;
    }
    if let Some(b'e' | b'E') = text.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = text.get(at) {
            at += 1;
        }
        let after = digits(at);
        if after == at {
            return Err(Failure::Invalid);
        }
        if strictness == Strictness::Value {
            return Err(Failure::Unsure);
        }
        at = after;
    }
    if strictness == Strictness::Value && at - start > MAX_PLAIN_NUMBER {
        return Err(Failure::Unsure);
    }
    Ok(at)
}

#[inline(always)]
fn literal(text: &[u8], at: usize) -> Result<usize, Failure> {
    for word in [&b"true"[..], b"false", b"null"] {
        if text[at..].starts_with(word) {
            return Ok(at + word.len());
        }
    }
    Err(Failure::Invalid)
}

/// Scans the object starting at `start` (after optional whitespace), pushing its top-level
/// members onto `members` (cleared first). What follows the object is the caller's to check.
pub fn object(
    text: &[u8],
    start: usize,
    strictness: Strictness,
    members: &mut Vec<Member>,
) -> Result<Scanned, Failure> {
    object_capturing::<0>(text, start, strictness, members, &mut [])
}

/// A top-level string member whose text the scan unescapes as it passes it, so that a string
/// the caller reads next (a JSON log line inside `log`) is not gone over twice.
pub struct Capture {
    /// The member's key, as written (a key holding an escape is never captured), at most eight
    /// bytes: [`key_word`] and its length.
    key_word: u64,
    key_len: usize,
    /// Whether a value (the text from its opening quote on) is worth unescaping.
    pub wants: fn(&[u8]) -> bool,
    /// The value's text, unescaped, when `member` is set.
    pub text: Vec<u8>,
    /// The index of the member whose value is in `text`.
    pub member: Option<usize>,
}

impl Capture {
    /// Captures the string value of `key` (eight bytes at most) when `wants` says so.
    pub const fn new(key: &'static [u8], wants: fn(&[u8]) -> bool) -> Capture {
        assert!(key.len() <= 8);
        Capture {
            key_word: key_word_of(key),
            key_len: key.len(),
            wants,
            text: Vec::new(),
            member: None,
        }
    }
}

/// [`object`], unescaping the string values `captures` name. A captured value that does not
/// unescape (a lone surrogate, which [`Strictness::Structure`] lets through) is
/// [`Failure::Unsure`].
pub fn object_capturing<const N: usize>(
    text: &[u8],
    start: usize,
    strictness: Strictness,
    members: &mut Vec<Member>,
    captures: &mut [Capture; N],
) -> Result<Scanned, Failure> {
    members.clear();
    for capture in captures.iter_mut() {
        capture.member = None;
    }
    let mut at = skip_whitespace(text, start);
    if text.get(at) != Some(&b'{') {
        return Err(Failure::Invalid);
    }
    let mut non_ascii = false;
    at = skip_whitespace(text, at + 1);
    if text.get(at) == Some(&b'}') {
        return Ok(Scanned {
            end: at + 1,
            non_ascii,
        });
    }
    // The top level, member by member (the usual record is flat): straight-line code, and
    // containers inside it handed to `nested`.
    loop {
        if text.get(at) != Some(&b'"') {
            return Err(Failure::Invalid);
        }
        // A key of fewer than eight plain bytes (most are) is read in one word, which is also
        // its key word.
        let short = (at + 9 <= text.len())
            .then(|| word_at(text, at + 1))
            .and_then(|word| {
                let stops = string_stops(word);
                let offset = (stops.trailing_zeros() / 8) as usize;
                (stops != 0 && text[at + 1 + offset] == b'"')
                    .then(|| (at + offset + 2, word & ((1u64 << (offset * 8)) - 1)))
            });
        let (key_end, key_escaped, key_word) = match short {
            Some((key_end, key_word)) => (key_end, false, key_word),
            None => {
                let (key_end, key_escaped, high) = string(text, at, strictness)?;
                non_ascii |= high;
                (
                    key_end,
                    key_escaped,
                    key_word(text, at + 1, key_end - at - 2),
                )
            }
        };
        let key = at..key_end;
        let key_len = key.len() - 2;
        at = skip_whitespace(text, key_end);
        if text.get(at) != Some(&b':') {
            return Err(Failure::Invalid);
        }
        let value_start = skip_whitespace(text, at + 1);
        let mut captured = None;
        if !key_escaped && text.get(value_start) == Some(&b'"') {
            for (index, capture) in captures.iter().enumerate() {
                // The first member of that key only: each capture makes room for the rest of the
                // text, and a key twice goes to the full path anyway.
                if capture.member.is_none()
                    && capture.key_word == key_word
                    && capture.key_len == key_len
                    && (capture.wants)(&text[value_start..])
                {
                    captured = Some(index);
                    break;
                }
            }
        }
        let (value_end, high) = match (captured, text.get(value_start)) {
            (Some(index), _) => {
                let capture = &mut captures[index];
                capture.member = Some(members.len());
                unescape(text, value_start, &mut capture.text)?
            }
            (None, Some(b'{' | b'[')) => nested(text, value_start, strictness)?,
            (None, _) => scalar(text, value_start, strictness)?,
        };
        non_ascii |= high;
        members.push(Member {
            key,
            value: value_start..value_end,
            key_escaped,
            key_word,
        });
        at = skip_whitespace(text, value_end);
        match text.get(at) {
            Some(b',') => at = skip_whitespace(text, at + 1),
            Some(b'}') => {
                return Ok(Scanned {
                    end: at + 1,
                    non_ascii,
                });
            }
            _ => return Err(Failure::Invalid),
        }
    }
}

/// The array or object starting at `start` (a member's value): the index past it, and whether
/// it holds high bytes. Iterative: nesting costs a bit, not a stack frame.
fn nested(text: &[u8], start: usize, strictness: Strictness) -> Result<(usize, bool), Failure> {
    // Bit d says whether the container at depth d + 1 (below the top-level object) is an
    // object; the top-level object is depth 1, so `depth` starts at 2.
    let mut objects: u64 = u64::from(text[start] == b'{') << 1;
    let mut depth = 2usize;
    let mut non_ascii = false;
    let mut at = start + 1;
    // Right after `{` or `[`: the container may close at once.
    let mut expect_key_or_close = true;
    loop {
        at = skip_whitespace(text, at);
        let in_object = (objects >> (depth - 1)) & 1 == 1;
        let closer = if in_object { b'}' } else { b']' };
        if expect_key_or_close && text.get(at) == Some(&closer) {
            at += 1;
            depth -= 1;
            if depth == 1 {
                return Ok((at, non_ascii));
            }
        } else {
            if in_object {
                if text.get(at) != Some(&b'"') {
                    return Err(Failure::Invalid);
                }
                let (end, _, high) = string(text, at, strictness)?;
                non_ascii |= high;
                at = skip_whitespace(text, end);
                if text.get(at) != Some(&b':') {
                    return Err(Failure::Invalid);
                }
                at = skip_whitespace(text, at + 1);
            }
            if let Some(open @ (b'{' | b'[')) = text.get(at) {
                if depth >= MAX_DEPTH {
                    return Err(Failure::Unsure);
                }
                let is_object = u64::from(*open == b'{');
                objects = (objects & !(1 << depth)) | (is_object << depth);
                depth += 1;
                at += 1;
                expect_key_or_close = true;
                continue;
            }
            let (end, high) = scalar(text, at, strictness)?;
            non_ascii |= high;
            at = end;
        }
        // A value (or a container) just ended inside the container at `depth`.
        at = skip_whitespace(text, at);
        let in_object = (objects >> (depth - 1)) & 1 == 1;
        match (text.get(at), in_object) {
            (Some(b','), _) => {
                at += 1;
                expect_key_or_close = false;
            }
            (Some(b'}'), true) | (Some(b']'), false) => {
                // Closed by the next turn.
                expect_key_or_close = true;
            }
            _ => return Err(Failure::Invalid),
        }
    }
}

/// A string, number or literal at `at`: the index past it and whether it holds high bytes.
#[inline(always)]
fn scalar(text: &[u8], at: usize, strictness: Strictness) -> Result<(usize, bool), Failure> {
    match text.get(at) {
        Some(b'"') => string(text, at, strictness).map(|(end, _, high)| (end, high)),
        Some(b'-' | b'0'..=b'9') => number(text, at, strictness).map(|end| (end, false)),
        Some(b't' | b'f' | b'n') => literal(text, at).map(|end| (end, false)),
        _ => Err(Failure::Invalid),
    }
}

#[cfg(test)]
mod tests;
