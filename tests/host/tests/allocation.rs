//! Allocations are sized from what a chunk holds, never from what it claims or from one record
//! times the record count. The test runs in a child process that caps its own address space,
//! so an allocation of tens of GB — which in Fluent Bit is an abort no `catch_unwind` can
//! stop — fails here, even on a machine with the memory to overcommit it.

mod common;

use common::{in_child, run_in_child};
use fanout_testhost::fake_datadog::FakeDatadog;
use fanout_testhost::fake_firehose::FakeFirehose;
use fanout_testhost::host::FLB_OK;
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::json;

#[test]
fn a_huge_first_record_then_many_small_ones_is_delivered_within_bounded_memory() {
    run_in_child(
        "huge_first_record_in_a_capped_process",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDFANOUTTEST0000000"),
            ("AWS_SECRET_ACCESS_KEY", "fanout-test-secret"),
        ],
    );
}

#[test]
#[ignore = "runs in a child process started by its outer test"]
fn huge_first_record_in_a_capped_process() {
    if !in_child() {
        return;
    }
    let datadog = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let instance = plugin
        .init(&[
            ("destinations", "datadog,firehose"),
            ("apikey", "dd-test-key"),
            ("dd_url", datadog.url.as_str()),
            ("region", "us-east-1"),
            ("endpoint", firehose.url.as_str()),
            ("delivery_stream", "logs-$container_name"),
            ("simple_aggregation", "on"),
            ("label", "alloc"),
        ])
        .unwrap();
    // One ~900 KB log, then 40,000 small ones: "first entry's size × 1.25 × records" would be
    // ~45 GB.
    let mut chunk = Chunk::new().event(
        1,
        &json!({"container_name": "web", "log": "z".repeat(900_000)}),
    );
    for n in 0..40_000u32 {
        chunk = chunk.event(
            n + 2,
            &json!({"container_name": "web", "log": format!("line {n}")}),
        );
    }
    fanout_testhost::ffi::limit_address_space(4 << 30);
    let status = instance.flush(chunk.bytes(), "t");
    let log: Vec<String> = fanout_testhost::host::logs_of("alloc")
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(status, FLB_OK, "{log:#?}");
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(datadog.accepted().len(), 40_001);
}
