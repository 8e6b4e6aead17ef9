//! The ledger on disk (`ledger_file`): what each destination settled of the chunks Fluent Bit
//! will send again, kept across a restart.
//!
//! With `storage.type filesystem` Fluent Bit keeps a chunk it could not deliver on disk and
//! sends it again after a restart. The in-memory [`Ledger`](crate::ledger::Ledger) is gone by
//! then, so without this file every destination would get the whole chunk again — also those
//! that had accepted it.
//!
//! Policy and limits:
//! - **Append-only journal.** A `put` (a flush answered RETRY) appends the chunk's progress and
//!   `fdatasync`s it; a `take` (the resend of a chunk that has an entry) appends a short
//!   record, not synced. A flush that answers OK or ERROR with no entry writes nothing, so the
//!   file costs nothing while destinations are healthy.
//! - **Bounded.** Replaying the journal applies the in-memory ledger's own rules (at most
//!   [`CAPACITY`](crate::ledger::CAPACITY) entries, oldest evicted), and the file is rewritten
//!   with only the live entries (temporary file, `fsync`, rename) at startup and whenever it
//!   holds more than twice as many records as live entries plus [`SLACK`].
//! - **Never a loss.** A record only claims what a destination settled, and each one carries
//!   a BLAKE3 checksum: a torn last record (a crash mid-write), a damaged record or a file
//!   written for another `destinations` list stops the replay there, so a destination gets
//!   the chunk again — at least once, never less. A missing file is an empty ledger.
//! - **Duplicates that remain:** after a crash (SIGKILL, power loss) between a destination
//!   accepting records and the flush answering RETRY, those records are not in the file yet
//!   and are sent again; a `take` lost in a power cut leaves an entry for a chunk already
//!   delivered, which matters only if a chunk with exactly the same tag and bytes comes again.
//! - **One instance per file**: the file is locked (`flock`) while the instance runs; a
//!   second instance naming it fails at startup.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::progress::{ChunkId, Progress};

/// Records beyond twice the live entries that the file may hold before it is rewritten.
pub const SLACK: usize = 64;

const MAGIC: &[u8] = b"flb-fanout ledger 1\n";
const PUT: u8 = 1;
const TAKE: u8 = 2;
/// A record's body is at most this long (a chunk of 2^24 records, three destinations).
const MAX_RECORD: usize = 8 << 20;

/// One operation of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Put(ChunkId, Vec<Progress>),
    Take(ChunkId),
}

/// The open journal of one instance.
pub struct LedgerFile {
    path: PathBuf,
    file: File,
    /// Records in the file, for compaction.
    records: usize,
}

/// What opening found.
pub struct Opened {
    pub file: LedgerFile,
    /// The operations to replay, oldest first.
    pub operations: Vec<Operation>,
    /// Why some or all of the file was not used (said once at startup).
    pub note: Option<String>,
}

