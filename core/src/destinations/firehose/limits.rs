//! Amazon Data Firehose's limits (AWS docs, `PutRecordBatch`), which the encoder packs to:
//! - at most **500 records** and **4 MiB** per call (counted here on the base64 the JSON body
//!   carries, the conservative reading);
//! - at most **1000 KiB per record** before base64;
//! - delivery stream names of 1-64 of `[A-Za-z0-9_.-]`;
//! - a call answered HTTP 200 may still have failed records (`FailedPutCount`, index-aligned
//!   `RequestResponses`): only those are resent;
//! - `ServiceUnavailableException` means throttling: back off;
//! - ingestion is billed per record rounded up to **5 KB**, which `simple_aggregation` makes
//!   negligible by packing many lines into one record.

use crate::packing::request::Limits;

/// Largest Firehose record, before base64 (1000 KiB).
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// `PutRecordBatch`: 500 records and 4 MiB, counted on the base64 the JSON body carries.
pub const CALL_LIMITS: Limits = Limits {
    max_entries: 500,
    max_bytes: 4 * 1024 * 1024,
    fixed_overhead: 512,
    per_entry_overhead: 16,
};

/// Firehose bills ingestion per record rounded up to 5 KB.
pub const BILLING_UNIT: usize = 5 * 1024;

pub fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// A name Firehose accepts for a delivery stream.
pub fn valid_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
