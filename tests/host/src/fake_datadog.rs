//! A stand-in for the Datadog Logs intake on 127.0.0.1, for tests and the demo.
//!
//! It checks what the real intake checks — method and path, `DD-API-KEY` (401 without one, 403
//! for a key it does not know: [`TEST_API_KEYS`]), JSON content type, gzip or zstd when
//! announced, a JSON array of at most 1000 entries and 5 MB uncompressed (413 otherwise) — and
//! truncates a log over 1 MB as the intake does (still 2xx: [`Received::truncated`]). It records
//! every request, and answers from a script (202 when the script is empty), so tests can make
//! it fail on schedule. Like the real intake refusing a malformed
//! log, it answers 400 to any request holding an entry whose message is [`REFUSED_MESSAGE`].

use std::io::Read;
use std::sync::Mutex;

use serde_json::Value;

use crate::scripted::{Answer, Incoming, Script, ScriptedServer};

pub const MAX_ENTRIES: usize = 1000;
pub const MAX_UNCOMPRESSED: usize = 5_000_000;
/// A log larger than this is accepted and cut to it.
pub const MAX_LOG_BYTES: usize = 1_000_000;

/// The API keys the repository's tests and tools use: any other is an invalid key (403).
pub const TEST_API_KEYS: &[&str] = &[
    "k",
    "dd-test-key",
    "dd-test-key-4f9a2c7e1b",
    "dd-key-for-tests",
    "dd-api-key-from-a-secret",
    "dd-api-key-from-secrets-manager",
    "dry-run-key",
    "demo-api-key",
    "dd-soak-key",
    "metrics-test-key",
];

/// A message the stand-in refuses wherever it appears: HTTP 400 for the whole request.
pub const REFUSED_MESSAGE: &str = "the fake intake refuses this log";

/// A scripted answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// The status with `Retry-After: <seconds>`.
    RetryAfter(u16, u32),
    /// A redirect (301, 302, 307, 308) with this `Location`.
    Redirect(u16, String),
    /// 415 Unsupported Media Type for a body with this `Content-Encoding`; otherwise accepted
    /// (an intake that does not take zstd).
    RefuseEncoding(String),
    /// The status with every request header echoed in the body (an intake or proxy that
    /// reflects `Authorization` in its error page).
    EchoHeaders(u16),
}

/// One request as the intake saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    /// Uncompressed body length.
    pub body_len: usize,
    pub entries: Vec<Value>,
    pub status: u16,
    /// Why the request broke the intake's rules, if it did.
    pub violation: Option<String>,
    /// Logs over [`MAX_LOG_BYTES`] the intake cut (their `message` shortened to fit).
    pub truncated: usize,
    /// When the request had arrived in full.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::scripted::header(&self.headers, name)
    }
}

/// The Datadog intake stand-in; dereferences to its [`ScriptedServer`].
pub struct FakeDatadog(ScriptedServer<Reply, Received>);

impl std::ops::Deref for FakeDatadog {
    type Target = ScriptedServer<Reply, Received>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl FakeDatadog {
    pub fn start() -> FakeDatadog {
        FakeDatadog(ScriptedServer::start(handle))
    }

    /// Answers every request after `delay`, on a thread of its own (a remote intake).
    pub fn start_with_latency(delay: std::time::Duration) -> FakeDatadog {
        FakeDatadog(ScriptedServer::start_concurrent(handle, delay))
    }

    /// Entries of every request the intake accepted (2xx), in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| r.entries)
            .collect()
    }
}

