//! One `[OUTPUT]` instance: its configuration, destinations, counters, and the path a flush
//! takes from Fluent Bit's thread to the shared runtime and back.
//!
//! Fluent Bit calls flush on a coroutine with a small stack (24 KiB up to 5.0) and no guard
//! page. The flush side therefore does as little as possible: copy the chunk and tag, post a
//! small job on a channel, wait for the answer with a deadline. Decoding and delivery run on
//! the runtime's own threads, where stacks are large.
//!
//! Delivery guarantee: at least once per destination. A chunk is decoded once and delivered to
//! every destination concurrently; each destination says what became of every record
//! (accepted, dropped or rejected with a cause, or pending). The flush answers OK when nothing
//! is pending and nothing was refused, RETRY when anything is pending, ERROR when nothing is
//! pending and something was refused for good. On RETRY the [`Ledger`] keeps what each
//! destination settled, so Fluent Bit's resend goes only where records are missing.
//! Duplicates happen only when the process dies between a destination accepting and Fluent Bit
//! being told, or when a destination itself resends a request whose answer was lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::dead_letter::{DeadLetter, Refused};
use crate::delivery::outcome::{Fate, Outcome, SharedOutcome};
use crate::destinations::{Destination, Shared};
use crate::job_end::{Claim, JobEnd};
use crate::ledger::{ChunkId, Ledger};
use crate::log::{LogSink, Logger};
use crate::metrics::{Exporter, Gauges, MetricsHost};
use crate::stats::{self, DestinationStats, InstanceStats};
use fanout_core::config::{ConfigError, CoreConfig, Properties};
use fanout_core::decode::decode_chunk;
use fanout_core::properties::{INHERITED, inherited_note};
use fanout_core::record::Batch;

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

/// After cancelling a job, how long the flush side waits for it to record its progress.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How often the counters are published to the host's metrics when nothing settles (gauges
/// and flush results change without a chunk settling). Fluent Bit's own collector runs about
/// as often.
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Where the instance's counters can go besides the stats line.
pub enum MetricsOffer {
    /// The host's metrics registry for this instance, and the instance's name there (its
    /// `label` when the host does not say).
    Host(Box<dyn MetricsHost>, Option<String>),
    /// The host offers none: why, as the startup line says it.
    Unavailable(&'static str),
}

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
    /// Where records refused for good go, with `dead_letter`.
    dead_letter: Option<DeadLetter>,
    /// Memory of the chunks being processed (each chunk's copy plus its decoded records, as
    /// estimated before decoding); flushes wait on `room` while it is full.
    in_flight: Mutex<u64>,
    room: Condvar,
    shutdown: Arc<dyn HostShutdown>,
    /// Set with `exit_on_job_end`.
    job_end: Option<JobEnd>,
    /// Set when the host took the counters on its metrics.
    metrics: OnceLock<Exporter>,
}

struct Job {
    chunk: Vec<u8>,
    /// Bytes counted in flight for it (`max_in_flight_bytes`).
    reserved: u64,
    tag: String,
    received: Instant,
    reply: std_mpsc::SyncSender<FlushStatus>,
    /// Fires when the flush side gives up waiting: stop, record progress, answer.
    cancel: oneshot::Receiver<()>,
}

