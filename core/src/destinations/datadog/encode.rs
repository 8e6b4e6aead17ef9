//! Building Datadog log entries and request bodies from decoded records.
//!
//! Each record becomes one JSON object written straight into a shared buffer (no intermediate
//! map): the reserved attributes first (`timestamp`, `ddsource`, `service`, `hostname`,
//! `status`, `message`), then the record's own fields in order, then `ddtags`. A reserved
//! attribute the record already has is left as the record has it. Requests are cut at 1000
//! entries and 5 MB of uncompressed JSON; a log over 1 MB has its message shortened, ending in
//! `...TRUNCATED...`, and gets the tag `truncated:true`.

use std::io::Write;

use flate2::write::GzEncoder;

use super::config::{Compression, DatadogConfig};
use crate::accessor::NestedMaps;
use crate::json::Object;
use crate::packing::plan::{Planned, Request};
use crate::packing::request::{Fill, Limits};
use crate::packing::shrink;
use crate::packing::units::Units;
use crate::record::{Batch, Record};
use fanout_contract::view::{FIELD_DEPTH, ValueRef};

/// Request limits of the intake (uncompressed): 1000 entries, 5 MB, in a JSON array.
pub const LIMITS: Limits = Limits {
    max_entries: 1000,
    max_bytes: 5_000_000,
    fixed_overhead: 2,
    per_entry_overhead: 1,
};

/// Largest log the intake keeps whole.
pub const MAX_LOG_BYTES: usize = 1_000_000;

pub const TRUNCATION_MARKER: &str = "...TRUNCATED...";

/// Record keys `provider ecs` turns into tags (and removes), as Fluent Bit's core output does,
/// plus FireLens's `source` (stdout/stderr), sent as `stream` because `source` is Datadog's
/// name for `ddsource`.
const ECS_KEYS: [&str; 7] = [
    "container_id",
    "container_name",
    "container_image",
    "ecs_cluster",
    "ecs_task_definition",
    "ecs_task_arn",
    "source",
];

/// Keys whose value becomes `status` when the record has none.
const LEVEL_KEYS: [&str; 2] = ["level", "severity"];

/// The requests of one flush, built one at a time as the executor asks for them (so memory
/// holds the requests in flight, not the whole chunk): at most 1000 entries and 5 MB of
/// uncompressed JSON each. A log no request can carry is yielded as dropped.
pub struct Plan<'a> {
    encoder: &'a Encoder<'a>,
    batch: &'a Batch,
    next: usize,
    current: Units,
    /// How full `current` is.
    fill: Fill,
    /// Logs whose message was shortened to fit 1 MB.
    pub truncated: u64,
    /// Logs whose own `ddtags` was not a string and was turned into tags ([`ddtags_text`]).
    pub retyped_ddtags: u64,
    scratch: Scratch<'a>,
}

/// Buffers reused from entry to entry: rendered values, the tag list, and the index of the
/// entry's nested maps.
#[derive(Default)]
struct Scratch<'a> {
    value: String,
    tags: String,
    maps: NestedMaps<'a>,
    /// The last entry written had a `ddtags` that was not a string.
    retyped_ddtags: bool,
}

