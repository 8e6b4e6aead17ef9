//! The record model every destination shares: one decoded Fluent Bit event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// A record body or metadata map, in the order the keys arrived.
pub type Map = serde_json::Map<String, Value>;

/// Message keys tried, in order, when no `message_key` is configured. `log` is what Docker,
/// CRI and FireLens produce; `message` is what structured loggers write.
pub const DEFAULT_MESSAGE_KEYS: [&str; 2] = ["log", "message"];

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

/// One log event as Fluent Bit stores it: timestamp, metadata (empty before 2.1) and body.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    pub time: EventTime,
    pub metadata: Map,
    pub body: Map,
}

impl LogEvent {
    /// The first of `keys` present in the body, with its value.
    pub fn message<'a, K: AsRef<str>>(&'a self, keys: &[K]) -> Option<(&'a str, &'a Value)> {
        keys.iter().find_map(|key| {
            self.body
                .get_key_value(key.as_ref())
                .map(|(k, v)| (k.as_str(), v))
        })
    }
}

/// How job-wrapper's end-of-job record starts (written as one CRI line of JSON).
pub const JOB_END_PREFIX: &str = "{\"job_wrapper\":\"end\"";

impl LogEvent {
    /// Whether this is job-wrapper's end-of-job record: its message is the wrapper's JSON, or
    /// (after a `merge_log`) the record has `"job_wrapper": "end"`.
    pub fn is_job_end<K: AsRef<str>>(&self, message_keys: &[K]) -> bool {
        self.body.get("job_wrapper").and_then(Value::as_str) == Some("end")
            || self
                .message(message_keys)
                .and_then(|(_, v)| v.as_str())
                .is_some_and(|m| m.starts_with(JOB_END_PREFIX))
    }
}

/// The decoded records of one flush, shared read-only by every destination.
#[derive(Debug)]
pub struct Batch {
    pub tag: String,
    pub events: Vec<LogEvent>,
}

/// Text of a value as it should appear in a message, a tag or a stream name: strings as they
/// are, everything else as JSON.
pub fn value_to_text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(body: Value) -> LogEvent {
        LogEvent {
            time: EventTime::new(1, 0),
            metadata: Map::new(),
            body: body.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn message_detection_prefers_the_first_configured_key() {
        let e = event(json!({"message": "structured", "log": "raw line"}));
        assert_eq!(e.message(&DEFAULT_MESSAGE_KEYS).unwrap().0, "log");
        assert_eq!(e.message(&["message"]).unwrap().1, &json!("structured"));
        assert!(e.message(&["msg"]).is_none());
    }

    #[test]
    fn job_end_records_are_recognised() {
        let keys = ["log", "message"];
        assert!(
            event(json!({"message": "{\"job_wrapper\":\"end\",\"exit_code\":3}"}))
                .is_job_end(&keys)
        );
        assert!(event(json!({"log": "x", "job_wrapper": "end"})).is_job_end(&keys));
        assert!(!event(json!({"log": "job_wrapper end"})).is_job_end(&keys));
    }

    #[test]
    fn float_timestamps_keep_their_fraction() {
        let t = EventTime::from_f64(1700000000.25).unwrap();
        assert_eq!((t.secs, t.nanos), (1700000000, 250_000_000));
        assert_eq!(t.as_millis(), 1700000000250);
        assert!(EventTime::from_f64(f64::NAN).is_none());
        assert!(EventTime::from_f64(-1.0).is_none());
    }

    #[test]
    fn rfc3339_has_nanoseconds() {
        assert_eq!(
            EventTime::new(1700000000, 5).to_rfc3339(),
            "2023-11-14T22:13:20.000000005Z"
        );
    }
}
