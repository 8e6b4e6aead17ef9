//! The `datadog` destination of the built plugin against a real HTTP intake on 127.0.0.1,
//! and the delivery engine through it: per-record outcomes (a refused record isolated,
//! everything else delivered), redirects never followed, `Retry-After: 0` that cannot spin,
//! concurrent requests, identical chunks, and the counters that say it all.

mod common;

use common::{ForwardProxy, assert_init_fails, in_child, records, run_in_child};

use std::collections::BTreeMap;
use std::time::Duration;

use fanout_testhost::fake_datadog::{FakeDatadog, REFUSED_MESSAGE, Reply};
use fanout_testhost::host::{FLB_ERROR, FLB_OK, FLB_RETRY, logs, logs_of};
use fanout_testhost::{Chunk, HostVersion, Plugin, plugin_path};
use serde_json::{Value, json};

const API_KEY: &str = "dd-test-key-4f9a2c7e1b";

fn load() -> Plugin {
    Plugin::load(&plugin_path(), HostVersion::V5_1).expect("the plugin loads")
}

fn props<'a>(
    label: &'a str,
    intake: &'a FakeDatadog,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("destinations", "datadog"),
        ("apikey", API_KEY),
        ("dd_url", intake.url.as_str()),
        ("label", label),
    ];
    p.extend_from_slice(extra);
    p
}

fn firelens(service: &str, n: usize) -> Value {
    json!({
        "container_id": format!("{service}-0123"),
        "container_name": service,
        "ecs_cluster": "arn:aws:ecs:eu-west-1:210987654321:cluster/prod",
        "ecs_task_arn": "arn:aws:ecs:eu-west-1:210987654321:task/prod/5b1f",
        "ecs_task_definition": format!("{service}:7"),
        "source": "stdout",
        "log": format!("{service} request {n}"),
    })
}

fn messages(entries: &[Value]) -> Vec<String> {
    let mut m: Vec<String> = entries
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect();
    m.sort();
    m
}

#[test]
fn firelens_records_arrive_with_service_source_and_tags() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let p = props(
        "dd-firelens",
        &intake,
        &[
            ("provider", "ecs"),
            ("dd_source", "firelens"),
            ("dd_tags", "env:staging"),
        ],
    );
    let instance = plugin.init(&p).unwrap();
    let chunk = Chunk::new()
        .event(1_700_000_000, &firelens("checkout", 1))
        .event(
            1_700_000_001,
            &json!({"log": "{\"msg\":\"x\"}", "container_name": "cart", "level": "warn"}),
        );
    assert_eq!(
        instance.flush(chunk.bytes(), "checkout-firelens-5b1f"),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);

    let received = intake.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.violation, None);
    assert_eq!(request.header("DD-API-KEY"), Some(API_KEY));
    assert_eq!(request.header("Content-Encoding"), Some("zstd"));
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    assert!(
        request
            .header("User-Agent")
            .unwrap()
            .starts_with("flb-fanout/")
    );
    assert_eq!(
        request.entries[0],
        json!({
            "timestamp": 1_700_000_000_000i64,
            "ddsource": "firelens",
            "service": "checkout",
            "message": "checkout request 1",
            "ddtags": "container_id:checkout-0123,container_name:checkout,cluster_name:prod,\
                       task_arn:arn:aws:ecs:eu-west-1:210987654321:task/prod/5b1f,region:eu-west-1,\
                       aws_account:210987654321,task_id:5b1f,task_family:checkout,task_version:7,stream:stdout,env:staging"
        })
    );
    assert_eq!(request.entries[1]["service"], "cart");
    assert_eq!(request.entries[1]["status"], "warn");
    assert_eq!(
        request.entries[1]["ddtags"],
        "container_name:cart,env:staging"
    );
}

