//! Fluent Bit's event timestamp, as chunks carry it and destinations write it.

use chrono::{DateTime, SecondsFormat, Utc};

/// Fluent Bit's event timestamp: seconds since the epoch plus nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime {
    pub secs: i64,
    pub nanos: u32,
}

impl EventTime {
    pub fn new(secs: i64, nanos: u32) -> Self {
        Self { secs, nanos }
    }

    /// The time an EventTime extension value holds (type 0, 8 bytes), if it is one.
    pub fn from_ext(kind: i8, payload: &[u8]) -> Option<Self> {
        fanout_contract::view::event_time(kind, payload)
            .map(|(secs, nanos)| Self::new(i64::from(secs), nanos))
    }

    /// Builds a timestamp from fractional seconds (the float encoding Fluent Bit accepts).
    pub fn from_f64(seconds: f64) -> Option<Self> {
        if !seconds.is_finite() || seconds < 0.0 || seconds > i64::MAX as f64 {
            return None;
        }
        let secs = seconds.trunc();
        let nanos = ((seconds - secs) * 1e9).round().min(999_999_999.0) as u32;
        Some(Self::new(secs as i64, nanos))
    }

    pub fn as_millis(&self) -> i64 {
        self.secs.saturating_mul(1000) + i64::from(self.nanos / 1_000_000)
    }

    pub fn as_f64(&self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }

    pub fn to_datetime(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.secs, self.nanos)
    }

    /// RFC 3339 with nanoseconds, e.g. `2026-11-22T09:33:22.123456789Z`.
    pub fn to_rfc3339(&self) -> String {
        match self.to_datetime() {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Nanos, true),
            None => self.as_f64().to_string(),
        }
    }
}
