//! Adding Kubernetes metadata to one record.
//!
//! Sources, most trusted first: fields the record already has (never overwritten), the
//! Downward API files, the tail path in the tag. The result is a `kubernetes` map shaped like
//! Fluent Bit's `kubernetes` filter output (`pod_name`, `namespace_name`, `pod_id`,
//! `container_name`, `docker_id`, `host`, `labels`, `annotations`), so dashboards and queries
//! built on that filter keep working.

use serde_json::{Map, Value};

use crate::podinfo::{Config, PodInfo};
use crate::tagpath;

/// Keys whose string value may hold a JSON object to merge (`merge_log`), in order.
const LOG_KEYS: [&str; 2] = ["log", "message"];

pub fn enrich(record: &mut Map<String, Value>, tag: &str, pod: &PodInfo, config: &Config) {
    if config.parse_cri {
        split_cri_line(record);
    }
    if config.merge_log {
        merge_log(record, config.keep_log);
    }
    add_kubernetes(record, tag, pod);
    if config.service_tags {
        add_service_tags(record);
    }
}

/// A record that is a raw CRI line (`{"log": "<time> <stream> <P|F> <message>"}`, as tail
/// produces without the `cri` parser) becomes `time`, `stream`, `logtag` and `log`.
fn split_cri_line(record: &mut Map<String, Value>) {
    if record.contains_key("stream") || record.contains_key("logtag") {
        return;
    }
    let Some(Value::String(line)) = record.get("log") else {
        return;
    };
    let mut parts = line.splitn(4, ' ');
    let (Some(time), Some(stream), Some(logtag)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let message = parts.next().unwrap_or("").to_owned();
    let is_time = time.len() >= 20 && time.as_bytes()[4] == b'-' && time.as_bytes()[10] == b'T';
    if !is_time || !matches!(stream, "stdout" | "stderr") || !matches!(logtag, "P" | "F") {
        return;
    }
    let (time, stream, logtag) = (time.to_owned(), stream.to_owned(), logtag.to_owned());
    record.insert("time".into(), Value::String(time));
    record.insert("stream".into(), Value::String(stream));
    record.insert("logtag".into(), Value::String(logtag));
    record.insert("log".into(), Value::String(message));
}

/// Fluent Bit's `merge_log`: a JSON object in `log`/`message` is merged into the record; keys
/// the record already has win.
fn merge_log(record: &mut Map<String, Value>, keep_log: bool) {
    let Some((key, parsed)) = LOG_KEYS.iter().find_map(|key| match record.get(*key) {
        Some(Value::String(text)) if text.trim_start().starts_with('{') => {
            match serde_json::from_str::<Value>(text.trim()) {
                Ok(Value::Object(map)) => Some((*key, map)),
                _ => None,
            }
        }
        _ => None,
    }) else {
        return;
    };
    if !keep_log {
        record.remove(key);
    }
    for (k, v) in parsed {
        record.entry(k).or_insert(v);
    }
}

fn add_kubernetes(record: &mut Map<String, Value>, tag: &str, pod: &PodInfo) {
    let path = tagpath::parse(tag);
    let mut found: Vec<(&str, Value)> = Vec::new();
    let text = |v: Option<&String>| v.map(|s| Value::String(s.clone()));
    let from_path =
        |f: fn(&tagpath::FromPath) -> Option<String>| path.as_ref().and_then(f).map(Value::String);
    let candidates: [(&str, Option<Value>); 6] = [
        (
            "pod_name",
            text(pod.pod_name.as_ref()).or_else(|| from_path(|p| Some(p.pod_name.clone()))),
        ),
        (
            "namespace_name",
            text(pod.namespace_name.as_ref())
                .or_else(|| from_path(|p| Some(p.namespace_name.clone()))),
        ),
        (
            "pod_id",
            text(pod.pod_id.as_ref()).or_else(|| from_path(|p| p.pod_id.clone())),
        ),
        (
            "container_name",
            from_path(|p| Some(p.container_name.clone())),
        ),
        ("docker_id", from_path(|p| p.docker_id.clone())),
        ("host", text(pod.host.as_ref())),
    ];
    for (key, value) in candidates {
        if let Some(value) = value {
            found.push((key, value));
        }
    }
    for (key, map) in [("labels", &pod.labels), ("annotations", &pod.annotations)] {
        if !map.is_empty() {
            let object = map
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            found.push((key, Value::Object(object)));
        }
    }
    if found.is_empty() {
        return;
    }
    let kubernetes = record
        .entry("kubernetes")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(kubernetes) = kubernetes else {
        // A non-map `kubernetes` field belongs to the record: leave it alone.
        return;
    };
    for (key, value) in found {
        match (kubernetes.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(extra)) => {
                for (k, v) in extra {
                    existing.entry(k).or_insert(v);
                }
            }
            (Some(_), _) => {}
            (None, value) => {
                kubernetes.insert(key.to_owned(), value);
            }
        }
    }
}