#[test]
fn every_compression_setting_arrives_intact() {
    let plugin = load();
    for (settings, encoding) in [
        (&[][..], Some("zstd")),
        (
            &[("compress", "zstd"), ("compress_level", "19")],
            Some("zstd"),
        ),
        (&[("compress", "gzip")], Some("gzip")),
        (
            &[("compress", "gzip"), ("compress_level", "1")],
            Some("gzip"),
        ),
        (&[("compress", "none")], None),
    ] {
        let intake = FakeDatadog::start();
        let instance = plugin
            .init(&props("dd-compress", &intake, settings))
            .unwrap();
        let chunk = (0..300).fold(Chunk::new(), |c, n| {
            c.event(1_700_000_000, &firelens("checkout", n))
        });
        assert_eq!(instance.flush(chunk.bytes(), "app"), FLB_OK);
        assert_eq!(instance.exit(), FLB_OK);
        let received = intake.received();
        assert_eq!(received.len(), 1, "{settings:?}");
        assert_eq!(received[0].violation, None, "{settings:?}");
        assert_eq!(received[0].header("Content-Encoding"), encoding);
        assert_eq!(received[0].entries.len(), 300, "{settings:?}");
        let mut expected: Vec<String> = (0..300).map(|n| format!("checkout request {n}")).collect();
        expected.sort();
        assert_eq!(messages(&received[0].entries), expected, "{settings:?}");
    }
}

#[test]
fn an_intake_that_refuses_zstd_gets_the_same_request_with_gzip_and_gzip_from_then_on() {
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.outage(
        std::time::Duration::from_secs(600),
        Reply::RefuseEncoding("zstd".into()),
    );
    let instance = plugin.init(&props("dd-no-zstd", &intake, &[])).unwrap();
    for chunk in 0..3 {
        let records = (0..10).fold(Chunk::new(), |c, n| {
            c.event(1_700_000_000, &firelens("checkout", chunk * 10 + n))
        });
        assert_eq!(instance.flush(records.bytes(), "app"), FLB_OK);
    }
    assert_eq!(instance.exit(), FLB_OK);
    let received = intake.received();
    let seen: Vec<(Option<&str>, u16)> = received
        .iter()
        .map(|r| (r.header("Content-Encoding"), r.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("zstd"), 415),
            (Some("gzip"), 202),
            (Some("gzip"), 202),
            (Some("gzip"), 202)
        ]
    );
    let mut expected: Vec<String> = (0..30).map(|n| format!("checkout request {n}")).collect();
    expected.sort();
    assert_eq!(messages(&intake.accepted()), expected, "each record once");
    let switched: Vec<_> = logs_of("dd-no-zstd")
        .into_iter()
        .filter(|l| l.text.contains("refused a zstd body (HTTP 415"))
        .collect();
    assert_eq!(switched.len(), 1, "said once: {switched:?}");
    // Every POST on the wire is counted, the gzip one after the refusal too.
    let exit = logs_of("dd-no-zstd")
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .expect("the exit stats line")
        .text;
    assert!(
        exit.contains(&format!("requests={}]", received.len())),
        "{} POSTs received: {exit}",
        received.len()
    );
}

#[test]
fn kubernetes_records_get_per_record_service_and_tags() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let p = props(
        "dd-k8s",
        &intake,
        &[
            ("dd_service", "$kubernetes['labels']['app'] || batch-jobs"),
            ("dd_tags", "team:$kubernetes['labels']['team'] || team:none"),
        ],
    );
    let instance = plugin.init(&p).unwrap();
    let pod = |app: Option<&str>, team: Option<&str>, n: u32| {
        let mut labels = serde_json::Map::new();
        if let Some(app) = app {
            labels.insert("app".into(), json!(app));
        }
        if let Some(team) = team {
            labels.insert("team".into(), json!(team));
        }
        labels.insert("tags.datadoghq.com/env".into(), json!("prod"));
        json!({"log": format!("line {n}"), "stream": "stdout",
               "kubernetes": {"namespace_name": "jobs", "pod_name": format!("p-{n}"), "labels": labels}})
    };
    let chunk = Chunk::new()
        .event(1, &pod(Some("report"), Some("data"), 1))
        .event(2, &pod(None, None, 2));
    assert_eq!(
        instance.flush(chunk.bytes(), "kube.var.log.containers.p"),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    let entries = intake.accepted();
    assert_eq!(entries[0]["service"], "report");
    assert_eq!(
        entries[0]["ddtags"],
        "team:data,env:prod,kube_namespace:jobs,pod_name:p-1"
    );
    assert_eq!(entries[1]["service"], "batch-jobs");
    assert_eq!(
        entries[1]["ddtags"],
        "team:none,env:prod,kube_namespace:jobs,pod_name:p-2"
    );
    assert_eq!(entries[1]["message"], "line 2");
    assert_eq!(entries[1]["kubernetes"]["pod_name"], "p-2");
}

