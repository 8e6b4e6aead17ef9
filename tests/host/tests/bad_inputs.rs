//! Bad inputs through the built plugin: each gives its verdict, a clear log line and a
//! counter, and never a crash or an abort of the host process.

mod common;

use fanout_testhost::fake_datadog::FakeDatadog;
use fanout_testhost::host::{FLB_ERROR, FLB_OK, logs_of};
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::json;

/// `[[EventTime, {}], body]` with a body written by `body`.
fn chunk_with(body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = vec![0x92, 0x92, 0xd7, 0x00];
    buf.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes());
    buf.push(0x80);
    body(&mut buf);
    buf
}

fn map_with(key: &str, value: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    chunk_with(|buf| {
        rmp::encode::write_map_len(buf, 2).unwrap();
        rmp::encode::write_str(buf, "log").unwrap();
        rmp::encode::write_str(buf, "x").unwrap();
        rmp::encode::write_str(buf, key).unwrap();
        value(buf);
    })
}

#[test]
fn every_bad_input_gets_a_verdict_a_line_and_a_counter() {
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let intake = FakeDatadog::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin
        .init(&[
            ("destinations", "datadog,file"),
            ("apikey", "k"),
            ("dd_url", &intake.url),
            ("path", &out_s),
            ("stats_interval", "0"),
            ("label", "bad"),
        ])
        .unwrap();
    let deep = map_with("deep", |buf| {
        buf.extend(std::iter::repeat_n(0x91u8, 10_000));
        buf.push(0xc0);
    });
    let huge_tag = "t".repeat(100_000);
    type Case = (&'static str, Vec<u8>, String, i32, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "malformed chunk",
            vec![0x92, 0xc1, 0x00],
            "t".into(),
            FLB_ERROR,
            Some("not valid msgpack: byte 0xc1"),
        ),
        (
            "truncated chunk",
            Chunk::new().event(1, &json!({"log": "cut"})).into_bytes()[..12].to_vec(),
            "t".into(),
            FLB_ERROR,
            Some("chunk is truncated"),
        ),
        (
            "non-map record",
            chunk_with(|b| rmp::encode::write_str(b, "a string").unwrap()),
            "t".into(),
            FLB_OK,
            Some("1 records whose body is not a map"),
        ),
        (
            "record over 1 MB",
            Chunk::new()
                .event(1, &json!({"log": "m".repeat(1_500_000)}))
                .into_bytes(),
            "t".into(),
            FLB_OK,
            Some("1 logs over 1 MB had their message truncated"),
        ),
        (
            "invalid UTF-8",
            map_with("bytes", |b| {
                rmp::encode::write_str_len(b, 3).unwrap();
                b.extend_from_slice(b"\xff\xfe!");
            }),
            "t".into(),
            FLB_OK,
            Some("1 strings with invalid UTF-8 (repaired)"),
        ),
        (
            "NaN and Inf",
            chunk_with(|b| {
                rmp::encode::write_map_len(b, 2).unwrap();
                rmp::encode::write_str(b, "nan").unwrap();
                rmp::encode::write_f64(b, f64::NAN).unwrap();
                rmp::encode::write_str(b, "inf").unwrap();
                rmp::encode::write_f64(b, f64::INFINITY).unwrap();
            }),
            "t".into(),
            FLB_OK,
            Some("2 NaN/Inf floats (sent as null)"),
        ),
        (
            "bin and ext",
            map_with("ext", |b| {
                rmp::encode::write_ext_meta(b, 4, 7).unwrap();
                b.extend_from_slice(b"abcd");
            }),
            "t".into(),
            FLB_OK,
            Some("1 msgpack ext values (sent as null)"),
        ),
        (
            "10 000-deep nesting",
            deep,
            "t".into(),
            FLB_OK,
            Some("1 values nested too deeply (replaced)"),
        ),
        ("empty chunk", Vec::new(), "t".into(), FLB_OK, None),
        (
            "huge tag",
            Chunk::new()
                .event(1, &json!({"log": "big tag"}))
                .into_bytes(),
            huge_tag.clone(),
            FLB_OK,
            None,
        ),
    ];
    let mut seen_lines = 0;
    for (name, chunk, tag, expected, line) in cases {
        let rc = instance.flush(&chunk, &tag);
        let lines = logs_of("bad");
        assert_eq!(rc, expected, "{name}: {:?}", &lines[seen_lines..]);
        let new: Vec<_> = lines[seen_lines..].to_vec();
        seen_lines = lines.len();
        if let Some(text) = line {
            assert!(
                new.iter().any(|l| l.text.contains(text)),
                "{name}: no line with {text:?} in {new:?}"
            );
        }
        assert!(
            new.iter().all(|l| l.text.len() < 4096),
            "{name}: log lines stay short"
        );
    }
    // A chunk after all of that still goes through.
    assert_eq!(
        instance.flush(
            Chunk::new().event(2, &json!({"log": "still fine"})).bytes(),
            "t"
        ),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    let exit = logs_of("bad")
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .unwrap()
        .text;
    for counter in [
        "rejected_chunks=2",
        "skipped_records=1",
        "altered_values=5",
        "flush_error=2",
    ] {
        assert!(exit.contains(counter), "{counter} in {exit}");
    }
    // The huge tag is logged nowhere in full, but delivered as it is.
    assert!(std::fs::read_to_string(&out).unwrap().contains(&huge_tag));
    assert!(
        intake
            .accepted()
            .iter()
            .any(|e| e["message"] == "still fine")
    );
}

