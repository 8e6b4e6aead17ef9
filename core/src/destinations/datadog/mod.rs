//! Datadog Logs API: properties ([`config`]) and entries and request bodies ([`encode`]). The
//! API's limits are in the plugin's `destinations::datadog`, which sends them.

pub mod config;
pub mod encode;
