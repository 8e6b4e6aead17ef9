//! The `firehose` destination of the built plugin against moto (the real Firehose, S3 and STS
//! wire protocol) and against a fault-injecting Firehose endpoint of our own.
//!
//! Each test runs its body in a child process with its own AWS environment (see
//! `common::run_in_child`), because the credential chain reads the process environment.

mod common;

use std::collections::BTreeMap;

use fanout_testhost::fake_firehose::{FakeFirehose, Reply};
use fanout_testhost::host::{FLB_ERROR, FLB_OK, FLB_RETRY, logs_of};
use fanout_testhost::moto::Moto;
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::{Value, json};

use common::{assert_init_fails, in_child, run_in_child};

const STATIC_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIDFANOUTTEST0000000"),
    ("AWS_SECRET_ACCESS_KEY", "fanout-test-secret"),
];

/// `$outer` runs `$inner` (which holds `$body`) in a child process with the environment `$env`.
macro_rules! child_test {
    ($outer:ident, $inner:ident, $env:expr, $body:block) => {
        #[test]
        fn $outer() {
            run_in_child(stringify!($inner), &$env);
        }

        #[test]
        #[ignore = "runs in a child process started by its outer test"]
        fn $inner() {
            if !in_child() {
                return;
            }
            $body
        }
    };
}

fn load() -> Plugin {
    Plugin::load(&plugin_path(), HostVersion::V5_1).expect("the plugin loads")
}

/// A firehose instance's properties: `endpoint`, region us-east-1, stream
/// `logs-$container_name`, with `extra` added or overriding.
fn firehose_props<'a>(
    endpoint: &'a str,
    label: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut props = vec![
        ("destinations", "firehose"),
        ("region", "us-east-1"),
        ("endpoint", endpoint),
        ("delivery_stream", "logs-$container_name"),
        ("label", label),
    ];
    for &(key, value) in extra {
        match props.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => props.push((key, value)),
        }
    }
    props
}

fn firelens(service: &str, n: usize) -> Value {
    json!({
        "container_name": service,
        "ecs_cluster": "prod",
        "ecs_task_arn": "arn:aws:ecs:us-east-1:123456789012:task/prod/77aa",
        "source": "stdout",
        "log": format!("{service} line {n}"),
        "n": n,
    })
}

fn pod(app: &str, n: usize) -> Value {
    json!({"log": format!("{app} pod line {n}"), "stream": "stderr", "n": n,
           "kubernetes": {"namespace_name": "shop", "pod_name": format!("{app}-1"), "labels": {"app": app}}})
}

/// Fluent Bit resends a chunk while the plugin answers RETRY.
fn flush_until_done(
    instance: &fanout_testhost::OutputInstance<'_>,
    chunk: &Chunk,
    tag: &str,
) -> i32 {
    for _ in 0..10 {
        match instance.flush(chunk.bytes(), tag) {
            FLB_RETRY => continue,
            other => return other,
        }
    }
    FLB_RETRY
}

