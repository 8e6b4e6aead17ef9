//! Every property an `[OUTPUT] Name fanout` section takes, in one table.
//!
//! What it drives:
//! - the plugin registers it with Fluent Bit 5.1.1 as the output's `config_map`, so Fluent Bit
//!   refuses a misspelt key at startup (and in `--dry-run`) and `fluent-bit -e fanout.so -o
//!   fanout -h` lists every property with its default and summary. Older hosts have no such
//!   field, and a plugin cannot list the keys it was given, so there a typo goes unnoticed;
//! - `flb-fanout preview` and the playground check a section's keys with it, as 5.1.1 would;
//! - tests check it against the config readers (every key they read is here and nothing else,
//!   and each default here is what they use when the key is unset) and against the README's
//!   property tables.
//!
//! Switching from the core outputs stays a rename: the keys of `datadog` and
//! `kinesis_firehose` that mean nothing here ([`INHERITED`]) are accepted, and the plugin says
//! once at startup that it ignores them. Keys Fluent Bit consumes for every output (`match`,
//! `retry_limit`, `workers`, `tls.*`, `net.*`, …) never reach a plugin ([`host_consumed`]).

use crate::destinations::datadog::config::DEFAULT_SERVICE;
use crate::destinations::firehose::config::DEFAULT_TIME_FORMAT;

/// Which part of the output reads a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Core,
    Datadog,
    Firehose,
    File,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Core => "core",
            Scope::Datadog => "datadog",
            Scope::Firehose => "firehose",
            Scope::File => "file",
        }
    }
}

/// The shape of a value, as `-h` shows it. Values are parsed by the plugin's own readers
/// (durations take `ms`, which Fluent Bit's `time` type does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    Integer,
    /// `64M`, `100k`, bytes.
    Size,
    /// `30s`, `500ms`, `2m`, `1h`.
    Duration,
    /// Comma-separated.
    List,
}

#[derive(Debug)]
pub struct Property {
    pub name: &'static str,
    pub scope: Scope,
    pub kind: Kind,
    /// In the property's own syntax; `None` when unset means nothing, or something computed.
    pub default: Option<&'static str>,
    /// One line for `-h`; the README holds the whole story.
    pub summary: &'static str,
}

const fn p(
    name: &'static str,
    scope: Scope,
    kind: Kind,
    default: Option<&'static str>,
    summary: &'static str,
) -> Property {
    Property {
        name,
        scope,
        kind,
        default,
        summary,
    }
}

use Kind::*;
use Scope::*;

