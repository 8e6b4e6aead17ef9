//! `make soak`: the shipped FireLens `extra.conf` inside a real Fluent Bit
//! (`FLUENT_BIT=/path/to/fluent-bit`) for `SOAK_MINUTES` (default 30) at a steady rate
//! (`SOAK_RATE` records a second, default 200) over the forward protocol, to the Datadog and
//! Firehose stand-ins, with a fault cycle every `SOAK_CYCLE_SECONDS` (default 300):
//!
//! - at 20 s: Datadog answers 30 requests with HTTP 500;
//! - at 60 s: Datadog is down (503) for 60 s;
//! - at 150 s: Firehose throttles every call for 30 s;
//! - at 220 s: Firehose fails every third record of 20 calls (partial failures).
//!
//! Then the sender stops and the run waits for the stand-ins to settle. It passes when every
//! record reached each destination exactly once, Fluent Bit's peak RSS at the end is within
//! 5 % of its peak after the first cycle, the plugin's ledger holds no entry and its in-flight
//! gauges read 0. Prints what it measured (for BENCHMARKS.md); exits 1 on a failed check.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fanout_testhost::fake_datadog::{self, FakeDatadog};
use fanout_testhost::fake_firehose::{self, FakeFirehose};
use fanout_testhost::fluent_bit::{
    FluentBit, Scratch, forward_unix, free_port, http_get, install_artifacts,
    install_firelens_config,
};
use serde_json::{Value, json};

