//! Properties of the `firehose` destination. Names follow Fluent Bit's core
//! `kinesis_firehose` output wherever the meaning is the same.

use crate::accessor::{Choice, Template};
use crate::config::{ConfigError, Environment, Properties, Reader};

#[derive(Clone, Debug)]
pub struct FirehoseConfig {
    pub region: String,
    /// Per-record stream name; `||` alternatives are the fallback.
    pub delivery_stream: Choice,
    /// Custom Firehose endpoint (VPC endpoints, tests).
    pub endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub profile: Option<String>,
    pub time_key: Option<String>,
    /// chrono strftime, with Fluent Bit's `%L` (milliseconds) translated.
    pub time_key_format: String,
    pub log_key: Option<String>,
    /// How each Firehose record is compressed (`compression`).
    pub compression: RecordCompression,
    pub simple_aggregation: bool,
    /// Fields added to every record, for Firehose dynamic partitioning: (name, template).
    pub partition_keys: Vec<(String, Template)>,
}

/// `compression`: each Firehose record compressed on its own, as the core `kinesis_firehose`
/// output does (`gzip` since 1.x, `zstd` since 4.1), so a destination reads one frame per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCompression {
    None,
    Gzip,
    /// zstd at its default level (3), as the core output uses it.
    Zstd,
}

impl RecordCompression {
    pub fn name(self) -> &'static str {
        match self {
            RecordCompression::None => "none",
            RecordCompression::Gzip => "gzip",
            RecordCompression::Zstd => "zstd",
        }
    }
}

/// Fluent Bit's default `time_key_format`.
pub const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

fn url(r: &Reader, key: &str) -> Result<Option<String>, ConfigError> {
    match r.string(key) {
        None => Ok(None),
        Some(v) if v.starts_with("https://") || v.starts_with("http://") => {
            Ok(Some(v.trim_end_matches('/').to_owned()))
        }
        // The core output takes a bare host and always uses TLS.
        Some(v) if !v.contains("://") => Ok(Some(format!("https://{}", v.trim_end_matches('/')))),
        Some(v) => Err(ConfigError::new(
            key,
            format!("invalid value '{v}': expected https://host[:port]"),
        )),
    }
}

