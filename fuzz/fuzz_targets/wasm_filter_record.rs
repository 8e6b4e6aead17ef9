//! Any tag and record through the `k8s-metadata` filter's record path, in JSON and msgpack
//! mode: it never panics (a panic in the module is a trap in the host) and always answers with
//! one NUL-terminated result. A JSON record the fast path takes — JSON log lines merged included,
//! with the log line kept or not — comes out equal to what the full path (parse, enrich, write)
//! makes of it, with no key twice, or, where the full path cannot parse it, as the host wrote it
//! with keys added.
#![no_main]

use k8s_metadata::enrich;
use k8s_metadata::podinfo::{Config, PodInfo};
use k8s_metadata::scan::{self, Strictness};
use k8s_metadata::splice::{self, Prepared, Scratch};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: (&[u8], &[u8])| {
    let (tag, record) = data;
    let mut out = Vec::new();
    k8s_metadata::filter(tag, 0, Some(record), record.len() as u32, &mut out);
    assert_eq!(out.last(), Some(&0));
    assert_eq!(
        out.iter().filter(|b| **b == 0).count(),
        1,
        "exactly one NUL, at the end"
    );

    let pod = PodInfo {
        pod_name: Some("report-1".into()),
        labels: [(
            "tags.datadoghq.com/service".to_string(),
            "nightly".to_string(),
        )]
        .into_iter()
        .collect(),
        ..PodInfo::default()
    };
    let tag = String::from_utf8_lossy(tag);
    for config in [
        Config::default(),
        Config {
            keep_log: false,
            ..Config::default()
        },
    ] {
        let prepared = Prepared::new(&tag, &pod, &config);
        let mut spliced = Vec::new();
        let taken = splice::splice(
            record,
            &prepared,
            &config,
            &mut Scratch::default(),
            &mut spliced,
        );
        // Buffers kept from an earlier record change nothing.
        let mut warm = Scratch::default();
        let mut earlier = Vec::new();
        splice::splice(EARLIER, &prepared, &config, &mut warm, &mut earlier);
        let mut again = Vec::new();
        assert_eq!(
            splice::splice(record, &prepared, &config, &mut warm, &mut again),
            taken
        );
        assert_eq!(
            again, spliced,
            "the same with buffers kept from an earlier record"
        );
        if !taken {
            continue;
        }
        // The fast path adds no key twice (what the host wrote twice stays twice).
        assert_eq!(
            repeated_keys(&spliced),
            repeated_keys(record),
            "no key added twice"
        );
        match serde_json::from_slice::<Value>(record) {
            Ok(Value::Object(mut full)) => {
                enrich::enrich(&mut full, &tag, &pod, &config);
                let spliced: Value =
                    serde_json::from_slice(&spliced).expect("the splice writes JSON");
                assert_eq!(spliced, Value::Object(full));
            }
            // What the full path cannot parse (lone surrogates inside strings, numbers out of
            // its range) the fast path hands back as the host wrote it, with keys added.
            _ => {
                let close = record.iter().rposition(|&b| b == b'}').expect("an object");
                if config.keep_log {
                    assert!(spliced.starts_with(&record[..close]) && spliced.ends_with(b"}"));
                }
            }
        }
    }
});

/// A record merged before the one fuzzed, through the same buffers.
const EARLIER: &[u8] = br#"{"time":"t","stream":"stdout","message":"{\"m\":1}","log":"{\"level\":\"info\",\"n\":[1,{\"x\":\"\\u00e9\"}],\"stream\":\"line's\"}"}"#;

/// How many top-level keys of a JSON object repeat an earlier one (as written).
fn repeated_keys(text: &[u8]) -> usize {
    let mut members = Vec::new();
    scan::object(text, 0, Strictness::Structure, &mut members).expect("a JSON object");
    let mut keys: Vec<&[u8]> = members.iter().map(|m| m.key_body(text)).collect();
    keys.sort();
    keys.dedup();
    members.len() - keys.len()
}
