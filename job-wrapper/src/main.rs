//! `job-wrapper [options] -- command args...`: see `--help` and the README.

mod capture;
mod cli;
mod ready;
mod run;
mod stop;
mod sys;

use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

use crate::capture::{CriFile, Stream};
use crate::cli::{Args, OnTimeout};

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
    let mut file = match &args.log_file {
        Some(path) => match CriFile::open(path, args.rotate_bytes, args.rotate_keep) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!(
                    "job-wrapper: cannot open {}: {e}; output goes to stdout/stderr only",
                    path.display()
                );
                None
            }
        },
        None => None,
    };
    let not_ready = ready::wait(&args.wait_http, &args.wait_file, args.wait_timeout).await;
    let outcome = if !not_ready.is_empty() && args.on_wait_timeout == OnTimeout::Fail {
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
    } else {
        if !not_ready.is_empty() {
            eprintln!(
                "job-wrapper: not ready after {:?}: {}; running anyway",
                args.wait_timeout,
                not_ready.join(", ")
            );
        }
        let (outcome, returned) = run::run(&args, file.take()).await;
        file = returned;
        outcome
    };
    if let Some(error) = &outcome.spawn_error {
        eprintln!("job-wrapper: {error}");
    }
    let end = json!({
        "job_wrapper": "end",
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "duration_seconds": outcome.duration.as_secs_f64(),
        "stdout_lines": outcome.stdout_lines,
        "stderr_lines": outcome.stderr_lines,
        "error": outcome.spawn_error,
    });
    // The end-of-job record, last in the file: the fanout output stops Fluent Bit once it has
    // delivered it (`exit_on_job_end`).
    if let Some(f) = &mut file {
        if let Err(e) = f.write_line(Stream::Stdout, end.to_string().as_bytes(), false) {
            eprintln!("job-wrapper: cannot write the end-of-job record: {e}");
        }
        f.sync();
    }
    let steps = stop::stop_all(&args).await;
    for step in &steps {
        if !step.ok {
            eprintln!(
                "job-wrapper: stopping {} ({}) failed: {}",
                step.sidecar, step.target, step.detail
            );
        }
    }
    if let Some(path) = &args.tombstone {
        let mut summary = end.clone();
        summary["rotations"] = json!(outcome.rotations);
        summary["stop"] = steps.iter().map(stop::StepResult::to_json).collect();
        if let Err(e) = std::fs::write(path, summary.to_string()) {
            eprintln!(
                "job-wrapper: cannot write the tombstone {}: {e}",
                path.display()
            );
        }
    }
    outcome.exit_code
}
