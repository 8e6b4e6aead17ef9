//! The built `job-wrapper` binary with real child processes, signals, files and HTTP(S)
//! servers on 127.0.0.1 standing in for each sidecar's API.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const WRAPPER: &str = env!("CARGO_BIN_EXE_job-wrapper");

fn wrapper(args: &[&str]) -> Command {
    // Under emulation (`make test-aarch64`) the emulator starts the wrapper: an emulated
    // process cannot start another emulated binary by itself without binfmt_misc.
    let runner = std::env::var("FANOUT_TEST_RUNNER").unwrap_or_default();
    let mut runner = runner.split_whitespace();
    let mut c = match runner.next() {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.args(runner).arg(WRAPPER);
            c
        }
        None => Command::new(WRAPPER),
    };
    c.args(args);
    // The tests' own options come from flags only.
    for (k, _) in std::env::vars() {
        if k.starts_with("JOB_WRAPPER_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(args: &[&str]) -> Output {
    wrapper(args).output().expect("job-wrapper runs")
}

/// (stream, P|F, text) of every CRI line in a file.
fn cri(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let time = parts.next().unwrap();
            assert!(
                time.ends_with('Z') && time.len() == 30,
                "RFC3339 with nanoseconds: {time}"
            );
            let (stream, tag, text) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
            );
            (stream.to_owned(), tag.to_owned(), text.to_owned())
        })
        .collect()
}

fn end_record(lines: &[(String, String, String)]) -> Value {
    serde_json::from_str(&lines.last().expect("an end-of-job record").2).unwrap()
}

fn wait_for(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "{text:?} never appeared in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn exit_codes_are_the_commands() {
    for (script, code) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 3", 3),
        ("kill -9 $$", 137),
    ] {
        let out = run(&["--shell", "--", script]);
        assert_eq!(out.status.code(), Some(code), "{script}");
    }
    assert_eq!(
        run(&["--", "/nonexistent/command"]).status.code(),
        Some(127)
    );
    // Without --shell the command runs directly, arguments intact.
    let out = run(&["--", "printf", "%s|%s", "a b", "c"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|c");
}

#[test]
fn sigterm_is_forwarded_and_gives_143() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut child = wrapper(&[
        "--log-file",
        log.to_str().unwrap(),
        "--shell",
        "--",
        "echo started; exec sleep 30",
    ])
    .spawn()
    .unwrap();
    wait_for(&log, "started");
    signal(&child, 15);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(end_record(&cri(&log))["signal"], 15);
}

#[test]
fn a_command_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut child = wrapper(&[
        "--log-file",
        log.to_str().unwrap(),
        "--term-grace",
        "300ms",
        "--shell",
        "--",
        "trap '' TERM; echo started; sleep 30",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(&log, "started");
    signal(&child, 15);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("did not stop within 300ms"), "{stderr}");
}

#[test]
fn stdout_and_stderr_keep_identity_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo out $i; sleep 0.02; echo err $i >&2; sleep 0.02; done";
    let out = run(&["--log-file", log.to_str().unwrap(), "--shell", "--", script]);
    assert_eq!(out.status.code(), Some(0));
    let lines = cri(&log);
    let expected: Vec<(String, String, String)> = (1..=10)
        .flat_map(|i| {
            [
                ("stdout".to_string(), "F".to_string(), format!("out {i}")),
                ("stderr".to_string(), "F".to_string(), format!("err {i}")),
            ]
        })
        .collect();
    assert_eq!(&lines[..20], &expected[..]);
    // Passed through on the matching streams, for `kubectl logs`.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("out 10") && !stdout.contains("err"));
    assert!(stderr.contains("err 10") && !stderr.contains("out"));
    assert_eq!(end_record(&lines)["stdout_lines"], 10);
}

