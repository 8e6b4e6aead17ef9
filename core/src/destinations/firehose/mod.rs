//! Amazon Data Firehose: properties ([`config`]), the API's limits ([`limits`]), routing,
//! aggregation and records ([`encode`]), and what the preview shows ([`preview`]). The
//! plugin's `destinations::firehose` sends what [`encode`] plans.

pub mod config;
pub mod encode;
pub mod limits;
pub mod preview;

use super::spec::Registration;

pub const REGISTRATION: Registration = Registration {
    name: "firehose",
    title: "Firehose",
    preview: preview::read,
};
