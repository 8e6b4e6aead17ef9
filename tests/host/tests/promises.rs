//! `tests/README.md` names, for each README promise, the test that checks it: every name it
//! gives must be a test that exists, so a renamed or deleted test cannot leave a promise
//! pointing at nothing.

use std::path::Path;

use fanout_testhost::workspace_root;

/// Every `fn` name in the workspace's Rust sources.
fn test_functions(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "node_modules" | ".git") {
                test_functions(&path, found);
            }
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let line = line.trim_start();
                if let Some(rest) = line
                    .strip_prefix("fn ")
                    .or_else(|| line.strip_prefix("async fn "))
                {
                    found.push(rest.split(['(', '<']).next().unwrap().to_owned());
                } else if let Some(name) = line.strip_suffix(',').filter(|n| {
                    !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                }) {
                    // `child_test!(name, …)`'s test names.
                    found.push(name.to_owned());
                }
            }
        }
    }
}

#[test]
fn every_test_the_promise_table_names_exists() {
    let root = workspace_root();
    let table = std::fs::read_to_string(root.join("tests/README.md")).unwrap();
    let mut functions = Vec::new();
    for dir in [
        "contract",
        "core",
        "plugin",
        "job-wrapper",
        "wasm-filter",
        "tests",
    ] {
        test_functions(&root.join(dir), &mut functions);
    }
    let mut named = 0;
    for cell in table.split('`').skip(1).step_by(2) {
        let Some((_, name)) = cell.rsplit_once("::") else {
            continue;
        };
        // `…_in_fluent_bit_1_9` stands for the named test's 1.9 twin.
        if name.is_empty() || name.starts_with('…') {
            continue;
        }
        named += 1;
        assert!(
            functions.iter().any(|f| f == name),
            "tests/README.md names `{cell}`, which is not a test"
        );
    }
    assert!(named >= 60, "only {named} tests named");
}
