//! The plan a destination's encoder yields for a batch, request by request: the plugin's
//! executor sends it; `preview` and the playground show it.

use super::units::Units;

/// The most concurrent requests a destination may be configured for (`max_concurrent_requests`).
pub const MAX_CONCURRENCY: usize = 64;

/// One request of a plan: where it goes (a Firehose stream; nothing for Datadog) and what.
#[derive(Clone, Debug)]
pub struct Request<K> {
    pub key: K,
    pub units: Units,
}

/// What a plan yields, in order.
#[derive(Debug)]
pub enum Planned<K> {
    Request(Request<K>),
    /// Records the destination will not send, and why (too large, no stream, no `log_key`).
    Dropped {
        positions: Vec<usize>,
        cause: String,
    },
}
