//! Command line: every option is a flag or a `JOB_WRAPPER_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Runs a Kubernetes Job's command: waits for sidecars, keeps the command's output (passed
/// through, and written to a CRI-format file that Fluent Bit tails, rotated by size), exits
/// with the command's exact code, and at the end drains and stops the sidecars so the Job
/// completes.
///
/// Exit status: the command's own code; 128+N when it was killed by signal N; 125 when the
/// wrapper could not run it (sidecars not ready with --on-wait-timeout fail); 2 for a usage
/// error; 126 when the command cannot be executed; 127 when it is not found.
#[derive(Debug, Parser)]
#[command(name = "job-wrapper", version, max_term_width = 100)]
pub struct Args {
    /// Run COMMAND through `/bin/sh -c` (its words joined by spaces) instead of directly.
    #[arg(long, env = "JOB_WRAPPER_SHELL", help_heading = "Run")]
    pub shell: bool,

    /// After forwarding SIGTERM or SIGINT, SIGKILL the command if it is still running this
    /// long after.
    #[arg(long, env = "JOB_WRAPPER_TERM_GRACE", default_value = "30s", value_parser = duration, help_heading = "Run")]
    pub term_grace: Duration,

    /// Also write the command's output to this file in CRI format
    /// (`<RFC3339Nano> <stdout|stderr> <P|F> <text>`), for Fluent Bit's `cri` parser.
    #[arg(long, env = "JOB_WRAPPER_LOG_FILE", help_heading = "Capture")]
    pub log_file: Option<PathBuf>,

    /// Split longer lines into `P` parts ending with an `F` part (containerd uses 16 KiB).
    #[arg(long, env = "JOB_WRAPPER_MAX_LINE_BYTES", default_value_t = 16 * 1024, help_heading = "Capture")]
    pub max_line_bytes: usize,

    /// Start a new file when the current one reaches this many bytes (0: never): `app.log`,
    /// then `app.1.log`, `app.2.log`, … No file is renamed, so one `*.log` glob in tail's
    /// `Path` finds every generation whenever it scans, and `Rotate_Wait` never applies.
    #[arg(long, env = "JOB_WRAPPER_ROTATE_BYTES", default_value_t = 10 * 1024 * 1024, help_heading = "Capture")]
    pub rotate_bytes: u64,

    /// Permissions of the files the wrapper creates (the log file and its rotations, the
    /// end-of-job token, the tombstone), in octal. With the pod's `fsGroup`, the Fluent Bit
    /// sidecar reads them through the group.
    #[arg(long, env = "JOB_WRAPPER_FILE_MODE", default_value = "0640", value_parser = file_mode, help_heading = "Capture")]
    pub file_mode: u32,

