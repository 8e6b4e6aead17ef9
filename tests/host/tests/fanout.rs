//! One instance, both remote destinations: each chunk decoded once and delivered to Datadog
//! and Firehose; a resent chunk goes only where it failed; under a fault schedule every record
//! arrives exactly once per destination. Runs in child processes with their own AWS
//! environment (see `common::run_in_child`).

mod common;

use std::collections::BTreeMap;

use fanout_testhost::fake_datadog::{self, FakeDatadog};
use fanout_testhost::fake_firehose::{self, FakeFirehose};
use fanout_testhost::host::{FLB_OK, FLB_RETRY, logs_of};
use fanout_testhost::{Chunk, HostVersion, OutputInstance, Plugin, plugin_path};
use serde_json::{Value, json};

use common::{in_child, run_in_child};

const STATIC_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIDFANOUTTEST0000000"),
    ("AWS_SECRET_ACCESS_KEY", "fanout-test-secret"),
];

fn both<'p>(
    plugin: &'p Plugin,
    datadog: &FakeDatadog,
    firehose: &FakeFirehose,
    label: &str,
    timeout: &str,
) -> OutputInstance<'p> {
    plugin
        .init(&[
            ("destinations", "datadog,firehose"),
            ("apikey", "dd-key-for-tests"),
            ("dd_url", &datadog.url),
            ("region", "us-east-1"),
            ("endpoint", &firehose.url),
            ("delivery_stream", "logs-$container_name"),
            ("flush_timeout", timeout),
            ("stats_interval", "0"),
            ("label", label),
        ])
        .unwrap()
}

fn record(service: &str, n: usize) -> Value {
    json!({"container_name": service, "log": format!("{service} {n}"), "n": n})
}

