//! `dist/k8s-metadata.wasm` driven the way Fluent Bit's `filter_wasm` drives it, on wasmtime:
//! the tag and record are copied into guest memory with the module's own `malloc` (the path
//! WAMR takes when a module exports `malloc`/`free`), the export is called with pointers,
//! lengths and the time, the returned address is checked to hold a NUL-terminated string
//! inside linear memory and copied out (strdup), and the copies are freed. JSON mode passes the
//! record NUL-terminated; msgpack mode passes the exact bytes and keeps only what precedes the
//! first 0x00 of the result, as the host does.

use std::path::{Path, PathBuf};

use fanout_contract::view::DEPTH_PLACEHOLDER;
use serde_json::{Value, json};
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

fn module_path() -> PathBuf {
    let path = std::env::var_os("FANOUT_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/k8s-metadata.wasm"));
    assert!(
        path.exists(),
        "{} does not exist: run `make dist` first",
        path.display()
    );
    path
}

struct FilterWasm {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    malloc: TypedFunc<i32, i32>,
    free: TypedFunc<i32, ()>,
    function: TypedFunc<(i32, i32, i32, i32, i32, i32), i32>,
}

impl FilterWasm {
    /// A fresh instance; `accessible_paths` maps host directories to guest paths.
    fn new(accessible_paths: &[(&Path, &str)]) -> FilterWasm {
        FilterWasm::calling("k8s_metadata", accessible_paths)
    }

    /// A fresh instance whose `function_name` is `function`.
    fn calling(function: &str, accessible_paths: &[(&Path, &str)]) -> FilterWasm {
        let engine = Engine::default();
        let module = Module::from_file(&engine, module_path()).expect("the module compiles");
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
        // Like filter_wasm: no environment, no arguments, only the accessible paths.
        let mut wasi = WasiCtxBuilder::new();
        for (host, guest) in accessible_paths {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly).unwrap();
        }
        let mut store = Store::new(&engine, wasi.build_p1());
        let instance: Instance = linker
            .instantiate(&mut store, &module)
            .expect("the module instantiates");
        FilterWasm {
            memory: instance
                .get_memory(&mut store, "memory")
                .expect("memory is exported"),
            malloc: instance
                .get_typed_func(&mut store, "malloc")
                .expect("malloc is exported"),
            free: instance
                .get_typed_func(&mut store, "free")
                .expect("free is exported"),
            function: instance
                .get_typed_func(&mut store, function)
                .unwrap_or_else(|e| panic!("{function} is exported: {e}")),
            store,
        }
    }

    fn copy_in(&mut self, bytes: &[u8]) -> i32 {
        let ptr = self
            .malloc
            .call(&mut self.store, bytes.len() as i32)
            .unwrap();
        assert_ne!(ptr, 0);
        self.memory
            .write(&mut self.store, ptr as usize, bytes)
            .unwrap();
        ptr
    }

    /// One call; returns what the host would keep (up to the first NUL), or None for a NULL
    /// or invalid address.
    fn call(
        &mut self,
        tag: &str,
        time_sec: u32,
        record: &[u8],
        nul_terminate_record: bool,
    ) -> Option<Vec<u8>> {
        let tag_ptr = self.copy_in(&[tag.as_bytes(), b"\0"].concat());
        let record_copy = if nul_terminate_record {
            [record, b"\0"].concat()
        } else {
            record.to_vec()
        };
        let record_ptr = self.copy_in(&record_copy);
        let result = self
            .function
            .call(
                &mut self.store,
                (
                    tag_ptr,
                    tag.len() as i32,
                    time_sec as i32,
                    0,
                    record_ptr,
                    record.len() as i32,
                ),
            )
            .expect("the call does not trap");
        let data = self.memory.data(&self.store);
        let kept = (result > 0 && (result as usize) < data.len())
            .then(|| {
                data[result as usize..]
                    .iter()
                    .position(|b| *b == 0)
                    .map(|end| data[result as usize..result as usize + end].to_vec())
            })
            .flatten();
        self.free.call(&mut self.store, tag_ptr).unwrap();
        self.free.call(&mut self.store, record_ptr).unwrap();
        kept
    }

    fn json(&mut self, tag: &str, time_sec: u32, record: &str) -> Value {
        let out = self
            .call(tag, time_sec, record.as_bytes(), true)
            .expect("a result");
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out)))
    }

    fn msgpack(&mut self, tag: &str, time_sec: u32, record: &[u8]) -> Value {
        let out = self.call(tag, time_sec, record, false).expect("a result");
        k8s_metadata::msgpack::decode(&out).expect("the kept bytes are one whole msgpack value")
    }

    fn memory_pages(&mut self) -> u64 {
        self.memory.size(&self.store)
    }
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn podinfo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pod_name"), "report-28190012-x7k2p").unwrap();
    std::fs::write(dir.path().join("namespace"), "batch").unwrap();
    std::fs::write(
        dir.path().join("pod_uid"),
        "5f1c2b1e-8d7a-4c2b-9f00-123456789abc",
    )
    .unwrap();
    std::fs::write(dir.path().join("node_name"), "fargate-ip-10-0-1-2").unwrap();
    std::fs::write(
        dir.path().join("labels"),
        "app.kubernetes.io/name=\"report\"\ntags.datadoghq.com/env=\"prod\"\ntags.datadoghq.com/version=\"1.4.2\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("annotations"),
        "kubernetes.io/psp=\"eks.privileged\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn downward_api_and_tail_path_fill_the_kubernetes_map() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    let tag = format!("kube.var.log.containers.report-28190012-x7k2p_batch_report-{ID}.log");
    let out = filter.json(
        &tag,
        1_700_000_000,
        r#"{"log":"processed 120 jobs","stream":"stdout"}"#,
    );
    assert_eq!(
        out,
        json!({
            "log": "processed 120 jobs",
            "stream": "stdout",
            "kubernetes": {
                "pod_name": "report-28190012-x7k2p",
                "namespace_name": "batch",
                "pod_id": "5f1c2b1e-8d7a-4c2b-9f00-123456789abc",
                "container_name": "report",
                "docker_id": ID,
                "host": "fargate-ip-10-0-1-2",
                "labels": {"app.kubernetes.io/name": "report", "tags.datadoghq.com/env": "prod", "tags.datadoghq.com/version": "1.4.2"},
                "annotations": {"kubernetes.io/psp": "eks.privileged"}
            },
            "service": "report",
            "env": "prod",
            "version": "1.4.2"
        })
    );
}