const SERVICES: [&str; 3] = ["checkout", "cart", "search"];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fluent Bit's resident set now and at its peak (VmRSS, VmHWM), in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The sum of every series of `metric` on Fluent Bit's Prometheus endpoint.
fn gauge(metrics: &str, metric: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many times each record id reached a destination: (missing, twice or more).
fn tally(ids: impl Iterator<Item = u64>, sent: u64) -> (u64, u64) {
    let mut seen = vec![0u32; sent as usize];
    for id in ids {
        if let Some(slot) = seen.get_mut(id as usize) {
            *slot += 1;
        }
    }
    (
        seen.iter().filter(|c| **c == 0).count() as u64,
        seen.iter().filter(|c| **c > 1).count() as u64,
    )
}

fn id_of(log: &str) -> Option<u64> {
    log.strip_prefix("soak ")?.split(' ').next()?.parse().ok()
}

fn main() -> ExitCode {
    let Some(fluent_bit) = std::env::var_os("FLUENT_BIT") else {
        eprintln!("soak: FLUENT_BIT is not set (a Fluent Bit binary)");
        return ExitCode::from(2);
    };
    let minutes = env_number("SOAK_MINUTES", 30);
    let rate = env_number("SOAK_RATE", 200).max(10);
    let cycle = Duration::from_secs(env_number("SOAK_CYCLE_SECONDS", 300).max(240));
    let intake = FakeDatadog::start();
    let firehose = FakeFirehose::start();
    let scratch = Scratch::new("soak");
    install_artifacts(&scratch);
    let extra = install_firelens_config(&scratch, &intake.url, &firehose.url);
    let socket = scratch.path("/var/run/fluent.sock");
    let http_port = free_port();
    let main = scratch.path("/fluent-bit/etc/fluent-bit.conf");
    std::fs::write(
        &main,
        format!(
            "[SERVICE]\n    HTTP_Server On\n    HTTP_Listen 127.0.0.1\n    HTTP_Port {http_port}\n\
             [INPUT]\n    Name forward\n    Mem_Buf_Limit 25MB\n    unix_path {socket}\n\
             @INCLUDE {extra}\n",
            socket = socket.display(),
            extra = extra.display()
        ),
    )
    .unwrap();
    let env = [
        ("DD_API_KEY", "dd-soak-key"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDSOAKTEST00000000"),
        ("AWS_SECRET_ACCESS_KEY", "soak-secret"),
    ];
    let mut fb = FluentBit::start(
        std::path::Path::new(&fluent_bit),
        [std::ffi::OsStr::new("-c"), main.as_os_str()],
        &env,
        &scratch.root,
    );
    let started = Instant::now();
    while !socket.exists() {
        if started.elapsed() > Duration::from_secs(30) || fb.try_status().is_some() {
            eprintln!("soak: Fluent Bit did not start:\n{}", fb.log());
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = fb.pid();
    let metrics_url = format!("http://127.0.0.1:{http_port}/api/v2/metrics/prometheus");
    let run_for = Duration::from_secs(minutes * 60);
    println!(
        "soak: {minutes} min at {rate} records/s, fault cycle every {}s, Fluent Bit pid {pid}",
        cycle.as_secs()
    );

    // The sender: every 100 ms, a forward message of rate/10 records, round robin over the
    // services; each record's log carries its id.
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent, stop, socket) = (Arc::clone(&sent), Arc::clone(&stop), socket.clone());
        std::thread::spawn(move || {
            let per_tick = rate / 10;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as u32;
                let first = sent.load(Ordering::Relaxed);
                for service in SERVICES {
                    let records: Vec<(u32, Value)> = (first..first + per_tick)
                        .filter(|id| SERVICES[*id as usize % SERVICES.len()] == service)
                        .map(|id| {
                            (
                                now,
                                json!({
                                    "container_id": format!("0123456789abcdef-{service}"),
                                    "container_name": service,
                                    "source": "stdout",
                                    "log": format!("soak {id} GET /orders/{id} 200 3ms"),
                                }),
                            )
                        })
                        .collect();
                    let tag = format!("{service}-firelens-0123456789abcdef");
                    if let Err(e) = forward_unix(&socket, &tag, &records) {
                        eprintln!("soak: forward failed at id {first}: {e}");
                        return;
                    }
                }
                sent.fetch_add(per_tick, Ordering::Relaxed);
                next += Duration::from_millis(100);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };

    // Faults and samples.
    let mut fired = [false; 4];
    let mut cycle_start = Instant::now();
    let mut peak_after_first_cycle = None;
    let mut ledger_max = 0.0f64;
    let mut samples = Vec::new();
    let mut last_sample = Instant::now() - Duration::from_secs(60);
    while started.elapsed() < run_for {
        if let Some(status) = fb.try_status() {
            eprintln!("soak: Fluent Bit exited ({status}):\n{}", fb.log());
            return ExitCode::FAILURE;
        }
        let in_cycle = cycle_start.elapsed();
        if in_cycle >= cycle {
            if peak_after_first_cycle.is_none() {
                peak_after_first_cycle = Some(rss_kib(pid).1);
            }
            cycle_start = Instant::now();
            fired = [false; 4];
            continue;
        }
        let at = |s: u64| in_cycle >= Duration::from_secs(s);
        if at(20) && !fired[0] {
            fired[0] = true;
            intake.script(std::iter::repeat_n(fake_datadog::Reply::Status(500), 30));
        }
        if at(60) && !fired[1] {
            fired[1] = true;
            intake.outage(Duration::from_secs(60), fake_datadog::Reply::Status(503));
        }
        if at(150) && !fired[2] {
            fired[2] = true;
            firehose.outage(Duration::from_secs(30), fake_firehose::Reply::Throttle);
        }
        if at(220) && !fired[3] {
            fired[3] = true;
            firehose.script(std::iter::repeat_n(fake_firehose::Reply::FailEvery(3), 20));
        }
        if last_sample.elapsed() >= Duration::from_secs(30) {
            last_sample = Instant::now();
            let metrics = http_get(&metrics_url).map(|(_, b)| b).unwrap_or_default();
            let ledger = gauge(&metrics, "fluentbit_fanout_ledger_entries");
            ledger_max = ledger_max.max(ledger);
            let (rss, hwm) = rss_kib(pid);
            samples.push((started.elapsed().as_secs(), rss, hwm, ledger));
            println!(
                "  t={:>5}s sent={:>8} rss={:>6} KiB peak={:>6} KiB ledger={}",
                started.elapsed().as_secs(),
                sent.load(Ordering::Relaxed),
                rss,
                hwm,
                ledger as u64
            );
            let _ = std::io::stdout().flush();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let total = sent.load(Ordering::Relaxed);
    println!("soak: sent {total} records; waiting for the stand-ins to settle");

    // Settle: every record in both stand-ins, or 10 minutes.
    let datadog_ids = || {
        intake
            .accepted()
            .iter()
            .filter_map(|e| id_of(e["message"].as_str()?))
            .collect::<Vec<_>>()
    };
    let firehose_ids = || {
        firehose
            .accepted()
            .iter()
            .flat_map(|(_, data)| {
                String::from_utf8_lossy(data)
                    .lines()
                    .filter_map(|l| {
                        let v: Value = serde_json::from_str(l).ok()?;
                        id_of(v["log"].as_str()?)
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let settle_deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (dd_missing, _) = tally(datadog_ids().into_iter(), total);
        let (fh_missing, _) = tally(firehose_ids().into_iter(), total);
        if dd_missing == 0 && fh_missing == 0 {
            break;
        }
        if Instant::now() > settle_deadline {
            println!(
                "soak: not settled after 10 min: Datadog missing {dd_missing}, Firehose missing {fh_missing}"
            );
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // Gauges after the last flushes.
    std::thread::sleep(Duration::from_secs(5));
    let metrics = http_get(&metrics_url).map(|(_, b)| b).unwrap_or_default();
    let (rss_end, peak_end) = rss_kib(pid);
    let status = fb.terminate(Duration::from_secs(60));

    let (dd_missing, dd_twice) = tally(datadog_ids().into_iter(), total);
    let (fh_missing, fh_twice) = tally(firehose_ids().into_iter(), total);
    let ledger_end = gauge(&metrics, "fluentbit_fanout_ledger_entries");
    let in_flight_requests = gauge(&metrics, "fluentbit_fanout_requests_in_flight");
    let in_flight_bytes = gauge(&metrics, "fluentbit_fanout_in_flight_bytes");
    let retried = gauge(&metrics, "fluentbit_fanout_retried_records_total");
    let requests = gauge(&metrics, "fluentbit_fanout_requests_total");
    let peak_first = peak_after_first_cycle.unwrap_or(0);
    let growth = if peak_first > 0 {
        peak_end as f64 / peak_first as f64 - 1.0
    } else {
        0.0
    };
    println!("soak: results");
    println!("  records sent                 {total}");
    println!("  Datadog   missing / twice    {dd_missing} / {dd_twice}");
    println!("  Firehose  missing / twice    {fh_missing} / {fh_twice}");
    println!("  records retried (faults)     {retried}");
    println!("  requests                     {requests}");
    println!(
        "  peak RSS after first cycle   {:.1} MiB",
        peak_first as f64 / 1024.0
    );
    println!(
        "  peak RSS at the end          {:.1} MiB ({:+.1} %), RSS now {:.1} MiB",
        peak_end as f64 / 1024.0,
        growth * 100.0,
        rss_end as f64 / 1024.0
    );
    println!("  ledger entries max / end     {ledger_max} / {ledger_end}");
    println!(
        "  in flight at end             {in_flight_requests} requests, {in_flight_bytes} bytes"
    );
    println!("  Fluent Bit exit              {status}");
    let checks = [
        ("nothing lost", dd_missing == 0 && fh_missing == 0),
        ("nothing twice", dd_twice == 0 && fh_twice == 0),
        (
            "peak RSS within 5 % of the first cycle's",
            peak_after_first_cycle.is_some() && growth <= 0.05,
        ),
        ("ledger empty", ledger_end == 0.0),
        (
            "in-flight gauges back to 0",
            in_flight_requests == 0.0 && in_flight_bytes == 0.0,
        ),
        ("Fluent Bit exited 0", status.success()),
    ];
    let mut ok = true;
    for (check, passed) in checks {
        println!("  {} {check}", if passed { "PASS" } else { "FAIL" });
        ok &= passed;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
