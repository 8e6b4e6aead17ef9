//! `file` destination: appends every decoded record as one JSON line.
//!
//! A debugging aid: it shows exactly what the plugin decoded from Fluent Bit's chunks —
//! timestamp, tag, metadata and body — without any remote API in the way. Each line is
//! `{"time":"<RFC 3339, ns>","tag":"…","metadata":{…},"record":{…}}` (`metadata` only when
//! non-empty). A flush's lines are written with one `write` call under a lock, so lines from
//! concurrent flushes never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::Shared;
use crate::config::{ConfigError, Properties, Reader};
use crate::delivery::outcome::{Outcome, SharedOutcome};
use crate::record::{Batch, Map};

pub struct FileDestination {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    tag: &'a str,
    #[serde(skip_serializing_if = "Map::is_empty")]
    metadata: &'a Map,
    record: &'a Map,
}

impl FileDestination {
    pub fn configure(
        props: &dyn Properties,
        _shared: &Shared,
    ) -> Result<FileDestination, ConfigError> {
        let path = PathBuf::from(Reader::new(props).required(
            "path",
            "the file the file destination appends JSON lines to",
        )?);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                ConfigError::new(
                    "path",
                    format!("cannot open '{}' for appending: {e}", path.display()),
                )
            })?;
        Ok(FileDestination {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub async fn deliver(&self, batch: &Batch, outcome: &SharedOutcome) {
        // A guess, capped: a chunk of tiny records must not reserve hundreds of MB up front.
        let mut buf = Vec::with_capacity(batch.len().saturating_mul(256).min(1 << 20));
        let mut written = Vec::with_capacity(batch.len());
        let mut unencodable = Vec::new();
        for (position, event) in batch.iter().enumerate() {
            let line = Line {
                time: event.time.to_rfc3339(),
                tag: &batch.tag,
                metadata: &event.metadata,
                record: &event.body,
            };
            let start = buf.len();
            if serde_json::to_writer(&mut buf, &line).is_err() {
                buf.truncate(start);
                unencodable.push(position);
                continue;
            }
            buf.push(b'\n');
            written.push(position);
        }
        if !unencodable.is_empty() {
            Outcome::lock(outcome).drop_records(&unencodable, "cannot be encoded as JSON");
        }
        let file = Arc::clone(&self.file);
        let appended = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&buf)
        })
        .await;
        let mut outcome = Outcome::lock(outcome);
        outcome.requests += 1;
        match appended {
            Ok(Ok(())) => outcome.accept(&written),
            Ok(Err(e)) => outcome.transient(
                &format!("cannot append to '{}': {e}", self.path.display()),
                true,
            ),
            Err(e) => outcome.transient(
                &format!("write to '{}' did not finish: {e}", self.path.display()),
                true,
            ),
        }
    }
}
