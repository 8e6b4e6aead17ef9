//! Reading and validating an instance's properties.
//!
//! Properties come from Fluent Bit's getter (`api->output_get_property`), which looks keys up
//! case-insensitively and returns nothing for unset or empty values (after `${ENV}`
//! expansion). Every parse error names the property and what it accepts, and becomes the one
//! line Fluent Bit logs before it refuses to start.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::record::DEFAULT_MESSAGE_KEYS;

/// Where property values come from: the host's getter, or a map in tests and tools.
/// Environment variables as a reader sees them: the plugin passes its process's, `preview` its
/// shell's, the playground the variables typed beside the config. Core reads no environment
/// itself, so a config reads the same wherever it is previewed.
pub type Environment<'a> = &'a dyn Fn(&str) -> Option<String>;

pub trait Properties {
    fn get(&self, key: &str) -> Option<String>;
}

impl Properties for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    }
}

/// A property that cannot be used as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub property: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(property: &str, message: impl Into<String>) -> Self {
        Self {
            property: property.to_owned(),
            message: message.into(),
        }
    }

    /// For a value that does not parse. Secret properties never echo their value.
    fn invalid(property: &str, value: &str, expected: &str) -> Self {
        Self::new(
            property,
            format!("invalid value '{value}': expected {expected}"),
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "property '{}': {}", self.property, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Typed access to properties with the project's parsing rules.
pub struct Reader<'a> {
    props: &'a dyn Properties,
}

impl<'a> Reader<'a> {
    pub fn new(props: &'a dyn Properties) -> Self {
        Self { props }
    }

    /// The trimmed value, or `None` when unset or blank.
    pub fn string(&self, key: &str) -> Option<String> {
        self.props
            .get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, key: &str, expected: &str) -> Result<String, ConfigError> {
        self.string(key)
            .ok_or_else(|| ConfigError::new(key, format!("is required: {expected}")))
    }

    /// A comma-separated list, entries trimmed, blanks dropped.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.string(key).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// Fluent Bit's boolean spellings: on/off, true/false, yes/no, 1/0.
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => Ok(true),
                "off" | "false" | "no" | "0" => Ok(false),
                _ => Err(ConfigError::invalid(
                    key,
                    &v,
                    "on or off (also true/false, yes/no, 1/0)",
                )),
            },
        }
    }

    /// A duration such as `30s`, `500ms`, `2m`, `1h`; a bare number is seconds.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => fanout_contract::duration::parse(&v).ok_or_else(|| {
                ConfigError::invalid(key, &v, "a duration such as 30s, 500ms, 2m or 1h")
            }),
        }
    }

    /// A byte size such as `5M`, `512k`, `1G` (powers of 1024, like Fluent Bit); bare is bytes.
    pub fn size(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => parse_size(&v)
                .ok_or_else(|| ConfigError::invalid(key, &v, "a size such as 4M, 512K or 1000000")),
        }
    }

    /// One of a fixed set of words, case-insensitive; returns the accepted spelling.
    pub fn choice(
        &self,
        key: &str,
        accepted: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => accepted
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&v))
                .copied()
                .ok_or_else(|| {
                    ConfigError::invalid(key, &v, &format!("one of {}", accepted.join(", ")))
                }),
        }
    }
}

pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().trim_end_matches('b') {
        "" => 1,
        "k" | "ki" => 1 << 10,
        "m" | "mi" => 1 << 20,
        "g" | "gi" => 1 << 30,
        _ => return None,
    };
    value.checked_mul(factor)
}

/// Settings every instance has, whatever its destinations.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreConfig {
    /// Shown in every log line: `[output:fanout:<label>]`.
    pub label: String,
    /// The `destinations`, by their registered names, in the order given.
    pub destinations: Vec<&'static str>,
    /// Keys tried in order to find the log message of a record.
    pub message_keys: Vec<String>,
    /// A flush returns by this deadline, with RETRY if deliveries are still running.
    pub flush_timeout: Duration,
    /// How long exit waits for deliveries still in flight.
    pub exit_timeout: Duration,
    /// Stop Fluent Bit once job-wrapper's end-of-job record has been delivered.
    pub exit_on_job_end: bool,
    /// Where job-wrapper writes the token its real end-of-job record carries (required with
    /// `exit_on_job_end`).
    pub job_end_token_file: Option<std::path::PathBuf>,
    /// After the token file appears, stop Fluent Bit by this time even if the end-of-job
    /// record never settles.
    pub job_end_timeout: Duration,
    /// How often the counters are logged (zero: only at exit).
    pub stats_interval: Duration,
    /// Memory of the chunks being processed at once (copy plus decoded records), beyond which
    /// flushes wait for room.
    pub max_in_flight_bytes: u64,
    /// Requests each remote destination keeps in flight at most, across all flushes.
    pub max_concurrent_requests: usize,
    /// Where the ledger (what each destination settled of chunks awaiting a resend) is kept
    /// across restarts; in memory only without it.
    pub ledger_file: Option<std::path::PathBuf>,
    /// Where records refused for good are kept (JSON lines); nowhere without it.
    pub dead_letter: Option<DeadLetterTarget>,
    /// The dead-letter file's cap: beyond it refused records are only counted.
    pub dead_letter_max_size: u64,
}

