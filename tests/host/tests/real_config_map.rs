//! Typo-proof configuration in the real host: on Fluent Bit 5.1.1 the plugin's property table
//! is Fluent Bit's own `config_map` — a misspelt key stops it (classic and YAML, and in
//! `--dry-run`), `-h` lists the table, and the core outputs' keys that mean nothing here start
//! with one warning. On 1.9.10, which has no such field, the same typo starts, delivers, and
//! Init says names go unchecked. Every key the core `datadog` and `kinesis_firehose` outputs
//! list in the real host's `-h` is one fanout knows, so switching `Name` keeps a section valid.
//!
//! Needs `FLUENT_BIT` (5.1.1) and `FLUENT_BIT_1_9`; each test says it was skipped without its
//! binary, and the 5.1.1 checks say so when `FLUENT_BIT` is another version.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fanout_core::properties::{INHERITED, Key, PROPERTIES, classify};
use fanout_testhost::fluent_bit::{FluentBit, Release, Scratch, announce, binary, version};
use fanout_testhost::plugin_path;

/// The 5.1.1 binary, or `None` (said) when `FLUENT_BIT` is missing or another version.
fn fluent_bit_5_1_1(test: &str) -> Option<std::path::PathBuf> {
    let binary = binary(Release::Current, test)?;
    let version = version(&binary);
    if version != "Fluent Bit v5.1.1" {
        announce(&format!(
            "real-host: SKIPPED {test}: FLUENT_BIT is {version}; only 5.1.1 takes the property table"
        ));
        return None;
    }
    Some(binary)
}

