//! A stand-in for Fluent Bit's proxy loader, for tests and the demo.
//!
//! It does what `src/flb_plugin_proxy.c` and `src/proxy/go/go.c` do with an external output
//! plugin: `dlopen(RTLD_LAZY)` the library, call `FLBPluginRegister` on a registration struct
//! of the host version's size, call `FLBPluginInit` once per instance on the one shared plugin
//! struct (overwriting `o_ins` and `context` each time), answer property lookups and log calls
//! through an `flb_api` table of the version's size, call `FLBPluginFlushCtx` on a small stack
//! with a chunk that is poisoned as soon as the call returns, and call `FLBPluginExitCtx`.
//!
//! The struct layouts here are written from the reference offsets, independently of the
//! plugin's header, and version-sized host structs sit at the very end of a page followed by an
//! inaccessible page, so reading or writing past them kills the test process.

pub mod chunk;
pub mod fake_datadog;
pub mod fake_firehose;
pub mod ffi;
pub mod fluent_bit;
pub mod host;
pub mod moto;
pub mod scripted;

pub use chunk::{Chunk, Layout, Time};
pub use host::{
    HostVersion, LogLine, OutputInstance, Plugin, job_wrapper_path, logs, plugin_path,
    target_command, workspace_root,
};
