//! The plugin's own counters, per instance and per destination.
//!
//! Reported as one `info` line every `stats_interval` (written from the next flush, on
//! Fluent Bit's thread, so it lands in Fluent Bit's log) and at exit, and published on Fluent
//! Bit's metrics where the host offers them ([`crate::metrics`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Counters of one instance.
#[derive(Default)]
pub struct InstanceStats {
    pub chunks: AtomicU64,
    pub records: AtomicU64,
    /// Records the decoder skipped (not a map, bad timestamp, not an event).
    pub skipped_records: AtomicU64,
    /// Values changed on the way to JSON (NaN, invalid UTF-8, ext, too deep).
    pub altered_values: AtomicU64,
    /// Chunks dropped because their msgpack is broken.
    pub rejected_chunks: AtomicU64,
    /// Flushes that had to wait for room because `max_in_flight_bytes` was reached.
    pub busy: AtomicU64,
    /// Of those, flushes answered RETRY because no room came within `flush_timeout`.
    pub busy_retry: AtomicU64,
    /// Records that looked like job-wrapper's end-of-job record without its token (ignored).
    pub forged_job_end: AtomicU64,
    /// Records refused for good and written to `dead_letter` (once per destination).
    pub dead_lettered: AtomicU64,
    /// Refused records `dead_letter` could not take (its cap reached, or a write failed).
    pub dead_letter_overflow: AtomicU64,
    pub flush_ok: AtomicU64,
    pub flush_retry: AtomicU64,
    pub flush_error: AtomicU64,
}

/// Counters of one destination of an instance.
pub struct DestinationStats {
    pub name: &'static str,
    /// Records the destination accepted.
    pub delivered: AtomicU64,
    /// Records left pending at the end of a flush: Fluent Bit resends them.
    pub retried: AtomicU64,
    /// Records not sent because they cannot be (too large, no stream, no `log_key`).
    pub dropped: AtomicU64,
    /// Records the remote refused for good (the record itself, or a missing stream).
    pub rejected: AtomicU64,
    /// Records of a resent chunk not sent again because this destination had settled them.
    pub resend_skipped: AtomicU64,
    /// Requests sent, retries and split halves included.
    pub requests: AtomicU64,
}

impl DestinationStats {
    pub fn new(name: &'static str) -> DestinationStats {
        DestinationStats {
            name,
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            resend_skipped: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

/// `chunks=… records=… … datadog[delivered=… retried=… …] firehose[…]`
pub fn summary(instance: &InstanceStats, destinations: &[DestinationStats]) -> String {
    let mut line = format!(
        "chunks={} records={} skipped_records={} altered_values={} rejected_chunks={} busy={} busy_retry={} forged_job_end={} dead_lettered={} dead_letter_overflow={} flush_ok={} flush_retry={} flush_error={}",
        get(&instance.chunks),
        get(&instance.records),
        get(&instance.skipped_records),
        get(&instance.altered_values),
        get(&instance.rejected_chunks),
        get(&instance.busy),
        get(&instance.busy_retry),
        get(&instance.forged_job_end),
        get(&instance.dead_lettered),
        get(&instance.dead_letter_overflow),
        get(&instance.flush_ok),
        get(&instance.flush_retry),
        get(&instance.flush_error),
    );
    for d in destinations {
        let _ = write!(
            line,
            " {}[delivered={} retried={} dropped={} rejected={} resend_skipped={} requests={}]",
            d.name,
            get(&d.delivered),
            get(&d.retried),
            get(&d.dropped),
            get(&d.rejected),
            get(&d.resend_skipped),
            get(&d.requests)
        );
    }
    line
}
