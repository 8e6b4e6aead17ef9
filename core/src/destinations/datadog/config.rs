//! Properties of the `datadog` destination. Names follow Fluent Bit's core `datadog` output
//! wherever the meaning is the same, so switching is a change of `Name`.

use std::fmt;

use crate::accessor::Choice;
use crate::config::{ConfigError, Properties, Reader};
use fanout_contract::service_tags;

/// Datadog sites and their log intake hosts.
pub const SITES: &[(&str, &str)] = &[
    ("us1", "datadoghq.com"),
    ("us3", "us3.datadoghq.com"),
    ("us5", "us5.datadoghq.com"),
    ("eu", "datadoghq.eu"),
    ("eu1", "datadoghq.eu"),
    ("ap1", "ap1.datadoghq.com"),
    ("ap2", "ap2.datadoghq.com"),
    ("gov", "ddog-gov.com"),
    ("us1-fed", "ddog-gov.com"),
];

pub const INTAKE_PATH: &str = "/api/v2/logs";

/// Service when `dd_service` is not set: the unified service tagging labels
/// (`fanout_contract::service_tags::SERVICE`, checked by a test), then the `app` label, then the
/// FireLens container name. A constant because the property table shows it.
pub const DEFAULT_SERVICE: &str = "$kubernetes['labels']['tags.datadoghq.com/service'] \
    || $kubernetes['labels']['app.kubernetes.io/name'] || $kubernetes['labels']['app'] || $container_name";

