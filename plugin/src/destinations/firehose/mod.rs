//! `firehose` destination: Amazon Data Firehose `PutRecordBatch`, routed per record.
//!
//! Limits of the remote API (AWS docs, PutRecordBatch):
//! - at most **500 records** and **4 MiB** per call (counted here on the base64 the JSON body
//!   carries, the conservative reading);
//! - at most **1000 KiB per record** before base64;
//! - a call answered HTTP 200 may still have failed records (`FailedPutCount`, index-aligned
//!   `RequestResponses`): only those are resent;
//! - `ServiceUnavailableException` means throttling: back off;
//! - ingestion is billed per record rounded up to **5 KB**, which `simple_aggregation` makes
//!   negligible by packing many lines into one record.
//!
//! Files: [`config`] (properties), [`encode`] (routing and record building),
//! [`transport`] (one call and its classification), [`credentials`] (the AWS chain).

pub mod config;
pub mod credentials;
pub mod encode;
pub mod transport;

use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use tokio::time::Instant;

use self::config::FirehoseConfig;
use self::encode::{Encoder, StreamRecords};
use self::transport::Put;
use super::{Delivery, Shared};
use crate::config::{ConfigError, Properties};
use crate::delivery::retry::{self, Attempt, Backoff, GaveUp};
use crate::log::Logger;
use crate::record::Batch;

pub struct FirehoseDestination {
    config: FirehoseConfig,
    /// Built on first use: loading the credential chain is async and may read files.
    client: OnceCell<aws_sdk_firehose::Client>,
    message_keys: Vec<String>,
    log: Arc<Logger>,
    backoff: Backoff,
}

impl FirehoseDestination {
    pub fn configure(
        props: &dyn Properties,
        shared: &Shared,
    ) -> Result<FirehoseDestination, ConfigError> {
        let config = FirehoseConfig::read(props)?;
        shared.log.debug(format_args!(
            "firehose: region={} delivery_stream={}{}",
            config.region,
            config.delivery_stream,
            config
                .endpoint
                .as_deref()
                .map(|e| format!(" endpoint={e}"))
                .unwrap_or_default()
        ));
        Ok(FirehoseDestination {
            config,
            client: OnceCell::new(),
            message_keys: shared.message_keys.clone(),
            log: Arc::clone(&shared.log),
            backoff: Backoff::default(),
        })
    }

    pub async fn deliver(&self, batch: &Batch, deadline: Instant) -> Delivery {
        let routed = Encoder {
            config: &self.config,
            message_keys: &self.message_keys,
        }
        .encode(batch);
        if routed.truncated > 0 {
            self.log.warn(format_args!(
                "firehose: {} records over 1000 KiB had their message truncated",
                routed.truncated
            ));
        }
        if routed.dropped_oversize > 0 {
            self.log.error(format_args!(
                "firehose: {} records over 1000 KiB with no message to shorten were dropped",
                routed.dropped_oversize
            ));
        }
        if routed.missing_log_key > 0 {
            self.log.warn(format_args!(
                "firehose: {} records without the log_key field '{}' were not sent",
                routed.missing_log_key,
                self.config.log_key.as_deref().unwrap_or_default()
            ));
        }
        let unroutable = (routed.unroutable > 0).then(|| {
            format!(
                "{} records have no delivery stream ({}) and delivery_stream has no '||' fallback",
                routed.unroutable,
                routed
                    .unroutable_reason
                    .as_deref()
                    .unwrap_or("unknown reason")
            )
        });
        let client = self
            .client
            .get_or_init(|| transport::client(&self.config))
            .await;
        let mut rejected = Vec::new();
        for (s, stream) in routed.streams.iter().enumerate() {
            for call in stream.calls() {
                let pending = Mutex::new(call.clone().collect::<Vec<usize>>());
                match self.send(client, stream, &pending, deadline).await {
                    Ok(()) => {}
                    Err(GaveUp::Deadline { attempts, last }) => {
                        // Not accepted: what is pending of this call, the calls after it and
                        // the streams after this one. Everything else got through.
                        let mut unsent = vec![false; batch.events.len()];
                        let pending = pending.into_inner().unwrap_or_else(|e| e.into_inner());
                        let later_calls = (call.end..stream.records.len()).collect::<Vec<_>>();
                        for r in pending.iter().chain(later_calls.iter()) {
                            stream.sources[*r].iter().for_each(|&p| unsent[p] = true);
                        }
                        for later in &routed.streams[s + 1..] {
                            later
                                .sources
                                .iter()
                                .flatten()
                                .for_each(|&p| unsent[p] = true);
                        }
                        // Unroutable records are reported here, once: a resend counts them as
                        // settled.
                        let dropped = unroutable
                            .as_deref()
                            .map(|u| format!("; {u}: dropped"))
                            .unwrap_or_default();
                        return Delivery::Retry {
                            reason: format!(
                                "stream '{}': {} of {} records not accepted after {attempts} attempts (last: {last}){dropped}",
                                stream.stream,
                                unsent.iter().filter(|u| **u).count(),
                                batch.events.len()
                            ),
                            accepted: (0..batch.events.len()).filter(|p| !unsent[*p]).collect(),
                        };
                    }
                    Err(GaveUp::Permanent(reason)) => {
                        rejected.push(format!("stream '{}': {reason}", stream.stream));
                        break;
                    }
                }
            }
        }
        rejected.extend(unroutable);
        if rejected.is_empty() {
            Delivery::Delivered
        } else {
            Delivery::Rejected(rejected.join("; "))
        }
    }

    /// One call's records, resending only the ones that failed until accepted or out of time.
    /// `pending` holds the record indices not accepted yet; on failure it says what is left.
    async fn send(
        &self,
        client: &aws_sdk_firehose::Client,
        stream: &StreamRecords,
        pending: &Mutex<Vec<usize>>,
        deadline: Instant,
    ) -> Result<(), GaveUp> {
        retry::run(
            self.backoff,
            deadline,
            || async {
                let indices = pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let records: Vec<&[u8]> = indices
                    .iter()
                    .map(|&i| stream.records[i].as_slice())
                    .collect();
                match transport::put(client, &stream.stream, &records, deadline).await {
                    Put::Accepted => Attempt::Done(()),
                    Put::Partial { failed, code } => {
                        let reason = format!(
                            "{} of {} records failed ({code})",
                            failed.len(),
                            indices.len()
                        );
                        *pending.lock().unwrap_or_else(|e| e.into_inner()) = failed
                            .iter()
                            .filter_map(|&p| indices.get(p).copied())
                            .collect();
                        Attempt::Retry {
                            reason,
                            after: None,
                        }
                    }
                    Put::Retry(reason) => Attempt::Retry {
                        reason,
                        after: None,
                    },
                    Put::Permanent(reason) => Attempt::Permanent(reason),
                }
            },
            |attempt, reason, wait| {
                self.log.debug(format_args!(
                    "firehose: stream '{}': {reason}; retry {attempt} in {wait:?}",
                    stream.stream
                ))
            },
        )
        .await
    }
}