#[test]
fn requests_are_cut_at_1000_entries_and_5_mb() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let instance = plugin.init(&props("dd-limits", &intake, &[])).unwrap();
    let many = (0..2500u32).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": format!("small {i:05}")}))
    });
    assert_eq!(instance.flush(many.bytes(), "t"), FLB_OK);
    // The requests go out concurrently: their order is not fixed.
    let mut counts: Vec<usize> = intake.received().iter().map(|r| r.entries.len()).collect();
    counts.sort();
    assert_eq!(counts, vec![500, 1000, 1000]);

    let big = (0..14u32).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": format!("{i:02}{}", "b".repeat(900_000))}))
    });
    assert_eq!(instance.flush(big.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let received = intake.received();
    assert!(
        received
            .iter()
            .all(|r| r.violation.is_none() && r.status == 202),
        "no request broke a limit"
    );
    assert!(received[3..].iter().all(|r| r.body_len <= 5_000_000));
    assert!(
        received.len() >= 3 + 3,
        "14 logs of 900 KB need at least 3 requests"
    );
    assert_eq!(intake.accepted().len(), 2514);
}

#[test]
fn a_413_splits_the_request_and_every_record_arrives_once() {
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.script([Reply::Status(413), Reply::Status(413)]);
    let instance = plugin.init(&props("dd-413", &intake, &[])).unwrap();
    let chunk = (0..10u32).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": format!("m{i}")}))
    });
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let mut sizes: Vec<(usize, u16)> = intake
        .received()
        .iter()
        .map(|r| (r.entries.len(), r.status))
        .collect();
    assert_eq!(sizes[0], (10, 413));
    // The halves go out concurrently: their order is not fixed.
    sizes.sort();
    assert_eq!(
        sizes,
        vec![(2, 202), (3, 202), (5, 202), (5, 413), (10, 413)]
    );
    let mut accepted = messages(&intake.accepted());
    accepted.sort();
    assert_eq!(
        accepted,
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn temporary_failures_are_retried_with_the_same_records() {
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.script([
        Reply::Status(500),
        Reply::RetryAfter(429, 1),
        Reply::Status(503),
        Reply::Status(408),
    ]);
    let instance = plugin.init(&props("dd-retry", &intake, &[])).unwrap();
    let chunk = (0..3u32).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": format!("r{i}")}))
    });
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let received = intake.received();
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 429, 503, 408, 202]);
    assert!(
        received
            .iter()
            .all(|r| messages(&r.entries) == vec!["r0", "r1", "r2"])
    );
    assert_eq!(intake.accepted().len(), 3);
}

/// A 401/403 may be a rotating key or a proxy's hiccup: retried until the deadline, logged as
/// an error, then RETRY, so Fluent Bit's `Retry_Limit` decides; the key is never logged.
#[test]
fn rejected_keys_are_retried_until_the_deadline_and_the_key_is_never_logged() {
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.script(std::iter::repeat_n(Reply::Status(403), 11).chain([Reply::Status(401)]));
    let instance = plugin
        .init(&props("dd-403", &intake, &[("flush_timeout", "1s")]))
        .unwrap();
    let chunk = Chunk::new().event(1, &json!({"log": "x"}));
    let first = instance.flush(chunk.bytes(), "t");
    let mut flushes = 1;
    let mut status = first;
    while status == FLB_RETRY && flushes < 30 {
        status = instance.flush(chunk.bytes(), "t");
        flushes += 1;
    }
    assert_eq!(first, FLB_RETRY, "a 403 is not a reason to drop the chunk");
    assert_eq!(status, FLB_OK, "delivered once the key works again");
    assert_eq!(instance.exit(), FLB_OK);
    let statuses: Vec<u16> = intake.received().iter().map(|r| r.status).collect();
    let mut expected = vec![403; 11];
    expected.extend([401, 202]);
    assert_eq!(statuses, expected);
    assert!(flushes > 1);
    assert_eq!(intake.accepted().len(), 1);
    let errors: Vec<_> = logs_of("dd-403")
        .into_iter()
        .filter(|l| l.level == 1)
        .collect();
    assert!(!errors.is_empty());
    assert!(errors[0].text.contains("HTTP 403"), "{}", errors[0].text);
    assert!(
        errors[0].text.contains("check apikey"),
        "{}",
        errors[0].text
    );
    assert!(
        logs().iter().all(|l| !l.text.contains(API_KEY)),
        "the API key appeared in a log line"
    );
}

