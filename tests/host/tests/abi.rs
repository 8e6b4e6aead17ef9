//! The built plugin, driven through the proxy ABI the way Fluent Bit ≥ 2.0 drives it.

mod common;

use std::sync::Barrier;

use fanout_testhost::host::{FLB_ERROR, FLB_OK, logs_of};
use fanout_testhost::{Chunk, HostVersion, Layout, Plugin, Time, logs, plugin_path};
use serde_json::json;

use common::{BadConfig, assert_init_fails, file_props, json_lines, records};

fn load(version: HostVersion) -> Plugin {
    Plugin::load(&plugin_path(), version).expect("the plugin loads and registers")
}

#[test]
fn registers_as_the_fanout_output_of_the_go_proxy() {
    for version in [HostVersion::V2_0, HostVersion::V5_1] {
        let plugin = load(version);
        let (name, description, flags) = plugin.registration();
        assert_eq!(name, "fanout");
        assert!(description.unwrap().contains("Datadog"));
        assert_eq!(flags, 0);
        for symbol in [
            "FLBPluginInit",
            "FLBPluginFlushCtx",
            "FLBPluginFlush",
            "FLBPluginExitCtx",
            "FLBPluginExit",
        ] {
            assert!(plugin.exports(symbol), "{symbol} is exported");
        }
    }
    // 5.1's calloc'd struct has event_type and config_map after the common prefix: untouched,
    // since this stand-in is not Fluent Bit's own program and so never says it is 5.1.1
    // (real_config_map.rs checks the table in the real 5.1.1).
    assert!(
        load(HostVersion::V5_1)
            .registration_tail()
            .iter()
            .all(|b| *b == 0)
    );
}

#[test]
fn writes_records_of_both_layouts_and_every_timestamp_encoding() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("layouts", &out_s)).unwrap();
    let empty = json!({});
    let chunk = Chunk::new()
        .record(
            Layout::V2,
            Time::Event(1_700_000_000, 123_456_789),
            &json!({"trace_id": "t1"}),
            &json!({"log": "v2 event time"}),
        )
        .record(
            Layout::V1,
            Time::Event(1_700_000_001, 5),
            &empty,
            &json!({"log": "v1 event time"}),
        )
        .record(
            Layout::V1,
            Time::Int(1_700_000_002),
            &empty,
            &json!({"log": "v1 integer"}),
        )
        .record(
            Layout::V1,
            Time::Float(1_700_000_003.25),
            &empty,
            &json!({"log": "v1 float"}),
        )
        .record(
            Layout::V2,
            Time::Int(1_700_000_004),
            &empty,
            &json!({"nested": {"a": [1, 2.5, null, true]}}),
        );
    assert_eq!(instance.flush(chunk.bytes(), "app.web"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);

    let lines = json_lines(&out);
    let expected = [
        json!({"time": "2023-11-14T22:13:20.123456789Z", "tag": "app.web", "metadata": {"trace_id": "t1"}, "record": {"log": "v2 event time"}}),
        json!({"time": "2023-11-14T22:13:21.000000005Z", "tag": "app.web", "record": {"log": "v1 event time"}}),
        json!({"time": "2023-11-14T22:13:22.000000000Z", "tag": "app.web", "record": {"log": "v1 integer"}}),
        json!({"time": "2023-11-14T22:13:23.250000000Z", "tag": "app.web", "record": {"log": "v1 float"}}),
        json!({"time": "2023-11-14T22:13:24.000000000Z", "tag": "app.web", "record": {"nested": {"a": [1, 2.5, null, true]}}}),
    ];
    assert_eq!(lines, expected);
}

#[test]
fn group_markers_and_non_map_records_are_skipped_with_a_log_line() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("skips", &out_s)).unwrap();
    let inner = Chunk::new()
        .event(10, &json!({"log": "in group"}))
        .record(
            Layout::V2,
            Time::Event(11, 0),
            &json!({}),
            &json!("a string body"),
        )
        .record(Layout::V1, Time::Event(12, 0), &json!({}), &json!([1, 2]));
    let chunk = Chunk::new()
        .group(&json!({"resource": {"service.name": "svc"}}), inner)
        .event(13, &json!({"log": "after"}));
    assert_eq!(instance.flush(chunk.bytes(), "otel"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(
        records(&out),
        vec![json!({"log": "in group"}), json!({"log": "after"})]
    );
    let warned: Vec<_> = logs_of("skips")
        .into_iter()
        .filter(|l| l.level == 2)
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].text.contains("2 records whose body is not a map"),
        "{}",
        warned[0].text
    );
}

