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
    /// If this record claims to be job-wrapper's end-of-job record — its message is JSON that
    /// starts like the wrapper's, or (after a `merge_log`) it has `"job_wrapper": "end"` — the
    /// token it carries (`Some(None)` when it carries none). Anything can print such a line;
    /// only the token, which the wrapper makes after the command has exited, tells the real
    /// one apart.
    pub fn job_end_claim<K: AsRef<str>>(&self, message_keys: &[K]) -> Option<Option<String>> {
        if self.body.get("job_wrapper").and_then(Value::as_str) == Some("end") {
            return Some(
                self.body
                    .get("token")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
        let message = self.message(message_keys)?.1.as_str()?;
        if !message.starts_with(JOB_END_PREFIX) {
            return None;
        }
        let parsed: Option<Map> = serde_json::from_str(message).ok();
        Some(
            parsed
                .as_ref()
                .and_then(|m| m.get("token"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
    }
}

/// The decoded records of one flush, shared read-only by every destination. A resend's batch
/// for a destination that already has some of the records is a [`Batch::subset`]: the same
/// records, shared, with the positions it carries — never a copy of them.
#[derive(Debug)]
pub struct Batch {
    pub tag: String,
    events: std::sync::Arc<Vec<LogEvent>>,
    /// Positions in `events` this batch carries; all of them when `None`.
    selection: Option<Vec<usize>>,
}

impl Batch {
    pub fn new(tag: String, events: Vec<LogEvent>) -> Batch {
        Batch {
            tag,
            events: std::sync::Arc::new(events),
            selection: None,
        }
    }

    /// The records at `positions` (of this batch's full set), sharing them.
    pub fn subset(&self, positions: Vec<usize>) -> Batch {
        Batch {
            tag: self.tag.clone(),
            events: std::sync::Arc::clone(&self.events),
            selection: Some(positions),
        }
    }

    pub fn len(&self) -> usize {
        self.selection.as_ref().map_or(self.events.len(), Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `n`th record this batch carries.
    pub fn get(&self, n: usize) -> Option<&LogEvent> {
        match &self.selection {
            None => self.events.get(n),
            Some(positions) => positions.get(n).and_then(|&p| self.events.get(p)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &LogEvent> {
        (0..self.len()).filter_map(|n| self.get(n))
    }
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
    fn job_end_claims_carry_the_token_if_any() {
        let keys = ["log", "message"];
        let claim = |body: Value| event(body).job_end_claim(&keys);
        assert_eq!(
            claim(json!({"message": "{\"job_wrapper\":\"end\",\"exit_code\":3,\"token\":\"ab\"}"})),
            Some(Some("ab".to_owned()))
        );
        assert_eq!(
            claim(json!({"message": "{\"job_wrapper\":\"end\",\"exit_code\":0}"})),
            Some(None),
            "printed by anyone: a claim without a token"
        );
        assert_eq!(
            claim(json!({"log": "{\"job_wrapper\":\"end\" and then not JSON"})),
            Some(None)
        );
        assert_eq!(
            claim(json!({"log": "x", "job_wrapper": "end", "token": "cd"})),
            Some(Some("cd".to_owned()))
        );
        assert_eq!(claim(json!({"log": "job_wrapper end"})), None);
        assert_eq!(claim(json!({"log": 7})), None);
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
