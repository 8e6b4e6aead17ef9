//! `dist/k8s-metadata.wasm` in the real `filter_wasm` (WAMR), with the filter settings of the
//! shipped EKS config, fed hostile records over the forward protocol: a tag whose bytes cut a
//! multibyte character where the pod uid ends, a record 50 levels deep, a log line holding JSON
//! nested thousands of levels deep (which `merge_log` would parse), and a log line claiming
//! another pod. Every record must come out enriched with the real pod: a trap would drop the
//! record (and, before the module kept its state in `Cell`s, disable it for good).
//!
//! The same records go through the module compiled ahead of time (`make aot`) when `WAMRC`
//! names WAMR's compiler: native code must keep every guarantee the interpreter gives.
//!
//! Needs `FLUENT_BIT` (filter_wasm is 2.1+, so there is no 1.9 leg).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fanout_testhost::fluent_bit::{
    FluentBit, Release, Scratch, announce, binary, forward_unix, wait_until,
};
use fanout_testhost::workspace_root;
use serde_json::{Value, json};

/// `{"a": [[[ ... 1 ... ]]]}`, `depth` levels in all.
fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 1..depth {
        value = Value::Array(vec![value]);
    }
    json!({ "a": value })
}

/// The shipped EKS config's `[FILTER] wasm` settings other than the paths.
fn shipped_filter_settings() -> String {
    let shipped =
        std::fs::read_to_string(workspace_root().join("fluent-bit-conf/eks/fluent-bit.conf"))
            .unwrap();
    let filter = shipped
        .split("\n[")
        .find(|s| {
            s.starts_with("FILTER]") && s.to_ascii_lowercase().contains("name             wasm")
        })
        .expect("a wasm [FILTER]");
    let settings: Vec<String> = filter
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| {
            l.to_ascii_lowercase().starts_with("wasm_stack_size")
                || l.to_ascii_lowercase().starts_with("wasm_heap_size")
        })
        .map(|l| format!("    {l}\n"))
        .collect();
    assert!(
        !settings.is_empty(),
        "the shipped filter sets wasm_stack_size"
    );
    settings.concat()
}

/// The Downward API files of pod `report-1` in namespace `batch`, service `nightly-report`.
fn pod_report_1(scratch: &Scratch) -> std::path::PathBuf {
    let podinfo = scratch.dir("/etc/podinfo");
    std::fs::write(podinfo.join("pod_name"), "report-1").unwrap();
    std::fs::write(podinfo.join("namespace"), "batch").unwrap();
    std::fs::write(
        podinfo.join("labels"),
        "tags.datadoghq.com/service=\"nightly-report\"\n",
    )
    .unwrap();
    podinfo
}

