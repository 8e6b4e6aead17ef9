//! Real Fluent Bit binaries in the test loop: the plugin, the WASM filter and the shipped
//! configs run inside the host itself, exactly as users run them.
//!
//! The binaries come from the environment — `FLUENT_BIT` (a current release, e.g. 5.1.1) and
//! `FLUENT_BIT_1_9` (1.9.x, the Fluent Bit inside AWS for Fluent Bit 2.x) — so the same tests
//! run against whatever Fluent Bit a user has. A test whose variable is not set says so on
//! stderr (`real-host: SKIPPED …`) and returns; one that runs says `real-host: RAN …`. Both
//! lines are written past the test harness's output capture, so they always show and
//! `.ci/run` can count them.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which Fluent Bit a test wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `FLUENT_BIT`: a current release (4.x, 5.x).
    Current,
    /// `FLUENT_BIT_1_9`: 1.9.x, as in AWS for Fluent Bit 2.x (no log API, no filter_wasm).
    V1_9,
}

impl Release {
    pub fn variable(self) -> &'static str {
        match self {
            Release::Current => "FLUENT_BIT",
            Release::V1_9 => "FLUENT_BIT_1_9",
        }
    }
}

/// Writes one line to the test binary's real stderr, past the harness's capture.
pub fn announce(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// The binary for `release`, announcing that `test` runs on it; `None` (announced as skipped,
/// with the reason) when its variable is not set. A variable naming a missing file fails.
pub fn binary(release: Release, test: &str) -> Option<PathBuf> {
    let variable = release.variable();
    let Some(path) = std::env::var_os(variable).filter(|v| !v.is_empty()) else {
        announce(&format!(
            "real-host: SKIPPED {test}: {variable} is not set (set it to a fluent-bit binary to run this test in the real host)"
        ));
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{variable}={} is not a file",
        path.display()
    );
    let path = path.canonicalize().unwrap_or(path);
    announce(&format!("real-host: RAN {test} on {}", version(&path)));
    Some(path)
}

/// `fluent-bit --version`'s first line, e.g. `Fluent Bit v5.1.1`.
pub fn version(binary: &Path) -> String {
    let out = crate::host::target_command(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", binary.display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A scratch directory standing in for a container's file system (`/fluent-bit/etc`,
/// `/var/log/app`, …), removed on drop. Its path is lowercase: Fluent Bit's YAML loader
/// rewrites camelCase plugin paths.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "fanout-{}-{}-{}",
            name.to_ascii_lowercase(),
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("a scratch directory");
        Scratch { root }
    }

    /// `path` (absolute, as inside the container) under this root; parent directories made.
    pub fn path(&self, path: &str) -> PathBuf {
        let full = self.root.join(path.trim_start_matches('/'));
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("scratch subdirectory");
        }
        full
    }

    /// `dir` (absolute, as inside the container) created under this root.
    pub fn dir(&self, dir: &str) -> PathBuf {
        let full = self.root.join(dir.trim_start_matches('/'));
        std::fs::create_dir_all(&full).expect("scratch subdirectory");
        full
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("FANOUT_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A running Fluent Bit, its stdout and stderr captured to a file; killed on drop.
pub struct FluentBit {
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl FluentBit {
    /// Starts `binary` with `args` and exactly the given environment variables added (the
    /// AWS SDK's variables of the test process are removed first), in `dir`.
    pub fn start<I, S>(binary: &Path, args: I, env: &[(&str, &str)], dir: &Path) -> FluentBit
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = dir.join(format!("fluent-bit-{}.log", free_port()));
        let out = std::fs::File::create(&log).expect("Fluent Bit's log file");
        let mut command = crate::host::target_command(binary);
        command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        for variable in [
            "AWS_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_ENDPOINT_URL",
        ] {
            command.env_remove(variable);
        }
        command
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            );
        command.envs(env.iter().copied());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} cannot start: {e}", binary.display()));
        FluentBit {
            child,
            log,
            status: None,
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything Fluent Bit printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait on Fluent Bit");
        }
        self.status
    }

    /// Waits until `url` answers 200, failing (with Fluent Bit's log) if it exits or
    /// `timeout` passes first.
    pub fn wait_http_ok(&mut self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                panic!(
                    "Fluent Bit exited ({status}) before {url} answered:\n{}",
                    self.log()
                );
            }
            if http_get(url).is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer 200 within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for Fluent Bit to exit by itself, failing (with the log) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "Fluent Bit did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as a container runtime stops it, then waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if self.try_status().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        self.wait_exit(timeout)
    }
}

