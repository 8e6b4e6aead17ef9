//! Grouping encoded entries into requests that respect an API's count and byte limits.

use std::ops::Range;

/// Limits of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    /// Bytes of one request, counted as `fixed_overhead + Σ (entry + per_entry_overhead)`.
    pub max_bytes: usize,
    /// Bytes every request has whatever it holds (e.g. `[` and `]`).
    pub fixed_overhead: usize,
    /// Bytes each entry adds besides itself (e.g. the `,` between JSON array elements).
    pub per_entry_overhead: usize,
}

impl Limits {
    /// The largest entry that fits in a request on its own.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_bytes
            .saturating_sub(self.fixed_overhead + self.per_entry_overhead)
    }
}

/// Splits entries of the given sizes, in order, into consecutive ranges that each fit the
/// limits. An entry larger than [`Limits::max_entry_bytes`] gets a range of its own; callers
/// shrink or drop such entries before batching.
pub fn split(sizes: &[usize], limits: Limits) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = limits.fixed_overhead;
    for (i, size) in sizes.iter().enumerate() {
        let cost = size + limits.per_entry_overhead;
        let full = i - start >= limits.max_entries || bytes + cost > limits.max_bytes;
        if full && i > start {
            ranges.push(start..i);
            start = i;
            bytes = limits.fixed_overhead;
        }
        bytes += cost;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_entries: 3,
        max_bytes: 22,
        fixed_overhead: 2,
        per_entry_overhead: 1,
    };

    #[test]
    fn splits_at_the_entry_limit() {
        assert_eq!(split(&[1; 7], LIMITS), vec![0..3, 3..6, 6..7]);
    }

    #[test]
    fn splits_at_the_byte_limit_counting_overheads() {
        // 2 + (9+1) + (9+1) = 22 fits exactly; the third entry starts a new request.
        assert_eq!(split(&[9, 9, 9], LIMITS), vec![0..2, 2..3]);
        assert_eq!(split(&[10, 10], LIMITS), vec![0..1, 1..2]);
    }

    #[test]
    fn an_oversized_entry_stands_alone() {
        assert_eq!(split(&[1, 50, 1], LIMITS), vec![0..1, 1..2, 2..3]);
        assert_eq!(LIMITS.max_entry_bytes(), 19);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(split(&[], LIMITS).is_empty());
    }
}
