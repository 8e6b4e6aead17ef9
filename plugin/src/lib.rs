//! flb-fanout: a Fluent Bit output plugin, loaded through the external-plugin (Go proxy)
//! interface, that decodes each chunk once and fans its records out to destinations.
//!
//! Layout: [`ffi`] is the thin unsafe shim Fluent Bit calls; [`instance`] runs one
//! `[OUTPUT]` section; [`destinations`] deliver, through the executor in [`delivery`];
//! [`stats`] counts and [`metrics`] publishes the counts on Fluent Bit's metrics; [`log`] and
//! [`runtime`] are the plumbing they share. Decoding, templates, configuration and encoding
//! ([`decode`], [`record`], [`view`], [`accessor`], [`config`], each destination's `config`
//! and `encode`) are `fanout-core`'s, re-exported here: the same code `preview` runs, and it
//! builds for the browser.

pub mod dead_letter;
pub mod delivery;
pub use fanout_core::{accessor, config, decode, record, view};
pub mod destinations;
mod ffi;
pub mod instance;
pub mod job_end;
pub mod ledger;
pub mod ledger_file;
pub mod log;
pub mod metrics;
pub mod runtime;
pub mod stats;
