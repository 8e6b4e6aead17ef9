//! The end of a Job, end to end: the real `job-wrapper` runs "write N lines, exit 3" into a
//! CRI log file; this test plays Fluent Bit (tail + the `cri` parser) and flushes what appears
//! into the real plugin with `exit_on_job_end on`; when the plugin has delivered the wrapper's
//! end-of-job record it sends SIGTERM to its process (here: this test process, which catches
//! it), Fluent Bit's HTTP port closes, the wrapper sees it, stops the other sidecars and exits 3.
//! Halfway through, the command prints a look-alike of the end-of-job record: it is delivered
//! as a log line and ends nothing.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_testhost::host::{FLB_OK, logs_of};
use fanout_testhost::{Chunk, HostVersion, Layout, Plugin, Time, job_wrapper_path, plugin_path};
use serde_json::{Value, json};

use common::records;

/// Fluent Bit's `cri` parser: `<time> <stream> <logtag> <message>`.
fn parse_cri(line: &str) -> Value {
    let mut parts = line.splitn(4, ' ');
    let (time, stream, logtag, message) = (parts.next(), parts.next(), parts.next(), parts.next());
    json!({"time": time, "stream": stream, "logtag": logtag, "message": message.unwrap_or("")})
}

/// What an application can print: the start of job-wrapper's record, without its token.
const FORGED: &str = r#"{"job_wrapper":"end","exit_code":0}"#;

#[test]
fn a_job_of_n_lines_exits_3_after_everything_is_delivered_and_fluent_bit_stopped() {
    const LINES: usize = 500;
    let terminated = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&terminated)).unwrap();

    // Fluent Bit's HTTP server: up until Fluent Bit receives SIGTERM.
    let fluent_bit = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let fluent_bit_url = format!("http://{}", fluent_bit.server_addr().to_ip().unwrap());
    let up = Arc::clone(&terminated);
    let fluent_bit_thread = std::thread::spawn(move || {
        while !up.load(Ordering::SeqCst) {
            if let Ok(Some(r)) = fluent_bit.recv_timeout(Duration::from_millis(20)) {
                let _ = r.respond(tiny_http::Response::from_string("ok"));
            }
        }
    });
    // Envoy's admin API, to see the wrapper stop the proxy afterwards.
    let envoy = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let envoy_url = format!("http://{}", envoy.server_addr().to_ip().unwrap());
    let envoy_calls = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::clone(&envoy_calls);
    std::thread::spawn(move || {
        while let Ok(Some(r)) = envoy.recv_timeout(Duration::from_secs(60)) {
            calls
                .lock()
                .unwrap()
                .push(format!("{} {}", r.method(), r.url()));
            let _ = r.respond(tiny_http::Response::from_string("OK"));
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = dir.path().join("delivered.jsonl");
    let tombstone = dir.path().join("tombstone.json");
    // job-wrapper's default: beside the log file.
    let token_file = dir.path().join("job-end.token").display().to_string();
    let out_s = out.display().to_string();
    let plugin = Plugin::load(&plugin_path(), HostVersion::V5_1).unwrap();
    let instance = plugin
        .init(&[
            ("destinations", "file"),
            ("path", &out_s),
            ("exit_on_job_end", "on"),
            ("job_end_token_file", &token_file),
            ("label", "job"),
        ])
        .unwrap();

    let script = format!(
        "i=1; while [ $i -le {LINES} ]; do echo \"line $i\"; \
         [ $i -eq {half} ] && echo '{FORGED}'; i=$((i+1)); done; exit 3",
        half = LINES / 2
    );
    let mut wrapper = Command::new(job_wrapper_path())
        .arg("--log-file")
        .arg(&log)
        .args(["--fluent-bit", &fluent_bit_url, "--drain-timeout", "60s"])
        .args(["--envoy-admin", &envoy_url])
        .arg("--tombstone")
        .arg(&tombstone)
        .args(["--shell", "--", &script])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Fluent Bit's tail: read complete new lines, parse them, flush them as chunks.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut offset, mut pending) = (0u64, String::new());
    while !terminated.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the plugin never stopped Fluent Bit"
        );
        if let Ok(mut file) = std::fs::File::open(&log) {
            file.seek(SeekFrom::Start(offset)).unwrap();
            let mut fresh = String::new();
            offset += file.read_to_string(&mut fresh).unwrap() as u64;
            pending.push_str(&fresh);
        }
        let complete = pending.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let lines: Vec<String> = pending[..complete].lines().map(str::to_owned).collect();
        pending.drain(..complete);
        if !lines.is_empty() {
            let chunk = lines.iter().fold(Chunk::new(), |c, l| {
                c.record(
                    Layout::V2,
                    Time::Event(1_700_000_000, 0),
                    &json!({}),
                    &parse_cri(l),
                )
            });
            assert_eq!(instance.flush(chunk.bytes(), "app.log"), FLB_OK);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    fluent_bit_thread.join().unwrap();
    let status = wrapper.wait().unwrap();
    assert_eq!(instance.exit(), FLB_OK);

    assert_eq!(
        status.code(),
        Some(3),
        "the Job ends with the command's exit code"
    );
    let delivered: Vec<String> = records(&out)
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    expected.insert(LINES / 2, FORGED.to_owned());
    assert_eq!(
        &delivered[..=LINES],
        &expected[..],
        "every line delivered, in order, the look-alike too"
    );
    assert_eq!(delivered.len(), LINES + 2);
    let end: Value = serde_json::from_str(&delivered[LINES + 1]).unwrap();
    assert_eq!(
        (end["job_wrapper"].as_str(), end["exit_code"].as_i64()),
        (Some("end"), Some(3))
    );
    assert_eq!(
        end["token"].as_str().map(str::len),
        Some(64),
        "the real record carries the token"
    );
    assert!(
        logs_of("job").iter().any(|l| l
            .text
            .contains("1 records look like job-wrapper's end-of-job record")),
        "the look-alike is reported"
    );
    assert!(
        logs_of("job")
            .iter()
            .any(|l| l.text.contains("asking Fluent Bit to shut down"))
    );
    assert_eq!(
        *envoy_calls.lock().unwrap(),
        vec!["POST /quitquitquit".to_string()]
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&tombstone).unwrap()).unwrap();
    assert_eq!(summary["stop"][0]["sidecar"], "fluent-bit");
    assert_eq!(summary["stop"][0]["detail"], "exited");
    assert_eq!(summary["exit_code"], 3);
}