fn handle(request: Incoming, state: &Mutex<Script<Reply, Received>>) -> Answer {
    let header = |name: &str| request.header(name).map(str::to_owned);
    let raw = &request.body[..];
    let mut violation = None;
    let mut body = Vec::new();
    match header("Content-Encoding").as_deref() {
        Some("gzip") => {
            if flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut body)
                .is_err()
            {
                violation = Some("Content-Encoding gzip but the body is not gzip".to_string());
            }
        }
        Some("zstd") => match zstd::stream::decode_all(raw) {
            Ok(decoded) => body = decoded,
            Err(e) => {
                violation = Some(format!(
                    "Content-Encoding zstd but the body is not zstd: {e}"
                ))
            }
        },
        None => body = raw.to_vec(),
        Some(other) => {
            violation = Some(format!(
                "Content-Encoding {other} is not one the intake takes"
            ))
        }
    }
    let entries: Vec<Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            violation.get_or_insert("the body is not a JSON array".into());
            Vec::new()
        }
        Err(e) => {
            violation.get_or_insert(format!("the body is not JSON: {e}"));
            Vec::new()
        }
    };
    let mut status = if request.method != "POST" || request.target != "/api/v2/logs" {
        violation.get_or_insert(format!("{} {}", request.method, request.target));
        404
    } else if header("DD-API-KEY").is_none_or(|k| k.is_empty()) {
        violation.get_or_insert("no DD-API-KEY".into());
        401
    } else if header("DD-API-KEY").is_none_or(|k| !TEST_API_KEYS.contains(&k.as_str())) {
        violation.get_or_insert("an invalid DD-API-KEY".into());
        403
    } else if header("Content-Type").as_deref() != Some("application/json") {
        violation.get_or_insert("Content-Type is not application/json".into());
        400
    } else if violation.is_some() {
        400
    } else if entries.iter().any(|e| e["message"] == REFUSED_MESSAGE) {
        violation = Some("a refused log".into());
        400
    } else if entries.len() > MAX_ENTRIES || body.len() > MAX_UNCOMPRESSED {
        violation = Some(format!(
            "{} entries, {} bytes uncompressed",
            entries.len(),
            body.len()
        ));
        413
    } else {
        202
    };
    let mut retry_after = None;
    let mut location = None;
    let mut echo = None;
    {
        let mut state = state.lock().unwrap();
        if status == 202 {
            match state.next_reply() {
                Some(Reply::Status(s)) => status = s,
                Some(Reply::RetryAfter(s, secs)) => {
                    status = s;
                    retry_after = Some(secs);
                }
                Some(Reply::Redirect(s, to)) => {
                    status = s;
                    location = Some(to);
                }
                Some(Reply::RefuseEncoding(refused))
                    if header("Content-Encoding").as_deref() == Some(refused.as_str()) =>
                {
                    status = 415;
                }
                Some(Reply::RefuseEncoding(_)) => {}
                Some(Reply::EchoHeaders(s)) => {
                    status = s;
                    echo = Some(
                        request
                            .headers
                            .iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                }
                None => {}
            }
        }
        let mut truncated = 0;
        let entries = if (200..300).contains(&status) {
            entries
                .into_iter()
                .map(|entry| truncate_log(entry, &mut truncated))
                .collect()
        } else {
            entries
        };
        state.seen.push(Received {
            truncated,
            headers: request.headers.clone(),
            body_len: body.len(),
            entries,
            status,
            violation,
            at: std::time::Instant::now(),
        });
    }
    let mut headers = Vec::new();
    if let Some(secs) = retry_after {
        headers.push(("Retry-After", secs.to_string()));
    }
    if let Some(to) = location {
        headers.push(("Location", to));
    }
    Answer {
        status,
        headers,
        body: if let Some(echo) = echo {
            format!("you sent:\n{echo}")
        } else if status < 300 {
            "{}".to_owned()
        } else {
            r#"{"errors":["scripted"]}"#.to_owned()
        },
    }
}

/// A log as the intake keeps it: over [`MAX_LOG_BYTES`], its `message` cut so it fits.
fn truncate_log(mut entry: Value, truncated: &mut usize) -> Value {
    let size = entry.to_string().len();
    if size <= MAX_LOG_BYTES {
        return entry;
    }
    *truncated += 1;
    if let Some(message) = entry
        .get_mut("message")
        .and_then(|m| m.as_str().map(str::to_owned))
    {
        let keep = message.len().saturating_sub(size - MAX_LOG_BYTES);
        let mut cut = keep;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        entry["message"] = Value::String(message[..cut].to_owned());
    }
    entry
}
