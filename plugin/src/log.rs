//! Logging into Fluent Bit's own log.
//!
//! The host's `log_print` only reaches Fluent Bit's log pipeline (and `log_file`) when called
//! on one of Fluent Bit's threads; from any other thread it writes straight to stderr. So lines
//! produced on the plugin's runtime threads are queued (bounded) and written by the next host
//! call into the plugin — in practice the very flush that waited for them.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Fluent Bit's log levels (`flb_log.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// The five-character label Fluent Bit prints in its header.
    fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => " warn",
            Level::Info => " info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// Where log lines end up.
pub trait LogSink: Send + Sync {
    /// Whether the instance's log level lets `level` through.
    fn enabled(&self, level: Level) -> bool;
    /// Writes one complete line. Called only on a host thread.
    fn write(&self, level: Level, line: &str);
}

/// For hosts without a log API (Fluent Bit 1.9): stderr, in Fluent Bit's format, at info.
pub struct StderrSink;

impl LogSink for StderrSink {
    fn enabled(&self, level: Level) -> bool {
        level <= Level::Info
    }

    fn write(&self, level: Level, line: &str) {
        let now = chrono::Utc::now().format("%Y/%m/%d %H:%M:%S");
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{now}] [{}] {line}",
            level.label()
        );
    }
}

thread_local! {
    static ON_HOST_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as a Fluent Bit thread while a host callback runs.
pub struct HostThread {
    was: bool,
}

impl HostThread {
    pub fn enter() -> HostThread {
        HostThread {
            was: ON_HOST_THREAD.with(|c| c.replace(true)),
        }
    }
}

impl Drop for HostThread {
    fn drop(&mut self) {
        ON_HOST_THREAD.with(|c| c.set(self.was));
    }
}

/// Lines waiting for a host thread; beyond this many, new ones are counted and dropped.
const MAX_PENDING: usize = 256;

/// An instance's logger: prefixes lines with `[output:fanout:<label>]`.
pub struct Logger {
    prefix: String,
    sink: Arc<dyn LogSink>,
    pending: Mutex<VecDeque<(Level, String)>>,
    dropped: AtomicU64,
}

impl Logger {
    pub fn new(label: &str, sink: Arc<dyn LogSink>) -> Logger {
        Logger {
            prefix: format!("[output:fanout:{label}]"),
            sink,
            pending: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn log(&self, level: Level, message: impl Display) {
        if !self.sink.enabled(level) {
            return;
        }
        let line = format!("{} {message}", self.prefix);
        if ON_HOST_THREAD.with(Cell::get) {
            self.drain();
            self.sink.write(level, &line);
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING {
            pending.push_back((level, line));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn error(&self, message: impl Display) {
        self.log(Level::Error, message)
    }
    pub fn warn(&self, message: impl Display) {
        self.log(Level::Warn, message)
    }
    pub fn info(&self, message: impl Display) {
        self.log(Level::Info, message)
    }
    pub fn debug(&self, message: impl Display) {
        self.log(Level::Debug, message)
    }

    /// Writes queued lines. Call only on a host thread.
    pub fn drain(&self) {
        let lines: Vec<(Level, String)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain(..).collect()
        };
        for (level, line) in lines {
            self.sink.write(level, &line);
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.sink.write(
                Level::Warn,
                &format!(
                    "{} {dropped} log lines were dropped while the log queue was full",
                    self.prefix
                ),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Collects lines in memory; everything at or below `max` is enabled.
    pub struct MemorySink {
        pub max: Level,
        pub lines: Mutex<Vec<(Level, String)>>,
    }

    impl MemorySink {
        pub fn new(max: Level) -> Arc<MemorySink> {
            Arc::new(MemorySink {
                max,
                lines: Mutex::new(Vec::new()),
            })
        }
        pub fn text(&self) -> String {
            let lines = self.lines.lock().unwrap();
            lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    impl LogSink for MemorySink {
        fn enabled(&self, level: Level) -> bool {
            level <= self.max
        }
        fn write(&self, level: Level, line: &str) {
            self.lines.lock().unwrap().push((level, line.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemorySink;
    use super::*;

    #[test]
    fn lines_from_other_threads_wait_for_a_host_thread() {
        let sink = MemorySink::new(Level::Info);
        let log = Arc::new(Logger::new("fanout.3", sink.clone()));
        let worker = Arc::clone(&log);
        std::thread::spawn(move || worker.warn("from a runtime thread"))
            .join()
            .unwrap();
        log.debug("filtered by level");
        assert!(sink.text().is_empty());
        let _host = HostThread::enter();
        log.info("from the host");
        assert_eq!(
            sink.text(),
            "[output:fanout:fanout.3] from a runtime thread\n[output:fanout:fanout.3] from the host"
        );
    }

    #[test]
    fn the_queue_is_bounded_and_says_what_it_dropped() {
        let sink = MemorySink::new(Level::Info);
        let log = Arc::new(Logger::new("x", sink.clone()));
        let worker = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..MAX_PENDING + 10 {
                worker.info(i);
            }
        })
        .join()
        .unwrap();
        let _host = HostThread::enter();
        log.drain();
        let lines = sink.lines.lock().unwrap();
        assert_eq!(lines.len(), MAX_PENDING + 1);
        assert!(
            lines
                .last()
                .unwrap()
                .1
                .contains("10 log lines were dropped")
        );
    }
}
