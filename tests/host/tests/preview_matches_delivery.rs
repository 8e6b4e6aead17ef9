//! What `preview` counts is what the plugin sends: for one sample and one config, the preview's
//! Datadog requests, Firehose calls, Firehose records, streams and billed 5 KB units equal what
//! the Datadog and Firehose stand-ins receive when the built plugin delivers the same records as
//! one chunk. Both sides pack requests through the same plans, so a packing rule that drifted
//! in one place would show here. Runs in a child process with its own AWS environment.

mod common;

use std::collections::BTreeSet;

use fanout_core::time::EventTime;
use fanout_testhost::fake_datadog::FakeDatadog;
use fanout_testhost::fake_firehose::FakeFirehose;
use fanout_testhost::host::FLB_OK;
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::{Value, json};

use common::{in_child, run_in_child};

const STATIC_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIDFANOUTTEST0000000"),
    ("AWS_SECRET_ACCESS_KEY", "fanout-test-secret"),
];

const TIME: u32 = 1_700_000_000;

/// 2,600 records over three services: small lines past Datadog's 1,000-entry and Firehose's
/// 500-record limits, and a run of 200 KB lines past Datadog's 5 MB and Firehose's 4 MiB.
fn sample() -> Vec<Value> {
    (0..2600)
        .map(|n| {
            let service = ["web", "pay", "batch"][n % 3];
            let log = match n {
                1000..1040 => format!("{n} {}", "b".repeat(200_000)),
                _ if n % 7 == 0 => format!("{n} {}", "m".repeat(6_000)),
                _ => format!("{service} request {n} served"),
            };
            json!({"container_name": service, "log": log, "n": n})
        })
        .collect()
}

#[test]
fn the_preview_counts_what_the_stand_ins_receive() {
    run_in_child("child_preview_matches_delivery", &STATIC_KEYS);
}

#[test]
#[ignore = "runs in a child process started by its outer test"]
fn child_preview_matches_delivery() {
    if !in_child() {
        return;
    }
    let records = sample();
    for (aggregation, compression) in [("off", "none"), ("on", "gzip"), ("off", "gzip")] {
        let (datadog, firehose) = (FakeDatadog::start(), FakeFirehose::start());
        let properties = [
            ("destinations", "datadog,firehose"),
            ("apikey", "dd-test-key"),
            ("dd_url", datadog.url.as_str()),
            ("region", "us-east-1"),
            ("endpoint", firehose.url.as_str()),
            ("delivery_stream", "logs-$container_name"),
            ("simple_aggregation", aggregation),
            ("compression", compression),
            ("flush_timeout", "60s"),
            ("stats_interval", "0"),
        ];
        let case = format!("simple_aggregation {aggregation}, compression {compression}");

        let config: String = std::iter::once("[OUTPUT]\n    Name fanout\n    Match *\n".to_owned())
            .chain(properties.iter().map(|(k, v)| format!("    {k} {v}\n")))
            .collect();
        let sections =
            fanout_core::classic::load("fluent-bit.conf", &|_| Ok(config.clone()), &|_| None)
                .unwrap();
        let events: Vec<(EventTime, Value)> = records
            .iter()
            .map(|r| (EventTime::new(i64::from(TIME), 0), r.clone()))
            .collect();
        let report = fanout_core::preview::report(&sections, &events, "app", &|_| None).unwrap();
        let output = &report.outputs[0];
        let datadog_totals = &output.destination("datadog").unwrap().totals;
        let firehose_totals = &output.destination("firehose").unwrap().totals;
        let datadog_requests = datadog_totals.figure("requests").unwrap();
        let figure = |key| firehose_totals.figure(key).unwrap();
        let (firehose_calls, firehose_records, firehose_units) =
            (figure("calls"), figure("records"), figure("billed_units"));

        let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
        let instance = plugin.init(&properties).unwrap();
        let chunk = records.iter().fold(Chunk::new(), |c, r| c.event(TIME, r));
        assert_eq!(instance.flush(chunk.bytes(), "app"), FLB_OK, "{case}");
        assert_eq!(instance.exit(), FLB_OK);

        let requests = datadog.received();
        assert!(requests.iter().all(|r| r.violation.is_none()), "{case}");
        assert_eq!(datadog.accepted().len(), records.len(), "{case}");
        assert_eq!(requests.len(), datadog_requests, "{case}: Datadog requests");
        assert!(
            datadog_requests >= 3,
            "{case}: the sample crosses Datadog's limits"
        );

        let calls = firehose.received();
        assert!(calls.iter().all(|c| c.violation.is_none()), "{case}");
        let sent: Vec<&Vec<u8>> = calls.iter().flat_map(|c| &c.records).collect();
        let billed: usize = sent.iter().map(|r| r.len().div_ceil(5 * 1024)).sum();
        let streams: BTreeSet<&str> = calls.iter().map(|c| c.stream.as_str()).collect();
        assert_eq!(calls.len(), firehose_calls, "{case}: Firehose calls");
        assert_eq!(sent.len(), firehose_records, "{case}: Firehose records");
        assert_eq!(billed, firehose_units, "{case}: billed 5 KB units");
        assert_eq!(
            streams,
            firehose_totals.places.iter().map(String::as_str).collect(),
            "{case}: streams"
        );
        if aggregation == "off" {
            assert!(
                firehose_calls > streams.len(),
                "{case}: the sample crosses a call limit"
            );
        }
    }
}
