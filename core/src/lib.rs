//! flb-fanout's core: everything between a Fluent Bit chunk and the bytes a destination sends,
//! without I/O — no threads, clocks, sockets or async runtime — so the same code runs in the
//! plugin, in `flb-fanout preview` and in a browser (`wasm32-unknown-unknown`).
//!
//! Layout: [`decode`] checks and indexes chunks into [`record`]s, read in place through
//! [`view`]; [`accessor`] resolves per-record templates; [`config`] reads properties;
//! [`properties`] is the table of every property (checked against the readers and the README);
//! [`destinations`] hold each destination's configuration and encoder (Datadog entries and
//! request bodies, Firehose routing, aggregation and records); [`delivery`] has what encoders
//! share (units, limits, JSON writing, the plan a destination hands its executor).

pub mod accessor;
pub mod classic;
pub mod config;
pub mod decode;
pub mod delivery;
pub mod destinations;
pub mod preview;
pub mod properties;
pub mod record;
pub mod text;
pub mod view;