impl Iterator for Plan<'_> {
    type Item = Planned<()>;

    fn next(&mut self) -> Option<Planned<()>> {
        while let Some(event) = self.batch.get(self.next) {
            let position = self.next;
            self.next += 1;
            let out = self.current.writer();
            let start = out.len();
            let scratch = &mut self.scratch;
            self.encoder
                .write_entry(&event, &self.batch.tag, None, out, scratch);
            self.retyped_ddtags += u64::from(scratch.retyped_ddtags);
            let len = out.len() - start;
            if len > MAX_LOG_BYTES {
                match self
                    .encoder
                    .shrink(&event, &self.batch.tag, len, out, start, scratch)
                {
                    Shrunk::Truncated => self.truncated += 1,
                    Shrunk::AsIs => {}
                    Shrunk::Dropped => {
                        return Some(Planned::Dropped {
                            positions: vec![position],
                            cause: "log too large for any request (5 MB)".into(),
                        });
                    }
                }
            }
            let entry = self.current.uncommitted().len();
            if self.fill.fits(entry) {
                self.fill.add(entry);
                self.current.commit(&[position]);
                if self.current.len() == 1 {
                    // Room for as many entries like this one as the request may take: grown by
                    // doubling, a 1 MB body would be copied ~20 times.
                    let left = (self.batch.len() - self.next).min(LIMITS.max_entries - 1);
                    let room = entry.saturating_mul(left).min(LIMITS.max_bytes);
                    self.current.writer().reserve(room);
                }
                continue;
            }
            // The request is full: this entry starts the next one.
            let entry = self.current.uncommitted().to_vec();
            self.current.writer();
            let full = std::mem::take(&mut self.current);
            self.fill.restart();
            self.fill.add(entry.len());
            self.current.push(&entry, &[position]);
            return Some(Planned::Request(Request {
                key: (),
                units: full,
            }));
        }
        (!self.current.is_empty()).then(|| {
            Planned::Request(Request {
                key: (),
                units: std::mem::take(&mut self.current),
            })
        })
    }
}

/// The request body for `units`: a JSON array, compressed as configured. Fails only if zstd
/// refuses its level, which the configuration checks.
pub fn body(units: &Units, compression: Compression) -> std::io::Result<Vec<u8>> {
    let len = LIMITS.fixed_overhead + units.bytes() + units.len().saturating_sub(1);
    match compression {
        Compression::Gzip(level) => {
            let mut encoder =
                GzEncoder::new(Vec::with_capacity(len / 4), flate2::Compression::new(level));
            write_array(units, &mut encoder);
            encoder.finish()
        }
        Compression::Zstd(level) => {
            let mut json = Vec::with_capacity(len);
            write_array(units, &mut json);
            zstd_compress(&json, level)
        }
        Compression::None => {
            let mut body = Vec::with_capacity(len);
            write_array(units, &mut body);
            Ok(body)
        }
    }
}

/// zstd with a context kept per thread: making one allocates and clears its tables, which
/// cost as much as compressing a request (measured on the pipeline benchmark). The runtime's
/// threads are few and long-lived.
#[cfg(feature = "zstd")]
fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some((kept, compressor)) if *kept == level => compressor.compress(data),
            _ => {
                let mut compressor = zstd::bulk::Compressor::new(level)?;
                let out = compressor.compress(data);
                *slot = Some((level, compressor));
                out
            }
        }
    })
}

/// Builds without the zstd library (the browser playground) cannot make zstd bodies.
#[cfg(not(feature = "zstd"))]
fn zstd_compress(_: &[u8], _: i32) -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "this build has no zstd",
    ))
}

fn write_array(units: &Units, out: &mut impl Write) {
    // Writes into memory cannot fail; the Result is only the Write trait's.
    let _ = out.write_all(b"[");
    for (n, entry) in units.iter().enumerate() {
        if n > 0 {
            let _ = out.write_all(b",");
        }
        let _ = out.write_all(entry);
    }
    let _ = out.write_all(b"]");
}

pub struct Encoder<'a> {
    pub config: &'a DatadogConfig,
    pub message_keys: &'a [String],
}