pub struct Instance {
    pipeline: Arc<Pipeline>,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// With `exit_on_job_end`: stops Fluent Bit `job_end_timeout` after the Job ended, if the
    /// end-of-job record has not done it by then.
    job_end_fallback: Mutex<Option<JoinHandle<()>>>,
    /// Publishes the counters to the host's metrics every [`METRICS_INTERVAL`].
    metrics_publisher: Mutex<Option<JoinHandle<()>>>,
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
            max_concurrent_requests: config.max_concurrent_requests,
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
        let ledger = match &config.ledger_file {
            None => Ledger::default(),
            Some(path) => {
                let names = destinations.iter().map(|d| d.kind().name()).collect();
                match Ledger::with_file(path, names, Arc::clone(&log)) {
                    Ok(ledger) => ledger,
                    Err(e) => {
                        log.error(format_args!("property 'ledger_file': {e}"));
                        return None;
                    }
                }
            }
        };
        let dead_letter = config
            .dead_letter
            .as_ref()
            .map(|target| DeadLetter::new(target, config.dead_letter_max_size));
        let job_end = config
            .job_end_token_file
            .clone()
            .filter(|_| config.exit_on_job_end)
            .map(|file| JobEnd::new(file, config.job_end_timeout));
        let pipeline = Arc::new(Pipeline {
            job_end,
            config,
            log,
            destinations,
            stats: InstanceStats::default(),
            destination_stats,
            ledger,
            dead_letter,
            in_flight: Mutex::new(0),
            room: Condvar::new(),
            shutdown,
            metrics: OnceLock::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = handle.spawn(dispatch(Arc::clone(&pipeline), rx));
        let job_end_fallback = pipeline
            .job_end
            .is_some()
            .then(|| handle.spawn(job_end_fallback(Arc::clone(&pipeline))));
        // The release, once per instance: what a support question needs first.
        pipeline.log.info(format_args!(
            "flb-fanout {} started: destinations={} flush_timeout={:?}",
            env!("CARGO_PKG_VERSION"),
            pipeline
                .destinations
                .iter()
                .map(|d| d.kind().name())
                .collect::<Vec<_>>()
                .join(","),
            pipeline.config.flush_timeout
        ));
        let inherited: Vec<_> = INHERITED
            .iter()
            .filter(|i| props.get(i.name).is_some())
            .collect();
        if let Some(note) = inherited_note(&inherited) {
            pipeline.log.warn(format_args!("{note}"));
        }
        Some(Instance {
            pipeline,
            jobs: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(Some(dispatcher)),
            job_end_fallback: Mutex::new(job_end_fallback),
            metrics_publisher: Mutex::new(None),
            handle,
            stats_logged: Mutex::new(Instant::now()),
            engine_thread: std::thread::current().id(),
            engine_thread_warned: AtomicBool::new(false),
        })
    }

    /// Puts the counters on the host's metrics when it offers them; says once per process
    /// when it does not. Call once, right after [`Instance::start`], on the Init thread.
    /// Says, once per instance, that the host does not check this output's property names
    /// (only Fluent Bit 5.1.1 is given the table), so a misspelt key goes unnoticed there.
    pub fn note_unchecked_property_names(&self, host: &str) {
        self.pipeline.log.info(format_args!(
            "{host} does not check this output's property names (Fluent Bit 5.1.1 does): a misspelt key is ignored; flb-fanout preview finds it"
        ));
    }

    pub fn export_metrics(&self, offer: MetricsOffer) {
        static UNAVAILABLE_SAID: AtomicBool = AtomicBool::new(false);
        let pipeline = &self.pipeline;
        match offer {
            MetricsOffer::Host(host, name) => {
                let name = name.unwrap_or_else(|| pipeline.config.label.clone());
                let destinations: Vec<&str> =
                    pipeline.destination_stats.iter().map(|d| d.name).collect();
                match Exporter::register(host, &name, &destinations) {
                    Ok(exporter) => {
                        let _ = pipeline.metrics.set(exporter);
                        let publisher = self
                            .handle
                            .spawn(publish_metrics_every_interval(Arc::clone(pipeline)));
                        *self
                            .metrics_publisher
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(publisher);
                        pipeline.log.info(format_args!(
                            "counters published on Fluent Bit's metrics as fluentbit_fanout_*{{name=\"{name}\"}} (and in the stats line)"
                        ));
                    }
                    Err(metric) => pipeline.log.warn(format_args!(
                        "Fluent Bit's metrics refused {metric}: the counters are only in the stats line (stats_interval)"
                    )),
                }
            }
            MetricsOffer::Unavailable(why) => {
                if !UNAVAILABLE_SAID.swap(true, Ordering::Relaxed) {
                    pipeline.log.info(format_args!(
                        "{why}: the counters are only in the stats line (stats_interval)"
                    ));
                }
            }
        }
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
        if let Some(fallback) = self
            .job_end_fallback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            fallback.abort();
        }
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let publisher = self
            .metrics_publisher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(publisher) = publisher {
            publisher.abort();
        }
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
        // The host destroys the instance's metrics context after exit: last values, then
        // nothing more.
        self.pipeline.publish_metrics();
        if let Some(exporter) = self.pipeline.metrics.get() {
            exporter.close();
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

/// Chunk bytes counted in flight, released when dropped — also if the job panics or is
/// cancelled, so a failed job can never leave the instance waiting for room forever.
struct Reserved<'a> {
    pipeline: &'a Pipeline,
    size: u64,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.pipeline.release(self.size);
    }
}

async fn run_job(pipeline: Arc<Pipeline>, job: Job) {
    let reserved = Reserved {
        pipeline: &pipeline,
        size: job.reserved,
    };
    let (status, job_end) = pipeline.process(job).await;
    // The reply was sent inside `process`; the bytes are free once the chunk is settled.
    drop(reserved);
    pipeline.publish_metrics();
    if let Some(end) = &pipeline.job_end {
        if job_end && status != FlushStatus::Retry {
            end.mark_settled();
        }
        pipeline.stop_if_job_ended(end);
    }
}

async fn publish_metrics_every_interval(pipeline: Arc<Pipeline>) {
    let mut tick = tokio::time::interval(METRICS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pipeline.publish_metrics();
    }
}

/// Stops Fluent Bit `job_end_timeout` after job-wrapper wrote its token (the command has
/// exited), whatever became of the end-of-job record: Fluent Bit may have dropped its chunk
/// after the last retry, or a filter may have removed it, and the Job must still complete.
async fn job_end_fallback(pipeline: Arc<Pipeline>) {
    let Some(end) = &pipeline.job_end else {
        return;
    };
    end.wait_for_token().await;
    pipeline.log.debug(format_args!(
        "job-wrapper's token appeared at {}: Fluent Bit stops within job_end_timeout ({:?})",
        end.token_file().display(),
        end.timeout
    ));
    tokio::time::sleep(end.timeout).await;
    if end.claim_shutdown() {
        pipeline.log.warn(format_args!(
            "the Job ended {:?} ago (job_end_timeout) and its end-of-job record has {}: asking Fluent Bit to shut down anyway",
            end.timeout,
            if end.is_settled() {
                "settled but other chunks are still pending"
            } else {
                "not settled (dropped by Fluent Bit, filtered out, or still retrying)"
            }
        ));
        pipeline.shutdown.request_shutdown();
    }
}

/// One destination's part of a chunk: which records it still needs, and their fates.
struct Part {
    index: usize,
    /// Positions in the chunk of the records sent to it (its outcome's positions index this).
    wanted: Vec<usize>,
    outcome: SharedOutcome,
}

impl Pipeline {
    /// Room for `size` more chunk bytes: waits while `max_in_flight_bytes` is reached (one
    /// chunk is always taken when idle, whatever its size), up to `flush_timeout`. A RETRY
    /// that is not a delivery failure would spend the chunk's `Retry_Limit`, so waiting is
    /// better; only a full `flush_timeout` without room answers RETRY.
    fn reserve(&self, size: u64) -> bool {
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

    /// Once the end-of-job record has settled and nothing else is in flight or waiting for a
    /// resend, asks Fluent Bit to shut down (once).
    fn stop_if_job_ended(&self, end: &JobEnd) {
        if !end.is_settled() {
            return;
        }
        let idle = *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) == 0;
        if idle && self.ledger.is_empty() && end.claim_shutdown() {
            // Fluent Bit's own shutdown still flushes whatever else it holds for `Grace`.
            self.log.info(
                "job-wrapper's end-of-job record has settled and nothing is pending: asking Fluent Bit to shut down (exit_on_job_end)",
            );
            self.shutdown.request_shutdown();
        }
    }