/// `service`, `env`, `version` from Datadog's unified service tagging labels, then the
/// `app.kubernetes.io` ones, unless the record has them.
fn add_service_tags(record: &mut Map<String, Value>) {
    let labels = match record.get("kubernetes").and_then(|k| k.get("labels")) {
        Some(Value::Object(labels)) => labels.clone(),
        _ => return,
    };
    let label = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| labels.get(*k).and_then(Value::as_str).map(str::to_owned))
    };
    for (field, keys) in [
        (
            "service",
            &["tags.datadoghq.com/service", "app.kubernetes.io/name"][..],
        ),
        ("env", &["tags.datadoghq.com/env"][..]),
        (
            "version",
            &["tags.datadoghq.com/version", "app.kubernetes.io/version"][..],
        ),
    ] {
        if !record.contains_key(field)
            && let Some(value) = label(keys)
        {
            record.insert(field.to_owned(), Value::String(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn pod() -> PodInfo {
        PodInfo {
            pod_name: Some("report-1".into()),
            namespace_name: Some("batch".into()),
            pod_id: Some("uid-1".into()),
            host: None,
            labels: [
                (
                    "tags.datadoghq.com/service".to_string(),
                    "nightly".to_string(),
                ),
                ("app.kubernetes.io/version".to_string(), "2.1".to_string()),
            ]
            .into_iter()
            .collect(),
            annotations: Default::default(),
        }
    }

    fn run(record: Value, tag: &str, pod: &PodInfo) -> Value {
        let mut map = record.as_object().unwrap().clone();
        enrich(&mut map, tag, pod, &Config::default());
        Value::Object(map)
    }

    #[test]
    fn downward_api_then_path_then_service_tags() {
        let out = run(
            json!({"log": "hi"}),
            &format!("kube.var.log.containers.other_ns_job-{ID}.log"),
            &pod(),
        );
        assert_eq!(
            out,
            json!({
                "log": "hi",
                "kubernetes": {
                    "pod_name": "report-1", "namespace_name": "batch", "pod_id": "uid-1",
                    "container_name": "job", "docker_id": ID,
                    "labels": {"app.kubernetes.io/version": "2.1", "tags.datadoghq.com/service": "nightly"}
                },
                "service": "nightly",
                "version": "2.1"
            })
        );
    }

    #[test]
    fn record_fields_win() {
        let out = run(
            json!({"service": "mine", "kubernetes": {"pod_name": "set-by-app", "labels": {"team": "x"}}}),
            "t",
            &pod(),
        );
        assert_eq!(out["service"], "mine");
        assert_eq!(out["kubernetes"]["pod_name"], "set-by-app");
        assert_eq!(out["kubernetes"]["labels"]["team"], "x");
        assert_eq!(
            out["kubernetes"]["labels"]["tags.datadoghq.com/service"],
            "nightly"
        );
    }

    #[test]
    fn cri_lines_and_merge_log() {
        let line = "2026-11-22T09:00:00.123456789Z stderr F {\"level\":\"error\",\"msg\":\"boom\",\"log\":\"inner\"}";
        let out = run(json!({"log": line}), "t", &PodInfo::default());
        assert_eq!(out["stream"], "stderr");
        assert_eq!(out["logtag"], "F");
        assert_eq!(out["time"], "2026-11-22T09:00:00.123456789Z");
        assert_eq!(out["level"], "error");
        assert_eq!(out["msg"], "boom");
        assert_eq!(
            out["log"], "{\"level\":\"error\",\"msg\":\"boom\",\"log\":\"inner\"}",
            "keep_log keeps the original"
        );
        assert!(
            out.get("kubernetes").is_none(),
            "nothing known, nothing added"
        );
        let plain = run(json!({"log": "not { json"}), "t", &PodInfo::default());
        assert_eq!(plain, json!({"log": "not { json"}));
    }
}