/// The records the file output has written so far (a line still being written is left out).
fn written_records(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A config: `input` (an `[INPUT]` section), the module with the shipped filter settings, and
/// every record written to `out/records.jsonl`.
fn filter_config(input: &str, module: &Path, podinfo: &Path, out: &Path) -> String {
    format!(
        "[SERVICE]\n    Flush 0.2\n    Grace 2\n{input}\
         [FILTER]\n    Name wasm\n    Match *\n    WASM_Path {wasm}\n    Function_Name k8s_metadata\n    accessible_paths {podinfo}\n{settings}\
         [OUTPUT]\n    Name file\n    Match *\n    Path {out}\n    File records.jsonl\n    Format plain\n",
        wasm = module.display(),
        podinfo = podinfo.display(),
        settings = shipped_filter_settings(),
        out = out.display(),
    )
}

#[test]
fn hostile_records_never_disable_the_filter_in_wamr() {
    let test = "hostile_records_never_disable_the_filter_in_wamr";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    hostile_records_through(
        &fluent_bit,
        &workspace_root().join("dist/k8s-metadata.wasm"),
    );
}

#[test]
fn hostile_records_never_disable_the_aot_compiled_filter() {
    let test = "hostile_records_never_disable_the_aot_compiled_filter";
    let Some(wamrc) = std::env::var_os("WAMRC").filter(|v| !v.is_empty()) else {
        announce(&format!(
            "real-host: SKIPPED {test}: WAMRC is not set (WAMR's wamrc, of the WAMR version the Fluent Bit bundles: README, ahead-of-time compiled filter)"
        ));
        return;
    };
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let scratch = Scratch::new("real-wasm-aot");
    let aot = scratch.path("/k8s-metadata.aot");
    // The flags `make aot` uses.
    let status = Command::new(wamrc)
        .args(["--target=x86_64", "--cpu=x86-64", "--disable-simd", "-o"])
        .arg(&aot)
        .arg(workspace_root().join("dist/k8s-metadata.wasm"))
        .status()
        .expect("wamrc runs");
    assert!(status.success(), "wamrc compiles the module");
    hostile_records_through(&fluent_bit, &aot);
}

/// Sends the hostile records through `module` (`.wasm` or `.aot`) in a real Fluent Bit and
/// checks every one comes out enriched with the real pod.
fn hostile_records_through(fluent_bit: &Path, module: &Path) {
    let scratch = Scratch::new("real-wasm");
    let podinfo = pod_report_1(&scratch);
    let out_dir = scratch.dir("/out");
    let socket = scratch.path("/run/forward.sock");
    let config = scratch.path("/fluent-bit/etc/fluent-bit.conf");
    // `threaded on`: in 5.1.1 a non-threaded forward input runs filters where WAMR reports a
    // native stack overflow for every record (README: the k8s-metadata filter).
    std::fs::write(
        &config,
        filter_config(
            &format!(
                "[INPUT]\n    Name forward\n    threaded on\n    unix_path {}\n",
                socket.display()
            ),
            module,
            &podinfo,
            &out_dir,
        ),
    )
    .unwrap();
    let mut fb = FluentBit::start(
        fluent_bit,
        ["-c", config.to_str().unwrap()],
        &[],
        &scratch.root,
    );
    wait_until(
        &mut fb,
        "the forward socket",
        Duration::from_secs(20),
        || socket.exists(),
    );
    // Byte 36 after the pod name falls inside "é": slicing there would panic.
    let tag = format!(
        "kube.var.log.pods.batch_report-1_{}é/report/0.log",
        "a".repeat(35)
    );
    let claim = r#"{"kubernetes":{"namespace_name":"payments","labels":{"tags.datadoghq.com/service":"payments"}}}"#;
    let deep_line = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let records: Vec<(u32, Value)> = vec![
        (1, json!({"log": "first"})),
        (2, json!({"log": "fifty levels", "n": nested(50)})),
        (3, json!({ "log": deep_line })),
        (4, json!({ "log": claim })),
        (5, json!({"log": "after"})),
    ];
    for record in &records {
        forward_unix(&socket, &tag, std::slice::from_ref(record)).unwrap();
    }
    let out = out_dir.join("records.jsonl");
    let read = || written_records(&out);
    wait_until(
        &mut fb,
        "every record written",
        Duration::from_secs(30),
        || read().len() >= records.len(),
    );
    assert!(fb.terminate(Duration::from_secs(20)).success());
    let written = read();
    let log = fb.log();
    assert_eq!(written.len(), records.len(), "{written:#?}\n{log}");
    assert!(!log.contains("Got exception running wasm code"), "{log}");
    for (_, sent) in &records {
        let record = written
            .iter()
            .find(|r| r["log"] == sent["log"])
            .unwrap_or_else(|| panic!("{} missing", sent["log"]));
        assert_eq!(record["kubernetes"]["pod_name"], "report-1", "{record}");
        assert_eq!(record["kubernetes"]["namespace_name"], "batch", "{record}");
        assert_eq!(record["service"], "nightly-report", "{record}");
    }
    let deep = written
        .iter()
        .find(|r| r["log"] == deep_line.as_str())
        .unwrap();
    assert!(deep.get("a").is_none(), "too deep to merge: left as text");
}

/// JSON log lines of every shape, as a container runtime writes them (CRI, one long line split
/// into partial `P` lines), tailed with the cri parser and merged by the module in the real
/// WAMR: each comes out with the line's members beside its own (its own keys winning), the line
/// kept in `log`, the real pod in `kubernetes`; plain lines come out with the metadata only.
#[test]
fn json_log_lines_merge_in_real_wamr() {
    let test = "json_log_lines_merge_in_real_wamr";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let scratch = Scratch::new("real-wasm-merge");
    let podinfo = pod_report_1(&scratch);
    let big: serde_json::Map<String, Value> = (0..40)
        .map(|k| {
            (
                format!("field_{k:02}"),
                json!(format!("value {k} {}", "x".repeat(80))),
            )
        })
        .collect();
    let lines: Vec<Value> = vec![
        json!({"level": "info", "msg": "GET /x 200", "status": 200, "ms": 12.5, "ok": true}),
        json!({"http": {"method": "GET", "headers": {"a": [1, 2, {"b": null}]}}, "tags": ["x", 1, 2.5, false, null]}),
        json!({"msg": "café “quoted” \"x\" tab\there\nnext 😀 日本語", "path": "C:\\tmp\\out"}),
        Value::Object(big),
        // The record's own keys win; a line never says which pod it is.
        json!({"stream": "from the line", "service": "mine", "kubernetes": {"pod_name": "evil"}}),
    ];
    let mut file = String::new();
    let cri = |stream: &str, partial: &str, message: &str| {
        format!("2026-11-22T02:00:00.000000001Z {stream} {partial} {message}\n")
    };
    for line in &lines {
        file += &cri("stdout", "F", &line.to_string());
    }
    file += &cri("stderr", "F", "plain text, not JSON {");
    // One JSON line longer than the runtime's line limit: split into partial lines.
    let split = json!({"level": "warn", "msg": "split across partial lines", "n": 7}).to_string();
    file += &cri("stdout", "P", &split[..20]);
    file += &cri("stdout", "F", &split[20..]);
    let log_dir = scratch.dir("/var/log/app");
    std::fs::write(log_dir.join("app.log"), file).unwrap();
    let out_dir = scratch.dir("/out");
    let config = scratch.path("/fluent-bit/etc/fluent-bit.conf");
    std::fs::write(
        &config,
        filter_config(
            &format!(
                "[INPUT]\n    Name tail\n    Path {}/*.log\n    Tag app\n    Read_from_Head On\n    multiline.parser cri\n    Buffer_Max_Size 1M\n",
                log_dir.display()
            ),
            &workspace_root().join("dist/k8s-metadata.wasm"),
            &podinfo,
            &out_dir,
        ),
    )
    .unwrap();
    let mut fb = FluentBit::start(
        &fluent_bit,
        ["-c", config.to_str().unwrap()],
        &[],
        &scratch.root,
    );
    let out = out_dir.join("records.jsonl");
    let read = || written_records(&out);
    let expected = lines.len() + 2;
    wait_until(
        &mut fb,
        "every record written",
        Duration::from_secs(30),
        || read().len() >= expected,
    );
    assert!(fb.terminate(Duration::from_secs(20)).success());
    let written = read();
    let log = fb.log();
    assert_eq!(written.len(), expected, "{written:#?}\n{log}");
    assert!(!log.contains("exception"), "{log}");
    let merged_lines = lines
        .iter()
        .cloned()
        .chain([serde_json::from_str(&split).unwrap()]);
    for line in merged_lines {
        let text = line.to_string();
        let record = written
            .iter()
            .find(|r| r["log"] == text.as_str())
            .unwrap_or_else(|| panic!("{text} missing: {written:#?}"));
        for (key, value) in line.as_object().unwrap() {
            match key.as_str() {
                "kubernetes" => assert_eq!(record["kubernetes"]["pod_name"], "report-1"),
                "stream" => assert_eq!(record["stream"], "stdout", "the record's own key wins"),
                _ => assert_eq!(&record[key], value, "{key} in {record}"),
            }
        }
        assert_eq!(record["kubernetes"]["namespace_name"], "batch", "{record}");
        let service = line
            .get("service")
            .cloned()
            .unwrap_or(json!("nightly-report"));
        assert_eq!(record["service"], service, "{record}");
        assert!(record.get("kubernetes_from_record").is_none(), "{record}");
    }
    let plain = written
        .iter()
        .find(|r| r["log"] == "plain text, not JSON {")
        .expect("the plain line");
    let mut keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["_p", "kubernetes", "log", "service", "stream", "time"],
        "{plain}"
    );
}