pub static PROPERTIES: &[Property] = &[
    p(
        "destinations",
        Core,
        List,
        None,
        "Where every record goes: datadog, firehose, file (required).",
    ),
    p(
        "label",
        Core,
        Text,
        None,
        "Name in this instance's log lines (default: Fluent Bit's alias, else fanout.<n>).",
    ),
    p(
        "message_key",
        Core,
        List,
        Some("log,message"),
        "Keys tried, in order, for a record's log message.",
    ),
    p(
        "flush_timeout",
        Core,
        Duration,
        Some("30s"),
        "Deadline for one flush; what is still pending then is retried later (at least 100ms).",
    ),
    p(
        "exit_timeout",
        Core,
        Duration,
        Some("5s"),
        "At shutdown, how long deliveries in flight may finish before they are cancelled.",
    ),
    p(
        "dead_letter",
        Core,
        Text,
        None,
        "Keep records refused for good: a file path, or firehose:<stream>.",
    ),
    p(
        "dead_letter_max_size",
        Core,
        Size,
        Some("100M"),
        "Most a dead-letter file or stream takes; beyond it refused records are counted.",
    ),
    p(
        "ledger_file",
        Core,
        Text,
        None,
        "Keep what each destination has of resent chunks in this file too, across restarts.",
    ),
    p(
        "stats_interval",
        Core,
        Duration,
        Some("60s"),
        "How often the counters are logged (0: only at exit).",
    ),
    p(
        "max_in_flight_bytes",
        Core,
        Size,
        Some("64M"),
        "Memory held for the chunks being delivered; beyond it a flush waits for room.",
    ),
    p(
        "max_concurrent_requests",
        Core,
        Integer,
        Some("16"),
        "Requests each remote destination keeps in flight at most (1-64).",
    ),
    p(
        "exit_on_job_end",
        Core,
        Bool,
        Some("off"),
        "Stop Fluent Bit once job-wrapper's end-of-job record has settled.",
    ),
    p(
        "job_end_token_file",
        Core,
        Text,
        None,
        "The token file job-wrapper writes; needed by exit_on_job_end.",
    ),
    p(
        "job_end_timeout",
        Core,
        Duration,
        Some("60s"),
        "Stop Fluent Bit this long after the token file appeared, settled or not.",
    ),
    p(
        "apikey",
        Datadog,
        Text,
        None,
        "Datadog API key (required with datadog; never logged).",
    ),
    p(
        "dd_site",
        Datadog,
        Text,
        Some("US1"),
        "US1, US3, US5, EU, AP1, AP2, gov, or the site's domain.",
    ),
    p(
        "dd_url",
        Datadog,
        Text,
        None,
        "Base URL overriding dd_site (proxies, tests).",
    ),
    p(
        "dd_allow_http",
        Datadog,
        Bool,
        Some("off"),
        "Allow a plain http:// dd_url to a non-loopback host.",
    ),
    p(
        "compress",
        Datadog,
        Text,
        Some("zstd"),
        "zstd, gzip or none: Content-Encoding of every request.",
    ),
    p(
        "compress_level",
        Datadog,
        Integer,
        None,
        "zstd 1-19 (default 1), gzip 1-9 (default 6).",
    ),
    p(
        "dd_service",
        Datadog,
        Text,
        Some(DEFAULT_SERVICE),
        "Value of service, per record (a template).",
    ),
    p(
        "dd_source",
        Datadog,
        Text,
        None,
        "Value of ddsource, per record (a template).",
    ),
    p(
        "dd_hostname",
        Datadog,
        Text,
        None,
        "Value of hostname, per record (a template).",
    ),
    p(
        "dd_tags",
        Datadog,
        List,
        None,
        "Tags, each a template resolved per record.",
    ),
    p(
        "dd_message_key",
        Datadog,
        Text,
        None,
        "Key holding the log message (default: message_key).",
    ),
    p(
        "provider",
        Datadog,
        Text,
        None,
        "ecs: FireLens metadata becomes tags.",
    ),
    p(
        "include_tag_key",
        Datadog,
        Bool,
        Some("off"),
        "Add the Fluent Bit tag to each log under tag_key.",
    ),
    p(
        "tag_key",
        Datadog,
        Text,
        Some("tagkey"),
        "Key for the tag with include_tag_key.",
    ),
    p(
        "json_date_key",
        Datadog,
        Text,
        Some("timestamp"),
        "Key for the record time, in epoch milliseconds.",
    ),
    p(
        "region",
        Firehose,
        Text,
        None,
        "AWS region of the streams (default: AWS_REGION).",
    ),
    p(
        "delivery_stream",
        Firehose,
        Text,
        None,
        "Stream name or template, || alternatives (required with firehose).",
    ),
    p(
        "endpoint",
        Firehose,
        Text,
        None,
        "Custom Firehose endpoint (VPC endpoint, tests).",
    ),
    p(
        "role_arn",
        Firehose,
        Text,
        None,
        "Role to assume on top of the credential chain.",
    ),
    p(
        "external_id",
        Firehose,
        Text,
        None,
        "External ID for role_arn.",
    ),
    p(
        "sts_endpoint",
        Firehose,
        Text,
        None,
        "STS endpoint for role_arn and IRSA.",
    ),
    p(
        "profile",
        Firehose,
        Text,
        None,
        "Shared-config profile to take credentials from.",
    ),
    p(
        "time_key",
        Firehose,
        Text,
        None,
        "Add the record time under this key.",
    ),
    p(
        "time_key_format",
        Firehose,
        Text,
        Some(DEFAULT_TIME_FORMAT),
        "strftime format of time_key (%L: milliseconds).",
    ),
    p("log_key", Firehose, Text, None, "Send only this field."),
    p(
        "partition_keys",
        Firehose,
        List,
        None,
        "name=template fields added for dynamic partitioning.",
    ),
    p(
        "simple_aggregation",
        Firehose,
        Bool,
        Some("off"),
        "Pack many records into one Firehose record.",
    ),
    p(
        "compression",
        Firehose,
        Text,
        Some("none"),
        "gzip, zstd or none: each Firehose record compressed.",
    ),
    p(
        "path",
        File,
        Text,
        None,
        "File to append JSON lines to (required with file).",
    ),
];