impl LedgerFile {
    /// Opens (or creates) the journal at `path` for an instance sending to `destinations`,
    /// locked for this instance, and reads what it holds.
    pub fn open(path: &Path, destinations: &[&str]) -> Result<Opened, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match lock(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(format!(
                    "{} is in use by another fanout instance or process: give each instance its own ledger_file",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
        let header = header(destinations);
        let mut contents = Vec::new();
        BufReader::new(&mut file)
            .read_to_end(&mut contents)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // What of the file is usable: the header and the records before any damage.
        let (operations, note, valid) = if contents.is_empty() {
            (Vec::new(), None, 0)
        } else if !contents.starts_with(&header) {
            let note = if contents.starts_with(MAGIC) {
                "it was written for another destinations list"
            } else {
                "it is not a fanout ledger"
            };
            (
                Vec::new(),
                Some(format!(
                    "ledger_file {}: {note}; starting with an empty ledger (chunks resent after the restart go to every destination again)",
                    path.display()
                )),
                0,
            )
        } else {
            let (operations, used) = parse(&contents[header.len()..], destinations.len());
            let damaged = header.len() + used < contents.len();
            let note = damaged.then(|| {
                format!(
                    "ledger_file {}: its end is torn or damaged; kept the {} records before it (the rest: sent again, never lost)",
                    path.display(),
                    operations.len()
                )
            });
            (operations, note, header.len() + used)
        };
        // Appends go after the usable part, never after damage (they could not be read back).
        if valid < contents.len() || valid == 0 {
            let reset = file.set_len(valid as u64).and_then(|()| {
                if valid == 0 {
                    file.write_all(&header)?;
                }
                file.sync_all()
            });
            reset.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(Opened {
            file: LedgerFile {
                path: path.to_owned(),
                file,
                records: operations.len(),
            },
            operations,
            note,
        })
    }

    /// Appends a `put`, synced: Fluent Bit is told RETRY only after it is on disk.
    pub fn put(&mut self, id: ChunkId, progress: &[Progress]) -> std::io::Result<()> {
        let record = record(&Operation::Put(id, progress.to_vec()));
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.records += 1;
        Ok(())
    }

    /// Appends a `take` (not synced: losing it only leaves a stale entry).
    pub fn take(&mut self, id: ChunkId) -> std::io::Result<()> {
        self.file.write_all(&record(&Operation::Take(id)))?;
        self.records += 1;
        Ok(())
    }

    /// Whether the file holds enough dead records to be rewritten for `live` entries.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.records > 2 * live + SLACK
    }

    /// Rewrites the file with only `live` (oldest first): a temporary file, synced, renamed
    /// over it, then locked in its place.
    pub fn rewrite(
        &mut self,
        destinations: &[&str],
        live: &[(ChunkId, Vec<Progress>)],
    ) -> std::io::Result<()> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".tmp");
        let temporary = PathBuf::from(name);
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        let mut bytes = header(destinations);
        for (id, progress) in live {
            bytes.extend_from_slice(&record(&Operation::Put(*id, progress.clone())));
        }
        out.write_all(&bytes)?;
        out.sync_all()?;
        // Lock the new file before it takes the name, so no other instance can slip in.
        lock(&out)?;
        std::fs::rename(&temporary, &self.path)?;
        drop(out);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        lock(&file)?;
        self.file = file;
        self.records = live.len();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An exclusive `flock` on `file`, without waiting (held until the file is closed).
fn lock(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(std::io::Error::from)
}

/// The magic line, the destinations in order, and a checksum of both.
fn header(destinations: &[&str]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(destinations.len() as u8);
    for name in destinations {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    out
}

fn checksum(bytes: &[u8]) -> [u8; 16] {
    let mut sum = [0u8; 16];
    sum.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    sum
}

/// `len u32 | body | blake3(body)[..16]`; the body is `kind u8 | hash u128 | chunk_len u64`,
/// and for a put `destinations u8`, then per destination `done u8 | bits u32 | bitmap`.
fn record(operation: &Operation) -> Vec<u8> {
    let mut body = Vec::new();
    let (kind, id) = match operation {
        Operation::Put(id, _) => (PUT, id),
        Operation::Take(id) => (TAKE, id),
    };
    body.push(kind);
    body.extend_from_slice(&id.hash().to_le_bytes());
    body.extend_from_slice(&(id.len() as u64).to_le_bytes());
    if let Operation::Put(_, progress) = operation {
        body.push(progress.len() as u8);
        for p in progress {
            body.push(u8::from(p.done));
            body.extend_from_slice(&(p.settled.len() as u32).to_le_bytes());
            let mut bitmap = vec![0u8; p.settled.len().div_ceil(8)];
            for (i, settled) in p.settled.iter().enumerate() {
                if *settled {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            body.extend_from_slice(&bitmap);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&checksum(&body));
    out
}

/// The operations in `bytes`, up to the first record that is torn, damaged or not for
/// `destinations` destinations, and how many bytes they took.
fn parse(bytes: &[u8], destinations: usize) -> (Vec<Operation>, usize) {
    let mut operations = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut cursor = rest;
        match parse_one(&mut cursor, destinations) {
            Some(operation) => {
                operations.push(operation);
                rest = cursor;
            }
            None => break,
        }
    }
    (operations, bytes.len() - rest.len())
}

fn parse_one(bytes: &mut &[u8], destinations: usize) -> Option<Operation> {
    let len = u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let body = take(bytes, len)?;
    if take(bytes, 16)? != checksum(body) {
        return None;
    }
    let mut body = body;
    let kind = take(&mut body, 1)?[0];
    let hash = u128::from_le_bytes(take(&mut body, 16)?.try_into().ok()?);
    let chunk_len = u64::from_le_bytes(take(&mut body, 8)?.try_into().ok()?);
    let id = ChunkId::from_parts(hash, usize::try_from(chunk_len).ok()?);
    match kind {
        TAKE if body.is_empty() => Some(Operation::Take(id)),
        PUT => {
            let count = take(&mut body, 1)?[0] as usize;
            if count != destinations {
                return None;
            }
            let mut progress = Vec::with_capacity(count);
            for _ in 0..count {
                let done = match take(&mut body, 1)?[0] {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let bits = u32::from_le_bytes(take(&mut body, 4)?.try_into().ok()?) as usize;
                let bitmap = take(&mut body, bits.div_ceil(8))?;
                let settled = (0..bits)
                    .map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
                    .collect();
                progress.push(Progress { done, settled });
            }
            body.is_empty().then_some(Operation::Put(id, progress))
        }
        _ => None,
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: bool, settled: &[bool]) -> Progress {
        Progress {
            done,
            settled: settled.to_vec(),
        }
    }

    #[test]
    fn puts_and_takes_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fanout.ledger");
        let names = ["datadog", "firehose"];
        let (a, b) = (ChunkId::of("t", b"a"), ChunkId::of("t", b"b"));
        let put_a = vec![progress(true, &[]), progress(false, &[true, false, true])];
        {
            let mut opened = LedgerFile::open(&path, &names).unwrap();
            assert!(opened.operations.is_empty() && opened.note.is_none());
            opened.file.put(a, &put_a).unwrap();
            opened
                .file
                .put(b, &[progress(false, &[]), progress(true, &[])])
                .unwrap();
            opened.file.take(b).unwrap();
        }
        let opened = LedgerFile::open(&path, &names).unwrap();
        assert_eq!(opened.note, None);
        assert_eq!(
            opened.operations,
            vec![
                Operation::Put(a, put_a),
                Operation::Put(b, vec![progress(false, &[]), progress(true, &[])]),
                Operation::Take(b),
            ]
        );
    }

    #[test]
    fn a_second_instance_cannot_use_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fanout.ledger");
        let _first = LedgerFile::open(&path, &["datadog"]).unwrap();
        let second = LedgerFile::open(&path, &["datadog"]).err().unwrap();
        assert!(second.contains("in use"), "{second}");
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_replay_and_another_destinations_list_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fanout.ledger");
        let names = ["datadog", "firehose"];
        let a = ChunkId::of("t", b"a");
        let p = vec![progress(true, &[]), progress(false, &[true; 20])];
        {
            let mut opened = LedgerFile::open(&path, &names).unwrap();
            opened.file.put(a, &p).unwrap();
            opened.file.put(a, &p).unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        // Torn: the last record half written.
        std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
        let opened = LedgerFile::open(&path, &names).unwrap();
        assert_eq!(opened.operations, vec![Operation::Put(a, p.clone())]);
        assert!(opened.note.as_deref().unwrap().contains("torn or damaged"));
        drop(opened);
        // Damaged: one bit of the first record's bitmap flipped.
        let mut damaged = whole.clone();
        let first_bitmap = header(&names).len() + 4 + 1 + 16 + 8 + 1 + 1 + 4 + 1 + 4;
        damaged[first_bitmap] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let opened = LedgerFile::open(&path, &names).unwrap();
        assert!(
            opened.operations.is_empty(),
            "nothing claimed from a damaged record"
        );
        drop(opened);
        // Written for other destinations (reordered): not used.
        std::fs::write(&path, &whole).unwrap();
        let opened = LedgerFile::open(&path, &["firehose", "datadog"]).unwrap();
        assert!(opened.operations.is_empty());
        assert!(
            opened
                .note
                .as_deref()
                .unwrap()
                .contains("another destinations list")
        );
        drop(opened);
        std::fs::write(&path, b"something else").unwrap();
        let opened = LedgerFile::open(&path, &names).unwrap();
        assert!(opened.operations.is_empty());
        assert!(
            opened
                .note
                .as_deref()
                .unwrap()
                .contains("not a fanout ledger")
        );
    }

    #[test]
    fn a_rewrite_keeps_only_the_live_entries_and_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fanout.ledger");
        let names = ["file"];
        let a = ChunkId::of("t", b"a");
        let mut opened = LedgerFile::open(&path, &names).unwrap();
        for _ in 0..100 {
            opened.file.put(a, &[progress(true, &[])]).unwrap();
            opened.file.take(a).unwrap();
        }
        assert!(opened.file.wants_compaction(0));
        let before = std::fs::metadata(&path).unwrap().len();
        opened
            .file
            .rewrite(&names, &[(a, vec![progress(false, &[true])])])
            .unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < before / 50);
        assert!(!opened.file.wants_compaction(1));
        assert!(LedgerFile::open(&path, &names).is_err(), "still locked");
        drop(opened);
        let reopened = LedgerFile::open(&path, &names).unwrap();
        assert_eq!(
            reopened.operations,
            vec![Operation::Put(a, vec![progress(false, &[true])])]
        );
    }
}
