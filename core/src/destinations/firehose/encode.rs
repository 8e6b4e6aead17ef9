//! Turning decoded records into Firehose records, grouped by delivery stream.
//!
//! Each record becomes one newline-terminated JSON line (or, with `log_key`, that field's
//! value as it is). Lines are grouped by the stream their template resolves to, in arrival
//! order. With `simple_aggregation`, consecutive lines of one stream are packed into records
//! of up to 1000 KiB; with `compression gzip` or `zstd`, each Firehose record is compressed on
//! its own (one gzip member or zstd frame per record, as the core `kinesis_firehose` output).
//!
//! Routing rule: `delivery_stream`'s `||` alternatives are tried in order, and one is taken
//! only if it renders to a valid stream name (1-64 of `[A-Za-z0-9_.-]`), is not a stream
//! Firehose said is missing within the last [`MISSING_STREAM_TTL`], and is not a new stream
//! beyond [`MAX_STREAMS_PER_CHUNK`] in this chunk; otherwise the next alternative is tried,
//! and a record with none left is dropped with the last reason. Record content can thus never
//! turn one flush into thousands of calls, nor send records to a stream name it made up that
//! does not pass these rules.
//!
//! Size rule: a line over 1000 KiB has its message (`log_key` value, or the instance's message
//! key) cut to fit and `[Truncated...]` appended; a record with no message long enough to cut
//! is dropped. Both are counted and logged.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use super::config::{FirehoseConfig, RecordCompression};
use super::limits::{CALL_LIMITS, MAX_RECORD_BYTES, base64_len, valid_stream_name};
use crate::json::Object;
use crate::packing::plan::{Planned, Request};
use crate::packing::request::Fill;
use crate::packing::shrink;
use crate::packing::units::Units;
use crate::record::{Batch, Record};
use fanout_contract::view::ValueRef;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Room left in a record for what compression adds to incompressible input: gzip's stored
/// blocks add 5 bytes per 64 KiB; zstd's worst case (`ZSTD_compressBound`) is 1/256 of the
/// input plus a header, ~4 KB for a full record.
fn compression_slack(compression: RecordCompression) -> usize {
    match compression {
        RecordCompression::None => 0,
        RecordCompression::Gzip => 1024,
        RecordCompression::Zstd => 8192,
    }
}

pub const TRUNCATION_MARKER: &str = "[Truncated...]";

/// Distinct delivery streams one chunk may open: with one call per stream at least, this bounds
/// the calls a chunk of records with distinct values can cause.
pub const MAX_STREAMS_PER_CHUNK: usize = 32;

/// Records of one flush to route again: those sent to a stream that answered
/// `ResourceNotFoundException` (which [`MissingStreams`] then holds, so routing passes it
/// over). The plugin fills it as answers come; the plan takes them when its own records are
/// out, so they leave in the same flush.
pub trait Reroutes: Sync {
    /// The positions handed back since the last call, in order.
    fn take(&self) -> Vec<usize>;
}

/// How long a stream Firehose reported missing (`ResourceNotFoundException`) is not asked again.
pub const MISSING_STREAM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Streams Firehose recently reported missing: records for them fall through to the next
/// `||` alternative without a call. The plugin remembers them for [`MISSING_STREAM_TTL`].
pub trait MissingStreams: Sync {
    fn contains(&self, stream: &str) -> bool;
}

/// The Firehose records of one stream, as the plan sends them.
#[derive(Debug, Default)]
pub struct StreamRecords {
    pub stream: String,
    pub records: Vec<Vec<u8>>,
    /// For each Firehose record, the positions in the batch of the logs it carries.
    pub sources: Vec<Vec<usize>>,
    /// The `PutRecordBatch` calls that carry them.
    pub calls: usize,
}

/// Everything one flush produces, with what could not be sent (the whole plan, collected: for
/// `preview`, the billing benchmark and tests; deliveries pull the [`Plan`] instead).
#[derive(Debug, Default)]
pub struct Routed {
    pub streams: Vec<StreamRecords>,
    /// Why the first record whose stream template did not resolve has no stream.
    pub unroutable_reason: Option<String>,
    pub truncated: u64,
    /// Every record not sent, by position in the batch, with its cause.
    pub dropped: Vec<(usize, String)>,
}

/// What a plan counted on the way.
#[derive(Debug, Default)]
pub struct Counts {
    /// Why the first record whose stream template did not resolve has no stream.
    pub unroutable_reason: Option<String>,
    /// Records whose message was cut to fit a Firehose record.
    pub truncated: u64,
}

