//! `firehose` destination: Amazon Data Firehose `PutRecordBatch`, routed per record.
//!
//! The API's limits, and the encoder that packs records to them, are `fanout_core`'s
//! (`destinations::firehose::{limits, encode}`). What this side adds is how answers read: a
//! call answered HTTP 200 may still have failed records (`FailedPutCount`, index-aligned
//! `RequestResponses`), and only those are resent; `ServiceUnavailableException` means
//! throttling (back off); `ResourceNotFoundException` sends the stream's records to their next
//! `||` alternative.
//!
//! Files: [`transport`] (one call and its classification), [`credentials`] (the AWS chain);
//! `fanout_core::destinations::firehose::config` holds the properties.

pub mod credentials;
pub mod transport;

use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{Registration, Remote, Shared};
use crate::delivery::execute::{Answer, Endpoint, Requests, Sent};
use crate::delivery::outcome::SharedOutcome;
use crate::log::Logger;
use fanout_core::config::{ConfigError, Properties};
use fanout_core::destinations::firehose::config::FirehoseConfig;
use fanout_core::destinations::firehose::encode::{
    Encoder, MISSING_STREAM_TTL, MissingStreams, Reroutes,
};
use fanout_core::packing::plan::{Planned, Request};
use fanout_core::packing::units::Units;
use fanout_core::record::Batch;

pub const REGISTRATION: Registration = Registration {
    name: "firehose",
    configure: |props, shared| Ok(Box::new(FirehoseDestination::configure(props, shared)?)),
};

impl Remote for FirehoseDestination {
    async fn deliver_batch(&self, batch: &Batch, deadline: Instant, outcome: &SharedOutcome) {
        let encoder = Encoder {
            config: &self.config,
            message_keys: &self.message_keys,
        };
        let client = self
            .client
            .get_or_init(|| transport::client(&self.config))
            .await;
        let calls = Calls {
            client,
            missing: &self.missing,
            reroutes: Rerouted::default(),
        };
        // Records whose stream answers ResourceNotFoundException come back through `calls`
        // and take their next `||` alternative (the stream is remembered missing, so routing
        // passes it over); a record with none left is dropped as unroutable.
        let mut plan = encoder
            .plan_avoiding(batch, Some(&self.missing))
            .rerouting(&calls.reroutes);
        self.requests
            .run(&calls, &mut plan, outcome, deadline, &self.log, "firehose")
            .await;
        if plan.counts.truncated > 0 {
            self.log.warn(format_args!(
                "firehose: {} records over 1000 KiB had their message truncated",
                plan.counts.truncated
            ));
        }
    }

    fn requests(&self) -> &Requests {
        &self.requests
    }
}

pub struct FirehoseDestination {
    config: FirehoseConfig,
    /// Built on first use: loading the credential chain is async and may read files.
    client: OnceCell<aws_sdk_firehose::Client>,
    message_keys: Vec<String>,
    log: Arc<Logger>,
    requests: Requests,
    /// Streams Firehose said do not exist, not asked again for a while.
    missing: RecentlyMissing,
}

/// The calls of one flush: the client they go through.
struct Calls<'a> {
    client: &'a aws_sdk_firehose::Client,
    missing: &'a RecentlyMissing,
    reroutes: Rerouted,
}

impl FirehoseDestination {
    pub fn configure(
        props: &dyn Properties,
        shared: &Shared,
    ) -> Result<FirehoseDestination, ConfigError> {
        let config = FirehoseConfig::read(props, &|name| std::env::var(name).ok())?;
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
            requests: Requests::new(shared.max_concurrent_requests),
            missing: RecentlyMissing::default(),
        })
    }
}

impl FirehoseDestination {
    /// Whether Firehose said lately that `stream` does not exist.
    pub fn is_missing(&self, stream: &str) -> bool {
        self.missing.contains(stream)
    }

    /// Sends ready-made `calls` (a Firehose record per unit) to `stream` by `deadline` through
    /// the same executor as deliveries, writing each unit's fate into `outcome`: for
    /// `dead_letter firehose:…`.
    pub async fn send_calls(
        &self,
        stream: &str,
        calls: Vec<Units>,
        deadline: Instant,
        outcome: &SharedOutcome,
    ) {
        let client = self
            .client
            .get_or_init(|| transport::client(&self.config))
            .await;
        let plan = calls.into_iter().map(|units| {
            Planned::Request(Request {
                key: stream.to_owned(),
                units,
            })
        });
        let calls = Calls {
            client,
            missing: &self.missing,
            reroutes: Rerouted::default(),
        };
        self.requests
            .run(&calls, plan, outcome, deadline, &self.log, "dead_letter")
            .await;
    }
}

/// The records of one flush whose stream turned out missing.
#[derive(Default)]
struct Rerouted(std::sync::Mutex<Vec<usize>>);

impl Reroutes for Rerouted {
    fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Endpoint for Calls<'_> {
    type Key = String;

    async fn send(&self, stream: &String, units: &Units, deadline: Instant) -> Answer {
        let records: Vec<&[u8]> = units.iter().collect();
        let sent = transport::put(self.client, stream, &records, deadline).await;
        if matches!(sent, Sent::Reroute { .. }) {
            // These records and later ones take their next `||` alternative without asking
            // this stream again.
            self.missing.insert(stream);
            self.reroutes
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(units.positions());
        }
        sent.into()
    }

    fn describe(&self, stream: &String) -> String {
        format!("stream '{stream}': ")
    }
}

/// Streams remembered as missing at most (the oldest is forgotten first).
const MISSING_STREAMS_KEPT: usize = 1024;

/// Streams Firehose reported missing within [`MISSING_STREAM_TTL`] (the clock lives here, not in
/// `fanout-core`).
#[derive(Default)]
pub struct RecentlyMissing {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Some stream was ever reported missing: until then, records route without the lock.
    any: std::sync::atomic::AtomicBool,
}

impl RecentlyMissing {
    pub fn insert(&self, stream: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        seen.retain(|_, at| now.duration_since(*at) < MISSING_STREAM_TTL);
        if seen.len() >= MISSING_STREAMS_KEPT
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(stream.to_owned(), now);
        self.any.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl MissingStreams for RecentlyMissing {
    fn contains(&self, stream: &str) -> bool {
        if !self.any.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(stream)
            .is_some_and(|at| at.elapsed() < MISSING_STREAM_TTL)
    }
}
