//! Records refused for good, kept (`dead_letter`): the one log a 400 isolates, a record no
//! delivery stream takes, a record too large with nothing to cut, a record without `log_key`.
//!
//! Without it such a record is counted and logged, and its content is gone. With it, each one
//! is appended to a local file as a JSON line — `{"destination", "cause", "time", "tag",
//! "record", "refused_at"}` — so it can be read, fixed and sent again (or shipped by another
//! input). A record refused by several destinations is written once per destination.
//!
//! Limits:
//! - **Bounded**: the file stops growing at `dead_letter_max_size` (default 100M); records
//!   beyond it are counted (`dead_letter_overflow`) and said in one warning per flush, never
//!   held in memory. Rotate or ship the file to make room: the size is read again when the
//!   file is replaced or truncated.
//! - Written when the flush settles, on the plugin's runtime; a write that fails counts the
//!   record as overflow (the delivery itself is unaffected).
//! - Peers: Fluent Bit 4.2+ `storage.keep.rejected` keeps whole chunks, delivered records
//!   included (a replay duplicates them); Vector drops them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

/// The file's default cap.
pub const DEFAULT_MAX_SIZE: u64 = 100 << 20;

/// One refused record, ready to be written.
pub struct Refused<'a> {
    pub destination: &'a str,
    pub cause: &'a str,
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

pub struct DeadLetter {
    path: PathBuf,
    max_size: u64,
    open: Mutex<Option<(File, u64)>>,
}

impl DeadLetter {
    pub fn new(path: &Path, max_size: u64) -> DeadLetter {
        DeadLetter {
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
        let refused_at = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string();
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
            cause: "HTTP 400: bad",
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
        let letters = DeadLetter::new(&path, one * 3 + 5);
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
    fn a_file_that_cannot_be_opened_counts_everything_as_overflow() {
        let letters = DeadLetter::new(Path::new("/nonexistent/dir/dead.jsonl"), 1 << 20);
        let w = letters.write(&[refused(0)]);
        assert_eq!((w.records, w.overflow), (0, 1));
        assert!(w.reason.unwrap().contains("cannot open"));
    }
}
