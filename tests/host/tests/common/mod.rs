//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// Every line of a JSON-lines file, parsed (a line that does not parse fails the test).
pub fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
        })
        .collect()
}

/// The `record` field of every line.
pub fn records(path: &Path) -> Vec<Value> {
    json_lines(path)
        .into_iter()
        .map(|mut l| l["record"].take())
        .collect()
}

pub fn file_props<'a>(label: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("destinations", "file"), ("path", path), ("label", label)]
}