fn lines(data: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(data)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

child_test!(
    three_services_land_under_their_s3_prefixes,
    moto_three_services,
    STATIC_KEYS,
    {
        let moto = Moto::start();
        moto.create_streams(
            "logs",
            &[
                ("logs-checkout", "prod/checkout/"),
                ("logs-cart", "prod/cart/"),
                ("logs-search", "prod/search/"),
                ("logs-unrouted", "prod/unrouted/"),
            ],
        );
        let plugin = load();
        let firelens_output = plugin
            .init(&firehose_props(
                &moto.url,
                "fh-firelens",
                &[
                    ("delivery_stream", "logs-$container_name || logs-unrouted"),
                    ("time_key", "time"),
                ],
            ))
            .unwrap();
        let kubernetes_output = plugin
            .init(&firehose_props(
                &moto.url,
                "fh-k8s",
                &[("delivery_stream", "logs-$kubernetes['labels']['app']")],
            ))
            .unwrap();
        let services = ["checkout", "cart", "search"];
        let mut chunk = Chunk::new();
        for n in 0..30 {
            chunk = chunk.event(1_700_000_000 + n as u32, &firelens(services[n % 3], n));
        }
        chunk = chunk.event(
            1_700_000_100,
            &json!({"log": "no container name", "n": 999}),
        );
        assert_eq!(firelens_output.flush(chunk.bytes(), "firelens"), FLB_OK);
        let pods = (0..9).fold(Chunk::new(), |c, n| {
            c.event(n as u32, &pod(services[n % 3], 100 + n))
        });
        assert_eq!(
            kubernetes_output.flush(pods.bytes(), "kube.var.log.containers"),
            FLB_OK
        );
        assert_eq!(firelens_output.exit(), FLB_OK);
        assert_eq!(kubernetes_output.exit(), FLB_OK);

        let mut by_prefix: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (key, content) in moto.objects("logs") {
            let parts: Vec<&str> = key.split('/').collect();
            // prod/<service>/YYYY/MM/DD/HH/<stream>-...
            assert_eq!(parts.len(), 7, "{key}");
            assert!(
                parts[2].len() == 4 && parts[3].len() == 2 && parts[4].len() == 2,
                "{key}"
            );
            assert!(
                parts[6].starts_with(&format!("logs-{}-", parts[1])),
                "{key}"
            );
            by_prefix
                .entry(parts[1].to_owned())
                .or_default()
                .extend(lines(content.as_bytes()));
        }
        assert_eq!(
            by_prefix.keys().collect::<Vec<_>>(),
            vec!["cart", "checkout", "search", "unrouted"]
        );
        for service in services {
            let records = &by_prefix[service];
            assert_eq!(
                records.len(),
                10 + 3,
                "{service}: 10 FireLens + 3 Kubernetes records"
            );
            for record in records {
                let owner = record["container_name"]
                    .as_str()
                    .or(record["kubernetes"]["labels"]["app"].as_str());
                assert_eq!(owner, Some(service), "{record}");
            }
            assert!(
                records
                    .iter()
                    .filter(|r| r.get("container_name").is_some())
                    .all(|r| r["time"].is_string())
            );
        }
        assert_eq!(
            by_prefix["unrouted"],
            vec![json!({"log": "no container name", "n": 999, "time": "2023-11-14T22:15:00"})]
        );
    }
);

child_test!(
    only_failed_records_are_resent,
    fake_partial_failures,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        endpoint.script([
            Reply::FailRecords(vec![1, 3]),
            Reply::Throttle,
            Reply::FailRecords(vec![0]),
            Reply::Accept,
        ]);
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-partial",
                &[("region", "eu-west-1")],
            ))
            .unwrap();
        let chunk = (0..5).fold(Chunk::new(), |c, n| {
            c.event(n as u32, &firelens("checkout", n))
        });
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
        assert_eq!(instance.exit(), FLB_OK);
        let received = endpoint.received();
        let sent: Vec<Vec<u64>> = received
            .iter()
            .map(|r| {
                r.records
                    .iter()
                    .map(|d| lines(d)[0]["n"].as_u64().unwrap())
                    .collect()
            })
            .collect();
        // All five; then only 1 and 3 (throttled as a whole); 1 and 3 again, of which 1 fails; then 1.
        assert_eq!(
            sent,
            vec![vec![0, 1, 2, 3, 4], vec![1, 3], vec![1, 3], vec![1]]
        );
        let mut accepted: Vec<u64> = endpoint
            .accepted()
            .iter()
            .map(|(_, d)| lines(d)[0]["n"].as_u64().unwrap())
            .collect();
        accepted.sort();
        assert_eq!(
            accepted,
            vec![0, 1, 2, 3, 4],
            "every record accepted exactly once"
        );
        assert!(received.iter().all(
            |r| r.stream == "logs-checkout" && r.access_key() == Some("AKIDFANOUTTEST0000000")
        ));
    }
);

child_test!(
    a_fault_schedule_across_three_streams_loses_nothing,
    fake_fault_schedule,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-faults",
                &[("flush_timeout", "3s")],
            ))
            .unwrap();
        let services = ["checkout", "cart", "search"];
        let mut expected = Vec::new();
        for round in 0..6usize {
            endpoint.script(match round {
                0 => vec![Reply::FailEvery(3), Reply::Throttle],
                1 => vec![
                    Reply::Throttle,
                    Reply::Throttle,
                    Reply::FailRecords(vec![0, 5, 9]),
                ],
                3 => vec![
                    Reply::FailEvery(2),
                    Reply::FailEvery(2),
                    Reply::FailEvery(2),
                ],
                _ => vec![],
            });
            let chunk = (0..30usize).fold(Chunk::new(), |c, i| {
                let n = round * 1000 + i;
                expected.push((format!("logs-{}", services[i % 3]), n as u64));
                c.event(i as u32, &firelens(services[i % 3], n))
            });
            assert_eq!(
                flush_until_done(&instance, &chunk, "t"),
                FLB_OK,
                "round {round}"
            );
        }
        assert_eq!(instance.exit(), FLB_OK);
        let mut accepted: Vec<(String, u64)> = endpoint
            .accepted()
            .iter()
            .map(|(stream, d)| (stream.clone(), lines(d)[0]["n"].as_u64().unwrap()))
            .collect();
        accepted.sort();
        expected.sort();
        assert_eq!(
            accepted, expected,
            "every record exactly once, in its service's stream"
        );
    }
);

