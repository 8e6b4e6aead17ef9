//! `datadog` destination: the Datadog Logs intake, `POST /api/v2/logs`.
//!
//! Limits of the remote API (Datadog docs, "Send logs"):
//! - a request is a JSON array of at most **1000 entries** and **5 MB uncompressed**;
//! - a log over **1 MB** is truncated by the intake (still 2xx); we shorten the message first
//!   so the truncation is visible (`...TRUNCATED...`, tag `truncated:true`) and counted;
//! - `Content-Encoding: gzip` is accepted and recommended; the limits apply before compression.
//!   `zstd` is accepted too (the Datadog Agent and Vector send logs with it) but is not in the
//!   public docs: until the intake has accepted one zstd body, a zstd request it refuses with
//!   400 or 415 is sent again with gzip, and if that is accepted the destination keeps to gzip
//!   from then on;
//! - 202 accepted; 400 bad payload (split to isolate the refused log), 401/403 bad key,
//!   413 too large (split and resend); 408, 429 and 5xx are temporary (`Retry-After` may say
//!   when to come back).
//!
//! Files: `fanout_core::destinations::datadog::{config, encode}` (properties; records →
//! entries → request bodies, built as the executor asks), [`transport`] (one POST and how its answer is classified). Concurrency,
//! retries and splits come from [`crate::delivery::execute`].

pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use self::transport::Transport;
use super::{Registration, Remote, Shared};
use crate::delivery::execute::{Answer, Endpoint, Requests, Sent};
use crate::delivery::outcome::{Outcome, SharedOutcome};
use crate::log::Logger;
use fanout_core::config::{ConfigError, Properties};
use fanout_core::destinations::datadog::config::{Compression, DEFAULT_GZIP_LEVEL, DatadogConfig};
use fanout_core::destinations::datadog::encode::Encoder;
use fanout_core::packing::units::Units;
use fanout_core::record::Batch;

pub const REGISTRATION: Registration = Registration {
    name: "datadog",
    configure: |props, shared| Ok(Box::new(DatadogDestination::configure(props, shared)?)),
};

impl Remote for DatadogDestination {
    async fn deliver_batch(&self, batch: &Batch, deadline: Instant, outcome: &SharedOutcome) {
        let encoder = Encoder {
            config: &self.config,
            message_keys: &self.message_keys,
        };
        let mut plan = encoder.plan(batch);
        self.requests
            .run(self, &mut plan, outcome, deadline, &self.log, "datadog")
            .await;
        if plan.truncated > 0 {
            self.log.warn(format_args!(
                "datadog: {} logs over 1 MB had their message truncated",
                plan.truncated
            ));
        }
        if plan.retyped_ddtags > 0 {
            Outcome::lock(outcome).altered_values += plan.retyped_ddtags;
            self.log.warn(format_args!(
                "datadog: {} logs had a ddtags field that is not a string: sent as tags (an array's elements, a map's key:value pairs, else its JSON text)",
                plan.retyped_ddtags
            ));
        }
    }

    fn requests(&self) -> &Requests {
        &self.requests
    }
}

pub struct DatadogDestination {
    config: DatadogConfig,
    transport: Transport,
    message_keys: Vec<String>,
    log: Arc<Logger>,
    requests: Requests,
    /// The intake has accepted a zstd body: its refusals are about the content from then on.
    zstd_confirmed: AtomicBool,
    /// The intake refused zstd and took the same request with gzip: gzip from then on.
    zstd_refused: AtomicBool,
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
            requests: Requests::new(shared.max_concurrent_requests),
            zstd_confirmed: AtomicBool::new(false),
            zstd_refused: AtomicBool::new(false),
        })
    }
}

impl DatadogDestination {
    async fn post(
        &self,
        units: &Units,
        compression: Compression,
        deadline: Instant,
    ) -> (Sent, Option<u16>) {
        match fanout_core::destinations::datadog::encode::body(units, compression) {
            Ok(body) => {
                self.transport
                    .post(bytes::Bytes::from(body), compression, deadline)
                    .await
            }
            Err(e) => (
                Sent::Rejected {
                    reason: format!("cannot compress the request ({compression}): {e}"),
                },
                None,
            ),
        }
    }
}

/// The reason a refusal gave.
fn describe(sent: &Sent) -> &str {
    match sent {
        Sent::Split { reason }
        | Sent::Rejected { reason }
        | Sent::Reroute { reason }
        | Sent::Retry { reason, .. } => reason,
        Sent::Partial { reason, .. } => reason,
        Sent::Accepted => "accepted",
    }
}

impl Endpoint for DatadogDestination {
    type Key = ();

    async fn send(&self, _key: &(), units: &Units, deadline: Instant) -> Answer {
        // Built (and compressed) only now, so memory holds the requests in flight.
        let compression = match self.config.compression {
            Compression::Zstd(_) if self.zstd_refused.load(Ordering::Relaxed) => {
                Compression::Gzip(DEFAULT_GZIP_LEVEL)
            }
            configured => configured,
        };
        let (sent, status) = self.post(units, compression, deadline).await;
        if !matches!(compression, Compression::Zstd(_)) {
            return sent.into();
        }
        match sent {
            Sent::Accepted | Sent::Partial { .. } => {
                self.zstd_confirmed.store(true, Ordering::Relaxed);
                sent.into()
            }
            // 415 Unsupported Media Type, or 400 from a peer that could not read the body.
            _ if matches!(status, Some(400 | 415))
                && !self.zstd_confirmed.load(Ordering::Relaxed) =>
            {
                // zstd is not in the intake's public docs: the same request with gzip tells
                // whether the refusal was about the encoding.
                let (again, _) = self
                    .post(units, Compression::Gzip(DEFAULT_GZIP_LEVEL), deadline)
                    .await;
                if matches!(again, Sent::Accepted | Sent::Partial { .. })
                    && !self.zstd_refused.swap(true, Ordering::Relaxed)
                {
                    self.log.warn(format_args!(
                        "datadog: the intake refused a zstd body ({}) and accepted it with gzip: compressing with gzip from now on (set compress gzip to skip the first try)",
                        describe(&sent)
                    ));
                }
                Answer {
                    sent: again,
                    requests: 2,
                }
            }
            other => other.into(),
        }
    }

    fn describe(&self, _key: &()) -> String {
        String::new()
    }
}
