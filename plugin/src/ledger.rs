//! What each destination already accepted of a chunk that Fluent Bit may send again.
//!
//! When a destination fails (or runs out of time) after others, or part of its own requests,
//! succeeded, the flush must return RETRY and Fluent Bit will resend the same chunk. The ledger
//! remembers, per chunk (identified by a hash of its tag and bytes, which do not change between
//! retries) and per destination, whether it is done and which records it accepted, so the
//! resend carries to each destination only what it does not have yet. Entries are dropped when the chunk is done, and
//! the oldest are evicted beyond a fixed capacity, so memory stays bounded; an evicted entry
//! only means a destination may see that chunk twice (at-least-once, never lost).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Chunks remembered at most (an entry is a few bytes, plus one byte per record for a
/// destination that accepted part of a chunk).
pub const CAPACITY: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkId {
    hash: u64,
    len: usize,
}

impl ChunkId {
    pub fn of(tag: &str, chunk: &[u8]) -> ChunkId {
        let mut hasher = DefaultHasher::new();
        tag.hash(&mut hasher);
        chunk.hash(&mut hasher);
        ChunkId {
            hash: hasher.finish(),
            len: chunk.len(),
        }
    }
}

/// How far one destination got with a chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Nothing more to send to it: it accepted everything, or refused for good.
    pub done: bool,
    /// Records (by position in the chunk) it accepted on earlier attempts; empty when none.
    pub accepted: Vec<bool>,
}

impl Progress {
    pub fn accepted_count(&self) -> usize {
        self.accepted.iter().filter(|a| **a).count()
    }
}

#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    progress: HashMap<ChunkId, Vec<Progress>>,
    order: VecDeque<ChunkId>,
}

impl Ledger {
    /// What each of `destinations` destinations already did with this chunk.
    pub fn progress(&self, id: ChunkId, destinations: usize) -> Vec<Progress> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut progress = inner.progress.get(&id).cloned().unwrap_or_default();
        progress.resize(destinations, Progress::default());
        progress
    }

    /// Remembers progress on a chunk Fluent Bit will (or may) resend.
    pub fn remember(&self, id: ChunkId, progress: &[Progress]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.progress.insert(id, progress.to_vec()).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > CAPACITY {
            if let Some(oldest) = inner.order.pop_front() {
                inner.progress.remove(&oldest);
            }
        }
    }

    /// The chunk is done (delivered everywhere, or dropped): forget it.
    pub fn forget(&self, id: ChunkId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.progress.remove(&id).is_some() {
            inner.order.retain(|other| *other != id);
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .progress
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_done_and_stays_bounded() {
        let ledger = Ledger::default();
        let a = ChunkId::of("t", b"chunk a");
        assert_eq!(ledger.progress(a, 2), vec![Progress::default(); 2]);
        let partial = Progress {
            done: false,
            accepted: vec![true, false, true],
        };
        let done = Progress {
            done: true,
            accepted: Vec::new(),
        };
        ledger.remember(a, &[done.clone(), partial.clone()]);
        assert_eq!(ledger.progress(a, 2), vec![done, partial.clone()]);
        assert_eq!(partial.accepted_count(), 2);
        assert_ne!(ChunkId::of("t", b"chunk b"), a);
        assert_ne!(
            ChunkId::of("u", b"chunk a"),
            a,
            "the tag is part of the identity"
        );
        ledger.forget(a);
        assert!(ledger.is_empty());
        for i in 0..CAPACITY + 10 {
            ledger.remember(ChunkId::of("t", &i.to_be_bytes()), &[Progress::default()]);
        }
        assert_eq!(ledger.len(), CAPACITY, "the oldest entries are evicted");
    }
}
