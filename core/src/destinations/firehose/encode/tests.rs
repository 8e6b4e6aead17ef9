use super::*;
use crate::time::EventTime;
use serde_json::{Value, json};
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> FirehoseConfig {
    let mut props: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    props.insert("region".into(), "us-east-1".into());
    props
        .entry("delivery_stream".into())
        .or_insert("logs-$container_name".into());
    FirehoseConfig::read(&props, &|_| None).unwrap()
}

/// Logs the Firehose records of a stream carry.
fn events(stream: &StreamRecords) -> usize {
    stream.sources.iter().map(Vec::len).sum()
}

/// Records dropped for a cause that contains `cause`.
fn dropped_for(r: &Routed, cause: &str) -> usize {
    r.dropped.iter().filter(|(_, c)| c.contains(cause)).count()
}

fn encode(config: &FirehoseConfig, bodies: &[Value]) -> Routed {
    let keys = vec!["log".to_string(), "message".to_string()];
    let batch = Batch::from_json(
        "ecs.app",
        EventTime::new(1_700_000_000, 250_000_000),
        bodies,
    );
    Encoder {
        config,
        message_keys: &keys,
    }
    .encode(&batch)
}

fn text(record: &[u8]) -> String {
    String::from_utf8(record.to_vec()).unwrap()
}

/// Streams and how many lines each one got, in order of first appearance.
fn lines_per_stream(r: &Routed) -> Vec<(String, usize)> {
    r.streams
        .iter()
        .map(|s| (s.stream.clone(), events(s)))
        .collect()
}

#[test]
fn an_alternative_that_is_not_a_valid_stream_name_falls_through_to_the_next() {
    let c = config(&[(
        "delivery_stream",
        "logs-$app || logs-$container_name || logs-unrouted",
    )]);
    let r = encode(
        &c,
        &[
            json!({"app": "x".repeat(100), "container_name": "web", "log": "a"}),
            json!({"app": "a/b", "log": "b"}),
            json!({"app": "pay", "log": "c"}),
        ],
    );
    assert_eq!(
        lines_per_stream(&r),
        vec![
            ("logs-web".to_owned(), 1),
            ("logs-unrouted".to_owned(), 1),
            ("logs-pay".to_owned(), 1)
        ]
    );
    assert_eq!(
        dropped_for(&r, "no delivery stream"),
        0,
        "nothing dropped while an alternative is left"
    );
}

#[test]
fn one_chunk_opens_a_bounded_number_of_streams() {
    let bodies: Vec<Value> = (0..1000)
        .map(|i| json!({"app": format!("app{i}"), "log": "x"}))
        .collect();
    let with_fallback = config(&[("delivery_stream", "logs-$app || logs-overflow")]);
    let r = encode(&with_fallback, &bodies);
    assert_eq!(r.streams.len(), MAX_STREAMS_PER_CHUNK);
    assert_eq!(
        r.streams.last().map(|s| (s.stream.as_str(), events(s))),
        Some(("logs-overflow", 1000 - (MAX_STREAMS_PER_CHUNK - 1))),
        "the fallback takes the rest"
    );
    assert_eq!(dropped_for(&r, "no delivery stream"), 0);

    let strict = config(&[("delivery_stream", "logs-$app")]);
    let r = encode(&strict, &bodies);
    assert_eq!(r.streams.len(), MAX_STREAMS_PER_CHUNK);
    assert_eq!(
        dropped_for(&r, "no delivery stream"),
        1000 - MAX_STREAMS_PER_CHUNK
    );
    assert!(
        r.dropped[0]
            .1
            .contains("would be stream number 33 of this chunk (at most 32)"),
        "{:?}",
        r.dropped[0]
    );
}

#[test]
fn streams_reported_missing_are_routed_around_without_a_call() {
    let c = config(&[("delivery_stream", "logs-$container_name || logs-unrouted")]);
    let keys = vec!["log".to_string()];
    let batch = Batch::from_json(
        "t",
        EventTime::new(1, 0),
        &[
            json!({"container_name": "gone", "log": "a"}),
            json!({"container_name": "web", "log": "b"}),
        ],
    );
    struct Gone;
    impl MissingStreams for Gone {
        fn contains(&self, stream: &str) -> bool {
            stream == "logs-gone"
        }
    }
    let missing = Gone;
    let encoder = Encoder {
        config: &c,
        message_keys: &keys,
    };
    let keys_sent: Vec<String> = encoder
        .plan_avoiding(&batch, Some(&missing))
        .filter_map(|p| match p {
            Planned::Request(r) => Some(r.key),
            Planned::Dropped { .. } => None,
        })
        .collect();
    assert_eq!(keys_sent, vec!["logs-unrouted", "logs-web"]);
    assert!(!missing.contains("logs-web"));
}

