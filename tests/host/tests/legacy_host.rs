//! Fluent Bit 1.9: an 8-byte `flb_api` (no logging) and an uninitialised 32-byte registration
//! struct, both ending at an inaccessible page. Runs in its own process, which never loads the
//! symbols that make the plugin believe it runs on ≥ 2.0.

mod common;

use fanout_testhost::ffi::capture_stderr;
use fanout_testhost::host::FLB_OK;
use fanout_testhost::{Chunk, HostVersion, Layout, Plugin, Time, plugin_path};
use serde_json::json;

use common::{file_props, records};

#[test]
fn a_1_9_host_gets_records_delivered_and_errors_on_stderr() {
    let plugin = Plugin::load(&plugin_path(), HostVersion::V1_9).unwrap();
    assert_eq!(plugin.registration().0, "fanout");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("legacy", &out_s)).unwrap();
    // 1.9 encoders write [time, body] with EventTime.
    let chunk = Chunk::new()
        .record(
            Layout::V1,
            Time::Event(1_600_000_000, 0),
            &json!({}),
            &json!({"log": "from 1.9"}),
        )
        .record(
            Layout::V1,
            Time::Event(1_600_000_001, 0),
            &json!({}),
            &json!({"log": "again"}),
        );
    assert_eq!(instance.flush(chunk.bytes(), "legacy.tag"), FLB_OK);
    let (rc, stderr) = capture_stderr(|| instance.exit());
    assert_eq!(rc, FLB_OK);
    assert!(
        stderr.contains("[ info] [output:fanout:legacy] exiting: chunks=1 records=2"),
        "{stderr}"
    );
    assert_eq!(
        records(&out),
        vec![json!({"log": "from 1.9"}), json!({"log": "again"})]
    );

    let (result, stderr) = capture_stderr(|| {
        plugin
            .init(&[("destinations", "nope"), ("label", "legacy-bad")])
            .err()
    });
    assert_eq!(result, Some(0));
    assert!(
        stderr.contains(
            "[error] [output:fanout:legacy-bad] property 'destinations': unknown destination 'nope'"
        ),
        "{stderr}"
    );
}
