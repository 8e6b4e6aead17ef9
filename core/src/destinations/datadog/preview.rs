//! What the preview shows of the Datadog destination: each record's service, source, status,
//! tags and entry, and the requests the sample makes, from the encoder that sends them.

use serde_json::Value;

use super::config::DatadogConfig;
use super::encode::Encoder;
use crate::config::{ConfigError, Properties};
use crate::destinations::spec::{Context, Detail, Fact, Figure, Preview, Route, Totals};
use crate::packing::plan::Planned;
use crate::record::Batch;

struct DatadogPreview {
    config: DatadogConfig,
    message_keys: Vec<String>,
}

/// Reads the properties as the plugin does; without an `apikey` (its environment variable is
/// empty where the preview runs) a stand-in is used, and a note says so.
pub fn read(
    props: &dyn Properties,
    context: &Context,
    notes: &mut Vec<String>,
) -> Result<Box<dyn Preview>, ConfigError> {
    let config = if props.get("apikey").is_some() {
        DatadogConfig::read(props)?
    } else {
        notes.push("apikey is not set (its environment variable is empty here)".into());
        DatadogConfig::read(&WithApiKey(props))?
    };
    Ok(Box::new(DatadogPreview {
        config,
        message_keys: context.message_keys.to_vec(),
    }))
}

/// The properties, with a stand-in API key.
struct WithApiKey<'a>(&'a dyn Properties);

impl Properties for WithApiKey<'_> {
    fn get(&self, key: &str) -> Option<String> {
        match key {
            "apikey" => Some("preview-placeholder".into()),
            _ => self.0.get(key),
        }
    }
}

impl DatadogPreview {
    fn encoder(&self) -> Encoder<'_> {
        Encoder {
            config: &self.config,
            message_keys: &self.message_keys,
        }
    }
}

impl Preview for DatadogPreview {
    fn summary(&self) -> Option<String> {
        Some(format!(
            "POST {} (compress {})",
            self.config.url, self.config.compression
        ))
    }

    fn route(&self, record: &Batch) -> Route {
        let Some(Planned::Request(request)) = self.encoder().plan(record).next() else {
            return Route {
                refused: Some("dropped (too large for any request)".into()),
                ..Route::default()
            };
        };
        let entry: Value = serde_json::from_slice(request.units.unit(0)).unwrap_or(Value::Null);
        let field = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned()
        };
        let (service, source, status, tags) = (
            field("service"),
            field("ddsource"),
            field("status"),
            field("ddtags"),
        );
        let mut facts = vec![
            Fact::plain(format!("service {service}")),
            Fact::plain(format!("source {source}")),
            Fact::plain(format!("status {status}")),
        ];
        facts.extend(
            tags.split(',')
                .filter(|t| !t.is_empty() && *t != "-")
                .map(Fact::plain),
        );
        Route {
            refused: None,
            facts,
            text: vec![
                format!("service={service} source={source} status={status}"),
                format!("tags={tags}"),
                format!("payload {entry}"),
            ],
            detail: Some(Detail {
                label: "payload (one entry of the request's JSON array)",
                json: Some(entry),
                text: None,
            }),
        }
    }

    fn totals(&self, sample: &Batch) -> Totals {
        let requests = self
            .encoder()
            .plan(sample)
            .filter(|p| matches!(p, Planned::Request(_)))
            .count();
        Totals {
            figures: vec![Figure {
                key: "requests",
                label: "Datadog requests",
                value: requests,
            }],
            text: format!("datadog {requests} requests"),
            places: Vec::new(),
        }
    }
}
