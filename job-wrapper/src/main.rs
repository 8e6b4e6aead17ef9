//! `job-wrapper [options] -- command args...`: see `--help` and the README.

mod agent_tls;
mod capture;
mod cli;
mod files;
mod ready;
mod run;
mod signals;
mod stop;
mod sys;
mod tail_db;

use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

use fanout_contract::job_end::EndRecord;

use crate::capture::{CriFile, Stream};
use crate::cli::{Args, OnTimeout};
use crate::signals::Signals;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("job-wrapper: cannot start: {e}");
            return ExitCode::from(125);
        }
    };
    let code = runtime.block_on(wrap(args));
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(125))
}

async fn wrap(args: Args) -> i32 {
    // Before anything that can wait: as PID 1 an unhandled SIGTERM is ignored.
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("job-wrapper: cannot install signal handlers: {e}");
            return 125;
        }
    };
    let end_token_file = args.end_token_path();
    if let Some(path) = &end_token_file {
        // A token left by an earlier run of this pod would make any look-alike record
        // believable; the new one is written only after the command exits.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "job-wrapper: cannot remove the old end-of-job token {}: {e}",
                path.display()
            ),
        }
    }
    let mut file = match &args.log_file {
        Some(path) => {
            let tail_db = args.tail_db.as_deref().map(tail_db::TailDb::new);
            match CriFile::open(
                path,
                args.rotate_bytes,
                args.rotate_keep,
                args.file_mode,
                tail_db,
            ) {
                Ok(file) => Some(file),
                Err(e) => {
                    eprintln!(
                        "job-wrapper: cannot open {}: {e}; output goes to stdout/stderr only",
                        path.display()
                    );
                    None
                }
            }
        }
        None => None,
    };
    let waited = tokio::select! {
        biased;
        signal = signals.stopping() => Err(signal),
        not_ready = ready::wait(&args.wait_http, &args.wait_file, args.wait_timeout) => Ok(not_ready),
    };
    let outcome = match waited {
        Err(signal) => {
            eprintln!(
                "job-wrapper: stopped by signal {signal} while waiting for the sidecars; not running the command"
            );
            run::Outcome {
                exit_code: 128 + signal,
                signal: Some(signal),
                spawn_error: Some(format!(
                    "stopped by signal {signal} before the command started"
                )),
                ..Default::default()
            }
        }
        Ok(not_ready) if !not_ready.is_empty() && args.on_wait_timeout == OnTimeout::Fail => {
            eprintln!(
                "job-wrapper: not ready after {:?}: {}; not running the command",
                args.wait_timeout,
                not_ready.join(", ")
            );
            run::Outcome {
                exit_code: 125,
                spawn_error: Some(format!("sidecars not ready: {}", not_ready.join(", "))),
                ..Default::default()
            }
        }
        Ok(not_ready) => {
            if !not_ready.is_empty() {
                eprintln!(
                    "job-wrapper: not ready after {:?}: {}; running anyway",
                    args.wait_timeout,
                    not_ready.join(", ")
                );
            }
            let (outcome, returned) = run::run(&args, &mut signals, file.take()).await;
            file = returned;
            outcome
        }
    };
    if let Some(error) = &outcome.spawn_error {
        eprintln!("job-wrapper: {error}");
    }
    // Made now that the command has exited: nothing it printed can carry it.
    let token = end_token_file.as_ref().and_then(|path| {
        let written = files::new_token()
            .and_then(|token| files::write_whole(path, token.as_bytes(), args.file_mode).map(|()| token));
        match written {
            Ok(token) => Some(token),
            Err(e) => {
                eprintln!(
                    "job-wrapper: cannot write the end-of-job token {}: {e}; Fluent Bit will not stop on the end-of-job record",
                    path.display()
                );
                None
            }
        }
    });
    let end = EndRecord {
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        duration_seconds: outcome.duration.as_secs_f64(),
        stdout_lines: outcome.stdout_lines,
        stderr_lines: outcome.stderr_lines,
        error: outcome.spawn_error.as_deref(),
        token: token.as_deref(),
    }
    .to_json();
    // The end-of-job record, last in the file: the fanout output stops Fluent Bit once it has
    // delivered it (`exit_on_job_end`). tail reads the generations side by side, so it goes in
    // only once every earlier one has been read: else Fluent Bit could stop with their ends
    // unread.
    let mut unread_at_end = Vec::new();
    if let Some(f) = &mut file {
        f.sync();
        unread_at_end = wait_until_read(f, &args, &mut signals).await;
        if let Err(e) = f.write_line(Stream::Stdout, end.as_bytes(), false) {
            eprintln!("job-wrapper: cannot write the end-of-job record: {e}");
        }
        f.sync();
    }
    let steps = stop::stop_all(&args, &mut signals).await;
    for step in &steps {
        if !step.ok {
            eprintln!(
                "job-wrapper: stopping {} ({}) failed: {}",
                step.sidecar, step.target, step.detail
            );
        }
    }
    if let Some(path) = &args.tombstone {
        // The end-of-job record, and what only the tombstone needs.
        let mut summary: serde_json::Value = serde_json::from_str(&end).unwrap_or_default();
        summary["rotations"] = json!(outcome.rotations);
        summary["unread_at_end"] = unread_at_end
            .iter()
            .map(|(path, bytes)| json!({"file": path.display().to_string(), "bytes": bytes}))
            .collect();
        summary["stop"] = steps.iter().map(stop::StepResult::to_json).collect();
        if let Err(e) = files::write_whole(path, summary.to_string().as_bytes(), args.file_mode) {
            eprintln!(
                "job-wrapper: cannot write the tombstone {}: {e}",
                path.display()
            );
        }
    }
    outcome.exit_code
}

/// Waits until tail's DB shows every earlier log file read to its end, up to --drain-timeout
/// (a SIGTERM cuts it short). Returns what was still unread.
async fn wait_until_read(
    file: &CriFile,
    args: &Args,
    signals: &mut Signals,
) -> Vec<(std::path::PathBuf, u64)> {
    if args.tail_db.is_none() {
        return Vec::new();
    }
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    loop {
        // The database may not exist yet (Fluent Bit not started) or be busy: ask again
        // until the deadline.
        let unread = file.unread_generations();
        if unread.as_ref().is_ok_and(Vec::is_empty) {
            return Vec::new();
        }
        if tokio::time::Instant::now() >= deadline {
            match &unread {
                Ok(unread) => {
                    let total: u64 = unread.iter().map(|(_, bytes)| bytes).sum();
                    eprintln!(
                        "job-wrapper: after {:?} Fluent Bit's tail has still not read {total} bytes of {} earlier log files (first: {}); writing the end-of-job record anyway",
                        args.drain_timeout,
                        unread.len(),
                        unread[0].0.display()
                    );
                }
                Err(e) => eprintln!(
                    "job-wrapper: after {:?} still cannot tell whether Fluent Bit has read the earlier log files ({e}); writing the end-of-job record anyway",
                    args.drain_timeout
                ),
            }
            return unread.unwrap_or_default();
        }
        tokio::select! {
            biased;
            signal = signals.stopping() => {
                eprintln!("job-wrapper: signal {signal} while waiting for Fluent Bit to read the log files");
                return unread.unwrap_or_default();
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}