    /// With `exit_on_job_end`: whether the chunk holds the wrapper's real end-of-job record.
    /// Look-alikes without the run's token are counted and ignored.
    fn holds_job_end(&self, records: &fanout_core::record::Records, tag: &str) -> bool {
        let Some(end) = &self.job_end else {
            return false;
        };
        let mut genuine = false;
        let mut forged = 0u64;
        for event in records.iter() {
            if let Some(carried) = event.job_end_claim(&self.config.message_keys) {
                match end.judge(carried.as_deref()) {
                    Claim::Genuine => genuine = true,
                    Claim::Forged => forged += 1,
                }
            }
        }
        if forged > 0 {
            stats::add(&self.stats.forged_job_end, forged);
            self.log.warn(format_args!(
                "chunk with tag '{}': {forged} records look like job-wrapper's end-of-job record but do not carry this run's token (from {}): delivered as logs, the Job does not end on them",
                shorten(tag),
                end.token_file().display()
            ));
        }
        genuine
    }

    /// Sets the host's metrics from the counters, when the host took them. Never waits for
    /// another publisher.
    fn publish_metrics(&self) {
        let Some(exporter) = self.metrics.get() else {
            return;
        };
        let gauges = Gauges {
            in_flight_bytes: *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()),
            ledger_entries: self.ledger.len(),
            requests_in_flight: self
                .destinations
                .iter()
                .map(|d| d.requests_in_flight())
                .collect(),
        };
        exporter.publish(&self.stats, &self.destination_stats, &gauges);
    }

