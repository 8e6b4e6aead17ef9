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

/// One counter, as every place that shows it names it: its key in the stats line, its metric
/// on Fluent Bit's metrics (`fluentbit_fanout_<metric>`, with `result` as a label value when
/// several counters share one metric), and what it counts. This table drives the stats line,
/// the metrics registration ([`crate::metrics`]) and a check of the README's metrics table.
pub struct Counter<S: 'static> {
    pub key: &'static str,
    pub metric: &'static str,
    pub result: Option<&'static str>,
    pub help: &'static str,
    pub value: fn(&S) -> &AtomicU64,
}

const fn counter<S>(
    key: &'static str,
    metric: &'static str,
    help: &'static str,
    value: fn(&S) -> &AtomicU64,
) -> Counter<S> {
    Counter {
        key,
        metric,
        result: None,
        help,
        value,
    }
}

const FLUSHES_HELP: &str = "Flushes by what they answered Fluent Bit (ok, retry, error).";

const fn flushes(
    key: &'static str,
    result: &'static str,
    value: fn(&InstanceStats) -> &AtomicU64,
) -> Counter<InstanceStats> {
    Counter {
        key,
        metric: "flushes_total",
        result: Some(result),
        help: FLUSHES_HELP,
        value,
    }
}

/// Per instance (label `name`), in stats-line order.
pub const INSTANCE_COUNTERS: &[Counter<InstanceStats>] = &[
    counter(
        "chunks",
        "chunks_total",
        "Chunks Fluent Bit flushed to the plugin, resends included.",
        |s| &s.chunks,
    ),
    counter(
        "records",
        "records_total",
        "Records decoded from flushed chunks, resends included.",
        |s| &s.records,
    ),
    counter(
        "skipped_records",
        "skipped_records_total",
        "Records skipped while decoding (not a map, bad timestamp, not an event).",
        |s| &s.skipped_records,
    ),
    counter(
        "altered_values",
        "altered_values_total",
        "Values changed on the way to JSON (NaN, invalid UTF-8, msgpack ext, too deep).",
        |s| &s.altered_values,
    ),
    counter(
        "rejected_chunks",
        "rejected_chunks_total",
        "Chunks dropped because their msgpack is broken.",
        |s| &s.rejected_chunks,
    ),
    counter(
        "busy",
        "busy_total",
        "Flushes that waited for room because max_in_flight_bytes was reached.",
        |s| &s.busy,
    ),
    counter(
        "busy_retry",
        "busy_retry_total",
        "Flushes answered RETRY because no room came within flush_timeout.",
        |s| &s.busy_retry,
    ),
    counter(
        "forged_job_end",
        "forged_job_end_total",
        "Records that looked like job-wrapper's end-of-job record without its token (ignored).",
        |s| &s.forged_job_end,
    ),
    counter(
        "dead_lettered",
        "dead_lettered_total",
        "Records refused for good and written to dead_letter (once per destination).",
        |s| &s.dead_lettered,
    ),
    counter(
        "dead_letter_overflow",
        "dead_letter_overflow_total",
        "Refused records dead_letter could not take (dead_letter_max_size reached, or a write failed).",
        |s| &s.dead_letter_overflow,
    ),
    flushes("flush_ok", "ok", |s| &s.flush_ok),
    flushes("flush_retry", "retry", |s| &s.flush_retry),
    flushes("flush_error", "error", |s| &s.flush_error),
];

/// Per destination (labels `name` and `destination`), in stats-line order.
pub const DESTINATION_COUNTERS: &[Counter<DestinationStats>] = &[
    counter(
        "delivered",
        "delivered_records_total",
        "Records the destination accepted.",
        |d| &d.delivered,
    ),
    counter(
        "retried",
        "retried_records_total",
        "Records not accepted by the end of a flush: left for Fluent Bit to resend.",
        |d| &d.retried,
    ),
    counter(
        "dropped",
        "dropped_records_total",
        "Records not sent because they cannot be (too large, no stream, no log_key); each cause is logged.",
        |d| &d.dropped,
    ),
    counter(
        "rejected",
        "rejected_records_total",
        "Records the remote refused for good (the record itself, or a missing stream); each cause is logged.",
        |d| &d.rejected,
    ),
    counter(
        "resend_skipped",
        "resend_skipped_records_total",
        "Records of a resent chunk not sent again because this destination had settled them.",
        |d| &d.resend_skipped,
    ),
    counter(
        "requests",
        "requests_total",
        "Requests sent, retries and split halves included.",
        |d| &d.requests,
    ),
];

/// `chunks=… records=… … datadog[delivered=… retried=… …] firehose[…]`
pub fn summary(instance: &InstanceStats, destinations: &[DestinationStats]) -> String {
    let mut line = String::new();
    for (n, c) in INSTANCE_COUNTERS.iter().enumerate() {
        let separator = if n == 0 { "" } else { " " };
        let _ = write!(line, "{separator}{}={}", c.key, get((c.value)(instance)));
    }
    for d in destinations {
        let _ = write!(line, " {}[", d.name);
        for (n, c) in DESTINATION_COUNTERS.iter().enumerate() {
            let separator = if n == 0 { "" } else { " " };
            let _ = write!(line, "{separator}{}={}", c.key, get((c.value)(d)));
        }
        line.push(']');
    }
    line
}
