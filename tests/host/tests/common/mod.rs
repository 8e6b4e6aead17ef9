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
    let mut command = std::process::Command::new(exe);
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
