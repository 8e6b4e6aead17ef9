//! `make bench` (criterion): the plugin's per-chunk work — decode, Datadog JSON and compressed
//! request bodies, Firehose records and batches — against gzip alone on the same chunk bytes
//! (the floor: any shipper that compresses pays at least that), on FireLens- and Kubernetes-shaped
//! records of ~200 B and ~4 KB, in chunks of about 1 MB as Fluent Bit flushes them.
//! `bench/report.py` turns criterion's estimates into the ratios of BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
mod common;

use common::log_line;
use fanout_core::decode::decode_chunk;
use fanout_core::destinations::datadog::config::DatadogConfig;
use fanout_core::destinations::datadog::encode::{Encoder as DatadogEncoder, body as datadog_body};
use fanout_core::destinations::firehose::config::FirehoseConfig;
use fanout_core::destinations::firehose::encode::Encoder as FirehoseEncoder;
use fanout_core::packing::plan::Planned;
use fanout_core::record::Batch;
use rmp::encode;

const CHUNK_BYTES: usize = 1 << 20;

fn write_pairs(buf: &mut Vec<u8>, pairs: &[(&str, &str)]) {
    encode::write_map_len(buf, pairs.len() as u32).unwrap();
    for (k, v) in pairs {
        encode::write_str(buf, k).unwrap();
        encode::write_str(buf, v).unwrap();
    }
}

fn record_header(buf: &mut Vec<u8>, n: usize) {
    encode::write_array_len(buf, 2).unwrap();
    encode::write_array_len(buf, 2).unwrap();
    encode::write_ext_meta(buf, 8, 0).unwrap();
    buf.extend_from_slice(&(1_700_000_000u32 + n as u32).to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes());
    encode::write_map_len(buf, 0).unwrap();
}

/// ~1 MB chunk of FireLens records (`log` of `log_len` bytes plus ECS metadata).
fn firelens_chunk(log_len: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut n = 0;
    while buf.len() < CHUNK_BYTES {
        record_header(&mut buf, n);
        let service = ["checkout", "cart", "search"][n % 3];
        let log = log_line(n, log_len);
        write_pairs(
            &mut buf,
            &[
                (
                    "container_id",
                    "0123456789abcdef0123456789abcdef-1234567890",
                ),
                ("container_name", service),
                ("ecs_cluster", "prod"),
                (
                    "ecs_task_arn",
                    "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef",
                ),
                ("ecs_task_definition", "checkout:42"),
                ("source", "stdout"),
                ("log", &log),
            ],
        );
        n += 1;
    }
    buf
}

/// ~1 MB chunk of Kubernetes records as tail + cri + the k8s-metadata filter produce them.
fn kubernetes_chunk(log_len: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut n = 0;
    while buf.len() < CHUNK_BYTES {
        record_header(&mut buf, n);
        let service = ["nightly-report", "billing", "search"][n % 3];
        let log = log_line(n, log_len);
        encode::write_map_len(&mut buf, 4).unwrap();
        encode::write_str(&mut buf, "stream").unwrap();
        encode::write_str(&mut buf, "stdout").unwrap();
        encode::write_str(&mut buf, "log").unwrap();
        encode::write_str(&mut buf, &log).unwrap();
        encode::write_str(&mut buf, "service").unwrap();
        encode::write_str(&mut buf, service).unwrap();
        encode::write_str(&mut buf, "kubernetes").unwrap();
        encode::write_map_len(&mut buf, 4).unwrap();
        encode::write_str(&mut buf, "pod_name").unwrap();
        encode::write_str(&mut buf, &format!("{service}-28190012-x7k2p")).unwrap();
        encode::write_str(&mut buf, "namespace_name").unwrap();
        encode::write_str(&mut buf, "batch").unwrap();
        encode::write_str(&mut buf, "container_name").unwrap();
        encode::write_str(&mut buf, service).unwrap();
        encode::write_str(&mut buf, "labels").unwrap();
        write_pairs(
            &mut buf,
            &[
                ("tags.datadoghq.com/service", service),
                ("tags.datadoghq.com/env", "prod"),
                ("app.kubernetes.io/name", service),
            ],
        );
        n += 1;
    }
    buf
}

fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gzip(data: &[u8]) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap().len()
}

/// What the plugin does with one chunk: copy and decode it, build and compress every Datadog
/// request body, route and pack every Firehose record. Returns the bytes produced.
fn pipeline(
    chunk: &[u8],
    datadog: &DatadogConfig,
    firehose: &FirehoseConfig,
    keys: &[String],
) -> usize {
    let decoded = decode_chunk(chunk.to_vec()).unwrap();
    let batch = Batch::new("app".into(), decoded.records);
    let encoder = DatadogEncoder {
        config: datadog,
        message_keys: keys,
    };
    let mut sent = 0;
    for planned in encoder.plan(&batch) {
        if let Planned::Request(request) = planned {
            sent += datadog_body(&request.units, datadog.compression)
                .unwrap()
                .len();
        }
    }
    let firehose = FirehoseEncoder {
        config: firehose,
        message_keys: keys,
    };
    for planned in firehose.plan(&batch) {
        if let Planned::Request(request) = planned {
            sent += request.units.bytes();
        }
    }
    sent
}

fn bench(c: &mut Criterion) {
    // The defaults (zstd level 1), zstd level 3, and gzip as the core output and earlier
    // releases compress.
    let datadog = DatadogConfig::read(&props(&[("apikey", "k"), ("provider", "ecs")])).unwrap();
    let datadog_gzip = DatadogConfig::read(&props(&[
        ("apikey", "k"),
        ("provider", "ecs"),
        ("compress", "gzip"),
    ]))
    .unwrap();
    let datadog_zstd3 = DatadogConfig::read(&props(&[
        ("apikey", "k"),
        ("provider", "ecs"),
        ("compress", "zstd"),
        ("compress_level", "3"),
    ]))
    .unwrap();
    let firehose = FirehoseConfig::read(
        &props(&[
            ("region", "us-east-1"),
            ("delivery_stream", "logs-$container_name || logs-$service"),
            ("simple_aggregation", "on"),
        ]),
        &|_| None,
    )
    .unwrap();
    let keys = vec!["log".to_string(), "message".to_string()];
    let shapes = [
        ("firelens_200B", firelens_chunk(40)),
        ("firelens_4KB", firelens_chunk(3900)),
        ("kubernetes_200B", kubernetes_chunk(60)),
        ("kubernetes_4KB", kubernetes_chunk(3900)),
    ];
    for (name, chunk) in &shapes {
        let mut group = c.benchmark_group(*name);
        group.throughput(Throughput::Bytes(chunk.len() as u64));
        group.sample_size(20);
        group.bench_function("gzip_floor", |b| {
            b.iter(|| black_box(gzip(black_box(chunk))))
        });
        group.bench_function("decode", |b| {
            b.iter(|| black_box(decode_chunk(black_box(chunk).clone()).unwrap()))
        });
        for (function, datadog) in [
            ("pipeline", &datadog),
            ("pipeline_zstd3", &datadog_zstd3),
            ("pipeline_gzip", &datadog_gzip),
        ] {
            group.bench_function(function, |b| {
                b.iter(|| black_box(pipeline(black_box(chunk), datadog, &firehose, &keys)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
