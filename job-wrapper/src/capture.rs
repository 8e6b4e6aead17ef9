//! The command's output as CRI-format lines in numbered files.
//!
//! Each line is `<RFC3339Nano> <stdout|stderr> <P|F> <text>`: what containerd writes and
//! Fluent Bit's `cri` parser (and `multiline.parser cri`) reads. A line longer than the split
//! size is written as `P` parts followed by an `F` part.
//!
//! Rotation never renames: when a file reaches its size the wrapper starts the next
//! generation under a new name (`app.log`, `app.1.log`, `app.2.log`, …), so one `*.log` glob
//! matches every generation, whenever `tail` first scans the directory — before, during or
//! long after a burst — and each file is read to its end like any other. No generation is
//! ever "rotated" from tail's point of view, so its `Rotate_Wait` (after which a renamed file
//! is dropped, read or not) never applies. A generation is deleted only once `tail`'s `DB`
//! says it was read to its end ([`TailDb`]); without the database none is deleted.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::tail_db::TailDb;

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
        while let Some(newline) = memchr::memchr(b'\n', data) {
            let line = &data[..newline];
            data = &data[newline + 1..];
            if self.pending.is_empty() {
                // The usual case: a whole line inside one read, emitted where it lies.
                emit_line(line, max_line, emit);
            } else {
                self.pending.extend_from_slice(line);
                emit_line(&self.pending, max_line, emit);
                self.pending.clear();
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

/// One complete line: `P` parts of `max_line` bytes, then the `F` part (an empty line is one
/// empty `F`).
fn emit_line(line: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8], bool)) {
    if line.is_empty() {
        emit(b"", false);
        return;
    }
    let mut chunks = line.chunks(max_line).peekable();
    while let Some(chunk) = chunks.next() {
        emit(chunk, chunks.peek().is_some());
    }
}

/// Bytes of complete lines held while the file cannot take them (disk full, file not
/// re-created after a rotation). Beyond it new lines are counted and left out of the file
/// (they still went to stdout/stderr), and a marker line says how many once writing resumes.
pub const MAX_PENDING_BYTES: usize = 8 << 20;

/// The path of generation `n` of `base`: `base` itself for 0, else the number before the
/// last extension (`app.log` → `app.3.log`), or after the name when it has none (`out.3`).
pub fn generation_path(base: &Path, n: u64) -> PathBuf {
    if n == 0 {
        return base.to_owned();
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let numbered = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
        _ => format!("{name}.{n}"),
    };
    base.with_file_name(numbered)
}

/// Which generation of `base` the file `name` is, if any.
fn generation_of(base: &Path, name: &str) -> Option<u64> {
    let base_name = base.file_name()?.to_str()?;
    if name == base_name {
        return Some(0);
    }
    let number = match base_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => name
            .strip_prefix(stem)?
            .strip_prefix('.')?
            .strip_suffix(ext)?
            .strip_suffix('.')?,
        _ => name.strip_prefix(base_name)?.strip_prefix('.')?,
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0') {
        return None;
    }
    number.parse().ok()
}

/// A generation no longer written to.
#[derive(Debug, Clone)]
struct Closed {
    path: PathBuf,
    inode: u64,
    size: u64,
}

/// The CRI log file and its generations.
///
/// Lines are appended to `pending` whole and written in order; a write that stops part-way
/// (ENOSPC) leaves the rest of the line at the front of `pending`, written first when space
/// comes back — so a line is never cut short, merged with the next, or left half-written
/// without its end. Nothing is ever truncated (a tail reading the file would see it shrink).
pub struct CriFile {
    base: PathBuf,
    generation: u64,
    /// `None` after a rotation whose new file could not be created yet: retried on each flush.
    file: Option<File>,
    inode: u64,
    /// Oldest first.
    closed: VecDeque<Closed>,
    tail_db: Option<TailDb>,
    /// Said once: why generations beyond `keep` stay.
    kept_warned: bool,
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
    /// Opens the newest generation of `base` that exists (a restarted container carries on
    /// after its earlier output), or creates `base`.
    pub fn open(
        base: &Path,
        rotate_bytes: u64,
        keep: u32,
        mode: u32,
        tail_db: Option<TailDb>,
    ) -> std::io::Result<CriFile> {
        let dir = match base.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut existing: Vec<u64> = std::fs::read_dir(&dir)?
            .filter_map(|entry| generation_of(base, entry.ok()?.file_name().to_str()?))
            .collect();
        existing.sort_unstable();
        let generation = existing.last().copied().unwrap_or(0);
        let closed = existing[..existing.len().saturating_sub(1)]
            .iter()
            .filter_map(|n| {
                let path = generation_path(base, *n);
                let meta = std::fs::metadata(&path).ok()?;
                Some(Closed {
                    path,
                    inode: meta.ino(),
                    size: meta.len(),
                })
            })
            .collect();
        let mut cri = CriFile {
            base: base.to_owned(),
            generation,
            file: None,
            inode: 0,
            closed,
            tail_db,
            kept_warned: false,
            pending: Vec::with_capacity(256 * 1024),
            dropped: 0,
            last_error: None,
            size: 0,
            rotate_bytes,
            keep,
            mode,
            rotations: 0,
        };
        let file = cri.create()?;
        cri.size = file.metadata()?.len();
        cri.file = Some(file);
        Ok(cri)
    }