impl FirehoseConfig {
    /// `env` gives `AWS_REGION` and `AWS_DEFAULT_REGION` when `region` is not set, as the AWS
    /// SDKs read them.
    pub fn read(props: &dyn Properties, env: Environment) -> Result<FirehoseConfig, ConfigError> {
        let r = Reader::new(props);
        let region = r
            .string("region")
            .or_else(|| env("AWS_REGION").filter(|v| !v.is_empty()))
            .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()))
            .ok_or_else(|| ConfigError::new("region", "is required: the AWS region of the delivery streams, e.g. us-east-1 (or set AWS_REGION)"))?;
        let stream = r.required(
            "delivery_stream",
            "the delivery stream name or a template such as logs-$container_name || logs-default",
        )?;
        let delivery_stream = Choice::parse(&stream)
            .map_err(|e| ConfigError::new("delivery_stream", e.to_string()))?;
        let compression = match r.choice("compression", &["gzip", "zstd", "none"], "none")? {
            "gzip" => RecordCompression::Gzip,
            "zstd" => {
                if !cfg!(feature = "zstd") {
                    return Err(ConfigError::new(
                        "compression",
                        "zstd is not in this build (the browser playground's): use gzip or none here",
                    ));
                }
                RecordCompression::Zstd
            }
            _ => RecordCompression::None,
        };
        let log_key = r.string("log_key");
        let time_key = r.string("time_key");
        if log_key.is_some() && time_key.is_some() {
            return Err(ConfigError::new(
                "time_key",
                "cannot be combined with log_key (log_key sends one field as it is, with nothing added)",
            ));
        }
        let format = r
            .string("time_key_format")
            .unwrap_or_else(|| DEFAULT_TIME_FORMAT.into());
        let time_key_format = format.replace("%L", "%3f");
        if chrono::format::StrftimeItems::new(&time_key_format)
            .any(|i| matches!(i, chrono::format::Item::Error))
        {
            return Err(ConfigError::new(
                "time_key_format",
                format!(
                    "invalid value '{format}': expected a strftime format such as %Y-%m-%dT%H:%M:%S.%L"
                ),
            ));
        }
        let mut partition_keys = Vec::new();
        for entry in r.list("partition_keys").unwrap_or_default() {
            let (name, template) = entry.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    "partition_keys",
                    format!("invalid entry '{entry}': expected name=template, e.g. service=$container_name"),
                )
            })?;
            let template = Template::parse(template.trim())
                .map_err(|e| ConfigError::new("partition_keys", e.to_string()))?;
            partition_keys.push((name.trim().to_owned(), template));
        }
        Ok(FirehoseConfig {
            region,
            delivery_stream,
            endpoint: url(&r, "endpoint")?,
            sts_endpoint: url(&r, "sts_endpoint")?,
            role_arn: r.string("role_arn"),
            external_id: r.string("external_id"),
            profile: r.string("profile"),
            time_key,
            time_key_format,
            log_key,
            compression,
            simple_aggregation: r.boolean("simple_aggregation", false)?,
            partition_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<FirehoseConfig, ConfigError> {
        let props: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FirehoseConfig::read(&props, &|_| None)
    }

    #[test]
    fn reads_templates_and_defaults() {
        let c = read(&[
            ("region", "eu-west-1"),
            ("delivery_stream", "logs-$container_name || logs-other"),
            ("endpoint", "firehose.internal:8443"),
            (
                "partition_keys",
                "service=$container_name, cluster=$ecs_cluster",
            ),
            ("time_key", "time"),
            ("time_key_format", "%Y-%m-%dT%H:%M:%S.%LZ"),
        ])
        .unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://firehose.internal:8443")
        );
        assert_eq!(c.partition_keys.len(), 2);
        assert_eq!(c.partition_keys[1].0, "cluster");
        assert_eq!(c.time_key_format, "%Y-%m-%dT%H:%M:%S.%3fZ");
        assert!(c.compression == RecordCompression::None && !c.simple_aggregation);
    }

    #[test]
    fn the_region_comes_from_the_property_then_the_environment_given() {
        let props: HashMap<String, String> = [("delivery_stream".to_owned(), "s".to_owned())]
            .into_iter()
            .collect();
        let env = |name: &str| match name {
            "AWS_REGION" => Some(String::new()),
            "AWS_DEFAULT_REGION" => Some("eu-north-1".to_owned()),
            _ => None,
        };
        assert_eq!(
            FirehoseConfig::read(&props, &env).unwrap().region,
            "eu-north-1"
        );
        let mut named = props.clone();
        named.insert("region".into(), "us-west-2".into());
        assert_eq!(
            FirehoseConfig::read(&named, &env).unwrap().region,
            "us-west-2"
        );
        let none = FirehoseConfig::read(&props, &|_| None).unwrap_err();
        assert_eq!(none.property, "region");
    }

    #[test]
    fn errors_name_the_property() {
        assert_eq!(
            read(&[("region", "x")]).unwrap_err().property,
            "delivery_stream"
        );
        let both = read(&[
            ("region", "x"),
            ("delivery_stream", "s"),
            ("log_key", "log"),
            ("time_key", "t"),
        ]);
        assert_eq!(both.unwrap_err().property, "time_key");
        let snappy = read(&[
            ("region", "x"),
            ("delivery_stream", "s"),
            ("compression", "snappy"),
        ])
        .unwrap_err();
        assert_eq!(
            snappy.to_string(),
            "property 'compression': invalid value 'snappy': expected one of gzip, zstd, none"
        );
        for (given, expected) in [
            ("gzip", RecordCompression::Gzip),
            ("ZSTD", RecordCompression::Zstd),
            ("none", RecordCompression::None),
        ] {
            let c = read(&[
                ("region", "x"),
                ("delivery_stream", "s"),
                ("compression", given),
            ])
            .unwrap();
            assert_eq!(c.compression, expected, "{given}");
        }
        let pk = read(&[
            ("region", "x"),
            ("delivery_stream", "s"),
            ("partition_keys", "service"),
        ])
        .unwrap_err();
        assert_eq!(pk.property, "partition_keys");
        let fmt = read(&[
            ("region", "x"),
            ("delivery_stream", "s"),
            ("time_key", "t"),
            ("time_key_format", "%Q"),
        ]);
        assert_eq!(fmt.unwrap_err().property, "time_key_format");
    }
}
