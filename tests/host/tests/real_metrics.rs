//! The plugin's counters on Fluent Bit's own metrics endpoint, in a real Fluent Bit: two
//! `fanout` instances (one with an `alias`), Datadog answering 503 for a while and then
//! recovering, Firehose working throughout. What `/api/v2/metrics/prometheus` shows must equal
//! what the stand-ins received and what the instances' `exiting:` lines say. On 1.9.10, which
//! gives external plugins no metrics context, the plugin says so once and the stats lines stay
//! right (one instance there: 1.9 crashes at exit with two of any external plugin). Also: hot reload (SIGHUP) twice with both instances, counters re-registered on the
//! new instances each time.
//!
//! Runs on `FLUENT_BIT` (current) and `FLUENT_BIT_1_9`; skipped, and said so, when unset.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fanout_testhost::fake_datadog::{FakeDatadog, Reply as DatadogReply};
use fanout_testhost::fake_firehose::FakeFirehose;
use fanout_testhost::fluent_bit::{
    FluentBit, Release, Scratch, binary, forward_unix, free_port, http_get, install_artifacts,
    wait_until,
};
use serde_json::{Value, json};

/// Said once per process on a host without a metrics context (Fluent Bit 1.9).
const FALLBACK: &str = "this Fluent Bit gives external plugins no metrics context";

/// A `[SERVICE]` with the HTTP server and quick retries, a forward input on a unix socket, and
/// the `fanout` outputs: `edge` (alias; Datadog and Firehose) and, with `archive`, an unnamed
/// one (Firehose only, its own stream). `workers` is left out when `workers` is false (see the
/// reload test).
fn config(
    scratch: &Scratch,
    http_port: u16,
    (datadog, firehose): (&str, &str),
    workers: bool,
    archive: bool,
) -> String {
    let socket = scratch.path("/var/run/fluent.sock");
    let plugin = scratch.path("/fluent-bit/plugins/fanout.so");
    let plugins = scratch.path("/fluent-bit/etc/plugins.conf");
    std::fs::write(
        &plugins,
        format!("[PLUGINS]\n    Path {}\n", plugin.display()),
    )
    .unwrap();
    let workers = if workers { "    workers 1\n" } else { "" };
    let common = format!(
        "    Match app.*
    Retry_Limit False
{workers}    region us-east-1
    endpoint {firehose}
    flush_timeout 2s
    stats_interval 1s
"
    );
    format!(
        "[SERVICE]
    Flush 1
    Grace 5
    Log_Level info
    HTTP_Server On
    HTTP_Listen 127.0.0.1
    HTTP_Port {http_port}
    Hot_Reload On
    scheduler.base 1
    scheduler.cap 2
    plugins_file {plugins}

[INPUT]
    Name forward
    unix_path {socket}

[OUTPUT]
    Name fanout
    Alias edge
{common}    destinations datadog,firehose
    apikey metrics-test-key
    dd_url {datadog}
    delivery_stream logs-edge
{archive}",
        archive = if archive {
            format!(
                "
[OUTPUT]
    Name fanout
{common}    destinations firehose
    delivery_stream logs-archive
"
            )
        } else {
            String::new()
        },
        plugins = plugins.display(),
        socket = socket.display(),
    )
}

fn start(fluent_bit: &Path, scratch: &Scratch, config_text: &str) -> FluentBit {
    let main = scratch.path("/fluent-bit/etc/fluent-bit.conf");
    std::fs::write(&main, config_text).unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDMETRICSTEST00000"),
        ("AWS_SECRET_ACCESS_KEY", "metrics-test-secret"),
    ];
    let mut fb = FluentBit::start(
        fluent_bit,
        [std::ffi::OsStr::new("-c"), main.as_os_str()],
        &env,
        &scratch.root,
    );
    let socket = scratch.path("/var/run/fluent.sock");
    wait_until(
        &mut fb,
        "the forward socket appears",
        Duration::from_secs(30),
        || socket.exists(),
    );
    fb
}