#[test]
fn a_fault_schedule_loses_nothing() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let p = props(
        "dd-faults",
        &intake,
        &[("provider", "ecs"), ("flush_timeout", "2s")],
    );
    let instance = plugin.init(&p).unwrap();
    let services = ["checkout", "cart", "search"];
    let mut expected = Vec::new();
    for round in 0..9usize {
        // Faults before most requests; round 4 fails longer than flush_timeout allows.
        match round % 3 {
            0 => intake.script([Reply::Status(500), Reply::Status(429)]),
            1 => intake.script([Reply::Status(503)]),
            _ => {}
        }
        if round == 4 {
            intake.script(std::iter::repeat_n(Reply::Status(500), 40));
        }
        let service = services[round % 3];
        let chunk = (0..20usize).fold(Chunk::new(), |c, n| {
            expected.push(format!("{service} request {}", round * 100 + n));
            c.event(n as u32, &firelens(service, round * 100 + n))
        });
        // Fluent Bit resends a chunk for as long as the plugin answers RETRY.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match instance.flush(chunk.bytes(), "firelens") {
                FLB_OK => break,
                FLB_RETRY if attempts < 10 => continue,
                other => panic!("round {round}: flush returned {other} after {attempts} attempts"),
            }
        }
    }
    assert_eq!(instance.exit(), FLB_OK);
    expected.sort();
    let accepted = intake.accepted();
    assert_eq!(messages(&accepted), expected, "every record exactly once");
    let per_service: BTreeMap<String, usize> = accepted.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["service"].as_str().unwrap().to_owned())
            .or_default() += 1;
        m
    });
    assert_eq!(
        per_service.values().copied().collect::<Vec<_>>(),
        vec![60, 60, 60]
    );
}

#[test]
fn bad_datadog_properties_fail_init_with_one_line() {
    let plugin = load();
    let cases = [
        (
            "dd-nokey",
            vec![("destinations", "datadog")],
            "property 'apikey': is required",
        ),
        (
            "dd-site",
            vec![
                ("destinations", "datadog"),
                ("apikey", API_KEY),
                ("dd_site", "moon"),
            ],
            "property 'dd_site': invalid value 'moon'",
        ),
        (
            "dd-url",
            vec![
                ("destinations", "datadog"),
                ("apikey", API_KEY),
                ("dd_url", "intake:80"),
            ],
            "property 'dd_url'",
        ),
    ];
    assert_init_fails(&plugin, cases.into(), Some(API_KEY));
}

/// An HTTPS intake on 127.0.0.1 whose certificate comes from a CA nobody told the plugin
/// about: the plugin must refuse it, because certificates are verified by default.
#[test]
fn tls_certificates_are_verified_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let peer = common::TlsPeer::start(dir.path());
    let url = peer.url.clone();
    let plugin = load();
    let p = vec![
        ("destinations", "datadog"),
        ("apikey", API_KEY),
        ("dd_url", url.as_str()),
        ("label", "dd-tls"),
        ("flush_timeout", "1s"),
    ];
    let instance = plugin.init(&p).unwrap();
    let rc = instance.flush(Chunk::new().event(1, &json!({"log": "x"})).bytes(), "t");
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(
        rc, FLB_RETRY,
        "an untrusted certificate is a delivery failure"
    );
    assert!(peer.answered().is_empty(), "no request got through");
    let lines = logs_of("dd-tls");
    assert!(
        lines
            .iter()
            .any(|l| l.text.to_lowercase().contains("certificate")),
        "the log says why: {lines:?}"
    );
}

