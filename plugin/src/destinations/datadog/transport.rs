//! Sending one request to the intake and classifying the answer.
//!
//! 2xx: accepted. 408, 429, 5xx and transport errors: retried with backoff, honouring
//! `Retry-After`. 413, and 400 (the intake refuses the payload): split, down to the one record
//! it refuses. 401 and 403 (a rotating key, a proxy or WAF hiccup): retried until the flush
//! deadline and logged as errors, then Fluent Bit's `Retry_Limit` decides. Redirects are never
//! followed — the API key goes nowhere but the configured intake — and a 3xx is an error naming
//! the status and where it pointed. Other 4xx: refused for good. Error bodies are read up to
//! 4 KiB; neither the API key nor the credentials of `dd_url` (user, password, or the
//! `Authorization` header reqwest makes of them, which an intake may echo) are ever logged.
//!
//! Proxies: an `https://` intake goes through `HTTPS_PROXY` (a CONNECT tunnel: the key stays
//! inside TLS) unless `NO_PROXY` says otherwise. A plain `http://` intake (loopback, or
//! `dd_allow_http on`) never goes through any proxy: the key would reach the proxy in clear,
//! and a loopback address means this host, which a proxy cannot reach.

use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;

use crate::delivery::execute::Sent;
use crate::delivery::retry::parse_retry_after;
use fanout_core::destinations::datadog::config::{Compression, DatadogConfig};

/// Upper bound for one request; the flush deadline may cut it shorter.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error body is read (for the log line).
const ERROR_BODY_BYTES: usize = 4096;

pub struct Transport {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    /// What must never appear in a log line: the key, and `dd_url`'s credentials in every
    /// form they travel in.
    secrets: Vec<String>,
}

impl Transport {
    pub fn new(config: &DatadogConfig) -> Result<Transport, String> {
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(config.api_key.expose()).map_err(|_| {
            "the API key contains characters not allowed in an HTTP header".to_string()
        })?;
        key.set_sensitive(true);
        headers.insert("DD-API-KEY", key);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("DD-EVP-ORIGIN", HeaderValue::from_static("flb-fanout"));
        headers.insert(
            "DD-EVP-ORIGIN-VERSION",
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("flb-fanout/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(50));
        if !config.url.starts_with("https://") {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Transport {
            client,
            url: config.url.clone(),
            headers,
            secrets: secrets(config.api_key.expose(), &config.url),
        })
    }

    /// The intake URL as log lines may show it (no credentials).
    pub fn url(&self) -> String {
        fanout_core::destinations::datadog::config::url_for_logs(&self.url)
    }

    /// One POST of an already-encoded body, compressed as `compression` says: how it went, and
    /// the HTTP status when there was an answer.
    pub async fn post(
        &self,
        body: bytes::Bytes,
        compression: Compression,
        deadline: Instant,
    ) -> (Sent, Option<u16>) {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .min(REQUEST_TIMEOUT)
            .max(Duration::from_millis(1));
        let mut headers = self.headers.clone();
        if let Some(encoding) = compression.content_encoding() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        let response = self
            .client
            .post(&self.url)
            .headers(headers)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                (self.classify(response).await, Some(status))
            }
            Err(e) => (
                Sent::Retry {
                    reason: self.redact(&describe_transport_error(&e)),
                    after: None,
                    serious: false,
                },
                None,
            ),
        }
    }

    /// What an answer means for the request.
    async fn classify(&self, response: reqwest::Response) -> Sent {
        let status = response.status();
        if status.is_success() {
            return Sent::Accepted;
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(redirect_target)
                .unwrap_or_else(|| "nowhere".into());
            return Sent::Retry {
                reason: format!(
                    "HTTP {} redirect to {location}, not followed (the API key only goes to the configured intake; check dd_url and dd_site)",
                    status.as_u16()
                ),
                after: None,
                serious: true,
            };
        }
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let reason = format!(
            "HTTP {}{}",
            status.as_u16(),
            self.short_reason(response).await
        );
        match status.as_u16() {
            413 => Sent::Split { reason },
            400 => Sent::Split {
                reason: format!("{reason} (the intake rejected the payload)"),
            },
            401 | 403 => Sent::Retry {
                reason: format!(
                    "{reason} (check apikey and dd_site: the key must belong to this site)"
                ),
                after,
                serious: true,
            },
            408 | 429 => Sent::Retry {
                reason,
                after,
                serious: false,
            },
            _ if status.is_server_error() => Sent::Retry {
                reason,
                after,
                serious: false,
            },
            _ => Sent::Rejected { reason },
        }
    }

    /// Up to 200 characters of the first 4 KiB of the response body, on one line, without the
    /// key.
    async fn short_reason(&self, mut response: reqwest::Response) -> String {
        let mut head = Vec::new();
        while head.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                _ => break,
            }
        }
        head.truncate(ERROR_BODY_BYTES);
        let text = String::from_utf8_lossy(&head);
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        // Redacted before it is cut: a secret cut in half would no longer match.
        let short: String = self.redact(&one_line).chars().take(200).collect();
        if short.is_empty() {
            String::new()
        } else {
            format!(": {short}")
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// The API key, and `url`'s user and password as written, percent-decoded, and as the
/// `Basic` credentials built from them (base64, with and without padding): longest first, so
/// a secret containing another is hidden whole. Strings under 4 characters are left out (they
/// would blank ordinary words).
fn secrets(api_key: &str, url: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut secrets = vec![api_key.to_owned()];
    if let Ok(parsed) = reqwest::Url::parse(url)
        && (!parsed.username().is_empty() || parsed.password().is_some())
    {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (user, password) = (parsed.username(), parsed.password().unwrap_or(""));
        let (plain_user, plain_password) = (decode(user), decode(password));
        let basic = format!("{plain_user}:{plain_password}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(basic.as_bytes());
        secrets.push(encoded.trim_end_matches('=').to_owned());
        secrets.push(encoded);
        secrets.extend([
            user.to_owned(),
            password.to_owned(),
            plain_user,
            plain_password,
        ]);
    }
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Where a redirect points, as `host[:port]` (never its path or query, which may carry
/// anything).
fn redirect_target(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => "an address without a host".into(),
        },
        Err(_) => "a relative location on the same intake".into(),
    }
}