/// Tags every record gets when its fields exist: Datadog's unified service tagging (`env`,
/// `version`, from the labels `fanout_contract::service_tags` names, the first present) and
/// standard Kubernetes tags; `dd_tags` adds to these.
pub fn convention_tags() -> Vec<String> {
    let labels = |tag: &str, labels: &[&str]| {
        labels
            .iter()
            .map(|label| format!("{tag}:$kubernetes['labels']['{label}']"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    vec![
        labels("env", service_tags::ENV),
        labels("version", service_tags::VERSION),
        "kube_namespace:$kubernetes['namespace_name']".to_owned(),
        "pod_name:$kubernetes['pod_name']".to_owned(),
        "kube_container_name:$kubernetes['container_name']".to_owned(),
    ]
}

/// The API key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// How request bodies are compressed (`compress`, `compress_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Level 1-9.
    Gzip(u32),
    /// Level 1-19.
    Zstd(i32),
}

impl Compression {
    /// The `Content-Encoding` it is sent with.
    pub fn content_encoding(&self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip(_) => Some("gzip"),
            Compression::Zstd(_) => Some("zstd"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Gzip(level) => write!(f, "gzip level {level}"),
            Compression::Zstd(level) => write!(f, "zstd level {level}"),
        }
    }
}

/// `compress_level` when unset: zlib's default; for zstd, level 1, which end to end (BENCHMARKS.md
/// §2c) took ~17 % less CPU than level 3 for the same bytes sent.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

#[derive(Clone, Debug)]
pub struct DatadogConfig {
    pub api_key: ApiKey,
    /// Full intake URL, e.g. `https://http-intake.logs.datadoghq.com/api/v2/logs`.
    pub url: String,
    pub compression: Compression,
    pub service: Option<Choice>,
    pub source: Option<Choice>,
    pub hostname: Option<Choice>,
    /// `dd_tags` entries followed by the convention tags; an entry that does not resolve is left out.
    pub tags: Vec<Choice>,
    /// `dd_message_key`; `None` means the instance's `message_key` list.
    pub message_key: Option<String>,
    pub provider_ecs: bool,
    /// `tag_key` when `include_tag_key` is on.
    pub tag_key: Option<String>,
    pub date_key: String,
}

fn choice(r: &Reader, key: &str) -> Result<Option<Choice>, ConfigError> {
    r.string(key)
        .map(|v| Choice::parse(&v).map_err(|e| ConfigError::new(key, e.to_string())))
        .transpose()
}

/// `dd_url` must be an http(s) URL with a host; plain `http://` only to a loopback address or
/// with `dd_allow_http on`, since the API key travels in a header. Errors never echo the URL
/// (it may carry credentials).
fn check_intake_url(text: &str, allow_http: bool) -> Result<(), ConfigError> {
    let invalid = |why: &str| ConfigError::new("dd_url", format!("invalid value: {why}"));
    let url = url::Url::parse(text)
        .map_err(|e| invalid(&format!("not a URL ({e}); expected https://host[:port]")))?;
    let host = url.host().ok_or_else(|| invalid("it has no host"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match host {
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
                url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
            };
            if loopback || allow_http {
                Ok(())
            } else {
                Err(invalid(
                    "plain http:// would send the API key unencrypted; use https://, or set dd_allow_http on for a trusted network",
                ))
            }
        }
        other => Err(invalid(&format!(
            "scheme '{other}'; expected https:// (or http:// to a loopback address)"
        ))),
    }
}

/// A URL as log lines show it: without user name and password.
pub fn url_for_logs(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

impl DatadogConfig {
    pub fn read(props: &dyn Properties) -> Result<DatadogConfig, ConfigError> {
        let r = Reader::new(props);
        let api_key = ApiKey(r.required(
            "apikey",
            "the Datadog API key (for example ${DD_API_KEY}, expanded by Fluent Bit from the environment)",
        )?);
        let url = match r.string("dd_url") {
            Some(base) => {
                check_intake_url(&base, r.boolean("dd_allow_http", false)?)?;
                let base = base.trim_end_matches('/');
                if base.ends_with(INTAKE_PATH) {
                    base.to_owned()
                } else {
                    format!("{base}{INTAKE_PATH}")
                }
            }
            None => {
                let site = r
                    .string("dd_site")
                    .unwrap_or_else(|| "datadoghq.com".into());
                let domain = SITES
                    .iter()
                    .find(|(name, domain)| name.eq_ignore_ascii_case(&site) || domain.eq_ignore_ascii_case(&site))
                    .map(|(_, domain)| *domain)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "dd_site",
                            format!(
                                "invalid value '{site}': expected one of US1, US3, US5, EU, AP1, AP2, gov \
                                 (or the site's domain, e.g. datadoghq.eu)"
                            ),
                        )
                    })?;
                format!("https://http-intake.logs.{domain}{INTAKE_PATH}")
            }
        };
        let level = match r.string("compress_level") {
            None => None,
            Some(text) => Some(text.trim().parse::<i32>().map_err(|_| {
                ConfigError::new(
                    "compress_level",
                    format!("invalid value '{text}': expected a whole number"),
                )
            })?),
        };
        let compression = match r
            .string("compress")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("zstd") => Compression::Zstd(level.unwrap_or(DEFAULT_ZSTD_LEVEL)),
            Some("gzip" | "on" | "true") => {
                Compression::Gzip(level.unwrap_or(DEFAULT_GZIP_LEVEL as i32) as u32)
            }
            Some("none" | "off" | "false") => Compression::None,
            Some(other) => {
                return Err(ConfigError::new(
                    "compress",
                    format!("invalid value '{other}': expected zstd, gzip or none"),
                ));
            }
        };
        match (compression, level) {
            (Compression::Zstd(l), _) if !(1..=19).contains(&l) || !zstd_level_usable(l) => {
                return Err(ConfigError::new(
                    "compress_level",
                    format!("invalid value '{l}': zstd levels are 1 to 19"),
                ));
            }
            (Compression::Gzip(l), _) if !(1..=9).contains(&l) => {
                return Err(ConfigError::new(
                    "compress_level",
                    format!("invalid value '{l}': gzip levels are 1 to 9"),
                ));
            }
            (Compression::None, Some(_)) => {
                return Err(ConfigError::new(
                    "compress_level",
                    "set with compress none: nothing to set a level for",
                ));
            }
            _ => {}
        }
        let service = match choice(&r, "dd_service")? {
            Some(service) => Some(service),
            None => {
                Some(Choice::parse(DEFAULT_SERVICE).expect("the default service template parses"))
            }
        };
        let mut tags = Vec::new();
        for entry in r.list("dd_tags").unwrap_or_default() {
            tags.push(
                Choice::parse(&entry).map_err(|e| ConfigError::new("dd_tags", e.to_string()))?,
            );
        }
        tags.extend(
            convention_tags()
                .iter()
                .map(|t| Choice::parse(t).expect("convention tags parse")),
        );
        let provider_ecs = match r
            .string("provider")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => false,
            Some("ecs") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "provider",
                    format!("invalid value '{other}': expected ecs (or leave it unset)"),
                ));
            }
        };
        let tag_key = r
            .boolean("include_tag_key", false)?
            .then(|| r.string("tag_key").unwrap_or_else(|| "tagkey".into()));
        Ok(DatadogConfig {
            api_key,
            url,
            compression,
            service,
            source: choice(&r, "dd_source")?,
            hostname: choice(&r, "dd_hostname")?,
            tags,
            message_key: r.string("dd_message_key"),
            provider_ecs,
            tag_key,
            date_key: r
                .string("json_date_key")
                .unwrap_or_else(|| "timestamp".into()),
        })
    }
}

