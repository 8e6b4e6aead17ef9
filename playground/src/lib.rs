//! The playground's engine: `fanout_core::preview` behind two wasm-bindgen functions, so the
//! page runs exactly the plugin's configuration readers and encoders. Strings in, JSON out
//! (the page renders it); no I/O: the shipped files the page starts from are compiled in.

use std::collections::HashMap;

use fanout_core::time::EventTime;
use serde_json::{Value, json};
use wasm_bindgen::prelude::wasm_bindgen;

/// Shipped files the page offers and `@INCLUDE` resolves, by their path in the repository.
const SHIPPED: &[(&str, &str)] = &[
    (
        "fluent-bit-conf/firelens/extra.conf",
        include_str!("../../fluent-bit-conf/firelens/extra.conf"),
    ),
    (
        "fluent-bit-conf/firelens/plugins.conf",
        include_str!("../../fluent-bit-conf/firelens/plugins.conf"),
    ),
    (
        "fluent-bit-conf/eks/fluent-bit.conf",
        include_str!("../../fluent-bit-conf/eks/fluent-bit.conf"),
    ),
    (
        "fluent-bit-conf/eks/plugins.conf",
        include_str!("../../fluent-bit-conf/eks/plugins.conf"),
    ),
    (
        "fluent-bit-conf/eks/cloudwatch.conf",
        include_str!("../../fluent-bit-conf/eks/cloudwatch.conf"),
    ),
    (
        "fluent-bit-conf/eks/native-sidecar.conf",
        include_str!("../../fluent-bit-conf/eks/native-sidecar.conf"),
    ),
    (
        "fluent-bit-conf/samples/firelens.jsonl",
        include_str!("../../fluent-bit-conf/samples/firelens.jsonl"),
    ),
    (
        "fluent-bit-conf/samples/kubernetes.jsonl",
        include_str!("../../fluent-bit-conf/samples/kubernetes.jsonl"),
    ),
];

const TASK_DEFINITION: &str = include_str!("../../deploy/ecs/task-definition.json");

/// What the page opens with: the shipped files, which config and sample to start from, the
/// FireLens tag, and the log router's environment from `deploy/ecs/task-definition.json`
/// (plus a region), as JSON.
#[wasm_bindgen]
pub fn shipped() -> String {
    let files: serde_json::Map<String, Value> = SHIPPED
        .iter()
        .map(|(path, text)| ((*path).to_owned(), Value::String((*text).to_owned())))
        .collect();
    json!({
        "files": files,
        "config": "fluent-bit-conf/firelens/extra.conf",
        "records": "fluent-bit-conf/samples/firelens.jsonl",
        "tag": "checkout-firelens-0123456789abcdef",
        "env": firelens_environment(),
    })
    .to_string()
}

/// `NAME=value` lines of the FireLens log router's environment in the shipped task
/// definition, and `AWS_REGION` (which ECS sets) if it does not name one.
fn firelens_environment() -> String {
    let task: Value = serde_json::from_str(TASK_DEFINITION).unwrap_or(Value::Null);
    let mut lines = Vec::new();
    let routers = task["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten();
    for router in routers.filter(|c| c.get("firelensConfiguration").is_some()) {
        for variable in router["environment"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) =
                (variable["name"].as_str(), variable["value"].as_str())
            {
                lines.push(format!("{name}={value}"));
            }
        }
    }
    if !lines.iter().any(|l| l.starts_with("AWS_REGION=")) {
        lines.insert(0, "AWS_REGION=us-east-1".to_owned());
    }
    lines.join("\n")
}

/// The preview of `config` (the text of a classic config; its `@INCLUDE`s come from `files`, a
/// JSON object of path → text, by path or file name) for `records` (JSON lines) tagged `tag`,
/// with `env` (`NAME=value` lines) for `${NAME}`. `now_ms` is the time given to records that
/// carry none. Returns `{"report": …}` (see `fanout_core::preview::Report`) or `{"error": …}`.
#[wasm_bindgen]
pub fn preview(
    config: &str,
    files: &str,
    records: &str,
    tag: &str,
    env: &str,
    now_ms: f64,
) -> String {
    match run(config, files, records, tag, env, now_ms) {
        Ok(report) => json!({ "report": report }).to_string(),
        Err(error) => json!({ "error": error }).to_string(),
    }
}

const CONFIG_NAME: &str = "fluent-bit.conf";