#[test]
fn long_lines_are_split_with_p_and_unterminated_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let script = "head -c 40000 /dev/zero | tr '\\0' a; echo; printf tail";
    let out = run(&[
        "--log-file",
        log.to_str().unwrap(),
        "--max-line-bytes",
        "16384",
        "--shell",
        "--",
        script,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let lines = cri(&log);
    let shape: Vec<(&str, usize)> = lines[..4]
        .iter()
        .map(|(_, tag, text)| (tag.as_str(), text.len()))
        .collect();
    assert_eq!(
        shape,
        vec![("P", 16384), ("P", 16384), ("F", 7232), ("F", 4)]
    );
    assert_eq!(lines[3].2, "tail");
}

#[test]
fn rotation_under_load_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let script = "i=0; while [ $i -lt 20000 ]; do echo \"line $i padding-padding-padding-padding-padding-padding\"; i=$((i+1)); done";
    let out = run(&[
        "--log-file",
        log.to_str().unwrap(),
        "--rotate-bytes",
        "100000",
        "--rotate-keep",
        "100",
        "--shell",
        "--",
        script,
    ]);
    assert_eq!(out.status.code(), Some(0));
    // app.log, then app.1.log, app.2.log, …: nothing renamed.
    let mut generations: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_owned();
            let n = match name.as_str() {
                "app.log" => 0,
                _ => name
                    .strip_prefix("app.")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?,
            };
            Some((n, path))
        })
        .collect();
    assert!(generations.len() >= 10, "{} rotations", generations.len());
    generations.sort_by_key(|g| g.0);
    let mut all = Vec::new();
    for (_, path) in &generations {
        all.extend(cri(path));
    }
    let numbers: Vec<usize> = all
        .iter()
        .filter(|(_, _, text)| text.starts_with("line "))
        .map(|(_, _, text)| text.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..20000).collect::<Vec<_>>(),
        "every line once, in order, across the files"
    );
}

/// A plain HTTP server recording (method, path) of every request, answering `status`.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    _thread: std::thread::JoinHandle<()>,
}

