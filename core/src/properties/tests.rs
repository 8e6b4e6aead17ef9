use super::*;
use crate::config::{CoreConfig, Properties};
use crate::destinations::datadog::config::DatadogConfig;
use crate::destinations::file::config::FileConfig;
use crate::destinations::firehose::config::FirehoseConfig;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// Properties that remember every key asked for.
struct Recording {
    values: HashMap<String, String>,
    asked: RefCell<BTreeSet<String>>,
}

impl Properties for Recording {
    fn get(&self, key: &str) -> Option<String> {
        self.asked.borrow_mut().insert(key.to_ascii_lowercase());
        self.values.get(&key.to_ascii_lowercase()).cloned()
    }
}

fn every_reader(values: HashMap<String, String>) -> (String, BTreeSet<String>) {
    let props = Recording {
        values,
        asked: RefCell::new(BTreeSet::new()),
    };
    let label = CoreConfig::label(&props, "fanout.0".into());
    let core = CoreConfig::read(&props, label.clone(), &["datadog", "firehose", "file"]);
    let datadog = DatadogConfig::read(&props);
    let firehose = FirehoseConfig::read(&props, &|_| None);
    let file = FileConfig::read(&props);
    let read = format!("{label} {core:?} {datadog:?} {firehose:?} {file:?}");
    (read, props.asked.into_inner())
}

fn base() -> HashMap<String, String> {
    [
        ("destinations", "datadog,firehose,file"),
        ("apikey", "k"),
        ("region", "eu-west-1"),
        ("delivery_stream", "logs"),
        ("path", "/tmp/x"),
        ("include_tag_key", "on"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Every key the readers ask for is in the table, and every key in the table is read:
/// the table cannot list a property the plugin ignores, nor miss one it reads.
#[test]
fn the_readers_read_exactly_the_tables_properties() {
    let (read, mut asked) = every_reader(base());
    assert!(!read.contains("Err("), "the base config reads: {read}");
    // Keys read only beside another one.
    let mut with_url = base();
    with_url.insert("dd_url".into(), "https://dd.internal".into());
    asked.extend(every_reader(with_url).1);
    let table: BTreeSet<String> = PROPERTIES.iter().map(|p| p.name.to_owned()).collect();
    assert_eq!(asked, table);
}

/// A default in the table is what the readers use when the key is unset.
#[test]
fn the_tables_defaults_are_the_readers_defaults() {
    let (unset, _) = every_reader(base());
    for property in PROPERTIES {
        let Some(default) = property.default else {
            continue;
        };
        if base().contains_key(property.name) {
            continue;
        }
        let mut values = base();
        values.insert(property.name.to_owned(), default.to_owned());
        let (set, _) = every_reader(values);
        assert_eq!(set, unset, "{} = {default}", property.name);
    }
    // And the check can fail: a value that is not the default reads differently.
    let mut values = base();
    values.insert("flush_timeout".into(), "31s".into());
    assert_ne!(every_reader(values).0, unset);
}

#[test]
fn names_are_unique_lower_case_and_not_taken_by_fluent_bit() {
    let mut seen = BTreeSet::new();
    for name in PROPERTIES
        .iter()
        .map(|p| p.name)
        .chain(INHERITED.iter().map(|i| i.name))
    {
        assert!(seen.insert(name), "{name} twice");
        assert_eq!(name, name.to_ascii_lowercase());
        assert!(!host_consumed(name), "{name} never reaches the plugin");
    }
}

#[test]
fn keys_are_classified_like_fluent_bit_5_1_1_would() {
    assert!(matches!(classify("Delivery_Stream"), Key::Property(p) if p.scope == Firehose));
    assert!(matches!(classify("auto_retry_requests"), Key::Inherited(_)));
    for host in [
        "Match",
        "retry_limit",
        "tls.verify",
        "net.keepalive",
        "workers",
    ] {
        assert!(matches!(classify(host), Key::Host), "{host}");
    }
    assert!(matches!(classify("delivery_steam"), Key::Unknown));
    assert_eq!(suggestion("delivery_steam"), Some("delivery_stream"));
    assert_eq!(suggestion("dd_tag"), Some("dd_tags"));
    assert_eq!(suggestion("something_else"), None);
}

#[test]
fn the_inherited_note_names_each_key_and_what_to_do() {
    assert_eq!(inherited_note(&[]), None);
    let note = inherited_note(&[&INHERITED[0], &INHERITED[1]]).unwrap();
    assert!(
        note.contains("'auto_retry_requests' (kinesis_firehose output"),
        "{note}"
    );
    assert!(
        note.contains("'proxy' (datadog output: set HTTPS_PROXY"),
        "{note}"
    );
}

/// The README's property tables list exactly the table's properties, each default shown
/// where the table has one.
#[test]
fn the_readme_tables_match() {
    let readme = include_str!("../../../README.md");
    let mut documented = BTreeSet::new();
    for section in [
        "### Core properties",
        "### `datadog` destination",
        "### `firehose` destination",
        "### `file` destination",
    ] {
        let start = readme.find(section).unwrap_or_else(|| panic!("{section}"));
        let table = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| property |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'));
        for row in table {
            let cells: Vec<&str> = row.split(" | ").collect();
            let name = cells[0].trim_start_matches("| ").trim_matches('`');
            let property = find(name)
                .unwrap_or_else(|| panic!("README documents '{name}', which is not a property"));
            if let Some(default) = property.default {
                let shown = cells[1].replace("\\|", "|");
                assert!(
                    shown.contains(&format!("`{default}`")),
                    "README's default for {name} is {shown}, the table's {default}"
                );
            }
            documented.insert(name.to_owned());
        }
    }
    let table: BTreeSet<String> = PROPERTIES.iter().map(|p| p.name.to_owned()).collect();
    assert_eq!(documented, table);
    for inherited in INHERITED {
        assert!(
            readme.contains(&format!("`{}`", inherited.name)),
            "README says {} is accepted",
            inherited.name
        );
    }
}
