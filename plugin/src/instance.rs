//! One `[OUTPUT]` instance: its configuration, destinations, counters, and the path a flush
//! takes from Fluent Bit's thread to the shared runtime and back.
//!
//! Fluent Bit calls flush on a coroutine with a small stack (24 KiB up to 5.0) and no guard
//! page. The flush side therefore does as little as possible: copy the chunk and tag, post a
//! small job on a channel, wait for the answer with a deadline. Decoding and delivery run on
//! the runtime's own threads, where stacks are large.
//!
//! Delivery guarantee: at least once per destination. A chunk is decoded once and delivered to
//! every destination concurrently; when some accept it and others fail, the flush answers RETRY
//! and the [`Ledger`] remembers who accepted, so Fluent Bit's resend goes only to the others.
//! Duplicates happen only when the process dies between a destination accepting and Fluent Bit
//! being told, or when a destination itself resends a request whose answer was lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{ConfigError, CoreConfig, Properties};
use crate::decode::decode_chunk;
use crate::destinations::{Delivery, Destination, Shared};
use crate::ledger::{ChunkId, Ledger};
use crate::log::{LogSink, Logger};
use crate::record::Batch;
use crate::stats::{self, DestinationStats, InstanceStats};

/// What a flush tells Fluent Bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushStatus {
    /// The chunk is done.
    Ok,
    /// Resend the chunk later.
    Retry,
    /// Drop the chunk: resending cannot help.
    Error,
}

/// Extra time the flush side waits beyond `flush_timeout` for the runtime side, which enforces
/// the deadline itself; this only matters if the runtime is wedged.
const DEADLINE_SLACK: Duration = Duration::from_secs(2);

/// Asks the process hosting the plugin to shut down gracefully (Fluent Bit: SIGTERM, which
/// stops inputs and flushes what is pending for its `Grace` period).
pub trait HostShutdown: Send + Sync {
    fn request_shutdown(&self);
}

/// What the runtime side needs: shared by every job of the instance.
struct Pipeline {
    config: CoreConfig,
    log: Arc<Logger>,
    destinations: Vec<Arc<Destination>>,
    stats: InstanceStats,
    /// One per destination, same order.
    destination_stats: Vec<DestinationStats>,
    ledger: Ledger,
    /// Bytes of the chunks being processed.
    in_flight: AtomicU64,
    shutdown: Arc<dyn HostShutdown>,
}

struct Job {
    chunk: Vec<u8>,
    tag: String,
    received: Instant,
    reply: std_mpsc::SyncSender<FlushStatus>,
}

pub struct Instance {
    pipeline: Arc<Pipeline>,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    handle: Handle,
    /// When the counters were last logged.
    stats_logged: Mutex<Instant>,
    /// The thread Init ran on: Fluent Bit's engine thread. Flushes arrive there only when the
    /// output has no `workers`, and then each one holds up the whole engine.
    engine_thread: std::thread::ThreadId,
    engine_thread_warned: AtomicBool,
}