impl Drop for FluentBit {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET url` (plain HTTP/1.0, as a kubelet probe or `curl` would): status and body, or `None`
/// when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = authority.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    // Fluent Bit 1.9's server may keep the connection open after the answer: what arrived
    // before the read timeout is the answer then.
    let _ = stream.read_to_end(&mut response);
    if response.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&response);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Sends `records` to Fluent Bit's `forward` input over a unix socket, as Docker's fluentd
/// log driver does under FireLens: one Forward-mode message `[tag, [[time, record], …]]`.
pub fn forward_unix(
    socket: &Path,
    tag: &str,
    records: &[(u32, serde_json::Value)],
) -> std::io::Result<()> {
    let mut message = Vec::new();
    rmp::encode::write_array_len(&mut message, 2).unwrap();
    rmp::encode::write_str(&mut message, tag).unwrap();
    rmp::encode::write_array_len(&mut message, records.len() as u32).unwrap();
    for (time, record) in records {
        rmp::encode::write_array_len(&mut message, 2).unwrap();
        rmp::encode::write_uint(&mut message, u64::from(*time)).unwrap();
        crate::chunk::write_value(&mut message, record);
    }
    std::os::unix::net::UnixStream::connect(socket)?.write_all(&message)
}

/// Waits until `done()` holds, failing with `what` and Fluent Bit's log after `timeout`.
pub fn wait_until(
    fluent_bit: &mut FluentBit,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; Fluent Bit's log:\n{}",
            fluent_bit.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Places the built artifacts where the images put them (`docker/Dockerfile`):
/// `/fluent-bit/plugins/fanout.so`, `/fluent-bit/plugins/k8s-metadata.wasm`, and
/// `k8s-metadata.aot` beside it when `make aot` made one.
pub fn install_artifacts(scratch: &Scratch) {
    let root = crate::host::workspace_root();
    for (built, installed) in [
        (crate::host::plugin_path(), "/fluent-bit/plugins/fanout.so"),
        (
            root.join("dist/k8s-metadata.wasm"),
            "/fluent-bit/plugins/k8s-metadata.wasm",
        ),
    ] {
        assert!(
            built.exists(),
            "{} does not exist: run `make dist`",
            built.display()
        );
        std::os::unix::fs::symlink(&built, scratch.path(installed)).expect("symlink an artifact");
    }
    // Made only where WAMR's compiler is (`make aot`).
    let aot = root.join("dist/k8s-metadata.aot");
    if aot.exists() {
        std::os::unix::fs::symlink(&aot, scratch.path("/fluent-bit/plugins/k8s-metadata.aot"))
            .expect("symlink an artifact");
    }
}

/// Installs the shipped FireLens `extra.conf` and its `plugins.conf` where the `firelens` image
/// puts them (`/fluent-bit/etc/`) under `scratch`, with the `fanout` output pointed at the two
/// stand-ins; returns the installed `extra.conf`.
pub fn install_firelens_config(
    scratch: &Scratch,
    datadog_url: &str,
    firehose_url: &str,
) -> PathBuf {
    let shipped = crate::host::workspace_root().join("fluent-bit-conf/firelens");
    let extra = scratch.path("/fluent-bit/etc/extra.conf");
    let text = rooted(
        &std::fs::read_to_string(shipped.join("extra.conf")).unwrap(),
        scratch,
    );
    let text = with_fanout_properties(
        &text,
        &[("dd_url", datadog_url), ("endpoint", firehose_url)],
    );
    std::fs::write(&extra, text).unwrap();
    std::fs::write(
        scratch.path("/fluent-bit/etc/plugins.conf"),
        rooted(
            &std::fs::read_to_string(shipped.join("plugins.conf")).unwrap(),
            scratch,
        ),
    )
    .unwrap();
    extra
}

/// A shipped file's text as installed under `scratch`: the container paths it names
/// (`/fluent-bit/…`, `/var/log/app`, `/etc/podinfo`, `/var/run/…`) moved under the root.
pub fn rooted(text: &str, scratch: &Scratch) -> String {
    let root = scratch.root.display().to_string();
    ["/fluent-bit/", "/var/log/app", "/etc/podinfo", "/var/run/"]
        .iter()
        .fold(text.to_owned(), |text, path| {
            text.replace(path, &format!("{root}{path}"))
        })
}

/// Adds `properties` to the `fanout` output of a config (classic or YAML) right after its
/// name line: how a test points the shipped output at local stand-ins without touching
/// anything else. Fails if the config has no `fanout` output.
pub fn with_fanout_properties(text: &str, properties: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut found = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let words: Vec<&str> = line.split_whitespace().collect();
        let indent = line.len() - line.trim_start().len();
        match words.as_slice() {
            [name, "fanout"] if name.eq_ignore_ascii_case("name") => {
                found = true;
                for (key, value) in properties {
                    out.push_str(&format!("{}{key} {value}\n", &line[..indent]));
                }
            }
            ["-", "name:", "fanout"] => {
                found = true;
                for (key, value) in properties {
                    out.push_str(&format!("{}  {key}: {value}\n", &line[..indent]));
                }
            }
            _ => {}
        }
    }
    assert!(found, "no fanout output in:\n{text}");
    out
}

/// The documents of a YAML text, as JSON (PyYAML, which `make setup` installs with
/// kubernetes-validate): how the tests read the shipped manifests.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
