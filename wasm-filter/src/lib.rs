//! Kubernetes metadata for `filter_wasm`, without an API server or RBAC.
//!
//! Placeholder crate: the filter itself is built by its own issue. It builds for the host and
//! for `wasm32-wasip1` so the workspace and `make dist` layout are in place.
