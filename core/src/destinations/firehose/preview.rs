//! What the preview shows of the Firehose destination: each record's stream, size, partition
//! keys and Firehose record, and the calls, records and billed units of the sample, from the
//! plan that sends them.

use std::io::Read;

use serde_json::Value;

use super::config::{FirehoseConfig, RecordCompression};
use super::encode::{Encoder, Routed};
use super::limits::BILLING_UNIT;
use crate::config::{ConfigError, Properties};
use crate::destinations::spec::{Context, Detail, Fact, Figure, Preview, Route, Totals};
use crate::record::Batch;

struct FirehosePreview {
    config: FirehoseConfig,
    message_keys: Vec<String>,
}

pub fn read(
    props: &dyn Properties,
    context: &Context,
    _notes: &mut Vec<String>,
) -> Result<Box<dyn Preview>, ConfigError> {
    Ok(Box::new(FirehosePreview {
        config: FirehoseConfig::read(props, context.env)?,
        message_keys: context.message_keys.to_vec(),
    }))
}

impl FirehosePreview {
    /// Everything the plan sends for `batch`, with `simple_aggregation` as given.
    fn routed(&self, batch: &Batch, aggregation: bool) -> Routed {
        let config = FirehoseConfig {
            simple_aggregation: aggregation,
            ..self.config.clone()
        };
        Encoder {
            config: &config,
            message_keys: &self.message_keys,
        }
        .encode(batch)
    }

    /// A Firehose record's text, decompressed.
    fn text(&self, record: &[u8]) -> String {
        match self.config.compression {
            RecordCompression::Gzip => {
                let mut plain = String::new();
                let _ = flate2::read::GzDecoder::new(record).read_to_string(&mut plain);
                plain
            }
            #[cfg(feature = "zstd")]
            RecordCompression::Zstd => zstd::decode_all(record)
                .map(|plain| String::from_utf8_lossy(&plain).into_owned())
                .unwrap_or_default(),
            _ => String::from_utf8_lossy(record).into_owned(),
        }
    }
}

/// Billed 5 KB units of everything routed.
fn billed_units(routed: &Routed) -> usize {
    routed
        .streams
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| r.len().div_ceil(BILLING_UNIT))
        .sum()
}

impl Preview for FirehosePreview {
    fn summary(&self) -> Option<String> {
        Some(format!(
            "region {}{}, aggregation {}, compression {}",
            self.config.region,
            self.config
                .endpoint
                .as_deref()
                .map(|e| format!(" endpoint {e}"))
                .unwrap_or_default(),
            if self.config.simple_aggregation {
                "on"
            } else {
                "off"
            },
            self.config.compression.name()
        ))
    }

    fn route(&self, record: &Batch) -> Route {
        let routed = self.routed(record, self.config.simple_aggregation);
        let Some(stream) = routed.streams.first() else {
            let reason = routed
                .unroutable_reason
                .unwrap_or_else(|| "no stream".to_owned());
            return Route {
                refused: Some(format!("NOT ROUTED ({reason}): reported as failed")),
                ..Route::default()
            };
        };
        let data = &stream.records[0];
        let text = self.text(data);
        let fields: Value = text
            .lines()
            .next()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null);
        // What Firehose dynamic partitioning (`!{partitionKeyFromQuery:<key>}`) builds the S3
        // prefix from.
        let partition_keys: Vec<String> = self
            .config
            .partition_keys
            .iter()
            .map(|(key, _)| {
                let value = match &fields[key] {
                    Value::String(text) => text.clone(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                format!("{key}={value}")
            })
            .collect();
        let size = format!(
            "{} bytes{}",
            data.len(),
            match self.config.compression.name() {
                "none" => String::new(),
                other => format!(", {other}"),
            }
        );
        let record = text.trim_end().to_owned();
        let mut lines = vec![
            format!("stream={} ({size})", stream.stream),
            format!("record {record}"),
        ];
        if !partition_keys.is_empty() {
            lines.push(format!("partition keys {}", partition_keys.join(" ")));
        }
        let mut facts = vec![
            Fact::marked(stream.stream.clone(), "stream"),
            Fact::plain(size),
        ];
        facts.extend(
            partition_keys
                .iter()
                .map(|kv| Fact::marked(format!("S3 prefix key {kv}"), "prefix")),
        );
        Route {
            refused: None,
            facts,
            detail: Some(Detail {
                label: "record (Data of the Firehose record)",
                json: None,
                text: Some(record),
            }),
            text: lines,
        }
    }

    fn totals(&self, sample: &Batch) -> Totals {
        let with = self.routed(sample, true);
        let without = self.routed(sample, false);
        let configured = if self.config.simple_aggregation {
            &with
        } else {
            &without
        };
        let calls: usize = configured.streams.iter().map(|s| s.calls).sum();
        let records: usize = configured.streams.iter().map(|s| s.records.len()).sum();
        let (units, units_without, units_with) = (
            billed_units(configured),
            billed_units(&without),
            billed_units(&with),
        );
        let figure = |key, label, value| Figure { key, label, value };
        Totals {
            figures: vec![
                figure("calls", "Firehose PutRecordBatch calls", calls),
                figure("records", "Firehose records", records),
                figure("billed_units", "Firehose billed 5 KB units", units),
                figure(
                    "billed_units_without_aggregation",
                    "units without aggregation",
                    units_without,
                ),
                figure(
                    "billed_units_with_aggregation",
                    "units with simple_aggregation",
                    units_with,
                ),
            ],
            text: format!(
                "firehose {calls} calls, {records} records, {units} billed 5 KB units ({units_without} without aggregation, {units_with} with)"
            ),
            places: configured
                .streams
                .iter()
                .map(|s| s.stream.clone())
                .collect(),
        }
    }
}
