//! The FireLens recipe inside a real Fluent Bit, as ECS runs it: the shipped
//! `fluent-bit-conf/firelens/extra.conf` (and its `plugins.conf`) installed where
//! `docker/Dockerfile` puts them, `@INCLUDE`d by a main config shaped like the one FireLens
//! generates (forward over a unix socket and TCP, the health-check TCP input, the
//! `record_modifier` with the task's metadata), the environment of the log router in
//! `deploy/ecs/task-definition.json`, and records arriving over the forward protocol with
//! FireLens's tags (`<container>-firelens-<task id>`). Only paths, the two endpoints and the
//! secret are substituted.
//!
//! Runs on `FLUENT_BIT` (current) and `FLUENT_BIT_1_9` (AWS for Fluent Bit 2.x); skipped, and
//! said so, when the variable is not set.

mod common;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanout_testhost::fake_datadog::{FakeDatadog, Reply as DatadogReply};
use fanout_testhost::fake_firehose::{FakeFirehose, Reply as FirehoseReply};
use fanout_testhost::fluent_bit::{
    FluentBit, Release, Scratch, binary, forward_unix, free_port, install_artifacts,
    install_firelens_config, wait_until,
};
use fanout_testhost::moto::Moto;
use fanout_testhost::workspace_root;
use serde_json::{Value, json};

const TASK_ID: &str = "0123456789abcdef0123456789abcdef";
const CLUSTER: &str = "prod";
const API_KEY: &str = "dd-api-key-from-secrets-manager";