fn firehose_numbers(endpoint: &FakeFirehose) -> Vec<u64> {
    let mut n: Vec<u64> = endpoint
        .accepted()
        .iter()
        .map(|(_, data)| {
            serde_json::from_slice::<Value>(data).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    n.sort();
    n
}

fn datadog_numbers(intake: &FakeDatadog) -> Vec<u64> {
    let mut n: Vec<u64> = intake
        .accepted()
        .iter()
        .map(|e| e["n"].as_u64().unwrap())
        .collect();
    n.sort();
    n
}

#[test]
fn a_resent_chunk_goes_only_where_it_failed() {
    run_in_child(
        "child_resend_skips_the_destination_that_accepted",
        &STATIC_KEYS,
    );
}

#[test]
#[ignore = "runs in a child process started by its outer test"]
fn child_resend_skips_the_destination_that_accepted() {
    if !in_child() {
        return;
    }
    let (datadog, firehose) = (FakeDatadog::start(), FakeFirehose::start());
    // Firehose throttles for longer than one flush may take.
    firehose.script(std::iter::repeat_n(fake_firehose::Reply::Throttle, 200));
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let instance = both(&plugin, &datadog, &firehose, "resend", "1s");
    let chunk = (0..10).fold(Chunk::new(), |c, n| c.event(n as u32, &record("web", n)));
    assert_eq!(
        instance.flush(chunk.bytes(), "t"),
        FLB_RETRY,
        "Firehose failed: Fluent Bit must resend"
    );
    assert_eq!(datadog.received().len(), 1, "Datadog accepted the chunk");
    // Firehose recovers; Fluent Bit resends the same chunk.
    let throttled = firehose.received().len();
    firehose.script_clear();
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(datadog.received().len(), 1, "not sent to Datadog again");
    assert!(firehose.received().len() > throttled);
    assert_eq!(datadog_numbers(&datadog), (0..10).collect::<Vec<_>>());
    assert_eq!(firehose_numbers(&firehose), (0..10).collect::<Vec<_>>());
    assert_eq!(instance.exit(), FLB_OK);
    let exit = logs_of("resend")
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .unwrap()
        .text;
    assert!(
        exit.contains(
            "datadog[delivered=10 retried=0 dropped=0 rejected=0 resend_skipped=10 requests=1]"
        ),
        "{exit}"
    );
    assert!(
        exit.contains(&format!(
            "firehose[delivered=10 retried=10 dropped=0 rejected=0 resend_skipped=0 requests={}]",
            firehose.received().len()
        )),
        "{exit}"
    );
}

#[test]
fn under_a_fault_schedule_every_record_arrives_once_per_destination() {
    run_in_child("child_fault_schedule", &STATIC_KEYS);
}

#[test]
#[ignore = "runs in a child process started by its outer test"]
fn child_fault_schedule() {
    if !in_child() {
        return;
    }
    let (datadog, firehose) = (FakeDatadog::start(), FakeFirehose::start());
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let instance = both(&plugin, &datadog, &firehose, "faults", "2s");
    // A fixed pseudo-random schedule: ~30 % of Datadog requests fail with 500 or 429, ~20 % of
    // Firehose calls fail some records, and some are throttled.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % 100
    };
    let mut dd_script = Vec::new();
    let mut fh_script = Vec::new();
    for _ in 0..400 {
        dd_script.push(match next() {
            0..=14 => fake_datadog::Reply::Status(500),
            15..=29 => fake_datadog::Reply::RetryAfter(429, 0),
            _ => fake_datadog::Reply::Status(202),
        });
        fh_script.push(match next() {
            0..=19 => fake_firehose::Reply::FailEvery(3),
            20..=27 => fake_firehose::Reply::Throttle,
            _ => fake_firehose::Reply::Accept,
        });
    }
    datadog.script(dd_script);
    firehose.script(fh_script);
    let services = ["checkout", "cart", "search"];
    let total = 40 * 25;
    let mut retries = 0;
    for round in 0..40usize {
        let chunk = (0..25usize).fold(Chunk::new(), |c, i| {
            let n = round * 25 + i;
            c.event(n as u32, &record(services[n % 3], n))
        });
        let mut attempts = 0;
        loop {
            attempts += 1;
            match instance.flush(chunk.bytes(), "firelens") {
                FLB_OK => break,
                FLB_RETRY if attempts < 20 => retries += 1,
                other => panic!("round {round}: {other} after {attempts} attempts"),
            }
        }
    }
    assert_eq!(instance.exit(), FLB_OK);
    let all: Vec<u64> = (0..total as u64).collect();
    assert_eq!(
        datadog_numbers(&datadog),
        all,
        "Datadog: every record exactly once"
    );
    assert_eq!(
        firehose_numbers(&firehose),
        all,
        "Firehose: every record exactly once"
    );
    let per_stream: BTreeMap<String, usize> =
        firehose
            .accepted()
            .iter()
            .fold(BTreeMap::new(), |mut m, (s, _)| {
                *m.entry(s.clone()).or_default() += 1;
                m
            });
    assert_eq!(per_stream.values().sum::<usize>(), total);
    assert_eq!(per_stream.len(), 3);
    eprintln!("fault schedule: {retries} flushes answered RETRY");
}

#[test]
fn a_partial_firehose_delivery_cut_by_the_deadline_is_resumed_not_repeated() {
    run_in_child("child_firehose_resumes_after_the_deadline", &STATIC_KEYS);
}

#[test]
#[ignore = "runs in a child process started by its outer test"]
fn child_firehose_resumes_after_the_deadline() {
    if !in_child() {
        return;
    }
    let firehose = FakeFirehose::start();
    // Records 1 and 3 fail, then the stream is throttled past the flush deadline.
    firehose.script(
        std::iter::once(fake_firehose::Reply::FailRecords(vec![1, 3]))
            .chain(std::iter::repeat_n(fake_firehose::Reply::Throttle, 300)),
    );
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let instance = plugin
        .init(&[
            ("destinations", "firehose"),
            ("region", "us-east-1"),
            ("endpoint", &firehose.url),
            ("delivery_stream", "logs-$container_name"),
            ("flush_timeout", "1s"),
            ("label", "fh-resume"),
        ])
        .unwrap();
    let chunk = (0..5).fold(Chunk::new(), |c, n| c.event(n as u32, &record("web", n)));
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_RETRY);
    let first_attempt = firehose.received().len();
    firehose.script_clear();
    assert_eq!(instance.flush(chunk.bytes(), "t"), FLB_OK);
    assert_eq!(instance.exit(), FLB_OK);
    let resent: Vec<u64> = firehose.received()[first_attempt..]
        .iter()
        .flat_map(|r| {
            r.records.iter().map(|d| {
                serde_json::from_slice::<Value>(d).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
        })
        .collect();
    assert_eq!(resent, vec![1, 3], "only the records that had failed");
    assert_eq!(firehose_numbers(&firehose), vec![0, 1, 2, 3, 4]);
}

/// A private CA (a TLS-inspecting proxy, an internal endpoint) is trusted through
/// SSL_CERT_FILE, by both destinations' TLS stacks — the way the README tells users to do it.
#[test]
fn a_private_ca_named_by_ssl_cert_file_is_trusted_by_both_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let peer = common::TlsPeer::start(dir.path());
    let ca = peer.ca.display().to_string();
    run_in_child(
        "private_ca_child",
        &[
            STATIC_KEYS[0],
            STATIC_KEYS[1],
            ("SSL_CERT_FILE", &ca),
            ("FANOUT_TEST_PEER", &peer.url),
        ],
    );
    let answered = peer.answered();
    assert!(answered.contains(&"datadog".to_owned()), "{answered:?}");
    assert!(answered.contains(&"firehose 2".to_owned()), "{answered:?}");
}

#[test]
#[ignore = "runs in a child process: see a_private_ca_named_by_ssl_cert_file_is_trusted_by_both_destinations"]
fn private_ca_child() {
    if !in_child() {
        return;
    }
    let url = std::env::var("FANOUT_TEST_PEER").unwrap();
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).expect("the plugin loads");
    let instance = plugin
        .init(&[
            ("destinations", "datadog,firehose"),
            ("apikey", "dd-key-for-tests"),
            ("dd_url", &url),
            ("region", "us-east-1"),
            ("endpoint", &url),
            ("delivery_stream", "logs"),
            ("flush_timeout", "10s"),
            ("label", "private-ca"),
        ])
        .unwrap();
    let chunk = Chunk::new()
        .event(1, &json!({"log": "one"}))
        .event(2, &json!({"log": "two"}));
    let rc = instance.flush(chunk.bytes(), "t");
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(rc, FLB_OK, "{:?}", logs_of("private-ca"));
}

