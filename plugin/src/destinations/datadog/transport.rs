//! Sending one request to the intake and classifying the answer.
//!
//! 2xx: accepted. 408, 429, 5xx and transport errors: retried with backoff, honouring
//! `Retry-After`. 413: the caller splits the request. 400, 401, 403 and other 4xx: not
//! retried; the status and a short reason are logged, never the API key.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;

use super::config::DatadogConfig;
use crate::delivery::retry::{Attempt, parse_retry_after};

/// Upper bound for one request; the flush deadline may cut it shorter.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request came to, when it is not worth retrying as is.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    Accepted,
    TooLarge,
}

pub struct Transport {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    api_key: String,
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
        if config.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert("DD-EVP-ORIGIN", HeaderValue::from_static("flb-fanout"));
        headers.insert(
            "DD-EVP-ORIGIN-VERSION",
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        let client = reqwest::Client::builder()
            .user_agent(concat!("flb-fanout/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Transport {
            client,
            url: config.url.clone(),
            headers,
            api_key: config.api_key.expose().to_owned(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One POST of an already-encoded body.
    pub async fn post(&self, body: bytes::Bytes, deadline: Instant) -> Attempt<Posted> {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .min(REQUEST_TIMEOUT)
            .max(Duration::from_millis(1));
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    reason: self.redact(&describe_transport_error(&e)),
                    after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done(Posted::Accepted);
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Attempt::Done(Posted::TooLarge);
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
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        if retryable {
            Attempt::Retry { reason, after }
        } else {
            let hint = match status.as_u16() {
                401 | 403 => " (check apikey and dd_site: the key must belong to this site)",
                400 => " (the intake rejected the payload)",
                _ => "",
            };
            Attempt::Permanent(format!("{reason}{hint}"))
        }
    }

    /// Up to 200 characters of the response body, on one line, without the key.
    async fn short_reason(&self, response: reqwest::Response) -> String {
        let text = response.text().await.unwrap_or_default();
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = one_line.chars().take(200).collect();
        if short.is_empty() {
            String::new()
        } else {
            format!(": {}", self.redact(&short))
        }
    }

    fn redact(&self, text: &str) -> String {
        if self.api_key.len() >= 4 {
            text.replace(&self.api_key, "***")
        } else {
            text.to_owned()
        }
    }
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