/// The log router's `environment` in the shipped task definition, plus its secret.
fn task_definition_environment() -> Vec<(String, String)> {
    let path = workspace_root().join("deploy/ecs/task-definition.json");
    let task: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let router = task["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.get("firelensConfiguration").is_some())
        .expect("a FireLens log router");
    let mut env: Vec<(String, String)> = router["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for secret in router["secrets"].as_array().unwrap() {
        let name = secret["name"].as_str().unwrap();
        assert_eq!(name, "DD_API_KEY", "a secret the test does not know");
        env.push((name.to_owned(), API_KEY.to_owned()));
    }
    env
}

/// The main config FireLens generates for a task whose custom config is `extra`.
fn firelens_main_config(socket: &str, forward_port: u16, health_port: u16, extra: &str) -> String {
    format!(
        "[INPUT]
    Name tcp
    Tag firelens-healthcheck
    Listen 127.0.0.1
    Port {health_port}

[INPUT]
    Name forward
    Mem_Buf_Limit 25MB
    unix_path {socket}

[INPUT]
    Name forward
    Listen 127.0.0.1
    Port {forward_port}

[FILTER]
    Name record_modifier
    Match *
    Record ecs_cluster {CLUSTER}
    Record ecs_task_arn arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{TASK_ID}
    Record ecs_task_definition checkout:42

@INCLUDE {extra}

[OUTPUT]
    Name null
    Match firelens-healthcheck
"
    )
}

/// What Docker's fluentd log driver sends for one line of a container's stdout/stderr.
fn container_line(container: &str, stream: &str, line: &str) -> Value {
    json!({
        "container_id": format!("{TASK_ID}-{container}"),
        "container_name": container,
        "source": stream,
        "log": line,
    })
}

/// A FireLens task's log router: the shipped files installed as the image has them, behind
/// FireLens's generated main config, sending to `datadog_url` and `firehose_url`.
struct LogRouter {
    scratch: Scratch,
    fluent_bit: FluentBit,
    socket: std::path::PathBuf,
    health_port: u16,
}

fn start_log_router(
    fluent_bit: &std::path::Path,
    datadog_url: &str,
    firehose_url: &str,
) -> LogRouter {
    start_log_router_with(fluent_bit, datadog_url, firehose_url, |text| text)
}

/// [`start_log_router`] with the installed `extra.conf` changed by `edit` first.
fn start_log_router_with(
    fluent_bit: &std::path::Path,
    datadog_url: &str,
    firehose_url: &str,
    edit: impl Fn(String) -> String,
) -> LogRouter {
    let scratch = Scratch::new("firelens");
    install_artifacts(&scratch);
    // The image's /fluent-bit/etc, as docker/Dockerfile copies it.
    let extra = install_firelens_config(&scratch, datadog_url, firehose_url);
    let edited = edit(std::fs::read_to_string(&extra).unwrap());
    std::fs::write(&extra, edited).unwrap();
    let socket = scratch.path("/var/run/fluent.sock");
    let (forward_port, health_port) = (free_port(), free_port());
    let main = scratch.path("/fluent-bit/etc/fluent-bit.conf");
    std::fs::write(
        &main,
        firelens_main_config(
            &socket.display().to_string(),
            forward_port,
            health_port,
            &extra.display().to_string(),
        ),
    )
    .unwrap();

    let mut env = task_definition_environment();
    env.extend(
        [
            ("AWS_ACCESS_KEY_ID", "AKIDFIRELENSTEST0000"),
            ("AWS_SECRET_ACCESS_KEY", "firelens-test-secret"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut fb = FluentBit::start(
        fluent_bit,
        [std::ffi::OsStr::new("-c"), main.as_os_str()],
        &env,
        &scratch.root,
    );
    wait_until(
        &mut fb,
        "the forward socket appears",
        Duration::from_secs(30),
        || socket.exists(),
    );
    LogRouter {
        scratch,
        fluent_bit: fb,
        socket,
        health_port,
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn firelens_recipe(release: Release, test: &str) {
    let Some(fluent_bit) = binary(release, test) else {
        return;
    };
    let intake = FakeDatadog::start();
    let moto = Moto::start();
    moto.create_streams(
        "firelens-logs",
        &[
            ("logs-checkout", "prod/checkout/"),
            ("logs-cart", "prod/cart/"),
        ],
    );
    let router = start_log_router(&fluent_bit, &intake.url, &moto.url);
    let (mut fb, socket, health_port) = (router.fluent_bit, router.socket, router.health_port);
    let _scratch = router.scratch;
    let now = now();
    let checkout: Vec<(u32, Value)> = (0..40)
        .map(|i| {
            (
                now,
                container_line("checkout", "stdout", &format!("GET /orders/{i} 200")),
            )
        })
        .collect();
    let cart: Vec<(u32, Value)> = (0..25)
        .map(|i| {
            (
                now,
                container_line("cart", "stderr", &format!("cart {i} expired")),
            )
        })
        .collect();
    forward_unix(&socket, &format!("checkout-firelens-{TASK_ID}"), &checkout).unwrap();
    forward_unix(&socket, &format!("cart-firelens-{TASK_ID}"), &cart).unwrap();
    // The container health check FireLens documents: a line on the tcp input, which must go
    // to FireLens's null output only.
    let mut health = std::net::TcpStream::connect(("127.0.0.1", health_port)).unwrap();
    health.write_all(b"{\"health\":\"check\"}\n").unwrap();
    drop(health);

    let total = checkout.len() + cart.len();
    wait_until(
        &mut fb,
        "Datadog receives every line",
        Duration::from_secs(60),
        || intake.accepted().len() >= total,
    );
    wait_until(
        &mut fb,
        "S3 holds every line",
        Duration::from_secs(60),
        || {
            moto.objects("firelens-logs")
                .iter()
                .map(|(_, body)| body.lines().count())
                .sum::<usize>()
                >= total
        },
    );
    // Anything still to come (a duplicate, the health check) would arrive within a flush.
    std::thread::sleep(Duration::from_secs(2));
    let status = fb.terminate(Duration::from_secs(40));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    assert!(
        !log.contains("[error]"),
        "errors in Fluent Bit's log:\n{log}"
    );

    // Datadog: every line once, the service from the container, the task's ECS tags, the
    // source and tags from the task definition.
    let accepted = intake.accepted();
    assert_eq!(accepted.len(), total, "exactly once: {accepted:#?}");
    for (container, records) in [("checkout", &checkout), ("cart", &cart)] {
        let mine: Vec<&Value> = accepted
            .iter()
            .filter(|e| e["service"] == container)
            .collect();
        assert_eq!(mine.len(), records.len(), "{container}");
        let messages: Vec<&str> = mine
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        for (_, record) in records.iter() {
            assert!(messages.contains(&record["log"].as_str().unwrap()));
        }
        let entry = mine[0];
        assert_eq!(
            entry["ddsource"], "java",
            "DD_SOURCE of the task definition"
        );
        let tags = entry["ddtags"].as_str().unwrap();
        for tag in [
            "env:prod".to_owned(),
            "team:payments".to_owned(),
            format!("container_name:{container}"),
            format!("cluster_name:{CLUSTER}"),
            "task_family:checkout".to_owned(),
            "task_version:42".to_owned(),
            format!("task_arn:arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{TASK_ID}"),
        ] {
            assert!(tags.split(',').any(|t| t == tag), "{tag} not in {tags}");
        }
    }
    assert!(
        !accepted.iter().any(|e| e.to_string().contains("health")),
        "the health check reached Datadog"
    );

    // Firehose: one stream, so one S3 prefix, per container.
    let objects = moto.objects("firelens-logs");
    for (container, records) in [("checkout", &checkout), ("cart", &cart)] {
        let lines: Vec<Value> = objects
            .iter()
            .filter(|(key, _)| key.starts_with(&format!("prod/{container}/")))
            .flat_map(|(_, body)| {
                body.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(lines.len(), records.len(), "{container}: {objects:#?}");
        assert!(lines.iter().all(|l| l["container_name"] == container
            && l["ecs_cluster"] == CLUSTER
            && l["time"].is_string()));
    }
    let s3_total: usize = objects.iter().map(|(_, b)| b.lines().count()).sum();
    assert_eq!(s3_total, total, "nothing else reached S3: {objects:#?}");
}

#[test]
fn firelens_extra_conf_delivers_per_service_in_the_current_fluent_bit() {
    firelens_recipe(
        Release::Current,
        "firelens_extra_conf_delivers_per_service_in_the_current_fluent_bit",
    );
}

#[test]
fn firelens_extra_conf_delivers_per_service_in_fluent_bit_1_9() {
    firelens_recipe(
        Release::V1_9,
        "firelens_extra_conf_delivers_per_service_in_fluent_bit_1_9",
    );
}

/// The `log` of every line Firehose accepted, sorted.
fn firehose_logs_sorted(firehose: &FakeFirehose) -> Vec<String> {
    let mut logs: Vec<String> = firehose
        .accepted()
        .iter()
        .flat_map(|(_, data)| {
            String::from_utf8_lossy(data)
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["log"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    logs.sort();
    logs
}

/// An outage of one destination, 75 seconds long, with the shipped settings: nothing is lost,
/// and the destination that kept working gets every record once.
fn outage(test: &str, datadog_down: bool) {
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let outage = Duration::from_secs(75);
    let intake = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    if datadog_down {
        intake.outage(outage, DatadogReply::Status(503));
    } else {
        firehose.outage(outage, FirehoseReply::Throttle);
    }
    let mut router = start_log_router(&fluent_bit, &intake.url, &firehose.url);
    let records: Vec<(u32, Value)> = (0..200)
        .map(|i| {
            (
                now(),
                container_line("checkout", "stdout", &format!("during the outage {i}")),
            )
        })
        .collect();
    forward_unix(
        &router.socket,
        &format!("checkout-firelens-{TASK_ID}"),
        &records,
    )
    .unwrap();
    let deadline = Duration::from_secs(240);
    wait_until(
        &mut router.fluent_bit,
        "both destinations have every record",
        deadline,
        || {
            intake.accepted().len() >= records.len()
                && firehose
                    .accepted()
                    .iter()
                    .map(|(_, data)| String::from_utf8_lossy(data).lines().count())
                    .sum::<usize>()
                    >= records.len()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let status = router.fluent_bit.terminate(Duration::from_secs(40));
    let log = router.fluent_bit.log();
    assert!(status.success(), "{log}");
    let mut to_datadog: Vec<String> = intake
        .accepted()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    to_datadog.sort();
    let to_firehose = firehose_logs_sorted(&firehose);
    let mut expected: Vec<String> = records
        .iter()
        .map(|(_, r)| r["log"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(to_datadog, expected, "Datadog: every record, once");
    assert_eq!(to_firehose, expected, "Firehose: every record, once");
    assert!(
        !log.contains("retry limit") && !log.contains("cannot be retried"),
        "Fluent Bit gave a chunk up:\n{log}"
    );
    assert!(
        log.contains("Fluent Bit will retry the chunk"),
        "the outage was seen:\n{log}"
    );
}

#[test]
fn firelens_loses_nothing_when_datadog_answers_503_for_75_seconds() {
    outage(
        "firelens_loses_nothing_when_datadog_answers_503_for_75_seconds",
        true,
    );
}

#[test]
fn firelens_loses_nothing_when_firehose_throttles_for_75_seconds() {
    outage(
        "firelens_loses_nothing_when_firehose_throttles_for_75_seconds",
        false,
    );
}

/// What the shipped `Retry_Limit 8` is for: with Fluent Bit's default (`Retry_Limit 1`) the
/// same FireLens recipe loses the chunk in a Datadog outage. The chunk's one retry fails too,
/// Fluent Bit drops it (its own error line), and Datadog never gets those records, while
/// Firehose, which took them at the first flush, has each once. The outage lasts until Fluent
/// Bit says it dropped the chunk (the event, not a time window).
#[test]
fn fluent_bits_default_retry_limit_loses_the_chunk_in_an_outage() {
    let test = "fluent_bits_default_retry_limit_loses_the_chunk_in_an_outage";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let intake = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    intake.outage(Duration::from_secs(3600), DatadogReply::Status(503));
    let mut router = start_log_router_with(&fluent_bit, &intake.url, &firehose.url, |text| {
        assert!(text.contains("Retry_Limit     8"), "{text}");
        text.replace("Retry_Limit     8", "Retry_Limit     1")
    });
    let tag = format!("checkout-firelens-{TASK_ID}");
    let records: Vec<(u32, Value)> = (0..50)
        .map(|i| {
            (
                now(),
                container_line("checkout", "stdout", &format!("lost in the outage {i}")),
            )
        })
        .collect();
    forward_unix(&router.socket, &tag, &records).unwrap();
    let log_path = router.fluent_bit.log_path().to_owned();
    wait_until(
        &mut router.fluent_bit,
        "Fluent Bit drops the chunk after its one retry",
        Duration::from_secs(240),
        || std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("cannot be retried")),
    );
    // The outage ends; a record sent now goes through, so the pipeline itself is fine.
    intake.outage(Duration::ZERO, DatadogReply::Status(503));
    let after = (
        now(),
        container_line("checkout", "stdout", "after the outage"),
    );
    forward_unix(&router.socket, &tag, std::slice::from_ref(&after)).unwrap();
    wait_until(
        &mut router.fluent_bit,
        "the record sent after the outage reaches Datadog",
        Duration::from_secs(120),
        || !intake.accepted().is_empty(),
    );
    let status = router.fluent_bit.terminate(Duration::from_secs(40));
    let log = router.fluent_bit.log();
    assert!(status.success(), "{log}");
    let to_datadog: Vec<String> = intake
        .accepted()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        to_datadog,
        vec!["after the outage".to_owned()],
        "the outage's records are lost"
    );
    assert!(
        intake.received().iter().filter(|r| r.status == 503).count() >= 2,
        "the chunk was tried, and retried once"
    );
    let to_firehose = firehose_logs_sorted(&firehose);
    let mut expected: Vec<String> = records
        .iter()
        .chain(std::iter::once(&after))
        .map(|(_, r)| r["log"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(to_firehose, expected, "Firehose: every record, once");
    assert!(log.contains("[engine] chunk"), "{log}");
}

/// Chunk composition an application controls, in the shipped FireLens recipe: one ~900 KB log
/// line followed by thousands of small ones (an allocation sized "first record × count" would
/// be tens of GB and abort Fluent Bit), and thousands of records that are nearly empty maps
/// (small in msgpack, large decoded). Fluent Bit keeps running and both destinations get every
/// record once.
#[test]
fn firelens_survives_hostile_chunk_composition() {
    let test = "firelens_survives_hostile_chunk_composition";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let intake = FakeDatadog::start();
    let moto = Moto::start();
    moto.create_streams("firelens-logs", &[("logs-checkout", "prod/checkout/")]);
    let router = start_log_router(&fluent_bit, &intake.url, &moto.url);
    let (mut fb, socket) = (router.fluent_bit, router.socket);
    let _scratch = router.scratch;
    let now = now();
    let tag = format!("checkout-firelens-{TASK_ID}");
    let mut records = vec![(
        now,
        container_line("checkout", "stdout", &"z".repeat(900_000)),
    )];
    records.extend((0..20_000).map(|i| {
        (
            now,
            container_line("checkout", "stdout", &format!("small {i}")),
        )
    }));
    forward_unix(&socket, &tag, &records).unwrap();
    let tiny: Vec<(u32, Value)> = (0..20_000)
        .map(|i| {
            (
                now,
                serde_json::json!({"container_name": "checkout", "log": format!("tiny {i}"), "a": [], "b": {}, "c": [[]]}),
            )
        })
        .collect();
    forward_unix(&socket, &tag, &tiny).unwrap();
    let total = records.len() + tiny.len();
    wait_until(
        &mut fb,
        "Datadog receives every line",
        Duration::from_secs(120),
        || intake.accepted().len() >= total,
    );
    wait_until(
        &mut fb,
        "S3 holds every line",
        Duration::from_secs(120),
        || {
            moto.objects("firelens-logs")
                .iter()
                .map(|(_, body)| body.lines().count())
                .sum::<usize>()
                >= total
        },
    );
    let status = fb.terminate(Duration::from_secs(40));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    assert_eq!(intake.accepted().len(), total, "exactly once");
    let big = intake
        .accepted()
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.len() > 800_000))
        .count();
    assert_eq!(
        big, 1,
        "the large line arrives whole (under the 1 MB log limit)"
    );
}

/// A Fluent Bit of one test: the built plugin loaded with `-e`, and a classic config of the
/// test's own ([`PluginHost::configure`]) under a scratch root.
struct PluginHost {
    scratch: Scratch,
    socket: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl PluginHost {
    fn new(name: &str) -> PluginHost {
        let scratch = Scratch::new(name);
        install_artifacts(&scratch);
        PluginHost {
            socket: scratch.path("/var/run/fluent.sock"),
            config: scratch.path("/fluent-bit/etc/fluent-bit.conf"),
            scratch,
        }
    }

    /// Writes the config: `[SERVICE]` (`Flush 1`, `Grace 2`, then `service`), a forward input
    /// on the unix socket (then `input`), then `outputs`.
    fn configure(&self, service: &str, input: &str, outputs: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[SERVICE]\n    Flush 1\n    Grace 2\n    Log_Level info\n{service}\
                 [INPUT]\n    Name forward\n    Unix_Path {socket}\n{input}{outputs}",
                socket = self.socket.display(),
            ),
        )
        .unwrap();
    }

    /// Starts `fluent_bit` (with test AWS keys) and waits for its forward socket.
    fn start(&self, fluent_bit: &std::path::Path) -> FluentBit {
        self.start_with(fluent_bit, &[])
    }

    /// [`PluginHost::start`] with more environment variables.
    fn start_with(&self, fluent_bit: &std::path::Path, more_env: &[(&str, &str)]) -> FluentBit {
        let plugin = self.scratch.path("/fluent-bit/plugins/fanout.so");
        let args = [
            std::ffi::OsStr::new("-e"),
            plugin.as_os_str(),
            std::ffi::OsStr::new("-c"),
            self.config.as_os_str(),
        ];
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", "AKIDREALHOSTTEST0000"),
            ("AWS_SECRET_ACCESS_KEY", "real-host-test-secret"),
        ];
        env.extend_from_slice(more_env);
        let mut fb = FluentBit::start(fluent_bit, args, &env, &self.scratch.root);
        let socket = &self.socket;
        wait_until(
            &mut fb,
            "the forward socket appears",
            Duration::from_secs(30),
            || socket.exists(),
        );
        fb
    }
}

/// `delivery_stream logs-$service || logs-default` where no service has a stream and only
/// `logs-default` exists: every record whose stream answers ResourceNotFoundException takes
/// its next alternative in the same flush. 3000 records over 1000 services, all in S3 once.
fn missing_streams(release: Release, test: &str) {
    let Some(fluent_bit) = binary(release, test) else {
        return;
    };
    let moto = Moto::start();
    moto.create_streams("fallback-logs", &[("logs-default", "default/")]);
    let host = PluginHost::new("missing-streams");
    host.configure(
        "",
        "",
        &format!(
            "[OUTPUT]\n    Name fanout\n    Match *\n    workers 2\n    destinations firehose\n\
             \x20   region us-east-1\n    endpoint {endpoint}\n\
             \x20   delivery_stream logs-$service || logs-default\n",
            endpoint = moto.url,
        ),
    );
    let mut fb = host.start(&fluent_bit);
    let socket = &host.socket;
    const RECORDS: usize = 3000;
    let now = now();
    let records: Vec<(u32, Value)> = (0..RECORDS)
        .map(|i| {
            (
                now,
                json!({"service": format!("svc-{:04}", i % 1000), "log": format!("record {i}")}),
            )
        })
        .collect();
    for part in records.chunks(500) {
        forward_unix(socket, "app", part).unwrap();
    }
    let in_s3 = || -> Vec<String> {
        moto.objects("fallback-logs")
            .iter()
            .flat_map(|(key, body)| {
                assert!(
                    key.starts_with("default/"),
                    "only logs-default exists: {key}"
                );
                body.lines()
                    .map(|l| {
                        serde_json::from_str::<Value>(l).unwrap()["log"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until(
        &mut fb,
        "S3 holds every record",
        Duration::from_secs(120),
        || in_s3().len() >= RECORDS,
    );
    let status = fb.terminate(Duration::from_secs(40));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    let mut delivered = in_s3();
    delivered.sort();
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("record {i}")).collect();
    expected.sort();
    assert_eq!(delivered, expected, "every record once");
    assert!(
        !log.contains("records rejected") && !log.contains("records dropped"),
        "nothing refused:\n{log}"
    );
    let exit = log
        .lines()
        .find(|l| l.contains("exiting:"))
        .unwrap_or_else(|| panic!("the exit stats line:\n{log}"));
    assert!(exit.contains("dropped=0 rejected=0"), "{exit}");
}

#[test]
fn records_meeting_a_missing_stream_take_the_next_alternative_in_the_real_host() {
    missing_streams(
        Release::Current,
        "records_meeting_a_missing_stream_take_the_next_alternative_in_the_real_host",
    );
}

#[test]
fn records_meeting_a_missing_stream_take_the_next_alternative_in_fluent_bit_1_9() {
    missing_streams(
        Release::V1_9,
        "records_meeting_a_missing_stream_take_the_next_alternative_in_fluent_bit_1_9",
    );
}

/// Fluent Bit with `storage.type filesystem` and the plugin's `ledger_file` beside its
/// `storage.path`: Datadog is down, Firehose takes every record, Fluent Bit is stopped
/// (SIGTERM, or SIGKILL when `kill`) with the chunks on disk, Datadog comes back and Fluent
/// Bit starts again from the same storage. Datadog gets every record; Firehose, which had
/// them all before the stop, gets none again after a clean stop (after SIGKILL: at least
/// once, nothing lost).
fn restart_with_filesystem_storage(release: Release, test: &str, kill: bool) {
    let Some(fluent_bit) = binary(release, test) else {
        return;
    };
    let intake = FakeDatadog::start();
    intake.script(std::iter::repeat_n(DatadogReply::Status(503), 1_000_000));
    let firehose = FakeFirehose::start();
    let host = PluginHost::new("restart");
    let storage = host.scratch.dir("/var/lib/fluent-bit");
    host.configure(
        &format!("    storage.path {}\n", storage.display()),
        "    storage.type filesystem\n",
        &format!(
            "[OUTPUT]\n    Name fanout\n    Match *\n    workers 2\n    Retry_Limit no_limits\n\
             \x20   destinations datadog,firehose\n    apikey {API_KEY}\n    dd_url {dd}\n\
             \x20   region us-east-1\n    endpoint {fh}\n    delivery_stream logs-$service\n\
             \x20   flush_timeout 2s\n    ledger_file {storage}/fanout.ledger\n",
            storage = storage.display(),
            dd = intake.url,
            fh = firehose.url,
        ),
    );
    let (scratch, socket) = (&host.scratch, &host.socket);
    let mut fb = host.start(&fluent_bit);
    const RECORDS: usize = 3000;
    let records: Vec<(u32, Value)> = (0..RECORDS)
        .map(|n| {
            (
                now(),
                json!({"service": "web", "log": format!("line {n}"), "n": n}),
            )
        })
        .collect();
    for part in records.chunks(500) {
        forward_unix(socket, "app", part).unwrap();
    }
    let numbers = |values: Vec<u64>| {
        let mut counts = vec![0u32; RECORDS];
        for n in values {
            counts[n as usize] += 1;
        }
        counts
    };
    let firehose_numbers = || {
        numbers(
            firehose
                .accepted()
                .iter()
                .flat_map(|(_, data)| {
                    String::from_utf8_lossy(data)
                        .lines()
                        .map(|l| {
                            serde_json::from_str::<Value>(l).unwrap()["n"]
                                .as_u64()
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    };
    wait_until(
        &mut fb,
        "Firehose has every record",
        Duration::from_secs(60),
        || firehose_numbers().iter().all(|c| *c >= 1),
    );
    // Every chunk has answered RETRY (Datadog is down) once: one warning per chunk file.
    let chunk_files = || {
        walk(&storage)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "flb"))
            .count()
    };
    wait_until(
        &mut fb,
        "each chunk answered RETRY",
        Duration::from_secs(60),
        || {
            let log = fb_log_lines(scratch);
            let failed: std::collections::BTreeSet<String> = log
                .lines()
                .filter_map(|l| l.split("failed to flush chunk '").nth(1))
                .filter_map(|rest| rest.split('\'').next())
                .map(str::to_owned)
                .collect();
            let files = chunk_files();
            files > 0 && failed.len() >= files
        },
    );
    if kill {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &fb.pid().to_string()])
            .status();
        fb.wait_exit(Duration::from_secs(10));
    } else {
        fb.terminate(Duration::from_secs(30));
    }
    let first_log = fb.log();
    assert!(chunk_files() > 0, "the chunks wait on disk:\n{first_log}");
    let before = firehose.accepted().len();
    intake.script_clear();
    let mut fb = host.start(&fluent_bit);
    wait_until(
        &mut fb,
        "Datadog has every record",
        Duration::from_secs(60),
        || {
            numbers(
                intake
                    .accepted()
                    .iter()
                    .map(|e| e["n"].as_u64().unwrap())
                    .collect(),
            )
            .iter()
            .all(|c| *c >= 1)
        },
    );
    // Anything still to come would come within a couple of flushes.
    std::thread::sleep(Duration::from_secs(3));
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    let datadog = numbers(
        intake
            .accepted()
            .iter()
            .map(|e| e["n"].as_u64().unwrap())
            .collect(),
    );
    assert!(datadog.iter().all(|c| *c >= 1), "nothing lost in Datadog");
    let firehose_counts = firehose_numbers();
    assert!(
        firehose_counts.iter().all(|c| *c >= 1),
        "nothing lost in Firehose"
    );
    if !kill {
        assert!(
            datadog.iter().all(|c| *c == 1),
            "Datadog: each record once ({} twice)",
            datadog.iter().filter(|c| **c > 1).count()
        );
        assert_eq!(
            firehose.accepted().len(),
            before,
            "Firehose had every record before the restart: nothing sent again\n{log}"
        );
        assert!(firehose_counts.iter().all(|c| *c == 1));
        assert!(
            log.contains("chunks awaiting a resend"),
            "the ledger came back from the file:\n{log}"
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Everything every Fluent Bit of `scratch` printed so far.
fn fb_log_lines(scratch: &Scratch) -> String {
    walk(&scratch.root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fluent-bit-") && n.ends_with(".log"))
        })
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

#[test]
fn a_clean_restart_with_filesystem_storage_sends_nothing_twice() {
    restart_with_filesystem_storage(
        Release::Current,
        "a_clean_restart_with_filesystem_storage_sends_nothing_twice",
        false,
    );
}

#[test]
fn a_clean_restart_with_filesystem_storage_sends_nothing_twice_in_fluent_bit_1_9() {
    restart_with_filesystem_storage(
        Release::V1_9,
        "a_clean_restart_with_filesystem_storage_sends_nothing_twice_in_fluent_bit_1_9",
        false,
    );
}

#[test]
fn a_sigkill_with_filesystem_storage_loses_nothing() {
    restart_with_filesystem_storage(
        Release::Current,
        "a_sigkill_with_filesystem_storage_loses_nothing",
        true,
    );
}

/// `dead_letter` in a real Fluent Bit: each cause of a refusal — the one log a 400 isolates
/// (Datadog), a record no delivery stream takes, a record over 1000 KiB with no message to cut
/// (Firehose), a record without `log_key` (a second output) — is written to the output's file
/// with its destination, cause, time, tag and content, and counted.
#[test]
fn records_refused_for_good_land_in_the_dead_letter_file_with_their_cause() {
    use fanout_testhost::fake_datadog::REFUSED_MESSAGE;
    let test = "records_refused_for_good_land_in_the_dead_letter_file_with_their_cause";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let intake = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    let host = PluginHost::new("dead-letter");
    let letters = host.scratch.dir("/var/lib/fluent-bit");
    let (main_file, raw_file) = (letters.join("main.jsonl"), letters.join("raw.jsonl"));
    let metrics_port = free_port();
    host.configure(
        &format!("    HTTP_Server On\n    HTTP_Listen 127.0.0.1\n    HTTP_Port {metrics_port}\n"),
        "    Buffer_Max_Size 4M\n",
        &format!(
            "[OUTPUT]\n    Name fanout\n    Alias main\n    Match *\n    workers 2\n\
             \x20   destinations datadog,firehose\n    apikey {API_KEY}\n    dd_url {dd}\n\
             \x20   region us-east-1\n    endpoint {fh}\n    delivery_stream logs-$service\n\
             \x20   dead_letter {main}\n\
             [OUTPUT]\n    Name fanout\n    Alias raw\n    Match *\n    destinations firehose\n\
             \x20   region us-east-1\n    endpoint {fh}\n    delivery_stream logs-raw\n\
             \x20   log_key log\n    dead_letter {raw}\n",
            dd = intake.url,
            fh = firehose.url,
            main = main_file.display(),
            raw = raw_file.display(),
        ),
    );
    let mut fb = host.start(&fluent_bit);
    let socket = &host.socket;
    let blob = "b".repeat(1_100_000);
    let records = vec![
        (
            now(),
            json!({"service": "web", "log": REFUSED_MESSAGE, "n": 1}),
        ),
        (now(), json!({"log": "no service field", "n": 2})),
        (
            now(),
            json!({"service": "web", "log": "small", "blob": blob, "n": 3}),
        ),
        (
            now(),
            json!({"service": "web", "message": "no log field", "n": 4}),
        ),
        (now(), json!({"service": "web", "log": "fine", "n": 5})),
    ];
    forward_unix(socket, "app.web", &records).unwrap();
    let lines = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_until(
        &mut fb,
        "the dead letters are written",
        Duration::from_secs(30),
        || lines(&main_file).len() >= 3 && !lines(&raw_file).is_empty(),
    );
    // On the metrics endpoint (published within a second of the flush).
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/api/v2/metrics/prometheus");
    wait_until(
        &mut fb,
        "the counter on the metrics endpoint",
        Duration::from_secs(10),
        || {
            fanout_testhost::fluent_bit::http_get(&metrics_url).is_some_and(|(_, body)| {
                body.contains("fluentbit_fanout_dead_lettered_total{name=\"main\"} 3")
                    && body.contains("fluentbit_fanout_dead_lettered_total{name=\"raw\"} 1")
            })
        },
    );
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    let main = lines(&main_file);
    let by_n = |n: u64| {
        main.iter()
            .find(|l| l["record"]["n"] == n)
            .unwrap_or_else(|| panic!("record {n} in {main:#?}"))
    };
    assert_eq!(main.len(), 3, "{main:#?}");
    let refused_400 = by_n(1);
    assert_eq!(refused_400["destination"], "datadog");
    assert!(refused_400["cause"].as_str().unwrap().contains("HTTP 400"));
    assert_eq!(refused_400["record"]["log"], REFUSED_MESSAGE);
    assert_eq!(refused_400["tag"], "app.web");
    assert!(refused_400["time"].as_str().unwrap().ends_with('Z'));
    let no_stream = by_n(2);
    assert_eq!(no_stream["destination"], "firehose");
    assert!(
        no_stream["cause"]
            .as_str()
            .unwrap()
            .contains("no delivery stream"),
        "{no_stream}"
    );
    let too_large = by_n(3);
    assert_eq!(too_large["destination"], "firehose");
    assert!(too_large["cause"].as_str().unwrap().contains("1000 KiB"));
    assert_eq!(
        too_large["record"]["blob"].as_str().map(str::len),
        Some(1_100_000)
    );
    let raw = lines(&raw_file);
    assert_eq!(raw.len(), 1, "{raw:#?}");
    assert_eq!(raw[0]["record"]["n"], 4);
    assert!(
        raw[0]["cause"].as_str().unwrap().contains("log_key"),
        "{}",
        raw[0]
    );
    // Counted in the exit lines too.
    assert!(
        log.contains("dead_lettered=3 dead_letter_overflow=0"),
        "{log}"
    );
    assert!(
        log.contains("dead_lettered=1 dead_letter_overflow=0"),
        "{log}"
    );
}

/// `dead_letter firehose:<stream>`: refused records go through the output's own Firehose
/// destination to that stream (so they land in S3 next to the rest), one JSON line each.
#[test]
fn refused_records_go_to_a_dead_letter_stream_in_the_real_host() {
    use fanout_testhost::fake_datadog::REFUSED_MESSAGE;
    let test = "refused_records_go_to_a_dead_letter_stream_in_the_real_host";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let intake = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    let host = PluginHost::new("dead-letter-stream");
    host.configure(
        "",
        "",
        &format!(
            "[OUTPUT]\n    Name fanout\n    Match *\n    workers 2\n\
             \x20   destinations datadog,firehose\n    apikey {API_KEY}\n    dd_url {dd}\n\
             \x20   region us-east-1\n    endpoint {fh}\n    delivery_stream logs-$service\n\
             \x20   dead_letter firehose:refused-logs\n",
            dd = intake.url,
            fh = firehose.url,
        ),
    );
    let mut fb = host.start(&fluent_bit);
    let socket = &host.socket;
    let records = vec![
        (
            now(),
            json!({"service": "web", "log": REFUSED_MESSAGE, "n": 1}),
        ),
        (now(), json!({"log": "no service field", "n": 2})),
        (now(), json!({"service": "web", "log": "fine", "n": 3})),
    ];
    forward_unix(socket, "app.web", &records).unwrap();
    let letters = || -> Vec<Value> {
        firehose
            .accepted()
            .iter()
            .filter(|(stream, _)| stream == "refused-logs")
            .map(|(_, data)| serde_json::from_slice(data).unwrap())
            .collect()
    };
    wait_until(
        &mut fb,
        "the dead letters reach the stream",
        Duration::from_secs(30),
        || letters().len() >= 2,
    );
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    let mut letters = letters();
    letters.sort_by_key(|l| l["record"]["n"].as_u64());
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert_eq!(
        (
            letters[0]["destination"].as_str(),
            letters[0]["record"]["n"].as_u64()
        ),
        (Some("datadog"), Some(1))
    );
    assert!(letters[0]["cause"].as_str().unwrap().contains("HTTP 400"));
    assert_eq!(
        (
            letters[1]["destination"].as_str(),
            letters[1]["record"]["n"].as_u64()
        ),
        (Some("firehose"), Some(2))
    );
    assert!(
        log.contains("dead_lettered=2 dead_letter_overflow=0"),
        "{log}"
    );
    // The deliverable records went where they belong.
    let delivered: Vec<(String, u64)> = firehose
        .accepted()
        .iter()
        .filter(|(stream, _)| stream != "refused-logs")
        .flat_map(|(stream, data)| {
            String::from_utf8_lossy(data)
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    (stream.clone(), v["n"].as_u64().unwrap())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        delivered,
        vec![("logs-web".to_owned(), 1), ("logs-web".to_owned(), 3)]
    );
}

/// In the real host, with every proxy variable pointing at a recording proxy: the loopback
/// Datadog intake is reached directly (the key never reaches the proxy); an intake that
/// refuses zstd gets the same request with gzip, and the requests counter on the metrics
/// endpoint equals the POSTs the intake received; a record's own `ddtags` that is not a string
/// is kept as a tag and counted as altered.
#[test]
fn proxies_wire_counters_and_odd_ddtags_in_the_real_host() {
    let test = "proxies_wire_counters_and_odd_ddtags_in_the_real_host";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let proxy = common::ForwardProxy::start();
    let intake = FakeDatadog::start();
    intake.outage(
        Duration::from_secs(600),
        DatadogReply::RefuseEncoding("zstd".into()),
    );
    let host = PluginHost::new("proxy-counters");
    let metrics_port = free_port();
    host.configure(
        &format!("    HTTP_Server On\n    HTTP_Listen 127.0.0.1\n    HTTP_Port {metrics_port}\n"),
        "",
        &format!(
            "[OUTPUT]\n    Name fanout\n    Alias dd\n    Match *\n    destinations datadog\n\
             \x20   apikey {API_KEY}\n    dd_url {dd}\n    dd_tags env:prod\n",
            dd = intake.url,
        ),
    );
    let proxied: Vec<(&str, &str)> = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"]
        .into_iter()
        .map(|name| (name, proxy.url.as_str()))
        .collect();
    let mut fb = host.start_with(&fluent_bit, &proxied);
    let records = vec![
        (now(), json!({"log": "plain", "ddtags": "team:web"})),
        (now(), json!({"log": "numbered", "ddtags": 42})),
    ];
    forward_unix(&host.socket, "app", &records).unwrap();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/api/v2/metrics/prometheus");
    let requests_metric = |body: &str| {
        body.lines()
            .find(|l| {
                l.starts_with("fluentbit_fanout_requests_total{") && l.contains("\"datadog\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    wait_until(
        &mut fb,
        "Datadog has both records, counted",
        Duration::from_secs(30),
        || {
            intake.accepted().len() >= 2
                && fanout_testhost::fluent_bit::http_get(&metrics_url).is_some_and(|(_, body)| {
                    requests_metric(&body) == Some(intake.received().len() as u64)
                })
        },
    );
    let status = fb.terminate(Duration::from_secs(30));
    let log = fb.log();
    assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
    let received = intake.received();
    assert_eq!(
        received
            .iter()
            .map(|r| (r.header("Content-Encoding").map(str::to_owned), r.status))
            .collect::<Vec<_>>(),
        vec![
            (Some("zstd".to_owned()), 415),
            (Some("gzip".to_owned()), 202)
        ],
        "one zstd refusal, then gzip"
    );
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "nothing went to the proxy"
    );
    assert!(!proxy.saw(API_KEY));
    let tags: Vec<(String, String)> = intake
        .accepted()
        .iter()
        .map(|e| {
            (
                e["message"].as_str().unwrap().to_owned(),
                e["ddtags"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("numbered".into(), "env:prod,42".into())),
        "{tags:?}"
    );
    assert!(log.contains("altered_values=1"), "{log}");
    assert!(
        log.contains(
            "datadog[delivered=2 retried=0 dropped=0 rejected=0 resend_skipped=0 requests=2]"
        ),
        "{log}"
    );
}