#[test]
fn a_corrupt_chunk_is_an_error_and_the_instance_keeps_working() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("corrupt", &out_s)).unwrap();
    let good = Chunk::new().event(1, &json!({"log": "fine"}));
    let truncated = &good.bytes()[..good.bytes().len() - 3];
    assert_eq!(instance.flush(truncated, "t"), FLB_ERROR);
    assert_eq!(instance.flush(&[0xc1, 0x00, 0xff], "t"), FLB_ERROR);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let rc = instance.flush(&garbage, "t");
    assert!(
        rc == FLB_ERROR || rc == FLB_OK,
        "garbage gives a verdict, got {rc}"
    );
    assert_eq!(instance.flush(good.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(records(&out), vec![json!({"log": "fine"})]);
    let errors: Vec<_> = logs_of("corrupt")
        .into_iter()
        .filter(|l| l.level == 1)
        .collect();
    assert!(errors.len() >= 2, "{errors:?}");
    assert!(
        errors[0].text.contains("chunk is truncated"),
        "{}",
        errors[0].text
    );
    assert!(
        errors[1].text.contains("byte 0xc1 at offset 0"),
        "{}",
        errors[1].text
    );
}

#[test]
fn two_instances_keep_their_own_config_and_records() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let (a_s, b_s) = (a.display().to_string(), b.display().to_string());
    // Both Init calls happen before any flush, as Fluent Bit does, so the shared plugin struct
    // has been overwritten by the time the first instance flushes.
    let first = plugin.init(&file_props("first", &a_s)).unwrap();
    let second = plugin.init(&file_props("second", &b_s)).unwrap();
    for i in 0..5u32 {
        assert_eq!(
            first.flush(
                Chunk::new().event(i, &json!({"to": "a", "i": i})).bytes(),
                "a"
            ),
            FLB_OK
        );
        assert_eq!(
            second.flush(
                Chunk::new().event(i, &json!({"to": "b", "i": i})).bytes(),
                "b"
            ),
            FLB_OK
        );
    }
    assert_eq!(second.exit(), FLB_OK);
    // The first instance still works after the second one exited.
    assert_eq!(
        first.flush(
            Chunk::new().event(9, &json!({"to": "a", "i": 9})).bytes(),
            "a"
        ),
        FLB_OK
    );
    assert_eq!(first.exit(), FLB_OK);
    let a_records = records(&a);
    assert_eq!(a_records.len(), 6);
    assert!(a_records.iter().all(|r| r["to"] == "a"));
    assert_eq!(records(&b).len(), 5);
    assert!(records(&b).iter().all(|r| r["to"] == "b"));
}

