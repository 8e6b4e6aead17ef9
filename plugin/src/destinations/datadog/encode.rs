//! Building Datadog log entries and request bodies from decoded records.
//!
//! Each record becomes one JSON object written straight into a shared buffer (no intermediate
//! map): the reserved attributes first (`timestamp`, `ddsource`, `service`, `hostname`,
//! `status`, `message`), then the record's own fields in order, then `ddtags`. A reserved
//! attribute the record already has is left as the record has it. Requests are cut at 1000
//! entries and 5 MB of uncompressed JSON; a log over 1 MB has its message shortened, ending in
//! `...TRUNCATED...`, and gets the tag `truncated:true`.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

use super::config::DatadogConfig;
use crate::delivery::batch::Limits;
use crate::delivery::execute::{Planned, Request};
use crate::delivery::json::Object;
use crate::delivery::shrink;
use crate::delivery::units::Units;
use crate::record::{Batch, LogEvent};

/// Request limits of the intake (uncompressed): 1000 entries, 5 MB, in a JSON array.
pub const LIMITS: Limits = Limits {
    max_entries: 1000,
    max_bytes: 5_000_000,
    fixed_overhead: 2,
    per_entry_overhead: 1,
};

/// Largest log the intake keeps whole.
pub const MAX_LOG_BYTES: usize = 1_000_000;

pub const TRUNCATION_MARKER: &str = "...TRUNCATED...";

/// Record keys `provider ecs` turns into tags (and removes), as Fluent Bit's core output does,
/// plus FireLens's `source` (stdout/stderr), sent as `stream` because `source` is Datadog's
/// name for `ddsource`.
const ECS_KEYS: [&str; 7] = [
    "container_id",
    "container_name",
    "container_image",
    "ecs_cluster",
    "ecs_task_definition",
    "ecs_task_arn",
    "source",
];

/// Keys whose value becomes `status` when the record has none.
const LEVEL_KEYS: [&str; 2] = ["level", "severity"];

/// The requests of one flush, built one at a time as the executor asks for them (so memory
/// holds the requests in flight, not the whole chunk): at most 1000 entries and 5 MB of
/// uncompressed JSON each. A log no request can carry is yielded as dropped.
pub struct Plan<'a> {
    encoder: &'a Encoder<'a>,
    batch: &'a Batch,
    next: usize,
    current: Units,
    /// Logs whose message was shortened to fit 1 MB.
    pub truncated: u64,
}

impl Iterator for Plan<'_> {
    type Item = Planned<()>;

    fn next(&mut self) -> Option<Planned<()>> {
        while let Some(event) = self.batch.get(self.next) {
            let position = self.next;
            self.next += 1;
            let out = self.current.writer();
            let start = out.len();
            self.encoder.write_entry(event, &self.batch.tag, None, out);
            let len = out.len() - start;
            if len > MAX_LOG_BYTES {
                match self.encoder.shrink(event, &self.batch.tag, len, out, start) {
                    Shrunk::Truncated => self.truncated += 1,
                    Shrunk::AsIs => {}
                    Shrunk::Dropped => {
                        return Some(Planned::Dropped {
                            positions: vec![position],
                            cause: "log too large for any request (5 MB)".into(),
                        });
                    }
                }
            }
            let entry = self.current.uncommitted().len();
            let body = LIMITS.fixed_overhead
                + self.current.bytes()
                + (self.current.len() + 1) * LIMITS.per_entry_overhead
                + entry;
            let fits = self.current.len() < LIMITS.max_entries && body <= LIMITS.max_bytes;
            if fits || self.current.is_empty() {
                self.current.commit(&[position]);
                continue;
            }
            // The request is full: this entry starts the next one.
            let entry = self.current.uncommitted().to_vec();
            self.current.writer();
            let full = std::mem::take(&mut self.current);
            self.current.push(&entry, &[position]);
            return Some(Planned::Request(Request {
                key: (),
                units: full,
            }));
        }
        (!self.current.is_empty()).then(|| {
            Planned::Request(Request {
                key: (),
                units: std::mem::take(&mut self.current),
            })
        })
    }
}