/// A key of the core `datadog` or `kinesis_firehose` output (Fluent Bit 5.1.1) that fanout
/// accepts and ignores, so switching `Name` keeps a working section.
#[derive(Debug)]
pub struct Inherited {
    pub name: &'static str,
    pub output: &'static str,
    /// What to do instead, said once at startup.
    pub instead: &'static str,
    /// The core output takes it more than once.
    pub repeatable: bool,
}

pub static INHERITED: &[Inherited] = &[
    Inherited {
        name: "auto_retry_requests",
        output: "kinesis_firehose",
        instead: "failed calls are always retried with backoff, and only their failed records",
        repeatable: false,
    },
    Inherited {
        name: "proxy",
        output: "datadog",
        instead: "set HTTPS_PROXY (and NO_PROXY) in the environment",
        repeatable: false,
    },
    Inherited {
        name: "header",
        output: "datadog",
        instead: "no extra HTTP headers are sent",
        repeatable: true,
    },
];

/// Keys Fluent Bit 5.1.1 takes for itself from every output section (`flb_output_set_property`
/// and the config loader) before a plugin sees its properties.
pub fn host_consumed(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "name",
        "match",
        "match_regex",
        "alias",
        "log_level",
        "log_suppress_interval",
        "host",
        "port",
        "ipv6",
        "retry_limit",
        "workers",
        "storage.total_limit_size",
        "tls",
        "active",
        "condition",
        "processors",
    ];
    const PREFIXES: &[&str] = &["tls.", "net.", "oauth2", "_debug.http."];
    let key = key.to_ascii_lowercase();
    EXACT.contains(&key.as_str()) || PREFIXES.iter().any(|p| key.starts_with(p))
}

pub fn find(key: &str) -> Option<&'static Property> {
    PROPERTIES.iter().find(|p| p.name.eq_ignore_ascii_case(key))
}

/// What a key of a fanout section is.
#[derive(Debug)]
pub enum Key {
    Property(&'static Property),
    Inherited(&'static Inherited),
    Host,
    Unknown,
}

pub fn classify(key: &str) -> Key {
    if let Some(property) = find(key) {
        Key::Property(property)
    } else if let Some(inherited) = INHERITED.iter().find(|i| i.name.eq_ignore_ascii_case(key)) {
        Key::Inherited(inherited)
    } else if host_consumed(key) {
        Key::Host
    } else {
        Key::Unknown
    }
}

/// The one startup note about inherited keys that are set, or `None`.
pub fn inherited_note(set: &[&'static Inherited]) -> Option<String> {
    if set.is_empty() {
        return None;
    }
    let parts: Vec<String> = set
        .iter()
        .map(|i| format!("'{}' ({} output: {})", i.name, i.output, i.instead))
        .collect();
    Some(format!(
        "ignoring properties of Fluent Bit's core outputs that mean nothing here: {}",
        parts.join("; ")
    ))
}

/// The closest property name to a misspelt key, if one is close (at most two edits).
pub fn suggestion(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    PROPERTIES
        .iter()
        .map(|p| (edit_distance(&key, p.name), p.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The line Fluent Bit 5.1.1 logs before refusing to start on an unknown key (the list of
/// allowed keys it appends is left out).
pub fn unknown_key_error(key: &str) -> String {
    format!("[error] [config] fanout: unknown configuration property '{key}'")
}

#[cfg(test)]
mod tests;