fn run(
    config: &str,
    files: &str,
    records: &str,
    tag: &str,
    env: &str,
    now_ms: f64,
) -> Result<fanout_core::preview::Report, String> {
    let files: HashMap<String, String> = serde_json::from_str(files).unwrap_or_default();
    let variables: HashMap<&str, &str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let read = |path: &str| -> Result<String, String> {
        if path == CONFIG_NAME {
            return Ok(config.to_owned());
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        files
            .get(path)
            .or_else(|| {
                files
                    .iter()
                    .find(|(p, _)| p.rsplit('/').next() == Some(name))
                    .map(|(_, text)| text)
            })
            .cloned()
            .ok_or_else(|| format!("cannot read {path}: not in the bundle (add it to the files)"))
    };
    let lookup = |name: &str| variables.get(name).map(|v| (*v).to_owned());
    let sections = fanout_core::classic::load(CONFIG_NAME, &read, &lookup)?;
    let now = EventTime::from_f64(now_ms / 1000.0).unwrap_or(EventTime::new(0, 0));
    let records = fanout_core::preview::parse_records(records, now)?;
    fanout_core::preview::report(&sections, &records, tag, &lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opening() -> Value {
        let shipped: Value = serde_json::from_str(&shipped()).unwrap();
        let files = shipped["files"].to_string();
        let config = shipped["files"][shipped["config"].as_str().unwrap()]
            .as_str()
            .unwrap();
        let records = shipped["files"][shipped["records"].as_str().unwrap()]
            .as_str()
            .unwrap();
        let out = preview(
            config,
            &files,
            records,
            shipped["tag"].as_str().unwrap(),
            shipped["env"].as_str().unwrap(),
            1.7e12,
        );
        serde_json::from_str(&out).unwrap()
    }

    #[test]
    fn the_page_opens_on_the_shipped_firelens_sample_routed() {
        let out = opening();
        let output = &out["report"]["outputs"][0];
        assert_eq!(output["label"], "firelens");
        assert_eq!(output["error"], Value::Null);
        // A record's route at a destination, as the page reads it.
        let route = |record: &Value, name: &str| -> Value {
            record["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["destination"] == name)
                .cloned()
                .unwrap()
        };
        let streams: Vec<String> = output["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                route(r, "firehose")["facts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(streams, vec!["logs-checkout", "logs-cart"]);
        let datadog = route(&output["records"][0], "datadog");
        assert_eq!(datadog["facts"][0]["text"], "service checkout");
        let firehose = &output["destinations"][1];
        assert_eq!(firehose["name"], "firehose");
        let calls = firehose["totals"]["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "calls")
            .cloned()
            .unwrap();
        assert_eq!(calls["value"], 2);
    }

    #[test]
    fn a_bad_property_shows_the_plugins_error_line() {
        let shipped: Value = serde_json::from_str(&shipped()).unwrap();
        let config = shipped["files"]["fluent-bit-conf/firelens/extra.conf"]
            .as_str()
            .unwrap()
            .replace(
                "workers         2",
                "workers         2\n    flush_timeout   soon",
            );
        let out: Value = serde_json::from_str(&preview(
            &config,
            "{}",
            "{\"log\":\"x\"}",
            "app",
            "AWS_REGION=us-east-1",
            0.0,
        ))
        .unwrap();
        assert_eq!(
            out["report"]["outputs"][0]["error"],
            "[error] [output:fanout:firelens] property 'flush_timeout': invalid value 'soon': expected a duration such as 30s, 500ms, 2m or 1h"
        );
    }

    #[test]
    fn includes_come_from_the_bundle() {
        let files = json!({"conf/outputs.conf": "[OUTPUT]\n    Name fanout\n    Match *\n    destinations file\n    path /x\n"}).to_string();
        let out: Value = serde_json::from_str(&preview(
            "[SERVICE]\n    Flush 1\n@INCLUDE outputs.conf\n",
            &files,
            "{\"log\":\"x\"}",
            "app",
            "",
            0.0,
        ))
        .unwrap();
        let route = &out["report"]["outputs"][0]["records"][0]["routes"][0];
        assert_eq!(route["destination"], "file");
        assert_eq!(route["facts"][0]["text"], "appended to /x");
        let missing: Value = serde_json::from_str(&preview(
            "@INCLUDE nowhere.conf\n",
            "{}",
            "",
            "app",
            "",
            0.0,
        ))
        .unwrap();
        assert!(
            missing["error"]
                .as_str()
                .unwrap()
                .starts_with("cannot read nowhere.conf"),
            "{missing}"
        );
    }
}
