//! flb-fanout: a Fluent Bit output plugin, loaded through the external-plugin (Go proxy)
//! interface, that decodes each chunk once and fans its records out to destinations.
//!
//! Layout: [`ffi`] is the thin unsafe shim Fluent Bit calls; [`instance`] runs one
//! `[OUTPUT]` section; [`decode`] checks and indexes chunks into [`record`]s, read in place
//! through [`view`]; [`accessor`] resolves
//! per-record templates; [`destinations`] deliver; [`stats`] counts and [`metrics`] publishes
//! the counts on Fluent Bit's metrics; [`config`], [`log`] and [`runtime`] are the plumbing
//! they share.

pub mod accessor;
pub mod config;
pub mod decode;
pub mod delivery;
pub mod destinations;
mod ffi;
pub mod instance;
pub mod job_end;
pub mod ledger;
pub mod log;
pub mod metrics;
pub mod record;
pub mod runtime;
pub mod stats;
pub mod view;
