//! `make bench`: chunk decoding throughput against a floor measured in the same run.
//!
//! Prints MB/s of msgpack input for: copying the chunk (what the flush side does, the floor),
//! decoding it into records, and decoding plus writing every record as JSON (the work every
//! destination starts from). Ratios are against the copy. No assertions: this measures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fanout_core::decode::decode_chunk;
use rmp::encode;

fn firelens_chunk(records: usize, log_len: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let pairs = [
        (
            "container_id",
            "0123456789abcdef0123456789abcdef-1234567890",
        ),
        ("container_name", "checkout"),
        ("ecs_cluster", "prod-cluster"),
        (
            "ecs_task_arn",
            "arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/0123456789abcdef",
        ),
        ("ecs_task_definition", "checkout:42"),
        ("source", "stdout"),
    ];
    let log = "x".repeat(log_len);
    for i in 0..records {
        encode::write_array_len(&mut buf, 2).unwrap();
        encode::write_array_len(&mut buf, 2).unwrap();
        encode::write_ext_meta(&mut buf, 8, 0).unwrap();
        buf.extend_from_slice(&(1_700_000_000u32 + i as u32).to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        encode::write_map_len(&mut buf, 0).unwrap();
        encode::write_map_len(&mut buf, pairs.len() as u32 + 1).unwrap();
        for (k, v) in pairs {
            encode::write_str(&mut buf, k).unwrap();
            encode::write_str(&mut buf, v).unwrap();
        }
        encode::write_str(&mut buf, "log").unwrap();
        encode::write_str(&mut buf, &log).unwrap();
    }
    buf
}

/// Bytes per second of `f` over `input_len` bytes, run for about `budget`.
fn throughput(input_len: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        f();
        runs += 1;
    }
    (input_len as f64 * runs as f64) / start.elapsed().as_secs_f64()
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MILLIS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "chunk", "copy MB/s", "decode", "decode+json"
    );
    for (name, records, log_len) in [
        ("FireLens 200 B x 2000", 2000, 40),
        ("FireLens 4 KB x 200", 200, 3900),
    ] {
        let chunk = firelens_chunk(records, log_len);
        let copy = throughput(chunk.len(), budget, || {
            black_box(chunk.to_vec());
        });
        let decode = throughput(chunk.len(), budget, || {
            // The copy is part of decoding: records are read in place from the plugin's copy.
            black_box(decode_chunk(black_box(&chunk).to_vec()).unwrap());
        });
        let mut out = Vec::with_capacity(chunk.len() * 2);
        let decode_json = throughput(chunk.len(), budget, || {
            out.clear();
            let decoded = decode_chunk(black_box(&chunk).to_vec()).unwrap();
            for event in decoded.records.iter() {
                event.body.write_json(&mut out);
                out.push(b'\n');
            }
            black_box(&out);
        });
        println!(
            "{:<28} {:>12.0} {:>6.0} ({:>4.1}x) {:>6.0} ({:>4.1}x)",
            name,
            copy / 1e6,
            decode / 1e6,
            copy / decode,
            decode_json / 1e6,
            copy / decode_json
        );
    }
    println!("(x = times slower than copying the chunk, measured in this run)");
}
