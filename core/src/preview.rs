//! What `flb-fanout preview` and the playground show: for a Fluent Bit config and sample
//! records, where every `fanout` output sends each record (Datadog service, source, status and
//! tags; Firehose stream) and the exact payloads, built by the plugin's own configuration
//! readers and encoders so the preview cannot drift from what the plugin does. Nothing is sent.

use std::collections::HashMap;
use std::fmt::Write;
use std::io::Read;

use serde::Serialize;
use serde_json::Value;

use crate::classic::Section;
use crate::config::{CoreConfig, Environment};
use crate::destinations::DestinationKind;
use crate::destinations::datadog::config::DatadogConfig;
use crate::destinations::datadog::encode as datadog_encode;
use crate::destinations::firehose::config::{FirehoseConfig, RecordCompression};
use crate::destinations::firehose::encode as firehose_encode;
use crate::destinations::firehose::limits::BILLING_UNIT;
use crate::packing::plan::Planned;
use crate::properties::{self, Key};
use crate::record::{Batch, Records};
use crate::time::EventTime;

/// Records from JSON lines: plain objects, `[time, record]` (forward), or what Fluent Bit's
/// `stdout` output writes with `Format json_lines` (a FireLens capture: `date` is the time).
/// Each is a time (`now` when the line has none) and a JSON object.
pub fn parse_records(text: &str, now: EventTime) -> Result<Vec<(EventTime, Value)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line)
                .map_err(|e| format!("record line {}: not JSON: {e}", n + 1))?;
            let (time, body) = match value {
                Value::Array(mut pair) if pair.len() == 2 && pair[1].is_object() => {
                    let time = pair[0]
                        .as_f64()
                        .and_then(EventTime::from_f64)
                        .unwrap_or(now);
                    (time, pair.remove(1))
                }
                Value::Object(mut map) => {
                    let time = map
                        .remove("date")
                        .and_then(|d| d.as_f64())
                        .and_then(EventTime::from_f64)
                        .unwrap_or(now);
                    (time, Value::Object(map))
                }
                _ => {
                    return Err(format!(
                        "record line {}: expected a JSON object or [time, object]",
                        n + 1
                    ));
                }
            };
            Ok((time, body))
        })
        .collect()
}

/// Every `fanout` output of a config, previewed.
#[derive(Debug, Serialize)]
pub struct Report {
    pub outputs: Vec<OutputReport>,
}