impl<'a> Encoder<'a> {
    /// The batch's requests, built as they are pulled.
    pub fn plan(&'a self, batch: &'a Batch) -> Plan<'a> {
        Plan {
            encoder: self,
            batch,
            next: 0,
            current: Units::default(),
            fill: Fill::new(LIMITS),
            truncated: 0,
            retyped_ddtags: 0,
            scratch: Scratch::default(),
        }
    }

    /// Re-encodes an over-long entry with a shorter message until it fits `MAX_LOG_BYTES`.
    fn shrink<'r>(
        &self,
        event: &Record<'r>,
        tag: &str,
        len: usize,
        buf: &mut Vec<u8>,
        start: usize,
        scratch: &mut Scratch<'r>,
    ) -> Shrunk {
        let message_len = self
            .message(event)
            .and_then(|(_, v)| v.as_str())
            .map_or(0, |m| m.len());
        let fitted = shrink::fit(MAX_LOG_BYTES, len, message_len, TRUNCATION_MARKER, |keep| {
            buf.truncate(start);
            self.write_entry(event, tag, Some(keep), buf, scratch);
            buf.len() - start
        });
        if fitted.is_some() {
            return Shrunk::Truncated;
        }
        buf.truncate(start);
        self.write_entry(event, tag, None, buf, scratch);
        // The intake truncates big logs itself; only a log no request can carry is lost.
        if buf.len() - start <= LIMITS.max_entry_bytes() {
            Shrunk::AsIs
        } else {
            Shrunk::Dropped
        }
    }

    /// The record's message key and value: `dd_message_key`, else the instance's list.
    fn message<'e>(&'e self, event: &Record<'e>) -> Option<(&'e str, ValueRef<'e>)> {
        match &self.config.message_key {
            Some(key) => event.message(std::slice::from_ref(key)),
            None => event.message(self.message_keys),
        }
    }

    fn write_entry<'r>(
        &self,
        event: &Record<'r>,
        tag: &str,
        message_limit: Option<usize>,
        out: &mut Vec<u8>,
        scratch: &mut Scratch<'r>,
    ) {
        let config = self.config;
        let body = &event.body;
        scratch.maps.clear();
        let mut object = Object::start(out);
        if !body.contains_key(&config.date_key) {
            object.field(&config.date_key, &event.time.as_millis());
        }
        if let Some(tag_key) = &config.tag_key {
            if !body.contains_key(tag_key) {
                object.text(tag_key, tag);
            }
        }
        for (key, choice) in [
            ("ddsource", &config.source),
            ("service", &config.service),
            ("hostname", &config.hostname),
        ] {
            if let Some(choice) = choice {
                if !body.contains_key(key) {
                    scratch.value.clear();
                    if choice.render_into(tag, body, &mut scratch.maps, &mut scratch.value) {
                        object.text(key, &scratch.value);
                    }
                }
            }
        }
        if !body.contains_key("status") {
            if let Some(level) = LEVEL_KEYS
                .iter()
                .find_map(|k| body.get(k).and_then(|v| v.as_str()))
            {
                object.text("status", &level);
            }
        }
        let message = self.message(event);
        let message_key = message.map(|(k, _)| k);
        let renamed = message.filter(|(k, _)| *k != "message" && !body.contains_key("message"));
        // The message cut to `message_limit` when it is a string that long.
        let cut = |value: ValueRef<'_>| -> Option<String> {
            let limit = message_limit?;
            let text = value.as_str()?;
            (text.len() > limit).then(|| shrink::cut(&text, limit, TRUNCATION_MARKER))
        };
        if let Some((_, value)) = renamed {
            match cut(value) {
                Some(text) => object.text("message", &text),
                None => object.value(fanout_contract::view::Key::Str(b"message"), value),
            }
        }
        let renamed_key = renamed.map(|(k, _)| k);
        let tags = &mut scratch.tags;
        tags.clear();
        for (key, value) in body.iter() {
            if renamed_key.is_some_and(|k| key.is(k)) || key.is("ddtags") {
                continue;
            }
            if config.provider_ecs {
                if let Some(ecs_key) = ECS_KEYS.iter().find(|k| key.is(k)) {
                    if let Some(text) = value.as_str().filter(|s| !s.is_empty()) {
                        ecs_tags(ecs_key, &text, tags);
                        continue;
                    }
                }
            }
            match message_key.filter(|k| key.is(k)).and_then(|_| cut(value)) {
                Some(text) => object.text(&key.text(), &text),
                None => object.value(key, value),
            }
        }
        for template in &config.tags {
            let before = tags.len();
            if !tags.is_empty() {
                tags.push(',');
            }
            if !template.render_into(tag, body, &mut scratch.maps, tags) {
                tags.truncate(before);
            }
        }
        scratch.retyped_ddtags = false;
        match body.get("ddtags") {
            None | Some(ValueRef::Null) => {}
            Some(value) => match value.as_str() {
                Some(existing) if !existing.is_empty() => push_tag(tags, &existing),
                Some(_) => {}
                None => {
                    scratch.retyped_ddtags = true;
                    let text = ddtags_text(value);
                    if !text.is_empty() {
                        push_tag(tags, &text);
                    }
                }
            },
        }
        if message_limit.is_some() {
            push_tag(tags, "truncated:true");
        }
        if !tags.is_empty() {
            object.text("ddtags", tags);
        }
        object.end();
    }
}