child_test!(
    permanent_errors_are_not_retried_and_say_why,
    fake_permanent_errors,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        endpoint.script([Reply::Error("ResourceNotFoundException")]);
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(&endpoint.url, "fh-404", &[]))
            .unwrap();
        let chunk = Chunk::new()
            .event(1, &firelens("checkout", 1))
            .event(2, &json!({"log": "who am I", "n": 2}));
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_ERROR);
        assert_eq!(instance.exit(), FLB_OK);
        assert_eq!(endpoint.received().len(), 1, "not retried");
        let errors: Vec<String> = logs_of("fh-404")
            .into_iter()
            .filter(|l| l.level == 1)
            .map(|l| l.text)
            .collect();
        // One error line per cause, with its count.
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains(
                "firehose: 1 records dropped: no delivery stream (stream 'logs-checkout' does not exist (ResourceNotFoundException"
            )),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains(
                "firehose: 1 records dropped: no delivery stream (record has no $container_name)"
            )),
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| !e.contains("fanout-test-secret")));
    }
);

child_test!(
    a_missing_stream_and_a_deadline_in_one_flush_lose_nothing_and_count_right,
    fake_missing_stream_and_deadline,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        // `checkout` is throttled past the deadline; `missing` does not exist.
        endpoint.script(std::iter::repeat_n(Reply::Throttle, 200));
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-mixed",
                &[("flush_timeout", "1s")],
            ))
            .unwrap();
        let chunk = (0..10usize).fold(Chunk::new(), |c, n| {
            c.event(n as u32, &firelens(["checkout", "missing"][n % 2], n))
        });
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_RETRY);
        let errors: Vec<String> = logs_of("fh-mixed")
            .into_iter()
            .filter(|l| l.level == 1)
            .map(|l| l.text)
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(
                "firehose: 5 records dropped: no delivery stream (stream 'logs-missing' does not exist (ResourceNotFoundException"
            ) && e.contains("no '||' fallback")),
            "{errors:?}"
        );
        // Fluent Bit resends: only the throttled stream's records go out again.
        endpoint.script_clear();
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
        assert_eq!(instance.exit(), FLB_OK);
        let to_missing = endpoint
            .received()
            .iter()
            .filter(|r| r.stream == "logs-missing")
            .count();
        assert_eq!(
            to_missing, 1,
            "a refused stream is not asked again for this chunk"
        );
        let delivered: Vec<Value> = endpoint
            .accepted()
            .iter()
            .flat_map(|(_, data)| lines(data))
            .collect();
        assert_eq!(delivered.len(), 5);
        assert!(delivered.iter().all(|r| r["container_name"] == "checkout"));
        let exit = logs_of("fh-mixed")
            .into_iter()
            .find(|l| l.text.contains("exiting:"))
            .unwrap()
            .text;
        assert!(
            exit.contains("firehose[delivered=5 retried=5 dropped=5 rejected=0"),
            "records with no stream left are never counted delivered: {exit}"
        );
    }
);

