use super::*;
use crate::time::EventTime;
use serde_json::{Value, json};
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
    let batch = Batch::from_json(
        "app.web",
        EventTime::new(1_700_000_000, 123_600_000),
        bodies,
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
fn a_ddtags_that_is_not_a_string_is_kept_as_tags_and_counted() {
    let c = config(&[("dd_tags", "env:prod")]);
    let keys = vec!["log".to_string()];
    let bodies = [
        json!({"log": "a", "ddtags": 42}),
        json!({"log": "b", "ddtags": ["team:web", 7, null, "x,y"]}),
        json!({"log": "c", "ddtags": {"team": "web", "tier": 2}}),
        json!({"log": "d", "ddtags": true}),
        json!({"log": "e", "ddtags": "plain:string"}),
        json!({"log": "f", "ddtags": null}),
    ];
    let batch = Batch::from_json("t", EventTime::new(1, 0), &bodies);
    let encoder = Encoder {
        config: &c,
        message_keys: &keys,
    };
    let mut plan = encoder.plan(&batch);
    let tags: Vec<Value> = plan
        .by_ref()
        .flat_map(|p| match p {
            Planned::Request(r) => (0..r.units.len())
                .map(|i| serde_json::from_slice::<Value>(r.units.unit(i)).unwrap())
                .collect(),
            Planned::Dropped { .. } => Vec::new(),
        })
        .map(|entry| entry["ddtags"].clone())
        .collect();
    assert_eq!(
        tags,
        vec![
            json!("env:prod,42"),
            json!("env:prod,team:web,7,x_y"),
            json!("env:prod,team:web,tier:2"),
            json!("env:prod,true"),
            json!("env:prod,plain:string"),
            json!("env:prod"),
        ]
    );
    assert_eq!(
        plan.retyped_ddtags, 4,
        "a string or null is not an alteration"
    );
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
    let plain = body(&requests[2], Compression::None).unwrap();
    let gz = body(&requests[2], Compression::Gzip(6)).unwrap();
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    assert_eq!(json.as_bytes(), plain);
    #[cfg(feature = "zstd")]
    {
        let zst = body(&requests[2], Compression::Zstd(3)).unwrap();
        assert_eq!(zstd::stream::decode_all(&zst[..]).unwrap(), plain);
        assert!(
            zst.len() < plain.len() / 4,
            "{} of {}",
            zst.len(),
            plain.len()
        );
    }
    let array: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(array.len(), 500);
    assert_eq!(array[0]["message"], "line 2000");

    let bodies: Vec<Value> = (0..12)
        .map(|_| json!({"log": "x".repeat(900_000)}))
        .collect();
    let (requests, _, parsed) = encode(&c, &bodies);
    assert_eq!(parsed.len(), 12);
    for r in &requests {
        assert!(body(r, Compression::None).unwrap().len() <= LIMITS.max_bytes);
    }
}
