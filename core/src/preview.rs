//! What `flb-fanout preview` and the playground show: for a Fluent Bit config and sample
//! records, where every `fanout` output sends each record (Datadog service, source, status and
//! tags; Firehose stream) and the exact payloads, built by the plugin's own configuration
//! readers and encoders so the preview cannot drift from what the plugin does. Nothing is sent.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use crate::classic::Section;
use crate::config::{CoreConfig, Environment};
use crate::destinations::spec::{Context, Preview, Route, Totals};
use crate::destinations::{REGISTERED, registered};
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
    /// Its destinations, in the order configured, with their configuration and the totals of
    /// the whole sample sent as one chunk.
    pub destinations: Vec<DestinationReport>,
    /// The line the plugin logs when a property is wrong (then Fluent Bit does not start, and
    /// nothing else of this output is filled in).
    pub error: Option<String>,
    pub notes: Vec<String>,
    /// Where records refused for good are kept (`dead_letter`), if anywhere.
    pub dead_letter: Option<String>,
    pub records: Vec<RecordReport>,
    /// Records in the sample.
    pub sample_records: usize,
}

#[derive(Debug, Serialize)]
pub struct DestinationReport {
    pub name: &'static str,
    pub title: &'static str,
    /// Its configuration in one line.
    pub summary: Option<String>,
    /// The whole sample as one chunk.
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct RecordReport {
    pub tag: String,
    pub record: Value,
    /// What becomes of it at each destination, in the output's order.
    pub routes: Vec<RecordRoute>,
}

#[derive(Debug, Serialize)]
pub struct RecordRoute {
    pub destination: &'static str,
    pub title: &'static str,
    #[serde(flatten)]
    pub route: Route,
}

impl OutputReport {
    /// The destination named `name`, if the output has it.
    pub fn destination(&self, name: &str) -> Option<&DestinationReport> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

impl RecordReport {
    /// What becomes of the record at the destination named `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.destination == name)
            .map(|r| &r.route)
    }
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
    let props: HashMap<String, String> = section
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
        records: Vec::new(),
        sample_records: records.len(),
    };
    if let Err(error) = check_keys(section, &mut report.notes) {
        report.error = Some(error);
        return report;
    }
    let (core, previews) = match configs(&props, &label, &mut report.notes, env) {
        Ok(configs) => configs,
        Err(e) => {
            // The line the plugin logs (Fluent Bit adds the time) before Fluent Bit refuses
            // to start.
            report.error = Some(format!("[error] [output:fanout:{label}] {e}"));
            return report;
        }
    };
    report.dead_letter = core.dead_letter.as_ref().map(|d| d.to_string());
    if let Some(path) = &report.dead_letter {
        report.notes.push(format!(
            "records refused for good (dropped or rejected) are kept in {path} as JSON lines, up to {} MiB",
            core.dead_letter_max_size >> 20
        ));
    }
    for event in records {
        // Through a real chunk, as Fluent Bit would hand it over.
        let batch = Batch::new(
            tag.to_owned(),
            Records::from_json(std::slice::from_ref(event)),
        );
        report.records.push(RecordReport {
            tag: tag.to_owned(),
            record: event.1.clone(),
            routes: previews
                .iter()
                .map(|(registration, preview)| RecordRoute {
                    destination: registration.name,
                    title: registration.title,
                    route: preview.route(&batch),
                })
                .collect(),
        });
    }
    let sample = Batch::new(tag.to_owned(), Records::from_json(records));
    report.destinations = previews
        .iter()
        .map(|(registration, preview)| DestinationReport {
            name: registration.name,
            title: registration.title,
            summary: preview.summary(),
            totals: preview.totals(&sample),
        })
        .collect();
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

/// A destination of the output, as the preview reads it.
type Previewed = (
    &'static crate::destinations::spec::Registration,
    Box<dyn Preview>,
);

/// The core configuration and each destination's, read as the plugin reads them.
fn configs(
    props: &HashMap<String, String>,
    label: &str,
    notes: &mut Vec<String>,
    env: Environment,
) -> Result<(CoreConfig, Vec<Previewed>), String> {
    let names: Vec<&'static str> = REGISTERED.iter().map(|r| r.name).collect();
    let core = CoreConfig::read(props, label.to_owned(), &names).map_err(|e| e.to_string())?;
    let context = Context {
        message_keys: &core.message_keys,
        env,
    };
    let mut previews = Vec::new();
    for name in &core.destinations {
        // Every name CoreConfig accepts is registered.
        let Some(registration) = registered(name) else {
            continue;
        };
        let preview = (registration.preview)(props, &context, notes).map_err(|e| e.to_string())?;
        previews.push((registration, preview));
    }
    Ok((core, previews))
}

impl Report {
    /// The report as `flb-fanout preview` prints it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for output in &self.outputs {
            let names: Vec<&str> = output.destinations.iter().map(|d| d.name).collect();
            let _ = writeln!(
                out,
                "[OUTPUT] fanout '{}' ({}): {}",
                output.label,
                output.matching,
                names.join(", ")
            );
            if let Some(error) = &output.error {
                let _ = writeln!(out, "  {error}\n");
                continue;
            }
            for note in &output.notes {
                let _ = writeln!(out, "  note: {note}");
            }
            for destination in &output.destinations {
                if let Some(summary) = &destination.summary {
                    let _ = writeln!(out, "  {}: {summary}", destination.name);
                }
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
                for route in &record.routes {
                    let lead = format!("    {}: ", route.destination);
                    if let Some(refused) = &route.route.refused {
                        let _ = writeln!(out, "{lead}{refused}{kept}");
                        continue;
                    }
                    for (n, line) in route.route.text.iter().enumerate() {
                        let indent = if n == 0 {
                            lead.clone()
                        } else {
                            " ".repeat(lead.len())
                        };
                        let _ = writeln!(out, "{indent}{line}");
                    }
                }
            }
            let _ = write!(
                out,
                "\n  whole sample as one chunk: {} records",
                output.sample_records
            );
            for destination in &output.destinations {
                if !destination.totals.text.is_empty() {
                    let _ = write!(out, "; {}", destination.totals.text);
                }
            }
            out.push_str("\n\n");
        }
        out
    }
}

#[cfg(test)]
mod tests;
