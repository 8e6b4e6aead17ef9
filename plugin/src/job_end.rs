//! The end of a Job (`exit_on_job_end`): when to stop Fluent Bit, and which end-of-job record to
//! believe.
//!
//! job-wrapper appends an end-of-job record to the log file the sidecar tails. The application
//! writes to that same file, so a line that merely *looks* like the wrapper's record proves
//! nothing. After the command has exited, and before it writes its record, the wrapper writes
//! a fresh random token to `job_end_token_file` (on the shared volume) and puts the same token
//! in the record. The application never saw that token while it ran, so only the wrapper's
//! record carries it; every other look-alike is counted (`forged_job_end`) and ignored.
//!
//! Fluent Bit is stopped (SIGTERM, so its own shutdown flushes what is pending for `Grace`)
//! once the chunk holding the real record has settled — delivered, or refused for good — and no
//! other chunk is still being delivered or waiting for a resend. If that never happens (Fluent
//! Bit dropped the chunk after its retries, or a filter removed the record), it is stopped
//! anyway `job_end_timeout` after the token file appeared, so the Job still completes.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::log::Logger;
use fanout_core::record::Records;

/// How often the token file is looked for.
const POLL: Duration = Duration::from_millis(500);

/// Asks the process hosting the plugin to shut down gracefully (Fluent Bit: SIGTERM, which
/// stops inputs and flushes what is pending for its `Grace` period).
pub trait HostShutdown: Send + Sync {
    fn request_shutdown(&self);
}

pub struct JobEnd {
    token_file: PathBuf,
    pub timeout: Duration,
    token: OnceLock<String>,
    /// The chunk with the real end-of-job record has settled.
    settled: AtomicBool,
    /// Shutdown was requested (once only).
    requested: AtomicBool,
}

/// What a record that claims to end the Job turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// It carries this run's token.
    Genuine,
    /// It does not: printed by the application, or by anything else but the wrapper.
    Forged,
}

impl JobEnd {
    pub fn new(token_file: PathBuf, timeout: Duration) -> JobEnd {
        JobEnd {
            token_file,
            timeout,
            token: OnceLock::new(),
            settled: AtomicBool::new(false),
            requested: AtomicBool::new(false),
        }
    }

    pub fn token_file(&self) -> &std::path::Path {
        &self.token_file
    }

    /// This run's token, once the wrapper has written it. The wrapper writes the file whole
    /// (write to a temporary name, then rename), so a token of the wrong shape means someone
    /// else wrote it: it is not believed.
    pub fn token(&self) -> Option<&str> {
        if let Some(token) = self.token.get() {
            return Some(token);
        }
        let text = std::fs::read_to_string(&self.token_file).ok()?;
        let token = text.trim();
        if !fanout_contract::job_end::is_token(token) {
            return None;
        }
        Some(self.token.get_or_init(|| token.to_owned()))
    }

    /// Judges a record's claim to end the Job (the token it carries, if any).
    pub fn judge(&self, carried: Option<&str>) -> Claim {
        match (carried, self.token()) {
            (Some(carried), Some(token)) if constant_time_eq(carried, token) => Claim::Genuine,
            _ => Claim::Forged,
        }
    }

    /// The chunk holding the real record has settled.
    pub fn mark_settled(&self) {
        self.settled.store(true, Ordering::SeqCst);
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::SeqCst)
    }

    /// True the first time only: whoever gets it requests the shutdown.
    pub fn claim_shutdown(&self) -> bool {
        !self.requested.swap(true, Ordering::SeqCst)
    }

    /// Waits until the wrapper's token file exists (the command has exited).
    pub async fn wait_for_token(&self) {
        while self.token().is_none() {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Judges every record of a chunk that claims to end the Job. Look-alikes without the
    /// run's token are logged once for the chunk (and counted by the caller).
    pub fn judge_chunk(
        &self,
        records: &Records,
        message_keys: &[String],
        tag: &str,
        log: &Logger,
    ) -> Claims {
        let mut claims = Claims::default();
        for event in records.iter() {
            if let Some(carried) = event.job_end_claim(message_keys) {
                match self.judge(carried.as_deref()) {
                    Claim::Genuine => claims.genuine = true,
                    Claim::Forged => claims.forged += 1,
                }
            }
        }
        if claims.forged > 0 {
            log.warn(format_args!(
                "chunk with tag '{}': {} records look like job-wrapper's end-of-job record but do not carry this run's token (from {}): delivered as logs, the Job does not end on them",
                fanout_core::text::shorten(tag, 256),
                claims.forged,
                self.token_file().display()
            ));
        }
        claims
    }

    /// Once the end-of-job record has settled and the instance is `idle` (nothing in flight or
    /// waiting for a resend), asks the host to shut down (once).
    pub fn stop_if_ended(
        &self,
        idle: impl FnOnce() -> bool,
        log: &Logger,
        host: &dyn HostShutdown,
    ) {
        if self.is_settled() && idle() && self.claim_shutdown() {
            // Fluent Bit's own shutdown still flushes whatever else it holds for `Grace`.
            log.info(
                "job-wrapper's end-of-job record has settled and nothing is pending: asking Fluent Bit to shut down (exit_on_job_end)",
            );
            host.request_shutdown();
        }
    }

    /// Stops the host `job_end_timeout` after job-wrapper wrote its token (the command has
    /// exited), whatever became of the end-of-job record: Fluent Bit may have dropped its chunk
    /// after the last retry, or a filter may have removed it, and the Job must still complete.
    pub async fn stop_after_timeout(&self, log: &Logger, host: &dyn HostShutdown) {
        self.wait_for_token().await;
        log.debug(format_args!(
            "job-wrapper's token appeared at {}: Fluent Bit stops within job_end_timeout ({:?})",
            self.token_file().display(),
            self.timeout
        ));
        tokio::time::sleep(self.timeout).await;
        if self.claim_shutdown() {
            log.warn(format_args!(
                "the Job ended {:?} ago (job_end_timeout) and its end-of-job record has {}: asking Fluent Bit to shut down anyway",
                self.timeout,
                if self.is_settled() {
                    "settled but other chunks are still pending"
                } else {
                    "not settled (dropped by Fluent Bit, filtered out, or still retrying)"
                }
            ));
            host.request_shutdown();
        }
    }
}

/// What the records of one chunk claiming to end the Job turned out to be.
#[derive(Debug, Default)]
pub struct Claims {
    /// One carries this run's token.
    pub genuine: bool,
    /// Look-alikes without it.
    pub forged: u64,
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_written_by_the_wrapper_is_genuine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job-end.token");
        let end = JobEnd::new(file.clone(), Duration::from_secs(1));
        let token = "0123456789abcdef".repeat(4);
        assert_eq!(
            end.judge(Some(&token)),
            Claim::Forged,
            "no token file yet: the command is still running"
        );
        std::fs::write(&file, "too-short\n").unwrap();
        assert_eq!(end.judge(Some("too-short")), Claim::Forged);
        std::fs::write(&file, format!("{token}\n")).unwrap();
        assert_eq!(end.judge(Some(&token)), Claim::Genuine);
        assert_eq!(end.judge(None), Claim::Forged);
        assert_eq!(end.judge(Some(&"0".repeat(64))), Claim::Forged);
        // Read once: a later rewrite does not change the run's token.
        std::fs::write(&file, "f".repeat(64)).unwrap();
        assert_eq!(end.judge(Some(&token)), Claim::Genuine);
        assert!(end.claim_shutdown());
        assert!(!end.claim_shutdown());
    }
}