#[test]
fn a_resend_after_the_deadline_carries_only_what_was_not_accepted() {
    let plugin = load();
    let intake = FakeDatadog::start();
    // The first request (1000 logs) is accepted; the others are told to come back after the
    // flush deadline, so the flush ends there however slow this machine is (under emulation
    // too). One request at a time, so "the first" is the first 1000 logs.
    intake.script(
        std::iter::once(Reply::Status(202))
            .chain(std::iter::repeat_n(Reply::RetryAfter(503, 600), 10)),
    );
    let instance = plugin
        .init(&props(
            "dd-resend",
            &intake,
            &[
                ("flush_timeout", "3s"),
                ("stats_interval", "0"),
                ("max_concurrent_requests", "1"),
            ],
        ))
        .unwrap();
    let chunk = (0..2500u32).fold(Chunk::new(), |c, i| {
        c.event(i, &json!({"log": format!("r{i:04}")}))
    });
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_RETRY);
    let first_attempt = intake.received().len();
    intake.script_clear();
    assert_eq!(
        instance.flush(chunk.bytes(), "t"),
        FLB_OK,
        "Fluent Bit's resend"
    );
    assert_eq!(instance.exit(), FLB_OK);
    let resent: usize = intake.received()[first_attempt..]
        .iter()
        .map(|r| r.entries.len())
        .sum();
    assert_eq!(resent, 1500, "the 1000 accepted logs are not sent again");
    let expected: Vec<String> = (0..2500).map(|i| format!("r{i:04}")).collect();
    assert_eq!(
        messages(&intake.accepted()),
        expected,
        "every log exactly once"
    );
}

fn chunk_of(messages: impl IntoIterator<Item = String>) -> Chunk {
    messages
        .into_iter()
        .enumerate()
        .fold(Chunk::new(), |c, (i, m)| {
            c.event(i as u32, &json!({"log": m}))
        })
}

fn exit_line(label: &str) -> String {
    logs_of(label)
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .map(|l| l.text)
        .unwrap_or_default()
}

#[test]
fn a_400_on_the_second_of_four_requests_isolates_the_refused_record() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let instance = plugin
        .init(&props(
            "dd-400",
            &intake,
            &[("max_concurrent_requests", "1")],
        ))
        .unwrap();
    // 4000 logs: four requests of 1000; log 1500 (in the second) is refused by the intake.
    let chunk = chunk_of((0..4000).map(|i| {
        if i == 1500 {
            REFUSED_MESSAGE.to_owned()
        } else {
            format!("log {i}")
        }
    }));
    assert_eq!(
        instance.flush(chunk.bytes(), "t"),
        FLB_ERROR,
        "nothing pending, one record refused for good"
    );
    assert_eq!(instance.exit(), FLB_OK);
    let accepted = intake.accepted();
    assert_eq!(accepted.len(), 3999, "every other log delivered");
    assert!(accepted.iter().all(|e| e["message"] != REFUSED_MESSAGE));
    let refused: Vec<usize> = intake
        .received()
        .iter()
        .filter(|r| r.status == 400)
        .map(|r| r.entries.len())
        .collect();
    assert_eq!(
        refused.last(),
        Some(&1),
        "halved down to the one log: {refused:?}"
    );
    let errors: Vec<String> = logs_of("dd-400")
        .into_iter()
        .filter(|l| l.level == 1)
        .map(|l| l.text)
        .collect();
    assert_eq!(errors.len(), 1, "one line per cause: {errors:?}");
    assert!(
        errors[0].contains("datadog: 1 records rejected: HTTP 400"),
        "{}",
        errors[0]
    );
    let exit = exit_line("dd-400");
    assert!(
        exit.contains("datadog[delivered=3999 retried=0 dropped=0 rejected=1"),
        "{exit}"
    );
}