/// The request body for `units`: a JSON array, gzip-compressed when `gzip` is set.
pub fn body(units: &Units, gzip: bool) -> Vec<u8> {
    let len = LIMITS.fixed_overhead + units.bytes() + units.len().saturating_sub(1);
    if gzip {
        let mut encoder = GzEncoder::new(Vec::with_capacity(len / 4), Compression::default());
        write_array(units, &mut encoder);
        // Writing into a Vec cannot fail.
        encoder.finish().unwrap_or_default()
    } else {
        let mut body = Vec::with_capacity(len);
        write_array(units, &mut body);
        body
    }
}

fn write_array(units: &Units, out: &mut impl Write) {
    // Writes into memory cannot fail; the Result is only the Write trait's.
    let _ = out.write_all(b"[");
    for (n, entry) in units.iter().enumerate() {
        if n > 0 {
            let _ = out.write_all(b",");
        }
        let _ = out.write_all(entry);
    }
    let _ = out.write_all(b"]");
}

pub struct Encoder<'a> {
    pub config: &'a DatadogConfig,
    pub message_keys: &'a [String],
}

impl<'a> Encoder<'a> {
    /// The batch's requests, built as they are pulled.
    pub fn plan(&'a self, batch: &'a Batch) -> Plan<'a> {
        Plan {
            encoder: self,
            batch,
            next: 0,
            current: Units::default(),
            truncated: 0,
        }
    }

    /// Re-encodes an over-long entry with a shorter message until it fits `MAX_LOG_BYTES`.
    fn shrink(
        &self,
        event: &LogEvent,
        tag: &str,
        len: usize,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Shrunk {
        let message_len = self
            .message(event)
            .and_then(|(_, v)| v.as_str())
            .map_or(0, str::len);
        let fitted = shrink::fit(MAX_LOG_BYTES, len, message_len, TRUNCATION_MARKER, |keep| {
            buf.truncate(start);
            self.write_entry(event, tag, Some(keep), buf);
            buf.len() - start
        });
        if fitted.is_some() {
            return Shrunk::Truncated;
        }
        buf.truncate(start);
        self.write_entry(event, tag, None, buf);
        // The intake truncates big logs itself; only a log no request can carry is lost.
        if buf.len() - start <= LIMITS.max_entry_bytes() {
            Shrunk::AsIs
        } else {
            Shrunk::Dropped
        }
    }

    /// The record's message key and value: `dd_message_key`, else the instance's list.
    fn message<'e>(&self, event: &'e LogEvent) -> Option<(&'e str, &'e Value)> {
        match &self.config.message_key {
            Some(key) => event.message(std::slice::from_ref(key)),
            None => event.message(self.message_keys),
        }
    }

    fn write_entry(
        &self,
        event: &LogEvent,
        tag: &str,
        message_limit: Option<usize>,
        out: &mut Vec<u8>,
    ) {
        let config = self.config;
        let body = &event.body;
        let mut object = Object::start(out);
        if !body.contains_key(&config.date_key) {
            object.field(&config.date_key, &event.time.as_millis());
        }
        if let Some(tag_key) = &config.tag_key {
            if !body.contains_key(tag_key) {
                object.field(tag_key, tag);
            }
        }
        for (key, choice) in [
            ("ddsource", &config.source),
            ("service", &config.service),
            ("hostname", &config.hostname),
        ] {
            if !body.contains_key(key) {
                if let Some(value) = choice.as_ref().and_then(|c| c.render(tag, body)) {
                    object.field(key, &value);
                }
            }
        }
        if !body.contains_key("status") {
            if let Some(level) = LEVEL_KEYS
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str))
            {
                object.field("status", level);
            }
        }
        let message_key = self.message(event).map(|(k, _)| k);
        let renamed = message_key.filter(|k| *k != "message" && !body.contains_key("message"));
        let truncate = |value: &Value| -> Value {
            match (value, message_limit) {
                (Value::String(s), Some(limit)) if s.len() > limit => {
                    Value::String(shrink::cut(s, limit, TRUNCATION_MARKER))
                }
                _ => value.clone(),
            }
        };
        if let Some(key) = renamed {
            object.field("message", &truncate(&body[key]));
        }
        let mut tags: Vec<String> = Vec::new();
        for (key, value) in body {
            if Some(key.as_str()) == renamed || key == "ddtags" {
                continue;
            }
            if config.provider_ecs && ECS_KEYS.contains(&key.as_str()) {
                if let Some(text) = value.as_str().filter(|s| !s.is_empty()) {
                    ecs_tags(key, text, &mut tags);
                    continue;
                }
            }
            if message_limit.is_some() && Some(key.as_str()) == message_key {
                object.field(key, &truncate(value));
            } else {
                object.field(key, value);
            }
        }
        tags.extend(config.tags.iter().filter_map(|t| t.render(tag, body)));
        if let Some(existing) = body
            .get("ddtags")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            tags.push(existing.to_owned());
        }
        if message_limit.is_some() {
            tags.push("truncated:true".to_owned());
        }
        if !tags.is_empty() {
            object.field("ddtags", &tags.join(","));
        }
        object.end();
    }
}