child_test!(
    a_stream_found_missing_sends_its_records_to_the_fallback_at_once_and_is_not_asked_again,
    fake_missing_stream_cache,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-missing-cache",
                &[("delivery_stream", "logs-$container_name || logs-unrouted")],
            ))
            .unwrap();
        let chunk = |first: usize| {
            (first..first + 4).fold(Chunk::new(), |c, n| {
                c.event(n as u32, &firelens("missing", n))
            })
        };
        // The first chunk learns that the stream does not exist: its records take the
        // fallback in the same flush.
        assert_eq!(instance.flush(chunk(0).bytes(), "t"), FLB_OK);
        // The next ones go to the fallback without asking again.
        for first in [4, 8, 12] {
            assert_eq!(instance.flush(chunk(first).bytes(), "t"), FLB_OK);
        }
        assert_eq!(instance.exit(), FLB_OK);
        let calls: Vec<String> = endpoint
            .received()
            .iter()
            .map(|r| r.stream.clone())
            .collect();
        assert_eq!(
            calls,
            vec![
                "logs-missing",
                "logs-unrouted",
                "logs-unrouted",
                "logs-unrouted",
                "logs-unrouted"
            ]
        );
        let delivered: Vec<Value> = endpoint
            .accepted()
            .iter()
            .flat_map(|(_, data)| lines(data))
            .collect();
        assert_eq!(delivered.len(), 16, "nothing lost: {delivered:?}");
        let exit = logs_of("fh-missing-cache")
            .into_iter()
            .find(|l| l.text.contains("exiting:"))
            .unwrap()
            .text;
        assert!(
            exit.contains("firehose[delivered=16 retried=0 dropped=0 rejected=0"),
            "{exit}"
        );
    }
);

child_test!(
    aggregation_and_gzip_pack_many_lines_per_record,
    fake_aggregation,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-agg",
                &[
                    ("simple_aggregation", "on"),
                    ("compression", "gzip"),
                    ("partition_keys", "service=$container_name"),
                ],
            ))
            .unwrap();
        let chunk = (0..2000usize).fold(Chunk::new(), |c, n| {
            c.event(n as u32, &firelens(["checkout", "cart"][n % 2], n))
        });
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
        assert_eq!(instance.exit(), FLB_OK);
        let received = endpoint.received();
        assert_eq!(received.len(), 2, "one call per stream");
        for request in &received {
            assert_eq!(
                request.records.len(),
                1,
                "1000 small lines fit one aggregated record"
            );
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&request.records[0][..]),
                &mut text,
            )
            .unwrap();
            let records = lines(text.as_bytes());
            assert_eq!(records.len(), 1000);
            let service = request.stream.trim_start_matches("logs-");
            assert!(
                records
                    .iter()
                    .all(|r| r["service"] == service && r["container_name"] == service)
            );
        }
    }
);

child_test!(
    zstd_sends_one_frame_per_firehose_record,
    fake_zstd,
    STATIC_KEYS,
    {
        let endpoint = FakeFirehose::start();
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-zstd",
                &[("compression", "zstd")],
            ))
            .unwrap();
        let chunk = (0..50usize).fold(Chunk::new(), |c, n| {
            c.event(n as u32, &firelens("checkout", n))
        });
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
        assert_eq!(instance.exit(), FLB_OK);
        let records: Vec<Vec<u8>> = endpoint
            .received()
            .into_iter()
            .flat_map(|request| request.records)
            .collect();
        assert_eq!(records.len(), 50, "one Firehose record per log record");
        for (n, record) in records.iter().enumerate() {
            // Each record is a whole zstd frame, as the core output sends with `compression zstd`.
            let plain = zstd::decode_all(&record[..]).unwrap();
            let line = lines(&plain);
            assert_eq!(line.len(), 1);
            assert_eq!(line[0]["container_name"], "checkout");
            assert_eq!(line[0]["n"], n, "{line:?}");
        }
    }
);