#[test]
fn a_redirect_is_not_followed_and_the_key_goes_nowhere_else() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let elsewhere = FakeDatadog::start();
    let target = format!("{}/api/v2/logs", elsewhere.url);
    intake.script(std::iter::repeat_n(Reply::Redirect(307, target), 100));
    let instance = plugin
        .init(&props("dd-307", &intake, &[("flush_timeout", "1s")]))
        .unwrap();
    let status = instance.flush(chunk_of(["x".to_owned()]).bytes(), "t");
    assert_eq!(status, FLB_RETRY, "a redirect is not a delivery");
    assert_eq!(instance.exit(), FLB_OK);
    assert!(
        elsewhere.received().is_empty(),
        "nothing reached the redirect's target"
    );
    assert!(intake.accepted().is_empty());
    let port = elsewhere.url.rsplit(':').next().unwrap();
    let errors: Vec<String> = logs_of("dd-307")
        .into_iter()
        .filter(|l| l.level == 1)
        .map(|l| l.text)
        .collect();
    assert!(
        errors.iter().any(|e| e.contains(&format!(
            "HTTP 307 redirect to 127.0.0.1:{port}, not followed"
        ))),
        "{errors:?}"
    );
}

/// `POST /api/v2/logs` to the stand-in with `key` and `entries`: the status it answers.
fn post_logs(url: &str, key: &str, entries: &Value) -> u16 {
    use std::io::{Read, Write};
    let body = entries.to_string();
    let host = url.trim_start_matches("http://");
    let mut connection = std::net::TcpStream::connect(host).unwrap();
    write!(
        connection,
        "POST /api/v2/logs HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nDD-API-KEY: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    connection.read_to_string(&mut answer).unwrap();
    answer[9..12].parse().unwrap()
}

/// The stand-in keeps what the intake keeps: a key it does not know is refused (403), and a
/// log over 1 MB is accepted and cut to 1 MB.
#[test]
fn the_stand_in_is_as_strict_as_the_intake() {
    let intake = FakeDatadog::start();
    let one = json!([{"message": "hello"}]);
    assert_eq!(post_logs(&intake.url, "not-a-key-of-ours", &one), 403);
    assert_eq!(post_logs(&intake.url, API_KEY, &one), 202);
    let big = json!([{"message": "x".repeat(1_200_000)}, {"message": "small"}]);
    assert_eq!(post_logs(&intake.url, API_KEY, &big), 202);
    let received = intake.received();
    assert_eq!(
        received[0].violation.as_deref(),
        Some("an invalid DD-API-KEY")
    );
    assert_eq!(received[2].truncated, 1);
    let kept = intake.accepted();
    assert_eq!(kept.len(), 3, "the refused request's log is not kept");
    assert!(kept[1].to_string().len() <= 1_000_000);
    assert_eq!(kept[2]["message"], "small");
}

#[test]
fn retry_after_zero_is_honoured_with_a_floor() {
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.script(std::iter::repeat_n(Reply::RetryAfter(429, 0), 5));
    let instance = plugin.init(&props("dd-ra0", &intake, &[])).unwrap();
    assert_eq!(
        instance.flush(chunk_of(["a".to_owned(), "b".to_owned()]).bytes(), "t"),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    let received = intake.received();
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 429, 429, 429, 202]);
    assert_eq!(intake.accepted().len(), 2);
    // `Retry-After: 0` is not taken as "at once": each try waits the 100 ms floor at least
    // (a lower bound: a slow machine only makes the gaps longer).
    for pair in received.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(100), "{gap:?} between tries");
    }
}

#[test]
fn requests_go_out_concurrently_up_to_max_concurrent_requests() {
    let plugin = load();
    // A remote intake: every answer takes 150 ms.
    let intake = FakeDatadog::start_with_latency(Duration::from_millis(150));
    let instance = plugin
        .init(&props(
            "dd-conc",
            &intake,
            &[("max_concurrent_requests", "4")],
        ))
        .unwrap();
    let chunk = chunk_of((0..8000).map(|i| format!("log {i}")));
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(intake.received().len(), 8);
    assert_eq!(intake.accepted().len(), 8000);
    assert_eq!(
        intake.most_in_flight(),
        4,
        "four requests in flight at once, never more"
    );
}