/// The stand-ins, the scratch root and Fluent Bit running [`config`] against them, its HTTP
/// server answering.
struct Run {
    intake: FakeDatadog,
    firehose: FakeFirehose,
    scratch: Scratch,
    fb: FluentBit,
    http_port: u16,
}

fn launch(fluent_bit: &Path, name: &str, workers: bool, archive: bool, hot_reload: bool) -> Run {
    let intake = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    let scratch = Scratch::new(name);
    install_artifacts(&scratch);
    let http_port = free_port();
    let mut text = config(
        &scratch,
        http_port,
        (&intake.url, &firehose.url),
        workers,
        archive,
    );
    if !hot_reload {
        text = text.replace("    Hot_Reload On\n", "");
    }
    let mut fb = start(fluent_bit, &scratch, &text);
    fb.wait_http_ok(
        &format!("http://127.0.0.1:{http_port}/api/v1/uptime"),
        Duration::from_secs(20),
    );
    Run {
        intake,
        firehose,
        scratch,
        fb,
        http_port,
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn send(scratch: &Scratch, first: usize, count: usize) {
    let records: Vec<(u32, Value)> = (first..first + count)
        .map(|i| {
            (
                now(),
                json!({"log": format!("line {i}"), "source": "stdout"}),
            )
        })
        .collect();
    forward_unix(&scratch.path("/var/run/fluent.sock"), "app.web", &records).unwrap();
}

/// Firehose records (one per line of each `Data`) per stream.
fn firehose_lines(firehose: &FakeFirehose) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    for (stream, data) in firehose.accepted() {
        *lines.entry(stream).or_default() += String::from_utf8_lossy(&data).lines().count();
    }
    lines
}

/// Firehose calls per stream, as the stand-in received them.
fn firehose_calls(firehose: &FakeFirehose) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for received in firehose.received() {
        *calls.entry(received.stream).or_default() += 1;
    }
    calls
}

/// `fluentbit_fanout_*` samples of a Prometheus text page: (metric, sorted labels) → value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

fn parse_prometheus(text: &str, prefix: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') || !line.starts_with(prefix) {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let (metric, labels) = match series.split_once('{') {
            Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut labels: Vec<(String, String)> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        labels.sort();
        samples.insert((metric.to_owned(), labels), value.parse().unwrap());
    }
    samples
}

/// The samples whose names start with `prefix`; `None` until Fluent Bit has collected its
/// metrics once (it answers 404 before).
fn try_metrics(http_port: u16, prefix: &str) -> Option<Samples> {
    let (status, body) = http_get(&format!(
        "http://127.0.0.1:{http_port}/api/v2/metrics/prometheus"
    ))?;
    (status == 200).then(|| parse_prometheus(&body, prefix))
}

fn metrics(http_port: u16, prefix: &str) -> Samples {
    try_metrics(http_port, prefix).expect("the metrics endpoint answers 200")
}

fn sample(samples: &Samples, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let mut key: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    key.sort();
    *samples
        .get(&(format!("fluentbit_fanout_{metric}"), key.clone()))
        .unwrap_or_else(|| panic!("no fluentbit_fanout_{metric}{key:?} in {samples:#?}"))
}

/// The last `exiting:` (or `stats:`) line of an instance, as key → value, with destination
/// counters as `<destination>.<key>`.
fn counters_line(log: &str, label: &str, kind: &str) -> BTreeMap<String, u64> {
    let prefix = format!("[output:fanout:{label}] {kind}: ");
    let line = log
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .next_back()
        .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{log}"));
    let mut counters = BTreeMap::new();
    let mut scope = String::new();
    for word in line.split_whitespace() {
        let word = match word.split_once('[') {
            Some((destination, rest)) => {
                scope = format!("{destination}.");
                rest
            }
            None => word,
        };
        let closes = word.ends_with(']');
        let (key, value) = word.trim_end_matches(']').split_once('=').unwrap();
        counters.insert(format!("{scope}{key}"), value.parse().unwrap());
        if closes {
            scope.clear();
        }
    }
    counters
}