/// `function_name k8s_metadata_version` in place of `k8s_metadata`: every record comes out as
/// the module's release, which is how to ask a running Fluent Bit which module it loaded.
#[test]
fn the_version_export_answers_in_real_wamr() {
    let test = "the_version_export_answers_in_real_wamr";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let scratch = Scratch::new("real-wasm-version");
    let podinfo = pod_report_1(&scratch);
    let out_dir = scratch.dir("/out");
    let config = scratch.path("/fluent-bit/etc/fluent-bit.conf");
    let shipped = filter_config(
        "[INPUT]\n    Name dummy\n    Tag app\n    Samples 3\n    Dummy {\"log\":\"x\"}\n",
        &workspace_root().join("dist/k8s-metadata.wasm"),
        &podinfo,
        &out_dir,
    );
    let asking = shipped.replace(
        "Function_Name k8s_metadata\n",
        "Function_Name k8s_metadata_version\n",
    );
    assert_ne!(asking, shipped, "the filter names its function");
    std::fs::write(&config, asking).unwrap();
    let mut fb = FluentBit::start(
        &fluent_bit,
        ["-c", config.to_str().unwrap()],
        &[],
        &scratch.root,
    );
    let out = out_dir.join("records.jsonl");
    let read = || written_records(&out);
    wait_until(
        &mut fb,
        "three records written",
        Duration::from_secs(30),
        || read().len() >= 3,
    );
    assert!(fb.terminate(Duration::from_secs(20)).success());
    let expected = json!({"k8s_metadata_version": env!("CARGO_PKG_VERSION")});
    let written = read();
    assert!(
        written.len() == 3 && written.iter().all(|r| *r == expected),
        "{written:#?}\n{}",
        fb.log()
    );
}
