//! The plugin's counters on Fluent Bit's own metrics (`/api/v2/metrics/prometheus`, the
//! `fluentbit_metrics` input), where the core outputs' `fluentbit_output_*` already are.
//!
//! Fluent Bit ≥ 2.0 hands an external plugin its output instance's cmetrics context; the FFI
//! layer implements [`MetricsHost`] over it. Every metric is `fluentbit_fanout_<name>` with a
//! `name` label (the instance's name in Fluent Bit, its `alias` when set, as on the core
//! `fluentbit_output_*` metrics) and, per destination, a `destination` label.
//!
//! The values are published from the plugin's own atomic counters (the ones the stats line
//! prints), never updated one event at a time: one publisher at a time (a mutex), called by
//! the runtime after each chunk settles and once a second, so a flush never waits for it.
//! Counters are set to the running totals, which only grow, so a late publisher can never make
//! one go backwards.
//!
//! Thread safety with the host: every series is created at Init, before Fluent Bit's metrics
//! collector reads the context, and later calls only update values of existing series (an
//! atomic store inside cmetrics). The host is dropped at exit, before the instance's context
//! is destroyed: nothing is published after that.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::log::Logger;
use crate::stats::{DESTINATION_COUNTERS, DestinationStats, INSTANCE_COUNTERS, InstanceStats};

/// Namespace and subsystem: the metrics are named `fluentbit_fanout_*`.
pub const NAMESPACE: &str = "fluentbit";
pub const SUBSYSTEM: &str = "fanout";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric the host registered, by the host's own numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricId(pub usize);

/// A host metrics registry (Fluent Bit's cmetrics context of one output instance).
pub trait MetricsHost: Send {
    /// Registers `fluentbit_fanout_<name>` with these label keys; `None` if the host refused.
    fn register(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        label_keys: &[&str],
    ) -> Option<MetricId>;
    /// Sets one series (creating it on first use); false if the host refused.
    fn set(&mut self, metric: MetricId, value: f64, label_values: &[&str]) -> bool;
}

const IN_FLIGHT_BYTES: (&str, &str) = (
    "in_flight_bytes",
    "Bytes of the chunks being delivered (their copies and decoded records), limited by max_in_flight_bytes.",
);
const LEDGER_ENTRIES: (&str, &str) = (
    "ledger_entries",
    "Chunks whose per-destination progress is kept for Fluent Bit's resend.",
);
const REQUESTS_IN_FLIGHT: (&str, &str) = (
    "requests_in_flight",
    "Requests waiting for the destination's answer, limited by max_concurrent_requests.",
);

/// What the gauges read at one moment.
pub struct Gauges {
    pub in_flight_bytes: u64,
    pub ledger_entries: usize,
    /// One per destination, in the instance's order.
    pub requests_in_flight: Vec<usize>,
}

/// One series to publish: a metric, its label values, where its value comes from.
struct Series {
    metric: MetricId,
    labels: Vec<String>,
    source: Source,
}

enum Source {
    Instance(fn(&InstanceStats) -> &AtomicU64),
    Destination(usize, fn(&DestinationStats) -> &AtomicU64),
    InFlightBytes,
    LedgerEntries,
    RequestsInFlight(usize),
}

/// The instance's metrics on the host, published from its counters.
pub struct Exporter {
    /// `None` once closed: the host's context is about to be destroyed.
    host: Mutex<Option<Box<dyn MetricsHost>>>,
    series: Vec<Series>,
}

