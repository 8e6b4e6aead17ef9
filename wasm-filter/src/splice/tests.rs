use super::*;
use serde_json::{Value, json};

const TAG: &str = "kube.var.log.containers.report-1_batch_job-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log";

fn pod() -> PodInfo {
    PodInfo {
        pod_name: Some("report-1".into()),
        namespace_name: Some("batch".into()),
        labels: [
            (
                "tags.datadoghq.com/service".to_string(),
                "nightly".to_string(),
            ),
            ("tags.datadoghq.com/env".to_string(), "prod".to_string()),
        ]
        .into_iter()
        .collect(),
        ..PodInfo::default()
    }
}

/// The record as the full path writes it.
fn full_with(record: &[u8], pod: &PodInfo, config: &Config) -> Value {
    let mut map = serde_json::from_slice::<Value>(record)
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    enrich::enrich(&mut map, TAG, pod, config);
    Value::Object(map)
}

fn full(record: &str) -> Value {
    full_with(record.as_bytes(), &pod(), &Config::default())
}

fn spliced_with(record: &[u8], pod: &PodInfo, config: &Config) -> Option<Vec<u8>> {
    let prepared = Prepared::new(TAG, pod, config);
    let mut out = Vec::new();
    splice(record, &prepared, config, &mut Scratch::default(), &mut out).then_some(out)
}

fn spliced(record: &str) -> Option<Vec<u8>> {
    spliced_bytes(record.as_bytes())
}

fn spliced_bytes(record: &[u8]) -> Option<Vec<u8>> {
    spliced_with(record, &pod(), &Config::default())
}

/// Spliced, the record equals the full path's and has no key twice (the host would keep both).
fn assert_same_as_full(record: &str, pod: &PodInfo, config: &Config) {
    let out =
        spliced_with(record.as_bytes(), pod, config).unwrap_or_else(|| panic!("spliced: {record}"));
    let value: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert_eq!(value, full_with(record.as_bytes(), pod, config), "{record}");
    let mut raw_keys = Vec::new();
    let mut members = Vec::new();
    scan::object(&out, 0, Strictness::Structure, &mut members).unwrap();
    for member in &members {
        raw_keys.push(member.key_body(&out).to_vec());
    }
    let unique: std::collections::BTreeSet<_> = raw_keys.iter().collect();
    assert_eq!(
        unique.len(),
        raw_keys.len(),
        "a key twice: {}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn records_that_only_gain_keys_are_spliced_and_equal_the_full_path() {
    for record in [
        r#"{"time":"2026-11-22T02:00:00.1Z","stream":"stdout","_p":"F","log":"GET /x 200"}"#,
        r#"{}"#,
        r#" { "log" : "plain" , "n": 1.50e3, "big": 123456789012345678901234567890 } "#,
        r#"{"log":"  \n not json","service":"mine","nested":{"kubernetes":{"pod_name":"x"}}}"#,
        r#"{"l\u006fg":"escaped key, plain text","message":42}"#,
        r#"{"log":"2026-11-22 not a CRI line","stream":"stderr"}"#,
        r#"{"k8s_metadata_error":"printed by the app","log":"x"}"#,
    ] {
        let out = spliced(record).unwrap_or_else(|| panic!("spliced: {record}"));
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value, full(record), "{record}");
    }
    // The record's own text is kept as the host wrote it.
    let out = spliced(r#"{"big":123456789012345678901234567890}"#).unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with(r#"{"big":123456789012345678901234567890,"kubernetes":"#)
    );
}

