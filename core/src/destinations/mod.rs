//! Destinations, an open set. Each is one folder here — its properties (`config`), its limits
//! and encoder, and what the preview shows of it (`preview`) — and one folder in the plugin (its
//! transport), registered with one line in each crate: [`REGISTERED`] here, the plugin's
//! `destinations::REGISTERED` there. The `destinations` property, `preview` and the playground
//! go by the registered names. README, "Adding a destination", lists the files.

pub mod datadog;
pub mod file;
pub mod firehose;
pub mod spec;

use spec::Registration;

/// Every destination this build knows, in the order the documentation lists them.
pub const REGISTERED: &[Registration] = &[
    datadog::REGISTRATION,
    firehose::REGISTRATION,
    file::REGISTRATION,
];

/// The destination registered as `name` (any case, spaces around ignored).
pub fn registered(name: &str) -> Option<&'static Registration> {
    REGISTERED
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name.trim()))
}