/// Every counter of the instance's exiting line equals its metric.
fn assert_metrics_equal_line(samples: &Samples, name: &str, line: &BTreeMap<String, u64>) {
    for (key, value) in line {
        let got = match key.split_once('.') {
            Some((destination, counter)) => {
                let metric = match counter {
                    "requests" => "requests_total".to_owned(),
                    other => format!("{other}_records_total"),
                };
                sample(
                    samples,
                    &metric,
                    &[("name", name), ("destination", destination)],
                )
            }
            None => match key.strip_prefix("flush_") {
                Some(result) => sample(
                    samples,
                    "flushes_total",
                    &[("name", name), ("result", result)],
                ),
                None => sample(samples, &format!("{key}_total"), &[("name", name)]),
            },
        };
        assert_eq!(got, *value as f64, "{name}: {key}");
    }
}

const RECORDS: usize = 300;

/// Sends records in three batches, the first two while Datadog answers 503, and waits until
/// both stand-ins have every record of every instance. The outage lasts until a flush of `edge`
/// has answered RETRY and the second batch has reached Firehose (events, not a time window, so
/// a slow machine sees the same story).
fn deliver_through_an_outage(
    fb: &mut FluentBit,
    scratch: &Scratch,
    intake: &FakeDatadog,
    firehose: &FakeFirehose,
    archive: bool,
) {
    intake.outage(Duration::from_secs(600), DatadogReply::Status(503));
    send(scratch, 0, RECORDS / 3);
    // The line the plugin logs as a flush of `edge` answers RETRY.
    let log_path = fb.log_path().to_owned();
    wait_until(
        fb,
        "a flush of edge answers RETRY in the outage",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(&log_path).is_ok_and(|log| {
                log.lines().any(|l| {
                    l.contains("[output:fanout:edge] datadog:")
                        && l.contains("Fluent Bit will retry the chunk")
                })
            })
        },
    );
    send(scratch, RECORDS / 3, RECORDS / 3);
    wait_until(
        fb,
        "the second batch reaches Firehose in the outage",
        Duration::from_secs(60),
        || firehose_lines(firehose).get("logs-edge") >= Some(&(2 * RECORDS / 3)),
    );
    intake.outage(Duration::ZERO, DatadogReply::Status(503));
    send(scratch, 2 * RECORDS / 3, RECORDS / 3);
    wait_until(
        fb,
        "both stand-ins have every record",
        Duration::from_secs(90),
        || {
            let lines = firehose_lines(firehose);
            intake.accepted().len() >= RECORDS
                && lines.get("logs-edge") >= Some(&RECORDS)
                && (!archive || lines.get("logs-archive") >= Some(&RECORDS))
        },
    );
}

