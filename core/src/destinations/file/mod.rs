//! The `file` destination: properties ([`config`]) and what the preview shows ([`preview`]).
//! The plugin's `destinations::file` appends.

pub mod config;
pub mod preview;

use super::spec::Registration;

pub const REGISTRATION: Registration = Registration {
    name: "file",
    title: "file",
    preview: preview::read,
};