/// Whether the zstd library takes `level` (builds without it take any level in range).
fn zstd_level_usable(level: i32) -> bool {
    #[cfg(feature = "zstd")]
    {
        zstd::bulk::Compressor::new(level).is_ok()
    }
    #[cfg(not(feature = "zstd"))]
    {
        let _ = level;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_service_reads_the_unified_service_tagging_labels_first() {
        let labels: Vec<String> = service_tags::SERVICE
            .iter()
            .chain(&["app"])
            .map(|label| format!("$kubernetes['labels']['{label}']"))
            .collect();
        assert_eq!(
            DEFAULT_SERVICE,
            format!("{} || $container_name", labels.join(" || "))
        );
        let tags = convention_tags();
        assert_eq!(
            tags[1],
            "version:$kubernetes['labels']['tags.datadoghq.com/version'] || version:$kubernetes['labels']['app.kubernetes.io/version']"
        );
    }
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<DatadogConfig, ConfigError> {
        let props: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DatadogConfig::read(&props)
    }

    #[test]
    fn plain_http_only_to_loopback_and_credentials_never_shown() {
        let intake = |url: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("apikey", "k"), ("dd_url", url)];
            pairs.extend_from_slice(extra);
            read(&pairs)
        };
        assert!(intake("http://127.0.0.1:9", &[]).is_ok());
        assert!(intake("http://[::1]:9", &[]).is_ok());
        assert!(intake("http://localhost:9", &[]).is_ok());
        let refused = intake("http://user:hunter2@dd-proxy.internal:8080", &[]).unwrap_err();
        let text = refused.to_string();
        assert!(text.contains("unencrypted"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("dd-proxy"),
            "{text}"
        );
        assert!(intake("http://dd-proxy.internal:8080", &[("dd_allow_http", "on")]).is_ok());
        assert!(intake("ftp://x", &[]).is_err());
        let c = intake("https://user:hunter2@dd-proxy.internal:8443", &[]).unwrap();
        assert_eq!(
            url_for_logs(&c.url),
            "https://dd-proxy.internal:8443/api/v2/logs"
        );
    }

    #[test]
    fn sites_urls_and_defaults() {
        let c = read(&[("apikey", "k")]).unwrap();
        assert_eq!(c.url, "https://http-intake.logs.datadoghq.com/api/v2/logs");
        assert_eq!(c.compression, Compression::Zstd(DEFAULT_ZSTD_LEVEL));
        let gzip = read(&[("apikey", "k"), ("compress", "gzip")]).unwrap();
        assert_eq!(gzip.compression, Compression::Gzip(DEFAULT_GZIP_LEVEL));
        let fast = read(&[
            ("apikey", "k"),
            ("compress", "zstd"),
            ("compress_level", "1"),
        ]);
        assert_eq!(fast.unwrap().compression, Compression::Zstd(1));
        assert_eq!(c.date_key, "timestamp");
        assert!(c.tag_key.is_none());
        assert_eq!(
            read(&[("apikey", "k"), ("dd_site", "EU")]).unwrap().url,
            "https://http-intake.logs.datadoghq.eu/api/v2/logs"
        );
        assert_eq!(
            read(&[("apikey", "k"), ("dd_site", "us5.datadoghq.com")])
                .unwrap()
                .url,
            "https://http-intake.logs.us5.datadoghq.com/api/v2/logs"
        );
        assert_eq!(
            read(&[("apikey", "k"), ("dd_url", "http://127.0.0.1:9/")])
                .unwrap()
                .url,
            "http://127.0.0.1:9/api/v2/logs"
        );
        let tagged = read(&[("apikey", "k"), ("include_tag_key", "on")]).unwrap();
        assert_eq!(tagged.tag_key.as_deref(), Some("tagkey"));
    }

    #[test]
    fn errors_name_the_property_and_never_echo_the_key() {
        let missing = read(&[]).unwrap_err();
        assert_eq!(missing.property, "apikey");
        let site = read(&[("apikey", "secret-key-123"), ("dd_site", "mars")]).unwrap_err();
        assert!(site.to_string().contains("expected one of US1"), "{site}");
        assert!(
            !format!(
                "{site} {:?}",
                read(&[("apikey", "secret-key-123")]).unwrap()
            )
            .contains("secret-key-123")
        );
        assert_eq!(
            read(&[("apikey", "k"), ("compress", "brotli")])
                .unwrap_err()
                .property,
            "compress"
        );
        for bad in [
            &[("compress", "gzip"), ("compress_level", "10")][..],
            &[("compress_level", "0")],
            &[("compress_level", "fast")],
            &[("compress", "none"), ("compress_level", "3")],
        ] {
            let mut props = vec![("apikey", "k")];
            props.extend_from_slice(bad);
            assert_eq!(
                read(&props).unwrap_err().property,
                "compress_level",
                "{bad:?}"
            );
        }
        assert_eq!(
            read(&[("apikey", "k"), ("provider", "eks")])
                .unwrap_err()
                .property,
            "provider"
        );
        assert_eq!(
            read(&[("apikey", "k"), ("dd_service", "$a['x")])
                .unwrap_err()
                .property,
            "dd_service"
        );
    }
}
