//! Running the command: one loop reads both pipes, forwards signals, and notices the exit.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::capture::{CriFile, LineSplitter, Stream};
use crate::cli::Args;
use crate::signals::Signals;
use crate::sys;

/// How long to keep reading after the command exited: a background process it left may hold
/// the pipes open forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The pipes' kernel buffer and the wrapper's read buffer: a megabyte (Linux's default limit
/// for an unprivileged pipe) so a chatty command costs a wake-up per megabyte, not per 64 KiB.
const PIPE_BYTES: usize = 1 << 20;

/// What happened to the command.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The wrapper's exit code: the command's, or 128+signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub duration: Duration,
    pub stdout_lines: u64,
    pub stderr_lines: u64,
    pub rotations: u64,
    /// Set when the command could not be started.
    pub spawn_error: Option<String>,
}

struct Sink {
    file: Option<CriFile>,
    failed: bool,
    splitters: [LineSplitter; 2],
    lines: [u64; 2],
    max_line: usize,
}

impl Sink {
    fn take(&mut self, stream: Stream, data: &[u8]) {
        // Pass through first: `kubectl logs` must see the output even if the file fails.
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(data),
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
        // Lines read together arrived together: one timestamp for all of them.
        let time = CriFile::timestamp();
        let i = stream as usize;
        let (splitter, lines, file, failed) = (
            &mut self.splitters[i],
            &mut self.lines[i],
            &mut self.file,
            &mut self.failed,
        );
        splitter.feed(data, self.max_line, &mut |text, partial| {
            if !partial {
                *lines += 1;
            }
            write(file, failed, &time, stream, text, partial);
        });
        flush(file, failed);
    }

    fn finish(&mut self) {
        let _ = std::io::stdout().flush();
        let time = CriFile::timestamp();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let i = stream as usize;
            let (splitter, lines, file, failed) = (
                &mut self.splitters[i],
                &mut self.lines[i],
                &mut self.file,
                &mut self.failed,
            );
            splitter.finish(&mut |text, partial| {
                *lines += 1;
                write(file, failed, &time, stream, text, partial);
            });
        }
        flush(&mut self.file, &mut self.failed);
    }
}

fn write(
    file: &mut Option<CriFile>,
    failed: &mut bool,
    time: &str,
    stream: Stream,
    text: &[u8],
    partial: bool,
) {
    if let Some(f) = file
        && let Err(e) = f.write_line_at(time, stream, text, partial)
    {
        report(Err(e), failed);
    }
}

fn flush(file: &mut Option<CriFile>, failed: &mut bool) {
    if let Some(f) = file {
        report(f.flush(), failed);
    }
}

/// Says once when the file stops taking lines, and once when it takes them again; the output
/// goes to stdout/stderr throughout.
fn report(result: std::io::Result<()>, failed: &mut bool) {
    match result {
        Err(e) if !*failed => {
            eprintln!(
                "job-wrapper: cannot write the log file: {e}; lines wait in memory (up to {} MiB) and output still goes to stdout/stderr",
                crate::capture::MAX_PENDING_BYTES >> 20
            );
            *failed = true;
        }
        Ok(()) if *failed => {
            eprintln!("job-wrapper: the log file is writable again");
            *failed = false;
        }
        _ => {}
    }
}

pub async fn run(
    args: &Args,
    signals: &mut Signals,
    file: Option<CriFile>,
) -> (Outcome, Option<CriFile>) {
    let started = Instant::now();
    let mut outcome = Outcome::default();
    let mut command = if args.shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(args.command.join(" "));
        c
    } else {
        let mut c = Command::new(&args.command[0]);
        c.args(&args.command[1..]);
        c
    };
    // Its own process group, so forwarded signals reach everything the command started.
    command
        .process_group(0)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            outcome.exit_code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => 125,
            };
            outcome.spawn_error = Some(format!("cannot run {}: {e}", args.command[0]));
            return (outcome, file);
        }
    };
    // The command leads its own group: its pid is the group's id.
    let (Some(pgid), Some(mut stdout), Some(mut stderr)) =
        (child.id(), child.stdout.take(), child.stderr.take())
    else {
        outcome.exit_code = 125;
        return (outcome, file);
    };
    let mut sink = Sink {
        file,
        failed: false,
        splitters: Default::default(),
        lines: [0, 0],
        max_line: args.max_line_bytes,
    };
    {
        use std::os::fd::AsRawFd;
        sys::grow_pipe(stdout.as_raw_fd(), PIPE_BYTES);
        sys::grow_pipe(stderr.as_raw_fd(), PIPE_BYTES);
    }
    let (mut out_buf, mut err_buf) = (vec![0u8; PIPE_BYTES], vec![0u8; PIPE_BYTES]);
    let (mut out_open, mut err_open) = (true, true);
    let mut status = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut stop_reading_at: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        if status.is_some() && !out_open && !err_open {
            break;
        }
        tokio::select! {
            // Signals first: a command flooding its pipes must not delay a SIGTERM. Then a
            // fixed order when both pipes are ready at once: stdout, then stderr.
            biased;
            signal = signals.next() => {
                sys::signal_group(pgid, signal);
                if signal != libc::SIGHUP {
                    kill_at.get_or_insert(tokio::time::Instant::now() + args.term_grace);
                }
            }
            read = stdout.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => sink.take(Stream::Stdout, &out_buf[..n]),
            },
            read = stderr.read(&mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => sink.take(Stream::Stderr, &err_buf[..n]),
            },
            exited = child.wait(), if status.is_none() => {
                status = exited.ok();
                stop_reading_at = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() && status.is_none() => {
                eprintln!("job-wrapper: the command did not stop within {:?} of the signal; killing it", args.term_grace);
                sys::signal_group(pgid, libc::SIGKILL);
                kill_at = None;
            }
            _ = tokio::time::sleep_until(stop_reading_at.unwrap_or(far)), if stop_reading_at.is_some() => break,
        }
    }
    sink.finish();
    sys::reap_orphans();
    outcome.duration = started.elapsed();
    outcome.stdout_lines = sink.lines[0];
    outcome.stderr_lines = sink.lines[1];
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => outcome.exit_code = code,
            (None, Some(sig)) => {
                outcome.signal = Some(sig);
                outcome.exit_code = 128 + sig;
            }
            _ => outcome.exit_code = 125,
        },
        None => outcome.exit_code = 125,
    }
    if let Some(f) = &sink.file {
        outcome.rotations = f.rotations;
    }
    (outcome, sink.file)
}