fn recorder(status: u16) -> Recorder {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let thread = std::thread::spawn(move || {
        while let Ok(Some(request)) = server.recv_timeout(Duration::from_secs(60)) {
            record
                .lock()
                .unwrap()
                .push((request.method().to_string(), request.url().to_string()));
            let _ = request.respond(
                tiny_http::Response::from_string("{\"ok\":true}").with_status_code(status),
            );
        }
    });
    Recorder {
        url,
        seen,
        _thread: thread,
    }
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[test]
fn sidecars_are_stopped_and_failures_never_change_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let tombstone = dir.path().join("tombstone.json");
    let (envoy, istio, linkerd, fluentd, extra) = (
        recorder(200),
        recorder(200),
        recorder(200),
        recorder(200),
        recorder(200),
    );
    let broken = closed_port_url();
    let stop_urls = format!("{}/custom/stop,{broken}/gone", extra.url);
    let out = run(&[
        "--envoy-admin",
        &envoy.url,
        "--istio-agent",
        &istio.url,
        "--linkerd-admin",
        &linkerd.url,
        "--fluentd-rpc",
        &fluentd.url,
        "--stop-url",
        &stop_urls,
        "--stop-timeout",
        "2s",
        "--tombstone",
        tombstone.to_str().unwrap(),
        "--shell",
        "--",
        "exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let post = |path: &str| vec![("POST".to_string(), path.to_string())];
    assert_eq!(*envoy.seen.lock().unwrap(), post("/quitquitquit"));
    assert_eq!(*istio.seen.lock().unwrap(), post("/quitquitquit"));
    assert_eq!(*linkerd.seen.lock().unwrap(), post("/shutdown"));
    assert_eq!(
        *fluentd.seen.lock().unwrap(),
        post("/api/processes.flushBuffersAndKillWorkers")
    );
    assert_eq!(*extra.seen.lock().unwrap(), post("/custom/stop"));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&tombstone).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 3);
    let steps: Vec<(String, bool)> = summary["stop"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["sidecar"].as_str().unwrap().to_owned(),
                s["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    // Log shippers first, proxies last; the broken URL is reported, not fatal.
    let order: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        order,
        vec!["fluentd", "url", "url", "envoy", "istio", "linkerd"]
    );
    assert_eq!(steps.iter().filter(|(_, ok)| !ok).count(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/gone) failed"));
}

#[test]
fn a_sidecar_that_never_becomes_ready() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let ran = dir.path().join("ran");
    let never = closed_port_url();
    let touch = format!("touch {}", ran.display());
    let out = run(&[
        "--wait-http",
        &never,
        "--wait-timeout",
        "700ms",
        "--log-file",
        log.to_str().unwrap(),
        "--shell",
        "--",
        &touch,
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(!ran.exists(), "the command did not run");
    let end = end_record(&cri(&log));
    assert!(end["error"].as_str().unwrap().contains("not ready"));

    let out = run(&[
        "--wait-http",
        &never,
        "--wait-timeout",
        "300ms",
        "--on-wait-timeout",
        "continue",
        "--shell",
        "--",
        &touch,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(ran.exists());

    let ready = recorder(200);
    let out = run(&[
        "--wait-http",
        &format!("{}/api/v1/health", ready.url),
        "--shell",
        "--",
        "exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(ready.seen.lock().unwrap()[0].1, "/api/v1/health");
}

#[test]
fn fluent_bit_is_waited_for_until_it_exits() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    // Fluent Bit stand-in: answers for 1.2 s from the wrapper's first look (its clock starts
    // before that), then exits (its port closes). A guard ends it if nobody ever asks.
    let fake = std::thread::spawn(move || {
        let guard = Instant::now() + Duration::from_secs(30);
        let mut until = None;
        while until.is_none_or(|until| Instant::now() < until) && Instant::now() < guard {
            if let Ok(Some(r)) = server.recv_timeout(Duration::from_millis(50)) {
                until.get_or_insert_with(|| Instant::now() + Duration::from_millis(1200));
                let _ = r.respond(tiny_http::Response::from_string("ok"));
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tombstone = dir.path().join("t.json");
    let out = run(&[
        "--fluent-bit",
        &url,
        "--tombstone",
        tombstone.to_str().unwrap(),
        "--shell",
        "--",
        "exit 0",
    ]);
    fake.join().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&tombstone).unwrap()).unwrap();
    assert_eq!(summary["stop"][0]["sidecar"], "fluent-bit");
    assert_eq!(summary["stop"][0]["detail"], "exited");
    assert!(summary["stop"][0]["millis"].as_u64().unwrap() >= 1000);
}

/// The Datadog Agent's IPC API: HTTPS with a self-signed certificate (Python's ssl module)
/// that accepts `POST /agent/stop` only with the right Bearer token.
#[test]
fn the_datadog_agent_is_stopped_with_its_token_over_self_signed_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let token = "a".repeat(64);
    let token_file = dir.path().join("auth_token");
    std::fs::write(&token_file, &token).unwrap();
    let calls = dir.path().join("calls");
    let agent = r#"
import http.server, ssl, sys
token, calls = sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        ok = self.path == "/agent/stop" and self.headers.get("Authorization") == "Bearer " + token
        with open(calls, "a") as f: f.write(("authorized" if ok else "refused") + "\n")
        self.send_response(200 if ok else 401); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'""')
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.timeout = 0.2
import time; end = time.time() + 30
while time.time() < end: s.handle_request()
"#;
    let mut server = Command::new("python3")
        .args(["-c", agent])
        .arg(&cert)
        .arg(&key)
        .arg(&token)
        .arg(&calls)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let url = format!("https://localhost:{}", port.trim());
    let tombstone = dir.path().join("t.json");
    // A proxy in the environment never sees the agent's token: nothing listens there, so a
    // request through it would fail.
    let proxy = closed_port_url();
    let args = |token_path: &Path| {
        wrapper(&[
            "--datadog-agent",
            &url,
            "--datadog-auth-token",
            token_path.to_str().unwrap(),
            "--datadog-catch-up",
            "0s",
            "--tombstone",
            tombstone.to_str().unwrap(),
            "--shell",
            "--",
            "exit 2",
        ])
        .env("HTTPS_PROXY", &proxy)
        .env("https_proxy", &proxy)
        .env("ALL_PROXY", &proxy)
        .output()
        .unwrap()
    };
    let out = args(&token_file);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = dir.path().join("wrong_token");
    std::fs::write(&wrong, "b".repeat(64)).unwrap();
    let refused = args(&wrong);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a refused stop does not change the exit code"
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "authorized\nrefused\n"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&tombstone).unwrap()).unwrap();
    assert_eq!(summary["stop"][0]["detail"], "HTTP 401");
}

/// The child's exit status once it exits; killed, failing with `failure`, after 20 s.
fn exit_within(child: &mut Child, failure: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{failure}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_while_waiting_for_the_sidecars_ends_the_wrapper_without_running_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let ran = dir.path().join("ran");
    // Never ready; its first request says the wrapper is waiting (its handlers are installed
    // before it waits for anything).
    let never = recorder(503);
    let touch = format!("touch {}", ran.display());
    let mut child = wrapper(&[
        "--wait-http",
        &never.url,
        "--wait-timeout",
        "60s",
        "--log-file",
        log.to_str().unwrap(),
        "--shell",
        "--",
        &touch,
    ])
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let guard = Instant::now() + Duration::from_secs(30);
    while never.seen.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < guard,
            "job-wrapper never asked the sidecar"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, 15);
    let status = exit_within(
        &mut child,
        "job-wrapper ignored SIGTERM while waiting for the sidecars",
    );
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(!ran.exists(), "the command never ran");
    let end = end_record(&cri(&log));
    assert_eq!(end["signal"], 15);
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .contains("before the command started")
    );
}

#[test]
fn sigterm_reaches_a_command_that_floods_its_output() {
    // `yes` keeps both the wrapper's pipe and its own stdout busy; the TERM must still be
    // forwarded promptly (the shell's trap turns it into exit 7).
    let mut child = wrapper(&[
        "--shell",
        "--",
        "trap 'exit 7' TERM; echo started >&2; yes flood-flood-flood-flood-flood-flood & wait",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The flood is read from the start: a pipe nobody reads would stop the wrapper's output,
    // stderr included.
    let mut stdout = child.stdout.take().unwrap();
    let drained = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&drained);
    let drain = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut first = Vec::new();
        loop {
            let n = stdout.read(&mut buffer)?;
            if n == 0 {
                return Ok::<Vec<u8>, std::io::Error>(first);
            }
            if first.len() < 64 {
                first.extend_from_slice(&buffer[..n.min(64)]);
            }
            counter.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut started = [0u8; 8];
    child
        .stderr
        .take()
        .unwrap()
        .read_exact(&mut started)
        .unwrap();
    // The flood has reached the wrapper's output: 1 MiB of it read.
    let guard = Instant::now() + Duration::from_secs(60);
    while drained.load(std::sync::atomic::Ordering::SeqCst) < 1 << 20 {
        assert!(
            Instant::now() < guard,
            "the flood never reached the wrapper's output"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&child, 15);
    let status = exit_within(
        &mut child,
        "SIGTERM was never forwarded to a command flooding its output",
    );
    assert_eq!(status.code(), Some(7));
    let first = drain.join().unwrap().unwrap();
    assert!(first.starts_with(b"flood-flood"), "{first:?}");
}

#[test]
fn the_end_of_job_token_is_made_after_the_command_and_files_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let token_file = dir.path().join("job-end.token");
    let tombstone = dir.path().join("done.json");
    std::fs::write(&token_file, "left by an earlier run").unwrap();
    // The command looks for the token while it runs, and prints a look-alike end record.
    let script = format!(
        "if [ -e {0} ]; then echo token-visible; else echo no-token; fi; echo '{{\"job_wrapper\":\"end\",\"exit_code\":0}}'; exit 5",
        token_file.display()
    );
    let out = run(&[
        "--log-file",
        log.to_str().unwrap(),
        "--tombstone",
        tombstone.to_str().unwrap(),
        "--shell",
        "--",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(5));
    let lines = cri(&log);
    assert_eq!(
        lines[0].2, "no-token",
        "the old token is gone before the command starts"
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 64);
    let end = end_record(&lines);
    assert_eq!(
        end["token"],
        token.as_str(),
        "the real end record carries it"
    );
    assert_eq!(end["exit_code"], 5);
    let forged: Value = serde_json::from_str(&lines[1].2).unwrap();
    assert!(forged.get("token").is_none());
    for path in [&log, &token_file, &tombstone] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}", path.display());
    }

    // --file-mode and --end-token-file.
    let other = dir.path().join("other.token");
    let log2 = dir.path().join("second.log");
    let out = run(&[
        "--log-file",
        log2.to_str().unwrap(),
        "--file-mode",
        "600",
        "--end-token-file",
        other.to_str().unwrap(),
        "--shell",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0));
    for path in [&log2, &other] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    assert_eq!(
        end_record(&cri(&log2))["token"],
        std::fs::read_to_string(&other).unwrap().as_str()
    );
    let bad = run(&["--file-mode", "rw-r-----", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A small tmpfs mounted for a test, unmounted when dropped; `None` where mounting is not
/// allowed (the tests need root).
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, options: &str) -> Option<SmallDisk> {
        let path = dir.join("small");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !mounted {
            // Straight to stderr, past the harness's capture: `.ci/run` counts the test as
            // skipped, not passed.
            use std::io::Write;
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: cannot mount a tmpfs here (needs root)"
            );
        }
        mounted.then_some(SmallDisk { path })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Runs a command printing 1000 numbered lines through the wrapper with `--log-file log`: 500,
/// then it says "waiting" on stderr, `relief` runs (the disk trouble ends), then 500 more.
/// Returns the expected lines, stdout, stderr and the exit code.
fn through_disk_trouble(
    log: &Path,
    extra: &[&str],
    relief: impl FnOnce() + Send + 'static,
) -> (Vec<String>, String, String, Option<i32>) {
    let go = log.with_file_name("..").join("go");
    let _ = std::fs::remove_file(&go);
    let script = format!(
        "i=1; while [ $i -le 500 ]; do echo \"line $i $(printf '%080d' $i)\"; i=$((i+1)); done; \
         echo waiting >&2; while [ ! -e {go} ]; do sleep 0.05; done; \
         while [ $i -le 1000 ]; do echo \"line $i $(printf '%080d' $i)\"; i=$((i+1)); done",
        go = go.display()
    );
    let mut args = vec!["--log-file", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--shell", "--", &script]);
    let mut child = wrapper(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        let mut relief = Some(relief);
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
            if text.contains("waiting")
                && let Some(relief) = relief.take()
            {
                relief();
                std::fs::write(&go, "").unwrap();
            }
        }
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let stderr = stderr_thread.join().unwrap();
    let expected = (1..=1000).map(|i| format!("line {i} {i:080}")).collect();
    (expected, stdout, stderr, status.code())
}

/// `texts` are `expected` then the end-of-job record; on a mismatch, says where.
fn assert_app_lines_then_end(texts: &[String], expected: &[String], what: &str) {
    let app = &texts[..texts.len().saturating_sub(1)];
    if let Some(i) = (0..app.len().max(expected.len())).find(|&i| app.get(i) != expected.get(i)) {
        panic!(
            "{what}: {} lines against {} expected; first difference at {i}: {:?} instead of {:?}",
            app.len(),
            expected.len(),
            app.get(i),
            expected.get(i)
        );
    }
}

/// The stdout lines of CRI files, oldest file first.
fn stdout_texts(files: &[std::path::PathBuf]) -> (Vec<String>, Vec<(String, String, String)>) {
    let lines: Vec<(String, String, String)> = files.iter().flat_map(|f| cri(f)).collect();
    let texts = lines
        .iter()
        .filter(|(stream, _, _)| stream == "stdout")
        .map(|(_, _, text)| text.clone())
        .collect();
    (texts, lines)
}

/// A real full disk: a small tmpfs, nearly filled. The log file runs out of space part-way
/// through a line, then space comes back. Every line reaches stdout meanwhile, and the file
/// ends with every line whole, in order, none merged.
#[test]
fn a_full_disk_mid_line_loses_and_merges_nothing_once_space_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(dir.path(), "size=256k") else {
        return;
    };
    // Leave ~16 KiB free.
    let filler = disk.path.join("filler");
    std::fs::write(&filler, vec![b'x'; 240 * 1024]).unwrap();
    let log = disk.path.join("app.log");
    let (expected, stdout, stderr, code) =
        through_disk_trouble(&log, &["--rotate-bytes", "0"], move || {
            std::fs::remove_file(&filler).unwrap();
        });
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.lines().eq(expected.iter().map(String::as_str)),
        "the pass-through never stopped"
    );
    assert!(stderr.contains("cannot write the log file"), "{stderr}");
    assert!(stderr.contains("writable again"), "{stderr}");
    let (texts, lines) = stdout_texts(std::slice::from_ref(&log));
    assert_app_lines_then_end(&texts, &expected, "every line whole, in order, none merged");
    assert_eq!(end_record(&lines)["job_wrapper"], "end");
}

/// Rotation starts a new file, which cannot be created (no inode left). Lines wait in memory,
/// the file is created once it can be, and the generations hold every line once.
#[test]
fn a_failed_re_create_after_rotation_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The root, app.log and two fillers use every inode.
    let Some(disk) = SmallDisk::mount(dir.path(), "size=4m,nr_inodes=4") else {
        return;
    };
    let log = disk.path.join("app.log");
    std::fs::write(&log, "").unwrap();
    let fillers = [disk.path.join("filler1"), disk.path.join("filler2")];
    for f in &fillers {
        std::fs::write(f, "").unwrap();
    }
    let (expected, stdout, stderr, code) = through_disk_trouble(
        &log,
        &["--rotate-bytes", "60000", "--rotate-keep", "3"],
        move || {
            for f in &fillers {
                std::fs::remove_file(f).unwrap();
            }
        },
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1000);
    assert!(stderr.contains("cannot write the log file"), "{stderr}");
    let generations: Vec<std::path::PathBuf> = ["app.log", "app.1.log", "app.2.log"]
        .iter()
        .map(|n| disk.path.join(n))
        .filter(|p| p.exists())
        .collect();
    assert!(generations.len() >= 2, "rotated: {generations:?}");
    let (texts, lines) = stdout_texts(&generations);
    assert_app_lines_then_end(
        &texts,
        &expected,
        "every line once, in order, across the generations",
    );
    assert_eq!(end_record(&lines)["job_wrapper"], "end");
}

/// A self-signed, CA-capable EC certificate like the agent's `ipc_cert.pem`: (cert, SEC1 key).
fn agent_like_certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, pkcs8, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.p8")),
        dir.join(format!("{name}.key")),
    );
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=datadog-agent-ipc",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
        ])
        .arg(&pkcs8)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let sec1 = Command::new("openssl")
        .args(["ec", "-in"])
        .arg(&pkcs8)
        .arg("-out")
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(sec1.success());
    (cert, key)
}