#[test]
fn metrics_endpoint_shows_the_counters_per_instance_and_destination() {
    let test = "metrics_endpoint_shows_the_counters_per_instance_and_destination";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let Run {
        intake,
        firehose,
        scratch,
        mut fb,
        http_port,
    } = launch(&fluent_bit, "metrics", true, true, true);
    deliver_through_an_outage(&mut fb, &scratch, &intake, &firehose, true);

    // Settled when two readings a second apart agree (the plugin publishes every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let first = metrics(http_port, "fluentbit_fanout_");
        std::thread::sleep(Duration::from_millis(2500));
        let second = metrics(http_port, "fluentbit_fanout_");
        if first == second {
            break second;
        }
        assert!(Instant::now() < deadline, "the metrics never settled");
    };
    let core = metrics(http_port, "fluentbit_output_proc_records_total");
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "{log}");

    // The instances are named as Fluent Bit names them: the alias, else fanout.<n>.
    let names: Vec<String> = core.keys().map(|(_, labels)| labels[0].1.clone()).collect();
    assert_eq!(names.len(), 2, "{core:?}");
    assert!(names.contains(&"edge".to_owned()), "{names:?}");
    let unnamed = names.iter().find(|n| *n != "edge").unwrap().clone();
    assert!(unnamed.starts_with("fanout."), "{unnamed}");

    // What the stand-ins received.
    let received = intake.received();
    let lines = firehose_lines(&firehose);
    let calls = firehose_calls(&firehose);
    let datadog = [("name", "edge"), ("destination", "datadog")];
    let edge_firehose = [("name", "edge"), ("destination", "firehose")];
    let archive = [("name", unnamed.as_str()), ("destination", "firehose")];
    let value = |metric: &str, labels: &[(&str, &str)]| sample(&samples, metric, labels);
    assert_eq!(
        value("delivered_records_total", &datadog),
        intake.accepted().len() as f64
    );
    assert_eq!(value("delivered_records_total", &datadog), RECORDS as f64);
    assert_eq!(value("requests_total", &datadog), received.len() as f64);
    assert!(
        received.iter().any(|r| r.status == 503),
        "the outage was seen"
    );
    assert_eq!(
        value("delivered_records_total", &edge_firehose),
        lines["logs-edge"] as f64
    );
    assert_eq!(
        value("requests_total", &edge_firehose),
        calls["logs-edge"] as f64
    );
    assert_eq!(
        value("delivered_records_total", &archive),
        lines["logs-archive"] as f64
    );
    assert_eq!(
        value("requests_total", &archive),
        calls["logs-archive"] as f64
    );
    assert_eq!(lines["logs-archive"], RECORDS);
    // The outage made Fluent Bit resend chunks to `edge`: Datadog's pending records went
    // again, Firehose (which had them) was skipped for exactly those records.
    let retried = value("retried_records_total", &datadog);
    assert!(retried > 0.0, "{samples:#?}");
    assert_eq!(
        value("resend_skipped_records_total", &edge_firehose),
        retried
    );
    assert!(value("flushes_total", &[("name", "edge"), ("result", "retry")]) > 0.0);
    assert_eq!(
        value(
            "flushes_total",
            &[("name", unnamed.as_str()), ("result", "retry")]
        ),
        0.0
    );
    // Nothing is in flight once everything settled.
    for labels in [&datadog[..], &edge_firehose[..], &archive[..]] {
        assert_eq!(value("requests_in_flight", labels), 0.0);
    }
    for name in [&"edge".to_owned(), &unnamed] {
        assert_eq!(value("in_flight_bytes", &[("name", name)]), 0.0);
        assert_eq!(value("ledger_entries", &[("name", name)]), 0.0);
    }

    // The same numbers as the exiting lines, counter by counter.
    assert_metrics_equal_line(&samples, "edge", &counters_line(&log, "edge", "exiting"));
    assert_metrics_equal_line(
        &samples,
        &unnamed,
        &counters_line(&log, &unnamed, "exiting"),
    );
    assert!(
        log.contains(
            "counters published on Fluent Bit's metrics as fluentbit_fanout_*{name=\"edge\"}"
        ),
        "{log}"
    );
    assert!(!log.contains(FALLBACK), "{log}");
    // cmetrics logs an error when a counter is set below its value: never.
    assert!(
        !log.lines()
            .any(|l| l.contains("[error]") && l.contains("cmetrics")),
        "{log}"
    );
}