#[test]
fn path_alone_and_missing_files_and_fields_the_record_has() {
    let empty = tempfile::tempdir().unwrap();
    let mut filter = FilterWasm::new(&[(empty.path(), "/etc/podinfo")]);
    let uid = "5f1c2b1e-8d7a-4c2b-9f00-123456789abc";
    let out = filter.json(
        &format!("kube.var.log.pods.shop_web-1_{uid}.nginx.0.log"),
        1,
        r#"{"log":"GET /"}"#,
    );
    assert_eq!(
        out["kubernetes"],
        json!({"pod_name": "web-1", "namespace_name": "shop", "pod_id": uid, "container_name": "nginx"})
    );
    // No accessible path at all, a tag with no path, a record that already has its metadata.
    let mut bare = FilterWasm::new(&[]);
    let record = r#"{"log":"x","kubernetes":{"pod_name":"mine"},"service":"mine"}"#;
    assert_eq!(
        bare.json("app", 1, record),
        serde_json::from_str::<Value>(record).unwrap()
    );
}

#[test]
fn cri_lines_and_json_logs_are_unpacked() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    let line = json!({"log": "2026-11-22T09:00:00.123456789Z stderr F {\"level\":\"error\",\"msg\":\"payment declined\"}"});
    let out = filter.json("tail.job", 1, &line.to_string());
    assert_eq!(out["stream"], "stderr");
    assert_eq!(out["logtag"], "F");
    assert_eq!(out["level"], "error");
    assert_eq!(out["msg"], "payment declined");
    assert_eq!(out["kubernetes"]["pod_name"], "report-28190012-x7k2p");
}