/// Agent 7.62+: `ipc_cert.pem` next to the token pins the server's certificate and is the
/// client certificate (the stand-in requires it). A process on the agent's port with another
/// certificate never receives the token.
#[test]
fn with_ipc_cert_pem_only_the_agent_itself_gets_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_cert, agent_key) = agent_like_certificate(dir.path(), "agent");
    let (other_cert, other_key) = agent_like_certificate(dir.path(), "impostor");
    let shared = dir.path().join("dd-ipc");
    std::fs::create_dir(&shared).unwrap();
    let token = "c".repeat(64);
    let token_file = shared.join("auth_token");
    std::fs::write(&token_file, &token).unwrap();
    // ipc_cert.pem: certificate then EC PRIVATE KEY, as the agent writes it.
    let pem = std::fs::read_to_string(&agent_cert).unwrap()
        + &std::fs::read_to_string(&agent_key).unwrap();
    assert!(pem.contains("BEGIN EC PRIVATE KEY"));
    std::fs::write(shared.join("ipc_cert.pem"), pem).unwrap();
    let agent = r#"
import http.server, ssl, sys
cert, key, client_ca, calls = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        with open(calls, "a") as f: f.write(self.headers.get("Authorization", "none") + "\n")
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'""')
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
ctx.verify_mode = ssl.CERT_REQUIRED; ctx.load_verify_locations(client_ca)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.timeout = 0.2
import time; end = time.time() + 30
while time.time() < end:
    try: s.handle_request()
    except Exception: pass