    /// Earlier files to keep; older ones are deleted once Fluent Bit's tail has read them to
    /// their end (see --tail-db), never before.
    #[arg(
        long,
        env = "JOB_WRAPPER_ROTATE_KEEP",
        default_value_t = 3,
        help_heading = "Capture"
    )]
    pub rotate_keep: u32,

    /// Fluent Bit tail's `DB` file (e.g. /var/log/app/fluent-bit-tail.db; `DB.locking` must be
    /// off so it can be read). With it, an earlier file is deleted only once tail has read it
    /// to its end, and the end-of-job record is written only once every earlier file has
    /// been read (up to --drain-timeout). Without it, no file is deleted while the wrapper
    /// runs.
    #[arg(long, env = "JOB_WRAPPER_TAIL_DB", help_heading = "Capture")]
    pub tail_db: Option<PathBuf>,

    /// Before starting, wait until this URL answers 2xx (repeatable; e.g. Fluent Bit's
    /// http://127.0.0.1:2020/api/v1/health).
    #[arg(
        long,
        env = "JOB_WRAPPER_WAIT_HTTP",
        value_delimiter = ',',
        help_heading = "Readiness"
    )]
    pub wait_http: Vec<String>,

    /// Before starting, wait until this file exists (repeatable).
    #[arg(
        long,
        env = "JOB_WRAPPER_WAIT_FILE",
        value_delimiter = ',',
        help_heading = "Readiness"
    )]
    pub wait_file: Vec<PathBuf>,

    /// How long to wait for everything in --wait-http and --wait-file.
    #[arg(long, env = "JOB_WRAPPER_WAIT_TIMEOUT", default_value = "60s", value_parser = duration, help_heading = "Readiness")]
    pub wait_timeout: Duration,

    /// What to do when the sidecars are not ready in time: `fail` (exit 125 without running
    /// the command, still stopping the sidecars) or `continue`.
    #[arg(long, env = "JOB_WRAPPER_ON_WAIT_TIMEOUT", value_enum, default_value_t = OnTimeout::Fail, help_heading = "Readiness")]
    pub on_wait_timeout: OnTimeout,

    /// Fluent Bit's HTTP server (e.g. http://127.0.0.1:2020). After the end-of-job record is
    /// written, wait until Fluent Bit has exited: the fanout output with `exit_on_job_end on`
    /// delivers everything up to that record, then stops Fluent Bit.
    #[arg(long, env = "JOB_WRAPPER_FLUENT_BIT", help_heading = "End of job")]
    pub fluent_bit: Option<String>,

    /// Where to write the end-of-job token: a random value made after the command exited,
    /// carried by the end-of-job record, which the fanout output believes only with it
    /// (`job_end_token_file`), so no line the command prints can end the Job.
    /// Default: `job-end.token` beside --log-file.
    #[arg(long, env = "JOB_WRAPPER_END_TOKEN_FILE", help_heading = "End of job")]
    pub end_token_file: Option<PathBuf>,

    /// How long to wait for Fluent Bit to read the earlier log files (--tail-db), and again
    /// for it to drain and exit.
    #[arg(long, env = "JOB_WRAPPER_DRAIN_TIMEOUT", default_value = "60s", value_parser = duration, help_heading = "End of job")]
    pub drain_timeout: Duration,

    /// Datadog Agent IPC API (e.g. https://localhost:5001): `POST /agent/stop` with the auth
    /// token. With the agent's `ipc_cert.pem` beside the token (7.62+) only that certificate is
    /// accepted (and it is the client certificate); without it, a self-signed certificate is
    /// accepted on loopback addresses only.
    #[arg(long, env = "JOB_WRAPPER_DATADOG_AGENT", help_heading = "End of job")]
    pub datadog_agent: Option<String>,

    /// The Datadog Agent's auth token file (share it through an emptyDir with
    /// DD_AUTH_TOKEN_FILE_PATH).
    #[arg(
        long,
        env = "JOB_WRAPPER_DATADOG_AUTH_TOKEN",
        default_value = "/etc/datadog-agent/auth_token",
        help_heading = "End of job"
    )]
    pub datadog_auth_token: PathBuf,

    /// Wait this long before stopping the Datadog Agent, so it reads the end of the log file.
    #[arg(long, env = "JOB_WRAPPER_DATADOG_CATCH_UP", default_value = "5s", value_parser = duration, help_heading = "End of job")]
    pub datadog_catch_up: Duration,

    /// Fluentd RPC endpoint (e.g. http://127.0.0.1:24444): flushBuffersAndKillWorkers.
    #[arg(long, env = "JOB_WRAPPER_FLUENTD_RPC", help_heading = "End of job")]
    pub fluentd_rpc: Option<String>,

    /// Envoy admin (e.g. http://127.0.0.1:15000): POST /quitquitquit.
    #[arg(long, env = "JOB_WRAPPER_ENVOY_ADMIN", help_heading = "End of job")]
    pub envoy_admin: Option<String>,

    /// Istio pilot-agent (e.g. http://127.0.0.1:15020): POST /quitquitquit.
    #[arg(long, env = "JOB_WRAPPER_ISTIO_AGENT", help_heading = "End of job")]
    pub istio_agent: Option<String>,

    /// Linkerd proxy admin (e.g. http://127.0.0.1:4191): POST /shutdown.
    #[arg(long, env = "JOB_WRAPPER_LINKERD_ADMIN", help_heading = "End of job")]
    pub linkerd_admin: Option<String>,

    /// Any other URL to POST to at the end (repeatable).
    #[arg(
        long,
        env = "JOB_WRAPPER_STOP_URL",
        value_delimiter = ',',
        help_heading = "End of job"
    )]
    pub stop_url: Vec<String>,

    /// Write a JSON summary (exit code, duration, lines, each stop step's result) here at the
    /// end; sidecars without a stop API can watch for it.
    #[arg(long, env = "JOB_WRAPPER_TOMBSTONE", help_heading = "End of job")]
    pub tombstone: Option<PathBuf>,

    /// Time limit of each stop request.
    #[arg(long, env = "JOB_WRAPPER_STOP_TIMEOUT", default_value = "10s", value_parser = duration, help_heading = "End of job")]
    pub stop_timeout: Duration,

    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnTimeout {
    Fail,
    Continue,
}

impl Args {
    /// `--end-token-file`, or its default beside the log file.
    pub fn end_token_path(&self) -> Option<PathBuf> {
        self.end_token_file.clone().or_else(|| {
            self.log_file
                .as_ref()
                .map(|log| log.with_file_name("job-end.token"))
        })
    }
}

/// Octal permissions such as `0640` or `644`, at most `0777`.
pub fn file_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("'{text}' is not an octal file mode such as 0640"))
}

/// `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds (`fanout_contract::duration`, the
/// plugin's spelling too).
pub fn duration(text: &str) -> Result<Duration, String> {
    fanout_contract::duration::parse(text)
        .ok_or_else(|| format!("'{}' is not a duration such as 30s, 500ms, 2m", text.trim()))
}