    fn release(&self, size: u64) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *in_flight = in_flight.saturating_sub(size);
        self.room.notify_all();
    }

    /// Decodes and delivers one chunk, answers the flush, and says whether the chunk held
    /// job-wrapper's real end-of-job record (when `exit_on_job_end` is on).
    async fn process(&self, job: Job) -> (FlushStatus, bool) {
        let Job {
            chunk,
            reserved: _,
            tag,
            received,
            reply,
            cancel,
        } = job;
        stats::add(&self.stats.chunks, 1);
        let id = ChunkId::of(&tag, &chunk);
        let chunk_len = chunk.len();
        // The records are read in place: the chunk's copy lives as long as its batch.
        let decoded = match decode_chunk(chunk) {
            Ok(decoded) => decoded,
            Err(e) => {
                stats::add(&self.stats.rejected_chunks, 1);
                self.log.error(format_args!(
                    "dropping a chunk of {chunk_len} bytes with tag '{}': {e}",
                    shorten(&tag)
                ));
                let _ = reply.send(FlushStatus::Error);
                return (FlushStatus::Error, false);
            }
        };
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
        let records = decoded.records.len();
        stats::add(&self.stats.records, records as u64);
        if records == 0 {
            let _ = reply.send(FlushStatus::Ok);
            return (FlushStatus::Ok, false);
        }
        let job_end = self.holds_job_end(&decoded.records, &tag);
        let batch = Arc::new(Batch::new(tag, decoded.records));
        // This delivery owns the chunk's progress until it answers: taken from the ledger now,
        // put back only if Fluent Bit is to resend.
        let mut progress = self.ledger.take(id, self.destinations.len());
        let timeout = self.config.flush_timeout;
        let deadline = tokio::time::Instant::from(received + timeout);
        // Destinations stop retrying a little before the hard deadline, so they can say what
        // failed instead of being cancelled mid-request.
        let soft_deadline = deadline - (timeout / 10).min(Duration::from_secs(1));
        let mut parts = Vec::new();
        let mut deliveries = JoinSet::new();
        for (index, destination) in self.destinations.iter().enumerate() {
            let previous = &progress[index];
            let wanted: Vec<usize> = (0..records).filter(|p| !previous.is_settled(*p)).collect();
            stats::add(
                &self.destination_stats[index].resend_skipped,
                (records - wanted.len()) as u64,
            );
            if wanted.is_empty() {
                progress[index].done = true;
                continue;
            }
            let part = if wanted.len() == records {
                Arc::clone(&batch)
            } else {
                Arc::new(batch.subset(wanted.clone()))
            };
            let outcome = Outcome::shared(wanted.len());
            let destination = Arc::clone(destination);
            let shared = Arc::clone(&outcome);
            deliveries
                .spawn(async move { destination.deliver(&part, soft_deadline, &shared).await });
            parts.push(Part {
                index,
                wanted,
                outcome,
            });
        }
        let all_done = async { while deliveries.join_next().await.is_some() {} };
        tokio::select! {
            _ = all_done => {}
            _ = tokio::time::sleep_until(deadline) => {
                self.log.warn(format_args!(
                    "deliveries did not finish within flush_timeout ({timeout:?}); Fluent Bit will retry what is pending"
                ));
            }
            _ = cancel => {}
        }
        // Whatever is still running is cancelled; what it settled is in its outcome.
        deliveries.abort_all();
        self.keep_refused(&parts, &batch, soft_deadline).await;
        let status = self.settle(&parts, &mut progress, &batch);
        if status == FlushStatus::Retry {
            let put = || self.ledger.put(id, progress);
            // With ledger_file the entry is synced to disk: let the runtime's one worker hand
            // its other tasks on meanwhile, so an fsync never stalls the other deliveries.
            let flavor = tokio::runtime::Handle::current().runtime_flavor();
            if self.ledger.is_journaled() && flavor == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(put);
            } else {
                put();
            }
        }
        // The flush side may have given up already; nothing to do then.
        let _ = reply.send(status);
        (status, job_end)
    }

    /// Folds each destination's outcome into the chunk's progress, the counters and one log
    /// line per cause, and decides the flush status.
    fn settle(
        &self,
        parts: &[Part],
        progress: &mut [crate::ledger::Progress],
        batch: &Batch,
    ) -> FlushStatus {
        let records = batch.len();
        let mut pending = false;
        let mut refused = false;
        for part in parts {
            let outcome = Outcome::lock(&part.outcome);
            let tally = outcome.tally();
            let counters = &self.destination_stats[part.index];
            let name = counters.name;
            stats::add(&counters.requests, outcome.requests);
            stats::add(&self.stats.altered_values, outcome.altered_values);
            stats::add(&counters.delivered, tally.accepted as u64);
            stats::add(&counters.retried, tally.pending as u64);
            stats::add(&counters.dropped, tally.dropped_count() as u64);
            stats::add(&counters.rejected, tally.rejected_count() as u64);
            for (cause, n) in &tally.dropped {
                self.log
                    .error(format_args!("{name}: {n} records dropped: {cause}"));
            }
            for (cause, n) in &tally.rejected {
                self.log
                    .error(format_args!("{name}: {n} records rejected: {cause}"));
            }
            refused |= !tally.dropped.is_empty() || !tally.rejected.is_empty();
            let marks = &mut progress[part.index];
            if tally.pending == 0 {
                marks.done = true;
                continue;
            }
            pending = true;
            let (reason, serious) = outcome
                .transient_reason()
                .unwrap_or(("not sent before the flush deadline", false));
            let line = format_args!(
                "{name}: {} of {} records not accepted yet (last: {reason}); Fluent Bit will retry the chunk",
                tally.pending,
                part.wanted.len()
            );
            if serious {
                self.log.error(line);
            } else {
                self.log.warn(line);
            }
            marks.settled.resize(records, false);
            for (position, fate) in outcome.fates().iter().enumerate() {
                if *fate != Fate::Pending {
                    marks.settled[part.wanted[position]] = true;
                }
            }
        }
        if pending {
            FlushStatus::Retry
        } else if refused {
            FlushStatus::Error
        } else {
            FlushStatus::Ok
        }
    }
}