impl Exporter {
    /// Registers every metric and creates every series at zero. Call at Init, before Fluent
    /// Bit's collector can read the context. `Err` names what the host refused.
    pub fn register(
        mut host: Box<dyn MetricsHost>,
        instance: &str,
        destinations: &[&str],
    ) -> Result<Exporter, String> {
        let mut series = Vec::new();
        let mut register = |kind, (name, help): (&str, &str), keys: &[&str]| {
            host.register(kind, name, help, keys)
                .ok_or_else(|| format!("{NAMESPACE}_{SUBSYSTEM}_{name}"))
        };
        let own = |values: &[&str]| {
            std::iter::once(instance)
                .chain(values.iter().copied())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // Counters that share a metric (`flushes_total`) register it once.
        let mut registered: Vec<(&str, MetricId)> = Vec::new();
        let mut metric_of = |c: (&'static str, &'static str), keys: &[&str]| {
            if let Some((_, id)) = registered.iter().find(|(name, _)| *name == c.0) {
                return Ok(*id);
            }
            let id = register(Kind::Counter, c, keys)?;
            registered.push((c.0, id));
            Ok::<_, String>(id)
        };
        for c in INSTANCE_COUNTERS {
            let keys: &[&str] = if c.result.is_some() {
                &["name", "result"]
            } else {
                &["name"]
            };
            series.push(Series {
                metric: metric_of((c.metric, c.help), keys)?,
                labels: own(c.result.as_slice()),
                source: Source::Instance(c.value),
            });
        }
        for c in DESTINATION_COUNTERS {
            let metric = metric_of((c.metric, c.help), &["name", "destination"])?;
            for (index, destination) in destinations.iter().enumerate() {
                series.push(Series {
                    metric,
                    labels: own(&[destination]),
                    source: Source::Destination(index, c.value),
                });
            }
        }
        let metric = register(Kind::Gauge, IN_FLIGHT_BYTES, &["name"])?;
        series.push(Series {
            metric,
            labels: own(&[]),
            source: Source::InFlightBytes,
        });
        let metric = register(Kind::Gauge, LEDGER_ENTRIES, &["name"])?;
        series.push(Series {
            metric,
            labels: own(&[]),
            source: Source::LedgerEntries,
        });
        let metric = register(Kind::Gauge, REQUESTS_IN_FLIGHT, &["name", "destination"])?;
        for (index, destination) in destinations.iter().enumerate() {
            series.push(Series {
                metric,
                labels: own(&[destination]),
                source: Source::RequestsInFlight(index),
            });
        }
        for s in &series {
            let labels: Vec<&str> = s.labels.iter().map(String::as_str).collect();
            if !host.set(s.metric, 0.0, &labels) {
                return Err(format!(
                    "a series of metric #{} ({})",
                    s.metric.0,
                    labels.join(",")
                ));
            }
        }
        Ok(Exporter {
            host: Mutex::new(Some(host)),
            series,
        })
    }

    /// Sets every series from the counters and gauges. Skips the round if another publisher
    /// holds the host (its values are as fresh), so a caller never waits.
    pub fn publish(
        &self,
        instance: &InstanceStats,
        destinations: &[DestinationStats],
        gauges: &Gauges,
    ) {
        let Ok(mut host) = self.host.try_lock() else {
            return;
        };
        let Some(host) = host.as_mut() else {
            return;
        };
        for s in &self.series {
            let value = match s.source {
                Source::Instance(counter) => value_of(counter(instance)),
                Source::Destination(index, counter) => destinations
                    .get(index)
                    .map_or(0.0, |d| value_of(counter(d))),
                Source::InFlightBytes => gauges.in_flight_bytes as f64,
                Source::LedgerEntries => gauges.ledger_entries as f64,
                Source::RequestsInFlight(index) => {
                    gauges.requests_in_flight.get(index).copied().unwrap_or(0) as f64
                }
            };
            let labels: Vec<&str> = s.labels.iter().map(String::as_str).collect();
            host.set(s.metric, value, &labels);
        }
    }

    /// Publishes nothing from now on (waits for a publisher in progress to finish). Call
    /// before the host destroys the instance's metrics context.
    pub fn close(&self) {
        self.host.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// How often the counters are published to the host's metrics when nothing settles (gauges
/// and flush results change without a chunk settling). Fluent Bit's own collector runs about
/// as often.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Where the instance's counters can go besides the stats line.
pub enum MetricsOffer {
    /// The host's metrics registry for this instance, and the instance's name there (its
    /// `label` when the host does not say).
    Host(Box<dyn MetricsHost>, Option<String>),
    /// The host offers none: why, as the startup line says it.
    Unavailable(&'static str),
}

/// Takes what the host offers: the exporter, registered for the instance (`label` unless the
/// host names it) and its `destinations`, or `None` with one line saying where the counters
/// are instead (once per process when the host offers nothing).
pub fn take_offer(
    offer: MetricsOffer,
    label: &str,
    destinations: &[&str],
    log: &Logger,
) -> Option<Exporter> {
    static UNAVAILABLE_SAID: AtomicBool = AtomicBool::new(false);
    match offer {
        MetricsOffer::Host(host, name) => {
            let name = name.unwrap_or_else(|| label.to_owned());
            match Exporter::register(host, &name, destinations) {
                Ok(exporter) => {
                    log.info(format_args!(
                        "counters published on Fluent Bit's metrics as fluentbit_fanout_*{{name=\"{name}\"}} (and in the stats line)"
                    ));
                    Some(exporter)
                }
                Err(metric) => {
                    log.warn(format_args!(
                        "Fluent Bit's metrics refused {metric}: the counters are only in the stats line (stats_interval)"
                    ));
                    None
                }
            }
        }
        MetricsOffer::Unavailable(why) => {
            if !UNAVAILABLE_SAID.swap(true, Ordering::Relaxed) {
                log.info(format_args!(
                    "{why}: the counters are only in the stats line (stats_interval)"
                ));
            }
            None
        }
    }
}

/// Calls `publish` every [`INTERVAL`], for as long as the task runs.
pub async fn every_interval(publish: impl Fn()) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        publish();
    }
}

fn value_of(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// A registered metric: its kind, name and label keys.
    type Registered = (Kind, String, Vec<String>);
    /// A series: metric number and label values.
    type SeriesKey = (usize, Vec<String>);

    /// A registry that keeps what it was told, shared with the test.
    #[derive(Clone, Default)]
    struct Recorded {
        metrics: Arc<Mutex<Vec<Registered>>>,
        values: Arc<Mutex<BTreeMap<SeriesKey, f64>>>,
        refuse: Option<&'static str>,
    }

    impl MetricsHost for Recorded {
        fn register(&mut self, kind: Kind, name: &str, _: &str, keys: &[&str]) -> Option<MetricId> {
            if self.refuse == Some(name) {
                return None;
            }
            let mut metrics = self.metrics.lock().unwrap();
            metrics.push((
                kind,
                name.to_owned(),
                keys.iter().map(|k| k.to_string()).collect(),
            ));
            Some(MetricId(metrics.len() - 1))
        }

        fn set(&mut self, metric: MetricId, value: f64, labels: &[&str]) -> bool {
            let metrics = self.metrics.lock().unwrap();
            assert_eq!(metrics[metric.0].2.len(), labels.len(), "label count");
            let labels = labels.iter().map(|l| l.to_string()).collect();
            self.values
                .lock()
                .unwrap()
                .insert((metric.0, labels), value);
            true
        }
    }

    impl Recorded {
        fn value(&self, name: &str, labels: &[&str]) -> Option<f64> {
            let metrics = self.metrics.lock().unwrap();
            let id = metrics.iter().position(|(_, n, _)| n == name)?;
            let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
            self.values.lock().unwrap().get(&(id, labels)).copied()
        }
    }

    fn counters() -> (InstanceStats, Vec<DestinationStats>) {
        (
            InstanceStats::default(),
            vec![
                DestinationStats::new("datadog"),
                DestinationStats::new("firehose"),
            ],
        )
    }

    #[test]
    fn every_series_exists_at_zero_before_anything_is_published() {
        let host = Recorded::default();
        Exporter::register(Box::new(host.clone()), "fanout.0", &["datadog", "firehose"]).unwrap();
        for destination in ["datadog", "firehose"] {
            for c in DESTINATION_COUNTERS {
                assert_eq!(host.value(c.metric, &["fanout.0", destination]), Some(0.0));
            }
            assert_eq!(
                host.value("requests_in_flight", &["fanout.0", destination]),
                Some(0.0)
            );
        }
        for result in ["ok", "retry", "error"] {
            assert_eq!(
                host.value("flushes_total", &["fanout.0", result]),
                Some(0.0)
            );
        }
        assert_eq!(host.value("chunks_total", &["fanout.0"]), Some(0.0));
        assert_eq!(host.value("in_flight_bytes", &["fanout.0"]), Some(0.0));
        let kinds: Vec<(Kind, String)> = host
            .metrics
            .lock()
            .unwrap()
            .iter()
            .map(|(k, n, _)| (*k, n.clone()))
            .collect();
        assert!(kinds.contains(&(Kind::Gauge, "ledger_entries".into())));
        assert!(kinds.contains(&(Kind::Counter, "delivered_records_total".into())));
    }

    #[test]
    fn published_values_are_the_counters_and_gauges() {
        let host = Recorded::default();
        let exporter =
            Exporter::register(Box::new(host.clone()), "edge", &["datadog", "firehose"]).unwrap();
        let (instance, destinations) = counters();
        stats::add(&instance.chunks, 3);
        stats::add(&instance.flush_retry, 1);
        stats::add(&destinations[0].delivered, 900);
        stats::add(&destinations[0].retried, 100);
        stats::add(&destinations[1].rejected, 7);
        let gauges = Gauges {
            in_flight_bytes: 4096,
            ledger_entries: 2,
            requests_in_flight: vec![5, 1],
        };
        exporter.publish(&instance, &destinations, &gauges);
        assert_eq!(host.value("chunks_total", &["edge"]), Some(3.0));
        assert_eq!(host.value("flushes_total", &["edge", "retry"]), Some(1.0));
        assert_eq!(host.value("flushes_total", &["edge", "ok"]), Some(0.0));
        assert_eq!(
            host.value("delivered_records_total", &["edge", "datadog"]),
            Some(900.0)
        );
        assert_eq!(
            host.value("retried_records_total", &["edge", "datadog"]),
            Some(100.0)
        );
        assert_eq!(
            host.value("rejected_records_total", &["edge", "firehose"]),
            Some(7.0)
        );
        assert_eq!(
            host.value("delivered_records_total", &["edge", "firehose"]),
            Some(0.0)
        );
        assert_eq!(host.value("in_flight_bytes", &["edge"]), Some(4096.0));
        assert_eq!(host.value("ledger_entries", &["edge"]), Some(2.0));
        assert_eq!(
            host.value("requests_in_flight", &["edge", "datadog"]),
            Some(5.0)
        );
    }

    #[test]
    fn nothing_is_published_after_close() {
        let host = Recorded::default();
        let exporter = Exporter::register(Box::new(host.clone()), "fanout.0", &["file"]).unwrap();
        let (instance, destinations) = counters();
        exporter.close();
        stats::add(&instance.chunks, 1);
        let gauges = Gauges {
            in_flight_bytes: 1,
            ledger_entries: 0,
            requests_in_flight: vec![],
        };
        exporter.publish(&instance, &destinations, &gauges);
        assert_eq!(host.value("chunks_total", &["fanout.0"]), Some(0.0));
    }

    #[test]
    fn a_refused_registration_names_the_metric() {
        let host = Recorded {
            refuse: Some("requests_total"),
            ..Recorded::default()
        };
        let error = Exporter::register(Box::new(host), "fanout.0", &["datadog"])
            .err()
            .unwrap();
        assert_eq!(error, "fluentbit_fanout_requests_total");
    }

    /// The README's metrics table lists every metric the plugin registers, with the stats-line
    /// keys of its counters, and nothing else.
    #[test]
    fn the_readme_lists_every_metric_with_its_stats_key() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("| metric | type | labels | stats line key |\n")
            .nth(1)
            .expect("the README's metrics table")
            .split("\n\n")
            .next()
            .unwrap();
        let mut listed: Vec<(String, String)> = table
            .lines()
            .skip(1)
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let name = cells[1].trim_matches('`');
                let name = name.strip_prefix("fluentbit_fanout_").unwrap_or(name);
                (name.to_owned(), cells[4].to_owned())
            })
            .collect();
        listed.sort();
        let mut expected: Vec<(String, String)> = Vec::new();
        let counters = INSTANCE_COUNTERS
            .iter()
            .map(|c| (c.metric, c.key))
            .chain(DESTINATION_COUNTERS.iter().map(|c| (c.metric, c.key)));
        for (metric, key) in counters {
            let key = format!("`{key}`");
            match expected.iter_mut().find(|(m, _)| m == metric) {
                Some((_, keys)) => *keys = format!("{keys}, {key}"),
                None => expected.push((metric.to_owned(), key)),
            }
        }
        for (name, _) in [IN_FLIGHT_BYTES, LEDGER_ENTRIES, REQUESTS_IN_FLIGHT] {
            let row = listed.iter().find(|(m, _)| m == name);
            expected.push((name.to_owned(), row.map_or(String::new(), |r| r.1.clone())));
        }
        expected.sort();
        assert_eq!(listed, expected);
    }
}