/// `PutRecordBatch` to the stand-in at `url`, signed by aws-sigv4 as the SDK signs it (with
/// `secret` for the test key): its status and `__type`.
fn put_signed(url: &str, secret: &str, records: &[Vec<u8>]) -> (u16, String) {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use base64::Engine as _;
    use std::io::{Read, Write};
    let body = json!({
        "DeliveryStreamName": "logs-limits",
        "Records": records
            .iter()
            .map(|r| json!({"Data": base64::engine::general_purpose::STANDARD.encode(r)}))
            .collect::<Vec<_>>(),
    })
    .to_string();
    let host = url.trim_start_matches("http://");
    let headers = [
        ("host", host),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "Firehose_20150804.PutRecordBatch"),
    ];
    let identity =
        aws_credential_types::Credentials::new(STATIC_KEYS[0].1, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("firehose")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("{url}/"),
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut head = format!(
        "POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers.iter().copied().chain(instructions.headers()) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut connection = std::net::TcpStream::connect(host).unwrap();
    connection.write_all(head.as_bytes()).unwrap();
    connection.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    connection.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("null"))
        .unwrap_or(Value::Null);
    (
        status,
        json["__type"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The stand-in is as strict as Firehose: it refuses what Firehose refuses (more than 500
/// records, a record over 1,000 KiB, a request over 4 MiB) and a signature made with another
/// secret, and takes a request within the limits, signed with the test key's secret.
#[test]
fn the_stand_in_refuses_what_firehose_refuses() {
    let endpoint = FakeFirehose::start();
    let secret = STATIC_KEYS[1].1;
    let small = vec![b"{}\n".to_vec(); 3];
    assert_eq!(
        put_signed(&endpoint.url, secret, &small),
        (200, String::new())
    );
    assert_eq!(
        put_signed(&endpoint.url, "another-secret", &small),
        (403, "InvalidSignatureException".to_owned())
    );
    for (what, records) in [
        ("501 records", vec![b"x".to_vec(); 501]),
        ("a record of 1,024,001 bytes", vec![vec![b'x'; 1_024_001]]),
        ("a request over 4 MiB", vec![vec![b'x'; 1_000_000]; 5]),
    ] {
        assert_eq!(
            put_signed(&endpoint.url, secret, &records),
            (400, "InvalidArgumentException".to_owned()),
            "{what}"
        );
    }
    let received = endpoint.received();
    assert_eq!(received.len(), 5);
    assert!(received[0].violation.is_none());
    assert!(
        received[1..]
            .iter()
            .all(|r| r.violation.is_some() && r.accepted.is_empty())
    );
}

child_test!(
    a_wrong_secret_is_refused_like_firehose_refuses_it,
    fake_wrong_secret,
    [
        ("AWS_ACCESS_KEY_ID", "AKIDFANOUTTEST0000000"),
        ("AWS_SECRET_ACCESS_KEY", "not-the-test-secret"),
    ],
    {
        let endpoint = FakeFirehose::start();
        let plugin = load();
        let instance = plugin
            .init(&firehose_props(
                &endpoint.url,
                "fh-badsig",
                &[("flush_timeout", "2s")],
            ))
            .unwrap();
        let chunk = Chunk::new().event(1, &json!({"container_name": "web", "log": "x"}));
        assert_ne!(instance.flush(chunk.bytes(), "t"), FLB_OK);
        assert_eq!(instance.exit(), FLB_OK);
        let received = endpoint.received();
        assert!(!received.is_empty());
        assert!(
            received
                .iter()
                .all(|r| r.http_status == 403 && r.accepted.is_empty())
        );
        assert!(
            logs_of("fh-badsig")
                .iter()
                .any(|l| l.text.contains("InvalidSignatureException")),
            "{:?}",
            logs_of("fh-badsig")
        );
    }
);

/// A container-credentials endpoint (what ECS and EKS Pod Identity serve) handing out a new
/// key each time, valid for 20 s. The AWS SDK's identity cache refreshes a key 10 s (its buffer)
/// before its expiry plus a jitter of up to 5 s: 5–10 s before it expires.
struct ShortLivedCredentials {
    url: String,
    served: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ShortLivedCredentials {
    fn start() -> ShortLivedCredentials {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/creds", server.server_addr().to_ip().unwrap());
        let served = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = std::sync::Arc::clone(&served);
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let mut served = record.lock().unwrap();
                let key = format!("ASIASHORTLIVED{:06}", served.len() + 1);
                served.push(key.clone());
                let expires = std::process::Command::new("date")
                    .args(["-u", "-d", "+20 seconds", "+%Y-%m-%dT%H:%M:%SZ"])
                    .output()
                    .unwrap();
                let body = json!({
                    "AccessKeyId": key,
                    "SecretAccessKey": "short-lived-secret",
                    "Token": "short-lived-token",
                    "Expiration": String::from_utf8_lossy(&expires.stdout).trim(),
                });
                let _ = request.respond(tiny_http::Response::from_string(body.to_string()));
            }
        });
        ShortLivedCredentials { url, served }
    }
}

/// Credentials that expire are replaced before they do: a flush once the first key is inside
/// the SDK's refresh window (15.5 s of its 20) is signed with a new key, the old one still
/// valid for 4.5 s.
#[test]
fn short_lived_credentials_are_refreshed_before_they_expire() {
    let credentials = ShortLivedCredentials::start();
    run_in_child(
        "short_lived_credentials_child",
        &[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            credentials.url.as_str(),
        )],
    );
    let served = credentials.served.lock().unwrap().clone();
    assert_eq!(
        served,
        vec!["ASIASHORTLIVED000001", "ASIASHORTLIVED000002"],
        "one key per flush: fetched when needed, not on every request"
    );
}

#[test]
#[ignore = "runs in a child process: see short_lived_credentials_are_refreshed_before_they_expire"]
fn short_lived_credentials_child() {
    if !in_child() {
        return;
    }
    let endpoint = FakeFirehose::start();
    let plugin = load();
    let instance = plugin
        .init(&firehose_props(&endpoint.url, "fh-refresh", &[]))
        .unwrap();
    let flush = |n: u32| {
        let chunk = Chunk::new().event(
            n,
            &json!({"container_name": "web", "log": format!("flush {n}")}),
        );
        assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    };
    flush(1);
    let first_signed = std::time::Instant::now();
    // The first key (20 s) is inside the SDK's refresh window at the latest 15 s after it was
    // fetched, and still 4.5 s from expiring at 15.5 s: a clock condition, which only a clock
    // can tell.
    std::thread::sleep(
        std::time::Duration::from_millis(15_500).saturating_sub(first_signed.elapsed()),
    );
    flush(2);
    assert_eq!(instance.exit(), FLB_OK);
    let keys: Vec<String> = endpoint
        .received()
        .iter()
        .map(|r| {
            r.access_key()
                .expect("a SigV4 Authorization header")
                .to_owned()
        })
        .collect();
    assert_eq!(keys, vec!["ASIASHORTLIVED000001", "ASIASHORTLIVED000002"]);
    let tokens: Vec<Option<String>> = endpoint
        .received()
        .iter()
        .map(|r| r.security_token.clone())
        .collect();
    assert_eq!(tokens, vec![Some("short-lived-token".to_owned()); 2]);
}

#[test]
fn credentials_come_from_irsa_web_identity_through_moto_sts() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    // A projected service-account token, as EKS mounts it; moto's STS accepts any JWT-shaped one.
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2hvcDpsb2dzIn0.c2ln",
    )
    .unwrap();
    let token = token.display().to_string();
    run_in_child(
        "moto_web_identity",
        &[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fanout-irsa"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token),
            ("AWS_ROLE_SESSION_NAME", "fanout-test"),
        ],
    );
}

