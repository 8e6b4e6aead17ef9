//! What flb-fanout's parts agree on, in one place: the core (and through it the plugin,
//! `preview` and the playground), the WASM filter and job-wrapper all take these from here, so
//! they cannot drift apart.
//!
//! - [`view`]: reading msgpack in place and writing it as JSON, with the one mapping every
//!   part uses (binary as a string, invalid UTF-8 as U+FFFD, NaN and infinities as `null`, an
//!   EventTime as fractional seconds, other extension values as `null`, a map key that is not
//!   a string as its JSON text, a container nested deeper than [`view::MAX_DEPTH`] as
//!   [`view::DEPTH_PLACEHOLDER`]);
//! - [`json`]: JSON strings and numbers spelt exactly as serde_json spells them;
//! - [`job_end`]: job-wrapper's end-of-job record, as the wrapper writes it and the plugin
//!   recognises it;
//! - [`duration`]: durations as properties and flags spell them (`30s`, `500ms`, `2m`);
//! - [`service_tags`]: the Kubernetes labels Datadog's unified service tagging reads.

pub mod duration;
pub mod job_end;
pub mod json;
pub mod service_tags;
pub mod view;