/// Two chunks with the same tag and bytes are two chunks: each is delivered to every
/// destination, whatever the other's progress.
#[test]
fn identical_chunks_do_not_share_progress() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin
        .init(&[
            ("destinations", "datadog,file"),
            ("apikey", API_KEY),
            ("dd_url", intake.url.as_str()),
            ("path", &out_s),
            ("flush_timeout", "1s"),
            ("label", "dd-twins"),
        ])
        .unwrap();
    let chunk = chunk_of(["same".to_owned(), "bytes".to_owned()]);
    // The first copy reaches the file but not Datadog before its deadline.
    intake.script(std::iter::repeat_n(Reply::Status(503), 100));
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_RETRY);
    intake.script_clear();
    // The second copy, then Fluent Bit's resend of the first.
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let mut in_file: Vec<String> = records(&out)
        .iter()
        .map(|r| r["log"].as_str().unwrap().to_owned())
        .collect();
    in_file.sort();
    assert_eq!(in_file, vec!["bytes", "bytes", "same", "same"]);
    let mut in_datadog: Vec<String> = intake
        .accepted()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    in_datadog.sort();
    assert_eq!(in_datadog, vec!["bytes", "bytes", "same", "same"]);
}

/// Every proxy variable pointing at a recording proxy.
fn proxied(proxy: &ForwardProxy) -> Vec<(&str, &str)> {
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|name| (name, proxy.url.as_str()))
    .collect()
}

/// Sends two records to `FANOUT_TEST_INTAKE` (and `FANOUT_TEST_KEY` as the key when set): the
/// body of the proxy tests' child processes.
fn deliver_two_records_in_child(label: &str) {
    let url = std::env::var("FANOUT_TEST_INTAKE").unwrap();
    let plugin = load();
    let instance = plugin
        .init(&[
            ("destinations", "datadog"),
            ("apikey", API_KEY),
            ("dd_url", &url),
            ("flush_timeout", "10s"),
            ("label", label),
        ])
        .unwrap();
    let chunk = Chunk::new()
        .event(1, &json!({"log": "one"}))
        .event(2, &json!({"log": "two"}));
    let rc = instance.flush(chunk.bytes(), "t");
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(rc, FLB_OK, "{:?}", logs_of(label));
}

/// A loopback `http://` intake with every proxy variable set: the request goes straight to
/// the intake, and the API key never reaches the proxy (which would get it in clear).
#[test]
fn a_loopback_http_intake_is_never_reached_through_a_proxy() {
    let proxy = ForwardProxy::start();
    let intake = FakeDatadog::start();
    let mut env = proxied(&proxy);
    env.push(("FANOUT_TEST_INTAKE", intake.url.as_str()));
    run_in_child("loopback_http_intake_child", &env);
    assert_eq!(
        intake.accepted().len(),
        2,
        "delivered straight to the intake"
    );
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "nothing went to the proxy"
    );
    assert!(!proxy.saw(API_KEY));
}

#[test]
#[ignore = "runs in a child process: see a_loopback_http_intake_is_never_reached_through_a_proxy"]
fn loopback_http_intake_child() {
    if in_child() {
        deliver_two_records_in_child("dd-proxy-loopback");
    }
}

/// An `https://` intake with `HTTPS_PROXY` set goes through the proxy as a CONNECT tunnel: the
/// proxy sees the target and TLS, never the key; with `NO_PROXY` naming the host it goes
/// straight there.
#[test]
fn an_https_intake_goes_through_https_proxy_in_a_tunnel_unless_no_proxy_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let peer = common::TlsPeer::start(dir.path());
    let ca = peer.ca.display().to_string();
    let target = peer.url.strip_prefix("https://").unwrap().to_owned();
    let proxy = ForwardProxy::start();
    let tunnelled = [
        ("HTTPS_PROXY", proxy.url.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
        ("FANOUT_TEST_INTAKE", peer.url.as_str()),
    ];
    run_in_child("https_intake_child", &tunnelled);
    assert_eq!(
        proxy.requests(),
        vec![format!("CONNECT {target} HTTP/1.1")],
        "one tunnel to the intake"
    );
    assert!(!proxy.saw(API_KEY), "the key stays inside TLS");
    let mut direct = tunnelled.to_vec();
    direct.push(("NO_PROXY", "127.0.0.1"));
    run_in_child("https_intake_child", &direct);
    assert_eq!(
        proxy.requests().len(),
        1,
        "NO_PROXY: straight to the intake"
    );
    let answered = peer.answered();
    assert_eq!(
        answered.iter().filter(|a| *a == "datadog").count(),
        2,
        "{answered:?}"
    );
}

