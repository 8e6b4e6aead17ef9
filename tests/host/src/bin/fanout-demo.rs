//! `make demo`: the plugin's main job on an embedded default, with no cloud account and no
//! Fluent Bit. Loads `dist/fanout.so` through the test host exactly as Fluent Bit's proxy
//! would, sends FireLens- and Kubernetes-shaped records in both chunk layouts to a local
//! Datadog intake stand-in, to moto's Firehose + S3 (one stream and prefix per service) and to
//! the `file` destination, and prints what each received. With `FLUENT_BIT=/path/to/fluent-bit` it also runs the same
//! plugin inside that real Fluent Bit, fed the sample records of `fluent-bit-conf/samples/`.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use fanout_testhost::fake_datadog::FakeDatadog;
use fanout_testhost::fluent_bit::forward_unix;
use fanout_testhost::host::{FLB_OK, logs_of};
use fanout_testhost::moto::Moto;
use fanout_testhost::{Chunk, HostVersion, Layout, Plugin, Time, plugin_path, workspace_root};
use serde_json::{Value, json};

fn firelens_records() -> Vec<Value> {
    let task =
        "arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/0123456789abcdef0123456789abcdef";
    [
        "GET /health 200 1ms",
        "POST /orders 201 43ms",
        "level=error msg=\"payment declined\"",
    ]
    .iter()
    .map(|line| {
        json!({
            "container_id": "0123456789abcdef0123456789abcdef-1234567890",
            "container_name": "checkout",
            "ecs_cluster": "prod-cluster",
            "ecs_task_arn": task,
            "ecs_task_definition": "checkout:42",
            "source": "stdout",
            "log": line
        })
    })
    .collect()
}

fn kubernetes_records() -> Vec<Value> {
    ["starting worker", "processed 120 jobs"]
        .iter()
        .map(|line| {
            json!({
                "stream": "stdout",
                "log": line,
                "kubernetes": {
                    "pod_name": "report-28190012-x7k2p",
                    "namespace_name": "batch",
                    "container_name": "report",
                    "labels": {"app": "report", "tags.datadoghq.com/service": "nightly-report"}
                }
            })
        })
        .collect()
}

/// Set when the demo runs as its own child with the demo's AWS environment.
const CHILD: &str = "FANOUT_DEMO_CHILD";

