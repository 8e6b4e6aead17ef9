//! The EKS CronJob recipes inside a real Fluent Bit, as the kubelet would run them.
//!
//! Everything comes from the shipped files: the containers' commands, arguments, environment,
//! labels and Downward API items are read out of `deploy/eks/*.yaml` (so these tests break when
//! a manifest drifts), the Fluent Bit arguments from the manifest or else the `eks` image's
//! `CMD` in `docker/Dockerfile`, and `/fluent-bit/etc` is `fluent-bit-conf/eks/` as the image
//! copies it. Only container paths (moved under a scratch root), the HTTP port, the two
//! endpoints and the secret are substituted; the app's own command becomes a script that
//! prints lines and exits 3.
//!
//! Needs `FLUENT_BIT` (≥ 4.0.3, for filter_wasm); skipped, and said so, without it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fanout_testhost::fake_datadog::FakeDatadog;
use fanout_testhost::fluent_bit::{
    FluentBit, Release, Scratch, binary, free_port, http_get, install_artifacts, rooted,
    wait_until, with_fanout_properties, yaml_documents,
};
use fanout_testhost::moto::Moto;
use fanout_testhost::{job_wrapper_path, workspace_root};
use serde_json::Value;

const API_KEY: &str = "dd-api-key-from-a-secret";
const POD_NAME: &str = "nightly-report-29412345-x7k2p";
const POD_UID: &str = "8d3f0c1e-7b7a-4c55-9f0e-2a6d3f1b9c40";
const LINES: usize = 300;
const APP_EXIT: i32 = 3;

fn manifest(path: &str) -> Vec<Value> {
    yaml_documents(&std::fs::read_to_string(workspace_root().join(path)).unwrap())
}

/// The CronJob's namespace and pod template.
fn pod_template(documents: &[Value]) -> (String, Value) {
    let cronjob = documents
        .iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("a CronJob");
    (
        cronjob["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned(),
        cronjob["spec"]["jobTemplate"]["spec"]["template"].clone(),
    )
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The Fluent Bit container: in `containers`, or a native sidecar in `initContainers`.
fn fluent_bit_container(spec: &Value) -> &Value {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| spec[list].as_array())
        .flatten()
        .find(|c| c["name"] == "fluent-bit")
        .expect("a fluent-bit container")
}

fn app_container(spec: &Value) -> &Value {
    spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| strings(&c["command"]).first().map(String::as_str) == Some("/job-wrapper"))
        .expect("an app container run by /job-wrapper")
}

/// The `eks` image's `CMD` in docker/Dockerfile.
fn eks_image_cmd() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(workspace_root().join("docker/Dockerfile")).unwrap();
    let stage = dockerfile
        .split("\nFROM ")
        .find(|s| s.lines().next().is_some_and(|l| l.ends_with(" AS eks")))
        .expect("an eks stage");
    let cmd = stage
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD in the eks stage");
    serde_json::from_str(cmd).expect("CMD in exec form")
}

/// Writes the Downward API volume the pod spec describes into `dir`, for a pod of `labels`
/// and `annotations` in `namespace`.
fn downward_api(spec: &Value, dir: &Path, namespace: &str, template: &Value) {
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("downwardAPI").is_some())
        .expect("a Downward API volume");
    let key_values = |map: &Value| {
        let mut lines: Vec<String> = map
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", Value::String(v.as_str().unwrap().into())))
                    .collect()
            })
            .unwrap_or_default();
        lines.sort();
        lines.join("\n")
    };
    for item in volume["downwardAPI"]["items"].as_array().unwrap() {
        let content = match item["fieldRef"]["fieldPath"].as_str().unwrap() {
            "metadata.name" => POD_NAME.to_owned(),
            "metadata.namespace" => namespace.to_owned(),
            "metadata.uid" => POD_UID.to_owned(),
            "metadata.labels" => key_values(&template["metadata"]["labels"]),
            "metadata.annotations" => key_values(&template["metadata"]["annotations"]),
            other => panic!("a Downward API field the test does not know: {other}"),
        };
        std::fs::write(dir.join(item["path"].as_str().unwrap()), content).unwrap();
    }
}

