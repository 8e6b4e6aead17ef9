//! Amazon Data Firehose: properties ([`config`]) and routing, aggregation and records
//! ([`encode`]). The API's limits are in the plugin's `destinations::firehose`, which sends them.

pub mod config;
pub mod encode;