#[test]
fn msgpack_mode_returns_zero_free_msgpack() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    let mut record = Vec::new();
    rmp::encode::write_map_len(&mut record, 3).unwrap();
    rmp::encode::write_str(&mut record, "log").unwrap();
    rmp::encode::write_str(&mut record, "hello").unwrap();
    rmp::encode::write_str(&mut record, "count").unwrap();
    rmp::encode::write_uint(&mut record, 0).unwrap();
    rmp::encode::write_str(&mut record, "bytes").unwrap();
    rmp::encode::write_bin(&mut record, b"\xffok").unwrap();
    let out = filter.msgpack("app", 1, &record);
    assert_eq!(out["log"], "hello");
    assert_eq!(
        out["count"], "0",
        "integer 0 travels as text: its msgpack byte is 0x00"
    );
    assert_eq!(out["bytes"], "\u{fffd}ok");
    assert_eq!(out["kubernetes"]["namespace_name"], "batch");

    // 16 keys cannot be written without a zero byte: an explicit marker, content kept as JSON.
    let mut wide = Vec::new();
    rmp::encode::write_map_len(&mut wide, 16).unwrap();
    for i in 0..16 {
        rmp::encode::write_str(&mut wide, &format!("k{i:02}")).unwrap();
        rmp::encode::write_str(&mut wide, "v").unwrap();
    }
    let marker = filter.msgpack("app", 1, &wide);
    assert!(
        marker["k8s_metadata_error"]
            .as_str()
            .unwrap()
            .contains("use event_format json")
    );
    let kept: Value = serde_json::from_str(marker["log"].as_str().unwrap()).unwrap();
    assert_eq!(kept["k15"], "v");
}

#[test]
fn bad_input_is_marked_never_dropped() {
    let mut filter = FilterWasm::new(&[]);
    let out = filter.json("t", 1, "{\"log\": broken");
    assert!(
        out["k8s_metadata_error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(out["log"], "{\"log\": broken");
    let raw = filter.call("t", 1, b"{\"log\":\"caf\xe9\"}", true).unwrap();
    let out: Value = serde_json::from_slice(&raw).unwrap();
    assert!(
        out["k8s_metadata_error"].is_string(),
        "invalid UTF-8 is reported: {out}"
    );
    assert_eq!(out["log"], "{\"log\":\"caf\u{fffd}\"}");
    let out = filter.msgpack("t", 1, &[0x82, 0xa1, b'a']);
    assert!(
        out["k8s_metadata_error"]
            .as_str()
            .unwrap()
            .contains("not valid msgpack")
    );
}

/// With the pod known, records take the splice path: what it hands to the full path (invalid
/// UTF-8) is still reported, and a key the application printed decides nothing.
#[test]
fn bad_input_and_printed_markers_with_the_pod_known() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    let raw = filter
        .call("app", 1, b"{\"log\":\"caf\xe9\"}", true)
        .unwrap();
    let out: Value = serde_json::from_slice(&raw).unwrap();
    assert!(out["k8s_metadata_error"].is_string(), "{out}");

    let printed = r#"{"k8s_metadata_error":"printed","log":"x"}"#;
    let out = filter.json("app", 1, printed);
    assert_eq!(out["kubernetes"]["pod_name"], "report-28190012-x7k2p");
    assert_eq!(out["k8s_metadata_error"], "printed");
    let mut packed = Vec::new();
    rmp::encode::write_map_len(&mut packed, 1).unwrap();
    rmp::encode::write_str(&mut packed, "k8s_metadata_error").unwrap();
    rmp::encode::write_str(&mut packed, "printed").unwrap();
    let out = filter.msgpack("app", 1, &packed);
    assert_eq!(
        out["kubernetes"]["pod_name"], "report-28190012-x7k2p",
        "the full path too"
    );
}

#[test]
fn huge_records_and_many_calls_keep_memory_bounded() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    let huge = json!({"log": "h".repeat(3 * 1024 * 1024)}).to_string();
    let out = filter.json("t", 1, &huge);
    assert_eq!(out["log"].as_str().unwrap().len(), 3 * 1024 * 1024);
    let record = json!({"log": "x".repeat(2000), "n": 1}).to_string();
    for _ in 0..200 {
        filter.json("t", 1, &record);
    }
    let settled = filter.memory_pages();
    for _ in 0..5000 {
        filter.json("t", 1, &record);
    }
    assert_eq!(
        filter.memory_pages(),
        settled,
        "no memory is kept per record"
    );
}