impl Instance {
    /// Reads the configuration and builds the destinations. On a bad property, logs the one
    /// line that explains it and returns `None`.
    pub fn start(
        props: &dyn Properties,
        sink: Arc<dyn LogSink>,
        shutdown: Arc<dyn HostShutdown>,
        default_label: String,
        handle: Handle,
    ) -> Option<Instance> {
        let label = CoreConfig::label(props, default_label);
        let log = Arc::new(Logger::new(&label, sink));
        let config = match CoreConfig::read(props, label) {
            Ok(config) => config,
            Err(e) => {
                log.error(format_args!("{e}"));
                return None;
            }
        };
        let shared = Shared {
            log: Arc::clone(&log),
            message_keys: config.message_keys.clone(),
        };
        // HTTP clients register with the runtime they are built in.
        let _runtime = handle.enter();
        let destinations = match configure_destinations(&config, props, &shared) {
            Ok(d) => d,
            Err(e) => {
                log.error(format_args!("{e}"));
                return None;
            }
        };
        let destination_stats = destinations
            .iter()
            .map(|d| DestinationStats::new(d.kind().name()))
            .collect();
        let pipeline = Arc::new(Pipeline {
            config,
            log,
            destinations,
            stats: InstanceStats::default(),
            destination_stats,
            ledger: Ledger::default(),
            in_flight: AtomicU64::new(0),
            shutdown,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = handle.spawn(dispatch(Arc::clone(&pipeline), rx));
        pipeline.log.debug(format_args!(
            "started: destinations={} flush_timeout={:?}",
            pipeline
                .destinations
                .iter()
                .map(|d| d.kind().name())
                .collect::<Vec<_>>()
                .join(","),
            pipeline.config.flush_timeout
        ));
        Some(Instance {
            pipeline,
            jobs: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(Some(dispatcher)),
            handle,
            stats_logged: Mutex::new(Instant::now()),
            engine_thread: std::thread::current().id(),
            engine_thread_warned: AtomicBool::new(false),
        })
    }

    /// The counters, as the stats line shows them.
    pub fn stats_summary(&self) -> String {
        stats::summary(&self.pipeline.stats, &self.pipeline.destination_stats)
    }

    /// Handles one flush. Runs on Fluent Bit's coroutine: keep this frame small.
    pub fn flush(&self, data: &[u8], tag: &[u8]) -> FlushStatus {
        self.warn_once_if_on_engine_thread();
        let status = self.hand_over(data, tag);
        let counter = match status {
            FlushStatus::Ok => &self.pipeline.stats.flush_ok,
            FlushStatus::Retry => &self.pipeline.stats.flush_retry,
            FlushStatus::Error => &self.pipeline.stats.flush_error,
        };
        stats::add(counter, 1);
        self.log_stats_when_due();
        self.pipeline.log.drain();
        status
    }

    fn hand_over(&self, data: &[u8], tag: &[u8]) -> FlushStatus {
        let pipeline = &self.pipeline;
        let size = data.len() as u64;
        let before = pipeline.in_flight.fetch_add(size, Ordering::SeqCst);
        // Bounded memory under backpressure: refuse new work while full, but always take one
        // chunk when idle, however big it is.
        if before > 0 && before + size > pipeline.config.max_in_flight_bytes {
            pipeline.in_flight.fetch_sub(size, Ordering::SeqCst);
            stats::add(&pipeline.stats.busy, 1);
            pipeline.log.debug(format_args!(
                "{before} bytes in flight (max_in_flight_bytes {}): asking Fluent Bit to retry",
                pipeline.config.max_in_flight_bytes
            ));
            return FlushStatus::Retry;
        }
        let (reply, answer) = std_mpsc::sync_channel(1);
        let job = Job {
            chunk: data.to_vec(),
            tag: String::from_utf8_lossy(tag).into_owned(),
            received: Instant::now(),
            reply,
        };
        let sender = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match sender.map(|tx| tx.send(job)) {
            Some(Ok(())) => {
                match answer.recv_timeout(pipeline.config.flush_timeout + DEADLINE_SLACK) {
                    Ok(status) => status,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        pipeline
                        .log
                        .error("the delivery runtime did not answer in time; asking Fluent Bit to retry");
                        FlushStatus::Retry
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        pipeline
                        .log
                        .error("internal error while processing a chunk (see stderr); the chunk is dropped");
                        FlushStatus::Error
                    }
                }
            }
            _ => {
                pipeline.in_flight.fetch_sub(size, Ordering::SeqCst);
                pipeline
                    .log
                    .error("flush after exit; asking Fluent Bit to retry");
                FlushStatus::Retry
            }
        }
    }

    /// A flush waits for its deliveries; on the engine thread that stalls inputs, filters and
    /// every other output meanwhile, which nobody wants and the plugin cannot change (the
    /// proxy ABI has no way to ask for workers).
    fn warn_once_if_on_engine_thread(&self) {
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

    fn log_stats_when_due(&self) {
        let interval = self.pipeline.config.stats_interval;
        if interval.is_zero() {
            return;
        }
        let mut last = self.stats_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= interval {
            *last = Instant::now();
            drop(last);
            self.pipeline
                .log
                .info(format_args!("stats: {}", self.stats_summary()));
        }
    }

    /// Stops accepting flushes and waits, up to `exit_timeout`, for work in flight.
    /// Call on a host thread, outside the runtime.
    pub fn shutdown(&self) {
        drop(self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut dispatcher) = dispatcher {
            let timeout = self.pipeline.config.exit_timeout;
            let finished = self
                .handle
                .block_on(async { tokio::time::timeout(timeout, &mut dispatcher).await.is_ok() });
            if !finished {
                dispatcher.abort();
                self.pipeline.log.warn(format_args!(
                    "deliveries still running after exit_timeout ({timeout:?}) were cancelled"
                ));
            }
        }
        self.pipeline
            .log
            .info(format_args!("exiting: {}", self.stats_summary()));
        self.pipeline.log.drain();
    }
}

fn configure_destinations(
    config: &CoreConfig,
    props: &dyn Properties,
    shared: &Shared,
) -> Result<Vec<Arc<Destination>>, ConfigError> {
    config
        .destinations
        .iter()
        .map(|kind| Destination::configure(*kind, props, shared).map(Arc::new))
        .collect()
}

/// Receives jobs until the instance exits, running each on its own task.
async fn dispatch(pipeline: Arc<Pipeline>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => {
                    running.spawn(run_job(Arc::clone(&pipeline), job));
                }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

async fn run_job(pipeline: Arc<Pipeline>, job: Job) {
    let size = job.chunk.len() as u64;
    let timeout = pipeline.config.flush_timeout;
    let deadline = tokio::time::Instant::from(job.received + timeout);
    // Destinations stop retrying a little before the hard deadline, so they can say what
    // failed instead of being cancelled mid-request.
    let soft_deadline = deadline - (timeout / 10).min(Duration::from_secs(1));
    let work = pipeline.process(job.chunk, job.tag, soft_deadline);
    let (status, job_end) = match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
        Err(_) => {
            pipeline.log.warn(format_args!(
                "deliveries did not finish within flush_timeout ({:?}); Fluent Bit will retry the chunk",
                pipeline.config.flush_timeout
            ));
            (FlushStatus::Retry, false)
        }
    };
    pipeline.in_flight.fetch_sub(size, Ordering::SeqCst);
    // The flush side may have given up already; nothing to do then.
    let _ = job.reply.send(status);
    if job_end && status == FlushStatus::Ok {
        // Everything up to job-wrapper's last record is delivered: stop Fluent Bit, whose own
        // shutdown still flushes whatever else is pending (retries included) for `Grace`.
        pipeline
            .log
            .info("job-wrapper's end-of-job record is delivered: asking Fluent Bit to shut down (exit_on_job_end)");
        pipeline.shutdown.request_shutdown();
    }
}

impl Pipeline {
    /// Decodes and delivers one chunk; also says whether it held job-wrapper's end-of-job
    /// record (when `exit_on_job_end` is on).
    async fn process(
        &self,
        chunk: Vec<u8>,
        tag: String,
        deadline: tokio::time::Instant,
    ) -> (FlushStatus, bool) {
        stats::add(&self.stats.chunks, 1);
        let decoded = match decode_chunk(&chunk) {
            Ok(decoded) => decoded,
            Err(e) => {
                stats::add(&self.stats.rejected_chunks, 1);
                self.log.error(format_args!(
                    "dropping a chunk of {} bytes with tag '{}': {e}",
                    chunk.len(),
                    shorten(&tag)
                ));
                return (FlushStatus::Error, false);
            }
        };
        let id = ChunkId::of(&tag, &chunk);
        drop(chunk);
        stats::add(
            &self.stats.skipped_records,
            decoded.anomalies.skipped_records(),
        );
        stats::add(
            &self.stats.altered_values,
            decoded.anomalies.altered_values(),
        );
        if let Some(description) = decoded.anomalies.describe() {
            self.log.warn(format_args!(
                "chunk with tag '{}': {description}",
                shorten(&tag)
            ));
        }
        let records = decoded.events.len() as u64;
        stats::add(&self.stats.records, records);
        if decoded.events.is_empty() {
            return (FlushStatus::Ok, false);
        }
        let job_end = self.config.exit_on_job_end
            && decoded
                .events
                .iter()
                .any(|e| e.is_job_end(&self.config.message_keys));
        let batch = Arc::new(Batch {
            tag,
            events: decoded.events,
        });
        // What each destination accepted on earlier attempts of this chunk is not sent again.
        let mut progress = self.ledger.progress(id, self.destinations.len());
        let mut deliveries = JoinSet::new();
        for (index, destination) in self.destinations.iter().enumerate() {
            let previous = &progress[index];
            let skipped = if previous.done {
                records as usize
            } else {
                previous.accepted_count()
            };
            stats::add(
                &self.destination_stats[index].resend_skipped,
                skipped as u64,
            );
            if previous.done {
                continue;
            }
            // Positions in the chunk of the records this destination still needs.
            let wanted: Vec<usize> = (0..batch.events.len())
                .filter(|i| !previous.accepted.get(*i).copied().unwrap_or(false))
                .collect();
            let part = if wanted.len() == batch.events.len() {
                Arc::clone(&batch)
            } else {
                Arc::new(Batch {
                    tag: batch.tag.clone(),
                    events: wanted.iter().map(|&i| batch.events[i].clone()).collect(),
                })
            };
            let destination = Arc::clone(destination);
            deliveries
                .spawn(async move { (index, wanted, destination.deliver(&part, deadline).await) });
        }
        let mut status = FlushStatus::Ok;
        while let Some(joined) = deliveries.join_next().await {
            let (index, wanted, delivery) = match joined {
                Ok(result) => result,
                Err(e) => {
                    self.log.error(format_args!("a delivery task failed: {e}"));
                    status = FlushStatus::Retry;
                    continue;
                }
            };
            let counters = &self.destination_stats[index];
            stats::add(&counters.batches, 1);
            let sent = wanted.len() as u64;
            match delivery {
                Delivery::Delivered => {
                    stats::add(&counters.delivered, sent);
                    progress[index].done = true;
                }
                Delivery::Retry { reason, accepted } => {
                    stats::add(&counters.delivered, accepted.len() as u64);
                    stats::add(
                        &counters.retried,
                        sent - accepted.len().min(wanted.len()) as u64,
                    );
                    let marks = &mut progress[index].accepted;
                    marks.resize(batch.events.len(), false);
                    for position in accepted {
                        if let Some(&original) = wanted.get(position) {
                            marks[original] = true;
                        }
                    }
                    self.log.warn(format_args!(
                        "{}: {reason}; Fluent Bit will retry the chunk",
                        counters.name
                    ));
                    status = FlushStatus::Retry;
                }
                Delivery::Rejected(reason) => {
                    stats::add(&counters.failed, sent);
                    self.log.error(format_args!(
                        "{}: {reason}; the records are dropped",
                        counters.name
                    ));
                    // Resending cannot help this destination: do not send it again.
                    progress[index].done = true;
                    if status == FlushStatus::Ok {
                        status = FlushStatus::Error;
                    }
                }
            }
            // Remembered at once: if the deadline cancels the other deliveries, a resend still
            // skips what this one got through.
            self.ledger.remember(id, &progress);
        }
        if status == FlushStatus::Retry {
            self.ledger.remember(id, &progress);
        } else {
            self.ledger.forget(id);
        }
        (status, job_end && status == FlushStatus::Ok)
    }
}

/// A tag as shown in log lines: at most 256 characters.
fn shorten(tag: &str) -> std::borrow::Cow<'_, str> {
    if tag.chars().count() <= 256 {
        std::borrow::Cow::Borrowed(tag)
    } else {
        let cut: String = tag.chars().take(256).collect();
        std::borrow::Cow::Owned(format!("{cut}…"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::MemorySink;
    use crate::log::{HostThread, Level};
    use crate::runtime::RuntimeLease;
    use std::collections::HashMap;

    #[derive(Default)]
    struct CountShutdown(AtomicU64);
    impl HostShutdown for CountShutdown {
        fn request_shutdown(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn instance(
        dir: &tempfile::TempDir,
        extra: &[(&str, &str)],
    ) -> (Instance, Arc<MemorySink>, RuntimeLease) {
        instance_with(dir, extra, Arc::new(CountShutdown::default()))
    }

    fn instance_with(
        dir: &tempfile::TempDir,
        extra: &[(&str, &str)],
        shutdown: Arc<dyn HostShutdown>,
    ) -> (Instance, Arc<MemorySink>, RuntimeLease) {
        let lease = RuntimeLease::acquire().unwrap();
        let mut props: HashMap<String, String> = HashMap::new();
        props.insert("destinations".into(), "file".into());
        props.insert(
            "path".into(),
            dir.path().join("out.jsonl").display().to_string(),
        );
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        let sink = MemorySink::new(Level::Debug);
        let inst = Instance::start(
            &props,
            sink.clone(),
            shutdown,
            "fanout.0".into(),
            lease.handle().clone(),
        )
        .unwrap();
        (inst, sink, lease)
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_with_a_log_line() {
        let dir = tempfile::tempdir().unwrap();
        let (inst, sink, _lease) = instance(&dir, &[]);
        let _host = HostThread::enter();
        assert_eq!(inst.flush(&[0x92, 0xd7, 0x00], b"t"), FlushStatus::Error);
        assert!(
            sink.text()
                .contains("dropping a chunk of 3 bytes with tag 't': chunk is truncated")
        );
        inst.shutdown();
        assert!(sink.text().contains("rejected_chunks=1"));
    }

    /// A chunk of `{"message": text}` records in the 1.9 layout, written by hand.
    fn chunk(messages: &[&str]) -> Vec<u8> {
        let mut buf = Vec::new();
        for m in messages {
            rmp::encode::write_array_len(&mut buf, 2).unwrap();
            rmp::encode::write_uint(&mut buf, 1).unwrap();
            rmp::encode::write_map_len(&mut buf, 1).unwrap();
            rmp::encode::write_str(&mut buf, "message").unwrap();
            rmp::encode::write_str(&mut buf, m).unwrap();
        }
        buf
    }

    #[test]
    fn the_end_of_job_record_stops_the_host_only_when_asked_and_after_delivery() {
        let end = r#"{"job_wrapper":"end","exit_code":3}"#;
        let dir = tempfile::tempdir().unwrap();
        let off = Arc::new(CountShutdown::default());
        let (inst, _sink, _lease) = instance_with(&dir, &[], off.clone());
        assert_eq!(inst.flush(&chunk(&["a", end]), b"t"), FlushStatus::Ok);
        inst.shutdown();
        assert_eq!(
            off.0.load(Ordering::SeqCst),
            0,
            "exit_on_job_end is off by default"
        );

        let on = Arc::new(CountShutdown::default());
        let (inst, sink, _lease) = instance_with(&dir, &[("exit_on_job_end", "on")], on.clone());
        let _host = HostThread::enter();
        assert_eq!(inst.flush(&chunk(&["a", "b"]), b"t"), FlushStatus::Ok);
        assert_eq!(on.0.load(Ordering::SeqCst), 0);
        assert_eq!(inst.flush(&chunk(&["c", end]), b"t"), FlushStatus::Ok);
        inst.shutdown();
        assert_eq!(on.0.load(Ordering::SeqCst), 1);
        assert!(sink.text().contains("asking Fluent Bit to shut down"));
        let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
        assert!(
            written.lines().last().unwrap().contains("job_wrapper"),
            "delivered before the request"
        );
    }

    #[test]
    fn flushing_on_the_init_thread_warns_once_about_workers() {
        let dir = tempfile::tempdir().unwrap();
        let (inst, sink, _lease) = instance(&dir, &[]);
        let _host = HostThread::enter();
        for _ in 0..3 {
            assert_eq!(inst.flush(&chunk(&["a"]), b"t"), FlushStatus::Ok);
        }
        inst.shutdown();
        assert_eq!(sink.text().matches("set 'workers 1'").count(), 1);

        // With workers, flushes come from Fluent Bit's worker threads: nothing to say.
        let (inst, sink, _lease) = instance(&dir, &[]);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _host = HostThread::enter();
                assert_eq!(inst.flush(&chunk(&["b"]), b"t"), FlushStatus::Ok);
            });
        });
        inst.shutdown();
        assert!(!sink.text().contains("workers"), "{}", sink.text());
    }

    #[test]
    fn an_empty_chunk_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let (inst, _sink, _lease) = instance(&dir, &[]);
        assert_eq!(inst.flush(&[], b"t"), FlushStatus::Ok);
        inst.shutdown();
    }

    #[test]
    fn a_bad_property_fails_start_with_one_line() {
        let lease = RuntimeLease::acquire().unwrap();
        let props: HashMap<String, String> = [("destinations", "file")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sink = MemorySink::new(Level::Debug);
        let _host = HostThread::enter();
        assert!(
            Instance::start(
                &props,
                sink.clone(),
                Arc::new(CountShutdown::default()),
                "fanout.7".into(),
                lease.handle().clone()
            )
            .is_none()
        );
        assert_eq!(
            sink.text(),
            "[output:fanout:fanout.7] property 'path': is required: the file the file destination appends JSON lines to"
        );
    }
}