#[test]
#[ignore = "runs in a child process: see credentials_come_from_irsa_web_identity_through_moto_sts"]
fn moto_web_identity() {
    if !in_child() {
        return;
    }
    assert!(
        std::env::var_os("AWS_ACCESS_KEY_ID").is_none(),
        "no static keys in this process"
    );
    assert!(std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some());
    let moto = Moto::start();
    // Signed with the keys moto's STS issues: their secrets are moto's.
    let endpoint = FakeFirehose::start_with_issued_keys();
    let plugin = load();
    // The role and token file come from the environment, as IRSA injects them.
    let instance = plugin
        .init(&firehose_props(
            &endpoint.url,
            "fh-irsa",
            &[
                ("sts_endpoint", &moto.url),
                ("delivery_stream", "logs-irsa"),
            ],
        ))
        .unwrap();
    assert_eq!(
        instance.flush(
            Chunk::new()
                .event(1, &json!({"log": "signed by IRSA"}))
                .bytes(),
            "t"
        ),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    let received = endpoint.received();
    assert_eq!(received.len(), 1);
    let key = received[0]
        .access_key()
        .expect("a SigV4 Authorization header");
    assert!(
        key.starts_with("ASIA"),
        "temporary credentials from STS, got {key}"
    );
    assert!(
        received[0].security_token.is_some(),
        "the session token is sent"
    );
}

#[test]
fn bad_firehose_properties_fail_init_with_one_line() {
    let plugin = load();
    let cases = [
        (
            "fh-nostream",
            vec![("destinations", "firehose"), ("region", "us-east-1")],
            "property 'delivery_stream': is required",
        ),
        (
            "fh-template",
            vec![
                ("destinations", "firehose"),
                ("region", "us-east-1"),
                ("delivery_stream", "logs-$a['b"),
            ],
            "property 'delivery_stream': cannot parse template",
        ),
        (
            "fh-compression",
            vec![
                ("destinations", "firehose"),
                ("region", "us-east-1"),
                ("delivery_stream", "s"),
                ("compression", "snappy"),
            ],
            "property 'compression': invalid value 'snappy': expected one of gzip, zstd, none",
        ),
    ];
    assert_init_fails(&plugin, cases.into(), None);
}