enum Shrunk {
    Truncated,
    AsIs,
    Dropped,
}

/// FireLens metadata as Datadog tags (Fluent Bit's `datadog_remap.c`, plus the AWS account and
/// the stream).
fn ecs_tags(key: &str, value: &str, tags: &mut Vec<String>) {
    match key {
        "container_name" => tags.push(format!(
            "container_name:{}",
            value.strip_prefix('/').unwrap_or(value)
        )),
        "ecs_cluster" => tags.push(format!(
            "cluster_name:{}",
            value
                .rsplit_once("cluster/")
                .map_or(value, |(_, name)| name)
        )),
        "ecs_task_definition" => match value.split_once(':') {
            Some((family, version)) => {
                tags.push(format!("task_family:{family}"));
                tags.push(format!("task_version:{version}"));
            }
            None => tags.push(format!("ecs_task_definition:{value}")),
        },
        "ecs_task_arn" => {
            tags.push(format!("task_arn:{value}"));
            // arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>
            let fields: Vec<&str> = value.splitn(6, ':').collect();
            if let [_, _, _, region, account, resource] = fields.as_slice() {
                if !region.is_empty() {
                    tags.push(format!("region:{region}"));
                }
                if !account.is_empty() {
                    tags.push(format!("aws_account:{account}"));
                }
                if let Some(task) = resource.strip_prefix("task/") {
                    tags.push(format!(
                        "task_id:{}",
                        task.rsplit('/').next().unwrap_or(task)
                    ));
                }
            }
        }
        "source" => tags.push(format!("stream:{value}")),
        other => tags.push(format!("{other}:{value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EventTime, Map};
    use serde_json::json;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> DatadogConfig {
        let mut props: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        props.insert("apikey".into(), "k".into());
        DatadogConfig::read(&props).unwrap()
    }

    /// The requests of a batch of `bodies`, how many logs were truncated, and every entry.
    fn encode(config: &DatadogConfig, bodies: &[Value]) -> (Vec<Units>, u64, Vec<Value>) {
        let keys = vec!["log".to_string(), "message".to_string()];
        let batch = Batch::new(
            "app.web".into(),
            bodies
                .iter()
                .map(|b| LogEvent {
                    time: EventTime::new(1_700_000_000, 123_600_000),
                    metadata: Map::new(),
                    body: b.as_object().unwrap().clone(),
                })
                .collect(),
        );
        let encoder = Encoder {
            config,
            message_keys: &keys,
        };
        let mut plan = encoder.plan(&batch);
        let requests: Vec<Units> = plan
            .by_ref()
            .filter_map(|p| match p {
                Planned::Request(r) => Some(r.units),
                Planned::Dropped { .. } => None,
            })
            .collect();
        let parsed = requests
            .iter()
            .flat_map(|u| {
                u.iter()
                    .map(|e| serde_json::from_slice(e).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        (requests, plan.truncated, parsed)
    }

    #[test]
    fn firelens_record_with_provider_ecs() {
        let c = config(&[
            ("provider", "ecs"),
            ("dd_source", "nginx"),
            ("dd_tags", "team:web,env:prod"),
        ]);
        let (_, _, parsed) = encode(
            &c,
            &[json!({
                "container_id": "abc-1",
                "container_name": "checkout",
                "ecs_cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
                "ecs_task_arn": "arn:aws:ecs:us-east-1:123456789012:task/prod/0f1e2d",
                "ecs_task_definition": "checkout:42",
                "source": "stderr",
                "log": "boom",
                "level": "error",
                "user": {"id": 7}
            })],
        );
        assert_eq!(
            parsed[0],
            json!({
                "timestamp": 1_700_000_000_123i64,
                "ddsource": "nginx",
                "service": "checkout",
                "status": "error",
                "message": "boom",
                "level": "error",
                "user": {"id": 7},
                "ddtags": "container_id:abc-1,container_name:checkout,cluster_name:prod,\
                           task_arn:arn:aws:ecs:us-east-1:123456789012:task/prod/0f1e2d,region:us-east-1,\
                           aws_account:123456789012,task_id:0f1e2d,task_family:checkout,task_version:42,\
                           stream:stderr,team:web,env:prod"
            })
        );
    }

    #[test]
    fn kubernetes_conventions_and_existing_fields_win() {
        let c = config(&[("include_tag_key", "on")]);
        let (_, _, parsed) = encode(
            &c,
            &[json!({
                "message": "structured",
                "log": "raw",
                "service": "already-set",
                "ddtags": "x:y",
                "kubernetes": {
                    "namespace_name": "batch",
                    "pod_name": "report-1",
                    "labels": {"tags.datadoghq.com/env": "prod", "tags.datadoghq.com/version": "1.2", "app": "report"}
                }
            })],
        );
        let entry = &parsed[0];
        assert_eq!(entry["service"], "already-set");
        assert_eq!(entry["message"], "structured");
        assert_eq!(entry["log"], "raw");
        assert_eq!(entry["tagkey"], "app.web");
        assert_eq!(
            entry["ddtags"],
            "env:prod,version:1.2,kube_namespace:batch,pod_name:report-1,x:y"
        );
        let (_, _, parsed) = encode(
            &c,
            &[json!({"log": "l", "kubernetes": {"labels": {"app": "report"}}})],
        );
        assert_eq!(parsed[0]["service"], "report");
        assert!(parsed[0].get("ddtags").is_none());
    }

    #[test]
    fn oversized_logs_are_truncated_to_fit() {
        let c = config(&[]);
        let big = "é".repeat(700_000); // 1.4 MB of two-byte characters
        let (requests, truncated, parsed) = encode(
            &c,
            &[json!({"log": big, "k": "v"}), json!({"log": "small"})],
        );
        assert_eq!(truncated, 1);
        assert!(requests[0].unit(0).len() <= MAX_LOG_BYTES);
        let message = parsed[0]["message"].as_str().unwrap();
        assert!(message.ends_with(TRUNCATION_MARKER));
        assert!(message.len() > 900_000);
        assert!(
            parsed[0]["ddtags"]
                .as_str()
                .unwrap()
                .contains("truncated:true")
        );
        assert_eq!(parsed[1]["message"], "small");
    }

    #[test]
    fn requests_respect_both_limits_and_gzip_round_trips() {
        let c = config(&[]);
        let bodies: Vec<Value> = (0..2500)
            .map(|i| json!({"log": format!("line {i}")}))
            .collect();
        let (requests, _, _) = encode(&c, &bodies);
        assert_eq!(
            requests.iter().map(Units::len).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let gz = body(&requests[2], true);
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json)
            .unwrap();
        assert_eq!(json.as_bytes(), body(&requests[2], false));
        let array: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(array.len(), 500);
        assert_eq!(array[0]["message"], "line 2000");

        let bodies: Vec<Value> = (0..12)
            .map(|_| json!({"log": "x".repeat(900_000)}))
            .collect();
        let (requests, _, parsed) = encode(&c, &bodies);
        assert_eq!(parsed.len(), 12);
        for r in &requests {
            assert!(body(r, false).len() <= LIMITS.max_bytes);
        }
    }
}