#[test]
fn records_handed_back_take_their_next_alternative_after_the_plan_s_own() {
    use std::sync::Mutex;
    let c = config(&[(
        "delivery_stream",
        "logs-$container_name || logs-$team || logs-unrouted",
    )]);
    let keys = vec!["log".to_string()];
    let batch = Batch::from_json(
        "t",
        EventTime::new(1, 0),
        &[
            json!({"container_name": "a", "team": "x", "log": "0"}),
            json!({"container_name": "b", "team": "x", "log": "1"}),
            json!({"container_name": "c", "log": "2"}),
        ],
    );
    /// Streams found missing as the plan is sent, and the records sent to them.
    #[derive(Default)]
    struct Remote {
        gone: Mutex<Vec<String>>,
        handed_back: Mutex<Vec<usize>>,
    }
    impl MissingStreams for Remote {
        fn contains(&self, stream: &str) -> bool {
            self.gone.lock().unwrap().iter().any(|g| g == stream)
        }
    }
    impl Reroutes for Remote {
        fn take(&self) -> Vec<usize> {
            std::mem::take(&mut *self.handed_back.lock().unwrap())
        }
    }
    let remote = Remote::default();
    let encoder = Encoder {
        config: &c,
        message_keys: &keys,
    };
    let exists = ["logs-b", "logs-unrouted"];
    let mut sent = Vec::new();
    let mut dropped = Vec::new();
    for planned in encoder
        .plan_avoiding(&batch, Some(&remote))
        .rerouting(&remote)
    {
        match planned {
            Planned::Request(r) => {
                let positions = r.units.positions().to_vec();
                if !exists.contains(&r.key.as_str()) {
                    remote.gone.lock().unwrap().push(r.key.clone());
                    remote.handed_back.lock().unwrap().extend(positions.clone());
                }
                sent.push((r.key, positions));
            }
            Planned::Dropped { positions, .. } => dropped.extend(positions),
        }
    }
    let sent: Vec<(&str, Vec<usize>)> = sent.iter().map(|(k, p)| (k.as_str(), p.clone())).collect();
    assert_eq!(
        sent,
        vec![
            ("logs-a", vec![0]),
            ("logs-b", vec![1]),
            ("logs-c", vec![2]),
            // Record 0's next alternative, then record 2's (it has no team).
            ("logs-x", vec![0]),
            ("logs-unrouted", vec![2]),
            ("logs-unrouted", vec![0]),
        ]
    );
    assert!(dropped.is_empty(), "every record had an alternative left");
}

#[test]
fn routes_per_record_with_fallback_and_reports_unroutable() {
    let c = config(&[("delivery_stream", "logs-$container_name || logs-unrouted")]);
    let r = encode(
        &c,
        &[
            json!({"container_name": "web", "log": "a"}),
            json!({"log": "b"}),
            json!({"container_name": "db", "log": "c"}),
            json!({"container_name": "web", "log": "d"}),
        ],
    );
    let streams: Vec<(&str, usize)> = r
        .streams
        .iter()
        .map(|s| (s.stream.as_str(), s.records.len()))
        .collect();
    assert_eq!(
        streams,
        vec![("logs-web", 2), ("logs-unrouted", 1), ("logs-db", 1)]
    );
    assert_eq!(
        text(&r.streams[0].records[1]),
        "{\"container_name\":\"web\",\"log\":\"d\"}\n"
    );

    let strict = config(&[]);
    let r = encode(
        &strict,
        &[
            json!({"log": "no name"}),
            json!({"container_name": "a/b", "log": "bad"}),
        ],
    );
    assert!(r.streams.is_empty());
    assert_eq!(dropped_for(&r, "no delivery stream"), 2);
    assert_eq!(
        r.unroutable_reason.as_deref(),
        Some("record has no $container_name")
    );
}

#[test]
fn time_key_partition_keys_and_log_key() {
    let c = config(&[
        ("time_key", "time"),
        ("time_key_format", "%Y-%m-%dT%H:%M:%S.%LZ"),
        (
            "partition_keys",
            "service=$container_name,cluster=$ecs_cluster",
        ),
    ]);
    let r = encode(&c, &[json!({"container_name": "web", "log": "x"})]);
    assert_eq!(
        text(&r.streams[0].records[0]),
        "{\"container_name\":\"web\",\"log\":\"x\",\"time\":\"2023-11-14T22:13:20.250Z\",\"service\":\"web\"}\n"
    );
    let raw = config(&[("log_key", "log")]);
    let r = encode(
        &raw,
        &[
            json!({"container_name": "web", "log": "plain \"text\""}),
            json!({"container_name": "web"}),
        ],
    );
    assert_eq!(text(&r.streams[0].records[0]), "plain \"text\"\n");
    assert_eq!(dropped_for(&r, "no log_key field 'log'"), 1);
}