impl Pipeline {
    /// Keeps the records the destinations refused for good in `dead_letter`, by `deadline`.
    async fn keep_refused(&self, parts: &[Part], batch: &Batch, deadline: tokio::time::Instant) {
        let Some(dead_letter) = &self.dead_letter else {
            return;
        };
        let mut refused = Vec::new();
        for part in parts {
            let outcome = Outcome::lock(&part.outcome);
            let destination = self.destination_stats[part.index].name;
            for (position, fate) in outcome.fates().iter().enumerate() {
                let (Some(cause), Some(record)) =
                    (outcome.cause_of(*fate), batch.get(part.wanted[position]))
                else {
                    continue;
                };
                refused.push(Refused {
                    destination,
                    cause: cause.to_owned(),
                    time: record.time.to_rfc3339(),
                    tag: &batch.tag,
                    record: serde_json::Value::Object(record.body.to_json_map()),
                });
            }
        }
        if refused.is_empty() {
            return;
        }
        let firehose_requests = self
            .destination_stats
            .iter()
            .find(|d| d.name == "firehose")
            .map(|d| &d.requests);
        let written = dead_letter
            .keep(&refused, &self.destinations, firehose_requests, deadline)
            .await;
        stats::add(&self.stats.dead_lettered, written.records);
        stats::add(&self.stats.dead_letter_overflow, written.overflow);
        if let Some(reason) = written.reason {
            self.log.warn(format_args!(
                "dead_letter: {} refused records not kept: {reason}",
                written.overflow
            ));
        }
    }
}

