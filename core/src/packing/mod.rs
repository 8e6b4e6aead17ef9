//! How a destination's records are packed into requests: the records a request carries
//! ([`units`]), limits and how a chunk is cut into requests ([`request`], [`shrink`]) and the plan
//! an encoder yields ([`plan`]), which the plugin's executor sends.

pub mod plan;
pub mod request;
pub mod shrink;
pub mod units;