/// Where `dead_letter` keeps refused records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetterTarget {
    /// Appended to a local file.
    File(std::path::PathBuf),
    /// Sent to this Firehose delivery stream, through the output's `firehose` destination (so
    /// they land in S3 next to the rest): `dead_letter firehose:<stream>`.
    Firehose(String),
}

impl fmt::Display for DeadLetterTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterTarget::File(path) => write!(f, "{}", path.display()),
            DeadLetterTarget::Firehose(stream) => write!(f, "Firehose stream '{stream}'"),
        }
    }
}

/// `dead_letter_max_size` unless set.
pub const DEFAULT_DEAD_LETTER_MAX_SIZE: u64 = 100 << 20;

pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 64 << 20;

pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_JOB_END_TIMEOUT: Duration = Duration::from_secs(60);

impl CoreConfig {
    /// The instance's label: the `label` property, else the one the plugin assigned.
    pub fn label(props: &dyn Properties, default_label: String) -> String {
        Reader::new(props).string("label").unwrap_or(default_label)
    }

    /// Reads the properties; `known` are the destinations the caller can deliver to (or preview),
    /// by name: the plugin's registry, or the core's.
    pub fn read(
        props: &dyn Properties,
        label: String,
        known: &[&'static str],
    ) -> Result<CoreConfig, ConfigError> {
        let r = Reader::new(props);
        let accepted = known.join(", ");
        let names = r
            .list("destinations")
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "destinations",
                    format!("is required: a comma-separated list of {accepted}"),
                )
            })?;
        let mut destinations = Vec::new();
        for name in &names {
            let kind = known
                .iter()
                .copied()
                .find(|k| k.eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| {
                ConfigError::new(
                    "destinations",
                    format!("unknown destination '{name}': expected a comma-separated list of {accepted}"),
                )
            })?;
            if destinations.contains(&kind) {
                return Err(ConfigError::new(
                    "destinations",
                    format!(
                        "'{name}' is listed twice; use a second [OUTPUT] section for a second {name} destination"
                    ),
                ));
            }
            destinations.push(kind);
        }
        let message_keys = r
            .list("message_key")
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| DEFAULT_MESSAGE_KEYS.iter().map(|k| k.to_string()).collect());
        let flush_timeout = r.duration("flush_timeout", DEFAULT_FLUSH_TIMEOUT)?;
        if flush_timeout < Duration::from_millis(100) {
            return Err(ConfigError::new("flush_timeout", "must be at least 100ms"));
        }
        let exit_timeout = r.duration("exit_timeout", DEFAULT_EXIT_TIMEOUT)?;
        let exit_on_job_end = r.boolean("exit_on_job_end", false)?;
        let job_end_token_file = r.string("job_end_token_file").map(std::path::PathBuf::from);
        if exit_on_job_end && job_end_token_file.is_none() {
            return Err(ConfigError::new(
                "job_end_token_file",
                "is required with exit_on_job_end: the file job-wrapper's --end-token-file writes \
                 (without it an application could end the Job by printing a look-alike record)",
            ));
        }
        let job_end_timeout = r.duration("job_end_timeout", DEFAULT_JOB_END_TIMEOUT)?;
        let stats_interval = r.duration("stats_interval", DEFAULT_STATS_INTERVAL)?;
        let max_in_flight_bytes = r.size("max_in_flight_bytes", DEFAULT_MAX_IN_FLIGHT_BYTES)?;
        let max_concurrent_requests = match r.string("max_concurrent_requests") {
            None => DEFAULT_MAX_CONCURRENT_REQUESTS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=crate::packing::plan::MAX_CONCURRENCY).contains(n))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "max_concurrent_requests",
                        &v,
                        &format!(
                            "a whole number from 1 to {}",
                            crate::packing::plan::MAX_CONCURRENCY
                        ),
                    )
                })?,
        };
        let ledger_file = r.string("ledger_file").map(std::path::PathBuf::from);
        let dead_letter = match r.string("dead_letter") {
            None => None,
            Some(value) => match value.strip_prefix("firehose:") {
                None => Some(DeadLetterTarget::File(std::path::PathBuf::from(value))),
                Some(stream) => {
                    let stream = stream.trim();
                    if !crate::destinations::firehose::limits::valid_stream_name(stream) {
                        return Err(ConfigError::invalid(
                            "dead_letter",
                            &value,
                            "a file path, or firehose:<stream> with a delivery stream name (1-64 of A-Z a-z 0-9 _ . -)",
                        ));
                    }
                    if !destinations.contains(&"firehose") {
                        return Err(ConfigError::new(
                            "dead_letter",
                            "firehose:<stream> sends through this output's firehose destination: add firehose to destinations, or name a file",
                        ));
                    }
                    Some(DeadLetterTarget::Firehose(stream.to_owned()))
                }
            },
        };
        let dead_letter_max_size = r.size("dead_letter_max_size", DEFAULT_DEAD_LETTER_MAX_SIZE)?;
        Ok(CoreConfig {
            dead_letter,
            dead_letter_max_size,
            ledger_file,
            label,
            destinations,
            message_keys,
            flush_timeout,
            exit_timeout,
            exit_on_job_end,
            job_end_token_file,
            job_end_timeout,
            stats_interval,
            max_in_flight_bytes,
            max_concurrent_requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["datadog", "firehose", "file"];

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dead_letter_is_a_file_or_a_firehose_stream_of_this_output() {
        let read = |pairs: &[(&str, &str)]| {
            let p = props(pairs);
            CoreConfig::read(&p, "t".into(), KNOWN)
        };
        let file = read(&[
            ("destinations", "datadog"),
            ("dead_letter", "/var/log/refused.jsonl"),
        ])
        .unwrap();
        assert_eq!(
            file.dead_letter,
            Some(DeadLetterTarget::File("/var/log/refused.jsonl".into()))
        );
        assert_eq!(file.dead_letter_max_size, DEFAULT_DEAD_LETTER_MAX_SIZE);
        let stream = read(&[
            ("destinations", "datadog,firehose"),
            ("dead_letter", "firehose:logs-refused"),
            ("dead_letter_max_size", "1M"),
        ])
        .unwrap();
        assert_eq!(
            stream.dead_letter,
            Some(DeadLetterTarget::Firehose("logs-refused".into()))
        );
        assert_eq!(stream.dead_letter_max_size, 1 << 20);
        let no_firehose = read(&[
            ("destinations", "datadog"),
            ("dead_letter", "firehose:logs-refused"),
        ])
        .unwrap_err();
        assert!(
            no_firehose
                .to_string()
                .contains("add firehose to destinations")
        );
        let bad_name = read(&[
            ("destinations", "firehose"),
            ("dead_letter", "firehose:no spaces allowed"),
        ])
        .unwrap_err();
        assert!(bad_name.to_string().starts_with("property 'dead_letter'"));
    }

    #[test]
    fn defaults_apply_when_only_destinations_is_set() {
        let p = props(&[("Destinations", " file ")]);
        let c = CoreConfig::read(&p, CoreConfig::label(&p, "fanout.0".into()), KNOWN).unwrap();
        assert_eq!(c.destinations, vec!["file"]);
        assert_eq!(c.label, "fanout.0");
        assert_eq!(
            CoreConfig::label(&props(&[("label", "web")]), "fanout.0".into()),
            "web"
        );
        assert_eq!(c.message_keys, vec!["log", "message"]);
        assert_eq!(c.flush_timeout, DEFAULT_FLUSH_TIMEOUT);
    }

    #[test]
    fn errors_name_the_property_and_the_accepted_values() {
        let missing = CoreConfig::read(&props(&[]), "x".into(), KNOWN).unwrap_err();
        assert_eq!(missing.property, "destinations");
        assert!(missing.to_string().contains("file"), "{missing}");

        let unknown = CoreConfig::read(&props(&[("destinations", "file,s3")]), "x".into(), KNOWN)
            .unwrap_err();
        assert!(
            unknown.to_string().contains("unknown destination 's3'"),
            "{unknown}"
        );

        let twice = CoreConfig::read(&props(&[("destinations", "file,FILE")]), "x".into(), KNOWN)
            .unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");

        let bad = CoreConfig::read(
            &props(&[("destinations", "file"), ("flush_timeout", "soon")]),
            "x".into(),
            KNOWN,
        )
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "property 'flush_timeout': invalid value 'soon': expected a duration such as 30s, 500ms, 2m or 1h"
        );
    }

    #[test]
    fn durations_sizes_and_booleans_parse_like_fluent_bit() {
        assert_eq!(
            fanout_contract::duration::parse("30"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            fanout_contract::duration::parse("500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            fanout_contract::duration::parse("2m"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            fanout_contract::duration::parse("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(fanout_contract::duration::parse("-1"), None);
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("1000k"), Some(1000 << 10));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1.5M"), None);
        let p = props(&[("a", "On"), ("b", "no"), ("c", "maybe")]);
        let r = Reader::new(&p);
        assert!(r.boolean("a", false).unwrap());
        assert!(!r.boolean("b", true).unwrap());
        assert!(r.boolean("c", true).is_err());
        assert!(r.boolean("absent", true).unwrap());
        assert_eq!(r.choice("b", &["yes", "NO"], "yes").unwrap(), "NO");
    }
}
