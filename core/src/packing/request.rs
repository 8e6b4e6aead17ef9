//! The one rule every plan cuts requests by: an API's limits on one request, and the open
//! request's size as the API counts it. Datadog's requests and Firehose's calls are filled
//! through [`Fill`], and `preview` counts the requests those plans yield, so what it shows is
//! what is sent.

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

/// How full the open request is, under `limits`.
#[derive(Clone, Copy, Debug)]
pub struct Fill {
    limits: Limits,
    entries: usize,
    bytes: usize,
}

impl Fill {
    pub fn new(limits: Limits) -> Fill {
        Fill {
            limits,
            entries: 0,
            bytes: limits.fixed_overhead,
        }
    }

    /// Whether an entry of `size` bytes (as the API counts it) goes in the open request. An
    /// empty request takes any entry: one larger than [`Limits::max_entry_bytes`] stands alone
    /// (encoders shrink or drop such entries first).
    pub fn fits(&self, size: usize) -> bool {
        self.entries == 0
            || (self.entries < self.limits.max_entries
                && self.bytes + size + self.limits.per_entry_overhead <= self.limits.max_bytes)
    }

    /// Counts an entry of `size` bytes into the open request.
    pub fn add(&mut self, size: usize) {
        self.entries += 1;
        self.bytes += size + self.limits.per_entry_overhead;
    }

    /// The open request was handed out: the next one starts empty.
    pub fn restart(&mut self) {
        *self = Fill::new(self.limits);
    }
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

    /// Entries of `sizes`, in order, cut into requests by [`Fill`]: each request's range.
    fn cut(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
        let mut fill = Fill::new(LIMITS);
        let mut requests = Vec::new();
        let mut start = 0;
        for (i, &size) in sizes.iter().enumerate() {
            if !fill.fits(size) {
                requests.push(start..i);
                start = i;
                fill.restart();
            }
            fill.add(size);
        }
        if start < sizes.len() {
            requests.push(start..sizes.len());
        }
        requests
    }

    #[test]
    fn cuts_at_the_entry_limit() {
        assert_eq!(cut(&[1; 7]), vec![0..3, 3..6, 6..7]);
    }

    #[test]
    fn cuts_at_the_byte_limit_counting_overheads() {
        // 2 + (9+1) + (9+1) = 22 fits exactly; the third entry starts a new request.
        assert_eq!(cut(&[9, 9, 9]), vec![0..2, 2..3]);
        assert_eq!(cut(&[10, 10]), vec![0..1, 1..2]);
    }

    #[test]
    fn an_oversized_entry_stands_alone() {
        assert_eq!(cut(&[1, 50, 1]), vec![0..1, 1..2, 2..3]);
        assert_eq!(LIMITS.max_entry_bytes(), 19);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(cut(&[]).is_empty());
    }
}