#[test]
#[ignore = "runs in a child process: see an_https_intake_goes_through_https_proxy_in_a_tunnel_unless_no_proxy_names_it"]
fn https_intake_child() {
    if in_child() {
        deliver_two_records_in_child("dd-proxy-https");
    }
}

/// `dd_url` with credentials, and an intake whose error page echoes the request's headers:
/// neither the key nor the user, the password or the `Authorization` header made of them
/// appears in any log line, in any form.
#[test]
fn credentials_in_dd_url_never_reach_the_log_even_when_the_intake_echoes_them() {
    use base64::Engine as _;
    let plugin = load();
    let intake = FakeDatadog::start();
    intake.script(std::iter::repeat_n(Reply::EchoHeaders(403), 100));
    let (user, password) = ("dd-proxy-user", "s3cr3t/pa ss");
    let url = intake
        .url
        .replace("http://", &format!("http://{user}:{}@", "s3cr3t%2Fpa%20ss"));
    let instance = plugin
        .init(&[
            ("destinations", "datadog"),
            ("apikey", API_KEY),
            ("dd_url", &url),
            ("flush_timeout", "2s"),
            ("label", "dd-echo"),
        ])
        .unwrap();
    let rc = instance.flush(Chunk::new().event(1, &json!({"log": "x"})).bytes(), "t");
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(rc, FLB_RETRY, "403 until the deadline");
    let received = intake.received();
    let authorization = received[0]
        .header("Authorization")
        .expect("the URL's credentials travel as Basic authorization")
        .to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    assert_eq!(authorization, format!("Basic {basic}"));
    let lines: Vec<String> = logs_of("dd-echo").into_iter().map(|l| l.text).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("you sent") && l.contains("Basic ***")),
        "the echoing body is in the log, redacted: {lines:?}"
    );
    for secret in [
        API_KEY,
        user,
        password,
        "s3cr3t%2Fpa%20ss",
        basic.as_str(),
        basic.trim_end_matches('='),
    ] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "{secret:?} in the log: {lines:?}"
        );
    }
}

/// A record's own `ddtags` that is not a string (an app logging `"ddtags": 42`) is kept as a
/// tag, said in a warning and counted as an altered value — never dropped without a word.
#[test]
fn a_non_string_ddtags_is_kept_as_tags_and_counted_as_altered() {
    let plugin = load();
    let intake = FakeDatadog::start();
    let instance = plugin
        .init(&props("dd-ddtags", &intake, &[("dd_tags", "env:prod")]))
        .unwrap();
    let chunk = Chunk::new()
        .event(1, &json!({"log": "number", "ddtags": 42}))
        .event(2, &json!({"log": "list", "ddtags": ["team:web", "tier:2"]}))
        .event(3, &json!({"log": "text", "ddtags": "ok:yes"}));
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let tags: BTreeMap<String, String> = intake
        .accepted()
        .iter()
        .map(|e| {
            (
                e["message"].as_str().unwrap().to_owned(),
                e["ddtags"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(tags["number"], "env:prod,42");
    assert_eq!(tags["list"], "env:prod,team:web,tier:2");
    assert_eq!(tags["text"], "env:prod,ok:yes");
    let lines: Vec<String> = logs_of("dd-ddtags").into_iter().map(|l| l.text).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2 logs had a ddtags field that is not a string")),
        "{lines:?}"
    );
    let exit = lines.iter().find(|l| l.contains("exiting:")).unwrap();
    assert!(exit.contains("altered_values=2"), "{exit}");
}
