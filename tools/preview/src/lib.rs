//! `flb-fanout preview`: for a Fluent Bit config and sample records, show where each record
//! would go (Datadog service, source and tags; Firehose delivery stream) and the exact payload
//! each destination would send — built by the plugin's own configuration readers and encoders,
//! so the preview cannot drift from what the plugin does. Nothing is sent.

pub mod classic;

use std::collections::HashMap;
use std::fmt::Write;
use std::io::Read;
use std::path::Path;

use fanout::config::CoreConfig;
use fanout::delivery::execute::Planned;
use fanout::destinations::DestinationKind;
use fanout::destinations::datadog::{config::DatadogConfig, encode as datadog_encode};
use fanout::destinations::firehose::{config::FirehoseConfig, encode as firehose_encode};
use fanout::record::{Batch, EventTime, Records};
use serde_json::Value;

/// Records from JSON lines: plain objects, `[time, record]` (forward), or what Fluent Bit's
/// `stdout` output writes with `Format json_lines` (a FireLens capture: `date` is the time).
/// Each is a time and a JSON object.
pub fn parse_records(text: &str) -> Result<Vec<(EventTime, Value)>, String> {
    let now = EventTime::from_f64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    )
    .unwrap_or(EventTime::new(0, 0));
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

/// The preview of every `[OUTPUT] Name fanout` section of `config` for `records`.
pub fn preview(
    config: &Path,
    records: &[(EventTime, Value)],
    tag: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let sections = classic::load(config, env)?;
    let outputs: Vec<&classic::Section> = sections
        .iter()
        .filter(|s| {
            s.name == "OUTPUT"
                && s.get("name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("fanout"))
        })
        .collect();
    if outputs.is_empty() {
        return Err(format!(
            "{} has no [OUTPUT] section with Name fanout",
            config.display()
        ));
    }
    let mut out = String::new();
    for (n, section) in outputs.iter().enumerate() {
        // Fluent Bit hands plugins nothing for a property that is empty after ${} expansion.
        let mut props: HashMap<String, String> = section
            .properties
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let core = CoreConfig::read(&props, CoreConfig::label(&props, format!("fanout.{n}")))
            .map_err(|e| format!("[OUTPUT] #{}: {e}", n + 1))?;
        let names: Vec<&str> = core.destinations.iter().map(|d| d.name()).collect();
        let matching = match (section.get("match"), section.get("match_regex")) {
            (Some(pattern), _) => format!("Match {pattern}"),
            (None, Some(regex)) => format!("Match_Regex {regex}"),
            (None, None) => "Match -".to_owned(),
        };
        let _ = writeln!(
            out,
            "[OUTPUT] fanout '{}' ({matching}): {}",
            core.label,
            names.join(", ")
        );
        if core.destinations.contains(&DestinationKind::Datadog) && !props.contains_key("apikey") {
            props.insert("apikey".into(), "preview-placeholder".into());
            let _ = writeln!(
                out,
                "  note: apikey is not set (its environment variable is empty here)"
            );
        }
        let datadog = core
            .destinations
            .contains(&DestinationKind::Datadog)
            .then(|| DatadogConfig::read(&props))
            .transpose()
            .map_err(|e| e.to_string())?;
        let firehose = core
            .destinations
            .contains(&DestinationKind::Firehose)
            .then(|| FirehoseConfig::read(&props))
            .transpose()
            .map_err(|e| e.to_string())?;
        if let Some(dd) = &datadog {
            let _ = writeln!(
                out,
                "  datadog: POST {} (compress {})",
                dd.url, dd.compression
            );
        }
        if let Some(fh) = &firehose {
            let _ = writeln!(
                out,
                "  firehose: region {}{}, aggregation {}, compression {}",
                fh.region,
                fh.endpoint
                    .as_deref()
                    .map(|e| format!(" endpoint {e}"))
                    .unwrap_or_default(),
                if fh.simple_aggregation { "on" } else { "off" },
                if fh.gzip { "gzip" } else { "none" }
            );
        }
        for (i, event) in records.iter().enumerate() {
            // Through a real chunk, as Fluent Bit would hand it over.
            let batch = Batch::new(
                tag.to_owned(),
                Records::from_json(std::slice::from_ref(event)),
            );
            let _ = writeln!(out, "\n  record {} (tag {tag}): {}", i + 1, event.1);
            if let Some(dd) = &datadog {
                let encoder = datadog_encode::Encoder {
                    config: dd,
                    message_keys: &core.message_keys,
                };
                let first = encoder.plan(&batch).next();
                if let Some(Planned::Request(request)) = first {
                    let entry: Value =
                        serde_json::from_slice(request.units.unit(0)).unwrap_or(Value::Null);
                    let field = |k: &str| {
                        entry
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_owned()
                    };
                    let _ = writeln!(
                        out,
                        "    datadog: service={} source={} status={}\n             tags={}\n             payload {entry}",
                        field("service"),
                        field("ddsource"),
                        field("status"),
                        field("ddtags")
                    );
                } else {
                    let _ = writeln!(out, "    datadog: dropped (too large for any request)");
                }
            }
            if let Some(fh) = &firehose {
                let routed = firehose_encode::Encoder {
                    config: fh,
                    message_keys: &core.message_keys,
                }
                .encode(&batch);
                match routed.streams.first() {
                    Some(stream) => {
                        let record = &stream.records[0];
                        let text = if fh.gzip {
                            let mut plain = String::new();
                            let _ = flate2::read::GzDecoder::new(&record[..])
                                .read_to_string(&mut plain);
                            plain
                        } else {
                            String::from_utf8_lossy(record).into_owned()
                        };
                        let _ = writeln!(
                            out,
                            "    firehose: stream={} ({} bytes{})\n              record {}",
                            stream.stream,
                            record.len(),
                            if fh.gzip { ", gzip" } else { "" },
                            text.trim_end()
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "    firehose: NOT ROUTED ({}): reported as failed",
                            routed.unroutable_reason.as_deref().unwrap_or("no stream")
                        );
                    }
                }
            }
            if core.destinations.contains(&DestinationKind::File) {
                let _ = writeln!(
                    out,
                    "    file: appended to {}",
                    props.get("path").map_or("-", |p| p.as_str())
                );
            }
        }
        out.push('\n');
    }
    Ok(out)
}