fn output(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until `out` holds the one record, stops Fluent Bit (it must exit 0) and returns its log.
fn delivered_one_record(fb: &mut FluentBit, out: &Path) -> String {
    fanout_testhost::fluent_bit::wait_until(
        fb,
        "the record delivered",
        Duration::from_secs(20),
        || std::fs::read_to_string(out).is_ok_and(|t| t.lines().count() == 1),
    );
    assert!(
        fb.terminate(Duration::from_secs(20)).success(),
        "{}",
        fb.log()
    );
    fb.log()
}

const TYPO_CLASSIC: &str = "[SERVICE]\n    Flush 1\n[INPUT]\n    Name dummy\n    Samples 1\n[OUTPUT]\n    Name fanout\n    Match *\n    workers 1\n    destinations file\n    path @PATH@\n    delivery_steam logs\n";

const TYPO_YAML: &str = "service:\n  flush: 1\npipeline:\n  inputs:\n    - name: dummy\n      samples: 1\n  outputs:\n    - name: fanout\n      match: '*'\n      workers: 1\n      destinations: file\n      path: @PATH@\n      delivery_steam: logs\n";

#[test]
fn a_misspelt_property_stops_fluent_bit_5_1_1() {
    let test = "a_misspelt_property_stops_fluent_bit_5_1_1";
    let Some(fluent_bit) = fluent_bit_5_1_1(test) else {
        return;
    };
    let scratch = Scratch::new("typo");
    let out = scratch.path("/out.jsonl");
    for (name, text) in [("typo.conf", TYPO_CLASSIC), ("typo.yaml", TYPO_YAML)] {
        let config = scratch.path(&format!("/{name}"));
        std::fs::write(&config, text.replace("@PATH@", out.to_str().unwrap())).unwrap();
        for dry_run in [true, false] {
            let mut command = Command::new(&fluent_bit);
            command.arg("-e").arg(plugin_path()).arg("-c").arg(&config);
            if dry_run {
                command.arg("--dry-run");
            }
            let (success, text) = output(&mut command);
            assert!(!success, "{name} (dry run: {dry_run}) started:\n{text}");
            assert!(
                text.contains("[config] fanout: unknown configuration property 'delivery_steam'"),
                "{name} (dry run: {dry_run}):\n{text}"
            );
            assert!(!text.contains("flb-fanout 0."), "Init never ran:\n{text}");
        }
    }
    assert!(!out.exists(), "nothing was delivered");
    // The same sections without the typo start: the refusal is the key, nothing else.
    let config = scratch.path("/fixed.conf");
    std::fs::write(
        &config,
        TYPO_CLASSIC
            .replace("@PATH@", out.to_str().unwrap())
            .replace("delivery_steam", "delivery_stream"),
    )
    .unwrap();
    let (success, text) = output(
        Command::new(&fluent_bit)
            .arg("-e")
            .arg(plugin_path())
            .arg("-c")
            .arg(&config)
            .arg("--dry-run"),
    );
    assert!(
        success && text.contains("configuration test is successful"),
        "{text}"
    );
}

#[test]
fn help_lists_every_property_with_its_default() {
    let test = "help_lists_every_property_with_its_default";
    let Some(fluent_bit) = fluent_bit_5_1_1(test) else {
        return;
    };
    let (_, text) = output(
        Command::new(&fluent_bit)
            .arg("-e")
            .arg(plugin_path())
            .args(["-o", "fanout", "-h"]),
    );
    let options = text
        .split("\nOPTIONS\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no OPTIONS section:\n{text}"));
    // Entries are `name  description…` then `> default: …, type: …`, the description wrapped.
    let entries: Vec<(String, String)> = options
        .split("> default: ")
        .collect::<Vec<_>>()
        .windows(2)
        .map(|pair| {
            let name = pair[0]
                .lines()
                .rev()
                .map(|l| l.trim_start_matches("\u{1b}[0m"))
                .find(|l| !l.starts_with(' ') && !l.trim().is_empty())
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_owned();
            let default = pair[1].split(", type:").next().unwrap().to_owned();
            (name, default)
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = PROPERTIES
        .iter()
        .map(|p| p.name)
        .chain(INHERITED.iter().map(|i| i.name))
        .collect();
    assert_eq!(names, expected, "{text}");
    for (property, (_, shown)) in PROPERTIES.iter().zip(&entries) {
        if let Some(default) = property.default {
            assert_eq!(shown, default, "{}", property.name);
        }
    }
}

#[test]
fn core_output_keys_start_fluent_bit_5_1_1_with_one_warning() {
    let test = "core_output_keys_start_fluent_bit_5_1_1_with_one_warning";
    let Some(fluent_bit) = fluent_bit_5_1_1(test) else {
        return;
    };
    let scratch = Scratch::new("inherited");
    let out = scratch.path("/out.jsonl");
    let mut fb = FluentBit::start(
        &fluent_bit,
        [
            "-e",
            plugin_path().to_str().unwrap(),
            "-i",
            "dummy",
            "-p",
            "samples=1",
            "-o",
            "fanout",
            "-p",
            "workers=1",
            "-p",
            "destinations=file",
            "-p",
            &format!("path={}", out.display()),
            "-p",
            "auto_retry_requests=false",
            "-p",
            "header=X-One 1",
            "-p",
            "header=X-Two 2",
            "-f",
            "1",
        ],
        &[],
        scratch.path("/").as_path(),
    );
    let log = delivered_one_record(&mut fb, &out);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ignoring properties of Fluent Bit's core outputs"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("[ warn]")
            && warnings[0].contains("'auto_retry_requests' (kinesis_firehose output"),
        "{log}"
    );
    assert!(warnings[0].contains("'header' (datadog output"), "{log}");
    assert!(
        !log.contains("does not check this output's property names"),
        "{log}"
    );
}

#[test]
fn fluent_bit_1_9_starts_with_a_misspelt_key_and_says_names_go_unchecked() {
    let test = "fluent_bit_1_9_starts_with_a_misspelt_key_and_says_names_go_unchecked";
    let Some(fluent_bit) = binary(Release::V1_9, test) else {
        return;
    };
    let scratch = Scratch::new("typo19");
    let out = scratch.path("/out.jsonl");
    let config = scratch.path("/typo.conf");
    std::fs::write(
        &config,
        TYPO_CLASSIC.replace("@PATH@", out.to_str().unwrap()),
    )
    .unwrap();
    let mut fb = FluentBit::start(
        &fluent_bit,
        [
            "-e",
            plugin_path().to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
        ],
        &[],
        Path::new(scratch.path("/").as_path()),
    );
    let log = delivered_one_record(&mut fb, &out);
    assert!(
        log.contains("Fluent Bit 1.9.10 does not check this output's property names (Fluent Bit 5.1.1 does): a misspelt key is ignored"),
        "{log}"
    );
}

/// The names in a `-h` page's OPTIONS section.
fn help_options(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_options = false;
    for line in text.lines() {
        let mut plain = String::new();
        let mut chars = line.chars();
        // Without the terminal colour codes.
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().take_while(|c| *c != 'm').for_each(drop);
            } else {
                plain.push(c);
            }
        }
        if plain.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !plain.is_empty() {
            in_options = plain == "OPTIONS";
        } else if in_options && plain.starts_with(|c: char| c.is_ascii_lowercase()) {
            names.push(plain.split_whitespace().next().unwrap().to_owned());
        }
    }
    names
}

#[test]
fn every_key_of_the_core_outputs_is_known_here() {
    let test = "every_key_of_the_core_outputs_is_known_here";
    let Some(fluent_bit) = fluent_bit_5_1_1(test) else {
        return;
    };
    for core_output in ["datadog", "kinesis_firehose"] {
        let (_, text) = output(Command::new(&fluent_bit).args(["-o", core_output, "-h"]));
        let names = help_options(&text);
        assert!(names.len() >= 10, "{core_output}: {names:?}\n{text}");
        for name in names {
            assert!(
                !matches!(classify(&name), Key::Unknown),
                "{core_output}'s '{name}' would stop Fluent Bit after switching Name to fanout"
            );
        }
    }
}