/// One stream's records being packed: the open aggregate and the open call.
struct OpenStream {
    name: String,
    aggregate: Vec<u8>,
    aggregate_sources: Vec<usize>,
    call: Units,
    /// How full `call` is, as `PutRecordBatch` counts it (records in base64).
    fill: Fill,
}

/// A flush's `PutRecordBatch` calls, built as the executor pulls them: each record is routed
/// and encoded when reached, lines of one stream are packed into aggregates and calls, and a
/// call is handed out as soon as it is full (the rest at the end). Memory holds the open
/// aggregate and call of each stream plus the calls in flight, not the encoded chunk.
pub struct Plan<'a> {
    encoder: &'a Encoder<'a>,
    batch: &'a Batch,
    /// The records to route, in order: all of the batch, or those routed again.
    only: Option<Vec<usize>>,
    /// Index of the next record in `only` (or in the batch).
    next: usize,
    streams: Vec<OpenStream>,
    ready: VecDeque<Planned<String>>,
    finished: bool,
    /// Streams not to route to (reported missing recently).
    missing: Option<&'a dyn MissingStreams>,
    /// Records of this flush sent to a stream that turned out missing, routed again once the
    /// plan's own records are out.
    reroutes: Option<&'a dyn Reroutes>,
    /// The current record's line (reused from record to record).
    line: Vec<u8>,
    pub counts: Counts,
}

impl Iterator for Plan<'_> {
    type Item = Planned<String>;

    fn next(&mut self) -> Option<Planned<String>> {
        loop {
            if let Some(planned) = self.ready.pop_front() {
                return Some(planned);
            }
            let (position, total) = match &self.only {
                Some(only) => (only.get(self.next).copied(), only.len()),
                None => (Some(self.next), self.batch.len()),
            };
            let Some(event) = position.and_then(|p| self.batch.get(p)) else {
                if self.finished {
                    // Records whose stream answered missing since: their next alternative.
                    let again = self.reroutes.map(|r| r.take()).unwrap_or_default();
                    if again.is_empty() {
                        return None;
                    }
                    self.only = Some(again);
                    self.next = 0;
                    self.finished = false;
                    continue;
                }
                self.finished = true;
                let config = self.encoder.config;
                for stream in &mut self.streams {
                    stream.finish(config, &mut self.ready);
                }
                continue;
            };
            let position = position.unwrap_or(self.next);
            self.next += 1;
            let (encoder, tag, counts) = (self.encoder, &self.batch.tag, &mut self.counts);
            let open = &self.streams;
            let missing = self.missing;
            let routed = encoder
                .route(&event, tag, counts, |stream, last| {
                    if !valid_stream_name(stream) {
                        return Err(format!(
                            "'{}' is not a valid delivery stream name (1-64 of A-Z a-z 0-9 _ . -)",
                            crate::text::shorten(stream, 80)
                        ));
                    }
                    if missing.is_some_and(|m| m.contains(stream)) {
                        return Err(format!(
                            "stream '{stream}' does not exist (ResourceNotFoundException; not asked again for {}s)",
                            MISSING_STREAM_TTL.as_secs()
                        ));
                    }
                    // The last alternative (the fallback) may take the last slot.
                    let room = MAX_STREAMS_PER_CHUNK - usize::from(!last);
                    if open.len() >= room && !open.iter().any(|s| s.name == stream) {
                        return Err(format!(
                            "'{stream}' would be stream number {} of this chunk (at most {MAX_STREAMS_PER_CHUNK})",
                            open.len() + 1
                        ));
                    }
                    Ok(())
                })
                .and_then(|stream| {
                    encoder.line(&event, tag, counts, &mut self.line)?;
                    Ok(stream)
                });
            let stream = match routed {
                Ok(routed) => routed,
                Err(cause) => {
                    return Some(Planned::Dropped {
                        positions: vec![position],
                        cause,
                    });
                }
            };
            // At most MAX_STREAMS_PER_CHUNK streams: a scan beats hashing every record's name.
            let slot = match self.streams.iter().position(|s| s.name == stream) {
                Some(slot) => slot,
                None => {
                    self.streams.push(OpenStream {
                        name: stream,
                        aggregate: Vec::new(),
                        aggregate_sources: Vec::new(),
                        call: Units::default(),
                        fill: Fill::new(CALL_LIMITS),
                    });
                    self.streams.len() - 1
                }
            };
            let left = total - self.next;
            self.streams[slot].add(
                position,
                &self.line,
                left,
                self.encoder.config,
                &mut self.ready,
            );
        }
    }
}