fn main() -> ExitCode {
    // The plugin's AWS credential chain reads the environment; rather than change the
    // environment of a running process, run the demo again as a child that has it.
    if std::env::var_os(CHILD).is_none() {
        let status = Command::new(std::env::current_exe().expect("the demo's own path"))
            .env(CHILD, "1")
            .env("AWS_ACCESS_KEY_ID", "AKIDFANOUTDEMO000000")
            .env("AWS_SECRET_ACCESS_KEY", "fanout-demo-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .status()
            .expect("the demo starts");
        return if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let out_dir = workspace_root().join("demo-out");
    std::fs::create_dir_all(&out_dir).expect("demo-out/ can be created");
    let records_path = out_dir.join("records.jsonl");
    let _ = std::fs::remove_file(&records_path);
    let records_s = records_path.display().to_string();

    let so = plugin_path();
    println!(
        "== loading {} through the test host (Fluent Bit 5.1 proxy ABI)",
        so.display()
    );
    let plugin = match Plugin::load(&so, HostVersion::V5_1) {
        Ok(plugin) => plugin,
        Err(e) => {
            eprintln!("cannot load the plugin: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A local stand-in for the Datadog intake: same checks as the real one, no account needed.
    let intake = FakeDatadog::start();
    println!("== Datadog intake stand-in listening on {}", intake.url);
    // moto's server as Amazon Data Firehose + S3: one stream per service, each with its prefix.
    let moto = Moto::start();
    moto.create_streams(
        "demo-logs",
        &[
            ("logs-checkout", "prod/checkout/"),
            ("logs-cart", "prod/cart/"),
            ("logs-nightly-report", "prod/nightly-report/"),
            ("logs-unrouted", "prod/unrouted/"),
        ],
    );
    println!("== Firehose + S3 stand-in (moto) listening on {}", moto.url);
    let delivery_stream = "logs-$kubernetes['labels']['tags.datadoghq.com/service'] || logs-$container_name || logs-unrouted";
    let properties = [
        ("destinations", "datadog,firehose,file"),
        ("apikey", "demo-api-key"),
        ("dd_url", intake.url.as_str()),
        ("provider", "ecs"),
        ("dd_tags", "env:demo"),
        ("region", "us-east-1"),
        ("endpoint", moto.url.as_str()),
        ("delivery_stream", delivery_stream),
        ("time_key", "time"),
        ("path", records_s.as_str()),
        ("label", "demo"),
    ];
    println!(
        "== [OUTPUT] Name fanout, {}",
        properties.map(|(k, v)| format!("{k}={v}")).join(", ")
    );
    let Ok(instance) = plugin.init(&properties) else {
        eprintln!("Init failed: {:?}", logs_of("demo"));
        return ExitCode::FAILURE;
    };

    // FireLens on Fluent Bit >= 2.1 sends [[time, metadata], record]; 1.9 sends [time, record].
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let firelens = firelens_records()
        .iter()
        .enumerate()
        .fold(Chunk::new(), |c, (i, r)| c.event(now + i as u32, r));
    let kubernetes = kubernetes_records()
        .iter()
        .enumerate()
        .fold(Chunk::new(), |c, (i, r)| {
            c.record(
                Layout::V1,
                Time::Event(now + i as u32, 500_000_000),
                &json!({}),
                r,
            )
        });
    let mut ok = true;
    for (tag, chunk) in [
        ("checkout-firelens-0123", &firelens),
        ("kube.var.log.containers.report", &kubernetes),
    ] {
        let rc = instance.flush(chunk.bytes(), tag);
        println!(
            "== flush tag={tag} bytes={} -> {}",
            chunk.bytes().len(),
            code_name(rc)
        );
        ok &= rc == FLB_OK;
    }
    instance.exit();
    for line in logs_of("demo") {
        println!("   plugin log: {}", line.text);
    }
    println!("== the Datadog stand-in received:");
    for request in intake.received() {
        println!(
            "   POST /api/v2/logs -> {} ({} entries, {} bytes of JSON, Content-Encoding: {})",
            request.status,
            request.entries.len(),
            request.body_len,
            request.header("Content-Encoding").unwrap_or("none")
        );
        ok &= request.violation.is_none();
        for entry in &request.entries {
            println!("     {entry}");
        }
    }
    println!("== Firehose delivered to S3 (bucket demo-logs), one prefix per service:");
    let objects = moto.objects("demo-logs");
    ok &= objects.len() >= 2;
    for (key, content) in objects {
        println!("   s3://demo-logs/{key}");
        for line in content.lines() {
            println!("     {line}");
        }
    }
    println!("== the file destination wrote {}:", records_path.display());
    print_file(&records_path);

    if let Some(fluent_bit) = std::env::var_os("FLUENT_BIT") {
        ok &= run_real_fluent_bit(Path::new(&fluent_bit), &so, &out_dir, &intake, &moto);
    } else {
        println!("== FLUENT_BIT is not set: skipping the run through a real Fluent Bit");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn code_name(rc: i32) -> &'static str {
    match rc {
        0 => "FLB_ERROR",
        1 => "FLB_OK",
        2 => "FLB_RETRY",
        _ => "unknown",
    }
}

fn print_file(path: &Path) {
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        println!("   {line}");
    }
}

/// The sample records a user previews (`fluent-bit-conf/samples/*.jsonl`), sent to a real
/// Fluent Bit over the forward protocol as FireLens's log driver sends them:
/// `fluent-bit -e fanout.so -i forward -o fanout`, to the same stand-ins; then SIGTERM.
fn run_real_fluent_bit(
    fluent_bit: &Path,
    so: &Path,
    out_dir: &Path,
    intake: &FakeDatadog,
    moto: &Moto,
) -> bool {
    let before = intake.accepted().len();
    let objects_before = moto.objects("demo-logs").len();
    let out = out_dir.join("fluent-bit.jsonl");
    let socket = out_dir.join("fluent.sock");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&socket);
    let samples: Vec<(&str, Vec<Value>)> = [
        ("checkout-firelens-0123456789abcdef", "firelens.jsonl"),
        ("kube.var.log.containers.nightly-report", "kubernetes.jsonl"),
    ]
    .iter()
    .map(|(tag, file)| {
        let path = workspace_root().join("fluent-bit-conf/samples").join(file);
        let records = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (*tag, records)
    })
    .collect();
    let expected: usize = samples.iter().map(|(_, r)| r.len()).sum();
    println!(
        "== running {} with the plugin; sending the {expected} records of fluent-bit-conf/samples/ over forward",
        fluent_bit.display()
    );
    let delivery_stream = "logs-$kubernetes['labels']['tags.datadoghq.com/service'] || logs-$container_name || logs-unrouted";
    let mut child = match Command::new(fluent_bit)
        .arg("-e")
        .arg(so)
        .args(["-i", "forward", "-p"])
        .arg(format!("unix_path={}", socket.display()))
        .args([
            "-o",
            "fanout",
            "-m",
            "*",
            "-p",
            "workers=1",
            "-p",
            "destinations=datadog,firehose,file",
            "-p",
            "apikey=demo-api-key",
            "-p",
            "provider=ecs",
        ])
        .arg("-p")
        .arg(format!("dd_url={}", intake.url))
        .args(["-p", "region=us-east-1", "-p"])
        .arg(format!("delivery_stream={delivery_stream}"))
        .arg("-p")
        .arg(format!("endpoint={}", moto.url))
        .arg("-p")
        .arg(format!("path={}", out.display()))
        .args(["-f", "1"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start {}: {e}", fluent_bit.display());
            return false;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = 0;
    let mut sent = false;
    while Instant::now() < deadline && lines < expected {
        std::thread::sleep(Duration::from_millis(200));
        if !sent && socket.exists() {
            for (tag, records) in &samples {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as u32;
                let timed: Vec<(u32, Value)> = records.iter().map(|r| (now, r.clone())).collect();
                if let Err(e) = forward_unix(&socket, tag, &timed) {
                    eprintln!("cannot send to {}: {e}", socket.display());
                    break;
                }
            }
            sent = true;
        }
        lines = std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait();
    println!(
        "== Fluent Bit exited with {status:?}; {} holds:",
        out.display()
    );
    print_file(&out);
    let to_datadog = intake.accepted().split_off(before);
    println!(
        "== the Datadog stand-in accepted {} entries from Fluent Bit:",
        to_datadog.len()
    );
    for entry in &to_datadog {
        println!("     {entry}");
    }
    let objects = moto.objects("demo-logs");
    let new_objects = objects.len() - objects_before.min(objects.len());
    println!("== Firehose (moto) received {new_objects} new S3 objects from Fluent Bit");
    status.is_ok_and(|s| s.success())
        && lines == expected
        && to_datadog.len() == expected
        && new_objects >= 2
}