#[test]
fn record_time_does_not_drive_the_refresh_and_per_chunk_instances_work() {
    let dir = podinfo();
    let mut persistent = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    assert_eq!(persistent.json("t", 1000, "{}")["env"], "prod");
    std::fs::write(
        dir.path().join("labels"),
        "tags.datadoghq.com/env=\"staging\"\n",
    )
    .unwrap();
    assert_eq!(
        persistent.json("t", 1030, "{}")["env"],
        "prod",
        "cached within the minute"
    );
    assert_eq!(
        persistent.json("t", 5_000_000, "{}")["env"],
        "prod",
        "a record's time is the application's: it does not force a re-read (the host's clock does, see refresh_seconds)"
    );
    // Fluent Bit <= 4.0 instantiates the module for every chunk.
    for n in 0..3 {
        let mut fresh = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
        assert_eq!(fresh.json("t", n, "{}")["env"], "staging");
    }
}

#[test]
fn the_podinfo_directory_comes_from_the_config_file() {
    let dir = podinfo();
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(
        etc.path().join("k8s-metadata.conf"),
        "podinfo_dir = /podinfo\nmerge_log = off\n",
    )
    .unwrap();
    let mut filter = FilterWasm::new(&[(etc.path(), "/fluent-bit/etc"), (dir.path(), "/podinfo")]);
    let out = filter.json("t", 1, r#"{"log":"{\"a\":1}"}"#);
    assert_eq!(out["kubernetes"]["pod_name"], "report-28190012-x7k2p");
    assert!(out.get("a").is_none(), "merge_log off");
}

#[test]
fn without_a_config_file_the_podinfo_directory_is_the_accessible_path_that_holds_it() {
    let dir = podinfo();
    let other = tempfile::tempdir().unwrap();
    let mut filter = FilterWasm::new(&[(other.path(), "/data"), (dir.path(), "/mnt/downward")]);
    let out = filter.json("t", 1, r#"{"log":"x"}"#);
    assert_eq!(out["kubernetes"]["pod_name"], "report-28190012-x7k2p");
    assert_eq!(out["kubernetes"]["namespace_name"], "batch");
}

#[test]
fn a_config_file_in_an_accessible_path_is_read() {
    let dir = podinfo();
    std::fs::write(dir.path().join("k8s-metadata.conf"), "merge_log = off\n").unwrap();
    let mut filter = FilterWasm::new(&[(dir.path(), "/pod")]);
    let out = filter.json("t", 1, r#"{"log":"{\"a\":1}"}"#);
    assert_eq!(out["kubernetes"]["pod_name"], "report-28190012-x7k2p");
    assert!(
        out.get("a").is_none(),
        "merge_log off, from /pod/k8s-metadata.conf"
    );
}

/// A call the host aborts (here: a record address past the end of linear memory, so reading it
/// traps) must not leave the module unusable for the records after it.
#[test]
fn a_trapped_call_does_not_disable_the_module() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    let before = filter.json("t", 1, r#"{"log":"before"}"#);
    assert_eq!(before["kubernetes"]["namespace_name"], "batch");
    let tag_ptr = filter.copy_in(b"t\0");
    let end = filter.memory.data_size(&filter.store) as i32;
    let trapped = filter
        .function
        .call(&mut filter.store, (tag_ptr, 1, 1, 0, end - 8, 1 << 20));
    assert!(trapped.is_err(), "reading past linear memory traps");
    for n in 0..3 {
        let after = filter.json("t", 2, &format!(r#"{{"log":"after {n}"}}"#));
        assert_eq!(after["log"], format!("after {n}"));
        assert_eq!(after["kubernetes"]["namespace_name"], "batch");
    }
}

/// Levels of arrays above the innermost value of `value[key]`, and that value.
fn unnest<'v>(value: &'v Value, key: &str) -> (usize, &'v Value) {
    let (mut inner, mut levels) = (&value[key], 0);
    while let Some(items) = inner.as_array() {
        inner = &items[0];
        levels += 1;
    }
    (levels, inner)
}

#[test]
fn deep_nesting_becomes_the_placeholder_without_a_trap() {
    let dir = podinfo();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    // As the core writes records: containers from depth 64 on (the record is depth 1) become the
    // placeholder, and the record is enriched like any other, in either event format.
    let deep = format!(
        r#"{{"a":{}1{},"b":2}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let out = filter.json("t", 1, &deep);
    assert!(out.get("k8s_metadata_error").is_none(), "{out}");
    assert_eq!(out["b"], 2);
    assert_eq!(out["kubernetes"]["namespace_name"], "batch");
    assert_eq!(unnest(&out, "a"), (62, &json!(DEPTH_PLACEHOLDER)));
    // In a log line that merge_log would parse: left as text.
    let line = serde_json::to_string(
        &json!({ "log": format!("{{\"a\":{}1{}}}", "[".repeat(50_000), "]".repeat(50_000)) }),
    )
    .unwrap();
    let out = filter.json("t", 1, &line);
    assert!(out.get("a").is_none());
    assert_eq!(out["kubernetes"]["namespace_name"], "batch");
    // 10,000 fixarrays of one element, then the element.
    let mut nested = vec![0x91; 10_000];
    nested.push(0x01);
    let mut record = vec![0x81, 0xa1, b'a'];
    record.extend_from_slice(&nested);
    let out = filter.msgpack("t", 1, &record);
    assert!(out.get("k8s_metadata_error").is_none(), "{out}");
    assert_eq!(unnest(&out, "a"), (62, &json!(DEPTH_PLACEHOLDER)));
    assert_eq!(filter.json("t", 1, r#"{"log":"fine"}"#)["log"], "fine");
}

#[test]
fn pod_identity_annotations_refresh_and_config_mistakes() {
    let dir = podinfo();
    std::fs::write(
        dir.path().join("annotations"),
        "kubectl.kubernetes.io/last-applied-configuration=\"{\\\"apiVersion\\\":\\\"batch/v1\\\"}\"\nteam=\"data\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("k8s-metadata.conf"),
        "refresh_seconds = 1\nmerge_log = maybe\ncolour = blue\n",
    )
    .unwrap();
    let mut filter = FilterWasm::new(&[(dir.path(), "/etc/podinfo")]);
    // A log line claiming another pod and service, with a timestamp far in the future.
    let line = r#"{"kubernetes":{"namespace_name":"payments","labels":{"app.kubernetes.io/name":"payments"}}}"#;
    let first = filter.json(
        "t",
        u32::MAX,
        &serde_json::to_string(&json!({ "log": line })).unwrap(),
    );
    assert_eq!(first["kubernetes"]["namespace_name"], "batch");
    assert_eq!(
        first["kubernetes"]["labels"]["app.kubernetes.io/name"],
        "report"
    );
    assert_eq!(first["service"], "report");
    assert_eq!(
        first["kubernetes"]["annotations"],
        json!({"team": "data"}),
        "the last-applied manifest is left out by default"
    );
    let problems = first["k8s_metadata_config_error"].as_str().unwrap();
    assert!(
        problems.starts_with(&format!("k8s-metadata {}: ", env!("CARGO_PKG_VERSION"))),
        "the report names the release: {problems}"
    );
    assert!(
        problems.contains("line 2: 'merge_log' takes on/off, not 'maybe'"),
        "{problems}"
    );
    assert!(
        problems.contains("line 3: unknown key 'colour'"),
        "{problems}"
    );
    let second = filter.json("t", 1, r#"{"log":"x"}"#);
    assert!(
        second.get("k8s_metadata_config_error").is_none(),
        "reported once"
    );
    // Labels change; the future timestamp above does not hold the refresh back.
    std::fs::write(
        dir.path().join("labels"),
        "app.kubernetes.io/name=\"report-v2\"\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let later = filter.json("t", 2, r#"{"log":"y"}"#);
    assert_eq!(
        later["kubernetes"]["labels"]["app.kubernetes.io/name"], "report-v2",
        "a record of another second reads the clock"
    );
    // Records that all carry one time (an application writing its own) still see the change
    // within CLOCK_EVERY_RECORDS records: the clock is read that often regardless.
    std::fs::write(
        dir.path().join("labels"),
        "app.kubernetes.io/name=\"report-v3\"\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let names: Vec<Value> = (0..k8s_metadata::CLOCK_EVERY_RECORDS)
        .map(|_| {
            filter.json("t", 2, r#"{"log":"z"}"#)["kubernetes"]["labels"]["app.kubernetes.io/name"]
                .clone()
        })
        .collect();
    assert_eq!(names.last().unwrap(), "report-v3");
}

#[test]
fn the_version_function_answers_every_record_with_the_release() {
    let mut filter = FilterWasm::calling("k8s_metadata_version", &[]);
    for record in [r#"{"log":"x"}"#, "{}", "not json"] {
        assert_eq!(
            filter.json("t", 1, record),
            json!({"k8s_metadata_version": env!("CARGO_PKG_VERSION")})
        );
    }
}
