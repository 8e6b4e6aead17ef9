//! Destinations: where an instance delivers the records of a flush.
//!
//! Every destination receives the same decoded [`Batch`] (decoded once per flush) and answers
//! with a [`Delivery`]. The instance turns the answers of all its destinations into the flush
//! result.

pub mod file;

use std::sync::Arc;

use crate::config::{ConfigError, Properties};
use crate::log::Logger;
use crate::record::Batch;

/// The destinations this build knows, as named in the `destinations` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    File,
}

impl DestinationKind {
    pub const ALL: &'static [DestinationKind] = &[DestinationKind::File];

    pub fn name(self) -> &'static str {
        match self {
            DestinationKind::File => "file",
        }
    }

    pub fn parse(name: &str) -> Option<DestinationKind> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// What a destination did with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every record was accepted.
    Delivered,
    /// Something failed that may work later: Fluent Bit should resend.
    Retry(String),
    /// Something failed that resending will not fix (bad credentials, missing stream).
    Rejected(String),
}

/// Settings shared by all destinations of an instance.
pub struct Shared {
    pub log: Arc<Logger>,
    pub message_keys: Vec<String>,
}

pub enum Destination {
    File(file::FileDestination),
}

impl Destination {
    pub fn configure(
        kind: DestinationKind,
        props: &dyn Properties,
        shared: &Shared,
    ) -> Result<Destination, ConfigError> {
        Ok(match kind {
            DestinationKind::File => {
                Destination::File(file::FileDestination::configure(props, shared)?)
            }
        })
    }

    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::File(_) => DestinationKind::File,
        }
    }

    pub async fn deliver(&self, batch: &Batch) -> Delivery {
        match self {
            Destination::File(d) => d.deliver(batch).await,
        }
    }
}
