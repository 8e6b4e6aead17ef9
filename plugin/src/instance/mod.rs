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
//!
//! Files: this one holds the instance's state, its start and exit, and the runtime's job loop;
//! [`admission`] the flush side (hand-off, `max_in_flight_bytes`); [`fan_out`] one chunk's
//! delivery to every destination and how its outcomes settle. The end of a Job is
//! [`crate::job_end`]'s; publishing the counters is [`crate::metrics`]'s.

mod admission;
mod fan_out;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc as std_mpsc};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use self::admission::Reserved;
use crate::dead_letter::DeadLetter;
use crate::destinations::{Destination, Shared};
use crate::job_end::{HostShutdown, JobEnd};
use crate::ledger::Ledger;
use crate::log::{LogSink, Logger};
use crate::metrics::{self, Exporter, Gauges, MetricsOffer};
use crate::stats::{self, DestinationStats, InstanceStats};
use fanout_core::config::{ConfigError, CoreConfig, Properties};
use fanout_core::properties::{INHERITED, inherited_note};

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
    /// Publishes the counters to the host's metrics every [`metrics::INTERVAL`].
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
        let config = match CoreConfig::read(props, label, &Destination::names()) {
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
            .map(|d| DestinationStats::new(d.name))
            .collect();
        let ledger = match &config.ledger_file {
            None => Ledger::default(),
            Some(path) => {
                let names = destinations.iter().map(|d| d.name).collect();
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
            .then(|| handle.spawn(stop_after_job_end_timeout(Arc::clone(&pipeline))));
        // The release, once per instance: what a support question needs first.
        pipeline.log.info(format_args!(
            "flb-fanout {} started: destinations={} flush_timeout={:?}",
            env!("CARGO_PKG_VERSION"),
            pipeline
                .destinations
                .iter()
                .map(|d| d.name)
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

    /// Says, once per instance, that the host does not check this output's property names
    /// (only Fluent Bit 5.1.1 is given the table), so a misspelt key goes unnoticed there.
    pub fn note_unchecked_property_names(&self, host: &str) {
        self.pipeline.log.info(format_args!(
            "{host} does not check this output's property names (Fluent Bit 5.1.1 does): a misspelt key is ignored; flb-fanout preview finds it"
        ));
    }

    /// Puts the counters on the host's metrics when it offers them; says once per process
    /// when it does not. Call once, right after [`Instance::start`], on the Init thread.
    pub fn export_metrics(&self, offer: MetricsOffer) {
        let pipeline = &self.pipeline;
        let destinations: Vec<&str> = pipeline.destination_stats.iter().map(|d| d.name).collect();
        let Some(exporter) =
            metrics::take_offer(offer, &pipeline.config.label, &destinations, &pipeline.log)
        else {
            return;
        };
        let _ = pipeline.metrics.set(exporter);
        let publishing = Arc::clone(pipeline);
        let publisher = self.handle.spawn(metrics::every_interval(move || {
            publishing.publish_metrics()
        }));
        *self
            .metrics_publisher
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(publisher);
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
        .map(|name| Destination::configure(name, props, shared).map(Arc::new))
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
    let reserved = Reserved::new(&pipeline, job.reserved);
    let (status, job_end) = pipeline.process(job).await;
    // The reply was sent inside `process`; the bytes are free once the chunk is settled.
    drop(reserved);
    pipeline.publish_metrics();
    if let Some(end) = &pipeline.job_end {
        if job_end && status != FlushStatus::Retry {
            end.mark_settled();
        }
        end.stop_if_ended(|| pipeline.is_idle(), &pipeline.log, &*pipeline.shutdown);
    }
}

/// With `exit_on_job_end`: stops Fluent Bit `job_end_timeout` after the Job ended, whatever
/// became of its end-of-job record.
async fn stop_after_job_end_timeout(pipeline: Arc<Pipeline>) {
    if let Some(end) = &pipeline.job_end {
        end.stop_after_timeout(&pipeline.log, &*pipeline.shutdown)
            .await;
    }
}

impl Pipeline {
    /// Nothing in flight and nothing waiting for a resend.
    fn is_idle(&self) -> bool {
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) == 0 && self.ledger.is_empty()
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
}

/// A tag as shown in log lines: at most 256 characters.
fn shorten(tag: &str) -> std::borrow::Cow<'_, str> {
    fanout_core::text::shorten(tag, 256)
}

#[cfg(test)]
mod tests;
