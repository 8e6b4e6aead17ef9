//! Shortening a record's message until its encoding fits a size limit.
//!
//! Both remote APIs cap the size of one record (Datadog 1 MB per log, Firehose 1000 KiB per
//! record). Rather than lose an over-long log, destinations re-encode it with the message cut
//! at a UTF-8 boundary and a marker appended. Escaping can make the encoded message longer
//! than its raw bytes, so the cut is corrected a few times.

/// Cuts `text` to at most `keep` bytes at a character boundary and appends `marker`.
pub fn cut(text: &str, keep: usize, marker: &str) -> String {
    let mut end = keep.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

/// Finds how many message bytes to keep so that `encode(keep)` (which writes the record with
/// the message cut to `keep` bytes and returns the encoded length) fits `limit`. Returns
/// `None` when even a much shorter message does not fit (the rest of the record is too big).
///
/// Each step measures how many encoded bytes one kept byte costs (escaping can make it up to
/// six) and cuts accordingly, so a few encodings suffice.
pub fn fit(
    limit: usize,
    encoded_len: usize,
    message_len: usize,
    marker: &str,
    mut encode: impl FnMut(usize) -> usize,
) -> Option<usize> {
    let excess = encoded_len.saturating_sub(limit);
    let first_guess = message_len as isize - excess as isize - marker.len() as isize - 64;
    let (mut prev_keep, mut prev_len) = (message_len as isize, encoded_len as isize);
    let mut keep = if first_guess > 0 {
        first_guess
    } else {
        message_len as isize / 2
    };
    for _ in 0..8 {
        if keep <= 0 {
            return None;
        }
        let now = encode(keep as usize) as isize;
        if now <= limit as isize {
            return Some(keep as usize);
        }
        let per_byte = if prev_keep > keep {
            ((prev_len - now) as f64 / (prev_keep - keep) as f64).max(1.0)
        } else {
            1.0
        };
        (prev_keep, prev_len) = (keep, now);
        keep -= ((now - limit as isize) as f64 / per_byte).ceil() as isize + 16;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_char_boundary() {
        assert_eq!(cut("héllo", 2, "…"), "h…");
        assert_eq!(cut("abc", 10, "!"), "abc!");
    }

    #[test]
    fn fits_even_when_escaping_grows_the_message() {
        // Every raw byte encodes as 6 (like "\u0001" in JSON), plus 100 bytes of other fields.
        let message_len = 10_000;
        let encode = |keep: usize| 100 + 6 * keep.min(message_len) + 3;
        let limit = 30_000;
        let keep = fit(limit, encode(message_len), message_len, "...", encode).unwrap();
        assert!(encode(keep) <= limit);
        assert!(keep > 4_000, "keeps most of what fits: {keep}");
        assert_eq!(
            fit(50, encode(message_len), message_len, "...", encode),
            None
        );
    }
}
