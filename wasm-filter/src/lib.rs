//! `k8s-metadata`: a `filter_wasm` module that adds Kubernetes metadata to records, from the
//! Downward API and the tail path, with no API server and no RBAC.
//!
//! Fluent Bit calls the exported `k8s_metadata(tag, tag_len, time_sec, time_nsec, record,
//! record_len)` once per record and copies the NUL-terminated string it returns: the record as
//! JSON (`event_format json`, the default) or msgpack (`event_format msgpack`; the input format
//! is recognised from its first byte). The returned buffer is reused on the next call, so
//! nothing is leaked per record, and stays valid until the host has copied it.
//!
//! JSON records take the fast path of [`splice`] (the host's text with the metadata appended and
//! a JSON log line merged, found by [`scan`] without building values) unless something about
//! them needs the full one (serde_json parses, [`enrich`] changes, serde_json writes).
//!
//! A record that cannot be parsed is returned with a `k8s_metadata_error` field and its content
//! in `log`; the module never drops a record. Files are read once per instance and re-read
//! every `refresh_seconds` by the host's clock. Reading that clock is a WASI call, about as
//! costly interpreted as the rest of a record's work, so it is read on a record whose time (in
//! seconds) differs from the last one's, and at least every [`CLOCK_EVERY_RECORDS`] records:
//! record time, which the application controls, only says when to look at the clock, never
//! whether the files are due.
//!
//! A trap (the host aborting a call: out of stack, out of memory) must not disable the module:
//! state lives in `Cell`s that a call takes and puts back, so a call cut short leaves them empty
//! (the next call starts afresh) rather than borrowed forever.

pub mod depth;
pub mod enrich;
pub mod msgpack;
pub mod podinfo;
pub mod scan;
pub mod splice;
pub mod tagpath;

use std::cell::Cell;
use std::time::Instant;

use fanout_contract::view::MAX_DEPTH;
use serde_json::{Map, Value};

use podinfo::{Config, PodInfo};
use splice::{Prepared, Scratch};

struct State {
    config: Config,
    pod: PodInfo,
    read_at: Instant,
    /// Records since the clock was last read, and the record time (seconds) then.
    records_since_clock: u32,
    record_time_at_clock: u32,
    /// The metadata of the last tag seen (its bytes as the host passed them), serialized,
    /// until the files are read again.
    prepared: Option<(Vec<u8>, Prepared)>,
    /// The fast path's buffers, reused from record to record.
    scratch: Scratch,
    /// Config problems still to report (on the first record, once).
    config_problems: Option<String>,
}

/// Records between two readings of the host's clock when record times do not change.
pub const CLOCK_EVERY_RECORDS: u32 = 64;

