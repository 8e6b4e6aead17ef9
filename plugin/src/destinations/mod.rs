//! Destinations: where an instance delivers the records of a flush.
//!
//! Every destination receives the same decoded [`Batch`] (decoded once per flush) and writes
//! what became of each record into an [`Outcome`](crate::delivery::outcome::Outcome). The
//! instance turns the outcomes of all its destinations into the flush result.

pub mod datadog;
pub mod file;
pub mod firehose;

use std::sync::Arc;

use tokio::time::Instant;

use crate::delivery::outcome::SharedOutcome;
use crate::log::Logger;
use fanout_core::config::{ConfigError, Properties};
use fanout_core::record::Batch;

pub use fanout_core::destinations::DestinationKind;

/// Settings shared by all destinations of an instance.
pub struct Shared {
    pub log: Arc<Logger>,
    pub message_keys: Vec<String>,
    /// `max_concurrent_requests`: each remote destination's request slots.
    pub max_concurrent_requests: usize,
}

pub enum Destination {
    Datadog(Box<datadog::DatadogDestination>),
    Firehose(Box<firehose::FirehoseDestination>),
    File(file::FileDestination),
}

impl Destination {
    pub fn configure(
        kind: DestinationKind,
        props: &dyn Properties,
        shared: &Shared,
    ) -> Result<Destination, ConfigError> {
        Ok(match kind {
            DestinationKind::Datadog => Destination::Datadog(Box::new(
                datadog::DatadogDestination::configure(props, shared)?,
            )),
            DestinationKind::Firehose => Destination::Firehose(Box::new(
                firehose::FirehoseDestination::configure(props, shared)?,
            )),
            DestinationKind::File => {
                Destination::File(file::FileDestination::configure(props, shared)?)
            }
        })
    }

    /// The Firehose destination, if this is it.
    pub fn as_firehose(&self) -> Option<&firehose::FirehoseDestination> {
        match self {
            Destination::Firehose(d) => Some(d),
            _ => None,
        }
    }

    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Datadog(_) => DestinationKind::Datadog,
            Destination::Firehose(_) => DestinationKind::Firehose,
            Destination::File(_) => DestinationKind::File,
        }
    }

    /// Requests sent and not answered yet (or waiting to retry); the file destination has none.
    pub fn requests_in_flight(&self) -> usize {
        match self {
            Destination::Datadog(d) => d.requests_in_flight(),
            Destination::Firehose(d) => d.requests_in_flight(),
            Destination::File(_) => 0,
        }
    }

    /// Delivers the batch by `deadline`, writing each record's fate into `outcome` as it
    /// settles (records left pending are for Fluent Bit to resend).
    pub async fn deliver(&self, batch: &Batch, deadline: Instant, outcome: &SharedOutcome) {
        match self {
            Destination::Datadog(d) => d.deliver(batch, deadline, outcome).await,
            Destination::Firehose(d) => d.deliver(batch, deadline, outcome).await,
            Destination::File(d) => d.deliver(batch, outcome).await,
        }
    }
}
