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

use super::{Delivery, Shared};
use crate::config::{ConfigError, Properties, Reader};
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

    pub async fn deliver(&self, batch: &Batch) -> Delivery {
        let mut buf = Vec::with_capacity(batch.events.len() * 256);
        for event in &batch.events {
            let line = Line {
                time: event.time.to_rfc3339(),
                tag: &batch.tag,
                metadata: &event.metadata,
                record: &event.body,
            };
            if let Err(e) = serde_json::to_writer(&mut buf, &line) {
                return Delivery::Rejected(format!("cannot encode a record as JSON: {e}"));
            }
            buf.push(b'\n');
        }
        let file = Arc::clone(&self.file);
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&buf)
        })
        .await;
        match written {
            Ok(Ok(())) => Delivery::Delivered,
            Ok(Err(e)) => Delivery::Retry {
                reason: format!("cannot append to '{}': {e}", self.path.display()),
                accepted: Vec::new(),
            },
            Err(e) => Delivery::Retry {
                reason: format!("write to '{}' did not finish: {e}", self.path.display()),
                accepted: Vec::new(),
            },
        }
    }
}
