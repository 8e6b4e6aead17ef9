//! Records refused for good, kept (`dead_letter`): the one log a 400 isolates, a record no
//! delivery stream takes, a record too large with nothing to cut, a record without `log_key`.
//!
//! Without it such a record is counted and logged, and its content is gone. With it, each one
//! becomes a JSON line — `{"destination", "cause", "time", "tag", "record", "refused_at"}` —
//! appended to a local file, or sent to a Firehose delivery stream (`firehose:<stream>`, through
//! the output's own `firehose` destination, so the lines land in S3 next to the rest). A record
//! refused by several destinations is kept once per destination.
//!
//! Limits:
//! - **Bounded** by `dead_letter_max_size` (default 100M): a file stops growing there (rotate
//!   or ship it to make room: the size is read again when the file is replaced or truncated);
//!   a stream takes at most that many bytes while the instance runs. Records beyond are counted
//!   (`dead_letter_overflow`) and said in one warning per flush, never held in memory.
//! - Kept before the flush answers, within its deadline: a stream's calls go through the
//!   Firehose destination's own executor (request slots, backoff, partial retries); what it
//!   cannot take in time counts as overflow, and the delivery itself is unaffected. A stream's line is at most 1000 KiB (Firehose's record limit): a longer one
//!   carries the record's JSON cut to fit, as a string, with `"record_truncated": true`.
//! - Peers: Fluent Bit 4.2+ `storage.keep.rejected` keeps whole chunks, delivered records
//!   included (a replay duplicates them); Vector drops them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::delivery::outcome::{Outcome, SharedOutcome};
use crate::destinations::Destination;
use fanout_core::config::DeadLetterTarget;
use fanout_core::packing::units::Units;

/// The file's default cap.
pub const DEFAULT_MAX_SIZE: u64 = 100 << 20;

/// One refused record, ready to be written.
pub struct Refused<'a> {
    pub destination: &'a str,
    pub cause: String,
    pub time: String,
    pub tag: &'a str,
    pub record: Value,
}

/// What one write did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub records: u64,
    /// Records not written: the cap was reached, or the write failed.
    pub overflow: u64,
    /// Why records overflowed, when they did.
    pub reason: Option<String>,
}

