//! What cannot run here is checked by the real validators: the Kubernetes manifests against
//! the Kubernetes API schemas (kubernetes-validate, strict), the ECS task definition against
//! the ECS API model (botocore, offline), the Dockerfile with hadolint. Each validator is also
//! shown a broken copy, to prove it is really checking.

use std::path::{Path, PathBuf};
use std::process::Command;

use fanout_testhost::workspace_root;

fn file(path: &str) -> PathBuf {
    workspace_root().join(path)
}

fn run(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} cannot run: {e} (make setup installs it)"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn kubernetes_validate(path: &Path) -> (bool, String) {
    run(Command::new("kubernetes-validate")
        .args(["-k", "1.33.0", "--strict"])
        .arg(path))
}

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    for manifest in [
        "deploy/eks/cronjob.yaml",
        "deploy/eks/cronjob-native-sidecar.yaml",
    ] {
        let (ok, output) = kubernetes_validate(&file(manifest));
        assert!(ok, "{manifest}: {output}");
        assert!(output.contains("passed"), "{output}");
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(file("deploy/eks/cronjob.yaml")).unwrap();
    std::fs::write(
        &broken,
        text.replace("restartPolicy: Never", "restartPolicyy: Never"),
    )
    .unwrap();
    assert!(
        !kubernetes_validate(&broken).0,
        "a misspelled field is rejected"
    );
}

const VALIDATE_ECS: &str = r#"
import json, sys, botocore.session
from botocore.validate import ParamValidator
shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
report = ParamValidator().validate(json.load(open(sys.argv[1])), shape)
if report.has_errors():
    sys.exit(report.generate_report())
"#;

#[test]
fn the_ecs_task_definition_matches_the_ecs_api_model() {
    let path = file("deploy/ecs/task-definition.json");
    let (ok, output) = run(Command::new("python3")
        .args(["-c", VALIDATE_ECS])
        .arg(&path));
    assert!(ok, "{output}");
    let task: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let router = &task["containerDefinitions"][0];
    assert_eq!(
        router["firelensConfiguration"]["options"]["config-file-value"],
        "/fluent-bit/etc/extra.conf"
    );
    assert!(
        router["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "DD_API_KEY")
    );
    let dockerfile = std::fs::read_to_string(file("docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains(
        "fluent-bit-conf/firelens/extra.conf fluent-bit-conf/firelens/plugins.conf /fluent-bit/etc/"
    ));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &broken,
        text.replace("\"essential\": true", "\"essential\": \"yes\""),
    )
    .unwrap();
    assert!(
        !run(Command::new("python3")
            .args(["-c", VALIDATE_ECS])
            .arg(&broken))
        .0,
        "a wrong type is rejected"
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let (ok, output) = run(Command::new("hadolint").arg(file("docker/Dockerfile")));
    assert!(ok, "{output}");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("Dockerfile");
    std::fs::write(
        &broken,
        "FROM debian\nRUN cd /tmp && apt-get install curl\n",
    )
    .unwrap();
    assert!(
        !run(Command::new("hadolint").arg(&broken)).0,
        "hadolint flags a bad Dockerfile"
    );
}

/// A multi-architecture build (`docker buildx --platform linux/amd64,linux/arm64`) runs the
/// build stage on the build machine and must make each image's artifacts for that image's
/// architecture. Docker cannot run here: the stage's own `make` line is run as BuildKit would
/// run it for each TARGETARCH, with `make -n`, and the builds it would do are read off.
#[test]
fn the_dockerfile_builds_the_artifacts_for_each_target_architecture() {
    let dockerfile = std::fs::read_to_string(file("docker/Dockerfile")).unwrap();
    let stage: Vec<&str> = dockerfile
        .lines()
        .skip_while(|l| !(l.starts_with("FROM ") && l.ends_with(" AS build")))
        .take_while(|l| !l.starts_with("# ---"))
        .collect();
    assert!(
        stage[0].contains("--platform=$BUILDPLATFORM"),
        "the build stage runs on the build machine, not emulated: {}",
        stage[0]
    );
    assert!(stage.contains(&"ARG TARGETARCH"), "{stage:#?}");
    let make = stage
        .iter()
        .find_map(|l| l.strip_prefix("RUN ").filter(|c| c.contains("make dist")))
        .expect("the build stage runs `make dist`");
    for (docker_arch, arch) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let (ok, plan) = run(Command::new("sh")
            .arg("-c")
            .arg(make.replacen("make ", "make -n ", 1))
            .env("TARGETARCH", docker_arch)
            .current_dir(workspace_root()));
        assert!(ok, "{plan}");
        for expected in [
            format!("zigbuild --release -p fanout --target {arch}-unknown-linux-gnu.2.26"),
            format!("zigbuild --release -p job-wrapper --target {arch}-unknown-linux-musl"),
            format!("target/{arch}-unknown-linux-gnu/release/libfanout.so dist/fanout.so"),
            format!("target/{arch}-unknown-linux-musl/release/job-wrapper dist/job-wrapper"),
        ] {
            assert!(
                plan.contains(&expected),
                "TARGETARCH={docker_arch}: no `{expected}` in\n{plan}"
            );
        }
    }
    // An architecture no release is built for stops the build rather than shipping another's.
    let (ok, output) = run(Command::new("sh")
        .arg("-c")
        .arg(make.replacen("make ", "make -n ", 1))
        .env("TARGETARCH", "s390x")
        .current_dir(workspace_root()));
    assert!(!ok && output.contains("only x86_64"), "{output}");
}

/// The README's table of default images names what the Dockerfile builds from: a base image
/// changed in one place and not the other would tell users the wrong Fluent Bit.
#[test]
fn the_readme_names_the_dockerfiles_default_images() {
    let dockerfile = std::fs::read_to_string(file("docker/Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(file("README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("**Default images**"))
        .take_while(|l| !l.starts_with("**Architectures:**"))
        .collect();
    for arg in ["FIRELENS_IMAGE", "EKS_IMAGE", "WAMR_VERSION"] {
        let default = dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {arg}=")))
            .unwrap_or_else(|| panic!("the Dockerfile has no default {arg}"));
        let named = if arg == "WAMR_VERSION" {
            format!("WAMR_VERSION={default}")
        } else {
            format!("`{default}`")
        };
        assert!(
            table.iter().any(|l| l.contains(&named)),
            "README \"Default images\" does not name {named}"
        );
    }
}
