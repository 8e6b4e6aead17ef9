//! `make bench`: Firehose billing with and without `simple_aggregation`.
//!
//! Firehose bills ingestion per record rounded up to 5 KB. This encodes 1M FireLens-shaped
//! records, in chunks of 1000 as Fluent Bit flushes them, through the plugin's own Firehose
//! encoder, and prints the billed 5 KB units, records and PutRecordBatch calls each way, and
//! the ratio. Nothing is sent; no timing is involved.

use std::collections::HashMap;

mod common;

use common::log_line;
use fanout_core::destinations::firehose::config::FirehoseConfig;
use fanout_core::destinations::firehose::encode::Encoder;
use fanout_core::destinations::firehose::limits::BILLING_UNIT;
use fanout_core::record::{Batch, Records};
use fanout_core::time::EventTime;
use serde_json::json;

const RECORDS: usize = 1_000_000;
const PER_CHUNK: usize = 1_000;

fn config(aggregation: bool, compression: &str) -> FirehoseConfig {
    let props: HashMap<String, String> = [
        ("region", "us-east-1"),
        ("delivery_stream", "logs-$container_name"),
        ("simple_aggregation", if aggregation { "on" } else { "off" }),
        ("compression", compression),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    FirehoseConfig::read(&props, &|_| None).expect("valid config")
}

fn chunk(first: usize, log_len: usize) -> Batch {
    let events: Vec<(EventTime, serde_json::Value)> = (first..first + PER_CHUNK)
        .map(|n| {
            let service = ["checkout", "cart", "search"][n % 3];
            let body = json!({
                "container_id": "0123456789abcdef0123456789abcdef-1234567890",
                "container_name": service,
                "ecs_cluster": "prod",
                "source": "stdout",
                "log": log_line(n, log_len),
            });
            (EventTime::new(1_700_000_000 + n as i64, 0), body)
        })
        .collect();
    Batch::new("firelens".into(), Records::from_json(&events))
}

#[derive(Clone, Copy)]
struct Bill {
    records: usize,
    units: usize,
    calls: usize,
    bytes: usize,
}

fn bill(config: &FirehoseConfig, log_len: usize) -> Bill {
    let keys = vec!["log".to_string()];
    let encoder = Encoder {
        config,
        message_keys: &keys,
    };
    let mut bill = Bill {
        records: 0,
        units: 0,
        calls: 0,
        bytes: 0,
    };
    for first in (0..RECORDS).step_by(PER_CHUNK) {
        for stream in encoder.encode(&chunk(first, log_len)).streams {
            bill.calls += stream.calls;
            for record in &stream.records {
                bill.records += 1;
                bill.bytes += record.len();
                bill.units += record.len().div_ceil(BILLING_UNIT);
            }
        }
    }
    bill
}

fn main() {
    println!("Firehose billing for {RECORDS} FireLens records, 3 services, chunks of {PER_CHUNK}:");
    println!(
        "{:<54} {:>9} {:>11} {:>7} {:>9} {:>8}",
        "", "records", "5 KB units", "calls", "MB sent", "units÷"
    );
    for (name, log_len) in [
        ("~200 B records", 60),
        ("~1 KB records", 870),
        ("~4 KB records", 3900),
    ] {
        let plain = bill(&config(false, "none"), log_len);
        for (label, b) in [
            ("plain", plain),
            ("simple_aggregation", bill(&config(true, "none"), log_len)),
            (
                "simple_aggregation + compression gzip",
                bill(&config(true, "gzip"), log_len),
            ),
            (
                "simple_aggregation + compression zstd",
                bill(&config(true, "zstd"), log_len),
            ),
        ] {
            println!(
                "{:<54} {:>9} {:>11} {:>7} {:>9.1} {:>7.1}x",
                format!("{name}, {label}"),
                b.records,
                b.units,
                b.calls,
                b.bytes as f64 / 1e6,
                plain.units as f64 / b.units as f64
            );
        }
    }
}