/// The JSON line kept for one refused record.
fn line(entry: &Refused<'_>, refused_at: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "destination": entry.destination,
        "cause": entry.cause,
        "time": entry.time,
        "tag": entry.tag,
        "record": entry.record,
        "refused_at": refused_at,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// Firehose's largest record (1000 KiB).
const MAX_STREAM_LINE: usize = 1000 * 1024;
/// Lines per `PutRecordBatch` call, and their bytes: 500 records, and 3 MiB raw so the base64
/// body stays under the call's 4 MiB.
const STREAM_CALL_RECORDS: usize = 500;
const STREAM_CALL_BYTES: usize = 3 << 20;

/// Where refused records go: a file, or a Firehose stream.
pub enum DeadLetter {
    File(DeadLetterFile),
    Stream(DeadLetterStream),
}

impl DeadLetter {
    pub fn new(target: &DeadLetterTarget, max_size: u64) -> DeadLetter {
        match target {
            DeadLetterTarget::File(path) => DeadLetter::File(DeadLetterFile::new(path, max_size)),
            DeadLetterTarget::Firehose(stream) => {
                DeadLetter::Stream(DeadLetterStream::new(stream, max_size))
            }
        }
    }

    /// Keeps `refused` by `deadline`. A stream's calls go through the instance's Firehose
    /// destination, with its request slots, backoff and partial retries; their requests are
    /// added to `firehose_requests` (every request on the wire is counted).
    pub async fn keep(
        &self,
        refused: &[Refused<'_>],
        destinations: &[std::sync::Arc<Destination>],
        firehose_requests: Option<&std::sync::atomic::AtomicU64>,
        deadline: Instant,
    ) -> Written {
        let stream = match self {
            DeadLetter::File(file) => return file.write(refused),
            DeadLetter::Stream(stream) => stream,
        };
        let (calls, mut written) = stream.calls(refused);
        let lines: usize = calls.iter().map(Units::len).sum();
        if lines == 0 {
            return written;
        }
        let Some(firehose) = destinations
            .iter()
            .find_map(|d| d.downcast::<crate::destinations::firehose::FirehoseDestination>())
        else {
            written.overflow += lines as u64;
            written.reason = Some("no firehose destination".into());
            return written;
        };
        let outcome: SharedOutcome = Outcome::shared(lines);
        firehose
            .send_calls(&stream.stream, calls, deadline, &outcome)
            .await;
        let outcome = Outcome::lock(&outcome);
        if let Some(counter) = firehose_requests {
            crate::stats::add(counter, outcome.requests);
        }
        let tally = outcome.tally();
        written.records += tally.accepted as u64;
        let missed = (lines - tally.accepted) as u64;
        if missed > 0 {
            written.overflow += missed;
            let why = tally
                .rejected
                .first()
                .map(|(cause, _)| cause.clone())
                .or_else(|| {
                    firehose.is_missing(&stream.stream).then(|| {
                        format!(
                            "stream '{}' does not exist (ResourceNotFoundException)",
                            stream.stream
                        )
                    })
                })
                .or_else(|| outcome.transient_reason().map(|(r, _)| r.to_owned()))
                .unwrap_or_else(|| "not accepted before the flush deadline".into());
            written.reason.get_or_insert(why);
        }
        written
    }
}

/// Refused records sent to a Firehose delivery stream.
pub struct DeadLetterStream {
    pub stream: String,
    max_size: u64,
    /// Bytes handed to the stream so far.
    sent: std::sync::atomic::AtomicU64,
}

impl DeadLetterStream {
    pub fn new(stream: &str, max_size: u64) -> DeadLetterStream {
        DeadLetterStream {
            stream: stream.to_owned(),
            max_size,
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The lines for `refused` that fit the cap, in calls of at most 500 records and 3 MiB
    /// (each line's position is its index among the lines kept), and what did not fit.
    pub fn calls(&self, refused: &[Refused<'_>]) -> (Vec<Units>, Written) {
        use std::sync::atomic::Ordering;
        let refused_at = now();
        let mut written = Written::default();
        let mut calls: Vec<Units> = Vec::new();
        let mut call_bytes = 0usize;
        let mut kept = 0usize;
        for entry in refused {
            let mut bytes = line(entry, &refused_at);
            if bytes.len() > MAX_STREAM_LINE {
                let text = serde_json::to_string(&entry.record).unwrap_or_default();
                let cut = fanout_core::packing::shrink::cut(
                    &text,
                    MAX_STREAM_LINE / 2,
                    "...TRUNCATED...",
                );
                bytes = serde_json::to_vec(&json!({
                    "destination": entry.destination,
                    "cause": entry.cause,
                    "time": entry.time,
                    "tag": entry.tag,
                    "record": cut,
                    "record_truncated": true,
                    "refused_at": refused_at,
                }))
                .unwrap_or_default();
                bytes.push(b'\n');
            }
            let size = bytes.len() as u64;
            if self.sent.fetch_add(size, Ordering::Relaxed) + size > self.max_size {
                self.sent.fetch_sub(size, Ordering::Relaxed);
                written.overflow += 1;
                written.reason.get_or_insert_with(|| {
                    format!(
                        "Firehose stream '{}' took dead_letter_max_size ({} bytes) already",
                        self.stream, self.max_size
                    )
                });
                continue;
            }
            let full = calls.last().is_none_or(|c| {
                c.len() >= STREAM_CALL_RECORDS || call_bytes + bytes.len() > STREAM_CALL_BYTES
            });
            if full {
                calls.push(Units::default());
                call_bytes = 0;
            }
            call_bytes += bytes.len();
            if let Some(call) = calls.last_mut() {
                call.push(&bytes, &[kept]);
                kept += 1;
            }
        }
        (calls, written)
    }
}

/// Refused records appended to a local file.
pub struct DeadLetterFile {
    path: PathBuf,
    max_size: u64,
    open: Mutex<Option<(File, u64)>>,
}

impl DeadLetterFile {
    pub fn new(path: &Path, max_size: u64) -> DeadLetterFile {
        DeadLetterFile {
            path: path.to_owned(),
            max_size,
            open: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `refused`, whole lines only, up to the cap.
    pub fn write(&self, refused: &[Refused<'_>]) -> Written {
        let mut written = Written::default();
        if refused.is_empty() {
            return written;
        }
        let refused_at = now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.reopen_if_replaced(&mut open) {
            written.overflow = refused.len() as u64;
            written.reason = Some(format!("cannot open {}: {e}", self.path.display()));
            return written;
        }
        let Some((file, size)) = open.as_mut() else {
            return written;
        };
        let mut lines = Vec::new();
        for entry in refused {
            let line = line(entry, &refused_at);
            if *size + (lines.len() + line.len()) as u64 > self.max_size {
                written.overflow += 1;
                written.reason.get_or_insert_with(|| {
                    format!(
                        "{} reached dead_letter_max_size ({} bytes)",
                        self.path.display(),
                        self.max_size
                    )
                });
                continue;
            }
            lines.extend_from_slice(&line);
            written.records += 1;
        }
        if let Err(e) = file.write_all(&lines) {
            written.overflow += written.records;
            written.records = 0;
            written.reason = Some(format!("cannot write {}: {e}", self.path.display()));
            // Whatever reached the file stays; its size is read again next time.
            *open = None;
            return written;
        }
        *size += lines.len() as u64;
        written
    }

    /// Opens the file on first use, and again when it was rotated away or truncated, so the
    /// cap counts what the file holds now.
    fn reopen_if_replaced(&self, open: &mut Option<(File, u64)>) -> std::io::Result<()> {
        let current = std::fs::metadata(&self.path).ok();
        let stale = match (open.as_ref(), &current) {
            (Some((file, size)), Some(now)) => {
                let held = file.metadata()?;
                held.ino() != now.ino() || now.len() < *size
            }
            _ => true,
        };
        if stale {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            *open = Some((file, size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(n: usize) -> Refused<'static> {
        Refused {
            destination: "datadog",
            cause: "HTTP 400: bad".into(),
            time: "2026-12-04T00:00:00.000000000Z".into(),
            tag: "app",
            record: json!({"log": format!("line {n}")}),
        }
    }

    #[test]
    fn lines_are_appended_whole_up_to_the_cap_then_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let one = serde_json::to_vec(&json!({
            "destination": "datadog", "cause": "HTTP 400: bad",
            "time": "2026-12-04T00:00:00.000000000Z", "tag": "app",
            "record": {"log": "line 0"}, "refused_at": "2026-12-04T00:00:00.000000000Z"
        }))
        .unwrap()
        .len() as u64
            + 1;
        let letters = DeadLetterFile::new(&path, one * 3 + 5);
        let w = letters.write(&[refused(0), refused(1)]);
        assert_eq!((w.records, w.overflow), (2, 0));
        let w = letters.write(&[refused(2), refused(3)]);
        assert_eq!((w.records, w.overflow), (1, 1));
        assert!(w.reason.unwrap().contains("dead_letter_max_size"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["record"]["log"], "line 2");
        assert_eq!(lines[0]["destination"], "datadog");
        assert_eq!(lines[0]["cause"], "HTTP 400: bad");
        // Rotated away: room again.
        std::fs::rename(&path, dir.path().join("dead.jsonl.1")).unwrap();
        let w = letters.write(&[refused(4)]);
        assert_eq!((w.records, w.overflow), (1, 0));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn stream_lines_are_packed_in_calls_cut_to_a_record_and_capped() {
        let stream = DeadLetterStream::new("refused", 3 << 20);
        let many: Vec<Refused<'_>> = (0..1200).map(refused).collect();
        let (calls, written) = stream.calls(&many);
        assert_eq!(written.overflow, 0);
        let sizes: Vec<usize> = calls.iter().map(Units::len).collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        let mut huge = refused(0);
        huge.record = json!({"log": "x".repeat(1_100_000)});
        let (calls, written) = stream.calls(&[huge]);
        assert_eq!(written.overflow, 0);
        let line: Value = serde_json::from_slice(calls[0].unit(0)).unwrap();
        assert!(calls[0].unit(0).len() <= MAX_STREAM_LINE);
        assert_eq!(line["record_truncated"], true);
        assert!(
            line["record"]
                .as_str()
                .unwrap()
                .ends_with("...TRUNCATED...")
        );
        // The cap counts what was handed to the stream since the start.
        let more: Vec<Refused<'_>> = (0..20000).map(refused).collect();
        let (_, written) = stream.calls(&more);
        assert!(written.overflow > 0);
        assert!(written.reason.unwrap().contains("dead_letter_max_size"));
    }

    #[test]
    fn a_file_that_cannot_be_opened_counts_everything_as_overflow() {
        let letters = DeadLetterFile::new(Path::new("/nonexistent/dir/dead.jsonl"), 1 << 20);
        let w = letters.write(&[refused(0)]);
        assert_eq!((w.records, w.overflow), (0, 1));
        assert!(w.reason.unwrap().contains("cannot open"));
    }
}
