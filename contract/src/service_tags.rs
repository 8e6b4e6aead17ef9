//! The Kubernetes labels Datadog's unified service tagging reads, in the order they are tried:
//! the WASM filter copies the first one present into a record's `service`, `env` and `version`,
//! and the Datadog destination's default `dd_service` and convention tags read the same labels
//! from a record's `kubernetes.labels`.

/// Labels naming the service, first present wins.
pub const SERVICE: &[&str] = &["tags.datadoghq.com/service", "app.kubernetes.io/name"];

/// Labels naming the environment.
pub const ENV: &[&str] = &["tags.datadoghq.com/env"];

/// Labels naming the version.
pub const VERSION: &[&str] = &["tags.datadoghq.com/version", "app.kubernetes.io/version"];

/// Each unified service tag with its labels, in the order the filter writes them.
pub const TAGS: [(&str, &[&str]); 3] = [("service", SERVICE), ("env", ENV), ("version", VERSION)];
