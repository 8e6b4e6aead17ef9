//! The command's output as CRI-format lines in a file, rotated by size.
//!
//! Each line is `<RFC3339Nano> <stdout|stderr> <P|F> <text>`: what containerd writes and
//! Fluent Bit's `cri` parser (and `multiline.parser cri`) reads. A line longer than the split
//! size is written as `P` parts followed by an `F` part. Rotation renames the file to
//! `<file>.1` (shifting older generations up, dropping the oldest) and at once creates a new
//! file, so Fluent Bit's tail, which keeps the renamed file open and notices the new inode at
//! the same path, loses nothing. Rotated names end in `.N` and do not match a `*.log` glob.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns a byte stream into lines, keeping an unfinished line until it ends or grows past
/// `max_line` bytes. `emit(text, partial)` receives each piece.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn feed(&mut self, mut data: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8], bool)) {
        let max_line = max_line.max(1);
        while let Some(newline) = data.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&data[..newline]);
            data = &data[newline + 1..];
            let line = std::mem::take(&mut self.pending);
            let mut chunks = line.chunks(max_line).peekable();
            if chunks.peek().is_none() {
                emit(b"", false);
            }
            while let Some(chunk) = chunks.next() {
                emit(chunk, chunks.peek().is_some());
            }
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() > max_line {
            let rest = self.pending.split_off(max_line);
            let part = std::mem::replace(&mut self.pending, rest);
            emit(&part, true);
        }
    }

    /// Ends an unfinished last line (the command exited without a final newline).
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            emit(&line, false);
        }
    }
}

/// Bytes of complete lines held while the file cannot take them (disk full, file not
/// re-created after a rotation). Beyond it new lines are counted and left out of the file
/// (they still went to stdout/stderr), and a marker line says how many once writing resumes.
pub const MAX_PENDING_BYTES: usize = 8 << 20;

/// The CRI log file and its rotation.
///
/// Lines are appended to `pending` whole and written in order; a write that stops part-way
/// (ENOSPC) leaves the rest of the line at the front of `pending`, written first when space
/// comes back — so a line is never cut short, merged with the next, or left half-written
/// without its end. Nothing is ever truncated (a tail reading the file would see it shrink).
pub struct CriFile {
    path: PathBuf,
    /// `None` after a rotation whose new file could not be created yet: retried on each flush.
    file: Option<File>,
    pending: Vec<u8>,
    /// Lines left out because `pending` was full, and the last write error.
    dropped: u64,
    last_error: Option<String>,
    size: u64,
    rotate_bytes: u64,
    keep: u32,
    /// Permissions of the files created.
    mode: u32,
    pub rotations: u64,
}