"#;
    let serve = |cert: &Path, key: &Path, calls: &Path| {
        let mut server = Command::new("python3")
            .args(["-c", agent])
            .arg(cert)
            .arg(key)
            .arg(&agent_cert)
            .arg(calls)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().unwrap()),
            &mut port,
        )
        .unwrap();
        (server, format!("https://localhost:{}", port.trim()))
    };
    let stop = |url: &str, tombstone: &Path| {
        let out = run(&[
            "--datadog-agent",
            url,
            "--datadog-auth-token",
            token_file.to_str().unwrap(),
            "--datadog-catch-up",
            "0s",
            "--tombstone",
            tombstone.to_str().unwrap(),
            "--shell",
            "--",
            "exit 0",
        ]);
        assert_eq!(out.status.code(), Some(0));
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(tombstone).unwrap()).unwrap();
        summary["stop"][0].clone()
    };

    let calls = dir.path().join("agent-calls");
    let (mut server, url) = serve(&agent_cert, &agent_key, &calls);
    let step = stop(&url, &dir.path().join("t1.json"));
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(step["ok"], true, "{step}");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!("Bearer {token}\n"),
        "the agent, requiring the client certificate, got the token"
    );

    let stolen = dir.path().join("impostor-calls");
    let (mut impostor, url) = serve(&other_cert, &other_key, &stolen);
    let step = stop(&url, &dir.path().join("t2.json"));
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(step["ok"], false, "{step}");
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("not the agent's ipc_cert.pem"),
        "{step}"
    );
    assert!(
        std::fs::read_to_string(&stolen)
            .unwrap_or_default()
            .is_empty(),
        "the impostor never saw a request"
    );
}

#[test]
fn version_is_the_release() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("job-wrapper {}\n", env!("CARGO_PKG_VERSION"))
    );
}
