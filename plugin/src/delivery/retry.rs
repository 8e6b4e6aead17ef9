//! How long to wait before retrying a request: exponential backoff with full jitter and a
//! floor, or the server's `Retry-After`. The executor ([`super::execute`]) never waits past
//! the flush deadline.

use std::time::Duration;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first wait.
    pub initial: Duration,
    /// Upper bound of any wait.
    pub max: Duration,
    /// Lower bound of any wait, `Retry-After` included, so an eager server cannot make the
    /// plugin spin.
    pub floor: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            floor: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// Wait before retry number `retry` (0-based): uniform in [0, min(max, initial·2^retry)]
    /// (the executor raises it to `floor`).
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
            .min(self.max);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Parses `Retry-After` given in seconds (the form rate limiters send).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            floor: Duration::ZERO,
        };
        for _ in 0..200 {
            assert!(b.delay(0) <= Duration::from_millis(100));
            assert!(b.delay(3) <= Duration::from_millis(800));
            assert!(b.delay(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
