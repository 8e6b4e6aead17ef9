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

pub const KUBERNETES: &str = "kubernetes";

/// Where a record's own `kubernetes` value goes when the filter knows the pod.
const RECORD_KUBERNETES: &str = "kubernetes_from_record";

/// Keys whose string value may hold a JSON object to merge (`merge_log`), in order.
pub const LOG_KEYS: [&str; 2] = ["log", "message"];

pub fn enrich(record: &mut Map<String, Value>, tag: &str, pod: &PodInfo, config: &Config) {
    if config.parse_cri {
        split_cri_line(record);
    }
    if config.merge_log {
        merge_log(record, config.keep_log);
    }
    add_kubernetes(record, tag, pod, &config.annotations_exclude);
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
/// the record already has win. A `kubernetes` key in it is not merged: pod identity comes from
/// the Downward API and the log path, never from what the application printed.
fn merge_log(record: &mut Map<String, Value>, keep_log: bool) {
    let Some((key, parsed)) = LOG_KEYS.iter().find_map(|key| match record.get(*key) {
        Some(Value::String(text))
            if text.trim_start().starts_with('{')
                && !crate::depth::json_exceeds(
                    text.as_bytes(),
                    fanout_contract::view::MAX_DEPTH,
                ) =>
        {
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
        if k != KUBERNETES {
            record.entry(k).or_insert(v);
        }
    }
}

fn add_kubernetes(record: &mut Map<String, Value>, tag: &str, pod: &PodInfo, exclude: &[String]) {
    let Some(kubernetes) = kubernetes_map(tag, pod, exclude) else {
        return;
    };
    // What the pod says about itself is authoritative: the `kubernetes` map is the filter's,
    // and a value the record brought (a JSON log line parsed upstream) is kept aside, never
    // merged in, so no log line can change the pod, namespace or labels that route it.
    if let Some(own) = record.remove(KUBERNETES) {
        record.insert(RECORD_KUBERNETES.into(), own);
    }
    record.insert(KUBERNETES.into(), Value::Object(kubernetes));
}

/// The `kubernetes` map for records of `tag`, or `None` when nothing is known about the pod
/// (the record is then left as it is).
pub fn kubernetes_map(tag: &str, pod: &PodInfo, exclude: &[String]) -> Option<Map<String, Value>> {
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
    for (key, map, skip) in [
        ("labels", &pod.labels, &[][..]),
        ("annotations", &pod.annotations, exclude),
    ] {
        let object: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| !skip.contains(k))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if !object.is_empty() {
            found.push((key, Value::Object(object)));
        }
    }
    (!found.is_empty()).then(|| {
        found
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    })
}

/// `service`, `env`, `version` from Datadog's unified service tagging labels, then the
/// `app.kubernetes.io` ones, unless the record has them.
fn add_service_tags(record: &mut Map<String, Value>) {
    let tags = match record.get(KUBERNETES).and_then(|k| k.get("labels")) {
        Some(Value::Object(labels)) => service_tags(labels),
        _ => return,
    };
    for (field, value) in tags {
        if !record.contains_key(field) {
            record.insert(field.to_owned(), Value::String(value));
        }
    }
}

/// The `service`/`env`/`version` values these labels give, in that order.
pub fn service_tags(labels: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let label = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| labels.get(*k).and_then(Value::as_str).map(str::to_owned))
    };
    fanout_contract::service_tags::TAGS
        .into_iter()
        .filter_map(|(field, keys)| label(keys).map(|value| (field, value)))
        .collect()
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
    fn pod_identity_is_never_taken_from_the_record() {
        // Merged from a log line: not merged at all.
        let line = r#"{"kubernetes": {"pod_name": "evil", "labels": {"tags.datadoghq.com/service": "payments"}}, "service": "mine"}"#;
        let out = run(json!({ "log": line }), "t", &pod());
        assert_eq!(out["kubernetes"]["pod_name"], "report-1");
        assert_eq!(
            out["kubernetes"]["labels"],
            json!({"app.kubernetes.io/version": "2.1", "tags.datadoghq.com/service": "nightly"})
        );
        assert!(out.get(RECORD_KUBERNETES).is_none());
        assert_eq!(out["service"], "mine", "other merged keys still merge");

        // Already in the record (parsed upstream): kept aside, not mixed in.
        let out = run(
            json!({"kubernetes": {"pod_name": "set-by-app", "labels": {"team": "x"}}}),
            "t",
            &pod(),
        );
        assert_eq!(out["kubernetes"]["pod_name"], "report-1");
        assert!(out["kubernetes"]["labels"].get("team").is_none());
        assert_eq!(out[RECORD_KUBERNETES]["labels"]["team"], "x");

        // Nothing known about the pod: the record is left as it is.
        let out = run(json!({"kubernetes": "app's own"}), "t", &PodInfo::default());
        assert_eq!(out["kubernetes"], "app's own");
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
