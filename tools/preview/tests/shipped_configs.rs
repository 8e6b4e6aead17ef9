//! The shipped Fluent Bit configs, previewed with the shipped sample records, and the YAML
//! form checked against the classic one.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn conf(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fluent-bit-conf")
        .join(path)
}

fn env(name: &str) -> Option<String> {
    match name {
        "DD_API_KEY" => Some("key-from-secret".into()),
        "AWS_REGION" => Some("eu-west-1".into()),
        "DD_TAGS" => Some("env:prod,team:data".into()),
        _ => None,
    }
}

fn preview(config: &str, records: &str, tag: &str) -> String {
    let text = std::fs::read_to_string(conf(records)).unwrap();
    let events = flb_fanout_tools::parse_records(&text).unwrap();
    flb_fanout_tools::preview(&conf(config), &events, tag, &env).unwrap()
}

#[test]
fn firelens_extra_conf_routes_each_container_to_its_stream_and_service() {
    let out = preview(
        "firelens/extra.conf",
        "samples/firelens.jsonl",
        "checkout-firelens-0123",
    );
    assert!(
        out.contains(
            "[OUTPUT] fanout 'firelens' (Match_Regex ^(?!firelens-healthcheck$).*): datadog, firehose"
        ),
        "{out}"
    );
    assert!(
        out.contains("firehose: region eu-west-1, aggregation on"),
        "{out}"
    );
    assert!(out.contains("datadog: service=checkout"), "{out}");
    assert!(out.contains("firehose: stream=logs-checkout"), "{out}");
    assert!(
        out.contains("datadog: service=cart source=- status=error"),
        "{out}"
    );
    assert!(out.contains("firehose: stream=logs-cart"), "{out}");
    assert!(
        out.contains("task_family:checkout,task_version:42"),
        "{out}"
    );
    assert!(
        out.contains("env:prod,team:data"),
        "DD_TAGS from the environment: {out}"
    );
    assert!(!out.contains("key-from-secret"), "the API key is not shown");
}

#[test]
fn eks_sidecar_conf_routes_by_unified_service_label() {
    let out = preview("eks/fluent-bit.conf", "samples/kubernetes.jsonl", "app");
    assert!(
        out.contains("[OUTPUT] fanout 'eks' (Match app): datadog, firehose"),
        "{out}"
    );
    assert!(out.contains("datadog: service=nightly-report"), "{out}");
    assert!(
        out.contains("firehose: stream=logs-nightly-report"),
        "{out}"
    );
    assert!(out.contains("kube_namespace:batch"), "{out}");
}

/// The same `fanout` output in both formats: YAML read with PyYAML (kubernetes-validate's
/// dependency, installed by .ci/setup).
#[test]
fn the_yaml_form_matches_the_classic_form() {
    let classic = flb_fanout_tools::classic::load(&conf("eks/fluent-bit.conf"), &|_| None).unwrap();
    let output = classic
        .iter()
        .find(|s| s.name == "OUTPUT" && s.get("name") == Some("fanout"))
        .unwrap();
    let json = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(conf("eks/fluent-bit.yaml"))
        .output()
        .expect("python3 runs");
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let yaml: Value = serde_json::from_slice(&json.stdout).unwrap();
    let fanout = yaml["pipeline"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "fanout")
        .unwrap();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "on".into()
            } else {
                "off".into()
            }
        }
        other => other.to_string(),
    };
    for (key, value) in &output.properties {
        let in_yaml = fanout.get(key.to_ascii_lowercase()).map(text);
        // Unset variables expand to nothing in the classic load above, so compare the text.
        let expected = value.trim();
        let got = in_yaml.unwrap_or_else(|| panic!("{key} is missing from the YAML form"));
        let got = got
            .replace("${DD_API_KEY}", "")
            .replace("${DD_SERVICE}", "")
            .replace("${DD_SOURCE}", "")
            .replace("${DD_TAGS}", "")
            .replace("${AWS_REGION}", "");
        assert_eq!(got.trim(), expected, "{key}");
    }
    assert_eq!(yaml["plugins"][0], "/fluent-bit/plugins/fanout.so");
}

/// The small shipped files: both plugins.conf load the plugin from where the Dockerfile puts
/// it, and the optional CloudWatch include is a well-formed core output section.
#[test]
fn plugins_files_and_the_cloudwatch_include_are_consistent() {
    let dockerfile = std::fs::read_to_string(conf("../docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("/src/dist/fanout.so /src/dist/k8s-metadata.wasm /fluent-bit/plugins/")
    );
    for path in ["firelens/plugins.conf", "eks/plugins.conf"] {
        let sections = flb_fanout_tools::classic::load(&conf(path), &|_| None).unwrap();
        assert_eq!(sections.len(), 1, "{path}");
        assert_eq!(sections[0].name, "PLUGINS");
        assert_eq!(
            sections[0].get("path"),
            Some("/fluent-bit/plugins/fanout.so"),
            "{path}"
        );
    }
    let extra = flb_fanout_tools::classic::load(&conf("firelens/extra.conf"), &|_| None).unwrap();
    assert_eq!(
        extra[0].get("plugins_file"),
        Some("/fluent-bit/etc/plugins.conf")
    );
    let cloudwatch = flb_fanout_tools::classic::load(&conf("eks/cloudwatch.conf"), &env).unwrap();
    assert_eq!(cloudwatch.len(), 1);
    assert_eq!(cloudwatch[0].get("name"), Some("cloudwatch_logs"));
    assert_eq!(cloudwatch[0].get("region"), Some("eu-west-1"));
    assert!(cloudwatch[0].get("log_group_name").is_some());
    let eks = std::fs::read_to_string(conf("eks/fluent-bit.conf")).unwrap();
    assert!(
        eks.contains("# @INCLUDE cloudwatch.conf"),
        "offered as an opt-in include"
    );
}
