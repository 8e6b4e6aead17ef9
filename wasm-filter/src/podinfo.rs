//! The pod's own metadata from a Downward API volume, and the module's small config file.
//!
//! Fluent Bit gives a filter_wasm module no environment and no arguments, only the
//! directories listed in `accessible_paths`. So the pod describes itself through files:
//!
//! ```text
//! <podinfo_dir>/pod_name      metadata.name
//! <podinfo_dir>/namespace     metadata.namespace
//! <podinfo_dir>/pod_uid       metadata.uid
//! <podinfo_dir>/labels        metadata.labels      (key="value" lines, Go-quoted)
//! <podinfo_dir>/annotations   metadata.annotations
//! <podinfo_dir>/node_name     spec.nodeName (not a Downward API volume field: write it from
//!                             an init container if you want `host`)
//! ```
//!
//! `podinfo_dir` is what `k8s-metadata.conf` says (looked for in `/fluent-bit/etc/`, then in
//! `/etc/podinfo/` and each directory of `accessible_paths`); without it, `/etc/podinfo` when
//! it holds `pod_name`, else the first directory of `accessible_paths` that does — so mounting
//! the Downward API elsewhere only takes naming it in `accessible_paths`. Files are read once and
//! re-read every `refresh_seconds` (default [`REFRESH_SECONDS`]) by the host's clock (labels
//! and annotations can change; record times are the application's, so they are not used).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = "/etc/podinfo";
pub const CONFIG_PATHS: [&str; 2] = [
    "/fluent-bit/etc/k8s-metadata.conf",
    "/etc/podinfo/k8s-metadata.conf",
];
pub const REFRESH_SECONDS: u32 = 60;

/// Settings from `k8s-metadata.conf` (`key = value` lines, `#` comments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub podinfo_dir: PathBuf,
    /// Merge a JSON object found in `log`/`message` into the record.
    pub merge_log: bool,
    /// Keep the original `log`/`message` string after merging it.
    pub keep_log: bool,
    /// Split raw CRI lines (`<time> <stream> <P|F> <message>`).
    pub parse_cri: bool,
    /// Add `service`/`env`/`version` from unified service tagging labels.
    pub service_tags: bool,
    /// How often the Downward API files are read again.
    pub refresh_seconds: u64,
    /// Annotations left out of every record (`annotations_exclude`, comma-separated).
    pub annotations_exclude: Vec<String>,
    /// Lines of the config file that were not understood, to report.
    pub problems: Vec<String>,
}

/// Left out by default: kubectl's copy of the whole manifest, often kilobytes, in every record.
pub const DEFAULT_ANNOTATIONS_EXCLUDE: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl Default for Config {
    fn default() -> Self {
        Config {
            podinfo_dir: PathBuf::from(DEFAULT_DIR),
            merge_log: true,
            keep_log: true,
            parse_cri: true,
            service_tags: true,
            refresh_seconds: u64::from(REFRESH_SECONDS),
            annotations_exclude: vec![DEFAULT_ANNOTATIONS_EXCLUDE.to_owned()],
            problems: Vec::new(),
        }
    }
}