thread_local! {
    static STATE: Cell<Option<Box<State>>> = const { Cell::new(None) };
    static OUTPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Processes one record and returns the bytes to hand back, NUL-terminated.
pub fn filter(
    tag: &[u8],
    time_sec: u32,
    record: Option<&[u8]>,
    record_len: u32,
    out: &mut Vec<u8>,
) {
    out.clear();
    let Some(record) = record else {
        // The host could not copy the record into the module (its heap was too small).
        let marker = serde_json::json!({
            "k8s_metadata_error": format!(
                "the host passed no record ({record_len} bytes): raise wasm_heap_size or use a module that exports malloc"
            )
        });
        let _ = serde_json::to_writer(&mut *out, &marker);
        out.push(0);
        return;
    };
    let json_mode = record.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // Taken out for the call and put back after it: a trap in between loses the state (the
    // next call reads the files again), never wedges it.
    let mut state = STATE.take().unwrap_or_else(|| {
        let config = Config::load(&abi::preopened_dirs());
        let pod = PodInfo::read(&config.podinfo_dir);
        let config_problems = (!config.problems.is_empty()).then(|| {
            // With the release, so a report names the module that read the file.
            let text = format!(
                "k8s-metadata {}: {}",
                env!("CARGO_PKG_VERSION"),
                config.problems.join("; ")
            );
            eprintln!("k8s-metadata: {text}");
            text
        });
        Box::new(State {
            config,
            pod,
            read_at: Instant::now(),
            records_since_clock: 0,
            record_time_at_clock: time_sec,
            prepared: None,
            scratch: Scratch::default(),
            config_problems,
        })
    });
    state.records_since_clock += 1;
    if (state.records_since_clock >= CLOCK_EVERY_RECORDS || time_sec != state.record_time_at_clock)
        && clock_says_refresh(&mut state, time_sec)
    {
        state.pod = PodInfo::read(&state.config.podinfo_dir);
        state.read_at = Instant::now();
        state.prepared = None;
    }
    if json_mode {
        json_record(record, tag, &mut state, out);
    } else {
        msgpack_record(record, &String::from_utf8_lossy(tag), &mut state, out);
    }
    STATE.set(Some(state));
    out.push(0);
}

/// Reads the host's clock: whether the files are due to be read again.
fn clock_says_refresh(state: &mut State, time_sec: u32) -> bool {
    state.records_since_clock = 0;
    state.record_time_at_clock = time_sec;
    state.read_at.elapsed().as_secs() >= state.config.refresh_seconds
}

fn error_record(reason: String, content: &[u8]) -> Map<String, Value> {
    [
        ("k8s_metadata_error".to_string(), Value::String(reason)),
        (
            "log".to_string(),
            Value::String(String::from_utf8_lossy(content).into_owned()),
        ),
    ]
    .into_iter()
    .collect()
}

/// Marks the first record with the config problems, so a mistake in `k8s-metadata.conf` shows
/// where the logs go (stderr may be nowhere anyone looks).
fn report_config_problems(map: &mut Map<String, Value>, state: &mut State) {
    if let Some(problems) = state.config_problems.take() {
        map.insert("k8s_metadata_config_error".into(), Value::String(problems));
    }
}

fn json_record(record: &[u8], tag: &[u8], state: &mut State, out: &mut Vec<u8>) {
    if state.config_problems.is_none() {
        if !state
            .prepared
            .as_ref()
            .is_some_and(|(seen, _)| splice::same_bytes(seen, tag))
        {
            let prepared = Prepared::new(&String::from_utf8_lossy(tag), &state.pod, &state.config);
            state.prepared = Some((tag.to_vec(), prepared));
        }
        if let Some((_, prepared)) = &state.prepared
            && splice::splice(record, prepared, &state.config, &mut state.scratch, out)
        {
            return;
        }
    }
    let tag = &*String::from_utf8_lossy(tag);
    // Containers from depth MAX_DEPTH on become the placeholder, as the core writes them.
    let capped;
    let text = if depth::json_may_exceed(record, MAX_DEPTH - 1) {
        capped = depth::cap_depth(record, MAX_DEPTH);
        &capped[..]
    } else {
        record
    };
    let parsed = match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the record is not a JSON object".into()),
        Err(e) => Err(format!("the record is not valid JSON: {e}")),
    };
    let map = enriched(parsed, record, tag, state);
    let _ = serde_json::to_writer(&mut *out, &map);
}

/// The parsed record enriched, or the error marker when it could not be parsed; either way
/// marked with the config problems on the first record. Whether it parsed is what decides, not
/// its keys: a record holding its own `k8s_metadata_error` is enriched like any other.
fn enriched(
    parsed: Result<Map<String, Value>, String>,
    record: &[u8],
    tag: &str,
    state: &mut State,
) -> Map<String, Value> {
    let mut map = match parsed {
        Ok(mut map) => {
            enrich::enrich(&mut map, tag, &state.pod, &state.config);
            map
        }
        Err(reason) => error_record(reason, record),
    };
    report_config_problems(&mut map, state);
    map
}