#[test]
fn oversized_records_are_cut_or_dropped() {
    let c = config(&[]);
    let r = encode(
        &c,
        &[
            json!({"container_name": "web", "log": "z".repeat(1_100_000)}),
            json!({"container_name": "web", "blob": "q".repeat(1_100_000)}),
        ],
    );
    assert_eq!(r.truncated, 1);
    assert_eq!(
        dropped_for(&r, "over 1000 KiB with no message to shorten"),
        1
    );
    let record = &r.streams[0].records[0];
    assert!(record.len() <= MAX_RECORD_BYTES);
    let parsed: Value = serde_json::from_slice(record).unwrap();
    assert!(parsed["log"].as_str().unwrap().ends_with(TRUNCATION_MARKER));
}

/// `compression zstd`: one frame per Firehose record, each decoding to exactly the lines
/// it carries; incompressible aggregates stay within the record limit after compression.
#[cfg(feature = "zstd")]
#[test]
fn zstd_compresses_each_record_into_one_frame() {
    let bodies: Vec<Value> = (0..40)
        .map(|i| json!({"container_name": "web", "log": format!("line {i}")}))
        .collect();
    let plain = encode(&config(&[]), &bodies);
    let zstd = encode(&config(&[("compression", "zstd")]), &bodies);
    assert_eq!(zstd.streams[0].records.len(), 40);
    for (compressed, raw) in zstd.streams[0]
        .records
        .iter()
        .zip(&plain.streams[0].records)
    {
        assert_eq!(&compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        assert_eq!(&zstd::decode_all(&compressed[..]).unwrap(), raw);
    }
    // Random hex does not compress below ~50 %: the worst case for the size rule.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<Value> = (0..300)
        .map(|_| {
            let hex: String = (0..4000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from_digit((state % 16) as u32, 16).unwrap()
                })
                .collect();
            json!({"container_name": "web", "log": hex})
        })
        .collect();
    let packed = encode(
        &config(&[("simple_aggregation", "on"), ("compression", "zstd")]),
        &noise,
    );
    let mut lines = 0;
    for record in &packed.streams[0].records {
        assert!(record.len() <= MAX_RECORD_BYTES, "{} bytes", record.len());
        lines += zstd::decode_all(&record[..])
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    }
    assert_eq!(lines, 300);
}

#[test]
fn aggregation_packs_lines_and_gzip_round_trips() {
    let bodies: Vec<Value> = (0..3000)
        .map(
            |i| json!({"container_name": "web", "log": format!("line {i:04} {}", "p".repeat(300))}),
        )
        .collect();
    let plain = encode(&config(&[]), &bodies);
    let packed = encode(
        &config(&[("simple_aggregation", "on"), ("compression", "gzip")]),
        &bodies,
    );
    assert_eq!(plain.streams[0].records.len(), 3000);
    let aggregates = &packed.streams[0].records;
    assert!(aggregates.len() < 5, "{} aggregates", aggregates.len());
    let mut all = String::new();
    for record in aggregates {
        assert!(record.len() <= MAX_RECORD_BYTES);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&record[..]), &mut text)
            .unwrap();
        all.push_str(&text);
    }
    let expected: String = plain.streams[0].records.iter().map(|r| text(r)).collect();
    assert_eq!(
        all, expected,
        "aggregates hold every line, in order, newline-delimited"
    );
    assert_eq!(events(&packed.streams[0]), 3000);
    let carried: Vec<usize> = packed.streams[0]
        .sources
        .iter()
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        carried,
        (0..3000).collect::<Vec<_>>(),
        "every log is in exactly one aggregate"
    );
}

#[test]
fn calls_respect_500_records_and_4_mib_of_base64() {
    /// The records of each call the plan yields for `bodies`.
    fn calls(bodies: &[Value]) -> Vec<Vec<usize>> {
        let c = config(&[]);
        let keys = vec!["log".to_string()];
        let encoder = Encoder {
            config: &c,
            message_keys: &keys,
        };
        let batch = Batch::from_json("t", EventTime::new(1, 0), bodies);
        let calls: Vec<Vec<usize>> = encoder
            .plan(&batch)
            .map(|planned| match planned {
                Planned::Request(call) => call.units.iter().map(<[u8]>::len).collect(),
                Planned::Dropped { cause, .. } => panic!("dropped: {cause}"),
            })
            .collect();
        assert_eq!(encoder.encode(&batch).streams[0].calls, calls.len());
        calls
    }
    let small = vec![json!({"container_name": "s", "log": "x".repeat(60)}); 1200];
    assert_eq!(
        calls(&small).iter().map(Vec::len).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    let big = vec![json!({"container_name": "s", "log": "x".repeat(999_900)}); 7];
    let big = calls(&big);
    for call in &big {
        let bytes: usize = call.iter().map(|&len| base64_len(len) + 16).sum();
        assert!(bytes + 512 <= 4 * 1024 * 1024, "{call:?}");
    }
    assert_eq!(big.len(), 3);
}
