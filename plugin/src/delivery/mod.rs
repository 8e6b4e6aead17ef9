//! The delivery core every remote destination shares: a destination turns a batch into a plan
//! (requests built lazily, plus the records it will not send), and one executor sends any plan
//! ([`execute`]) — bounded concurrency, retry with backoff inside the flush deadline, partial
//! resends, splits — writing each record's fate into an [`outcome::Outcome`]. Destinations keep
//! only what is specific to their API: encoding, limits and how an answer reads.

pub mod execute;
pub mod outcome;
pub mod retry;
