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

use super::{Deliver, Delivery, Registration, Shared};
use crate::delivery::outcome::{Outcome, SharedOutcome};
use fanout_core::config::{ConfigError, Properties};
use fanout_core::destinations::file::config::FileConfig;
use fanout_core::json::Object;
use fanout_core::record::Batch;
use tokio::time::Instant;

pub const REGISTRATION: Registration = Registration {
    name: "file",
    configure: |props, shared| Ok(Box::new(FileDestination::configure(props, shared)?)),
};

impl Deliver for FileDestination {
    fn deliver<'a>(
        &'a self,
        batch: &'a Batch,
        _deadline: Instant,
        outcome: &'a SharedOutcome,
    ) -> Delivery<'a> {
        Box::pin(self.deliver_batch(batch, outcome))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

pub struct FileDestination {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl FileDestination {
    pub fn configure(
        props: &dyn Properties,
        _shared: &Shared,
    ) -> Result<FileDestination, ConfigError> {
        let path = FileConfig::read(props)?.path;
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

    async fn deliver_batch(&self, batch: &Batch, outcome: &SharedOutcome) {
        // A guess, capped: a chunk of tiny records must not reserve hundreds of MB up front.
        let mut buf = Vec::with_capacity(batch.len().saturating_mul(256).min(1 << 20));
        let mut written = Vec::with_capacity(batch.len());
        for (position, event) in batch.iter().enumerate() {
            let mut line = Object::start(&mut buf);
            line.text("time", &event.time.to_rfc3339());
            line.text("tag", &batch.tag);
            if !event.metadata.is_empty() {
                line.raw("metadata", |out| event.metadata.write_json(out));
            }
            line.raw("record", |out| event.body.write_json(out));
            line.end();
            buf.push(b'\n');
            written.push(position);
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