#[test]
fn concurrent_flushes_like_workers_lose_and_mix_nothing() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("workers", &out_s)).unwrap();
    let (workers, flushes, per_chunk) = (4u32, 25u32, 40u32);
    let start = Barrier::new(workers as usize);
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (instance, start) = (&instance, &start);
            scope.spawn(move || {
                start.wait();
                for f in 0..flushes {
                    let chunk = (0..per_chunk).fold(Chunk::new(), |c, r| {
                        c.event(
                            r,
                            &json!({"worker": w, "flush": f, "n": r, "pad": "x".repeat(200)}),
                        )
                    });
                    assert_eq!(instance.flush(chunk.bytes(), "w"), FLB_OK);
                }
            });
        }
    });
    assert_eq!(instance.exit(), FLB_OK);
    let mut seen: Vec<(u64, u64, u64)> = records(&out)
        .iter()
        .map(|r| {
            (
                r["worker"].as_u64().unwrap(),
                r["flush"].as_u64().unwrap(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(u64, u64, u64)> = (0..workers as u64)
        .flat_map(|w| {
            (0..flushes as u64).flat_map(move |f| (0..per_chunk as u64).map(move |n| (w, f, n)))
        })
        .collect();
    assert_eq!(seen, expected, "every record exactly once");
}

#[test]
fn bad_configuration_fails_init_with_one_line_naming_the_property() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let unwritable = dir
        .path()
        .join("missing-dir/out.jsonl")
        .display()
        .to_string();
    let cases: [BadConfig; 5] = [
        (
            "cfg-none",
            vec![],
            "property 'destinations': is required: a comma-separated list of datadog, firehose, file",
        ),
        (
            "cfg-unknown",
            vec![("destinations", "file,kafka")],
            "property 'destinations': unknown destination 'kafka'",
        ),
        (
            "cfg-path",
            vec![("destinations", "file")],
            "property 'path': is required",
        ),
        (
            "cfg-timeout",
            vec![
                ("destinations", "file"),
                ("path", "/tmp/x"),
                ("flush_timeout", "fast"),
            ],
            "property 'flush_timeout': invalid value 'fast': expected a duration",
        ),
        (
            "cfg-open",
            vec![("destinations", "file"), ("path", &unwritable)],
            "property 'path': cannot open",
        ),
    ];
    assert_init_fails(&plugin, cases.into(), None);
}

#[test]
fn logging_goes_through_the_host_with_a_constant_format_and_respects_the_level() {
    let plugin = load(HostVersion::V2_0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let chatty = plugin.init(&file_props("chatty", &out_s)).unwrap();
    // A tag full of printf directives must come out literally.
    assert_eq!(chatty.flush(&[0xc1], "evil.%s.%n.%x"), FLB_ERROR);
    assert_eq!(chatty.exit(), FLB_OK);
    let lines = logs_of("chatty");
    assert!(lines.iter().all(|l| l.format == "%s"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.text.contains("tag 'evil.%s.%n.%x'")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.level == 3 && l.text.contains("exiting: chunks=1")),
        "{lines:?}"
    );
    // The release it is, said at start (the workspace's one version).
    let started = format!("flb-fanout {} started: ", env!("CARGO_PKG_VERSION"));
    assert!(
        lines
            .iter()
            .any(|l| l.level == 3 && l.text.contains(&started)),
        "{lines:?}"
    );

    let mut quiet_props = file_props("quiet", &out_s);
    quiet_props.push(("log_level", "error"));
    let quiet = plugin.init(&quiet_props).unwrap();
    assert_eq!(
        quiet.flush(Chunk::new().event(1, &json!({"a": 1})).bytes(), "t"),
        FLB_OK
    );
    assert_eq!(quiet.exit(), FLB_OK);
    assert!(
        logs_of("quiet").is_empty(),
        "info lines are filtered by the host's level check"
    );
}

#[test]
fn properties_are_read_case_insensitively_and_core_keys_stay_with_the_host() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin
        .init(&[
            ("Destinations", "FILE"),
            ("PATH", &out_s),
            ("Label", "caps"),
            ("workers", "2"),
            ("match", "*"),
        ])
        .unwrap();
    assert_eq!(
        instance.flush(Chunk::new().event(1, &json!({"k": "v"})).bytes(), "t"),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(records(&out), vec![json!({"k": "v"})]);
}

#[test]
fn context_less_entry_points_work_for_a_single_instance() {
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    // Other tests in this process may have instances alive; this only checks the call is safe
    // and either delivers (one instance) or refuses (several).
    let instance = plugin.init(&file_props("ctxless", &out_s)).unwrap();
    let rc = plugin.flush_without_context(Chunk::new().event(1, &json!({"k": 1})).bytes(), "t");
    assert!(rc == FLB_OK || rc == FLB_ERROR, "{rc}");
    assert_eq!(plugin.exit_without_context(), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    if rc == FLB_OK {
        assert_eq!(records(&out), vec![json!({"k": 1})]);
    }
}

#[test]
fn a_second_exit_with_the_same_context_is_ignored() {
    // Fluent Bit <= 2.0.6 passed one instance's context to every instance's ExitCtx.
    let plugin = load(HostVersion::V2_0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("double-exit", &out_s)).unwrap();
    assert_eq!(instance.exit_again_like_old_hosts(), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let exits = logs_of("double-exit")
        .into_iter()
        .filter(|l| l.text.contains("exiting:"))
        .count();
    assert_eq!(exits, 1);
}

#[test]
fn every_line_the_plugin_logged_used_the_constant_format() {
    // Runs alongside the others; by the end of the suite every captured line must qualify.
    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("format", &out_s)).unwrap();
    assert_eq!(instance.flush(&[0x92, 0x01, 0x02], "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    assert!(logs().iter().all(|l| l.format == "%s"));
}

#[test]
fn a_delivery_that_hangs_returns_retry_at_the_flush_deadline() {
    use std::io::Read;

    let plugin = load(HostVersion::V5_1);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.fifo");
    // Writes block once the pipe buffer is full, until the test reads.
    let mut reader = fanout_testhost::ffi::stalled_fifo(&fifo);
    let fifo_s = fifo.display().to_string();
    let mut props = file_props("stuck", &fifo_s);
    props.push(("flush_timeout", "300ms"));
    let instance = plugin.init(&props).unwrap();
    let big = (0..64).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": "y".repeat(4096)}))
    });
    assert_eq!(
        instance.flush(big.bytes(), "t"),
        fanout_testhost::host::FLB_RETRY
    );
    let warned = logs_of("stuck");
    assert!(
        warned.iter().any(|l| l
            .text
            .contains("did not finish within flush_timeout (300ms)")),
        "{warned:?}"
    );
    // Unblock the writer so exit can join the runtime's threads.
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut buf = [0u8; 65536];
        while std::time::Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => sink.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        sink.len()
    });
    assert_eq!(instance.exit(), FLB_OK);
    assert!(drain.join().unwrap() > 64 * 1024);
}