/// Beyond `max_in_flight_bytes` a flush waits for room instead of answering RETRY at once: a
/// RETRY that is not a delivery failure would spend the chunk's `Retry_Limit` (1 by default)
/// and Fluent Bit would drop it.
#[test]
fn memory_stays_bounded_when_deliveries_back_up() {
    let big = (0..40).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": "z".repeat(4096)}))
    });
    second_flush_waits_for_room("backpressure", &big, "64K");
}

/// `max_in_flight_bytes` bounds what chunks hold once decoded, not their msgpack size: a chunk
/// of 20,000 tiny records is ~300 KB of msgpack but megabytes of decoded values, so under a 1 MB
/// limit the next flush waits for it.
#[test]
fn the_in_flight_limit_counts_decoded_records_not_chunk_bytes() {
    let tiny = (0..20_000).fold(Chunk::new(), |c, i| c.event(i, &json!({"a": [], "b": {}})));
    assert!(tiny.bytes().len() < 512 * 1024, "{}", tiny.bytes().len());
    second_flush_waits_for_room("decoded-backpressure", &tiny, "1M");
}

/// A first chunk whose delivery blocks (a file destination writing to a pipe nobody reads
/// yet), then a second one: the second must wait for room, and both end OK once the pipe is
/// drained.
fn second_flush_waits_for_room(label: &str, big: &Chunk, limit: &str) {
    use std::io::Read;
    use std::time::{Duration, Instant};

    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("slow.fifo");
    // Writes block once the pipe buffer is full, until the test reads.
    let mut reader = fanout_testhost::ffi::stalled_fifo(&fifo);
    let fifo_s = fifo.display().to_string();
    let instance = plugin
        .init(&[
            ("destinations", "file"),
            ("path", &fifo_s),
            ("max_in_flight_bytes", limit),
            ("flush_timeout", "20s"),
            ("stats_interval", "0"),
            ("label", label),
            // For the "waiting for room" line the test waits on.
            ("log_level", "debug"),
        ])
        .unwrap();
    let small = Chunk::new().event(1, &json!({"log": "small"}));
    let guard = Duration::from_secs(30);
    std::thread::scope(|scope| {
        let stuck = scope.spawn(|| instance.flush(big.bytes(), "t"));
        // The first chunk (over the limit) is in flight once its write reaches the pipe.
        let started = Instant::now();
        while fanout_testhost::ffi::readable_bytes(&reader) == 0 {
            assert!(
                started.elapsed() < guard,
                "the first chunk's write never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let waiting = scope.spawn(|| instance.flush(small.bytes(), "t"));
        // The second flush says it waits for room; nothing drains the pipe until then, so
        // neither flush can have ended.
        while !logs_of(label)
            .iter()
            .any(|l| l.text.contains("waiting for room"))
        {
            assert!(
                !waiting.is_finished(),
                "the second flush answered instead of waiting for room"
            );
            assert!(
                started.elapsed() < guard,
                "the second flush never waited for room"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !waiting.is_finished() && !stuck.is_finished(),
            "the second flush holds its chunk and waits for room instead of answering RETRY at once"
        );
        // Room comes when the first chunk's write gets through.
        let mut sink = vec![0u8; 1 << 20];
        let drain_deadline = Instant::now() + Duration::from_secs(15);
        while !(stuck.is_finished() && waiting.is_finished()) && Instant::now() < drain_deadline {
            let _ = reader.read(&mut sink);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(stuck.join().unwrap(), FLB_OK);
        assert_eq!(
            waiting.join().unwrap(),
            FLB_OK,
            "delivered once there was room"
        );
    });
    let drain = std::thread::spawn(move || {
        let mut sink = vec![0u8; 1 << 20];
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            match reader.read(&mut sink) {
                Ok(0) => break,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    assert_eq!(instance.exit(), FLB_OK);
    drain.join().unwrap();
    let exit = logs_of(label)
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .unwrap()
        .text;
    assert!(exit.contains("busy=1 busy_retry=0"), "{exit}");
}
