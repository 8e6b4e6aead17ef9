//! flb-fanout: a Fluent Bit output plugin, loaded through the external-plugin (Go proxy)
//! interface, that decodes each chunk once and fans its records out to destinations.
//!
//! Layout: [`ffi`] is the thin unsafe shim Fluent Bit calls; [`instance`] runs one
//! `[OUTPUT]` section; [`destinations`] deliver, through the executor in [`delivery`];
//! [`ledger`] remembers what each destination settled of a chunk Fluent Bit will resend;
//! [`dead_letter`] keeps what is refused for good; [`job_end`] stops Fluent Bit when a Job's
//! wrapper says it ended; [`stats`] counts and [`metrics`] publishes the counts on Fluent Bit's
//! metrics; [`log`] and [`runtime`] are the plumbing they share. Decoding, templates,
//! configuration, packing and encoding are `fanout_core`'s, imported by name: the same code
//! `preview` runs, and it builds for the browser.

pub mod dead_letter;
pub mod delivery;
pub mod destinations;
mod ffi;
pub mod instance;
pub mod job_end;
pub mod ledger;
pub mod log;
pub mod metrics;
pub mod runtime;
pub mod stats;
