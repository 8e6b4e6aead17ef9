//! Destinations: where an instance delivers the records of a flush. An open set: each is a
//! folder (or file) here with its transport, over its codec in `fanout_core::destinations`, and
//! one line in [`REGISTERED`].
//!
//! Every destination receives the same decoded [`Batch`] (decoded once per flush) and writes
//! what became of each record into an [`Outcome`](crate::delivery::outcome::Outcome). The
//! instance turns the outcomes of all its destinations into the flush result.

pub mod datadog;
pub mod file;
pub mod firehose;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

use crate::delivery::execute::Requests;
use crate::delivery::outcome::SharedOutcome;
use crate::log::Logger;
use fanout_core::config::{ConfigError, Properties};
use fanout_core::record::Batch;

/// Settings shared by all destinations of an instance.
pub struct Shared {
    pub log: Arc<Logger>,
    pub message_keys: Vec<String>,
    /// `max_concurrent_requests`: each remote destination's request slots.
    pub max_concurrent_requests: usize,
}

/// A delivery in progress.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What the instance asks of a destination.
pub trait Deliver: Send + Sync {
    /// Delivers the batch by `deadline`, writing each record's fate into `outcome` as it
    /// settles (records left pending are for Fluent Bit to resend).
    fn deliver<'a>(
        &'a self,
        batch: &'a Batch,
        deadline: Instant,
        outcome: &'a SharedOutcome,
    ) -> Delivery<'a>;

    /// Requests sent and not answered yet (or waiting to retry).
    fn requests_in_flight(&self) -> usize {
        0
    }

    /// The destination itself, for what only one kind offers (the dead letter stream goes
    /// through Firehose's).
    fn as_any(&self) -> &dyn Any;
}

/// A destination that sends requests through the executor ([`crate::delivery::execute`]): a
/// batch delivered by its plan, and its request slots. It is a [`Deliver`] as it is.
pub trait Remote: Send + Sync + 'static {
    fn deliver_batch(
        &self,
        batch: &Batch,
        deadline: Instant,
        outcome: &SharedOutcome,
    ) -> impl Future<Output = ()> + Send;

    fn requests(&self) -> &Requests;
}

impl<T: Remote> Deliver for T {
    fn deliver<'a>(
        &'a self,
        batch: &'a Batch,
        deadline: Instant,
        outcome: &'a SharedOutcome,
    ) -> Delivery<'a> {
        Box::pin(self.deliver_batch(batch, deadline, outcome))
    }

    fn requests_in_flight(&self) -> usize {
        self.requests().in_flight()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One destination: its name in the `destinations` property, and how it is built.
pub struct Registration {
    pub name: &'static str,
    pub configure: Configure,
}

/// Builds a destination from an output's properties.
pub type Configure = fn(&dyn Properties, &Shared) -> Result<Box<dyn Deliver>, ConfigError>;

/// Every destination the plugin delivers to: the core's, each with its transport. A new one is
/// one line here (and one in `fanout_core::destinations::REGISTERED`).
pub const REGISTERED: &[Registration] = &[
    datadog::REGISTRATION,
    firehose::REGISTRATION,
    file::REGISTRATION,
];

/// One configured destination of an instance.
pub struct Destination {
    pub name: &'static str,
    deliver: Box<dyn Deliver>,
}

impl Destination {
    /// Builds the destination registered as `name` (one [`fanout_core::config::CoreConfig`]
    /// accepted from [`REGISTERED`]).
    pub fn configure(
        name: &str,
        props: &dyn Properties,
        shared: &Shared,
    ) -> Result<Destination, ConfigError> {
        let registration = REGISTERED.iter().find(|r| r.name == name).ok_or_else(|| {
            ConfigError::new("destinations", format!("unknown destination '{name}'"))
        })?;
        Ok(Destination {
            name: registration.name,
            deliver: (registration.configure)(props, shared)?,
        })
    }

    /// The registered names, as `destinations` accepts them.
    pub fn names() -> Vec<&'static str> {
        REGISTERED.iter().map(|r| r.name).collect()
    }

    /// The destination as its own type, if it is a `T`.
    pub fn downcast<T: 'static>(&self) -> Option<&T> {
        self.deliver.as_any().downcast_ref::<T>()
    }

    pub fn requests_in_flight(&self) -> usize {
        self.deliver.requests_in_flight()
    }

    pub async fn deliver(&self, batch: &Batch, deadline: Instant, outcome: &SharedOutcome) {
        self.deliver.deliver(batch, deadline, outcome).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `destinations` accepts (the core's registry, which the preview goes by) is what
    /// the plugin can deliver to.
    #[test]
    fn the_plugin_delivers_to_every_destination_the_core_knows() {
        let core: Vec<&str> = fanout_core::destinations::REGISTERED
            .iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(Destination::names(), core);
    }
}
