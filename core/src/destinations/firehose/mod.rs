//! Amazon Data Firehose: properties ([`config`]), the API's limits ([`limits`]) and routing,
//! aggregation and records ([`encode`]). The plugin sends what [`encode`] plans.

pub mod config;
pub mod encode;
pub mod limits;