impl Config {
    pub fn parse(text: &str) -> Config {
        let mut config = Config::default();
        let mut problems = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut problem = |what: String| {
                problems.push(format!("k8s-metadata.conf line {}: {what}", number + 1))
            };
            let Some((key, value)) = line.split_once('=') else {
                problem(format!("'{line}' is not 'key = value'; ignored"));
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            let flag = match value.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => Some(true),
                "off" | "false" | "no" | "0" => Some(false),
                _ => None,
            };
            let target = match key.as_str() {
                "podinfo_dir" => {
                    config.podinfo_dir = PathBuf::from(value);
                    continue;
                }
                "refresh_seconds" => {
                    match value.parse::<u64>() {
                        Ok(seconds) if seconds > 0 => config.refresh_seconds = seconds,
                        _ => problem(format!(
                            "'refresh_seconds' takes a whole number of seconds (1 or more), not '{value}'; the default is kept"
                        )),
                    }
                    continue;
                }
                "annotations_exclude" => {
                    config.annotations_exclude = value
                        .split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect();
                    continue;
                }
                "merge_log" => &mut config.merge_log,
                "keep_log" => &mut config.keep_log,
                "parse_cri" => &mut config.parse_cri,
                "service_tags" => &mut config.service_tags,
                _ => {
                    problem(format!("unknown key '{key}'; ignored"));
                    continue;
                }
            };
            match flag {
                Some(flag) => *target = flag,
                None => problem(format!(
                    "'{key}' takes on/off, not '{value}'; the default is kept"
                )),
            }
        }
        config.problems = problems;
        config
    }

    /// The config file and pod info directory, found as the module doc says; `preopened` are
    /// the directories the host gave the module.
    pub fn load(preopened: &[PathBuf]) -> Config {
        let mut config = CONFIG_PATHS
            .iter()
            .map(PathBuf::from)
            .chain(preopened.iter().map(|dir| dir.join("k8s-metadata.conf")))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|text| Config::parse(&text))
            .unwrap_or_default();
        let has_pod = |dir: &Path| dir.join("pod_name").is_file();
        if config.podinfo_dir == Path::new(DEFAULT_DIR)
            && !has_pod(&config.podinfo_dir)
            && let Some(dir) = preopened.iter().find(|dir| has_pod(dir))
        {
            config.podinfo_dir = dir.clone();
        }
        config
    }
}

/// What the Downward API files say; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub pod_name: Option<String>,
    pub namespace_name: Option<String>,
    pub pod_id: Option<String>,
    pub host: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl PodInfo {
    pub fn read(dir: &Path) -> PodInfo {
        let value = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let map = |name: &str| {
            value(name)
                .map(|text| parse_key_values(&text))
                .unwrap_or_default()
        };
        PodInfo {
            pod_name: value("pod_name"),
            namespace_name: value("namespace"),
            pod_id: value("pod_uid"),
            host: value("node_name"),
            labels: map("labels"),
            annotations: map("annotations"),
        }
    }
}

/// Parses the Downward API's `key="value"` lines; values are Go-quoted strings.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, quoted) = line.split_once('=')?;
            Some((key.trim().to_owned(), unquote(quoted.trim())))
        })
        .collect()
}

/// Undoes Go's `strconv.Quote` for the escapes it produces.
fn unquote(quoted: &str) -> String {
    let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) else {
        return quoted.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                if let Ok(b) = u8::from_str_radix(&hex, 16) {
                    out.push(char::from(b));
                }
            }
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
            }
            Some('U') => {
                let hex: String = chars.by_ref().take(8).collect();
                out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_api_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pod_name"), "web-7c9d\n").unwrap();
        std::fs::write(dir.path().join("namespace"), "shop").unwrap();
        std::fs::write(
            dir.path().join("labels"),
            "app=\"web\"\ntags.datadoghq.com/env=\"prod\"\nnote=\"a \\\"quoted\\\" \\u00e9 value\"\n",
        )
        .unwrap();
        let info = PodInfo::read(dir.path());
        assert_eq!(info.pod_name.as_deref(), Some("web-7c9d"));
        assert_eq!(info.namespace_name.as_deref(), Some("shop"));
        assert_eq!(info.pod_id, None);
        assert_eq!(info.labels["tags.datadoghq.com/env"], "prod");
        assert_eq!(info.labels["note"], "a \"quoted\" é value");
        assert!(info.annotations.is_empty());
    }

    #[test]
    fn config_file() {
        let c = Config::parse("# comment\npodinfo_dir = /podinfo\nmerge_log = off\nunknown = 1\n");
        assert_eq!(c.podinfo_dir, PathBuf::from("/podinfo"));
        assert!(!c.merge_log && c.keep_log && c.parse_cri);
    }
}