/// A restart between a RETRY and the resend, as with `storage.type filesystem`: the first
/// process delivers a chunk to Firehose while Datadog is down and exits; the second, with the
/// same `ledger_file`, gets the same chunk again and sends it to Datadog only.
#[test]
fn with_a_ledger_file_a_chunk_resent_after_a_restart_skips_the_destination_that_had_it() {
    let (datadog, firehose) = (FakeDatadog::start(), FakeFirehose::start());
    datadog.script(std::iter::repeat_n(fake_datadog::Reply::Status(503), 1000));
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("fanout.ledger").display().to_string();
    let env = |run: &'static str| {
        vec![
            STATIC_KEYS[0],
            STATIC_KEYS[1],
            ("FANOUT_TEST_DATADOG", datadog.url.as_str()),
            ("FANOUT_TEST_FIREHOSE", firehose.url.as_str()),
            ("FANOUT_TEST_LEDGER", ledger.as_str()),
            ("FANOUT_TEST_RUN", run),
        ]
    };
    run_in_child("child_restart_with_ledger_file", &env("first"));
    assert_eq!(firehose_numbers(&firehose), (0..10).collect::<Vec<_>>());
    assert!(datadog.accepted().is_empty());
    datadog.script_clear();
    run_in_child("child_restart_with_ledger_file", &env("second"));
    assert_eq!(datadog_numbers(&datadog), (0..10).collect::<Vec<_>>());
    assert_eq!(
        firehose_numbers(&firehose),
        (0..10).collect::<Vec<_>>(),
        "Firehose had the chunk before the restart: not sent again"
    );
    // Settled and taken: a third start finds nothing to skip.
    run_in_child("child_restart_with_ledger_file", &env("third"));
    assert_eq!(
        firehose_numbers(&firehose).len(),
        20,
        "a new delivery goes everywhere"
    );
}

#[test]
#[ignore = "runs in a child process started by its outer test"]
fn child_restart_with_ledger_file() {
    if !in_child() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let run = var("FANOUT_TEST_RUN");
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let label = format!("restart-{run}");
    let instance = plugin
        .init(&[
            ("destinations", "datadog,firehose"),
            ("apikey", "dd-key-for-tests"),
            ("dd_url", &var("FANOUT_TEST_DATADOG")),
            ("region", "us-east-1"),
            ("endpoint", &var("FANOUT_TEST_FIREHOSE")),
            ("delivery_stream", "logs-$container_name"),
            ("flush_timeout", "1s"),
            ("ledger_file", &var("FANOUT_TEST_LEDGER")),
            ("label", &label),
        ])
        .unwrap();
    let chunk = (0..10).fold(Chunk::new(), |c, n| c.event(n as u32, &record("web", n)));
    let expected = if run == "first" { FLB_RETRY } else { FLB_OK };
    assert_eq!(
        instance.flush(chunk.bytes(), "t"),
        expected,
        "{:?}",
        logs_of(&label)
    );
    assert_eq!(instance.exit(), FLB_OK);
    let exit = logs_of(&label)
        .into_iter()
        .find(|l| l.text.contains("exiting:"))
        .unwrap()
        .text;
    if run == "second" {
        assert!(
            exit.contains("firehose[delivered=0 retried=0 dropped=0 rejected=0 resend_skipped=10"),
            "{exit}"
        );
        assert!(
            logs_of(&label)
                .iter()
                .any(|l| l.text.contains("1 chunks awaiting a resend")),
            "said at startup"
        );
    }
}
