//! The one async runtime of the process, shared by every instance.
//!
//! Created lazily by the first instance's Init (never in Register: daemon mode forks after
//! Register and threads do not survive a fork) and shut down, joining its threads, when the
//! last instance exits — before Fluent Bit can `dlclose` the library. A hot reload exits the
//! old instances before it initialises the new ones, so it gets a fresh runtime rather than
//! inheriting one.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

/// Threads for delivery work: network waits overlap on any number of threads, so this only
/// bounds the CPU-bound part (decode, JSON, gzip; ~100k small records per second per thread,
/// see BENCHMARKS.md), far beyond a sidecar's fraction of a vCPU. One thread, not one per
/// core: Fluent Bit's jemalloc keeps freed pages per arena for a while, and every extra
/// thread churning megabytes per chunk raised peak RSS (1M records end to end: 93 MiB with
/// one thread, 117 MiB with two, same CPU seconds).
const WORKER_THREADS: usize = 1;

/// How long the last exit waits for runtime threads to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

struct Shared {
    runtime: Runtime,
    users: usize,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// A share in the runtime; dropping the last one shuts it down. Drop it on a host thread,
/// never inside the runtime.
pub struct RuntimeLease {
    handle: Handle,
}

impl RuntimeLease {
    pub fn acquire() -> std::io::Result<RuntimeLease> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if shared.is_none() {
            let runtime = Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("fanout-rt")
                .enable_all()
                .build()?;
            *shared = Some(Shared { runtime, users: 0 });
        }
        let shared = shared.as_mut().expect("created above");
        shared.users += 1;
        Ok(RuntimeLease {
            handle: shared.runtime.handle().clone(),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Number of instances holding the runtime, and whether it exists (for tests).
    pub fn users() -> usize {
        SHARED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |s| s.users)
    }
}

impl Drop for RuntimeLease {
    fn drop(&mut self) {
        let last = {
            let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            match shared.as_mut() {
                Some(s) if s.users > 1 => {
                    s.users -= 1;
                    None
                }
                _ => shared.take(),
            }
        };
        if let Some(last) = last {
            last.runtime.shutdown_timeout(SHUTDOWN_WAIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_lives_while_leases_do() {
        let a = RuntimeLease::acquire().unwrap();
        let b = RuntimeLease::acquire().unwrap();
        assert!(RuntimeLease::users() >= 2);
        assert_eq!(a.handle().block_on(async { 40 + 2 }), 42);
        drop(a);
        assert_eq!(b.handle().block_on(async { 7 }), 7);
        drop(b);
    }
}