/// JSON log lines, merged by the fast path exactly as the full path merges them, with every
/// config that changes the merge.
#[test]
fn json_log_lines_are_merged_as_the_full_path_merges_them() {
    let no_keep = Config {
        keep_log: false,
        ..Config::default()
    };
    let no_tags = Config {
        service_tags: false,
        ..Config::default()
    };
    for record in [
        r#"{"time":"t","stream":"stdout","_p":"F","log":"{\"level\":\"info\",\"msg\":\"GET /x\",\"status\":200,\"ms\":12.5,\"ok\":true}"}"#,
        r#"{"stream":"stdout","log":"{\"http\":{\"method\":\"GET\",\"h\":{\"a\":[1,2,{\"b\":null}]}},\"tags\":[\"x\",1,2.5,true,null],\"e\":{},\"f\":[]}"}"#,
        r#"{"stream":"stdout","log":"{\"msg\":\"caf\u00e9 \\u00e9 \\u201cq\\u201d \\\"x\\\" tab\\there\\nnext \\ud83d\\ude00\",\"path\":\"C:\\\\tmp\"}"}"#,
        "{\"stream\":\"stdout\",\"log\":\"{\\\"lang\\\":\\\"\u{65e5}\u{672c}\u{8a9e} \u{2713} \u{1f600}\\\"}\"}",
        // The record wins; `kubernetes` is never merged; service tags the line has are kept.
        r#"{"stream":"stdout","level":"record's","log":"{\"level\":\"line's\",\"kubernetes\":{\"pod_name\":\"evil\"},\"service\":\"mine\",\"stream\":\"x\"}"}"#,
        // `log` holds no object: `message` is merged; a `log` object wins over `message`.
        r#"{"stream":"stdout","log":"plain","message":"{\"from\":\"message\"}"}"#,
        r#"{"stream":"stdout","log":"{\"from\":\"log\"}","message":"{\"from\":\"message\"}"}"#,
        r#"{"stream":"stdout","log":"{not json","message":"{\"from\":\"message\"}"}"#,
        r#"{"stream":"stdout","log":"{\"a\":1} trailing","message":"{\"b\":2}"}"#,
        // Whitespace around the object, escaped or not; the log line's own `log` key.
        r#"{"stream":"stdout","log":" \t\n{ \"a\" : 1 , \"log\" : \"inner\" } \r\n"}"#,
        r#"{"stream":"stdout","log":"\f{\"a\":1}\u000b"}"#,
        r#"{"stream":"stdout","log":"{}"}"#,
        // Not objects, or not valid: left as text.
        r#"{"stream":"stdout","log":"{\"a\":1,}"}"#,
        r#"{"stream":"stdout","log":"{\"a\":\"\\ud800\"}"}"#,
        r#"{"stream":"stdout","log":"{\"a\":\"raw\ttab\"}"}"#,
        r#"{"stream":"stdout","log":"[1,2]"}"#,
        r#"{"stream":"stdout","log":"{\"a\":01}"}"#,
        r#"{"log":"{\"a\":1}","stream":"stdout","logtag":"F"}"#,
    ] {
        for config in [&Config::default(), &no_keep, &no_tags] {
            assert_same_as_full(record, &pod(), config);
            assert_same_as_full(record, &PodInfo::default(), config);
        }
    }
}

#[test]
fn records_the_filter_changes_otherwise_take_the_full_path() {
    for record in [
        r#"{"kubernetes":{"pod_name":"evil"}}"#,
        r#"{"k\u0075bernetes":"escaped"}"#,
        r#"{"log":"2026-11-22T09:00:00.1Z stdout F hello"}"#,
        r#"{"log":"ok","log":"{\"a\":1}"}"#,
        r#"{"log":"a","message":"b","log":"c"}"#,
        r#"["not", "an", "object"]"#,
        r#"{"unterminated":"#,
        r#"{"a":1} trailing"#,
        // Unsure: the full path decides.
        "{\"stream\":\"x\",\"log\":\"\u{a0}{\\\"a\\\":1}\"}",
        r#"{"stream":"x","log":"{\"a\":1e400}"}"#,
        r#"{"stream":"x","log":"{\"a\":1,\"a\":2}"}"#,
        r#"{"stream":"x","log":"{\"\\u0061\":1}"}"#,
        r#"{"stream":"x","l\u006fg":"{\"a\":1}","a":2}"#,
        r#"{"stream":"x","log":"{\"a\":1}\u00a0"}"#,
        r#"{"stream":"x","log":"\ud800{\"a\":1}"}"#,
    ] {
        assert!(spliced(record).is_none(), "{record}");
    }
    // Deeper than the limit, inside the log line.
    let deep = format!(
        r#"{{"stream":"x","log":"{{\"a\":{}1{}}}"}}"#,
        "[".repeat(70),
        "]".repeat(70)
    );
    assert!(spliced(&deep).is_none());
}

#[test]
fn same_bytes_compares_every_byte() {
    let tag = TAG.as_bytes();
    assert!(same_bytes(tag, tag));
    assert!(same_bytes(b"", b""));
    for i in 0..tag.len() {
        let mut other = tag.to_vec();
        other[i] ^= 1;
        assert!(!same_bytes(tag, &other), "byte {i}");
    }
    assert!(!same_bytes(tag, &tag[..tag.len() - 1]));
}