fn msgpack_record(record: &[u8], tag: &str, state: &mut State, out: &mut Vec<u8>) {
    let parsed = match msgpack::decode(record) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the record is not a msgpack map".into()),
        Err(e) => Err(format!("the record is not valid msgpack: {}", e.0)),
    };
    let value = Value::Object(enriched(parsed, record, tag, state));
    if let Err(msgpack::NeedsZeroByte(shape)) = msgpack::encode_zero_free(&value, out) {
        out.clear();
        let reason = format!(
            "event_format msgpack cannot carry this record ({shape} needs a 0x00 byte, where the host cuts); use event_format json"
        );
        msgpack::marker_record(&reason, &value.to_string(), out);
    }
}

/// The only `unsafe` code: turning the host's pointers into slices, and asking WASI which
/// directories the host preopened.
pub(crate) mod abi {
    use super::{OUTPUT, filter};

    /// The function `filter_wasm` calls (`function_name k8s_metadata`).
    #[unsafe(no_mangle)]
    pub extern "C" fn k8s_metadata(
        tag: *const u8,
        tag_len: u32,
        // The record's time is the application's to set: it only says when to read the clock.
        time_sec: u32,
        _time_nsec: u32,
        record: *const u8,
        record_len: u32,
    ) -> *const u8 {
        let tag = if tag.is_null() {
            &[][..]
        } else {
            // SAFETY: the host copied `tag_len` bytes of tag into module memory at `tag`; they
            // stay valid for the duration of the call.
            unsafe { std::slice::from_raw_parts(tag, tag_len as usize) }
        };
        // The host passes 0 when it could not allocate the copy (it does not check).
        let record = (!record.is_null()).then(|| {
            // SAFETY: as for the tag: `record_len` bytes at `record`, valid during the call.
            unsafe { std::slice::from_raw_parts(record, record_len as usize) }
        });
        let mut output = OUTPUT.take();
        filter(tag, time_sec, record, record_len, &mut output);
        let answer = output.as_ptr();
        // Put back (moving a Vec keeps its buffer where it is): the host reads the answer
        // after this returns, and the next call reuses the buffer.
        OUTPUT.set(output);
        answer
    }

    /// The module's release, as a record: `{"k8s_metadata_version":"0.1.0"}`. Named as the
    /// `function_name` instead of `k8s_metadata` it answers every record with that, which is
    /// how to ask a running Fluent Bit which module it loaded.
    #[unsafe(no_mangle)]
    pub extern "C" fn k8s_metadata_version(
        _tag: *const u8,
        _tag_len: u32,
        _time_sec: u32,
        _time_nsec: u32,
        _record: *const u8,
        _record_len: u32,
    ) -> *const u8 {
        concat!(
            "{\"k8s_metadata_version\":\"",
            env!("CARGO_PKG_VERSION"),
            "\"}\0"
        )
        .as_ptr()
    }

    /// The directories the host preopened for the module (`accessible_paths`), in order.
    #[cfg(target_os = "wasi")]
    pub fn preopened_dirs() -> Vec<std::path::PathBuf> {
        // WASI numbers preopens from fd 3 up, without gaps; the first fd that is not one ends
        // the list (EBADF).
        let mut dirs = Vec::new();
        for fd in 3..64 {
            // SAFETY: fd_prestat_get only writes the returned struct; an unknown fd is EBADF.
            let Ok(prestat) = (unsafe { wasi::fd_prestat_get(fd) }) else {
                break;
            };
            if prestat.tag != wasi::PREOPENTYPE_DIR.raw() {
                continue;
            }
            // SAFETY: the tag says the union holds a directory.
            let len = unsafe { prestat.u.dir.pr_name_len };
            let mut name = vec![0u8; len];
            // SAFETY: `name` has exactly the `len` bytes the host said the name takes.
            if unsafe { wasi::fd_prestat_dir_name(fd, name.as_mut_ptr(), len) }.is_ok() {
                let name = String::from_utf8_lossy(&name);
                dirs.push(std::path::PathBuf::from(name.trim_end_matches('\0')));
            }
        }
        dirs
    }

    /// Outside WASI (the native unit tests) nothing is preopened.
    #[cfg(not(target_os = "wasi"))]
    pub fn preopened_dirs() -> Vec<std::path::PathBuf> {
        Vec::new()
    }
}