#[derive(Debug, Serialize)]
pub struct OutputReport {
    pub label: String,
    /// `Match …` or `Match_Regex …` as configured.
    pub matching: String,
    pub destinations: Vec<&'static str>,
    /// The line the plugin logs when a property is wrong (then Fluent Bit does not start, and
    /// nothing else of this output is filled in).
    pub error: Option<String>,
    pub notes: Vec<String>,
    /// Where records refused for good are kept (`dead_letter`), if anywhere.
    pub dead_letter: Option<String>,
    pub datadog: Option<DatadogSummary>,
    pub firehose: Option<FirehoseSummary>,
    pub records: Vec<RecordReport>,
    /// The whole sample as one chunk.
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct DatadogSummary {
    pub url: String,
    pub compress: String,
}

#[derive(Debug, Serialize)]
pub struct FirehoseSummary {
    pub region: String,
    pub endpoint: Option<String>,
    pub aggregation: bool,
    /// `none`, `gzip` or `zstd`.
    pub compression: &'static str,
}

#[derive(Debug, Serialize)]
pub struct RecordReport {
    pub tag: String,
    pub record: Value,
    pub datadog: Option<DatadogRoute>,
    pub firehose: Option<FirehoseRoute>,
    /// The `file` destination's path.
    pub file: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatadogRoute {
    Sent {
        service: Option<String>,
        source: Option<String>,
        status: Option<String>,
        tags: Option<String>,
        /// The entry exactly as it goes in the request's JSON array.
        payload: Value,
    },
    Dropped,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FirehoseRoute {
    Sent {
        stream: String,
        /// Size of the Firehose record (its `Data` before base64).
        bytes: usize,
        /// `none`, `gzip` or `zstd`: how the record is compressed.
        compression: &'static str,
        /// The record's text (decompressed when `compression` is set).
        record: String,
        /// `partition_keys` and their values in this record: what Firehose dynamic
        /// partitioning (`!{partitionKeyFromQuery:<key>}`) builds the S3 prefix from.
        partition_keys: Vec<(String, String)>,
    },
    NotRouted {
        reason: String,
    },
}

/// Requests and Firehose billing for the whole sample sent as one chunk.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub records: usize,
    pub datadog_requests: usize,
    pub firehose_calls: usize,
    pub firehose_records: usize,
    /// Billed 5 KB units as configured.
    pub firehose_units: usize,
    pub firehose_units_without_aggregation: usize,
    pub firehose_units_with_aggregation: usize,
    /// Firehose streams the sample reaches, in order of first use.
    pub firehose_streams: Vec<String>,
}

/// Previews every `[OUTPUT] Name fanout` of `sections` for `records` carrying `tag`, with
/// `env` as the plugin's environment (`AWS_REGION`). Fails only when there is no such output.
pub fn report(
    sections: &[Section],
    records: &[(EventTime, Value)],
    tag: &str,
    env: Environment,
) -> Result<Report, String> {
    let outputs: Vec<&Section> = sections
        .iter()
        .filter(|s| {
            s.name == "OUTPUT"
                && s.get("name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("fanout"))
        })
        .collect();
    if outputs.is_empty() {
        return Err("the config has no [OUTPUT] section with Name fanout".to_owned());
    }
    Ok(Report {
        outputs: outputs
            .iter()
            .enumerate()
            .map(|(n, section)| output(n, section, records, tag, env))
            .collect(),
    })
}

fn output(
    n: usize,
    section: &Section,
    records: &[(EventTime, Value)],
    tag: &str,
    env: Environment,
) -> OutputReport {
    // Fluent Bit hands plugins nothing for a property that is empty after ${} expansion.
    let mut props: HashMap<String, String> = section
        .properties
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let label = CoreConfig::label(&props, format!("fanout.{n}"));
    let matching = match (section.get("match"), section.get("match_regex")) {
        (Some(pattern), _) => format!("Match {pattern}"),
        (None, Some(regex)) => format!("Match_Regex {regex}"),
        (None, None) => "Match -".to_owned(),
    };
    let mut report = OutputReport {
        label: label.clone(),
        matching,
        destinations: Vec::new(),
        error: None,
        notes: Vec::new(),
        dead_letter: None,
        datadog: None,
        firehose: None,
        records: Vec::new(),
        totals: Totals::default(),
    };
    if let Err(error) = check_keys(section, &mut report.notes) {
        report.error = Some(error);
        return report;
    }
    let (core, datadog, firehose) = match configs(&mut props, &label, &mut report.notes, env) {
        Ok(configs) => configs,
        Err(e) => {
            // The line the plugin logs (Fluent Bit adds the time) before Fluent Bit refuses
            // to start.
            report.error = Some(format!("[error] [output:fanout:{label}] {e}"));
            return report;
        }
    };
    report.destinations = core.destinations.iter().map(|d| d.name()).collect();
    report.dead_letter = core.dead_letter.as_ref().map(|d| d.to_string());
    if let Some(path) = &report.dead_letter {
        report.notes.push(format!(
            "records refused for good (dropped or rejected) are kept in {path} as JSON lines, up to {} MiB",
            core.dead_letter_max_size >> 20
        ));
    }
    report.datadog = datadog.as_ref().map(|dd| DatadogSummary {
        url: dd.url.clone(),
        compress: dd.compression.to_string(),
    });
    report.firehose = firehose.as_ref().map(|fh| FirehoseSummary {
        region: fh.region.clone(),
        endpoint: fh.endpoint.clone(),
        aggregation: fh.simple_aggregation,
        compression: fh.compression.name(),
    });
    let keys = &core.message_keys;
    for event in records {
        // Through a real chunk, as Fluent Bit would hand it over.
        let batch = Batch::new(
            tag.to_owned(),
            Records::from_json(std::slice::from_ref(event)),
        );
        report.records.push(RecordReport {
            tag: tag.to_owned(),
            record: event.1.clone(),
            datadog: datadog.as_ref().map(|dd| datadog_route(dd, keys, &batch)),
            firehose: firehose.as_ref().map(|fh| firehose_route(fh, keys, &batch)),
            file: core
                .destinations
                .contains(&DestinationKind::File)
                .then(|| props.get("path").cloned().unwrap_or_default()),
        });
    }
    let chunk = Batch::new(tag.to_owned(), Records::from_json(records));
    report.totals.records = records.len();
    if let Some(dd) = &datadog {
        report.totals.datadog_requests = datadog_encode::Encoder {
            config: dd,
            message_keys: keys,
        }
        .plan(&chunk)
        .filter(|p| matches!(p, Planned::Request(_)))
        .count();
    }
    if let Some(fh) = &firehose {
        let bill = |aggregation: bool| {
            let config = FirehoseConfig {
                simple_aggregation: aggregation,
                ..fh.clone()
            };
            firehose_encode::Encoder {
                config: &config,
                message_keys: keys,
            }
            .encode(&chunk)
        };
        let units = |routed: &firehose_encode::Routed| -> usize {
            routed
                .streams
                .iter()
                .flat_map(|s| &s.records)
                .map(|r| r.len().div_ceil(BILLING_UNIT))
                .sum()
        };
        let with = bill(true);
        let without = bill(false);
        let configured = if fh.simple_aggregation {
            &with
        } else {
            &without
        };
        report.totals.firehose_units_with_aggregation = units(&with);
        report.totals.firehose_units_without_aggregation = units(&without);
        report.totals.firehose_units = units(configured);
        report.totals.firehose_calls = configured.streams.iter().map(|s| s.calls).sum();
        report.totals.firehose_records = configured.streams.iter().map(|s| s.records.len()).sum();
        report.totals.firehose_streams = configured
            .streams
            .iter()
            .map(|s| s.stream.clone())
            .collect();
    }
    report
}

/// Checks the section's keys against the property table as Fluent Bit 5.1.1 does with the
/// plugin's `config_map`: an unknown key stops it at startup (older hosts ignore it, which the
/// preview reports as the error it is); keys of the core outputs that mean nothing here get the
/// plugin's startup note.
fn check_keys(section: &Section, notes: &mut Vec<String>) -> Result<(), String> {
    let mut inherited = Vec::new();
    for (key, _) in &section.properties {
        match properties::classify(key) {
            Key::Property(_) | Key::Host => {}
            Key::Inherited(i) => inherited.push(i),
            Key::Unknown => {
                let hint = properties::suggestion(key)
                    .map(|name| format!(" (did you mean '{name}'?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "{}{hint}: Fluent Bit 5.1.1 refuses to start; older versions ignore the key",
                    properties::unknown_key_error(key)
                ));
            }
        }
    }
    notes.extend(properties::inherited_note(&inherited));
    Ok(())
}

/// The core configuration and each destination's, read as the plugin reads them.
fn configs(
    props: &mut HashMap<String, String>,
    label: &str,
    notes: &mut Vec<String>,
    env: Environment,
) -> Result<(CoreConfig, Option<DatadogConfig>, Option<FirehoseConfig>), String> {
    let core = CoreConfig::read(props, label.to_owned()).map_err(|e| e.to_string())?;
    let uses = |kind| core.destinations.contains(&kind);
    if uses(DestinationKind::Datadog) && !props.contains_key("apikey") {
        props.insert("apikey".into(), "preview-placeholder".into());
        notes.push("apikey is not set (its environment variable is empty here)".into());
    }
    let datadog = uses(DestinationKind::Datadog)
        .then(|| DatadogConfig::read(props))
        .transpose()
        .map_err(|e| e.to_string())?;
    let firehose = uses(DestinationKind::Firehose)
        .then(|| FirehoseConfig::read(props, env))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((core, datadog, firehose))
}

fn datadog_route(config: &DatadogConfig, keys: &[String], batch: &Batch) -> DatadogRoute {
    let encoder = datadog_encode::Encoder {
        config,
        message_keys: keys,
    };
    let Some(Planned::Request(request)) = encoder.plan(batch).next() else {
        return DatadogRoute::Dropped;
    };
    let entry: Value = serde_json::from_slice(request.units.unit(0)).unwrap_or(Value::Null);
    let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_owned);
    DatadogRoute::Sent {
        service: field("service"),
        source: field("ddsource"),
        status: field("status"),
        tags: field("ddtags"),
        payload: entry,
    }
}

fn firehose_route(config: &FirehoseConfig, keys: &[String], batch: &Batch) -> FirehoseRoute {
    let routed = firehose_encode::Encoder {
        config,
        message_keys: keys,
    }
    .encode(batch);
    let Some(stream) = routed.streams.first() else {
        return FirehoseRoute::NotRouted {
            reason: routed
                .unroutable_reason
                .unwrap_or_else(|| "no stream".to_owned()),
        };
    };
    let record = &stream.records[0];
    let text = match config.compression {
        RecordCompression::Gzip => {
            let mut plain = String::new();
            let _ = flate2::read::GzDecoder::new(&record[..]).read_to_string(&mut plain);
            plain
        }
        #[cfg(feature = "zstd")]
        RecordCompression::Zstd => zstd::decode_all(&record[..])
            .map(|plain| String::from_utf8_lossy(&plain).into_owned())
            .unwrap_or_default(),
        _ => String::from_utf8_lossy(record).into_owned(),
    };
    let fields: Value = text
        .lines()
        .next()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    let partition_keys = config
        .partition_keys
        .iter()
        .map(|(key, _)| {
            let value = match &fields[key] {
                Value::String(text) => text.clone(),
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            (key.clone(), value)
        })
        .collect();
    FirehoseRoute::Sent {
        stream: stream.stream.clone(),
        bytes: record.len(),
        compression: config.compression.name(),
        record: text.trim_end().to_owned(),
        partition_keys,
    }
}

impl Report {
    /// The report as `flb-fanout preview` prints it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for output in &self.outputs {
            let _ = writeln!(
                out,
                "[OUTPUT] fanout '{}' ({}): {}",
                output.label,
                output.matching,
                output.destinations.join(", ")
            );
            if let Some(error) = &output.error {
                let _ = writeln!(out, "  {error}\n");
                continue;
            }
            for note in &output.notes {
                let _ = writeln!(out, "  note: {note}");
            }
            if let Some(dd) = &output.datadog {
                let _ = writeln!(out, "  datadog: POST {} (compress {})", dd.url, dd.compress);
            }
            if let Some(fh) = &output.firehose {
                let _ = writeln!(
                    out,
                    "  firehose: region {}{}, aggregation {}, compression {}",
                    fh.region,
                    fh.endpoint
                        .as_deref()
                        .map(|e| format!(" endpoint {e}"))
                        .unwrap_or_default(),
                    if fh.aggregation { "on" } else { "off" },
                    fh.compression
                );
            }
            let kept = match &output.dead_letter {
                Some(path) => format!(", kept in {path}"),
                None => String::new(),
            };
            for (i, record) in output.records.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "\n  record {} (tag {}): {}",
                    i + 1,
                    record.tag,
                    record.record
                );
                match &record.datadog {
                    Some(DatadogRoute::Sent {
                        service,
                        source,
                        status,
                        tags,
                        payload,
                    }) => {
                        let show = |v: &Option<String>| v.as_deref().unwrap_or("-").to_owned();
                        let _ = writeln!(
                            out,
                            "    datadog: service={} source={} status={}\n             tags={}\n             payload {payload}",
                            show(service),
                            show(source),
                            show(status),
                            show(tags)
                        );
                    }
                    Some(DatadogRoute::Dropped) => {
                        let _ = writeln!(
                            out,
                            "    datadog: dropped (too large for any request){kept}"
                        );
                    }
                    None => {}
                }
                match &record.firehose {
                    Some(FirehoseRoute::Sent {
                        stream,
                        bytes,
                        compression,
                        record,
                        partition_keys,
                    }) => {
                        let _ = writeln!(
                            out,
                            "    firehose: stream={stream} ({bytes} bytes{})\n              record {record}",
                            match *compression {
                                "none" => String::new(),
                                other => format!(", {other}"),
                            },
                        );
                        if !partition_keys.is_empty() {
                            let keys: Vec<String> = partition_keys
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect();
                            let _ =
                                writeln!(out, "              partition keys {}", keys.join(" "));
                        }
                    }
                    Some(FirehoseRoute::NotRouted { reason }) => {
                        let _ = writeln!(
                            out,
                            "    firehose: NOT ROUTED ({reason}): reported as failed{kept}"
                        );
                    }
                    None => {}
                }
                if let Some(path) = &record.file {
                    let path = if path.is_empty() { "-" } else { path };
                    let _ = writeln!(out, "    file: appended to {path}");
                }
            }
            let totals = &output.totals;
            let _ = write!(
                out,
                "\n  whole sample as one chunk: {} records",
                totals.records
            );
            if output.datadog.is_some() {
                let _ = write!(out, "; datadog {} requests", totals.datadog_requests);
            }
            if output.firehose.is_some() {
                let _ = write!(
                    out,
                    "; firehose {} calls, {} records, {} billed 5 KB units ({} without aggregation, {} with)",
                    totals.firehose_calls,
                    totals.firehose_records,
                    totals.firehose_units,
                    totals.firehose_units_without_aggregation,
                    totals.firehose_units_with_aggregation
                );
            }
            out.push_str("\n\n");
        }
        out
    }
}

#[cfg(test)]
mod tests;