/// The scan checks the structure, not the escapes inside strings: what the host wrote is
/// handed back with the metadata added (the full path would replace the record by an error
/// marker). Invalid UTF-8 and control characters in strings go to the full path.
#[test]
fn escapes_are_the_hosts_and_stay_as_they_are() {
    let record = br#"{"a":"\ud800"}"#;
    let out = spliced_bytes(record).expect("spliced");
    assert!(out.starts_with(&record[..record.len() - 1]));
    assert!(out.ends_with(b"}"));
    for record in [
        &b"{\"a\":\"x\x01y\"}"[..],
        b"{\"\xff\":1}",
        b"{\"a\":\"\xff\"}",
    ] {
        assert!(spliced_bytes(record).is_none());
    }
}

#[test]
fn nothing_known_about_the_pod_adds_nothing_but_still_merges() {
    let config = Config::default();
    let prepared = Prepared::new("tail.0", &PodInfo::default(), &config);
    let run = |record: &str| {
        let mut out = Vec::new();
        assert!(splice(
            record.as_bytes(),
            &prepared,
            &config,
            &mut Scratch::default(),
            &mut out
        ));
        out
    };
    let out = run(r#"{"stream":"stdout","log":"{\"a\":1}"}"#);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"stream": "stdout", "log": "{\"a\":1}", "a": 1})
    );
    let plain = r#"{"stream":"stdout","log":"hello"}"#;
    assert_eq!(run(plain), plain.as_bytes());
}

#[test]
fn service_tags_the_record_has_are_not_added() {
    let out = spliced(r#"{"env":"staging"}"#).unwrap();
    let value: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["env"], "staging");
    assert_eq!(value["service"], "nightly");
    assert_eq!(value, full(r#"{"env":"staging"}"#));
    assert_eq!(
        value["kubernetes"],
        json!({"pod_name": "report-1", "namespace_name": "batch", "container_name": "job",
                   "docker_id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                   "labels": {"tags.datadoghq.com/env": "prod", "tags.datadoghq.com/service": "nightly"}})
    );
}

/// Many keys, some alike (in their length and first word, or in all but their middle): keys are
/// never taken one for another.
#[test]
fn many_keys_merge_without_mixing_them_up() {
    let mut line = serde_json::Map::new();
    for n in 0..40 {
        line.insert(format!("k{n}"), json!(n));
        line.insert(format!("{n}k"), json!(n));
        line.insert(format!("request_{n:02}_id"), json!(n));
    }
    line.insert("stream".into(), json!("line's"));
    line.insert("request_07_ix".into(), json!("line's"));
    assert!(line.len() <= MAX_MERGED_MEMBERS);
    let record = json!({"stream": "stdout", "k7": "record's", "request_07_id": "record's",
                        "log": Value::Object(line).to_string()});
    assert_same_as_full(&record.to_string(), &pod(), &Config::default());
}

/// A log line with more members than the fast path compares is merged by the full path.
#[test]
fn a_log_line_with_very_many_members_takes_the_full_path() {
    let line: serde_json::Map<_, _> = (0..=MAX_MERGED_MEMBERS)
        .map(|n| (format!("k{n}"), json!(n)))
        .collect();
    let record =
        json!({"stream": "stdout", "k7": "record's", "log": Value::Object(line).to_string()});
    assert_eq!(spliced(&record.to_string()), None);
    let merged = full(&record.to_string());
    assert_eq!(merged["k7"], "record's");
    assert_eq!(merged["k8"], 8);
    assert_eq!(merged["stream"], "stdout");
}

/// The keys the filter's decisions depend on are told by their length and first word: a key
/// that shares either, or both but not its last bytes, is not one of them.
#[test]
fn top_keys_are_told_apart_from_keys_alike() {
    let of = |key: &str| TopKey::of(key.as_bytes(), scan::key_word_of(key.as_bytes()));
    for (key, expected) in [
        ("kubernetes", Some(TopKey::Kubernetes)),
        ("stream", Some(TopKey::Stream)),
        ("logtag", Some(TopKey::Logtag)),
        ("log", Some(TopKey::Log)),
        ("message", Some(TopKey::Message)),
        ("service", Some(TopKey::Service)),
        ("env", Some(TopKey::Env)),
        ("version", Some(TopKey::Version)),
        ("kubernetez", None),
        ("kubernetes_", None),
        ("kubernete", None),
        ("logs", None),
        ("lo", None),
        ("Log", None),
        ("streams", None),
        ("", None),
    ] {
        assert_eq!(of(key), expected, "{key}");
    }
}
