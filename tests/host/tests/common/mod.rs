//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// Every line of a JSON-lines file, parsed (a line that does not parse fails the test).
pub fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
        })
        .collect()
}

/// The `record` field of every line.
pub fn records(path: &Path) -> Vec<Value> {
    json_lines(path)
        .into_iter()
        .map(|mut l| l["record"].take())
        .collect()
}

pub fn file_props<'a>(label: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("destinations", "file"), ("path", path), ("label", label)]
}

/// Variables of the AWS SDK's configuration chain, removed from child test processes so each
/// test sees only the environment it sets.
const AWS_VARIABLES: [&str; 12] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
];

/// Set in a child test process started by [`run_in_child`].
pub const CHILD_MARKER: &str = "FANOUT_TEST_CHILD";

/// True inside a child started by [`run_in_child`]; the `#[ignore]`d inner tests return early
/// otherwise, so `cargo test -- --ignored` does not run them without their environment.
pub fn in_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// Runs the `#[ignore]`d test `name` of this test binary in a child process whose AWS
/// environment is exactly `env` (plus IMDS switched off), and fails if it fails.
pub fn run_in_child(name: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = fanout_testhost::target_command(exe);
    command.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for variable in AWS_VARIABLES {
        command.env_remove(variable);
    }
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    command.env("AWS_CONFIG_FILE", "/nonexistent/aws-config");
    command.env(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    );
    command.env(CHILD_MARKER, "1");
    command.envs(env.iter().copied());
    let output = command.output().expect("the child test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test {name} failed:\n{stdout}\n{stderr}"
    );
}

/// One bad configuration: a label (to find its log lines), the properties, and text its single
/// error line must contain.
pub type BadConfig<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// Each case must make Init return 0 and log exactly one error line, naming what is wrong and
/// never containing `secret` (when given).
pub fn assert_init_fails(
    plugin: &fanout_testhost::Plugin,
    cases: Vec<BadConfig<'_>>,
    secret: Option<&str>,
) {
    for (label, mut props, expected) in cases {
        props.push(("label", label));
        assert_eq!(
            plugin.init(&props).err(),
            Some(0),
            "{label}: Init must fail with 0"
        );
        let lines = fanout_testhost::host::logs_of(label);
        assert_eq!(lines.len(), 1, "{label}: exactly one line, got {lines:?}");
        assert_eq!(lines[0].level, 1, "{label}: logged as an error");
        assert!(
            lines[0].text.contains(expected),
            "{label}: {:?} should contain {expected:?}",
            lines[0].text
        );
        if let Some(secret) = secret {
            assert!(
                !lines[0].text.contains(secret),
                "{label}: the line shows the secret"
            );
        }
    }
}

/// An HTTPS peer on 127.0.0.1 (Python's ssl module) whose certificate is signed by a CA made
/// for the test, answering like both intakes: `X-Amz-Target` requests as Firehose
/// `PutRecordBatch` (every record accepted), others as Datadog (202). It prints one line per
/// request it answered (`firehose <records>` / `datadog`).
pub struct TlsPeer {
    pub url: String,
    /// The CA's certificate (PEM): trust it to reach the peer.
    pub ca: std::path::PathBuf,
    child: std::process::Child,
}

impl TlsPeer {
    pub fn start(dir: &Path) -> TlsPeer {
        use std::process::{Command, Stdio};
        let file = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs")
                .success();
            assert!(ok, "openssl {args:?}");
        };
        std::fs::write(
            file("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let path = |name: &str| file(name).display().to_string();
        let (ca_key, ca, key, csr, cert, ext) = (
            path("ca.key"),
            path("ca.pem"),
            path("server.key"),
            path("server.csr"),
            path("server.pem"),
            path("server.ext"),
        );
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-days", "1", "-subj", "/CN=fanout test CA"],
                &p256[..],
                &["-keyout", &ca_key, "-out", &ca],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-subj", "/CN=127.0.0.1"],
                &p256[..],
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        let server = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target"):
            n = len(json.loads(body)["Records"])
            reply = json.dumps({"FailedPutCount": 0, "Encrypted": False,
                                "RequestResponses": [{"RecordId": str(i)} for i in range(n)]}).encode()
            status, kind = 200, f"firehose {n}"
        else:
            reply, status, kind = b"{}", 202, "datadog"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        print(kind, flush=True)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = Command::new("python3")
            .args(["-c", server])
            .arg(file("server.pem"))
            .arg(file("server.key"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut port = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut port).unwrap();
        child.stdout = Some(stdout.into_inner());
        TlsPeer {
            url: format!("https://127.0.0.1:{}", port.trim()),
            ca: file("ca.pem"),
            child,
        }
    }

    /// Stops the peer and returns the lines it printed, one per request answered.
    pub fn answered(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        let _ = self.child.wait();
        text.lines().map(str::to_owned).collect()
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP forward proxy on 127.0.0.1 that records what reaches it: the request head of every
/// connection (a plain-HTTP request, or `CONNECT host:port`) and every byte the client sent.
/// `CONNECT` is tunnelled to its target, as real proxies do; anything else is answered 502.
pub struct ForwardProxy {
    pub url: String,
    seen: Seen,
}

/// Per connection: the request's first line, and every byte the client sent.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

impl ForwardProxy {
    pub fn start() -> ForwardProxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { break };
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let line = text.lines().next().unwrap_or("").to_owned();
                    let index = {
                        let mut seen = record.lock().unwrap();
                        seen.push((line.clone(), head.clone()));
                        seen.len() - 1
                    };
                    let target = line
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split(' ').next());
                    let Some(Ok(mut upstream)) = target.map(TcpStream::connect) else {
                        let _ = client.write_all(
                            b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                        // Read the body too, so a key in it is seen.
                        let _ =
                            client.set_read_timeout(Some(std::time::Duration::from_millis(500)));
                        let mut rest = Vec::new();
                        let _ = client.read_to_end(&mut rest);
                        record.lock().unwrap()[index].1.extend_from_slice(&rest);
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let (mut from_client, mut to_client) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut to_client, &mut client);
                    });
                    let mut buffer = [0u8; 16 * 1024];
                    loop {
                        match from_client.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                record.lock().unwrap()[index]
                                    .1
                                    .extend_from_slice(&buffer[..n]);
                                if upstream.write_all(&buffer[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = upstream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        ForwardProxy { url, seen }
    }

    /// The first line of every request that reached the proxy.
    pub fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// Whether `text` passed through the proxy in clear, in any request.
    pub fn saw(&self, text: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, bytes)| bytes.windows(text.len()).any(|w| w == text.as_bytes()))
    }
}
