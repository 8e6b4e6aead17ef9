//! `make release`'s tarball for the architecture these tests were built for, unpacked as a user
//! would: its checksum is in SHA256SUMS, it holds the three artifacts (the ones `make dist`
//! built), the configs, the manifests, LICENSE, README, CHANGELOG and a CycloneDX SBOM per
//! artifact that agrees with Cargo.lock, and the plugin loads from it and delivers.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::{file_props, records};
use fanout_testhost::host::FLB_OK;
use fanout_testhost::{
    Chunk, HostVersion, Plugin, job_wrapper_path, plugin_path, target_command, workspace_root,
};
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// name → versions of every package in Cargo.lock.
fn locked_versions() -> HashMap<String, Vec<String>> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    let mut versions: HashMap<String, Vec<String>> = HashMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            versions
                .entry(n)
                .or_default()
                .push(v.trim_matches('"').to_owned());
        }
    }
    versions
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_release_tarball_holds_the_release_and_its_plugin_delivers() {
    let arch = std::env::consts::ARCH;
    let release = workspace_root().join("dist/release");
    let name = format!("flb-fanout-{VERSION}-linux-{arch}");
    let tarball = release.join(format!("{name}.tar.gz"));
    assert!(
        tarball.exists(),
        "{} does not exist: run `make release`",
        tarball.display()
    );

    let sums = std::fs::read_to_string(release.join("SHA256SUMS")).unwrap();
    let listed = sums
        .lines()
        .find_map(|l| l.strip_suffix(&format!("  {name}.tar.gz")))
        .unwrap_or_else(|| panic!("SHA256SUMS does not list {name}.tar.gz:\n{sums}"));
    assert_eq!(
        listed,
        sha256(&tarball),
        "SHA256SUMS holds the tarball's digest"
    );

    let unpacked = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(status.success());
    let root = unpacked.path().join(&name);
    for file in [
        "fanout.so",
        "k8s-metadata.wasm",
        "job-wrapper",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "fluent-bit-conf/firelens/extra.conf",
        "fluent-bit-conf/firelens/plugins.conf",
        "fluent-bit-conf/eks/fluent-bit.conf",
        "fluent-bit-conf/eks/fluent-bit.yaml",
        "deploy/eks/cronjob.yaml",
        "deploy/eks/cronjob-native-sidecar.yaml",
        "deploy/ecs/task-definition.json",
    ] {
        assert!(root.join(file).is_file(), "{name} has no {file}");
    }
    assert_eq!(
        std::fs::read(root.join("fanout.so")).unwrap(),
        std::fs::read(plugin_path()).unwrap(),
        "the tarball's plugin is the one `make dist` built"
    );
    assert_eq!(
        std::fs::read(root.join("job-wrapper")).unwrap(),
        std::fs::read(job_wrapper_path()).unwrap(),
        "the tarball's job-wrapper is the one `make dist` built"
    );

    // One SBOM per artifact, each naming the artifact's crate at this version and only
    // packages, at versions, that Cargo.lock holds.
    let locked = locked_versions();
    for (sbom, krate, dependency) in [
        ("fanout", "fanout", "reqwest"),
        ("job-wrapper", "job-wrapper", "clap"),
        ("k8s-metadata", "k8s-metadata", "serde_json"),
    ] {
        let path = root.join(format!("sbom/{sbom}.cdx.json"));
        let bom: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["metadata"]["component"]["name"], krate);
        assert_eq!(bom["metadata"]["component"]["version"], VERSION);
        let components = bom["components"].as_array().expect("components");
        assert!(
            components.iter().any(|c| c["name"] == dependency),
            "{sbom}'s SBOM lists {dependency}"
        );
        for component in components {
            let (name, version) = (
                component["name"].as_str().unwrap(),
                component["version"].as_str().unwrap(),
            );
            assert!(
                locked
                    .get(name)
                    .is_some_and(|v| v.iter().any(|v| v == version)),
                "{sbom}'s SBOM lists {name} {version}, which Cargo.lock does not hold"
            );
        }
    }

    let version = target_command(root.join("job-wrapper"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("job-wrapper {VERSION}\n")
    );

    let plugin = Plugin::load(&root.join("fanout.so"), HostVersion::V5_1)
        .expect("the tarball's plugin loads and registers");
    let out = unpacked.path().join("out.jsonl");
    let out_s = out.display().to_string();
    let instance = plugin.init(&file_props("release", &out_s)).unwrap();
    assert_eq!(
        instance.flush(
            Chunk::new()
                .event(1, &json!({"log": "from the release"}))
                .bytes(),
            "t"
        ),
        FLB_OK
    );
    assert_eq!(instance.exit(), FLB_OK);
    assert_eq!(records(&out), vec![json!({"log": "from the release"})]);
}
