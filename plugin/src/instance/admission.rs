//! The flush side: a chunk handed from Fluent Bit's coroutine to the runtime, and admission
//! (`max_in_flight_bytes`): a flush waits for room rather than answering RETRY, which would
//! spend the chunk's `Retry_Limit` on something that is not a delivery failure.

use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{FlushStatus, Instance, Job, Pipeline};
use crate::stats;

/// Extra time the flush side waits beyond `flush_timeout` for the runtime side, which enforces
/// the deadline itself; this only matters if the runtime is wedged.
const DEADLINE_SLACK: Duration = Duration::from_secs(2);

/// After cancelling a job, how long the flush side waits for it to record its progress.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

impl Instance {
    pub(super) fn hand_over(&self, data: &[u8], tag: &[u8]) -> FlushStatus {
        let pipeline = &self.pipeline;
        // What this chunk will hold while it is processed: its copy, read in place, plus an
        // index entry per record.
        let size = fanout_core::decode::decoded_size_estimate(data);
        if !pipeline.reserve(size) {
            return FlushStatus::Retry;
        }
        let (reply, answer) = std_mpsc::sync_channel(1);
        let (cancel, cancelled) = oneshot::channel();
        let job = Job {
            chunk: data.to_vec(),
            reserved: size,
            tag: String::from_utf8_lossy(tag).into_owned(),
            received: Instant::now(),
            reply,
            cancel: cancelled,
        };
        let sender = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if sender.is_none_or(|tx| tx.send(job).is_err()) {
            pipeline.release(size);
            pipeline
                .log
                .error("flush after exit; asking Fluent Bit to retry");
            return FlushStatus::Retry;
        }
        match answer.recv_timeout(pipeline.config.flush_timeout + DEADLINE_SLACK) {
            Ok(status) => status,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                // The job enforces the deadline itself; it is late only if the runtime is
                // starved. Cancel it so it records what got through before Fluent Bit resends.
                let _ = cancel.send(());
                let recorded = answer.recv_timeout(CANCEL_GRACE).is_ok();
                pipeline.log.error(format_args!(
                    "the delivery runtime did not answer in time{}; asking Fluent Bit to retry",
                    if recorded {
                        ""
                    } else {
                        " (progress not recorded: some records may be sent twice)"
                    }
                ));
                FlushStatus::Retry
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                pipeline.log.error(
                    "internal error while processing a chunk (see stderr); the chunk is dropped",
                );
                FlushStatus::Error
            }
        }
    }

    /// A flush waits for its deliveries; on the engine thread that stalls inputs, filters and
    /// every other output meanwhile, which nobody wants and the plugin cannot change (the
    /// proxy ABI has no way to ask for workers).
    pub(super) fn warn_once_if_on_engine_thread(&self) {
        if std::thread::current().id() == self.engine_thread
            && !self.engine_thread_warned.swap(true, Ordering::Relaxed)
        {
            self.pipeline.log.warn(
                "flushes run on Fluent Bit's engine thread because this [OUTPUT] has no 'workers': \
                 while a flush waits for its destinations, inputs and other outputs wait too; \
                 set 'workers 1' (or more)",
            );
        }
    }
}

/// Chunk bytes counted in flight, released when dropped — also if the job panics or is
/// cancelled, so a failed job can never leave the instance waiting for room forever.
pub(super) struct Reserved<'a> {
    pipeline: &'a Pipeline,
    size: u64,
}

impl<'a> Reserved<'a> {
    /// Takes over `size` bytes [`Pipeline::reserve`] counted.
    pub(super) fn new(pipeline: &'a Pipeline, size: u64) -> Self {
        Reserved { pipeline, size }
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.pipeline.release(self.size);
    }
}

impl Pipeline {
    /// Room for `size` more chunk bytes: waits while `max_in_flight_bytes` is reached (one
    /// chunk is always taken when idle, whatever its size), up to `flush_timeout`. A RETRY
    /// that is not a delivery failure would spend the chunk's `Retry_Limit`, so waiting is
    /// better; only a full `flush_timeout` without room answers RETRY.
    pub(super) fn reserve(&self, size: u64) -> bool {
        let max = self.config.max_in_flight_bytes;
        let deadline = Instant::now() + self.config.flush_timeout;
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let mut waited = false;
        while *in_flight > 0 && *in_flight + size > max {
            if !waited {
                waited = true;
                stats::add(&self.stats.busy, 1);
                self.log.debug(format_args!(
                    "{} bytes in flight (max_in_flight_bytes {max}): waiting for room",
                    *in_flight
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                stats::add(&self.stats.busy_retry, 1);
                self.log.warn(format_args!(
                    "no room within flush_timeout ({:?}) for a chunk of {size} bytes (max_in_flight_bytes {max}); asking Fluent Bit to retry",
                    self.config.flush_timeout
                ));
                return false;
            }
            in_flight = self
                .room
                .wait_timeout(in_flight, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *in_flight += size;
        true
    }

    pub(super) fn release(&self, size: u64) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *in_flight = in_flight.saturating_sub(size);
        self.room.notify_all();
    }
}
