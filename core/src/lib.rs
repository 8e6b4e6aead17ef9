//! flb-fanout's core: everything between a Fluent Bit chunk and the bytes a destination sends,
//! without I/O — no threads, clocks, sockets or async runtime — so the same code runs in the
//! plugin, in `flb-fanout preview` and in a browser (`wasm32-unknown-unknown`).
//!
//! Reading msgpack in place and writing it as JSON (`fanout_contract::view`), with the mapping
//! the WASM filter shares, comes from `fanout-contract`.
//!
//! Layout, each module importing only those listed before it: [`time`] (event timestamps);
//! [`json`] writes objects field by field; [`record`] is the record model; [`decode`] checks and indexes chunks into
//! records; [`chunk`] writes chunks from JSON (preview, tests, benchmarks); [`accessor`]
//! resolves per-record templates; [`packing`] is what every encoder shares (units, limits, the
//! plan an encoder yields); [`config`] reads properties, and [`properties`] is the table of
//! every property (checked against the readers and the README); [`destinations`] hold each
//! destination's configuration, limits and encoder; [`classic`] reads classic config files and
//! [`preview`] runs a config over sample records as the plugin would.

pub mod accessor;
pub mod chunk;
pub mod classic;
pub mod config;
pub mod decode;
pub mod destinations;
pub mod json;
pub mod packing;
pub mod preview;
pub mod properties;
pub mod record;
pub mod text;
pub mod time;