    /// The file written now.
    pub fn current_path(&self) -> PathBuf {
        generation_path(&self.base, self.generation)
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

    /// Writes what is pending, starting a new generation wherever the next whole line would
    /// take the file past `rotate_bytes`: a read of a megabyte of output still gives files of
    /// the configured size (a single line longer than that gets a file of its own).
    fn write_pending(&mut self) -> std::io::Result<()> {
        while !self.pending.is_empty() {
            let end = self.segment_end();
            if end == 0 {
                self.rotate()?;
                continue;
            }
            self.write_front(end)?;
            if !self.pending.is_empty() {
                self.rotate()?;
            }
        }
        Ok(())
    }

    /// How much of `pending` goes into the current file: all of it, or up to the last line end
    /// that keeps the file within `rotate_bytes` (0: rotate first), or, in an empty file, at
    /// least the first line.
    fn segment_end(&self) -> usize {
        let room = self.rotate_bytes.saturating_sub(self.size) as usize;
        if self.rotate_bytes == 0 || self.pending.len() <= room {
            return self.pending.len();
        }
        if let Some(newline) = memchr::memrchr(b'\n', &self.pending[..room]) {
            return newline + 1;
        }
        if self.size > 0 {
            return 0;
        }
        memchr::memchr(b'\n', &self.pending).map_or(self.pending.len(), |n| n + 1)
    }

    /// Writes `pending[..end]` to the current file.
    fn write_front(&mut self, end: usize) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(self.create()?);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut written = 0;
        let result = loop {
            if written == end {
                break Ok(());
            }
            match file.write(&self.pending[written..end]) {
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

    /// Creates (or reopens, after a restart) the current generation.
    fn create(&mut self) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.mode)
            .open(self.current_path())?;
        self.inode = file.metadata()?.ino();
        Ok(file)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.file.take().is_some() {
            self.closed.push_back(Closed {
                path: self.current_path(),
                inode: self.inode,
                size: self.size,
            });
        }
        self.generation += 1;
        self.size = 0;
        self.rotations += 1;
        self.prune();
        // The next generation right away; if that fails, lines wait in `pending` and the file
        // is created by the next flush that can.
        self.file = Some(self.create()?);
        Ok(())
    }

    /// Deletes generations beyond the newest `keep` that `tail` has read to their end.
    fn prune(&mut self) {
        let excess = self.closed.len().saturating_sub(self.keep as usize);
        if excess == 0 {
            return;
        }
        let files = match self.tail_db.as_ref().map(TailDb::files) {
            Some(Ok(files)) => files,
            Some(Err(e)) => {
                let db = self
                    .tail_db
                    .as_ref()
                    .map(|d| d.path().display().to_string());
                self.say_kept(&format!(
                    "cannot read Fluent Bit's tail DB {} ({e})",
                    db.unwrap_or_default()
                ));
                return;
            }
            None => {
                self.say_kept(
                    "without --tail-db the wrapper cannot tell which ones Fluent Bit has read",
                );
                return;
            }
        };
        let mut candidates = excess;
        let mut kept = VecDeque::with_capacity(self.closed.len());
        for generation in self.closed.drain(..) {
            if candidates > 0 {
                candidates -= 1;
                let unread = TailDb::unread(
                    &files,
                    &file_name(&generation.path),
                    generation.inode,
                    generation.size,
                );
                if unread == 0 {
                    match std::fs::remove_file(&generation.path) {
                        Ok(()) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => eprintln!(
                            "job-wrapper: cannot delete {}: {e}",
                            generation.path.display()
                        ),
                    }
                }
            }
            kept.push_back(generation);
        }
        self.closed = kept;
    }

    fn say_kept(&mut self, why: &str) {
        if !self.kept_warned {
            self.kept_warned = true;
            eprintln!(
                "job-wrapper: keeping rotated log files beyond --rotate-keep {}: {why}; a file is deleted only once it was read to its end",
                self.keep
            );
        }
    }

    /// The earlier generations `tail` has not read to their end yet, with the bytes left, by
    /// its `DB`; an error when there is no database to ask or it cannot be read.
    pub fn unread_generations(&self) -> Result<Vec<(PathBuf, u64)>, String> {
        if self.closed.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.tail_db.as_ref().ok_or("no --tail-db")?;
        let files = db.files()?;
        Ok(self
            .closed
            .iter()
            .map(|g| {
                let unread = TailDb::unread(&files, &file_name(&g.path), g.inode, g.size);
                (g.path.clone(), unread)
            })
            .filter(|(_, unread)| *unread > 0)
            .collect())
    }

    pub fn sync(&mut self) {
        let _ = self.flush();
        if let Some(file) = &self.file {
            let _ = file.sync_data();
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
