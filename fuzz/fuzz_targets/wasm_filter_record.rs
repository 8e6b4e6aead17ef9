//! Any tag and record through the `k8s-metadata` filter's record path, in JSON and msgpack
//! mode: it never panics (a panic in the module is a trap in the host) and always answers with
//! one NUL-terminated result. A JSON record the splice path takes comes out equal to what the
//! full path (parse, enrich, write) makes of it, or, where the full path cannot parse it,
//! as the host wrote it with keys added.
#![no_main]

use k8s_metadata::enrich;
use k8s_metadata::podinfo::{Config, PodInfo};
use k8s_metadata::splice::{self, Prepared};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: (&[u8], &[u8])| {
    let (tag, record) = data;
    let mut out = Vec::new();
    k8s_metadata::filter(tag, Some(record), record.len() as u32, &mut out);
    assert_eq!(out.last(), Some(&0));
    assert_eq!(out.iter().filter(|b| **b == 0).count(), 1, "exactly one NUL, at the end");

    let pod = PodInfo {
        pod_name: Some("report-1".into()),
        labels: [("tags.datadoghq.com/service".to_string(), "nightly".to_string())]
            .into_iter()
            .collect(),
        ..PodInfo::default()
    };
    let config = Config::default();
    let tag = String::from_utf8_lossy(tag);
    let Some(prepared) = Prepared::new(&tag, &pod, &config) else {
        return;
    };
    let mut spliced = Vec::new();
    if !splice::splice(record, &prepared, &config, &mut spliced) {
        return;
    }
    match serde_json::from_slice::<Value>(record) {
        Ok(Value::Object(mut full)) => {
            enrich::enrich(&mut full, &tag, &pod, &config);
            let spliced: Value = serde_json::from_slice(&spliced).expect("the splice writes JSON");
            assert_eq!(spliced, Value::Object(full));
        }
        // What the full path cannot parse (deeper than serde_json's recursion limit, lone
        // surrogates inside strings) the splice hands back as the host wrote it.
        _ => {
            let close = record.iter().rposition(|&b| b == b'}').expect("an object");
            assert!(spliced.starts_with(&record[..close]) && spliced.ends_with(b"}"));
        }
    }
});
