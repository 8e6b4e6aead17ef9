//! job-wrapper's end-of-job record: one line of JSON the wrapper appends to the log file once the
//! command has exited, which the plugin (`exit_on_job_end`) recognises — in the record's message
//! as the wrapper wrote it, or merged into the record by a filter — and believes only with the
//! run's token.

use crate::json::{write_float, write_int, write_str};

/// The record's first member, always written first: a message starting with [`PREFIX`] is a
/// claim to be the end-of-job record.
pub const KEY: &str = "job_wrapper";
pub const VALUE: &str = "end";
/// How the record's JSON starts.
pub const PREFIX: &str = "{\"job_wrapper\":\"end\"";
/// The member holding the run's token.
pub const TOKEN_KEY: &str = "token";
/// The token: 32 random bytes, hex.
pub const TOKEN_LEN: usize = 64;

/// What the record says about the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndRecord<'a> {
    /// The wrapper's exit code: the command's, or 128+signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub duration_seconds: f64,
    pub stdout_lines: u64,
    pub stderr_lines: u64,
    /// Why the command could not be started, if it could not.
    pub error: Option<&'a str>,
    /// The run's token (absent when the wrapper could not write its token file).
    pub token: Option<&'a str>,
}

impl EndRecord<'_> {
    /// The record as one line of JSON, starting with [`PREFIX`].
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(PREFIX.as_bytes());
        out.extend_from_slice(b",\"exit_code\":");
        write_int(self.exit_code, &mut out);
        out.extend_from_slice(b",\"signal\":");
        match self.signal {
            Some(signal) => write_int(signal, &mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"duration_seconds\":");
        write_float(self.duration_seconds, &mut out);
        out.extend_from_slice(b",\"stdout_lines\":");
        write_int(self.stdout_lines, &mut out);
        out.extend_from_slice(b",\"stderr_lines\":");
        write_int(self.stderr_lines, &mut out);
        for (key, value) in [("error", self.error), (TOKEN_KEY, self.token)] {
            out.push(b',');
            write_str(key, &mut out);
            out.push(b':');
            match value {
                Some(text) => write_str(text, &mut out),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
        // Only JSON text was written, from `str`s.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Whether `token` has the shape of a token the wrapper writes (a token of any other shape was
/// written by someone else and is not believed).
pub fn is_token(token: &str) -> bool {
    token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_record_is_json_starting_with_the_prefix() {
        let token = "ab".repeat(32);
        let record = EndRecord {
            exit_code: 3,
            signal: None,
            duration_seconds: 1.5,
            stdout_lines: 10,
            stderr_lines: 2,
            error: Some("no such file: \"x\"\n"),
            token: Some(&token),
        }
        .to_json();
        assert!(record.starts_with(PREFIX), "{record}");
        let parsed: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(
            parsed,
            json!({
                "job_wrapper": "end", "exit_code": 3, "signal": null, "duration_seconds": 1.5,
                "stdout_lines": 10, "stderr_lines": 2, "error": "no such file: \"x\"\n",
                "token": token,
            })
        );
        assert!(is_token(&token));
        assert!(!is_token("ab") && !is_token(&"zz".repeat(32)));
        let bare = EndRecord::default().to_json();
        let parsed: Value = serde_json::from_str(&bare).unwrap();
        assert_eq!(parsed["token"], Value::Null);
        assert_eq!(parsed[KEY], VALUE);
    }
}
