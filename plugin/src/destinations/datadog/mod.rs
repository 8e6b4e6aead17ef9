//! `datadog` destination: the Datadog Logs intake, `POST /api/v2/logs`.
//!
//! Limits of the remote API (Datadog docs, "Send logs"):
//! - a request is a JSON array of at most **1000 entries** and **5 MB uncompressed**;
//! - a log over **1 MB** is truncated by the intake (still 2xx); we shorten the message first
//!   so the truncation is visible (`...TRUNCATED...`, tag `truncated:true`) and counted;
//! - `Content-Encoding: gzip` is accepted and recommended; the limits apply before compression;
//! - 202 accepted; 400 bad payload, 401/403 bad key, 413 too large (split and resend);
//!   408, 429 and 5xx are temporary (`Retry-After` may say when to come back).
//!
//! Files: [`config`] (properties), [`encode`] (records → entries → request bodies),
//! [`transport`] (one POST and how its answer is classified). Retrying and batching come from
//! [`crate::delivery`].

pub mod config;
pub mod encode;
pub mod transport;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use tokio::time::Instant;

use self::config::DatadogConfig;
use self::encode::{Encoder, Entries};
use self::transport::{Posted, Transport};
use super::{Delivery, Shared};
use crate::config::{ConfigError, Properties};
use crate::delivery::retry::{self, Backoff, GaveUp};
use crate::log::Logger;
use crate::record::Batch;

pub struct DatadogDestination {
    config: DatadogConfig,
    transport: Transport,
    message_keys: Vec<String>,
    log: Arc<Logger>,
    backoff: Backoff,
}

impl DatadogDestination {
    pub fn configure(
        props: &dyn Properties,
        shared: &Shared,
    ) -> Result<DatadogDestination, ConfigError> {
        let config = DatadogConfig::read(props)?;
        let transport = Transport::new(&config).map_err(|e| ConfigError::new("apikey", e))?;
        shared
            .log
            .debug(format_args!("datadog: sending to {}", transport.url()));
        Ok(DatadogDestination {
            config,
            transport,
            message_keys: shared.message_keys.clone(),
            log: Arc::clone(&shared.log),
            backoff: Backoff::default(),
        })
    }

    pub async fn deliver(&self, batch: &Batch, deadline: Instant) -> Delivery {
        let entries = Encoder {
            config: &self.config,
            message_keys: &self.message_keys,
        }
        .encode(batch);
        if entries.truncated > 0 {
            self.log.warn(format_args!(
                "datadog: {} logs over 1 MB had their message truncated",
                entries.truncated
            ));
        }
        if entries.dropped > 0 {
            self.log.error(format_args!(
                "datadog: {} logs too large for any request (5 MB) were dropped",
                entries.dropped
            ));
        }
        let mut pending: VecDeque<Range<usize>> = entries.requests().into();
        while let Some(range) = pending.pop_front() {
            match self.send(&entries, range.clone(), deadline).await {
                Ok(Posted::Accepted) => {}
                Ok(Posted::TooLarge) if range.len() > 1 => {
                    let middle = range.start + range.len() / 2;
                    self.log.debug(format_args!(
                        "datadog: HTTP 413 for {} entries; resending as two requests",
                        range.len()
                    ));
                    pending.push_front(middle..range.end);
                    pending.push_front(range.start..middle);
                }
                Ok(Posted::TooLarge) => {
                    self.log.error(format_args!(
                        "datadog: HTTP 413 for a single log of {} bytes; it is dropped",
                        entries.entry(range.start).len()
                    ));
                }
                Err(GaveUp::Deadline { attempts, last }) => {
                    // Everything but this request and those after it got through (or was
                    // dropped with a log line): a resend carries only the rest.
                    let mut unsent = vec![false; batch.events.len()];
                    for i in pending
                        .iter()
                        .chain(std::iter::once(&range))
                        .flat_map(|r| r.clone())
                    {
                        unsent[entries.event_of(i)] = true;
                    }
                    let unsent_count = unsent.iter().filter(|u| **u).count();
                    return Delivery::Retry {
                        reason: format!(
                            "{unsent_count} of {} logs not accepted after {attempts} attempts (last: {last})",
                            batch.events.len()
                        ),
                        accepted: (0..batch.events.len()).filter(|i| !unsent[*i]).collect(),
                    };
                }
                Err(GaveUp::Permanent(reason)) => return Delivery::Rejected(reason),
            }
        }
        Delivery::Delivered
    }

    async fn send(
        &self,
        entries: &Entries,
        range: Range<usize>,
        deadline: Instant,
    ) -> Result<Posted, GaveUp> {
        let body = bytes::Bytes::from(entries.body(range.clone(), self.config.gzip));
        retry::run(
            self.backoff,
            deadline,
            || self.transport.post(body.clone(), deadline),
            |attempt, reason, wait| {
                self.log.debug(format_args!(
                    "datadog: {reason}; retry {attempt} of {} entries in {wait:?}",
                    range.len()
                ))
            },
        )
        .await
    }
}