/// The container's environment: `value`s as they are, secrets replaced by the test's.
fn container_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| {
                    let name = e["name"].as_str().unwrap().to_owned();
                    let value = match e["value"].as_str() {
                        Some(v) => v.to_owned(),
                        None => {
                            assert_eq!(name, "DD_API_KEY", "a secret the test does not know");
                            API_KEY.to_owned()
                        }
                    };
                    (name, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `text` with the HTTP port 2020 of the shipped files replaced by `port`.
fn with_port(text: &str, port: u16) -> String {
    text.replace(":2020", &format!(":{port}"))
        .lines()
        .map(|line| {
            if line.to_ascii_lowercase().contains("http_port") {
                line.replace("2020", &port.to_string())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A line any application can print: the start of job-wrapper's end-of-job record, without
/// the token the wrapper makes after the command exits. Fluent Bit must not stop on it.
const FORGED: &str = r#"{"job_wrapper":"end","exit_code":0}"#;

/// What the app prints: numbered lines on stdout and stderr, with a look-alike of the
/// end-of-job record halfway, then it exits 3.
fn app_script() -> String {
    format!(
        "i=1; while [ $i -le {LINES} ]; do if [ $((i % 10)) -eq 0 ]; then echo \"report line $i\" >&2; else echo \"report line $i\"; fi; \
         if [ $i -eq {half} ]; then echo '{FORGED}'; fi; i=$((i+1)); done; exit {APP_EXIT}",
        half = LINES / 2
    )
}

/// The pod, set up as the kubelet would from `manifest_path`: Fluent Bit started with the
/// image's config (or `config_override`), the Downward API files, the stand-ins.
struct Pod {
    scratch: Scratch,
    intake: FakeDatadog,
    moto: Moto,
    /// `None` until the sidecar starts ([`Pod::start_fluent_bit`]).
    fluent_bit: Option<FluentBit>,
    fluent_bit_args: Vec<String>,
    fluent_bit_env: Vec<(String, String)>,
    port: u16,
    spec: Value,
}

fn start_pod(fluent_bit: &Path, manifest_path: &str, config_override: Option<&str>) -> Pod {
    let mut pod = prepare_pod(manifest_path, config_override);
    pod.start_fluent_bit(fluent_bit);
    pod
}

/// The pod with its volumes and stand-ins, the sidecar not started yet.
fn prepare_pod(manifest_path: &str, config_override: Option<&str>) -> Pod {
    let documents = manifest(manifest_path);
    let (namespace, template) = pod_template(&documents);
    let spec = template["spec"].clone();
    let scratch = Scratch::new("eks");
    install_artifacts(&scratch);
    let intake = FakeDatadog::start();
    let moto = Moto::start();
    let service = template["metadata"]["labels"]["tags.datadoghq.com/service"]
        .as_str()
        .expect("the unified service tag label");
    moto.create_streams(
        "eks-logs",
        &[
            (&format!("logs-{service}"), &format!("prod/{service}/")),
            ("logs-unrouted", "prod/unrouted/"),
        ],
    );
    let port = free_port();

    // /fluent-bit/etc as the eks image has it.
    for entry in std::fs::read_dir(workspace_root().join("fluent-bit-conf/eks")).unwrap() {
        let path = entry.unwrap().path();
        let text = rooted(&std::fs::read_to_string(&path).unwrap(), &scratch);
        let text = with_port(&text, port);
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = if text.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            matches!(w.as_slice(), [n, "fanout"] if n.eq_ignore_ascii_case("name"))
                || matches!(w.as_slice(), ["-", "name:", "fanout"])
        }) {
            with_fanout_properties(
                &text,
                &[
                    ("dd_url", intake.url.as_str()),
                    ("endpoint", moto.url.as_str()),
                ],
            )
        } else {
            text
        };
        std::fs::write(scratch.path(&format!("/fluent-bit/etc/{name}")), text).unwrap();
    }

    let container = fluent_bit_container(&spec);
    let podinfo_mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "podinfo")
        .expect("the podinfo volume mounted in the fluent-bit container")["mountPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let podinfo = scratch.dir(&podinfo_mount);
    downward_api(&spec, &podinfo, &namespace, &template);
    scratch.dir("/var/log/app");

    let mut args = strings(&container["args"]);
    if args.is_empty() {
        args = eks_image_cmd();
    }
    if let Some(config) = config_override {
        let c = args.iter().position(|a| a == "-c").expect("-c in the args");
        args[c + 1] = config.to_owned();
    }
    let args: Vec<String> = args.iter().map(|a| rooted(a, &scratch)).collect();
    let mut env = container_env(container);
    env.extend(
        [
            ("AWS_ACCESS_KEY_ID", "AKIDEKSTEST000000000"),
            ("AWS_SECRET_ACCESS_KEY", "eks-test-secret"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Pod {
        scratch,
        intake,
        moto,
        fluent_bit: None,
        fluent_bit_args: args,
        fluent_bit_env: env,
        port,
        spec,
    }
}

impl Pod {
    fn start_fluent_bit(&mut self, binary: &Path) {
        let env: Vec<(&str, &str)> = self
            .fluent_bit_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.fluent_bit = Some(FluentBit::start(
            binary,
            &self.fluent_bit_args,
            &env,
            &self.scratch.root,
        ));
    }

    fn fluent_bit(&mut self) -> &mut FluentBit {
        self.fluent_bit.as_mut().expect("the sidecar was started")
    }

    /// Starts the app container's command: `/job-wrapper` with the manifest's flags (paths and
    /// port substituted), the app itself replaced by [`app_script`].
    fn start_app(&self) -> std::process::Child {
        self.start_app_with(&app_script(), &[])
    }

    /// The app container running `script`, with `extra_flags` after the manifest's.
    fn start_app_with(&self, script: &str, extra_flags: &[&str]) -> std::process::Child {
        let command = strings(&app_container(&self.spec)["command"]);
        let separator = command
            .iter()
            .position(|a| a == "--")
            .expect("`--` before the app's command");
        let flags: Vec<String> = command[1..separator]
            .iter()
            .map(|f| {
                with_port(&rooted(f, &self.scratch), self.port)
                    .trim_end()
                    .to_owned()
            })
            .collect();
        Command::new(job_wrapper_path())
            .args(&flags)
            .args(extra_flags)
            .args(["--", "sh", "-c", script])
            .current_dir(&self.scratch.root)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("job-wrapper starts")
    }

    /// Fluent Bit ended with `status` 0 and no error line, having delivered everything.
    fn assert_ended_cleanly(&mut self, status: std::process::ExitStatus) {
        let log = self.fluent_bit().log();
        assert!(status.success(), "Fluent Bit exited with {status}:\n{log}");
        assert!(
            !log.contains("[error]"),
            "errors in Fluent Bit's log:\n{log}"
        );
        self.assert_delivered("batch");
    }

    /// Every line of the app (the look-alike end record too) and the real end-of-job record
    /// reached both destinations once, with the pod's metadata and service.
    fn assert_delivered(&mut self, namespace: &str) {
        let service = "nightly-report";
        let expected = LINES + 2;
        let (intake, moto) = (&self.intake, &self.moto);
        wait_until(
            self.fluent_bit.as_mut().unwrap(),
            "Datadog receives every line",
            Duration::from_secs(30),
            || intake.accepted().len() >= expected,
        );
        let accepted = intake.accepted();
        assert_eq!(accepted.len(), expected, "exactly once");
        let (app, end) = accepted.split_at(LINES + 1);
        assert_eq!(
            app.iter().filter(|e| e["message"] == FORGED).count(),
            1,
            "the look-alike is delivered as a log line, and Fluent Bit kept going"
        );
        let app: Vec<&Value> = app.iter().filter(|e| e["message"] != FORGED).collect();
        // stdout and stderr are two pipes: each stream's lines keep their order.
        for stream in ["stdout", "stderr"] {
            let numbers: Vec<usize> = app
                .iter()
                .filter(|e| e["stream"] == stream)
                .map(|e| {
                    let message = e["message"].as_str().unwrap();
                    message
                        .strip_prefix("report line ")
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            let expected: Vec<usize> = (1..=LINES)
                .filter(|i| (i % 10 == 0) == (stream == "stderr"))
                .collect();
            assert_eq!(numbers, expected, "{stream}: every line, in order");
        }
        for entry in &app {
            assert_eq!(entry["service"], service);
            assert_eq!(entry["kubernetes"]["pod_name"], POD_NAME);
            assert_eq!(entry["kubernetes"]["namespace_name"], namespace);
            let tags = entry["ddtags"].as_str().unwrap();
            assert!(
                tags.split(',')
                    .any(|t| t == format!("kube_namespace:{namespace}")),
                "{tags}"
            );
        }
        let end: Value = serde_json::from_str(end[0]["message"].as_str().unwrap()).unwrap();
        assert_eq!(
            (end["job_wrapper"].as_str(), end["exit_code"].as_i64()),
            (Some("end"), Some(i64::from(APP_EXIT)))
        );
        assert_eq!(end["token"].as_str().map(str::len), Some(64));
        let objects = moto.objects("eks-logs");
        let s3: Vec<Value> = objects
            .iter()
            .filter(|(key, _)| key.starts_with(&format!("prod/{service}/")))
            .flat_map(|(_, body)| {
                body.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            s3.len(),
            expected,
            "Firehose → S3 under prod/{service}/: {objects:#?}"
        );
        assert!(s3.iter().all(|r| r["kubernetes"]["pod_name"] == POD_NAME
            && r["kubernetes"]["labels"]["tags.datadoghq.com/service"] == service));
    }
}

fn wait_child(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "job-wrapper did not exit in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// deploy/eks/cronjob.yaml: app under job-wrapper (waits for Fluent Bit's health, stops it at
/// the end), Fluent Bit with `config` from the eks image.
fn cronjob_recipe(test: &str, config_override: Option<&str>) {
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let mut pod = start_pod(&fluent_bit, "deploy/eks/cronjob.yaml", config_override);
    // Both containers start together; job-wrapper's --wait-http holds the app until Fluent
    // Bit is up.
    let mut app = pod.start_app();
    let status = wait_child(&mut app, Duration::from_secs(120));
    let mut stderr = String::new();
    std::io::Read::read_to_string(app.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(APP_EXIT),
        "the Job keeps the command's exit code; job-wrapper said:\n{stderr}\nFluent Bit:\n{}",
        pod.fluent_bit().log()
    );
    // Fluent Bit stopped itself (exit_on_job_end) and job-wrapper waited for it.
    let fb_status = pod.fluent_bit().wait_exit(Duration::from_secs(5));
    pod.assert_ended_cleanly(fb_status);
    let tombstone: Value = serde_json::from_str(
        &std::fs::read_to_string(pod.scratch.path("/var/log/app/done.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tombstone["exit_code"], APP_EXIT);
    assert_eq!(tombstone["stop"][0]["sidecar"], "fluent-bit");
    assert_eq!(tombstone["stop"][0]["detail"], "exited");
}

#[test]
fn eks_cronjob_classic_config_completes_the_job_in_fluent_bit() {
    cronjob_recipe(
        "eks_cronjob_classic_config_completes_the_job_in_fluent_bit",
        None,
    );
}

#[test]
fn eks_cronjob_yaml_config_completes_the_job_in_fluent_bit() {
    cronjob_recipe(
        "eks_cronjob_yaml_config_completes_the_job_in_fluent_bit",
        Some("/fluent-bit/etc/fluent-bit.yaml"),
    );
}

/// deploy/eks/cronjob-native-sidecar.yaml: the kubelet starts Fluent Bit, probes it on the pod
/// IP until the startupProbe passes, only then starts the app; when the app has exited it
/// sends SIGTERM to the sidecar. 127.0.0.2 stands for the pod IP: an address other than
/// 127.0.0.1, reachable only when Fluent Bit listens beyond loopback.
#[test]
fn eks_native_sidecar_passes_its_startup_probe_and_completes_the_job() {
    let test = "eks_native_sidecar_passes_its_startup_probe_and_completes_the_job";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let mut pod = start_pod(&fluent_bit, "deploy/eks/cronjob-native-sidecar.yaml", None);
    let container = fluent_bit_container(&pod.spec);
    assert_eq!(container["restartPolicy"], "Always", "a native sidecar");
    let probe = &container["startupProbe"];
    let get = &probe["httpGet"];
    assert_eq!(
        get["port"], 2020,
        "the probe targets Fluent Bit's HTTP port"
    );
    let url = format!(
        "http://127.0.0.2:{}{}",
        pod.port,
        get["path"].as_str().unwrap()
    );
    let period = Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10));
    let attempts = probe["failureThreshold"].as_u64().unwrap_or(3);
    let mut passed = false;
    for _ in 0..attempts {
        if http_get(&url).is_some_and(|(code, _)| (200..400).contains(&code)) {
            passed = true;
            break;
        }
        std::thread::sleep(period);
    }
    assert!(
        passed,
        "the startupProbe {url} never passed:\n{}",
        pod.fluent_bit().log()
    );

    let mut app = pod.start_app();
    let status = wait_child(&mut app, Duration::from_secs(120));
    assert_eq!(
        status.code(),
        Some(APP_EXIT),
        "the Job keeps the command's exit code"
    );
    // The kubelet: the main container has ended, so the sidecar gets SIGTERM (if
    // exit_on_job_end has not ended it already).
    let fb_status = pod.fluent_bit().terminate(Duration::from_secs(40));
    pod.assert_ended_cleanly(fb_status);
}

/// Lines of the burst app: ~200 bytes each, 22 MB in all.
const BURST_LINES: usize = 110_000;
/// The rotation size the burst tests set: small, so the burst spans ~25 files.
const BURST_ROTATE_BYTES: &str = "1048576";

/// An app that writes [`BURST_LINES`] numbered lines as fast as it can, then exits 3.
fn burst_script() -> String {
    format!(
        "awk 'BEGIN {{ pad = sprintf(\"%170s\", \"\"); gsub(/ /, \"x\", pad); \
         for (i = 1; i <= {BURST_LINES}; i++) print \"burst line \" i \" \" pad; exit }}'; exit {APP_EXIT}"
    )
}

/// The burst's line numbers in `messages`: each exactly once, and the end record after them.
fn assert_every_burst_line_once<'a>(what: &str, messages: impl Iterator<Item = &'a str>) {
    let mut seen = vec![0u32; BURST_LINES + 1];
    let mut ends = Vec::new();
    for message in messages {
        match message.strip_prefix("burst line ") {
            Some(rest) => {
                let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
                seen[n] += 1;
            }
            None => ends.push(message.to_owned()),
        }
    }
    let missing = (1..=BURST_LINES).filter(|n| seen[*n] == 0).count();
    let twice = (1..=BURST_LINES).filter(|n| seen[*n] > 1).count();
    assert_eq!(
        (missing, twice),
        (0, 0),
        "{what}: lines missing, lines delivered more than once (first missing: {:?})",
        (1..=BURST_LINES).find(|n| seen[*n] == 0)
    );
    assert_eq!(ends.len(), 1, "{what}: one end-of-job record: {ends:?}");
    let end: Value = serde_json::from_str(&ends[0]).unwrap();
    assert_eq!(end["exit_code"], APP_EXIT, "{what}");
}

impl Pod {
    /// Every burst line reached Datadog and S3 exactly once, and the end-of-job record.
    fn assert_burst_delivered(&mut self) {
        let expected = BURST_LINES + 1;
        let intake = &self.intake;
        wait_until(
            self.fluent_bit.as_mut().unwrap(),
            "Datadog receives the whole burst",
            Duration::from_secs(60),
            || intake.accepted().len() >= expected,
        );
        let accepted = intake.accepted();
        assert_every_burst_line_once(
            "Datadog",
            accepted.iter().map(|e| e["message"].as_str().unwrap()),
        );
        let s3: Vec<Value> = self
            .moto
            .objects("eks-logs")
            .iter()
            .filter(|(key, _)| key.starts_with("prod/nightly-report/"))
            .flat_map(|(_, body)| {
                body.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_every_burst_line_once(
            "Firehose → S3",
            s3.iter().map(|r| r["log"].as_str().unwrap()),
        );
    }

    /// The app's log files on the emptyDir, by name.
    fn log_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.scratch.path("/var/log/app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("app."))
            .collect();
        names.sort();
        names
    }
}

/// deploy/eks/cronjob-native-sidecar.yaml with a Job that writes 22 MB at once, rotated every
/// 1 MB. `fluent_bit_first`: the kubelet's order (the startupProbe passes, then the app);
/// else the app writes everything before Fluent Bit starts (a sidecar restarted, or slow to
/// pull). Either way every line reaches both destinations once and the Job keeps its code.
fn burst_in_native_sidecar(test: &str, fluent_bit_first: bool) {
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let mut pod = prepare_pod("deploy/eks/cronjob-native-sidecar.yaml", None);
    let health = format!("http://127.0.0.1:{}/api/v1/health", pod.port);
    let mut app = if fluent_bit_first {
        pod.start_fluent_bit(&fluent_bit);
        wait_until(
            pod.fluent_bit(),
            "the startup probe passes",
            Duration::from_secs(30),
            || http_get(&health).is_some_and(|(code, _)| code == 200),
        );
        pod.start_app_with(
            &burst_script(),
            &[&format!("--rotate-bytes={BURST_ROTATE_BYTES}")],
        )
    } else {
        let app = pod.start_app_with(
            &burst_script(),
            &[&format!("--rotate-bytes={BURST_ROTATE_BYTES}")],
        );
        // The command has exited (the token is made after it) and all it wrote is on disk.
        let token = pod.scratch.path("/var/log/app/job-end.token");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !token.exists() {
            assert!(Instant::now() < deadline, "the burst never ended");
            std::thread::sleep(Duration::from_millis(50));
        }
        pod.start_fluent_bit(&fluent_bit);
        app
    };
    let status = wait_child(&mut app, Duration::from_secs(180));
    let mut stderr = String::new();
    std::io::Read::read_to_string(app.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(APP_EXIT),
        "the Job keeps the command's exit code; job-wrapper said:\n{stderr}"
    );
    let fb_status = pod.fluent_bit().terminate(Duration::from_secs(40));
    let log = pod.fluent_bit().log();
    assert!(
        fb_status.success(),
        "Fluent Bit exited with {fb_status}:\n{log}"
    );
    assert!(
        !log.contains("[error]"),
        "errors in Fluent Bit's log:\n{log}"
    );
    pod.assert_burst_delivered();
    assert!(
        !stderr.contains("writing the end-of-job record anyway"),
        "job-wrapper wrote the end record before tail read every file:\n{stderr}"
    );
    let files = pod.log_files();
    assert!(
        files.len() > 20,
        "the burst was rotated every MB: {files:?}"
    );
}

#[test]
fn eks_native_sidecar_started_first_loses_nothing_of_a_22_mb_burst_rotated_every_mb() {
    burst_in_native_sidecar(
        "eks_native_sidecar_started_first_loses_nothing_of_a_22_mb_burst_rotated_every_mb",
        true,
    );
}

#[test]
fn eks_native_sidecar_started_after_a_22_mb_burst_loses_nothing() {
    burst_in_native_sidecar(
        "eks_native_sidecar_started_after_a_22_mb_burst_loses_nothing",
        false,
    );
}