impl CriFile {
    pub fn open(path: &Path, rotate_bytes: u64, keep: u32, mode: u32) -> std::io::Result<CriFile> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(mode)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(CriFile {
            path: path.to_owned(),
            file: Some(file),
            pending: Vec::with_capacity(256 * 1024),
            dropped: 0,
            last_error: None,
            size,
            rotate_bytes,
            keep,
            mode,
            rotations: 0,
        })
    }

    /// The CRI timestamp for now: RFC 3339, UTC, nanoseconds.
    pub fn timestamp() -> String {
        chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string()
    }

    /// Writes one CRI line stamped now, then flushes (for the end-of-job record).
    pub fn write_line(
        &mut self,
        stream: Stream,
        text: &[u8],
        partial: bool,
    ) -> std::io::Result<()> {
        self.write_line_at(&Self::timestamp(), stream, text, partial)?;
        self.flush()
    }

    /// Queues one CRI line with the given timestamp (lines read together share it). Call
    /// [`CriFile::flush`] after a batch of lines.
    pub fn write_line_at(
        &mut self,
        time: &str,
        stream: Stream,
        text: &[u8],
        partial: bool,
    ) -> std::io::Result<()> {
        let tag: &[u8] = if partial { b" P " } else { b" F " };
        let len = time.len() + 1 + stream.name().len() + tag.len() + text.len() + 1;
        if self.pending.len() + len > MAX_PENDING_BYTES {
            self.dropped += 1;
            return Err(std::io::Error::other(format!(
                "{} bytes wait to be written ({}): line left out of the file",
                self.pending.len(),
                self.last_error
                    .as_deref()
                    .unwrap_or("the file is not writable")
            )));
        }
        self.pending.extend_from_slice(time.as_bytes());
        self.pending.push(b' ');
        self.pending.extend_from_slice(stream.name().as_bytes());
        self.pending.extend_from_slice(tag);
        self.pending.extend_from_slice(text);
        self.pending.push(b'\n');
        Ok(())
    }

    /// Writes what is pending, in order, then rotates if the file reached its size. On an
    /// error the unwritten rest stays pending for the next call.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let result = self.write_pending();
        if let Err(e) = &result {
            self.last_error = Some(e.to_string());
            return result;
        }
        if self.dropped > 0 {
            let marker = format!(
                "job-wrapper: {} lines were left out of this file ({}); they still went to the container's stdout/stderr",
                self.dropped,
                self.last_error.take().unwrap_or_default()
            );
            self.dropped = 0;
            self.write_line_at(&Self::timestamp(), Stream::Stderr, marker.as_bytes(), false)?;
            self.write_pending()?;
        }
        self.last_error = None;
        if self.rotate_bytes > 0 && self.size >= self.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(self.create()?);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Ok(());
            }
            match file.write(&self.pending[written..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // What reached the file is done, even when the rest failed: the rest follows it later.
        self.pending.drain(..written);
        self.size += written as u64;
        result
    }

    fn generation(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn create(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.mode)
            .open(&self.path)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.generation(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.generation(n);
                if from.exists() {
                    std::fs::rename(&from, self.generation(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.generation(1))?;
        }
        self.size = 0;
        self.rotations += 1;
        // Create the new file right away, so a tail that stats the path after the rename
        // already finds the new inode. If that fails, lines wait in `pending` and the file is
        // created by the next flush that can.
        self.file = None;
        self.file = Some(self.create()?);
        Ok(())
    }

    pub fn sync(&mut self) {
        let _ = self.flush();
        if let Some(file) = &self.file {
            let _ = file.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        let mut emit = |t: &[u8], p: bool| out.push((String::from_utf8_lossy(t).into_owned(), p));
        for c in chunks {
            s.feed(c, max, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    #[test]
    fn lines_across_reads_and_long_lines_split_with_p() {
        assert_eq!(
            split(&[b"ab", b"c\nde\n\nf"], 100),
            vec![
                ("abc".into(), false),
                ("de".into(), false),
                ("".into(), false),
                ("f".into(), false)
            ]
        );
        assert_eq!(
            split(&[b"0123456789", b"01\n"], 4),
            vec![
                ("0123".into(), true),
                ("4567".into(), true),
                ("8901".into(), false)
            ]
        );
        assert_eq!(
            split(&[b"abcdefgh\n"], 4),
            vec![("abcd".into(), true), ("efgh".into(), false)]
        );
    }

    #[test]
    fn rotation_renames_and_keeps_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut f = CriFile::open(&path, 200, 2, 0o640).unwrap();
        for i in 0..40 {
            f.write_line(Stream::Stdout, format!("line {i:03}").as_bytes(), false)
                .unwrap();
        }
        assert!(f.rotations >= 4);
        assert!(dir.path().join("app.log.1").exists() && dir.path().join("app.log.2").exists());
        assert!(!dir.path().join("app.log.3").exists());
        let last = std::fs::read_to_string(dir.path().join("app.log")).unwrap()
            + &std::fs::read_to_string(dir.path().join("app.log.1")).unwrap();
        assert!(last.lines().all(|l| l.contains(" stdout F line ")));
    }
}
