//! Datadog Logs API: properties ([`config`]), entries and request bodies within the intake's
//! limits ([`encode`]), and what the preview shows ([`preview`]). The plugin's
//! `destinations::datadog` sends them.

pub mod config;
pub mod encode;
pub mod preview;

use super::spec::Registration;

pub const REGISTRATION: Registration = Registration {
    name: "datadog",
    title: "Datadog",
    preview: preview::read,
};