impl<'a> Plan<'a> {
    /// Routes again, after its own records, the records `reroutes` hands back (their stream
    /// answered missing while the plan was being sent).
    pub fn rerouting(mut self, reroutes: &'a dyn Reroutes) -> Plan<'a> {
        self.reroutes = Some(reroutes);
        self
    }

    /// The streams in order of first appearance (all of them once the plan is exhausted).
    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(|s| s.name.as_str())
    }
}

impl OpenStream {
    fn add(
        &mut self,
        position: usize,
        line: &[u8],
        records_left: usize,
        config: &FirehoseConfig,
        ready: &mut VecDeque<Planned<String>>,
    ) {
        if !config.simple_aggregation {
            self.push_record(line, &[position], config, ready);
            return;
        }
        let limit = MAX_RECORD_BYTES - compression_slack(config.compression);
        if !self.aggregate.is_empty() && self.aggregate.len() + line.len() > limit {
            self.seal_aggregate(config, ready);
        }
        if self.aggregate.is_empty() {
            // Room for as many lines like this one as the chunk may still bring, up to a full
            // record: grown by doubling, a 1 MB aggregate would be copied ~20 times.
            self.aggregate
                .reserve(line.len().saturating_mul(records_left + 1).min(limit));
        }
        self.aggregate.extend_from_slice(line);
        self.aggregate_sources.push(position);
    }

    fn seal_aggregate(&mut self, config: &FirehoseConfig, ready: &mut VecDeque<Planned<String>>) {
        let record = std::mem::take(&mut self.aggregate);
        let sources = std::mem::take(&mut self.aggregate_sources);
        self.push_record(&record, &sources, config, ready);
    }

    fn push_record(
        &mut self,
        raw: &[u8],
        sources: &[usize],
        config: &FirehoseConfig,
        ready: &mut VecDeque<Planned<String>>,
    ) {
        let compressed;
        let record = match config.compression {
            RecordCompression::None => raw,
            RecordCompression::Gzip => {
                compressed = gzip(raw);
                &compressed[..]
            }
            RecordCompression::Zstd => {
                compressed = zstd_frame(raw);
                &compressed[..]
            }
        };
        let size = base64_len(record.len());
        if !self.fill.fits(size) {
            self.emit(ready);
        }
        self.call.push(record, sources);
        self.fill.add(size);
    }

    fn emit(&mut self, ready: &mut VecDeque<Planned<String>>) {
        ready.push_back(Planned::Request(Request {
            key: self.name.clone(),
            units: std::mem::take(&mut self.call),
        }));
        self.fill.restart();
    }

    fn finish(&mut self, config: &FirehoseConfig, ready: &mut VecDeque<Planned<String>>) {
        if !self.aggregate.is_empty() {
            self.seal_aggregate(config, ready);
        }
        if !self.call.is_empty() {
            self.emit(ready);
        }
    }
}

pub struct Encoder<'a> {
    pub config: &'a FirehoseConfig,
    pub message_keys: &'a [String],
}