/// The tags a record's own `ddtags` stands for when it is not a string (the intake takes only
/// a comma-separated string, so the value would otherwise be lost): an array gives one tag
/// per element, a map one `key:value` tag per entry, anything else its JSON text (`42`,
/// `true`). Commas inside an element would split it, so they become `_`.
fn ddtags_text(value: ValueRef<'_>) -> String {
    let one = |value: ValueRef<'_>| value.to_text(FIELD_DEPTH + 1).replace(',', "_");
    let parts: Vec<String> = match value {
        ValueRef::Array(items) => items.iter().filter(|v| !v.is_null()).map(one).collect(),
        ValueRef::Map(entries) => entries
            .iter()
            .map(|(k, v)| format!("{}:{}", k.text_at(FIELD_DEPTH + 1), one(v)).replace(',', "_"))
            .collect(),
        other => vec![one(other)],
    };
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Appends one tag (or a comma-separated list of them) to `tags`.
fn push_tag(tags: &mut String, tag: &str) {
    if !tags.is_empty() {
        tags.push(',');
    }
    tags.push_str(tag);
}

enum Shrunk {
    Truncated,
    AsIs,
    Dropped,
}

/// FireLens metadata as Datadog tags (Fluent Bit's `datadog_remap.c`, plus the AWS account and
/// the stream).
fn ecs_tags(key: &str, value: &str, tags: &mut String) {
    match key {
        "container_name" => tag(
            tags,
            "container_name",
            value.strip_prefix('/').unwrap_or(value),
        ),
        "ecs_cluster" => tag(
            tags,
            "cluster_name",
            value
                .rsplit_once("cluster/")
                .map_or(value, |(_, name)| name),
        ),
        "ecs_task_definition" => match value.split_once(':') {
            Some((family, version)) => {
                tag(tags, "task_family", family);
                tag(tags, "task_version", version);
            }
            None => tag(tags, "ecs_task_definition", value),
        },
        "ecs_task_arn" => {
            tag(tags, "task_arn", value);
            // arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>
            let mut fields = value.splitn(6, ':').skip(3);
            if let (Some(region), Some(account), Some(resource)) =
                (fields.next(), fields.next(), fields.next())
            {
                if !region.is_empty() {
                    tag(tags, "region", region);
                }
                if !account.is_empty() {
                    tag(tags, "aws_account", account);
                }
                if let Some(task) = resource.strip_prefix("task/") {
                    tag(tags, "task_id", task.rsplit('/').next().unwrap_or(task));
                }
            }
        }
        "source" => tag(tags, "stream", value),
        other => tag(tags, other, value),
    }
}

/// Appends one `name:value` tag (pushed piece by piece: formatting machinery was ~9 % of the
/// pipeline on FireLens records, which carry nine of these each).
fn tag(tags: &mut String, name: &str, value: &str) {
    push_tag(tags, name);
    tags.push(':');
    tags.push_str(value);
}

#[cfg(test)]
mod tests;