#[test]
fn metrics_fall_back_to_the_stats_line_in_fluent_bit_1_9() {
    let test = "metrics_fall_back_to_the_stats_line_in_fluent_bit_1_9";
    let Some(fluent_bit) = binary(Release::V1_9, test) else {
        return;
    };
    // One instance: 1.9 (like 2.0.0-2.0.6) crashes at shutdown with two instances of any
    // external plugin (README, Compatibility). 1.9 has no hot reload.
    let Run {
        intake,
        firehose,
        scratch,
        mut fb,
        http_port,
    } = launch(&fluent_bit, "metrics-1-9", true, false, false);
    deliver_through_an_outage(&mut fb, &scratch, &intake, &firehose, false);
    // 1.9 has no /api/v2 metrics; its v1 page lists the core output counters.
    let page = || {
        http_get(&format!(
            "http://127.0.0.1:{http_port}/api/v1/metrics/prometheus"
        ))
        .map(|(_, body)| body)
        .unwrap_or_default()
    };
    wait_until(
        &mut fb,
        "1.9's metrics page lists the output counters",
        Duration::from_secs(30),
        || page().contains("fluentbit_output_proc_records_total"),
    );
    let prometheus = page();
    assert!(
        prometheus.contains("fluentbit_output_proc_records_total"),
        "{prometheus}"
    );
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "{log}");
    assert!(!prometheus.contains("fluentbit_fanout_"), "{prometheus}");
    assert_eq!(log.matches(FALLBACK).count(), 1, "said once:\n{log}");

    // 1.9 also tells the plugin the instance's name: the alias labels its lines.
    let edge = counters_line(&log, "edge", "exiting");
    let lines = firehose_lines(&firehose);
    assert_eq!(edge["datadog.delivered"], intake.accepted().len() as u64);
    assert_eq!(edge["datadog.delivered"], RECORDS as u64);
    assert_eq!(edge["datadog.requests"], intake.received().len() as u64);
    assert!(edge["datadog.retried"] > 0, "{edge:?}");
    assert_eq!(edge["firehose.resend_skipped"], edge["datadog.retried"]);
    assert_eq!(edge["firehose.delivered"], lines["logs-edge"] as u64);
    assert_eq!(edge["firehose.delivered"], RECORDS as u64);
    // The periodic stats line is there too.
    counters_line(&log, "edge", "stats");
}

/// Hot reload (SIGHUP) twice with both instances: the old instances exit, the new ones
/// register their counters on their own (new) metrics contexts, and records sent after each
/// reload are counted there. Flushes run without `workers` here: Fluent Bit 5.1.1 itself
/// crashes on a reload when an external output has workers (a no-op C plugin does the same;
/// see the README's troubleshooting).
#[test]
fn metrics_are_registered_again_after_hot_reload() {
    let test = "metrics_are_registered_again_after_hot_reload";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let Run {
        intake,
        firehose,
        scratch,
        mut fb,
        http_port,
    } = launch(&fluent_bit, "metrics-reload", false, true, true);
    let pid = fb.pid().to_string();
    let per_round = 50;
    for round in 0..3 {
        if round > 0 {
            let log_path = fb.log_path().to_owned();
            let reloads = move || {
                std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .matches("successful reload done")
                    .count()
            };
            let done = reloads();
            let status = std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            assert!(status.success());
            wait_until(
                &mut fb,
                "the reload completes",
                Duration::from_secs(60),
                || reloads() > done,
            );
            let socket = scratch.path("/var/run/fluent.sock");
            wait_until(
                &mut fb,
                "the new forward input listens",
                Duration::from_secs(30),
                || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            );
        }
        send(&scratch, round * per_round, per_round);
        let expected = ((round + 1) * per_round) as f64;
        wait_until(
            &mut fb,
            "this generation's counters show its records",
            Duration::from_secs(30),
            || {
                let Some(samples) =
                    try_metrics(http_port, "fluentbit_fanout_delivered_records_total")
                else {
                    return false;
                };
                let delivered: Vec<f64> = samples.values().copied().collect();
                // edge: datadog and firehose; the unnamed one: firehose. Each generation
                // starts from zero, so the new instances count only this round's records.
                delivered.len() == 3
                    && delivered.iter().all(|v| *v == per_round as f64)
                    && intake.accepted().len() as f64 == expected
            },
        );
    }
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "{log}");
    assert!(!log.contains("SIGSEGV"), "{log}");
    assert_eq!(
        log.matches("counters published on Fluent Bit's metrics")
            .count(),
        6,
        "two instances, three generations:\n{log}"
    );
    assert_eq!(firehose_lines(&firehose)["logs-archive"], 3 * per_round);
}
