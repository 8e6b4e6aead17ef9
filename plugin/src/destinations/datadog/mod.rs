//! `datadog` destination: the Datadog Logs intake, `POST /api/v2/logs`.
//!
//! Limits of the remote API (Datadog docs, "Send logs"):
//! - a request is a JSON array of at most **1000 entries** and **5 MB uncompressed**;
//! - a log over **1 MB** is truncated by the intake (still 2xx); we shorten the message first
//!   so the truncation is visible (`...TRUNCATED...`, tag `truncated:true`) and counted;
//! - `Content-Encoding: gzip` is accepted and recommended; the limits apply before compression;
//! - 202 accepted; 400 bad payload (split to isolate the refused log), 401/403 bad key,
//!   413 too large (split and resend); 408, 429 and 5xx are temporary (`Retry-After` may say
//!   when to come back).
//!
//! Files: [`config`] (properties), [`encode`] (records → entries → request bodies, built as
//! the executor asks), [`transport`] (one POST and how its answer is classified). Concurrency,
//! retries and splits come from [`crate::delivery::execute`].

pub mod config;
pub mod encode;
pub mod transport;

use std::sync::Arc;

use tokio::time::Instant;

use self::config::DatadogConfig;
use self::encode::Encoder;
use self::transport::Transport;
use super::Shared;
use crate::config::{ConfigError, Properties};
use crate::delivery::execute::{Endpoint, Requests, Sent};
use crate::delivery::outcome::SharedOutcome;
use crate::delivery::units::Units;
use crate::log::Logger;
use crate::record::Batch;

pub struct DatadogDestination {
    config: DatadogConfig,
    transport: Transport,
    message_keys: Vec<String>,
    log: Arc<Logger>,
    requests: Requests,
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
        })
    }

    pub async fn deliver(&self, batch: &Batch, deadline: Instant, outcome: &SharedOutcome) {
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
    }
}

impl Endpoint for DatadogDestination {
    type Key = ();

    async fn send(&self, _key: &(), units: &Units, deadline: Instant) -> Sent {
        // Built (and compressed) only now, so memory holds the requests in flight.
        let body = bytes::Bytes::from(encode::body(units, self.config.gzip));
        self.transport.post(body, deadline).await
    }

    fn describe(&self, _key: &()) -> String {
        String::new()
    }
}