impl<'a> Encoder<'a> {
    /// The batch's calls, built as they are pulled.
    pub fn plan(&'a self, batch: &'a Batch) -> Plan<'a> {
        self.plan_avoiding(batch, None)
    }

    /// Like [`Encoder::plan`], routing around streams known to be missing.
    pub fn plan_avoiding(
        &'a self,
        batch: &'a Batch,
        missing: Option<&'a dyn MissingStreams>,
    ) -> Plan<'a> {
        Plan {
            missing,
            reroutes: None,
            encoder: self,
            batch,
            only: None,
            next: 0,
            streams: Vec::new(),
            ready: VecDeque::new(),
            finished: false,
            counts: Counts::default(),
            line: Vec::with_capacity(512),
        }
    }

    /// The whole plan at once, grouped by stream.
    pub fn encode(&self, batch: &Batch) -> Routed {
        let mut plan = self.plan(batch);
        let mut routed = Routed::default();
        let mut records: HashMap<String, StreamRecords> = HashMap::new();
        for planned in plan.by_ref() {
            match planned {
                Planned::Request(request) => {
                    let stream = records.entry(request.key.clone()).or_default();
                    stream.calls += 1;
                    for i in 0..request.units.len() {
                        stream.records.push(request.units.unit(i).to_vec());
                        stream.sources.push(request.units.positions_of(i).to_vec());
                    }
                }
                Planned::Dropped { positions, cause } => routed
                    .dropped
                    .extend(positions.into_iter().map(|p| (p, cause.clone()))),
            }
        }
        routed.streams = plan
            .stream_names()
            .map(|name| {
                let mut stream = records.remove(name).unwrap_or_default();
                stream.stream = name.to_owned();
                stream
            })
            .collect();
        let counts = plan.counts;
        routed.unroutable_reason = counts.unroutable_reason;
        routed.truncated = counts.truncated;
        routed
    }

    /// The record's delivery stream: the first alternative `accept` takes, or why none is.
    fn route(
        &self,
        event: &Record<'_>,
        tag: &str,
        counts: &mut Counts,
        accept: impl FnMut(&str, bool) -> Result<(), String>,
    ) -> Result<String, String> {
        self.config
            .delivery_stream
            .first_accepted(tag, &event.body, accept)
            .map_err(|reason| {
                let cause = if self.config.delivery_stream.alternatives() > 1 {
                    format!("no delivery stream ({reason}, the last alternative)")
                } else {
                    format!(
                        "no delivery stream ({reason}) and delivery_stream has no '||' fallback"
                    )
                };
                counts.unroutable_reason.get_or_insert(reason);
                cause
            })
    }

    /// One newline-terminated line for an event, within the record size limit, written into
    /// `line` (replacing what it held), or why the event cannot be sent.
    fn line(
        &self,
        event: &Record<'_>,
        tag: &str,
        counts: &mut Counts,
        line: &mut Vec<u8>,
    ) -> Result<(), String> {
        line.clear();
        let limit = MAX_RECORD_BYTES - compression_slack(self.config.compression);
        let oversize = || Err("over 1000 KiB with no message to shorten".to_owned());
        if let Some(log_key) = &self.config.log_key {
            let Some(value) = event.body.get(log_key) else {
                return Err(format!("no log_key field '{log_key}'"));
            };
            match value.as_str() {
                Some(s) if s.len() + 1 > limit => {
                    counts.truncated += 1;
                    let cut =
                        shrink::cut(&s, limit - 1 - TRUNCATION_MARKER.len(), TRUNCATION_MARKER);
                    line.extend_from_slice(cut.as_bytes());
                }
                Some(s) => line.extend_from_slice(s.as_bytes()),
                None => line.extend_from_slice(
                    value.to_text(fanout_contract::view::FIELD_DEPTH).as_bytes(),
                ),
            }
            if line.len() + 1 > limit {
                return oversize();
            }
            line.push(b'\n');
            return Ok(());
        }
        self.write_json(event, tag, None, line);
        if line.len() + 1 > limit {
            let message = event.message(self.message_keys);
            let message_len = message.and_then(|(_, v)| v.as_str()).map_or(0, |m| m.len());
            let full = line.len() + 1;
            let fitted = shrink::fit(limit, full, message_len, TRUNCATION_MARKER, |keep| {
                line.clear();
                self.write_json(event, tag, Some(keep), line);
                line.len() + 1
            });
            if fitted.is_none() {
                return oversize();
            }
            counts.truncated += 1;
        }
        line.push(b'\n');
        Ok(())
    }

    fn write_json(
        &self,
        event: &Record<'_>,
        tag: &str,
        message_limit: Option<usize>,
        out: &mut Vec<u8>,
    ) {
        let body = &event.body;
        let message_key = message_limit.and(event.message(self.message_keys).map(|(k, _)| k));
        let mut object = Object::start(out);
        for (key, value) in body.iter() {
            let cut = match (message_key, message_limit, value) {
                (Some(k), Some(limit), ValueRef::Str(_)) if key.is(k) => value
                    .as_str()
                    .map(|s| shrink::cut(&s, limit, TRUNCATION_MARKER)),
                _ => None,
            };
            match cut {
                Some(text) => object.text(&key.text(), &text),
                None => object.value(key, value),
            }
        }
        if let Some(time_key) = &self.config.time_key {
            if !body.contains_key(time_key) {
                if let Some(time) = event.time.to_datetime() {
                    object.text(
                        time_key,
                        &time.format(&self.config.time_key_format).to_string(),
                    );
                }
            }
        }
        for (name, template) in &self.config.partition_keys {
            if !body.contains_key(name) {
                if let Ok(value) = template.render(tag, body) {
                    object.text(name, &value);
                }
            }
        }
        object.end();
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 32),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// One zstd frame at the library's default level (3), what the core output sends.
#[cfg(feature = "zstd")]
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    // Compressing from memory into memory fails only on allocation failure.
    zstd::bulk::compress(data, zstd::DEFAULT_COMPRESSION_LEVEL).unwrap_or_default()
}

/// Unreachable: configuration refuses `compression zstd` in builds without zstd.
#[cfg(not(feature = "zstd"))]
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    data.to_vec()
}

/// Firehose stream names: 1 to 64 of `[a-zA-Z0-9_.-]`.
#[cfg(test)]
mod tests;
