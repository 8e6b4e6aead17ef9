//! Retrying a request with exponential backoff and full jitter, never past the flush deadline.
//!
//! A destination classifies each attempt as done, retryable (optionally with the server's
//! `Retry-After`) or permanent. When the next wait would end after the deadline, the loop
//! stops and reports the failure as retryable, so Fluent Bit resends the chunk later instead
//! of the flush blocking past `flush_timeout`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first wait.
    pub initial: Duration,
    /// Upper bound of any wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Wait before retry number `retry` (0-based): uniform in [0, min(max, initial·2^retry)].
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
            .min(self.max);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    /// Worth another try; `after` is the server's `Retry-After`, if it sent one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Another try would fail the same way.
    Permanent(String),
}

/// Why the loop gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// Still failing when the deadline came: Fluent Bit should resend later.
    Deadline {
        attempts: u32,
        last: String,
    },
    Permanent(String),
}

/// Runs `attempt` until it is done, permanently fails, or the deadline leaves no room for the
/// next wait. `on_retry` hears about every retry (for logs and counters).
pub async fn run<T, F, Fut>(
    backoff: Backoff,
    deadline: Instant,
    mut attempt: F,
    mut on_retry: impl FnMut(u32, &str, Duration),
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut retries = 0u32;
    loop {
        match attempt().await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Permanent(reason) => return Err(GaveUp::Permanent(reason)),
            Attempt::Retry { reason, after } => {
                let wait = after.unwrap_or_else(|| backoff.delay(retries));
                if Instant::now() + wait >= deadline {
                    return Err(GaveUp::Deadline {
                        attempts: retries + 1,
                        last: reason,
                    });
                }
                on_retry(retries + 1, &reason, wait);
                tokio::time::sleep(wait).await;
                retries += 1;
            }
        }
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
    use std::cell::Cell;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..200 {
            assert!(b.delay(0) <= Duration::from_millis(100));
            assert!(b.delay(3) <= Duration::from_millis(800));
            assert!(b.delay(30) <= Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_and_reports_each_retry() {
        let calls = Cell::new(0);
        let mut heard = Vec::new();
        let result = run(
            Backoff::default(),
            Instant::now() + Duration::from_secs(60),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Attempt::Retry {
                            reason: format!("HTTP 500 ({n})"),
                            after: None,
                        }
                    } else {
                        Attempt::Done(n)
                    }
                }
            },
            |retry, reason, _| heard.push((retry, reason.to_owned())),
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(
            heard,
            vec![(1, "HTTP 500 (1)".into()), (2, "HTTP 500 (2)".into())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_and_on_permanent_errors() {
        let result: Result<(), _> = run(
            Backoff::default(),
            Instant::now() + Duration::from_secs(5),
            || async {
                Attempt::Retry {
                    reason: "429".into(),
                    after: Some(Duration::from_secs(10)),
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(
            result,
            Err(GaveUp::Deadline {
                attempts: 1,
                last: "429".into()
            })
        );
        let result: Result<(), _> = run(
            Backoff::default(),
            Instant::now() + Duration::from_secs(5),
            || async { Attempt::Permanent("HTTP 403".into()) },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result, Err(GaveUp::Permanent("HTTP 403".into())));
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
