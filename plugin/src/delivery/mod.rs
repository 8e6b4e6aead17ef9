//! What the remote destinations share: splitting records into requests that respect an API's
//! limits ([`batch`]), and retrying failed requests with backoff inside the flush deadline
//! ([`retry`]). Destinations keep only what is specific to their API.

pub mod batch;
pub mod json;
pub mod retry;
pub mod shrink;