/// A tag as shown in log lines: at most 256 characters.
fn shorten(tag: &str) -> std::borrow::Cow<'_, str> {
    fanout_core::text::shorten(tag, 256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::MemorySink;
    use crate::log::{HostThread, Level};
    use crate::runtime::RuntimeLease;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;

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

    const TOKEN: &str = "5f0c1e2d3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn end_record(token: Option<&str>) -> String {
        let mut end = serde_json::json!({"job_wrapper": "end", "exit_code": 3});
        if let Some(token) = token {
            end["token"] = token.into();
        }
        end.to_string()
    }

    /// An instance with `exit_on_job_end` reading the token from `job-end.token` in `dir`
    /// (not written yet), plus `extra`; the returned counter counts shutdown requests.
    fn awaiting_job_end(
        dir: &tempfile::TempDir,
        extra: &[(&str, &str)],
    ) -> (
        Instance,
        Arc<MemorySink>,
        RuntimeLease,
        Arc<CountShutdown>,
        std::path::PathBuf,
    ) {
        let token_file = dir.path().join("job-end.token");
        let token_path = token_file.display().to_string();
        let mut properties = vec![
            ("exit_on_job_end", "on"),
            ("job_end_token_file", token_path.as_str()),
        ];
        properties.extend_from_slice(extra);
        let on = Arc::new(CountShutdown::default());
        let (inst, sink, lease) = instance_with(dir, &properties, on.clone());
        (inst, sink, lease, on, token_file)
    }

    #[test]
    fn the_end_of_job_record_stops_the_host_only_when_asked_and_after_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let end = end_record(Some(TOKEN));
        std::fs::write(dir.path().join("job-end.token"), TOKEN).unwrap();
        let off = Arc::new(CountShutdown::default());
        let (inst, _sink, _lease) = instance_with(&dir, &[], off.clone());
        assert_eq!(inst.flush(&chunk(&["a", &end]), b"t"), FlushStatus::Ok);
        inst.shutdown();
        assert_eq!(
            off.0.load(Ordering::SeqCst),
            0,
            "exit_on_job_end is off by default"
        );

        let (inst, sink, _lease, on, _token_file) = awaiting_job_end(&dir, &[]);
        let _host = HostThread::enter();
        assert_eq!(inst.flush(&chunk(&["a", "b"]), b"t"), FlushStatus::Ok);
        assert_eq!(on.0.load(Ordering::SeqCst), 0);
        assert_eq!(inst.flush(&chunk(&["c", &end]), b"t"), FlushStatus::Ok);
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
    fn look_alike_end_records_printed_by_the_application_never_stop_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (inst, sink, _lease, on, token_file) = awaiting_job_end(&dir, &[]);
        let _host = HostThread::enter();
        // While the command runs there is no token: even a record carrying the right one
        // (which nobody can know yet) is not believed.
        let forged = [end_record(None), end_record(Some(TOKEN))];
        assert_eq!(
            inst.flush(&chunk(&["a", &forged[0], &forged[1]]), b"t"),
            FlushStatus::Ok
        );
        std::fs::write(&token_file, TOKEN).unwrap();
        let wrong = end_record(Some(&"ab".repeat(32)));
        assert_eq!(
            inst.flush(&chunk(&[&forged[0], &wrong, "b"]), b"t"),
            FlushStatus::Ok
        );
        assert_eq!(on.0.load(Ordering::SeqCst), 0, "nothing ended the Job");
        inst.shutdown();
        let text = sink.text();
        assert!(text.contains("forged_job_end=4"), "{text}");
        assert!(
            text.contains("2 records look like job-wrapper's end-of-job record but do not carry this run's token"),
            "{text}"
        );
        let written = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
        assert_eq!(
            written.lines().count(),
            6,
            "look-alikes are delivered as logs"
        );
    }

    #[test]
    fn the_host_stops_job_end_timeout_after_the_token_even_without_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let (inst, sink, _lease, on, token_file) =
            awaiting_job_end(&dir, &[("job_end_timeout", "200ms")]);
        let _host = HostThread::enter();
        assert_eq!(inst.flush(&chunk(&["a"]), b"t"), FlushStatus::Ok);
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(
            on.0.load(Ordering::SeqCst),
            0,
            "the command is still running"
        );
        // The wrapper wrote its token; the chunk with its record never arrives (Fluent Bit
        // dropped it after its retries).
        std::fs::write(&token_file, TOKEN).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while on.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(on.0.load(Ordering::SeqCst), 1);
        inst.shutdown();
        assert!(
            sink.text()
                .contains("its end-of-job record has not settled (dropped by Fluent Bit"),
            "{}",
            sink.text()
        );
    }

    #[test]
    fn exit_on_job_end_needs_the_token_file() {
        let lease = RuntimeLease::acquire().unwrap();
        let props: HashMap<String, String> = [
            ("destinations", "file"),
            ("path", "/dev/null"),
            ("exit_on_job_end", "on"),
        ]
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
                "fanout.0".into(),
                lease.handle().clone(),
            )
            .is_none()
        );
        assert!(
            sink.text()
                .contains("property 'job_end_token_file': is required with exit_on_job_end"),
            "{}",
            sink.text()
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

    /// When the flush side gives up (a starved runtime), it cancels the job, which records
    /// what got through before answering, so the resend skips it.
    #[test]
    fn a_cancelled_delivery_records_its_progress_before_answering() {
        let dir = tempfile::tempdir().unwrap();
        // A Datadog intake that accepts connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let (inst, _sink, lease) = instance(
            &dir,
            &[
                ("destinations", "file,datadog"),
                ("apikey", "k"),
                ("dd_url", &url),
            ],
        );
        let chunk = chunk(&["a", "b"]);
        // Connections the intake took (kept open: it never answers them).
        silent.set_nonblocking(true).unwrap();
        let held = std::cell::RefCell::new(Vec::new());
        let datadog_connected = || {
            while let Ok((stream, _)) = silent.accept() {
                held.borrow_mut().push(stream);
            }
            !held.borrow().is_empty()
        };
        let written = || {
            std::fs::read_to_string(dir.path().join("out.jsonl"))
                .map(|text| text.lines().count())
                .unwrap_or(0)
        };
        // Runs one delivery and cancels it once `ready` holds (the event, not a delay).
        let run = |ready: &dyn Fn() -> bool| {
            let (reply, answer) = std_mpsc::sync_channel(1);
            let (cancel, cancelled) = oneshot::channel();
            let job = Job {
                chunk: chunk.clone(),
                reserved: 0,
                tag: "t".into(),
                received: Instant::now(),
                reply,
                cancel: cancelled,
            };
            let pipeline = Arc::clone(&inst.pipeline);
            let handle = lease.handle().clone();
            let task = handle.spawn(async move { pipeline.process(job).await });
            let guard = Instant::now() + Duration::from_secs(30);
            while !ready() {
                assert!(Instant::now() < guard, "the delivery never got there");
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = cancel.send(());
            let status = answer.recv_timeout(Duration::from_secs(60)).unwrap();
            let _ = handle.block_on(task);
            status
        };
        // Cancelled once the file has both records and the Datadog request is on the wire.
        assert_eq!(
            run(&|| written() == 2 && datadog_connected()),
            FlushStatus::Retry
        );
        assert_eq!(inst.pipeline.ledger.len(), 1, "progress recorded");
        assert_eq!(written(), 2);
        // The resend (cancelled again once Datadog has its new request) does not write the
        // file a second time.
        held.borrow_mut().clear();
        assert_eq!(run(&datadog_connected), FlushStatus::Retry);
        assert_eq!(written(), 2, "the file had them: skipped");
        assert_eq!(inst.pipeline.ledger.len(), 1);
        drop(silent);
        inst.shutdown();
    }

    /// At shutdown, a delivery still running after `exit_timeout` is cancelled, with one
    /// warning, instead of holding up Fluent Bit's exit: a job whose Datadog intake takes the
    /// request and never answers, its flush deadline a minute away.
    #[test]
    fn shutdown_cancels_deliveries_still_running_after_exit_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let (inst, sink, _lease) = instance(
            &dir,
            &[
                ("destinations", "datadog"),
                ("apikey", "k"),
                ("dd_url", &url),
                ("flush_timeout", "60s"),
                ("exit_timeout", "200ms"),
            ],
        );
        let (reply, answer) = std_mpsc::sync_channel(1);
        // Kept until the end: a dropped sender would cancel the job by itself.
        let (_cancel, cancelled) = oneshot::channel();
        let job = Job {
            chunk: chunk(&["a"]),
            reserved: 0,
            tag: "t".into(),
            received: Instant::now(),
            reply,
            cancel: cancelled,
        };
        let jobs = inst.jobs.lock().unwrap().clone().unwrap();
        jobs.send(job).ok().unwrap();
        // In flight once the intake has the connection (it never answers).
        silent.set_nonblocking(true).unwrap();
        let guard = Instant::now() + Duration::from_secs(30);
        let _held = loop {
            match silent.accept() {
                Ok((stream, _)) => break stream,
                Err(_) => {
                    assert!(Instant::now() < guard, "the request never left");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        let _host = HostThread::enter();
        inst.shutdown();
        let text = sink.text();
        assert!(
            text.contains("deliveries still running after exit_timeout (200ms) were cancelled"),
            "{text}"
        );
        assert!(answer.try_recv().is_err(), "cancelled, never answered");
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
