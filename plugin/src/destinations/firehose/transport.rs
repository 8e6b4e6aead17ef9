//! One `PutRecordBatch` call and how its answer is classified.
//!
//! HTTP 200 can still carry failures: `FailedPutCount` > 0 and an index-aligned
//! `RequestResponses`; only those records are retried. `ServiceUnavailableException`
//! (throttling), 5xx, expired tokens and transport errors are retried with backoff;
//! `ResourceNotFoundException` sends the call's records to their next `||` alternative;
//! `InvalidArgumentException`, KMS/source errors and access errors are refused for good. Like
//! Datadog's transport, it answers in the executor's terms ([`Sent`]). The SDK's own retries are off: the destination retries, within the flush
//! deadline, only what failed.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_firehose::config::retry::RetryConfig;
use aws_sdk_firehose::config::timeout::TimeoutConfig;
use aws_sdk_firehose::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchError;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use tokio::time::Instant;

use super::credentials;
use crate::delivery::execute::Sent;
use fanout_core::destinations::firehose::config::FirehoseConfig;

pub async fn client(config: &FirehoseConfig) -> aws_sdk_firehose::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials::provider(config).await)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await;
    let mut builder = aws_sdk_firehose::config::Builder::from(&sdk);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_firehose::Client::from_conf(builder.build())
}

/// One `PutRecordBatch` call to `stream`, classified as the executor reads answers. Every
/// reason names the stream. A missing stream is [`Sent::Reroute`]: its records take their next
/// `||` alternative.
pub async fn put(
    client: &aws_sdk_firehose::Client,
    stream: &str,
    records: &[&[u8]],
    deadline: Instant,
) -> Sent {
    let named = |reason: String| format!("stream '{stream}': {reason}");
    let retry = |reason: String| Sent::Retry {
        reason: named(reason),
        after: None,
        serious: false,
    };
    let mut batch = Vec::with_capacity(records.len());
    for data in records {
        match Record::builder().data(Blob::new(data.to_vec())).build() {
            Ok(record) => batch.push(record),
            Err(e) => {
                return Sent::Rejected {
                    reason: named(format!("cannot build a record: {e}")),
                };
            }
        }
    }
    let call = client
        .put_record_batch()
        .delivery_stream_name(stream)
        .set_records(Some(batch))
        .send();
    let result = match tokio::time::timeout_at(deadline, call).await {
        Ok(result) => result,
        Err(_) => return retry("the call did not finish before the flush deadline".into()),
    };
    match result {
        Ok(output) if output.failed_put_count() == 0 => Sent::Accepted,
        Ok(output) => {
            let mut code = String::new();
            let failed = output
                .request_responses()
                .iter()
                .enumerate()
                .filter(|(_, entry)| entry.error_code().is_some())
                .map(|(i, entry)| {
                    if code.is_empty() {
                        code = entry.error_code().unwrap_or_default().to_owned();
                    }
                    i
                })
                .collect::<Vec<_>>();
            let failed = if failed.is_empty() {
                // A count without per-record detail: resend the whole call.
                code = "FailedPutCount without RequestResponses".into();
                (0..records.len()).collect()
            } else {
                failed
            };
            Sent::Partial {
                reason: named(format!(
                    "{} of {} records failed ({code})",
                    failed.len(),
                    records.len()
                )),
                failed,
            }
        }
        Err(error) => match classify(error) {
            Class::Retry(reason) => retry(reason),
            Class::Permanent(reason) => Sent::Rejected {
                reason: named(reason),
            },
            Class::Missing(reason) => Sent::Reroute {
                reason: named(reason),
            },
        },
    }
}

/// What a failed call's error means.
enum Class {
    Retry(String),
    Permanent(String),
    /// The stream does not exist (`ResourceNotFoundException`).
    Missing(String),
}

fn classify(error: SdkError<PutRecordBatchError>) -> Class {
    let described = DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::ServiceError(context) => {
            let err = context.err();
            let status = context.raw().status().as_u16();
            let code = err.code().unwrap_or("unknown error");
            let message = err.message().unwrap_or("");
            let reason = format!("{code}: {message}");
            match err {
                PutRecordBatchError::ServiceUnavailableException(_) => Class::Retry(reason),
                PutRecordBatchError::ResourceNotFoundException(_) => Class::Missing(reason),
                PutRecordBatchError::InvalidArgumentException(_)
                | PutRecordBatchError::InvalidKmsResourceException(_)
                | PutRecordBatchError::InvalidSourceException(_) => Class::Permanent(reason),
                _ => match code {
                    "ThrottlingException"
                    | "ExpiredTokenException"
                    | "RequestExpired"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "RequestTimeout" => Class::Retry(reason),
                    _ if status >= 500 || status == 429 => Class::Retry(reason),
                    _ => Class::Permanent(reason),
                },
            }
        }
        // Timeouts, connection failures, unreadable responses, and credentials that could not
        // be loaded yet (IMDS or STS hiccups) may all pass.
        _ => Class::Retry(described),
    }
}
