//! What each destination already settled of a chunk that Fluent Bit will send again.
//!
//! When a flush answers RETRY after some destinations (or some requests) got through, Fluent
//! Bit resends the same chunk. The ledger keeps, per chunk (a hash of its tag and bytes, which
//! do not change between retries) and per destination, whether it is done and which records it
//! settled — accepted, or refused for good — so the resend carries to each destination only
//! what it still lacks.
//!
//! An entry is written only when a flush answers RETRY, and *taken* (removed) by the next
//! flush of the same chunk: a chunk's progress belongs to one delivery at a time, and two
//! identical chunks delivered at once never share it (each RETRY leaves one entry, each resend
//! takes one). The oldest entries are evicted beyond a fixed capacity, so memory stays bounded;
//! an evicted entry only means a destination may see that chunk twice (at least once, never
//! lost).
//!
//! With `ledger_file` every change is also journaled to disk ([`file`]) and
//! replayed at startup, so a chunk Fluent Bit resends after a restart (filesystem storage)
//! skips the destinations that had it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

mod file;
mod progress;

use self::file::{LedgerFile, Operation};
pub use self::progress::{ChunkId, Progress};
use crate::log::Logger;

/// Chunks remembered at most (an entry is a few bytes, plus one byte per record for a
/// destination that accepted part of a chunk).
pub const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per chunk, the progress left by each flush that answered RETRY, oldest first.
    progress: HashMap<ChunkId, VecDeque<Vec<Progress>>>,
    /// Entries in insertion order, for eviction.
    order: VecDeque<ChunkId>,
    /// The journal on disk, with `ledger_file`.
    journal: Option<Journal>,
}

struct Journal {
    file: LedgerFile,
    destinations: Vec<&'static str>,
    log: Arc<Logger>,
    /// Said once: the file stopped taking records (the ledger goes on in memory).
    failed: bool,
}

impl Journal {
    fn record(&mut self, written: std::io::Result<()>) {
        if let Err(e) = written
            && !std::mem::replace(&mut self.failed, true)
        {
            self.log.warn(format_args!(
                "ledger_file {}: cannot write ({e}); the ledger goes on in memory only, so chunks resent after a restart may reach a destination twice",
                self.file.path().display()
            ));
        }
    }
}

impl Ledger {
    /// A ledger kept in `path` as well as in memory, for an instance sending to
    /// `destinations`: what the file holds is replayed, then the file is rewritten with only
    /// the live entries. Why some of the file could not be used is logged; an error means the
    /// file cannot be opened or locked.
    pub fn with_file(
        path: &Path,
        destinations: Vec<&'static str>,
        log: Arc<Logger>,
    ) -> Result<Ledger, String> {
        let opened = LedgerFile::open(path, &destinations)?;
        if let Some(note) = &opened.note {
            log.warn(format_args!("{note}"));
        }
        let ledger = Ledger::default();
        for operation in opened.operations {
            match operation {
                Operation::Put(id, progress) => ledger.put(id, progress),
                Operation::Take(id) => {
                    ledger.take(id, destinations.len());
                }
            }
        }
        let mut journal = Journal {
            file: opened.file,
            destinations,
            log,
            failed: false,
        };
        let mut inner = ledger.inner.lock().unwrap_or_else(|e| e.into_inner());
        let live = inner.live();
        let rewritten = journal.file.rewrite(&journal.destinations, &live);
        journal.record(rewritten);
        if !live.is_empty() {
            journal.log.info(format_args!(
                "ledger_file {}: {} chunks awaiting a resend, with what each destination already has",
                journal.file.path().display(),
                live.len()
            ));
        }
        inner.journal = Some(journal);
        drop(inner);
        Ok(ledger)
    }

    /// Takes what a previous attempt of this chunk settled, for `destinations` destinations
    /// (nothing settled when there is no entry).
    pub fn take(&self, id: ChunkId, destinations: usize) -> Vec<Progress> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut progress = match inner.progress.get_mut(&id) {
            Some(entries) => {
                let progress = entries.pop_front().unwrap_or_default();
                if entries.is_empty() {
                    inner.progress.remove(&id);
                }
                if let Some(i) = inner.order.iter().position(|other| *other == id) {
                    inner.order.remove(i);
                }
                if let Some(journal) = &mut inner.journal {
                    let written = journal.file.take(id);
                    journal.record(written);
                }
                progress
            }
            None => Vec::new(),
        };
        progress.resize(destinations, Progress::default());
        progress
    }

    /// Leaves progress for the resend of a chunk answered RETRY.
    pub fn put(&self, id: ChunkId, progress: Vec<Progress>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(journal) = &mut inner.journal {
            let written = journal.file.put(id, &progress);
            journal.record(written);
        }
        inner.progress.entry(id).or_default().push_back(progress);
        inner.order.push_back(id);
        while inner.order.len() > CAPACITY {
            if let Some(oldest) = inner.order.pop_front()
                && let Some(entries) = inner.progress.get_mut(&oldest)
            {
                entries.pop_front();
                if entries.is_empty() {
                    inner.progress.remove(&oldest);
                }
            }
        }
        let live = inner.order.len();
        if inner
            .journal
            .as_ref()
            .is_some_and(|j| j.file.wants_compaction(live))
        {
            let entries = inner.live();
            if let Some(journal) = &mut inner.journal {
                let rewritten = journal.file.rewrite(&journal.destinations, &entries);
                journal.record(rewritten);
            }
        }
    }

    /// Whether changes are also written to a `ledger_file`.
    pub fn is_journaled(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .journal
            .is_some()
    }

    /// Entries held (chunks awaiting a resend).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Every entry, oldest first, as a replay would rebuild it.
    fn live(&self) -> Vec<(ChunkId, Vec<Progress>)> {
        let mut next: HashMap<ChunkId, usize> = HashMap::new();
        self.order
            .iter()
            .filter_map(|id| {
                let n = next.entry(*id).or_default();
                let progress = self.progress.get(id)?.get(*n)?.clone();
                *n += 1;
                Some((*id, progress))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_retry_leaves_one_entry_and_each_resend_takes_one() {
        let ledger = Ledger::default();
        let a = ChunkId::of("t", b"chunk a");
        assert_eq!(ledger.take(a, 2), vec![Progress::default(); 2]);
        let partial = Progress {
            done: false,
            settled: vec![true, false, true],
        };
        let done = Progress {
            done: true,
            settled: Vec::new(),
        };
        ledger.put(a, vec![done.clone(), partial.clone()]);
        assert_eq!(partial.settled.iter().filter(|s| **s).count(), 2);
        assert!(partial.is_settled(2) && !partial.is_settled(1) && done.is_settled(9));
        // Two identical chunks answered RETRY: two entries, one per resend.
        ledger.put(a, vec![Progress::default(), done.clone()]);
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.take(a, 2), vec![done.clone(), partial]);
        assert_eq!(ledger.take(a, 2), vec![Progress::default(), done]);
        assert_eq!(
            ledger.take(a, 2),
            vec![Progress::default(); 2],
            "a delivery in progress holds no entry another could share"
        );
        assert!(ledger.is_empty());
        assert_ne!(ChunkId::of("t", b"chunk b"), a);
        assert_ne!(
            ChunkId::of("u", b"chunk a"),
            a,
            "the tag is part of the identity"
        );
        for i in 0..CAPACITY + 10 {
            ledger.put(
                ChunkId::of("t", &i.to_be_bytes()),
                vec![Progress::default()],
            );
        }
        assert_eq!(ledger.len(), CAPACITY, "the oldest entries are evicted");
    }
}
