//! What the README and the shipped kit tell users to type, checked against the real host:
//! the quickstart command lines run, the config snippets load, the shipped configs pass
//! Fluent Bit's own `--dry-run`, every Fluent Bit HTTP endpoint they name answers, and every
//! `job-wrapper` flag they use is in `job-wrapper --help`.
//!
//! The Fluent Bit checks need `FLUENT_BIT` (and `FLUENT_BIT_1_9` for the 1.9 leg); each says it
//! was skipped without it. The `job-wrapper` check needs only `make dist`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fanout_testhost::fluent_bit::{
    FluentBit, Release, Scratch, binary, free_port, http_get, install_artifacts, rooted, wait_until,
};
use fanout_testhost::{job_wrapper_path, plugin_path, workspace_root};
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap()
}

/// The README's fenced code blocks: (info string, text).
fn readme_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in read("README.md").lines() {
        match (line.strip_prefix("```"), current.take()) {
            (Some(info), None) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some((info, mut text))) => {
                text.push_str(line);
                text.push('\n');
                current = Some((info, text));
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Shipped files a user copies: configs, manifests, the Dockerfile.
fn kit_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in [
        "fluent-bit-conf/eks",
        "fluent-bit-conf/firelens",
        "deploy/eks",
        "deploy/ecs",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.push(root.join("docker/Dockerfile"));
    files.sort();
    files
}

/// `text` with `/tmp/` paths (the README's examples) moved under the scratch root too.
fn rooted_all(text: &str, scratch: &Scratch) -> String {
    let tmp = scratch.root.join("tmp").display().to_string();
    rooted(
        &text
            .replace(" /tmp/", &format!(" {tmp}/"))
            .replace("=/tmp/", &format!("={tmp}/")),
        scratch,
    )
}

/// The lines of the README that run `fluent-bit` from a shell.
fn readme_command_lines() -> Vec<String> {
    readme_blocks()
        .into_iter()
        .filter(|(info, _)| info == "sh")
        .flat_map(|(_, text)| {
            text.lines()
                .map(str::trim)
                .filter(|l| l.starts_with("fluent-bit "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs every `fluent-bit …` command line of the README (the quickstart's `-e` line) as
/// written, paths moved under a scratch root, and checks the file destination receives records.
fn quickstart_lines(release: Release, test: &str) {
    let Some(fluent_bit) = binary(release, test) else {
        return;
    };
    let lines = readme_command_lines();
    assert!(!lines.is_empty(), "the README has fluent-bit command lines");
    for line in lines {
        let scratch = Scratch::new("quickstart");
        install_artifacts(&scratch);
        scratch.dir("/tmp");
        let args: Vec<String> = rooted_all(&line, &scratch)
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect();
        let out = args
            .iter()
            .find_map(|a| a.strip_prefix("path="))
            .map(PathBuf::from)
            .expect("the line writes to a file destination");
        let mut fb = FluentBit::start(&fluent_bit, &args, &[], &scratch.root);
        wait_until(
            &mut fb,
            &format!("`{line}` writes records"),
            Duration::from_secs(30),
            || std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 2),
        );
        let status = fb.terminate(Duration::from_secs(30));
        assert!(status.success(), "`{line}`: exit {status}:\n{}", fb.log());
        for record in std::fs::read_to_string(&out).unwrap().lines() {
            let record: Value = serde_json::from_str(record).unwrap();
            assert!(record["record"].is_object(), "{record}");
        }
    }
}

#[test]
fn readme_command_lines_run_in_the_current_fluent_bit() {
    quickstart_lines(
        Release::Current,
        "readme_command_lines_run_in_the_current_fluent_bit",
    );
}

#[test]
fn readme_command_lines_run_in_fluent_bit_1_9() {
    quickstart_lines(Release::V1_9, "readme_command_lines_run_in_fluent_bit_1_9");
}

/// Installs `[PLUGINS]` files where the README and the shipped configs name them.
fn install_plugins_files(scratch: &Scratch) {
    let plugins = format!("[PLUGINS]\n    Path {}\n", plugin_path().display());
    std::fs::write(scratch.path("/fluent-bit/etc/plugins.conf"), plugins).unwrap();
}

/// `fluent-bit --dry-run` on `config` (with the plugin loaded): Fluent Bit's own check of
/// section and property names. It exits 0 even when it reports errors, so read what it says.
fn dry_run(fluent_bit: &Path, config: &Path, what: &str, env: &[(&str, &str)]) {
    let out = Command::new(fluent_bit)
        .arg("-e")
        .arg(plugin_path())
        .arg("--dry-run")
        .arg("-c")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success()
            && text.contains("configuration test is successful")
            && !text.contains("[error]"),
        "{what} fails Fluent Bit's --dry-run:\n{text}"
    );
}

const CONFIG_ENV: [(&str, &str); 3] = [
    ("DD_API_KEY", "dry-run-key"),
    ("AWS_REGION", "us-east-1"),
    ("DD_SERVICE", "checkout"),
];

#[test]
fn shipped_configs_and_readme_snippets_pass_fluent_bit_dry_run() {
    let test = "shipped_configs_and_readme_snippets_pass_fluent_bit_dry_run";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let scratch = Scratch::new("dryrun");
    install_artifacts(&scratch);
    install_plugins_files(&scratch);
    let mut checked = 0;
    for file in kit_files() {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let is_config = file.to_str().unwrap().contains("fluent-bit-conf")
            && (name.ends_with(".conf") || name.ends_with(".yaml"))
            && name != "plugins.conf";
        if !is_config {
            continue;
        }
        // Installed beside each other, as the images do, so @INCLUDEs resolve.
        let dir = scratch.dir(&format!(
            "/configs/{}",
            file.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        ));
        for sibling in std::fs::read_dir(file.parent().unwrap()).unwrap() {
            let sibling = sibling.unwrap().path();
            std::fs::write(
                dir.join(sibling.file_name().unwrap()),
                rooted(&std::fs::read_to_string(&sibling).unwrap(), &scratch),
            )
            .unwrap();
        }
        dry_run(
            &fluent_bit,
            &dir.join(&name),
            &file.display().to_string(),
            &CONFIG_ENV,
        );
        checked += 1;
    }
    for (i, (info, text)) in readme_blocks().into_iter().enumerate() {
        let config = match info.as_str() {
            "ini" if text.contains('[') && !text.contains("[PLUGINS]") => {
                scratch.path(&format!("/readme/snippet-{i}.conf"))
            }
            "yaml" if text.contains("pipeline:") => {
                scratch.path(&format!("/readme/snippet-{i}.yaml"))
            }
            _ => continue,
        };
        // `k8s-metadata.aot` exists only where WAMR's compiler does (`make aot`); the dry run
        // checks the snippet's sections and properties, which are the same with the `.wasm`.
        let text = if scratch
            .path("/fluent-bit/plugins/k8s-metadata.aot")
            .exists()
        {
            text
        } else {
            text.replace("k8s-metadata.aot", "k8s-metadata.wasm")
        };
        std::fs::write(&config, rooted_all(&text, &scratch)).unwrap();
        dry_run(
            &fluent_bit,
            &config,
            &format!("README snippet {i}:\n{text}"),
            &CONFIG_ENV,
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} configs checked");
}

/// Fluent Bit HTTP paths the kit uses: URLs on port 2020 and the manifests' probe paths.
fn fluent_bit_endpoints() -> Vec<String> {
    let mut paths = Vec::new();
    let mut texts: Vec<String> = kit_files()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    texts.push(read("README.md"));
    for text in &texts {
        for (i, _) in text.match_indices(":2020/") {
            let path: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/_-.".contains(*c))
                .collect();
            paths.push(path);
        }
        for line in text.lines() {
            if let Some(rest) = line.split("httpGet: {path: ").nth(1) {
                paths.push(rest.split(',').next().unwrap().trim().to_owned());
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

#[test]
fn fluent_bit_endpoints_named_by_the_kit_answer_in_the_shipped_eks_config() {
    let test = "fluent_bit_endpoints_named_by_the_kit_answer_in_the_shipped_eks_config";
    let Some(fluent_bit) = binary(Release::Current, test) else {
        return;
    };
    let endpoints = fluent_bit_endpoints();
    assert!(
        endpoints.iter().any(|e| e == "/api/v1/health"),
        "{endpoints:?}"
    );
    // The shipped EKS sidecar config's own [SERVICE] settings, with a dummy pipeline.
    let scratch = Scratch::new("endpoints");
    let port = free_port();
    let shipped = read("fluent-bit-conf/eks/fluent-bit.conf");
    let service: String = shipped
        .split("\n[")
        .find(|s| s.starts_with("SERVICE]"))
        .expect("a [SERVICE] section")
        .lines()
        .filter(|l| {
            !l.trim_start()
                .to_ascii_lowercase()
                .starts_with("plugins_file")
        })
        .map(|l| {
            if l.to_ascii_lowercase().contains("http_port") {
                format!("    HTTP_Port {port}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = scratch.path("/fluent-bit/etc/endpoints.conf");
    std::fs::write(
        &config,
        format!("[{service}\n[INPUT]\n    Name dummy\n[OUTPUT]\n    Name null\n    Match *\n"),
    )
    .unwrap();
    let mut fb = FluentBit::start(
        &fluent_bit,
        ["-c", config.to_str().unwrap()],
        &[],
        &scratch.root,
    );
    fb.wait_http_ok(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(20),
    );
    for path in &endpoints {
        // The metrics pages answer 404 until Fluent Bit's first collection (a few seconds).
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let answer = loop {
            let answer = http_get(&format!("http://127.0.0.1:{port}{path}"));
            if answer.as_ref().is_some_and(|(code, _)| *code == 200)
                || std::time::Instant::now() >= deadline
            {
                break answer;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert!(
            answer.as_ref().is_some_and(|(code, _)| *code == 200),
            "{path}, named by the kit, answers {answer:?} in Fluent Bit with the shipped [SERVICE]"
        );
    }
    assert!(fb.terminate(Duration::from_secs(20)).success());
}

/// The `job-wrapper` command lines (its flags, up to `--`) of every container in `documents`.
fn job_wrapper_commands(value: &Value, found: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for key in ["command", "args"] {
                let words: Vec<String> = map
                    .get(key)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|w| w.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if words.first().is_some_and(|w| w.ends_with("job-wrapper")) {
                    found.push(words.into_iter().take_while(|w| w != "--").collect());
                }
            }
            map.values().for_each(|v| job_wrapper_commands(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| job_wrapper_commands(v, found)),
        _ => {}
    }
}

/// `--flags` of `job-wrapper` in the manifests, the README's YAML and its option table.
fn job_wrapper_flags() -> Vec<String> {
    let mut commands = Vec::new();
    for file in kit_files()
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
    {
        let documents =
            fanout_testhost::fluent_bit::yaml_documents(&std::fs::read_to_string(file).unwrap());
        job_wrapper_commands(&Value::Array(documents), &mut commands);
    }
    for (info, text) in readme_blocks() {
        if info == "yaml" {
            let documents = fanout_testhost::fluent_bit::yaml_documents(&text);
            job_wrapper_commands(&Value::Array(documents), &mut commands);
        }
    }
    assert!(
        commands.len() >= 3,
        "job-wrapper command lines: {commands:?}"
    );
    let mut flags: Vec<String> = commands
        .iter()
        .flatten()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| format!("--{}", w.split('=').next().unwrap()))
        .collect();
    // The option table of the README's job-wrapper section: `| `--flag` / `--other` | …`.
    for line in read("README.md").lines().filter(|l| l.starts_with("| `--")) {
        let first_cell = line.split('|').nth(1).unwrap();
        flags.extend(
            first_cell
                .split('`')
                .filter(|w| w.starts_with("--"))
                .map(str::to_owned),
        );
    }
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn job_wrapper_flags_named_by_the_kit_exist() {
    let wrapper = job_wrapper_path();
    let help = Command::new(&wrapper).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let flags = job_wrapper_flags();
    for expected in ["--log-file", "--wait-http", "--fluent-bit", "--tombstone"] {
        assert!(
            flags.iter().any(|f| f == expected),
            "{expected} not found in {flags:?}"
        );
    }
    for flag in &flags {
        let known = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
            .any(|word| word == flag);
        assert!(
            known,
            "{flag}, used by the kit or README, is not in job-wrapper --help:\n{help}"
        );
    }
}

/// The README's CronJob recipe is an excerpt of `deploy/eks/cronjob.yaml`: the parts it shows
/// (the app's command, the labels the routing reads, the Downward API items, the mounts) are
/// the manifest's, so following the README gives the tested Job.
#[test]
fn readme_cronjob_recipe_is_the_shipped_manifest() {
    let spec_of = |documents: Vec<Value>| {
        let cronjob = documents
            .into_iter()
            .find(|d| d["kind"] == "CronJob")
            .expect("a CronJob");
        cronjob["spec"]["jobTemplate"]["spec"]["template"].clone()
    };
    let readme = readme_blocks()
        .into_iter()
        .filter(|(info, text)| info == "yaml" && text.contains("kind: CronJob"))
        .map(|(_, text)| spec_of(fanout_testhost::fluent_bit::yaml_documents(&text)))
        .next()
        .expect("the README's CronJob recipe");
    let shipped = spec_of(fanout_testhost::fluent_bit::yaml_documents(&read(
        "deploy/eks/cronjob.yaml",
    )));
    let container = |template: &Value, name: &str| {
        template["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("a {name} container"))
            .clone()
    };
    assert_eq!(
        container(&readme, "report")["command"],
        container(&shipped, "report")["command"]
    );
    for name in ["report", "fluent-bit"] {
        assert_eq!(
            container(&readme, name)["volumeMounts"],
            container(&shipped, name)["volumeMounts"],
            "{name}'s mounts"
        );
    }
    for (label, value) in readme["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(
            &shipped["metadata"]["labels"][label], value,
            "label {label}"
        );
    }
    let items = |template: &Value| {
        template["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v.get("downwardAPI"))
            .expect("a Downward API volume")["items"]
            .clone()
    };
    for item in items(&readme).as_array().unwrap() {
        assert!(
            items(&shipped).as_array().unwrap().contains(item),
            "{item} is not in the manifest"
        );
    }
}
