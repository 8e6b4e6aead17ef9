//! What every destination's encoder shares: the records a request carries ([`units`]), limits
//! and how a chunk is cut into requests ([`batch`], [`shrink`]), JSON writing ([`json`]) and the
//! plan an encoder yields ([`plan`]), which the plugin's executor sends.

pub mod batch;
pub mod json;
pub mod plan;
pub mod shrink;
pub mod units;
